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
import { fileListOnly, headerOnly, one, ok, restoreOk, rs, scripted, tempHost, type Scripted } from './fixtures.ts';

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
    source: { server: 'EHR-SQL01', productVersion: '15.0.4355.3', edition: 'Standard Edition (64-bit)' },
    steps: [{ kind: 'full', files: [BAK], position: 1 }],
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

/** Tables of the EHR database, as sys.tables/sys.columns and the per-table checksum query return them. */
function scriptTables(server: TdsServer, counts: { patients: number; visits: number }): void {
  server.on(/FROM \[[^\]]+\]\.sys\.tables/, one(rs([['schema_name', 'nvarchar'], ['table_name', 'nvarchar'], ['column_name', 'nvarchar'], ['type_name', 'nvarchar'], ['is_assembly_type', 'int']], [
    { schema_name: 'dbo', table_name: 'Patients', column_name: 'id', type_name: 'int', is_assembly_type: 0 },
    { schema_name: 'dbo', table_name: 'Patients', column_name: 'notes', type_name: 'ntext', is_assembly_type: 0 },
    { schema_name: 'dbo', table_name: 'Visits', column_name: 'id', type_name: 'bigint', is_assembly_type: 0 },
    { schema_name: 'dbo', table_name: 'Visits', column_name: 'doc', type_name: 'xml', is_assembly_type: 0 },
  ])));
  server.on(/\.\[dbo\]\.\[Patients\];$/, one(rs([['row_count', 'bigint'], ['content_checksum', 'int']], [{ row_count: counts.patients, content_checksum: -123456 }])));
  server.on(/\.\[dbo\]\.\[Visits\];$/, one(rs([['row_count', 'bigint'], ['content_checksum', 'int']], [{ row_count: counts.visits, content_checksum: 987654 }])));
}

