/**
 * Capture methods at the protocol level: the real mssql/tedious client
 * against the scripted endpoint playing the target's SQL Server. The
 * endpoint's BACKUP replies also write the file into the test host's
 * folder, as SQL Server writes it to its disk.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Item, Manifest } from '../../../src/core/types.ts';
import { parseSidecar, SIDECAR_NAME } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine, type MssqlEngineOptions } from '../../../src/engines/mssql/engine.ts';
import type { CapturedFiles, EngineContext, VendorJobSpec } from '../../../src/engines/engine.ts';
import type { TdsReply, TdsServer } from '../../tds/server.ts';
import { BACKUP_SET_GUID, DB_FEATURES, JOB_COLS, JOB_ROW, SCHEDULE_COLS, SCHEDULE_ROW, STEP_COLS, STEP_ROWS, databaseFeaturesReply, databasesReply, headerOnly, one, ok, rs, scripted, serverInfoReply, tempHost, type DbSpec, type Scripted } from './fixtures.ts';

const BACKUP_DIR = '/var/opt/mssql/backup';
const JOB = 'EHR Nightly Backup';
const JOB_ID = '2B5D3C1A-0F4E-4A8B-9C7D-6E5F4A3B2C1D';
const VENDOR_FILE = '/var/opt/mssql/vendor/EHR_20250110.bak';
const LSN = '37000000043200001';
const CERT_PASSWORD = 'Pvk-Secret-Do-Not-Log-7!';
const THUMB = '0x9F8E7D6C5B4A39281706F5E4D3C2B1A098765432';

let t: Scripted;
let h: Awaited<ReturnType<typeof tempHost>>;
let ctx: EngineContext;
let events: string[];

beforeEach(async () => {
  t = await scripted();
  h = await tempHost();
  ctx = { host: h.host, workDir: join(h.root, 'work') };
  events = [];
  await mkdir(join(h.root, 'backup'), { recursive: true });
  await mkdir(join(h.root, 'vendor'), { recursive: true });
});
afterEach(async () => {
  await t.stop();
  await h.dispose();
});

const dbItem = (name = 'EHR'): Item => ({ id: `database:mssql:${name}`, kind: 'database', name, declared: true, discovered: true, engine: 'mssql', location: '', facts: {}, why: [], methods: [] });

function engine(over: Partial<MssqlEngineOptions> = {}): ReturnType<typeof createMssqlEngine> {
  return createMssqlEngine({
    connection: t.config,
    backupDirectory: BACKUP_DIR,
    backupDirectoryOnHost: 'backup',
    pollIntervalMs: 5,
    onStatement: (e) => t.log.push(e),
    log: (lvl, m) => events.push(`${lvl}: ${m}`),
    ...over,
  });
}

/** SQL Server writes the file named by a path parameter into the host folder that stands for its disk. */
function writes(param: string, reply: TdsReply = ok): (req: { params: Record<string, unknown> }) => Promise<TdsReply> {
  return async (req) => {
    const p = String(req.params[param]);
    const dir = p.startsWith(BACKUP_DIR) ? 'backup' : 'vendor';
    await writeFile(join(h.root, dir, basename(p)), `SQL Server wrote ${basename(p)}`);
    return reply;
  };
}

function instance(server: TdsServer, dbs: DbSpec[] = [{ name: 'EHR' }], edition?: string): void {
  server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', edition));
  server.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply(dbs));
  server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner', trustworthy: true, skuFeatures: ['Compression'] }));
  // msdb's row of the backup set HEADERONLY names (exact LSN); none by default
  server.on(/bs\.backup_set_uuid = @guid/, one(rs(historyCols, [])));
}

async function sidecarOf(c: CapturedFiles): Promise<ReturnType<typeof parseSidecar>> {
  const f = c.files.find((x) => x.name === SIDECAR_NAME);
  return parseSidecar(await readFile(f!.path, 'utf8'), 'test');
}

