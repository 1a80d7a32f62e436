/**
 * The capture methods of the mssql engine. Each produces backup files on
 * the SQL Server host's disk plus a sidecar (artifact.ts) in ctx.workDir,
 * and returns them as CapturedFiles.
 *
 * How a .bak reaches the vault: SQL Server writes it to `backupDirectory`
 * (a path on the SQL Server machine). The same folder must be readable
 * through the Host (ctx.host.resolve(backupDirectoryOnHost)): for a local
 * host that is the folder itself or an SMB/NFS mount of it; a remote Host
 * adapter provides the transfer behind the same interface. The orchestrator
 * then streams those paths into the vaults, hashing as it goes.
 *
 * Contracts:
 * - mssql-native-full never breaks the customer's chain: COPY_ONLY always.
 * - vendor-job succeeds only when the job's step 0 AND every step succeeded,
 *   new backupset rows of the database exist after our start, and RESTORE
 *   HEADERONLY on the actual file agrees; otherwise CAPTURE_FAILED naming
 *   what failed.
 * - mssql-history trusts msdb only as far as RESTORE HEADERONLY confirms it.
 * - instance-objects writes T-SQL scripts and certificates; a certificate's
 *   private-key password comes from the secrets source and never appears in
 *   a statement text, a log line or an error.
 * - Idempotent: a redo overwrites its own output files.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { RubiconError } from '../../core/errors.ts';
import type { Item } from '../../core/types.ts';
import type { CapturedFiles, EngineContext, VendorJobSpec } from '../engine.ts';
import { fileToken, serializeSidecar, serverBasename, serverJoin, SIDECAR_NAME, type RestoreStep, type Sidecar, type SidecarCertificate, type SidecarDatabase } from './artifact.ts';
import {
  canCompress,
  groupBackupSets,
  isRunning,
  judgeJobRun,
  newestChain,
  parseHeaderOnly,
  parseHistory,
  parseJobActivity,
  parseJobHistory,
  sameGuid,
  sameLsn,
  thumbprint,
  withinRun,
  type BackupHeader,
  type BackupSet,
  type JobActivity,
} from './parse.ts';
import { backupHistoryEvidence, HISTORY_FILE } from './history.ts';
import { explain, type MssqlSecrets } from './prove.ts';
import {
  jobProperties,
  loginProperties,
  type LoginPropertiesFile,
  scriptAlerts,
  scriptConfiguration,
  scriptCredentials,
  scriptDatabaseMail,
  scriptEndpoints,
  scriptJobs,
  scriptLinkedServers,
  scriptLogins,
  scriptOperators,
  scriptProxies,
  scriptStartupAndTraceFlags,
} from './scripts.ts';
import { describeServer, formatMessages, type MssqlSession, type SqlRow } from './session.ts';
import * as q from './sql.ts';
import type { AzureBlobVault } from '../../vaults/azure-blob.ts';
import { issueSqlServerUrlGrant, urlBackupPlan, urlGrantIssued, urlGrantRevoked, type UrlGrantEvent } from './url-grant.ts';
import type { SidecarUrlStripe } from './artifact.ts';

export interface CaptureEnv {
  session: MssqlSession;
  ctx: EngineContext;
  /** Where SQL Server writes Rubicon's backups, as the SQL Server machine names it. */
  backupDirectory: string;
  /** The same folder relative to ctx.host's root. */
  backupDirectoryOnHost: string;
  /** Server directory → host directory, for backup files found in msdb (mssql-history). */
  pathMap: { server: string; host: string }[];
  secrets?: MssqlSecrets;
  compression: boolean;
  /** Polling interval while waiting for an Agent job. */
  pollIntervalMs: number;
  log: (level: 'info' | 'warn', message: string) => void;
  /** The journal's grant.issued / grant.revoked of a URL grant (never the SAS). */
  onGrant?: (e: UrlGrantEvent) => void;
  /** mssql-native-url: the azure-blob vault SQL Server backs up into, and the write grant's lifetime. */
  url?: { vault: () => Promise<AzureBlobVault>; ttlMs: number };
}

function fail(item: Item, method: string, message: string, hint?: string): RubiconError {
  return new RubiconError('CAPTURE_FAILED', `${item.id} (${method}): ${message}`, hint ? { hint } : {});
}

export interface SourceInfo {
  productVersion: string;
  edition: string;
  engineEdition: number;
  collation: string;
  server: string;
}

async function serverInfo(env: CaptureEnv): Promise<SourceInfo> {
  const r = (await env.session.query(q.serverInfoStatement(), 'reading the server version', env.ctx.signal))[0] ?? {};
  return {
    productVersion: String(r.product_version ?? ''),
    edition: String(r.edition ?? ''),
    engineEdition: Number(r.engine_edition ?? 0),
    collation: String(r.collation ?? ''),
    server: String(r.server_name ?? describeServer(env.session.config)),
  };
}

const sourceOf = (info: SourceInfo): Sidecar['source'] => ({ server: info.server, productVersion: info.productVersion, edition: info.edition, engineEdition: info.engineEdition, collation: info.collation });

/** The source database's settings that must survive the restore (read-only). */
async function databaseFacts(env: CaptureEnv, item: Item, db: SqlRow): Promise<SidecarDatabase> {
  const out = await env.session.run(q.databaseFeaturesStatement(item.name), env.ctx.signal);
  if (!out.ok) throw fail(item, 'capture', `reading the settings of ${item.name}: ${formatMessages(out.messages)}`);
  const r = out.recordsets[0]?.[0] ?? {};
  return {
    compatibilityLevel: r.compatibility_level === null || r.compatibility_level === undefined ? null : Number(r.compatibility_level),
    collation: r.collation_name === null || r.collation_name === undefined ? null : String(r.collation_name),
    owner: r.owner_name === null || r.owner_name === undefined ? null : String(r.owner_name),
    ownerSid: r.owner_sid === null || r.owner_sid === undefined ? null : String(r.owner_sid),
    trustworthy: Number(r.is_trustworthy_on ?? 0) === 1,
    skuFeatures: (out.recordsets[1] ?? []).map((f) => String(f.feature_name)),
    filestreamFilegroups: Number(r.filestream_filegroups ?? 0),
    clrAssemblies: Number(r.clr_assemblies ?? 0),
    dataBytes: db.size_bytes === null || db.size_bytes === undefined ? null : Number(db.size_bytes),
  };
}

