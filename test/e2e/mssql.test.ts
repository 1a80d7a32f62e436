/**
 * `rubicon rehearse` with a SQL Server, end to end at the protocol level:
 * the sandbox estate (its SQLite EHR, folders and vendor job stay as they
 * are) plus a runbook engines.mssql section pointing at TWO scripted TDS
 * endpoints on loopback, the target's SQL Server and the proving ground's.
 * The real orchestrator runs discover → capture → prove, the proving in its
 * confined child process, with the real mssql/tedious client on both sides.
 *
 * No real SQL Server writes the backup: when BACKUP DATABASE arrives, the
 * target endpoint writes a small fake .bak into the folder the runbook says
 * the target host sees as the server's backup directory, as SQL Server
 * would. What the fake file cannot show (that the bytes restore) is the
 * proving ground endpoint's scripted answer; what this test does show is
 * every statement, every path mapping and every record around them.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { JournalRecord } from '../../src/core/events.ts';
import type { Proof } from '../../src/core/types.ts';
import { SIDECAR_NAME } from '../../src/engines/mssql/artifact.ts';
import { readManifest } from '../../src/files/manifest.ts';
import { startRun } from '../../src/run/run.ts';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { FilesystemVault } from '../../src/vaults/filesystem.ts';
import type { TdsReply, TdsRequest, TdsServer } from '../tds/server.ts';
import { PROOF_MARK, scriptedObjects } from '../../src/engines/mssql/instance-proof.ts';
import { checkDbClock, columnsReply, DB_FEATURES, databaseFeaturesReply, databasesReply, fileListOnly, headerOnly, one, ok, ORPHANS, orphansReply, restoreOk, rs, scripted, serverInfoReply, tableHashOf, tableHashReply, targetServerReply, VERSION_READ, type Scripted } from '../engines/mssql/fixtures.ts';
import { journalOf, removeTempDirs, tempDir } from './helpers.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, selfSignedCert, startAzurite, type Azurite } from '../azure/azurite.ts';
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';

const SERVER_BACKUP_DIR = '/var/opt/mssql/backup';
const HOST_BACKUP_DIR = 'sqlserver/backup';
const STAGE_DIR = '/var/opt/mssql/stage';
const PASSWORD_ENV = 'RUBICON_E2E_MSSQL_PASSWORD';
const PG_PASSWORD_ENV = 'RUBICON_E2E_MSSQL_PG_PASSWORD';
const KEY_ENV = 'RUBICON_E2E_MSSQL_KEY_PASSWORD';
const DMK_ENV = 'RUBICON_E2E_MSSQL_DMK_PASSWORD';
const FAKE_BAK = 'fake backup bytes: no real SQL Server wrote this file\n';

let target: Scripted;
let pg: Scripted;
let L: SandboxLayout;
let staged: { name: string; content: string }[];
/** What the runbook declares the rebuilt target's SQL Server will be (engines.mssql.landingServer). */
let LANDING_VERSION = '16.0.4135.4';

beforeEach(async () => {
  staged = [];
  LANDING_VERSION = '16.0.4135.4';
  target = await scripted();
  pg = await scripted();
  L = await buildSandbox(path.join(await tempDir('rubicon-e2e-mssql-'), 'estate'), { patients: 200 });
  await mkdir(path.join(L.target, HOST_BACKUP_DIR), { recursive: true });
  // The orchestrator and its confined proving process read the passwords from here.
  process.env[PASSWORD_ENV] = target.config.password;
  process.env[PG_PASSWORD_ENV] = pg.config.password;
  const section = `
engines:
  mssql:
    connection:
      server: 127.0.0.1
      port: ${target.config.port}
      user: rubicon
      passwordEnv: ${PASSWORD_ENV}
      encrypt: false
      trustServerCertificate: true
      requestTimeoutSeconds: 10
    provingGround:
      server: 127.0.0.1
      port: ${pg.config.port}
      user: rubicon
      passwordEnv: ${PG_PASSWORD_ENV}
      encrypt: false
      trustServerCertificate: true
      requestTimeoutSeconds: 10
    backupDirectory: ${SERVER_BACKUP_DIR}
    backupDirectoryOnHost: ${HOST_BACKUP_DIR}
    provingGroundStaging:
      directory: ${STAGE_DIR}
      directoryOnHost: stage
    landingServer:
      productVersion: ${LANDING_VERSION}
      edition: Standard Edition (64-bit)
      engineEdition: 2
`;
  const text = (await readFile(L.runbook, 'utf8'))
    .replace('declared:\n  folders:', 'declared:\n  databases:\n    - {name: EHR, engine: mssql}\n  folders:')
    .replace('\nvaults:\n', '\nmethods:\n  databases:\n    mssql: [mssql-native-full]\n\nvaults:\n');
  await writeFile(L.runbook, text + section);
});

afterEach(async () => {
  delete process.env[PASSWORD_ENV];
  delete process.env[PG_PASSWORD_ENV];
  delete process.env[KEY_ENV];
  delete process.env[DMK_ENV];
  await target.stop();
  await pg.stop();
  await removeTempDirs();
});

/** The EHR database's tables, the same on the source and on the restored copy. */
function scriptTables(server: TdsServer): void {
  server.on(VERSION_READ, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar']], [{ product_version: '15.0.4355.3', edition: 'Standard Edition (64-bit)' }])));
  server.on(/FROM \[[^\]]+\]\.sys\.tables/, columnsReply([
    { table: 'Patients', column: 'id', base: 'int' },
    { table: 'Patients', column: 'notes', base: 'nvarchar' },
    { table: 'Visits', column: 'id', base: 'bigint' },
  ]));
  server.on(tableHashOf('Patients'), tableHashReply(1200, ['100', '200', '300', '400', '500']));
  server.on(tableHashOf('Visits'), tableHashReply(5400, ['600', '700', '800', '900', '1000']));
}

