/**
 * Pure readers of SQL Server result sets into typed records, and the small
 * pure decisions made on them (version order, job outcome, backup chain).
 * Column names are SQL Server's documented ones (RESTORE HEADERONLY /
 * FILELISTONLY, msdb.dbo.sysjobhistory, msdb.dbo.backupset).
 */
import type { SqlRow } from './session.ts';

const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const num = (v: unknown): number => (v === null || v === undefined || v === '' ? 0 : Number(v));
const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';
const iso = (v: unknown): string | null => (v instanceof Date ? v.toISOString() : v ? new Date(String(v)).toISOString() : null);

// ---------------------------------------------------------------- versions

export interface SqlVersion {
  major: number;
  minor: number;
  build: number;
}

/** `16.0.4135.4` → { 16, 0, 4135 }. Returns null for anything else. */
export function parseVersion(s: string): SqlVersion | null {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(s.trim());
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), build: Number(m[3]) };
}

export const formatVersion = (v: SqlVersion): string => `${v.major}.${v.minor}.${v.build}`;

/**
 * A database restores onto the same or a newer SQL Server only. Compared on
 * major.minor as dbatools' Test-DbaLastBackup does: an older proving ground
 * is refused; a lower build of the same major.minor is allowed.
 */
export function canRestoreOnto(source: SqlVersion, provingGround: SqlVersion): boolean {
  return provingGround.major > source.major || (provingGround.major === source.major && provingGround.minor >= source.minor);
}

/** Marketing name for a major version, for plain-words messages. */
export function productName(major: number): string {
  const names: Record<number, string> = { 10: 'SQL Server 2008/2008 R2', 11: 'SQL Server 2012', 12: 'SQL Server 2014', 13: 'SQL Server 2016', 14: 'SQL Server 2017', 15: 'SQL Server 2019', 16: 'SQL Server 2022', 17: 'SQL Server 2025' };
  return names[major] ?? `SQL Server version ${major}`;
}

// ---------------------------------------------------------------- RESTORE HEADERONLY / FILELISTONLY

export interface BackupHeader {
  position: number;
  /** 1 database, 2 log, 4 file, 5 differential database, 6 differential file. */
  backupType: number;
  databaseName: string;
  serverName: string;
  /** numeric(25,0) LSNs as the driver returned them (a double: see docs/mssql.md). */
  firstLsn: number;
  lastLsn: number;
  checkpointLsn: number;
  databaseBackupLsn: number;
  backupStartDate: string | null;
  backupFinishDate: string | null;
  backupSize: number;
  compressedBackupSize: number;
  isCopyOnly: boolean;
  hasBackupChecksums: boolean;
  isDamaged: boolean;
  software: SqlVersion;
  recoveryModel: string;
  collation: string;
  keyAlgorithm: string | null;
  encryptorThumbprint: string | null;
  /** BackupSetGUID: the backup set's identity (= msdb backupset.backup_set_uuid), upper case; '' when absent. */
  backupSetGuid: string;
}

export function parseHeaderOnly(rows: SqlRow[]): BackupHeader[] {
  return rows.map((r) => ({
    position: num(r.Position),
    backupType: num(r.BackupType),
    databaseName: str(r.DatabaseName),
    serverName: str(r.ServerName),
    firstLsn: num(r.FirstLSN),
    lastLsn: num(r.LastLSN),
    checkpointLsn: num(r.CheckpointLSN),
    databaseBackupLsn: num(r.DatabaseBackupLSN),
    backupStartDate: iso(r.BackupStartDate),
    backupFinishDate: iso(r.BackupFinishDate),
    backupSize: num(r.BackupSize),
    compressedBackupSize: num(r.CompressedBackupSize),
    isCopyOnly: bool(r.IsCopyOnly),
    hasBackupChecksums: bool(r.HasBackupChecksums),
    isDamaged: bool(r.IsDamaged),
    software: { major: num(r.SoftwareVersionMajor), minor: num(r.SoftwareVersionMinor), build: num(r.SoftwareVersionBuild) },
    recoveryModel: str(r.RecoveryModel),
    collation: str(r.Collation),
    keyAlgorithm: r.KeyAlgorithm ? str(r.KeyAlgorithm) : null,
    encryptorThumbprint: thumbprint(r.EncryptorThumbprint),
    backupSetGuid: str(r.BackupSetGUID).toUpperCase(),
  }));
}

