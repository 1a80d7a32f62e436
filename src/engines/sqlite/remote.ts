/**
 * The SQLite engine for a remote (Linux) machine: every command runs ON the
 * machine with the sqlite3 command-line shell (Debian package sqlite3,
 * 3.33 or newer) and only results travel back: counts, hashes, status
 * lines. No row and no database file ever streams through the orchestrator.
 * The SQL and the sh scripts are in cli.ts; the design note is
 * docs/sqlite-remote.md.
 *
 * Methods (independent of each other: different code paths produce the bytes,
 * and each is proven by a different restore path):
 * - `sqlite3-backup` (group `sqlite-physical`): the shell's `.backup`, i.e.
 *   SQLite's online backup API, inside one read transaction: a consistent
 *   page copy of one snapshot (WAL frames committed before it included,
 *   later writes not), the file format and journal mode kept.
 * - `sqlite3-dump` (group `sqlite-logical`): the shell's
 *   `.dump --preserve-rowids`: SQL text, schema then rows, in one read
 *   transaction; proven by executing it into an empty database.
 * Both also return `sourceFingerprint`: the source's fingerprint taken in
 * the capture's own read transaction, i.e. of exactly what the artifact
 * holds (a separate fingerprint() sees a later state of a busy database).
 *
 * How the source is kept safe: the shell opens it with -readonly
 * (SQLITE_OPEN_READONLY: the file is opened O_RDONLY, no journal is
 * created, no checkpoint runs, a hot journal is never rolled back by us).
 * A read transaction takes only a SHARED lock (rollback-journal mode: an
 * application's COMMIT waits until the read ends, up to its busy timeout)
 * or a WAL read mark (WAL mode: writers never wait). Rubicon never takes
 * a RESERVED, PENDING or EXCLUSIVE lock on a source.
 *
 * Steps: every long action (discovery's find and counts, a fingerprint, a
 * capture, a proof, a landing) is one journaled, idempotent step under
 * ctx.stepPrefix; short reads (the version probe, the schema listing) are
 * plain execs.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { isRubiconError, RubiconError } from '../../core/errors.ts';
import type { Artifact, Fingerprint, Item, Manifest, ProofCheck } from '../../core/types.ts';
import type { ExecResult, StepResult } from '../../machines/machine.ts';
import type { MethodInfo, ProveResult, RemoteCapture, RemoteDatabaseEngine, RemoteEngineContext } from '../engine.ts';
import { makeFingerprint } from '../fingerprint.ts';
import { missingDeclaredDatabase } from './items.ts';
import {
  BACKUP_SCRIPT,
  DISCOVER_SCRIPT,
  DUMP_SCRIPT,
  LAND_SCRIPT,
  LISTING_SQL,
  PROBE_SCRIPT,
  PROVE_SCRIPT,
  READ_SCRIPT,
  SQLITE_MAGIC,
  WAL_STAT_SCRIPT,
  backupSql,
  countSql,
  describeFailure,
  dumpSql,
  envFailures,
  findPattern,
  fingerprintSql,
  parseDiscover,
  parseFingerprint,
  parseListing,
  parsePosition,
  parseProbe,
  planFingerprint,
  positionText,
  runStatus,
  sanitizeLine,
  tagged,
  type Listing,
  type Sqlite3Version,
} from './cli.ts';

const ENGINE = 'sqlite';
/** Fingerprint.engine of this engine: never compared with node:sqlite's ('sqlite'). */
export const SQLITE3_FINGERPRINT_ENGINE = 'sqlite3-cli';

export const SQLITE3_METHODS: Record<string, MethodInfo> = {
  'sqlite3-backup': {
    name: 'sqlite3-backup',
    origin: 'rubicon',
    independenceGroup: 'sqlite-physical',
    description: "the sqlite3 shell's .backup on the target: SQLite's online backup API, a consistent page copy of one snapshot",
  },
  'sqlite3-dump': {
    name: 'sqlite3-dump',
    origin: 'rubicon',
    independenceGroup: 'sqlite-logical',
    description: "the sqlite3 shell's .dump on the target: schema and every row as SQL text, read in one transaction",
  },
};

