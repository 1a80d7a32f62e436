import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { canonicalBytes, canonicalJson, signingBytes } from '../../src/trust/canonical.ts';
import { assertProperty } from './fc-seed.ts';

function refusal(fn: () => unknown): RubiconError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('canonicalJson', () => {
  it.each([
    [{ b: 1, a: [true, null, 'x'], c: { z: 0, y: -0 } }, '{"a":[true,null,"x"],"b":1,"c":{"y":0,"z":0}}'],
    [{ a: undefined, b: 'é\u2028"' }, '{"b":"é\u2028\\""}'],
    [[1e21, 0.1, -5e-7], '[1e+21,0.1,-5e-7]'],
    [{ B: 1, a: 2, _: 3, '10': 4, '9': 5 }, '{"10":4,"9":5,"B":1,"_":3,"a":2}'],
    ['', '""'],
  ])('writes %j as %s', (value, text) => {
    expect(canonicalJson(value)).toBe(text);
  });

  it('gives UTF-8 bytes', () => {
    expect(canonicalBytes({ k: 'é' })).toEqual(Buffer.from('{"k":"é"}', 'utf8'));
  });

  it.each([
    ['NaN', { a: Number.NaN }, 'a'],
    ['Infinity', { a: [1, Number.POSITIVE_INFINITY] }, 'a[1]'],
    ['undefined in an array', { list: [1, undefined] }, 'list[1]'],
    ['a hole in an array', { list: [1, , 3] }, 'list[1]'], // eslint-disable-line no-sparse-arrays
    ['a Date', { at: new Date(0) }, 'at'],
    ['a bigint', { n: 1n }, 'n'],
    ['a function', { f: () => 1 }, 'f'],
    ['undefined at the root', undefined, '(root)'],
  ])('refuses %s, naming the path', (_label, value, where) => {
    const e = refusal(() => canonicalJson(value));
    expect(e.code).toBe('CANONICAL_INVALID');
    expect(e.message).toContain(where);
  });

  it('refuses a cycle but accepts the same object twice side by side', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const loop: Record<string, unknown> = {};
    loop['self'] = loop;
    expect(refusal(() => canonicalJson(loop)).message).toContain('cycle');
  });

  it('is JSON that parses back to the same value, whatever the key order', () => {
    assertProperty(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(v)));
        const reordered = JSON.parse(JSON.stringify(v), (_k, x: unknown) =>
          x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).reverse()) : x,
        ) as unknown;
        expect(canonicalJson(reordered)).toBe(text);
        expect(text).not.toMatch(/^\s|\s$/);
      }),
    );
  });

  it('signingBytes prefixes the domain and a line feed; a bad domain is refused', () => {
    expect(signingBytes('rubicon/permit/v1', { a: 1 }).toString('utf8')).toBe('rubicon/permit/v1\n{"a":1}');
    expect(refusal(() => signingBytes('two words', {})).code).toBe('CANONICAL_INVALID');
    expect(refusal(() => signingBytes('a\nb', {})).code).toBe('CANONICAL_INVALID');
  });
});
