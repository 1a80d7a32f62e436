import { RubiconError } from '../core/errors.ts';

/**
 * Canonical JSON: the exact bytes that get signed (docs/trust.md).
 *
 * Rules (a subset of RFC 8785, JCS, enough for the values Rubicon signs):
 * - object keys sorted by UTF-16 code units (JavaScript's default sort),
 *   no whitespace anywhere;
 * - strings and finite numbers as `JSON.stringify` writes them (ECMAScript's
 *   shortest round-trip number form, `-0` as `0`);
 * - an object property whose value is `undefined` is left out (as in
 *   `JSON.stringify`), so an optional field that is absent and one that is
 *   `undefined` sign alike;
 * - refused with CANONICAL_INVALID: NaN and ±Infinity, `undefined` inside an
 *   array, functions, symbols, bigints, cycles, and objects that are not plain
 *   (Date, Map, Buffer, class instances: convert them first), so two parties
 *   can never disagree on what was signed;
 * - UTF-8 bytes of the resulting text.
 *
 * Pure and total over JSON values; same value → same bytes.
 */

function refuse(path: string, what: string): never {
  throw new RubiconError('CANONICAL_INVALID', `cannot sign the value at ${path || '(root)'}: ${what}`, {
    hint: 'This is a bug in the caller: only plain JSON values (objects, arrays, strings, finite numbers, booleans, null) can be signed.',
    details: { path: path || '(root)' },
  });
}

function write(value: unknown, path: string, seen: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) refuse(path, `${String(value)} is not a finite number`);
      return JSON.stringify(value);
    case 'undefined':
      return refuse(path, 'undefined is not a JSON value');
    case 'object':
      break;
    default:
      return refuse(path, `a ${typeof value} is not a JSON value`);
  }
  const obj = value as object;
  if (seen.has(obj)) refuse(path, 'the value contains itself (a cycle)');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      const parts: string[] = [];
      for (let i = 0; i < obj.length; i++) {
        if (!(i in obj) || obj[i] === undefined) refuse(`${path}[${i}]`, 'undefined (or a hole) inside an array');
        parts.push(write(obj[i], `${path}[${i}]`, seen));
      }
      return `[${parts.join(',')}]`;
    }
    const proto = Object.getPrototypeOf(obj) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      refuse(path, `a ${(obj as { constructor?: { name?: string } }).constructor?.name ?? 'non-plain'} object is not a plain JSON object`);
    }
    if (Object.getOwnPropertySymbols(obj).length > 0) refuse(path, 'symbol keys are not JSON');
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec)
      .filter((k) => rec[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${write(rec[k], path ? `${path}.${k}` : k, seen)}`).join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

/** The canonical JSON text of `value`. Throws RubiconError(CANONICAL_INVALID) naming the path of the first value it cannot encode. */
export function canonicalJson(value: unknown): string {
  return write(value, '', new Set());
}

/** The canonical JSON of `value` as UTF-8 bytes. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

/**
 * The bytes a signature covers: `domain`, a line feed, then the canonical
 * JSON of `value`. The domain (e.g. `rubicon/permit/v1`) separates uses of
 * one key: a signature over a permit can never be replayed as a signature
 * over a journal event, and vice versa. A domain is ASCII without a line feed.
 */
export function signingBytes(domain: string, value: unknown): Buffer {
  if (!/^[\x21-\x7e]+$/.test(domain)) {
    throw new RubiconError('CANONICAL_INVALID', `signing domain ${JSON.stringify(domain)} must be printable ASCII without spaces`, {
      hint: 'Use a fixed string such as rubicon/permit/v1.',
    });
  }
  return Buffer.concat([Buffer.from(`${domain}\n`, 'ascii'), canonicalBytes(value)]);
}
