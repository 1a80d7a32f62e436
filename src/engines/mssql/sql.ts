/**
 * Every statement the mssql engine sends, built as plain data
 * `{ text, params }`. Pure: tests compare these texts with what the scripted
 * TDS endpoint received.
 *
 * Rules kept here:
 * - identifiers through quoteIdentifier(); values only as parameters;
 * - where T-SQL accepts only a literal (BACKUP/CREATE CERTIFICATE passwords
 *   and file names), the client text is constant and the server assembles
 *   the inner statement from parameters with QUOTENAME() and quote doubling
 *   (`REPLACE(@v, N'''', N'''''')`), then runs it with sp_executesql. The
 *   value therefore never appears in the text Rubicon sends or logs.
 */
import { quoteIdentifier, quoteQualified } from './quote.ts';
import type { SqlParam, SqlStatement } from './session.ts';

const nv = (name: string, value: string | null, secret = false): SqlParam => ({ name, type: 'nvarchar', value, secret });
const int = (name: string, value: number | null): SqlParam => ({ name, type: 'int', value });

// ---------------------------------------------------------------- discovery

export function serverInfoStatement(): SqlStatement {
  return {
    text: `SELECT
  CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version,
  CAST(SERVERPROPERTY('ProductLevel') AS nvarchar(128)) AS product_level,
  CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition,
  CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
  CAST(SERVERPROPERTY('Collation') AS nvarchar(128)) AS collation,
  CAST(SERVERPROPERTY('MachineName') AS nvarchar(128)) AS machine_name,
  CAST(@@SERVERNAME AS nvarchar(128)) AS server_name,
  CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)) AS default_data_path,
  CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260)) AS default_log_path,
  CAST(SERVERPROPERTY('IsHadrEnabled') AS int) AS is_hadr_enabled;`,
    params: [],
  };
}

/** Databases except tempdb, with size, TDE state and backup facts from msdb. */
export function databasesStatement(): SqlStatement {
  return {
    text: `SELECT
  d.name,
  d.database_id,
  d.state_desc,
  d.recovery_model_desc,
  d.compatibility_level,
  d.collation_name,
  CAST(d.is_encrypted AS int) AS is_encrypted,
  CAST(d.is_trustworthy_on AS int) AS is_trustworthy_on,
  SUSER_SNAME(d.owner_sid) AS owner_name,
  (SELECT CAST(SUM(CAST(mf.size AS bigint)) * 8192 AS bigint) FROM sys.master_files AS mf WHERE mf.database_id = d.database_id) AS size_bytes,
  dek.encryption_state,
  CONVERT(nvarchar(130), dek.encryptor_thumbprint, 1) AS tde_thumbprint,
  cert.name AS tde_certificate,
  (SELECT MAX(bs.backup_finish_date) FROM msdb.dbo.backupset AS bs WHERE bs.database_name = d.name AND bs.type = 'D') AS last_full_backup,
  (SELECT MAX(bs.backup_finish_date) FROM msdb.dbo.backupset AS bs WHERE bs.database_name = d.name AND bs.type = 'L') AS last_log_backup,
  (SELECT COUNT_BIG(*) FROM msdb.dbo.backupset AS bs WHERE bs.database_name = d.name AND bs.encryptor_thumbprint IS NOT NULL) AS encrypted_backups
FROM sys.databases AS d
LEFT JOIN sys.dm_database_encryption_keys AS dek ON dek.database_id = d.database_id
LEFT JOIN master.sys.certificates AS cert ON cert.thumbprint = dek.encryptor_thumbprint
WHERE d.name <> N'tempdb'
ORDER BY d.name;`,
    params: [],
  };
}

