/**
 * Proving a SQL Server artifact on the proving ground's SQL Server, from the
 * artifact's own files (fetched from a vault) and nothing else.
 *
 *   version       proving ground >= source (major.minor), else refuse
 *   certificates  every certificate file of the artifact tested in a scratch
 *                 database (decrypted with its password, thumbprint compared,
 *                 scratch dropped), then restored into master where missing
 *                 (master's DMK created first where missing)
 *   restore       HEADERONLY (BackupSetGUID exactly the captured one) →
 *                 FILELISTONLY (Express 10 GB, FILESTREAM) → one MOVE per file
 *                 → RESTORE … [WITH CHECKSUM when the backup has checksums]
 *                 under a test name; ONLINE and "successfully processed" (3014)
 *   integrity     DBCC CHECKDB … WITH NO_INFOMSGS, ALL_ERRORMSGS, every message
 *                 kept; LastGoodCheckDbTime >= the server clock read just before
 *   fingerprint-source  the restored copy's fingerprint vs the source's, and
 *                 what the source fingerprint is comparable with (frozen/live)
 *   database-settings   compatibility level, collation against the instance's,
 *                 edition features, owner and TRUSTWORTHY (set at landing),
 *                 orphaned users (found; fixed at landing)
 *   smoke         the database answers; the runbook's vendor smoke queries
 *                 return the declared shape
 *   cleanup       the test database dropped, whatever happened before
 *
 * System databases (master, model, msdb) are not restored under a test
 * name: a restored master is not a user database (CHECKDB and its catalog
 * would not prove the instance), and restoring over the proving ground's
 * own would destroy it. They get HEADERONLY (GUID) + RESTORE VERIFYONLY
 * [WITH CHECKSUM], and the proof says that is all; what lives in msdb
 * (jobs, operators, alerts, proxies, mail) is carried by its own items.
 *
 * Contracts: a check that did not run is `skipped` (never passed); after the
 * first failure the rest are skipped with the reason; the test database is
 * dropped at the end even after a failure (the `cleanup` check). Returns
 * results, never throws for a bad backup. Never touches the target.
 */
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import type { Fingerprint, ProofCheck } from '../../core/types.ts';
import type { ProveResult } from '../engine.ts';
import { compareFingerprints } from '../fingerprint.ts';
import { movePath, type RestoreStep, type Sidecar, type SidecarCertificate } from './artifact.ts';
import { fingerprintDatabase } from './fingerprint.ts';
import {
  canRestoreOnto,
  checkDbRan,
  EXPRESS_DATA_LIMIT_BYTES,
  formatVersion,
  parseFileListOnly,
  parseHeaderOnly,
  parseVersion,
  productName,
  sameGuid,
  thumbprint,
  type BackupFile,
  type SqlVersion,
} from './parse.ts';
import { formatMessages, type MssqlSession, type SqlMessage, type SqlRow } from './session.ts';
import {
  certificateByThumbprintStatement,
  certificateThumbprintStatement,
  checkDbStatement,
  createCertificateStatement,
  createDatabaseStatement,
  createScratchCertificateStatement,
  databaseExistsStatement,
  databaseFeaturesStatement,
  dropDatabaseStatement,
  ensureMasterKeyStatement,
  fileListOnlyStatement,
  headerOnlyStatement,
  lastGoodCheckDbStatement,
  orphanedUsersStatement,
  restoreDatabaseStatement,
  restoreLogStatement,
  scratchCertificateThumbprintStatement,
  serverClockStatement,
  smokeQueryStatement,
  smokeStatement,
  targetServerStatement,
  verifyOnlyStatement,
} from './sql.ts';

/** Where the runbook's secrets come from. Values are never logged or journaled. */
export interface MssqlSecrets {
  /** The password protecting certificate `name`'s private key in its .pvk file; undefined when unknown. */
  certificatePassword(name: string): Promise<string | undefined>;
  /**
   * The password for master's database master key where Rubicon must create
   * one (proving ground, landing) before a TDE certificate goes into master;
   * undefined when the runbook names none.
   */
  masterKeyPassword?(server: 'proving-ground' | 'landing'): Promise<string | undefined>;
  /** The password that encrypts BACKUP MASTER KEY / BACKUP SERVICE MASTER KEY files; undefined when the runbook names none. */
  keyBackupPassword?(): Promise<string | undefined>;
}

/** A vendor-declared smoke query and the shape its result must have (values are never compared or logged). */
export interface SmokeQuery {
  name: string;
  /** The database it runs in (the restored copy of it). */
  database: string;
  query: string;
  /** Column names of the first result set, in order. */
  columns?: string[];
  minRows?: number;
  maxRows?: number;
}

export interface ProveInput {
  artifactId: string;
  sidecar: Sidecar;
  /** Server-side path of every artifact file by its name (already staged where the proving ground's SQL Server reads). */
  serverPaths: Map<string, string>;
  testDatabase: string;
  sourceFingerprint?: Fingerprint;
  /** The runbook's smoke queries for this database. */
  smokeQueries?: SmokeQuery[];
}

