/**
 * Real PowerShell 7 and Pester for the Windows script tests. In CI a
 * missing pwsh or Pester FAILS the tests (with the command that installs
 * it); elsewhere they are skipped with that reason beside them.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { execa, type Options } from 'execa';

export const PWSH = process.env.PWSH_BIN ?? join(homedir(), '.dotnet/tools/pwsh');
export const PESTER_MODULE = process.env.RUBICON_PESTER_MODULE ?? join(homedir(), '.cache/rubicon-pester/packages/pester/5.7.1/tools/Pester.psd1');

export interface ToolCheck {
  ok: boolean;
  /** Why not, and how to fix it (shown as the skip reason or the CI failure). */
  reason: string;
}

export function checkPwsh(): ToolCheck {
  try {
    accessSync(PWSH, constants.X_OK);
    return { ok: true, reason: '' };
  } catch {
    return { ok: false, reason: `PowerShell 7 is missing at ${PWSH}: dotnet tool install --global PowerShell --version 7.6.9 (or set PWSH_BIN)` };
  }
}

export function checkPester(): ToolCheck {
  const p = checkPwsh();
  if (!p.ok) return p;
  if (!existsSync(PESTER_MODULE)) return { ok: false, reason: `Pester 5.7.1 is missing at ${PESTER_MODULE}: run .ci/run, which restores the NuGet package Pester (or set RUBICON_PESTER_MODULE)` };
  return { ok: true, reason: '' };
}

/** True when the tests must run (the tool is there) or must fail (CI); false: skip with check.reason. */
export function mustRun(check: ToolCheck): boolean {
  return check.ok || Boolean(process.env.CI);
}

export interface PwshResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs pwsh -NoProfile -NonInteractive with the given arguments; never rejects on a non-zero exit. */
export async function pwsh(args: string[], options: Options & { input?: string } = {}): Promise<PwshResult> {
  const check = checkPwsh();
  if (!check.ok) throw new Error(check.reason);
  const stdin = options.input === undefined ? { stdin: 'ignore' as const } : {};
  const r = await execa(PWSH, ['-NoProfile', '-NonInteractive', ...args], { reject: false, timeout: 300_000, stripFinalNewline: false, ...stdin, ...options });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}
