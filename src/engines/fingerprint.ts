/**
 * Engine-neutral content fingerprints: per table, a row count and an
 * order-independent hash of every row. Two copies of a database have equal
 * fingerprints exactly when every table holds the same multiset of rows
 * (up to SHA-256 collisions), whatever order the engine returns them in.
 *
 * Contracts:
 * - Pure: no I/O. Engines stream rows into a TableHasher with bounded memory.
 * - Row encoding is canonical and type-tagged: NULL, '' and 0 hash
 *   differently; an integer hashes the same whether the driver returned it as
 *   a JS number or a bigint; a value wrapped in Float64 always hashes as a
 *   float (so an engine can keep REAL 5.0 apart from INTEGER 5).
 * - The table hash is the sum of the row hashes mod 2^256: order-independent,
 *   and (unlike XOR) a duplicated row changes it.
 * - Comparisons speak in tables, counts and "hash differs": never row content.
 */
import { createHash } from 'node:crypto';
import type { Fingerprint, TableFingerprint } from '../core/types.ts';

/** Marks a number that the engine stored as a floating-point value. */
export class Float64 {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

// One tag byte per value type. Never renumber: stored fingerprints depend on them.
const TAG_NULL = 0x00;
const TAG_INTEGER = 0x01;
const TAG_FLOAT = 0x02;
const TAG_TEXT = 0x03;
const TAG_BLOB = 0x04;
const TAG_BOOLEAN = 0x05;
const TAG_DATE = 0x06;

const MOD = 1n << 256n;
const MASK = MOD - 1n;

function lengthPrefix(tag: number, length: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = tag;
  b.writeBigUInt64BE(BigInt(length), 1);
  return b;
}

function floatBytes(n: number): Buffer {
  const b = Buffer.alloc(8);
  // One NaN, one zero sign is kept: -0 and 0 are different stored values.
  b.writeDoubleBE(Number.isNaN(n) ? Number.NaN : n);
  return b;
}

/**
 * Appends the canonical encoding of one value: tag, 8-byte length, payload.
 * Throws a TypeError for a value no engine should produce (a driver bug).
 */
function encodeValue(update: (b: Buffer) => void, value: unknown): void {
  if (value === null || value === undefined) {
    update(lengthPrefix(TAG_NULL, 0));
  } else if (typeof value === 'bigint') {
    const s = Buffer.from(value.toString(10), 'latin1');
    update(lengthPrefix(TAG_INTEGER, s.length));
    update(s);
  } else if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && !Object.is(value, -0)) {
      const s = Buffer.from(value.toString(10), 'latin1');
      update(lengthPrefix(TAG_INTEGER, s.length));
      update(s);
    } else {
      update(lengthPrefix(TAG_FLOAT, 8));
      update(floatBytes(value));
    }
  } else if (value instanceof Float64) {
    update(lengthPrefix(TAG_FLOAT, 8));
    update(floatBytes(value.value));
  } else if (typeof value === 'string') {
    const s = Buffer.from(value, 'utf8');
    update(lengthPrefix(TAG_TEXT, s.length));
    update(s);
  } else if (value instanceof Uint8Array) {
    update(lengthPrefix(TAG_BLOB, value.byteLength));
    update(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  } else if (typeof value === 'boolean') {
    update(lengthPrefix(TAG_BOOLEAN, 1));
    update(Buffer.from([value ? 1 : 0]));
  } else if (value instanceof Date) {
    const s = Buffer.from(Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString(), 'latin1');
    update(lengthPrefix(TAG_DATE, s.length));
    update(s);
  } else {
    throw new TypeError(`rowHash: cannot encode a value of type ${Object.prototype.toString.call(value)}`);
  }
}

/** SHA-256 over the canonical, type-tagged encoding of one row (column count included). */
export function rowHash(values: unknown[]): Buffer {
  const h = createHash('sha256');
  const count = Buffer.alloc(4);
  count.writeUInt32BE(values.length);
  h.update(count);
  const update = (b: Buffer): void => {
    h.update(b);
  };
  for (const v of values) encodeValue(update, v);
  return h.digest();
}

/** Order-independent multiset hash of a table's rows. Memory: O(1). */
export class TableHasher {
  #sum = 0n;
  #rows = 0;

  add(values: unknown[]): void {
    const h = rowHash(values);
    this.#sum = (this.#sum + BigInt('0x' + h.toString('hex'))) & MASK;
    this.#rows += 1;
  }

  result(): { rows: number; hash: string } {
    return { rows: this.#rows, hash: this.#sum.toString(16).padStart(64, '0') };
  }
}

function canonicalTable(t: TableFingerprint): TableFingerprint {
  const out: TableFingerprint = { table: t.table, rows: t.rows, hash: t.hash };
  if (t.unhashedColumns !== undefined && t.unhashedColumns.length > 0) {
    out.unhashedColumns = [...t.unhashedColumns].sort();
  }
  return out;
}

function byName(a: TableFingerprint, b: TableFingerprint): number {
  return a.table < b.table ? -1 : a.table > b.table ? 1 : 0;
}

/**
 * Builds a Fingerprint: tables sorted by name, digest = SHA-256 over the
 * canonical JSON of the engine and the sorted tables. Throws a TypeError on
 * a duplicate table name (an engine bug).
 */
export function makeFingerprint(engine: string, tables: TableFingerprint[]): Fingerprint {
  const sorted = tables.map(canonicalTable).sort(byName);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.table === sorted[i - 1]!.table) {
      throw new TypeError(`makeFingerprint: table ${sorted[i]!.table} appears twice`);
    }
  }
  // Key order is fixed by canonicalTable, so JSON.stringify is canonical here.
  const digest = createHash('sha256')
    .update(JSON.stringify({ engine, tables: sorted }))
    .digest('hex');
  return { engine, tables: sorted, digest };
}

const count = (n: number): string => n.toLocaleString('en-US');

/**
 * Compares two fingerprints table by table. `differences` are plain
 * sentences ("table encounters: 4,210 rows expected, 4,180 restored"),
 * sorted by table name, never containing row content. Pure.
 */
export function compareFingerprints(
  expected: Fingerprint,
  actual: Fingerprint,
): { equal: boolean; differences: string[] } {
  const differences: string[] = [];
  if (expected.engine !== actual.engine) {
    differences.push(`engine ${expected.engine} expected, ${actual.engine} restored`);
  }
  const exp = new Map(expected.tables.map((t) => [t.table, t]));
  const act = new Map(actual.tables.map((t) => [t.table, t]));
  const names = [...new Set([...exp.keys(), ...act.keys()])].sort();
  for (const name of names) {
    const e = exp.get(name);
    const a = act.get(name);
    if (e === undefined) {
      differences.push(`table ${name} unexpected`);
    } else if (a === undefined) {
      differences.push(`table ${name} missing`);
    } else if (e.rows !== a.rows) {
      differences.push(`table ${name}: ${count(e.rows)} rows expected, ${count(a.rows)} restored`);
    } else if (e.hash !== a.hash) {
      differences.push(`table ${name}: content hash differs`);
    } else {
      const eu = [...(e.unhashedColumns ?? [])].sort().join(',');
      const au = [...(a.unhashedColumns ?? [])].sort().join(',');
      if (eu !== au) differences.push(`table ${name}: different columns could not be hashed`);
    }
  }
  return { equal: differences.length === 0, differences };
}
