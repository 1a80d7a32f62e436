import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { assertLandedCorrectly, SMALL } from './crash-harness.ts';
import { cli, journalOf, removeTempDirs, tempDir } from './helpers.ts';

/**
 * Real deaths: the spawned CLI SIGKILLs itself at a named checkpoint
 * (RUBICON_FAULT=kill@<checkpoint>[#n]), so nothing of it survives, not a
 * `finally`, not its lock, not its worker threads; `rubicon resume` must
 * end the run correctly. The in-process crash files (crash-early, -middle,
 * -late) cover every other checkpoint; these keep what only a real death
 * shows: a lock left by a dead process, worker threads killed mid-copy, a
 * proving process that outlives its parent, and the whole demo at full size.
 */
afterEach(removeTempDirs);

const runIdOf = (r: { events: Record<string, unknown>[] }) => (r.events[0] as { event: { runId: string } }).event.runId;

async function smallEstate() {
  return buildSandbox(path.join(await tempDir(), 'estate'), SMALL);
}

async function killed(args: string[], fault: string) {
  const k = await cli(args, { RUBICON_FAULT: fault });
  expect(k.signal, k.stderr).toBe('SIGKILL');
  const runId = runIdOf(k);
  expect(runId).toMatch(/^r-/);
  return runId;
}

async function resumeLands(stateDir: string, runId: string) {
  const r = await cli(['resume', runId, '--state-dir', stateDir, '--yes', '--json']);
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.exitCode, r.stderr).toBe(0);
  expect((r.summary as { outcome: string }).outcome).toBe('landed');
  return journalOf(stateDir, runId);
}

describe('kill -9 (a real SIGKILL of the CLI), then resume', () => {
  it('the whole demo at full size, killed with half the target wiped', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const stateDir = path.join(dir, 'state');
    const runId = await killed(['demo', '--dir', dir, '--json'], 'kill@crossing.half-wiped');
    const before = await journalOf(stateDir, runId);
    expect(before.some((r) => r.event.type === 'crossing.started')).toBe(true);
    expect(before.some((r) => r.event.type === 'run.completed')).toBe(false);
    const records = await resumeLands(stateDir, runId);
    expect(records.filter((r) => r.event.type === 'run.resumed')).toHaveLength(1);
    await assertLandedCorrectly(dir, runId, records);
  });

  it.each([
    ['capture.stored.capture#4', 'the copy workers die mid-capture; the dead process\'s lock is taken over'],
    ['proof.recorded#5', 'the proving process outlives its parent and must not disturb the resume'],
  ])('kill@%s: %s', async (checkpoint) => {
    const L = await smallEstate();
    const runId = await killed(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], `kill@${checkpoint}`);
    const records = await resumeLands(L.stateDir, runId);
    expect(records.filter((r) => r.event.type === 'run.resumed')).toHaveLength(1);
    await assertLandedCorrectly(L.dir, runId, records, SMALL);
  });

  it('killed twice (capture, then mid-wipe during the resume), resumed twice', async () => {
    const L = await smallEstate();
    const runId = await killed(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], 'kill@capture.stored.capture#2');
    const k2 = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json'], { RUBICON_FAULT: 'kill@crossing.half-wiped' });
    expect(k2.signal, k2.stderr).toBe('SIGKILL');
    const records = await resumeLands(L.stateDir, runId);
    expect(records.filter((r) => r.event.type === 'run.resumed')).toHaveLength(2);
    await assertLandedCorrectly(L.dir, runId, records, SMALL);
  });

  it('resume refuses a run whose runbook changed since it started (exit 3, nothing touched)', async () => {
    const L = await smallEstate();
    const runId = await killed(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], 'kill@phase.completed#1');
    await appendFile(L.runbook, '# edited\n');
    const r = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/changed since run/);
  });
});
