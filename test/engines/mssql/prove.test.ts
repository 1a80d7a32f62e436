/**
 * Proving at the protocol level: the real mssql/tedious client against the
 * scripted TDS endpoint playing the proving ground's SQL Server. Asserts
 * the exact statements sent, their order, and how each SQL Server failure
 * becomes a graded check.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Artifact, Fingerprint, Manifest } from '../../../src/core/types.ts';
import { SIDECAR_NAME, serializeSidecar, testDatabaseName, type Sidecar } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine, type MssqlEngineOptions } from '../../../src/engines/mssql/engine.ts';
import type { EngineContext } from '../../../src/engines/engine.ts';
import type { TdsServer } from '../../tds/server.ts';
import {
  checkDbClock,
  columnsReply,
  DB_FEATURES,
  databaseFeaturesReply,
  BACKUP_SET_GUID,
  fileListOnly,
  headerOnly,
  one,
  ok,
  ORPHANS,
  orphansReply,
  restoreOk,
  rs,
  scripted,
  tableHashOf,
  tableHashReply,
  targetServerReply,
  tempHost,
  VERSION_READ,
  type Scripted,
} from './fixtures.ts';

const BAK = 'rubicon-EHR-full.bak';
const ARTIFACT_ID = 'run1.capture.database:mssql:EHR.mssql-native-full';
const TEST_DB = testDatabaseName('EHR', ARTIFACT_ID);
const THUMB = '0x9F8E7D6C5B4A39281706F5E4D3C2B1A098765432';
const CERT_PASSWORD = 'Pvk-Secret-Do-Not-Log-7!';

let pg: Scripted;
let target: Scripted;
let h: Awaited<ReturnType<typeof tempHost>>;
let ctx: EngineContext;

beforeEach(async () => {
  pg = await scripted();
  target = await scripted();
  h = await tempHost();
  ctx = { host: h.host, workDir: join(h.root, 'work') };
  await mkdir(ctx.workDir, { recursive: true });
});
afterEach(async () => {
  await pg.stop();
  await target.stop();
  await h.dispose();
});

function sidecar(over: Partial<Sidecar> = {}): Sidecar {
  return {
    version: 1,
    format: 'mssql-bak',
    database: 'EHR',
    method: 'mssql-native-full',
    source: { server: 'EHR-SQL01', productVersion: '15.0.4355.3', edition: 'Standard Edition (64-bit)', engineEdition: 2, collation: 'SQL_Latin1_General_CP1_CI_AS' },
    steps: [{ kind: 'full', files: [BAK], position: 1, backupSetGuid: BACKUP_SET_GUID, hasBackupChecksums: true }],
    databaseFacts: { compatibilityLevel: 150, collation: 'SQL_Latin1_General_CP1_CI_AS', owner: 'ehr_owner', ownerSid: '0x0105', trustworthy: true, skuFeatures: [], filestreamFilegroups: 0, clrAssemblies: 0, dataBytes: 52428800 },
    fingerprintBasis: 'live',
    certificates: [],
    requiredThumbprints: [],
    ...over,
  };
}

/** Writes the artifact's files as the orchestrator would hand them over (fetched from a vault). */
async function artifactFiles(sc: Sidecar, extra: string[] = []): Promise<{ manifest: Manifest; files: string[] }> {
  const dir = join(h.root, 'fetched');
  await mkdir(dir, { recursive: true });
  const names = [BAK, ...extra, SIDECAR_NAME];
  const files: string[] = [];
  for (const n of names) {
    const p = join(dir, n);
    await writeFile(p, n === SIDECAR_NAME ? serializeSidecar(sc) : `bytes of ${n}`);
    files.push(p);
  }
  return {
    manifest: { version: 1, artifactId: ARTIFACT_ID, itemId: 'database:mssql:EHR', method: 'mssql-native-full', format: 'mssql-bak', entries: names.map((n) => ({ path: n, size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) })) },
    files,
  };
}

function artifact(sourceFingerprint?: Fingerprint): Artifact {
  return {
    id: ARTIFACT_ID,
    runId: 'run1',
    itemId: 'database:mssql:EHR',
    method: 'mssql-native-full',
    independenceGroup: 'mssql-native-full',
    phase: 'capture',
    origin: 'rubicon',
    manifestHash: '0'.repeat(64),
    fileCount: 2,
    bytes: 2,
    ...(sourceFingerprint ? { sourceFingerprint } : {}),
    provenance: { method: 'mssql-native-full', tool: 'test', host: 'test', startedAt: '', finishedAt: '' },
  };
}