const E2E_JOB_COLS: [string, 'nvarchar' | 'int' | 'uniqueidentifier'][] = [['job_id', 'uniqueidentifier'], ['name', 'nvarchar'], ['enabled', 'int'], ['description', 'nvarchar'], ['owner_name', 'nvarchar'], ['category_name', 'nvarchar'], ['step_count', 'int']];
const E2E_JOB_ROW = { job_id: '2B5D3C1A-0F4E-4A8B-9C7D-6E5F4A3B2C1D', name: 'EHR Nightly Backup', enabled: 1, owner_name: 'sa', category_name: 'Database Maintenance', step_count: 3 };

const empty = (cols: [string, 'nvarchar' | 'int' | 'bigint'][]): TdsReply => one(rs(cols, []));
const E2E_LOGINS = rs([['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'], ['is_disabled', 'int'], ['server_roles', 'nvarchar']], [
  { name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: Buffer.from([2]), password_hash: Buffer.from('0200A1B2C3D4E5F6', 'hex'), default_database_name: 'EHR', is_disabled: 0, server_roles: null },
]);

/** The target's SQL Server: discovery catalog queries, fingerprints, BACKUP (writes the fake file), HEADERONLY. */
function scriptTarget(server: TdsServer): void {
  server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)'));
  server.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply([{ name: 'EHR', id: 5 }]));
  server.on(/FROM sys\.server_principals AS sp/, one(E2E_LOGINS));
  server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(E2E_JOB_COLS, [E2E_JOB_ROW])));
  server.on(/FROM msdb\.dbo\.sysoperators/, empty([['name', 'nvarchar'], ['enabled', 'int'], ['email_address', 'nvarchar']]));
  server.on(/FROM sys\.servers AS s WHERE s\.is_linked = 1/, empty([['name', 'nvarchar'], ['product', 'nvarchar'], ['provider', 'nvarchar'], ['data_source', 'nvarchar'], ['catalog', 'nvarchar']]));
  server.on(/FROM sys\.credentials/, empty([['name', 'nvarchar'], ['credential_identity', 'nvarchar']]));
  server.on(/FROM master\.sys\.certificates AS c\nWHERE/, empty([['name', 'nvarchar'], ['thumbprint', 'nvarchar'], ['subject', 'nvarchar'], ['pvt_key_encryption_type_desc', 'nvarchar'], ['tde_databases', 'int']]));
  server.on(/FROM sys\.endpoints/, empty([['name', 'nvarchar'], ['protocol_desc', 'nvarchar'], ['type_desc', 'nvarchar'], ['state_desc', 'nvarchar']]));
  server.on(/FROM sys\.configurations/, one(rs([['name', 'nvarchar'], ['value', 'bigint'], ['value_in_use', 'bigint'], ['is_advanced', 'int']], [{ name: 'max server memory (MB)', value: 24576n, value_in_use: 24576n, is_advanced: 1 }])));
  server.on(/ExecIsStartup/, empty([['name', 'nvarchar']]));
  server.on(/^DBCC TRACESTATUS\(-1\)/, one(rs([['TraceFlag', 'int'], ['Status', 'int'], ['Global', 'int'], ['Session', 'int']], [{ TraceFlag: 3226, Status: 1, Global: 1, Session: 0 }])));
  server.on(/FROM msdb\.dbo\.sysalerts AS a/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysproxies AS p/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysmail_profile AS p/, empty([['profile_name', 'nvarchar']]));
  server.on(/FROM sys\.linked_logins AS ll/, empty([['server_name', 'nvarchar']]));
  server.on(/FROM sys\.server_permissions AS p/, empty([['grantee', 'nvarchar']]));
  server.on(/FROM sys\.server_principals AS r\nWHERE r\.type = 'R'/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, empty([['job_name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, empty([['job_name', 'nvarchar']]));
  server.on(DB_FEATURES, databaseFeaturesReply());
  server.on(/bs\.backup_set_uuid = @guid/, empty([['backup_set_id', 'int']]));
  scriptTables(server);
  server.on(/^BACKUP DATABASE/, async (req: TdsRequest) => {
    // SQL Server writes the file on its disk; the target host sees that folder as sqlserver/backup.
    const serverPath = String(req.params.path);
    expect(path.posix.dirname(serverPath)).toBe(SERVER_BACKUP_DIR);
    await writeFile(path.join(L.target, HOST_BACKUP_DIR, path.posix.basename(serverPath)), FAKE_BAK);
    return { infos: [{ number: 3014, message: 'BACKUP DATABASE successfully processed 370 pages in 0.100 seconds (28.906 MB/sec).' }] };
  });
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
}

/** The proving ground's SQL Server (2022). Special rules go in before this. */
function scriptProvingGround(server: TdsServer): void {
  server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Developer Edition (64-bit)'));
  server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
  server.on(/^RESTORE FILELISTONLY/, fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(/^RESTORE DATABASE/, (req) => {
    // What the proving ground's SQL Server would read: the staged files, as its host sees the staging folder.
    for (const run of readdirSync(L.provingGround)) {
      const dir = path.join(L.provingGround, run, 'stage');
      if (existsSync(dir)) for (const name of readdirSync(dir)) staged.push({ name, content: readFileSync(path.join(dir, name), 'utf8') });
    }
    return restoreOk(String(/^RESTORE DATABASE \[([^\]]+)\]/.exec(req.sql)?.[1]));
  });
  server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, (req) => one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: String(req.params.database), state_desc: 'ONLINE' }])));
  server.on(/^DBCC CHECKDB/, ok);
  checkDbClock(server);
  scriptTables(server);
  server.on(DB_FEATURES, databaseFeaturesReply());
  server.on(ORPHANS, orphansReply());
  server.on(/user_access_desc/, one(rs([['state_desc', 'nvarchar'], ['user_access_desc', 'nvarchar'], ['is_read_only', 'int'], ['user_objects', 'int']], [{ state_desc: 'ONLINE', user_access_desc: 'MULTI_USER', is_read_only: 0, user_objects: 42 }])));
}

