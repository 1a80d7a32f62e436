/**
 * Fault injection for the crash tests. Two ways to die at a named
 * checkpoint; both fire the n-th time (default 1st) the run passes it.
 *
 * - RUBICON_FAULT=kill@<checkpoint>[#n] (environment): the process SIGKILLs
 *   itself. Real death: nothing after it runs, not even a `finally`; open
 *   files, the lock file, child processes and worker threads are left as
 *   they are. The spawned-CLI crash tests use this.
 *   (`stop@<checkpoint>[#n]` SIGSTOPs the process there instead, so a test
 *   can act on the machines at an exact point, the story's vendor
 *   technician after the proofs, and SIGCONT it.)
 * - simulateCrashAt('<checkpoint>[#n]') (tests, in the test's own process):
 *   a simulated death, so the crash tests need not start a process, build a
 *   full estate and play a whole demo per checkpoint.
 *
 * Checkpoints: every journal append is one, named after the event type
 * (`artifact.captured#3`), fired after the record is durable; risky
 * operations name their own (`crossing.half-wiped`, `capture.stored.capture`,
 * `rollback.copied`, `freeze.marked`).
 *
 * Design of the in-process crash (what "behave like it died" means here):
 *
 * 1. Nothing more reaches the journal. At the checkpoint the module is
 *    sealed: `checkpoint` throws a SimulatedCrash, and every later
 *    Journal.append calls `assertAlive()` first and throws the same
 *    SimulatedCrash before writing a byte. So a catch block anywhere in the
 *    run that tries to turn the crash into a recorded failure
 *    (`capture.failed`, `landing.validated failed`, a note, `run.completed`)
 *    throws again instead: the journal on disk ends exactly where a SIGKILL
 *    at that point would have left it.
 * 2. Nothing converts it into an outcome. run.ts calls `rethrowIfCrashed`
 *    first in each of its catch blocks, so the crash is never turned into a
 *    RubiconError, a thaw, a report or a summary: startRun/resumeRun reject
 *    with the SimulatedCrash itself. It checks the seal, not only the error
 *    it caught, so a crash that some inner catch wrapped into another error
 *    is still recognised.
 * 3. What is not like a real death, and why that is acceptable:
 *    - `finally` blocks run while the crash unwinds: the journal file is
 *      closed, work folders are removed, and the lock is released (the
 *      lock's pid is this live test process, so it must go; a lock left by
 *      a dead process is taken over by the resume, which the real-SIGKILL
 *      tests exercise). None of them writes the journal (sealed) or the
 *      target.
 *    - Work still in flight elsewhere is not stopped by the throw: the
 *      proving child process keeps running until the test aborts the
 *      run's AbortSignal right after the crash (the child is spawned with
 *      that signal). Phases are sequential between journal appends, so no
 *      other promise of the crashed run is left running.
 *    - Effects already done stay done (files copied into vaults, the half
 *      wiped target, the rollback copy), exactly as after a SIGKILL.
 *    - Module state survives (this process keeps running); resetFaults()
 *      must be called before the test resumes the run in the same process.
 *
 * Production never arms either: RUBICON_FAULT unset costs one compare.
 */

export class SimulatedCrash extends Error {
  readonly checkpoint: string;
  constructor(checkpoint: string) {
    super(`simulated crash at checkpoint ${checkpoint}`);
    this.name = 'SimulatedCrash';
    this.checkpoint = checkpoint;
  }
}

interface Armed {
  how: 'kill' | 'stop' | 'simulate';
  spec: string;
  name: string;
  nth: number;
  seen: number;
}

function parseSpec(spec: string, how: Armed['how']): Armed {
  const m = /^([^#@]+)(?:#(\d+))?$/.exec(spec);
  if (!m?.[1]) throw new Error(`fault spec "${spec}" is not <checkpoint>[#n]`);
  return { how, spec, name: m[1], nth: m[2] ? Number(m[2]) : 1, seen: 0 };
}

const envSpec = process.env.RUBICON_FAULT;
const envMatch = envSpec ? /^(kill|stop)@(.+)$/.exec(envSpec) : null;
let armed: Armed | undefined = envMatch?.[2] ? parseSpec(envMatch[2], envMatch[1] as 'kill' | 'stop') : undefined;
let sealed: SimulatedCrash | undefined;

/** Tests: the n-th pass of `spec` (`<checkpoint>[#n]`) simulates the death of this process (see above). */
export function simulateCrashAt(spec: string): void {
  armed = parseSpec(spec, 'simulate');
  sealed = undefined;
}

/** Tests: disarms and unseals, so the same process can resume the run. */
export function resetFaults(): void {
  armed = undefined;
  sealed = undefined;
}

/** The simulated crash that sealed this process, if one did. */
export function crashed(): SimulatedCrash | undefined {
  return sealed;
}

/** Called before every journal write: a dead process writes nothing. */
export function assertAlive(): void {
  if (sealed) throw sealed;
}

/** For the run's catch blocks: a simulated crash passes through untouched, never becoming an outcome. */
export function rethrowIfCrashed(e: unknown): void {
  if (e instanceof SimulatedCrash) throw e;
  if (sealed) throw sealed;
}

export function checkpoint(name: string): void {
  if (sealed) throw sealed;
  if (armed === undefined || name !== armed.name) return;
  armed.seen += 1;
  if (armed.seen !== armed.nth) return;
  if (armed.how === 'kill') process.kill(process.pid, 'SIGKILL');
  if (armed.how === 'stop') {
    process.kill(process.pid, 'SIGSTOP'); // continues here after SIGCONT
    return;
  }
  sealed = new SimulatedCrash(armed.spec);
  throw sealed;
}
