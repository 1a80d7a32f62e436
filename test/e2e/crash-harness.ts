import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { JournalRecord, RunEvent } from '../../src/core/events.ts';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import type { Confirmation } from '../../src/run/context.ts';
import { resetFaults, simulateCrashAt, SimulatedCrash } from '../../src/run/faults.ts';
import { resumeRun, startRun, type RunSummary } from '../../src/run/run.ts';
import { buildSandbox, technicianChanges, technicianHooks, type SandboxLayout, type SandboxOptions } from '../../src/sandbox/estate.ts';
import { journalOf, tempDir, treeHashes } from './helpers.ts';

/**
 * The crash tests' shared parts. A crash case: play the demo's upgrade (the
 * sandbox estate, the vendor technician after the proofs), die at a named
 * checkpoint, resume, and check that the run landed exactly as an
 * uninterrupted one would: nothing captured twice, nothing lost, the
 * files and the database really back.
 *
 * Most checkpoints die in-process (simulateCrashAt, see src/run/faults.ts
 * for what that does and does not imitate) on a small estate; a few die by
 * a real SIGKILL of the spawned CLI (test/e2e/crash-sigkill.test.ts).
 */

/** The small estate: the same folders, files and story, fewer patients, documents and messages. */
export const SMALL: SandboxOptions = { patients: 100, documents: 24, messages: 12 };

const dbItem = {
  id: 'database:sqlite:ehr', kind: 'database' as const, name: 'ehr', declared: false, discovered: true, engine: 'sqlite',
  location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [],
};
const fingerprint = (root: string) => sqliteEngine.fingerprint({ host: new LocalHost('t', root), workDir: root }, dbItem);

/** What a landed target must hold: the files and the database fingerprint of a fresh estate (built once per size and story). */
const expectedTargets = new Map<string, Promise<{ files: Map<string, string>; digest: string }>>();
function expectedTarget(size: SandboxOptions, technician: boolean): Promise<{ files: Map<string, string>; digest: string }> {
  const key = JSON.stringify([size, technician]);
  let p = expectedTargets.get(key);
  if (!p) {
    p = (async () => {
      const expected = await buildSandbox(path.join(await tempDir(), 'expected'), size);
      if (technician) await technicianChanges(expected.target);
      return { files: await treeHashes(expected.target), digest: (await fingerprint(expected.target)).digest };
    })();
    expectedTargets.set(key, p);
  }
  return p;
}

export async function assertLandedCorrectly(dir: string, runId: string, records: JournalRecord[], size: SandboxOptions = {}): Promise<void> {
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
  const expected = await expectedTarget(size, events.some((e) => e.type === 'note' && e.message.startsWith('demo: the vendor technician')));
  const got = await treeHashes(path.join(dir, 'target'));
  for (const [p, h] of expected.files) if (p !== 'mssql/data/ehr.db') expect(got.get(p), `${runId}: ${p}`).toBe(h);
  expect((await fingerprint(path.join(dir, 'target'))).digest).toBe(expected.digest);
}

const confirm = async (): Promise<Confirmation> => ({ confirmed: true, by: 'flag', who: 'crash test' });

export interface InProcessCrash {
  layout: SandboxLayout;
  runId: string;
  crash: SimulatedCrash;
  /** The journal as the crash left it. */
  before: JournalRecord[];
  resumed: RunSummary;
  after: JournalRecord[];
}

/**
 * The demo's upgrade on a small estate in this process, dying at the first
 * of `faults` (`<checkpoint>[#n]`), then resumed in this process; each
 * further fault kills the next resume (a chain of crashes, counted from that
 * resume's start); the last resume must land. Asserts that every crash
 * happened where asked, that nothing reached the journal after it, and that
 * each resume only appended to the journal the crash left.
 */
export async function crashInProcessThenResume(...faults: [string, ...string[]]): Promise<InProcessCrash> {
  const layout = await buildSandbox(path.join(await tempDir(), 'estate'), SMALL);
  let runId = '';
  let lastEvent = '';
  const onEvent = (e: RunEvent) => {
    if (e.kind !== 'journal') return;
    if (e.event.type === 'run.started') runId = e.event.runId;
    lastEvent = e.event.type;
  };
  let before: JournalRecord[] = [];
  let crash: unknown;
  for (const [i, fault] of faults.entries()) {
    const ac = new AbortController();
    simulateCrashAt(fault);
    crash = undefined;
    try {
      if (i === 0) await startRun('upgrade', layout.runbook, { stateDir: layout.stateDir, onEvent, confirm, hooks: technicianHooks(layout.target), signal: ac.signal });
      else await resumeRun(runId, { stateDir: layout.stateDir, onEvent, confirm, signal: ac.signal });
    } catch (e) {
      crash = e;
    } finally {
      ac.abort(new Error('the crashed run is dead')); // stops what it left running (the proving process)
      resetFaults();
    }
    const where = i === 0 ? fault : `${fault} (crash ${i + 1}, during resume ${i})`;
    expect(crash, `the run never reached checkpoint ${where}: ${String(crash)}`).toBeInstanceOf(SimulatedCrash);
    expect((crash as SimulatedCrash).checkpoint).toBe(fault);
    expect(runId).toMatch(/^r-/);
    const now = await journalOf(layout.stateDir, runId);
    expect(now.slice(0, before.length)).toEqual(before); // a resume only appends
    // Died there: the journal ends with the last event the run saw before the checkpoint, and the run is not completed.
    expect(now.at(-1)?.event.type, where).toBe(lastEvent);
    const name = fault.split('#')[0]!;
    if (now.slice(before.length).some((r) => r.event.type === name)) expect(lastEvent, where).toBe(name);
    expect(now.some((r) => r.event.type === 'run.completed')).toBe(false);
    // No catch block turned the crash into a recorded failure.
    expect(now.filter((r) => ['capture.failed', 'run.interrupted', 'target.thawed'].includes(r.event.type)).map((r) => r.event.type)).toEqual([]);
    before = now;
  }

  const resumed = await resumeRun(runId, { stateDir: layout.stateDir, onEvent: () => {}, confirm });
  expect(resumed.error, JSON.stringify(resumed.error)).toBeUndefined();
  expect(resumed.exitCode).toBe(0);
  expect(resumed.outcome).toBe('landed');
  const after = await journalOf(layout.stateDir, runId);
  // The resume appended to exactly the journal the crashes left.
  expect(after.slice(0, before.length)).toEqual(before);
  expect(after.filter((r) => r.event.type === 'run.resumed')).toHaveLength(faults.length);
  await assertLandedCorrectly(layout.dir, runId, after, SMALL);
  return { layout, runId, crash: crash as SimulatedCrash, before, resumed, after };
}
