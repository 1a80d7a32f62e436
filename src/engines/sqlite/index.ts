/**
 * The SQLite engine: the sandbox's EHR database, through node:sqlite only.
 *
 * Design note
 * -----------
 * Methods and what each guarantees:
 * - `sqlite-backup-api` (physical, group `sqlite-physical`): SQLite's online
 *   backup API copies every page of the database into a new file. The copy
 *   is a consistent snapshot (the API restarts if another connection
 *   writes), includes what is still in the WAL, and is byte-for-byte the
 *   engine's own page format: indexes, free pages, everything.
 * - `sqlite-sql-dump` (logical, group `sqlite-logical`): Rubicon's own
 *   deterministic SQL text (dump.ts), read row by row inside one read
 *   transaction and written by our code. It carries values, not pages.
 * - `vendor-job` (group `vendor`): whatever the vendor's job wrote. Capture
 *   never judges it; only the proof does.
 *
 * Why the two Rubicon methods are independent: they share no code path that
 * produces bytes. A damaged page copied by the backup API cannot pass
 * through the dump (reading the row fails or the value differs), and a bug
 * in our dump writer or in value escaping cannot reach the page copy. Each
 * is proven by a different restore path (open the file vs. execute the
 * text into an empty database), and the two fingerprints must agree with
 * each other and with the source: agreement of independent paths is the
 * evidence.
 *
 * Proving: `restore` (the file opens / the dump executes fully, ending with
 * COMMIT), `integrity` (PRAGMA integrity_check answers exactly 'ok'),
 * `fingerprint` (per-table row counts and content hashes computed) and
 * `smoke` (first and last row of every table read). A failed restore marks
 * the later checks `skipped`; a skipped check is never a success. A bad
 * backup never throws: its proof records the engine's own message.
 */
import { closeSync, copyFileSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, extname, join, posix, relative } from 'node:path';
import { backup } from 'node:sqlite';
import type { DatabaseSync } from 'node:sqlite';
import { errorCodesIn, isRubiconError, RubiconError, ToolFailure } from '../../core/errors.ts';
import type { Artifact, Fingerprint, Item, Manifest, ProofCheck } from '../../core/types.ts';
import type { CapturedFiles, DatabaseEngine, DiscoverOptions, EngineContext, MethodInfo, ProveResult, VendorJobSpec } from '../engine.ts';
import { makeFingerprint } from '../fingerprint.ts';
import { executeDump, writeDump } from './dump.ts';
import { missingDeclaredDatabase } from './items.ts';
import {
  countRows,
  fingerprintTables,
  hasSqliteHeader,
  integrityCheck,
  openDatabase,
  readChangeCounter,
  smokeRead,
  sqliteVersion,
} from './inspect.ts';

const ENGINE = 'sqlite';
const SIDECARS = ['-wal', '-shm', '-journal'] as const;

export const SQLITE_METHODS: Record<string, MethodInfo> = {
  'sqlite-backup-api': {
    name: 'sqlite-backup-api',
    origin: 'rubicon',
    independenceGroup: 'sqlite-physical',
    description: "SQLite's online backup API: a consistent page-by-page copy of the database file",
  },
  'sqlite-sql-dump': {
    name: 'sqlite-sql-dump',
    origin: 'rubicon',
    independenceGroup: 'sqlite-logical',
    description: "Rubicon's own deterministic SQL text dump: schema, then every row as INSERT, in one transaction",
  },
  'vendor-job': {
    name: 'vendor-job',
    origin: 'vendor',
    independenceGroup: 'vendor',
    description: "the vendor's own backup job, run as declared; its output is proven like any other artifact",
  },
};

const fmt = (n: number): string => n.toLocaleString('en-US');
const toPosix = (p: string): string => p.split('\\').join('/');
const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');

function normalizeLocation(p: string): string {
  const n = posix.normalize(toPosix(p));
  return n.startsWith('./') ? n.slice(2) : n;
}

