import { RubiconError } from '../../core/errors.ts';
import type { ExecOptions, Machine, StepKey, StepResult } from '../machine.ts';
import { encodeArgs, parseScriptOutput, scriptData, type ScriptOutput, type WindowsScriptName } from './scripts.ts';

/**
 * A Windows machine: the Machine contract (machine.ts) plus the one thing
 * every Windows transport does its own best way, running one of Rubicon's
 * Windows scripts (scripts.ts) as a keyed step. openssh-windows feeds the
 * script to a PowerShell on stdin through the hash-checking bootstrap;
 * azure-run-command embeds it in the run command's script.
 */
export interface WindowsMachine extends Machine {
  readonly os: 'windows';
  /**
   * Runs script `name` with its one argument (encodeArgs) as step `step`:
   * the same re-attach / re-run / STEP_LOST contract as run(). The result's
   * exitCode is the script's own (0 ok, 1 an error result); stdout holds
   * its protocol output for parseScriptOutput.
   */
  runScript(step: StepKey, name: WindowsScriptName, encodedArgs: string, options?: ExecOptions): Promise<StepResult>;
}

/** Asking, not instanceof: a machine that can run the Windows scripts. */
export function isWindowsMachine(m: Machine): m is WindowsMachine {
  return m.os === 'windows' && typeof (m as Partial<WindowsMachine>).runScript === 'function';
}

export interface WindowsScriptRun<T> {
  output: ScriptOutput<T>;
  /** The step result (exit code, duration, re-attached). Its stdout is the script's protocol output: read `output`, never journal it. */
  step: StepResult;
}

/**
 * Runs a Windows script on a Windows machine and verifies its output:
 * sentinel (SHA-256 and length), script name, argument digest, exit code.
 * Throws SCRIPT_OUTPUT_INVALID when the output cannot be trusted, and
 * SCRIPT_FAILED (with the script's own code in details.scriptCode) for an
 * error result unless `allowError` (then read output.result yourself).
 */
export async function runWindowsScript<T = unknown>(
  machine: Machine,
  step: StepKey,
  name: WindowsScriptName,
  args: Record<string, unknown>,
  options: ExecOptions & { allowError?: boolean } = {},
): Promise<WindowsScriptRun<T> & { data: T | undefined }> {
  if (!isWindowsMachine(machine)) {
    throw new RubiconError('INTERNAL', `${machine.name} (${machine.address}) is not a Windows machine: the ${name} script runs only over openssh-windows or azure-run-command`);
  }
  const encodedArgs = encodeArgs(args);
  const { allowError, ...exec } = options;
  const r = await machine.runScript(step, name, encodedArgs, exec);
  return checkWindowsScript<T>(r, name, encodedArgs, allowError === true);
}

/**
 * The check runWindowsScript makes on a step's result, for a caller that
 * ran `runScript` itself (src/run/steps.ts journals the step first): the
 * sentinel, script name, argument digest and exit code (SCRIPT_OUTPUT_INVALID),
 * then SCRIPT_FAILED for an error result unless `allowError`. Pure.
 */
export function checkWindowsScript<T = unknown>(r: StepResult, name: WindowsScriptName, encodedArgs: string, allowError = false): WindowsScriptRun<T> & { data: T | undefined } {
  const output = parseScriptOutput<T>(r.stdout, { script: name, encodedArgs, exitCode: r.exitCode });
  if (!output.result.ok && allowError) return { output, step: r, data: undefined };
  return { output, step: r, data: scriptData(output) };
}

/**
 * A path on a Windows machine under `root`: a Windows path (a drive letter
 * or a UNC path, or it holds a backslash) is joined, and its slashes turned,
 * into backslashes (the composition root joins work folders with POSIX
 * joins: `C:\\ProgramData\\Rubicon/steps/<run>`); anything else is joined
 * with a slash (the Linux test hosts).
 */
export function windowsPath(root: string, ...names: string[]): string {
  const win = /^[A-Za-z]:/.test(root) || root.startsWith('\\\\') || root.includes('\\');
  if (!win) return [root.replace(/\/+$/, ''), ...names].join('/');
  return [root.replace(/\//g, '\\').replace(/\\+$/, ''), ...names].join('\\');
}
