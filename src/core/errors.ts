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

export function isRubiconError(e: unknown): e is RubiconError {
  return e instanceof RubiconError;
}

/** Exit code for any thrown value: RubiconErrors by the table, anything else 1. */
export function exitCodeOf(e: unknown): ExitCode {
  return isRubiconError(e) ? e.exitCode : EXIT.failure;
}