function removeWithSidecars(path: string): void {
  for (const s of ['', ...SIDECARS]) rmSync(path + s, { force: true });
}

/** The engine's own failure (a bad file or dump), as opposed to a broken environment. */
function isEngineFailure(e: unknown): boolean {
  if (isRubiconError(e)) return e.code === 'ENGINE_FAILED';
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ERR_SQLITE_ERROR';
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Regular files under `abs` (recursively; symlinks are not followed), sorted. */
function walkFiles(abs: string): string[] {
  const out: string[] = [];
  const visit = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // unreadable or vanished folder: the folder inventory reports those
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile()) out.push(p);
    }
  };
  let st: Stats;
  try {
    st = statSync(abs);
  } catch {
    return out;
  }
  if (st.isDirectory()) visit(abs);
  else if (st.isFile()) out.push(abs);
  return out;
}

function relativeTo(rootAbs: string, abs: string): string {
  return toPosix(relative(rootAbs, abs));
}

// ---------------------------------------------------------------- discover

interface Found {
  location: string;
  abs: string;
  name: string;
}

function describeDatabase(found: Found, declared: boolean): Item {
  const st = statSync(found.abs);
  let lastChange = st.mtimeMs;
  let bytes = st.size;
  try {
    const wal = statSync(found.abs + '-wal');
    lastChange = Math.max(lastChange, wal.mtimeMs);
    bytes += wal.size;
  } catch {
    // no WAL file
  }
  const facts: Item['facts'] = { bytes, lastChange: new Date(lastChange).toISOString() };
  const why: string[] = [];
  let db: DatabaseSync | undefined;
  try {
    db = openDatabase(found.abs, { readOnly: true });
    db.exec('BEGIN');
    const { tables, rows } = countRows(db);
    const journal = db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
    db.exec('COMMIT');
    facts.tables = tables;
    facts.rows = rows;
    facts.journalMode = String(journal.journal_mode);
    why.push(`SQLite database with ${fmt(tables)} tables, ${fmt(rows)} rows`);
  } catch (e) {
    facts.error = messageOf(e);
    why.push(`SQLite database header found, but the database cannot be read: ${messageOf(e)}`);
  } finally {
    db?.close();
  }
  return {
    id: `database:${ENGINE}:${found.name}`,
    kind: 'database',
    name: found.name,
    declared,
    discovered: true,
    engine: ENGINE,
    location: found.location,
    facts,
    why,
    methods: [],
  };
}

async function discover(ctx: EngineContext, options: DiscoverOptions): Promise<Item[]> {
  const rootAbs = ctx.host.resolve('.');
  const seen = new Set<string>();
  const found: Found[] = [];
  for (const root of options.roots) {
    for (const abs of walkFiles(ctx.host.resolve(root))) {
      if (seen.has(abs)) continue;
      seen.add(abs);
      let isDb = false;
      try {
        isDb = hasSqliteHeader(abs);
      } catch {
        continue; // unreadable file: not ours to judge here
      }
      if (!isDb) continue;
      const location = relativeTo(rootAbs, abs);
      found.push({ location, abs, name: basename(abs, extname(abs)) });
    }
  }
  // Two databases with the same base name are told apart by their location.
  const counts = new Map<string, number>();
  for (const f of found) counts.set(f.name, (counts.get(f.name) ?? 0) + 1);
  for (const f of found) {
    if ((counts.get(f.name) ?? 0) > 1) f.name = f.location.slice(0, f.location.length - extname(f.location).length);
  }

  const matchedDeclared = new Set<number>();
  const items: Item[] = [];
  for (const f of found) {
    const idx = options.declared.findIndex((d) =>
      d.location !== undefined ? normalizeLocation(d.location) === f.location : d.name === f.name,
    );
    if (idx >= 0) matchedDeclared.add(idx);
    items.push(describeDatabase(f, idx >= 0));
  }
  options.declared.forEach((d, i) => {
    if (!matchedDeclared.has(i)) items.push(missingDeclaredDatabase(d, normalizeLocation, options.roots));
  });
  return items;
}

