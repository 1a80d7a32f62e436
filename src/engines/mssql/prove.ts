/**
 * Proving a SQL Server artifact on the proving ground's SQL Server, from the
 * artifact's own files (fetched from a vault) and nothing else.
 *
 *   version       proving ground >= source (major.minor), else refuse
 *   certificates  every certificate the backup needs, restored first (CREATE
 *                 CERTIFICATE … WITH PRIVATE KEY) and its thumbprint checked
 *   restore       HEADERONLY → FILELISTONLY → one MOVE per file → RESTORE …
 *                 WITH CHECKSUM under a test name; the database must be ONLINE
 *                 and the server must have said "successfully processed" (3014)
 *   integrity     DBCC CHECKDB … WITH NO_INFOMSGS, ALL_ERRORMSGS, every
 *                 message kept; LastGoodCheckDbTime must have moved
 *   fingerprint-source  COUNT_BIG + CHECKSUM_AGG per table vs the source's
 *   smoke         the database answers: state, user objects
 *   cleanup       the test database dropped, whatever happened before
 *
 * Contracts: a check that did not run is `skipped` (never passed); after the
 * first failure the rest are skipped with the reason; the test database is
 * dropped at the end even after a failure (the `cleanup` check). Returns
 * results, never throws for a bad backup. Never touches the target.
 */
import type { Fingerprint, ProofCheck } from '../../core/types.ts';
import type { ProveResult } from '../engine.ts';
import { compareFingerprints } from '../fingerprint.ts';
import { movePath, type RestoreStep, type Sidecar } from './artifact.ts';
import { fingerprintDatabase } from './fingerprint.ts';
import {
  canRestoreOnto,
  formatVersion,
  parseFileListOnly,
  parseHeaderOnly,
  parseVersion,
  productName,
  thumbprint,
  type BackupFile,
  type SqlVersion,
} from './parse.ts';
import { formatMessages, type MssqlSession, type SqlMessage } from './session.ts';
import {
  certificateByThumbprintStatement,
  certificateThumbprintStatement,
  checkDbStatement,
  createCertificateStatement,
  databaseExistsStatement,
  dropDatabaseStatement,
  fileListOnlyStatement,
  headerOnlyStatement,
  restoreDatabaseStatement,
  restoreLogStatement,
  smokeStatement,
} from './sql.ts';

/** Where the runbook's secrets come from. Values are never logged or journaled. */
export interface MssqlSecrets {
  /** The password protecting certificate `name`'s private key in its .pvk file; undefined when unknown. */
  certificatePassword(name: string): Promise<string | undefined>;
}

export interface ProveInput {
  artifactId: string;
  sidecar: Sidecar;
  /** Server-side path of every artifact file by its name (already staged where the proving ground's SQL Server reads). */
  serverPaths: Map<string, string>;
  testDatabase: string;
  sourceFingerprint?: Fingerprint;
}

export interface ProveDeps {
  session: MssqlSession;
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
  3169: 'the backup was made by a newer SQL Server than the proving ground',
  3201: 'the proving ground cannot open the backup file',
  15232: 'a certificate with that name but another thumbprint already exists on the proving ground',
  15208: 'the certificate or private-key file is missing, or the password is wrong',
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

class Checks {
  readonly list: ProofCheck[] = [];
  failed: string | undefined;