/** A healthy proving ground (SQL Server 2022). Tests register their special rules before calling this. */
function healthyProvingGround(server: TdsServer, version = '16.0.4135.4'): void {
  server.on(/InstanceDefaultDataPath/, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar'], ['default_data_path', 'nvarchar'], ['default_log_path', 'nvarchar']], [{ product_version: version, edition: 'Developer Edition (64-bit)', default_data_path: '/var/opt/mssql/data/', default_log_path: '/var/opt/mssql/log/' }])));
  server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
  server.on(/^RESTORE FILELISTONLY/, fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(/^RESTORE DATABASE/, restoreOk(TEST_DB));
  server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: TEST_DB, state_desc: 'ONLINE' }])));
  server.on(/^DBCC CHECKDB/, ok);
  server.on(/LastGoodCheckDbTime/, () => one(rs([['last_good', 'datetime'], ['server_now', 'datetime']], [{ last_good: new Date(), server_now: new Date() }])));
  scriptTables(server, { patients: 1200, visits: 5400 });
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

    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:passed', 'integrity:passed', 'fingerprint-source:passed', 'smoke:passed', 'cleanup:passed']);
    expect(r.fingerprint?.digest).toBe(fp.digest);
    expect(r.checks.find((c) => c.name === 'fingerprint-source')?.detail).toContain('dbo.Patients: notes (ntext)');
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
    expect(statuses(r.checks)).toEqual(['version:failed', 'certificates:skipped', 'restore:skipped', 'integrity:skipped', 'fingerprint-source:skipped', 'smoke:skipped', 'cleanup:passed']);
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
    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:failed', 'integrity:skipped', 'fingerprint-source:skipped', 'smoke:skipped', 'cleanup:passed']);
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
    expect(statuses(r.checks)).toEqual(['version:passed', 'certificates:passed', 'restore:passed', 'integrity:failed', 'fingerprint-source:skipped', 'smoke:skipped', 'cleanup:passed']);
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

  it('restores the certificate with its private key first; the password never appears in any statement or log', async () => {
    const cert = { name: 'TDE_Cert', thumbprint: THUMB, certFile: 'rubicon-cert-TDE.cer', keyFile: 'rubicon-cert-TDE.pvk' };
    pg.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, one(rs([['name', 'nvarchar']], [])));
    pg.server.on(/CREATE CERTIFICATE/, ok);
    pg.server.on(/WHERE c\.name = @certificate/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: THUMB }])));
    healthyProvingGround(pg.server);
    const events: string[] = [];
    const { manifest, files } = await artifactFiles(sidecar({ certificates: [cert], requiredThumbprints: [THUMB] }), [cert.certFile, cert.keyFile]);
    const e = engine({ secrets: { certificatePassword: async (n) => (n === 'TDE_Cert' ? CERT_PASSWORD : undefined) }, log: (lvl, m) => events.push(`${lvl} ${m}`) });
    const r = await e.prove(ctx, artifact(), manifest, files);
    expect(statuses(r.checks).slice(0, 3)).toEqual(['version:passed', 'certificates:passed', 'restore:passed']);
    const stmts = pg.server.statements();
    expect(stmts.findIndex((s) => s.includes('CREATE CERTIFICATE'))).toBeLessThan(stmts.findIndex((s) => s.startsWith('RESTORE HEADERONLY')));
    const [create] = pg.server.find(/CREATE CERTIFICATE/);
    expect(create?.params).toMatchObject({ certificate: 'TDE_Cert', certFile: expect.stringContaining('rubicon-cert-TDE.cer'), keyFile: expect.stringContaining('rubicon-cert-TDE.pvk') });
    // the value reached the server as a parameter…
    expect(create?.params.password).toBe(CERT_PASSWORD);
    // …and nowhere else: not in any statement text, the statement log, events, or the proof
    expect(stmts.join('\n')).not.toContain(CERT_PASSWORD);
    expect(JSON.stringify(pg.log)).not.toContain(CERT_PASSWORD);
    expect(pg.log.find((l) => l.text.includes('CREATE CERTIFICATE'))?.params.password).toBe('***');
    expect(events.join('\n')).not.toContain(CERT_PASSWORD);
    expect(JSON.stringify(r)).not.toContain(CERT_PASSWORD);
  });

  it('fingerprints that do not match the source fail the proof, naming the table', async () => {
    healthyProvingGround(pg.server);
    const fp = await sourceFingerprint({ patients: 1200, visits: 5401 });
    const { manifest, files } = await artifactFiles(sidecar());
    const r = await engine().prove(ctx, artifact(fp), manifest, files);
    const check = r.checks.find((c) => c.name === 'fingerprint-source')!;
    expect(check.status).toBe('failed');
    expect(check.detail).toContain('table dbo.Visits: 5,401 rows expected, 5,400 restored');
    expect(statuses(r.checks).slice(-2)).toEqual(['smoke:skipped', 'cleanup:passed']);
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

  it('landing restores under the real name on the rebuilt server, runs CHECKDB, and never overwrites an existing database', async () => {
    const exists = /FROM sys\.databases AS d WHERE d\.name = @database;$/;
    target.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [])), { times: 1 });
    target.server.on(exists, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: 'EHR', state_desc: 'ONLINE' }])));
    target.server.on(/AS data_path/, one(rs([['data_path', 'nvarchar'], ['log_path', 'nvarchar']], [{ data_path: 'D:\\Data\\', log_path: 'L:\\Log\\' }])));
    target.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    target.server.on(/^RESTORE FILELISTONLY/, fileListOnly([{ logical: 'EHR', physical: 'E:\\old\\EHR.mdf', type: 'D', fileId: 1 }, { logical: 'EHR_log', physical: 'F:\\old\\EHR_log.ldf', type: 'L', fileId: 2 }]));
    target.server.on(/^RESTORE DATABASE/, restoreOk('EHR'));
    target.server.on(/^DBCC CHECKDB/, ok);
    const { manifest, files } = await artifactFiles(sidecar());
    const item = { id: 'database:mssql:EHR', kind: 'database' as const, name: 'EHR', declared: true, discovered: true, location: '', facts: {}, why: [], methods: [] };
    await engine().restore(ctx, item, manifest, files);
    const [restore] = target.server.find(/^RESTORE DATABASE/);
    expect(restore?.sql).toBe('RESTORE DATABASE [EHR] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, CHECKSUM, RECOVERY, STATS = 10;');
    expect(restore?.params.physical1).toMatch(/^D:\\Data\\EHR-[0-9a-f]{8}_1\.mdf$/);
    expect(target.server.find(/^DBCC CHECKDB/)[0]?.sql).toBe('DBCC CHECKDB ([EHR]) WITH NO_INFOMSGS, ALL_ERRORMSGS;');
    // a second landing finds EHR there and refuses
    await expect(engine().restore(ctx, item, manifest, files)).rejects.toMatchObject({ code: 'LANDING_FAILED', message: expect.stringContaining('already exists on the rebuilt server') });
    expect(target.server.find(/^RESTORE DATABASE/).length).toBe(1);
    expect(pg.server.statements()).toEqual([]);
  });
});
