/**
 * The summary of a run: what `--json` prints as its last line and what the
 * CLI renders at the end (src/run/run.ts builds it from the run state).
 * Types only, so the JSON Schema of the summary (docs/schema/summary.schema.json,
 * scripts/schemas.ts) is generated from exactly these.
 *
 * Contract: fields may be added; none changes meaning or is removed.
 */
import type { RunOutcome } from './events.ts';
import type { RunState } from './state.ts';
import type { ChecklistRow } from './types.ts';

export interface RunSummary {
  runId: string;
  outcome: RunOutcome;
  exitCode: number;
  /**
   * The gate's verdict. `refusals`: the failed rules (why it refused; empty
   * on a pass); `warnings`: rules that passed with a warning or an override
   * (a pass can have them); `reasons`: refusals on a refusal, else warnings
   * (kept for older pipelines: prefer the two fields).
   */
  gate: { passed: boolean; reasons: string[]; refusals: string[]; warnings: string[] } | null;
  checklist: ChecklistRow[];
  artifacts: { id: string; itemId: string; method: string; origin: string; bytes: number; files: number }[];
  proofs: { id: string; artifactId: string; outcome: string; vault: string; durationMs: number; failed: string[] }[];
  drift: { itemId: string; stage: string; changes: number; paths: string[] }[];
  reports: { kind: string; path: string }[];
  error?: { code: string; message: string; hint?: string };
  stateDir: string;
  /** True when this run rebuilt its target (upgrade, or a rehearsal on a staging target). */
  crossed: boolean;
  /** The maintenance window predicted from measured restore durations (see the report's estimate). */
  window: {
    totalMs: number;
    withMarginMs: number;
    unknownItems: string[];
    /** The crossing counted in: this run's, or the newest earlier run's of the same target (null: not measured yet). */
    crossing: { ms: number; source: string } | null;
    /** The line people see, the report's own sentence (src/report/model.ts describeWindow). */
    text: string;
  } | null;
  /** Plain findings for people, e.g. a production database that is itself damaged (src/run/findings.ts). */
  findings: string[];
  /** At a manual crossing: what the engineer must do. */
  crossingInstructions?: string;
  /** What the run would do: methods per item, the vaults, the policy in force. */
  plan: { methods: { itemId: string; methods: string[] }[]; vaults: string[]; policy: RunState['policy']; rule32110: { holds: boolean; text: string } };
}

/**
 * The last line of `--json` when a command stopped before any run began
 * (invalid input: a runbook, an argument, no way to confirm): nothing was
 * touched, no run id exists. Printed by the CLI (src/cli/main.ts).
 */
export interface StoppedSummary {
  runId: null;
  outcome: 'invalid-input' | 'failed';
  exitCode: number;
  error: { code: string; message: string; hint?: string };
}

/** One `--json` summary line: a run's summary, or a command that stopped before a run began. */
export type SummaryLine = { kind: 'summary' } & (RunSummary | StoppedSummary);

