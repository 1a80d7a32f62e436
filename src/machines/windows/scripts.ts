import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RubiconError } from '../../core/errors.ts';
import { encodePowerShellCommand, psLiteral } from './quote.ts';

/**
 * The Windows scripts as a transport sends them, and the check of what
 * comes back.
 *
 * Calling convention (every transport does exactly this):
 * 1. `encodeArgs(obj)` → one base64 string (UTF-8 JSON inside);
 * 2. send `scriptText(name)` as a file / Run Command script with the
 *    parameter `-RubiconArgs <that string>` (ARGS_PARAMETER), or
 *    `encodedCommand(name, encodedArgs)` as `powershell -NoProfile
 *    -NonInteractive -EncodedCommand <it>` (the argument is embedded);
 * 3. read stdout whole;
 * 4. `parseScriptOutput(stdout, { script, encodedArgs, exitCode })`: the
 *    sentinel's SHA-256 and byte count must match the payload, else a
 *    ScriptOutputError; then `scriptData(output)` gives the data or throws
 *    SCRIPT_FAILED with the script's own stable code.
 *
 * Build step: a script's text is its param block, the prelude
 * (scripts/prelude.ps1), the script file, and one generated line that calls
 * Invoke-RubiconEntry. Dot-sourcing is impossible over -EncodedCommand, so
 * the text is concatenated here. Pure apart from reading the .ps1 files
 * beside this module once.
 */

export const WINDOWS_SCRIPTS = ['inventory', 'manifest', 'capture', 'freeze', 'thaw', 'landing'] as const;
export type WindowsScriptName = (typeof WINDOWS_SCRIPTS)[number];

/** The script parameter that carries the one base64 JSON argument. */
export const ARGS_PARAMETER = 'RubiconArgs';

/** Protocol version in the BEGIN and RESULT lines. */
export const PROTOCOL_VERSION = 'v1';

const SCRIPTS_DIR = new URL('./scripts/', import.meta.url);

export interface WindowsScript {
  name: WindowsScriptName;
  /** From the script file's `# Version: N` header. */
  version: number;
  /** The prelude's own version. */
  preludeVersion: number;
  /** Param-block form: for `-File` and Run Command (parameter RubiconArgs). */
  text: string;
  /** SHA-256 of `text`, for the journal: exactly which text ran. */
  sha256: string;
}

const cache = new Map<string, WindowsScript>();

function readScriptFile(file: string): string {
  return readFileSync(new URL(file, SCRIPTS_DIR), 'utf8').replace(/\r\n/g, '\n');
}

function headerVersion(text: string, file: string): number {
  const m = /^# Version: (\d+)$/m.exec(text);
  if (!m) throw new RubiconError('INTERNAL', `script ${file} has no "# Version: N" header line`);
  return Number(m[1]);
}

/** The PowerShell function a script file defines as its body: manifest → Invoke-RubiconManifest. */
export function bodyFunctionName(name: WindowsScriptName): string {
  return `Invoke-Rubicon${name.charAt(0).toUpperCase()}${name.slice(1)}`;
}

function isScriptName(name: string): name is WindowsScriptName {
  return (WINDOWS_SCRIPTS as readonly string[]).includes(name);
}

/** The libraries a script names in its `# Include: a, b` header line (files `<name>.lib.ps1`). */
function includesOf(text: string): string[] {
  const m = /^# Include: (.+)$/m.exec(text);
  return m ? (m[1] as string).split(',').map((x) => x.trim()).filter((x) => x !== '') : [];
}

function assemble(name: WindowsScriptName, head: string): { body: string; version: number; preludeVersion: number } {
  const prelude = readScriptFile('prelude.ps1');
  const script = readScriptFile(`${name}.ps1`);
  const preludeVersion = headerVersion(prelude, 'prelude.ps1');
  const version = headerVersion(script, `${name}.ps1`);
  const libs = includesOf(script).map((lib) => readScriptFile(`${lib}.lib.ps1`).trimEnd());
  const body = [
    `# Rubicon ${name} v${version} (prelude v${preludeVersion}), assembled by src/machines/windows/scripts.ts`,
    head,
    prelude.trimEnd(),
    ...libs,
    script.trimEnd(),
    `exit (Invoke-RubiconEntry -Script '${name}' -Version ${version} -EncodedArgs $${ARGS_PARAMETER} -Body '${bodyFunctionName(name)}')`,
    '',
  ].join('\n');
  return { body, version, preludeVersion };
}