export function loginsStatement(): SqlStatement {
  return {
    text: `SELECT
  sp.name,
  sp.type_desc,
  sp.sid,
  CAST(LOGINPROPERTY(sp.name, 'PasswordHash') AS varbinary(256)) AS password_hash,
  sp.default_database_name,
  sp.default_language_name,
  CAST(sp.is_disabled AS int) AS is_disabled,
  CAST(sl.is_policy_checked AS int) AS is_policy_checked,
  CAST(sl.is_expiration_checked AS int) AS is_expiration_checked,
  (SELECT STRING_AGG(r.name, N',') WITHIN GROUP (ORDER BY r.name) FROM sys.server_role_members AS rm JOIN sys.server_principals AS r ON r.principal_id = rm.role_principal_id WHERE rm.member_principal_id = sp.principal_id) AS server_roles
FROM sys.server_principals AS sp
LEFT JOIN sys.sql_logins AS sl ON sl.principal_id = sp.principal_id
WHERE sp.type IN ('S', 'U', 'G') AND sp.name NOT LIKE N'##%'
ORDER BY sp.name;`,
    params: [],
  };
}

export function jobsStatement(): SqlStatement {
  return {
    text: `SELECT
  j.job_id,
  j.name,
  CAST(j.enabled AS int) AS enabled,
  j.description,
  SUSER_SNAME(j.owner_sid) AS owner_name,
  c.name AS category_name,
  (SELECT COUNT(*) FROM msdb.dbo.sysjobsteps AS s WHERE s.job_id = j.job_id) AS step_count
FROM msdb.dbo.sysjobs AS j
LEFT JOIN msdb.dbo.syscategories AS c ON c.category_id = j.category_id
ORDER BY j.name;`,
    params: [],
  };
}

export function jobStepsStatement(): SqlStatement {
  return {
    text: `SELECT j.name AS job_name, s.step_id, s.step_name, s.subsystem, s.command, s.database_name, s.on_success_action, s.on_fail_action
FROM msdb.dbo.sysjobsteps AS s JOIN msdb.dbo.sysjobs AS j ON j.job_id = s.job_id
ORDER BY j.name, s.step_id;`,
    params: [],
  };
}

export function operatorsStatement(): SqlStatement {
  return {
    text: `SELECT o.name, CAST(o.enabled AS int) AS enabled, o.email_address FROM msdb.dbo.sysoperators AS o ORDER BY o.name;`,
    params: [],
  };
}

export function linkedServersStatement(): SqlStatement {
  return {
    text: `SELECT s.name, s.product, s.provider, s.data_source, s.catalog
FROM sys.servers AS s WHERE s.is_linked = 1 ORDER BY s.name;`,
    params: [],
  };
}

export function credentialsStatement(): SqlStatement {
  return { text: `SELECT c.name, c.credential_identity FROM sys.credentials AS c ORDER BY c.name;`, params: [] };
}

export function certificatesStatement(): SqlStatement {
  return {
    text: `SELECT
  c.name,
  CONVERT(nvarchar(130), c.thumbprint, 1) AS thumbprint,
  c.subject,
  c.expiry_date,
  c.pvt_key_encryption_type_desc,
  (SELECT COUNT(*) FROM sys.dm_database_encryption_keys AS k WHERE k.encryptor_thumbprint = c.thumbprint) AS tde_databases
FROM master.sys.certificates AS c
WHERE c.name NOT LIKE N'##%'
ORDER BY c.name;`,
    params: [],
  };
}

export function endpointsStatement(): SqlStatement {
  return {
    text: `SELECT e.name, e.protocol_desc, e.type_desc, e.state_desc FROM sys.endpoints AS e WHERE e.endpoint_id >= 65536 ORDER BY e.name;`,
    params: [],
  };
}

export function configurationStatement(): SqlStatement {
  return {
    text: `SELECT c.name, CAST(c.value AS bigint) AS value, CAST(c.value_in_use AS bigint) AS value_in_use, CAST(c.is_advanced AS int) AS is_advanced
FROM sys.configurations AS c ORDER BY c.name;`,
    params: [],
  };
}

