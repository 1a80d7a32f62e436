import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/** Dies (in-process, src/run/faults.ts) between the permit and the end of the report, then resumes. */
const CHECKPOINTS = [
  'permit.issued', // gate: the permit issued, the crossing not begun
  'crossing.started', // crossing: journaled, nothing wiped
  'crossing.wiped', // crossing: wiped, the new os-release not written
  'landing.restored#2', // landing: restored, not validated
  'landing.validated#4', // landing: between two items
  'report.written', // report: written, the run not completed
];

afterEach(removeTempDirs);

describe('crash in the crossing, the landing or the report, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });
});