export interface RemoteSqliteOptions {
  /** The sqlite3 shell on the machines (looked up on their PATH). Default `sqlite3`. */
  program?: string;
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');
const digest = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

function where(ctx: RemoteEngineContext): string {
  return `${ctx.machine.name} (${ctx.machine.address})`;
}

function requireLinux(ctx: RemoteEngineContext): void {
  if (ctx.machine.os !== 'linux') {
    throw new RubiconError('ENGINE_FAILED', `the sqlite3 methods run on Linux machines; ${ctx.machine.name} is ${ctx.machine.os}`, {
      hint: 'use a Linux target and proving ground for the sqlite3 methods',
    });
  }
}

function requireAbsolute(p: string, what: string): void {
  if (!path.posix.isAbsolute(p) || p.includes('\0') || p.includes('\n')) {
    throw new RubiconError('ENGINE_FAILED', `${what} must be an absolute path on the machine without newlines: ${JSON.stringify(p)}`);
  }
}

/** An ENGINE_FAILED from the sqlite3 layer (a bad database or dump), as opposed to a transport failure. */
function isEngineFailure(e: unknown): e is RubiconError {
  return isRubiconError(e) && e.code === 'ENGINE_FAILED';
}

export function createRemoteSqliteEngine(options: RemoteSqliteOptions = {}): RemoteDatabaseEngine {
  const program = options.program ?? 'sqlite3';
  const probes = new WeakMap<object, Promise<Sqlite3Version>>();

  /** A broken machine (no work folder, no temporary file) throws: it is not a verdict on a database. */
  const checkEnv = <R extends ExecResult>(ctx: RemoteEngineContext, r: R): R => {
    const env = envFailures(r.stdout);
    if (env.length > 0) {
      throw new RubiconError('MACHINE_FAILED', `${where(ctx)}: ${env.join('; ')}`, {
        hint: `check free space and permissions of ${ctx.workDir} and the temporary folder on ${ctx.machine.name}, then resume the run`,
      });
    }
    return r;
  };

  const sh = async (ctx: RemoteEngineContext, script: string, args: string[], input?: string, timeoutMs = 300_000): Promise<ExecResult> =>
    checkEnv(
      ctx,
      await ctx.machine.exec(
        { argv: ['sh', '-c', script, 'rubicon', ...args], ...(input !== undefined ? { input } : {}) },
        { timeoutMs, ...(ctx.signal ? { signal: ctx.signal } : {}) },
      ),
    );

  const step = async (ctx: RemoteEngineContext, id: string, what: string, script: string, args: string[], input?: string): Promise<StepResult> =>
    checkEnv(
      ctx,
      await ctx.steps.run(
        ctx.machine,
        { id: `${ctx.stepPrefix}${id}`, idempotent: true },
        { argv: ['sh', '-c', script, 'rubicon', ...args], ...(input !== undefined ? { input } : {}) },
        what,
        ctx.signal ? { signal: ctx.signal } : {},
      ),
    );

  /** The shell's version, checked once per machine. TOOL_MISSING naming the machine and the fix. */
  function probe(ctx: RemoteEngineContext): Promise<Sqlite3Version> {
    requireLinux(ctx);
    let p = probes.get(ctx.machine);
    if (!p) {
      p = sh(ctx, PROBE_SCRIPT, [program], undefined, 60_000).then((r) => parseProbe(r.stdout, where(ctx), program));
      probes.set(ctx.machine, p);
      p.catch(() => probes.delete(ctx.machine));
    }
    return p;
  }

  /** The schema listing of the database at `db` (read-only, short). */
  async function listing(ctx: RemoteEngineContext, db: string): Promise<Listing> {
    const r = await sh(ctx, READ_SCRIPT, [program, db, ctx.workDir], `.timeout 10000\n${LISTING_SQL}\n`);
    const s = runStatus(r.stdout, 'Q');
    if (s.exitCode !== 0) {
      throw new RubiconError('ENGINE_FAILED', `sqlite3 cannot read the database at ${db} on ${where(ctx)}: ${describeFailure(s)}`, {
        hint: `check that ${db} is a SQLite database readable by Rubicon's account on ${ctx.machine.name}; run PRAGMA integrity_check there`,
      });
    }
    return parseListing(r.stdout);
  }

  /**
   * Fingerprint of the database at `db`: plan from the schema listing, then
   * one step that reads every table in one read transaction and checks the
   * schema is still the planned one (planned again, at most twice, if not).
   */
  async function fingerprintAt(ctx: RemoteEngineContext, db: string, idBase: string): Promise<Fingerprint> {
    await probe(ctx);
    for (let attempt = 0; attempt < 3; attempt++) {
      const l = await listing(ctx, db);
      const plan = planFingerprint(l);
      const id = attempt === 0 ? idBase : `${idBase}/replan-${attempt}`;
      const r = await step(ctx, id, `sqlite3 fingerprint of ${db}`, READ_SCRIPT, [program, db, ctx.workDir], fingerprintSql(plan));
      const s = runStatus(r.stdout, 'Q');
      if (s.exitCode !== 0) {
        throw new RubiconError('ENGINE_FAILED', `sqlite3 could not read every row of the database at ${db} on ${where(ctx)}: ${describeFailure(s)}`, {
          hint: `run PRAGMA integrity_check on ${db} on ${ctx.machine.name}; a database that is busy for longer than 10 s fails too (run again when it is quieter)`,
        });
      }
      const tables = parseFingerprint(r.stdout, plan, l.raw);
      if (tables) return makeFingerprint(SQLITE3_FINGERPRINT_ENGINE, tables);
    }
    throw new RubiconError('ENGINE_FAILED', `the schema of the database at ${db} on ${where(ctx)} kept changing while it was fingerprinted`, {
      hint: 'fingerprint it again once the application has finished its schema change (or at freeze)',
    });
  }

  // -------------------------------------------------------------- discover

  async function describe(ctx: RemoteEngineContext, file: { path: string; size: number; mtimeMs: number; owner: string; mode: string }, tool: Sqlite3Version | RubiconError): Promise<{ facts: Item['facts']; why: string }> {
    const facts: Item['facts'] = { bytes: file.size, lastChange: new Date(file.mtimeMs).toISOString(), owner: file.owner, mode: file.mode };
    const wal = tagged((await sh(ctx, WAL_STAT_SCRIPT, [file.path], undefined, 60_000)).stdout).find((l) => l.tag === 'WAL');
    if (wal) {
      facts.bytes = file.size + Number(wal.fields[0]);
      facts.lastChange = new Date(Math.max(file.mtimeMs, Math.round(Number(wal.fields[1]) * 1000))).toISOString();
    }
    if (tool instanceof RubiconError) {
      facts.error = tool.message;
      return { facts, why: `SQLite database header found, but it cannot be read here: ${tool.message}; ${tool.hint ?? ''}`.trim() };
    }
    try {
      const l = await listing(ctx, file.path);
      const r = await step(ctx, `sqlite3/discover/count/${digest(file.path)}`, `sqlite3 row counts of ${file.path}`, READ_SCRIPT, [program, file.path, ctx.workDir], countSql(l));
      const s = runStatus(r.stdout, 'Q');
      const lines = tagged(r.stdout);
      if (s.exitCode !== 0 || !lines.some((x) => x.tag === 'DONE')) throw new RubiconError('ENGINE_FAILED', describeFailure(s));
      const rows = lines.filter((x) => x.tag === 'N').reduce((n, x) => n + Number(x.fields[0]), 0);
      facts.tables = l.tables.length;
      facts.rows = rows;
      facts.journalMode = l.journalMode;
      facts.encoding = l.encoding;
      return { facts, why: `SQLite database with ${fmt(l.tables.length)} tables, ${fmt(rows)} rows` };
    } catch (e) {
      if (!isEngineFailure(e)) throw e;
      facts.error = e.message;
      return { facts, why: `SQLite database header found, but the database cannot be read: ${e.message}` };
    }
  }

  async function discover(ctx: RemoteEngineContext, o: { root: string; roots: string[]; declared: { name: string; location?: string }[] }): Promise<Item[]> {
    requireLinux(ctx);
    requireAbsolute(o.root, 'the target root');
    requireAbsolute(ctx.workDir, 'the work folder');
    const root = path.posix.normalize(o.root);
    const roots = o.roots.map((r) => {
      requireAbsolute(r, 'a discovery root');
      const n = path.posix.normalize(r).replace(/(.)\/+$/, '$1');
      const rel = path.posix.relative(root, n);
      if (rel === '..' || rel.startsWith('../')) {
        throw new RubiconError('PRECONDITION_FAILED', `discovery root ${n} on ${ctx.machine.name} is not under the target root ${root}`, { hint: 'give discovery roots inside the target root' });
      }
      return n;
    });
    const magic = path.posix.join(ctx.workDir, 'sqlite-magic');
    await ctx.machine.writeSmall(magic, SQLITE_MAGIC, { mode: 0o644 });
    const r = await step(ctx, 'sqlite3/discover', `find SQLite databases under ${roots.join(', ')}`, DISCOVER_SCRIPT, [magic, findPattern(path.posix.normalize(ctx.workDir)), ...roots]);
    const { files } = parseDiscover(r.stdout);
    const seen = new Set<string>();
    const unique = files.filter((f) => (seen.has(f.path) ? false : (seen.add(f.path), true))).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

    let tool: Sqlite3Version | RubiconError;
    try {
      tool = await probe(ctx);
    } catch (e) {
      if (!isRubiconError(e) || e.code !== 'TOOL_MISSING') throw e;
      tool = e;
    }

    const found = unique.map((f) => {
      const location = path.posix.relative(root, f.path);
      const base = path.posix.basename(location);
      const ext = path.posix.extname(base);
      return { file: f, location, name: ext && ext !== base ? base.slice(0, -ext.length) : base };
    });
    // Two databases with the same base name are told apart by their location.
    const counts = new Map<string, number>();
    for (const f of found) counts.set(f.name, (counts.get(f.name) ?? 0) + 1);
    for (const f of found) {
      if ((counts.get(f.name) ?? 0) > 1) {
        const ext = path.posix.extname(f.location);
        f.name = ext ? f.location.slice(0, -ext.length) : f.location;
      }
    }

    const norm = (p: string) => path.posix.normalize(p.split('\\').join('/')).replace(/^\.\//, '');
    const matched = new Set<number>();
    const items: Item[] = [];
    for (const f of found) {
      const idx = o.declared.findIndex((d) => (d.location !== undefined ? norm(d.location) === f.location : d.name === f.name));
      if (idx >= 0) matched.add(idx);
      const { facts, why } = await describe(ctx, f.file, tool);
      items.push({
        id: `database:${ENGINE}:${f.name}`,
        kind: 'database',
        name: f.name,
        declared: idx >= 0,
        discovered: true,
        engine: ENGINE,
        location: f.location,
        facts,
        why: [why],
        methods: [],
      });
    }
    o.declared.forEach((d, i) => {
      if (!matched.has(i)) items.push(missingDeclaredDatabase(d, norm, roots, ctx.machine.name));
    });
    return items;
  }

  // ----------------------------------------------------------- fingerprint

  async function fingerprint(ctx: RemoteEngineContext, dbPath: string): Promise<Fingerprint> {
    requireAbsolute(dbPath, 'the database path');
    requireAbsolute(ctx.workDir, 'the work folder');
    return fingerprintAt(ctx, dbPath, `sqlite3/fingerprint/${digest(dbPath)}`);
  }

  // --------------------------------------------------------------- capture

  async function fileSize(ctx: RemoteEngineContext, file: string): Promise<number | undefined> {
    const r = await sh(ctx, '[ -f "$1" ] && stat -c %s -- "$1"; exit 0', [file], undefined, 60_000);
    const n = r.stdout.trim();
    return /^\d+$/.test(n) ? Number(n) : undefined;
  }

  async function capture(ctx: RemoteEngineContext, item: Item, method: string, dbPath: string): Promise<RemoteCapture> {
    const info = SQLITE3_METHODS[method];
    if (!info) {
      throw new RubiconError('CAPTURE_FAILED', `database ${item.name}: ${method} is not a sqlite3 method`, { hint: `use one of ${Object.keys(SQLITE3_METHODS).join(', ')}` });
    }
    requireAbsolute(dbPath, 'the database path');
    requireAbsolute(ctx.workDir, 'the work folder');
    const tool = await probe(ctx);
    let l: Listing;
    try {
      l = await listing(ctx, dbPath);
    } catch (e) {
      if (isEngineFailure(e)) throw new RubiconError('CAPTURE_FAILED', `${method} cannot capture database ${item.name}: ${e.message}`, { hint: e.hint, cause: e });
      throw e;
    }
    const backup = method === 'sqlite3-backup';
    const name = `${safeName(item.name)}.${method}.${backup ? 'db' : 'sql'}`;
    const out = path.posix.join(ctx.workDir, name);
    const label = backup ? 'B' : 'D';
    const plan = planFingerprint(l);

    // A redo (the recorded step's output was removed since, e.g. by a resumed run) runs under a new id:
    // the step protocol never re-runs a finished step. The redo id is fresh each time, so any number of resumes works.
    let withFingerprint = true;
    for (let attempt = 0; attempt < 3; attempt++) {
      const fresh = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      const id = `sqlite3/${method}${attempt === 0 ? '' : `/${withFingerprint ? 'redo' : 'plain'}-${fresh}`}`;
      const p = withFingerprint ? plan : undefined;
      const r = await step(ctx, id, `sqlite3 ${backup ? '.backup' : '.dump'} of ${dbPath}`, backup ? BACKUP_SCRIPT : DUMP_SCRIPT, [program, dbPath, ctx.workDir, name], backup ? backupSql(p) : dumpSql(l.encoding, p));
      const s = runStatus(r.stdout, label);
      if (s.exitCode !== 0 && withFingerprint) {
        // The snapshot fingerprint could not read every row (a damaged page, a function the shell lacks):
        // capture without it, so a damaged source still gets its page copy; the proof then judges it.
        withFingerprint = false;
        continue;
      }
      if (s.exitCode !== 0) {
        throw new RubiconError('CAPTURE_FAILED', `${method} of database ${item.name} (${dbPath} on ${where(ctx)}) failed: ${describeFailure(s)}`, {
          hint: `check free space in ${ctx.workDir} on ${ctx.machine.name} and that ${dbPath} is readable; run PRAGMA integrity_check on it there`,
        });
      }
      const lines = tagged(r.stdout);
      const pos = parsePosition(r.stdout);
      if (!backup && lines.find((x) => x.tag === 'END')?.fields[0] !== 'COMMIT') {
        throw new RubiconError('CAPTURE_FAILED', `sqlite3-dump of database ${item.name} (${dbPath} on ${where(ctx)}): the shell's .dump could not read everything and ended the dump with ROLLBACK`, {
          hint: `the source is probably damaged: run PRAGMA integrity_check on ${dbPath} on ${ctx.machine.name}; the sqlite3-backup method copies the pages as they are`,
        });
      }
      const size = Number(lines.find((x) => x.tag === 'S')?.fields[0] ?? NaN);
      if (!pos || !Number.isFinite(size)) {
        throw new RubiconError('CAPTURE_FAILED', `${method} of database ${item.name} on ${where(ctx)} did not report its result`, { hint: `check free space in ${ctx.workDir} on ${ctx.machine.name}` });
      }
      // The backup of a snapshot is exactly page_count pages of page_size bytes: the tool's own report, not its exit code.
      if (backup && size !== pos.pageSize * pos.pageCount) {
        throw new RubiconError('CAPTURE_FAILED', `sqlite3-backup of database ${item.name} wrote ${fmt(size)} bytes, but the snapshot has ${fmt(pos.pageCount)} pages of ${fmt(pos.pageSize)} bytes`, {
          hint: `check free space in ${ctx.workDir} on ${ctx.machine.name}, then capture again`,
        });
      }
      if ((await fileSize(ctx, out)) !== size) continue; // the recorded output is gone: redo
      // No snapshot fingerprint when it failed, or when the schema changed between the plan and the snapshot: the caller takes its own.
      const tables = withFingerprint ? parseFingerprint(r.stdout, plan, l.raw) : undefined;
      return {
        files: [{ path: out, name }],
        format: backup ? 'sqlite-db' : 'sql-text',
        tool: `${tool.tool} ${backup ? '.backup' : '.dump --preserve-rowids'}`,
        position: positionText(pos),
        ...(tables ? { sourceFingerprint: makeFingerprint(SQLITE3_FINGERPRINT_ENGINE, tables) } : {}),
      };
    }
    throw new RubiconError('CAPTURE_FAILED', `${method} of database ${item.name}: its output ${out} on ${ctx.machine.name} vanished after it was written`, {
      hint: `check what removes files in ${ctx.workDir} on ${ctx.machine.name}, then capture again`,
    });
  }

  // ----------------------------------------------------------------- prove

  function check(name: string, status: ProofCheck['status'], detail: string, durationMs: number): ProofCheck {
    return { name, status, detail, durationMs };
  }

  async function prove(ctx: RemoteEngineContext, artifact: Artifact, manifest: Manifest, files: string[]): Promise<ProveResult> {
    const format = manifest.format ?? '';
    const checks: ProofCheck[] = [];
    const skipRest = (why: string): ProveResult => {
      for (const n of ['integrity', 'fingerprint']) checks.push(check(n, 'skipped', `not run: ${why}`, 0));
      return { checks };
    };
    if (files.length !== 1) {
      checks.push(check('restore', 'failed', `a SQLite artifact has exactly one file; this one has ${files.length}`, 0));
      return skipRest('the restore failed');
    }
    if (format !== 'sqlite-db' && format !== 'sql-text') {
      checks.push(check('restore', 'failed', `format ${format || '(none)'} is not a SQLite backup format (expected sqlite-db or sql-text)`, 0));
      return skipRest('the restore failed');
    }
    const file = files[0]!;
    requireAbsolute(file, 'the artifact file');
    requireAbsolute(ctx.workDir, 'the work folder');
    await probe(ctx);

    const r = await step(ctx, 'sqlite3/prove', `restore and PRAGMA integrity_check of artifact ${artifact.id}`, PROVE_SCRIPT, [program, ctx.workDir, format, file]);
    const lines = tagged(r.stdout);
    const t = lines.filter((x) => x.tag === 'T').map((x) => Number(x.fields[0]) / 1e6);
    const ms = (i: number): number => (t[i + 1] !== undefined && t[i] !== undefined ? Math.max(0, Math.round(t[i + 1]! - t[i]!)) : 0);

    // restore
    const load = runStatus(r.stdout, 'L');
    const copied = lines.find((x) => x.tag === 'L-CP');
    const open = runStatus(r.stdout, 'O');
    const objects = Number(lines.find((x) => x.tag === 'O')?.fields[0] ?? NaN);
    const dump = format === 'sql-text';
    let failure: string | undefined;
    if (dump && lines.some((x) => x.tag === 'L-NOCOMMIT')) failure = 'the SQL dump does not end with COMMIT: it was cut short, or written after an error';
    else if (dump && load.exitCode !== 0) failure = `the SQL dump does not execute: ${describeFailure(load)}`;
    else if (!dump && copied?.fields[0] !== '0') failure = `the backup file cannot be copied into the scratch folder${load.errors.length ? `: ${describeFailure(load)}` : ''}`;
    else if (open.exitCode !== 0 || !Number.isFinite(objects)) failure = `the ${dump ? 'database built from the dump' : 'backup file'} cannot be opened: ${describeFailure(open)}`;
    if (failure !== undefined) {
      checks.push(check('restore', 'failed', failure, ms(0) + ms(1)));
      return skipRest('the restore failed');
    }
    checks.push(
      check(
        'restore',
        'passed',
        dump ? `executed the SQL dump into an empty database with sqlite3 (${fmt(objects)} schema objects)` : `copied the backup file and opened it with sqlite3 (${fmt(objects)} schema objects)`,
        ms(0) + ms(1),
      ),
    );

    // integrity
    const integ = runStatus(r.stdout, 'I');
    const messages = lines.filter((x) => x.tag === 'I').map((x) => sanitizeLine(x.fields.join('|')));
    if (integ.exitCode === 0 && messages.length === 1 && messages[0] === 'ok') {
      checks.push(check('integrity', 'passed', 'PRAGMA integrity_check: ok', ms(2)));
    } else {
      const said = [...messages, ...integ.errors].slice(0, 5);
      checks.push(check('integrity', 'failed', `PRAGMA integrity_check: ${said.length > 0 ? said.join('; ') : describeFailure(integ)}`, ms(2)));
    }

    // fingerprint
    const tf = performance.now();
    try {
      const fp = await fingerprintAt(ctx, path.posix.join(ctx.workDir, 'rubicon-proof.db'), 'sqlite3/prove-fingerprint');
      const rows = fp.tables.reduce((n, x) => n + x.rows, 0);
      checks.push(check('fingerprint', 'passed', `fingerprinted ${fmt(fp.tables.length)} tables, ${fmt(rows)} rows with sqlite3`, Math.round(performance.now() - tf)));
      return { checks, fingerprint: fp };
    } catch (e) {
      if (!isEngineFailure(e)) throw e;
      checks.push(check('fingerprint', 'failed', `cannot read every row: ${e.message}`, Math.round(performance.now() - tf)));
      return { checks };
    }
  }

  // --------------------------------------------------------------- restore

  async function restore(ctx: RemoteEngineContext, item: Item, manifest: Manifest, files: string[], destPath: string): Promise<void> {
    const format = manifest.format ?? '';
    if (files.length !== 1) {
      throw new RubiconError('LANDING_FAILED', `database ${item.name}: a SQLite artifact has exactly one file; artifact ${manifest.artifactId} has ${files.length}`);
    }
    if (format !== 'sqlite-db' && format !== 'sql-text') {
      throw new RubiconError('LANDING_FAILED', `database ${item.name}: artifact ${manifest.artifactId} has format ${format || '(none)'}, not a SQLite backup format`);
    }
    requireAbsolute(destPath, 'the landing destination');
    requireAbsolute(files[0]!, 'the artifact file');
    await probe(ctx);
    const wal = item.facts.journalMode === 'wal' ? 'wal' : '';
    const owner = typeof item.facts.owner === 'string' && /^[^:\s]+:[^:\s]+$/.test(item.facts.owner) ? item.facts.owner : '';
    const mode = typeof item.facts.mode === 'string' && /^[0-7]{3,4}$/.test(item.facts.mode) ? item.facts.mode : '';
    const r = await step(ctx, `sqlite3/land/${digest(destPath)}`, `land database ${item.name} at ${destPath}`, LAND_SCRIPT, [program, destPath, format, files[0]!, wal, owner, mode]);
    const lines = tagged(r.stdout);
    const fail = (why: string, hint?: string): never => {
      throw new RubiconError('LANDING_FAILED', `database ${item.name}: cannot land artifact ${manifest.artifactId} at ${destPath} on ${where(ctx)}: ${why}`, {
        hint: hint ?? 'prove the artifact again; if its proof passed, check free space and permissions at the destination',
      });
    };
    const load = runStatus(r.stdout, 'L');
    if (format === 'sql-text' && lines.some((x) => x.tag === 'L-NOCOMMIT')) fail('the SQL dump does not end with COMMIT: it was cut short, or written after an error');
    if (format === 'sql-text' && load.exitCode !== 0) fail(`the SQL dump does not execute: ${describeFailure(load)}`);
    if (format === 'sqlite-db' && lines.find((x) => x.tag === 'L-CP')?.fields[0] !== '0') fail(`the backup file cannot be copied next to the destination${load.errors.length ? `: ${describeFailure(load)}` : ''}`);
    const w = runStatus(r.stdout, 'W');
    if (wal && format === 'sql-text' && w.exitCode !== 0) fail(`cannot switch it to WAL mode: ${describeFailure(w)}`);
    const q = lines.filter((x) => x.tag === 'Q').map((x) => sanitizeLine(x.fields.join('|')));
    if (q.length !== 1 || q[0] !== 'ok') fail(`the restored copy fails PRAGMA quick_check: ${q.join('; ') || describeFailure(runStatus(r.stdout, 'Q'))}`);
    const own = lines.find((x) => x.tag === 'OWN-X');
    if (own) fail(`${own.fields.join('|')}`, `create the application's user and group (${owner}) on the rebuilt ${ctx.machine.name} first, then resume the run`);
    const mv = lines.find((x) => x.tag === 'MV-X');
    if (mv) fail(mv.fields.join('|'));
    if (!lines.some((x) => x.tag === 'DONE')) fail('the landing step did not finish');
  }

  return {
    kind: ENGINE,
    methods: SQLITE3_METHODS,
    discover,
    fingerprint,
    capture,
    prove,
    restore,
  };
}

/** The engine with the machines' own `sqlite3`. */
export const remoteSqliteEngine: RemoteDatabaseEngine = createRemoteSqliteEngine();