export interface BackupFile {
  logicalName: string;
  physicalName: string;
  /** D data, L log, F full-text catalog, S FILESTREAM / memory-optimized container. */
  type: string;
  fileGroupName: string;
  sizeBytes: number;
  fileId: number;
  tdeThumbprint: string | null;
}

export function parseFileListOnly(rows: SqlRow[]): BackupFile[] {
  return rows.map((r) => ({
    logicalName: str(r.LogicalName),
    physicalName: str(r.PhysicalName),
    type: str(r.Type).trim(),
    fileGroupName: str(r.FileGroupName),
    sizeBytes: num(r.Size),
    fileId: num(r.FileId ?? r.FileID),
    tdeThumbprint: thumbprint(r.TDEThumbprint),
  }));
}

/** `0xABCD…` for a varbinary thumbprint (Buffer) or an already converted string; null when absent. */
export function thumbprint(v: unknown): string | null {
  if (v === null || v === undefined || v === '') return null;
  if (v instanceof Uint8Array) return v.length === 0 ? null : `0x${Buffer.from(v).toString('hex').toUpperCase()}`;
  const s = String(v);
  return s.startsWith('0x') || s.startsWith('0X') ? `0x${s.slice(2).toUpperCase()}` : `0x${s.toUpperCase()}`;
}

// ---------------------------------------------------------------- Agent jobs

export interface JobActivity {
  sessionId: number;
  /** Server clock, as the driver returned it. */
  startExecutionDate: string | null;
  stopExecutionDate: string | null;
  jobHistoryId: number | null;
}

export function parseJobActivity(rows: SqlRow[]): JobActivity | null {
  const r = rows[0];
  if (!r) return null;
  return {
    sessionId: num(r.session_id),
    startExecutionDate: iso(r.start_execution_date),
    stopExecutionDate: iso(r.stop_execution_date),
    jobHistoryId: r.job_history_id === null || r.job_history_id === undefined ? null : num(r.job_history_id),
  };
}

/** Running: started in the current Agent session and not yet stopped. */
export const isRunning = (a: JobActivity | null): boolean => a !== null && a.startExecutionDate !== null && a.stopExecutionDate === null;

export interface JobHistoryRow {
  instanceId: number;
  stepId: number;
  stepName: string;
  /** 0 failed, 1 succeeded, 2 retry, 3 canceled, 4 in progress. */
  runStatus: number;
  runDurationSeconds: number;
  message: string;
  sqlMessageId: number;
  sqlSeverity: number;
}

/** run_duration is HHMMSS as an int (e.g. 13005 = 1 h 30 min 5 s). */
export function hhmmssToSeconds(v: number): number {
  const h = Math.floor(v / 10_000);
  const m = Math.floor((v % 10_000) / 100);
  const s = v % 100;
  return h * 3600 + m * 60 + s;
}

export function parseJobHistory(rows: SqlRow[]): JobHistoryRow[] {
  return rows.map((r) => ({
    instanceId: num(r.instance_id),
    stepId: num(r.step_id),
    stepName: str(r.step_name),
    runStatus: num(r.run_status),
    runDurationSeconds: hhmmssToSeconds(num(r.run_duration)),
    message: str(r.message),
    sqlMessageId: num(r.sql_message_id),
    sqlSeverity: num(r.sql_severity),
  }));
}

const RUN_STATUS = ['failed', 'succeeded', 'retry', 'canceled', 'in progress'];
export const runStatusName = (s: number): string => RUN_STATUS[s] ?? `status ${s}`;

export interface JobVerdict {
  ok: boolean;
  /** Plain words: every failure, naming the step. */
  problems: string[];
  steps: { stepId: number; stepName: string; status: string }[];
}

/**
 * A run succeeded only when its step-0 row says succeeded AND the last row
 * of every step says succeeded: a job "succeeds" while a step configured to
 * go on after failure failed, and that is exactly the false success to catch.
 */
