/**
 * The SQL Server engine: createMssqlEngine(options) → DatabaseEngine.
 *
 * Connections: one short-lived session per operation (discover, fingerprint,
 * capture, prove, restore), closed at the end, on the SQL Server the
 * operation is about: `connection` (the target) for discovery, fingerprints
 * and capture; `provingGround` for prove; `landing` (default: `connection`)
 * for restore onto the rebuilt target. prove never opens a session to the
 * target.
 *
 * Files: SQL Server reads and writes backup files on its own disk. Capture
 * reads them through ctx.host (see capture.ts); prove and restore stage the
 * artifact's files (fetched from a vault onto this machine) into a folder
 * the SQL Server reads (`provingGroundFiles` / `landingFiles`: the folder as
 * the server names it and as ctx.host names it), and remove the staged
 * copies afterwards. Without staging settings the local paths are used as
 * they are (SQL Server on this machine).
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { RubiconError } from '../../core/errors.ts';
import type { Artifact, DriftChange, Fingerprint, Item, Manifest, ProofCheck } from '../../core/types.ts';
import type { CapturedFiles, DatabaseEngine, DiscoverOptions, EngineContext, ProveResult, VendorJobSpec } from '../engine.ts';
import { parseSidecar, serverJoin, SIDECAR_NAME, testDatabaseName, type SidecarCertificate } from './artifact.ts';
import { captureHistory, captureInstanceObjects, captureNativeFull, captureNativeUrl, captureVendorJob, parseInstanceObjectId, SCRIPT_ORDER, type CaptureEnv, type KeyArtifact } from './capture.ts';
import { readInstance, toItems } from './discover.ts';
import { HISTORY_FILE, judgeBackupHistory } from './history.ts';
import { fingerprintDatabase } from './fingerprint.ts';
import { thumbprint } from './parse.ts';
import { compareScripts, proveScripts, readBackLanded } from './instance-proof.ts';
import { judgeLandingServer, landingOrder, type LandingServerFacts, type SourceServerFacts } from './landing.ts';
import {
  checkIntegrity,
  explain,
  installCertificate,
  judgeRestoredDatabase,
  parseRestoreServer,
  proveArtifact,
  readOrphans,
  readRestoredDatabase,
  restoreSteps,
  runSmokeQueries,
  scratchDatabaseName,
  testCertificateFiles,
  type MssqlSecrets,
  type SmokeQuery,
} from './prove.ts';
import { MSSQL_METHODS } from './methods.ts';
import { MssqlSession, type MssqlConnectionConfig, type StatementLogger } from './session.ts';
import {
  backupHistoryEvidenceStatement,
  certificateThumbprintStatement,
  createDatabaseStatement,
  databaseExistsStatement,
  databaseFeaturesStatement,
  databasesStatement,
  dropDatabaseStatement,
  keyIdentityStatement,
  remapUserStatement,
  restoreMasterKeyStatement,
  restoreMasterKeyToScratchStatement,
  restoreServiceMasterKeyStatement,
  serverInfoStatement,
  setOwnerStatement,
  setTrustworthyStatement,
  targetServerStatement,
} from './sql.ts';
import { randomBytes } from 'node:crypto';
import type { AzureBlobVault } from '../../vaults/azure-blob.ts';
import { gradeRecordedBlob } from '../../vaults/recorded-blob.ts';
import type { Sidecar } from './artifact.ts';
import { checkDeviceUrls, createSasCredentialStatement, dropSasCredentialStatement, issueSqlServerUrlGrant, urlGrantIssued, urlGrantRevoked, type UrlGrantEvent } from './url-grant.ts';

export interface ServerFolder {
  /** The folder as the SQL Server machine names it (`D:\Rubicon\stage`, `/var/opt/mssql/stage`). */
  serverDirectory: string;
  /** The same folder relative to ctx.host's root. */
  hostDirectory: string;
}

export interface MssqlEngineOptions {
  /** The target's SQL Server. */
  connection: MssqlConnectionConfig;
  /** The proving ground's SQL Server; prove() refuses without it. */
  provingGround?: MssqlConnectionConfig;
  /** The rebuilt target's SQL Server for landing; default `connection`. */
  landing?: MssqlConnectionConfig;
  /** Where BACKUP writes Rubicon's own backups, as the target's SQL Server names the folder. */
  backupDirectory: string;
  /** The same folder relative to ctx.host's root during capture; default `.`. */
  backupDirectoryOnHost?: string;
  /** Folders of existing backups (mssql-history): server path → host path. Default: the backup directory only. */
  pathMap?: { server: string; host: string }[];
  /** Where prove stages artifact files for the proving ground's SQL Server. */
  provingGroundFiles?: ServerFolder;
  /** Where restore stages artifact files for the landing SQL Server. */
  landingFiles?: ServerFolder;
  /** MOVE targets on the proving ground; default its InstanceDefaultDataPath / InstanceDefaultLogPath. */
  provingGroundDataDirectory?: string;
  provingGroundLogDirectory?: string;
  /** Certificate private-key passwords. Never logged. */
  secrets?: MssqlSecrets;
  /** WITH COMPRESSION on native backups (ignored on Express edition); default true. */
  compression?: boolean;
  /** Polling interval while a vendor Agent job runs; default 5000 ms. */
  pollIntervalMs?: number;
  /** Vendor-declared smoke queries (runbook engines.mssql.smokeQueries), run on every proof and at landing. */
  smokeQueries?: SmokeQuery[];
  /**
   * The server that will run after the crossing, as the runbook declares it
   * (checked by preflight before the gate when the landing server is not
   * reachable yet, e.g. a rebuild in place).
   */
  landingServer?: { productVersion: string; edition: string; engineEdition: number; collation?: string };
  /**
   * Where landing puts the database files: `source` (default) at the paths
   * the source had (FILELISTONLY PhysicalName: the source's folder
   * structure, as a rebuild with the same drives expects), `instance-default`
   * under the rebuilt server's default data/log paths, or given folders.
   */
  landingLayout?: 'source' | 'instance-default' | { dataDirectory: string; logDirectory: string };
  /**
   * Carry msdb's backup history of the user databases as its own item
   * (`instance-object:mssql:backup-history:<server>`), as evidence that is
   * proven readable and reported, never inserted into the rebuilt msdb
   * (history.ts says why). Default false.
   */
  carryBackupHistory?: boolean;
  /**
   * mssql-native-url (runbook engines.mssql.backupToUrl: an azure-blob
   * vault's name): the vault SQL Server backs up into and restores from,
   * opened on first use (also in the proving process, from the runbook
   * alone), and the lifetime of its grants (default 6 h).
   */
  backupToUrl?: { vault: () => Promise<AzureBlobVault>; ttlMs?: number };
  /** Every statement sent (text and parameter names; secret values as ***). */
  onStatement?: StatementLogger;
  /** Progress and warnings in plain words. */
  log?: (level: 'info' | 'warn', message: string) => void;
  /**
   * The SAS grants of mssql-native-url (capture's write grant, the proof's
   * and the landing's read grants), for the journal: grant.issued before
   * the credential is created, grant.revoked once it is dropped. Never the
   * SAS.
   */
  onGrant?: (e: UrlGrantEvent) => void;
}

