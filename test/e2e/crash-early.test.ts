import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/**
 * Dies (in-process, src/run/faults.ts) at a checkpoint, then resumes: the
 * run lands as an uninterrupted one would. The crash files (early, middle,
 * late, SIGKILL) split the checkpoints so vitest runs them in parallel; the
 * real SIGKILL cases (crash-sigkill.test.ts) cover capture.stored.capture#4,
 * proof.recorded#5, crossing.half-wiped and phase.completed#1.
 */
const CHECKPOINTS = [
  'item.discovered#3', // discover
  'capture.started#2', // capture: a method started, nothing stored
  'artifact.captured#6', // capture: between two artifacts
  'capture.stored.capture#9', // capture: the everything capture of the target root stored (after 3 database methods and 5 folders), not journaled
  'copy.checked#3', // prove: a copy graded, its proof not recorded
];

afterEach(removeTempDirs);

describe('crash in discover, capture or prove, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });

  // One estate, a crash in the first run and in each of five resumes: at the points between phases
  // and steps where nothing but the journal changes, and the repeated crash itself.
  it('a chain of crashes: run.started, then in each resume phase.completed#1, drift.scanned#2, crossing.confirmed, crossing.completed, rollback.released', async () => {
    await crashInProcessThenResume('run.started', 'phase.completed#1', 'drift.scanned#2', 'crossing.confirmed', 'crossing.completed', 'rollback.released');
  });
});
