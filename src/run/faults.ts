/**
 * Fault injection for the crash tests: RUBICON_FAULT=kill@<checkpoint>[#n]
 * makes the process SIGKILL itself the n-th time (default 1st) it passes the
 * named checkpoint. Journal appends are checkpoints named after the event
 * type (e.g. `kill@artifact.captured#3`); risky operations name their own
 * (e.g. `kill@crossing.wiped`). Unset in production: one string compare.
 */
const spec = process.env.RUBICON_FAULT;
const match = spec ? /^kill@([^#]+)(?:#(\d+))?$/.exec(spec) : null;
const wanted = match?.[1];
const nth = match?.[2] ? Number(match[2]) : 1;
let seen = 0;

export function checkpoint(name: string): void {
  if (wanted === undefined || name !== wanted) return;
  seen += 1;
  if (seen === nth) process.kill(process.pid, 'SIGKILL');
}
