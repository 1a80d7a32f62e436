/**
 * PowerShell text from TypeScript values: the one quoting function for
 * PowerShell text (psLiteral), the -EncodedCommand encoding, and the
 * Windows command-line quoting a started process receives (quoteWindowsArg).
 * Pure; no imports, so every transport and the Azure driver share it without
 * loading each other.
 */

/**
 * A single-quoted PowerShell string literal for any string: doubles every
 * character PowerShell accepts as a single quote (the ASCII one and the
 * typographic U+2018-U+201B). Nothing else is special inside single quotes
 * (`$`, backticks, double quotes and newlines are literal), so the value
 * arrives byte for byte (test/windows/quoting.test.ts, against real pwsh).
 */
export function psLiteral(s: string): string {
  return `'${s.replace(/['\u2018\u2019\u201A\u201B]/g, '$&$&')}'`;
}

/**
 * The value of `powershell -EncodedCommand`: base64 of the UTF-16LE text.
 * Windows limits a command line to 32,767 characters (8,191 under cmd.exe),
 * so a transport checks ENCODED_COMMAND_LIMIT and falls back to a file.
 */
export function encodePowerShellCommand(text: string): string {
  return Buffer.from(text, 'utf16le').toString('base64');
}

/** The longest -EncodedCommand value that fits a Windows command line with room for `powershell -NoProfile -NonInteractive -EncodedCommand `. */
export const ENCODED_COMMAND_LIMIT = 32_767 - 100;

/**
 * One argument quoted for a Windows command line as the Microsoft C runtime
 * and CommandLineToArgvW split it ("Parsing C++ command-line arguments":
 * 2n backslashes before a quote are n backslashes and the quote delimits;
 * 2n+1 are n backslashes and a literal quote; other backslashes are
 * literal). This is the other layer below PowerShell: .NET Framework's
 * Process (Windows PowerShell 5.1) takes one command-line string, not an
 * argument list, and powershell.exe, robocopy, icacls and restic all split
 * it this way (cmd.exe has its own rules and is not supported). .NET on
 * Linux splits ProcessStartInfo.Arguments by the same rules, which is how
 * the tests check the round trip through a real pwsh.
 */
export function quoteWindowsArg(arg: string): string {
  if (arg !== '' && !/[ \t\n\v"]/.test(arg)) return arg;
  let out = '"';
  let backslashes = 0;
  for (const ch of arg) {
    if (ch === '\\') {
      backslashes++;
    } else if (ch === '"') {
      out += '\\'.repeat(backslashes * 2 + 1) + '"';
      backslashes = 0;
    } else {
      out += '\\'.repeat(backslashes) + ch;
      backslashes = 0;
    }
  }
  return out + '\\'.repeat(backslashes * 2) + '"';
}

/** The Windows command-line tail (without the program) for `args`. */
export function windowsCommandLine(args: readonly string[]): string {
  return args.map(quoteWindowsArg).join(' ');
}
