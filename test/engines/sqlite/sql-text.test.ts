import { DatabaseSync } from 'node:sqlite';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { quoteIdent, splitStatements, sqlLiteral } from '../../../src/engines/sqlite/sql-text.ts';
import { assertProperty } from '../../support/seed.ts';

describe('sqlLiteral', () => {
  const db = new DatabaseSync(':memory:', { readBigInts: true, returnArrays: true });
  const roundTrip = (v: unknown): { value: unknown; type: string } => {
    const r = db.prepare(`SELECT ${sqlLiteral(v)}, typeof(${sqlLiteral(v)})`).get() as unknown as [unknown, string];
    return { value: r[0], type: r[1] };
  };

  it('round-trips text exactly, including quotes, newlines, NUL and any Unicode', () => {
    assertProperty(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        // Lone surrogates cannot be stored as UTF-8; node:sqlite would replace them on the way in.
        fc.pre(Buffer.from(s, 'utf8').toString('utf8') === s);
        expect(roundTrip(s)).toEqual({ value: s, type: 'text' });
      }),
    );
    expect(roundTrip("it's \"quoted\"\r\n\u0000end 😀")).toEqual({ value: "it's \"quoted\"\r\n\u0000end 😀", type: 'text' });
  });

  it('round-trips integers beyond 2^53 and keeps REALs real', () => {
    for (const v of [0n, -1n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)]) expect(roundTrip(v)).toEqual({ value: v, type: 'integer' });
    for (const v of [5, 0.1, -2.5e-300, 1e21, Number.MAX_VALUE, Infinity, -Infinity]) {
      expect(roundTrip(v)).toEqual({ value: v, type: 'real' });
    }
    expect(Object.is(roundTrip(-0).value, -0)).toBe(true);
    assertProperty(
      fc.property(fc.double({ noNaN: true }), (d) => {
        expect(roundTrip(d)).toEqual({ value: d, type: 'real' });
      }),
    );
  });

  it('writes blobs as X\'..\' and NULL as NULL', () => {
    const blob = new Uint8Array([0, 1, 0xfe, 0xff]);
    expect(sqlLiteral(blob)).toBe("X'0001FEFF'");
    expect(roundTrip(blob)).toEqual({ value: blob, type: 'blob' });
    expect(roundTrip(null)).toEqual({ value: null, type: 'null' });
  });

  it('quotes identifiers with embedded double quotes', () => {
    db.exec(`CREATE TABLE ${quoteIdent('we"ird name')} (${quoteIdent('a"b')})`);
    expect(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").get()).toEqual(['we"ird name']);
  });
});

describe('splitStatements', () => {
  it('splits on semicolons outside strings, identifiers and comments', () => {
    const text = "INSERT INTO t VALUES('a;b');\n-- c; d\nCREATE TABLE \"x;y\"([p;q]); /* ; */ SELECT 1;";
    const { statements, rest } = splitStatements(text, true);
    expect(statements.map((s) => s.trim())).toEqual([
      "INSERT INTO t VALUES('a;b');",
      '-- c; d\nCREATE TABLE "x;y"([p;q]);',
      '/* ; */ SELECT 1;',
    ]);
    expect(rest).toBe('');
  });

  it('keeps a CREATE TRIGGER body with inner semicolons whole', () => {
    const trig = 'CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET a = 1; DELETE FROM u; END;';
    const { statements } = splitStatements(`${trig}\nSELECT 2;`, true);
    expect(statements).toEqual([trig, '\nSELECT 2;']);
  });

  it('handles doubled quotes and reports an unfinished statement as the rest', () => {
    expect(splitStatements("SELECT 'it''s;';", true).statements).toEqual(["SELECT 'it''s;';"]);
    expect(splitStatements("SELECT 'unterminated;", true)).toEqual({ statements: [], rest: "SELECT 'unterminated;" });
    expect(splitStatements('SELECT 1; SELECT 2', true)).toEqual({ statements: ['SELECT 1;'], rest: ' SELECT 2' });
    expect(splitStatements('SELECT 1;\n-- trailing comment\n', true)).toEqual({ statements: ['SELECT 1;'], rest: '' });
  });

  it('gives the same statements however the text is cut into chunks', () => {
    const text =
      "CREATE TABLE t(a TEXT DEFAULT 'x;y');\nINSERT INTO t VALUES('it''s');\n" +
      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;\n/* c;c */INSERT INTO t VALUES('z');\n";
    const whole = splitStatements(text, true).statements;
    expect(whole).toHaveLength(4);
    assertProperty(
      fc.property(fc.array(fc.nat(text.length), { maxLength: 6 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const out: string[] = [];
        let rest = '';
        let prev = 0;
        for (const p of [...points, text.length]) {
          const r = splitStatements(rest + text.slice(prev, p), false);
          out.push(...r.statements);
          rest = r.rest;
          prev = p;
        }
        const last = splitStatements(rest, true);
        out.push(...last.statements);
        expect(last.rest).toBe('');
        expect(out).toEqual(whole);
      }),
    );
  });
});
