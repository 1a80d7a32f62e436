/**
 * Landing for SQL Server at the protocol level: the order items land in
 * (keys, then logins with their SIDs, then databases, then jobs), each
 * through engine.restore on the rebuilt server's scripted endpoint, then
 * engine.validateLanding; and the landing server checked before the gate
 * (engine.preflight), live or as the runbook declares it.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Item, Manifest } from '../../../src/core/types.ts';
import type { EngineContext } from '../../../src/engines/engine.ts';
import { SIDECAR_NAME, serializeSidecar, type Sidecar } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine, type MssqlEngineOptions } from '../../../src/engines/mssql/engine.ts';
import { judgeLandingServer, landingOrder } from '../../../src/engines/mssql/landing.ts';
import { lazyMssqlEngine } from '../../../src/engines/mssql/lazy.ts';
import { jobProperties, loginProperties, scriptJobs, scriptLogins } from '../../../src/engines/mssql/scripts.ts';
import {
  BACKUP_SET_GUID,
  checkDbClock,
  DB_FEATURES,
  databaseFeaturesReply,
  databasesReply,
  fileListOnly,
  headerOnly,
  JOB_COLS,
  JOB_ROW,
  one,
  ok,
  ORPHANS,
  orphansReply,
  restoreOk,
  rs,
  SCHEDULE_COLS,
  SCHEDULE_ROW,
  scripted,
  serverInfoReply,
  STEP_COLS,
  STEP_ROWS,
  targetServerReply,
  tempHost,
  type Scripted,
} from './fixtures.ts';

const THUMB = '0x9F8E7D6C5B4A39281706F5E4D3C2B1A098765432';
const LOGIN_COLS: [string, 'nvarchar' | 'varbinary' | 'int'][] = [['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'], ['default_language_name', 'nvarchar'], ['is_disabled', 'int'], ['is_policy_checked', 'int'], ['is_expiration_checked', 'int'], ['server_roles', 'nvarchar']];
const CONNECT_SQL = { grantee: 'ehr_app', class: 100, permission_name: 'CONNECT SQL', state: 'G' };
const LOGIN = { name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: Buffer.from('0105', 'hex'), password_hash: Buffer.from('0200ABCD', 'hex'), default_database_name: 'EHR', default_language_name: 'us_english', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: null };
const secrets = { certificatePassword: async () => 'pvk-pass', masterKeyPassword: async () => 'dmk-pass', keyBackupPassword: async () => 'key-pass' };

let source: Scripted;
let landing: Scripted;
let h: Awaited<ReturnType<typeof tempHost>>;
let ctx: EngineContext;

beforeEach(async () => {
  source = await scripted();
  landing = await scripted();
  h = await tempHost();
  ctx = { host: h.host, workDir: join(h.root, 'work') };
  await mkdir(ctx.workDir, { recursive: true });
});
afterEach(async () => {
  await source.stop();
  await landing.stop();
  await h.dispose();
});

const engine = (over: Partial<MssqlEngineOptions> = {}) => createMssqlEngine({ connection: source.config, landing: landing.config, backupDirectory: '/var/opt/mssql/backup', secrets, ...over });
const item = (id: string, kind: Item['kind'], name: string): Item => ({ id, kind, name, declared: false, discovered: true, engine: 'mssql', location: '', facts: {}, why: [], methods: [] });

/** Writes an artifact's files as the orchestrator hands them over and returns its manifest. */
async function artifact(name: string, format: string, files: Record<string, string>): Promise<{ manifest: Manifest; files: string[] }> {
  const dir = join(h.root, 'fetched', name);
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  const entries: Manifest['entries'] = [];
  for (const [n, text] of Object.entries(files)) {
    const p = join(dir, n);
    await writeFile(p, text);
    paths.push(p);
    entries.push({ path: n, size: text.length, mtimeMs: 0, mode: 0o644, sha256: createHash('sha256').update(text).digest('hex') });
  }
  return { manifest: { version: 1, artifactId: name, itemId: name, method: 'm', format, entries }, files: paths };
}

