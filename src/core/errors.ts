/**
 * Typed errors with stable codes. One table (EXIT_CODES) maps them to process
 * exit codes; only the CLI's top-level catch reads it and exits.
 *
 * Contract: a RubiconError's message is written for a person at 2 a.m.: it
 * names the file / field / item at fault and says how to fix it. It never
 * contains a secret or patient data.
 */

export const EXIT = {
  ok: 0,
  failure: 1,
  gateRefused: 2,
  invalidInput: 3,
  /** A manual crossing is waiting for the engineer: `rubicon confirm RUN_ID --crossed` (or `resume --yes`) continues. */
  waiting: 4,
  /** SIGINT / SIGTERM: the run stopped where it was, thawed, and `rubicon resume` continues it. */
  interrupted: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Stable error codes. Never renumber or rename: pipelines match on them. */
export const ERROR_CODES = {
  RUNBOOK_INVALID: EXIT.invalidInput,
  RUNBOOK_NOT_FOUND: EXIT.invalidInput,
  ARGUMENTS_INVALID: EXIT.invalidInput,
  RUN_NOT_FOUND: EXIT.invalidInput,
  GATE_REFUSED: EXIT.gateRefused,
  CROSSING_NOT_CONFIRMED: EXIT.gateRefused,
  PERMIT_INVALID: EXIT.gateRefused,
  LOCK_HELD: EXIT.failure,
  JOURNAL_CORRUPT: EXIT.failure,
  VAULT_CORRUPT: EXIT.failure,
  VAULT_MISSING_OBJECT: EXIT.failure,
  VAULT_IO: EXIT.failure,
  COMMAND_FAILED: EXIT.failure,
  ENGINE_FAILED: EXIT.failure,
  CAPTURE_FAILED: EXIT.failure,
  LANDING_FAILED: EXIT.failure,
  INFRA_FAILED: EXIT.failure,
  /** A remote script's stdout lacks a valid sentinel (truncated, altered, not ours): src/machines/windows/scripts.ts. */
  SCRIPT_OUTPUT_INVALID: EXIT.failure,
  /** A remote script ran and reported an error result with its own stable code (details.scriptCode). */
  SCRIPT_FAILED: EXIT.failure,
  INTERNAL: EXIT.failure,
  /** A machine (target, proving ground, vault host) could not be reached: network, sshd down. */
  MACHINE_UNREACHABLE: EXIT.failure,
  /** A machine's host key is unknown or changed (the runbook's known_hosts file). */
  MACHINE_HOST_KEY: EXIT.failure,
  /** A machine refused Rubicon's key. */
  MACHINE_AUTH: EXIT.failure,
  MACHINE_TIMEOUT: EXIT.failure,
  MACHINE_FAILED: EXIT.failure,
  MACHINE_FILE_MISSING: EXIT.failure,
  MACHINE_FILE_TOO_LARGE: EXIT.failure,
  /** A non-idempotent step started by an earlier process ended without a recorded result: never run twice. */
  STEP_LOST: EXIT.failure,
  /** A tool a method needs (restic, rsync, sqlite3, ...) is not installed where it must run. */
  TOOL_MISSING: EXIT.failure,
  /** Out of space on a vault, a machine or the state directory; resume finishes once space is freed. */
  NO_SPACE: EXIT.failure,
  /** A precondition broke in the middle of a run (not bad input: the run started). */
  PRECONDITION_FAILED: EXIT.failure,
  /** The machine is not the rebuilt server the runbook describes (manual crossing). */
  NOT_REBUILT: EXIT.failure,
  /** A grant (time-limited vault access) could not be given, was refused, or expired. */
  GRANT_FAILED: EXIT.failure,
  /** A vault refused its credentials: the restic repository password does not open the repository. */
  VAULT_PASSWORD: EXIT.failure,
  /** A journal record or a permit is not signed by the run's key: the evidence was altered; nothing is crossed or resumed from it. */
  EVIDENCE_INVALID: EXIT.failure,
  /** The run was interrupted by SIGINT/SIGTERM; resume continues it. */
  INTERRUPTED: EXIT.interrupted,
  /** A signing key the runbook names is missing, unreadable or not an Ed25519 PKCS#8 PEM key: nothing was touched. */
  KEY_INVALID: EXIT.invalidInput,
  /** A private-key file is readable by group or others: refused before it is used (chmod 600). */
  KEY_INSECURE: EXIT.invalidInput,
  /** The signing key is not the key the verifier trusts (e.g. the stack's rubicon:permitPublicKey): nothing was touched. */
  KEY_MISMATCH: EXIT.invalidInput,
  /** Data that must be signed cannot be put in canonical form (non-finite number, undefined in an array, a cycle, a non-JSON value). */
  CANONICAL_INVALID: EXIT.failure,
  /** A shared journal (--state azblob://…) was appended by another writer first: this process stops, nothing interleaved. */
  JOURNAL_CONFLICT: EXIT.failure,
  /** This run lost its target lock (its lease expired or was broken while it ran): it stops before doing more. */
  LOCK_LOST: EXIT.failure,
  /** Before capture of an upgrade: an engine's landing preflight says the server the target lands on cannot take what it runs now; nothing was captured or changed. */
  PREFLIGHT_REFUSED: EXIT.gateRefused,
  /**
   * A command that would reach the crossing cannot ask for its confirmation
   * (no terminal, or --json) and was not given --yes: refused before anything
   * runs, so an application is never stopped for nothing.
   */
  CONFIRMATION_UNAVAILABLE: EXIT.invalidInput,
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export interface RubiconErrorOptions {
  /** What the user should do next, e.g. the exact command to run. */
  hint?: string;
  /** The original error, kept for debugging; never printed to users by default. */
  cause?: unknown;
  /** Structured, secret-free details for the --json stream. */
  details?: Record<string, unknown>;
}

export class RubiconError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RubiconErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RubiconError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  get exitCode(): ExitCode {
    return ERROR_CODES[this.code];
  }
}

/**
 * A tool failed and its output may hold patient data (a vendor job printing
 * rows): the message carries only the exit code and error codes; the output
 * itself rides along on `output`, which is never serialized (not in
 * details, not in JSON), and the phases write it to a log file beside the
 * run, journaling only its path, hash and line count.
 */
export class ToolFailure extends RubiconError {
  readonly output: { stdout: string; stderr: string };

  constructor(code: ErrorCode, message: string, output: { stdout: string; stderr: string }, options: RubiconErrorOptions = {}) {
    super(code, message, options);
    Object.defineProperty(this, 'output', { value: output, enumerable: false });
    this.output = output;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message };
  }
}

