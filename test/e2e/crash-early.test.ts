import { afterEach, describe, it } from 'vitest';
import { crashInProcessThenResume } from './crash-harness.ts';
import { removeTempDirs } from './helpers.ts';

/**
 * Dies (in-process, src/run/faults.ts) at each checkpoint of discover and
 * capture, then resumes: the run lands as an uninterrupted one would. The
 * crash files are split (early, middle, late, SIGKILL) so vitest runs them
 * in parallel.
 */
const CHECKPOINTS = [
  'run.started', // the journal holds nothing but the start
  'item.discovered#3', // discover
  'phase.completed#1', // discover done, capture not begun
  'capture.started#2', // capture: a method started, nothing stored
  'capture.stored.capture#4', // capture: objects in both vaults, the artifact not journaled
  'artifact.captured#6', // capture: between two artifacts
];

afterEach(removeTempDirs);

describe('crash in discover or capture, then resume', () => {
  it.each(CHECKPOINTS)('%s', async (fault) => {
    await crashInProcessThenResume(fault);
  });
});
