import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Command, ExecOptions, Machine, StepKey, StepResult } from '../machines/machine.ts';
import { stepFolderName } from '../machines/posix.ts';
import type { RunOnMachine } from '../machines/tree.ts';
import { encodeArgs, type WindowsScriptName } from '../machines/windows/scripts.ts';
import { checkWindowsScript, isWindowsMachine, type WindowsScriptRun } from '../machines/windows/windows-machine.ts';
import { RubiconError } from '../core/errors.ts';

/**
 * Steps keyed by the journal: a long action on a machine is recorded
 * (`step.started`, with its id) before it starts, and its end
 * (`step.completed`) after. On resume the same id is run again: the
 * machine's step protocol re-attaches to it or re-runs it when it is
 * idempotent, and refuses (STEP_LOST) when it is not (src/machines/).
 *
 * The tool's output never goes into the journal, the event stream or a
 * report (it may hold patient data: a vendor job printing rows). It is
 * written to a log file beside the run (`<run>/logs/<step>.log`), and the
 * journal keeps that file's path, SHA-256, size and line count, so an
 * auditor can check the log was not altered.
 */
export interface StepJournal {
  record(e:
    | { type: 'step.started'; stepId: string; machine: string; what: string; idempotent: boolean }
    | { type: 'step.completed'; stepId: string; exitCode: number; durationMs: number; reattached: boolean; log?: { path: string; sha256: string; lines: number; bytes: number } }): void;
  /** Steps already completed, by id (from the journal). */
  completed(stepId: string): { exitCode: number } | undefined;
  started(stepId: string): boolean;
}

export interface StepRunner {
  run(machine: Machine, key: StepKey, cmd: Command, what: string, options?: ExecOptions): Promise<StepResult>;
  /** The same, in the shape src/machines/tree.ts takes. */
  readonly onMachine: RunOnMachine;
  /**
   * One of Rubicon's Windows scripts (src/machines/windows/scripts/) as a
   * journaled step on a Windows machine: `step.started` before, the
   * script's protocol output into the step's log file (never the journal),
   * `step.completed` after, then the output checked (sentinel, SHA-256,
   * length, script, argument digest, exit code: SCRIPT_OUTPUT_INVALID) and
   * an error result turned into SCRIPT_FAILED (details.scriptCode) unless
   * `allowError`. Same re-attach / STEP_LOST contract as run().
   */
  runScript<T = unknown>(
    machine: Machine,
    key: StepKey,
    name: WindowsScriptName,
    args: Record<string, unknown>,
    what: string,
    options?: ExecOptions & { allowError?: boolean },
  ): Promise<WindowsScriptRun<T> & { data: T | undefined }>;
}

export function createStepRunner(journal: StepJournal, runDir: string, runId: string): StepRunner {
  const logs = path.join(runDir, 'logs');
  const runner: StepRunner = {
    async run(machine, key, cmd, what, options) {
      const id = key.id.startsWith(`${runId}/`) ? key.id : `${runId}/${key.id}`;
      const full = { ...key, id };
      if (!journal.started(id)) journal.record({ type: 'step.started', stepId: id, machine: machine.name, what, idempotent: key.idempotent });
      const r = await machine.run(full, cmd, options);
      const log = writeLog(logs, runDir, id, machine.name, what, r);
      journal.record({ type: 'step.completed', stepId: id, exitCode: r.exitCode, durationMs: r.durationMs, reattached: r.reattached, log });
      return r;
    },
    async runScript<T>(machine: Machine, key: StepKey, name: WindowsScriptName, args: Record<string, unknown>, what: string, options: ExecOptions & { allowError?: boolean } = {}) {
      if (!isWindowsMachine(machine)) {
        throw new RubiconError('INTERNAL', `${machine.name} (${machine.address}) is not a Windows machine: the ${name} script runs only over openssh-windows or azure-run-command`);
      }
      const id = key.id.startsWith(`${runId}/`) ? key.id : `${runId}/${key.id}`;
      const encodedArgs = encodeArgs(args);
      const { allowError, ...exec } = options;
      if (!journal.started(id)) journal.record({ type: 'step.started', stepId: id, machine: machine.name, what, idempotent: key.idempotent });
      const r = await machine.runScript({ ...key, id }, name, encodedArgs, exec);
      const log = writeLog(logs, runDir, id, machine.name, what, r);
      journal.record({ type: 'step.completed', stepId: id, exitCode: r.exitCode, durationMs: r.durationMs, reattached: r.reattached, log });
      return checkWindowsScript<T>(r, name, encodedArgs, allowError === true);
    },
    onMachine: async (machine, key, argv, input, options) => {
      const r = await runner.run(machine, key, { argv, ...(input !== undefined ? { input } : {}) }, `${argv[0] === 'sh' ? 'script' : argv[0]} on ${machine.name}`, options);
      return r;
    },
  };
  return runner;
}

function writeLog(dir: string, runDir: string, stepId: string, machine: string, what: string, r: StepResult): { path: string; sha256: string; lines: number; bytes: number } {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${stepFolderName(stepId)}.log`);
  const text =
    `# step ${stepId} on ${machine}: ${what}\n# exit ${r.exitCode}${r.reattached ? ' (re-attached)' : ''}, ${r.durationMs} ms\n` +
    `# --- stdout\n${r.stdout}${r.stdout.endsWith('\n') || r.stdout === '' ? '' : '\n'}# --- stderr\n${r.stderr}${r.stderr.endsWith('\n') || r.stderr === '' ? '' : '\n'}`;
  appendFileSync(file, text, { mode: 0o600 });
  const bytes = Buffer.byteLength(text);
  return {
    path: path.relative(runDir, file),
    sha256: createHash('sha256').update(text).digest('hex'),
    lines: text.split('\n').length - 1,
    bytes,
  };
}

/**
 * Lines of a tool's stderr that may be shown to people and kept in the
 * journal: only those that match a known message shape (error codes, the
 * tool's own fixed phrases), each cut to 200 characters. Anything else (a
 * row a vendor job printed) stays in the log file.
 */
export function safeToolLines(stderr: string, shapes: readonly RegExp[], max = 3): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && shapes.some((re) => re.test(l)))
    .slice(0, max)
    .map((l) => (l.length > 200 ? `${l.slice(0, 200)}…` : l));
}