/** The source files of a script in assembly order (prelude, libraries, script), for tests and the 5.1 guard. */
export function scriptSourceFiles(name: WindowsScriptName): string[] {
  const script = readScriptFile(`${name}.ps1`);
  return ['prelude.ps1', ...includesOf(script).map((l) => `${l}.lib.ps1`), `${name}.ps1`].map((f) => new URL(f, SCRIPTS_DIR).pathname);
}

/** The assembled script (cached). Throws INTERNAL for an unknown name. */
export function windowsScript(name: WindowsScriptName): WindowsScript {
  if (!isScriptName(name)) throw new RubiconError('INTERNAL', `unknown Windows script '${String(name)}'; known: ${WINDOWS_SCRIPTS.join(', ')}`);
  const hit = cache.get(name);
  if (hit) return hit;
  const { body, version, preludeVersion } = assemble(name, `param([string]$${ARGS_PARAMETER} = '')`);
  const s: WindowsScript = { name, version, preludeVersion, text: body, sha256: sha256Hex(body) };
  cache.set(name, s);
  return s;
}

/** The text a transport sends as a file or Run Command script; it takes `-RubiconArgs <encodeArgs(...)>`. */
export function scriptText(name: WindowsScriptName): string {
  return windowsScript(name).text;
}

/**
 * The self-contained text for -EncodedCommand: the argument is assigned
 * (as a single-quoted literal) where the param block would be.
 */
export function commandText(name: WindowsScriptName, encodedArgs: string): string {
  windowsScript(name);
  return assemble(name, `$${ARGS_PARAMETER} = ${psLiteral(encodedArgs)}`).body;
}

/** The value for `powershell -NoProfile -NonInteractive -EncodedCommand`. */
export function encodedCommand(name: WindowsScriptName, encodedArgs: string): string {
  return encodePowerShellCommand(commandText(name, encodedArgs));
}

/**
 * For scripts too long for a command line (every assembled script is; see
 * ENCODED_COMMAND_LIMIT): a small -EncodedCommand that reads the script
 * text from stdin, refuses it unless its SHA-256 is the expected one, and
 * runs it with the argument. The transport writes `stdin` to the process
 * and closes it. The script is ASCII, so the console's input code page
 * cannot change it.
 */
export function stdinBootstrap(name: WindowsScriptName, encodedArgs: string): { encodedCommand: string; stdin: string } {
  const s = windowsScript(name);
  const text = [
    "$ErrorActionPreference = 'Stop'",
    '$t = [Console]::In.ReadToEnd()',
    "$h = ([BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash([Text.Encoding]::UTF8.GetBytes($t))) -replace '-', '').ToLowerInvariant()",
    `if ($h -ne ${psLiteral(s.sha256)}) { [Console]::Error.WriteLine('rubicon: the ${name} script arrived altered on stdin (SHA-256 ' + $h + ')'); exit 1 }`,
    `& ([scriptblock]::Create($t)) -${ARGS_PARAMETER} ${psLiteral(encodedArgs)}`,
    'exit $LASTEXITCODE',
  ].join('\n');
  return { encodedCommand: encodePowerShellCommand(text), stdin: s.text };
}

/**
 * The one argument: base64 of the UTF-8 JSON of a plain object. Throws
 * INTERNAL for something JSON cannot carry faithfully (a non-finite number,
 * undefined, a function), since the script would receive something else.
 */
export function encodeArgs(args: Record<string, unknown>): string {
  assertPlainJson(args, 'args');
  return Buffer.from(JSON.stringify(args), 'utf8').toString('base64');
}

function assertPlainJson(v: unknown, where: string): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RubiconError('INTERNAL', `script argument ${where} is ${v}, which JSON cannot carry`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => assertPlainJson(x, `${where}[${i}]`));
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) throw new RubiconError('INTERNAL', `script argument ${where}.${k} is undefined; leave it out or use null`);
      assertPlainJson(x, `${where}.${k}`);
    }
    return;
  }
  throw new RubiconError('INTERNAL', `script argument ${where} is a ${typeof v} that is not plain JSON`);
}

