/**
 * The remote SQLite engine for real: the sqlite3 shell runs through
 * LocalMachine (the same scripts and step protocol an ssh machine gets) on
 * a target folder and a separate proving-ground folder. Outside CI a
 * missing sqlite3 skips these tests with the reason; in CI they fail.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { isRubiconError } from '../../../src/core/errors.ts';
import type { Fingerprint, Item } from '../../../src/core/types.ts';
import { compareFingerprints } from '../../../src/engines/fingerprint.ts';
import { createRemoteSqliteEngine, remoteSqliteEngine as engine } from '../../../src/engines/sqlite/remote.ts';
import { createSyntheticEhr } from '../../../src/sandbox/synthetic-ehr.ts';
import { sha256File } from './helpers.ts';
import { deliver, noSqlite3, remoteEstate, sqlite3, type Estate } from './remote-helpers.ts';

const skip = noSqlite3();
const statuses = (checks: { name: string; status: string }[]) => Object.fromEntries(checks.map((c) => [c.name, c.status]));
const ALL_PASSED = { restore: 'passed', integrity: 'passed', fingerprint: 'passed' };

async function discoverOne(e: Estate, name: string, rel = '.'): Promise<Item> {
  const items = await engine.discover(e.targetCtx('discover/'), { root: e.targetRoot, roots: [join(e.targetRoot, rel)], declared: [{ name }] });
  const item = items.find((i) => i.name === name && i.discovered);
  if (!item) throw new Error(`test setup: ${name} not discovered`);
  return item;
}

/** Captures with one method, delivers the file to the proving ground, proves it. */
async function captureAndProve(e: Estate, item: Item, method: string, src: string) {
  const captured = await engine.capture(e.targetCtx(`${item.id}/${method}/`), item, method, src);
  const delivered = deliver(e, item.id, method, captured);
  const proof = await engine.prove(e.groundCtx(`${delivered.artifact.id}/prove/`), delivered.artifact, delivered.manifest, delivered.files);
  return { captured, delivered, proof };
}