export function judgeJobRun(rows: JobHistoryRow[]): JobVerdict {
  const problems: string[] = [];
  const outcome = rows.find((r) => r.stepId === 0);
  if (!outcome) problems.push('SQL Agent recorded no job outcome (step 0) for this run: history purged, or the job history limit too low');
  else if (outcome.runStatus !== 1) problems.push(`the job ${runStatusName(outcome.runStatus)}: ${outcome.message}`);
  const lastByStep = new Map<number, JobHistoryRow>();
  for (const r of rows) if (r.stepId !== 0) lastByStep.set(r.stepId, r);
  if (lastByStep.size === 0) problems.push('SQL Agent recorded no step of this run');
  const steps = [...lastByStep.values()].sort((a, b) => a.stepId - b.stepId);
  for (const s of steps) {
    if (s.runStatus !== 1) {
      problems.push(`step ${s.stepId} "${s.stepName}" ${runStatusName(s.runStatus)}${s.sqlMessageId ? ` (Msg ${s.sqlMessageId})` : ''}: ${s.message}`);
    }
  }
  return { ok: problems.length === 0, problems, steps: steps.map((s) => ({ stepId: s.stepId, stepName: s.stepName, status: runStatusName(s.runStatus) })) };
}

// ---------------------------------------------------------------- msdb backup history

export interface HistoryRow {
  backupSetId: number;
  databaseName: string;
  /** D full, I differential, L log, F file, G diff file, P partial, Q diff partial. */
  type: string;
  isCopyOnly: boolean;
  backupStartDate: string | null;
  backupFinishDate: string | null;
  /** Exact LSNs (cast to text in the query). */
  firstLsn: string;
  lastLsn: string;
  checkpointLsn: string;
  databaseBackupLsn: string;
  hasBackupChecksums: boolean;
  isDamaged: boolean;
  databaseGuid: string;
  mediaSetId: number;
  position: number;
  backupSize: number;
  compressedBackupSize: number;
  encryptorThumbprint: string | null;
  physicalDeviceName: string;
  /** 2 disk, 7 virtual device (VSS/VDI), 9 URL. */
  deviceType: number;
  familySequenceNumber: number;
  /** backup_set_uuid (= HEADERONLY BackupSetGUID), upper case. */
  backupSetUuid: string;
  /** last_recovery_fork_guid, upper case. */
  lastRecoveryForkGuid: string;
  /** backupmediafamily.mirror: 0 for the primary media, >0 for a MIRROR TO copy. */
  mirror: number;
}

export function parseHistory(rows: SqlRow[]): HistoryRow[] {
  return rows.map((r) => ({
    backupSetId: num(r.backup_set_id),
    databaseName: str(r.database_name),
    type: str(r.type).trim(),
    isCopyOnly: bool(r.is_copy_only),
    backupStartDate: iso(r.backup_start_date),
    backupFinishDate: iso(r.backup_finish_date),
    firstLsn: str(r.first_lsn),
    lastLsn: str(r.last_lsn),
    checkpointLsn: str(r.checkpoint_lsn),
    databaseBackupLsn: str(r.database_backup_lsn),
    hasBackupChecksums: bool(r.has_backup_checksums),
    isDamaged: bool(r.is_damaged),
    databaseGuid: str(r.database_guid).toUpperCase(),
    mediaSetId: num(r.media_set_id),
    position: num(r.position) || 1,
    backupSize: num(r.backup_size),
    compressedBackupSize: num(r.compressed_backup_size),
    encryptorThumbprint: thumbprint(r.encryptor_thumbprint),
    physicalDeviceName: str(r.physical_device_name),
    deviceType: num(r.device_type),
    familySequenceNumber: num(r.family_sequence_number) || 1,
    backupSetUuid: str(r.backup_set_uuid).toUpperCase(),
    lastRecoveryForkGuid: str(r.last_recovery_fork_guid).toUpperCase(),
    mirror: num(r.mirror),
  }));
}

/** One backup set with all its stripes (backupmediafamily rows), ordered by family_sequence_number. */
export interface BackupSet {
  row: HistoryRow;
  devices: string[];
}

