/**
 * PowerShell text from TypeScript values: the one quoting function and the
 * -EncodedCommand encoding. Pure; no imports, so every transport and the
 * Azure driver share it without loading each other.
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