export interface ProveDeps {
  session: MssqlSession;
  /** RESTORE progress (STATS messages) as it arrives. */
  onProgress?: (done: number, total: number) => void;
  secrets?: MssqlSecrets;
  /** Data/log directories for MOVE; default: the instance's default paths. */
  dataDirectory?: string;
  logDirectory?: string;
  signal?: AbortSignal;
}

const KNOWN: Record<number, string> = {
  33111:
    'the backup is encrypted (TDE or backup encryption) and the proving ground has no certificate with the thumbprint it needs: capture that certificate with its private key (instance-objects) so it is restored first',
  3013: 'SQL Server stopped the restore',
  3241: 'the backup file is damaged or incomplete (the media family is incorrectly formed)',
  3203: 'the backup file could not be read to the end (damaged or truncated)',
  3183: 'the backup contains a damaged page (checksum error found by RESTORE WITH CHECKSUM)',
  3189: 'the backup contains a damaged page (checksum error)',
  3187: 'RESTORE WITH CHECKSUM was asked of a backup that has no checksums',
  3169: 'the backup was made by a newer SQL Server than the proving ground',
  3201: 'the proving ground cannot open the backup file',
  1827: 'the database is larger than this edition allows (Express: 10 GB of data)',
  1844: 'this edition does not support backup compression',
  15232: 'a certificate with that name but another thumbprint already exists on the proving ground',
  15208: 'the certificate or private-key file is missing, or the password is wrong',
  15581: "the database master key is missing or cannot be opened: create master's DMK (masterKeyPasswordEnv) before restoring the certificate",
};

/** Plain words for the server's error numbers, followed by the server's own messages. */
export function explain(messages: SqlMessage[]): string {
  const errors = messages.filter((m) => m.kind === 'error');
  const words = [...new Set(errors.map((m) => KNOWN[m.number]).filter((w): w is string => w !== undefined))];
  const server = formatMessages(errors);
  return words.length > 0 ? `${words.join('; ')}. Server said: ${server}` : `Server said: ${server}`;
}

const MAX_KEPT = 200;
/** All messages of CHECKDB kept (up to 200, then a count of the rest). */
function keepMessages(messages: SqlMessage[]): string {
  const kept = messages.slice(0, MAX_KEPT).map((m) => `Msg ${m.number}, Level ${m.class}, State ${m.state}: ${m.message}`);
  if (messages.length > MAX_KEPT) kept.push(`… and ${messages.length - MAX_KEPT} more messages`);
  return kept.join('\n');
}

type CheckResult = { ok: boolean; detail: string } | { skip: string };

class Checks {
  readonly list: ProofCheck[] = [];
  failed: string | undefined;

  async run(name: string, fn: () => Promise<CheckResult>): Promise<boolean> {
    if (this.failed !== undefined) {
      this.list.push({ name, status: 'skipped', detail: `not run: ${this.failed} failed`, durationMs: 0 });
      return false;
    }
    const t0 = Date.now();
    let r: CheckResult;
    try {
      r = await fn();
    } catch (e) {
      r = { ok: false, detail: `error: ${(e as Error).message}` };
    }
    const durationMs = Date.now() - t0;
    if ('skip' in r) {
      this.list.push({ name, status: 'skipped', detail: r.skip, durationMs });
      return true;
    }
    this.list.push({ name, status: r.ok ? 'passed' : 'failed', detail: r.detail, durationMs });
    if (!r.ok) this.failed = name;
    return r.ok;
  }
}

function pathsOf(step: RestoreStep, serverPaths: Map<string, string>): string[] {
  return step.files.map((f) => {
    const p = serverPaths.get(f);
    if (p === undefined) throw new Error(`artifact file ${f} named by the sidecar is not in the artifact`);
    return p;
  });
}

const KIND_TYPE: Record<RestoreStep['kind'], number[]> = { full: [1], diff: [5], log: [2] };

/** What the server a restore lands on offers (targetServerStatement). */
export interface RestoreServer {
  version: SqlVersion | null;
  edition: string;
  engineEdition: number;
  collation: string;
  dataDirectory: string;
  logDirectory: string;
  filestreamLevel: number;
  clrEnabled: boolean;
  integratedSecurityOnly: boolean | null;
}

export function parseRestoreServer(r: SqlRow): RestoreServer {
  return {
    version: parseVersion(String(r.product_version ?? '')),
    edition: String(r.edition ?? ''),
    engineEdition: Number(r.engine_edition ?? 0),
    collation: String(r.collation ?? ''),
    dataDirectory: String(r.default_data_path ?? ''),
    logDirectory: String(r.default_log_path ?? ''),
    filestreamLevel: Number(r.filestream_level ?? 0),
    clrEnabled: Number(r.clr_enabled ?? 0) === 1,
    integratedSecurityOnly: r.integrated_security_only === null || r.integrated_security_only === undefined ? null : Number(r.integrated_security_only) === 1,
  };
}