export function startupProceduresStatement(): SqlStatement {
  return {
    text: `SELECT p.name FROM master.sys.procedures AS p WHERE OBJECTPROPERTY(p.object_id, 'ExecIsStartup') = 1 ORDER BY p.name;`,
    params: [],
  };
}

/** Global trace flags: DBCC TRACESTATUS(-1) returns TraceFlag, Status, Global, Session. */
export function traceFlagsStatement(): SqlStatement {
  return { text: `DBCC TRACESTATUS(-1) WITH NO_INFOMSGS;`, params: [] };
}

// ---------------------------------------------------------------- backup

export interface UrlDestination {
  /** Container URL, e.g. https://acct.blob.core.windows.net/backups (a SAS credential of that exact name must exist). */
  containerUrl: string;
  /** Number of block blobs to stripe over (1..64). */
  stripes: number;
}

export interface NativeBackupOptions {
  /** WITH COMPRESSION; Express edition cannot compress. Default true. */
  compression?: boolean;
}

const BACKUP_OPTIONS = ['COPY_ONLY', 'CHECKSUM', 'FORMAT', 'INIT'] as const;

/**
 * `BACKUP DATABASE [db] TO DISK = @path WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10`.
 * COPY_ONLY: the customer's differential base and log chain are untouched.
 */
export function backupToDiskStatement(database: string, path: string, o: NativeBackupOptions = {}): SqlStatement {
  return {
    text: `BACKUP DATABASE ${quoteIdentifier(database)} TO DISK = @path WITH ${backupWith(o)};`,
    params: [nv('path', path)],
    long: true,
  };
}

/**
 * Backup to Azure Blob with a SAS credential: block blobs, one URL per
 * stripe, MAXTRANSFERSIZE 4 MB and BLOCKSIZE 64 KB (required for block blobs;
 * a block blob holds ~200 GB, so large databases need several stripes).
 */
export function backupToUrlStatement(database: string, urls: string[], o: NativeBackupOptions = {}): SqlStatement {
  if (urls.length < 1 || urls.length > 64) throw new RangeError(`backup to URL needs 1..64 stripes, got ${urls.length}`);
  const to = urls.map((_, i) => `URL = @url${i + 1}`).join(', ');
  return {
    text: `BACKUP DATABASE ${quoteIdentifier(database)} TO ${to} WITH ${backupWith(o)}, MAXTRANSFERSIZE = 4194304, BLOCKSIZE = 65536;`,
    params: urls.map((u, i) => nv(`url${i + 1}`, u)),
    long: true,
  };
}

function backupWith(o: NativeBackupOptions): string {
  const opts: string[] = [BACKUP_OPTIONS[0], BACKUP_OPTIONS[1]];
  if (o.compression ?? true) opts.push('COMPRESSION');
  opts.push(BACKUP_OPTIONS[2], BACKUP_OPTIONS[3], 'STATS = 10');
  return opts.join(', ');
}

/** Stripes for a URL backup: one per started 100 GB (half a block blob's ~200 GB), 1..64. Pure. */
export function urlStripes(sizeBytes: number): number {
  const per = 100 * 1024 ** 3;
  return Math.min(64, Math.max(1, Math.ceil(sizeBytes / per)));
}

/**
 * BACKUP CERTIFICATE … WITH PRIVATE KEY: T-SQL accepts only literals here, so
 * the server builds the statement from parameters (QUOTENAME, quote
 * doubling). The password is a secret parameter: never in the text, never logged.
 */
export function backupCertificateStatement(certificate: string, certFile: string, keyFile: string, password: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'BACKUP CERTIFICATE ' + QUOTENAME(@certificate)
  + N' TO FILE = N''' + REPLACE(@certFile, N'''', N'''''') + N''''
  + N' WITH PRIVATE KEY (FILE = N''' + REPLACE(@keyFile, N'''', N'''''') + N''''
  + N', ENCRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''');';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('certificate', certificate), nv('certFile', certFile), nv('keyFile', keyFile), nv('password', password, true)],
  };
}