describe('mssql-native-full', () => {
  it('sends BACKUP … WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT with the name quoted and the path as a parameter, then confirms it with HEADERONLY', async () => {
    instance(t.server);
    t.server.on(/^BACKUP DATABASE/, writes('path', { infos: [{ number: 3014, message: 'BACKUP DATABASE successfully processed 370 pages in 0.1 seconds.' }] }));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', lastLsn: LSN }]));
    const c = await engine().capture(ctx, dbItem(), 'mssql-native-full', {});

    const [backup] = t.server.find(/^BACKUP DATABASE/);
    expect(backup?.sql).toBe('BACKUP DATABASE [EHR] TO DISK = @path WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10;');
    expect(backup?.params.path).toMatch(/^\/var\/opt\/mssql\/backup\/rubicon-EHR-[0-9a-f]{8}-full\.bak$/);
    const [header] = t.server.find(/^RESTORE HEADERONLY/);
    expect(header?.params.file1).toBe(backup?.params.path);

    expect(c.format).toBe('mssql-bak');
    expect(c.files.map((f) => f.name)).toEqual([basename(String(backup?.params.path)), SIDECAR_NAME]);
    expect(await readFile(c.files[0]!.path, 'utf8')).toContain('SQL Server wrote');
    const sc = await sidecarOf(c);
    expect(sc).toMatchObject({ database: 'EHR', method: 'mssql-native-full', source: { productVersion: '15.0.4355.3' }, steps: [{ kind: 'full', files: [c.files[0]!.name], position: 1 }], certificates: [] });
    expect(c.tool).toContain('SQL Server 15.0.4355.3');
  });

  it('quotes a nasty database name and leaves COMPRESSION out on Express edition', async () => {
    const nasty = "EHR]; DROP DATABASE master; --";
    instance(t.server, [{ name: nasty }], 'Express Edition (64-bit)');
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: nasty }]));
    await engine().capture(ctx, dbItem(nasty), 'mssql-native-full', {});
    expect(t.server.find(/^BACKUP DATABASE/)[0]?.sql).toBe('BACKUP DATABASE [EHR]]; DROP DATABASE master; --] TO DISK = @path WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, STATS = 10;');
  });

  it('refuses a backup that HEADERONLY shows is not copy-only or has no checksums', async () => {
    instance(t.server);
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', isCopyOnly: false, hasBackupChecksums: false }]));
    await expect(engine().capture(ctx, dbItem(), 'mssql-native-full', {})).rejects.toMatchObject({
      code: 'CAPTURE_FAILED',
      message: expect.stringMatching(/it is not COPY_ONLY; it has no backup checksums/),
    });
  });

  it('a failed BACKUP is a CAPTURE_FAILED carrying the server\'s message', async () => {
    instance(t.server);
    t.server.on(/^BACKUP DATABASE/, { errors: [{ number: 3201, message: `Cannot open backup device '${BACKUP_DIR}/x.bak'. Operating system error 5(Access is denied.).` }, { number: 3013, message: 'BACKUP DATABASE is terminating abnormally.' }] });
    await expect(engine().capture(ctx, dbItem(), 'mssql-native-full', {})).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('Operating system error 5') });
  });

  it('exports the TDE certificate WITH PRIVATE KEY beside the backup; the password is a secret parameter only', async () => {
    instance(t.server, [{ name: 'EHR', tdeThumbprint: THUMB, tdeCertificate: 'TDE_Cert' }]);
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    t.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, one(rs([['name', 'nvarchar']], [{ name: 'TDE_Cert' }])));
    t.server.on(/BACKUP CERTIFICATE/, async (req) => {
      await writes('certFile')(req);
      return writes('keyFile')(req);
    });
    const c = await engine({ secrets: { certificatePassword: async (n) => (n === 'TDE_Cert' ? CERT_PASSWORD : undefined) } }).capture(ctx, dbItem(), 'mssql-native-full', {});

    const [cert] = t.server.find(/BACKUP CERTIFICATE/);
    expect(cert?.sql).toContain("N'BACKUP CERTIFICATE ' + QUOTENAME(@certificate)");
    expect(cert?.sql).toContain("ENCRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''')");
    expect(cert?.params).toMatchObject({ certificate: 'TDE_Cert', password: CERT_PASSWORD });
    const sc = await sidecarOf(c);
    expect(sc.certificates).toEqual([{ name: 'TDE_Cert', thumbprint: THUMB, certFile: expect.stringMatching(/\.cer$/), keyFile: expect.stringMatching(/\.pvk$/) }]);
    expect(sc.requiredThumbprints).toEqual([THUMB]);
    expect(c.files.map((f) => f.name)).toEqual(expect.arrayContaining([sc.certificates[0]!.certFile, sc.certificates[0]!.keyFile]));
    // never recorded anywhere but the parameter on the wire
    for (const where of [t.server.statements().join('\n'), JSON.stringify(t.log), events.join('\n'), JSON.stringify(c), await readFile(c.files.at(-1)!.path, 'utf8')]) {
      expect(where).not.toContain(CERT_PASSWORD);
    }
    expect(t.log.find((l) => l.text.includes('BACKUP CERTIFICATE'))?.params.password).toBe('***');
  });

  it('a TDE database without a certificate password in the secrets source cannot be captured', async () => {
    instance(t.server, [{ name: 'EHR', tdeThumbprint: THUMB, tdeCertificate: 'TDE_Cert' }]);
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    t.server.on(/FROM master\.sys\.certificates AS c WHERE CONVERT/, one(rs([['name', 'nvarchar']], [{ name: 'TDE_Cert' }])));
    await expect(engine().capture(ctx, dbItem(), 'mssql-native-full', {})).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('certificate TDE_Cert must be exported with its private key') });
  });
});

// ---------------------------------------------------------------- vendor job

const spec: VendorJobSpec = { name: 'vendor nightly', command: [JOB], output: 'vendor', database: 'EHR', timeoutMs: 10_000 };

const activityCols: [string, 'int' | 'datetime'][] = [['session_id', 'int'], ['start_execution_date', 'datetime'], ['stop_execution_date', 'datetime'], ['job_history_id', 'int'], ['last_executed_step_id', 'int']];
const activity = (start: Date | null, stop: Date | null, historyId: number | null): TdsReply => one(rs(activityCols, [{ session_id: 7, start_execution_date: start, stop_execution_date: stop, job_history_id: historyId, last_executed_step_id: null }]));

function historyReply(steps: { id: number; name: string; status: number; message?: string; msg?: number }[]): TdsReply {
  return one(
    rs(
      [['instance_id', 'int'], ['step_id', 'int'], ['step_name', 'nvarchar'], ['run_status', 'int'], ['run_date', 'int'], ['run_time', 'int'], ['run_duration', 'int'], ['message', 'nvarchar'], ['sql_message_id', 'int'], ['sql_severity', 'int']],
      steps.map((s, i) => ({ instance_id: 880 + i, step_id: s.id, step_name: s.name, run_status: s.status, run_date: 20250110, run_time: 20000, run_duration: 312, message: s.message ?? 'Executed as user: NT SERVICE\\SQLSERVERAGENT. The step succeeded.', sql_message_id: s.msg ?? 0, sql_severity: s.msg ? 16 : 0 })),
    ),
  );
}