/** Error codes and fixed shapes found in a tool's output (never the lines themselves, which may hold data). */
export function errorCodesIn(text: string): string[] {
  const found = new Set<string>();
  for (const re of [/\bSQLITE_[A-Z_]+\b/g, /\bMsg \d+\b/g, /\bE[A-Z]{3,12}\b(?=[:)\s])/g, /\berrno[ =]?\d+\b/gi, /\bexit(?:ed with)? (?:code|status) \d+\b/gi]) {
    for (const m of text.matchAll(re)) found.add(m[0]);
  }
  return [...found].slice(0, 8);
}

export function isRubiconError(e: unknown): e is RubiconError {
  return e instanceof RubiconError;
}

/** Exit code for any thrown value: RubiconErrors by the table, anything else 1. */
export function exitCodeOf(e: unknown): ExitCode {
  return isRubiconError(e) ? e.exitCode : EXIT.failure;
}

/**
 * Out of space, wherever it happened (a vault, a machine, the state
 * directory): the run must stop with exit 1 naming the place, and resume
 * once space is freed, never record a capture failure the gate would read
 * as "this method cannot capture it".
 */
export function outOfSpace(e: unknown): RubiconError | undefined {
  if (isRubiconError(e) && e.code === 'NO_SPACE') return e;
  const text = e instanceof Error ? `${e.message} ${(e.cause as { code?: string } | undefined)?.code ?? ''} ${(e as { code?: string }).code ?? ''}` : String(e);
  // SQLITE_FULL reads "database or disk is full" (node:sqlite and the sqlite3 shell).
  if (!/ENOSPC|No space left on device|Disk quota exceeded|EDQUOT|database or disk is full|SQLITE_FULL/.test(text)) return undefined;
  return new RubiconError('NO_SPACE', `out of space: ${e instanceof Error ? e.message : String(e)}`, {
    hint: 'free space where the message says, then resume the run (`rubicon resume RUN_ID`): nothing already captured is lost',
    cause: e,
  });
}

/**
 * Failures of the environment, not of a method: a machine that cannot be
 * reached or will not let Rubicon in, a tool missing where it must run, a
 * vault password that does not open the repository, or no space. They say
 * nothing about whether a method can capture or prove an item, so a phase
 * must stop the run with them (exit 1, naming the machine and the fix) and
 * never record them as a capture failure or a failed proof the gate would
 * count, which would also make the run final instead of resumable. Once
 * the fault is fixed, `rubicon resume` redoes exactly what was cut off.
 * Looks through `cause` chains (a wrapped ssh failure is still one).
 */
const ENVIRONMENT_CODES: ReadonlySet<ErrorCode> = new Set(['MACHINE_UNREACHABLE', 'MACHINE_HOST_KEY', 'MACHINE_AUTH', 'TOOL_MISSING', 'VAULT_PASSWORD']);
export function stopsTheRun(e: unknown): RubiconError | undefined {
  const full = outOfSpace(e);
  if (full) return full;
  for (let x: unknown = e, depth = 0; x !== undefined && x !== null && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    if (isRubiconError(x) && ENVIRONMENT_CODES.has(x.code)) return x;
  }
  return undefined;
}
