import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareFingerprints, Float64, makeFingerprint, rowHash, TableHasher } from '../../src/engines/fingerprint.ts';
import { assertProperty } from '../support/seed.ts';

const value = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.double({ noNaN: true }).map((d) => new Float64(d)),
  fc.string(),
  fc.uint8Array({ maxLength: 8 }),
);
const row = fc.array(value, { maxLength: 4 });

function hashOf(rows: unknown[][]): { rows: number; hash: string } {
  const h = new TableHasher();
  for (const r of rows) h.add(r);
  return h.result();
}

describe('rowHash', () => {
  it('tells null, empty text, zero, false, an empty blob and a float zero apart', () => {
    const variants = [null, '', 0, false, new Uint8Array(0), new Float64(0), '0', 'null'];
    const hashes = new Set(variants.map((v) => rowHash([v]).toString('hex')));
    expect(hashes.size).toBe(variants.length);
  });

  it('hashes an integer the same whether it arrives as a number or a bigint', () => {
    expect(rowHash([42, 'x'])).toEqual(rowHash([42n, 'x']));
    expect(rowHash([2n ** 63n - 1n])).not.toEqual(rowHash([2n ** 63n - 2n]));
  });

  it('keeps column boundaries: ["ab", "c"] differs from ["a", "bc"] and from ["abc"]', () => {
    const a = rowHash(['ab', 'c']).toString('hex');
    expect(rowHash(['a', 'bc']).toString('hex')).not.toBe(a);
    expect(rowHash(['abc']).toString('hex')).not.toBe(a);
    expect(rowHash(['ab', 'c', null]).toString('hex')).not.toBe(a);
  });

  it('a single changed cell changes the hash', () => {
    assertProperty(
      fc.property(row.filter((r) => r.length > 0), fc.nat(), fc.string(), (r, i, s) => {
        const idx = i % r.length;
        const changed = [...r];
        changed[idx] = typeof r[idx] === 'string' && r[idx] === s ? s + 'x' : s;
        expect(rowHash(changed).equals(rowHash(r))).toBe(false);
      }),
    );
  });

  it('refuses values no engine produces', () => {
    expect(() => rowHash([{ a: 1 }])).toThrow(TypeError);
  });
});

describe('TableHasher', () => {
  it('is independent of row order', () => {
    assertProperty(
      fc.property(fc.array(row, { maxLength: 20 }), fc.integer(), (rows, seed) => {
        const shuffled = [...rows];
        // Deterministic Fisher-Yates from the seed.
        let s = seed >>> 0;
        for (let i = shuffled.length - 1; i > 0; i--) {
          s = (s * 1103515245 + 12345) >>> 0;
          const j = s % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        expect(hashOf(shuffled)).toEqual(hashOf(rows));
      }),
    );
  });

  it('counts duplicate rows (a duplicated row is not cancelled out as with XOR)', () => {
    const one = hashOf([['a', 1]]);
    const two = hashOf([['a', 1], ['a', 1]]);
    expect(two.rows).toBe(2);
    expect(two.hash).not.toBe(one.hash);
    expect(hashOf([['a', 1], ['a', 1]]).hash).not.toBe(hashOf([]).hash);
  });

  it('a changed cell in one row of many changes the table hash', () => {
    const rows = Array.from({ length: 50 }, (_, i) => [i, `name ${i}`, null]);
    const before = hashOf(rows).hash;
    rows[17] = [17, 'name 17', 0];
    expect(hashOf(rows).hash).not.toBe(before);
  });

  it('gives a 64-hex-digit hash, zeros for an empty table', () => {
    expect(hashOf([])).toEqual({ rows: 0, hash: '0'.repeat(64) });
    expect(hashOf([[1]]).hash).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('makeFingerprint / compareFingerprints', () => {
  const t = (table: string, rows: number, hash = 'a'.repeat(64)) => ({ table, rows, hash });

  it('sorts tables, and equal content gives an equal digest whatever the input order', () => {
    const a = makeFingerprint('sqlite', [t('notes', 2), t('encounters', 3)]);
    const b = makeFingerprint('sqlite', [t('encounters', 3), t('notes', 2)]);
    expect(a.tables.map((x) => x.table)).toEqual(['encounters', 'notes']);
    expect(a.digest).toBe(b.digest);
    expect(makeFingerprint('sqlite', [t('encounters', 3), t('notes', 1)]).digest).not.toBe(a.digest);
    expect(makeFingerprint('mssql', [t('encounters', 3), t('notes', 2)]).digest).not.toBe(a.digest);
  });

  it('refuses a table named twice', () => {
    expect(() => makeFingerprint('sqlite', [t('a', 1), t('a', 1)])).toThrow(/appears twice/);
  });

  it('describes every difference in plain words, without row content', () => {
    const expected = makeFingerprint('sqlite', [t('encounters', 4210), t('notes', 10), t('x', 1), t('same', 5)]);
    const actual = makeFingerprint('sqlite', [t('encounters', 4180), t('notes', 10, 'b'.repeat(64)), t('y', 1), t('same', 5)]);
    const cmp = compareFingerprints(expected, actual);
    expect(cmp.equal).toBe(false);
    expect(cmp.differences).toEqual([
      'table encounters: 4,210 rows expected, 4,180 restored',
      'table notes: content hash differs',
      'table x missing',
      'table y unexpected',
    ]);
  });

  it('reports equal fingerprints as equal', () => {
    const a = makeFingerprint('sqlite', [t('a', 1)]);
    expect(compareFingerprints(a, makeFingerprint('sqlite', [t('a', 1)]))).toEqual({ equal: true, differences: [] });
  });
});
