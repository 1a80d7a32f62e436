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

export type Statement = SqlStatement;

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
  CAST(SERVERPROPERTY('IsHadrEnabled') AS int) AS is_hadr_enabled,
  CAST(SERVERPROPERTY('IsIntegratedSecurityOnly') AS int) AS integrated_security_only,
  CAST(SERVERPROPERTY('FilestreamEffectiveLevel') AS int) AS filestream_level,
  (SELECT CAST(c.value_in_use AS int) FROM sys.configurations AS c WHERE c.name = N'clr enabled') AS clr_enabled,
  (SELECT COUNT(*) FROM master.sys.symmetric_keys AS k WHERE k.name = N'##MS_DatabaseMasterKey##') AS master_key;`,
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
  d.owner_sid,
  CAST(d.is_read_only AS int) AS is_read_only,
  d.user_access_desc,
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

/**
 * Logins with SID, password hash, defaults, policy flags and server roles.
 * Server roles are aggregated with FOR XML PATH, ordered by name (STRING_AGG
 * needs SQL Server 2017; 2016 must be read too), so the script is deterministic.
 * `names` limits the rows (landing and the proof read the scripted logins
 * back with the same columns, instance-proof.ts); `prefix` names their
 * parameters (the proof's batch also holds the presence query's @login1…).
 */
export function loginsStatement(names?: string[], prefix = 'login'): SqlStatement {
  const f = inNames('sp.name', prefix, names);
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
  STUFF((SELECT N',' + r.name FROM sys.server_role_members AS rm JOIN sys.server_principals AS r ON r.principal_id = rm.role_principal_id WHERE rm.member_principal_id = sp.principal_id ORDER BY r.name FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, N'') AS server_roles
FROM sys.server_principals AS sp
LEFT JOIN sys.sql_logins AS sl ON sl.principal_id = sp.principal_id
WHERE sp.type IN ('S', 'U', 'G') AND sp.name NOT LIKE N'##%'${f.where}
ORDER BY sp.name;`,
    params: f.params,
  };
}

/** `WHERE <column> IN (@p1, …)` with one nvarchar parameter per name; empty filter for no names. */
function inNames(column: string, prefix: string, names: string[] | undefined): { where: string; params: SqlParam[] } {
  if (!names) return { where: '', params: [] };
  if (names.length === 0) return { where: ' AND 1 = 0', params: [] };
  return { where: ` AND ${column} IN (${names.map((_, i) => `@${prefix}${i + 1}`).join(', ')})`, params: names.map((n, i) => nv(`${prefix}${i + 1}`, n)) };
}

/**
 * SQL Agent jobs with every property SSMS scripts (owner, category, start
 * step, notification levels and operators, delete level). `names` limits the
 * rows (the proof reads the same columns back for the scripted jobs).
 */
export function jobsStatement(names?: string[]): SqlStatement {
  const f = inNames('j.name', 'job', names);
  return {
    text: `SELECT
  j.job_id,
  j.name,
  CAST(j.enabled AS int) AS enabled,
  j.description,
  SUSER_SNAME(j.owner_sid) AS owner_name,
  c.name AS category_name,
  j.start_step_id,
  j.notify_level_eventlog,
  j.notify_level_email,
  j.notify_level_netsend,
  j.notify_level_page,
  oe.name AS notify_email_operator_name,
  op.name AS notify_page_operator_name,
  onet.name AS notify_netsend_operator_name,
  j.delete_level,
  (SELECT COUNT(*) FROM msdb.dbo.sysjobsteps AS s WHERE s.job_id = j.job_id) AS step_count
FROM msdb.dbo.sysjobs AS j
LEFT JOIN msdb.dbo.syscategories AS c ON c.category_id = j.category_id
LEFT JOIN msdb.dbo.sysoperators AS oe ON oe.id = j.notify_email_operator_id
LEFT JOIN msdb.dbo.sysoperators AS op ON op.id = j.notify_page_operator_id
LEFT JOIN msdb.dbo.sysoperators AS onet ON onet.id = j.notify_netsend_operator_id
WHERE 1 = 1${f.where}
ORDER BY j.name;`,
    params: f.params,
  };
}

/** Every step with flow control (on success/fail action and step), retries, output file, proxy and flags. */
export function jobStepsStatement(names?: string[]): SqlStatement {
  const f = inNames('j.name', 'job', names);
  return {
    text: `SELECT j.name AS job_name, s.step_id, s.step_name, s.subsystem, s.command, s.database_name, s.database_user_name,
  s.on_success_action, s.on_success_step_id, s.on_fail_action, s.on_fail_step_id, s.retry_attempts, s.retry_interval,
  s.os_run_priority, s.output_file_name, s.flags, s.cmdexec_success_code, p.name AS proxy_name
FROM msdb.dbo.sysjobsteps AS s
JOIN msdb.dbo.sysjobs AS j ON j.job_id = s.job_id
LEFT JOIN msdb.dbo.sysproxies AS p ON p.proxy_id = s.proxy_id
WHERE 1 = 1${f.where}
ORDER BY j.name, s.step_id;`,
    params: f.params,
  };
}