/**
 * Checks one restore step's HEADERONLY against the sidecar: position
 * present, not damaged, the right kind and database, and exactly the
 * captured BackupSetGUID (when the sidecar recorded one). Pure.
 */
export function judgeHeader(step: RestoreStep, database: string, headers: ReturnType<typeof parseHeaderOnly>): { ok: true; header: ReturnType<typeof parseHeaderOnly>[number] } | { ok: false; detail: string } {
  const where = step.files.join(', ');
  const header = headers.find((h) => h.position === step.position);
  if (!header) return { ok: false, detail: `RESTORE HEADERONLY of ${where} shows no backup set at position ${step.position}` };
  if (header.isDamaged) return { ok: false, detail: `RESTORE HEADERONLY: backup set ${step.position} of ${where} is marked damaged (IsDamaged = 1)` };
  if (!KIND_TYPE[step.kind].includes(header.backupType)) return { ok: false, detail: `RESTORE HEADERONLY: ${where} holds backup type ${header.backupType}, not a ${step.kind} backup` };
  if (header.databaseName !== database) return { ok: false, detail: `RESTORE HEADERONLY: ${where} is a backup of ${header.databaseName}, not ${database}` };
  if (step.backupSetGuid !== undefined && !sameGuid(header.backupSetGuid, step.backupSetGuid)) {
    return {
      ok: false,
      detail: `RESTORE HEADERONLY: backup set ${step.position} of ${where} has BackupSetGUID ${header.backupSetGuid || 'none'}, not the captured ${step.backupSetGuid}: it is another backup (older, or replaced after capture) under the same name`,
    };
  }
  return { ok: true, header };
}

/**
 * Restores the sidecar's steps as `database` (used by prove under a test
 * name and by landing under the real one). Pure sequencing over the session.
 * `server` decides the Express and FILESTREAM refusals before any RESTORE.
 */
export async function restoreSteps(
  session: MssqlSession,
  database: string,
  sidecar: Sidecar,
  serverPaths: Map<string, string>,
  dirs: { data: string; log: string; /** Restore every file at its PhysicalName (the source's folder structure) instead of under data/log. */ sourceLayout?: boolean },
  signal?: AbortSignal,
  server?: Pick<RestoreServer, 'engineEdition' | 'edition' | 'filestreamLevel'>,
  onProgress?: (done: number, total: number) => void,
): Promise<{ ok: boolean; detail: string; files: BackupFile[]; limitedPageChecks: boolean }> {
  const notes: string[] = [];
  let files: BackupFile[] = [];
  let limited = false;
  for (const [i, step] of sidecar.steps.entries()) {
    const last = i === sidecar.steps.length - 1;
    const paths = pathsOf(step, serverPaths);
    const head = await session.run(headerOnlyStatement(paths), signal);
    if (!head.ok) return { ok: false, detail: `RESTORE HEADERONLY of ${step.files.join(', ')}: ${explain(head.messages)}`, files, limitedPageChecks: limited };
    const judged = judgeHeader(step, sidecar.database, parseHeaderOnly(head.recordsets[0] ?? []));
    if (!judged.ok) return { ok: false, detail: judged.detail, files, limitedPageChecks: limited };
    const checksum = judged.header.hasBackupChecksums;
    if (!checksum) {
      limited = true;
      notes.push(`${step.files.join(', ')} has no backup checksums (HasBackupChecksums = 0): restored without WITH CHECKSUM, so page checks during the restore were limited to torn-page/page-checksum detection of the pages themselves`);
    }
    let stmt;
    if (step.kind === 'log') {
      stmt = restoreLogStatement(database, paths, step.position, last, checksum);
    } else {
      const list = await session.run(fileListOnlyStatement(paths, step.position), signal);
      if (!list.ok) return { ok: false, detail: `RESTORE FILELISTONLY of ${step.files.join(', ')}: ${explain(list.messages)}`, files, limitedPageChecks: limited };
      const stepFiles = parseFileListOnly(list.recordsets[0] ?? []);
      if (step.kind === 'full') files = stepFiles;
      const dataBytes = stepFiles.filter((f) => f.type === 'D').reduce((n, f) => n + f.sizeBytes, 0);
      if (server?.engineEdition === 4 && dataBytes > EXPRESS_DATA_LIMIT_BYTES) {
        return { ok: false, detail: `${sidecar.database} has ${(dataBytes / 1024 ** 3).toFixed(1)} GB of data files and the server is ${server.edition || 'Express'}: Express holds at most 10 GB of data per database (Msg 1827). Use Standard or Developer edition.`, files, limitedPageChecks: limited };
      }
      const wantsFilestream = (sidecar.databaseFacts?.filestreamFilegroups ?? 0) > 0;
      if (server && wantsFilestream && server.filestreamLevel < 1) {
        return { ok: false, detail: `${sidecar.database} has FILESTREAM filegroups and FILESTREAM is disabled on this server (FilestreamEffectiveLevel 0): enable it (SQL Server Configuration Manager, then sp_configure 'filestream access level') before the restore`, files, limitedPageChecks: limited };
      }
      const moves = stepFiles.map((f) => ({ logicalName: f.logicalName, physicalPath: dirs.sourceLayout && f.physicalName ? f.physicalName : movePath(dirs.data, dirs.log, database, f) }));
      stmt = restoreDatabaseStatement(database, paths, step.position, moves, last, checksum);
    }
    // STATS = 10: SQL Server sends "N percent processed." (Msg 3211) as the restore goes; passed on as they arrive.
    const progress = (m: SqlMessage): void => {
      const pct = m.number === 3211 ? /(\d+) percent/.exec(m.message)?.[1] : undefined;
      if (pct !== undefined) onProgress?.(i * 100 + Number(pct), sidecar.steps.length * 100);
    };
    const restored = await session.run(stmt, signal, progress);
    if (!restored.ok) return { ok: false, detail: `RESTORE ${step.kind} from ${step.files.join(', ')}: ${explain(restored.messages)}`, files, limitedPageChecks: limited };
    if (!restored.messages.some((m) => m.kind === 'info' && m.number === 3014)) {
      return { ok: false, detail: `RESTORE ${step.kind} from ${step.files.join(', ')} returned without "successfully processed" (Msg 3014): the restore cannot be shown to have run`, files, limitedPageChecks: limited };
    }
    notes.push(restored.messages.filter((m) => m.number === 3014).map((m) => m.message).join(' '));
  }
  const state = await session.query(databaseExistsStatement(database), `reading the state of ${database}`, signal);
  const st = String(state[0]?.state_desc ?? 'missing');
  if (st !== 'ONLINE') return { ok: false, detail: `after RESTORE the database ${database} is ${st}, not ONLINE`, files, limitedPageChecks: limited };
  return { ok: true, detail: notes.join(' '), files, limitedPageChecks: limited };
}

