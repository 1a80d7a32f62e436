import { createHash } from 'node:crypto';
import { RubiconError } from '../core/errors.ts';
import type { Command } from './machine.ts';

/**
 * What the local and ssh transports share on a POSIX machine: quoting for
 * `sh`, and the step protocol that makes a long step survive the death of
 * the orchestrator (kill -9, a dropped ssh connection).
 *
 * The step protocol, on the machine, in a folder per step
 * (`<workDir>/steps/<runId>/<key>/`):
 *   in   the step's stdin, written before it starts (optional)
 *   pid  "<pid> <start time in clock ticks>" of the step's process group leader
 *   out  stdout, err  stderr (kept on the machine, read back bounded)
 *   rc   the exit code, written (temp + rename) when the program ended
 * The program runs under `setsid` (its own session, so a hang-up of the
 * connection does not reach it) and, with a deadline, under coreutils
 * `timeout`, so the machine enforces the deadline even when the orchestrator
 * is gone. A second call with the same folder:
 *   rc present                          → the recorded result (re-attached)
 *   pid alive (same start time)         → waits for it (re-attached)
 *   pid gone, no rc, idempotent         → runs it again
 *   pid gone, no rc, not idempotent     → "lost": the caller fails with STEP_LOST
 * The wrapper prints exactly one status line `RUBICON-STEP <state> <rc>`
 * and never exits 255 itself (ssh uses 255 for its own failures).
 */

/** POSIX single-quoting: the argument arrives byte for byte in `sh`. */
export function shQuote(arg: string): string {
  if (arg.includes('\0')) throw new RubiconError('ARGUMENTS_INVALID', 'a command argument contains a NUL byte, which no shell can pass');
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function shJoin(argv: readonly string[]): string {
  return argv.map(shQuote).join(' ');
}

/** `sh -c SCRIPT rubicon ARGS…` as one string for a remote login shell. */
export function shScript(script: string, args: readonly string[]): string {
  return shJoin(['sh', '-c', script, 'rubicon', ...args]);
}

/** argv with env and cwd applied, for a program started without a shell of its own. */
export function commandArgv(cmd: Command): string[] {
  const env = Object.entries(cmd.env ?? {});
  for (const [k] of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new RubiconError('ARGUMENTS_INVALID', `environment variable name "${k}" is not valid`);
  }
  const withEnv = env.length > 0 ? ['env', ...env.map(([k, v]) => `${k}=${v}`), ...cmd.argv] : [...cmd.argv];
  if (cmd.cwd === undefined) return withEnv;
  return ['sh', '-c', 'cd "$1" || exit 125; shift; exec "$@"', 'rubicon', cmd.cwd, ...withEnv];
}

/** The folder name of a step on the machine: readable and collision-free. */
export function stepFolderName(stepId: string): string {
  const digest = createHash('sha256').update(stepId).digest('hex').slice(0, 16);
  const tail = stepId.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-48);
  return `${digest}-${tail}`;
}

/**
 * The whole step in ONE call to the machine (one ssh round trip): the
 * step's stdin arrives on this script's stdin and is written to `in`
 * before the program starts, and the output is printed after the status
 * line. $1 step folder, $2 idempotent (1/0), $3 deadline in seconds (0 =
 * none), $4 cwd ('' = stay), $5 stdin given (1/0), $6 max bytes kept per
 * output stream, then the argv.
 *
 * Prints exactly one status line `RUBICON-STEP <state> [<rc> <how>]`
 * first; for `done` it is followed by STEP_OUTPUT's format: "<n>\n", the
 * last n bytes of stdout, then the last bytes of stderr.
 *
 * Guarantees kept from the three-call protocol it replaces (input write,
 * wrapper, output read): `in` is complete (temp + rename) before the
 * program starts; a re-attach never rewrites a running step's `in`; the
 * program still runs under setsid, so a dropped connection while it runs
 * (or while its output is printed) does not reach it, and a second call
 * re-attaches to the recorded result.
 */