describe('landing order', () => {
  it('keys first (service master key, DMK, certificates), configuration, logins, then databases, then proxies, jobs, alerts; other engines stay put', () => {
    const items = [
      item('instance-object:mssql:job:Nightly', 'instance-object', 'Nightly'),
      item('database:mssql:EHR', 'database', 'EHR'),
      item('instance-object:mssql:alert:Sev24', 'instance-object', 'Sev24'),
      item('instance-object:mssql:login:ehr_app', 'instance-object', 'ehr_app'),
      item('certificate:mssql:TDE_Cert', 'certificate', 'TDE_Cert'),
      item('instance-object:mssql:master-key:S', 'instance-object', 'dmk'),
      item('instance-object:mssql:service-master-key:S', 'instance-object', 'smk'),
      item('instance-object:mssql:configuration:S', 'instance-object', 'cfg'),
      item('instance-object:mssql:operator:DBA', 'instance-object', 'DBA'),
      item('instance-object:mssql:system-database:msdb', 'instance-object', 'msdb'),
      item('instance-object:mssql:instance:S', 'instance-object', 'S'),
    ];
    expect(landingOrder(items).map((i) => i.id.split(':').slice(0, 3).join(':'))).toEqual([
      'instance-object:mssql:service-master-key',
      'instance-object:mssql:master-key',
      'certificate:mssql:TDE_Cert',
      'instance-object:mssql:configuration',
      'instance-object:mssql:login',
      'instance-object:mssql:operator',
      'database:mssql:EHR',
      'instance-object:mssql:job',
      'instance-object:mssql:alert',
      // the whole-instance artifact (every script, jobs.sql naming databases) after the databases and Agent items
      'instance-object:mssql:instance',
      'instance-object:mssql:system-database',
    ]);
    expect(lazyMssqlEngine({ connection: source.config, backupDirectory: '/b' }).landingOrder!(items)).toEqual(landingOrder(items));
  });

  it("moves only SQL Server's items, among the positions they held: a folder and a SQLite database stay exactly where they were", () => {
    const other = (id: string, kind: Item['kind'], engine?: string): Item => ({ id, kind, name: id, declared: false, discovered: true, ...(engine ? { engine } : {}), location: id, facts: {}, why: [], methods: [] });
    const folder = other('folder:ehr/A', 'folder');
    const sqlite = other('database:sqlite:ehr', 'database', 'sqlite');
    const job = item('instance-object:mssql:job:Nightly', 'instance-object', 'Nightly');
    const db = item('database:mssql:EHR', 'database', 'EHR');
    const login = item('instance-object:mssql:login:ehr_app', 'instance-object', 'ehr_app');
    expect(landingOrder([folder, job, sqlite, db, login]).map((i) => i.id)).toEqual([
      'folder:ehr/A',
      'instance-object:mssql:login:ehr_app',
      'database:sqlite:ehr',
      'database:mssql:EHR',
      'instance-object:mssql:job:Nightly',
    ]);
  });
});

