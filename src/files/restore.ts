import { randomUUID } from 'node:crypto';
import { chmodSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync } from 'node:fs';
import { chmod, chown, lstat, open, readdir, rename, rm, rmdir, unlink, utimes } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { runBounded } from '../core/bounded.ts';
import { isRubiconError, RubiconError } from '../core/errors.ts';
import { comparePaths, relativePathProblem } from '../core/paths.ts';
import type { Manifest, ManifestEntry, ManifestNode, ManifestRoot } from '../core/types.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import type { VaultReader } from '../vaults/vault.ts';
import { WorkerPool } from './copy-pool.ts';
import { Lander } from './restore-worker.js';
import { hashFile } from './drift.ts';
import { walkTree } from './walk.ts';
import type { SkippedEntry } from './walk.ts';

/**
 * Restores a file-tree artifact from vaults into a folder: the landing.
 *
 * Destructive inside `destRoot` only: what the manifest names is replaced;
 * with `exact`, everything else under `destRoot` is deleted.
 * Guarantees:
 * - Content is validated in the same pass: every byte written was hashed
 *   as it was written and equals the manifest's SHA-256 (a vault object that
 *   does not is never left at the destination). A resolved restoreTree is a
 *   validated landing; nothing needs to read the files back (verifyTree is
 *   the independent check, for the proving ground).
 * - Vaults are tried in the given order per file; a corrupt or missing object
 *   falls back to the next vault, and the fallback is reported in `fallbacks`.
 *   When no vault has a good copy, LANDING_FAILED names the file and every
 *   vault's problem.
 * - Metadata (version-2 manifests): owner and group (chown first, it clears
 *   setuid bits), mode (setuid, setgid, sticky included), mtime; folders
 *   (empty ones too) with their own mode, owner and mtime, set after their
 *   content; symlinks as symlinks; hard links as links; FIFOs recreated
 *   (`mkfifo`). What could not be kept is listed in `notKept` (a chown not
 *   permitted when not root, mtimes finer than Node can set, ...), never
 *   silently dropped.
 * - A file that existed is replaced through a temp file beside it and a
 *   rename: it is the old one or the complete new one. A file that did not
 *   exist is written in place; if the process dies first, a rerun replaces it.
 * - Durable on return (`fsync`, default true) with one barrier at the end:
 *   syncfs(2) of the destination's filesystem (`sync -f`), or an fsync of
 *   every file where that is not available. No per-file fsync.
 * - When every vault is a FilesystemVault, worker threads (one per core, at
 *   most 4) land the files (restore-worker.js), many per message; otherwise
 *   (or under Node's permission model, which refuses threads) the main thread
 *   does, through each vault's read.
 * - Never writes outside `destRoot`: manifest paths are checked, and a
 *   symlink or file where a folder should be is refused (or, with `exact`,
 *   removed: it is not part of the artifact).
 * Idempotent: running it again gives the same tree.
 */