const historyCols: [string, 'int' | 'bigint' | 'nvarchar' | 'datetime' | 'uniqueidentifier'][] = [
  ['backup_set_id', 'int'], ['database_name', 'nvarchar'], ['type', 'nvarchar'], ['is_copy_only', 'int'], ['backup_start_date', 'datetime'], ['backup_finish_date', 'datetime'],
  ['first_lsn', 'nvarchar'], ['last_lsn', 'nvarchar'], ['checkpoint_lsn', 'nvarchar'], ['database_backup_lsn', 'nvarchar'], ['has_backup_checksums', 'int'], ['is_damaged', 'int'],
  ['database_guid', 'uniqueidentifier'], ['media_set_id', 'int'], ['position', 'int'], ['backup_size', 'bigint'], ['compressed_backup_size', 'bigint'], ['encryptor_thumbprint', 'nvarchar'],
  ['backup_set_uuid', 'nvarchar'], ['last_recovery_fork_guid', 'nvarchar'],
  ['physical_device_name', 'nvarchar'], ['device_type', 'int'], ['family_sequence_number', 'int'], ['mirror', 'int'],
];
const DB_GUID = '6F9619FF-8B86-D011-B42D-00C04FC964FF';
const FORK = 'A1B2C3D4-0000-4000-8000-000000000001';
function backupsetRow(id: number, type: string, device: string, lsns: { first: string; last: string; checkpoint?: string; dbBackup?: string }, o: { start?: Date; guid?: string; dbGuid?: string; fork?: string; mirror?: number } = {}): Record<string, unknown> {
  return {
    backup_set_id: id, database_name: 'EHR', type, is_copy_only: 0, backup_start_date: o.start ?? new Date('2025-01-10T02:00:00Z'), backup_finish_date: new Date('2025-01-10T02:03:00Z'),
    first_lsn: lsns.first, last_lsn: lsns.last, checkpoint_lsn: lsns.checkpoint ?? lsns.first, database_backup_lsn: lsns.dbBackup ?? '0', has_backup_checksums: 1, is_damaged: 0,
    database_guid: o.dbGuid ?? DB_GUID, media_set_id: id, position: 1, backup_size: 104857600n, compressed_backup_size: 20971520n, encryptor_thumbprint: null,
    backup_set_uuid: o.guid ?? BACKUP_SET_GUID, last_recovery_fork_guid: o.fork ?? FORK,
    physical_device_name: device, device_type: 2, family_sequence_number: 1, mirror: o.mirror ?? 0,
  };
}

/** The vendor's Agent: job lookup, baseline, clock, new backupset rows, HEADERONLY on the job's file. Register the job's run first. */
async function vendorAgent(server: TdsServer, o: { newRows?: Record<string, unknown>[]; headerLsn?: string; headerGuid?: string } = {}): Promise<void> {
  instance(server);
  server.on(/FROM msdb\.dbo\.sysjobs AS j WHERE j\.name = @job/, one(rs([['job_id', 'uniqueidentifier'], ['name', 'nvarchar'], ['enabled', 'int']], [{ job_id: JOB_ID, name: JOB, enabled: 1 }])));
  server.on(/ISNULL\(MAX\(bs\.backup_set_id\), 0\)/, one(rs([['last_backup_set_id', 'int'], ['server_time', 'datetime']], [{ last_backup_set_id: 41, server_time: new Date() }])));
  server.on('SELECT SYSDATETIME() AS server_now;', () => one(rs([['server_now', 'datetime']], [{ server_now: new Date() }])));
  server.on(/bs\.backup_set_id > @after/, () => one(rs(historyCols, o.newRows ?? [backupsetRow(42, 'D', VENDOR_FILE, { first: '37000000041600001', last: LSN }, { start: runStart ?? new Date() })])));
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', lastLsn: o.headerLsn ?? LSN, isCopyOnly: false, ...(o.headerGuid ? { backupSetGuid: o.headerGuid } : {}) }]));
  await writeFile(join(h.root, 'vendor', basename(VENDOR_FILE)), 'the vendor job wrote this');
}

/** When the scripted job run started (server clock): the job's backupset row starts then. */
let runStart: Date | undefined;

/** sysjobactivity for a run that starts now: running `runningPolls` times, then stopped with history id 900. */
function run(server: TdsServer, runningPolls = 2): void {
  let started: Date | undefined;
  runStart = undefined;
  server.on(/FROM msdb\.dbo\.sysjobactivity/, (_req, call) => {
    started ??= new Date();
    runStart = started;
    return call <= runningPolls ? activity(started, null, null) : activity(started, new Date(), 900);
  });
}