/** A scratch database name for key checks, unique per call (dropped at the end). */
export function scratchDatabaseName(what: string): string {
  return `rubicon-keycheck-${createHash('sha256').update(`${what}:${randomBytes(8).toString('hex')}`).digest('hex').slice(0, 12)}`;
}

/** A throwaway password for a key held only inside a scratch database that is dropped right after. */
const throwaway = (): string => `Rk!${randomBytes(24).toString('base64url')}`;

/**
 * Tests one certificate's .cer/.pvk files and password in a scratch
 * database: CREATE CERTIFICATE … DECRYPTION BY PASSWORD (the runbook's) …
 * ENCRYPTION BY PASSWORD (throwaway), thumbprint read back and compared,
 * scratch database dropped (always). Leaves master untouched.
 */
export async function testCertificateFiles(
  session: MssqlSession,
  c: SidecarCertificate,
  certPath: string,
  keyPath: string,
  password: string,
  signal?: AbortSignal,
): Promise<{ ok: boolean; detail: string }> {
  const scratch = scratchDatabaseName(c.name);
  try {
    const made = await session.run(createDatabaseStatement(scratch), signal);
    if (!made.ok) return { ok: false, detail: `could not create the scratch database ${scratch} to test certificate ${c.name}: ${explain(made.messages)}` };
    const created = await session.run(createScratchCertificateStatement(scratch, c.name, certPath, keyPath, password, throwaway()), signal);
    if (!created.ok) return { ok: false, detail: `certificate ${c.name}'s files do not open with the runbook's password (tested in a scratch database): ${explain(created.messages)}` };
    const tp = thumbprint((await session.query(scratchCertificateThumbprintStatement(scratch, c.name), `reading certificate ${c.name} in ${scratch}`, signal))[0]?.thumbprint) ?? '';
    if (tp !== thumbprint(c.thumbprint)) return { ok: false, detail: `certificate ${c.name}'s files hold thumbprint ${tp || 'none'}, not the captured ${c.thumbprint}` };
    return { ok: true, detail: `${c.name}: .cer/.pvk decrypt with the runbook's password, thumbprint ${tp} matches (tested in a scratch database, dropped)` };
  } finally {
    await session.run(dropDatabaseStatement(scratch)).catch(() => undefined);
  }
}

/**
 * Puts a certificate into master for a restore that needs it (TDE, backup
 * encryption), unless one with its thumbprint is there: master's DMK is
 * created first where missing (password from the secrets source), then
 * CREATE CERTIFICATE in master (private key protected by the DMK, as TDE
 * requires) and its thumbprint checked. Used by prove and by landing.
 */
