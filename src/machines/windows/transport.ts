import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { RubiconError } from '../../core/errors.ts';
import { encodePowerShellCommand, psLiteral } from './quote.ts';

/**
 * The PowerShell the Windows transports run on the machine for their own
 * work (exec, small files, steps), and the check of what it prints. The
 * texts are the versioned files in ./transport/ (lib.ps1 and one entry
 * file per operation), assembled here; the frame protocol they print is
 * described at the top of lib.ps1. Pure apart from reading those files
 * once.
 */

export const TRANSPORT_ENTRIES = ['exec', 'read-small', 'write-small', 'step-start', 'step-wait', 'step-wrapper', 'step-cancel', 'remove-tree', 'run-command-step'] as const;
export type TransportEntry = (typeof TRANSPORT_ENTRIES)[number];

const DIR = new URL('./transport/', import.meta.url);
const files = new Map<string, string>();

function read(file: string): string {
  let t = files.get(file);
  if (t === undefined) {
    t = readFileSync(new URL(file, DIR), 'utf8').replace(/\r\n/g, '\n');
    if (!/^[\x09\x0a\x20-\x7e]*$/.test(t)) throw new RubiconError('INTERNAL', `src/machines/windows/transport/${file} is not plain ASCII`);
    files.set(file, t);
  }
  return t;
}

/** The source files (for the 5.1 guard and tests). */
export function transportSourceFiles(): string[] {
  return ['lib.ps1', ...TRANSPORT_ENTRIES.map((e) => `${e}.ps1`)].map((f) => new URL(f, DIR).pathname);
}

/** Inputs of an entry: plain strings (numbers as decimal text). Never secrets: they may show in a process list or a resource. */
export type Spec = Record<string, string>;

/** base64 of "key base64(value)" lines: any value survives any console and any quoting. */
export function encodeSpec(spec: Spec): string {
  const lines = Object.entries(spec).map(([k, v]) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(k)) throw new RubiconError('INTERNAL', `transport spec key "${k}" is not a plain name`);
    return `${k} ${Buffer.from(v, 'utf8').toString('base64')}\n`;
  });
  return Buffer.from(lines.join(''), 'utf8').toString('base64');
}

/** How the entry gets its payload (stdin bytes or a small file's content). */
export type PayloadFrom =
  /** No payload (an empty byte array). */
  | { kind: 'none' }
  /** Already in $RubiconPayload (set by the stdin bootstrap). */
  | { kind: 'preset' }
  /** A Run Command protected parameter RubiconSecret, base64. */
  | { kind: 'parameter' };

/**
 * The text of an entry: head lines (param block, payload, spec), the
 * library, the entry. `param` (a param block) must come first in a script.
 */
export function entryText(entry: TransportEntry, spec: Spec, payload: PayloadFrom, param?: string, extraHead: string[] = []): string {
  const head: string[] = [];
  if (param) head.push(param);
  head.push(...extraHead);
  if (payload.kind === 'none') head.push('$RubiconPayload = New-Object byte[] 0');
  if (payload.kind === 'parameter') head.push('$RubiconPayload = [Convert]::FromBase64String($RubiconSecret)');
  head.push(`$RubiconSpec = ${psLiteral(encodeSpec(spec))}`);
  return [...head, read('lib.ps1').trimEnd(), read(`${entry}.ps1`).trimEnd(), ''].join('\n');
}

/** The wrapper a step's detached process runs: `& ([scriptblock]::Create(text)) <dir>`. */
export function wrapperText(): string {
  return ['param([string]$Dir)', '$RubiconPayload = New-Object byte[] 0', "$RubiconSpec = ''", read('lib.ps1').trimEnd(), read('step-wrapper.ps1').trimEnd(), ''].join('\n');
}

/**
 * The Run Command script of an entry: the secret payload arrives as the
 * protected parameter RubiconSecret (base64). `inlineInput` (not secret: a
 * Windows script's text for its bootstrap's stdin, too long for a
 * parameter, which Windows puts on a command line) is embedded as one
 * base64 literal: immune to whatever line endings the agent writes the
 * script file with.
 */