/** Sets the declared landing server's version in the runbook beforeEach wrote. */
async function declareLandingVersion(version: string): Promise<void> {
  const text = await readFile(L.runbook, 'utf8');
  await writeFile(L.runbook, text.replace(/productVersion: \S+/, `productVersion: ${version}`));
}

async function rehearse() {
  const summary = await startRun('rehearse', L.runbook, {
    stateDir: L.stateDir,
    onEvent: () => {},
    confirm: async () => ({ confirmed: false, by: 'flag', who: 'test', reason: 'a rehearsal never crosses' }),
  });
  const records: JournalRecord[] = await journalOf(L.stateDir, summary.runId);
  const proofOf = (artifactId: string): Proof | undefined => {
    for (const r of records) if (r.event.type === 'proof.recorded' && r.event.proof.artifactId === artifactId) return r.event.proof;
    return undefined;
  };
  return { summary, records, proofOf, artifactId: `${summary.runId}.capture.database:mssql:EHR.mssql-native-full` };
}

/**
 * The rebuilt target's SQL Server, played by the target endpoint once the
 * crossing is done (`crossed()`): an empty instance (no EHR database until
 * RESTORE made it), the same 2022 build the runbook declares. Rules go in
 * before scriptTarget's, and answer only after the crossing.
 */
function scriptRebuilt(server: TdsServer, crossed: () => boolean): void {
  const after = (re: RegExp) => (r: TdsRequest) => crossed() && re.test(r.sql);
  let restored = false;
  server.on(after(/^-- Rubicon instance-objects/), ok);
  server.on(after(/SERVERPROPERTY\('ProductLevel'\)/), serverInfoReply(LANDING_VERSION, 'Standard Edition (64-bit)', { masterKey: 0 }));
  server.on(after(/^DECLARE @stmt nvarchar\(max\) = N'RESTORE (SERVICE )?MASTER KEY FROM FILE/), ok);
  server.on(after(/FROM sys\.databases AS d WHERE d\.name = @database;$/), () => one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], restored ? [{ name: 'EHR', state_desc: 'ONLINE' }] : [])));
  server.on(after(/InstanceDefaultDataPath/), targetServerReply(LANDING_VERSION, 'Standard Edition (64-bit)', { dataPath: 'D:\\Data\\', logPath: 'L:\\Log\\' }));
  server.on(after(/^RESTORE FILELISTONLY/), fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(after(/^RESTORE DATABASE/), () => ((restored = true), restoreOk('EHR')));
  server.on(after(/^DBCC CHECKDB/), ok);
  server.on(after(/^ALTER AUTHORIZATION/), ok);
  server.on(after(ORPHANS), orphansReply());
}

/** The target writes master's DMK and the service master key into its backup folder, as BACKUP (SERVICE) MASTER KEY would. */
function scriptKeyBackups(server: TdsServer): void {
  server.on(/^DECLARE @stmt nvarchar\(max\) = N'BACKUP (SERVICE )?MASTER KEY TO FILE/, async (req: TdsRequest) => {
    const serverPath = String(req.params.file);
    expect(path.posix.dirname(serverPath)).toBe(SERVER_BACKUP_DIR);
    await writeFile(path.join(L.target, HOST_BACKUP_DIR, path.posix.basename(serverPath)), 'fake encrypted key backup\n');
    return ok;
  });
  // The keys' identity in master (read at backup, and again by the drift scans): unchanged on the source.
  server.on(/FROM master\.sys\.symmetric_keys AS k WHERE k\.name = @key;$/, one(rs([['key_guid', 'nvarchar'], ['modify_date', 'nvarchar']], [{ key_guid: '8f2c1a7e-3b4d-4e5f-9a0b-1c2d3e4f5a6b', modify_date: '2024-03-01T10:00:00.123' }])));
}

/**
 * The proving ground for instance-object proofs (instance-proof.ts): the
 * batch inside BEGIN TRANSACTION … ROLLBACK "creates" what its guard lines
 * name, and the job read back inside it is the target's row; master's DMK
 * backup restores into a scratch database.
 */