/** SHA-256 of the encoded argument, as the BEGIN line carries it. */
export function argsDigest(encodedArgs: string): string {
  return sha256Hex(encodedArgs);
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

// ------------------------------------------------------------ output

export interface ScriptHost {
  computerName: string;
  user: string;
  psVersion: string;
  psEdition: string;
  os: string;
  isWindows: boolean;
}

export interface ScriptErrorInfo {
  /** The script's own stable code: ARGS_INVALID, ACCESS_DENIED, VSS_CREATE_FAILED, ... (docs/windows.md). */
  code: string;
  message: string;
  details: unknown;
  /** `line N` of the assembled text, when PowerShell knew it. */
  where: string | null;
}

interface ResultBase {
  script: string;
  scriptVersion: number;
  host: ScriptHost;
  startedAt: string;
  finishedAt: string;
  /** Streamed records written before the result. */
  records: number;
}

export interface ScriptOk<T = unknown> extends ResultBase {
  ok: true;
  data: T;
}

export interface ScriptErr extends ResultBase {
  ok: false;
  error: ScriptErrorInfo;
}

export type ScriptResult<T = unknown> = ScriptOk<T> | ScriptErr;

export interface ScriptOutput<T = unknown> {
  script: string;
  scriptVersion: number;
  argsSha256: string;
  /** Streamed records, in order (the manifest's entries). */
  records: unknown[];
  result: ScriptResult<T>;
  /** Lines between BEGIN and RESULT that were not payload (warnings, host text); counted, never copied. */
  noiseLines: number;
  /** Byte count and SHA-256 of the payload, as checked against the sentinel. */
  bytes: number;
  sha256: string;
}

export type ScriptOutputProblem =
  | 'no-sentinel'
  | 'no-begin'
  | 'length-mismatch'
  | 'hash-mismatch'
  | 'bad-json'
  | 'no-result'
  | 'wrong-script'
  | 'wrong-args'
  | 'exit-code-mismatch';

/** stdout that cannot be trusted as the script's complete, unaltered output. Code SCRIPT_OUTPUT_INVALID. */
export class ScriptOutputError extends RubiconError {
  readonly problem: ScriptOutputProblem;

  constructor(problem: ScriptOutputProblem, message: string, hint: string, details?: Record<string, unknown>) {
    super('SCRIPT_OUTPUT_INVALID', message, { hint, details: { problem, ...details } });
    this.name = 'ScriptOutputError';
    this.problem = problem;
  }
}

export interface ParseExpectations {
  /** The script that was sent: the BEGIN line must name it. */
  script?: WindowsScriptName;
  /** The argument that was sent: the BEGIN line must carry its digest. */
  encodedArgs?: string;
  /** The process exit code: 0 must go with ok:true, 1 with ok:false. */
  exitCode?: number;
}

const RESULT_RE = /^RUBICON-RESULT v1 ([0-9a-f]{64}) (\d+)$/;
const BEGIN_RE = /^RUBICON-BEGIN v1 (\S+) (\d+) ([0-9a-f]{64})$/;

/**
 * Verifies and parses a script's stdout. Uses the LAST sentinel and the
 * last BEGIN before it, so text before BEGIN (banners, a re-run appended
 * to the same blob) is ignored. Throws ScriptOutputError (typed by
 * `problem`) when the sentinel is missing, the byte count or hash differs,
 * a payload line is not JSON, or an expectation does not hold. Pure.
 */
export function parseScriptOutput<T = unknown>(stdout: string, expect: ParseExpectations = {}): ScriptOutput<T> {
  const lines = stdout.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  let end = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (RESULT_RE.test(lines[i] as string)) {
      end = i;
      break;
    }
  }
  const where = expect.script ? `script ${expect.script}` : 'the script';
  if (end < 0) {
    throw new ScriptOutputError(
      'no-sentinel',
      `${where} did not finish: its output has no RUBICON-RESULT line (${lines.length} lines read${expect.exitCode !== undefined ? `, exit code ${expect.exitCode}` : ''})`,
      'the output was cut short or the script never started (PowerShell missing, a parse error, a killed process); read its stderr and run it again',
    );
  }
  let begin = -1;
  for (let i = end - 1; i >= 0; i--) {
    if (BEGIN_RE.test(lines[i] as string)) {
      begin = i;
      break;
    }
  }
  if (begin < 0) {
    throw new ScriptOutputError('no-begin', `${where}'s output has a RUBICON-RESULT line but no RUBICON-BEGIN line before it`, 'the start of the output was lost; run the script again');
  }
  const [, script, versionText, argsSha256] = BEGIN_RE.exec(lines[begin] as string) as unknown as [string, string, string, string];
  const [, wantHash, wantBytesText] = RESULT_RE.exec(lines[end] as string) as unknown as [string, string, string];
  const hash = createHash('sha256');
  let bytes = 0;
  let noiseLines = 0;
  const payload: string[] = [];
  for (let i = begin + 1; i < end; i++) {
    const line = lines[i] as string;
    if (!line.startsWith('{')) {
      noiseLines++;
      continue;
    }
    const chunk = `${line}\n`;
    hash.update(chunk, 'utf8');
    bytes += Buffer.byteLength(chunk, 'utf8');
    payload.push(line);
  }
  const sha256 = hash.digest('hex');
  const wantBytes = Number(wantBytesText);
  if (bytes !== wantBytes) {
    throw new ScriptOutputError(
      'length-mismatch',
      `${where}'s output has ${bytes} payload bytes but its sentinel says ${wantBytes}`,
      'lines were lost or added between the script and here; run it again',
      { bytes, expectedBytes: wantBytes },
    );
  }
  if (sha256 !== wantHash) {
    throw new ScriptOutputError('hash-mismatch', `${where}'s output does not match the SHA-256 in its sentinel`, 'bytes were changed between the script and here; run it again', {
      sha256,
      expectedSha256: wantHash,
    });
  }
  if (expect.script !== undefined && script !== expect.script) {
    throw new ScriptOutputError('wrong-script', `the output is from script ${script}, not ${expect.script}`, 'the transport returned another run\'s output; run the script again', { got: script });
  }
  if (expect.encodedArgs !== undefined && argsSha256 !== argsDigest(expect.encodedArgs)) {
    throw new ScriptOutputError('wrong-args', `${where}'s output is from a run with other arguments`, 'the transport returned another run\'s output; run the script again');
  }
  const parsed: unknown[] = [];
  for (const [i, line] of payload.entries()) {
    try {
      parsed.push(JSON.parse(line));
    } catch {
      throw new ScriptOutputError('bad-json', `${where}'s payload line ${i + 1} is not JSON although its hash matched`, 'the script wrote a line starting with "{" that is not JSON; this is a bug in the script');
    }
  }
  const result = parsed.pop();
  if (!isResult(result)) {
    throw new ScriptOutputError('no-result', `${where}'s last payload line is not a result object with "ok"`, 'this is a bug in the script or its prelude');
  }
  if (expect.exitCode !== undefined && (expect.exitCode === 0) !== result.ok) {
    throw new ScriptOutputError(
      'exit-code-mismatch',
      `${where} exited with ${expect.exitCode} but reported ok: ${result.ok}`,
      'the process was ended after the result was written, or the transport mis-reports exit codes; run it again',
      { exitCode: expect.exitCode },
    );
  }
  return { script, scriptVersion: Number(versionText), argsSha256, records: parsed, result: result as ScriptResult<T>, noiseLines, bytes, sha256 };
}