export interface RestoreTreeOptions {
  /** In order of preference. */
  vaults: VaultReader[];
  manifest: Manifest;
  /** Absolute path of the folder to restore into (created if missing). */
  destRoot: string;
  /** Delete files (and symlinks, folders) under destRoot that are not in the manifest. Default false. */
  exact?: boolean;
  /** Make the landing durable before returning (one barrier, see above). Default true. */
  fsync?: boolean;
  /** Files restored at the same time on the main-thread path. Default 4. */
  parallel?: number;
  /** Restore worker threads (FilesystemVaults only). 0: none. Default: one per core (at most 4) from 256 files or 8 MiB. */
  workers?: number;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

/** Something of the manifest the landing could not keep, with how many entries and the first few paths. */
export interface NotKept {
  what: 'owner' | 'mode' | 'mtime-ns' | 'fifo';
  count: number;
  examples: string[];
  reason: string;
}

export interface RestoreTreeResult {
  bytes: number;
  /** Regular files (hard links included). */
  fileCount: number;
  /** Folders, symlinks and FIFOs restored. */
  nodeCount: number;
  /** Files restored from each vault. */
  vaultUsed: Record<string, number>;
  /** Files whose preferred vault(s) failed, with what went wrong there. */
  fallbacks: { path: string; failed: { vault: string; code: string; message: string }[]; usedVault: string }[];
  /** Paths deleted because of `exact`. */
  removed: string[];
  /** Validated in the same pass: files (and their bytes) whose content was hashed as written and equals the manifest. */
  validated: { files: number; bytes: number };
  /** What the manifest holds that this landing could not keep (empty for a version-1 manifest: it holds no owners or links). */
  notKept: NotKept[];
}

const WORKERS_MAX = 4;
/** Below both, the workers' code (a Lander) runs on the main thread: a thread costs about 0.1 s of CPU to start, a small file about 0.1 ms to land. */
const WORKERS_MIN_FILES = 2048;
const WORKERS_MIN_BYTES = 16 * 1024 * 1024;
const BATCH_FILES = 32;
const BATCH_BYTES = 4 * 1024 * 1024;
/** Read/hash/write buffer of a restore worker: 256 KiB stays in a core's L2 cache between the read, the hash and the write (1 MiB cost 1.45x the CPU time per byte here, docs/files.md). */
const CHUNK = 256 * 1024;
const EXAMPLES = 5;
const FILE_COST = 64 * 1024;

interface LandJob {
  dest: string;
  size: number;
  sha256: string;
  mode: number;
  uid?: number;
  gid?: number;
  mtime: number;
  objects: string[];
}
type LandReply =
  | { kind: 'done'; vault: number; failed: { vault: number; code: string; message: string }[]; ownerDenied: boolean }
  | { kind: 'no-good-copy'; failed: { vault: number; code: string; message: string }[] }
  | { kind: 'dir-in-way' }
  | { kind: 'dest-failed'; op: string; code: string }
  | { kind: 'aborted' };

export async function restoreTree(options: RestoreTreeOptions): Promise<RestoreTreeResult> {
  const { manifest, destRoot, vaults } = options;
  if (vaults.length === 0) throw new RubiconError('ARGUMENTS_INVALID', `restore of '${manifest.artifactId}' was given no vault`);
  const nodes = manifest.nodes ?? [];
  for (const e of [...manifest.entries, ...nodes]) {
    const problem = relativePathProblem(e.path);
    if (problem) throw new RubiconError('LANDING_FAILED', `manifest of '${manifest.artifactId}' has an unsafe path '${e.path}' (${problem}); nothing was restored`);
  }
  const files = manifest.entries.filter((e) => e.link === undefined);
  const links = manifest.entries.filter((e) => e.link !== undefined);
  // Restore workers read plain objects from disk: an encrypting vault is read (decrypted and re-hashed) through read() on the main thread.
  const fsVaults = vaults.every((v) => v instanceof FilesystemVault && v.keys === undefined) ? (vaults as FilesystemVault[]) : undefined;
  const workers = fsVaults ? workerCount(options, files) : 0;
  // Too few for threads (and not turned off, nor under the permission model): the same code in this thread, no start to pay.
  const local = fsVaults && workers === 0 && options.workers === undefined && threadsPermitted() ? new Lander({ chunk: CHUNK, abortFlag: new Int32Array(new SharedArrayBuffer(4)) }) : undefined;
  // Started first: a thread's start (tens of ms) then overlaps the folders being made below.
  const pool =
    fsVaults && workers > 0
      ? new WorkerPool<LandJob, LandReply>(workers, new URL('./restore-worker.js', import.meta.url), { role: 'rubicon-restore-worker', chunk: CHUNK }, {
          code: 'LANDING_FAILED',
          noun: 'restore',
          describe: (fs) => (fs.length <= 3 ? fs.map((f) => f.dest).join(', ') : `${fs.slice(0, 3).map((f) => f.dest).join(', ')} and ${fs.length - 3} more files`),
        })
      : undefined;
  try {
    return await restoreWith(options, files, links, fsVaults, pool ?? local, pool ? workers : 1);
  } finally {
    await pool?.close();
  }
}

async function restoreWith(
  options: RestoreTreeOptions,
  files: ManifestEntry[],
  links: ManifestEntry[],
  fsVaults: FilesystemVault[] | undefined,
  pool: WorkerPool<LandJob, LandReply> | Lander | undefined,
  workers: number,
): Promise<RestoreTreeResult> {
  const { manifest, destRoot, vaults } = options;
  const nodes = manifest.nodes ?? [];
  mkdirSync(destRoot, { recursive: true });
  const exact = options.exact === true;
  const notKept = new NotKeptList();
  const removed: string[] = [];
  if (exact) removed.push(...(await removeExtras(destRoot, manifest)));

  // Folders first (parents before children: sorted), so files can go in.
  const dirs = new DirGuard(destRoot, exact, manifest.artifactId);
  for (const n of nodes) if (n.type === 'dir') dirs.ensure(n.path);
  for (const e of manifest.entries) dirs.ensure(dirname(e.path));
  for (const n of nodes) if (n.type !== 'dir') dirs.ensure(dirname(n.path));

  const vaultUsed: Record<string, number> = Object.fromEntries(vaults.map((v) => [v.info.name, 0]));
  const fallbacks: RestoreTreeResult['fallbacks'] = [];
  const totalBytes = manifest.entries.reduce((n, e) => n + e.size, 0);
  let doneBytes = 0;
  let validatedFiles = 0;
  let validatedBytes = 0;
  const landed = (e: ManifestEntry, vault: string, failed: { vault: string; code: string; message: string }[]): void => {
    vaultUsed[vault] = (vaultUsed[vault] ?? 0) + 1;
    if (failed.length > 0) fallbacks.push({ path: e.path, failed, usedVault: vault });
    validatedFiles++;
    validatedBytes += e.size;
    doneBytes += e.size;
    options.onProgress?.(doneBytes, totalBytes);
  };
  const noGoodCopy = (e: ManifestEntry, failed: { vault: string; code: string }[]): RubiconError =>
    new RubiconError(
      'LANDING_FAILED',
      `no vault has a good copy of '${e.path}' (artifact '${manifest.artifactId}'): ${failed.map((f) => `${f.vault}: ${f.code}`).join('; ')}; prove the copies with 'rubicon verify' and capture again from the source if it still exists`,
      { details: { path: e.path, failed } },
    );

  const onMain = async (e: ManifestEntry): Promise<void> => {
    const dest = join(destRoot, e.path);
    await clearDirectoryAt(dest, exact, e.path, manifest.artifactId);
    const failed: { vault: string; code: string; message: string }[] = [];
    for (const vault of vaults) {
      const outcome = await restoreOne(vault, e, dest, options.signal, notKept);
      if (outcome === 'ok') {
        landed(e, vault.info.name, failed);
        return;
      }
      failed.push({ vault: vault.info.name, code: outcome.code, message: outcome.message });
    }
    throw noGoodCopy(e, failed);
  };

  if (fsVaults && pool) {
    const onAbort = (): void => (pool instanceof Lander ? Atomics.store(pool.abortFlag, 0, 1) : pool.abort(), undefined);
    options.signal?.addEventListener('abort', onAbort);
    try {
      await runBounded(batches(files), workers * 2, async (batch) => {
        options.signal?.throwIfAborted();
        const jobs = batch.map((e) => landJob(e, destRoot, fsVaults));
        // Balanced by bytes plus a fixed cost per file (create, chmod, utimes: about a 64 KiB copy), not by jobs.
        const replies =
          pool instanceof Lander
            ? (pool.runBatch({ id: 0, files: jobs }).results as LandReply[])
            : await pool.run(
                jobs,
                batch.reduce((n, e) => n + e.size + FILE_COST, 0),
              );
        for (let k = 0; k < batch.length; k++) {
          const e = batch[k] as ManifestEntry;
          const r = replies[k];
          const named = (f: { vault: number; code: string; message: string }) => ({ vault: (fsVaults[f.vault] as FilesystemVault).info.name, code: f.code, message: f.message });
          if (r === undefined) throw new RubiconError('INTERNAL', `restore worker gave no reply for '${e.path}'`);
          if (r.kind === 'done') {
            if (r.ownerDenied) notKept.add('owner', e.path);
            landed(e, (fsVaults[r.vault] as FilesystemVault).info.name, r.failed.map(named));
          } else if (r.kind === 'no-good-copy') throw noGoodCopy(e, r.failed.map(named));
          else if (r.kind === 'dir-in-way') await onMain(e);
          else if (r.kind === 'dest-failed') throw new RubiconError('LANDING_FAILED', `cannot write '${e.path}' (${r.op}): ${r.code}; check space and permissions on the destination`);
          else {
            options.signal?.throwIfAborted();
            throw new RubiconError('LANDING_FAILED', `restore of '${e.path}' was stopped; run it again`);
          }
        }
      });
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  } else {
    await runBounded(files, Math.max(1, options.parallel ?? 4), async (e) => {
      options.signal?.throwIfAborted();
      await onMain(e);
    });
  }

  // Hard links, after the files they link to.
  for (const e of links) {
    const dest = join(destRoot, e.path);
    const to = join(destRoot, e.link as string);
    replaceWith(dest, exact, e.path, manifest.artifactId, (tmp) => linkSync(to, tmp));
    // The same inode as its (validated) first path.
    validatedFiles++;
    validatedBytes += e.size;
    doneBytes += e.size;
    options.onProgress?.(doneBytes, totalBytes);
  }

  // Symlinks and FIFOs, then folder metadata (after their content, which changes a folder's mtime).
  const fifos = nodes.filter((n) => n.type === 'fifo');
  for (const n of nodes) {
    if (n.type !== 'symlink') continue;
    const dest = join(destRoot, n.path);
    replaceWith(dest, exact, n.path, manifest.artifactId, (tmp) => symlinkSync(n.target as string, tmp));
    setMeta(dest, n, true, notKept);
  }
  if (fifos.length > 0) await makeFifos(destRoot, fifos, exact, manifest.artifactId, notKept);
  for (const n of nodes) if (n.type === 'dir') setMeta(join(destRoot, n.path), n, false, notKept);
  if (manifest.root) setMeta(destRoot, { ...manifest.root, path: '.' }, false, notKept);
  if (exact) await removeEmptyDirs(destRoot, manifest);
  for (const e of manifest.entries) if (!exactTime(e)) notKept.add('mtime-ns', e.path);
  for (const n of nodes) if (!exactTime(n)) notKept.add('mtime-ns', n.path);

  if (options.fsync !== false) await barrier(destRoot, manifest);
  fallbacks.sort((a, b) => comparePaths(a.path, b.path));
  return {
    bytes: totalBytes,
    fileCount: manifest.entries.length,
    nodeCount: nodes.length,
    vaultUsed,
    fallbacks,
    removed,
    validated: { files: validatedFiles, bytes: validatedBytes },
    notKept: notKept.list(),
  };
}

/** Node's permission model (the proving process) refuses worker threads; the main thread then lands with path-based calls. */
function threadsPermitted(): boolean {
  const perm = (process as { permission?: { has(scope: string): boolean } }).permission;
  return !(perm && !perm.has('worker'));
}

function workerCount(options: RestoreTreeOptions, files: ManifestEntry[]): number {
  if (!threadsPermitted()) return 0;
  if (options.workers !== undefined) {
    if (!Number.isInteger(options.workers) || options.workers < 0) throw new RubiconError('ARGUMENTS_INVALID', `restore option 'workers' is ${options.workers}; give a whole number, 0 for none`);
    return options.workers;
  }
  let bytes = 0;
  for (const e of files) bytes += e.size;
  if (files.length < WORKERS_MIN_FILES && bytes < WORKERS_MIN_BYTES) return 0;
  return Math.min(WORKERS_MAX, availableParallelism());
}

function batches(files: ManifestEntry[]): ManifestEntry[][] {
  const out: ManifestEntry[][] = [];
  let cur: ManifestEntry[] = [];
  let bytes = 0;
  for (const e of files) {
    if (cur.length > 0 && (cur.length >= BATCH_FILES || bytes + e.size > BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(e);
    bytes += e.size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

function landJob(e: ManifestEntry, destRoot: string, vaults: FilesystemVault[]): LandJob {
  return {
    dest: join(destRoot, e.path),
    size: e.size,
    sha256: e.sha256,
    mode: e.mode,
    ...(e.uid !== undefined && e.gid !== undefined ? { uid: e.uid, gid: e.gid } : {}),
    mtime: secondsOf(e),
    objects: vaults.map((v) => v.objectPath(e.sha256)),
  };
}

/**
 * The mtime as the seconds Node's utimes takes (a double: about 0.24 µs of
 * precision near 2026). mtimeMs / 1000 rather than sec + nsec / 1e9: then the
 * landed file's plain-stat mtimeMs mostly equals the manifest's, so a drift
 * scan or delta of the landed tree does not re-read it.
 */
function secondsOf(m: ManifestRoot): number {
  return m.mtimeMs / 1000;
}

function splitNs(ns: string): { sec: number; nsec: number } {
  if (ns.length > 9 && !ns.startsWith('-')) return { sec: Number(ns.slice(0, -9)), nsec: Number(ns.slice(-9)) };
  const n = BigInt(ns);
  let sec = n / 1_000_000_000n;
  let nsec = n % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/** Whether utimes with secondsOf(m) lands exactly m's nanoseconds (libuv: tv_sec = trunc(d), tv_nsec = trunc((d - tv_sec) * 1e9)). */
function exactTime(m: ManifestRoot): boolean {
  if (m.mtimeNs === undefined) return true;
  const { sec, nsec } = splitNs(m.mtimeNs);
  const d = secondsOf(m);
  const t = Math.trunc(d);
  return t === sec && Math.trunc((d - t) * 1e9) === nsec;
}

class NotKeptList {
  private readonly by = new Map<NotKept['what'], { count: number; examples: string[] }>();
  add(what: NotKept['what'], path: string): void {
    let g = this.by.get(what);
    if (!g) {
      g = { count: 0, examples: [] };
      this.by.set(what, g);
    }
    g.count++;
    if (g.examples.length < EXAMPLES) g.examples.push(path);
  }
  list(): NotKept[] {
    const reasons: Record<NotKept['what'], string> = {
      owner: 'changing the owner is not permitted to this process (not root): the files belong to the user that restored them',
      mode: 'the setuid/setgid bits were cleared by the system (the owner or group could not be set)',
      'mtime-ns': "the mtime landed within 0.24 microseconds of the captured nanoseconds: Node's utimes takes seconds as a double",
      fifo: 'the FIFO could not be made (mkfifo missing or refused)',
    };
    return [...this.by.entries()].map(([what, g]) => ({ what, count: g.count, examples: g.examples, reason: reasons[what] }));
  }
}

/** Owner, then mode (chown clears setuid bits), then mtime, of a restored folder, symlink or FIFO (path-based: no fd). */
function setMeta(abs: string, n: ManifestRoot & { path: string }, symlink: boolean, notKept: NotKeptList): void {
  let ownerDenied = false;
  try {
    if (n.uid !== undefined && n.gid !== undefined) lchownSync(abs, n.uid, n.gid);
  } catch (e) {
    if (codeOf(e) !== 'EPERM') throw destError(n.path, abs, e);
    ownerDenied = true;
    notKept.add('owner', n.path);
  }
  try {
    const t = secondsOf(n);
    if (symlink) lutimesSync(abs, t, t);
    else {
      chmodSync(abs, n.mode);
      if (ownerDenied && (n.mode & 0o6000) !== 0 && (lstatSync(abs).mode & 0o6000) !== (n.mode & 0o6000)) notKept.add('mode', n.path);
      utimesSync(abs, t, t);
    }
  } catch (e) {
    throw destError(n.path, abs, e);
  }
}

/**
 * Puts a new entry at `dest` made by `make(tmp)` (a link, a symlink): made
 * beside it and renamed over it. A folder in the way is removed with `exact`,
 * refused otherwise.
 */
function replaceWith(dest: string, exact: boolean, path: string, artifactId: string, make: (tmp: string) => void): void {
  const st = lstatSync(dest, { throwIfNoEntry: false });
  if (st?.isDirectory()) {
    if (!exact) throw new RubiconError('LANDING_FAILED', `cannot restore '${path}' of '${artifactId}': ${dest} is a folder; move it away or restore with exact`);
    rmSync(dest, { recursive: true, force: true });
  }
  const tmp = join(dirname(dest), `.rubicon-${randomUUID()}.tmp`);
  try {
    make(tmp);
    renameSync(tmp, dest);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // not made
    }
    throw destError(path, dest, e);
  }
}

/** FIFOs through coreutils `mkfifo` (Node has no mkfifo), in one call per 200; then owner, mode and mtime. */
async function makeFifos(destRoot: string, fifos: ManifestNode[], exact: boolean, artifactId: string, notKept: NotKeptList): Promise<void> {
  const tmps = fifos.map((n) => ({ n, dest: join(destRoot, n.path), tmp: join(dirname(join(destRoot, n.path)), `.rubicon-${randomUUID()}.tmp`) }));
  const { execFile } = await import('node:child_process'); // only when there are FIFOs (or a barrier) to make: not with the module
  for (let i = 0; i < tmps.length; i += 200) {
    const part = tmps.slice(i, i + 200);
    const ok = await new Promise<boolean>((resolve) => {
      try {
        execFile('mkfifo', ['-m', '600', '--', ...part.map((p) => p.tmp)], (e) => resolve(!e));
      } catch {
        resolve(false); // e.g. Node's permission model refuses child processes (the proving process): listed in notKept
      }
    });
    for (const p of part) {
      if (!ok && lstatSync(p.tmp, { throwIfNoEntry: false }) === undefined) {
        notKept.add('fifo', p.n.path);
        continue;
      }
      replaceWith(p.dest, exact, p.n.path, artifactId, (tmp) => renameSync(p.tmp, tmp));
      setMeta(p.dest, p.n, false, notKept);
    }
  }
}

/** One barrier for the whole landing: syncfs of the destination's filesystem, or an fsync of every file where `sync -f` is not there. */
async function barrier(destRoot: string, manifest: Manifest): Promise<void> {
  const { execFile } = await import('node:child_process');
  const ok =
    process.platform === 'linux' &&
    (await new Promise<boolean>((resolve, reject) => {
      try {
        execFile('sync', ['-f', destRoot], { timeout: 10 * 60 * 1000 }, (e, _o, stderr) => {
          if (!e) resolve(true);
          else if (codeOf(e) === 'ENOENT' || /invalid option|unrecognized option/.test(stderr)) resolve(false);
          else reject(new RubiconError('LANDING_FAILED', `flushing the filesystem of ${destRoot} failed (sync -f): ${stderr.trim() || String(e)}`, { cause: e }));
        });
      } catch {
        resolve(false); // no child processes allowed here: fsync each file instead
      }
    }));
  if (ok) return;
  await runBounded(manifest.entries, 8, async (e) => {
    const fh = await open(join(destRoot, e.path), 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  });
}

/** 'ok', or the vault-side problem (the next vault may help). Destination-side errors throw LANDING_FAILED. */
async function restoreOne(vault: VaultReader, entry: ManifestEntry, dest: string, signal: AbortSignal | undefined, notKept: NotKeptList): Promise<'ok' | { code: string; message: string }> {
  const tmp = join(dirname(dest), `.rubicon-${randomUUID()}.tmp`);
  let fh: FileHandle;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (e) {
    throw destError(entry.path, tmp, e);
  }
  let renamed = false;
  const chunks = vault.read(entry.sha256)[Symbol.asyncIterator]();
  try {
    let size = 0;
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await chunks.next();
      } catch (e) {
        if (isRubiconError(e)) return { code: e.code, message: e.message };
        return { code: 'VAULT_IO', message: String(e) };
      }
      if (next.done) break;
      signal?.throwIfAborted();
      size += next.value.byteLength;
      if (size > entry.size) {
        return { code: 'VAULT_CORRUPT', message: `object ${entry.sha256} in vault '${vault.info.name}' is longer than the ${entry.size} bytes the manifest records` };
      }
      try {
        let off = 0;
        while (off < next.value.byteLength) off += (await fh.write(next.value, off, next.value.byteLength - off, null)).bytesWritten;
      } catch (e) {
        throw destError(entry.path, tmp, e);
      }
    }
    if (size !== entry.size) {
      return { code: 'VAULT_CORRUPT', message: `object ${entry.sha256} in vault '${vault.info.name}' has ${size} bytes, the manifest records ${entry.size}` };
    }
    try {
      await fh.close();
      // Path-based calls (not fchown/fchmod/futimes): Node's permission model,
      // which confines the proving process, refuses the fd-based ones.
      if (entry.uid !== undefined && entry.gid !== undefined) {
        await chown(tmp, entry.uid, entry.gid).catch((e: unknown) => {
          if (codeOf(e) !== 'EPERM') throw e;
          notKept.add('owner', entry.path);
        });
      }
      const mtime = secondsOf(entry);
      await chmod(tmp, entry.mode);
      await utimes(tmp, mtime, mtime);
      await rename(tmp, dest);
      renamed = true;
    } catch (e) {
      throw destError(entry.path, dest, e);
    }
    return 'ok';
  } finally {
    // Ends the vault read early when we stopped before its end (closes its file).
    await chunks.return?.().catch(() => undefined);
    await fh.close().catch(() => undefined);
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

function destError(path: string, file: string, e: unknown): RubiconError {
  if (isRubiconError(e)) return e;
  return new RubiconError('LANDING_FAILED', `cannot write '${path}' (${file}): ${codeOf(e)}; check space and permissions on the destination`, { cause: e });
}

/**
 * Creates the folders for restored entries, refusing to go through a symlink
 * or a non-folder (with `exact` those are removed: they are not in the
 * artifact). Each folder is checked once. Synchronous: one lstat and at most
 * one mkdir per folder.
 */
class DirGuard {
  private readonly root: string;
  private readonly exact: boolean;
  private readonly artifactId: string;
  private readonly done = new Set<string>();
  constructor(root: string, exact: boolean, artifactId: string) {
    this.root = root;
    this.exact = exact;
    this.artifactId = artifactId;
  }
  ensure(rel: string): void {
    if (rel === '.' || rel === '' || this.done.has(rel)) return;
    this.ensure(dirname(rel));
    const abs = join(this.root, rel);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st?.isDirectory()) {
      if (st) {
        if (!this.exact) {
          throw new RubiconError(
            'LANDING_FAILED',
            `cannot restore '${this.artifactId}': ${abs} should be a folder but is a ${st.isSymbolicLink() ? 'symlink' : 'file'}; move it away or restore with exact`,
          );
        }
        rmSync(abs, { force: true });
      }
      try {
        mkdirSync(abs);
      } catch (e) {
        if (codeOf(e) !== 'EEXIST') throw destError(rel, abs, e);
      }
    }
    this.done.add(rel);
  }
}

/** A folder where a manifest file goes: removed with `exact` (its content is not in the artifact), refused otherwise. */
async function clearDirectoryAt(dest: string, exact: boolean, path: string, artifactId: string): Promise<void> {
  const st = await lstat(dest).catch(() => undefined);
  if (!st?.isDirectory()) return;
  if (!exact) {
    throw new RubiconError('LANDING_FAILED', `cannot restore '${path}' of '${artifactId}': ${dest} is a folder; move it away or restore with exact`);
  }
  await rm(dest, { recursive: true, force: true });
}

/** Deletes files, symlinks and special files under root that the manifest does not list (a folder where a symlink or FIFO goes stays until its turn). */
async function removeExtras(root: string, manifest: Manifest): Promise<string[]> {
  const wanted = new Map<string, string>();
  for (const e of manifest.entries) wanted.set(e.path, 'file');
  for (const n of manifest.nodes ?? []) wanted.set(n.path, n.type);
  const skipped: SkippedEntry[] = [];
  const extras: string[] = [];
  for await (const batch of walkTree(root, { onSkip: (s) => skipped.push(s) })) {
    for (const n of batch) {
      if (n.type === 'dir') continue;
      const want = wanted.get(n.path);
      // A file where a symlink goes (or the other way round) is replaced in place later; anything else not wanted goes.
      if (want === undefined || want === 'dir') extras.push(n.path);
    }
  }
  for (const s of skipped) if (s.kind !== 'vanished' && s.kind !== 'bad-name') extras.push(s.path);
  for (const p of extras) {
    await unlink(join(root, p)).catch((e: unknown) => {
      if (codeOf(e) !== 'ENOENT') throw destError(p, join(root, p), e);
    });
  }
  return extras.sort(comparePaths);
}

/** Removes folders (bottom-up) that the manifest neither lists nor needs for an entry. */
async function removeEmptyDirs(root: string, manifest: Manifest): Promise<void> {
  const needed = new Set<string>();
  for (const n of manifest.nodes ?? []) if (n.type === 'dir') needed.add(n.path);
  for (const p of [...manifest.entries.map((e) => e.path), ...(manifest.nodes ?? []).map((n) => n.path)]) for (let d = dirname(p); d !== '.'; d = dirname(d)) needed.add(d);
  const visit = async (rel: string): Promise<boolean> => {
    const abs = rel === '' ? root : join(root, rel);
    const names = await readdir(abs, { withFileTypes: true });
    let empty = true;
    for (const d of names) {
      const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory() && (await visit(childRel))) {
        if (!needed.has(childRel)) {
          await rmdir(join(root, childRel));
          continue;
        }
      }
      empty = false;
    }
    return empty;
  };
  await visit('');
}

export interface TreeMismatch {
  path: string;
  problem: 'missing' | 'size' | 'hash' | 'extra' | 'type' | 'mode' | 'owner' | 'target' | 'link';
}

/**
 * Independent check of a landed tree (the proving ground's files-hash):
 * hashes every file under root and compares with the manifest; for a
 * version-2 manifest also folders, symlinks (target), FIFOs, modes, owners
 * and hard links. Read-only. Entries not in the manifest are 'extra'.
 * Owners are compared when `owners` (default: when this process is root,
 * i.e. when a restore could have set them); a missing FIFO is not counted
 * where this process may not run `mkfifo` (Node's permission model).
 */
export async function verifyTree(root: string, manifest: Manifest, options: { parallel?: number; owners?: boolean } = {}): Promise<{ ok: boolean; mismatches: TreeMismatch[] }> {
  const v2 = manifest.version === 2;
  const byPath = new Map<string, ManifestEntry | ManifestNode>();
  for (const e of manifest.entries) byPath.set(e.path, e);
  for (const n of manifest.nodes ?? []) byPath.set(n.path, n);
  const mismatches: TreeMismatch[] = [];
  const skipped: SkippedEntry[] = [];
  const toHash: { path: string; entry: ManifestEntry }[] = [];
  const seen = new Set<string>();
  const inodeOf = new Map<string, string>();
  const checkOwner = options.owners ?? process.getuid?.() === 0;
  for await (const batch of walkTree(root, { onSkip: (s) => skipped.push(s) })) {
    for (const f of batch) {
      const e = byPath.get(f.path);
      if (!e) {
        if (f.type !== 'dir' || v2) mismatches.push({ path: f.path, problem: 'extra' });
        continue;
      }
      seen.add(f.path);
      const eType = 'type' in e ? e.type : 'file';
      if (eType !== f.type) {
        mismatches.push({ path: f.path, problem: 'type' });
        continue;
      }
      if (v2 && f.type !== 'symlink' && f.mode !== e.mode) mismatches.push({ path: f.path, problem: 'mode' });
      if (v2 && checkOwner && e.uid !== undefined && (f.uid !== e.uid || f.gid !== e.gid)) mismatches.push({ path: f.path, problem: 'owner' });
      if (f.type === 'symlink' && 'target' in e && f.target !== e.target) mismatches.push({ path: f.path, problem: 'target' });
      if (f.type === 'file' && !('type' in e)) {
        if (f.linkKey !== undefined && !inodeOf.has(f.linkKey)) inodeOf.set(f.linkKey, f.path);
        if (v2) {
          const first = f.linkKey !== undefined ? inodeOf.get(f.linkKey) : undefined;
          if ((first !== f.path ? first : undefined) !== e.link) mismatches.push({ path: f.path, problem: 'link' });
        }
        if (f.size !== e.size) mismatches.push({ path: f.path, problem: 'size' });
        else toHash.push({ path: f.path, entry: e });
      }
    }
  }
  for (const s of skipped) if (!byPath.has(s.path) && s.kind !== 'vanished') mismatches.push({ path: s.path, problem: 'extra' });
  // A FIFO is made with `mkfifo`, which a process under Node's permission model (the proving ground) may not run: not 'missing' there.
  const fifosPossible = (process as { permission?: { has(scope: string): boolean } }).permission?.has('child') ?? true;
  for (const e of byPath.values()) {
    if (!seen.has(e.path) && !('type' in e && e.type === 'fifo' && !fifosPossible)) mismatches.push({ path: e.path, problem: 'missing' });
  }
  await runBounded(toHash, options.parallel ?? 2, async ({ path, entry }) => {
    const h = await hashFile(join(root, path));
    if (h.sha256 !== entry.sha256 || h.size !== entry.size) mismatches.push({ path, problem: h.size !== entry.size ? 'size' : 'hash' });
  });
  mismatches.sort((a, b) => comparePaths(a.path, b.path) || (a.problem < b.problem ? -1 : 1));
  return { ok: mismatches.length === 0, mismatches };
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}
