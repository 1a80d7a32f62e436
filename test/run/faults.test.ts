import { readFile } from 'node:fs/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { JournalEvent } from '../../src/core/events.ts';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { assertAlive, checkpoint, crashed, resetFaults, rethrowIfCrashed, simulateCrashAt, SimulatedCrash } from '../../src/run/faults.ts';
import { Journal, newRunId, runPaths } from '../../src/run/journal.ts';
import { removeTempDirs, tempDir } from '../e2e/helpers.ts';

/** The in-process crash (src/run/faults.ts): at the checkpoint the process behaves as if it died. */
const started = (runId: string): JournalEvent => ({
  type: 'run.started', runId, command: 'rehearse', target: 't', runbookPath: '/x/runbook.yaml', runbookHash: 'h',
  policy: DEFAULT_POLICY, vaults: [], manualSteps: [], overrides: [], rubiconVersion: 'test', host: 'h',
});

afterEach(resetFaults);
afterAll(removeTempDirs);

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('simulateCrashAt', () => {
  it('fires at the n-th pass of the named checkpoint, and only there', () => {
    simulateCrashAt('capture.stored.capture#3');
    checkpoint('capture.stored.capture');
    checkpoint('other');
    checkpoint('capture.stored.capture');
    expect(crashed()).toBeUndefined();
    const e = thrown(() => checkpoint('capture.stored.capture'));
    expect(e).toBeInstanceOf(SimulatedCrash);
    expect((e as SimulatedCrash).checkpoint).toBe('capture.stored.capture#3');
    expect(crashed()).toBe(e);
  });

  it('seals the process: every later checkpoint and journal append throws the same crash, and nothing is written', async () => {
    const dir = await tempDir();
    const runId = newRunId();
    const file = runPaths(dir, runId).journal;
    const j = Journal.create(file);
    simulateCrashAt('note#2');
    j.onAppend((r) => checkpoint(r.event.type));
    j.append(started(runId));
    j.append({ type: 'note', level: 'info', message: 'one' });
    const crash = thrown(() => j.append({ type: 'note', level: 'info', message: 'two: durable, then the process died' }));
    expect(crash).toBeInstanceOf(SimulatedCrash);
    const written = await readFile(file, 'utf8');
    expect(written.trim().split('\n')).toHaveLength(3); // the event at the checkpoint is durable, as with a real kill
    // A catch block that tries to record the failure, a thaw note, run.completed: all refused, nothing written.
    for (const event of [{ type: 'capture.failed', itemId: 'i', method: 'm', artifactId: 'a', code: 'INTERNAL', message: 'x' }, { type: 'run.completed', outcome: 'failed', exitCode: 1 }] as JournalEvent[]) {
      expect(thrown(() => j.append(event))).toBe(crash);
    }
    expect(thrown(() => checkpoint('anything'))).toBe(crash);
    expect(thrown(assertAlive)).toBe(crash);
    expect(await readFile(file, 'utf8')).toBe(written);
    j.close();
    // The test resumes in the same process after resetFaults.
    resetFaults();
    const again = Journal.open(file);
    again.append({ type: 'run.resumed', pid: process.pid });
    again.close();
    expect((await readFile(file, 'utf8')).trim().split('\n')).toHaveLength(4);
  });

  it('rethrowIfCrashed passes the crash through, even wrapped by an inner catch, and nothing else', () => {
    expect(thrown(() => rethrowIfCrashed(new Error('an ordinary failure')))).toBeUndefined();
    simulateCrashAt('x');
    const crash = thrown(() => checkpoint('x'));
    expect(thrown(() => rethrowIfCrashed(crash))).toBe(crash);
    expect(thrown(() => rethrowIfCrashed(new Error('wrapped', { cause: crash })))).toBe(crash);
  });

  it('refuses a malformed spec', () => {
    expect(() => simulateCrashAt('#2')).toThrow(/not <checkpoint>\[#n\]/);
  });
});