// ------------------------------------------------------------- fingerprint

function sourcePath(ctx: EngineContext, item: Item, code: 'ENGINE_FAILED' | 'CAPTURE_FAILED'): string {
  if (item.location === '') {
    throw new RubiconError(code, `database ${item.name} has no location on the target`, {
      hint: 'declare its location in the runbook or check that discovery found it',
    });
  }
  const abs = ctx.host.resolve(item.location);
  let ok = false;
  try {
    ok = statSync(abs).isFile();
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new RubiconError(code, `database ${item.name}: no file at ${item.location} on ${ctx.host.name}`, {
      hint: 'run discovery again; the database may have moved',
    });
  }
  return abs;
}

async function fingerprint(ctx: EngineContext, item: Item): Promise<Fingerprint> {
  const abs = sourcePath(ctx, item, 'ENGINE_FAILED');
  let db: DatabaseSync | undefined;
  try {
    db = openDatabase(abs, { readOnly: true });
    return makeFingerprint(ENGINE, fingerprintTables(db));
  } catch (e) {
    if (isRubiconError(e)) throw e;
    throw new RubiconError('ENGINE_FAILED', `cannot fingerprint database ${item.name} at ${item.location}: ${messageOf(e)}`, { cause: e });
  } finally {
    db?.close();
  }
}

// ----------------------------------------------------------------- capture

/** Replaces the values of arguments that look like secrets with ***. Pure. */
export function redactCommand(command: string[]): string {
  const secret = /pass|pwd|secret|token|key|credential/i;
  const out: string[] = [];
  for (let i = 0; i < command.length; i++) {
    const a = command[i]!;
    const eq = a.indexOf('=');
    if (eq > 0 && secret.test(a.slice(0, eq))) out.push(a.slice(0, eq + 1) + '***');
    else if (i > 0 && /^-/.test(command[i - 1]!) && secret.test(command[i - 1]!)) out.push('***');
    else out.push(a);
  }
  return out.join(' ');
}

async function captureBackupApi(ctx: EngineContext, item: Item): Promise<CapturedFiles> {
  const src = sourcePath(ctx, item, 'CAPTURE_FAILED');
  mkdirSync(ctx.workDir, { recursive: true });
  const name = `${safeName(item.name)}.sqlite-backup-api.db`;
  const out = join(ctx.workDir, name);
  removeWithSidecars(out);
  const counter = readChangeCounter(src);
  let db: DatabaseSync | undefined;
  try {
    db = openDatabase(src, { readOnly: true });
    const journal = String((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode);
    await backup(db, out, {
      progress: ({ totalPages, remainingPages }) => ctx.onProgress?.(totalPages - remainingPages, totalPages),
    });
    return {
      files: [{ path: out, name }],
      format: 'sqlite-db',
      tool: `node:sqlite ${sqliteVersion()} backup API`,
      position: `file-change-counter=${counter ?? 'unknown'}; journal_mode=${journal}`,
    };
  } catch (e) {
    removeWithSidecars(out);
    throw new RubiconError('CAPTURE_FAILED', `sqlite-backup-api could not copy database ${item.name} at ${item.location}: ${messageOf(e)}`, { cause: e });
  } finally {
    db?.close();
  }
}

async function captureDump(ctx: EngineContext, item: Item): Promise<CapturedFiles> {
  const src = sourcePath(ctx, item, 'CAPTURE_FAILED');
  mkdirSync(ctx.workDir, { recursive: true });
  const name = `${safeName(item.name)}.sqlite-sql-dump.sql`;
  const out = join(ctx.workDir, name);
  let db: DatabaseSync | undefined;
  try {
    db = openDatabase(src, { readOnly: true });
    db.exec('BEGIN');
    // Read inside the dump's own read transaction: the position and the rows are the same snapshot.
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    const counter = readChangeCounter(src);
    const journal = String((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode);
    writeDump(db, out);
    db.exec('COMMIT');
    return {
      files: [{ path: out, name }],
      format: 'sql-text',
      tool: `rubicon sqlite-sql-dump v1 (node:sqlite ${sqliteVersion()})`,
      position: `file-change-counter=${counter ?? 'unknown'}; journal_mode=${journal}`,
    };
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `sqlite-sql-dump could not dump database ${item.name} at ${item.location}: ${messageOf(e)}`, { cause: e });
  } finally {
    db?.close();
  }
}

function snapshotFiles(abs: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of walkFiles(abs)) {
    try {
      const st = statSync(f);
      m.set(f, `${st.size}:${st.mtimeMs}`);
    } catch {
      // vanished between listing and stat
    }
  }
  return m;
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split(/\r?\n/).slice(-n).join('\n');
}

