/**
 * Microsoft's T-SQL parser, from the tests: one PowerShell 7 process loads
 * Microsoft.SqlServer.TransactSql.ScriptDom (NuGet) with Add-Type and parses
 * a batch of statements with TSql130Parser (SQL Server 2016) and
 * TSql160Parser (SQL Server 2022). .ci/run installs both (PowerShell as a
 * .NET global tool, the package restored into ~/.cache/rubicon-scriptdom).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The ScriptDom version the project uses (NuGet Microsoft.SqlServer.TransactSql.ScriptDom). */
export const SCRIPTDOM_VERSION = '180.140.0';

export function scriptDomDll(): string {
  return (
    process.env.RUBICON_SCRIPTDOM_DLL ??
    join(homedir(), '.cache', 'rubicon-scriptdom', 'packages', 'microsoft.sqlserver.transactsql.scriptdom', SCRIPTDOM_VERSION, 'lib', 'netstandard2.1', 'Microsoft.SqlServer.TransactSql.ScriptDom.dll')
  );
}

export function pwshPath(): string | undefined {
  const candidates = [process.env.RUBICON_PWSH, join(homedir(), '.dotnet', 'tools', 'pwsh'), '/usr/bin/pwsh', '/usr/local/bin/pwsh'];
  return candidates.find((c): c is string => typeof c === 'string' && existsSync(c));
}

/** Why the parser cannot run here, or undefined when it can. */
export function scriptDomMissing(): string | undefined {
  if (!pwshPath()) return 'PowerShell 7 (pwsh) is not installed: dotnet tool install --global PowerShell --version 7.6.9';
  if (!existsSync(scriptDomDll())) return `ScriptDom ${SCRIPTDOM_VERSION} is not restored at ${scriptDomDll()} (see .ci/run)`;
  return undefined;
}

export interface ParseFailure {
  id: string;
  parser: '130' | '160';
  errors: string[];
}

export interface ParseResults {
  /** How many statements each parser parsed. */
  parsed: { '130': number; '160': number };
  /** Only the statements with errors. */
  failures: ParseFailure[];
}

/** Parses every statement with both parsers in ONE pwsh process. */
export async function parseAll(statements: { id: string; text: string }[]): Promise<ParseResults> {
  const dir = await mkdtemp(join(tmpdir(), 'rubicon-scriptdom-'));
  try {
    const input = join(dir, 'in.json');
    const output = join(dir, 'out.json');
    await writeFile(input, JSON.stringify(statements));
    await promisify(execFile)(pwshPath()!, ['-NoLogo', '-NoProfile', '-NonInteractive', '-File', join(import.meta.dirname, 'scriptdom.ps1'), '-Dll', scriptDomDll(), '-In', input, '-Out', output], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    const text = (await readFile(output, 'utf8')).replace(/^\uFEFF/, '');
    return JSON.parse(text) as ParseResults;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
