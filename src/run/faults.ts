/**
 * Fault injection for the crash tests: RUBICON_FAULT=kill@<checkpoint>[#n]
 * makes the process SIGKILL itself the n-th time (default 1st) it passes the
 * named checkpoint. Journal appends are checkpoints named after the event
 * type (e.g. `kill@artifact.captured#3`); risky operations name their own
 * (e.g. `kill@crossing.half-wiped`). `stop@<checkpoint>[#n]` SIGSTOPs the
 * process there instead, so a test can act on the machines at an exact
 * point (the story's vendor technician after the proofs) and SIGCONT it.
 * Unset in production: one string compare.
 */
const spec = process.env.RUBICON_FAULT;
const match = spec ? /^(kill|stop)@([^#]+)(?:#(\d+))?$/.exec(spec) : null;
const action = match?.[1];
const wanted = match?.[2];
const nth = match?.[3] ? Number(match[3]) : 1;
let seen = 0;

export function checkpoint(name: string): void {
  if (wanted === undefined || name !== wanted) return;
  seen += 1;
  if (seen === nth) process.kill(process.pid, action === 'stop' ? 'SIGSTOP' : 'SIGKILL');
}
