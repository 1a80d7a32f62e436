import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { compareFingerprints, makeFingerprint } from '../../../src/engines/fingerprint.ts';
import { executeDump, writeDump } from '../../../src/engines/sqlite/dump.ts';
import { fingerprintTables, openDatabase } from '../../../src/engines/sqlite/inspect.ts';
import { tempDir } from './helpers.ts';

/** A database full of awkward things: every value and schema feature the dump must carry. */
function awkwardDatabase(path: string): void {
  const db = new DatabaseSync(path, { readBigInts: true });
  db.exec(`
    PRAGMA user_version = 7;
    PRAGMA application_id = 1234;
    -- "a_child" sorts before "z_parent" but references it: the dump must create the parent first.
    CREATE TABLE z_parent (id INTEGER PRIMARY KEY, label TEXT);
    CREATE TABLE a_child (id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL REFERENCES z_parent(id), v);
    CREATE TABLE "we""ird table" ("col ""q""" TEXT, [semi;colon] TEXT, n REAL, total AS (n * 2) STORED);
    CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
    CREATE TABLE hidden_rowids (a TEXT, b INTEGER);
    CREATE TABLE counter (n INTEGER);
    CREATE TABLE child_log (child INTEGER);
    INSERT INTO counter VALUES (0);
    CREATE VIRTUAL TABLE notes_fts USING fts5(body);
    INSERT INTO notes_fts(body) VALUES ('fever; cough'), ('it''s fine');
    CREATE INDEX child_parent ON a_child(parent);
    CREATE VIEW child_labels AS SELECT a_child.id, z_parent.label FROM a_child JOIN z_parent ON z_parent.id = a_child.parent;
    CREATE TRIGGER count_children AFTER INSERT ON a_child BEGIN UPDATE counter SET n = n + 1; INSERT INTO child_log VALUES (new.id); END;
  `);
  db.prepare('INSERT INTO z_parent VALUES (?, ?)').run(1, "O'Brien; \"quoted\"\nsecond line\r\n\ttab");
  db.prepare('INSERT INTO z_parent VALUES (?, ?)').run(2, 'Ünïcødé — 患者 😀 \u0000 after NUL');
  db.prepare('INSERT INTO z_parent VALUES (?, ?)').run(3, null);
  db.prepare('INSERT INTO z_parent VALUES (?, ?)').run(4, '');
  const child = db.prepare('INSERT INTO a_child (parent, v) VALUES (?, ?)');
  child.run(1, 2n ** 62n + 1n);
  child.run(2, -(2n ** 63n));
  child.run(3, 9007199254740993n); // 2^53 + 1: not representable as a JS number
  child.run(4, 0);
  child.run(1, 5.0); // stays REAL through the dump
  child.run(1, 0.1);
  child.run(2, new Uint8Array([0, 39, 34, 10, 255]));
  child.run(3, '');
  child.run(4, null);
  db.exec('DELETE FROM a_child WHERE id = 9'); // the AUTOINCREMENT counter stays at 9
  db.prepare(`INSERT INTO "we""ird table" ("col ""q""", [semi;colon], n) VALUES (?, ?, ?)`).run('x;y', "'--'", 1.5);
  db.prepare(`INSERT INTO "we""ird table" ("col ""q""", [semi;colon], n) VALUES (?, ?, ?)`).run(null, '/* not a comment */', -0.0);
  db.prepare('INSERT INTO kv VALUES (?, ?)').run('b', new Uint8Array(0));
  db.prepare('INSERT INTO kv VALUES (?, ?)').run('a', new Uint8Array(300).fill(7));
  for (let i = 0; i < 5; i++) db.prepare('INSERT INTO hidden_rowids VALUES (?, ?)').run(`r${i}`, i);
  db.exec('DELETE FROM hidden_rowids WHERE b = 1'); // leaves a gap in the hidden rowids
  db.close();
}

function loadDump(dumpPath: string, dbPath: string): DatabaseSync {
  const db = openDatabase(dbPath, { readOnly: false });
  executeDump(db, dumpPath);
  return db;
}

