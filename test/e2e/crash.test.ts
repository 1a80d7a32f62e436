import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JournalRecord } from '../../src/core/events.ts';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import { buildSandbox, technicianChanges } from '../../src/sandbox/estate.ts';
import { cli, journalOf, tempDir, treeHashes } from './helpers.ts';

/**
 * The process is killed (a real SIGKILL, sent by the process to itself at a
 * named checkpoint: RUBICON_FAULT=kill@<checkpoint>[#n]) in the middle of
 * each phase; `rubicon resume` must end the run correctly, with nothing
 * captured twice and nothing lost.
 */
const CASES: { phase: string; fault: string }[] = [
  { phase: 'discover', fault: 'kill@item.discovered#3' },
  { phase: 'capture', fault: 'kill@capture.started#2' },
  { phase: 'capture', fault: 'kill@capture.stored.capture#4' },
  { phase: 'capture', fault: 'kill@artifact.captured#6' },
  // The 9th stored capture is the everything capture of the target root (3 database methods, 5 folders, then volume:.).
  { phase: 'capture', fault: 'kill@capture.stored.capture#9' },
  { phase: 'prove', fault: 'kill@copy.checked#3' },
  { phase: 'prove', fault: 'kill@proof.recorded#5' },
  { phase: 'freeze', fault: 'kill@target.frozen' },
  { phase: 'final-capture', fault: 'kill@capture.stored.final-capture' },
  { phase: 'gate', fault: 'kill@rollback.created' },
  { phase: 'gate', fault: 'kill@gate.evaluated' },
  { phase: 'gate', fault: 'kill@permit.issued' },
  { phase: 'crossing', fault: 'kill@crossing.started' },
  { phase: 'crossing', fault: 'kill@crossing.half-wiped' },
  { phase: 'landing', fault: 'kill@landing.restored#2' },
  { phase: 'landing', fault: 'kill@landing.validated#4' },
  { phase: 'report', fault: 'kill@report.written' },
];

const dbItem = {
  id: 'database:sqlite:ehr', kind: 'database' as const, name: 'ehr', declared: false, discovered: true, engine: 'sqlite',
  location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [],
};
const fingerprint = (root: string) => sqliteEngine.fingerprint({ host: new LocalHost('t', root), workDir: root }, dbItem);

async function assertLandedCorrectly(dir: string, runId: string, records: JournalRecord[]): Promise<void> {
  const events = records.map((r) => r.event);
  // Nothing captured twice: one artifact per id, one per (item, method, phase).
  const captured = events.flatMap((e) => (e.type === 'artifact.captured' ? [e.artifact] : []));
  const ids = captured.map((a) => a.id);
  expect(new Set(ids).size).toBe(ids.length);
  const keys = captured.map((a) => `${a.phase}|${a.itemId}|${a.method}`);
  expect(new Set(keys).size).toBe(keys.length);
  // Every vault indexes exactly the artifacts the journal knows.
  for (const v of ['nas', 'offsite']) {
    const index = await readdir(path.join(dir, 'vaults', v, 'index'));
    expect(index.length, `vault ${v} index`).toBe(ids.length);
  }
  // One crossing.
  expect(events.filter((e) => e.type === 'crossing.completed')).toHaveLength(1);
  expect(events.filter((e) => e.type === 'permit.issued')).toHaveLength(1);
  // Nothing lost: every item landed and validated.
  const items = events.flatMap((e) => (e.type === 'item.discovered' ? [e.item] : []));
  const validated = new Map(events.flatMap((e) => (e.type === 'landing.validated' ? [[e.itemId, e.outcome] as const] : [])));
  for (const it of items) expect(validated.get(it.id), it.id).toBe('passed');
  const done = events.at(-1);
  expect(done).toMatchObject({ type: 'run.completed', outcome: 'landed', exitCode: 0 });
  // And the files really are back: compare with a fresh estate (plus the technician's changes if they happened).
  const expected = await buildSandbox(path.join(await tempDir(), 'expected'), {});
  if (events.some((e) => e.type === 'note' && e.message.startsWith('demo: the vendor technician'))) await technicianChanges(expected.target);
  const want = await treeHashes(expected.target);
  const got = await treeHashes(path.join(dir, 'target'));
  for (const [p, h] of want) if (p !== 'mssql/data/ehr.db') expect(got.get(p), `${runId}: ${p}`).toBe(h);
  expect((await fingerprint(path.join(dir, 'target'))).digest).toBe((await fingerprint(expected.target)).digest);
}

describe('kill -9 in the middle of each phase, then resume', () => {
  for (const c of CASES) {
    it(`${c.phase}: ${c.fault}`, async () => {
      const dir = path.join(await tempDir(), 'estate');
      const stateDir = path.join(dir, 'state');
      const killed = await cli(['demo', '--dir', dir, '--json'], { RUBICON_FAULT: c.fault });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      const runId = (killed.events[0] as { event: { runId: string } }).event.runId;
      expect(runId).toMatch(/^r-/);
      const before = await journalOf(stateDir, runId);
      expect(before.some((r) => r.event.type === 'run.completed')).toBe(false);

      const resumed = await cli(['resume', runId, '--state-dir', stateDir, '--yes', '--json']);
      expect(resumed.stderr).not.toMatch(/internal error/);
      expect(resumed.exitCode, resumed.stderr).toBe(0);
      expect((resumed.summary as { outcome: string }).outcome).toBe('landed');
      const records = await journalOf(stateDir, runId);
      expect(records.filter((r) => r.event.type === 'run.resumed')).toHaveLength(1);
      await assertLandedCorrectly(dir, runId, records);
    });
  }

  it('killed twice (capture, then mid-wipe during the resume), resumed twice', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const stateDir = path.join(dir, 'state');
    const k1 = await cli(['demo', '--dir', dir, '--json'], { RUBICON_FAULT: 'kill@capture.stored.capture#2' });
    expect(k1.signal).toBe('SIGKILL');
    const runId = (k1.events[0] as { event: { runId: string } }).event.runId;
    const k2 = await cli(['resume', runId, '--state-dir', stateDir, '--yes', '--json'], { RUBICON_FAULT: 'kill@crossing.half-wiped' });
    expect(k2.signal).toBe('SIGKILL');
    const r = await cli(['resume', runId, '--state-dir', stateDir, '--yes', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    await assertLandedCorrectly(dir, runId, await journalOf(stateDir, runId));
  });

  it('resume refuses a run whose runbook changed since it started (exit 3, nothing touched)', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const stateDir = path.join(dir, 'state');
    const k = await cli(['demo', '--dir', dir, '--json'], { RUBICON_FAULT: 'kill@phase.completed#1' });
    expect(k.signal).toBe('SIGKILL');
    const runId = (k.events[0] as { event: { runId: string } }).event.runId;
    const { appendFile } = await import('node:fs/promises');
    await appendFile(path.join(dir, 'runbook.yaml'), '# edited\n');
    const r = await cli(['resume', runId, '--state-dir', stateDir, '--yes']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/changed since run/);
  });
});