/**
 * Runs the vendor's job and returns the backup it wrote: the newest regular
 * file under `spec.output` that is new or changed (size or mtime) since
 * just before the job started. Comparing with a listing taken before the
 * run (rather than trusting clock and mtime resolution alone) means an old
 * backup is never mistaken for the new one. Never judges the file.
 */
async function captureVendorJob(ctx: EngineContext, item: Item, spec: VendorJobSpec | undefined): Promise<CapturedFiles> {
  if (spec === undefined || spec.command.length === 0) {
    throw new RubiconError('CAPTURE_FAILED', `database ${item.name}: method vendor-job needs a vendor job with a command`, {
      hint: 'declare vendorJob.command and vendorJob.output in the runbook, or remove vendor-job from this database\'s methods',
    });
  }
  const outputAbs = ctx.host.resolve(spec.output);
  const before = snapshotFiles(outputAbs);
  const shown = redactCommand(spec.command);
  let result;
  try {
    result = await ctx.host.exec(spec.command[0]!, spec.command.slice(1), {
      cwd: '.',
      timeoutMs: spec.timeoutMs,
      ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    });
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `the vendor job ${spec.name} could not be started (${shown}): ${messageOf(e)}`, { cause: e });
  }
  if (result.exitCode !== 0) {
    // Its output may hold rows of patient data: only error codes reach the message; the output goes to the run's log.
    const codes = errorCodesIn(`${result.stderr}\n${result.stdout}`);
    throw new ToolFailure('CAPTURE_FAILED', `the vendor job ${spec.name} exited with code ${result.exitCode}${codes.length ? ` (${codes.join(', ')})` : ''}`, { stdout: result.stdout, stderr: result.stderr }, {
      details: { command: shown, exitCode: result.exitCode },
    });
  }
  let newest: { path: string; mtimeMs: number } | undefined;
  for (const [path, sig] of snapshotFiles(outputAbs)) {
    if (before.get(path) === sig) continue;
    const mtimeMs = Number(sig.slice(sig.indexOf(':') + 1));
    if (newest === undefined || mtimeMs > newest.mtimeMs || (mtimeMs === newest.mtimeMs && path > newest.path)) {
      newest = { path, mtimeMs };
    }
  }
  if (newest === undefined) {
    throw new RubiconError('CAPTURE_FAILED', `the vendor job ${spec.name} exited 0 but wrote no new backup in ${spec.output}`, {
      hint: `check where the job writes; the runbook says ${spec.output}`,
      details: { command: shown },
    });
  }
  return {
    files: [{ path: newest.path, name: basename(newest.path) }],
    format: 'sqlite-db',
    tool: `vendor job ${spec.name}`,
    command: shown,
  };
}

