import { existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../../src/core/errors.ts';
import type { Item } from '../../../src/core/types.ts';
import { compareFingerprints } from '../../../src/engines/fingerprint.ts';
import { redactCommand, sqliteEngine } from '../../../src/engines/sqlite/index.ts';
import { createSyntheticEhr } from '../../../src/sandbox/synthetic-ehr.ts';
import { estate, sha256File, storeInVault, tempDir } from './helpers.ts';
import { LocalHost } from '../../../src/hosts/local.ts';

const statuses = (checks: { name: string; status: string }[]): Record<string, string> =>
  Object.fromEntries(checks.map((c) => [c.name, c.status]));

async function discoverOne(e: ReturnType<typeof estate>, name: string): Promise<Item> {
  const items = await sqliteEngine.discover(e.targetCtx, { roots: ['.'], declared: [{ name }] });
  const item = items.find((i) => i.name === name);
  if (item === undefined) throw new Error(`test setup: ${name} not discovered`);
  return item;
}

describe('discover', () => {
  it('finds databases by header, not by extension, and lists declared ones that are missing', async () => {
    const e = estate();
    const data = e.target.resolve('ehr/data');
    const { rows } = createSyntheticEhr(join(data, 'ehr.sqlite3'), { patients: 40 });
    createSyntheticEhr(join(data, 'archive'), { patients: 5, seed: 2 }); // no extension at all
    writeFileSync(join(data, 'x.db'), 'this is a text file named like a database\n');
    writeFileSync(join(data, 'empty.db'), '');

    const items = await sqliteEngine.discover(e.targetCtx, {
      roots: ['ehr'],
      declared: [{ name: 'ehr' }, { name: 'billing', location: 'ehr/data/billing.db' }],
    });
    const byName = new Map(items.map((i) => [i.name, i]));
    expect([...byName.keys()].sort()).toEqual(['archive', 'billing', 'ehr']);

    const ehr = byName.get('ehr')!;
    expect(ehr).toMatchObject({
      id: 'database:sqlite:ehr',
      kind: 'database',
      engine: 'sqlite',
      declared: true,
      discovered: true,
      location: 'ehr/data/ehr.sqlite3',
    });
    expect(ehr.facts).toMatchObject({ tables: 6, rows, journalMode: 'delete', bytes: statSync(join(data, 'ehr.sqlite3')).size });
    expect(Date.parse(String(ehr.facts.lastChange))).toBeGreaterThan(0);
    expect(ehr.why[0]).toBe(`SQLite database with 6 tables, ${rows.toLocaleString('en-US')} rows`);

    expect(byName.get('archive')).toMatchObject({ declared: false, discovered: true, location: 'ehr/data/archive' });
    expect(byName.get('billing')).toMatchObject({ declared: true, discovered: false, facts: { missing: true }, location: 'ehr/data/billing.db' });
  });

  it('reads without changing the database file', async () => {
    const e = estate();
    createSyntheticEhr(e.target.resolve('db/ehr.db'), { patients: 20 });
    const before = sha256File(e.target.resolve('db/ehr.db'));
    const item = await discoverOne(e, 'ehr');
    await sqliteEngine.fingerprint(e.targetCtx, item);
    for (const m of ['sqlite-backup-api', 'sqlite-sql-dump']) await sqliteEngine.capture(e.targetCtx, item, m, {});
    expect(sha256File(e.target.resolve('db/ehr.db'))).toBe(before);
    expect(existsSync(e.target.resolve('db/ehr.db-journal'))).toBe(false);
  });
});

describe('capture and prove with the two Rubicon methods', () => {
  it('both restore on the proving ground from the vault alone, with fingerprints equal to the source and to each other', async () => {
    const e = estate();
    createSyntheticEhr(e.target.resolve('ehr/db/ehr.db'), { patients: 300 });
    const item = await discoverOne(e, 'ehr');
    const source = await sqliteEngine.fingerprint(e.targetCtx, item);
    expect(source.tables.map((t) => t.table)).toEqual(['documents', 'encounters', 'interface_queue', 'notes', 'patients', 'users']);

    const proofs = [];
    for (const method of ['sqlite-backup-api', 'sqlite-sql-dump']) {
      const captured = await sqliteEngine.capture(e.targetCtx, item, method, {});
      expect(captured.format).toBe(method === 'sqlite-backup-api' ? 'sqlite-db' : 'sql-text');
      expect(captured.position).toMatch(/^file-change-counter=\d+; journal_mode=delete$/);
      const stored = storeInVault(e.vault, item.id, method, captured);
      const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
      expect(statuses(proof.checks)).toEqual({ restore: 'passed', integrity: 'passed', fingerprint: 'passed', smoke: 'passed' });
      for (const c of proof.checks) expect(c.durationMs).toBeGreaterThanOrEqual(0);
      expect(compareFingerprints(source, proof.fingerprint!)).toEqual({ equal: true, differences: [] });
      proofs.push(proof);
    }
    expect(proofs[0]!.fingerprint!.digest).toBe(proofs[1]!.fingerprint!.digest);
  });

  it('a source change after capture shows up as a fingerprint difference naming the table', async () => {
    const e = estate();
    const path = e.target.resolve('ehr.db');
    createSyntheticEhr(path, { patients: 50 });
    const item = await discoverOne(e, 'ehr');
    const stored = storeInVault(e.vault, item.id, 'sqlite-sql-dump', await sqliteEngine.capture(e.targetCtx, item, 'sqlite-sql-dump', {}));
    const db = new DatabaseSync(path);
    db.exec("UPDATE notes SET body = body || '.' WHERE id = 3");
    db.close();
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    const cmp = compareFingerprints(await sqliteEngine.fingerprint(e.targetCtx, item), proof.fingerprint!);
    expect(cmp.differences).toEqual(['table notes: content hash differs']);
  });

  it('captures what is still in the WAL of a live database', async () => {
    const e = estate();
    const path = e.target.resolve('live/ehr.db');
    createSyntheticEhr(path, { patients: 30, wal: true });
    const writer = new DatabaseSync(path);
    try {
      writer.exec("PRAGMA wal_autocheckpoint=0; INSERT INTO users(id, username, display_name, role) VALUES(9999, 'late', 'Late User', 'nurse')");
      expect(statSync(path + '-wal').size).toBeGreaterThan(0);
      const item = await discoverOne(e, 'ehr');
      expect(item.facts.journalMode).toBe('wal');
      const source = await sqliteEngine.fingerprint(e.targetCtx, item);
      for (const method of ['sqlite-backup-api', 'sqlite-sql-dump']) {
        const stored = storeInVault(e.vault, item.id, method, await sqliteEngine.capture(e.targetCtx, item, method, {}));
        const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
        expect(statuses(proof.checks)).toEqual({ restore: 'passed', integrity: 'passed', fingerprint: 'passed', smoke: 'passed' });
        expect(compareFingerprints(source, proof.fingerprint!).equal).toBe(true);
        // 5 generated users + the one still in the WAL.
        expect(proof.fingerprint!.tables.find((t) => t.table === 'users')!.rows).toBe(6);
      }
    } finally {
      writer.close();
    }
  });
});

describe('prove: bad artifacts fail with the engine message and never throw', () => {
  async function dumpArtifact() {
    const e = estate();
    createSyntheticEhr(e.target.resolve('ehr.db'), { patients: 40 });
    const item = await discoverOne(e, 'ehr');
    const captured = await sqliteEngine.capture(e.targetCtx, item, 'sqlite-sql-dump', {});
    return { e, item, stored: storeInVault(e.vault, item.id, 'sqlite-sql-dump', captured) };
  }

  it('a flipped byte inside a row of a page copy passes integrity_check but not the fingerprint comparison', async () => {
    const e = estate();
    createSyntheticEhr(e.target.resolve('ehr.db'), { patients: 40 });
    const item = await discoverOne(e, 'ehr');
    const source = await sqliteEngine.fingerprint(e.targetCtx, item);
    const stored = storeInVault(e.vault, item.id, 'sqlite-backup-api', await sqliteEngine.capture(e.targetCtx, item, 'sqlite-backup-api', {}));
    const bytes = readFileSync(stored.files[0]!);
    // The last occurrence is in a live row (early ones can be stale bytes left in a root page after it split).
    const at = bytes.lastIndexOf('Testville');
    expect(at).toBeGreaterThan(0);
    bytes[at] = 'R'.charCodeAt(0);
    writeFileSync(stored.files[0]!, bytes);
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(statuses(proof.checks)).toEqual({ restore: 'passed', integrity: 'passed', fingerprint: 'passed', smoke: 'passed' });
    expect(compareFingerprints(source, proof.fingerprint!).differences).toEqual(['table patients: content hash differs']);
  });

  it('a truncated dump fails the restore and skips the rest', async () => {
    const { e, stored } = await dumpArtifact();
    const file = stored.files[0]!;
    truncateSync(file, Math.floor(statSync(file).size / 2));
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(statuses(proof.checks)).toEqual({ restore: 'failed', integrity: 'skipped', fingerprint: 'skipped', smoke: 'skipped' });
    expect(proof.checks[0]!.detail).toMatch(/the SQL dump does not execute: .*(truncated|ends inside)/);
    expect(proof.fingerprint).toBeUndefined();
  });

  it('a dump cut exactly at a statement boundary before COMMIT fails too', async () => {
    const { e, stored } = await dumpArtifact();
    const file = stored.files[0]!;
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, text.indexOf('\nINSERT INTO "notes"') + 1));
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(proof.checks[0]).toMatchObject({ name: 'restore', status: 'failed' });
    expect(proof.checks[0]!.detail).toMatch(/ends before its COMMIT/);
  });

  it('a dump with a statement SQLite rejects fails with SQLite\'s message', async () => {
    const { e, stored } = await dumpArtifact();
    const file = stored.files[0]!;
    writeFileSync(file, readFileSync(file, 'utf8').replace('INSERT INTO "users"', 'INSERT INTO "userz"'));
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(proof.checks[0]!.status).toBe('failed');
    expect(proof.checks[0]!.detail).toContain('no such table: userz');
  });

  it('a file that is not a database fails the restore with "file is not a database"', async () => {
    const { e, stored } = await dumpArtifact();
    // The SQL text presented as a database file.
    const manifest = { ...stored.manifest, format: 'sqlite-db' };
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, manifest, stored.files);
    expect(proof.checks[0]).toMatchObject({ name: 'restore', status: 'failed' });
    expect(proof.checks[0]!.detail).toContain('file is not a database');
  });

  it('a wrong number of files or an unknown format is a failed restore, not a throw', async () => {
    const { e, stored } = await dumpArtifact();
    const two = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, [...stored.files, ...stored.files]);
    expect(two.checks[0]).toMatchObject({ name: 'restore', status: 'failed' });
    const odd = await sqliteEngine.prove(e.groundCtx, stored.artifact, { ...stored.manifest, format: 'mssql-bak' }, stored.files);
    expect(odd.checks[0]!.detail).toContain('format mssql-bak is not a SQLite backup format');
  });

  it('throws for a broken environment (the fetched file is not there)', async () => {
    const { e, stored } = await dumpArtifact();
    await expect(sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, [join(e.vault, 'nope')])).rejects.toMatchObject({
      code: 'ENGINE_FAILED',
    });
  });
});