describe.skipIf(skip)(`remote SQLite engine with the sqlite3 shell${skip ? ` (skipped: ${skip})` : ''}`, () => {
  describe('discover', () => {
    it('finds databases by their header, not by extension, on the machine; lists declared ones that are missing', async () => {
      const e = remoteEstate();
      const data = join(e.targetRoot, 'ehr/data');
      const { rows } = createSyntheticEhr(join(data, 'ehr.sqlite3'), { patients: 40 });
      createSyntheticEhr(join(data, 'archive'), { patients: 5, seed: 2 }); // no extension at all
      writeFileSync(join(data, 'x.db'), 'this is a text file named like a database, long enough to be looked at by discovery\n'.repeat(3));
      writeFileSync(join(data, 'empty.db'), '');

      const items = await engine.discover(e.targetCtx('discover/'), {
        root: e.targetRoot,
        roots: [join(e.targetRoot, 'ehr')],
        declared: [{ name: 'ehr' }, { name: 'billing', location: 'ehr/data/billing.db' }],
      });
      const byName = new Map(items.map((i) => [i.name, i]));
      expect([...byName.keys()].sort()).toEqual(['archive', 'billing', 'ehr']);
      const ehr = byName.get('ehr')!;
      expect(ehr).toMatchObject({ id: 'database:sqlite:ehr', kind: 'database', engine: 'sqlite', declared: true, discovered: true, location: 'ehr/data/ehr.sqlite3' });
      const st = statSync(join(data, 'ehr.sqlite3'));
      expect(ehr.facts).toMatchObject({ tables: 6, rows, journalMode: 'delete', encoding: 'UTF-8', bytes: st.size, mode: (st.mode & 0o7777).toString(8) });
      expect(ehr.facts.owner).toMatch(/^[^:]+:[^:]+$/);
      expect(ehr.why[0]).toBe(`SQLite database with 6 tables, ${rows.toLocaleString('en-US')} rows`);
      expect(byName.get('archive')).toMatchObject({ declared: false, discovered: true, location: 'ehr/data/archive' });
      expect(byName.get('billing')).toMatchObject({ declared: true, discovered: false, facts: { missing: true } });
    });

    it('never reports its own scratch files, and tells same-named databases apart by location', async () => {
      const e = remoteEstate();
      createSyntheticEhr(join(e.targetRoot, 'a/app.db'), { patients: 3 });
      createSyntheticEhr(join(e.targetRoot, 'b/app.db'), { patients: 3 });
      // A work folder inside the searched tree, holding a capture.
      const ctx = { ...e.targetCtx('d/'), workDir: join(e.targetRoot, 'rubicon-work') };
      const first = await engine.discover(ctx, { root: e.targetRoot, roots: [e.targetRoot], declared: [] });
      await engine.capture(ctx, first[0]!, 'sqlite3-backup', join(e.targetRoot, first[0]!.location));
      expect(readdirSync(ctx.workDir).some((f) => f.endsWith('.db'))).toBe(true);
      const items = await engine.discover({ ...ctx, stepPrefix: 'd2/' }, { root: e.targetRoot, roots: [e.targetRoot], declared: [] });
      expect(items.map((i) => [i.name, i.location])).toEqual([
        ['a/app', 'a/app.db'],
        ['b/app', 'b/app.db'],
      ]);
    });
  });

  describe('capture and prove with the two sqlite3 methods', () => {
    it('fingerprints of the live source, the .backup proof, the .dump proof and the landed copies are equal', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr/db/ehr.db');
      createSyntheticEhr(src, { patients: 300 });
      const before = sha256File(src);
      const item = await discoverOne(e, 'ehr', 'ehr');
      const source = await engine.fingerprint(e.targetCtx('fp/'), src);
      expect(source.engine).toBe('sqlite3-cli');
      expect(source.tables.map((t) => t.table)).toEqual(['documents', 'encounters', 'interface_queue', 'notes', 'patients', 'sqlite_schema', 'sqlite_sequence', 'users']);

      const proofs: Fingerprint[] = [];
      for (const method of ['sqlite3-backup', 'sqlite3-dump']) {
        const { captured, delivered, proof } = await captureAndProve(e, item, method, src);
        expect(captured.format).toBe(method === 'sqlite3-backup' ? 'sqlite-db' : 'sql-text');
        expect(captured.tool).toMatch(/^sqlite3 3\.\d+\.\d+ \(\d{4}-\d{2}-\d{2}\) \.(backup|dump --preserve-rowids)$/);
        expect(captured.position).toMatch(/^journal_mode=delete; page_size=\d+; page_count=\d+; schema_version=\d+; encoding=UTF-8$/);
        expect(captured.files[0]!.path.startsWith(e.targetCtx(`${item.id}/${method}/`).workDir)).toBe(true);
        expect(statuses(proof.checks)).toEqual(ALL_PASSED);
        expect(compareFingerprints(source, proof.fingerprint!)).toEqual({ equal: true, differences: [] });
        proofs.push(proof.fingerprint!);

        // Landing on a rebuilt target: a fresh folder.
        const dest = join(e.root, 'rebuilt', method, 'ehr/db/ehr.db');
        await engine.restore(e.targetCtx(`land/${method}/`), item, delivered.manifest, [captured.files[0]!.path], dest);
        const landed = await engine.fingerprint(e.targetCtx(`land/${method}/fp/`), dest);
        expect(compareFingerprints(proof.fingerprint!, landed).equal).toBe(true);
        expect(readdirSync(join(e.root, 'rebuilt', method, 'ehr/db'))).toEqual(['ehr.db']);
      }
      expect(proofs[0]!.digest).toBe(proofs[1]!.digest);
      // Nothing touched the source.
      expect(sha256File(src)).toBe(before);
      expect(existsSync(`${src}-journal`)).toBe(false);
    });

    it('captures a live WAL database consistently: committed frames still in the -wal are in, an open transaction is not', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'live/ehr.db');
      createSyntheticEhr(src, { patients: 30, wal: true });
      const writer = new DatabaseSync(src);
      try {
        writer.exec("PRAGMA wal_autocheckpoint=0; INSERT INTO users(id, username, display_name, role) VALUES(9999, 'late', 'Late User', 'nurse')");
        writer.exec("BEGIN; INSERT INTO users(id, username, display_name, role) VALUES(10000, 'uncommitted', 'Never Committed', 'nurse')");
        expect(statSync(`${src}-wal`).size).toBeGreaterThan(0);
        const item = await discoverOne(e, 'ehr', 'live');
        expect(item.facts.journalMode).toBe('wal');
        const source = await engine.fingerprint(e.targetCtx('fp/'), src);
        expect(source.tables.find((t) => t.table === 'users')!.rows).toBe(6);
        for (const method of ['sqlite3-backup', 'sqlite3-dump']) {
          const { captured, delivered, proof } = await captureAndProve(e, item, method, src);
          expect(captured.position).toContain('journal_mode=wal');
          expect(statuses(proof.checks)).toEqual(ALL_PASSED);
          expect(compareFingerprints(source, proof.fingerprint!).equal).toBe(true);
          const dest = join(e.root, 'rebuilt', method, 'ehr.db');
          await engine.restore(e.targetCtx(`land/${method}/`), item, delivered.manifest, delivered.files.map(() => captured.files[0]!.path), dest);
          expect(sqlite3(dest, 'PRAGMA journal_mode;').trim()).toBe('wal');
        }
        writer.exec('COMMIT');
      } finally {
        writer.close();
      }
    });

    it('each capture fingerprints the source inside its own read transaction: the snapshot it holds, not a later or earlier one', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'busy.db');
      createSyntheticEhr(src, { patients: 30, wal: true });
      const item = await discoverOne(e, 'busy');
      const earlier = await engine.fingerprint(e.targetCtx('fp/'), src);
      const app = new DatabaseSync(src);
      try {
        for (const method of ['sqlite3-backup', 'sqlite3-dump']) {
          app.exec(`INSERT INTO users(username, display_name, role) VALUES('${method}', 'Written between fingerprint and capture', 'nurse')`);
          const { captured, proof } = await captureAndProve(e, item, method, src);
          expect(captured.sourceFingerprint).toBeDefined();
          expect(compareFingerprints(captured.sourceFingerprint!, proof.fingerprint!).equal).toBe(true);
          expect(compareFingerprints(earlier, proof.fingerprint!).differences).toContain('table users: 5 rows expected, ' + (method === 'sqlite3-backup' ? '6' : '7') + ' restored');
        }
      } finally {
        app.close();
      }
    });

    it('steps are journaled under the prefix; a repeated capture re-attaches to its recorded step', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 20 });
      const item = await discoverOne(e, 'ehr');
      const first = await engine.capture(e.targetCtx('art1/'), item, 'sqlite3-dump', src);
      const again = await engine.capture(e.targetCtx('art1/'), item, 'sqlite3-dump', src);
      expect(again).toEqual(first);
      const done = e.journal.events.filter((x) => x.type === 'step.completed' && x.stepId === 'run1/art1/sqlite3/sqlite3-dump');
      expect(done.map((x) => x.type === 'step.completed' && x.reattached)).toEqual([false, true]);
      // The output was removed since: the capture runs again under a new step id.
      truncateSync(first.files[0]!.path, 0);
      const redone = await engine.capture(e.targetCtx('art1/'), item, 'sqlite3-dump', src);
      expect(statSync(redone.files[0]!.path).size).toBeGreaterThan(0);
      expect(e.journal.events.some((x) => x.type === 'step.started' && x.stepId.startsWith('run1/art1/sqlite3/sqlite3-dump/redo-'))).toBe(true);
      // And again (a second resume after the output was removed once more): a fresh redo each time.
      truncateSync(redone.files[0]!.path, 0);
      await engine.capture(e.targetCtx('art1/'), item, 'sqlite3-dump', src);
      expect(statSync(redone.files[0]!.path).size).toBeGreaterThan(0);
      expect(new Set(e.journal.events.filter((x) => x.type === 'step.started' && x.stepId.includes('/redo-')).map((x) => x.stepId)).size).toBe(2);
    });
  });

  describe('the fingerprint sees every column exactly', () => {
    /** Values the CLI's own formatting gets wrong in some versions; every one must survive .backup and .dump. */
    const TRICKY = String.raw`
      CREATE TABLE r(id INTEGER PRIMARY KEY, v, k REAL);
      INSERT INTO r(v, k) VALUES (0.1, 0.1), (1e308, 1e308), (-1e308, 5.0), (1.7976931348623157e308, 2.2250738585072014e-308),
        (0.30000000000000004, 1e19), (-0.0, -0.0), (5.0, 5), (5, 5.5), (9007199254740993, 9007199254740993.0),
        (9223372036854775807, -9223372036854775808), (1e999, -1e999), (123456.789e-3, 1.0000000000000002), (NULL, NULL);
      CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT, b BLOB, x);
      INSERT INTO s(t, b, x) VALUES ('line one' || char(10) || 'line two' || char(13, 10) || 'three', X'00FF0000', ''),
        ('', X'', NULL), (NULL, NULL, X''), ('it''s "quoted" | piped, comma', zeroblob(5), 'Température — 2/10 ✓'),
        ('emoji 🏥 and tab' || char(9), X'01', 0);
      DELETE FROM s WHERE id = 2; INSERT INTO s(t) VALUES ('after a gap');
      CREATE TABLE n(a, b TEXT, c AS (a * 2) STORED, d AS (b || '!'));
      INSERT INTO n(a, b) VALUES (1, 'x'), (2, 'y'), (2, 'y');
      DELETE FROM n WHERE rowid = 1; INSERT INTO n(a, b) VALUES (7, 'z');
      CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
      INSERT INTO w VALUES ('b', 1), ('a', 2.5);
      CREATE TABLE shadowed(rowid, _rowid_, oid, v);
      INSERT INTO shadowed VALUES (1, 2, 3, 'all rowid aliases taken');
      CREATE VIRTUAL TABLE ft USING fts5(body);
      INSERT INTO ft VALUES ('hello world'), ('second document');
      CREATE INDEX r_v ON r(v);
      CREATE VIEW rv AS SELECT id, v FROM r;
      CREATE TRIGGER s_t AFTER INSERT ON s BEGIN SELECT 1; END;
      ANALYZE;
    `;

    it('values the CLI formats differently across versions survive both methods with equal fingerprints', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'tricky.db');
      sqlite3(src, TRICKY);
      const item = await discoverOne(e, 'tricky');
      const source = await engine.fingerprint(e.targetCtx('fp/'), src);
      expect(source.tables.map((t) => t.table)).toEqual(['ft_config', 'ft_content', 'ft_data', 'ft_docsize', 'ft_idx', 'n', 'r', 's', 'shadowed', 'sqlite_schema', 'sqlite_sequence', 'w']);
      expect(source.tables.find((t) => t.table === 'shadowed')!.unhashedColumns).toEqual(['rowid']);
      expect(source.tables.find((t) => t.table === 'r')!.rows).toBe(13);
      for (const method of ['sqlite3-backup', 'sqlite3-dump']) {
        const { proof } = await captureAndProve(e, item, method, src);
        expect(statuses(proof.checks)).toEqual(ALL_PASSED);
        expect(compareFingerprints(source, proof.fingerprint!)).toEqual({ equal: true, differences: [] });
      }
    });

    it('the table hash is Σ SHA3-256(row serialisation) mod 2^256, recomputed here independently with node:sqlite and node:crypto', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'v.db');
      sqlite3(src, TRICKY);
      const fp = await engine.fingerprint(e.targetCtx('fp/'), src);
      const db = new DatabaseSync(src, { readOnly: true, readBigInts: true });
      try {
        const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').toUpperCase();
        const value = (v: unknown): string => {
          if (v === null) return 'N';
          if (typeof v === 'bigint') return `I${v}`;
          if (typeof v === 'number') {
            const b = Buffer.alloc(8);
            b.writeDoubleBE(v === 0 ? 0 : v);
            return `R${hex(b)}`;
          }
          if (typeof v === 'string') return `T${hex(Buffer.from(v, 'utf8'))}`;
          if (v instanceof Uint8Array) return `B${hex(v)}`;
          throw new Error(`unexpected ${typeof v}`);
        };
        for (const [table, select] of [
          ['r', 'SELECT rowid, id, v, k FROM r'],
          ['s', 'SELECT rowid, id, t, b, x FROM s'],
          ['n', 'SELECT rowid, a, b FROM n'],
          ['w', 'SELECT k, v FROM w'],
        ] as const) {
          const stmt = db.prepare(select);
          stmt.setReturnArrays(true);
          let sum = 0n;
          let rows = 0;
          for (const row of stmt.iterate() as Iterable<unknown[]>) {
            const h = createHash('sha3-256').update(row.map(value).join(','), 'latin1').digest('hex');
            sum = (sum + BigInt(`0x${h}`)) & ((1n << 256n) - 1n);
            rows++;
          }
          expect(fp.tables.find((t) => t.table === table)).toMatchObject({ rows, hash: sum.toString(16).padStart(64, '0') });
        }
      } finally {
        db.close();
      }
    });

    it('differs for every kind of change, and only then', async () => {
      const e = remoteEstate();
      const base = String.raw`
        CREATE TABLE t(id INTEGER PRIMARY KEY, a, b);
        INSERT INTO t VALUES (1, 0.1, 'x'), (2, 5, ''), (3, X'00', NULL);
        CREATE INDEX t_a ON t(a);`;
      const fp = async (name: string, sql: string) => {
        const p = join(e.targetRoot, `${name}.db`);
        sqlite3(p, sql);
        return engine.fingerprint(e.targetCtx(`fp-${name}/`), p);
      };
      const ref = await fp('ref', base);
      const cmp = (x: Fingerprint) => compareFingerprints(ref, x).differences;
      // Same rows inserted in another order: equal (order-independent).
      expect(cmp(await fp('order', base.replace("(1, 0.1, 'x'), (2, 5, ''), (3, X'00', NULL)", "(3, X'00', NULL), (1, 0.1, 'x'), (2, 5, '')")))).toEqual([]);
      const changed: Record<string, string> = {
        lastBit: base.replace('0.1', 'ieee754_from_blob(X\'3FB999999999999B\')'),
        intVsReal: base.replace('(2, 5,', '(2, 5.0,'),
        emptyVsNull: base.replace("'')", 'NULL)').replace("(3, X'00', NULL)", "(3, X'00', '')"),
        emptyTextVsBlob: base.replace("(2, 5, '')", "(2, 5, X'')"),
        nulInText: base.replace("'x'", "CAST(X'780079' AS TEXT)"),
        swapColumns: base.replace("(1, 0.1, 'x')", "(1, 'x', 0.1)"),
        duplicateRow: base.replace('CREATE TABLE t(id INTEGER PRIMARY KEY, a, b)', 'CREATE TABLE t(id, a, b)') + "\nINSERT INTO t VALUES (1, 0.1, 'x');",
        droppedIndex: base.replace('CREATE INDEX t_a ON t(a);', ''),
      };
      for (const [name, sql] of Object.entries(changed)) {
        const d = cmp(await fp(name, sql));
        expect(d.length, name).toBeGreaterThan(0);
        expect(d.join(' '), name).not.toMatch(/0\.1|'x'/); // tables, counts and "hash differs", never content
      }
      expect(cmp(await fp('droppedIndex2', changed.droppedIndex!))).toEqual(['table sqlite_schema: 2 rows expected, 1 restored']);
    });

    it('a table with 1,200 columns is hashed whole (the row expression stays below SQLite\'s depth limit)', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'wide.db');
      const cols = Array.from({ length: 1200 }, (_, i) => `c${i}`);
      sqlite3(src, `CREATE TABLE wide(${cols.join(', ')}); INSERT INTO wide VALUES (${cols.map((_, i) => i).join(', ')}); INSERT INTO wide(c0) VALUES ('only the first');`);
      const fp = await engine.fingerprint(e.targetCtx('fp/'), src);
      expect(fp.tables.find((t) => t.table === 'wide')!.rows).toBe(2);
      sqlite3(src, 'UPDATE wide SET c1199 = -1 WHERE c0 = 0;');
      const after = await engine.fingerprint(e.targetCtx('fp2/'), src);
      expect(compareFingerprints(fp, after).differences).toEqual(['table wide: content hash differs']);
    });

    it('a UTF-16 database keeps its encoding through the dump, so both methods fingerprint alike', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'u16.db');
      sqlite3(src, "PRAGMA encoding='UTF-16le'; CREATE TABLE t(x TEXT, y); INSERT INTO t VALUES ('Ünïcödé ✓', 1), ('', 2);");
      const item = await discoverOne(e, 'u16');
      expect(item.facts.encoding).toBe('UTF-16le');
      const source = await engine.fingerprint(e.targetCtx('fp/'), src);
      for (const method of ['sqlite3-backup', 'sqlite3-dump']) {
        const { captured, proof } = await captureAndProve(e, item, method, src);
        if (method === 'sqlite3-dump') expect(readFileSync(captured.files[0]!.path, 'utf8').split('\n')[0]).toBe("PRAGMA encoding='UTF-16le';");
        expect(statuses(proof.checks)).toEqual(ALL_PASSED);
        expect(compareFingerprints(source, proof.fingerprint!).equal).toBe(true);
      }
    });
  });

  describe('prove: damaged artifacts are failed proofs, never a throw, and never quote row data', () => {
    async function captured(method: string) {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 120 });
      const item = await discoverOne(e, 'ehr');
      const c = await engine.capture(e.targetCtx(`${item.id}/${method}/`), item, method, src);
      return { e, item, src, d: deliver(e, item.id, method, c) };
    }
    const prove = (e: Estate, d: ReturnType<typeof deliver>, files = d.files) => engine.prove(e.groundCtx(`${d.artifact.id}/prove/`), d.artifact, d.manifest, files);

    it('a truncated backup file fails', async () => {
      const { e, d } = await captured('sqlite3-backup');
      truncateSync(d.files[0]!, Math.floor(statSync(d.files[0]!).size / 3));
      const proof = await prove(e, d);
      expect(proof.checks.some((c) => c.status === 'failed' && /malformed|integrity_check/.test(c.detail))).toBe(true);
      expect(proof.checks.every((c) => c.status === 'passed')).toBe(false);
    });

    it('a damaged page fails PRAGMA integrity_check with sqlite\'s own first lines', async () => {
      const { e, d } = await captured('sqlite3-backup');
      const bytes = readFileSync(d.files[0]!);
      const pageSize = bytes.readUInt16BE(16);
      bytes.fill(0xff, 4 * pageSize + 1, 4 * pageSize + 8); // page 5: its b-tree header
      writeFileSync(d.files[0]!, bytes);
      const proof = await prove(e, d);
      expect(proof.checks[0]).toMatchObject({ name: 'restore', status: 'passed' });
      const integrity = proof.checks.find((c) => c.name === 'integrity')!;
      expect(integrity.status).toBe('failed');
      expect(integrity.detail).toMatch(/^PRAGMA integrity_check: .*Page 5/);
      expect(integrity.detail.length).toBeLessThan(1400);
    });

    it('a dump cut off halfway fails the restore, at a line boundary too, and skips the rest', async () => {
      for (const cut of ['mid-statement', 'line-boundary', 'before-commit']) {
        const { e, d } = await captured('sqlite3-dump');
        const text = readFileSync(d.files[0]!, 'utf8');
        const at = cut === 'mid-statement' ? Math.floor(text.length / 2) : cut === 'line-boundary' ? text.indexOf('\nINSERT INTO notes') + 1 : text.lastIndexOf('COMMIT;');
        writeFileSync(d.files[0]!, text.slice(0, at));
        const proof = await prove(e, d);
        expect(statuses(proof.checks), cut).toEqual({ restore: 'failed', integrity: 'skipped', fingerprint: 'skipped' });
        expect(proof.checks[0]!.detail, cut).toMatch(/^the SQL dump (does not execute|does not end with COMMIT)/);
        expect(proof.fingerprint).toBeUndefined();
      }
    });

    it('an error inside a row never reaches the check, the journal or the step logs', async () => {
      const { e, d } = await captured('sqlite3-dump');
      const text = readFileSync(d.files[0]!, 'utf8');
      const at = text.indexOf('INSERT INTO patients');
      // A broken statement whose text carries a (synthetic) name.
      writeFileSync(d.files[0]!, `${text.slice(0, at)}INSERT INTO patients VALUES(9999,'SYN-SECRET-NAME' 'Smithers');\n${text.slice(at)}`);
      const proof = await prove(e, d);
      expect(proof.checks[0]!.status).toBe('failed');
      expect(proof.checks[0]!.detail).toMatch(/^the SQL dump does not execute: (Parse error|Error)/);
      const everything = [JSON.stringify(proof), JSON.stringify(e.journal.events), ...readdirSync(join(e.runDir, 'logs')).map((f) => readFileSync(join(e.runDir, 'logs', f), 'utf8'))].join('\n');
      expect(everything).not.toContain('SECRET');
      expect(everything).not.toContain('Smithers');
    });

    it('a broken proving ground (no work folder) throws MACHINE_FAILED instead of failing the backup', async () => {
      const { e, d } = await captured('sqlite3-backup');
      const blocker = join(e.groundRoot, 'not-a-folder');
      writeFileSync(blocker, 'x');
      const ctx = { ...e.groundCtx('broken/'), workDir: join(blocker, 'work') };
      await expect(engine.prove(ctx, d.artifact, d.manifest, d.files)).rejects.toMatchObject({ code: 'MACHINE_FAILED', message: expect.stringContaining('cannot create or enter the work folder') });
    });

    it('a wrong number of files or an unknown format is a failed restore', async () => {
      const { e, d } = await captured('sqlite3-dump');
      expect((await prove(e, d, [...d.files, ...d.files])).checks[0]).toMatchObject({ name: 'restore', status: 'failed' });
      const odd = await engine.prove(e.groundCtx('odd/'), d.artifact, { ...d.manifest, format: 'mssql-bak' }, d.files);
      expect(odd.checks[0]!.detail).toContain('format mssql-bak is not a SQLite backup format');
      const notDb = await engine.prove(e.groundCtx('notdb/'), d.artifact, { ...d.manifest, format: 'sqlite-db' }, d.files);
      expect(notDb.checks[0]).toMatchObject({ name: 'restore', status: 'failed' });
      expect(notDb.checks[0]!.detail).toContain('file is not a database');
    });

    it('a damaged source: .dump capture fails loudly (the shell stops, or ends the dump with ROLLBACK); .backup copies it and its proof fails', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 120 });
      const item = await discoverOne(e, 'ehr');
      const bytes = readFileSync(src);
      bytes.fill(0xff, 11 * 4096 + 1, 11 * 4096 + 8);
      writeFileSync(src, bytes);
      await expect(engine.capture(e.targetCtx('dump/'), item, 'sqlite3-dump', src)).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringMatching(/malformed|ended the dump with ROLLBACK/) });
      const { proof } = await captureAndProve(e, item, 'sqlite3-backup', src);
      expect(proof.checks.find((c) => c.name === 'integrity')!.status).toBe('failed');
    });
  });

  describe('landing', () => {
    it('replaces an old file atomically, drops its stale -wal, and keeps owner and mode', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 20 });
      const item = await discoverOne(e, 'ehr');
      const c = await engine.capture(e.targetCtx('c/'), item, 'sqlite3-dump', src);
      const d = deliver(e, item.id, 'sqlite3-dump', c);
      const destDir = join(e.root, 'rebuilt');
      mkdirSync(destDir);
      const dest = join(destDir, 'ehr.db');
      sqlite3(dest, 'CREATE TABLE old(x); INSERT INTO old VALUES (1);');
      writeFileSync(`${dest}-wal`, 'stale');
      await engine.restore(e.targetCtx('land/'), { ...item, facts: { ...item.facts, mode: '640' } }, d.manifest, [c.files[0]!.path], dest);
      expect(readdirSync(destDir)).toEqual(['ehr.db']);
      expect(compareFingerprints(await engine.fingerprint(e.targetCtx('fp1/'), src), await engine.fingerprint(e.targetCtx('fp2/'), dest)).equal).toBe(true);
      // An existing file's mode wins over the recorded one (it is what the rebuilt server set up).
      expect((statSync(dest).mode & 0o777).toString(8)).toBe('644');
      const fresh = join(destDir, 'new', 'ehr.db');
      await engine.restore(e.targetCtx('land2/'), { ...item, facts: { ...item.facts, mode: '640' } }, d.manifest, [c.files[0]!.path], fresh);
      expect((statSync(fresh).mode & 0o777).toString(8)).toBe('640');
    });

    it('refuses a damaged artifact and leaves the destination as it was', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 20 });
      const item = await discoverOne(e, 'ehr');
      const c = await engine.capture(e.targetCtx('c/'), item, 'sqlite3-dump', src);
      const d = deliver(e, item.id, 'sqlite3-dump', c);
      const text = readFileSync(d.files[0]!, 'utf8');
      writeFileSync(d.files[0]!, text.slice(0, text.lastIndexOf('COMMIT;')));
      const dest = join(e.root, 'rebuilt', 'ehr.db');
      mkdirSync(join(e.root, 'rebuilt'));
      writeFileSync(dest, 'the previous file');
      await expect(engine.restore(e.targetCtx('land/'), item, d.manifest, d.files, dest)).rejects.toMatchObject({ code: 'LANDING_FAILED', message: expect.stringContaining('does not end with COMMIT') });
      expect(readFileSync(dest, 'utf8')).toBe('the previous file');
      expect(readdirSync(join(e.root, 'rebuilt'))).toEqual(['ehr.db']);
    });
  });

  describe('sqlite3 missing on the machine', () => {
    it('TOOL_MISSING names the machine and the fix; discovery still lists the database and says why it cannot read it', async () => {
      const e = remoteEstate();
      const src = join(e.targetRoot, 'ehr.db');
      createSyntheticEhr(src, { patients: 5 });
      const missing = createRemoteSqliteEngine({ program: 'sqlite3-not-installed-here' });
      const items = await missing.discover(e.targetCtx('d/'), { root: e.targetRoot, roots: [e.targetRoot], declared: [] });
      expect(items).toHaveLength(1);
      expect(String(items[0]!.facts.error)).toContain('sqlite3-not-installed-here is not installed on target (local)');
      const err = await missing.capture(e.targetCtx('c/'), items[0]!, 'sqlite3-backup', src).catch((x: unknown) => x);
      expect(isRubiconError(err) && err.code).toBe('TOOL_MISSING');
      expect((err as Error).message).toContain('target (local)');
      expect(isRubiconError(err) && err.hint).toMatch(/apt-get install sqlite3/);
      await expect(missing.fingerprint(e.targetCtx('f/'), src)).rejects.toMatchObject({ code: 'TOOL_MISSING' });
    });
  });
});
