/**
 * Builders for SQL Server-shaped replies (column names and types as SQL
 * Server documents them) and a scripted endpoint wired to an mssql
 * connection config. Shared by the mssql engine tests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { RubiconError } from '../../../src/core/errors.ts';
import type { Host } from '../../../src/hosts/host.ts';
import type { MssqlConnectionConfig, StatementLogEntry } from '../../../src/engines/mssql/session.ts';
import { TdsServer, type TdsColumn, type TdsReply, type TdsResultSet, type TdsServerOptions, type TdsType } from '../../tds/server.ts';

export function rs(columns: [string, TdsType, { precision?: number; scale?: number }?][], rows: Record<string, unknown>[]): TdsResultSet {
  return { columns: columns.map(([name, type, o]): TdsColumn => ({ name, type, ...o })), rows };
}

export const one = (set: TdsResultSet): TdsReply => ({ resultSets: [set] });

export interface Scripted {
  server: TdsServer;
  config: MssqlConnectionConfig;
  log: StatementLogEntry[];
  stop(): Promise<void>;
}

/** A scripted endpoint on loopback and the connection config for it (encrypt false: the endpoint has no TLS). */
export async function scripted(options: TdsServerOptions = {}): Promise<Scripted> {
  const server = new TdsServer(options);
  const port = await server.start();
  return {
    server,
    config: { server: '127.0.0.1', port, user: 'rubicon', password: 'not-a-secret', encrypt: false, trustServerCertificate: true, requestTimeoutMs: 10_000 },
    log: [],
    stop: () => server.stop(),
  };
}