/** The schedules attached to each job (msdb.dbo.sysjobschedules ⋈ sysschedules), every frequency column. */
export function jobSchedulesStatement(names?: string[]): SqlStatement {
  const f = inNames('j.name', 'job', names);
  return {
    text: `SELECT j.name AS job_name, sc.name AS schedule_name, CAST(sc.enabled AS int) AS enabled, sc.freq_type, sc.freq_interval,
  sc.freq_subday_type, sc.freq_subday_interval, sc.freq_relative_interval, sc.freq_recurrence_factor,
  sc.active_start_date, sc.active_end_date, sc.active_start_time, sc.active_end_time
FROM msdb.dbo.sysjobschedules AS js
JOIN msdb.dbo.sysjobs AS j ON j.job_id = js.job_id
JOIN msdb.dbo.sysschedules AS sc ON sc.schedule_id = js.schedule_id
WHERE 1 = 1${f.where}
ORDER BY j.name, sc.name, sc.schedule_id;`,
    params: f.params,
  };
}

export function operatorsStatement(): SqlStatement {
  return {
    text: `SELECT o.name, CAST(o.enabled AS int) AS enabled, o.email_address, o.pager_address, o.netsend_address, o.category_id,
  o.weekday_pager_start_time, o.weekday_pager_end_time, o.saturday_pager_start_time, o.saturday_pager_end_time,
  o.sunday_pager_start_time, o.sunday_pager_end_time, o.pager_days
FROM msdb.dbo.sysoperators AS o ORDER BY o.name;`,
    params: [],
  };
}

/** SQL Agent alerts with the operators they notify (sysnotifications) and the job they run. */
export function alertsStatement(): SqlStatement {
  return {
    text: `SELECT a.name, a.message_id, a.severity, CAST(a.enabled AS int) AS enabled, a.delay_between_responses, a.include_event_description,
  a.database_name, a.event_description_keyword, a.performance_condition, j.name AS job_name, c.name AS category_name,
  STUFF((SELECT N';' + o.name + N'=' + CAST(n.notification_method AS nvarchar(10)) FROM msdb.dbo.sysnotifications AS n JOIN msdb.dbo.sysoperators AS o ON o.id = n.operator_id WHERE n.alert_id = a.id ORDER BY o.name FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, N'') AS notifications
FROM msdb.dbo.sysalerts AS a
LEFT JOIN msdb.dbo.sysjobs AS j ON j.job_id = a.job_id
LEFT JOIN msdb.dbo.syscategories AS c ON c.category_id = a.category_id
ORDER BY a.name;`,
    params: [],
  };
}

/** SQL Agent proxies: credential, subsystems and the logins allowed to use them. */
export function proxiesStatement(): SqlStatement {
  return {
    text: `SELECT p.name, CAST(p.enabled AS int) AS enabled, p.description, cr.name AS credential_name,
  STUFF((SELECT N',' + CAST(ps.subsystem_id AS nvarchar(10)) FROM msdb.dbo.sysproxysubsystem AS ps WHERE ps.proxy_id = p.proxy_id ORDER BY ps.subsystem_id FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, N'') AS subsystems,
  STUFF((SELECT N',' + SUSER_SNAME(pl.sid) FROM msdb.dbo.sysproxylogin AS pl WHERE pl.proxy_id = p.proxy_id ORDER BY SUSER_SNAME(pl.sid) FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, N'') AS logins
FROM msdb.dbo.sysproxies AS p
LEFT JOIN sys.credentials AS cr ON cr.credential_id = p.credential_id
ORDER BY p.name;`,
    params: [],
  };
}

/** Database Mail: one row per profile × account (profiles without an account too). Passwords are never read. */
export function mailProfilesStatement(): SqlStatement {
  return {
    text: `SELECT p.name AS profile_name, p.description AS profile_description, pa.sequence_number,
  a.name AS account_name, a.email_address, a.display_name, a.replyto_address, a.description AS account_description,
  s.servername, s.port, CAST(s.enable_ssl AS int) AS enable_ssl, s.username, CAST(s.use_default_credentials AS int) AS use_default_credentials
FROM msdb.dbo.sysmail_profile AS p
LEFT JOIN msdb.dbo.sysmail_profileaccount AS pa ON pa.profile_id = p.profile_id
LEFT JOIN msdb.dbo.sysmail_account AS a ON a.account_id = pa.account_id
LEFT JOIN msdb.dbo.sysmail_server AS s ON s.account_id = a.account_id
ORDER BY p.name, pa.sequence_number, a.name;`,
    params: [],
  };
}

/** Linked-server logins: which local login maps to which remote user (names only; passwords are never read). */
export function linkedLoginsStatement(): SqlStatement {
  return {
    text: `SELECT s.name AS server_name, SUSER_SNAME(ll.local_principal_id) AS local_login, CAST(ll.uses_self_credential AS int) AS uses_self_credential, ll.remote_name
FROM sys.linked_logins AS ll JOIN sys.servers AS s ON s.server_id = ll.server_id
WHERE s.is_linked = 1
ORDER BY s.name, SUSER_SNAME(ll.local_principal_id);`,
    params: [],
  };
}