export async function installCertificate(
  session: MssqlSession,
  c: SidecarCertificate,
  certPath: string,
  keyPath: string,
  password: string,
  secrets: MssqlSecrets | undefined,
  server: 'proving-ground' | 'landing',
  signal?: AbortSignal,
): Promise<{ ok: boolean; detail: string }> {
  const present = await session.query(certificateByThumbprintStatement(thumbprint(c.thumbprint)!), `looking up certificate ${c.name}`, signal);
  if (present.length > 0) return { ok: true, detail: `${c.name} (${c.thumbprint}) already in master` };
  const dmkPassword = await secrets?.masterKeyPassword?.(server);
  let dmk = '';
  if (dmkPassword !== undefined) {
    const made = await session.run(ensureMasterKeyStatement(dmkPassword), signal);
    if (!made.ok) return { ok: false, detail: `creating master's database master key: ${explain(made.messages)}` };
    dmk = Number(made.recordsets[0]?.[0]?.created ?? 0) === 1 ? "; master's database master key created first" : '';
  }
  const created = await session.run(createCertificateStatement(c.name, certPath, keyPath, password), signal);
  if (!created.ok) {
    const hint = dmkPassword === undefined ? ' (the runbook names no masterKeyPasswordEnv, so Rubicon could not create a missing database master key)' : '';
    return { ok: false, detail: `CREATE CERTIFICATE ${c.name} in master: ${explain(created.messages)}${hint}` };
  }
  const got = thumbprint((await session.query(certificateThumbprintStatement(c.name), `reading certificate ${c.name}`, signal))[0]?.thumbprint) ?? '';
  if (got !== thumbprint(c.thumbprint)) return { ok: false, detail: `certificate ${c.name} restored into master with thumbprint ${got || 'none'}, expected ${c.thumbprint}` };
  return { ok: true, detail: `${c.name} (${c.thumbprint}) restored into master with its private key${dmk}` };
}

/** Tests every certificate of the sidecar in a scratch database, then makes sure master has each needed thumbprint. */
async function restoreCertificates(
  session: MssqlSession,
  sidecar: Sidecar,
  serverPaths: Map<string, string>,
  secrets: MssqlSecrets | undefined,
  signal?: AbortSignal,
): Promise<CheckResult> {
  const done: string[] = [];
  const provided = new Set(sidecar.certificates.map((c) => thumbprint(c.thumbprint)));
  for (const c of sidecar.certificates) {
    const password = await secrets?.certificatePassword(c.name);
    if (password === undefined) {
      return { ok: false, detail: `certificate ${c.name} is in the artifact but the secrets source has no password for its private key: add it to the runbook's secrets` };
    }
    const certPath = serverPaths.get(c.certFile);
    const keyPath = serverPaths.get(c.keyFile);
    if (certPath === undefined || keyPath === undefined) {
      return { ok: false, detail: `certificate ${c.name}: file ${certPath === undefined ? c.certFile : c.keyFile} is missing from the artifact` };
    }
    // Every artifact's own files are tested, even when master already has the thumbprint (from an earlier proof).
    const tested = await testCertificateFiles(session, c, certPath, keyPath, password, signal);
    if (!tested.ok) return tested;
    done.push(tested.detail);
    const installed = await installCertificate(session, c, certPath, keyPath, password, secrets, 'proving-ground', signal);
    if (!installed.ok) return installed;
    done.push(installed.detail);
  }
  for (const t of sidecar.requiredThumbprints) {
    if (provided.has(thumbprint(t))) continue;
    const present = await session.query(certificateByThumbprintStatement(thumbprint(t)!), `looking up certificate ${t}`, signal);
    if (present.length === 0) {
      return {
        ok: false,
        detail: `the backup needs the certificate with thumbprint ${t} and neither the artifact nor the proving ground has it: capture the certificate with its private key (instance-objects), or the restore will fail with Msg 33111`,
      };
    }
    done.push(`${t} already on the proving ground`);
  }
  if (done.length === 0) return { ok: true, detail: 'no certificate needed: the backup is not encrypted and the database is not TDE-protected' };
  return { ok: true, detail: done.join('; ') };
}

/** Runs DBCC CHECKDB and shows it ran: no error, and LastGoodCheckDbTime not older than the clock read just before. */
export async function checkIntegrity(session: MssqlSession, database: string, label: string, signal?: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const clock = (await session.query(serverClockStatement(), 'reading the server clock', signal))[0]?.server_now;
  const before = clock instanceof Date ? clock : null;
  const out = await session.run(checkDbStatement(database), signal);
  const errors = out.messages.filter((m) => m.kind === 'error');
  if (!out.ok || errors.length > 0) return { ok: false, detail: `DBCC CHECKDB found problems in ${label}:\n${keepMessages(out.messages)}` };
  const rows = await session.query(lastGoodCheckDbStatement(database), 'reading LastGoodCheckDbTime', signal);
  const lastGood = rows[0]?.last_good instanceof Date ? (rows[0].last_good as Date) : null;
  const ran = checkDbRan(before, lastGood);
  const infos = out.messages.length > 0 ? ` Messages: ${keepMessages(out.messages)}` : '';
  if (!ran.ok) return { ok: false, detail: `DBCC CHECKDB returned without errors but ${ran.detail}` };
  return { ok: true, detail: `DBCC CHECKDB WITH NO_INFOMSGS, ALL_ERRORMSGS: no errors in ${out.durationMs} ms; ${ran.detail}.${infos}` };
}

