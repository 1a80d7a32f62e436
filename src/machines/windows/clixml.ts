/**
 * CLIXML on stderr, decoded into plain messages. Pure.
 *
 * A PowerShell started with -EncodedCommand whose output is redirected
 * writes its error, warning, verbose, debug and progress records to stderr
 * serialized, not as text: a line `#< CLIXML` followed by one or more
 * `<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">`
 * documents. Inside, a message is a string element `<S S="Error">…</S>`
 * (one per line of the formatted record on Windows PowerShell 5.1, one per
 * record with ANSI colour codes on PowerShell 7) and a progress record is
 * `<Obj S="progress">…</Obj>`. Strings follow MS-PSRP 2.2.5.1.1 "String"
 * (learn.microsoft.com/openspecs/windows_protocols/ms-psrp/052b8c32-735b-49c0-8c24-bb32a5c871ce):
 * XML escapes, plus characters XML cannot carry written `_xHHHH_` (UTF-16
 * code units: `_x000D__x000A_` is CRLF, `_x001B_` ESC, `_x005F_` a literal
 * underscore before an `x`), section 2.2.5.3.2.
 *
 * The shapes were checked against real pwsh 7.6 here (test/windows/clixml.test.ts
 * captures its stderr) and against the 5.1 shape documented in that spec.
 */

export type ClixmlStream = 'error' | 'warning' | 'verbose' | 'debug' | 'information' | 'output';

export interface ClixmlMessage {
  stream: ClixmlStream;
  text: string;
}

export interface DecodedStderr {
  /** The messages as a person reads them: errors as is, others prefixed (`WARNING: `), ANSI colours removed, one per line. */
  text: string;
  messages: ClixmlMessage[];
  /** Progress records seen (never shown: they are noise on a non-interactive run). */
  progress: number;
  /** True when the input held CLIXML at all. */
  clixml: boolean;
}

const MARKER = '#< CLIXML';
const STREAMS: Record<string, ClixmlStream> = { error: 'error', warning: 'warning', verbose: 'verbose', debug: 'debug', information: 'information', output: 'output' };
const PREFIX: Record<ClixmlStream, string> = { error: '', warning: 'WARNING: ', verbose: 'VERBOSE: ', debug: 'DEBUG: ', information: '', output: '' };

/** `_xHHHH_` escapes → UTF-16 code units (a surrogate pair arrives as two escapes). */
export function decodePsrpString(s: string): string {
  return s.replace(/_x([0-9A-Fa-f]{4})_/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function decodeXmlText(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#x[0-9A-Fa-f]+|#\d+);/g, (m, e: string) => {
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'amp') return '&';
    if (e === 'quot') return '"';
    if (e === 'apos') return "'";
    const code = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return Number.isFinite(code) ? String.fromCodePoint(code) : m;
  });
}

/** ANSI escape sequences (CSI … letter, OSC … BEL/ST) that PowerShell 7 puts around error text. */
export function stripAnsi(s: string): string {
  return s.replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '').replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '');
}

/**
 * Decodes a stderr text. Text that is not CLIXML passes through unchanged
 * (a native program's own stderr); text around the CLIXML documents is kept
 * in order. Never throws: an unreadable document is kept as it came.
 */
export function decodeClixml(stderr: string): DecodedStderr {
  const at = stderr.indexOf(MARKER);
  if (at < 0) return { text: stderr, messages: [], progress: 0, clixml: false };
  const messages: ClixmlMessage[] = [];
  const parts: string[] = [];
  let progress = 0;
  const before = stderr.slice(0, at);
  if (before.trim() !== '') parts.push(before.replace(/\r?\n$/, ''));
  let rest = stderr.slice(at + MARKER.length);
  for (;;) {
    const open = rest.search(/<Objs[\s>]/);
    if (open < 0) break;
    const close = rest.indexOf('</Objs>', open);
    const between = rest.slice(0, open).replace(/#< CLIXML/g, '');
    if (between.trim() !== '') parts.push(between.trim());
    if (close < 0) {
      parts.push(rest.slice(open));
      rest = '';
      break;
    }
    const doc = rest.slice(open, close);
    progress += (doc.match(/<Obj\s[^>]*S="progress"/g) ?? []).length;
    // Top-level strings with a stream attribute: <S S="Error">…</S> (strings nested in objects carry no S attribute).
    for (const m of doc.matchAll(/<S\s+S="([A-Za-z]+)"\s*>([\s\S]*?)<\/S>/g)) {
      const stream = STREAMS[(m[1] as string).toLowerCase()];
      if (!stream) continue;
      const text = stripAnsi(decodePsrpString(decodeXmlText(m[2] as string)));
      messages.push({ stream, text });
    }
    rest = rest.slice(close + '</Objs>'.length);
  }
  if (rest.replace(/#< CLIXML/g, '').trim() !== '') parts.push(rest.replace(/#< CLIXML/g, '').trim());
  // One message per string element (5.1 writes one per line of a formatted record, each ending CRLF).
  const joined = messages.map((m) => PREFIX[m.stream] + m.text.replace(/\r?\n$/, ''));
  const lines = joined.flatMap((l) => l.split(/\r?\n/)).map((l) => l.replace(/\s+$/, ''));
  const text = [...parts, ...lines].filter((l) => l !== '').join('\n');
  return { text: text === '' ? '' : `${text}\n`, messages, progress, clixml: true };
}
