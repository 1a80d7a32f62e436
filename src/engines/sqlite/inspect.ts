/**
 * Reading a SQLite database: opening it the same way everywhere, its user
 * tables and columns, fingerprints, integrity and smoke checks. Everything
 * here only reads the database it is given.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import type { TableFingerprint } from '../../core/types.ts';
import { Float64, TableHasher } from '../fingerprint.ts';
import { quoteIdent } from './sql-text.ts';

export const SQLITE_HEADER = Buffer.from('SQLite format 3\u0000', 'latin1');

/**
 * Opens a database file. Double-quoted string literals are accepted (legacy
 * schemas use them and the source SQLite accepted them); foreign keys are
 * not enforced (we copy data, we do not police it); integers come back as
 * bigints so values beyond 2^53 survive.
 */
export function openDatabase(path: string, options: { readOnly: boolean }): DatabaseSync {
  return new DatabaseSync(path, {
    readOnly: options.readOnly,
    enableForeignKeyConstraints: false,
    enableDoubleQuotedStringLiterals: true,
    readBigInts: true,
    timeout: 5_000,
  });
}

/** True when the file starts with the 16-byte SQLite header. Reads 16 bytes. */
export function hasSqliteHeader(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(16);
    const n = readSync(fd, b, 0, 16, 0);
    return n === 16 && b.equals(SQLITE_HEADER);
  } finally {
    closeSync(fd);
  }
}

/** The file change counter (header offset 24); null when the header is unreadable. */
export function readChangeCounter(path: string): number | null {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(28);
    const n = readSync(fd, b, 0, 28, 0);
    if (n < 28 || !b.subarray(0, 16).equals(SQLITE_HEADER)) return null;
    return b.readUInt32BE(24);
  } finally {
    closeSync(fd);
  }
}

export interface TableInfo {
  name: string;
  type: 'table' | 'virtual';
  withoutRowid: boolean;
  /** Stored, visible columns in declaration order (no generated or hidden columns). */
  columns: string[];
  /** Primary-key columns in key order (empty when none declared). */
  primaryKey: string[];
  /**
   * For rowid tables whose rowid is not an INTEGER PRIMARY KEY column: a
   * name by which the rowid can be selected and inserted (`rowid`, `_rowid_`
   * or `oid`, whichever no column shadows). Undefined otherwise.
   */
  rowidName?: string;
  sql: string;
}

interface TableListRow {
  name: string;
  type: string;
  wr: number | bigint;
}
interface XInfoRow {
  name: string;
  type: string;
  pk: number | bigint;
  hidden: number | bigint;
}

/**
 * User tables of the main schema, sorted by name: ordinary and virtual
 * tables; never sqlite_* internals or the shadow tables behind virtual tables
 * (their content is seen through the virtual table).
 */
export function listTables(db: DatabaseSync): TableInfo[] {
  const list = db
    .prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') ORDER BY name")
    .all() as unknown as TableListRow[];
  const sqlOf = db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?");
  const out: TableInfo[] = [];
  for (const t of list) {
    if (t.name.toLowerCase().startsWith('sqlite_')) continue;
    const cols = db.prepare('SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid').all(t.name) as unknown as XInfoRow[];
    const visible = cols.filter((c) => Number(c.hidden) === 0);
    const pk = visible.filter((c) => Number(c.pk) > 0).sort((a, b) => Number(a.pk) - Number(b.pk));
    const withoutRowid = Number(t.wr) === 1;
    const type = t.type === 'virtual' ? 'virtual' : 'table';
    const info: TableInfo = {
      name: t.name,
      type,
      withoutRowid,
      columns: visible.map((c) => c.name),
      primaryKey: pk.map((c) => c.name),
      sql: String((sqlOf.get(t.name) as { sql?: unknown } | undefined)?.sql ?? ''),
    };
    const ipk = pk.length === 1 && pk[0]!.type.toUpperCase() === 'INTEGER';
    if (type === 'table' && !withoutRowid && !ipk) {
      const taken = new Set(cols.map((c) => c.name.toLowerCase()));
      const free = ['rowid', '_rowid_', 'oid'].find((n) => !taken.has(n));
      if (free !== undefined) info.rowidName = free;
    }
    out.push(info);
  }
  return out;
}

