/**
 * The `sqlite-sql-dump` format: a deterministic SQL text dump written by
 * Rubicon itself (not by SQLite's backup machinery), and its loader.
 *
 * Layout (executable by the sqlite3 shell too):
 *   header comment
 *   PRAGMA encoding / page_size / auto_vacuum / foreign_keys=OFF
 *   BEGIN TRANSACTION;
 *   PRAGMA user_version / application_id
 *   CREATE TABLE ... (referenced tables first, then by name)
 *   INSERT ... per table in key order (hidden rowids kept, as --preserve-rowids)
 *   sqlite_sequence rows (AUTOINCREMENT counters)
 *   CREATE INDEX / VIEW / TRIGGER in creation order (triggers last, so they
 *   never fire while the data is loaded)
 *   COMMIT;
 *   PRAGMA journal_mode=WAL; (only when the source is in WAL mode)
 *
 * Guarantees: the same database content gives byte-identical dumps; every
 * value comes back with its storage class (integers beyond 2^53, REALs, text
 * with quotes, newlines, NULs and any Unicode, blobs); a dump cut short
 * never loads silently (it ends inside a statement or before COMMIT).
 * Not carried: sqlite_stat* (re-run ANALYZE), text that is not valid UTF-8
 * (node:sqlite reads it lossily, and so does every fingerprint).
 */
import { closeSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { DatabaseSync } from 'node:sqlite';
import { StringDecoder } from 'node:string_decoder';
import { RubiconError } from '../../core/errors.ts';
import { listTables, selectRowsSql, type TableInfo } from './inspect.ts';
import { quoteIdent, splitStatements, sqlLiteral } from './sql-text.ts';

const FLUSH_AT = 1 << 20;
const FORMAT_LINE = '-- Rubicon sqlite-sql-dump v1';

class BufferedWriter {
  readonly #fd: number;
  #parts: string[] = [];
  #size = 0;
  bytes = 0;

  constructor(path: string) {
    this.#fd = openSync(path, 'w');
  }

  write(s: string): void {
    this.#parts.push(s);
    this.#size += s.length;
    if (this.#size >= FLUSH_AT) this.flush();
  }

  flush(): void {
    if (this.#parts.length === 0) return;
    const buf = Buffer.from(this.#parts.join(''), 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(this.#fd, buf, off);
    this.bytes += buf.length;
    this.#parts = [];
    this.#size = 0;
  }

  close(sync: boolean): void {
    try {
      if (sync) {
        this.flush();
        fsyncSync(this.#fd);
      }
    } finally {
      closeSync(this.#fd);
    }
  }
}

/** Tables ordered so that a table comes after the tables its foreign keys reference; ties by name; cycles broken by name. */
function dependencyOrder(db: DatabaseSync, tables: TableInfo[]): TableInfo[] {
  const byName = new Map(tables.map((t) => [t.name.toLowerCase(), t]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: TableInfo[] = [];
  const visit = (t: TableInfo): void => {
    const key = t.name.toLowerCase();
    if (done.has(key) || visiting.has(key)) return;
    visiting.add(key);
    if (t.type === 'table') {
      const refs = db.prepare('SELECT DISTINCT "table" AS t FROM pragma_foreign_key_list(?) ORDER BY 1').all(t.name) as { t: string }[];
      for (const r of refs) {
        const parent = byName.get(String(r.t).toLowerCase());
        if (parent !== undefined) visit(parent);
      }
    }
    visiting.delete(key);
    done.add(key);
    out.push(t);
  };
  for (const t of tables) visit(t);
  return out;
}

function pragmaValue(db: DatabaseSync, name: string): string {
  const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown> | undefined;
  return row === undefined ? '' : String(Object.values(row)[0]);
}

export interface DumpResult {
  tables: number;
  rows: number;
  bytes: number;
}

/**
 * Writes the dump of `db` to `path`, streaming (memory does not grow with
 * the data), inside one read transaction (a consistent snapshot). Writes to
 * `path + '.tmp'`, fsyncs, then renames: `path` is either the whole dump or
 * untouched. Idempotent: a redo replaces the file. Only reads `db`.
 */
export function writeDump(db: DatabaseSync, path: string): DumpResult {
  const tmp = path + '.tmp';
  const w = new BufferedWriter(tmp);
  let ok = false;
  let rows = 0;
  let tableCount = 0;
  const own = !db.isTransaction;
  if (own) db.exec('BEGIN');
  try {
    const tables = dependencyOrder(db, listTables(db));
    tableCount = tables.length;
    const encoding = pragmaValue(db, 'encoding');
    const journal = pragmaValue(db, 'journal_mode').toLowerCase();
    w.write(`${FORMAT_LINE}: ${tables.length} tables. Execute in an empty database.\n`);
    if (encoding !== 'UTF-8') w.write(`PRAGMA encoding=${sqlLiteral(encoding)};\n`);
    w.write(`PRAGMA page_size=${Number(pragmaValue(db, 'page_size'))};\n`);
    w.write(`PRAGMA auto_vacuum=${Number(pragmaValue(db, 'auto_vacuum'))};\n`);
    w.write('PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n');
    w.write(`PRAGMA user_version=${Number(pragmaValue(db, 'user_version'))};\n`);
    w.write(`PRAGMA application_id=${Number(pragmaValue(db, 'application_id'))};\n`);
    for (const t of tables) w.write(`${t.sql};\n`);
    for (const t of tables) {
      const stmt = db.prepare(selectRowsSql(t, { withRowid: true, order: true }));
      stmt.setReadBigInts(true);
      stmt.setReturnArrays(true);
      const cols = t.columns.map(quoteIdent);
      if (t.rowidName !== undefined) cols.unshift(t.rowidName);
      const prefix = `INSERT INTO ${quoteIdent(t.name)}(${cols.join(',')}) VALUES(`;
      for (const row of stmt.iterate()) {
        w.write(prefix + (row as unknown as unknown[]).map(sqlLiteral).join(',') + ');\n');
        rows += 1;
      }
    }
    const hasSequence = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'").get();
    if (hasSequence !== undefined) {
      w.write('DELETE FROM sqlite_sequence;\n');
      const seq = db.prepare('SELECT name, seq FROM sqlite_sequence ORDER BY name');
      seq.setReturnArrays(true);
      for (const r of seq.iterate()) {
        w.write(`INSERT INTO sqlite_sequence(name,seq) VALUES(${(r as unknown as unknown[]).map(sqlLiteral).join(',')});\n`);
      }
    }
    const others = db
      .prepare(
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND type IN ('index', 'view', 'trigger') " +
          "ORDER BY CASE type WHEN 'trigger' THEN 1 ELSE 0 END, rowid",
      )
      .all() as { sql: string }[];
    for (const o of others) w.write(`${o.sql};\n`);
    w.write('COMMIT;\n');
    if (journal === 'wal') w.write('PRAGMA journal_mode=WAL;\n');
    w.write('-- end of dump\n');
    w.close(true);
    ok = true;
    renameSync(tmp, path);
    return { tables: tableCount, rows, bytes: w.bytes };
  } finally {
    if (own && db.isTransaction) db.exec('COMMIT');
    if (!ok) {
      try {
        w.close(false);
      } catch {
        // already closed
      }
      rmSync(tmp, { force: true });
    }
  }
}

/**
 * Executes a SQL text dump in `db` (meant to be a new, empty database),
 * streaming the file in 1 MiB chunks. Throws RubiconError('ENGINE_FAILED')
 * naming the statement when the engine rejects one, when the file ends
 * inside a statement, or when it ends with the transaction still open
 * (rolled back first). Destructive only to `db`.
 */
export function executeDump(db: DatabaseSync, path: string): { statements: number } {
  const fd = openSync(path, 'r');
  const decoder = new StringDecoder('utf8');
  const chunk = Buffer.alloc(FLUSH_AT);
  let rest = '';
  let statements = 0;
  let batch: string[] = [];
  let batchSize = 0;
  let batchFirst = 1;
  const run = (): void => {
    if (batch.length === 0) return;
    try {
      db.exec(batch.join(''));
    } catch (e) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw new RubiconError('ENGINE_FAILED', `the SQL dump ${path} failed in statements ${batchFirst}-${batchFirst + batch.length - 1}: ${(e as Error).message}`, { cause: e });
    }
    batchFirst += batch.length;
    batch = [];
    batchSize = 0;
  };
  const take = (list: string[]): void => {
    for (const s of list) {
      batch.push(s);
      batchSize += s.length;
      statements += 1;
      if (batchSize >= FLUSH_AT) run();
    }
  };
  try {
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const split = splitStatements(rest + decoder.write(chunk.subarray(0, n)), false);
      take(split.statements);
      rest = split.rest;
    }
    const last = splitStatements(rest + decoder.end(), true);
    take(last.statements);
    run();
    if (last.rest !== '') {
      throw new RubiconError('ENGINE_FAILED', `the SQL dump ${path} ends inside a statement after ${statements} statements (the file is truncated)`);
    }
    if (db.isTransaction) {
      db.exec('ROLLBACK');
      throw new RubiconError('ENGINE_FAILED', `the SQL dump ${path} ends before its COMMIT after ${statements} statements (the file is truncated); nothing was kept`);
    }
    return { statements };
  } finally {
    closeSync(fd);
  }
}