describe('vendor-job', () => {
  it('started → running → succeeded with every step ok, a new backupset row and HEADERONLY agreeing', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 2, name: 'Copy to share', status: 1 }, { id: 0, name: '(Job outcome)', status: 1, message: 'The job succeeded.' }]));
    await vendorAgent(t.server);
    const c = await engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec });

    expect(t.server.find(/sp_start_job/)[0]).toMatchObject({ sql: 'EXEC msdb.dbo.sp_start_job @job_name = @job;', params: { job: JOB } });
    expect(t.server.find(/sysjobactivity/)[0]?.sql).toContain('ja.session_id = (SELECT MAX(ss.session_id) FROM msdb.dbo.syssessions AS ss)');
    expect(t.server.find(/sysjobactivity/).length).toBe(3);
    expect(t.server.find(/sysjobhistory/)[0]?.params).toMatchObject({ jobId: JOB_ID, historyId: 900 });
    expect(t.server.find(/bs\.backup_set_id > @after/)[0]?.params).toMatchObject({ database: 'EHR', after: 41 });
    expect(t.server.find(/^RESTORE HEADERONLY/)[0]?.params.file1).toBe(VENDOR_FILE);
    expect(c.files.map((f) => f.name)).toEqual(['EHR_20250110.bak', SIDECAR_NAME]);
    expect(c.files[0]!.path).toBe(join(h.root, 'vendor', 'EHR_20250110.bak'));
    expect((await sidecarOf(c)).steps).toEqual([{ kind: 'full', files: ['EHR_20250110.bak'], position: 1, lastLsn: LSN, backupFinishDate: '2025-01-10T02:03:00.000Z', backupSetGuid: BACKUP_SET_GUID, hasBackupChecksums: true }]);
    expect((await sidecarOf(c)).databaseFacts).toMatchObject({ owner: 'ehr_owner', trustworthy: true, skuFeatures: ['Compression'], compatibilityLevel: 150 });
    expect(c.command).toContain('1 Backup EHR succeeded, 2 Copy to share succeeded');
  });

  it('a job that "succeeded" with a failed step is a failed capture naming the step, and its backup is not used', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, 0);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([
      { id: 1, name: 'Backup EHR', status: 1 },
      { id: 2, name: 'Verify backup', status: 0, message: 'RESTORE VERIFYONLY: The media family on device is incorrectly formed. [SQLSTATE 42000] (Error 3241).  The step failed.', msg: 3241 },
      { id: 0, name: '(Job outcome)', status: 1, message: 'The job succeeded.  The Job was invoked by User sa.  The last step to run was step 2 (Verify backup).' },
    ]));
    await vendorAgent(t.server);
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({
      code: 'CAPTURE_FAILED',
      message: expect.stringContaining(`the vendor's backup job ${JOB} did not succeed: step 2 "Verify backup" failed (Msg 3241)`),
    });
    expect(t.server.find(/^RESTORE HEADERONLY/)).toEqual([]);
  });

  it('already running (Msg 22022): waits for that run to end, starts the job again, and uses only its own run', async () => {
    t.server.on(/sp_start_job/, { errors: [{ number: 22022, class: 16, message: `SQLServerAgent Error: Request to run job ${JOB} (from User sa) refused because the job is already running from a request by User sa.` }] }, { times: 1 });
    t.server.on(/sp_start_job/, ok);
    const earlier = new Date(Date.now() - 10 * 60_000);
    let ours: Date | undefined;
    t.server.on(/FROM msdb\.dbo\.sysjobactivity/, (_req, call) => {
      if (call === 1) return activity(earlier, null, null); // someone else's run, still going
      if (call === 2) return activity(earlier, new Date(Date.now() - 1000 * 60), 850); // it ended
      if (t.server.find(/sp_start_job/).length < 2) throw new Error('polled before the second start');
      ours ??= new Date();
      runStart = ours;
      return call === 3 ? activity(ours, null, null) : activity(ours, new Date(), 900);
    });
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 0, name: '(Job outcome)', status: 1 }]));
    await vendorAgent(t.server);
    const c = await engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec });
    expect(t.server.find(/sp_start_job/).length).toBe(2);
    expect(t.server.find(/sysjobhistory/)[0]?.params.historyId).toBe(900);
    expect(events.some((e) => e.includes('already running: waiting for that run to end'))).toBe(true);
    expect(c.files[0]?.name).toBe('EHR_20250110.bak');
  });

  it('SQL Agent not running (Msg 22022, other text) fails in plain words without waiting', async () => {
    await vendorAgent(t.server);
    t.server.on(/sp_start_job/, { errors: [{ number: 22022, class: 16, message: 'SQLServerAgent is not currently running so it cannot be notified of this action.' }] });
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({ message: expect.stringContaining('SQL Server Agent is not running') });
    expect(t.server.find(/sysjobactivity/)).toEqual([]);
  });

  it('success with no new backupset row of the database is a failed capture', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, 0);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 0, name: '(Job outcome)', status: 1 }]));
    await vendorAgent(t.server, { newRows: [] });
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({ message: expect.stringContaining('reported success but wrote no new full backup of EHR') });
  });

  it('a file whose HEADERONLY disagrees with msdb (replaced after the job) is a failed capture', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, 0);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 0, name: '(Job outcome)', status: 1 }]));
    await vendorAgent(t.server, { headerLsn: '36000000000100001' });
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({ message: expect.stringContaining('the file is not the backup msdb describes') });
  });

  it('a job that never finishes times out as a failed capture (the job is left alone)', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, Number.POSITIVE_INFINITY);
    await vendorAgent(t.server);
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: { ...spec, timeoutMs: 50 } })).rejects.toMatchObject({ message: expect.stringContaining('did not finish within the runbook\'s timeout') });
    expect(t.server.find(/sp_stop_job/)).toEqual([]);
  });
});

// ---------------------------------------------------------------- mssql-history

const incarnation = (server: TdsServer, fork = FORK): void => {
  server.on(/FROM sys\.database_recovery_status/, one(rs([['database_guid', 'nvarchar'], ['recovery_fork_guid', 'nvarchar']], [{ database_guid: DB_GUID, recovery_fork_guid: fork }])));
};

describe('mssql-history', () => {
  it('takes the newest full + diff + logs from msdb and confirms every file with HEADERONLY', async () => {
    instance(t.server);
    incarnation(t.server);
    const full = `${BACKUP_DIR}/EHR_full.bak`;
    const diff = `${BACKUP_DIR}/EHR_diff.bak`;
    const log = `${BACKUP_DIR}/EHR_log1.trn`;
    t.server.on(/ORDER BY bs\.last_lsn DESC/, one(rs(historyCols, [
      backupsetRow(12, 'L', log, { first: '1250', last: '1400' }),
      backupsetRow(11, 'I', diff, { first: '1200', last: '1300', dbBackup: '1050' }),
      backupsetRow(10, 'D', full, { first: '1000', last: '1100', checkpoint: '1050' }),
      backupsetRow(9, 'D', `${BACKUP_DIR}/rubicon-EHR-x-full.bak`, { first: '900', last: '950' }),
    ])));
    t.server.on((r) => r.sql.startsWith('RESTORE HEADERONLY') && r.params.file1 === full, headerOnly([{ databaseName: 'EHR', lastLsn: '1100' }]));
    t.server.on((r) => r.sql.startsWith('RESTORE HEADERONLY') && r.params.file1 === diff, headerOnly([{ databaseName: 'EHR', backupType: 5, lastLsn: '1300' }]));
    t.server.on((r) => r.sql.startsWith('RESTORE HEADERONLY') && r.params.file1 === log, headerOnly([{ databaseName: 'EHR', backupType: 2, lastLsn: '1400' }]));
    for (const f of [full, diff, log]) await writeFile(join(h.root, 'backup', basename(f)), 'x');
    const c = await engine().capture(ctx, dbItem(), 'mssql-history', {});
    expect((await sidecarOf(c)).steps.map((s) => `${s.kind}:${s.files.join()}`)).toEqual(['full:EHR_full.bak', 'diff:EHR_diff.bak', 'log:EHR_log1.trn']);
    expect(t.server.find(/^RESTORE HEADERONLY/).map((r) => r.params.file1)).toEqual([full, diff, log]);
  });

  it('msdb is not ground truth: a file that HEADERONLY cannot read fails the capture', async () => {
    instance(t.server);
    incarnation(t.server);
    t.server.on(/ORDER BY bs\.last_lsn DESC/, one(rs(historyCols, [backupsetRow(10, 'D', `${BACKUP_DIR}/EHR_full.bak`, { first: '1000', last: '1100' })])));
    t.server.on(/^RESTORE HEADERONLY/, { errors: [{ number: 3201, message: `Cannot open backup device '${BACKUP_DIR}/EHR_full.bak'. Operating system error 2(The system cannot find the file specified.).` }, { number: 3013, message: 'RESTORE HEADERONLY is terminating abnormally.' }] });
    await expect(engine().capture(ctx, dbItem(), 'mssql-history', {})).rejects.toMatchObject({ message: expect.stringContaining('Operating system error 2') });
  });
});