/** Tables of the EHR database, as sys.tables/sys.columns and the per-table hash query return them. */
function scriptTables(server: TdsServer, counts: { patients: number; visits: number }): void {
  server.on(VERSION_READ, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar']], [{ product_version: '16.0.4135.4', edition: 'Developer Edition (64-bit)' }])));
  server.on(/FROM \[[^\]]+\]\.sys\.tables/, columnsReply([
    { table: 'Patients', column: 'id', base: 'int' },
    { table: 'Patients', column: 'notes', base: 'ntext', declared: 'ClinicalNote' },
    { table: 'Patients', column: 'age_band', base: 'nvarchar', computed: true },
    { table: 'Visits', column: 'id', base: 'bigint' },
    { table: 'Visits', column: 'doc', base: 'xml' },
  ]));
  server.on(tableHashOf('Patients'), tableHashReply(counts.patients, ['123456', '2', '3', '4', '5']));
  server.on(tableHashOf('Visits'), tableHashReply(counts.visits, ['987654', '2', '3', '4', '5']));
}

/** A healthy proving ground (SQL Server 2022). Tests register their special rules before calling this. */
function healthyProvingGround(server: TdsServer, version = '16.0.4135.4', edition = 'Developer Edition (64-bit)'): void {
  server.on(/InstanceDefaultDataPath/, targetServerReply(version, edition));
  server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
  server.on(/^RESTORE FILELISTONLY/, fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(/^RESTORE DATABASE/, restoreOk(TEST_DB));
  server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: TEST_DB, state_desc: 'ONLINE' }])));
  server.on(/^DBCC CHECKDB/, ok);
  checkDbClock(server);
  scriptTables(server, { patients: 1200, visits: 5400 });
  server.on(DB_FEATURES, databaseFeaturesReply());
  server.on(ORPHANS, orphansReply());
  server.on(/user_access_desc/, one(rs([['state_desc', 'nvarchar'], ['user_access_desc', 'nvarchar'], ['is_read_only', 'int'], ['user_objects', 'int']], [{ state_desc: 'ONLINE', user_access_desc: 'MULTI_USER', is_read_only: 0, user_objects: 42 }])));
}

function engine(over: Partial<MssqlEngineOptions> = {}): ReturnType<typeof createMssqlEngine> {
  return createMssqlEngine({
    connection: target.config,
    provingGround: pg.config,
    backupDirectory: '/var/opt/mssql/backup',
    onStatement: (e) => pg.log.push(e),
    ...over,
  });
}

async function sourceFingerprint(counts = { patients: 1200, visits: 5400 }): Promise<Fingerprint> {
  scriptTables(target.server, counts);
  return engine().fingerprint(ctx, { id: 'database:mssql:EHR', kind: 'database', name: 'EHR', declared: true, discovered: true, location: '', facts: {}, why: [], methods: [] });
}

const statuses = (checks: { name: string; status: string }[]): string[] => checks.map((c) => `${c.name}:${c.status}`);