function isResult(v: unknown): v is ScriptResult {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  if (r.ok === true) return 'data' in r;
  if (r.ok === false) return typeof r.error === 'object' && r.error !== null && typeof (r.error as Record<string, unknown>).code === 'string';
  return false;
}

/**
 * The data of a successful result; an error result becomes SCRIPT_FAILED
 * naming the script and carrying its code (details.scriptCode) and details.
 */
export function scriptData<T>(output: ScriptOutput<T>): T {
  const r = output.result;
  if (r.ok) return r.data;
  const where = typeof r.host?.computerName === 'string' ? r.host.computerName : 'the server';
  throw new RubiconError('SCRIPT_FAILED', `script ${output.script} on ${where} failed: ${r.error.code}: ${r.error.message}`, {
    hint: scriptHint(r.error.code),
    details: { script: output.script, scriptCode: r.error.code, scriptDetails: r.error.details, where: r.error.where },
  });
}

function scriptHint(code: string): string {
  switch (code) {
    case 'ARGS_INVALID':
      return 'the orchestrator sent arguments the script refuses; this is a bug in Rubicon';
    case 'ACCESS_DENIED':
      return 'run the transport as a local administrator (with the backup privilege for capture)';
    case 'COMMAND_UNAVAILABLE':
      return 'install the Windows feature or tool the message names, or leave that step out of the runbook';
    case 'SERVICE_STOP_TIMEOUT':
      return 'stop the named service by hand (or raise the timeout), then run freeze again';
    case 'VSS_CREATE_FAILED':
      return 'see details.meaning; code 9 (another shadow copy in progress) clears by itself: run capture again';
    default:
      return 'see docs/windows.md for what this code means';
  }
}
