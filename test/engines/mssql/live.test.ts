/**
 * Live suite against a real SQL Server, for users who have one.
 *
 *   MSSQL_TEST_URL='mssql://sa:Passw0rd!@127.0.0.1:1433/master?encrypt=true&trustServerCertificate=true' \
 *     npx vitest run test/engines/mssql/live.test.ts
 *
 * The login needs sysadmin (CREATE DATABASE, BACKUP, RESTORE, DBCC). The
 * suite creates a scratch database whose name contains `]` and `'`, backs
 * it up COPY_ONLY to the instance's default backup folder, proves it
 * (HEADERONLY, FILELISTONLY, MOVE per file, RESTORE WITH CHECKSUM, CHECKDB,
 * fingerprints, drop) and drops everything it created except the .bak file
 * (named rubicon-live-*.bak in InstanceDefaultBackupPath).
 *
 * Issue 11 cases: the SHA-256 fingerprint sees a change past character 255
 * of nvarchar(max) and a duplicated row pair (BINARY_CHECKSUM/CHECKSUM_AGG
 * did not); a backup WITH NO_CHECKSUM is restored without CHECKSUM and the
 * proof says page checks were limited; the backup's BackupSetGUID is
 * recorded and checked; a certificate's .cer/.pvk are tested in a scratch
 * database (right and wrong password); a login script (SID kept) is proven
 * inside a rolled-back transaction and its properties read back there;
 * msdb's backup history is captured as evidence and judged whole;
 * INFO/ERROR/result sets of one batch keep
 * their order and later result sets are kept; RAISERROR severity 20 WITH
 * LOG ends the session (ENGINE_FAILED).
 *
 * It has NOT been run on the machines this project was built on (no SQL
 * Server there), and has never run anywhere yet; see docs/mssql.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverJoin, testDatabaseName, type Sidecar } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { readFile, writeFile } from 'node:fs/promises';
import { fingerprintDatabase } from '../../../src/engines/mssql/fingerprint.ts';
import { proveScripts } from '../../../src/engines/mssql/instance-proof.ts';
import { parseHeaderOnly } from '../../../src/engines/mssql/parse.ts';
import { proveArtifact, testCertificateFiles } from '../../../src/engines/mssql/prove.ts';
import { judgeBackupHistory } from '../../../src/engines/mssql/history.ts';
import { loginProperties, scriptLogins } from '../../../src/engines/mssql/scripts.ts';
import { quoteIdentifier } from '../../../src/engines/mssql/quote.ts';
import { MssqlSession, parseMssqlUrl } from '../../../src/engines/mssql/session.ts';
import { backupToDiskStatement, dropDatabaseStatement, headerOnlyStatement } from '../../../src/engines/mssql/sql.ts';
import { tempHost } from './fixtures.ts';

const url = process.env.MSSQL_TEST_URL;

// The one conditional in the test suite: a real SQL Server cannot run on the
// build machines, so this suite runs only where a user points it at one.
describe.skipIf(!url)('mssql live (MSSQL_TEST_URL)', () => {
  const suffix = Math.random().toString(36).slice(2, 8);
  const db = `rubicon-live-${suffix}]'x`;
  let session: MssqlSession;
  let work: string;

  beforeAll(async () => {
    session = await MssqlSession.connect({ ...parseMssqlUrl(url!), longRequestTimeoutMs: 0, requestTimeoutMs: 120_000 });
    work = await mkdtemp(join(tmpdir(), 'rubicon-live-'));
    const q = quoteIdentifier(db);
    await session.query({ text: `CREATE DATABASE ${q};`, params: [] }, 'creating the scratch database');
    await session.query(
      {
        text: `DECLARE @s nvarchar(max) = N'USE ' + QUOTENAME(@db) + N'; CREATE TABLE dbo.Patients (id int PRIMARY KEY, name nvarchar(100), notes ntext); INSERT INTO dbo.Patients VALUES (1, N''Ada'', N''n1''), (2, N''Grace'', NULL), (3, N''Zoë'', N''n3'');'
  + N' CREATE TABLE dbo.Notes (k int, body nvarchar(max)); INSERT INTO dbo.Notes VALUES (1, REPLICATE(CAST(N''x'' AS nvarchar(max)), 400)), (2, N''a''), (2, N''a'');';
EXEC sys.sp_executesql @s;`,
        params: [{ name: 'db', type: 'nvarchar', value: db }],
      },
      'filling the scratch database',
    );
  });

  afterAll(async () => {
    await session?.run(dropDatabaseStatement(db));
    await session?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('QUOTENAME on the server agrees with quoteIdentifier for nasty names', async () => {
    for (const name of [']', 'a]]b', "x]; DROP TABLE t; --", '患者', "O'Brien"]) {
      const rows = await session.query({ text: 'SELECT QUOTENAME(@n) AS q;', params: [{ name: 'n', type: 'nvarchar', value: name }] }, 'QUOTENAME');
      expect(rows[0]?.q).toBe(quoteIdentifier(name));
    }
  });

  it('discovers the scratch database', async () => {
    const h = await tempHost();
    try {
      const e = createMssqlEngine({ connection: parseMssqlUrl(url!), backupDirectory: '.' });
      const items = await e.discover({ host: h.host, workDir: h.root }, { roots: [], declared: [] });
      expect(items.find((i) => i.id === `database:mssql:${db}`)?.facts.state).toBe('ONLINE');
      expect(items.some((i) => i.id.startsWith('instance-object:mssql:instance:'))).toBe(true);
    } finally {
      await h.dispose();
    }
  });

  it('backs up COPY_ONLY and proves the backup: restore, CHECKDB, matching fingerprints, drop', async () => {
    const source = await fingerprintDatabase(session, db);
    expect(source.tables.find((t) => t.table === 'dbo.Patients')).toMatchObject({ rows: 3 });
    expect(source.tables.find((t) => t.table === 'dbo.Patients')?.unhashedColumns).toBeUndefined();
    const info = (await session.query({ text: `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(260)) AS dir, CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS e;`, params: [] }, 'backup path'))[0]!;
    const name = `rubicon-live-${suffix}.bak`;
    const path = serverJoin(String(info.dir), name);
    const backup = await session.run(backupToDiskStatement(db, path, { compression: !/express/i.test(String(info.e)) }));
    expect(backup.ok, JSON.stringify(backup.messages)).toBe(true);
    const header = parseHeaderOnly(await session.query(headerOnlyStatement([path]), 'HEADERONLY'))[0]!;
    expect(header.backupSetGuid).toMatch(/^[0-9A-F-]{36}$/);
    const sidecar: Sidecar = { version: 1, format: 'mssql-bak', database: db, method: 'mssql-native-full', source: { server: 'live', productVersion: String(info.v), edition: String(info.e) }, steps: [{ kind: 'full', files: [name], position: 1, backupSetGuid: header.backupSetGuid }], certificates: [], requiredThumbprints: [] };
    const test = testDatabaseName(db, `live-${suffix}`);
    const r = await proveArtifact({ session }, { artifactId: `live-${suffix}`, sidecar, serverPaths: new Map([[name, path]]), testDatabase: test, sourceFingerprint: source });
    expect(r.checks.map((c) => `${c.name}:${c.status}`), JSON.stringify(r.checks, null, 2)).toEqual([
      'version:passed',
      'certificates:passed',
      'restore:passed',
      'integrity:passed',
      'fingerprint-source:passed',
      'database-settings:passed',
      'smoke:passed',
      'cleanup:passed',
    ]);
    // another BackupSetGUID under the same file: refused before RESTORE
    const wrong = await proveArtifact({ session }, { artifactId: `live-${suffix}-g`, sidecar: { ...sidecar, steps: [{ ...sidecar.steps[0]!, backupSetGuid: '00000000-0000-0000-0000-000000000001' }] }, serverPaths: new Map([[name, path]]), testDatabase: `${test}-g` });
    expect(wrong.checks.find((c) => c.name === 'restore')?.detail).toContain('BackupSetGUID');
    const left = await session.query({ text: 'SELECT name FROM sys.databases WHERE name = @n;', params: [{ name: 'n', type: 'nvarchar', value: test }] }, 'test db gone');
    expect(left).toEqual([]);
  });

  const fp = async (): Promise<string | undefined> => (await fingerprintDatabase(session, db)).tables.find((t) => t.table === 'dbo.Notes')?.hash;
  const exec = (inner: string) => session.query({ text: `DECLARE @s nvarchar(max) = N'USE ' + QUOTENAME(@db) + N'; ' + @inner; EXEC sys.sp_executesql @s;`, params: [{ name: 'db', type: 'nvarchar', value: db }, { name: 'inner', type: 'nvarchar', value: inner }] }, 'changing the scratch database');

  it('the fingerprint sees a change past character 255 of nvarchar(max) and a duplicated row pair changed in step', async () => {
    const before = await fp();
    await exec("UPDATE dbo.Notes SET body = STUFF(body, 300, 1, N'y') WHERE k = 1;");
    expect(await fp()).not.toBe(before);
    await exec("UPDATE dbo.Notes SET body = STUFF(body, 300, 1, N'x') WHERE k = 1;");
    expect(await fp()).toBe(before);
    // (2,'a'),(2,'a') → (2,'b'),(2,'b'): CHECKSUM_AGG's XOR cancels both pairs; the sums do not
    await exec("UPDATE dbo.Notes SET body = N'b' WHERE k = 2;");
    expect(await fp()).not.toBe(before);
    await exec("UPDATE dbo.Notes SET body = N'a' WHERE k = 2;");
  });

  it('a backup WITH NO_CHECKSUM is restored without CHECKSUM and the proof says page checks were limited', async () => {
    const info = (await session.query({ text: `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(260)) AS dir, CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS e;`, params: [] }, 'backup path'))[0]!;
    const name = `rubicon-live-${suffix}-nochecksum.bak`;
    const path = serverJoin(String(info.dir), name);
    const out = await session.run({ text: `BACKUP DATABASE ${quoteIdentifier(db)} TO DISK = @path WITH COPY_ONLY, NO_CHECKSUM, FORMAT, INIT;`, params: [{ name: 'path', type: 'nvarchar', value: path }] });
    expect(out.ok, JSON.stringify(out.messages)).toBe(true);
    const sidecar: Sidecar = { version: 1, format: 'mssql-bak', database: db, method: 'vendor-job', source: { server: 'live', productVersion: String(info.v), edition: String(info.e) }, steps: [{ kind: 'full', files: [name], position: 1 }], certificates: [], requiredThumbprints: [] };
    const r = await proveArtifact({ session }, { artifactId: `live-${suffix}-nc`, sidecar, serverPaths: new Map([[name, path]]), testDatabase: testDatabaseName(db, `live-${suffix}-nc`) });
    expect(r.checks.find((c) => c.name === 'restore')).toMatchObject({ status: 'passed', detail: expect.stringContaining('page checks during the restore were limited') });
  });

  it("a certificate's files are tested in a scratch database: the right password passes, a wrong one fails; master is untouched", async () => {
    const info = (await session.query({ text: `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(260)) AS dir;`, params: [] }, 'backup path'))[0]!;
    const cert = `rubicon_live_${suffix}`;
    const cer = serverJoin(String(info.dir), `${cert}.cer`);
    const pvk = serverJoin(String(info.dir), `${cert}.pvk`);
    const make = [
      `DECLARE @s nvarchar(max) = N'CREATE CERTIFICATE ' + QUOTENAME(@c) + N' ENCRYPTION BY PASSWORD = N''Live-1-pass!'' WITH SUBJECT = N''rubicon live'';'`,
      `  + N' BACKUP CERTIFICATE ' + QUOTENAME(@c) + N' TO FILE = N''' + REPLACE(@cer, N'''', N'''''') + N''''`,
      `  + N' WITH PRIVATE KEY (FILE = N''' + REPLACE(@pvk, N'''', N'''''') + N''', ENCRYPTION BY PASSWORD = N''Live-2-pass!'', DECRYPTION BY PASSWORD = N''Live-1-pass!'');';`,
      'EXEC master.sys.sp_executesql @s;',
    ].join('\n');
    await session.query({ text: make, params: [{ name: 'c', type: 'nvarchar', value: cert }, { name: 'cer', type: 'nvarchar', value: cer }, { name: 'pvk', type: 'nvarchar', value: pvk }] }, 'making a certificate');
    try {
      const tp = String((await session.query({ text: 'SELECT CONVERT(nvarchar(130), thumbprint, 1) AS t FROM master.sys.certificates WHERE name = @c;', params: [{ name: 'c', type: 'nvarchar', value: cert }] }, 'thumbprint'))[0]?.t);
      const c = { name: cert, thumbprint: tp, certFile: `${cert}.cer`, keyFile: `${cert}.pvk` };
      expect((await testCertificateFiles(session, c, cer, pvk, 'Live-2-pass!')).ok).toBe(true);
      expect((await testCertificateFiles(session, c, cer, pvk, 'wrong')).ok).toBe(false);
    } finally {
      await session.run({ text: "DECLARE @s nvarchar(max) = N'DROP CERTIFICATE ' + QUOTENAME(@c) + N';'; EXEC master.sys.sp_executesql @s;", params: [{ name: 'c', type: 'nvarchar', value: cert }] });
    }
  });

  it('a login script (SID and hash kept) is proven inside a rolled-back transaction and leaves nothing behind', async () => {
    const login = `rubicon-live-${suffix}`;
    const row = { name: login, type_desc: 'SQL_LOGIN', sid: Buffer.from('5A1F0C2D3E4B5A69788796A5B4C3D2E1', 'hex'), password_hash: Buffer.from('0200A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6', 'hex'), default_database_name: 'master', default_language_name: 'us_english', is_disabled: 0, is_policy_checked: 0, is_expiration_checked: 0, server_roles: null };
    const text = scriptLogins([row], 'live');
    const file = join(work, 'logins.sql');
    await writeFile(file, text);
    // What the read-back inside the transaction must find: the script's login, with CONNECT SQL granted by CREATE LOGIN.
    const json = join(work, 'logins.json');
    await writeFile(json, JSON.stringify({ version: 1, format: 'mssql-login-properties', machineName: '', principals: loginProperties([row], [{ grantee: login, class: 100, permission_name: 'CONNECT SQL', state: 'G' }], []) }));
    const checks = await proveScripts(session, new Map([['logins.sql', file], ['logins.json', json]]));
    expect(checks.map((c) => `${c.name}:${c.status}`), JSON.stringify(checks, null, 2)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'login-properties:passed', 'cleanup:passed']);
  });

  it("msdb's backup history of the user databases is captured as evidence and judged whole (read-only)", async () => {
    const h = await tempHost();
    try {
      const e = createMssqlEngine({ connection: parseMssqlUrl(url!), backupDirectory: '.', carryBackupHistory: true });
      const item = { id: 'instance-object:mssql:backup-history:live', kind: 'instance-object' as const, name: 'msdb backup history', declared: false, discovered: true, engine: 'mssql', location: '', facts: {}, why: [], methods: ['instance-objects'] };
      const c = await e.capture({ host: h.host, workDir: h.root }, item, 'instance-objects', {});
      const j = judgeBackupHistory(await readFile(c.files[0]!.path, 'utf8'));
      expect(j.problems).toEqual([]);
      // the COPY_ONLY backup of the scratch database (an earlier case) is in it
      expect(j.summary).toContain(db);
    } finally {
      await h.dispose();
    }
  });

  it('one batch: INFO, ERROR and result sets keep their order and the result set after the error is kept; severity 20 ends the session', async () => {
    const out = await session.run({ text: "PRINT N'first'; SELECT 1 AS a; RAISERROR(N'middle', 16, 1); SELECT 2 AS b; PRINT N'last';", params: [] });
    expect(out.ok).toBe(false);
    expect(out.messages.map((m) => m.message)).toEqual(['first', 'middle', 'last']);
    expect(out.recordsets.map((r) => Object.keys(r[0] ?? {})[0])).toEqual(['a', 'b']);
    const other = await MssqlSession.connect({ ...parseMssqlUrl(url!), requestTimeoutMs: 60_000 });
    try {
      await expect(other.run({ text: "RAISERROR(N'rubicon live: fatal on purpose', 20, 1) WITH LOG;", params: [] })).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
    } finally {
      await other.close().catch(() => undefined);
    }
  });
});