// ---------------------------------------------------------------- instance-objects

describe('instance-objects', () => {
  it('scripts logins with SID, hash, default language, server roles and permissions; sa by its SID (renamed, hash and state kept); a login with another SID stops the script', async () => {
    const hash = Buffer.from('0200A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6', 'hex');
    const sid = Buffer.from('5A1F0C2D3E4B5A69788796A5B4C3D2E1', 'hex');
    t.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply());
    t.server.on(/FROM sys\.server_principals AS sp/, one(rs(
      [['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'], ['default_language_name', 'nvarchar'], ['is_disabled', 'int'], ['is_policy_checked', 'int'], ['is_expiration_checked', 'int'], ['server_roles', 'nvarchar']],
      [
        { name: 'dba_sa', type_desc: 'SQL_LOGIN', sid: Buffer.from([1]), password_hash: hash, default_database_name: 'master', default_language_name: 'us_english', is_disabled: 1, is_policy_checked: 1, is_expiration_checked: 0 },
        { name: "ehr_app'user", type_desc: 'SQL_LOGIN', sid, password_hash: hash, default_database_name: 'EHR', default_language_name: 'British', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: 'dbcreator' },
        { name: 'EHR-SQL01\\svc_interface', type_desc: 'WINDOWS_LOGIN', sid: Buffer.from([1, 5]), password_hash: null, default_database_name: 'EHR', is_disabled: 1, is_policy_checked: null, is_expiration_checked: null },
        { name: 'EXAMPLE\\ehr-admins', type_desc: 'WINDOWS_GROUP', sid: Buffer.from([1, 5, 0, 0, 7]), password_hash: null, default_database_name: 'master', is_disabled: 0, is_policy_checked: null, is_expiration_checked: null },
      ],
    )));
    t.server.on(/FROM sys\.server_principals AS r\nWHERE r\.type = 'R'/, one(rs([['name', 'nvarchar'], ['owner_name', 'nvarchar'], ['members', 'nvarchar']], [{ name: 'ehr_readers', owner_name: 'sa', members: "EXAMPLE\\ehr-admins,ehr_app'user" }])));
    t.server.on(/FROM sys\.server_permissions AS p/, one(rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar'], ['state_desc', 'nvarchar'], ['securable', 'nvarchar']], [
      { grantee: 'EHR-SQL01\\svc_interface', class: 100, permission_name: 'CONNECT SQL', state: 'D', state_desc: 'DENY', securable: null },
      { grantee: "ehr_app'user", class: 100, permission_name: 'CONNECT SQL', state: 'G', state_desc: 'GRANT', securable: null },
      { grantee: "ehr_app'user", class: 100, permission_name: 'VIEW SERVER STATE', state: 'G', state_desc: 'GRANT', securable: null },
      { grantee: 'ehr_readers', class: 101, permission_name: 'IMPERSONATE', state: 'W', state_desc: 'GRANT_WITH_GRANT_OPTION', securable: "ehr_app'user" },
    ])));
    // every other kind of object: none on this instance
    t.server.on(() => true, ok);
    const c = await engine().capture(ctx, { ...dbItem(), id: 'instance-object:mssql:instance:EHR-SQL01', kind: 'instance-object', name: 'EHR-SQL01' }, 'instance-objects', {});
    expect(c.files.map((f) => f.name)).toEqual(['logins.sql', 'logins.json', 'operators.sql', 'database-mail.sql', 'proxies.sql', 'jobs.sql', 'jobs.json', 'alerts.sql', 'linked-servers.sql', 'credentials.sql', 'endpoints.sql', 'configuration.sql', 'startup.sql']);
    const logins = await readFile(c.files.find((f) => f.name === 'logins.sql')!.path, 'utf8');
    expect(logins).toContain(
      `CREATE LOGIN [ehr_app'user] WITH PASSWORD = 0x${hash.toString('hex').toUpperCase()} HASHED, SID = 0x5A1F0C2D3E4B5A69788796A5B4C3D2E1, DEFAULT_DATABASE = [EHR], DEFAULT_LANGUAGE = [British], CHECK_POLICY = ON, CHECK_EXPIRATION = OFF;`,
    );
    expect(logins).toContain(`IF SUSER_ID(N'ehr_app''user') IS NULL`);
    // an existing login of that name with another SID would orphan its users while the proof passed: the script stops
    expect(logins).toContain(`ELSE IF SUSER_SID(N'ehr_app''user') <> 0x5A1F0C2D3E4B5A69788796A5B4C3D2E1\n  THROW 50000, N'login ehr_app''user already exists with another SID`);
    expect(logins).toContain('ALTER SERVER ROLE [dbcreator] ADD MEMBER [ehr_app\'user];');
    // sa is found by SID 0x01, renamed to the source's name, given its hash and its state; never created
    expect(logins).toContain(`IF SUSER_SNAME(0x01) <> N'dba_sa' EXEC sys.sp_executesql @rubicon_sa_rename;`);
    expect(logins).toContain(`ALTER LOGIN [dba_sa] WITH PASSWORD = 0x${hash.toString('hex').toUpperCase()} HASHED;`);
    expect(logins).toContain('ALTER LOGIN [dba_sa] DISABLE;');
    expect(logins).not.toContain('CREATE LOGIN [dba_sa]');
    // user-defined server role, its members after the logins, server permissions (DENY CONNECT SQL kept; CREATE LOGIN grants CONNECT SQL)
    expect(logins.indexOf("CREATE SERVER ROLE [ehr_readers]")).toBeLessThan(logins.indexOf('CREATE LOGIN'));
    expect(logins).toContain('ALTER SERVER ROLE [ehr_readers] ADD MEMBER [EXAMPLE\\ehr-admins];');
    expect(logins).toContain('DENY CONNECT SQL TO [EHR-SQL01\\svc_interface];');
    expect(logins).toContain("GRANT VIEW SERVER STATE TO [ehr_app'user];");
    expect(logins).toContain("GRANT IMPERSONATE ON LOGIN::[ehr_app'user] TO [ehr_readers] WITH GRANT OPTION;");
    expect(logins).not.toContain("GRANT CONNECT SQL TO [ehr_app'user]");
    expect(logins).toContain('CREATE LOGIN [EHR-SQL01\\svc_interface] FROM WINDOWS');
    expect(logins).toContain('local account of EHR-SQL01: after an OS rebuild it has a new SID');
    expect(logins).toContain('ALTER LOGIN [EHR-SQL01\\svc_interface] DISABLE;');
    expect(logins).toContain(`ELSE IF SUSER_SID(N'EXAMPLE\\ehr-admins') <> 0x0105000007`);
    expect(logins).not.toMatch(/PASSWORD = N'/);
    // logins.json: every property landing reads back; the hash only as its SHA-256; a local account's SID is not compared
    const props = JSON.parse(await readFile(c.files.find((f) => f.name === 'logins.json')!.path, 'utf8'));
    expect(props).toMatchObject({ version: 1, format: 'mssql-login-properties', machineName: expect.any(String) });
    expect(props.principals["login ehr_app'user"]).toEqual({
      type: 'SQL_LOGIN', sid: '0x5A1F0C2D3E4B5A69788796A5B4C3D2E1', 'default database': 'EHR', 'default language': 'British', disabled: 'no',
      'check policy': 'on', 'check expiration': 'off', 'password hash': createHash('sha256').update(hash).digest('hex'),
      'server roles': 'dbcreator', 'CONNECT SQL': 'GRANT', 'server permissions': 'GRANT VIEW SERVER STATE',
    });
    expect(props.principals['login dba_sa']).toMatchObject({ sid: '0x01', disabled: 'yes' });
    expect(props.principals['login dba_sa']['default database']).toBeUndefined();
    expect(props.principals['login EHR-SQL01\\svc_interface']).toMatchObject({ type: 'WINDOWS_LOGIN', 'CONNECT SQL': 'DENY', disabled: 'yes' });
    expect(props.principals['login EHR-SQL01\\svc_interface'].sid).toBeUndefined();
    expect(props.principals['server role ehr_readers']).toEqual({ members: "EXAMPLE\\ehr-admins, ehr_app'user", 'server permissions': "GRANT IMPERSONATE ON LOGIN::[ehr_app'user] WITH GRANT OPTION" });
    expect(JSON.stringify(props)).not.toContain(hash.toString('hex').toUpperCase());
    // 2016 has no STRING_AGG: roles are aggregated with FOR XML PATH
    expect(t.server.find(/FROM sys\.server_principals AS sp/)[0]?.sql).toContain("FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)')");
    expect(t.server.statements().join('\n')).not.toContain('STRING_AGG');
  });

  it('scripts a job as SSMS does: notifications, every step property, start step, schedules; jobs.json holds what the proof reads back', async () => {
    t.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply());
    t.server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(JOB_COLS, [JOB_ROW])));
    t.server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, one(rs(STEP_COLS, STEP_ROWS)));
    t.server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, one(rs(SCHEDULE_COLS, [SCHEDULE_ROW])));
    const c = await engine().capture(ctx, { ...dbItem(), id: `instance-object:mssql:job:${JOB}`, kind: 'instance-object', name: JOB }, 'instance-objects', {});
    expect(c.files.map((f) => f.name)).toEqual(['jobs.sql', 'jobs.json']);
    const sql = await readFile(c.files[0]!.path, 'utf8');
    expect(sql).toContain(`EXEC msdb.dbo.sp_add_job @job_name = N'${JOB}', @enabled = 1, @notify_level_eventlog = 2, @notify_level_email = 2, @notify_level_netsend = 0, @notify_level_page = 0, @delete_level = 0, @description = N'vendor backup', @category_name = N'EHR Vendor', @owner_login_name = N'ehr_owner', @notify_email_operator_name = N'DBA Team';`);
    expect(sql).toContain(`IF NOT EXISTS (SELECT 1 FROM msdb.dbo.syscategories WHERE name = N'EHR Vendor' AND category_class = 1)`);
    expect(sql).toContain(`@step_id = 1, @step_name = N'backup', @subsystem = N'TSQL', @database_name = N'master', @cmdexec_success_code = 0, @on_success_action = 4, @on_success_step_id = 3, @on_fail_action = 4, @on_fail_step_id = 2, @retry_attempts = 3, @retry_interval = 5, @os_run_priority = 0, @output_file_name = N'E:\\Logs\\backup.txt', @flags = 2, @command = N'EXEC dbo.VendorBackup;'`);
    expect(sql).toContain(`@step_id = 2, @step_name = N'copy', @subsystem = N'CmdExec'`);
    expect(sql).toContain(`@proxy_name = N'FileCopyProxy'`);
    expect(sql).toContain(`EXEC msdb.dbo.sp_update_job @job_name = N'${JOB}', @start_step_id = 1;`);
    expect(sql).toContain(`EXEC msdb.dbo.sp_add_jobschedule @job_name = N'${JOB}', @name = N'nightly 02:00', @enabled = 1, @freq_type = 4, @freq_interval = 1, @freq_subday_type = 1, @freq_subday_interval = 0, @freq_relative_interval = 0, @freq_recurrence_factor = 0, @active_start_date = 20240101, @active_end_date = 99991231, @active_start_time = 20000, @active_end_time = 235959;`);
    const props = JSON.parse(await readFile(c.files[1]!.path, 'utf8')).jobs[JOB];
    expect(props).toMatchObject({ start_step_id: '1', notify_email_operator_name: 'DBA Team', 'step 1 on_success_step_id': '3', 'step 1 retry_attempts': '3', 'step 2 proxy_name': 'FileCopyProxy', 'schedule nightly 02:00 freq_type': '4' });
  });

  it('scripts one credential by name with a placeholder: the secret is never read', async () => {
    t.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply());
    t.server.on(/FROM sys\.credentials/, one(rs([['name', 'nvarchar'], ['credential_identity', 'nvarchar']], [{ name: 'https://ehrbackups.blob.core.windows.net/sql', credential_identity: 'SHARED ACCESS SIGNATURE' }, { name: 'other', credential_identity: 'x' }])));
    const c = await engine().capture(ctx, { ...dbItem(), id: 'instance-object:mssql:credential:https://ehrbackups.blob.core.windows.net/sql', kind: 'instance-object', name: 'https://ehrbackups.blob.core.windows.net/sql' }, 'instance-objects', {});
    const text = await readFile(c.files[0]!.path, 'utf8');
    expect(text).toContain("-- CREATE CREDENTIAL [https://ehrbackups.blob.core.windows.net/sql] WITH IDENTITY = N'SHARED ACCESS SIGNATURE', SECRET = N'<fill in from the secrets store>';");
    expect(text).not.toContain('[other]');
    expect(t.server.statements().join('\n')).not.toMatch(/secret/i);
  });
});