export const STEP_SCRIPT = String.raw`
d=$1; idem=$2; deadline=$3; wd=$4; hasin=$5; max=$6; shift 6
mkdir -p "$d" || { [ "$hasin" = 1 ] && cat > /dev/null; echo "RUBICON-STEP error mkdir"; exit 0; }
if [ "$hasin" = 1 ]; then
  ( umask 077; cat > "$d/in.next" ) || { rm -f "$d/in.next"; echo "RUBICON-STEP error input"; exit 0; }
fi
starttime() { [ -r "/proc/$1/stat" ] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(starttime "$1")" = "$2" ]; }
report() {
  rm -f "$d/in.next"
  echo "RUBICON-STEP done $(cat "$d/rc") $1"
  s=0; [ -f "$d/out" ] && s=$(wc -c < "$d/out")
  [ "$s" -gt "$max" ] && s=$max
  echo "$s"
  [ -f "$d/out" ] && tail -c "$max" "$d/out"
  [ -f "$d/err" ] && tail -c "$max" "$d/err"
  exit 0
}
if [ -f "$d/rc" ]; then report reattached; fi
if [ -f "$d/pid" ]; then
  read -r pid st < "$d/pid" || true
  if alive "$pid" "$st"; then
    while [ ! -f "$d/rc" ] && alive "$pid" "$st"; do sleep 0.1; done
  fi
  if [ -f "$d/rc" ]; then report reattached; fi
  if [ "$idem" != 1 ]; then rm -f "$d/in.next"; echo "RUBICON-STEP lost"; exit 0; fi
  rm -f "$d/pid" "$d/out" "$d/err"
fi
if [ "$hasin" = 1 ]; then mv -f "$d/in.next" "$d/in" || { echo "RUBICON-STEP error input"; exit 0; }; fi
if [ "$deadline" != 0 ]; then set -- timeout --kill-after=10 "$deadline" "$@"; fi
setsid sh -c '
  d=$1; wd=$2; shift 2
  if [ -n "$wd" ]; then cd "$wd" || { echo 125 > "$d/rc.tmp"; mv "$d/rc.tmp" "$d/rc"; exit; }; fi
  if [ -f "$d/in" ]; then i="$d/in"; else i=/dev/null; fi
  "$@" < "$i" > "$d/out" 2> "$d/err"
  echo $? > "$d/rc.tmp"; mv "$d/rc.tmp" "$d/rc"
' rubicon-step "$d" "$wd" "$@" < /dev/null > /dev/null 2>&1 &
pid=$!
echo "$pid $(starttime "$pid")" > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
wait "$pid"
if [ -f "$d/rc" ]; then report fresh; fi
echo "RUBICON-STEP killed"
`;

/** Kills a step's process group. $1 step folder. Idempotent. */
export const STEP_CANCEL_SCRIPT = String.raw`
d=$1
[ -f "$d/pid" ] || exit 0
read -r pid st < "$d/pid" || exit 0
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
`;

/**
 * Reads the step's output files, bounded (STEP_SCRIPT prints the same
 * after its status line; kept for reading a step's output on its own): $1
 * folder, $2 max bytes per stream. Prints "<n>\n", then the last n bytes of stdout (which may hold
 * NULs: sha256sum -z), then stderr's last bytes.
 */
export const STEP_OUTPUT_SCRIPT = String.raw`
d=$1; n=$2
s=0; [ -f "$d/out" ] && s=$(wc -c < "$d/out")
[ "$s" -gt "$n" ] && s=$n
echo "$s"
[ -f "$d/out" ] && tail -c "$n" "$d/out"
[ -f "$d/err" ] && tail -c "$n" "$d/err"
exit 0
`;

export const READ_SMALL_SCRIPT = String.raw`
[ -f "$1" ] || exit 44
s=$(stat -c %s -- "$1") || exit 44
[ "$s" -le "$2" ] || { echo "$s" >&2; exit 45; }
exec cat -- "$1"
`;

