import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JournalEvent } from '../../src/core/events.ts';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { Journal, newRunId, readJournal, runPaths } from '../../src/run/journal.ts';
import { resumeRun } from '../../src/run/run.ts';
import { cli, removeTempDirs, tempDir } from '../e2e/helpers.ts';

/** A damaged journal is JOURNAL_CORRUPT with the file named, never a stack trace; it never hides the other runs. */
afterAll(removeTempDirs);

const started = (runId: string): JournalEvent => ({
  type: 'run.started', runId, command: 'rehearse', target: 'ehr-server', runbookPath: '/x/runbook.yaml', runbookHash: 'h',
  policy: DEFAULT_POLICY, vaults: [], manualSteps: [], overrides: [], rubiconVersion: 'test', host: 'h',
});

async function runWith(stateDir: string, content?: string): Promise<string> {
  const runId = newRunId(new Date(Date.UTC(2026, 10, 28, 9, 0, Math.floor(Math.random() * 60))));
  const file = runPaths(stateDir, runId).journal;
  if (content === undefined) {
    const j = Journal.create(file);
    j.append(started(runId));
    j.append({ type: 'run.completed', outcome: 'rehearsed', exitCode: 0 });
    j.close();
  } else {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
  return runId;
}

describe('damaged journals', () => {
  it.each([
    ['empty', '', /is empty: the run recorded nothing/],
    ['a torn first line only', '{"seq":1,"at":"2026-', /is empty|ends with an incomplete record/],
    ['JSON null', 'null\n', /line 1 breaks the hash chain/],
    ['not JSON', 'garbage\n', /line 1 is not valid JSON/],
  ])('%s: JOURNAL_CORRUPT naming the file', async (_name, content, message) => {
    const stateDir = await tempDir();
    const runId = await runWith(stateDir, content);
    const file = runPaths(stateDir, runId).journal;
    for (const repairTornTail of [false, true]) {
      expect(() => readJournal(file, { repairTornTail })).toThrow(expect.objectContaining({ code: 'JOURNAL_CORRUPT', exitCode: 1, message: expect.stringMatching(message) }));
    }
    await expect(resumeRun(runId, { stateDir, onEvent: () => {}, confirm: async () => ({ confirmed: false, by: 'flag', who: 'x' }) })).rejects.toMatchObject({ code: 'JOURNAL_CORRUPT' });
    expect(() => readJournal(file)).toThrow(file);
  });

  it('a journal that does not begin with run.started is corrupt', async () => {
    const stateDir = await tempDir();
    const runId = newRunId();
    const file = runPaths(stateDir, runId).journal;
    const j = Journal.create(file);
    j.append({ type: 'note', level: 'info', message: 'no start' });
    j.close();
    expect(() => readJournal(file)).toThrow(/does not begin with run\.started \(line 1 is "note"\)/);
  });

  it('`rubicon status` lists the other runs and marks the damaged one (exit 1); `status RUN` names the damage', async () => {
    const stateDir = await tempDir();
    const good1 = await runWith(stateDir);
    const empty = await runWith(stateDir, '');
    const good2 = await runWith(stateDir);
    const edited = await runWith(stateDir, '{"seq":1,"at":"2026-11-28T09:00:00.000Z","event":{"type":"run.started"},"prev":"0","hash":"f"}\n');
    const list = await cli(['status', '--state-dir', stateDir, '--json']);
    expect(list.exitCode).toBe(1);
    const runs = JSON.parse(list.stdout) as { runId: string; outcome: string; damaged?: { code: string; message: string } }[];
    expect(runs.map((r) => r.runId).sort()).toEqual([good1, empty, good2, edited].sort());
    for (const id of [good1, good2]) expect(runs.find((r) => r.runId === id)).toMatchObject({ outcome: 'rehearsed' });
    expect(runs.find((r) => r.runId === empty)).toMatchObject({ outcome: 'damaged', damaged: { code: 'JOURNAL_CORRUPT', message: expect.stringMatching(/is empty/) } });
    expect(runs.find((r) => r.runId === edited)).toMatchObject({ outcome: 'damaged', damaged: { code: 'JOURNAL_CORRUPT', message: expect.stringMatching(/breaks the hash chain/) } });
    expect(list.stderr).toMatch(/2 journal\(s\) .* are damaged/);
    const text = await cli(['status', '--state-dir', stateDir]);
    expect(text.stdout).toMatch(new RegExp(`${good1} +rehearse`));
    expect(text.stdout).toMatch(new RegExp(`${empty} .*DAMAGED JOURNAL_CORRUPT: journal .* is empty`));
    const one = await cli(['status', empty, '--state-dir', stateDir]);
    expect(one.exitCode).toBe(1);
    expect(one.stderr).toMatch(/is empty: the run recorded nothing/);
    expect(one.stderr).not.toMatch(/internal error|    at /);
  });
});