describe('issue 11: editions, backup identity, incarnations, job run window', () => {
  it('Web edition (EngineEdition 2, like Standard) gets no COMPRESSION; Standard does', async () => {
    instance(t.server, [{ name: 'EHR' }], 'Web Edition (64-bit)');
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    await engine().capture(ctx, dbItem(), 'mssql-native-full', {});
    expect(t.server.find(/^BACKUP DATABASE/)[0]?.sql).toBe('BACKUP DATABASE [EHR] TO DISK = @path WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, STATS = 10;');
  });

  it('a BACKUP refused with Msg 1844 (compression not supported by this edition) is sent again without COMPRESSION', async () => {
    instance(t.server, [{ name: 'EHR' }], 'Standard Edition (64-bit)');
    t.server.on(/^BACKUP DATABASE .* COMPRESSION/, { errors: [{ number: 1844, message: 'BACKUP DATABASE WITH COMPRESSION is not supported on Web Edition (64-bit).' }, { number: 3013, message: 'BACKUP DATABASE is terminating abnormally.' }] });
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    await engine().capture(ctx, dbItem(), 'mssql-native-full', {});
    expect(t.server.find(/^BACKUP DATABASE/).map((q) => q.sql.includes('COMPRESSION'))).toEqual([true, false]);
    expect(events.some((e) => e.includes('Msg 1844'))).toBe(true);
  });

  it("records HEADERONLY's BackupSetGUID and msdb's exact LastLSN in the sidecar, and whether the source was frozen", async () => {
    t.server.on(/bs\.backup_set_uuid = @guid/, one(rs(historyCols, [backupsetRow(50, 'D', `${BACKUP_DIR}/x.bak`, { first: '1', last: LSN })])));
    instance(t.server, [{ name: 'EHR', userAccess: 'SINGLE_USER' }]);
    t.server.on(/^BACKUP DATABASE/, writes('path'));
    t.server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR', lastLsn: LSN }]));
    const c = await engine().capture(ctx, dbItem(), 'mssql-native-full', {});
    const sc = await sidecarOf(c);
    expect(sc.steps[0]).toMatchObject({ backupSetGuid: BACKUP_SET_GUID, lastLsn: LSN, hasBackupChecksums: true });
    expect(sc.fingerprintBasis).toBe('frozen');
    expect(t.server.find(/bs\.backup_set_uuid = @guid/)[0]?.params.guid).toBe(BACKUP_SET_GUID);
  });

  it("a vendor job's file whose BackupSetGUID is not msdb's backup_set_uuid is not the job's backup", async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, 0);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 0, name: '(Job outcome)', status: 1 }]));
    await vendorAgent(t.server, { headerGuid: '99999999-8888-7777-6666-555555555555' });
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({ message: expect.stringContaining(`BackupSetGUID 99999999-8888-7777-6666-555555555555 is not msdb's backup_set_uuid ${BACKUP_SET_GUID}`) });
  });

  it('a new full backup that started before the vendor job ran (another job, a person) is not accepted as the job\'s', async () => {
    t.server.on(/sp_start_job/, ok);
    run(t.server, 0);
    t.server.on(/FROM msdb\.dbo\.sysjobhistory AS h/, historyReply([{ id: 1, name: 'Backup EHR', status: 1 }, { id: 0, name: '(Job outcome)', status: 1 }]));
    await vendorAgent(t.server, { newRows: [backupsetRow(42, 'D', VENDOR_FILE, { first: '1', last: LSN }, { start: new Date(Date.now() - 3_600_000) })] });
    await expect(engine().capture(ctx, dbItem(), 'vendor-job', { vendorJob: spec })).rejects.toMatchObject({ message: expect.stringContaining("1 new full backup(s) of EHR started outside the job's run") });
    expect(t.server.find(/^RESTORE HEADERONLY/)).toEqual([]);
  });

  it('mssql-history keeps to the current incarnation (database_guid and recovery fork) and leaves mirror copies out', async () => {
    instance(t.server);
    incarnation(t.server);
    const full = `${BACKUP_DIR}/EHR_full.bak`;
    const older = `${BACKUP_DIR}/EHR_before_restore.bak`;
    t.server.on(/ORDER BY bs\.last_lsn DESC/, one(rs(historyCols, [
      // newest by LSN, but of another fork (taken before the database was restored WITH RECOVERY): not restorable into this incarnation
      backupsetRow(20, 'D', older, { first: '5000', last: '5100' }, { fork: 'B0000000-0000-4000-8000-000000000002', guid: '22222222-0000-4000-8000-000000000000' }),
      // a dropped-and-recreated database of the same name
      backupsetRow(19, 'D', `${BACKUP_DIR}/EHR_old_db.bak`, { first: '4000', last: '4100' }, { dbGuid: '00000000-1111-4000-8000-000000000000' }),
      backupsetRow(10, 'D', full, { first: '1000', last: '1100' }),
      backupsetRow(10, 'D', `\\\\mirror\\EHR_full.bak`, { first: '1000', last: '1100' }, { mirror: 1 }),
    ])));
    t.server.on((r) => r.sql.startsWith('RESTORE HEADERONLY') && r.params.file1 === full, headerOnly([{ databaseName: 'EHR', lastLsn: '1100' }]));
    await writeFile(join(h.root, 'backup', 'EHR_full.bak'), 'x');
    const c = await engine().capture(ctx, dbItem(), 'mssql-history', {});
    expect((await sidecarOf(c)).steps.map((s) => s.files.join())).toEqual(['EHR_full.bak']);
    expect(events.some((e) => e.includes('2 backup set(s) of another incarnation'))).toBe(true);
    expect(t.server.find(/ORDER BY bs\.last_lsn DESC/)[0]?.sql).toContain('AND bmf.mirror = 0');
  });
});