export function groupBackupSets(rows: HistoryRow[]): BackupSet[] {
  const by = new Map<number, BackupSet>();
  for (const r of rows) {
    const s = by.get(r.backupSetId) ?? { row: r, devices: [] };
    s.devices[r.familySequenceNumber - 1] = r.physicalDeviceName;
    by.set(r.backupSetId, s);
  }
  return [...by.values()].map((s) => ({ ...s, devices: s.devices.filter((d) => d !== undefined) }));
}

const lsn = (s: string): bigint => (s === '' ? 0n : BigInt(s));

export interface BackupChain {
  full: BackupSet;
  diff?: BackupSet;
  logs: BackupSet[];
  /** Plain words: why the chain stops where it does (a gap, a damaged set). */
  notes: string[];
}

/**
 * The newest restorable chain from msdb history (pure): the newest full of
 * the newest database_guid (copy-only fulls only when `includeCopyOnly`),
 * the newest differential based on it, then the unbroken run of log backups
 * after it. Sorted by LSN, never by date (DST and clock changes misorder
 * dates). Sets whose device is not a disk file (VDI, URL) are left out with a
 * note. Returns null when there is no usable full backup.
 */
export function newestChain(
  rows: HistoryRow[],
  o: { includeCopyOnly?: boolean; excludeDevice?: (d: string) => boolean; incarnation?: { databaseGuid: string; recoveryForkGuid: string } } = {},
): BackupChain | null {
  const notes: string[] = [];
  const inc = o.incarnation && { databaseGuid: o.incarnation.databaseGuid.toUpperCase(), recoveryForkGuid: o.incarnation.recoveryForkGuid.toUpperCase() };
  let otherIncarnation = 0;
  const sets = groupBackupSets(rows.filter((r) => r.mirror === 0)).filter((s) => {
    // A database dropped and re-created, or restored WITH RECOVERY (a new fork), is another incarnation: its backups do not restore the current one.
    if (inc && (s.row.databaseGuid !== inc.databaseGuid || (s.row.lastRecoveryForkGuid !== '' && inc.recoveryForkGuid !== '' && s.row.lastRecoveryForkGuid !== inc.recoveryForkGuid))) {
      otherIncarnation += 1;
      return false;
    }
    if (s.row.deviceType !== 2) {
      notes.push(`backup set ${s.row.backupSetId} (${s.row.type}) is on device type ${s.row.deviceType}, not a disk file: left out`);
      return false;
    }
    if (o.excludeDevice && s.devices.some(o.excludeDevice)) return false;
    return true;
  });
  if (otherIncarnation > 0) notes.push(`${otherIncarnation} backup set(s) of another incarnation of the database (other database_guid or recovery fork) left out`);
  const fulls = sets
    .filter((s) => s.row.type === 'D' && !s.row.isDamaged && (o.includeCopyOnly || !s.row.isCopyOnly))
    .sort((a, b) => (lsn(b.row.lastLsn) > lsn(a.row.lastLsn) ? 1 : -1));
  const full = fulls[0];
  if (!full) return null;
  const sameDb = sets.filter((s) => s.row.databaseGuid === full.row.databaseGuid);
  const diff = sameDb
    .filter((s) => s.row.type === 'I' && !s.row.isDamaged && s.row.databaseBackupLsn === full.row.checkpointLsn)
    .sort((a, b) => (lsn(b.row.lastLsn) > lsn(a.row.lastLsn) ? 1 : -1))[0];
  const base = diff ?? full;
  const logs: BackupSet[] = [];
  let last = lsn(base.row.lastLsn);
  const candidates = sameDb.filter((s) => s.row.type === 'L').sort((a, b) => (lsn(a.row.firstLsn) > lsn(b.row.firstLsn) ? 1 : -1));
  for (const l of candidates) {
    if (lsn(l.row.lastLsn) <= last) continue; // entirely before the base
    if (lsn(l.row.firstLsn) > last) {
      notes.push(`log chain broken after LSN ${last}: next log backup starts at ${l.row.firstLsn}`);
      break;
    }
    if (l.row.isDamaged) {
      notes.push(`log backup ${l.row.backupSetId} is marked damaged in msdb: chain stops before it`);
      break;
    }
    logs.push(l);
    last = lsn(l.row.lastLsn);
  }
  return { full, ...(diff ? { diff } : {}), logs, notes };
}