/** CREATE CERTIFICATE … FROM FILE … WITH PRIVATE KEY (… DECRYPTION BY PASSWORD), in master; same construction. */
export function createCertificateStatement(certificate: string, certFile: string, keyFile: string, password: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'CREATE CERTIFICATE ' + QUOTENAME(@certificate)
  + N' FROM FILE = N''' + REPLACE(@certFile, N'''', N'''''') + N''''
  + N' WITH PRIVATE KEY (FILE = N''' + REPLACE(@keyFile, N'''', N'''''') + N''''
  + N', DECRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''');';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('certificate', certificate), nv('certFile', certFile), nv('keyFile', keyFile), nv('password', password, true)],
  };
}

export function certificateByThumbprintStatement(thumbprint: string): SqlStatement {
  return {
    text: `SELECT c.name FROM master.sys.certificates AS c WHERE CONVERT(nvarchar(130), c.thumbprint, 1) = @thumbprint;`,
    params: [nv('thumbprint', thumbprint)],
  };
}

export function certificateThumbprintStatement(certificate: string): SqlStatement {
  return {
    text: `SELECT CONVERT(nvarchar(130), c.thumbprint, 1) AS thumbprint FROM master.sys.certificates AS c WHERE c.name = @certificate;`,
    params: [nv('certificate', certificate)],
  };
}

// ---------------------------------------------------------------- restore

/** `FROM DISK = @file1, DISK = @file2`: one device per stripe. */
function fromDisks(files: string[]): { text: string; params: SqlParam[] } {
  if (files.length === 0) throw new RangeError('a restore needs at least one backup file');
  return {
    text: files.map((_, i) => `DISK = @file${i + 1}`).join(', '),
    params: files.map((f, i) => nv(`file${i + 1}`, f)),
  };
}

export function headerOnlyStatement(files: string[]): SqlStatement {
  const from = fromDisks(files);
  return { text: `RESTORE HEADERONLY FROM ${from.text};`, params: from.params, long: true };
}

export function fileListOnlyStatement(files: string[], position: number): SqlStatement {
  const from = fromDisks(files);
  return { text: `RESTORE FILELISTONLY FROM ${from.text} WITH FILE = @position;`, params: [...from.params, int('position', position)], long: true };
}

export interface FileMove {
  logicalName: string;
  physicalPath: string;
}

/**
 * `RESTORE DATABASE [test] FROM DISK = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, …, CHECKSUM, RECOVERY|NORECOVERY, STATS = 10`.
 * One MOVE per file of FILELISTONLY, so nothing lands on the source's paths.
 */
export function restoreDatabaseStatement(
  testDatabase: string,
  files: string[],
  position: number,
  moves: FileMove[],
  recovery: boolean,
): SqlStatement {
  const from = fromDisks(files);
  const moveText = moves.map((_, i) => `MOVE @logical${i + 1} TO @physical${i + 1}`).join(', ');
  const moveParams = moves.flatMap((m, i) => [nv(`logical${i + 1}`, m.logicalName), nv(`physical${i + 1}`, m.physicalPath)]);
  return {
    text: `RESTORE DATABASE ${quoteIdentifier(testDatabase)} FROM ${from.text} WITH FILE = @position, ${moveText}${moves.length ? ', ' : ''}CHECKSUM, ${recovery ? 'RECOVERY' : 'NORECOVERY'}, STATS = 10;`,
    params: [...from.params, int('position', position), ...moveParams],
    long: true,
  };
}

/** RESTORE LOG for a chain step; no MOVE (the files exist from the full). */
export function restoreLogStatement(testDatabase: string, files: string[], position: number, recovery: boolean): SqlStatement {
  const from = fromDisks(files);
  return {
    text: `RESTORE LOG ${quoteIdentifier(testDatabase)} FROM ${from.text} WITH FILE = @position, CHECKSUM, ${recovery ? 'RECOVERY' : 'NORECOVERY'}, STATS = 10;`,
    params: [...from.params, int('position', position)],
    long: true,
  };
}