/** Frozen: read-only, or not MULTI_USER (the freeze sets SINGLE_USER/RESTRICTED_USER): nothing writes between fingerprint and backup. */
const basisOf = (db: SqlRow): 'frozen' | 'live' => (Number(db.is_read_only ?? 0) === 1 || (typeof db.user_access_desc === 'string' && db.user_access_desc !== 'MULTI_USER') ? 'frozen' : 'live');

const isSystem = (db: SqlRow): boolean => Number(db.database_id ?? 99) <= 4;

async function databaseRow(env: CaptureEnv, item: Item, method: string): Promise<SqlRow> {
  const rows = await env.session.query(q.databasesStatement(), 'listing databases', env.ctx.signal);
  const row = rows.find((r) => r.name === item.name);
  if (!row) throw fail(item, method, `database ${item.name} does not exist on ${describeServer(env.session.config)}`);
  if (row.state_desc !== 'ONLINE') throw fail(item, method, `database ${item.name} is ${String(row.state_desc)}, not ONLINE`);
  return row;
}

/** A file SQL Server wrote, as this machine sees it through the Host; CAPTURE_FAILED when it is not there. */
async function hostFile(env: CaptureEnv, item: Item, method: string, hostDir: string, name: string, serverPath: string): Promise<string> {
  const p = env.ctx.host.resolve(posix.join(hostDir, name));
  const s = await stat(p).catch(() => null);
  if (!s || !s.isFile()) {
    throw fail(
      item,
      method,
      `SQL Server wrote ${serverPath} but ${p} does not exist on ${env.ctx.host.name}`,
      'backupDirectory (as SQL Server sees it) and backupDirectoryOnHost (as the Host sees it) must name the same folder.',
    );
  }
  return p;
}

async function headerOf(env: CaptureEnv, item: Item, method: string, serverPaths: string[]): Promise<BackupHeader[]> {
  const out = await env.session.run(q.headerOnlyStatement(serverPaths), env.ctx.signal);
  if (!out.ok) throw fail(item, method, `RESTORE HEADERONLY on ${serverPaths.join(', ')}: ${explain(out.messages)}`);
  return parseHeaderOnly(out.recordsets[0] ?? []);
}

/**
 * Exports the certificates a database's restore needs (TDE encryptor, backup
 * encryptor) WITH PRIVATE KEY into the backup directory. Removes its own
 * earlier files first (BACKUP CERTIFICATE refuses to overwrite).
 */
async function exportCertificates(env: CaptureEnv, item: Item, method: string, thumbprints: string[]): Promise<{ certs: SidecarCertificate[]; files: { path: string; name: string }[] }> {
  const certs: SidecarCertificate[] = [];
  const files: { path: string; name: string }[] = [];
  for (const tp of [...new Set(thumbprints.map((t) => thumbprint(t)!))]) {
    const found = await env.session.query(q.certificateByThumbprintStatement(tp), `looking up certificate ${tp}`, env.ctx.signal);
    const name = found[0]?.name;
    if (typeof name !== 'string') {
      throw fail(item, method, `the backup needs the certificate with thumbprint ${tp} but master has no such certificate`, 'Find where the certificate went (another instance?) before the rebuild: without it the backup cannot be restored.');
    }
    const exported = await exportCertificate(env, item, method, name, tp);
    certs.push(exported.cert);
    files.push(...exported.files);
  }
  return { certs, files };
}

async function exportCertificate(env: CaptureEnv, item: Item, method: string, name: string, thumbprint: string): Promise<{ cert: SidecarCertificate; files: { path: string; name: string }[] }> {
  const password = await env.secrets?.certificatePassword(name);
  if (password === undefined) {
    throw fail(item, method, `certificate ${name} must be exported with its private key, and the secrets source has no password for it`, `Add a password for certificate ${name} to the runbook's secrets source; it encrypts the exported private key.`);
  }
  const token = `rubicon-cert-${fileToken(name)}`;
  const certFile = `${token}.cer`;
  const keyFile = `${token}.pvk`;
  for (const f of [certFile, keyFile]) await rm(env.ctx.host.resolve(posix.join(env.backupDirectoryOnHost, f)), { force: true });
  const certServer = serverJoin(env.backupDirectory, certFile);
  const keyServer = serverJoin(env.backupDirectory, keyFile);
  const out = await env.session.run(q.backupCertificateStatement(name, certServer, keyServer, password), env.ctx.signal);
  if (!out.ok) throw fail(item, method, `BACKUP CERTIFICATE ${name}: ${formatMessages(out.messages)}`);
  env.log('info', `certificate ${name} exported with its private key to ${certServer}`);
  return {
    cert: { name, thumbprint, certFile, keyFile },
    files: [
      { path: await hostFile(env, item, method, env.backupDirectoryOnHost, certFile, certServer), name: certFile },
      { path: await hostFile(env, item, method, env.backupDirectoryOnHost, keyFile, keyServer), name: keyFile },
    ],
  };
}

async function writeSidecar(env: CaptureEnv, sidecar: Sidecar): Promise<{ path: string; name: string }> {
  const dir = join(env.ctx.workDir, `mssql-${fileToken(sidecar.database)}-${sidecar.method}`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, SIDECAR_NAME);
  await writeFile(path, serializeSidecar(sidecar));
  return { path, name: SIDECAR_NAME };
}

// ---------------------------------------------------------------- mssql-native-full