function scriptInstanceProofs(server: TdsServer): void {
  const names = (req: TdsRequest, have: Set<string>) =>
    one(rs([['kind', 'nvarchar'], ['name', 'nvarchar']], Object.entries(req.params).flatMap(([param, name]) => {
      const kind = /^(login|job|operator|alert|profile|role)\d+$/.exec(param)?.[1];
      return kind && have.has(`${kind}:${String(name)}`) ? [{ kind, name: String(name) }] : [];
    })));
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSET XACT_ABORT ON;`), (req) => {
    const inTx = new Set(scriptedObjects(req.sql).map((x) => `${x.kind}:${x.name}`));
    const p = /UNION ALL|WHERE name IN/.test(req.sql) ? names(req, inTx) : ok;
    const sets = [...(p.resultSets ?? [])];
    if (req.sql.includes('FROM msdb.dbo.sysjobschedules')) sets.push(rs(E2E_JOB_COLS, [E2E_JOB_ROW]), rs([['job_name', 'nvarchar']], []), rs([['job_name', 'nvarchar']], []));
    // The login read back inside the transaction (after the job reads): the target's row, no permissions, no user-defined roles.
    if (req.sql.includes('AND sp.name IN (@readlogin1')) {
      sets.push(E2E_LOGINS, rs([['grantee', 'nvarchar']], []));
      if (req.sql.includes("WHERE r.type = 'R'")) sets.push(rs([['name', 'nvarchar']], []));
    }
    return { ...p, resultSets: sets };
  });
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nIF @@TRANCOUNT > 0`), one(rs([['open_transactions', 'int']], [{ open_transactions: 0 }])));
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSELECT N'`), (req) => names(req, new Set()));
  server.on(/^CREATE DATABASE \[rubicon-/, ok);
  server.on(/^DECLARE @stmt nvarchar\(max\) = N'RESTORE MASTER KEY FROM FILE[\s\S]*master_keys/, one(rs([['master_keys', 'int']], [{ master_keys: 1 }])));
}

const statuses = (p: Proof | undefined) => p?.checks.map((c) => `${c.name}:${c.status}`);

describe('rehearse with an engines.mssql section (two scripted SQL Servers)', () => {
  it('discovers the instance beside the sandbox, captures EHR with BACKUP into both vaults, and proves it on the proving ground', async () => {
    scriptTarget(target.server);
    scriptProvingGround(pg.server);
    const { summary, records, proofOf, artifactId } = await rehearse();
    expect(summary.error).toBeUndefined();
    expect(summary.outcome).toBe('rehearsed');

    // discover: both engines' items in one checklist.
    const row = (id: string) => summary.checklist.find((c) => c.itemId === id);
    expect(row('database:mssql:EHR')).toMatchObject({ declared: true, discovered: true });
    for (const id of ['instance-object:mssql:instance:EHR-SQL01', 'instance-object:mssql:login:ehr_app', 'instance-object:mssql:job:EHR Nightly Backup', 'instance-object:mssql:configuration:EHR-SQL01', 'instance-object:mssql:trace-flags:EHR-SQL01']) {
      expect(row(id), id).toMatchObject({ discovered: true });
    }
    expect(row('database:sqlite:ehr')).toMatchObject({ discovered: true });
    expect(summary.plan.methods.find((m) => m.itemId === 'database:mssql:EHR')?.methods).toEqual(['mssql-native-full']);
    expect(summary.plan.methods.find((m) => m.itemId === 'instance-object:mssql:login:ehr_app')?.methods).toEqual(['instance-objects']);

    // capture: BACKUP on the target, the file read where the target host sees it, into both vaults.
    const [backup] = target.server.find(/^BACKUP DATABASE/);
    expect(backup?.sql).toBe('BACKUP DATABASE [EHR] TO DISK = @path WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10;');
    const bakName = path.posix.basename(String(backup?.params.path));
    const artifact = records.flatMap((r) => (r.event.type === 'artifact.captured' && r.event.artifact.id === artifactId ? [r.event.artifact] : []))[0];
    expect(artifact).toMatchObject({ method: 'mssql-native-full', origin: 'rubicon', fileCount: 2, provenance: { tool: 'SQL Server 15.0.4355.3 (Standard Edition (64-bit)) BACKUP DATABASE' } });
    expect(artifact?.sourceFingerprint?.tables.map((t) => `${t.table}:${t.rows}`)).toEqual(['dbo.Patients:1200', 'dbo.Visits:5400']);
    for (const v of ['nas', 'offsite']) {
      const vault = new FilesystemVault({ name: v, kind: 'filesystem', location: path.join(L.dir, 'vaults', v), offTarget: true, immutable: false });
      const manifest = await readManifest(vault, artifact!.manifestHash);
      expect(manifest.entries.map((e) => e.path).sort(), v).toEqual([bakName, SIDECAR_NAME].sort());
      const bak = manifest.entries.find((e) => e.path === bakName)!;
      const chunks: Uint8Array[] = [];
      for await (const c of vault.read(bak.sha256)) chunks.push(c);
      expect(Buffer.concat(chunks).toString('utf8'), v).toBe(FAKE_BAK);
    }
    const copies = records.flatMap((r) => (r.event.type === 'copy.checked' && r.event.copy.artifactId === artifactId ? [`${r.event.copy.vault}:${r.event.copy.status}`] : []));
    expect(copies.sort()).toEqual(['nas:ok', 'offsite:ok']);

    // prove: on the proving ground's SQL Server only, from the staged vault copy.
    const proof = proofOf(artifactId);
    expect(proof?.outcome, JSON.stringify(proof?.checks)).toBe('passed');
    expect(statuses(proof)).toEqual([
      'copy-read:passed', 'restore-files:passed', 'files-hash:passed',
      'version:passed', 'certificates:passed', 'restore:passed', 'integrity:passed', 'fingerprint-source:passed', 'database-settings:passed', 'smoke:passed', 'cleanup:passed',
      'fingerprint-source:passed',
    ]);
    const testDb = String(/^RESTORE DATABASE \[([^\]]+)\]/.exec(pg.server.find(/^RESTORE DATABASE/)[0]!.sql)?.[1]);
    expect(testDb).toMatch(/^rubicon-prove-EHR-[0-9a-f]{10}$/);
    // The EHR proof's statements, in order (instance-object proofs, marked, run their own rolled-back batches; instance-objects.test.ts covers them).
    const stmts = pg.server.statements().filter((s) => !s.startsWith(PROOF_MARK)).map((s) => s.replace(/\s+/g, ' ').trim());
    const expected: (string | RegExp)[] = [
      /^SELECT CAST\(SERVERPROPERTY\('ProductVersion'\).*InstanceDefaultDataPath/,
      /^IF DB_ID\(@database\) IS NOT NULL .*DROP DATABASE/,
      'RESTORE HEADERONLY FROM DISK = @file1;',
      'RESTORE FILELISTONLY FROM DISK = @file1 WITH FILE = @position;',
      `RESTORE DATABASE [${testDb}] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, CHECKSUM, RECOVERY, STATS = 10;`,
      /FROM sys\.databases AS d WHERE d\.name = @database;$/,
      'SELECT SYSDATETIME() AS server_now;',
      `DBCC CHECKDB ([${testDb}]) WITH NO_INFOMSGS, ALL_ERRORMSGS;`,
      /LastGoodCheckDbTime/,
      /AS edition;$/,
      new RegExp(`FROM \\[${testDb}\\]\\.sys\\.tables`),
      new RegExp(`FROM \\[${testDb}\\]\\.\\[dbo\\]\\.\\[Patients\\] AS r CROSS APPLY \\(SELECT HASHBYTES\\('SHA2_256'`),
      new RegExp(`FROM \\[${testDb}\\]\\.\\[dbo\\]\\.\\[Visits\\] AS r CROSS APPLY \\(SELECT HASHBYTES\\('SHA2_256'`),
      /sys\.dm_db_persisted_sku_features/,
      /authentication_type = 1/,
      /user_access_desc/,
      /^IF DB_ID\(@database\) IS NOT NULL .*DROP DATABASE/,
    ];
    expect(stmts.length, stmts.join('\n')).toBe(expected.length);
    expected.forEach((e, i) => (typeof e === 'string' ? expect(stmts[i]).toBe(e) : expect(stmts[i]).toMatch(e)));
    // Every path the proving ground's SQL Server was given is in its staging folder, as the runbook maps it.
    const [restore] = pg.server.find(/^RESTORE DATABASE/);
    expect(restore?.params).toMatchObject({ file1: `${STAGE_DIR}/${bakName}`, position: 1, logical1: 'EHR', logical2: 'EHR_log' });
    expect(restore?.params.physical1).toMatch(new RegExp(`^/var/opt/mssql/data/${testDb}-[0-9a-f]+_1\\.mdf$`));
    expect(restore?.params.physical2).toMatch(new RegExp(`^/var/opt/mssql/log/${testDb}-[0-9a-f]+_2\\.ldf$`));
    // Instance-level objects are not skipped: each was captured, or its failure is on record.
    const instanceItems = records.flatMap((r) => (r.event.type === 'item.discovered' && r.event.item.kind !== 'database' && r.event.item.kind !== 'folder' ? [r.event.item.id] : []));
    expect(instanceItems.length).toBeGreaterThan(0);
    for (const id of instanceItems) {
      const attempted = records.some((r) => (r.event.type === 'artifact.captured' && r.event.artifact.itemId === id) || (r.event.type === 'capture.failed' && r.event.itemId === id));
      expect(attempted, id).toBe(true);
    }
    // The test database is dropped at the end of its proof.
    expect(pg.server.find(/DROP DATABASE/).at(-1)?.params.database).toBe(testDb);
    // The proving ground never got a BACKUP; the target never got a RESTORE or CHECKDB.
    expect(pg.server.find(/BACKUP/)).toEqual([]);
    expect(target.server.find(/^RESTORE DATABASE|^DBCC CHECKDB|DROP DATABASE/)).toEqual([]);
    // When RESTORE ran, the proving ground's staging folder held the vault's bytes, and nothing else of the target.
    expect(staged.map((f) => f.name).sort()).toEqual([bakName, SIDECAR_NAME].sort());
    expect(staged.find((f) => f.name === bakName)?.content).toBe(FAKE_BAK);
    expect(JSON.parse(staged.find((f) => f.name === SIDECAR_NAME)!.content)).toMatchObject({ database: 'EHR', steps: [{ kind: 'full', files: [bakName] }] });
    // The mssql engine proved inside the confined proving process (which read its password from the inherited environment).
    expect(records.some((r) => r.event.type === 'note' && r.event.message.startsWith('proving ground isolation checked'))).toBe(true);
    // Before capture, the engine's landing preflight ran (through the Engine interface) against the declared landing server, and passed.
    const preflights = records.flatMap((r) => (r.event.type === 'preflight.checked' ? [r.event.preflight] : []));
    expect(preflights.map((p) => `${p.engine}:${p.stage}:${p.checks.map((c) => `${c.name}:${c.status}`).join(',')}`)).toEqual(['mssql:capture:landing-server:passed']);
    const firstBackup = records.findIndex((r) => r.event.type === 'capture.started');
    expect(records.findIndex((r) => r.event.type === 'preflight.checked')).toBeLessThan(firstBackup);
  }, 60_000);

  it('an upgrade whose declared landing server is older than the source is refused before anything is captured (exit 2)', async () => {
    scriptTarget(target.server);
    scriptProvingGround(pg.server);
    await declareLandingVersion('13.0.6300.2'); // SQL Server 2016 under a 2019 source: its backups cannot restore there
    const summary = await startRun('upgrade', L.runbook, { stateDir: L.stateDir, onEvent: () => {}, confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }) });
    expect(summary.outcome).toBe('refused');
    expect(summary.exitCode).toBe(2);
    expect(summary.error?.code).toBe('PREFLIGHT_REFUSED');
    expect(summary.error?.message).toContain('SQL Server 2016');
    expect(summary.error?.message).toContain('older than the source');
    const records: JournalRecord[] = await journalOf(L.stateDir, summary.runId);
    expect(records.some((r) => r.event.type === 'capture.started' || r.event.type === 'artifact.captured')).toBe(false);
    expect(target.server.find(/^BACKUP/)).toEqual([]);
    expect(pg.server.statements()).toEqual([]);
    expect(records.flatMap((r) => (r.event.type === 'preflight.checked' ? [r.event.preflight.checks[0]?.status] : []))).toEqual(['failed']);
    expect(summary.crossed).toBe(false);
  }, 60_000);

  it('a RESTORE that fails with Msg 3013 fails the proof and keeps the server\'s words', async () => {
    scriptTarget(target.server);
    pg.server.on(/^RESTORE DATABASE/, {
      infos: [{ number: 3211, message: '10 percent processed.' }],
      errors: [
        { number: 3241, class: 16, message: 'The media family on device \'/var/opt/mssql/stage/x.bak\' is incorrectly formed. SQL Server cannot process this media family.' },
        { number: 3013, class: 16, message: 'RESTORE DATABASE is terminating abnormally.' },
      ],
    });
    scriptProvingGround(pg.server);
    const { summary, records, proofOf, artifactId } = await rehearse();
    expect(summary.outcome).toBe('rehearsed');
    const proof = proofOf(artifactId);
    expect(proof?.outcome).toBe('failed');
    expect(statuses(proof)).toEqual([
      'copy-read:passed', 'restore-files:passed', 'files-hash:passed',
      'version:passed', 'certificates:passed', 'restore:failed', 'integrity:skipped', 'fingerprint-source:skipped', 'database-settings:skipped', 'smoke:skipped', 'cleanup:passed',
      'fingerprint-source:skipped',
    ]);
    const detail = proof!.checks.find((c) => c.name === 'restore')!.detail;
    expect(detail).toContain('Msg 3241, Level 16, State 1: The media family on device');
    expect(detail).toContain('Msg 3013, Level 16, State 1: RESTORE DATABASE is terminating abnormally.');
    expect(pg.server.find(/^DBCC CHECKDB/)).toEqual([]);
    expect(pg.server.statements().filter((s) => !s.startsWith(PROOF_MARK)).at(-1)).toMatch(/^IF DB_ID\(@database\) IS NOT NULL/);
    // The rehearsal says so in plain words (an error note), and the proof is on the summary.
    expect(summary.proofs.find((p) => p.artifactId === artifactId)?.failed.join(' ')).toContain('RESTORE DATABASE is terminating abnormally.');
    expect(records.some((r) => r.event.type === 'note' && r.event.level === 'error' && r.event.message.includes(`artifact ${artifactId} failed its proof`))).toBe(true);
  }, 60_000);

  it('an upgrade lands SQL Server through the phases: preflight again before the gate, logins before the database, the job after it, each validated (validateLanding, the fingerprint against the proof)', async () => {
    let crossed = false;
    scriptRebuilt(target.server, () => crossed);
    scriptKeyBackups(target.server);
    scriptTarget(target.server);
    checkDbClock(target.server);
    scriptInstanceProofs(pg.server);
    scriptProvingGround(pg.server);
    process.env[KEY_ENV] = 'Key-Backup-Secret-9!';
    process.env[DMK_ENV] = 'Dmk-Secret-9!';
    // What cannot pass a proof by design (docs/mssql.md: applied at landing), and one method for EHR: overrides with who and why.
    const rb = (await readFile(L.runbook, 'utf8')).replace('    landingServer:\n', `    keyBackupPasswordEnv: ${KEY_ENV}\n    masterKeyPasswordEnv: ${DMK_ENV}\n    landingServer:\n`);
    const why = (rule: string, item: string) => `  - {rule: ${rule}, item: '${item}', by: test, reason: applied at landing only (docs/mssql.md)}`;
    // Rubicon's own backup folder on the target: its files are in the vaults as the artifacts they belong to.
    await writeFile(L.runbook, `${rb}\ncoverage:\n  exclude:\n    - {path: ${HOST_BACKUP_DIR}, reason: Rubicon's own SQL Server backup folder (the files are artifacts), by: test}\noverrides:\n${[
      why('database.independent-methods', 'database:mssql:EHR'),
      why('item.proven', 'instance-object:mssql:configuration:EHR-SQL01'),
      why('item.proven', 'instance-object:mssql:trace-flags:EHR-SQL01'),
      why('item.proven', 'instance-object:mssql:instance:EHR-SQL01'),
      why('item.proven', 'instance-object:mssql:service-master-key:EHR-SQL01'),
    ].join('\n')}\n`);
    let landingStarts = -1;
    const summary = await startRun('upgrade', L.runbook, {
      stateDir: L.stateDir,
      onEvent: () => {},
      confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
      hooks: { afterPhase: async (phase) => { if (phase === 'crossing') { crossed = true; landingStarts = target.server.statements().length; } } },
    });
    const records: JournalRecord[] = await journalOf(L.stateDir, summary.runId);
    const gate = records.flatMap((r) => (r.event.type === 'gate.evaluated' ? [r.event.result] : [])).at(-1);
    const captureFailures = records.flatMap((r) => (r.event.type === 'capture.failed' ? [`${r.event.itemId}: ${r.event.message}`] : []));
    expect(captureFailures).toEqual([]);
    expect(gate?.passed, gate?.reasons.join('\n')).toBe(true);
    const landedNow = records.flatMap((r) => (r.event.type === 'landing.validated' && r.event.outcome !== 'passed' ? [`${r.event.itemId}: ${r.event.checks.filter((c) => c.status !== 'passed').map((c) => `${c.name} ${c.detail}`).join('; ')}`] : []));
    expect(landedNow).toEqual([]);
    expect(summary.error, JSON.stringify(summary.error)).toBeUndefined();
    expect(summary.outcome).toBe('landed');

    // The preflight ran before capture and again right before the gate, which judged it (landing.preflight).
    const preflights = records.flatMap((r) => (r.event.type === 'preflight.checked' ? [`${r.event.preflight.engine}:${r.event.preflight.stage}:${r.event.preflight.checks.map((c) => c.status).join(',')}`] : []));
    expect(preflights[0]).toBe('mssql:capture:passed');
    expect(preflights.at(-1)).toBe('mssql:pre-gate:passed');
    const seqOf = (pred: (r: JournalRecord) => boolean) => records.findIndex(pred);
    expect(seqOf((r) => r.event.type === 'preflight.checked' && r.event.preflight.stage === 'pre-gate')).toBeLessThan(seqOf((r) => r.event.type === 'gate.evaluated'));
    expect(gate?.results.filter((r) => r.rule === 'landing.preflight').map((r) => `${r.subject ?? ''}${r.status}`)).toEqual(['pass']);

    // Landing, in the engine's order: the instance's scripts and logins before the database, the Agent job after it.
    const landed = records.flatMap((r) => (r.event.type === 'landing.validated' ? [r.event] : []));
    const mssqlOrder = landed.map((l) => l.itemId).filter((id) => id.includes(':mssql:'));
    const pos = (id: string) => mssqlOrder.indexOf(id);
    expect(pos('instance-object:mssql:login:ehr_app')).toBeGreaterThanOrEqual(0);
    expect(pos('instance-object:mssql:login:ehr_app')).toBeLessThan(pos('database:mssql:EHR'));
    expect(pos('database:mssql:EHR')).toBeLessThan(pos('instance-object:mssql:job:EHR Nightly Backup'));
    for (const l of landed) expect(l.outcome, `${l.itemId}: ${JSON.stringify(l.checks)}`).toBe('passed');
    // The database: validateLanding's checks and the fingerprint against the proof, all passed.
    expect(landed.find((l) => l.itemId === 'database:mssql:EHR')?.checks.map((c) => `${c.name}:${c.status}`)).toEqual(['database-settings:passed', 'smoke:passed', 'fingerprint-proof:passed']);
    // The login and the job were read back from the rebuilt server and compared property by property (not only "the script ran").
    expect(landed.find((l) => l.itemId === 'instance-object:mssql:login:ehr_app')?.checks.map((c) => `${c.name}:${c.status}`)).toEqual(['login-properties:passed']);
    expect(landed.find((l) => l.itemId === 'instance-object:mssql:login:ehr_app')?.checks[0]?.detail).toContain('for 1 login(s)');
    expect(target.server.find(/AND sp\.name IN \(@login1\)/).map((r) => r.params)).toContainEqual({ login1: 'ehr_app' });
    expect(landed.find((l) => l.itemId === 'instance-object:mssql:job:EHR Nightly Backup')?.checks.map((c) => `${c.name}:${c.status}`)).toEqual(['job-properties:passed']);

    // What the rebuilt server received, in order: the login script, then RESTORE under the real name, CHECKDB, then the job script.
    const sent = target.server.statements().slice(landingStarts);
    const at = (re: RegExp) => sent.findIndex((x) => re.test(x));
    // Keys first: the service master key, then master's DMK (the rebuilt master has none), before any login or database.
    expect(at(/RESTORE SERVICE MASTER KEY FROM FILE/)).toBeGreaterThanOrEqual(0);
    expect(at(/RESTORE SERVICE MASTER KEY FROM FILE/)).toBeLessThan(at(/N'RESTORE MASTER KEY FROM FILE/));
    expect(at(/N'RESTORE MASTER KEY FROM FILE/)).toBeLessThan(at(/^-- Rubicon instance-objects: logins/));
    const keyRestores = target.server.find(/RESTORE (SERVICE )?MASTER KEY FROM FILE/).filter((r) => sent.includes(r.sql));
    expect(keyRestores.map((r) => path.posix.dirname(String(r.params.file)))).toEqual([SERVER_BACKUP_DIR, SERVER_BACKUP_DIR]);
    expect(keyRestores.every((r) => r.params.password === 'Key-Backup-Secret-9!')).toBe(true);
    expect(at(/^-- Rubicon instance-objects: logins/)).toBeGreaterThanOrEqual(0);
    expect(at(/^-- Rubicon instance-objects: logins/)).toBeLessThan(at(/^RESTORE DATABASE \[EHR\]/));
    expect(at(/^RESTORE DATABASE \[EHR\]/)).toBeLessThan(at(/^DBCC CHECKDB \(\[EHR\]\)/));
    expect(at(/^DBCC CHECKDB \(\[EHR\]\)/)).toBeLessThan(at(/^-- Rubicon instance-objects: SQL Agent jobs/));
    // The keys' drift was scanned (their GUID and last change in master), not left unknown.
    for (const k of ['master-key', 'service-master-key']) {
      expect(records.some((r) => r.event.type === 'drift.scanned' && r.event.drift.itemId === `instance-object:mssql:${k}:EHR-SQL01` && r.event.drift.stage === 'pre-gate' && r.event.drift.changes.length === 0), k).toBe(true);
    }
    // What cannot pass a proof by design landed only under the gate's override, and the journal says so.
    expect(records.some((r) => r.event.type === 'note' && r.event.level === 'warn' && r.event.itemId === 'instance-object:mssql:service-master-key:EHR-SQL01' && r.event.message.includes('has no passed proof'))).toBe(true);
    // The key passwords never reach the journal.
    expect(JSON.stringify(records)).not.toContain('Key-Backup-Secret-9!');
    expect(JSON.stringify(records)).not.toContain('Dmk-Secret-9!');
    // No stray folder named after the mssql:// location on the rebuilt target.
    expect(existsSync(path.join(L.target, 'mssql:'))).toBe(false);
  }, 180_000);
});

/**
 * mssql-native-url through the orchestrator: the runbook names an
 * azure-blob vault (Azurite over HTTPS) in engines.mssql.backupToUrl and
 * the method in methods.databases.mssql. The target endpoint "runs" BACKUP
 * … TO URL by putting each stripe into Azurite, as SQL Server does through
 * its credential; the confined proving process restores FROM URL through
 * a read grant. The artifact is a copy in that vault only.
 */
const azurite = requireAzurite();
describe.skipIf(!azurite)(`mssql-native-url: BACKUP TO URL into an azure-blob vault${azurite ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  let az: Azurite;
  let certDir: string;
  const AZ_KEY_ENV = 'RUBICON_E2E_MSSQL_AZ_KEY';
  beforeAll(async () => {
    certDir = await tempDir('rubicon-e2e-mssqlurl-cert-');
    const tls = selfSignedCert(certDir);
    // The confined proving process is a child: it trusts Azurite's certificate through the environment it inherits.
    process.env.NODE_EXTRA_CA_CERTS = tls.cert;
    az = await startAzurite({ tls });
  }, 60_000);
  afterAll(async () => {
    delete process.env.NODE_EXTRA_CA_CERTS;
    await az?.dispose();
  });

  it('the stripes go straight into the container through a write grant, the proof restores FROM URL through a read grant, and the copy is counted in that vault only; no SAS anywhere in the journal', async () => {
    process.env[AZ_KEY_ENV] = AZURITE_KEY;
    try {
      const container = `sql-${Math.random().toString(16).slice(2, 10)}`;
      const text = (await readFile(L.runbook, 'utf8'))
        .replace('    mssql: [mssql-native-full]\n', '    mssql: [mssql-native-url]\n')
        .replace('\nvaults:\n', `\nvaults:\n  - name: sqlbak\n    kind: azure-blob\n    accountUrl: ${az.accountUrl}\n    container: ${container}\n    credential: { kind: shared-key, accountName: ${AZURITE_ACCOUNT}, keyEnv: ${AZ_KEY_ENV} }\n`)
        .replace('    backupDirectory: ', '    backupToUrl: sqlbak\n    backupDirectory: ');
      await writeFile(L.runbook, text);
      // What SQL Server's credential lets it do, played with the account key (the vault itself creates the container).
      const blobs = new ContainerClient(`${az.accountUrl}/${container}`, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
      const secrets: string[] = [];
      for (const s of [target.server, pg.server]) {
        s.on('CREATE CREDENTIAL', (req: TdsRequest) => {
          secrets.push(String(req.params.secret));
          return ok;
        });
        s.on('DROP CREDENTIAL', ok);
      }
      target.server.on(/^BACKUP DATABASE \[EHR\] TO URL/, async (req: TdsRequest): Promise<TdsReply> => {
        for (const [k, u] of Object.entries(req.params)) {
          if (!/^url\d+$/.test(k)) continue;
          const blob = decodeURIComponent(new URL(String(u)).pathname.split('/').slice(3).join('/'));
          await blobs.getBlockBlobClient(blob).upload(FAKE_BAK, FAKE_BAK.length);
        }
        return { infos: [{ number: 3014, message: 'BACKUP DATABASE successfully processed 370 pages in 0.100 seconds (28.906 MB/sec).' }] };
      });
      scriptTarget(target.server);
      scriptProvingGround(pg.server);
      const { summary, records, proofOf } = await rehearse();
      expect(summary.error).toBeUndefined();
      const artifactId = `${summary.runId}.capture.database:mssql:EHR.mssql-native-url`;
      const artifact = records.flatMap((r) => (r.event.type === 'artifact.captured' && r.event.artifact.id === artifactId ? [r.event.artifact] : []))[0];
      expect(artifact, JSON.stringify(records.filter((r) => r.event.type === 'capture.failed').map((r) => r.event))).toMatchObject({ method: 'mssql-native-url', fileCount: 1 });
      // The copy: in the azure-blob vault, and nowhere else (the NAS folders hold no stripe: the artifact is not theirs to grade).
      expect(artifact?.vaults).toEqual(['sqlbak']);
      const copies = records.flatMap((r) => (r.event.type === 'copy.checked' && r.event.copy.artifactId === artifactId ? [`${r.event.copy.vault}:${r.event.copy.status}`] : []));
      expect(copies).toEqual(['sqlbak:ok']);
      const proof = proofOf(artifactId);
      expect(proof?.outcome, JSON.stringify(proof?.checks)).toBe('passed');
      expect(proof?.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['url-stripes', 'restore', 'integrity', 'fingerprint-source']));
      const [restore] = pg.server.find(/^RESTORE DATABASE/);
      expect(restore?.sql).toMatch(/ FROM URL = @file1 WITH FILE = @position, MOVE/);
      expect(String(restore?.params.file1)).toMatch(new RegExp(`^${az.accountUrl}/${container}/(.+/)?mssql/.*/stripe-01-of-01\\.bak$`));
      // Grants: issued and revoked on the record, in plain words; the SAS itself nowhere in the journal.
      const notes = records.flatMap((r) => (r.event.type === 'note' ? [r.event.message] : []));
      expect(notes.filter((m) => /write grant of vault 'sqlbak' (issued|revoked)/.test(m)).map((m) => /issued|revoked/.exec(m)![0])).toEqual(['issued', 'revoked']);
      // … and as grant events, like every other grant: the capture's write grant held by the target's SQL Server, the proof's read grant
      // (issued inside the confined prover) held by the proving ground's; each revoked, none left open in the run state.
      const grantEvents = records.flatMap((r) => (r.event.type === 'grant.issued' ? [`issued ${r.event.grant.mode} ${r.event.grant.holder} ${r.event.grant.id}`] : r.event.type === 'grant.revoked' ? r.event.grantIds.map((id) => `revoked ${id}`) : []));
      const ids = grantEvents.filter((g) => g.startsWith('issued')).map((g) => g.split(' ')[3]!);
      expect(grantEvents).toEqual([`issued write sql-server-credential ${ids[0]}`, `revoked ${ids[0]}`, `issued read sql-server-credential ${ids[1]}`, `revoked ${ids[1]}`]);
      const issued = records.flatMap((r) => (r.event.type === 'grant.issued' ? [r.event.grant] : []));
      expect(issued.map((g) => g.machine)).toEqual([expect.stringMatching(/^SQL Server /), expect.stringMatching(/^proving ground SQL Server /)]);
      expect(issued.every((g) => g.vault === 'sqlbak' && g.dir === `${az.accountUrl}/${container}`)).toBe(true);
      expect(secrets.length).toBe(2);
      // The SAS in no journal record, and in no file of the run's state (reports, evidence, logs).
      const journal = JSON.stringify(records);
      const stateFiles = (await readdir(L.stateDir, { recursive: true, withFileTypes: true })).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
      expect(stateFiles.length).toBeGreaterThan(1);
      const stateText = (await Promise.all(stateFiles.map((f) => readFile(f, 'latin1')))).join('\n');
      for (const sas of secrets) {
        const sig = new URLSearchParams(sas).get('sig')!;
        expect(journal).not.toContain(sig);
        expect(stateText).not.toContain(sig);
        expect(stateText).not.toContain(encodeURIComponent(sig));
      }
    } finally {
      delete process.env[AZ_KEY_ENV];
    }
  }, 120_000);
});