export function checkDbStatement(database: string): SqlStatement {
  return { text: `DBCC CHECKDB (${quoteIdentifier(database)}) WITH NO_INFOMSGS, ALL_ERRORMSGS;`, params: [], long: true };
}

export function databaseExistsStatement(database: string): SqlStatement {
  return { text: `SELECT d.name, d.state_desc FROM sys.databases AS d WHERE d.name = @database;`, params: [nv('database', database)] };
}

/**
 * Drops the scratch database. Destructive, only ever called with the
 * proving ground's test name. SINGLE_USER first so no leftover session holds it.
 */
export function dropDatabaseStatement(database: string): SqlStatement {
  const q = quoteIdentifier(database);
  return {
    text: `IF DB_ID(@database) IS NOT NULL
BEGIN
  IF DATABASEPROPERTYEX(@database, 'Status') = N'ONLINE' ALTER DATABASE ${q} SET SINGLE_USER WITH ROLLBACK IMMEDIATE;
  DROP DATABASE ${q};
END;`,
    params: [nv('database', database)],
  };
}

// ---------------------------------------------------------------- fingerprint

/** User tables and their columns with type names, for a database. */
export function tableColumnsStatement(database: string): SqlStatement {
  const db = quoteIdentifier(database);
  return {
    text: `SELECT s.name AS schema_name, t.name AS table_name, c.name AS column_name, ty.name AS type_name, CAST(ty.is_assembly_type AS int) AS is_assembly_type
FROM ${db}.sys.tables AS t
JOIN ${db}.sys.schemas AS s ON s.schema_id = t.schema_id
JOIN ${db}.sys.columns AS c ON c.object_id = t.object_id
JOIN ${db}.sys.types AS ty ON ty.user_type_id = c.user_type_id
WHERE t.is_ms_shipped = 0
ORDER BY s.name, t.name, c.column_id;`,
    params: [],
  };
}

/** `SELECT COUNT_BIG(*), CHECKSUM_AGG(BINARY_CHECKSUM(*)) FROM [db].[schema].[table]`. */
export function tableChecksumStatement(database: string, schema: string, table: string): SqlStatement {
  return {
    text: `SELECT COUNT_BIG(*) AS row_count, CHECKSUM_AGG(BINARY_CHECKSUM(*)) AS content_checksum FROM ${quoteQualified(database, schema, table)};`,
    params: [],
    long: true,
  };
}

// ---------------------------------------------------------------- msdb history and Agent jobs

const HISTORY_COLUMNS = `bs.backup_set_id, bs.database_name, bs.type, CAST(bs.is_copy_only AS int) AS is_copy_only,
  bs.backup_start_date, bs.backup_finish_date,
  CAST(bs.first_lsn AS nvarchar(30)) AS first_lsn, CAST(bs.last_lsn AS nvarchar(30)) AS last_lsn,
  CAST(bs.checkpoint_lsn AS nvarchar(30)) AS checkpoint_lsn, CAST(bs.database_backup_lsn AS nvarchar(30)) AS database_backup_lsn,
  CAST(bs.has_backup_checksums AS int) AS has_backup_checksums, CAST(bs.is_damaged AS int) AS is_damaged,
  bs.database_guid, bs.media_set_id, bs.position,
  CAST(bs.backup_size AS bigint) AS backup_size, CAST(bs.compressed_backup_size AS bigint) AS compressed_backup_size,
  CONVERT(nvarchar(130), bs.encryptor_thumbprint, 1) AS encryptor_thumbprint,
  bmf.physical_device_name, bmf.device_type, bmf.family_sequence_number`;

/** msdb backup history of a database: backupset ⋈ backupmediafamily on media_set_id, newest first by last_lsn. */
export function backupHistoryStatement(database: string): SqlStatement {
  return {
    text: `SELECT ${HISTORY_COLUMNS}
FROM msdb.dbo.backupset AS bs
JOIN msdb.dbo.backupmediafamily AS bmf ON bmf.media_set_id = bs.media_set_id
WHERE bs.database_name = @database
ORDER BY bs.last_lsn DESC, bmf.family_sequence_number;`,
    params: [nv('database', database)],
  };
}

