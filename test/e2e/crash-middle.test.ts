import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/** Dies (in-process, src/run/faults.ts) in freeze, final capture and the gate, then resumes. */
const CHECKPOINTS = [
  'freeze.marked', // freeze: the target frozen, not yet journaled
  'target.frozen', // freeze: journaled, no drift scan yet
  'capture.stored.final-capture', // final capture: the delta stored, not journaled
  'rollback.copied', // gate: the rollback copy made, not yet in place
  'rollback.created', // gate: the rollback point journaled, no gate yet
  'gate.evaluated', // gate: evaluated, no permit
];

afterEach(removeTempDirs);

describe('crash in freeze, final capture or the gate, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });
});
