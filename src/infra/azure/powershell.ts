/**
 * The one way a value becomes PowerShell text: a single-quoted literal that
 * doubles every character PowerShell accepts as a single quote (ASCII and
 * the typographic ones U+2018–U+201B). Pure; no SDK imports, so the driver
 * and the machine port share it without loading each other.
 */
export function psLiteral(s: string): string {
  return `'${s.replace(/['\u2018\u2019\u201A\u201B]/g, '$&$&')}'`;
}