describe('mssql prove', () => {
  it('restores under a test name with one MOVE per file, CHECKDB, fingerprints, smoke, then drops it', async () => {
    healthyProvingGround(pg.server);
    const fp = await sourceFingerprint();
    const { manifest, files } = await artifactFiles(sidecar());
    const e = engine({ provingGroundFiles: { serverDirectory: '/var/opt/mssql/stage', hostDirectory: 'stage' } });
    const r = await e.prove(ctx, artifact(fp), manifest, files);

    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:passed', 'integrity:passed', 'fingerprint-source:passed', 'database-settings:passed', 'smoke:passed', 'cleanup:passed']);
    expect(r.fingerprint?.digest).toBe(fp.digest);
    expect(r.checks.find((c) => c.name === 'fingerprint-source')?.detail).toContain('dbo.Patients: age_band (computed: derived from other columns)');
    expect(r.checks.find((c) => c.name === 'fingerprint-source')?.detail).toContain('taken on the live database at capture');
    expect(r.checks.find((c) => c.name === 'database-settings')?.detail).toContain('owner ehr_owner and TRUSTWORTHY ON are set at landing');
    expect(r.checks.find((c) => c.name === 'restore')?.detail).toContain('RESTORE DATABASE successfully processed');

    const stmts = pg.server.statements();
    const [restore] = pg.server.find(/^RESTORE DATABASE/);
    expect(restore?.sql).toBe(`RESTORE DATABASE [${TEST_DB}] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, CHECKSUM, RECOVERY, STATS = 10;`);
    expect(restore?.params).toMatchObject({ file1: `/var/opt/mssql/stage/${BAK}`, position: 1, logical1: 'EHR', logical2: 'EHR_log' });
    expect(restore?.params.physical1).toMatch(/^\/var\/opt\/mssql\/data\/rubicon-prove-EHR-.*_1\.mdf$/);
    expect(restore?.params.physical2).toMatch(/^\/var\/opt\/mssql\/log\/rubicon-prove-EHR-.*_2\.ldf$/);
    expect(pg.server.find(/^RESTORE HEADERONLY/)[0]?.sql).toBe('RESTORE HEADERONLY FROM DISK = @file1;');
    expect(pg.server.find(/^RESTORE FILELISTONLY/)[0]?.sql).toBe('RESTORE FILELISTONLY FROM DISK = @file1 WITH FILE = @position;');
    expect(pg.server.find(/^DBCC CHECKDB/)[0]?.sql).toBe(`DBCC CHECKDB ([${TEST_DB}]) WITH NO_INFOMSGS, ALL_ERRORMSGS;`);
    // order: version, (leftover drop), HEADERONLY, FILELISTONLY, RESTORE, …, drop last
    const idx = (re: RegExp): number => stmts.findIndex((s) => re.test(s));
    expect(idx(/InstanceDefaultDataPath/)).toBe(0);
    expect(idx(/^RESTORE HEADERONLY/)).toBeLessThan(idx(/^RESTORE FILELISTONLY/));
    expect(idx(/^RESTORE FILELISTONLY/)).toBeLessThan(idx(/^RESTORE DATABASE/));
    expect(idx(/^RESTORE DATABASE/)).toBeLessThan(idx(/^DBCC CHECKDB/));
    expect(stmts[stmts.length - 1]).toMatch(/^IF DB_ID\(@database\) IS NOT NULL/);
    expect(pg.server.requests[pg.server.requests.length - 1]?.params.database).toBe(TEST_DB);
    // staged copies removed; the target was never contacted by prove
    expect(existsSync(join(h.root, 'stage', BAK))).toBe(false);
    expect(target.server.find(/RESTORE|DBCC/)).toEqual([]);
  });

  it('refuses an older proving ground in plain words and restores nothing', async () => {
    healthyProvingGround(pg.server, '14.0.3465.1');
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['version:failed', 'certificates:skipped', 'restore:skipped', 'integrity:skipped', 'fingerprint-source:skipped', 'database-settings:skipped', 'smoke:skipped', 'cleanup:passed']);
    expect(r.checks[0]?.detail).toContain('the proving ground runs SQL Server 2017 (14.0.3465), older than the source\'s SQL Server 2019 (15.0.4355)');
    expect(r.checks[2]?.detail).toBe('not run: version failed');
    expect(pg.server.find(/^RESTORE/)).toEqual([]);
  });

  it('a corrupt backup: RESTORE fails with 3013, the server\'s words are kept, later checks skipped, test database dropped', async () => {
    pg.server.on(/^RESTORE DATABASE/, {
      infos: [{ number: 3211, message: '10 percent processed.' }],
      errors: [
        { number: 3183, class: 16, message: `RESTORE detected an error on page (1:736) in database "${TEST_DB}" as read from the backup set.` },
        { number: 3013, class: 16, message: 'RESTORE DATABASE is terminating abnormally.' },
      ],
    });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:failed', 'integrity:skipped', 'fingerprint-source:skipped', 'database-settings:skipped', 'smoke:skipped', 'cleanup:passed']);
    const detail = r.checks.find((c) => c.name === 'restore')!.detail;
    expect(detail).toContain('the backup contains a damaged page');
    expect(detail).toContain('Msg 3183, Level 16, State 1: RESTORE detected an error on page (1:736)');
    expect(detail).toContain('Msg 3013, Level 16, State 1: RESTORE DATABASE is terminating abnormally.');
    expect(pg.server.find(/^DBCC/)).toEqual([]);
    expect(pg.server.statements().at(-1)).toMatch(/^IF DB_ID\(@database\) IS NOT NULL/);
  });

  it('CHECKDB errors fail the integrity check with every message kept, and the database is still dropped', async () => {
    pg.server.on(/^DBCC CHECKDB/, {
      errors: [
        { number: 8928, class: 16, message: `Object ID 581577110, index ID 1, partition ID 72057594041204736: Page (1:736) could not be processed.` },
        { number: 8939, class: 16, message: 'Table error: Object ID 581577110, index ID 1, page (1:736). Test (IS_OFF (BUF_IOERR, pBUF->bstat)) failed.' },
        { number: 8989, class: 16, message: `CHECKDB found 0 allocation errors and 2 consistency errors in database '${TEST_DB}'.` },
      ],
    });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:passed', 'integrity:failed', 'fingerprint-source:skipped', 'database-settings:skipped', 'smoke:skipped', 'cleanup:passed']);
    const detail = r.checks.find((c) => c.name === 'integrity')!.detail;
    for (const n of [8928, 8939, 8989]) expect(detail).toContain(`Msg ${n}, Level 16`);
    expect(detail).toContain('2 consistency errors');
    expect(pg.server.statements().at(-1)).toMatch(/^IF DB_ID/);
  });

  it('a restore that reports no "successfully processed" (3014) is not a restore', async () => {
    pg.server.on(/^RESTORE DATABASE/, {});
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'restore')).toMatchObject({ status: 'failed', detail: expect.stringContaining('cannot be shown to have run') });
  });

  it('Msg 33111 (certificate missing on the proving ground) fails in plain words', async () => {
    pg.server.on(/^RESTORE DATABASE/, {
      errors: [
        { number: 33111, class: 16, message: `Cannot find server certificate with thumbprint '${THUMB}'.` },
        { number: 3013, class: 16, message: 'RESTORE DATABASE is terminating abnormally.' },
      ],
    });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ method: 'vendor-job' }));
    const r = await engine().prove(ctx, artifact(), manifest, files);
    const restore = r.checks.find((c) => c.name === 'restore')!;
    expect(restore.status).toBe('failed');
    expect(restore.detail).toContain('the proving ground has no certificate with the thumbprint it needs: capture that certificate with its private key');
    expect(restore.detail).toContain(`Msg 33111, Level 16, State 1: Cannot find server certificate with thumbprint '${THUMB}'.`);
  });

  it('a needed certificate that neither the artifact nor the proving ground has fails before any RESTORE', async () => {
    pg.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, one(rs([['name', 'nvarchar']], [])));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ requiredThumbprints: [THUMB] }));
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks).slice(0, 3)).toEqual(['version:passed', 'certificates:failed', 'restore:skipped']);
    expect(r.checks[1]?.detail).toContain(`needs the certificate with thumbprint ${THUMB}`);
    expect(pg.server.find(/^RESTORE/)).toEqual([]);
  });

  /** A proving ground that holds (or not) the certificate in master and answers the scratch-database key check. */
  function certificateGround(o: { inMaster: boolean; scratchThumb?: string; masterKey?: boolean }): void {
    let inMaster = o.inMaster;
    pg.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, () => one(rs([['name', 'nvarchar']], inMaster ? [{ name: 'TDE_Cert' }] : [])));
    pg.server.on(/^CREATE DATABASE \[rubicon-keycheck-/, ok);
    pg.server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
    pg.server.on((r) => r.sql.includes('CREATE CERTIFICATE') && /EXEC \[rubicon-keycheck-[0-9a-f]+\]\.sys\.sp_executesql/.test(r.sql), ok);
    pg.server.on(/FROM \[rubicon-keycheck-[0-9a-f]+\]\.sys\.certificates AS c WHERE c\.name = @certificate/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: o.scratchThumb ?? THUMB }])));
    pg.server.on(/CREATE MASTER KEY/, one(rs([['created', 'int']], [{ created: o.masterKey ? 0 : 1 }])));
    pg.server.on((r) => r.sql.includes('CREATE CERTIFICATE') && r.sql.includes('EXEC master.sys.sp_executesql'), () => {
      inMaster = true;
      return ok;
    });
    pg.server.on(/FROM master\.sys\.certificates AS c WHERE c\.name = @certificate/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: THUMB }])));
  }
  const cert = { name: 'TDE_Cert', thumbprint: THUMB, certFile: 'rubicon-cert-TDE.cer', keyFile: 'rubicon-cert-TDE.pvk' };
  const DMK_PASSWORD = 'Dmk-Secret-Do-Not-Log-9!';
  const secrets = { certificatePassword: async (n: string) => (n === 'TDE_Cert' ? CERT_PASSWORD : undefined), masterKeyPassword: async () => DMK_PASSWORD };

  it("tests the certificate files in a scratch database, creates master's DMK where missing, restores the certificate into master first; no password appears in any statement or log", async () => {
    certificateGround({ inMaster: false });
    healthyProvingGround(pg.server);
    const events: string[] = [];
    const { manifest, files } = await artifactFiles(sidecar({ certificates: [cert], requiredThumbprints: [THUMB] }), [cert.certFile, cert.keyFile]);
    const r = await engine({ secrets, log: (lvl, m) => events.push(`${lvl} ${m}`) }).prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks).slice(0, 3)).toEqual(['version:passed', 'certificates:passed', 'restore:passed']);
    const detail = r.checks[1]!.detail;
    expect(detail).toContain("decrypt with the runbook's password, thumbprint");
    expect(detail).toContain("master's database master key created first");
    const stmts = pg.server.statements();
    const at = (re: RegExp): number => stmts.findIndex((x) => re.test(x));
    // scratch database made, certificate created there with ENCRYPTION BY PASSWORD (no DMK needed), dropped; then DMK, then master; all before RESTORE
    expect(at(/^CREATE DATABASE \[rubicon-keycheck-/)).toBeLessThan(at(/EXEC \[rubicon-keycheck-/));
    const [scratch] = pg.server.find(/EXEC \[rubicon-keycheck-/);
    expect(scratch?.sql).toContain("ENCRYPTION BY PASSWORD = N''' + REPLACE(@scratchPassword");
    expect(at(/EXEC \[rubicon-keycheck-/)).toBeLessThan(at(/CREATE MASTER KEY/));
    expect(at(/CREATE MASTER KEY/)).toBeLessThan(at(/CREATE CERTIFICATE[\s\S]*EXEC master\.sys\.sp_executesql/));
    expect(at(/CREATE CERTIFICATE[\s\S]*EXEC master\.sys\.sp_executesql/)).toBeLessThan(at(/^RESTORE HEADERONLY/));
    const drops = pg.server.find(/^IF DB_ID\(@database\) IS NOT NULL/).map((q) => String(q.params.database));
    expect(drops.some((d) => d.startsWith('rubicon-keycheck-'))).toBe(true);
    const [create] = pg.server.find((q) => q.sql.includes('CREATE CERTIFICATE') && q.sql.includes('EXEC master.'));
    expect(create?.params).toMatchObject({ certificate: 'TDE_Cert', certFile: expect.stringContaining('rubicon-cert-TDE.cer'), keyFile: expect.stringContaining('rubicon-cert-TDE.pvk'), password: CERT_PASSWORD });
    expect(pg.server.find(/CREATE MASTER KEY/)[0]?.params.password).toBe(DMK_PASSWORD);
    // …and nowhere else: not in any statement text, the statement log, events, or the proof
    for (const secret of [CERT_PASSWORD, DMK_PASSWORD, String(scratch?.params.scratchPassword)]) {
      expect(stmts.join('\n')).not.toContain(secret);
      expect(JSON.stringify(pg.log)).not.toContain(secret);
      expect(events.join('\n')).not.toContain(secret);
      expect(JSON.stringify(r)).not.toContain(secret);
    }
    expect(pg.log.find((l) => l.text.includes('CREATE MASTER KEY'))?.params.password).toBe('***');
    expect(pg.log.find((l) => l.text.includes('rubicon-keycheck-') && l.text.includes('CREATE CERTIFICATE'))?.params).toMatchObject({ password: '***', scratchPassword: '***' });
  });

  it("every artifact's certificate files are tested, even when master already has that thumbprint (a later artifact's wrong files fail)", async () => {
    // master has the certificate from an earlier proof; this artifact's files hold another certificate
    certificateGround({ inMaster: true, scratchThumb: '0x0000000000000000000000000000000000000001' });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ certificates: [cert], requiredThumbprints: [THUMB] }), [cert.certFile, cert.keyFile]);
    const r = await engine({ secrets }).prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks).slice(0, 3)).toEqual(['version:passed', 'certificates:failed', 'restore:skipped']);
    expect(r.checks[1]?.detail).toContain(`hold thumbprint 0x0000000000000000000000000000000000000001, not the captured ${THUMB}`);
    expect(pg.server.find(/^RESTORE/)).toEqual([]);
  });

  it('a certificate whose .pvk does not open with the password fails in a scratch database, which is dropped', async () => {
    pg.server.on((r) => r.sql.includes('CREATE CERTIFICATE') && r.sql.includes('rubicon-keycheck-'), { errors: [{ number: 15208, message: 'The certificate, asymmetric key, or private key file is not valid or does not exist; or you do not have permissions for it.' }] });
    certificateGround({ inMaster: true });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ certificates: [cert], requiredThumbprints: [THUMB] }), [cert.certFile, cert.keyFile]);
    const r = await engine({ secrets }).prove(ctx, artifact(), manifest, files);
    expect(r.checks[1]).toMatchObject({ name: 'certificates', status: 'failed', detail: expect.stringContaining("do not open with the runbook's password") });
    const drops = pg.server.find(/^IF DB_ID\(@database\) IS NOT NULL/).map((q) => String(q.params.database));
    expect(drops.some((d) => d.startsWith('rubicon-keycheck-'))).toBe(true);
  });

  it('a backup set with another BackupSetGUID under the same file name and position is refused before RESTORE (an older backup)', async () => {
    pg.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', backupSetGuid: '11111111-2222-3333-4444-555555555555' }]));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'restore')).toMatchObject({ status: 'failed', detail: expect.stringContaining(`has BackupSetGUID 11111111-2222-3333-4444-555555555555, not the captured ${BACKUP_SET_GUID}`) });
    expect(pg.server.find(/^RESTORE DATABASE/)).toEqual([]);
  });

  it('a backup without checksums is restored without WITH CHECKSUM, and the proof says page checks were limited', async () => {
    pg.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', hasBackupChecksums: false }]));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ method: 'vendor-job' }));
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'restore')).toMatchObject({ status: 'passed', detail: expect.stringContaining('page checks during the restore were limited') });
    expect(pg.server.find(/^RESTORE DATABASE/)[0]?.sql).toBe(`RESTORE DATABASE [${TEST_DB}] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, RECOVERY, STATS = 10;`);
  });

  it('CHECKDB "ran" only when LastGoodCheckDbTime is not older than the server clock read just before it', async () => {
    pg.server.on(/LastGoodCheckDbTime/, one(rs([['last_good', 'datetime'], ['server_now', 'datetime']], [{ last_good: new Date(Date.now() - 5000), server_now: new Date() }])));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'integrity')).toMatchObject({ status: 'failed', detail: expect.stringContaining('is older than the server clock before CHECKDB') });
    const stmts = pg.server.statements();
    expect(stmts.indexOf('SELECT SYSDATETIME() AS server_now;')).toBeLessThan(stmts.findIndex((x) => x.startsWith('DBCC CHECKDB')));
  });

  it('Express: a database with more than 10 GB of data is refused in plain words before RESTORE', async () => {
    pg.server.on(/^RESTORE FILELISTONLY/, one(rs([['LogicalName', 'nvarchar'], ['PhysicalName', 'nvarchar'], ['Type', 'nvarchar'], ['FileGroupName', 'nvarchar'], ['Size', 'decimal', { precision: 20 }], ['FileId', 'bigint']], [
      { LogicalName: 'EHR', PhysicalName: 'E:\\EHR.mdf', Type: 'D', FileGroupName: 'PRIMARY', Size: String(12 * 1024 ** 3), FileId: 1 },
    ])));
    healthyProvingGround(pg.server, '16.0.4135.4', 'Express Edition (64-bit)');
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'restore')?.detail).toContain('Express holds at most 10 GB of data per database');
    expect(pg.server.find(/^RESTORE DATABASE/)).toEqual([]);
  });

  it('a compatibility level the proving ground raised fails database-settings; orphaned users are named', async () => {
    pg.server.on(DB_FEATURES, databaseFeaturesReply({ compatibility: 160 }));
    pg.server.on(ORPHANS, orphansReply([{ user: 'ehr_app', loginByName: null }]));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    const c = r.checks.find((x) => x.name === 'database-settings')!;
    expect(c.status).toBe('failed');
    expect(c.detail).toContain('compatibility level 160 after restore, 150 on the source');
    expect(c.detail).toContain('users without a login of their SID on the proving ground');
    expect(c.detail).toContain('ehr_app');
  });

  it("runs the runbook's smoke queries in the restored copy inside a rolled-back transaction and checks their shape, never their values", async () => {
    pg.server.on((r) => r.sql.includes('sp_executesql @query') && String(r.params.query).includes('Patients'), one(rs([['n', 'int']], [{ n: 1200 }])));
    pg.server.on((r) => r.sql.includes('sp_executesql @query'), one(rs([['x', 'int']], [])));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const smokeQueries = [
      { name: 'patients', database: 'EHR', query: 'SELECT COUNT(*) AS n FROM dbo.Patients', columns: ['n'], minRows: 1, maxRows: 1 },
      { name: 'open visits', database: 'EHR', query: 'SELECT TOP (1) 1 AS x FROM dbo.Visits WHERE closed = 0', minRows: 1 },
      { name: 'other db', database: 'OTHER', query: 'SELECT 1 AS y' },
    ];
    const r = await engine({ smokeQueries }).prove(ctx, artifact(), manifest, files);
    const smoke = r.checks.find((c) => c.name === 'smoke')!;
    expect(smoke.status).toBe('failed');
    expect(smoke.detail).toContain('smoke query "open visits": 0 rows, expected at least 1');
    expect(smoke.detail).not.toContain('1200');
    const sent = pg.server.find(/sp_executesql @query/);
    expect(sent.map((q) => q.params.query)).toEqual([smokeQueries[0]!.query, smokeQueries[1]!.query]);
    expect(sent[0]?.sql).toBe(`SET XACT_ABORT ON;\nBEGIN TRANSACTION;\nEXEC [${TEST_DB}].sys.sp_executesql @query;\nIF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;`);
  });

  it('a system database is never restored under a test name: HEADERONLY (GUID) and RESTORE VERIFYONLY WITH CHECKSUM, said in the proof', async () => {
    pg.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'msdb' }]));
    pg.server.on(/^RESTORE VERIFYONLY/, { infos: [{ number: 3262, message: 'The backup set on file 1 is valid.' }] });
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar({ database: 'msdb', method: 'mssql-system-full', system: true }));
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['version:passed', 'restore:passed']);
    expect(r.checks[1]?.detail).toContain('system database msdb: not restored');
    expect(pg.server.find(/^RESTORE VERIFYONLY/)[0]?.sql).toBe('RESTORE VERIFYONLY FROM DISK = @file1 WITH FILE = @position, CHECKSUM;');
    expect(pg.server.find(/^RESTORE DATABASE|^DBCC/)).toEqual([]);
  });

  it('fingerprints that do not match the source fail the proof, naming the table', async () => {
    healthyProvingGround(pg.server);
    const fp = await sourceFingerprint({ patients: 1200, visits: 5401 });
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(fp), manifest, files);
    const check = r.checks.find((c) => c.name === 'fingerprint-source')!;
    expect(check.status).toBe('failed');
    expect(check.detail).toContain('table dbo.Visits: 5,401 rows expected, 5,400 restored');
    expect(statuses(r.checks).slice(-3)).toEqual(['database-settings:skipped', 'smoke:skipped', 'cleanup:passed']);
  });

  it('without a source fingerprint the comparison is skipped, never passed', async () => {
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'fingerprint-source')?.status).toBe('skipped');
  });

  it('a HEADERONLY showing a damaged set or another database fails the restore before RESTORE runs', async () => {
    pg.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'OTHER' }]));
    healthyProvingGround(pg.server);
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(), manifest, files);
    expect(r.checks.find((c) => c.name === 'restore')?.detail).toContain('is a backup of OTHER, not EHR');
    expect(pg.server.find(/^RESTORE DATABASE/)).toEqual([]);
  });

  it('landing restores under the real name on the rebuilt server, runs CHECKDB, sets owner and TRUSTWORTHY, remaps orphans by name, and never overwrites an existing database', async () => {
    const exists = /FROM sys\.databases AS d WHERE d\.name = @database;$/;
    target.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [])), { times: 1 });
    target.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: 'EHR', state_desc: 'ONLINE' }])));
    target.server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Standard Edition (64-bit)', { dataPath: 'D:\\Data\\', logPath: 'L:\\Log\\' }));
    target.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    target.server.on(/^RESTORE FILELISTONLY/, fileListOnly([{ logical: 'EHR', physical: 'E:\\old\\EHR.mdf', type: 'D', fileId: 1 }, { logical: 'EHR_log', physical: 'F:\\old\\EHR_log.ldf', type: 'L', fileId: 2 }]));
    target.server.on(/^RESTORE DATABASE/, restoreOk('EHR'));
    target.server.on(/^DBCC CHECKDB/, ok);
    checkDbClock(target.server);
    target.server.on(/^ALTER AUTHORIZATION/, ok);
    target.server.on(/SET TRUSTWORTHY ON/, ok);
    target.server.on(ORPHANS, orphansReply([{ user: 'ehr_app', loginByName: 'ehr_app' }]), { times: 1 });
    target.server.on(ORPHANS, orphansReply());
    target.server.on(/ALTER USER/, ok);
    target.server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner', trustworthy: true }));
    const { manifest, files } = await artifactFiles(sidecar());
    const item = { id: 'database:mssql:EHR', kind: 'database' as const, name: 'EHR', declared: true, discovered: true, location: '', facts: {}, why: [], methods: [] };
    await engine().restore(ctx, item, manifest, files);
    const [restore] = target.server.find(/^RESTORE DATABASE/);
    expect(restore?.sql).toBe('RESTORE DATABASE [EHR] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, CHECKSUM, RECOVERY, STATS = 10;');
    // landing keeps the source's folder structure (FILELISTONLY PhysicalName) by default
    expect(restore?.params).toMatchObject({ physical1: 'E:\\old\\EHR.mdf', physical2: 'F:\\old\\EHR_log.ldf' });
    expect(target.server.find(/^DBCC CHECKDB/)[0]?.sql).toBe('DBCC CHECKDB ([EHR]) WITH NO_INFOMSGS, ALL_ERRORMSGS;');
    expect(target.server.find(/^ALTER AUTHORIZATION/)[0]?.sql).toBe('ALTER AUTHORIZATION ON DATABASE::[EHR] TO [ehr_owner];');
    expect(target.server.find(/SET TRUSTWORTHY ON/)[0]?.sql).toBe('ALTER DATABASE [EHR] SET TRUSTWORTHY ON;');
    expect(target.server.find(/ALTER USER/)[0]?.params).toMatchObject({ user: 'ehr_app', login: 'ehr_app' });
    const checks = await engine().validateLanding!(ctx, item, manifest, files);
    expect(checks.map((c) => `${c.name}:${c.status}`)).toEqual(['database-settings:passed', 'smoke:passed']);
    // a second landing finds EHR there and refuses
    await expect(engine().restore(ctx, item, manifest, files)).rejects.toMatchObject({ code: 'LANDING_FAILED', message: expect.stringContaining('already exists on the rebuilt server') });
    expect(target.server.find(/^RESTORE DATABASE/).length).toBe(1);
    expect(pg.server.statements()).toEqual([]);
  });

  it('landing validation fails on an orphaned user, a lost TRUSTWORTHY, another instance collation and CLR left off', async () => {
    target.server.on(ORPHANS, orphansReply([{ user: 'interface_user' }]));
    target.server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Standard Edition (64-bit)', { clr: 0 }));
    target.server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner', trustworthy: false, instanceCollation: 'Latin1_General_CI_AS' }));
    const sc = sidecar();
    const { manifest, files } = await artifactFiles({ ...sc, databaseFacts: { ...sc.databaseFacts!, clrAssemblies: 2 } });
    const item = { id: 'database:mssql:EHR', kind: 'database' as const, name: 'EHR', declared: true, discovered: true, location: '', facts: {}, why: [], methods: [] };
    const [settings] = await engine().validateLanding!(ctx, item, manifest, files);
    expect(settings?.detail).toContain("'clr enabled' is off on the rebuilt server");
    expect(settings?.status).toBe('failed');
    expect(settings?.detail).toContain('orphaned users (no login with their SID): interface_user');
    expect(settings?.detail).toContain('TRUSTWORTHY is OFF, it was ON on the source');
    expect(settings?.detail).toContain("the rebuilt instance's collation is Latin1_General_CI_AS");
  });
});