async function capture(
  ctx: EngineContext,
  item: Item,
  method: string,
  options: { vendorJob?: VendorJobSpec },
): Promise<CapturedFiles> {
  switch (method) {
    case 'sqlite-backup-api':
      return captureBackupApi(ctx, item);
    case 'sqlite-sql-dump':
      return captureDump(ctx, item);
    case 'vendor-job':
      return captureVendorJob(ctx, item, options.vendorJob);
    default:
      throw new RubiconError('CAPTURE_FAILED', `database ${item.name}: ${method} is not a SQLite method`, {
        hint: `use one of ${Object.keys(SQLITE_METHODS).join(', ')}`,
      });
  }
}

// ------------------------------------------------------------------- prove

/**
 * Builds a database at `dest` from an artifact's single file. Destructive at
 * `dest` (and its sidecars) only. Engine failures (a bad backup) are thrown
 * as they come; the caller tells them from a broken environment.
 */
function buildDatabase(format: string, file: string, dest: string, readOnlyCopy: boolean): DatabaseSync {
  removeWithSidecars(dest);
  mkdirSync(dirname(dest), { recursive: true });
  if (format === 'sqlite-db') {
    copyFileSync(file, dest);
    const db = openDatabase(dest, { readOnly: readOnlyCopy });
    try {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
    } catch (e) {
      db.close();
      throw e;
    }
    return db;
  }
  if (format === 'sql-text') {
    const db = openDatabase(dest, { readOnly: false });
    try {
      executeDump(db, file);
    } catch (e) {
      db.close();
      throw e;
    }
    return db;
  }
  throw new RubiconError('ENGINE_FAILED', `format ${format} is not a SQLite backup format (expected sqlite-db or sql-text)`);
}

function check(name: string, status: ProofCheck['status'], detail: string, durationMs: number): ProofCheck {
  return { name, status, detail, durationMs };
}

async function prove(ctx: EngineContext, artifact: Artifact, manifest: Manifest, files: string[]): Promise<ProveResult> {
  const format = manifest.format ?? '';
  const checks: ProofCheck[] = [];
  const skipRest = (why: string): ProveResult => {
    for (const name of ['integrity', 'fingerprint', 'smoke']) checks.push(check(name, 'skipped', `not run: ${why}`, 0));
    return { checks };
  };
  if (files.length !== 1) {
    checks.push(check('restore', 'failed', `a SQLite artifact has exactly one file; this one has ${files.length}`, 0));
    return skipRest('the restore failed');
  }
  const file = files[0]!;
  mkdirSync(ctx.workDir, { recursive: true });
  const scratch = join(ctx.workDir, `proof-${safeName(artifact.id)}.db`);

  const t0 = performance.now();
  let db: DatabaseSync;
  try {
    db = buildDatabase(format, file, scratch, true);
  } catch (e) {
    if (!isEngineFailure(e)) {
      throw new RubiconError('ENGINE_FAILED', `cannot prove artifact ${artifact.id}: the proving ground failed (${messageOf(e)})`, {
        cause: e,
        hint: `check that ${ctx.workDir} is writable and has space, and that the fetched file ${file} exists`,
      });
    }
    const what = format === 'sql-text' ? 'the SQL dump does not execute' : 'the backup file cannot be opened';
    checks.push(check('restore', 'failed', `${what}: ${messageOf(e)}`, Math.round(performance.now() - t0)));
    return skipRest('the restore failed');
  }
  try {
    const bytes = statSync(scratch).size;
    checks.push(
      check(
        'restore',
        'passed',
        format === 'sql-text'
          ? `executed the SQL dump into an empty database (${fmt(bytes)} bytes)`
          : `opened a copy of the backup file (${fmt(bytes)} bytes)`,
        Math.round(performance.now() - t0),
      ),
    );

    const ti = performance.now();
    try {
      const r = integrityCheck(db);
      const ms = Math.round(performance.now() - ti);
      checks.push(
        r.ok
          ? check('integrity', 'passed', 'PRAGMA integrity_check: ok', ms)
          : check('integrity', 'failed', `PRAGMA integrity_check: ${r.messages.join('; ')}`, ms),
      );
    } catch (e) {
      checks.push(check('integrity', 'failed', `PRAGMA integrity_check failed: ${messageOf(e)}`, Math.round(performance.now() - ti)));
    }

    let fp: Fingerprint | undefined;
    const tf = performance.now();
    try {
      fp = makeFingerprint(ENGINE, fingerprintTables(db));
      const rows = fp.tables.reduce((s, t) => s + t.rows, 0);
      checks.push(check('fingerprint', 'passed', `fingerprinted ${fmt(fp.tables.length)} tables, ${fmt(rows)} rows`, Math.round(performance.now() - tf)));
    } catch (e) {
      checks.push(check('fingerprint', 'failed', `cannot read every row: ${messageOf(e)}`, Math.round(performance.now() - tf)));
    }

    const ts = performance.now();
    try {
      const n = smokeRead(db);
      checks.push(check('smoke', 'passed', `read the first and last row of ${fmt(n)} tables`, Math.round(performance.now() - ts)));
    } catch (e) {
      checks.push(check('smoke', 'failed', `reading the first and last rows failed: ${messageOf(e)}`, Math.round(performance.now() - ts)));
    }
    return fp === undefined ? { checks } : { checks, fingerprint: fp };
  } finally {
    db.close();
  }
}

