/** The pure parts of the sqlite3 shell driver (src/engines/sqlite/cli.ts): parsers, SQL builders, sanitising. */
import { describe, expect, it } from 'vitest';
import { isRubiconError } from '../../../src/core/errors.ts';
import {
  combineChunks,
  compareVersions,
  concatSql,
  decodeHexText,
  parseDiscover,
  parseFingerprint,
  parseListing,
  parseProbe,
  planFingerprint,
  rowidName,
  runStatus,
  sanitizeLine,
  type Listing,
} from '../../../src/engines/sqlite/cli.ts';

const SHA3_ABC = '3A985DA74FE225B2045C172D6BD390BD855F086E3E9D525B46BFE24511431532';
const probeOut = (version: string, f = `F|3FF8000000000000|3FF8000000000000|${SHA3_ABC}`) => `V|${version} 2022-12-28 14:03:47 df5c253c0b3dd24916e4ec7cf77d3db5294cc9fd45ae7b9c5e82ad8197f3alt1\n${f}\n`;

function thrown(f: () => unknown): { code?: string; message: string; hint?: string } {
  try {
    f();
  } catch (e) {
    if (isRubiconError(e)) return { code: e.code, message: e.message, hint: e.hint };
    throw e;
  }
  throw new Error('did not throw');
}

describe('parseProbe', () => {
  it('reads the version and the date for provenance', () => {
    expect(parseProbe(probeOut('3.40.1'), 'target (ssh root@198.18.0.11:22)', 'sqlite3')).toEqual({ version: '3.40.1', date: '2022-12-28', tool: 'sqlite3 3.40.1 (2022-12-28)' });
  });

  it('TOOL_MISSING names the machine and the package when sqlite3 is absent', () => {
    const e = thrown(() => parseProbe('M|missing\n', 'target (ssh root@198.18.0.11:22)', 'sqlite3'));
    expect(e).toMatchObject({ code: 'TOOL_MISSING', message: 'sqlite3 is not installed on target (ssh root@198.18.0.11:22) (the sqlite3 methods run it there)' });
    expect(e.hint).toContain('apt-get install sqlite3');
    expect(e.hint).toContain('on target (ssh root@198.18.0.11:22)');
  });

  it('refuses a shell older than 3.33 or one without the sha3 / ieee754 functions', () => {
    expect(thrown(() => parseProbe(probeOut('3.31.1', 'Error: in prepare, no such function: ieee754_to_blob'), 'pg', 'sqlite3'))).toMatchObject({
      code: 'TOOL_MISSING',
      message: expect.stringContaining('is 3.31.1, which lacks the shell functions'),
    });
    // A shell built without the extensions, whatever its version.
    expect(thrown(() => parseProbe(probeOut('3.45.0', 'Error: no such function: sha3'), 'pg', 'sqlite3')).code).toBe('TOOL_MISSING');
    // sha3() that is not SHA3-256.
    expect(thrown(() => parseProbe(probeOut('3.45.0', `F|3FF8000000000000|3FF8000000000000|${'0'.repeat(64)}`), 'pg', 'sqlite3')).code).toBe('TOOL_MISSING');
    expect(thrown(() => parseProbe('V|not a version\n', 'pg', 'sqlite3')).code).toBe('TOOL_MISSING');
  });

  it('compares versions numerically', () => {
    expect(compareVersions('3.9.0', '3.33.0')).toBeLessThan(0);
    expect(compareVersions('3.33.0', '3.33.0')).toBe(0);
    expect(compareVersions('3.40.1', '3.33.0')).toBeGreaterThan(0);
  });
});

describe('sanitizing what sqlite3 says', () => {
  it('blanks quoted fragments (they can quote row data) and control characters, and cuts long lines', () => {
    expect(sanitizeLine(`Parse error near line 12: near "Smithers": syntax error`)).toBe('Parse error near line 12: near "…": syntax error');
    expect(sanitizeLine(`Error: unrecognized token: "'SYN-SECRET`)).toBe(`Error: unrecognized token: "…`);
    expect(sanitizeLine("Error: near 'x\ty'")).toBe("Error: near '…'");
    expect(sanitizeLine('a\u0001b')).toBe('a b');
    expect(sanitizeLine('x'.repeat(500))).toHaveLength(241);
  });

  it('runStatus reads one labelled run of a script', () => {
    const out = 'Q|x\nB-X|Error: near "secret": syntax error\nB-RC|1\nL-RC|0\n';
    expect(runStatus(out, 'B')).toEqual({ exitCode: 1, errors: ['Error: near "…": syntax error'] });
    expect(runStatus(out, 'L')).toEqual({ exitCode: 0, errors: [] });
    expect(runStatus(out, 'I')).toEqual({ exitCode: undefined, errors: [] });
  });
});

