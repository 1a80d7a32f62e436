import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/** Dies (in-process, src/run/faults.ts) in the crossing, the landing and the report, then resumes. */
const CHECKPOINTS = [
  'crossing.confirmed', // crossing: confirmed, not started
  'crossing.started', // crossing: journaled, nothing wiped
  'crossing.half-wiped', // crossing: half the target gone
  'crossing.wiped', // crossing: wiped, the new os-release not written
  'crossing.completed', // crossing done, landing not begun
  'landing.restored#2', // landing: restored, not validated
  'landing.validated#4', // landing: between two items
  'rollback.released', // landing: validated, rollback point released, phase not completed
  'report.written', // report: written, the run not completed
];

afterEach(removeTempDirs);

describe('crash in the crossing, the landing or the report, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });
});
