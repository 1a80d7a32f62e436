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
 * It has NOT been run on the machines this project was built on (no SQL
 * Server there); see docs/mssql.md.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverJoin, testDatabaseName, type Sidecar } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { fingerprintDatabase } from '../../../src/engines/mssql/fingerprint.ts';
import { proveArtifact } from '../../../src/engines/mssql/prove.ts';
import { quoteIdentifier } from '../../../src/engines/mssql/quote.ts';
import { MssqlSession, parseMssqlUrl } from '../../../src/engines/mssql/session.ts';
import { backupToDiskStatement, dropDatabaseStatement } from '../../../src/engines/mssql/sql.ts';
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
        text: `DECLARE @s nvarchar(max) = N'USE ' + QUOTENAME(@db) + N'; CREATE TABLE dbo.Patients (id int PRIMARY KEY, name nvarchar(100), notes ntext); INSERT INTO dbo.Patients VALUES (1, N''Ada'', N''n1''), (2, N''Grace'', NULL), (3, N''Zoë'', N''n3'');';
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
    expect(source.tables.find((t) => t.table === 'dbo.Patients')).toMatchObject({ rows: 3, unhashedColumns: ['notes (ntext)'] });
    const info = (await session.query({ text: `SELECT CAST(SERVERPROPERTY('InstanceDefaultBackupPath') AS nvarchar(260)) AS dir, CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS v, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS e;`, params: [] }, 'backup path'))[0]!;
    const name = `rubicon-live-${suffix}.bak`;
    const path = serverJoin(String(info.dir), name);
    const backup = await session.run(backupToDiskStatement(db, path, { compression: !/express/i.test(String(info.e)) }));
    expect(backup.ok, JSON.stringify(backup.messages)).toBe(true);
    const sidecar: Sidecar = { version: 1, format: 'mssql-bak', database: db, method: 'mssql-native-full', source: { server: 'live', productVersion: String(info.v), edition: String(info.e) }, steps: [{ kind: 'full', files: [name], position: 1 }], certificates: [], requiredThumbprints: [] };
    const test = testDatabaseName(db, `live-${suffix}`);
    const r = await proveArtifact({ session }, { artifactId: `live-${suffix}`, sidecar, serverPaths: new Map([[name, path]]), testDatabase: test, sourceFingerprint: source });
    expect(r.checks.map((c) => `${c.name}:${c.status}`), JSON.stringify(r.checks, null, 2)).toEqual([
      'version:passed',
      'certificates:passed',
      'restore:passed',
      'integrity:passed',
      'fingerprint-source:passed',
      'smoke:passed',
      'cleanup:passed',
    ]);
    const left = await session.query({ text: 'SELECT name FROM sys.databases WHERE name = @n;', params: [{ name: 'n', type: 'nvarchar', value: test }] }, 'test db gone');
    expect(left).toEqual([]);
  });
});