describe('restore at landing', () => {
  it('writes the database at its location, replacing stale WAL files, with the fingerprint of the proof', async () => {
    const e = estate();
    createSyntheticEhr(e.target.resolve('ehr/db/ehr.db'), { patients: 120 });
    const item = await discoverOne(e, 'ehr');
    for (const method of ['sqlite-backup-api', 'sqlite-sql-dump']) {
      const stored = storeInVault(e.vault, item.id, method, await sqliteEngine.capture(e.targetCtx, item, method, {}));
      const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);

      // The rebuilt target: an empty root, except for debris where the database goes.
      const rebuilt = new LocalHost('rebuilt', tempDir());
      mkdirSync(rebuilt.resolve('ehr/db'), { recursive: true });
      writeFileSync(rebuilt.resolve('ehr/db/ehr.db-wal'), 'stale wal from the old server');
      writeFileSync(rebuilt.resolve('ehr/db/ehr.db-journal'), 'stale journal');
      const ctx = { host: rebuilt, workDir: tempDir() };
      await sqliteEngine.restore(ctx, item, stored.manifest, stored.files);
      expect(existsSync(rebuilt.resolve('ehr/db/ehr.db-wal'))).toBe(false);
      expect(existsSync(rebuilt.resolve('ehr/db/ehr.db-journal'))).toBe(false);
      const landed = await sqliteEngine.fingerprint(ctx, item);
      expect(compareFingerprints(proof.fingerprint!, landed)).toEqual({ equal: true, differences: [] });
      // Idempotent: a redo lands the same database again.
      await sqliteEngine.restore(ctx, item, stored.manifest, stored.files);
      expect((await sqliteEngine.fingerprint(ctx, item)).digest).toBe(landed.digest);
    }
  });

  it('refuses a backup that fails its check and leaves the location untouched', async () => {
    const e = estate();
    createSyntheticEhr(e.target.resolve('ehr.db'), { patients: 40 });
    const item = await discoverOne(e, 'ehr');
    const stored = storeInVault(e.vault, item.id, 'sqlite-backup-api', await sqliteEngine.capture(e.targetCtx, item, 'sqlite-backup-api', {}));
    const before = sha256File(e.target.resolve('ehr.db'));
    const bad = join(e.vault, 'bad');
    const good = readFileSync(stored.files[0]!);
    writeFileSync(bad, good.subarray(0, Math.floor(good.length * 0.6)));
    const err = await sqliteEngine.restore(e.targetCtx, item, stored.manifest, [bad]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(RubiconError);
    expect(err).toMatchObject({ code: 'LANDING_FAILED' });
    expect(sha256File(e.target.resolve('ehr.db'))).toBe(before);
    expect(existsSync(e.target.resolve('ehr.db.rubicon-restore.tmp'))).toBe(false);
  });
});

describe('redactCommand', () => {
  it('hides values of secret-looking arguments', () => {
    expect(redactCommand(['job.exe', '--password', 'hunter2', 'token=abc', '--db', 'ehr'])).toBe('job.exe --password *** token=*** --db ehr');
  });
});