describe('listing and plan', () => {
  const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
  const listingOut = [
    'E|UTF-8',
    'J|wal',
    'P|4096|12',
    `T|${hex('notes')}|rowid`,
    `T|${hex('odd|name\n"x"')}|without-rowid`,
    `T|${hex('ft')}|virtual`,
    `T|${hex('shadowed')}|rowid`,
    `C|${hex('notes')}|0|${hex('id')}|0`,
    `C|${hex('notes')}|1|${hex('body')}|0`,
    `C|${hex('notes')}|2|${hex('len')}|2`,
    `C|${hex('odd|name\n"x"')}|0|${hex('k')}|0`,
    `C|${hex('shadowed')}|0|${hex('ROWID')}|0`,
    `C|${hex('shadowed')}|1|${hex('_rowid_')}|0`,
    `C|${hex('shadowed')}|2|${hex('Oid')}|0`,
    'Q|1',
    'RC|0',
  ].join('\n');

  it('parses names of any spelling (they travel as hex) and keeps the kinds', () => {
    const l = parseListing(listingOut);
    expect(l).toMatchObject({ encoding: 'UTF-8', journalMode: 'wal', pageSize: 4096, pageCount: 12, hasSequence: true });
    expect(l.tables.map((t) => [t.name, t.kind, t.columns.length])).toEqual([
      ['notes', 'rowid', 3],
      ['odd|name\n"x"', 'without-rowid', 1],
      ['ft', 'virtual', 0],
      ['shadowed', 'rowid', 3],
    ]);
  });

  it('decodes UTF-16 names', () => {
    expect(decodeHexText(Buffer.from('Ünï', 'utf16le').toString('hex'), 'UTF-16le')).toBe('Ünï');
    const be = Buffer.from('Ünï', 'utf16le');
    be.swap16();
    expect(decodeHexText(be.toString('hex'), 'UTF-16be')).toBe('Ünï');
  });

  it('plans rowid first, generated columns left out, virtual tables left to their shadow tables, schema and sequence last', () => {
    const l = parseListing(listingOut);
    const plan = planFingerprint(l);
    expect(plan.tables.map((t) => t.name)).toEqual(['notes', 'odd|name\n"x"', 'shadowed', 'sqlite_schema', 'sqlite_sequence']);
    expect(plan.tables[0]!.sql).toMatch(/typeof\(rowid\).*typeof\("id"\).*typeof\("body"\)/);
    expect(plan.tables[0]!.sql).not.toContain('"len"');
    expect(plan.tables[1]!.sql).not.toContain('rowid');
    expect(plan.tables[1]!.sql).toContain('FROM "odd|name\n""x"""');
    expect(plan.tables[2]!.unhashedColumns).toEqual(['rowid']);
    expect(plan.tables[3]!.sql).toContain("WHERE name NOT LIKE 'sqlite\\_stat%' ESCAPE '\\'");
    expect(rowidName({ name: 't', kind: 'rowid', columns: [{ name: 'RowId', hidden: 0 }] })).toBe('_rowid_');
  });

  it('a changed schema between plan and read asks for a new plan; a missing table is an error', () => {
    const l: Listing = parseListing(listingOut);
    const plan = planFingerprint(l);
    const f = plan.tables.map((_, i) => `F|${i}|3|1|2|3|4|5|6|7|8`).join('\n');
    const same = `${listingOut.replace('P|4096|12', 'P|4096|13')}\n${f}\nDONE\n`;
    expect(parseFingerprint(same, plan, l.raw)?.map((t) => t.rows)).toEqual([3, 3, 3, 3, 3]);
    expect(parseFingerprint(`${listingOut.replace('|without-rowid', '|rowid')}\n${f}\nDONE\n`, plan, l.raw)).toBeUndefined();
    expect(() => parseFingerprint(`${listingOut}\nF|0|3|1|2|3|4|5|6|7|8\nDONE\n`, plan, l.raw)).toThrow(/misses tables/);
    expect(() => parseFingerprint(`${listingOut}\n${f}\n`, plan, l.raw)).toThrow(/did not finish/);
  });
});

describe('hash arithmetic', () => {
  it('combines 32-bit chunk sums into the sum of the row hashes mod 2^256', () => {
    // Two rows whose hashes are all-ones and 1: their sum wraps to 0 mod 2^256.
    const ones = Array<bigint>(8).fill(0xffffffffn);
    const one = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 1n];
    expect(combineChunks(ones.map((v, i) => v + one[i]!))).toBe('0'.repeat(64));
    expect(combineChunks([0n, 0n, 0n, 0n, 0n, 0n, 0n, 0x1_0000_0000n])).toBe(`${'0'.repeat(55)}100000000`);
    expect(combineChunks([1n, 0n, 0n, 0n, 0n, 0n, 0n, 0n])).toBe(`00000001${'0'.repeat(56)}`);
  });

  it('builds a balanced concatenation, shallow enough for tables with hundreds of columns', () => {
    expect(concatSql(['a'])).toBe('a');
    expect(concatSql(['a', 'b', 'c'])).toBe("((a)||','||(b))||','||(c)");
    const wide = concatSql(Array.from({ length: 1500 }, (_, i) => `c${i}`));
    let depth = 0;
    let max = 0;
    for (const ch of wide) {
      if (ch === '(') max = Math.max(max, ++depth);
      else if (ch === ')') depth--;
    }
    expect(max).toBeLessThanOrEqual(11);
  });
});

describe('parseDiscover', () => {
  it('reads hex paths (any name), sizes, owners and missing roots', () => {
    const hex = (s: string) => Buffer.from(s).toString('hex');
    const out = `DB|8192|1701443000.1234567890|ehr:ehr|640|${hex('/srv/a|b\nc.db')}\nMISSING|${hex('/nope')}\ngarbage line\n`;
    expect(parseDiscover(out)).toEqual({
      files: [{ path: '/srv/a|b\nc.db', size: 8192, mtimeMs: 1701443000123, owner: 'ehr:ehr', mode: '640' }],
      missingRoots: ['/nope'],
    });
  });
});