export const WRITE_SMALL_SCRIPT = String.raw`
umask 077
mkdir -p -- "$(dirname -- "$1")" || exit 46
t="$1.rubicon-tmp.$$"
cat > "$t" && chmod "$2" "$t" && mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 46; }
`;

/**
 * Several small files in one call: stdin is their bytes, one after the
 * other; the arguments are triples (path, octal mode, byte count). Each
 * file is written like WRITE_SMALL_SCRIPT (temp file, chmod, rename) and
 * checked to have its full length before the rename. Exit 46 on a failure
 * (files before it are written; none is ever left half-written).
 * `head -c N` reads exactly N bytes from a pipe (coreutils bounds each read
 * by what is left), so the next file starts where it should.
 */
export const WRITE_FILES_SCRIPT = String.raw`
umask 077
while [ $# -ge 3 ]; do
  f=$1; m=$2; n=$3; shift 3
  mkdir -p -- "$(dirname -- "$f")" || exit 46
  t="$f.rubicon-tmp.$$"
  head -c "$n" > "$t" || { rm -f -- "$t"; exit 46; }
  [ "$(stat -c %s -- "$t")" = "$n" ] || { rm -f -- "$t"; echo "rubicon: short input for $f" >&2; exit 46; }
  chmod "$m" "$t" && mv -f -- "$t" "$f" || { rm -f -- "$t"; exit 46; }
done
`;

export type StepStatus =
  | { state: 'done'; exitCode: number; reattached: boolean }
  | { state: 'lost' }
  | { state: 'killed' }
  | { state: 'error'; detail: string };

/** Parses the wrapper's status line (the last line that starts with RUBICON-STEP). */
export function parseStepStatus(stdout: string): StepStatus | undefined {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('RUBICON-STEP '))
    .at(-1);
  if (!line) return undefined;
  const [, state, a, b] = line.split(' ');
  if (state === 'done' && a !== undefined && /^\d+$/.test(a)) return { state: 'done', exitCode: Number(a), reattached: b === 'reattached' };
  if (state === 'lost') return { state: 'lost' };
  if (state === 'killed') return { state: 'killed' };
  return { state: 'error', detail: line };
}

/**
 * Splits STEP_SCRIPT's combined output: the FIRST line starting with
 * `RUBICON-STEP ` is the status (anything before it is login noise of the
 * machine's shell); what follows it is the output block. Pure.
 */
export function splitStepReply(bytes: Uint8Array): { status: StepStatus | undefined; rest: Uint8Array } {
  const buf = Buffer.from(bytes);
  const tag = Buffer.from('RUBICON-STEP ');
  let at = buf.indexOf(tag);
  while (at > 0 && buf[at - 1] !== 10) at = buf.indexOf(tag, at + 1);
  if (at < 0) return { status: undefined, rest: new Uint8Array() };
  const nl = buf.indexOf(10, at);
  const line = buf.subarray(at, nl < 0 ? buf.length : nl).toString('utf8');
  return { status: parseStepStatus(line), rest: nl < 0 ? new Uint8Array() : buf.subarray(nl + 1) };
}

/** Splits STEP_OUTPUT_SCRIPT's output. */
export function splitStepOutput(bytes: Uint8Array): { stdout: string; stderr: string } {
  const buf = Buffer.from(bytes);
  const nl = buf.indexOf(10);
  const n = nl > 0 ? Number(buf.subarray(0, nl).toString('ascii').trim()) : NaN;
  if (!Number.isInteger(n) || n < 0) return { stdout: '', stderr: buf.toString('utf8') };
  return { stdout: buf.subarray(nl + 1, nl + 1 + n).toString('utf8'), stderr: buf.subarray(nl + 1 + n).toString('utf8') };
}

export function stepLost(machine: string, stepId: string): RubiconError {
  return new RubiconError('STEP_LOST', `step ${stepId} on ${machine} was started by an earlier run and ended without a recorded result; it is not safe to run it twice`, {
    hint: `check on ${machine} whether it finished (its folder under the machine's Rubicon work folder keeps its output), then start a new run`,
  });
}