/** Facts of a restored database (databaseFeaturesStatement). */
export interface RestoredDatabase {
  compatibilityLevel: number | null;
  collation: string | null;
  owner: string | null;
  trustworthy: boolean;
  instanceCollation: string;
  skuFeatures: string[];
}

export async function readRestoredDatabase(session: MssqlSession, database: string, signal?: AbortSignal): Promise<RestoredDatabase> {
  const out = await session.run(databaseFeaturesStatement(database), signal);
  if (!out.ok) throw new Error(`reading the settings of ${database}: ${formatMessages(out.messages)}`);
  const r = out.recordsets[0]?.[0] ?? {};
  return {
    compatibilityLevel: r.compatibility_level === null || r.compatibility_level === undefined ? null : Number(r.compatibility_level),
    collation: r.collation_name === null || r.collation_name === undefined ? null : String(r.collation_name),
    owner: r.owner_name === null || r.owner_name === undefined ? null : String(r.owner_name),
    trustworthy: Number(r.is_trustworthy_on ?? 0) === 1,
    instanceCollation: String(r.instance_collation ?? ''),
    skuFeatures: (out.recordsets[1] ?? []).map((f) => String(f.feature_name)),
  };
}

/**
 * Compares a restored database with the source's settings from the
 * sidecar. `problems` fail the check; `notes` are said in its detail. On the
 * proving ground the owner and TRUSTWORTHY cannot match (RESTORE makes the
 * restoring login the owner and turns TRUSTWORTHY off): they are named as
 * "set at landing"; at landing they must match. Pure.
 */
export function judgeRestoredDatabase(
  sidecar: Sidecar,
  restored: RestoredDatabase,
  orphans: { user: string; loginByName: string | null }[],
  where: 'proving-ground' | 'landing',
): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  const src = sidecar.databaseFacts;
  if (!src) {
    notes.push('the artifact records no source settings (captured by an earlier Rubicon): compatibility level, owner and TRUSTWORTHY not compared');
  } else {
    if (src.compatibilityLevel !== null && restored.compatibilityLevel !== src.compatibilityLevel) {
      problems.push(`compatibility level ${restored.compatibilityLevel} after restore, ${src.compatibilityLevel} on the source: this server does not support the source's level (it was raised), which changes query behaviour for the application`);
    }
    if (src.collation && restored.collation !== src.collation) problems.push(`collation ${restored.collation} after restore, ${src.collation} on the source`);
    if (where === 'landing') {
      if (src.owner && restored.owner !== src.owner) problems.push(`owner is ${restored.owner ?? 'unknown'}, the source's was ${src.owner}`);
      if (src.trustworthy && !restored.trustworthy) problems.push('TRUSTWORTHY is OFF, it was ON on the source');
    } else {
      if (src.owner) notes.push(`owner ${src.owner} and TRUSTWORTHY ${src.trustworthy ? 'ON' : 'OFF'} are set at landing (RESTORE makes the restoring login the owner and turns TRUSTWORTHY off)`);
    }
    if (src.skuFeatures.length > 0) notes.push(`edition-specific features in use: ${src.skuFeatures.join(', ')}`);
  }
  if (sidecar.source.collation && restored.collation && restored.collation !== restored.instanceCollation) {
    notes.push(`database collation ${restored.collation} differs from this instance's ${restored.instanceCollation} (tempdb): joins with temporary tables may need COLLATE`);
  }
  if (where === 'landing' && sidecar.source.collation && restored.instanceCollation && restored.instanceCollation !== sidecar.source.collation) {
    problems.push(`the rebuilt instance's collation is ${restored.instanceCollation}, the source instance's was ${sidecar.source.collation}: reinstall SQL Server with the source's collation`);
  }
  if (orphans.length > 0) {
    const list = orphans.map((o) => `${o.user}${o.loginByName ? ` (a login ${o.loginByName} exists under another SID)` : ''}`).join(', ');
    if (where === 'landing') problems.push(`orphaned users (no login with their SID): ${list}`);
    else notes.push(`users without a login of their SID on the proving ground (expected there; fixed at landing by the logins artifact's SIDs, or remapped by name): ${list}`);
  } else {
    notes.push('no orphaned user');
  }
  return { problems, notes };
}

export async function readOrphans(session: MssqlSession, database: string, signal?: AbortSignal): Promise<{ user: string; sid: string; loginByName: string | null }[]> {
  return (await session.query(orphanedUsersStatement(database), `looking for orphaned users in ${database}`, signal)).map((r) => ({
    user: String(r.user_name),
    sid: String(r.user_sid ?? ''),
    loginByName: r.login_by_name === null || r.login_by_name === undefined ? null : String(r.login_by_name),
  }));
}