describe('issue 11: key artifacts on the proving ground', () => {
  const KEY_PASSWORD = 'Key-Backup-Do-Not-Log-3!';
  async function keyArtifact(kind: 'master-key' | 'service-master-key'): Promise<{ manifest: Manifest; files: string[] }> {
    const dir = join(h.root, 'fetched-key');
    await mkdir(dir, { recursive: true });
    const names = ['k.key', 'key.json'];
    const files = names.map((n) => join(dir, n));
    await writeFile(files[0]!, 'encrypted key backup');
    await writeFile(files[1]!, JSON.stringify({ version: 1, format: 'mssql-key', kind, file: 'k.key' }));
    return { manifest: { version: 1, artifactId: `run1.capture.instance-object:mssql:${kind}:S.instance-objects`, itemId: `instance-object:mssql:${kind}:S`, method: 'instance-objects', format: 'mssql-key', entries: names.map((n) => ({ path: n, size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) })) }, files };
  }

  it("a master key artifact: RESTORE MASTER KEY into a scratch database with the runbook's password (master untouched), the scratch database dropped; the password only as a secret parameter", async () => {
    pg.server.on(/^CREATE DATABASE \[rubicon-keycheck-/, ok);
    pg.server.on(/N'RESTORE MASTER KEY FROM FILE[\s\S]*master_keys/, one(rs([['master_keys', 'int']], [{ master_keys: 1 }])));
    pg.server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
    const { manifest, files } = await keyArtifact('master-key');
    const r = await engine({ secrets: { certificatePassword: async () => undefined, keyBackupPassword: async () => KEY_PASSWORD } }).prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['restore:passed']);
    const [restore] = pg.server.find(/RESTORE MASTER KEY FROM FILE/);
    const scratch = String(/EXEC \[([^\]]+)\]\.sys\.sp_executesql/.exec(restore!.sql)?.[1]);
    expect(scratch).toMatch(/^rubicon-keycheck-[0-9a-f]{12}$/);
    expect(restore!.sql).not.toContain('EXEC master.');
    expect(restore!.params.password).toBe(KEY_PASSWORD);
    expect(pg.server.statements().join('\n')).not.toContain(KEY_PASSWORD);
    expect(JSON.stringify(pg.log)).not.toContain(KEY_PASSWORD);
    expect(JSON.stringify(r)).not.toContain(KEY_PASSWORD);
    expect(pg.server.find(/^IF DB_ID\(@database\) IS NOT NULL/).at(-1)?.params.database).toBe(scratch);
  });

  it('a master key backup that does not decrypt with the password fails the proof with the server\'s words; still dropped', async () => {
    pg.server.on(/^CREATE DATABASE \[rubicon-keycheck-/, ok);
    pg.server.on(/N'RESTORE MASTER KEY FROM FILE/, { errors: [{ number: 15317, class: 16, message: 'The master key file does not exist or has invalid format.' }] });
    pg.server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
    const { manifest, files } = await keyArtifact('master-key');
    const r = await engine({ secrets: { certificatePassword: async () => undefined, keyBackupPassword: async () => KEY_PASSWORD } }).prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['restore:failed']);
    expect(r.checks[0]?.detail).toContain('Msg 15317');
    expect(pg.server.find(/^IF DB_ID\(@database\) IS NOT NULL/).length).toBe(1);
  });

  it('a service master key is not restored on the proving ground: skipped with the reason, nothing sent', async () => {
    const { manifest, files } = await keyArtifact('service-master-key');
    const r = await engine({ secrets: { certificatePassword: async () => undefined, keyBackupPassword: async () => KEY_PASSWORD } }).prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks)).toEqual(['restore:skipped']);
    expect(r.checks[0]?.detail).toContain('restored at landing');
    expect(pg.server.find(/SERVICE MASTER KEY/)).toEqual([]);
  });
});