/** SELECT of a table's stored columns (plus its rowid when it has a hidden one), in key order. */
export function selectRowsSql(t: TableInfo, options: { withRowid: boolean; order: boolean }): string {
  const cols = t.columns.map(quoteIdent);
  if (options.withRowid && t.rowidName !== undefined) cols.unshift(t.rowidName);
  let sql = `SELECT ${cols.length > 0 ? cols.join(', ') : '*'} FROM ${quoteIdent(t.name)}`;
  if (options.order) {
    if (t.type === 'table' && !t.withoutRowid) sql += ' ORDER BY rowid';
    else if (t.primaryKey.length > 0) sql += ' ORDER BY ' + t.primaryKey.map(quoteIdent).join(', ');
  }
  return sql;
}

/** Converts REALs (JS numbers, since integers come back as bigints) so the hash keeps them apart from integers. */
function tagFloats(row: unknown[]): unknown[] {
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (typeof v === 'number') row[i] = new Float64(v);
  }
  return row;
}

/**
 * Per-table row counts and content hashes of every user table, read inside
 * one read transaction (one consistent snapshot). Streams rows: memory does
 * not grow with table size. Throws the engine's error on a damaged file.
 */
export function fingerprintTables(db: DatabaseSync): TableFingerprint[] {
  const own = !db.isTransaction;
  if (own) db.exec('BEGIN');
  try {
    const tables: TableFingerprint[] = [];
    for (const t of listTables(db)) {
      const stmt = db.prepare(selectRowsSql(t, { withRowid: false, order: false }));
      stmt.setReadBigInts(true);
      stmt.setReturnArrays(true);
      const hasher = new TableHasher();
      for (const row of stmt.iterate()) hasher.add(tagFloats(row as unknown as unknown[]));
      tables.push({ table: t.name, ...hasher.result() });
    }
    return tables;
  } finally {
    if (own) db.exec('COMMIT');
  }
}

/** Table and row totals for discovery. */
export function countRows(db: DatabaseSync): { tables: number; rows: number } {
  let rows = 0;
  const tables = listTables(db);
  for (const t of tables) {
    const r = db.prepare(`SELECT count(*) AS n FROM ${quoteIdent(t.name)}`).get() as { n: number | bigint };
    rows += Number(r.n);
  }
  return { tables: tables.length, rows };
}

/** `PRAGMA integrity_check`: ok only when the single answer is exactly 'ok'; up to 20 messages kept. */
export function integrityCheck(db: DatabaseSync): { ok: boolean; messages: string[] } {
  const rows = db.prepare('PRAGMA integrity_check(20)').all() as { integrity_check: string }[];
  const messages = rows.map((r) => String(r.integrity_check));
  return { ok: messages.length === 1 && messages[0] === 'ok', messages };
}

/** Reads the first and the last row of every user table; returns the number of tables read. Throws on failure. */
export function smokeRead(db: DatabaseSync): number {
  const tables = listTables(db);
  for (const t of tables) {
    const first = selectRowsSql(t, { withRowid: false, order: true });
    db.prepare(first + ' LIMIT 1').get();
    if (t.type === 'table' && !t.withoutRowid) {
      db.prepare(selectRowsSql(t, { withRowid: false, order: false }) + ' ORDER BY rowid DESC LIMIT 1').get();
    } else if (t.primaryKey.length > 0) {
      const order = t.primaryKey.map((c) => quoteIdent(c) + ' DESC').join(', ');
      db.prepare(selectRowsSql(t, { withRowid: false, order: false }) + ` ORDER BY ${order} LIMIT 1`).get();
    }
  }
  return tables.length;
}

/** The SQLite library version, for provenance (`node:sqlite 3.53.4`). */
export function sqliteVersion(): string {
  const db = new DatabaseSync(':memory:');
  try {
    return String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v);
  } finally {
    db.close();
  }
}