// ----------------------------------------------------------------- restore

/** Flushes a file or folder to disk (folders: best effort, not every platform allows it). */
function fsyncPath(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    fsyncSync(fd);
  } catch (e) {
    if (statSync(path).isFile()) throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Landing: writes the database at item.location on the (rebuilt) target.
 * The new database is built next to it in a temporary file, checked with
 * PRAGMA quick_check, then stale -wal/-shm/-journal files at the location
 * are removed (a stale WAL would be replayed onto the new file) and the
 * temporary file is renamed into place. Destructive at item.location only.
 * Idempotent: a redo replaces the file again.
 */
async function restore(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<void> {
  const format = manifest.format ?? '';
  if (files.length !== 1) {
    throw new RubiconError('LANDING_FAILED', `database ${item.name}: a SQLite artifact has exactly one file; artifact ${manifest.artifactId} has ${files.length}`);
  }
  if (item.location === '') {
    throw new RubiconError('LANDING_FAILED', `database ${item.name} has no location to restore to`, {
      hint: 'declare its location in the runbook',
    });
  }
  const dest = ctx.host.resolve(item.location);
  const tmp = `${dest}.rubicon-restore.tmp`;
  try {
    const db = buildDatabase(format, files[0]!, tmp, false);
    try {
      const rows = db.prepare('PRAGMA quick_check').all() as { quick_check: string }[];
      if (rows.length !== 1 || rows[0]!.quick_check !== 'ok') {
        throw new RubiconError('LANDING_FAILED', `database ${item.name}: the restored copy fails PRAGMA quick_check: ${rows.map((r) => r.quick_check).join('; ')}`);
      }
    } finally {
      db.close();
    }
    for (const s of SIDECARS) rmSync(tmp + s, { force: true });
    fsyncPath(tmp);
    for (const s of SIDECARS) rmSync(dest + s, { force: true });
    renameSync(tmp, dest);
    fsyncPath(dirname(dest));
  } catch (e) {
    removeWithSidecars(tmp);
    if (isRubiconError(e) && e.code === 'LANDING_FAILED') throw e;
    throw new RubiconError('LANDING_FAILED', `database ${item.name}: cannot restore artifact ${manifest.artifactId} to ${item.location}: ${messageOf(e)}`, {
      cause: e,
      hint: 'prove the artifact again; if its proof passed, check free space and permissions at the location',
    });
  }
}

export const sqliteEngine: DatabaseEngine = {
  kind: ENGINE,
  methods: SQLITE_METHODS,
  discover,
  fingerprint,
  capture,
  prove,
  restore,
};
