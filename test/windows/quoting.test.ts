/**
 * The one quoting function (psLiteral) and the one argument (encodeArgs)
 * against a real pwsh through -EncodedCommand: any NUL-free, well-formed
 * string (quotes of every kind, $, backticks, newlines, unicode, very long)
 * must arrive byte for byte. Many strings share one pwsh process (start-up
 * costs seconds); the property is seeded from RUBICON_SEED (test/support/seed.ts), and the seed
 * is printed when it fails.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodePowerShellCommand, psLiteral } from '../../src/machines/windows/quote.ts';
import { encodeArgs } from '../../src/machines/windows/scripts.ts';
import { checkPwsh, mustRun, pwsh } from './pwsh.ts';
import { assertProperty } from '../support/seed.ts';

const prelude = readFileSync(new URL('../../src/machines/windows/scripts/prelude.ps1', import.meta.url), 'utf8');

/** Linux caps one argument at 128 KiB; stay well below with the UTF-16 base64 of a batch. */
const MAX_ENCODED = 110_000;

/**
 * One pwsh run: for each string, the UTF-8 base64 of what PowerShell got
 * (a) from the literal psLiteral(s) and (b) from the argument
 * encodeArgs({ s }) parsed by the prelude, one line each.
 */
async function roundTrip(strings: string[]): Promise<{ literal: string; viaArgs: string }[]> {
  const lines = [prelude, '$out = New-Object System.Text.StringBuilder'];
  for (const s of strings) {
    lines.push(`$v = ${psLiteral(s)}`, `$a = (ConvertFrom-RubiconArgs ${psLiteral(encodeArgs({ s }))})['s']`);
    lines.push("$null = $out.Append([Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($v)) + ' ' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($a)) + \"`n\")");
  }
  lines.push('[Console]::Out.Write($out.ToString())');
  const encoded = encodePowerShellCommand(lines.join('\n'));
  if (encoded.length > MAX_ENCODED) throw new Error(`batch too large for one -EncodedCommand (${encoded.length})`);
  const r = await pwsh(['-EncodedCommand', encoded]);
  if (r.exitCode !== 0) throw new Error(`pwsh exited ${r.exitCode}: ${r.stderr.slice(-1500)}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [literal, viaArgs] = l.split(' ') as [string, string];
      return { literal, viaArgs };
    });
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

async function expectSurvives(strings: string[]): Promise<void> {
  const got = await roundTrip(strings);
  expect(got.length).toBe(strings.length);
  strings.forEach((s, i) => {
    expect(got[i]!.literal, `literal of ${JSON.stringify(s)}`).toBe(b64(s));
    expect(got[i]!.viaArgs, `argument of ${JSON.stringify(s)}`).toBe(b64(s));
  });
}

const special = fc.constantFrom(
  "'", '\u2018', '\u2019', '\u201A', '\u201B', '"', '\u201C', '\u201D', '\u201E', '`', '$', '$(', '${', '@', "@'", "'@", '@"', '"@',
  '#', '<#', '#>', '{', '}', '(', ')', ';', '|', '&', '&&', '<', '>', '\\', '\\\\', '\n', '\r\n', '\r', '\t', ' ', '\u00a0', '\u200f', '\u202e',
  '\u{1F600}', '\u65e5\u672c', 'e\u0301', '%', '^', '!', '*', '?', '[', ']', '--%', '-Command',
);
const piece = fc.oneof(special, fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ unit: 'grapheme-ascii', maxLength: 8 }));
const tricky = fc
  .array(piece, { maxLength: 30 })
  .map((parts) => parts.join(''))
  .filter((s) => !s.includes('\0'));

const check = checkPwsh();

describe.skipIf(!mustRun(check))(`PowerShell quoting through -EncodedCommand${check.ok ? '' : ` (${check.reason})`}`, () => {
  it('carries the strings that break naive quoting, and a very long one', async () => {
    if (!check.ok) throw new Error(check.reason);
    const long = Array.from({ length: 2_000 }, (_, i) => ["'", '\u2019', '$x', '`n', '"', '\u{1F600}', 'abc'][i % 7]).join('');
    await expectSurvives(['', "'", "''", "it's", '\u2018\u2019\u201A\u201B', "'; Remove-Item C:\\ -Recurse; '", '$(Get-Date)', '`$x', "@'\nhere\n'@", 'line1\r\nline2\n', ' lead and trail ', '\u202eevil', long]);
  });

  it('carries any NUL-free well-formed string byte for byte (property, batched)', async () => {
    if (!check.ok) throw new Error(check.reason);
    await assertProperty(
      fc.asyncProperty(fc.array(tricky, { minLength: 1, maxLength: 40 }), async (strings) => {
        await expectSurvives(strings);
      }),
      { numRuns: 4 },
    );
  });
});
