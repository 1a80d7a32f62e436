import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quoteIdentifier, quoteQualified, sqlBinaryLiteral, sqlStringLiteral } from '../../../src/engines/mssql/quote.ts';
import { backupToDiskStatement, checkDbStatement, restoreDatabaseStatement, tableHashStatement } from '../../../src/engines/mssql/sql.ts';
import { assertProperty } from '../../support/seed.ts';

/** Reads one bracket-quoted identifier back the way SQL Server's parser does; returns it and the rest. */
function unquote(text: string): { name: string; rest: string } {
  if (!text.startsWith('[')) throw new Error('not bracket-quoted');
  let name = '';
  let i = 1;
  for (;;) {
    const c = text[i];
    if (c === undefined) throw new Error('unterminated');
    if (c === ']') {
      if (text[i + 1] === ']') {
        name += ']';
        i += 2;
        continue;
      }
      return { name, rest: text.slice(i + 1) };
    }
    name += c;
    i += 1;
  }
}

describe('quoteIdentifier', () => {
  it.each([
    ['EHR', '[EHR]'],
    ['a]b', '[a]]b]'],
    [']', '[]]]'],
    ['x]; DROP DATABASE master; --', '[x]]; DROP DATABASE master; --]'],
    ["O'Brien", "[O'Brien]"],
    ['患者データ', '[患者データ]'],
    ['[already]', '[[already]]]'],
    ['a b\tc', '[a b\tc]'],
  ])('%j → %s', (name, quoted) => {
    expect(quoteIdentifier(name)).toBe(quoted);
    expect(unquote(quoted)).toEqual({ name, rest: '' });
  });

  it('round-trips any name: the parser reads back exactly the name and nothing after it', () => {
    assertProperty(
      fc.property(fc.string({ minLength: 1, maxLength: 128, unit: 'grapheme' }).filter((s) => !s.includes('\u0000') && s.length <= 128), (name) => {
        const q = quoteIdentifier(name);
        expect(unquote(q)).toEqual({ name, rest: '' });
      }),
      { numRuns: 500 },
    );
  });

  it('refuses names SQL Server cannot hold, with ARGUMENTS_INVALID', () => {
    expect(() => quoteIdentifier('')).toThrow(expect.objectContaining({ code: 'ARGUMENTS_INVALID' }));
    expect(() => quoteIdentifier('x'.repeat(129))).toThrow(/at most 128/);
    expect(() => quoteIdentifier('a\u0000b')).toThrow(/NUL/);
  });

  it('is the only path of names into statements: nasty database names appear quoted, values only as parameters', () => {
    const nasty = "ehr]; EXEC xp_cmdshell 'x'; --";
    const b = backupToDiskStatement(nasty, "D:\\it's\\x.bak");
    expect(b.text).toBe('BACKUP DATABASE [ehr]]; EXEC xp_cmdshell \'x\'; --] TO DISK = @path WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10;');
    expect(b.text).not.toContain("it's");
    expect(b.params).toEqual([{ name: 'path', type: 'nvarchar', value: "D:\\it's\\x.bak", secret: false }]);
    expect(checkDbStatement(nasty).text).toBe(`DBCC CHECKDB (${quoteIdentifier(nasty)}) WITH NO_INFOMSGS, ALL_ERRORMSGS;`);
    expect(tableHashStatement('d]b', 's]', 't', [{ name: 'c]', baseType: 'int' }]).text).toContain('FROM [d]]b].[s]]].[t] AS r');
    expect(tableHashStatement('d]b', 's]', 't', [{ name: 'c]', baseType: 'int' }]).text).toContain('r.[c]]]');
    const r = restoreDatabaseStatement('t]', ['/x/a.bak'], 1, [{ logicalName: "l'1", physicalPath: '/d/p.mdf' }], true);
    expect(r.text).not.toContain("l'1");
    expect(r.params.map((p) => p.value)).toEqual(['/x/a.bak', 1, "l'1", '/d/p.mdf']);
  });

  it('quoteQualified quotes every part', () => {
    expect(quoteQualified('db', 'dbo', 'a]b')).toBe('[db].[dbo].[a]]b]');
  });
});

describe('script literals', () => {
  it('doubles single quotes and refuses NUL', () => {
    expect(sqlStringLiteral("it's")).toBe("N'it''s'");
    expect(sqlStringLiteral("'; DROP LOGIN sa; --")).toBe("N'''; DROP LOGIN sa; --'");
    expect(() => sqlStringLiteral('a\u0000')).toThrow(/NUL/);
  });
  it('binary literals are hex only', () => {
    expect(sqlBinaryLiteral(Uint8Array.from([0, 0xab, 0xff]))).toBe('0x00ABFF');
  });
});