/**
 * Runs the runbook's smoke queries against `database` (inside a rolled-back
 * transaction) and checks the declared shape: column names in order, row
 * count within bounds. Details name columns and counts, never values.
 */
export async function runSmokeQueries(session: MssqlSession, database: string, queries: SmokeQuery[], signal?: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const results: string[] = [];
  const problems: string[] = [];
  for (const q of queries) {
    const out = await session.run(smokeQueryStatement(database, q.query), signal);
    if (!out.ok) {
      problems.push(`smoke query "${q.name}" failed: ${formatMessages(out.messages)}`);
      continue;
    }
    const rows = out.recordsets[0] ?? [];
    const cols = rows.length > 0 ? Object.keys(rows[0]!) : Object.keys((out.recordsets[0] as unknown as { columns?: Record<string, unknown> })?.columns ?? {});
    const bad: string[] = [];
    if (q.columns && (cols.length !== q.columns.length || q.columns.some((c, i) => cols[i] !== c))) bad.push(`columns [${cols.join(', ')}], expected [${q.columns.join(', ')}]`);
    if (q.minRows !== undefined && rows.length < q.minRows) bad.push(`${rows.length} rows, expected at least ${q.minRows}`);
    if (q.maxRows !== undefined && rows.length > q.maxRows) bad.push(`${rows.length} rows, expected at most ${q.maxRows}`);
    if (bad.length > 0) problems.push(`smoke query "${q.name}": ${bad.join('; ')}`);
    else results.push(`"${q.name}" returned ${rows.length} row(s) of [${cols.join(', ')}]`);
  }
  return problems.length > 0 ? { ok: false, detail: problems.join('; ') } : { ok: true, detail: results.join('; ') };
}

/** System databases: HEADERONLY (GUID) + RESTORE VERIFYONLY only; the proof says so. */
async function proveSystemDatabase(deps: ProveDeps, input: ProveInput, checks: Checks): Promise<void> {
  const { session, signal } = deps;
  const { sidecar } = input;
  await checks.run('restore', async () => {
    const notes: string[] = [];
    for (const step of sidecar.steps) {
      const paths = pathsOf(step, input.serverPaths);
      const head = await session.run(headerOnlyStatement(paths), signal);
      if (!head.ok) return { ok: false, detail: `RESTORE HEADERONLY of ${step.files.join(', ')}: ${explain(head.messages)}` };
      const judged = judgeHeader(step, sidecar.database, parseHeaderOnly(head.recordsets[0] ?? []));
      if (!judged.ok) return judged;
      const v = await session.run(verifyOnlyStatement(paths, step.position, judged.header.hasBackupChecksums), signal);
      if (!v.ok) return { ok: false, detail: `RESTORE VERIFYONLY of ${step.files.join(', ')}: ${explain(v.messages)}` };
      notes.push(`${step.files.join(', ')}: HEADERONLY matches the captured backup set; RESTORE VERIFYONLY${judged.header.hasBackupChecksums ? ' WITH CHECKSUM' : ' (no backup checksums: page checks limited)'} passed`);
    }
    return {
      ok: true,
      detail: `system database ${sidecar.database}: not restored (a restored ${sidecar.database} under a test name is not a system database, and restoring over the proving ground's own would destroy that instance); ${notes.join('; ')}. What lives in it is proven by its own items (logins, jobs, operators, alerts, proxies, mail).`,
    };
  });
}

