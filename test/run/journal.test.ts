import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JournalEvent } from '../../src/core/events.ts';
import { deriveState } from '../../src/core/state.ts';
import { acquireLock, Journal, newRunId, readJournal, runPaths } from '../../src/run/journal.ts';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { tempDir } from '../e2e/helpers.ts';

const started = (runId: string): JournalEvent =>
  ({
    type: 'run.started',
    runId,
    command: 'rehearse',
    target: 't',
    runbookPath: '/x/runbook.yaml',
    runbookHash: 'h',
    policy: DEFAULT_POLICY,
    vaults: [],
    manualSteps: [],
    overrides: [],
    rubiconVersion: 'test',
    host: 'h',
  });

async function journalWith(n: number) {
  const dir = await tempDir();
  const runId = newRunId();
  const p = runPaths(dir, runId);
  const j = Journal.create(p.journal);
  j.append(started(runId));
  for (let i = 0; i < n; i++) j.append({ type: 'note', level: 'info', message: `note ${i}` });
  j.close();
  return { dir, runId, file: p.journal };
}

describe('journal', () => {
  it('chains, reopens and appends; the state folds from it', async () => {
    const { file } = await journalWith(3);
    const j = Journal.open(file);
    j.append({ type: 'note', level: 'warn', message: 'after reopen' });
    j.close();
    const records = readJournal(file);
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(records[1]!.prev).toBe(records[0]!.hash);
    expect(deriveState(records).notes.map((n) => n.message)).toEqual(['note 0', 'note 1', 'note 2', 'after reopen']);
  });

  it('drops a torn last line (a crash mid-write) and keeps appending after it', async () => {
    const { file } = await journalWith(2);
    await appendFile(file, '{"seq":4,"at":"2026-11-28T00:00:00.000Z","event":{"type":"no');
    expect(() => readJournal(file)).toThrow(/incomplete record/);
    const j = Journal.open(file);
    j.append({ type: 'note', level: 'info', message: 'next' });
    j.close();
    const records = readJournal(file);
    expect(records).toHaveLength(4);
    expect(records.at(-1)!.event).toMatchObject({ message: 'next' });
  });

  it('refuses an edited journal: JOURNAL_CORRUPT naming the line', async () => {
    const { file } = await journalWith(3);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('note 1', 'note X'));
    expect(() => readJournal(file)).toThrow(/line 3 breaks the hash chain/);
    await writeFile(file, text.split('\n').filter((_, i) => i !== 1).join('\n'));
    expect(() => readJournal(file)).toThrow(/breaks the hash chain/);
  });

  it('rejects a run id that is not one (no path tricks)', () => {
    expect(() => runPaths('/s', '../../etc')).toThrow(/not a run id/);
  });
});

describe('lock', () => {
  it('one run per target; a lock left by a dead process is taken over', async () => {
    const dir = await tempDir();
    const release = acquireLock(dir, 'ehr-server', 'r-20261128-000000-0001', 'h');
    expect(() => acquireLock(dir, 'ehr-server', 'r-20261128-000000-0002', 'h')).toThrow(/locked by run r-20261128-000000-0001/);
    release();
    // A lock written by a process that has died (a real child that exited).
    const child = await execa(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    await writeFile(path.join(dir, 'locks', 'ehr-server.lock'), JSON.stringify({ pid: Number(child.stdout), runId: 'r-20261128-000000-0003', host: 'h', at: 'x' }));
    const again = acquireLock(dir, 'ehr-server', 'r-20261128-000000-0004', 'h');
    again();
    // A live lock on another host is never taken over.
    await writeFile(path.join(dir, 'locks', 'ehr-server.lock'), JSON.stringify({ pid: 1, runId: 'r-20261128-000000-0005', host: 'other', at: 'x' }));
    expect(() => acquireLock(dir, 'ehr-server', 'r-20261128-000000-0006', 'h')).toThrow(/LOCK|locked/);
  });
});

describe.skipIf(process.getuid?.() !== 0 && !process.env.CI)(`a journal on a full filesystem${process.getuid?.() === 0 ? '' : ' (skipped: needs root for a tmpfs)'}`, () => {
  it('a record that does not fit is cut back to the last whole record, NO_SPACE names the state directory, and no later record is taken', async () => {
    const dir = await tempDir();
    const mnt = path.join(dir, 'full');
    await execa('mkdir', ['-p', mnt]);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    try {
      const j = Journal.create(path.join(mnt, 'runs', 'r1', 'journal.jsonl'));
      j.append(started('r1'));
      // Fill the filesystem but for a few hundred bytes.
      await execa('sh', ['-c', 'dd if=/dev/zero of="$1" bs=1k count=1000 2>/dev/null; true', 'sh', path.join(mnt, 'filler')]);
      await execa('sh', ['-c', 'rm -f "$1"; dd if=/dev/zero of="$1" bs=1 count=$(( $(df -B1 --output=avail "$2" | tail -1) - 300 )) 2>/dev/null; true', 'sh', path.join(mnt, 'filler'), mnt]);
      const big: JournalEvent = { type: 'note', level: 'info', message: 'x'.repeat(20_000) };
      expect(() => j.append(big)).toThrow(expect.objectContaining({ code: 'NO_SPACE', message: expect.stringMatching(/state directory/) }));
      expect(() => j.append({ type: 'note', level: 'info', message: 'small' })).toThrow(expect.objectContaining({ code: 'NO_SPACE' }));
      j.close();
      const records = readJournal(path.join(mnt, 'runs', 'r1', 'journal.jsonl'), { repairTornTail: false });
      expect(records.map((r) => r.event.type)).toEqual(['run.started']);
    } finally {
      await execa('umount', ['-l', mnt]);
    }
  });
});
