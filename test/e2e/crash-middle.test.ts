import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/** Dies (in-process, src/run/faults.ts) in prove, freeze, final capture and the gate, then resumes. */
const CHECKPOINTS = [
  'copy.checked#3', // prove: a copy graded, its proof not recorded
  'proof.recorded#5', // prove: between two proofs
  'freeze.marked', // freeze: the target frozen, not yet journaled
  'target.frozen', // freeze: journaled, no drift scan yet
  'drift.scanned#2', // freeze: in the middle of the drift scan
  'capture.stored.final-capture', // final capture: the delta stored, not journaled
  'rollback.copied', // gate: the rollback copy made, not yet in place
  'rollback.created', // gate: the rollback point journaled, no gate yet
  'gate.evaluated', // gate: evaluated, no permit
  'permit.issued', // gate: the permit issued, the crossing not begun
];

afterEach(removeTempDirs);

describe('crash in prove, freeze, final capture or the gate, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });
});