export async function captureNativeFull(env: CaptureEnv, item: Item): Promise<CapturedFiles> {
  const method = isSystemName(item.name) ? 'mssql-system-full' : 'mssql-native-full';
  const info = await serverInfo(env);
  const db = await databaseRow(env, item, method);
  const system = isSystem(db) || isSystemName(item.name);
  const fileName = `rubicon-${fileToken(item.name)}-full.bak`;
  const serverPath = serverJoin(env.backupDirectory, fileName);
  // Express and Web cannot compress (Msg 1844); EngineEdition decides, the edition name splits Standard from Web.
  let compression = env.compression && canCompress(info.engineEdition, info.edition);
  let stmt = q.backupToDiskStatement(item.name, serverPath, { compression });
  let out = await env.session.run(stmt, env.ctx.signal);
  if (!out.ok && compression && out.messages.some((m) => m.number === 1844)) {
    env.log('warn', `${info.edition} refused WITH COMPRESSION (Msg 1844): backing ${item.name} up without compression`);
    compression = false;
    stmt = q.backupToDiskStatement(item.name, serverPath, { compression });
    out = await env.session.run(stmt, env.ctx.signal);
  }
  if (!out.ok) throw fail(item, method, `BACKUP DATABASE failed: ${explain(out.messages)}`);
  const headers = await headerOf(env, item, method, [serverPath]);
  const h = ownFullHeader(item, method, headers, serverPath);
  const bak = { path: await hostFile(env, item, method, env.backupDirectoryOnHost, fileName, serverPath), name: fileName };
  const sealed = await sealFullBackup(env, item, method, info, db, h, [fileName], system ? { system: true } : {});
  return {
    files: [bak, ...sealed.files],
    format: 'mssql-bak',
    tool: `SQL Server ${info.productVersion} (${info.edition}) BACKUP DATABASE`,
    position: `LastLSN ${sealed.lastLsn}, BackupSetGUID ${h.backupSetGuid}`,
    command: `${stmt.text} -- @path = ${serverPath}`,
  };
}

/**
 * The common tail of Rubicon's own full backup, to disk or to URL, once
 * HEADERONLY has passed (ownFullHeader): msdb must agree with HEADERONLY on
 * the set's LastLSN (msdb has it exactly; HEADERONLY's numeric(25,0) arrives
 * as a double; no msdb row: HEADERONLY's value stands), then sealSidecar
 * with the one full step. `files` are the step's backup files (the disk
 * file's name or the blob names). Returns the LastLSN recorded and the
 * files sealSidecar made. Throws CAPTURE_FAILED when msdb disagrees.
 */
async function sealFullBackup(
  env: CaptureEnv,
  item: Item,
  method: string,
  info: SourceInfo,
  db: SqlRow,
  h: BackupHeader,
  files: string[],
  where: { system?: true; url?: Sidecar['url'] },
): Promise<{ lastLsn: string; files: { path: string; name: string }[] }> {
  const msdb = groupBackupSets(parseHistory(await env.session.query(q.backupSetByGuidStatement(h.backupSetGuid), 'reading the backup set from msdb', env.ctx.signal)))[0];
  if (msdb && !sameLsn(h.lastLsn, msdb.row.lastLsn)) throw fail(item, method, `HEADERONLY's LastLSN ${h.lastLsn} is not msdb's ${msdb.row.lastLsn} for backup set ${h.backupSetGuid}`);
  const lastLsn = msdb?.row.lastLsn ?? String(h.lastLsn);
  const step: RestoreStep = { kind: 'full', files, position: 1, lastLsn, backupFinishDate: h.backupFinishDate, backupSetGuid: h.backupSetGuid, hasBackupChecksums: h.hasBackupChecksums };
  return { lastLsn, files: await sealSidecar(env, item, method, info, db, [step], thumbprintsOf(db, h), where) };
}

/** The certificates a full backup's restore needs: the database's TDE encryptor and the backup's own encryptor, as found (not deduplicated). */
const thumbprintsOf = (db: SqlRow, h: BackupHeader): string[] => [db.tde_thumbprint, h.encryptorThumbprint].filter((t): t is string => typeof t === 'string' && t.length > 0);

/**
 * The last part of every .bak capture (native to disk or URL, vendor job,
 * msdb history): exports the certificates named by `requiredThumbprints`
 * (exportCertificates), assembles the sidecar (rubicon-mssql.json) from the
 * restore steps, and writes it to ctx.workDir. `where.system` marks a system
 * database (its sidecar carries no databaseFacts or fingerprintBasis, which
 * are read from SQL Server otherwise); `where.url` lists the stripes of a
 * backup to URL. Returns the certificate files, then the sidecar file.
 * Throws CAPTURE_FAILED when a certificate cannot be exported. Writes only
 * certificate files and the sidecar; a redo overwrites them.
 */
async function sealSidecar(
  env: CaptureEnv,
  item: Item,
  method: string,
  info: SourceInfo,
  db: SqlRow,
  steps: RestoreStep[],
  requiredThumbprints: string[],
  where: { system?: true; url?: Sidecar['url'] } = {},
): Promise<{ path: string; name: string }[]> {
  const certs = await exportCertificates(env, item, method, requiredThumbprints);
  const sidecar: Sidecar = {
    version: 1,
    format: 'mssql-bak',
    database: item.name,
    method,
    source: sourceOf(info),
    steps,
    certificates: certs.certs,
    requiredThumbprints,
    ...(where.url ? { url: where.url } : {}),
    ...(where.system ? { system: true } : { databaseFacts: await databaseFacts(env, item, db), fingerprintBasis: basisOf(db) }),
  };
  return [...certs.files, await writeSidecar(env, sidecar)];
}

/** HEADERONLY of Rubicon's own full backup: position 1, full, this database, COPY_ONLY, checksums, not damaged, a BackupSetGUID. Throws CAPTURE_FAILED naming what is wrong. */
function ownFullHeader(item: Item, method: string, headers: BackupHeader[], where: string): BackupHeader {
  const h = headers.find((x) => x.position === 1);
  const problems: string[] = [];
  if (!h) problems.push('RESTORE HEADERONLY shows no backup set at position 1');
  else {
    if (h.backupType !== 1) problems.push(`backup type ${h.backupType}, not a full database backup`);
    if (h.databaseName !== item.name) problems.push(`it is a backup of ${h.databaseName}`);
    if (!h.isCopyOnly) problems.push('it is not COPY_ONLY');
    if (!h.hasBackupChecksums) problems.push('it has no backup checksums');
    if (h.isDamaged) problems.push('it is marked damaged');
    if (!h.backupSetGuid) problems.push('it reports no BackupSetGUID');
  }
  if (problems.length > 0) throw fail(item, method, `the backup written to ${where} is not what was asked for: ${problems.join('; ')}`);
  return h!;
}

// ---------------------------------------------------------------- mssql-native-url