  async run(name: string, fn: () => Promise<{ ok: boolean; detail: string } | { skip: string }>): Promise<boolean> {
    if (this.failed !== undefined) {
      this.list.push({ name, status: 'skipped', detail: `not run: ${this.failed} failed`, durationMs: 0 });
      return false;
    }
    const t0 = Date.now();
    let r: { ok: boolean; detail: string } | { skip: string };
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

/**
 * Restores the sidecar's steps as `database` (used by prove under a test
 * name and by landing under the real one). Pure sequencing over the session.
 */
export async function restoreSteps(
  session: MssqlSession,
  database: string,
  sidecar: Sidecar,
  serverPaths: Map<string, string>,
  dirs: { data: string; log: string },
  signal?: AbortSignal,
): Promise<{ ok: boolean; detail: string; files: BackupFile[] }> {
  const notes: string[] = [];
  let files: BackupFile[] = [];
  for (const [i, step] of sidecar.steps.entries()) {
    const last = i === sidecar.steps.length - 1;
    const paths = pathsOf(step, serverPaths);
    const head = await session.run(headerOnlyStatement(paths), signal);
    if (!head.ok) return { ok: false, detail: `RESTORE HEADERONLY of ${step.files.join(', ')}: ${explain(head.messages)}`, files };
    const header = parseHeaderOnly(head.recordsets[0] ?? []).find((h) => h.position === step.position);
    if (!header) return { ok: false, detail: `RESTORE HEADERONLY of ${step.files.join(', ')} shows no backup set at position ${step.position}`, files };
    if (header.isDamaged) return { ok: false, detail: `RESTORE HEADERONLY: backup set ${step.position} of ${step.files.join(', ')} is marked damaged (IsDamaged = 1)`, files };
    if (!KIND_TYPE[step.kind].includes(header.backupType)) {
      return { ok: false, detail: `RESTORE HEADERONLY: ${step.files.join(', ')} holds backup type ${header.backupType}, not a ${step.kind} backup`, files };
    }
    if (header.databaseName !== sidecar.database) {
      return { ok: false, detail: `RESTORE HEADERONLY: ${step.files.join(', ')} is a backup of ${header.databaseName}, not ${sidecar.database}`, files };
    }
    if (!header.hasBackupChecksums) notes.push(`${step.files.join(', ')} has no backup checksums: page checks during restore are limited`);
    let stmt;
    if (step.kind === 'log') {
      stmt = restoreLogStatement(database, paths, step.position, last);
    } else {
      const list = await session.run(fileListOnlyStatement(paths, step.position), signal);
      if (!list.ok) return { ok: false, detail: `RESTORE FILELISTONLY of ${step.files.join(', ')}: ${explain(list.messages)}`, files };
      const stepFiles = parseFileListOnly(list.recordsets[0] ?? []);
      if (step.kind === 'full') files = stepFiles;
      const moves = stepFiles.map((f) => ({ logicalName: f.logicalName, physicalPath: movePath(dirs.data, dirs.log, database, f) }));
      stmt = restoreDatabaseStatement(database, paths, step.position, moves, last);
    }
    const restored = await session.run(stmt, signal);
    if (!restored.ok) return { ok: false, detail: `RESTORE ${step.kind} from ${step.files.join(', ')}: ${explain(restored.messages)}`, files };
    if (!restored.messages.some((m) => m.kind === 'info' && m.number === 3014)) {
      return { ok: false, detail: `RESTORE ${step.kind} from ${step.files.join(', ')} returned without "successfully processed" (Msg 3014): the restore cannot be shown to have run`, files };
    }
    notes.push(restored.messages.filter((m) => m.number === 3014).map((m) => m.message).join(' '));
  }
  const state = await session.query(databaseExistsStatement(database), `reading the state of ${database}`, signal);
  const st = String(state[0]?.state_desc ?? 'missing');
  if (st !== 'ONLINE') return { ok: false, detail: `after RESTORE the database ${database} is ${st}, not ONLINE`, files };
  return { ok: true, detail: notes.join(' '), files };
}

/** Restores the sidecar's certificates into master (skipping those already there). */
async function restoreCertificates(
  session: MssqlSession,
  sidecar: Sidecar,
  serverPaths: Map<string, string>,
  secrets: MssqlSecrets | undefined,
  signal?: AbortSignal,
): Promise<{ ok: boolean; detail: string } | { skip: string }> {
  const done: string[] = [];
  const provided = new Set(sidecar.certificates.map((c) => thumbprint(c.thumbprint)));
  for (const c of sidecar.certificates) {
    const present = await session.query(certificateByThumbprintStatement(thumbprint(c.thumbprint)!), `looking up certificate ${c.name}`, signal);
    if (present.length > 0) {
      done.push(`${c.name} (${c.thumbprint}) already on the proving ground`);
      continue;
    }
    const password = await secrets?.certificatePassword(c.name);
    if (password === undefined) {
      return { ok: false, detail: `certificate ${c.name} is in the artifact but the secrets source has no password for its private key: add it to the runbook's secrets` };
    }
    const certPath = serverPaths.get(c.certFile);
    const keyPath = serverPaths.get(c.keyFile);
    if (certPath === undefined || keyPath === undefined) {
      return { ok: false, detail: `certificate ${c.name}: file ${certPath === undefined ? c.certFile : c.keyFile} is missing from the artifact` };
    }
    const created = await session.run(createCertificateStatement(c.name, certPath, keyPath, password), signal);
    if (!created.ok) return { ok: false, detail: `CREATE CERTIFICATE ${c.name}: ${explain(created.messages)}` };
    const tp = await session.query(certificateThumbprintStatement(c.name), `reading certificate ${c.name}`, signal);
    const got = thumbprint(tp[0]?.thumbprint) ?? '';
    if (got !== thumbprint(c.thumbprint)) {
      return { ok: false, detail: `certificate ${c.name} restored with thumbprint ${got || 'none'}, expected ${c.thumbprint}` };
    }
    done.push(`${c.name} (${c.thumbprint}) restored with its private key`);
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

export async function proveArtifact(deps: ProveDeps, input: ProveInput): Promise<ProveResult> {
  const { session, signal } = deps;
  const { sidecar, testDatabase } = input;
  const checks = new Checks();
  let dirs = { data: deps.dataDirectory ?? '', log: deps.logDirectory ?? '' };
  let fingerprint: Fingerprint | undefined;

  await checks.run('version', async () => {
    const rows = await session.query(
      {
        text: `SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition,
  CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)) AS default_data_path, CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260)) AS default_log_path;`,
        params: [],
      },
      'reading the proving ground version',
      signal,
    );
    const r = rows[0] ?? {};
    const proving: SqlVersion | null = parseVersion(String(r.product_version ?? ''));
    const source = parseVersion(sidecar.source.productVersion);
    dirs = { data: deps.dataDirectory ?? String(r.default_data_path ?? ''), log: deps.logDirectory ?? String(r.default_log_path ?? '') };
    if (!proving || !source) {
      return { ok: false, detail: `cannot compare versions: proving ground ${String(r.product_version)}, source ${sidecar.source.productVersion}` };
    }
    if (!canRestoreOnto(source, proving)) {
      return {
        ok: false,
        detail: `the proving ground runs ${productName(proving.major)} (${formatVersion(proving)}), older than the source's ${productName(source.major)} (${formatVersion(source)}): SQL Server cannot restore a backup onto an older version. Use a proving ground of version ${source.major}.${source.minor} or newer.`,
      };
    }
    if (!dirs.data || !dirs.log) return { ok: false, detail: 'the proving ground reports no default data/log directory: set provingGroundDataDirectory and provingGroundLogDirectory' };
    return { ok: true, detail: `proving ground ${formatVersion(proving)} (${String(r.edition)}) >= source ${formatVersion(source)} (${sidecar.source.edition})` };
  });

  await checks.run('certificates', () => restoreCertificates(session, sidecar, input.serverPaths, deps.secrets, signal));

  // From here on a test database may exist: whatever happens, it is dropped in `cleanup`.
  try {
    await checks.run('restore', async () => {
      // A redo after a crash finds its own leftover: drop it first (same deterministic name).
      await session.query(dropDatabaseStatement(testDatabase), `dropping a leftover ${testDatabase}`, signal);
      const r = await restoreSteps(session, testDatabase, sidecar, input.serverPaths, dirs, signal);
      const chain = sidecar.steps.map((s) => s.kind).join(' + ');
      return { ok: r.ok, detail: r.ok ? `restored ${sidecar.database} (${chain}) as ${testDatabase}: ${r.detail}` : r.detail };
    });

    await checks.run('integrity', async () => {
      const out = await session.run(checkDbStatement(testDatabase), signal);
      const errors = out.messages.filter((m) => m.kind === 'error');
      if (!out.ok || errors.length > 0) {
        return { ok: false, detail: `DBCC CHECKDB found problems in the restored ${sidecar.database}:\n${keepMessages(out.messages)}` };
      }
      const rows = await session.query(
        {
          text: `SELECT CAST(DATABASEPROPERTYEX(@database, 'LastGoodCheckDbTime') AS datetime2) AS last_good, SYSDATETIME() AS server_now;`,
          params: [{ name: 'database', type: 'nvarchar', value: testDatabase }],
        },
        'reading LastGoodCheckDbTime',
        signal,
      );
      const lastGood = rows[0]?.last_good instanceof Date ? (rows[0].last_good as Date) : null;
      const now = rows[0]?.server_now instanceof Date ? (rows[0].server_now as Date) : null;
      const infos = out.messages.length > 0 ? ` Messages: ${keepMessages(out.messages)}` : '';
      if (lastGood && now) {
        // The restored database carries the source's LastGoodCheckDbTime; ours must be newer than the restore.
        if (now.getTime() - lastGood.getTime() > out.durationMs + 60_000) {
          return { ok: false, detail: `DBCC CHECKDB returned without errors but LastGoodCheckDbTime (${lastGood.toISOString()}) did not move: the check cannot be shown to have run` };
        }
        return { ok: true, detail: `DBCC CHECKDB WITH NO_INFOMSGS, ALL_ERRORMSGS: no errors in ${out.durationMs} ms; LastGoodCheckDbTime ${lastGood.toISOString()}.${infos}` };
      }
      return { ok: true, detail: `DBCC CHECKDB WITH NO_INFOMSGS, ALL_ERRORMSGS: no errors in ${out.durationMs} ms (this server does not report LastGoodCheckDbTime).${infos}` };
    });

    await checks.run('fingerprint-source', async () => {
      fingerprint = await fingerprintDatabase(session, testDatabase, signal);
      if (!input.sourceFingerprint) return { skip: 'no source fingerprint was recorded at capture: nothing to compare with' };
      const cmp = compareFingerprints(input.sourceFingerprint, fingerprint);
      const unhashed = fingerprint.tables.filter((t) => t.unhashedColumns?.length).map((t) => `${t.table}: ${t.unhashedColumns!.join(', ')}`);
      const note = unhashed.length ? ` Columns the checksum cannot see: ${unhashed.join('; ')}.` : '';
      return cmp.equal
        ? { ok: true, detail: `${fingerprint.tables.length} tables: row counts and content checksums match the source.${note}` }
        : { ok: false, detail: `restored data differs from the source: ${cmp.differences.join('; ')}.${note}` };
    });

    await checks.run('smoke', async () => {
      const rows = await session.query(smokeStatement(testDatabase), `querying ${testDatabase}`, signal);
      const r = rows[0];
      if (!r) return { ok: false, detail: `${testDatabase} is not listed in sys.databases` };
      if (r.state_desc !== 'ONLINE') return { ok: false, detail: `${testDatabase} is ${String(r.state_desc)}` };
      return { ok: true, detail: `${testDatabase} is ONLINE, ${String(r.user_access_desc)}, ${Number(r.user_objects)} user objects` };
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
