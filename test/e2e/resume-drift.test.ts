import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JournalEvent } from '../../src/core/events.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { resumeRun, startRun } from '../../src/run/run.ts';
import { cli, journalOf, tempDir } from './helpers.ts';

/**
 * Issue 9: changes after the gate were lost on resume (the pre-gate drift
 * scan was skipped because a gate was recorded), and a resume after a thaw
 * crossed a running target. Now a resume that reaches the crossing freezes
 * again (or starts a new drift round while still frozen), captures what
 * changed, evaluates the gate afresh, and lands the change.
 */
async function killedAt(fault: string) {
  const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 150 });
  const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], { RUBICON_FAULT: fault });
  expect(r.signal, r.stderr).toBe('SIGKILL');
  const runId = (r.events[0] as { event: { runId: string } }).event.runId;
  return { L, runId };
}

const types = (rs: { event: JournalEvent }[]) => rs.map((r) => r.event.type);

describe('a resume that reaches the crossing scans drift again', () => {
  it('killed right after the permit, a file changed, resumed: the change is captured, proven and landed', async () => {
    const { L, runId } = await killedAt('kill@permit.issued');
    const file = path.join(L.target, 'ehr/Z/licence.lic');
    await writeFile(file, 'LICENSED-TO=Sandbox Family Practice\nKEY=CHANGED-AFTER-THE-PERMIT\n');
    const r = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const rs = await journalOf(L.stateDir, runId);
    expect(types(rs)).toContain('phases.reopened');
    const finals = rs.flatMap((x) => (x.event.type === 'artifact.captured' && x.event.artifact.phase === 'final-capture' ? [x.event.artifact] : []));
    expect(finals.some((a) => a.itemId === 'folder:ehr/Z' && a.changed?.some((c) => c.path === 'licence.lic'))).toBe(true);
    // A new permit for the new proof set.
    expect(rs.filter((x) => x.event.type === 'permit.issued').length).toBe(2);
    expect(await readFile(file, 'utf8')).toContain('CHANGED-AFTER-THE-PERMIT');
  });

  it('a run that failed after its freeze was thawed: the resume freezes again, finds the change, lands it', async () => {
    const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 150 });
    const o = { stateDir: L.stateDir, onEvent: () => {}, confirm: async () => ({ confirmed: true, by: 'flag' as const, who: 'test' }) };
    const failed = await startRun('upgrade', L.runbook, {
      ...o,
      hooks: {
        afterPhase: async (phase) => {
          if (phase === 'freeze') throw new Error('the operator pulled the plug after the freeze');
        },
      },
    });
    expect(failed.outcome).toBe('failed');
    let rs = await journalOf(L.stateDir, failed.runId);
    expect(rs.at(-1)?.event).toMatchObject({ type: 'run.completed', outcome: 'failed' });
    expect(types(rs)).toContain('target.thawed');
    // The application runs again and writes, as a thawed server does.
    const file = path.join(L.target, 'ehr/Y/outbound/msg-00001.hl7');
    await writeFile(file, 'MSH|written while the target was thawed\r');
    const resumed = await resumeRun(failed.runId, o);
    expect(resumed.outcome, JSON.stringify(resumed.error)).toBe('landed');
    rs = await journalOf(L.stateDir, failed.runId);
    const t = types(rs);
    expect(t.filter((x) => x === 'target.frozen')).toHaveLength(2);
    expect(t.indexOf('phases.reopened')).toBeLessThan(t.lastIndexOf('target.frozen'));
    expect(t.lastIndexOf('target.frozen')).toBeLessThan(t.indexOf('crossing.started'));
    const finals = rs.flatMap((x) => (x.event.type === 'artifact.captured' && x.event.artifact.phase === 'final-capture' ? [x.event.artifact] : []));
    expect(finals.some((a) => a.itemId === 'folder:ehr/Y' && a.id.includes('.final-capture-2.'))).toBe(true);
    expect(await readFile(file, 'utf8')).toContain('written while the target was thawed');
  });
});