/**
 * mssql-native-url: BACKUP DATABASE … TO URL straight into the azure-blob
 * vault's container (nothing passes through this machine or the target's
 * disk), through a write grant (url-grant.ts): a container SAS held in
 * memory, sent only as the secret parameter of CREATE CREDENTIAL, the
 * credential dropped right after the backup (also when it failed). The grant's
 * issue and its revocation (the credential dropped; the SAS itself lapses
 * at its expiry) are logged in plain words, without the SAS.
 *
 * Then RESTORE HEADERONLY FROM URL (the same checks as the disk backup: full,
 * COPY_ONLY, checksums, BackupSetGUID) and every stripe read back from the
 * vault (exists, size > 0; the service's ETag and Content-MD5 when it has
 * one). The artifact's files are the sidecar (stripes listed in `url`) and
 * the certificates; the stripes stay in the container. Idempotent: a redo
 * writes the same blob names (WITH FORMAT overwrites them).
 */
export async function captureNativeUrl(env: CaptureEnv, item: Item): Promise<CapturedFiles> {
  const method = 'mssql-native-url';
  if (!env.url) throw fail(item, method, 'no azure-blob vault is named for SQL Server\'s backups to URL', 'Set engines.mssql.backupToUrl to the name of an azure-blob vault of the runbook.');
  if (isSystemName(item.name)) throw fail(item, method, 'system databases are backed up to disk (mssql-system-full), not to URL');
  const info = await serverInfo(env);
  const db = await databaseRow(env, item, method);
  const vault = await env.url.vault();
  const sig = env.ctx.signal;
  // The workDir's last segment is the artifact id (encoded): the same stripe names on a redo.
  const artifactId = decodeURIComponent(basename(env.ctx.workDir));
  let compression = env.compression && canCompress(info.engineEdition, info.edition);
  const grant = await issueSqlServerUrlGrant(vault, 'write', env.url.ttlMs);
  env.onGrant?.(urlGrantIssued(grant, `SQL Server ${info.server}`));
  env.log('info', `${item.name}: write grant of vault '${grant.vault}' issued to SQL Server ${info.server} (${grant.sasKind} SAS on ${grant.credential}, expires ${grant.expiresAt})`);
  let plan = urlBackupPlan(vault, grant, item.name, artifactId, Number(db.size_bytes ?? 0), { compression });
  let headers: BackupHeader[];
  try {
    const made = await env.session.run(plan.credential, sig);
    if (!made.ok) throw fail(item, method, `creating the SAS credential ${grant.credential}: ${explain(made.messages)}`);
    let out = await env.session.run(plan.backup, sig);
    if (!out.ok && compression && out.messages.some((m) => m.number === 1844)) {
      env.log('warn', `${info.edition} refused WITH COMPRESSION (Msg 1844): backing ${item.name} up without compression`);
      compression = false;
      plan = urlBackupPlan(vault, grant, item.name, artifactId, Number(db.size_bytes ?? 0), { compression });
      out = await env.session.run(plan.backup, sig);
    }
    if (!out.ok) throw fail(item, method, `BACKUP DATABASE … TO URL failed: ${explain(out.messages)}`);
    headers = await headerOf(env, item, method, plan.urls);
  } finally {
    const dropped = await env.session.run(plan.drop).catch(() => ({ ok: false as const }));
    if (dropped.ok) env.onGrant?.(urlGrantRevoked(grant));
    env.log(dropped.ok ? 'info' : 'warn', dropped.ok
      ? `${item.name}: write grant of vault '${grant.vault}' revoked from SQL Server ${info.server} (credential ${grant.credential} dropped; the SAS lapses at ${grant.expiresAt})`
      : `${item.name}: credential ${grant.credential} could not be dropped on SQL Server ${info.server}: drop it by hand (its SAS lapses at ${grant.expiresAt})`);
  }
  const h = ownFullHeader(item, method, headers, plan.urls.join(', '));
  const stripes = await readBackStripes(vault, item, method, plan.blobs, plan.urls, (m) => env.log('warn', m));
  const sealed = await sealFullBackup(env, item, method, info, db, h, plan.blobs, { url: { vault: vault.info.name, container: grant.credential, stripes } });
  const bytes = stripes.reduce((n, x) => n + x.bytes, 0);
  return {
    files: sealed.files,
    format: 'mssql-bak',
    tool: `SQL Server ${info.productVersion} (${info.edition}) BACKUP DATABASE TO URL`,
    position: `LastLSN ${sealed.lastLsn}, BackupSetGUID ${h.backupSetGuid}, ${stripes.length} stripe(s) of ${bytes} bytes in vault '${vault.info.name}'`,
    command: `${plan.backup.text} -- ${plan.urls.map((u, i) => `@url${i + 1} = ${u}`).join(', ')}`,
    // The stripes are in this vault only: the sidecar is stored (and the copy counted) there alone.
    vaults: [vault.info.name],
  };
}

/**
 * Each stripe read back from the vault: exists, not empty; its size, ETag
 * and the service's Content-MD5 recorded. SQL Server's Put Block List
 * leaves a stripe without Content-MD5: the vault then reads it once and
 * sets it (AzureBlobVault.recordBlob), so every later check (the proof, the
 * copy grading, verify) compares the service's MD5 with the recorded one
 * without reading the stripe again. Throws CAPTURE_FAILED naming the blob.
 */
async function readBackStripes(vault: AzureBlobVault, item: Item, method: string, blobs: string[], urls: string[], warn: (m: string) => void): Promise<SidecarUrlStripe[]> {
  const out: SidecarUrlStripe[] = [];
  for (const [i, blob] of blobs.entries()) {
    const r = await vault.recordBlob(blob).catch((e: unknown) => {
      const status = (e as { statusCode?: number }).statusCode;
      throw fail(item, method, `SQL Server reported the backup done, but stripe ${blob} is ${status === 404 ? 'not in' : `unreadable in (HTTP ${status ?? '?'})`} vault '${vault.info.name}'`, 'Check the container and the SAS the credential carried; run the capture again.');
    });
    if (!(r.bytes > 0)) throw fail(item, method, `stripe ${blob} in vault '${vault.info.name}' is empty`);
    if (r.md5NotSet) warn(`${item.name}: stripe ${blob} in vault '${vault.info.name}' has no Content-MD5 and ${r.md5NotSet}: it is checked by size and ETag only`);
    out.push({ blob, url: urls[i]!, bytes: r.bytes, ...(r.contentMd5 ? { contentMd5: r.contentMd5 } : {}), ...(r.etag ? { etag: r.etag } : {}) });
  }
  return out;
}

