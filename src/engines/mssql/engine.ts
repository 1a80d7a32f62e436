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
import { captureHistory, captureInstanceObjects, captureNativeFull, captureVendorJob, parseInstanceObjectId, type CaptureEnv } from './capture.ts';
import { readInstance, toItems } from './discover.ts';
import { fingerprintDatabase } from './fingerprint.ts';
import { thumbprint } from './parse.ts';
import { compareScripts, proveScripts } from './instance-proof.ts';
import { explain, proveArtifact, restoreSteps, type MssqlSecrets } from './prove.ts';
import { MSSQL_METHODS } from './methods.ts';
import { MssqlSession, type MssqlConnectionConfig, type StatementLogger } from './session.ts';
import { certificateByThumbprintStatement, certificateThumbprintStatement, checkDbStatement, createCertificateStatement, databaseExistsStatement } from './sql.ts';

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
  /** Every statement sent (text and parameter names; secret values as ***). */
  onStatement?: StatementLogger;
  /** Progress and warnings in plain words. */
  log?: (level: 'info' | 'warn', message: string) => void;
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
  });

  return {
    kind: 'mssql',
    methods: MSSQL_METHODS,

    async discover(ctx: EngineContext, options: DiscoverOptions): Promise<Item[]> {
      return withSession(o.connection, o, async (s) => toItems(await readInstance(s, ctx.signal), options));
    },

    async fingerprint(ctx: EngineContext, item: Item): Promise<Fingerprint> {
      return withSession(o.connection, o, (s) => fingerprintDatabase(s, item.name, ctx.signal));
    },

    async capture(ctx: EngineContext, item: Item, method: string, opts: { vendorJob?: VendorJobSpec }): Promise<CapturedFiles> {
      return withSession(o.connection, o, async (s) => {
        const e = env(ctx, s);
        switch (method) {
          case 'mssql-native-full':
            return captureNativeFull(e, item);
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
      const staged = await stage(ctx, o.provingGroundFiles, manifest, files);
      try {
        return await withSession(o.provingGround, o, async (session) => {
          if (manifest.format === 'mssql-certificate') {
            return proveCertificate(session, staged, o.secrets, ctx.signal);
          }
          if (manifest.format === 'sql-text') return { checks: await proveScripts(session, staged.local, ctx.signal) };
          const sidecarPath = staged.local.get(SIDECAR_NAME);
          if (!sidecarPath) {
            return { checks: [{ name: 'restore', status: 'failed', detail: `the artifact has no ${SIDECAR_NAME}: it does not say what to restore`, durationMs: 0 }] };
          }
          const sidecar = parseSidecar(await readFile(sidecarPath, 'utf8'), `${artifact.id}/${SIDECAR_NAME}`);
          return proveArtifact(
            {
              session,
              ...(o.secrets ? { secrets: o.secrets } : {}),
              ...(o.provingGroundDataDirectory ? { dataDirectory: o.provingGroundDataDirectory } : {}),
              ...(o.provingGroundLogDirectory ? { logDirectory: o.provingGroundLogDirectory } : {}),
              ...(ctx.signal ? { signal: ctx.signal } : {}),
            },
            {
              artifactId: artifact.id,
              sidecar,
              serverPaths: staged.paths,
              testDatabase: testDatabaseName(sidecar.database, artifact.id),
              ...(artifact.sourceFingerprint ? { sourceFingerprint: artifact.sourceFingerprint } : {}),
            },
          );
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
     * captured one. undefined for anything else (databases have fingerprints).
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

    async restore(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<void> {
      const staged = await stage(ctx, o.landingFiles, manifest, files);
      try {
        await withSession(o.landing ?? o.connection, o, async (session) => {
          if (manifest.format === 'mssql-certificate') {
            const r = await proveCertificate(session, staged, o.secrets, ctx.signal);
            const bad = r.checks.find((c) => c.status !== 'passed');
            if (bad) throw new RubiconError('LANDING_FAILED', `${item.id}: ${bad.detail}`);
            return;
          }
          if (manifest.format === 'sql-text') {
            for (const [name, path] of staged.local) {
              const out = await session.run({ text: await readFile(path, 'utf8'), params: [] }, ctx.signal);
              if (!out.ok) throw new RubiconError('LANDING_FAILED', `${item.id}: ${name} failed on the rebuilt server: ${explain(out.messages)}`);
            }
            return;
          }
          const sidecarPath = staged.local.get(SIDECAR_NAME);
          if (!sidecarPath) throw new RubiconError('LANDING_FAILED', `${item.id}: the artifact has no ${SIDECAR_NAME}`);
          const sidecar = parseSidecar(await readFile(sidecarPath, 'utf8'), SIDECAR_NAME);
          const exists = await session.query(databaseExistsStatement(item.name), `looking for ${item.name}`, ctx.signal);
          if (exists.length > 0) {
            throw new RubiconError('LANDING_FAILED', `${item.id}: database ${item.name} already exists on the rebuilt server; Rubicon does not overwrite it`, { hint: 'Drop it by hand if it is an empty placeholder, then resume the run.' });
          }
          for (const c of sidecar.certificates) {
            const present = await session.query(certificateByThumbprintStatement(thumbprint(c.thumbprint)!), `looking up certificate ${c.name}`, ctx.signal);
            if (present.length > 0) continue;
            const password = await o.secrets?.certificatePassword(c.name);
            if (password === undefined) throw new RubiconError('LANDING_FAILED', `${item.id}: no password for certificate ${c.name} in the secrets source`);
            const out = await session.run(createCertificateStatement(c.name, staged.paths.get(c.certFile) ?? '', staged.paths.get(c.keyFile) ?? '', password), ctx.signal);
            if (!out.ok) throw new RubiconError('LANDING_FAILED', `${item.id}: CREATE CERTIFICATE ${c.name}: ${explain(out.messages)}`);
          }
          const dirs = (await session.query({ text: `SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)) AS data_path, CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260)) AS log_path;`, params: [] }, 'reading default paths', ctx.signal))[0] ?? {};
          const r = await restoreSteps(session, item.name, sidecar, staged.paths, { data: String(dirs.data_path ?? ''), log: String(dirs.log_path ?? '') }, ctx.signal);
          if (!r.ok) throw new RubiconError('LANDING_FAILED', `${item.id}: ${r.detail}`);
          const check = await session.run(checkDbStatement(item.name), ctx.signal);
          if (!check.ok || check.messages.some((m) => m.kind === 'error')) {
            throw new RubiconError('LANDING_FAILED', `${item.id}: DBCC CHECKDB on the landed ${item.name}: ${explain(check.messages)}`);
          }
        });
      } finally {
        await staged.cleanup();
      }
    },
  };
}

/** A certificate artifact: restored into the proving ground's master (kept there for later database proofs), thumbprint checked. */
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
  const present = await session.query(certificateByThumbprintStatement(thumbprint(c.thumbprint)!), `looking up certificate ${c.name}`, signal);
  if (present.length > 0) return check('passed', `certificate ${c.name} (${c.thumbprint}) is already on this server`);
  const password = await secrets?.certificatePassword(c.name);
  if (password === undefined) return check('failed', `no password for certificate ${c.name}'s private key in the secrets source`);
  const out = await session.run(createCertificateStatement(c.name, staged.paths.get(c.certFile) ?? '', staged.paths.get(c.keyFile) ?? '', password), signal);
  if (!out.ok) return check('failed', `CREATE CERTIFICATE ${c.name}: ${explain(out.messages)}`);
  const tp = String((await session.query(certificateThumbprintStatement(c.name), `reading certificate ${c.name}`, signal))[0]?.thumbprint ?? '');
  if (thumbprint(tp) !== thumbprint(c.thumbprint)) return check('failed', `certificate ${c.name} restored with thumbprint ${tp || 'none'}, expected ${c.thumbprint}`);
  return check('passed', `certificate ${c.name} restored with its private key; thumbprint ${tp} matches`);
}