/** A Host over a temporary folder (only resolve() is used by the mssql engine). */
export async function tempHost(): Promise<{ host: Host; root: string; dispose(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'rubicon-mssql-'));
  const host: Host = {
    name: 'test-host',
    kind: 'local',
    resolve(relative: string): string {
      const p = resolve(root, relative);
      if (p !== root && !p.startsWith(root + sep)) throw new RubiconError('ARGUMENTS_INVALID', `path ${relative} escapes the host root`);
      return p;
    },
    exec(): never {
      throw new Error('exec is not used by the mssql engine');
    },
  };
  return { host, root, dispose: () => rm(root, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------- documented result shapes

export interface HeaderSpec {
  position?: number;
  backupType?: number;
  databaseName: string;
  lastLsn?: string;
  isCopyOnly?: boolean;
  hasBackupChecksums?: boolean;
  isDamaged?: boolean;
  software?: [number, number, number];
  encryptorThumbprint?: Buffer | null;
  /** BackupSetGUID; default BACKUP_SET_GUID. */
  backupSetGuid?: string;
}

/** The BackupSetGUID every scripted HEADERONLY reports unless a test says otherwise. */
export const BACKUP_SET_GUID = '3F2504E0-4F89-41D3-9A0C-0305E82C3301';

/** RESTORE HEADERONLY: the documented columns Rubicon reads, with their SQL Server types. */
export function headerOnly(specs: HeaderSpec[]): TdsReply {
  return one(
    rs(
      [
        ['BackupName', 'nvarchar'],
        ['BackupType', 'smallint'],
        ['Compressed', 'tinyint'],
        ['Position', 'smallint'],
        ['DeviceType', 'tinyint'],
        ['UserName', 'nvarchar'],
        ['ServerName', 'nvarchar'],
        ['DatabaseName', 'nvarchar'],
        ['BackupSize', 'decimal', { precision: 20 }],
        ['FirstLSN', 'decimal', { precision: 25 }],
        ['LastLSN', 'decimal', { precision: 25 }],
        ['CheckpointLSN', 'decimal', { precision: 25 }],
        ['DatabaseBackupLSN', 'decimal', { precision: 25 }],
        ['BackupStartDate', 'datetime'],
        ['BackupFinishDate', 'datetime'],
        ['SoftwareVersionMajor', 'int'],
        ['SoftwareVersionMinor', 'int'],
        ['SoftwareVersionBuild', 'int'],
        ['MachineName', 'nvarchar'],
        ['RecoveryModel', 'nvarchar'],
        ['Collation', 'nvarchar'],
        ['HasBackupChecksums', 'bit'],
        ['IsDamaged', 'bit'],
        ['IsCopyOnly', 'bit'],
        ['CompressedBackupSize', 'decimal', { precision: 20 }],
        ['KeyAlgorithm', 'nvarchar'],
        ['EncryptorThumbprint', 'varbinary'],
        ['BackupSetGUID', 'uniqueidentifier'],
      ],
      specs.map((s) => ({
        BackupName: null,
        BackupType: s.backupType ?? 1,
        Compressed: 1,
        Position: s.position ?? 1,
        DeviceType: 2,
        UserName: 'sa',
        ServerName: 'EHR-SQL01',
        DatabaseName: s.databaseName,
        BackupSize: '104857600',
        FirstLSN: '37000000041600001',
        LastLSN: s.lastLsn ?? '37000000043200001',
        CheckpointLSN: '37000000041600037',
        DatabaseBackupLSN: '0',
        BackupStartDate: new Date('2025-01-10T02:00:00Z'),
        BackupFinishDate: new Date('2025-01-10T02:03:00Z'),
        SoftwareVersionMajor: s.software?.[0] ?? 15,
        SoftwareVersionMinor: s.software?.[1] ?? 0,
        SoftwareVersionBuild: s.software?.[2] ?? 4355,
        MachineName: 'EHR-SQL01',
        RecoveryModel: 'FULL',
        Collation: 'SQL_Latin1_General_CP1_CI_AS',
        HasBackupChecksums: s.hasBackupChecksums ?? true,
        IsDamaged: s.isDamaged ?? false,
        IsCopyOnly: s.isCopyOnly ?? true,
        CompressedBackupSize: '20971520',
        KeyAlgorithm: null,
        EncryptorThumbprint: s.encryptorThumbprint ?? null,
        BackupSetGUID: s.backupSetGuid ?? BACKUP_SET_GUID,
      })),
    ),
  );
}

/** RESTORE FILELISTONLY: documented columns. */
export function fileListOnly(files: { logical: string; physical: string; type: 'D' | 'L' | 'S'; fileId: number }[]): TdsReply {
  return one(
    rs(
      [
        ['LogicalName', 'nvarchar'],
        ['PhysicalName', 'nvarchar'],
        ['Type', 'nvarchar'],
        ['FileGroupName', 'nvarchar'],
        ['Size', 'decimal', { precision: 20 }],
        ['MaxSize', 'decimal', { precision: 20 }],
        ['FileId', 'bigint'],
        ['IsPresent', 'bit'],
        ['TDEThumbprint', 'varbinary'],
      ],
      files.map((f) => ({
        LogicalName: f.logical,
        PhysicalName: f.physical,
        Type: f.type,
        FileGroupName: f.type === 'L' ? null : 'PRIMARY',
        Size: '8388608',
        MaxSize: '35184372080640',
        FileId: f.fileId,
        IsPresent: true,
        TDEThumbprint: null,
      })),
    ),
  );
}

/** The INFO messages a successful RESTORE DATABASE sends. */
export function restoreOk(database: string): TdsReply {
  return {
    infos: [
      { number: 3211, class: 0, message: '100 percent processed.' },
      { number: 4035, class: 0, message: `Processed 368 pages for database '${database}', file 'EHR' on file 1.` },
      { number: 3014, class: 0, message: 'RESTORE DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).' },
    ],
  };
}

/** SERVERPROPERTY('EngineEdition') for an Edition name: 2 Standard/Web/BI, 3 Enterprise/Developer/Evaluation, 4 Express. */
export function engineEditionOf(edition: string): number {
  if (/express/i.test(edition)) return 4;
  if (/enterprise|developer|evaluation/i.test(edition)) return 3;
  return 2;
}

export function serverInfoReply(version = '15.0.4355.3', edition = 'Standard Edition (64-bit)', o: { integratedSecurityOnly?: number; masterKey?: number } = {}): TdsReply {
  return one(
    rs(
      [
        ['product_version', 'nvarchar'],
        ['product_level', 'nvarchar'],
        ['edition', 'nvarchar'],
        ['engine_edition', 'int'],
        ['collation', 'nvarchar'],
        ['machine_name', 'nvarchar'],
        ['server_name', 'nvarchar'],
        ['default_data_path', 'nvarchar'],
        ['default_log_path', 'nvarchar'],
        ['is_hadr_enabled', 'int'],
        ['integrated_security_only', 'int'],
        ['filestream_level', 'int'],
        ['clr_enabled', 'int'],
        ['master_key', 'int'],
      ],
      [{ product_version: version, product_level: 'RTM', edition, engine_edition: engineEditionOf(edition), collation: 'SQL_Latin1_General_CP1_CI_AS', machine_name: 'EHR-SQL01', server_name: 'EHR-SQL01', default_data_path: 'D:\\Data\\', default_log_path: 'L:\\Log\\', is_hadr_enabled: 0, integrated_security_only: o.integratedSecurityOnly ?? 0, filestream_level: 0, clr_enabled: 0, master_key: o.masterKey ?? 1 }],
    ),
  );
}

export interface DbSpec {
  name: string;
  id?: number;
  state?: string;
  tdeThumbprint?: string | null;
  tdeCertificate?: string | null;
  lastFull?: Date | null;
  recovery?: string;
  /** MULTI_USER (default), SINGLE_USER or RESTRICTED_USER. */
  userAccess?: string;
}

export function databasesReply(dbs: DbSpec[]): TdsReply {
  return one(
    rs(
      [
        ['name', 'nvarchar'],
        ['database_id', 'int'],
        ['state_desc', 'nvarchar'],
        ['recovery_model_desc', 'nvarchar'],
        ['compatibility_level', 'tinyint'],
        ['collation_name', 'nvarchar'],
        ['is_encrypted', 'int'],
        ['is_trustworthy_on', 'int'],
        ['owner_name', 'nvarchar'],
        ['is_read_only', 'int'],
        ['user_access_desc', 'nvarchar'],
        ['size_bytes', 'bigint'],
        ['encryption_state', 'int'],
        ['tde_thumbprint', 'nvarchar'],
        ['tde_certificate', 'nvarchar'],
        ['last_full_backup', 'datetime'],
        ['last_log_backup', 'datetime'],
        ['encrypted_backups', 'bigint'],
      ],
      dbs.map((d, i) => ({
        name: d.name,
        database_id: d.id ?? 5 + i,
        state_desc: d.state ?? 'ONLINE',
        recovery_model_desc: d.recovery ?? 'FULL',
        compatibility_level: 150,
        collation_name: 'SQL_Latin1_General_CP1_CI_AS',
        is_encrypted: d.tdeThumbprint ? 1 : 0,
        is_trustworthy_on: 0,
        owner_name: 'sa',
        is_read_only: 0,
        user_access_desc: d.userAccess ?? 'MULTI_USER',
        size_bytes: 52428800n,
        encryption_state: d.tdeThumbprint ? 3 : null,
        tde_thumbprint: d.tdeThumbprint ?? null,
        tde_certificate: d.tdeCertificate ?? null,
        last_full_backup: d.lastFull === undefined ? new Date('2025-01-09T23:00:00Z') : d.lastFull,
        last_log_backup: null,
        encrypted_backups: 0,
      })),
    ),
  );
}

export const ok: TdsReply = {};

export interface DbFacts {
  compatibility?: number;
  collation?: string;
  owner?: string;
  trustworthy?: boolean;
  instanceCollation?: string;
  filestream?: number;
  clr?: number;
  skuFeatures?: string[];
}

/** databaseFeaturesStatement: the database's settings, then its persisted SKU features (two result sets). */
export function databaseFeaturesReply(f: DbFacts = {}): TdsReply {
  return {
    resultSets: [
      rs(
        [['compatibility_level', 'tinyint'], ['collation_name', 'nvarchar'], ['owner_name', 'nvarchar'], ['owner_sid', 'nvarchar'], ['is_trustworthy_on', 'int'], ['instance_collation', 'nvarchar'], ['filestream_filegroups', 'int'], ['clr_assemblies', 'int']],
        [{ compatibility_level: f.compatibility ?? 150, collation_name: f.collation ?? 'SQL_Latin1_General_CP1_CI_AS', owner_name: f.owner ?? 'sa', owner_sid: '0x01', is_trustworthy_on: f.trustworthy ? 1 : 0, instance_collation: f.instanceCollation ?? 'SQL_Latin1_General_CP1_CI_AS', filestream_filegroups: f.filestream ?? 0, clr_assemblies: f.clr ?? 0 }],
      ),
      rs([['feature_name', 'nvarchar']], (f.skuFeatures ?? []).map((feature_name) => ({ feature_name }))),
    ],
  };
}

/** Matches databaseFeaturesStatement. */
export const DB_FEATURES = /sys\.dm_db_persisted_sku_features/;
/** Matches the fingerprint's version read (versionStatement). */
export const VERSION_READ = /AS edition;$/;

/** Columns as tableColumnsStatement returns them. */
export function columnsReply(cols: { schema?: string; table: string; column: string; base: string; declared?: string; clr?: boolean; computed?: boolean; columnSet?: boolean }[]): TdsReply {
  return one(
    rs(
      [['schema_name', 'nvarchar'], ['table_name', 'nvarchar'], ['column_id', 'int'], ['column_name', 'nvarchar'], ['base_type', 'nvarchar'], ['declared_type', 'nvarchar'], ['is_assembly_type', 'int'], ['is_computed', 'int'], ['is_column_set', 'int']],
      cols.map((c, i) => ({ schema_name: c.schema ?? 'dbo', table_name: c.table, column_id: i + 1, column_name: c.column, base_type: c.clr ? null : c.base, declared_type: c.declared ?? c.base, is_assembly_type: c.clr ? 1 : 0, is_computed: c.computed ? 1 : 0, is_column_set: c.columnSet ? 1 : 0 })),
    ),
  );
}

/** tableHashStatement's reply: the row count and the five slice sums. */
export function tableHashReply(rows: number, sums: [string, string, string, string, string] = ['1', '2', '3', '4', '5']): TdsReply {
  return one(
    rs(
      [['row_count', 'bigint'], ['s1', 'decimal', { precision: 38 }], ['s2', 'decimal', { precision: 38 }], ['s3', 'decimal', { precision: 38 }], ['s4', 'decimal', { precision: 38 }], ['s5', 'decimal', { precision: 38 }]],
      [{ row_count: rows, s1: sums[0], s2: sums[1], s3: sums[2], s4: sums[3], s5: sums[4] }],
    ),
  );
}

/** The table hash statement of one table, matched by its FROM line. */
export const tableHashOf = (table: string): RegExp => new RegExp(`\\.\\[dbo\\]\\.\\[${table}\\] AS r\\n`);

/** The proving ground's / landing server's facts (targetServerStatement). */
export function targetServerReply(version = '16.0.4135.4', edition = 'Developer Edition (64-bit)', o: { dataPath?: string; logPath?: string; filestream?: number; clr?: number; collation?: string } = {}): TdsReply {
  return one(
    rs(
      [['product_version', 'nvarchar'], ['edition', 'nvarchar'], ['engine_edition', 'int'], ['collation', 'nvarchar'], ['default_data_path', 'nvarchar'], ['default_log_path', 'nvarchar'], ['filestream_level', 'int'], ['integrated_security_only', 'int'], ['clr_enabled', 'int']],
      [{ product_version: version, edition, engine_edition: engineEditionOf(edition), collation: o.collation ?? 'SQL_Latin1_General_CP1_CI_AS', default_data_path: o.dataPath ?? '/var/opt/mssql/data/', default_log_path: o.logPath ?? '/var/opt/mssql/log/', filestream_level: o.filestream ?? 0, integrated_security_only: 0, clr_enabled: o.clr ?? 0 }],
    ),
  );
}

/** The server clock read before CHECKDB, and LastGoodCheckDbTime read after: by default a check that ran now. */
export function checkDbClock(server: TdsServer, o: { lastGood?: () => Date | null } = {}): void {
  server.on('SELECT SYSDATETIME() AS server_now;', () => one(rs([['server_now', 'datetime']], [{ server_now: new Date() }])));
  server.on(/LastGoodCheckDbTime/, () => one(rs([['last_good', 'datetime'], ['server_now', 'datetime']], [{ last_good: o.lastGood ? o.lastGood() : new Date(Date.now() + 1000), server_now: new Date() }])));
}

/** Orphaned users (orphanedUsersStatement): none by default. */
export function orphansReply(users: { user: string; loginByName?: string | null }[] = []): TdsReply {
  return one(rs([['user_name', 'nvarchar'], ['user_sid', 'nvarchar'], ['login_by_name', 'nvarchar']], users.map((u) => ({ user_name: u.user, user_sid: '0x0102', login_by_name: u.loginByName ?? null }))));
}
export const ORPHANS = /authentication_type = 1/;

// ---------------------------------------------------------------- SQL Agent job as msdb returns it
export const JOB_COLS: [string, 'nvarchar' | 'int' | 'uniqueidentifier'][] = [
  ['job_id', 'uniqueidentifier'], ['name', 'nvarchar'], ['enabled', 'int'], ['description', 'nvarchar'], ['owner_name', 'nvarchar'], ['category_name', 'nvarchar'], ['start_step_id', 'int'],
  ['notify_level_eventlog', 'int'], ['notify_level_email', 'int'], ['notify_level_netsend', 'int'], ['notify_level_page', 'int'],
  ['notify_email_operator_name', 'nvarchar'], ['notify_page_operator_name', 'nvarchar'], ['notify_netsend_operator_name', 'nvarchar'], ['delete_level', 'int'], ['step_count', 'int'],
];
export const JOB_ROW = {
  job_id: '2B5D3C1A-0F4E-4A8B-9C7D-6E5F4A3B2C1D', name: 'EHR Nightly Backup', enabled: 1, description: 'vendor backup', owner_name: 'ehr_owner', category_name: 'EHR Vendor', start_step_id: 1,
  notify_level_eventlog: 2, notify_level_email: 2, notify_level_netsend: 0, notify_level_page: 0, notify_email_operator_name: 'DBA Team', delete_level: 0, step_count: 2,
};
export const STEP_COLS: [string, 'nvarchar' | 'int'][] = [
  ['job_name', 'nvarchar'], ['step_id', 'int'], ['step_name', 'nvarchar'], ['subsystem', 'nvarchar'], ['command', 'nvarchar'], ['database_name', 'nvarchar'], ['database_user_name', 'nvarchar'],
  ['on_success_action', 'int'], ['on_success_step_id', 'int'], ['on_fail_action', 'int'], ['on_fail_step_id', 'int'], ['retry_attempts', 'int'], ['retry_interval', 'int'],
  ['os_run_priority', 'int'], ['output_file_name', 'nvarchar'], ['flags', 'int'], ['cmdexec_success_code', 'int'], ['proxy_name', 'nvarchar'],
];
export const STEP_ROWS = [
  { job_name: 'EHR Nightly Backup', step_id: 1, step_name: 'backup', subsystem: 'TSQL', command: 'EXEC dbo.VendorBackup;', database_name: 'master', on_success_action: 4, on_success_step_id: 3, on_fail_action: 4, on_fail_step_id: 2, retry_attempts: 3, retry_interval: 5, os_run_priority: 0, output_file_name: 'E:\\Logs\\backup.txt', flags: 2, cmdexec_success_code: 0 },
  { job_name: 'EHR Nightly Backup', step_id: 2, step_name: 'copy', subsystem: 'CmdExec', command: 'robocopy E:\\Backup \\\\nas\\ehr /MIR', database_name: null, on_success_action: 1, on_success_step_id: 0, on_fail_action: 2, on_fail_step_id: 0, retry_attempts: 0, retry_interval: 0, os_run_priority: 0, flags: 0, cmdexec_success_code: 1, proxy_name: 'FileCopyProxy' },
];
export const SCHEDULE_COLS: [string, 'nvarchar' | 'int'][] = [
  ['job_name', 'nvarchar'], ['schedule_name', 'nvarchar'], ['enabled', 'int'], ['freq_type', 'int'], ['freq_interval', 'int'], ['freq_subday_type', 'int'], ['freq_subday_interval', 'int'],
  ['freq_relative_interval', 'int'], ['freq_recurrence_factor', 'int'], ['active_start_date', 'int'], ['active_end_date', 'int'], ['active_start_time', 'int'], ['active_end_time', 'int'],
];
export const SCHEDULE_ROW = {
  job_name: 'EHR Nightly Backup', schedule_name: 'nightly 02:00', enabled: 1, freq_type: 4, freq_interval: 1, freq_subday_type: 1, freq_subday_interval: 0, freq_relative_interval: 0, freq_recurrence_factor: 0,
  active_start_date: 20240101, active_end_date: 99991231, active_start_time: 20000, active_end_time: 235959,
};