/**
 * LSNs. msdb's are exact (cast to text in the query); HEADERONLY's
 * numeric(25,0) arrives through the driver as a double, which cannot hold
 * every 17-digit LSN. So: two exact LSNs are compared as integers
 * (sameExactLsn); a HEADERONLY double is compared with an exact LSN only
 * for equality after rounding the exact value the same way (no tolerance),
 * and the identity of a backup set is its BackupSetGUID, compared exactly.
 */
export function sameExactLsn(a: string, b: string): boolean {
  if (!/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) === BigInt(b);
}

/** A HEADERONLY LSN (double) against an exact one: equal doubles, nothing looser. */
export function sameLsn(header: number, exact: string): boolean {
  if (!/^\d+$/.test(exact)) return false;
  return header === Number(exact);
}

/** GUIDs compared exactly, ignoring case and braces. Empty never matches. */
export function sameGuid(a: string | undefined, b: string | undefined): boolean {
  const n = (g: string | undefined): string => (g ?? '').replace(/[{}]/g, '').toUpperCase();
  return n(a) !== '' && n(a) === n(b);
}

// ---------------------------------------------------------------- editions

/**
 * Whether BACKUP … WITH COMPRESSION is available, by SERVERPROPERTY
 * ('EngineEdition'): 3 (Enterprise, Developer, Evaluation) yes; 4 (Express)
 * no; 2 covers Standard, Web and Business Intelligence, and Web cannot
 * compress (Msg 1844), so within 2 the Edition name decides. Pure.
 */
export function canCompress(engineEdition: number, edition: string): boolean {
  if (engineEdition === 3) return true;
  if (engineEdition === 2) return !/^web\b/i.test(edition.trim());
  if (engineEdition === 4) return false;
  // Azure SQL Managed Instance (8) compresses; anything unknown: do not ask for what may be refused.
  return engineEdition === 8;
}

/** Express's per-database data limit (10 GB of data files; the log does not count). */
export const EXPRESS_DATA_LIMIT_BYTES = 10 * 1024 ** 3;

/** Editions by what they can hold: Enterprise/Developer/Evaluation 3 > Standard/Web 2 > Express 1. */
export function editionRank(engineEdition: number): number {
  return engineEdition === 3 || engineEdition === 8 ? 3 : engineEdition === 2 ? 2 : engineEdition === 4 ? 1 : 0;
}

// ---------------------------------------------------------------- DBCC CHECKDB ran

/**
 * "CHECKDB ran" only when LastGoodCheckDbTime is not older than the server
 * clock read just before CHECKDB (truncated to the second: the property is
 * a datetime). A NULL LastGoodCheckDbTime (servers before SQL Server 2016
 * SP2 do not report it) cannot show it either. Pure.
 */
export function checkDbRan(before: Date | null, lastGood: Date | null): { ok: boolean; detail: string } {
  if (!before) return { ok: false, detail: 'the server clock could not be read before DBCC CHECKDB' };
  if (!lastGood) return { ok: false, detail: 'this server does not report LastGoodCheckDbTime (SQL Server 2016 SP2 or later does): the check cannot be shown to have run; use a patched proving ground' };
  const floor = Math.floor(before.getTime() / 1000) * 1000;
  if (lastGood.getTime() < floor) {
    return { ok: false, detail: `LastGoodCheckDbTime (${lastGood.toISOString()}) is older than the server clock before CHECKDB (${new Date(floor).toISOString()}): the check cannot be shown to have run` };
  }
  return { ok: true, detail: `LastGoodCheckDbTime ${lastGood.toISOString()} >= server clock before CHECKDB ${new Date(floor).toISOString()}` };
}

// ---------------------------------------------------------------- vendor job run window

/** A backup set belongs to a job run only when it started within the run (server clock, both ends inclusive). Pure. */
export function withinRun(backupStart: string | null, runStart: string | null, runStop: string | null): boolean {
  if (!backupStart || !runStart) return false;
  const b = Date.parse(backupStart);
  // backupset dates are whole seconds; sysjobactivity has milliseconds: compare from the start's second.
  const s = Math.floor(Date.parse(runStart) / 1000) * 1000;
  const e = runStop ? Date.parse(runStop) : Number.POSITIVE_INFINITY;
  return b >= s && b <= e;
}