describe('sqlite-sql-dump', () => {
  it('carries quotes, newlines, unicode, NULs, NULLs, blobs, big integers, REALs and the schema', () => {
    const dir = tempDir();
    awkwardDatabase(join(dir, 'src.db'));
    const src = openDatabase(join(dir, 'src.db'), { readOnly: true });
    const result = writeDump(src, join(dir, 'dump.sql'));
    expect(result).toMatchObject({ tables: 8 });
    const restored = loadDump(join(dir, 'dump.sql'), join(dir, 'restored.db'));

    const a = makeFingerprint('sqlite', fingerprintTables(src));
    const b = makeFingerprint('sqlite', fingerprintTables(restored));
    expect(compareFingerprints(a, b)).toEqual({ equal: true, differences: [] });

    const q = (db: DatabaseSync, sql: string): unknown => db.prepare(sql).all();
    for (const sql of [
      'SELECT id, parent, v, typeof(v) FROM a_child ORDER BY id',
      'SELECT id, label FROM z_parent ORDER BY id',
      'SELECT rowid, a, b FROM hidden_rowids ORDER BY rowid',
      'SELECT name, seq FROM sqlite_sequence',
      'SELECT * FROM child_labels ORDER BY id',
      'SELECT k, v FROM kv',
      'SELECT n FROM counter',
      'SELECT child FROM child_log ORDER BY rowid',
      "SELECT body FROM notes_fts WHERE notes_fts MATCH 'cough'",
      'PRAGMA user_version',
      'PRAGMA application_id',
      `SELECT *, typeof(n) FROM "we""ird table"`,
      "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('index', 'view', 'trigger') ORDER BY name",
    ]) {
      expect(q(restored, sql), sql).toEqual(q(src, sql));
    }
    // The trigger did not fire while the rows were loaded, but works afterwards.
    expect(q(restored, 'SELECT n FROM counter')).toEqual([{ n: 9n }]);
    restored.exec('INSERT INTO a_child (parent, v) VALUES (1, 1)');
    expect(q(restored, 'SELECT n FROM counter')).toEqual([{ n: 10n }]);
    expect(q(restored, 'SELECT max(id) AS id FROM a_child')).toEqual([{ id: 10n }]);
    src.close();
    restored.close();
  });

  it('is deterministic: the same content gives byte-identical dumps, also after a round trip', () => {
    const dir = tempDir();
    awkwardDatabase(join(dir, 'src.db'));
    const src = openDatabase(join(dir, 'src.db'), { readOnly: true });
    writeDump(src, join(dir, 'one.sql'));
    writeDump(src, join(dir, 'two.sql'));
    src.close();
    const restored = loadDump(join(dir, 'one.sql'), join(dir, 'restored.db'));
    writeDump(restored, join(dir, 'three.sql'));
    restored.close();
    const one = readFileSync(join(dir, 'one.sql'));
    expect(readFileSync(join(dir, 'two.sql')).equals(one)).toBe(true);
    expect(readFileSync(join(dir, 'three.sql')).equals(one)).toBe(true);
  });

  it('streams rows: a dump larger than the chunk size loads whole', () => {
    const dir = tempDir();
    const db = new DatabaseSync(join(dir, 'big.db'));
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)');
    const ins = db.prepare('INSERT INTO t VALUES (?, ?)');
    db.exec('BEGIN');
    // ~3 MiB of text with quotes and newlines so statements straddle the 1 MiB read chunks.
    for (let i = 0; i < 3000; i++) ins.run(i, `row ${i} it's\n`.repeat(70));
    db.exec('COMMIT');
    db.close();
    const src = openDatabase(join(dir, 'big.db'), { readOnly: true });
    const { bytes, rows } = writeDump(src, join(dir, 'big.sql'));
    expect(rows).toBe(3000);
    expect(bytes).toBeGreaterThan(3 * 1024 * 1024);
    const restored = loadDump(join(dir, 'big.sql'), join(dir, 'restored.db'));
    expect(makeFingerprint('sqlite', fingerprintTables(restored)).digest).toBe(makeFingerprint('sqlite', fingerprintTables(src)).digest);
    src.close();
    restored.close();
  });
});