describe('landing end to end on the rebuilt server (protocol level)', () => {
  it('restores keys, then logins with their SIDs, then the database, then jobs; validates against the source; jobs.json is never run', async () => {
    // the rebuilt server: no DMK yet, no certificate, empty msdb
    let certInMaster = false;
    landing.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('16.0.4135.4', 'Standard Edition (64-bit)', { masterKey: 0 }));
    landing.server.on(/RESTORE SERVICE MASTER KEY/, ok);
    landing.server.on(/RESTORE MASTER KEY FROM FILE/, ok);
    landing.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, () => one(rs([['name', 'nvarchar']], certInMaster ? [{ name: 'TDE_Cert' }] : [])));
    landing.server.on(/CREATE MASTER KEY/, one(rs([['created', 'int']], [{ created: 0 }])));
    landing.server.on((r) => r.sql.includes('CREATE CERTIFICATE') && r.sql.includes('EXEC master.'), () => ((certInMaster = true), ok));
    landing.server.on(/FROM master\.sys\.certificates AS c WHERE c\.name = @certificate/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: THUMB }])));
    landing.server.on(/^-- Rubicon instance-objects/, ok);
    const exists = /FROM sys\.databases AS d WHERE d\.name = @database;$/;
    landing.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [])), { times: 1 });
    landing.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: 'EHR', state_desc: 'ONLINE' }])));
    landing.server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Standard Edition (64-bit)', { dataPath: 'D:\\Data\\', logPath: 'L:\\Log\\' }));
    landing.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    landing.server.on(/^RESTORE FILELISTONLY/, fileListOnly([{ logical: 'EHR', physical: 'E:\\EHR.mdf', type: 'D', fileId: 1 }, { logical: 'EHR_log', physical: 'F:\\EHR_log.ldf', type: 'L', fileId: 2 }]));
    landing.server.on(/^RESTORE DATABASE/, restoreOk('EHR'));
    landing.server.on(/^DBCC CHECKDB/, ok);
    checkDbClock(landing.server);
    landing.server.on(/^ALTER AUTHORIZATION/, ok);
    landing.server.on(ORPHANS, orphansReply());
    landing.server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner' }));
    landing.server.on((r) => r.sql.includes('sp_executesql @query'), one(rs([['n', 'int']], [{ n: 1200 }])));
    // The read-back after logins.sql and jobs.sql ran: what they made.
    landing.server.on(/FROM sys\.server_principals AS sp/, one(rs(LOGIN_COLS, [LOGIN])));
    landing.server.on(/FROM sys\.server_permissions AS p/, one(rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar']], [CONNECT_SQL])));
    landing.server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(JOB_COLS, [JOB_ROW])));
    landing.server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, one(rs(STEP_COLS, STEP_ROWS)));
    landing.server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, one(rs(SCHEDULE_COLS, [SCHEDULE_ROW])));

    const cert = { name: 'TDE_Cert', thumbprint: THUMB, certFile: 'TDE.cer', keyFile: 'TDE.pvk' };
    const sidecar: Sidecar = {
      version: 1, format: 'mssql-bak', database: 'EHR', method: 'mssql-native-full',
      source: { server: 'EHR-SQL01', productVersion: '15.0.4355.3', edition: 'Standard Edition (64-bit)', engineEdition: 2, collation: 'SQL_Latin1_General_CP1_CI_AS' },
      steps: [{ kind: 'full', files: ['EHR.bak'], position: 1, backupSetGuid: BACKUP_SET_GUID, hasBackupChecksums: true }],
      certificates: [cert], requiredThumbprints: [THUMB],
      databaseFacts: { compatibilityLevel: 150, collation: 'SQL_Latin1_General_CP1_CI_AS', owner: 'ehr_owner', ownerSid: '0x0105', trustworthy: false, skuFeatures: [], filestreamFilegroups: 0, clrAssemblies: 0, dataBytes: 1 },
    };
    const artifacts = new Map([
      ['instance-object:mssql:service-master-key:EHR-SQL01', await artifact('smk', 'mssql-key', { 'smk.key': 'key', 'key.json': JSON.stringify({ version: 1, format: 'mssql-key', kind: 'service-master-key', file: 'smk.key' }) })],
      ['instance-object:mssql:master-key:EHR-SQL01', await artifact('dmk', 'mssql-key', { 'dmk.key': 'key', 'key.json': JSON.stringify({ version: 1, format: 'mssql-key', kind: 'master-key', file: 'dmk.key' }) })],
      ['certificate:mssql:TDE_Cert', await artifact('cert', 'mssql-certificate', { 'TDE.cer': 'c', 'TDE.pvk': 'k', 'certificate.json': JSON.stringify({ version: 1, format: 'mssql-certificate', certificate: cert }) })],
      ['instance-object:mssql:login:ehr_app', await artifact('logins', 'sql-text', { 'logins.sql': scriptLogins([LOGIN], 'EHR-SQL01'), 'logins.json': JSON.stringify({ version: 1, format: 'mssql-login-properties', machineName: 'EHR-SQL01', principals: loginProperties([LOGIN], [CONNECT_SQL], []) }) })],
      ['database:mssql:EHR', await artifact('ehr', 'mssql-bak', { 'EHR.bak': 'bak', 'TDE.cer': 'c', 'TDE.pvk': 'k', [SIDECAR_NAME]: serializeSidecar(sidecar) })],
      ['instance-object:mssql:job:Nightly', await artifact('jobs', 'sql-text', { 'jobs.sql': scriptJobs([JOB_ROW], STEP_ROWS, 'EHR-SQL01', [SCHEDULE_ROW]), 'jobs.json': JSON.stringify({ version: 1, format: 'mssql-job-properties', jobs: jobProperties([JOB_ROW], STEP_ROWS, [SCHEDULE_ROW]) }) })],
    ]);
    const items = [
      item('instance-object:mssql:job:Nightly', 'instance-object', 'Nightly'),
      item('database:mssql:EHR', 'database', 'EHR'),
      item('instance-object:mssql:login:ehr_app', 'instance-object', 'ehr_app'),
      item('certificate:mssql:TDE_Cert', 'certificate', 'TDE_Cert'),
      item('instance-object:mssql:master-key:EHR-SQL01', 'instance-object', 'dmk'),
      item('instance-object:mssql:service-master-key:EHR-SQL01', 'instance-object', 'smk'),
    ];
    const e = engine({ smokeQueries: [{ name: 'patients', database: 'EHR', query: 'SELECT COUNT(*) AS n FROM dbo.Patients', columns: ['n'], minRows: 1 }] });
    const validated: string[] = [];
    for (const it of e.landingOrder!(items)) {
      const a = artifacts.get(it.id)!;
      await e.restore(ctx, it, a.manifest, a.files);
      for (const c of await e.validateLanding!(ctx, it, a.manifest, a.files)) validated.push(`${it.name} ${c.name}:${c.status}`);
    }
    const sent = landing.server.statements();
    const at = (re: RegExp): number => sent.findIndex((x) => re.test(x));
    expect(at(/RESTORE SERVICE MASTER KEY/)).toBeLessThan(at(/RESTORE MASTER KEY FROM FILE/));
    expect(at(/RESTORE MASTER KEY FROM FILE/)).toBeLessThan(at(/CREATE CERTIFICATE/));
    expect(at(/CREATE CERTIFICATE/)).toBeLessThan(at(/CREATE LOGIN \[ehr_app\]/));
    expect(at(/CREATE LOGIN \[ehr_app\]/)).toBeLessThan(at(/^RESTORE DATABASE \[EHR\]/));
    expect(at(/^RESTORE DATABASE \[EHR\]/)).toBeLessThan(at(/^DBCC CHECKDB \(\[EHR\]\)/));
    expect(at(/^DBCC CHECKDB/)).toBeLessThan(at(/^ALTER AUTHORIZATION ON DATABASE::\[EHR\] TO \[ehr_owner\]/));
    expect(at(/^ALTER AUTHORIZATION/)).toBeLessThan(at(/sp_add_job @job_name = N'EHR Nightly Backup'/));
    expect(sent.some((x) => x.includes('"jobs"'))).toBe(false);
    expect(validated).toEqual(['ehr_app login-properties:passed', 'EHR database-settings:passed', 'EHR smoke:passed', 'Nightly job-properties:passed']);
    // files where the source had them (its folder structure), unless the runbook says otherwise
    expect(landing.server.find(/^RESTORE DATABASE/)[0]?.params).toMatchObject({ physical1: 'E:\\EHR.mdf', physical2: 'F:\\EHR_log.ldf' });
    // the DMK password and key passwords travelled as parameters only
    expect(sent.join('\n')).not.toMatch(/dmk-pass|key-pass|pvk-pass/);
    expect(source.server.statements()).toEqual([]);
  });
});