/** backupset rows of a database newer than a baseline id: what a vendor job really wrote. */
export function newBackupsStatement(database: string, afterBackupSetId: number): SqlStatement {
  return {
    text: `SELECT ${HISTORY_COLUMNS}
FROM msdb.dbo.backupset AS bs
JOIN msdb.dbo.backupmediafamily AS bmf ON bmf.media_set_id = bs.media_set_id
WHERE bs.database_name = @database AND bs.backup_set_id > @after
ORDER BY bs.backup_set_id, bmf.family_sequence_number;`,
    params: [nv('database', database), int('after', afterBackupSetId)],
  };
}

export function backupBaselineStatement(database: string): SqlStatement {
  return {
    text: `SELECT ISNULL(MAX(bs.backup_set_id), 0) AS last_backup_set_id, SYSDATETIME() AS server_time FROM msdb.dbo.backupset AS bs WHERE bs.database_name = @database;`,
    params: [nv('database', database)],
  };
}

export function jobByNameStatement(job: string): SqlStatement {
  return {
    text: `SELECT j.job_id, j.name, CAST(j.enabled AS int) AS enabled FROM msdb.dbo.sysjobs AS j WHERE j.name = @job;`,
    params: [nv('job', job)],
  };
}

export function startJobStatement(job: string): SqlStatement {
  return { text: `EXEC msdb.dbo.sp_start_job @job_name = @job;`, params: [nv('job', job)] };
}

/** The job's row in sysjobactivity for the current Agent session (MAX(session_id) of syssessions). */
export function jobActivityStatement(jobId: string): SqlStatement {
  return {
    text: `SELECT TOP (1) ja.session_id, ja.start_execution_date, ja.stop_execution_date, ja.job_history_id, ja.last_executed_step_id
FROM msdb.dbo.sysjobactivity AS ja
WHERE ja.job_id = @jobId AND ja.session_id = (SELECT MAX(ss.session_id) FROM msdb.dbo.syssessions AS ss)
ORDER BY ja.start_execution_date DESC;`,
    params: [nv('jobId', jobId)],
  };
}

/**
 * The history rows of one job run: the step-0 (job outcome) row named by
 * sysjobactivity.job_history_id and every step row written since the job's
 * previous outcome row.
 */
export function jobRunHistoryStatement(jobId: string, historyId: number): SqlStatement {
  return {
    text: `SELECT h.instance_id, h.step_id, h.step_name, h.run_status, h.run_date, h.run_time, h.run_duration, h.message, h.sql_message_id, h.sql_severity
FROM msdb.dbo.sysjobhistory AS h
WHERE h.job_id = @jobId
  AND h.instance_id <= @historyId
  AND h.instance_id > ISNULL((SELECT MAX(p.instance_id) FROM msdb.dbo.sysjobhistory AS p WHERE p.job_id = @jobId AND p.step_id = 0 AND p.instance_id < @historyId), 0)
ORDER BY h.instance_id;`,
    params: [nv('jobId', jobId), int('historyId', historyId)],
  };
}

// ---------------------------------------------------------------- smoke

/** The proving ground's version and edition (first statement of every proof). */
export function versionStatement(): SqlStatement {
  return {
    text: `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition;`,
    params: [],
  };
}

export function smokeStatement(database: string): SqlStatement {
  const db = quoteIdentifier(database);
  return {
    text: `SELECT d.state_desc, d.user_access_desc, CAST(d.is_read_only AS int) AS is_read_only,
  (SELECT COUNT(*) FROM ${db}.sys.objects AS o WHERE o.is_ms_shipped = 0) AS user_objects
FROM sys.databases AS d WHERE d.name = @database;`,
    params: [nv('database', database)],
  };
}
