import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRubiconError } from '../../src/core/errors.ts';
import { writeReports } from '../../src/report/index.ts';
import { landedStory, rehearsalStory } from './builders.ts';

describe('writeReports', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rubicon-write-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the four files into a new folder and leaves no temporary file', async () => {
    const { state, checklist } = landedStory();
    const out = join(dir, 'a', 'reports');
    const files = await writeReports(state, checklist, out);
    expect(files).toEqual([
      { kind: 'json', path: join(out, 'report.json') },
      { kind: 'markdown', path: join(out, 'checklist.md') },
      { kind: 'html', path: join(out, 'report.html') },
      { kind: 'junit', path: join(out, 'junit.xml') },
    ]);
    expect((await readdir(out)).sort()).toEqual(['checklist.md', 'junit.xml', 'report.html', 'report.json']);
    expect(JSON.parse(await readFile(join(out, 'report.json'), 'utf8')).outcome).toBe('landed');
    expect(await readFile(join(out, 'report.html'), 'utf8')).toMatch(/^<!DOCTYPE html>/);
  });

  it('is idempotent and replaces its own files only', async () => {
    const out = join(dir, 'b');
    const { state, checklist } = rehearsalStory();
    await writeReports(state, checklist, out);
    const first = await readFile(join(out, 'report.html'));
    await writeFile(join(out, 'notes.txt'), 'keep me');
    await writeReports(state, checklist, out);
    expect(await readFile(join(out, 'report.html'))).toEqual(first);
    expect(await readFile(join(out, 'notes.txt'), 'utf8')).toBe('keep me');
    expect((await readdir(out)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('fails with a RubiconError naming the folder when it cannot write', async () => {
    const blocker = join(dir, 'not-a-folder');
    await writeFile(blocker, 'x');
    const { state, checklist } = rehearsalStory();
    const err = await writeReports(state, checklist, join(blocker, 'reports')).catch((e: unknown) => e);
    expect(isRubiconError(err)).toBe(true);
    expect((err as Error).message).toContain(join(blocker, 'reports'));
    expect((err as { hint?: string }).hint).toContain(`rubicon resume ${state.runId}`);
  });
});