export function runCommandText(entry: TransportEntry, spec: Spec, inlineInput?: string): string {
  const inline =
    inlineInput === undefined
      ? '$RubiconInlineInput = $null'
      : `$RubiconInlineInput = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String(${psLiteral(Buffer.from(inlineInput, 'utf8').toString('base64'))}))`;
  return entryText(entry, spec, { kind: 'parameter' }, "param([string]$RubiconSecret = '')", [inline]);
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A small -EncodedCommand that reads `<base64 of the UTF-8 text>\n<base64
 * of the payload>\n` from stdin, refuses the text unless its SHA-256 is the
 * expected one, sets $RubiconPayload and runs the text. For texts too long
 * for a command line, and for every call with a payload (stdin keeps it out
 * of the machine's process list). All of stdin is ASCII, so no console code
 * page can change it.
 */
export function stdinBootstrap(text: string, payload: Uint8Array | undefined): { encodedCommand: string; stdin: string } {
  const boot = [
    "$ErrorActionPreference = 'Stop'",
    '$l = [Console]::In.ReadToEnd() -split "`n"',
    '$t = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($l[0].Trim()))',
    "$h = ([BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash([Text.Encoding]::UTF8.GetBytes($t))) -replace '-', '').ToLowerInvariant()",
    `if ($h -ne ${psLiteral(sha256Hex(text))}) { [Console]::Error.WriteLine('rubicon: the PowerShell text arrived altered on stdin (SHA-256 ' + $h + ')'); exit 1 }`,
    "if ($l.Length -gt 1 -and $l[1].Trim() -ne '') { $RubiconPayload = [Convert]::FromBase64String($l[1].Trim()) } else { $RubiconPayload = New-Object byte[] 0 }",
    '& ([scriptblock]::Create($t))',
  ].join('\n');
  const stdin = `${Buffer.from(text, 'utf8').toString('base64')}\n${payload && payload.length > 0 ? Buffer.from(payload).toString('base64') : ''}\n`;
  return { encodedCommand: encodePowerShellCommand(boot), stdin };
}

// ------------------------------------------------------------ frames

export interface Frames {
  /** The state line's words: ['done', '0', 'fresh'], ['missing'], ... */
  state: string[];
  out: Buffer;
  err: Buffer;
  /** The sum line, when present. */
  sum?: { outBytes: number; outSha256: string; outCut: boolean; errBytes: number; errSha256: string; errCut: boolean };
  /** The first out/err chunk lines were not in the text (only a tail of the output was kept). */
  partial: boolean;
}

const FRAME = 'RUBICON-T1 ';

/**
 * Reads the frames of the last complete answer (up to its `end` line).
 * Undefined when there is none: the entry did not finish. A tail that
 * starts mid-line (Run Command's 4 KB) loses its first, cut line: the frame
 * lines are read back from the end line to the first line that is not a
 * whole frame, and `partial` (the sum line's byte counts differ from what
 * arrived) says that only the end of the output is here.
 */
export function parseFrames(text: string): Frames | undefined {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  let end = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i] === `${FRAME}end`) {
      end = i;
      break;
    }
  }
  if (end < 0) return undefined;
  let start = end;
  while (start > 0 && (lines[start - 1] as string).startsWith(FRAME) && (lines[start - 1] as string) !== `${FRAME}end`) start--;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let state: string[] = [];
  let sum: Frames['sum'];
  let partial = false;
  for (let i = start; i < end; i++) {
    const [, kind, ...rest] = (lines[i] as string).split(' ');
    if (kind === 'out') out.push(Buffer.from(rest[0] ?? '', 'base64'));
    else if (kind === 'err') err.push(Buffer.from(rest[0] ?? '', 'base64'));
    else if (kind === 'state') state = rest;
    else if (kind === 'sum' && rest.length === 6) {
      sum = { outBytes: Number(rest[0]), outSha256: rest[1] as string, outCut: rest[2] === '1', errBytes: Number(rest[3]), errSha256: rest[4] as string, errCut: rest[5] === '1' };
    }
  }
  const o = Buffer.concat(out);
  const e = Buffer.concat(err);
  if (sum && (o.length !== sum.outBytes || e.length !== sum.errBytes)) partial = true;
  return { state, out: o, err: e, ...(sum ? { sum } : {}), partial };
}

/**
 * The frames' output checked against their sum line: the SHA-256 and byte
 * count of each stream must match what arrived, unless only a tail arrived
 * (`partial`), in which case the tail must be the end of what was sent.
 * Throws MACHINE_FAILED on a mismatch (bytes changed on the way).
 */
export function checkFrames(f: Frames, where: string): void {
  if (!f.sum) return;
  const check = (name: string, got: Buffer, bytes: number, sha: string) => {
    if (got.length === bytes) {
      if (sha256Hex(got) !== sha) throw new RubiconError('MACHINE_FAILED', `${where}: the ${name} that arrived does not match the SHA-256 the machine computed`, { hint: 'bytes were changed on the way; run it again' });
    } else if (got.length > bytes) {
      throw new RubiconError('MACHINE_FAILED', `${where}: more ${name} arrived (${got.length} bytes) than the machine sent (${bytes})`, { hint: 'the output of two runs was mixed; run it again' });
    }
  };
  check('stdout', f.out, f.sum.outBytes, f.sum.outSha256);
  check('stderr', f.err, f.sum.errBytes, f.sum.errSha256);
}

/** The error state's message (base64) and HRESULT. */
export function stateError(state: string[]): { message: string; hresult: number } {
  const message = state[1] ? Buffer.from(state[1], 'base64').toString('utf8') : 'unknown error';
  return { message, hresult: Number(state[2] ?? 0) };
}

/** ERROR_DISK_FULL (112) and ERROR_HANDLE_DISK_FULL (39) as HRESULTs, or the POSIX message. */
export function isNoSpace(e: { message: string; hresult: number }): boolean {
  return e.hresult === -2147024784 || e.hresult === -2147024857 || /No space left|not enough space on the disk/i.test(e.message);
}