export async function proveArtifact(deps: ProveDeps, input: ProveInput): Promise<ProveResult> {
  const { session, signal } = deps;
  const { sidecar, testDatabase } = input;
  const checks = new Checks();
  let dirs = { data: deps.dataDirectory ?? '', log: deps.logDirectory ?? '' };
  let server: RestoreServer | undefined;
  let fingerprint: Fingerprint | undefined;

  await checks.run('version', async () => {
    const rows = await session.query(targetServerStatement(), 'reading the proving ground version', signal);
    server = parseRestoreServer(rows[0] ?? {});
    const proving = server.version;
    const source = parseVersion(sidecar.source.productVersion);
    dirs = { data: deps.dataDirectory ?? server.dataDirectory, log: deps.logDirectory ?? server.logDirectory };
    if (!proving || !source) {
      return { ok: false, detail: `cannot compare versions: proving ground ${String(rows[0]?.product_version)}, source ${sidecar.source.productVersion}` };
    }
    if (!canRestoreOnto(source, proving)) {
      return {
        ok: false,
        detail: `the proving ground runs ${productName(proving.major)} (${formatVersion(proving)}), older than the source's ${productName(source.major)} (${formatVersion(source)}): SQL Server cannot restore a backup onto an older version. Use a proving ground of version ${source.major}.${source.minor} or newer.`,
      };
    }
    if (!sidecar.system && (!dirs.data || !dirs.log)) return { ok: false, detail: 'the proving ground reports no default data/log directory: set provingGroundDataDirectory and provingGroundLogDirectory' };
    return { ok: true, detail: `proving ground ${formatVersion(proving)} (${server.edition}) >= source ${formatVersion(source)} (${sidecar.source.edition})` };
  });

  if (sidecar.system) {
    await proveSystemDatabase(deps, input, checks);
    return { checks: checks.list };
  }

  await checks.run('certificates', () => restoreCertificates(session, sidecar, input.serverPaths, deps.secrets, signal));

  // From here on a test database may exist: whatever happens, it is dropped in `cleanup`.
  try {
    await checks.run('restore', async () => {
      // A redo after a crash finds its own leftover: drop it first (same deterministic name).
      await session.query(dropDatabaseStatement(testDatabase), `dropping a leftover ${testDatabase}`, signal);
      const r = await restoreSteps(session, testDatabase, sidecar, input.serverPaths, dirs, signal, server, deps.onProgress);
      const chain = sidecar.steps.map((s) => s.kind).join(' + ');
      return { ok: r.ok, detail: r.ok ? `restored ${sidecar.database} (${chain}) as ${testDatabase}: ${r.detail}` : r.detail };
    });

    await checks.run('integrity', () => checkIntegrity(session, testDatabase, `the restored ${sidecar.database}`, signal));

    await checks.run('fingerprint-source', async () => {
      fingerprint = await fingerprintDatabase(session, testDatabase, signal);
      if (!input.sourceFingerprint) return { skip: 'no source fingerprint was recorded at capture: nothing to compare with' };
      const cmp = compareFingerprints(input.sourceFingerprint, fingerprint);
      const unhashed = fingerprint.tables.filter((t) => t.unhashedColumns?.length).map((t) => `${t.table}: ${t.unhashedColumns!.join(', ')}`);
      const note = unhashed.length ? ` Columns the hash cannot see: ${unhashed.join('; ')}.` : ' Every stored column of every table is hashed.';
      const basis =
        sidecar.fingerprintBasis === 'frozen'
          ? ' The source fingerprint was taken while the database was frozen (read-only or not MULTI_USER): it is exact for this backup.'
          : sidecar.fingerprintBasis === 'live'
            ? ' The source fingerprint was taken on the live database at capture: writes between it and the end of the backup show as differences; the exact comparisons are the restored copies with each other and the final capture after freeze.'
            : '';
      return cmp.equal
        ? { ok: true, detail: `${fingerprint.tables.length} tables: row counts and SHA-256 content hashes match the source.${basis}${note}` }
        : { ok: false, detail: `restored data differs from the source: ${cmp.differences.join('; ')}.${basis}${note}` };
    });

    await checks.run('database-settings', async () => {
      const restored = await readRestoredDatabase(session, testDatabase, signal);
      const orphans = await readOrphans(session, testDatabase, signal);
      const j = judgeRestoredDatabase(sidecar, restored, orphans, 'proving-ground');
      return j.problems.length > 0 ? { ok: false, detail: [...j.problems, ...j.notes].join('; ') } : { ok: true, detail: j.notes.join('; ') };
    });

    await checks.run('smoke', async () => {
      const rows = await session.query(smokeStatement(testDatabase), `querying ${testDatabase}`, signal);
      const r = rows[0];
      if (!r) return { ok: false, detail: `${testDatabase} is not listed in sys.databases` };
      if (r.state_desc !== 'ONLINE') return { ok: false, detail: `${testDatabase} is ${String(r.state_desc)}` };
      const base = `${testDatabase} is ONLINE, ${String(r.user_access_desc)}, ${Number(r.user_objects)} user objects`;
      const queries = (input.smokeQueries ?? []).filter((q) => q.database === sidecar.database);
      if (queries.length === 0) return { ok: true, detail: `${base}; the runbook declares no smoke query for ${sidecar.database}` };
      const s = await runSmokeQueries(session, testDatabase, queries, signal);
      return { ok: s.ok, detail: `${base}; ${s.detail}` };
    });
  } finally {
    // Never skipped: the proving ground is left clean even after a failure.
    const t0 = Date.now();
    const dropped = await session.run(dropDatabaseStatement(testDatabase)).catch((e: unknown) => ({ ok: false, messages: [], error: e }));
    checks.list.push({
      name: 'cleanup',
      status: dropped.ok ? 'passed' : 'failed',
      detail: dropped.ok
        ? `test database ${testDatabase} dropped (or never created)`
        : `could not drop ${testDatabase}: ${'messages' in dropped && dropped.messages.length ? formatMessages(dropped.messages) : String((dropped as { error?: unknown }).error)}`,
      durationMs: Date.now() - t0,
    });
  }
  return fingerprint ? { checks: checks.list, fingerprint } : { checks: checks.list };
}