/** master, model, msdb: database_id 1, 3, 4 (tempdb, 2, is never captured). */
export function isSystemName(name: string): boolean {
  return ['master', 'model', 'msdb'].includes(name.toLowerCase());
}

// ---------------------------------------------------------------- vendor-job

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

async function activity(env: CaptureEnv, jobId: string): Promise<JobActivity | null> {
  return parseJobActivity(await env.session.query(q.jobActivityStatement(jobId), 'reading msdb.dbo.sysjobactivity', env.ctx.signal));
}

async function waitUntilStopped(env: CaptureEnv, item: Item, method: string, jobId: string, job: string, deadline: number, startedAfter?: number): Promise<JobActivity> {
  for (;;) {
    const a = await activity(env, jobId);
    const ours = a !== null && a.startExecutionDate !== null && (startedAfter === undefined || Date.parse(a.startExecutionDate) >= startedAfter);
    if (a !== null && ours && !isRunning(a)) return a;
    if (Date.now() > deadline) {
      throw fail(item, method, `SQL Agent job ${job} did not finish within the runbook's timeout`, 'The job was left running (Rubicon does not stop a vendor job). Raise the vendor job timeout or look at the job in SQL Agent.');
    }
    await sleep(env.pollIntervalMs, env.ctx.signal);
  }
}

/**
 * Runs the vendor's SQL Agent job and checks everything it claims.
 * "Already running" (sp_start_job Msg 22022): waits for that run to end,
 * then starts the job once more, because only a run whose start Rubicon saw
 * can be matched with the backup it wrote.
 */
export async function captureVendorJob(env: CaptureEnv, item: Item, spec: VendorJobSpec): Promise<CapturedFiles> {
  const method = 'vendor-job';
  const job = spec.command[0];
  if (!job) throw fail(item, method, 'the vendor job has no SQL Agent job name (vendorJob.command[0])');
  const deadline = Date.now() + spec.timeoutMs;
  const info = await serverInfo(env);
  const db = await databaseRow(env, item, method);
  const found = await env.session.query(q.jobByNameStatement(job), `looking up SQL Agent job ${job}`, env.ctx.signal);
  const jobId = found[0]?.job_id;
  if (typeof jobId !== 'string') throw fail(item, method, `SQL Agent job ${job} does not exist on ${describeServer(env.session.config)}`, 'Check the job name in the runbook (msdb.dbo.sysjobs.name).');
  const baseline = (await env.session.query(q.backupBaselineStatement(item.name), 'reading the newest backupset', env.ctx.signal))[0] ?? {};
  const baselineId = Number(baseline.last_backup_set_id ?? 0);

  let startedAt = 0;
  for (let attempt = 1; ; attempt++) {
    const before = (await env.session.query({ text: 'SELECT SYSDATETIME() AS server_now;', params: [] }, 'reading the server clock', env.ctx.signal))[0];
    startedAt = before?.server_now instanceof Date ? before.server_now.getTime() - 1000 : Date.now() - 1000;
    const started = await env.session.run(q.startJobStatement(job), env.ctx.signal);
    if (started.ok) break;
    const e = started.error;
    if (e?.number === 22022 && /already running/i.test(e.message) && attempt === 1) {
      env.log('warn', `SQL Agent job ${job} is already running: waiting for that run to end, then starting it again`);
      await waitUntilStopped(env, item, method, jobId, job, deadline);
      continue;
    }
    if (e?.number === 22022 && /not currently running/i.test(e.message)) {
      throw fail(item, method, `SQL Server Agent is not running on ${describeServer(env.session.config)}, so job ${job} cannot start`, 'Start the SQL Server Agent service.');
    }
    throw fail(item, method, `sp_start_job ${job} refused: ${formatMessages(started.messages)}`);
  }
  env.log('info', `SQL Agent job ${job} started; waiting for it to finish`);

  const done = await waitUntilStopped(env, item, method, jobId, job, deadline, startedAt);
  if (done.jobHistoryId === null) throw fail(item, method, `SQL Agent job ${job} stopped but recorded no history row (job_history_id is NULL)`);
  const history = parseJobHistory(await env.session.query(q.jobRunHistoryStatement(jobId, done.jobHistoryId), 'reading msdb.dbo.sysjobhistory', env.ctx.signal));
  const verdict = judgeJobRun(history);
  if (!verdict.ok) throw fail(item, method, `the vendor's backup job ${job} did not succeed: ${verdict.problems.join('; ')}`);

  const fresh = parseHistory(await env.session.query(q.newBackupsStatement(item.name, baselineId), 'reading new msdb.dbo.backupset rows', env.ctx.signal));
  const newFulls = groupBackupSets(fresh).filter((s) => s.row.type === 'D');
  // Only a backup that started within the job's run is the job's: another job or a person may have written one meanwhile.
  const fulls = newFulls.filter((s) => withinRun(s.row.backupStartDate, done.startExecutionDate, done.stopExecutionDate));
  const full = fulls[fulls.length - 1];
  if (!full) {
    const others = newFulls.length > 0 ? `; ${newFulls.length} new full backup(s) of ${item.name} started outside the job's run (${done.startExecutionDate} – ${done.stopExecutionDate}) and are not the job's` : '';
    throw fail(item, method, `the vendor's backup job ${job} reported success but wrote no new full backup of ${item.name} during its run (no new msdb.dbo.backupset row after backup_set_id ${baselineId} with backup_start_date within the run)${others}`);
  }
  if (full.row.deviceType !== 2) throw fail(item, method, `the job's backup went to device type ${full.row.deviceType} (not a disk file): Rubicon cannot fetch it`);
  const headers = await headerOf(env, item, method, full.devices);
  const h = headers.find((x) => x.position === full.row.position);
  const problems: string[] = [];
  if (!h) problems.push(`the file has no backup set at position ${full.row.position}: it was overwritten or replaced after the job wrote it`);
  else {
    if (h.databaseName !== item.name) problems.push(`it holds a backup of ${h.databaseName}`);
    if (h.backupType !== 1) problems.push(`backup type ${h.backupType}, not full`);
    if (h.isDamaged) problems.push('it is marked damaged');
    if (!sameLsn(h.lastLsn, full.row.lastLsn)) problems.push(`its LastLSN ${h.lastLsn} is not msdb's ${full.row.lastLsn}: the file is not the backup msdb describes`);
    if (full.row.backupSetUuid && !sameGuid(h.backupSetGuid, full.row.backupSetUuid)) problems.push(`its BackupSetGUID ${h.backupSetGuid || 'none'} is not msdb's backup_set_uuid ${full.row.backupSetUuid}: the file is not the backup msdb describes`);
  }
  if (problems.length > 0) throw fail(item, method, `RESTORE HEADERONLY on ${full.devices.join(', ')} disagrees with msdb: ${problems.join('; ')}`);
  if (!h!.hasBackupChecksums) env.log('warn', `the vendor's backup of ${item.name} has no backup checksums (no WITH CHECKSUM)`);

  const names = full.devices.map(serverBasename);
  const files: { path: string; name: string }[] = [];
  for (const [i, n] of names.entries()) files.push({ path: await hostFile(env, item, method, spec.output, n, full.devices[i]!), name: n });
  const step: RestoreStep = { kind: 'full', files: names, position: full.row.position, lastLsn: full.row.lastLsn, backupFinishDate: full.row.backupFinishDate, backupSetGuid: h!.backupSetGuid || full.row.backupSetUuid, hasBackupChecksums: h!.hasBackupChecksums };
  const sealed = await sealSidecar(env, item, method, info, db, [step], thumbprintsOf(db, h!));
  return {
    files: [...files, ...sealed],
    format: 'mssql-bak',
    tool: `vendor SQL Agent job ${job} on SQL Server ${info.productVersion}`,
    position: `LastLSN ${full.row.lastLsn}`,
    command: `EXEC msdb.dbo.sp_start_job @job_name = ${job}; steps: ${verdict.steps.map((s) => `${s.stepId} ${s.stepName} ${s.status}`).join(', ')}`,
  };
}