describe('the landing server, checked before the gate', () => {
  const src = { productVersion: '15.0.4355.3', edition: 'Enterprise Edition (64-bit)', engineEdition: 3, collation: 'SQL_Latin1_General_CP1_CI_AS', integratedSecurityOnly: false, databases: [{ name: 'EHR', dataBytes: 12 * 1024 ** 3, skuFeatures: ['Partitioning'], filestream: true, clrAssemblies: 1 }] };

  it('judges version, edition with the features in use, Express 10 GB, collation and FILESTREAM', () => {
    expect(judgeLandingServer(src, { productVersion: '16.0.4135.4', edition: 'Enterprise Edition (64-bit)', engineEdition: 3, collation: 'SQL_Latin1_General_CP1_CI_AS', filestreamLevel: 2, basis: 'live' })).toMatchObject({ name: 'landing-server', status: 'passed' });
    const older = judgeLandingServer(src, { productVersion: '14.0.3465.1', edition: 'Enterprise Edition (64-bit)', engineEdition: 3, basis: 'declared' });
    expect(older.detail).toContain('older than the source');
    const lower = judgeLandingServer(src, { productVersion: '16.0.4135.4', edition: 'Standard Edition (64-bit)', engineEdition: 2, basis: 'declared' });
    expect(lower).toMatchObject({ status: 'failed', detail: expect.stringContaining('EHR (Partitioning)') });
    const express = judgeLandingServer({ ...src, databases: [{ ...src.databases[0]!, skuFeatures: [] }] }, { productVersion: '16.0.1000.6', edition: 'Express Edition (64-bit)', engineEdition: 4, basis: 'declared' });
    expect(express.detail).toContain('EHR 12.0 GB');
    const other = judgeLandingServer(src, { productVersion: '16.0.4135.4', edition: 'Enterprise Edition (64-bit)', engineEdition: 3, collation: 'Latin1_General_CI_AS', filestreamLevel: 0, basis: 'live' });
    expect(other.detail).toContain("collation Latin1_General_CI_AS is not the source's");
    expect(other.detail).toContain('FILESTREAM is disabled on the landing server');
  });

  it('preflight reads the source and the reachable landing server; without either a landing connection or a declaration it fails', async () => {
    source.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)'));
    source.server.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply([{ name: 'EHR' }]));
    source.server.on(DB_FEATURES, databaseFeaturesReply({ skuFeatures: ['Compression'] }));
    landing.server.on(/InstanceDefaultDataPath/, targetServerReply('14.0.3465.1', 'Standard Edition (64-bit)'));
    const items = [item('database:mssql:EHR', 'database', 'EHR')];
    const [live] = await engine().preflight!(ctx, items);
    expect(live).toMatchObject({ name: 'landing-server', status: 'failed', detail: expect.stringContaining('older than the source') });
    expect([...source.server.statements(), ...landing.server.statements()].every((x) => /^SELECT/.test(x))).toBe(true);
    const [declared] = await createMssqlEngine({ connection: source.config, backupDirectory: '/b', landingServer: { productVersion: '16.0.4135.4', edition: 'Standard Edition (64-bit)', engineEdition: 2 } }).preflight!(ctx, items);
    expect(declared).toMatchObject({ status: 'passed', detail: expect.stringContaining('as the runbook declares them') });
    const [none] = await createMssqlEngine({ connection: source.config, backupDirectory: '/b' }).preflight!(ctx, items);
    expect(none).toMatchObject({ status: 'failed', detail: expect.stringContaining('neither reachable nor declared') });
  });
});
describe('authentication mode at landing', () => {
  it('configuration.sql sets LoginMode; validation compares IsIntegratedSecurityOnly and asks for a restart when it differs', async () => {
    landing.server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Standard Edition (64-bit)'));
    const cfg = "-- Rubicon instance-objects: server configuration\nEXEC master.sys.xp_instance_regwrite N'HKEY_LOCAL_MACHINE', N'Software\\Microsoft\\MSSQLServer\\MSSQLServer', N'LoginMode', N'REG_DWORD', 1;\n";
    const a = await artifact('cfg', 'sql-text', { 'configuration.sql': cfg });
    const [check] = await engine().validateLanding!(ctx, item('instance-object:mssql:configuration:S', 'instance-object', 'cfg'), a.manifest, a.files);
    expect(check).toMatchObject({ name: 'authentication-mode', status: 'failed', detail: expect.stringContaining('restart the SQL Server service') });
  });
});