describe('issue 11: master key and service master key', () => {
  const KEY_PASSWORD = 'Key-Backup-Do-Not-Log-3!';
  const KEY_GUID = '8F2C1A7E-3B4D-4E5F-9A0B-1C2D3E4F5A6B';
  const keyIdentity = (o: { guid?: string; modified?: string; gone?: boolean } = {}): TdsReply =>
    one(rs([['key_guid', 'nvarchar'], ['modify_date', 'nvarchar']], o.gone ? [] : [{ key_guid: (o.guid ?? KEY_GUID).toLowerCase(), modify_date: o.modified ?? '2024-03-01T10:00:00.123' }]));
  const keyItem = (kind: 'master-key' | 'service-master-key'): Item => ({ id: `instance-object:mssql:${kind}:EHR-SQL01`, kind: 'instance-object', name: kind, declared: false, discovered: true, engine: 'mssql', location: '', facts: {}, why: [], methods: ['instance-objects'] });

  it.each(['master-key', 'service-master-key'] as const)('%s: BACKUP … TO FILE in the backup directory, ENCRYPTION BY PASSWORD from the secrets source, never in a statement text or log', async (kind) => {
    instance(t.server);
    const stmt = kind === 'master-key' ? /N'BACKUP MASTER KEY TO FILE/ : /N'BACKUP SERVICE MASTER KEY TO FILE/;
    t.server.on(stmt, writes('file'));
    t.server.on(/FROM master\.sys\.symmetric_keys AS k WHERE k\.name = @key;$/, keyIdentity());
    const c = await engine({ secrets: { certificatePassword: async () => undefined, keyBackupPassword: async () => KEY_PASSWORD } }).capture(ctx, keyItem(kind), 'instance-objects', {});
    const [req] = t.server.find(stmt);
    expect(req?.params.password).toBe(KEY_PASSWORD);
    expect(String(req?.params.file)).toMatch(new RegExp(`^${BACKUP_DIR}/rubicon-${kind}-.*\\.key$`));
    expect(req?.sql).toContain('EXEC master.sys.sp_executesql @stmt;');
    expect(c.format).toBe('mssql-key');
    expect(c.files.map((f) => f.name).sort()).toEqual([basename(String(req?.params.file)), 'key.json'].sort());
    const meta = JSON.parse(await readFile(c.files.find((f) => f.name === 'key.json')!.path, 'utf8'));
    expect(meta).toMatchObject({ format: 'mssql-key', kind, file: basename(String(req?.params.file)), identity: { keyGuid: KEY_GUID, modifyDate: '2024-03-01T10:00:00.123' } });
    expect(t.server.find(/WHERE k\.name = @key;$/)[0]?.params.key).toBe(kind === 'master-key' ? '##MS_DatabaseMasterKey##' : '##MS_ServiceMasterKey##');
    expect(t.server.statements().join('\n')).not.toContain(KEY_PASSWORD);
    expect(JSON.stringify(t.log)).not.toContain(KEY_PASSWORD);
    expect(JSON.stringify(c) + JSON.stringify(meta) + events.join('\n')).not.toContain(KEY_PASSWORD);
  });

  it('without a key backup password the key is not captured, and the failure names the runbook field', async () => {
    instance(t.server);
    const e = await engine({ secrets: { certificatePassword: async () => undefined } }).capture(ctx, keyItem('master-key'), 'instance-objects', {}).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'CAPTURE_FAILED', hint: expect.stringContaining('engines.mssql.keyBackupPasswordEnv') });
    expect(String((e as Error).message)).toContain('must be backed up with a password');
    expect(t.server.find(/MASTER KEY/)).toEqual([]);
  });

  it("drift of a key, read-only: the same GUID and last change → [], a regenerated key → modified, gone → deleted, an artifact without the identity → unknown", async () => {
    instance(t.server);
    t.server.on(/N'BACKUP MASTER KEY TO FILE/, writes('file'));
    t.server.on(/FROM master\.sys\.symmetric_keys AS k WHERE k\.name = @key;$/, keyIdentity(), { times: 1 });
    const e = engine({ secrets: { certificatePassword: async () => undefined, keyBackupPassword: async () => KEY_PASSWORD } });
    const item = keyItem('master-key');
    const c = await e.capture(ctx, item, 'instance-objects', {});
    const manifest: Manifest = { version: 1, artifactId: 'a', itemId: item.id, method: 'instance-objects', format: c.format, entries: c.files.map((f) => ({ path: f.name, size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) })) };
    const files = c.files.map((f) => f.path);
    const drift = async (reply: TdsReply) => {
      t.server.on(/FROM master\.sys\.symmetric_keys AS k WHERE k\.name = @key;$/, reply, { times: 1 });
      return e.drift!(ctx, item, manifest, files);
    };
    expect(await drift(keyIdentity())).toEqual([]);
    expect(await drift(keyIdentity({ modified: '2026-11-30T08:00:00.000' }))).toEqual([{ path: item.location, kind: 'modified' }]);
    expect(await drift(keyIdentity({ guid: '00000000-0000-0000-0000-000000000001' }))).toEqual([{ path: item.location, kind: 'modified' }]);
    expect(await drift(keyIdentity({ gone: true }))).toEqual([{ path: item.location, kind: 'deleted' }]);
    // read-only: no BACKUP after the capture's own
    expect(t.server.find(/BACKUP/).length).toBe(1);
    const meta = c.files.find((f) => f.name === 'key.json')!.path;
    const { identity: _dropped, ...old } = JSON.parse(await readFile(meta, 'utf8'));
    await writeFile(meta, JSON.stringify(old));
    expect(await e.drift!(ctx, item, manifest, files)).toBeUndefined();
  });
});