// ---------------------------------------------------------------- mssql-history

function hostDirFor(env: CaptureEnv, serverPath: string): string | null {
  const dir = serverPath.slice(0, serverPath.length - serverBasename(serverPath).length).replace(/[\\/]$/, '');
  for (const m of env.pathMap) {
    if (dir.toLowerCase() === m.server.replace(/[\\/]$/, '').toLowerCase()) return m.host;
  }
  return null;
}

/** The newest existing chain (full [+ diff] [+ logs]) from msdb, each set confirmed with RESTORE HEADERONLY. */
export async function captureHistory(env: CaptureEnv, item: Item): Promise<CapturedFiles> {
  const method = 'mssql-history';
  const info = await serverInfo(env);
  const db = await databaseRow(env, item, method);
  const rows = parseHistory(await env.session.query(q.backupHistoryStatement(item.name), 'reading msdb backup history', env.ctx.signal));
  const inc = (await env.session.query(q.databaseIncarnationStatement(item.name), 'reading the database incarnation', env.ctx.signal))[0];
  const incarnation = inc && typeof inc.database_guid === 'string' ? { databaseGuid: inc.database_guid, recoveryForkGuid: String(inc.recovery_fork_guid ?? '') } : undefined;
  const chain = newestChain(rows, { excludeDevice: (d) => serverBasename(d).startsWith('rubicon-'), ...(incarnation ? { incarnation } : {}) });
  if (!chain) throw fail(item, method, `msdb records no usable full backup of ${item.name} on disk (copy-only and Rubicon's own backups are not counted)`);
  for (const n of chain.notes) env.log('warn', `${item.name}: ${n}`);
  const sets: { set: BackupSet; kind: RestoreStep['kind'] }[] = [
    { set: chain.full, kind: 'full' },
    ...(chain.diff ? [{ set: chain.diff, kind: 'diff' as const }] : []),
    ...chain.logs.map((set) => ({ set, kind: 'log' as const })),
  ];
  const files: { path: string; name: string }[] = [];
  const steps: RestoreStep[] = [];
  const seen = new Set<string>();
  const thumbprints: string[] = typeof db.tde_thumbprint === 'string' && db.tde_thumbprint ? [db.tde_thumbprint] : [];
  for (const { set, kind } of sets) {
    const headers = await headerOf(env, item, method, set.devices);
    const h = headers.find((x) => x.position === set.row.position);
    if (!h || !sameLsn(h.lastLsn, set.row.lastLsn) || h.databaseName !== item.name || (set.row.backupSetUuid !== '' && !sameGuid(h.backupSetGuid, set.row.backupSetUuid))) {
      throw fail(item, method, `msdb says ${set.devices.join(', ')} holds the ${kind} backup of ${item.name} ending at LSN ${set.row.lastLsn}, but RESTORE HEADERONLY on the file disagrees: the file was replaced or moved`);
    }
    if (h.encryptorThumbprint) thumbprints.push(h.encryptorThumbprint);
    const names: string[] = [];
    for (const d of set.devices) {
      const hostDir = hostDirFor(env, d);
      if (hostDir === null) throw fail(item, method, `backup file ${d} is outside every mapped directory`, 'Add its folder to pathMap (server path → host path) in the mssql engine settings.');
      const name = serverBasename(d);
      names.push(name);
      if (!seen.has(name)) {
        seen.add(name);
        files.push({ path: await hostFile(env, item, method, hostDir, name, d), name });
      }
    }
    steps.push({ kind, files: names, position: set.row.position, lastLsn: set.row.lastLsn, backupFinishDate: set.row.backupFinishDate, backupSetGuid: h.backupSetGuid || set.row.backupSetUuid, hasBackupChecksums: h.hasBackupChecksums });
  }
  const sealed = await sealSidecar(env, item, method, info, db, steps, [...new Set(thumbprints)]);
  const last = steps[steps.length - 1]!;
  return {
    files: [...files, ...sealed],
    format: 'mssql-bak',
    tool: `SQL Server ${info.productVersion} msdb history + RESTORE HEADERONLY`,
    position: `LastLSN ${last.lastLsn ?? ''}`,
    command: `chain: ${steps.map((s) => `${s.kind} ${s.files.join('+')}#${s.position}`).join(' → ')}`,
  };
}

// ---------------------------------------------------------------- instance-objects

/** `instance-object:mssql:<kind>:<name>` → { kind, name }. */
export function parseInstanceObjectId(id: string): { kind: string; name: string } | null {
  const m = /^instance-object:mssql:([a-z-]+):(.*)$/s.exec(id);
  return m ? { kind: m[1]!, name: m[2]! } : null;
}