export { MSSQL_METHODS };

async function withSession<T>(config: MssqlConnectionConfig, o: MssqlEngineOptions, fn: (s: MssqlSession) => Promise<T>): Promise<T> {
  const session = await MssqlSession.connect(config, o.onStatement);
  try {
    return await fn(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

/** Copies the artifact's files where the SQL Server reads them; returns name → server path and a cleanup. */
async function stage(ctx: EngineContext, folder: ServerFolder | undefined, manifest: Manifest, files: string[]): Promise<{ paths: Map<string, string>; local: Map<string, string>; cleanup: () => Promise<void> }> {
  const paths = new Map<string, string>();
  const local = new Map<string, string>();
  const staged: string[] = [];
  for (const [i, file] of files.entries()) {
    const name = manifest.entries[i] ? basename(manifest.entries[i]!.path) : basename(file);
    local.set(name, file);
    if (folder) {
      const dest = ctx.host.resolve(posix.join(folder.hostDirectory, name));
      await mkdir(ctx.host.resolve(folder.hostDirectory), { recursive: true });
      await copyFile(file, dest);
      staged.push(dest);
      paths.set(name, serverJoin(folder.serverDirectory, name));
    } else {
      paths.set(name, file);
    }
  }
  return { paths, local, cleanup: async () => void (await Promise.all(staged.map((p) => rm(p, { force: true })))) };
}

function capturedCertificate(text: string): SidecarCertificate {
  const v = JSON.parse(text) as { format?: string; certificate?: SidecarCertificate };
  if (v.format !== 'mssql-certificate' || !v.certificate) throw new RubiconError('ENGINE_FAILED', 'mssql: certificate.json is not a Rubicon certificate artifact');
  return v.certificate;
}

export function createMssqlEngine(options: MssqlEngineOptions): DatabaseEngine {
  const o = options;
  const log = o.log ?? (() => undefined);
  const onGrant = o.onGrant ?? (() => undefined);
  let opened: Promise<AzureBlobVault> | undefined;
  const urlVault = o.backupToUrl ? (): Promise<AzureBlobVault> => (opened ??= o.backupToUrl!.vault()) : undefined;
  const env = (ctx: EngineContext, session: MssqlSession): CaptureEnv => ({
    session,
    ctx,
    backupDirectory: o.backupDirectory,
    backupDirectoryOnHost: o.backupDirectoryOnHost ?? '.',
    pathMap: o.pathMap ?? [{ server: o.backupDirectory, host: o.backupDirectoryOnHost ?? '.' }],
    ...(o.secrets ? { secrets: o.secrets } : {}),
    compression: o.compression ?? true,
    pollIntervalMs: o.pollIntervalMs ?? 5000,
    log,
    onGrant,
    ...(urlVault ? { url: { vault: urlVault, ttlMs: o.backupToUrl?.ttlMs ?? URL_GRANT_TTL_MS } } : {}),
  });

  const proveDeps = (ctx: EngineContext, session: MssqlSession): Parameters<typeof proveArtifact>[0] => ({
    session,
    ...(o.secrets ? { secrets: o.secrets } : {}),
    ...(o.provingGroundDataDirectory ? { dataDirectory: o.provingGroundDataDirectory } : {}),
    ...(o.provingGroundLogDirectory ? { logDirectory: o.provingGroundLogDirectory } : {}),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
  });
  const proveInput = (artifact: Artifact, sidecar: Sidecar, serverPaths: Map<string, string>): Parameters<typeof proveArtifact>[1] => ({
    artifactId: artifact.id,
    sidecar,
    serverPaths,
    testDatabase: testDatabaseName(sidecar.database, artifact.id),
    ...(artifact.sourceFingerprint ? { sourceFingerprint: artifact.sourceFingerprint } : {}),
    ...(o.smokeQueries ? { smokeQueries: o.smokeQueries } : {}),
  });

  return {
    kind: 'mssql',
    methods: MSSQL_METHODS,
    // Every session is TDS from this process to a server (connection, provingGround, landing): usable on a remote target.
    overNetwork: true,

    async discover(ctx: EngineContext, options: DiscoverOptions): Promise<Item[]> {
      return withSession(o.connection, o, async (s) => toItems(await readInstance(s, ctx.signal), options, { carryBackupHistory: o.carryBackupHistory === true }));
    },

    async fingerprint(ctx: EngineContext, item: Item): Promise<Fingerprint> {
      // After landing (ctx.landing): the rebuilt server, which is `landing` when the runbook names one.
      return withSession(ctx.landing ? (o.landing ?? o.connection) : o.connection, o, (s) => fingerprintDatabase(s, item.name, ctx.signal));
    },

    async capture(ctx: EngineContext, item: Item, method: string, opts: { vendorJob?: VendorJobSpec }): Promise<CapturedFiles> {
      return withSession(o.connection, o, async (s) => {
        const e = env(ctx, s);
        switch (method) {
          case 'mssql-native-full':
          case 'mssql-system-full':
            return captureNativeFull(e, item);
          case 'mssql-native-url':
            return captureNativeUrl(e, item);
          case 'mssql-history':
            return captureHistory(e, item);
          case 'vendor-job':
            if (!opts.vendorJob) throw new RubiconError('CAPTURE_FAILED', `${item.id} (vendor-job): the runbook declares no vendor job for this database`);
            return captureVendorJob(e, item, opts.vendorJob);
          case 'instance-objects':
            return captureInstanceObjects(e, item);
          default:
            throw new RubiconError('CAPTURE_FAILED', `${item.id}: the mssql engine has no method ${method}`, { hint: `Use one of ${Object.keys(MSSQL_METHODS).join(', ')}.` });
        }
      });
    },

    async prove(ctx: EngineContext, artifact: Artifact, manifest: Manifest, files: string[]): Promise<ProveResult> {
      if (!o.provingGround) {
        throw new RubiconError('ENGINE_FAILED', 'mssql: no proving ground SQL Server is configured', { hint: 'Set provingGround in the mssql engine settings.' });
      }
      // Backup history is evidence: it is read back here, and the proving ground's SQL Server is not needed for that.
      if (manifest.format === 'mssql-backup-history') return { checks: [await judgeHistoryFile(manifest, files, 'proof')] };
      const staged = await stage(ctx, o.provingGroundFiles, manifest, files);
      try {
        return await withSession(o.provingGround, o, async (session) => {
          if (manifest.format === 'mssql-certificate') {
            return proveCertificate(session, staged, o.secrets, ctx.signal);
          }
          if (manifest.format === 'sql-text') return { checks: await proveScripts(session, staged.local, ctx.signal) };
          if (manifest.format === 'mssql-key') return proveKey(session, staged, o.secrets, ctx.signal);
          const sidecarPath = staged.local.get(SIDECAR_NAME);
          if (!sidecarPath) {
            return { checks: [{ name: 'restore', status: 'failed', detail: `the artifact has no ${SIDECAR_NAME}: it does not say what to restore`, durationMs: 0 }] };
          }
          const sidecar = parseSidecar(await readFile(sidecarPath, 'utf8'), `${artifact.id}/${SIDECAR_NAME}`);
          if (sidecar.url) {
            // The stripes are in the azure-blob vault: read back there, restored FROM URL through a read grant.
            const t0 = Date.now();
            let url: Awaited<ReturnType<typeof openUrlRead>>;
            try {
              url = await openUrlRead(session, urlVault, o.backupToUrl?.ttlMs ?? URL_GRANT_TTL_MS, sidecar, staged.paths, { machine: `proving ground SQL Server ${describeTarget(o.provingGround!)}`, onGrant }, ctx.signal);
            } catch (e) {
              return { checks: [{ name: 'url-stripes', status: 'failed', detail: e instanceof Error ? e.message : String(e), durationMs: Date.now() - t0 }] };
            }
            let r: ProveResult;
            let closed: string;
            try {
              r = await proveArtifact(proveDeps(ctx, session), proveInput(artifact, sidecar, staged.paths));
            } finally {
              closed = await url.close();
            }
            return { ...r, checks: [{ name: 'url-stripes', status: 'passed', detail: `${url.detail}; ${closed}`, durationMs: url.durationMs }, ...r.checks] };
          }
          return proveArtifact(proveDeps(ctx, session), proveInput(artifact, sidecar, staged.paths));
        });
      } finally {
        await staged.cleanup();
      }
    },

    /**
     * Drift of an instance-level item, read-only on the target (`connection`):
     * scripts (sql-text) are scripted again into a fresh folder under
     * ctx.workDir (removed afterwards) and compared by SHA-256 with the
     * manifest; a certificate's thumbprint in master is compared with the
     * captured one; a key (DMK, service master key) by its GUID and last
     * change in master.sys.symmetric_keys (unknown for an artifact that did
     * not record them). undefined for anything else (databases have fingerprints).
     */
    async drift(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<DriftChange[] | undefined> {
      if (manifest.format === 'mssql-certificate') {
        const i = manifest.entries.findIndex((e) => basename(e.path) === 'certificate.json');
        const path = i >= 0 ? files[i] : undefined;
        if (!path) return undefined;
        const c = capturedCertificate(await readFile(path, 'utf8'));
        const rows = await withSession(o.connection, o, (s) => s.query(certificateThumbprintStatement(c.name), `reading certificate ${c.name}`, ctx.signal));
        const now = rows[0]?.thumbprint;
        if (typeof now !== 'string') return [{ path: item.location, kind: 'deleted' }];
        return thumbprint(now) === thumbprint(c.thumbprint) ? [] : [{ path: item.location, kind: 'modified' }];
      }
      if (manifest.format === 'mssql-key') {
        // The key's GUID and last change in master (read-only), against the ones recorded at its backup.
        const i = manifest.entries.findIndex((e) => basename(e.path) === 'key.json');
        const path = i >= 0 ? files[i] : undefined;
        if (!path) return undefined;
        const k = capturedKey(await readFile(path, 'utf8'));
        if (!k.identity) return undefined;
        const rows = await withSession(o.connection, o, (s) => s.query(keyIdentityStatement(k.kind), `reading the ${k.kind}`, ctx.signal));
        const now = rows[0];
        if (typeof now?.key_guid !== 'string') return [{ path: item.location, kind: 'deleted' }];
        return now.key_guid.toUpperCase() === k.identity.keyGuid && String(now.modify_date) === k.identity.modifyDate ? [] : [{ path: item.location, kind: 'modified' }];
      }
      if (manifest.format === 'mssql-backup-history') {
        // New (or removed) backup sets since the capture: the set GUIDs read again, read-only.
        const i = manifest.entries.findIndex((e) => basename(e.path) === HISTORY_FILE);
        if (i < 0 || !files[i]) return undefined;
        const then = judgeBackupHistory(await readFile(files[i]!, 'utf8'));
        if (then.setGuids.length === 0 && !then.ok) return undefined;
        const out = await withSession(o.connection, o, (s) => s.run(backupHistoryEvidenceStatement(), ctx.signal));
        if (!out.ok) throw new RubiconError('ENGINE_FAILED', `mssql: reading msdb's backup history for drift: ${explain(out.messages)}`);
        const now = (out.recordsets[2] ?? []).map((r) => String(r.backup_set_uuid ?? '').toUpperCase()).sort();
        return now.join(',') === then.setGuids.join(',') ? [] : [{ path: HISTORY_FILE, kind: 'modified' }];
      }
      if (manifest.format !== 'sql-text' || !parseInstanceObjectId(item.id)) return undefined;
      const workDir = join(ctx.workDir, 'mssql-drift');
      await rm(workDir, { recursive: true, force: true });
      await mkdir(workDir, { recursive: true });
      try {
        const sub = { ...ctx, workDir };
        const captured = await withSession(o.connection, o, (s) => captureInstanceObjects(env(sub, s), item));
        const now = await Promise.all(captured.files.map(async (f) => ({ name: f.name, text: await readFile(f.path, 'utf8') })));
        return compareScripts(manifest, now);
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    },

    /**
     * Landing on the rebuilt server (`landing`, default `connection`). Keys:
     * the service master key (RESTORE SERVICE MASTER KEY, no FORCE), master's
     * DMK where master has none, certificates (files tested in a scratch
     * database, then into master). Scripts: the .sql files in SCRIPT_ORDER,
     * each its own batch (data files such as jobs.json are not run).
     * Databases: refuses to overwrite; restores the proven chain under the
     * real name, CHECKDB (shown to have run), then the source's owner,
     * TRUSTWORTHY and orphaned users remapped to the login of their name.
     * System databases are not landed (the rebuilt instance has its own).
     * Destructive only for what it creates; throws LANDING_FAILED.
     */
    async restore(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<void> {
      if (manifest.format === 'mssql-backup-history') {
        // Evidence, never replayed: INSERTs into msdb's system tables are not supported (history.ts). Nothing is sent.
        log('info', `${item.id}: msdb backup history is kept as evidence in the vault (${HISTORY_FILE}); it is not inserted into the rebuilt msdb`);
        return;
      }
      const staged = await stage(ctx, o.landingFiles, manifest, files);
      const fail = (m: string, hint?: string): RubiconError => new RubiconError('LANDING_FAILED', `${item.id}: ${m}`, hint ? { hint } : {});
      try {
        await withSession(o.landing ?? o.connection, o, async (session) => {
          if (manifest.format === 'mssql-certificate') {
            const metaPath = staged.local.get('certificate.json');
            if (!metaPath) throw fail('the artifact has no certificate.json');
            const c = capturedCertificate(await readFile(metaPath, 'utf8'));
            const password = await o.secrets?.certificatePassword(c.name);
            if (password === undefined) throw fail(`no password for certificate ${c.name} in the secrets source`);
            const r = await installCertificate(session, c, staged.paths.get(c.certFile) ?? '', staged.paths.get(c.keyFile) ?? '', password, o.secrets, 'landing', ctx.signal);
            if (!r.ok) throw fail(r.detail);
            log('info', r.detail);
            return;
          }
          if (manifest.format === 'mssql-key') {
            const k = capturedKey(await readFile(staged.local.get('key.json') ?? '', 'utf8'));
            const password = await o.secrets?.keyBackupPassword?.();
            if (password === undefined) throw fail('no key backup password in the secrets source (engines.mssql.keyBackupPasswordEnv)');
            const file = staged.paths.get(k.file) ?? '';
            if (k.kind === 'service-master-key') {
              const out = await session.run(restoreServiceMasterKeyStatement(file, password), ctx.signal);
              if (!out.ok) throw fail(`RESTORE SERVICE MASTER KEY: ${explain(out.messages)}`, 'Without FORCE, SQL Server refuses when the current key encrypts something it cannot re-encrypt; decide by hand before adding FORCE.');
              return;
            }
            const info = (await session.query(serverInfoStatement(), 'reading the rebuilt server', ctx.signal))[0] ?? {};
            if (Number(info.master_key ?? 0) > 0) {
              log('info', `${item.id}: master already has a database master key; the captured one was not restored over it`);
              return;
            }
            const newPassword = await o.secrets?.masterKeyPassword?.('landing');
            if (newPassword === undefined) throw fail("no password for master's database master key (engines.mssql.masterKeyPasswordEnv)");
            const out = await session.run(restoreMasterKeyStatement(file, password, newPassword), ctx.signal);
            if (!out.ok) throw fail(`RESTORE MASTER KEY: ${explain(out.messages)}`);
            return;
          }
          if (manifest.format === 'sql-text') {
            const scripts = [...staged.local].filter(([name]) => name.endsWith('.sql')).sort(([a], [b]) => SCRIPT_ORDER.indexOf(basename(a)) - SCRIPT_ORDER.indexOf(basename(b)));
            for (const [name, path] of scripts) {
              const out = await session.run({ text: await readFile(path, 'utf8'), params: [], long: true }, ctx.signal);
              if (!out.ok) throw fail(`${name} failed on the rebuilt server: ${explain(out.messages)}`);
            }
            return;
          }
          const sidecarPath = staged.local.get(SIDECAR_NAME);
          if (!sidecarPath) throw fail(`the artifact has no ${SIDECAR_NAME}`);
          const sidecar = parseSidecar(await readFile(sidecarPath, 'utf8'), SIDECAR_NAME);
          if (sidecar.system) {
            log('info', `${item.id}: system database ${sidecar.database} is not landed: the rebuilt instance has its own; its contents land through their own items`);
            return;
          }
          const exists = await session.query(databaseExistsStatement(item.name), `looking for ${item.name}`, ctx.signal);
          if (exists.length > 0) {
            throw fail(`database ${item.name} already exists on the rebuilt server; Rubicon does not overwrite it`, 'Drop it by hand if it is an empty placeholder, then resume the run.');
          }
          for (const c of sidecar.certificates) {
            const password = await o.secrets?.certificatePassword(c.name);
            if (password === undefined) throw fail(`no password for certificate ${c.name} in the secrets source`);
            const r = await installCertificate(session, c, staged.paths.get(c.certFile) ?? '', staged.paths.get(c.keyFile) ?? '', password, o.secrets, 'landing', ctx.signal);
            if (!r.ok) throw fail(r.detail);
          }
          const url = sidecar.url ? await openUrlRead(session, urlVault, o.backupToUrl?.ttlMs ?? URL_GRANT_TTL_MS, sidecar, staged.paths, { machine: `landing SQL Server ${describeTarget(o.landing ?? o.connection)}`, onGrant }, ctx.signal).catch((e: unknown) => { throw fail(e instanceof Error ? e.message : String(e)); }) : undefined;
          if (url) log('info', `${item.id}: ${url.detail}`);
          try {
            const server = parseRestoreServer((await session.query(targetServerStatement(), 'reading the rebuilt server', ctx.signal))[0] ?? {});
            const layout = o.landingLayout ?? 'source';
            const dirs =
              typeof layout === 'object'
                ? { data: layout.dataDirectory, log: layout.logDirectory }
                : { data: server.dataDirectory, log: server.logDirectory, sourceLayout: layout === 'source' };
            const r = await restoreSteps(session, item.name, sidecar, staged.paths, dirs, ctx.signal, server, ctx.onProgress);
            if (!r.ok) throw fail(r.detail);
            const check = await checkIntegrity(session, item.name, `the landed ${item.name}`, ctx.signal);
            if (!check.ok) throw fail(check.detail);
            const facts = sidecar.databaseFacts;
            if (facts?.owner) {
              const out = await session.run(setOwnerStatement(item.name, facts.owner), ctx.signal);
              if (!out.ok) throw fail(`ALTER AUTHORIZATION to ${facts.owner}: ${explain(out.messages)}`, 'Land the logins item first (landingOrder), or create the owner login.');
            }
            if (facts?.trustworthy) {
              const out = await session.run(setTrustworthyStatement(item.name), ctx.signal);
              if (!out.ok) throw fail(`SET TRUSTWORTHY ON: ${explain(out.messages)}`);
            }
            for (const orphan of await readOrphans(session, item.name, ctx.signal)) {
              if (!orphan.loginByName) continue;
              const out = await session.run(remapUserStatement(item.name, orphan.user, orphan.loginByName), ctx.signal);
              if (!out.ok) throw fail(`ALTER USER ${orphan.user} WITH LOGIN = ${orphan.loginByName}: ${explain(out.messages)}`);
              log('warn', `${item.id}: user ${orphan.user} had no login with its SID; remapped to login ${orphan.loginByName} by name`);
            }
          } finally {
            if (url) log('info', `${item.id}: ${await url.close()}`);
          }
        });
      } finally {
        await staged.cleanup();
      }
    },

    landingOrder,

    /**
     * Before the gate: the source (still there) against the landing server:
     * live when `landing` is configured and reachable, else the runbook's
     * `landingServer` declaration; neither is a failed check. Read-only.
     */
    async preflight(ctx: EngineContext, items: Item[]): Promise<ProofCheck[]> {
      const t0 = Date.now();
      const dbs = items.filter((i) => i.kind === 'database' && i.engine === 'mssql' && i.discovered);
      const source = await withSession(o.connection, o, async (s): Promise<SourceServerFacts> => {
        const info = (await s.query(serverInfoStatement(), 'reading the source server', ctx.signal))[0] ?? {};
        const rows = await s.query(databasesStatement(), 'listing databases', ctx.signal);
        const databases: SourceServerFacts['databases'] = [];
        for (const d of dbs) {
          const row = rows.find((r) => r.name === d.name);
          if (!row) continue;
          const out = await s.run(databaseFeaturesStatement(d.name), ctx.signal);
          const f = out.recordsets[0]?.[0] ?? {};
          databases.push({ name: d.name, dataBytes: Number(row.size_bytes ?? 0), skuFeatures: (out.recordsets[1] ?? []).map((x) => String(x.feature_name)), filestream: Number(f.filestream_filegroups ?? 0) > 0, clrAssemblies: Number(f.clr_assemblies ?? 0) });
        }
        return {
          productVersion: String(info.product_version ?? ''),
          edition: String(info.edition ?? ''),
          engineEdition: Number(info.engine_edition ?? 0),
          collation: String(info.collation ?? ''),
          integratedSecurityOnly: info.integrated_security_only === null || info.integrated_security_only === undefined ? null : Number(info.integrated_security_only) === 1,
          databases,
        };
      });
      let landing: LandingServerFacts | undefined;
      if (o.landing && describeTarget(o.landing) !== describeTarget(o.connection)) {
        landing = await withSession(o.landing, o, async (s) => {
          const r = parseRestoreServer((await s.query(targetServerStatement(), 'reading the landing server', ctx.signal))[0] ?? {});
          return { productVersion: r.version ? `${r.version.major}.${r.version.minor}.${r.version.build}` : '', edition: r.edition, engineEdition: r.engineEdition, collation: r.collation, filestreamLevel: r.filestreamLevel, clrEnabled: r.clrEnabled, basis: 'live' as const };
        }).catch(() => undefined);
      }
      landing ??= o.landingServer ? { ...o.landingServer, basis: 'declared' } : undefined;
      if (!landing) {
        return [{ name: 'landing-server', status: 'failed', detail: 'the landing server is neither reachable nor declared: declare the SQL Server the rebuilt target will run in engines.mssql.landingServer (productVersion, edition, engineEdition)', durationMs: Date.now() - t0 }];
      }
      return [{ ...judgeLandingServer(source, landing), durationMs: Date.now() - t0 }];
    },

    /**
     * After restore() at landing, read-only. A database: settings against the
     * source, no orphaned user, smoke queries. Instance scripts: the landed
     * logins and jobs read back and compared property by property
     * (readBackLanded), the authentication mode.
     */
    async validateLanding(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<ProofCheck[]> {
      if (manifest.format === 'sql-text') {
        const texts = await Promise.all(manifest.entries.map(async (e, i) => ({ name: basename(e.path), text: files[i] ? await readFile(files[i]!, 'utf8') : '' })));
        // The authentication mode is a registry value read at service start: configuration.sql sets it, a restart applies it.
        const mode = /N'LoginMode', N'REG_DWORD', ([12]);/.exec(texts.find((t) => t.name === 'configuration.sql')?.text ?? '')?.[1];
        const readBack = texts.some((t) => t.name === 'logins.sql' || t.name === 'jobs.sql');
        if (!mode && !readBack) return [];
        return withSession(o.landing ?? o.connection, o, async (s) => {
          // Logins and jobs read back property by property: a script that ran is not yet a landed login or job.
          const checks = await readBackLanded(s, texts, ctx.signal);
          if (mode) {
            const r = parseRestoreServer((await s.query(targetServerStatement(), 'reading the rebuilt server', ctx.signal))[0] ?? {});
            const want = mode === '1';
            const okMode = r.integratedSecurityOnly === want;
            checks.push({ name: 'authentication-mode', status: okMode ? 'passed' : 'failed', detail: okMode ? `authentication mode is ${want ? 'Windows only' : 'mixed'}, as on the source` : `authentication mode is ${r.integratedSecurityOnly ? 'Windows only' : 'mixed'} on the rebuilt server, ${want ? 'Windows only' : 'mixed'} on the source: restart the SQL Server service (configuration.sql set LoginMode)`, durationMs: 0 });
          }
          return checks;
        });
      }
      if (manifest.format === 'mssql-backup-history') return [await judgeHistoryFile(manifest, files, 'landing')];
      if (item.kind !== 'database' || manifest.format !== 'mssql-bak') return [];
      const i = manifest.entries.findIndex((e) => basename(e.path) === SIDECAR_NAME);
      if (i < 0 || !files[i]) return [{ name: 'database-settings', status: 'failed', detail: `the artifact has no ${SIDECAR_NAME}`, durationMs: 0 }];
      const sidecar = parseSidecar(await readFile(files[i]!, 'utf8'), SIDECAR_NAME);
      if (sidecar.system) return [];
      return withSession(o.landing ?? o.connection, o, async (s) => {
        const t0 = Date.now();
        const restored = await readRestoredDatabase(s, item.name, ctx.signal);
        const orphans = await readOrphans(s, item.name, ctx.signal);
        const j = judgeRestoredDatabase(sidecar, restored, orphans, 'landing');
        const server = parseRestoreServer((await s.query(targetServerStatement(), 'reading the rebuilt server', ctx.signal))[0] ?? {});
        if ((sidecar.databaseFacts?.clrAssemblies ?? 0) > 0 && !server.clrEnabled) j.problems.push(`${item.name} has ${sidecar.databaseFacts!.clrAssemblies} user CLR assemblies and 'clr enabled' is off on the rebuilt server: land the configuration item (sp_configure 'clr enabled', 1)`);
        if ((sidecar.databaseFacts?.filestreamFilegroups ?? 0) > 0 && server.filestreamLevel < 1) j.problems.push(`${item.name} uses FILESTREAM and it is disabled on the rebuilt server`);
        const checks: ProofCheck[] = [{ name: 'database-settings', status: j.problems.length ? 'failed' : 'passed', detail: [...j.problems, ...j.notes].join('; '), durationMs: Date.now() - t0 }];
        const queries = (o.smokeQueries ?? []).filter((q) => q.database === item.name);
        const t1 = Date.now();
        if (queries.length === 0) {
          checks.push({ name: 'smoke', status: 'passed', detail: `the runbook declares no smoke query for ${item.name}`, durationMs: 0 });
        } else {
          const r = await runSmokeQueries(s, item.name, queries, ctx.signal);
          checks.push({ name: 'smoke', status: r.ok ? 'passed' : 'failed', detail: r.detail, durationMs: Date.now() - t1 });
        }
        return checks;
      });
    },
  };
}

/**
 * The backup-history evidence read back from the vault's copy and judged
 * (history.ts): check `backup-history`, passed when the file is whole; its
 * detail reports what it holds and that it is evidence, not replayed.
 */
async function judgeHistoryFile(manifest: Manifest, files: string[], when: 'proof' | 'landing'): Promise<ProofCheck> {
  const t0 = Date.now();
  const i = manifest.entries.findIndex((e) => basename(e.path) === HISTORY_FILE);
  if (i < 0 || !files[i]) return { name: 'backup-history', status: 'failed', detail: `the artifact has no ${HISTORY_FILE}`, durationMs: 0 };
  const j = judgeBackupHistory(await readFile(files[i]!, 'utf8'));
  const what = when === 'proof' ? 'read back from the vault' : 'kept in the vault as evidence; not inserted into the rebuilt msdb (its history starts with this landing)';
  return {
    name: 'backup-history',
    status: j.ok ? 'passed' : 'failed',
    detail: j.ok ? `${HISTORY_FILE} ${what}: ${j.summary}; every set's media set, media families and files present, set GUIDs unique` : `${HISTORY_FILE} is not whole: ${j.problems.slice(0, 10).join('; ')}`,
    durationMs: Date.now() - t0,
  };
}

/** Lifetime of the SAS behind a SQL Server credential (the credential itself is dropped as soon as the statement is done). */
export const URL_GRANT_TTL_MS = 6 * 3600_000;

/**
 * Before a restore FROM URL (prove, landing): every stripe the sidecar
 * names read back from its vault (exists, the recorded size and ETag), a
 * read grant issued (a container SAS `r l`) and held by SQL Server only as
 * the credential named by the container URL; `paths` gets each stripe's
 * URL under its blob name (the restore statements then say URL = …).
 * close() drops the credential (idempotent) and says so in plain words.
 * The SAS never leaves the credential statement's secret parameter.
 * Throws plain-words errors naming the vault and the blob.
 */
async function openUrlRead(
  session: MssqlSession,
  vaultOf: (() => Promise<AzureBlobVault>) | undefined,
  ttlMs: number,
  sidecar: Sidecar,
  paths: Map<string, string>,
  journal: { machine: string; onGrant: (e: UrlGrantEvent) => void },
  signal?: AbortSignal,
): Promise<{ detail: string; durationMs: number; close: () => Promise<string> }> {
  const t0 = Date.now();
  const u = sidecar.url!;
  if (!vaultOf) throw new Error(`the backup of ${sidecar.database} is in azure-blob vault '${u.vault}', and engines.mssql.backupToUrl names no vault: set it to '${u.vault}'`);
  const vault = await vaultOf();
  if (vault.info.name !== u.vault) throw new Error(`the backup of ${sidecar.database} is in vault '${u.vault}', engines.mssql.backupToUrl names '${vault.info.name}'`);
  const problems: string[] = [];
  for (const x of u.stripes) {
    const p = await vault.container.getBlobClient(x.blob).getProperties().catch((e: unknown) => ({ missing: (e as { statusCode?: number }).statusCode ?? 0 }));
    if ('missing' in p) {
      problems.push(`${x.blob}: ${p.missing === 404 ? 'not there' : `unreadable (HTTP ${p.missing || '?'})`}`);
      continue;
    }
    // Size, then the service's Content-MD5 against the capture's, then the ETag (gradeRecordedBlob, the copy grading's rule too).
    const g = gradeRecordedBlob(x, { bytes: Number(p.contentLength ?? -1), ...(p.etag ? { etag: p.etag } : {}), ...(p.contentMD5 ? { contentMd5: Buffer.from(p.contentMD5).toString('base64') } : {}) });
    if (g) problems.push(`${x.blob}: ${g.detail}`);
  }
  if (problems.length > 0) throw new Error(`the stripes of ${sidecar.database} in vault '${u.vault}' are not as captured: ${problems.join('; ')}`);
  // Read + list only (checkSasPermissions): a grant that could write or delete is refused before SQL Server sees it.
  const grant = await issueSqlServerUrlGrant(vault, 'read', ttlMs);
  if (grant.credential !== u.container) throw new Error(`vault '${u.vault}' is now container ${grant.credential}; the backup was written to ${u.container}`);
  checkDeviceUrls(grant.credential, u.stripes.map((x) => x.url));
  journal.onGrant(urlGrantIssued(grant, journal.machine));
  const made = await session.run(createSasCredentialStatement(grant), signal);
  if (!made.ok) {
    // CREATE CREDENTIAL failed, so nothing holds the SAS: the drop (idempotent) makes sure, then the grant is revoked.
    const dropped = await session.run(dropSasCredentialStatement(grant.credential)).catch(() => ({ ok: false }));
    if (dropped.ok) journal.onGrant(urlGrantRevoked(grant));
    throw new Error(`creating the SAS credential ${grant.credential}: ${explain(made.messages)}`);
  }
  for (const x of u.stripes) paths.set(x.blob, x.url);
  const bytes = u.stripes.reduce((n, x) => n + x.bytes, 0);
  return {
    detail: `${u.stripes.length} stripe(s), ${bytes} bytes, read back from vault '${u.vault}' with the captured sizes, Content-MD5s and ETags; read grant (${grant.sasKind} SAS, r l, expires ${grant.expiresAt}) held by SQL Server as credential ${grant.credential} for the restore FROM URL`,
    durationMs: Date.now() - t0,
    close: async () => {
      const out = await session.run(dropSasCredentialStatement(grant.credential)).catch(() => ({ ok: false }));
      if (out.ok) journal.onGrant(urlGrantRevoked(grant));
      return out.ok ? `read grant of vault '${u.vault}' revoked (credential ${grant.credential} dropped; the SAS lapses at ${grant.expiresAt})` : `credential ${grant.credential} could not be dropped: drop it by hand (its SAS lapses at ${grant.expiresAt})`;
    },
  };
}

function describeTarget(c: MssqlConnectionConfig): string {
  return `${c.server.toLowerCase()}:${c.instanceName ? c.instanceName.toLowerCase() : String(c.port ?? 1433)}`;
}

function capturedKey(text: string): KeyArtifact {
  const v = JSON.parse(text) as Partial<KeyArtifact>;
  if (v.format !== 'mssql-key' || (v.kind !== 'master-key' && v.kind !== 'service-master-key') || typeof v.file !== 'string') throw new RubiconError('ENGINE_FAILED', 'mssql: key.json is not a Rubicon key artifact');
  return v as KeyArtifact;
}

/**
 * A key artifact on the proving ground. master's DMK: RESTORE MASTER KEY
 * into a scratch database (decrypts with the runbook's password; master is
 * untouched), then the scratch database dropped. The service master key
 * cannot be restored without re-encrypting the proving ground's own keys:
 * `restore` is skipped with the reason, so the proof does not pass.
 */
async function proveKey(session: MssqlSession, staged: { paths: Map<string, string>; local: Map<string, string> }, secrets: MssqlSecrets | undefined, signal?: AbortSignal): Promise<ProveResult> {
  const t0 = Date.now();
  const metaPath = staged.local.get('key.json');
  if (!metaPath) return { checks: [{ name: 'restore', status: 'failed', detail: 'the artifact has no key.json', durationMs: 0 }] };
  const k = capturedKey(await readFile(metaPath, 'utf8'));
  if (k.kind === 'service-master-key') {
    return { checks: [{ name: 'restore', status: 'skipped', detail: 'not run on the proving ground: RESTORE SERVICE MASTER KEY re-encrypts every key of that instance (other proofs share it). The file is restored at landing, before the database master key and the certificates', durationMs: 0 }] };
  }
  const password = await secrets?.keyBackupPassword?.();
  if (password === undefined) return { checks: [{ name: 'restore', status: 'failed', detail: 'no key backup password in the secrets source (engines.mssql.keyBackupPasswordEnv)', durationMs: 0 }] };
  const scratch = scratchDatabaseName('master-key');
  try {
    const made = await session.run(createDatabaseStatement(scratch), signal);
    if (!made.ok) return { checks: [{ name: 'restore', status: 'failed', detail: `could not create the scratch database ${scratch}: ${explain(made.messages)}`, durationMs: Date.now() - t0 }] };
    const out = await session.run(restoreMasterKeyToScratchStatement(scratch, staged.paths.get(k.file) ?? '', password, `Rk!${randomBytes(24).toString('base64url')}`), signal);
    const keys = Number(out.recordsets.at(-1)?.[0]?.master_keys ?? 0);
    const ok = out.ok && keys === 1;
    return {
      checks: [
        {
          name: 'restore',
          status: ok ? 'passed' : 'failed',
          detail: ok ? `master's database master key backup decrypts with the runbook's password: RESTORE MASTER KEY into scratch database ${scratch} succeeded (dropped afterwards)` : `RESTORE MASTER KEY into a scratch database: ${out.ok ? 'no master key there afterwards' : explain(out.messages)}`,
          durationMs: Date.now() - t0,
        },
      ],
    };
  } finally {
    await session.run(dropDatabaseStatement(scratch)).catch(() => undefined);
  }
}

/**
 * A certificate artifact: its own .cer/.pvk files always tested in a scratch
 * database (decrypt with the password, thumbprint compared, dropped), then
 * restored into the proving ground's master where missing (kept there for
 * later database proofs; master's DMK created first where missing).
 */
async function proveCertificate(
  session: MssqlSession,
  staged: { paths: Map<string, string>; local: Map<string, string> },
  secrets: MssqlSecrets | undefined,
  signal?: AbortSignal,
): Promise<ProveResult> {
  const t0 = Date.now();
  const check = (status: ProofCheck['status'], detail: string): ProveResult => ({ checks: [{ name: 'certificate', status, detail, durationMs: Date.now() - t0 }] });
  const metaPath = staged.local.get('certificate.json');
  if (!metaPath) return check('failed', 'the artifact has no certificate.json');
  const c = capturedCertificate(await readFile(metaPath, 'utf8'));
  const password = await secrets?.certificatePassword(c.name);
  if (password === undefined) return check('failed', `no password for certificate ${c.name}'s private key in the secrets source`);
  const certPath = staged.paths.get(c.certFile);
  const keyPath = staged.paths.get(c.keyFile);
  if (!certPath || !keyPath) return check('failed', `certificate ${c.name}: ${!certPath ? c.certFile : c.keyFile} is missing from the artifact`);
  const tested = await testCertificateFiles(session, c, certPath, keyPath, password, signal);
  if (!tested.ok) return check('failed', tested.detail);
  const installed = await installCertificate(session, c, certPath, keyPath, password, secrets, 'proving-ground', signal);
  if (!installed.ok) return check('failed', installed.detail);
  return check('passed', `${tested.detail}; ${installed.detail}`);
}