/** User-defined server roles with their members (FOR XML PATH, ordered). */
export function serverRolesStatement(): SqlStatement {
  return {
    text: `SELECT r.name, SUSER_SNAME(r.owning_principal_id) AS owner_name,
  STUFF((SELECT N',' + m.name FROM sys.server_role_members AS rm JOIN sys.server_principals AS m ON m.principal_id = rm.member_principal_id WHERE rm.role_principal_id = r.principal_id ORDER BY m.name FOR XML PATH(''), TYPE).value('.', 'nvarchar(max)'), 1, 1, N'') AS members
FROM sys.server_principals AS r
WHERE r.type = 'R' AND r.is_fixed_role = 0 AND r.name <> N'public'
ORDER BY r.name;`,
    params: [],
  };
}

/**
 * Server-level permissions of logins and user-defined server roles: class 100
 * (server: CONNECT SQL, VIEW SERVER STATE, …), 101 (on a login: IMPERSONATE),
 * 105 (on an endpoint: CONNECT). DENY CONNECT SQL is one of them.
 */
export function serverPermissionsStatement(): SqlStatement {
  return {
    text: `SELECT g.name AS grantee, p.class, p.permission_name, p.state, p.state_desc,
  CASE p.class WHEN 101 THEN (SELECT l.name FROM sys.server_principals AS l WHERE l.principal_id = p.major_id) WHEN 105 THEN (SELECT e.name FROM sys.endpoints AS e WHERE e.endpoint_id = p.major_id) END AS securable
FROM sys.server_permissions AS p
JOIN sys.server_principals AS g ON g.principal_id = p.grantee_principal_id
WHERE p.class IN (100, 101, 105) AND g.name NOT LIKE N'##%' AND g.name <> N'public' AND g.type IN ('S', 'U', 'G', 'R')
ORDER BY g.name, p.class, p.permission_name, securable;`,
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
    text: `SELECT e.name, e.protocol_desc, e.type_desc, e.state_desc, t.port, dm.role_desc, dm.connection_auth_desc, dm.encryption_algorithm_desc,
  CAST(dm.is_encryption_enabled AS int) AS is_encryption_enabled, SUSER_SNAME(e.principal_id) AS owner_name
FROM sys.endpoints AS e
LEFT JOIN sys.tcp_endpoints AS t ON t.endpoint_id = e.endpoint_id
LEFT JOIN sys.database_mirroring_endpoints AS dm ON dm.endpoint_id = e.endpoint_id
WHERE e.endpoint_id >= 65536 ORDER BY e.name;`,
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

/**
 * CREATE CERTIFICATE in a scratch database, protected there by a throwaway
 * password (ENCRYPTION BY PASSWORD), so it needs no database master key:
 * proves that the .cer/.pvk files and their password decrypt, without
 * touching master. The scratch database is dropped afterwards by the caller.
 */
export function createScratchCertificateStatement(database: string, certificate: string, certFile: string, keyFile: string, password: string, scratchPassword: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'CREATE CERTIFICATE ' + QUOTENAME(@certificate)
  + N' FROM FILE = N''' + REPLACE(@certFile, N'''', N'''''') + N''''
  + N' WITH PRIVATE KEY (FILE = N''' + REPLACE(@keyFile, N'''', N'''''') + N''''
  + N', DECRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''''
  + N', ENCRYPTION BY PASSWORD = N''' + REPLACE(@scratchPassword, N'''', N'''''') + N''');';
EXEC ${quoteIdentifier(database)}.sys.sp_executesql @stmt;`,
    params: [nv('certificate', certificate), nv('certFile', certFile), nv('keyFile', keyFile), nv('password', password, true), nv('scratchPassword', scratchPassword, true)],
  };
}

/** Thumbprint of a certificate in a given database (the scratch database of a key check). */
export function scratchCertificateThumbprintStatement(database: string, certificate: string): SqlStatement {
  return {
    text: `SELECT CONVERT(nvarchar(130), c.thumbprint, 1) AS thumbprint FROM ${quoteIdentifier(database)}.sys.certificates AS c WHERE c.name = @certificate;`,
    params: [nv('certificate', certificate)],
  };
}

/** A scratch database for key checks; the caller drops it with dropDatabaseStatement. */
export function createDatabaseStatement(database: string): SqlStatement {
  return { text: `CREATE DATABASE ${quoteIdentifier(database)};`, params: [], long: true };
}

/**
 * Creates master's database master key where there is none (idempotent),
 * encrypted by the runbook's password; returns `created` 1 or 0. A TDE
 * certificate's private key must be protected by master's DMK, so this runs
 * before such a certificate is created in master (proving ground, landing).
 */
export function ensureMasterKeyStatement(password: string): SqlStatement {
  return {
    text: `IF NOT EXISTS (SELECT 1 FROM master.sys.symmetric_keys WHERE name = N'##MS_DatabaseMasterKey##')
BEGIN
  DECLARE @stmt nvarchar(max) = N'CREATE MASTER KEY ENCRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''';';
  EXEC master.sys.sp_executesql @stmt;
  SELECT CAST(1 AS int) AS created;
END
ELSE
  SELECT CAST(0 AS int) AS created;`,
    params: [nv('password', password, true)],
  };
}

/** BACKUP MASTER KEY (master's DMK) to a file, encrypted by the runbook's password; run in master. */
export function backupMasterKeyStatement(file: string, password: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'BACKUP MASTER KEY TO FILE = N''' + REPLACE(@file, N'''', N'''''') + N''''
  + N' ENCRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''';';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('file', file), nv('password', password, true)],
  };
}

/** BACKUP SERVICE MASTER KEY to a file, encrypted by the runbook's password. */
export function backupServiceMasterKeyStatement(file: string, password: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'BACKUP SERVICE MASTER KEY TO FILE = N''' + REPLACE(@file, N'''', N'''''') + N''''
  + N' ENCRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''';';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('file', file), nv('password', password, true)],
  };
}

/**
 * RESTORE MASTER KEY into a scratch database: proves the DMK backup file
 * and its password decrypt, without touching master. Then `SELECT` whether
 * the key is there.
 */
export function restoreMasterKeyToScratchStatement(database: string, file: string, password: string, scratchPassword: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'RESTORE MASTER KEY FROM FILE = N''' + REPLACE(@file, N'''', N'''''') + N''''
  + N' DECRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''''
  + N' ENCRYPTION BY PASSWORD = N''' + REPLACE(@scratchPassword, N'''', N'''''') + N''' FORCE;';
EXEC ${quoteIdentifier(database)}.sys.sp_executesql @stmt;
SELECT COUNT(*) AS master_keys FROM ${quoteIdentifier(database)}.sys.symmetric_keys AS k WHERE k.name = N'##MS_DatabaseMasterKey##';`,
    params: [nv('file', file), nv('password', password, true), nv('scratchPassword', scratchPassword, true)],
  };
}

/** Restores master's DMK at landing from its backup (FORCE: the rebuilt instance's own DMK, if any, is replaced). Destructive on master's key only. */
export function restoreMasterKeyStatement(file: string, password: string, newPassword: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'RESTORE MASTER KEY FROM FILE = N''' + REPLACE(@file, N'''', N'''''') + N''''
  + N' DECRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''''
  + N' ENCRYPTION BY PASSWORD = N''' + REPLACE(@newPassword, N'''', N'''''') + N''' FORCE;';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('file', file), nv('password', password, true), nv('newPassword', newPassword, true)],
  };
}

/** RESTORE SERVICE MASTER KEY at landing (no FORCE: it stops rather than lose what the current key encrypts). */
export function restoreServiceMasterKeyStatement(file: string, password: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'RESTORE SERVICE MASTER KEY FROM FILE = N''' + REPLACE(@file, N'''', N'''''') + N''''
  + N' DECRYPTION BY PASSWORD = N''' + REPLACE(@password, N'''', N'''''') + N''';';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('file', file), nv('password', password, true)],
  };
}

export function certificateByThumbprintStatement(thumbprint: string): SqlStatement {
  return {
    text: `SELECT c.name FROM master.sys.certificates AS c WHERE CONVERT(nvarchar(130), c.thumbprint, 1) = @thumbprint;`,
    params: [nv('thumbprint', thumbprint)],
  };
}

/**
 * The identity of master's database master key or of the service master
 * key (`##MS_DatabaseMasterKey##` / `##MS_ServiceMasterKey##` in
 * master.sys.symmetric_keys): its GUID and last change, as text. Read-only:
 * drift of a key item without writing a new key backup on the target.
 */
export function keyIdentityStatement(kind: 'master-key' | 'service-master-key'): SqlStatement {
  return {
    text: `SELECT CONVERT(nvarchar(36), k.key_guid) AS key_guid, CONVERT(nvarchar(30), k.modify_date, 126) AS modify_date FROM master.sys.symmetric_keys AS k WHERE k.name = @key;`,
    params: [nv('key', kind === 'master-key' ? '##MS_DatabaseMasterKey##' : '##MS_ServiceMasterKey##')],
  };
}

export function certificateThumbprintStatement(certificate: string): SqlStatement {
  return {
    text: `SELECT CONVERT(nvarchar(130), c.thumbprint, 1) AS thumbprint FROM master.sys.certificates AS c WHERE c.name = @certificate;`,
    params: [nv('certificate', certificate)],
  };
}

// ---------------------------------------------------------------- restore

/**
 * `FROM DISK = @file1, DISK = @file2`: one device per stripe. A device that
 * is an https URL (a stripe blob of a backup to URL: the artifact's sidecar
 * names it, url-grant.ts makes the credential) is `URL = @fileN` instead; a
 * disk path never starts with `https://`. The URLs never carry a query
 * string (the SAS is the credential's secret).
 */
function fromDisks(files: string[]): { text: string; params: SqlParam[] } {
  if (files.length === 0) throw new RangeError('a restore needs at least one backup file');
  return {
    text: files.map((f, i) => `${isUrlDevice(f) ? 'URL' : 'DISK'} = @file${i + 1}`).join(', '),
    params: files.map((f, i) => nv(`file${i + 1}`, f)),
  };
}

/** A backup device that is a blob URL (BACKUP … TO URL), not a path on the server's disk. Pure. */
export function isUrlDevice(device: string): boolean {
  return /^https:\/\//i.test(device);
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
 * CHECKSUM only when the backup has checksums (HEADERONLY HasBackupChecksums
 * = 1): RESTORE … WITH CHECKSUM of a backup made without them fails (Msg 3187).
 */
export function restoreDatabaseStatement(
  testDatabase: string,
  files: string[],
  position: number,
  moves: FileMove[],
  recovery: boolean,
  checksum = true,
): SqlStatement {
  const from = fromDisks(files);
  const moveText = moves.map((_, i) => `MOVE @logical${i + 1} TO @physical${i + 1}`).join(', ');
  const moveParams = moves.flatMap((m, i) => [nv(`logical${i + 1}`, m.logicalName), nv(`physical${i + 1}`, m.physicalPath)]);
  return {
    text: `RESTORE DATABASE ${quoteIdentifier(testDatabase)} FROM ${from.text} WITH FILE = @position, ${moveText}${moves.length ? ', ' : ''}${checksum ? 'CHECKSUM, ' : ''}${recovery ? 'RECOVERY' : 'NORECOVERY'}, STATS = 10;`,
    params: [...from.params, int('position', position), ...moveParams],
    long: true,
  };
}

/** RESTORE LOG for a chain step; no MOVE (the files exist from the full). CHECKSUM as for RESTORE DATABASE. */
export function restoreLogStatement(testDatabase: string, files: string[], position: number, recovery: boolean, checksum = true): SqlStatement {
  const from = fromDisks(files);
  return {
    text: `RESTORE LOG ${quoteIdentifier(testDatabase)} FROM ${from.text} WITH FILE = @position, ${checksum ? 'CHECKSUM, ' : ''}${recovery ? 'RECOVERY' : 'NORECOVERY'}, STATS = 10;`,
    params: [...from.params, int('position', position)],
    long: true,
  };
}

/** RESTORE VERIFYONLY (system databases only: they are never restored under a test name). */
export function verifyOnlyStatement(files: string[], position: number, checksum: boolean): SqlStatement {
  const from = fromDisks(files);
  return { text: `RESTORE VERIFYONLY FROM ${from.text} WITH FILE = @position${checksum ? ', CHECKSUM' : ''};`, params: [...from.params, int('position', position)], long: true };
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

/**
 * User tables and their columns, for a database. Types come through
 * TYPE_NAME(system_type_id), so an alias type over ntext or xml is seen as
 * ntext or xml (its base type), and CLR types (system_type_id 240) by
 * sys.types.is_assembly_type. Computed columns and sparse column sets are
 * flagged: they are derived from other columns.
 */
export function tableColumnsStatement(database: string): SqlStatement {
  const db = quoteIdentifier(database);
  return {
    text: `SELECT s.name AS schema_name, t.name AS table_name, c.column_id, c.name AS column_name,
  TYPE_NAME(c.system_type_id) AS base_type, ty.name AS declared_type, CAST(ty.is_assembly_type AS int) AS is_assembly_type,
  CAST(c.is_computed AS int) AS is_computed, CAST(c.is_column_set AS int) AS is_column_set
FROM ${db}.sys.tables AS t
JOIN ${db}.sys.schemas AS s ON s.schema_id = t.schema_id
JOIN ${db}.sys.columns AS c ON c.object_id = t.object_id
JOIN ${db}.sys.types AS ty ON ty.user_type_id = c.user_type_id
WHERE t.is_ms_shipped = 0
ORDER BY s.name, t.name, c.column_id;`,
    params: [],
  };
}

/** How one column's value becomes bytes inside the row serialisation. */
export interface FingerprintColumn {
  name: string;
  /** Base type name (TYPE_NAME(system_type_id)), lower case; `clr` for CLR types. */
  baseType: string;
}

/** The column as varbinary(max), by base type (the cast every type allows). Pure. */
export function columnBytes(col: FingerprintColumn): string {
  const c = `r.${quoteIdentifier(col.name)}`;
  switch (col.baseType) {
    case 'text':
      return `CAST(CAST(${c} AS varchar(max)) AS varbinary(max))`;
    case 'ntext':
    case 'xml':
      return `CAST(CAST(${c} AS nvarchar(max)) AS varbinary(max))`;
    case 'sql_variant':
      // The base type too, so int 1 and nvarchar '1' differ.
      return `CAST(CAST(SQL_VARIANT_PROPERTY(${c}, 'BaseType') AS nvarchar(128)) AS varbinary(max)) + 0x00 + CAST(${c} AS varbinary(8000))`;
    default:
      return `CAST(${c} AS varbinary(max))`;
  }
}

/**
 * The row serialisation: per column, in column order, 0x00 for NULL, else
 * 0x01 + the value's byte length as binary(8) + the value's bytes. Length
 * prefixes keep ('ab','c') and ('a','bc') apart; the NULL marker keeps NULL
 * and '' apart. Pure.
 */
export function rowSerialisation(columns: FingerprintColumn[]): string {
  const parts = columns.map((col) => {
    const v = columnBytes(col);
    return `CASE WHEN r.${quoteIdentifier(col.name)} IS NULL THEN 0x00 ELSE 0x01 + CAST(CAST(DATALENGTH(${v}) AS bigint) AS binary(8)) + ${v} END`;
  });
  return ['CAST(0x AS varbinary(max))', ...parts].join('\n    + ');
}

/** The five slices (bytes 1-7, 8-14, 15-21, 22-28, 29-32) of a row's SHA-256 that are summed. */
export const HASH_SLICES: [number, number][] = [[1, 7], [8, 7], [15, 7], [22, 7], [29, 4]];

/**
 * `SELECT COUNT_BIG(*), SUM(slice 1), …, SUM(slice 5)` of HASHBYTES('SHA2_256',
 * <row serialisation>) over every row. Each slice is at most 7 bytes, so it
 * converts to a non-negative bigint and the sums (decimal(38,0)) cannot
 * overflow before 2^70 rows. The sum is order-independent and, unlike
 * CHECKSUM_AGG's XOR, a duplicated row changes it.
 *
 * HASHBYTES input: "For SQL Server 2014 (12.x) and earlier, allowed input
 * values are limited to 8000 bytes" (Microsoft's HASHBYTES page,
 * https://learn.microsoft.com/sql/t-sql/functions/hashbytes-transact-sql,
 * source MicrosoftDocs/sql-docs docs/t-sql/functions/hashbytes-transact-sql.md;
 * the 2008-2014 pages say "Allowed input values are limited to 8000 bytes"
 * without exception); from SQL Server 2016 on there is no such limit, so a
 * whole row of nvarchar(max) notes is hashed. fingerprintDatabase refuses
 * servers older than 2016 for that reason.
 */
export function tableHashStatement(database: string, schema: string, table: string, columns: FingerprintColumn[]): SqlStatement {
  const sums = HASH_SLICES.map(([from, len], i) => `SUM(CAST(CAST(SUBSTRING(x.h, ${from}, ${len}) AS bigint) AS decimal(38, 0))) AS s${i + 1}`);
  return {
    text: `SELECT COUNT_BIG(*) AS row_count,
  ${sums.join(',\n  ')}
FROM ${quoteQualified(database, schema, table)} AS r
CROSS APPLY (SELECT HASHBYTES('SHA2_256', ${rowSerialisation(columns)}) AS h) AS x;`,
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
  CAST(bs.database_guid AS nvarchar(36)) AS database_guid, bs.media_set_id, bs.position,
  CAST(bs.backup_size AS bigint) AS backup_size, CAST(bs.compressed_backup_size AS bigint) AS compressed_backup_size,
  CONVERT(nvarchar(130), bs.encryptor_thumbprint, 1) AS encryptor_thumbprint,
  CAST(bs.backup_set_uuid AS nvarchar(36)) AS backup_set_uuid, CAST(bs.last_recovery_fork_guid AS nvarchar(36)) AS last_recovery_fork_guid,
  bmf.physical_device_name, bmf.device_type, bmf.family_sequence_number, bmf.mirror`;

/** msdb backup history of a database: backupset ⋈ backupmediafamily on media_set_id, newest first by last_lsn. */
export function backupHistoryStatement(database: string): SqlStatement {
  return {
    text: `SELECT ${HISTORY_COLUMNS}
FROM msdb.dbo.backupset AS bs
JOIN msdb.dbo.backupmediafamily AS bmf ON bmf.media_set_id = bs.media_set_id
WHERE bs.database_name = @database AND bmf.mirror = 0
ORDER BY bs.last_lsn DESC, bmf.family_sequence_number;`,
    params: [nv('database', database)],
  };
}

/**
 * msdb's backup history of the instance's user databases, as evidence
 * (engines.mssql.carryBackupHistory): four result sets, each in a fixed
 * order, with the documented columns of backupmediaset, backupmediafamily
 * (mirror rows included: they are history too), backupset and backupfile
 * (learn.microsoft.com/sql/relational-databases/system-tables/backupset-transact-sql
 * and its sibling pages). The rows are those Get-DbaDbBackupHistory reads
 * (dbatools joins backupmediafamily ⋈ backupmediaset ⋈ backupset on
 * media_set_id), limited to databases that exist now (database_id > 4).
 * LSNs and GUIDs as text (numeric(25,0) does not fit a double), dates as
 * the server wrote them (style 126, the server's local time). Read-only.
 */
export function backupHistoryEvidenceStatement(): SqlStatement {
  const mine = `bs.database_name IN (SELECT d.name FROM sys.databases AS d WHERE d.database_id > 4)`;
  return {
    text: `SELECT ms.media_set_id, CAST(ms.media_uuid AS nvarchar(36)) AS media_uuid, ms.media_family_count, ms.name, ms.description, ms.software_name,
  ms.software_vendor_id, ms.MTF_major_version, ms.mirror_count, CAST(ms.is_password_protected AS int) AS is_password_protected,
  CAST(ms.is_compressed AS int) AS is_compressed, CAST(ms.is_encrypted AS int) AS is_encrypted
FROM msdb.dbo.backupmediaset AS ms
WHERE ms.media_set_id IN (SELECT bs.media_set_id FROM msdb.dbo.backupset AS bs WHERE ${mine})
ORDER BY ms.media_set_id;
SELECT mf.media_set_id, mf.family_sequence_number, mf.mirror, CAST(mf.media_family_id AS nvarchar(36)) AS media_family_id, mf.media_count,
  mf.logical_device_name, mf.physical_device_name, mf.device_type, mf.physical_block_size
FROM msdb.dbo.backupmediafamily AS mf
WHERE mf.media_set_id IN (SELECT bs.media_set_id FROM msdb.dbo.backupset AS bs WHERE ${mine})
ORDER BY mf.media_set_id, mf.family_sequence_number, mf.mirror;
SELECT bs.backup_set_id, CAST(bs.backup_set_uuid AS nvarchar(36)) AS backup_set_uuid, bs.media_set_id, bs.position, bs.name, bs.description, bs.user_name,
  bs.software_major_version, bs.software_minor_version, bs.software_build_version,
  CONVERT(nvarchar(23), bs.backup_start_date, 126) AS backup_start_date, CONVERT(nvarchar(23), bs.backup_finish_date, 126) AS backup_finish_date,
  bs.type, bs.database_name, bs.server_name, bs.machine_name, bs.recovery_model, bs.compatibility_level, bs.collation_name,
  CAST(bs.first_lsn AS nvarchar(30)) AS first_lsn, CAST(bs.last_lsn AS nvarchar(30)) AS last_lsn,
  CAST(bs.checkpoint_lsn AS nvarchar(30)) AS checkpoint_lsn, CAST(bs.database_backup_lsn AS nvarchar(30)) AS database_backup_lsn,
  CAST(bs.database_guid AS nvarchar(36)) AS database_guid, CAST(bs.family_guid AS nvarchar(36)) AS family_guid,
  CAST(bs.last_recovery_fork_guid AS nvarchar(36)) AS last_recovery_fork_guid,
  CAST(bs.is_copy_only AS int) AS is_copy_only, CAST(bs.has_backup_checksums AS int) AS has_backup_checksums, CAST(bs.is_damaged AS int) AS is_damaged,
  CAST(bs.backup_size AS nvarchar(30)) AS backup_size, CAST(bs.compressed_backup_size AS nvarchar(30)) AS compressed_backup_size,
  CONVERT(nvarchar(130), bs.encryptor_thumbprint, 1) AS encryptor_thumbprint, bs.encryptor_type, bs.key_algorithm
FROM msdb.dbo.backupset AS bs
WHERE ${mine}
ORDER BY bs.backup_set_id;
SELECT bf.backup_set_id, bf.file_number, bf.file_type, bf.logical_name, bf.physical_name, bf.filegroup_name, bf.state_desc,
  CAST(bf.file_size AS nvarchar(30)) AS file_size, CAST(bf.backup_size AS nvarchar(30)) AS backup_size, CAST(bf.is_present AS int) AS is_present
FROM msdb.dbo.backupfile AS bf
WHERE bf.backup_set_id IN (SELECT bs.backup_set_id FROM msdb.dbo.backupset AS bs WHERE ${mine})
ORDER BY bf.backup_set_id, bf.file_number;`,
    params: [],
  };
}

/** backupset rows of a database newer than a baseline id: what a vendor job really wrote. */
export function newBackupsStatement(database: string, afterBackupSetId: number): SqlStatement {
  return {
    text: `SELECT ${HISTORY_COLUMNS}
FROM msdb.dbo.backupset AS bs
JOIN msdb.dbo.backupmediafamily AS bmf ON bmf.media_set_id = bs.media_set_id
WHERE bs.database_name = @database AND bs.backup_set_id > @after AND bmf.mirror = 0
ORDER BY bs.backup_set_id, bmf.family_sequence_number;`,
    params: [nv('database', database), int('after', afterBackupSetId)],
  };
}

/** msdb's row of one backup set by its GUID (HEADERONLY BackupSetGUID = backupset.backup_set_uuid): its exact LSNs. */
export function backupSetByGuidStatement(guid: string): SqlStatement {
  return {
    text: `SELECT ${HISTORY_COLUMNS}
FROM msdb.dbo.backupset AS bs
JOIN msdb.dbo.backupmediafamily AS bmf ON bmf.media_set_id = bs.media_set_id
WHERE bs.backup_set_uuid = @guid AND bmf.mirror = 0
ORDER BY bmf.family_sequence_number;`,
    params: [nv('guid', guid)],
  };
}

/** The current incarnation of a database: its database_guid and recovery fork (msdb history is filtered by both). */
export function databaseIncarnationStatement(database: string): SqlStatement {
  return {
    text: `SELECT CAST(drs.database_guid AS nvarchar(36)) AS database_guid, CAST(drs.recovery_fork_guid AS nvarchar(36)) AS recovery_fork_guid
FROM sys.database_recovery_status AS drs WHERE drs.database_id = DB_ID(@database);`,
    params: [nv('database', database)],
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

// ---------------------------------------------------------------- after a restore (proving ground and landing)

/**
 * What must survive the restore, read from the source at capture and from
 * the restored copy after it: compatibility level, collation, owner (name
 * and SID), TRUSTWORTHY, FILESTREAM filegroups, user CLR assemblies; then a
 * second result set with the edition-specific features in use
 * (sys.dm_db_persisted_sku_features). Read-only.
 */
export function databaseFeaturesStatement(database: string): SqlStatement {
  const db = quoteIdentifier(database);
  return {
    text: `SELECT d.compatibility_level, d.collation_name, SUSER_SNAME(d.owner_sid) AS owner_name, CONVERT(nvarchar(200), d.owner_sid, 1) AS owner_sid,
  CAST(d.is_trustworthy_on AS int) AS is_trustworthy_on,
  CAST(SERVERPROPERTY('Collation') AS nvarchar(128)) AS instance_collation,
  (SELECT COUNT(*) FROM ${db}.sys.filegroups AS fg WHERE fg.type = 'FD') AS filestream_filegroups,
  (SELECT COUNT(*) FROM ${db}.sys.assemblies AS a WHERE a.is_user_defined = 1) AS clr_assemblies
FROM sys.databases AS d WHERE d.name = @database;
SELECT f.feature_name FROM ${db}.sys.dm_db_persisted_sku_features AS f ORDER BY f.feature_name;`,
    params: [nv('database', database)],
  };
}

/**
 * Orphaned users: SQL users (authentication INSTANCE) of the database whose
 * SID matches no login, with the login of the same name if there is one
 * (the fix at landing). dbo, guest, INFORMATION_SCHEMA and sys are left out.
 */
export function orphanedUsersStatement(database: string): SqlStatement {
  const db = quoteIdentifier(database);
  return {
    text: `SELECT dp.name AS user_name, CONVERT(nvarchar(200), dp.sid, 1) AS user_sid, byname.name AS login_by_name
FROM ${db}.sys.database_principals AS dp
LEFT JOIN sys.server_principals AS bysid ON bysid.sid = dp.sid
LEFT JOIN sys.server_principals AS byname ON byname.name = dp.name COLLATE DATABASE_DEFAULT AND byname.type IN ('S', 'U', 'G')
WHERE dp.type = 'S' AND dp.authentication_type = 1 AND dp.sid IS NOT NULL AND dp.principal_id > 4 AND bysid.sid IS NULL
ORDER BY dp.name;`,
    params: [],
  };
}

/** Maps an orphaned user to the login of that name (landing). Changes that user only. */
export function remapUserStatement(database: string, user: string, login: string): SqlStatement {
  return {
    text: `DECLARE @stmt nvarchar(max) = N'ALTER USER ' + QUOTENAME(@user) + N' WITH LOGIN = ' + QUOTENAME(@login) + N';';
EXEC ${quoteIdentifier(database)}.sys.sp_executesql @stmt;`,
    params: [nv('user', user), nv('login', login)],
  };
}

/** The source's owner back on the landed database (RESTORE makes the restoring login the owner). */
export function setOwnerStatement(database: string, login: string): SqlStatement {
  return { text: `ALTER AUTHORIZATION ON DATABASE::${quoteIdentifier(database)} TO ${quoteIdentifier(login)};`, params: [] };
}

/** RESTORE always turns TRUSTWORTHY off; landing turns it back on when the source had it. */
export function setTrustworthyStatement(database: string): SqlStatement {
  return { text: `ALTER DATABASE ${quoteIdentifier(database)} SET TRUSTWORTHY ON;`, params: [] };
}

/**
 * A vendor-declared smoke query, run in the database's context inside a
 * transaction that is always rolled back (XACT_ABORT: an error rolls it back
 * too), so a query that writes leaves nothing behind. The query text is a
 * parameter: the vendor's text is never spliced into Rubicon's statement.
 */
export function smokeQueryStatement(database: string, query: string): SqlStatement {
  return {
    text: `SET XACT_ABORT ON;
BEGIN TRANSACTION;
EXEC ${quoteIdentifier(database)}.sys.sp_executesql @query;
IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;`,
    params: [nv('query', query)],
    long: true,
  };
}

/** The server clock, read just before DBCC CHECKDB (LastGoodCheckDbTime must not be older). */
export function serverClockStatement(): SqlStatement {
  return { text: `SELECT SYSDATETIME() AS server_now;`, params: [] };
}

/** LastGoodCheckDbTime of a database (NULL on servers that do not report it). */
export function lastGoodCheckDbStatement(database: string): SqlStatement {
  return {
    text: `SELECT CAST(DATABASEPROPERTYEX(@database, 'LastGoodCheckDbTime') AS datetime2) AS last_good, SYSDATETIME() AS server_now;`,
    params: [nv('database', database)],
  };
}

/** The proving ground's / landing server's version, edition and what a restore there depends on. */
export function targetServerStatement(): SqlStatement {
  return {
    text: `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition,
  CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition, CAST(SERVERPROPERTY('Collation') AS nvarchar(128)) AS collation,
  CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)) AS default_data_path, CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260)) AS default_log_path,
  CAST(SERVERPROPERTY('FilestreamEffectiveLevel') AS int) AS filestream_level,
  CAST(SERVERPROPERTY('IsIntegratedSecurityOnly') AS int) AS integrated_security_only,
  (SELECT CAST(c.value_in_use AS int) FROM sys.configurations AS c WHERE c.name = N'clr enabled') AS clr_enabled;`,
    params: [],
  };
}