/** Where a key backup (DMK, SMK) is written and what it is. */
export interface KeyArtifact {
  version: 1;
  format: 'mssql-key';
  kind: 'master-key' | 'service-master-key';
  file: string;
  source: Sidecar['source'];
  /** The key's GUID and last change in master.sys.symmetric_keys when it was backed up (drift compares them; absent: drift unknown). */
  identity?: { keyGuid: string; modifyDate: string };
}

/** BACKUP MASTER KEY / BACKUP SERVICE MASTER KEY into the backup directory, password from the secrets source (never logged). */
async function captureKey(env: CaptureEnv, item: Item, kind: KeyArtifact['kind'], info: SourceInfo): Promise<CapturedFiles> {
  const method = 'instance-objects';
  const password = await env.secrets?.keyBackupPassword?.();
  if (password === undefined) {
    throw fail(item, method, `the ${kind === 'master-key' ? 'database master key of master' : 'service master key'} must be backed up with a password, and the secrets source has none`, 'Name the variable in engines.mssql.keyBackupPasswordEnv; it encrypts the key backup file.');
  }
  const file = `rubicon-${kind}-${fileToken(info.server)}.key`;
  await rm(env.ctx.host.resolve(posix.join(env.backupDirectoryOnHost, file)), { force: true });
  const serverPath = serverJoin(env.backupDirectory, file);
  const stmt = kind === 'master-key' ? q.backupMasterKeyStatement(serverPath, password) : q.backupServiceMasterKeyStatement(serverPath, password);
  const out = await env.session.run(stmt, env.ctx.signal);
  if (!out.ok) throw fail(item, method, `BACKUP ${kind === 'master-key' ? 'MASTER KEY' : 'SERVICE MASTER KEY'}: ${formatMessages(out.messages)}`);
  const dir = join(env.ctx.workDir, `mssql-${kind}`);
  await mkdir(dir, { recursive: true });
  const meta = join(dir, 'key.json');
  const id = (await env.session.query(q.keyIdentityStatement(kind), `reading the ${kind === 'master-key' ? 'database master key of master' : 'service master key'}`, env.ctx.signal))[0];
  const identity = typeof id?.key_guid === 'string' && typeof id.modify_date === 'string' ? { keyGuid: id.key_guid.toUpperCase(), modifyDate: id.modify_date } : undefined;
  const k: KeyArtifact = { version: 1, format: 'mssql-key', kind, file, source: sourceOf(info), ...(identity ? { identity } : {}) };
  await writeFile(meta, `${JSON.stringify(k, null, 2)}\n`);
  return {
    files: [{ path: await hostFile(env, item, method, env.backupDirectoryOnHost, file, serverPath), name: file }, { path: meta, name: 'key.json' }],
    format: 'mssql-key',
    tool: `SQL Server ${info.productVersion} BACKUP ${kind === 'master-key' ? 'MASTER KEY' : 'SERVICE MASTER KEY'}`,
    command: `BACKUP ${kind === 'master-key' ? 'MASTER KEY' : 'SERVICE MASTER KEY'} TO FILE (password from the secrets source)`,
  };
}

/**
 * msdb's backup history of the user databases as evidence (history.ts says
 * why it is never inserted into the rebuilt msdb): backup-history.json in
 * ctx.workDir. Read-only on the target.
 */
async function captureBackupHistory(env: CaptureEnv, item: Item, info: SourceInfo): Promise<CapturedFiles> {
  const method = 'instance-objects';
  const out = await env.session.run(q.backupHistoryEvidenceStatement(), env.ctx.signal);
  if (!out.ok) throw fail(item, method, `reading msdb's backup history: ${formatMessages(out.messages)}`);
  const evidence = backupHistoryEvidence(out.recordsets, sourceOf(info));
  const dir = join(env.ctx.workDir, 'mssql-backup-history');
  await mkdir(dir, { recursive: true });
  const path = join(dir, HISTORY_FILE);
  await writeFile(path, `${JSON.stringify(evidence, null, 2)}\n`);
  return {
    files: [{ path, name: HISTORY_FILE }],
    format: 'mssql-backup-history',
    tool: `SQL Server ${info.productVersion} msdb backup history`,
    command: `SELECT msdb.dbo.backupmediaset, backupmediafamily, backupset, backupfile of ${evidence.databases.length} user database(s): ${evidence.counts.backupSets} backup set(s)`,
  };
}

/** The order scripts are written, proven and landed in: what a later script needs comes first. */
export const SCRIPT_ORDER = ['logins.sql', 'operators.sql', 'database-mail.sql', 'proxies.sql', 'jobs.sql', 'alerts.sql', 'linked-servers.sql', 'credentials.sql', 'endpoints.sql', 'configuration.sql', 'startup.sql'];

/**
 * Scripts the item's objects (all kinds for the `instance` item, else the
 * one object) into .sql files in ctx.workDir, in SCRIPT_ORDER (operators
 * before the jobs and alerts that notify them); jobs.json beside jobs.sql
 * holds every job property the proof reads back. Certificates via BACKUP
 * CERTIFICATE WITH PRIVATE KEY, master's DMK and the service master key via
 * BACKUP (SERVICE) MASTER KEY, into the backup directory.
 */
export async function captureInstanceObjects(env: CaptureEnv, item: Item): Promise<CapturedFiles> {
  const method = 'instance-objects';
  const info = await serverInfo(env);
  const sig = env.ctx.signal;
  if (item.kind === 'certificate') {
    const rows = await env.session.query(q.certificateThumbprintStatement(item.name), `reading certificate ${item.name}`, sig);
    const tp = rows[0]?.thumbprint;
    if (typeof tp !== 'string') throw fail(item, method, `certificate ${item.name} does not exist in master`);
    const exported = await exportCertificate(env, item, method, item.name, tp);
    const dir = join(env.ctx.workDir, `mssql-cert-${fileToken(item.name)}`);
    await mkdir(dir, { recursive: true });
    const meta = join(dir, 'certificate.json');
    await writeFile(meta, `${JSON.stringify({ version: 1, format: 'mssql-certificate', source: sourceOf(info), certificate: exported.cert }, null, 2)}\n`);
    return { files: [...exported.files, { path: meta, name: 'certificate.json' }], format: 'mssql-certificate', tool: `SQL Server ${info.productVersion} BACKUP CERTIFICATE`, command: `BACKUP CERTIFICATE ${item.name} WITH PRIVATE KEY (password from the secrets source)` };
  }
  const id = parseInstanceObjectId(item.id);
  if (!id) throw fail(item, method, `item id ${item.id} is not an mssql instance object`);
  if (id.kind === 'master-key' || id.kind === 'service-master-key') return captureKey(env, item, id.kind, info);
  if (id.kind === 'system-database') return captureNativeFull(env, { ...item, name: id.name });
  if (id.kind === 'backup-history') return captureBackupHistory(env, item, info);
  const only = (rows: SqlRow[]): SqlRow[] => (id.kind === 'instance' ? rows : rows.filter((r) => r.name === id.name));
  const all = id.kind === 'instance';
  const scripts: { name: string; text: string }[] = [];
  const server = info.server;
  const read = (stmt: q.Statement, what: string): Promise<SqlRow[]> => env.session.query(stmt, what, sig);
  const serverRow = (await read(q.serverInfoStatement(), 'reading the machine name'))[0] ?? {};
  // Data files written beside a script (never run): what landing and the proof read back. Script name → file.
  const data = new Map<string, { name: string; text: string }>();
  if (all || id.kind === 'login') {
    const permissions = await read(q.serverPermissionsStatement(), 'listing server permissions');
    const roles = all ? await read(q.serverRolesStatement(), 'listing server roles') : [];
    const logins = only(await read(q.loginsStatement(), 'listing logins'));
    const machineName = String(serverRow.machine_name ?? '');
    scripts.push({ name: 'logins.sql', text: scriptLogins(logins, server, machineName, { roles, permissions }) });
    const props: LoginPropertiesFile = { version: 1, format: 'mssql-login-properties', machineName, principals: loginProperties(logins, permissions, roles, machineName) };
    data.set('logins.sql', { name: 'logins.json', text: `${JSON.stringify(props, null, 2)}\n` });
  }
  if (all || id.kind === 'operator') scripts.push({ name: 'operators.sql', text: scriptOperators(only(await read(q.operatorsStatement(), 'listing operators')), server) });
  if (all || id.kind === 'mail-profile') {
    const rows = (await read(q.mailProfilesStatement(), 'listing Database Mail profiles')).filter((r) => all || r.profile_name === id.name);
    scripts.push({ name: 'database-mail.sql', text: scriptDatabaseMail(rows, server) });
  }
  if (all || id.kind === 'proxy') scripts.push({ name: 'proxies.sql', text: scriptProxies(only(await read(q.proxiesStatement(), 'listing SQL Agent proxies')), server) });
  if (all || id.kind === 'job') {
    const jobs = only(await read(q.jobsStatement(), 'listing jobs'));
    const names = jobs.map((j) => String(j.name));
    const steps = await read(q.jobStepsStatement(all ? undefined : names), 'listing job steps');
    const schedules = await read(q.jobSchedulesStatement(all ? undefined : names), 'listing job schedules');
    scripts.push({ name: 'jobs.sql', text: scriptJobs(jobs, steps, server, schedules) });
    data.set('jobs.sql', { name: 'jobs.json', text: `${JSON.stringify({ version: 1, format: 'mssql-job-properties', jobs: jobProperties(jobs, steps, schedules) }, null, 2)}\n` });
  }
  if (all || id.kind === 'alert') scripts.push({ name: 'alerts.sql', text: scriptAlerts(only(await read(q.alertsStatement(), 'listing SQL Agent alerts')), server) });
  if (all || id.kind === 'linked-server') {
    scripts.push({ name: 'linked-servers.sql', text: scriptLinkedServers(only(await read(q.linkedServersStatement(), 'listing linked servers')), server, await read(q.linkedLoginsStatement(), 'listing linked-server logins')) });
  }
  if (all || id.kind === 'credential') scripts.push({ name: 'credentials.sql', text: scriptCredentials(only(await read(q.credentialsStatement(), 'listing credentials')), server) });
  if (all || id.kind === 'endpoint') {
    scripts.push({ name: 'endpoints.sql', text: scriptEndpoints(only(await read(q.endpointsStatement(), 'listing endpoints')), server, await read(q.serverPermissionsStatement(), 'listing endpoint permissions')) });
  }
  if (all || id.kind === 'configuration') {
    const integrated = serverRow.integrated_security_only === null || serverRow.integrated_security_only === undefined ? null : Number(serverRow.integrated_security_only) === 1;
    scripts.push({ name: 'configuration.sql', text: scriptConfiguration(await read(q.configurationStatement(), 'reading sp_configure'), server, integrated) });
  }
  if (all || id.kind === 'startup-procedure' || id.kind === 'trace-flags') {
    scripts.push({
      name: 'startup.sql',
      text: scriptStartupAndTraceFlags(
        id.kind === 'trace-flags' ? [] : only(await read(q.startupProceduresStatement(), 'listing startup procedures')),
        id.kind === 'startup-procedure' ? [] : (await read(q.traceFlagsStatement(), 'reading trace flags')).filter((f) => Number(f.Global) === 1),
        server,
      ),
    });
  }
  if (scripts.length === 0) throw fail(item, method, `instance objects of kind ${id.kind} cannot be scripted yet`, 'Record it as a manual step in the runbook.');
  scripts.sort((a, b) => SCRIPT_ORDER.indexOf(a.name) - SCRIPT_ORDER.indexOf(b.name));
  const dir = join(env.ctx.workDir, `mssql-objects-${fileToken(`${id.kind}:${id.name}`)}`);
  await mkdir(dir, { recursive: true });
  const files: { path: string; name: string }[] = [];
  for (const sc of scripts) {
    const p = join(dir, sc.name);
    await writeFile(p, sc.text);
    files.push({ path: p, name: sc.name });
    const d = data.get(sc.name);
    if (d) {
      const dp = join(dir, d.name);
      await writeFile(dp, d.text);
      files.push({ path: dp, name: d.name });
    }
  }
  return { files, format: 'sql-text', tool: `SQL Server ${info.productVersion} catalog views`, command: `scripted ${scripts.map((sc) => sc.name).join(', ')}` };
}
