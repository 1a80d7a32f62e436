import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, read as readCb, readSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { runBounded } from '../core/bounded.ts';
import { RubiconError } from '../core/errors.ts';
import { relativePathProblem } from '../core/paths.ts';
import type { DriftChange, Manifest, ManifestEntry } from '../core/types.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import type { ObjectWriter, Vault } from '../vaults/vault.ts';
import { CopyPool } from './copy-pool.ts';
import type { CopyReply } from './copy-pool.ts';
import { diffManifests } from './drift.ts';
import { encodeManifest, sortEntries } from './manifest.ts';
import { walk } from './walk.ts';
import type { FileStat, SkippedEntry } from './walk.ts';

/**
 * The file-mirror method: copies a folder tree (or an explicit list of files)
 * into every vault as content-addressed objects plus a manifest.
 *
 * Guarantees:
 * - Read-only on the source. Each file is read once; the same chunks are
 *   hashed and written to every vault as they are read, so an object's name
 *   is always the hash of the bytes written under it.
 * - When every vault is a FilesystemVault, worker threads (`workers`, one per
 *   core) do the reading, hashing and writing, many small files per message
 *   (copy-pool.ts, copy-worker.js); otherwise the main thread does it through
 *   each vault's ObjectWriter. Both give the same manifest, objects, errors
 *   (codes and wording) and the same re-read rule below. A worker that dies
 *   fails the capture (CAPTURE_FAILED); it never hangs it.
 * - Memory does not grow with file size: one 1 MiB buffer per worker, or two
 *   per file in flight on the main thread; the manifest in memory grows with
 *   the number of files (~200 B each).
 * - Idempotent: a redo with the same artifactId (after a crash) re-uses the
 *   objects already in the vaults (a vault drops a duplicate write) and
 *   produces the same manifest bytes and hash for the same source state.
 * - Durable on return: objects and manifest are synced in every vault before
 *   the artifact index entry is written, and that is synced too.
 * - A file that changes while it is read is re-read (up to 3 reads). If it
 *   never holds still, the last read is kept with the mtime seen *before* that
 *   read and the path is listed in `unstable`; a later drift scan then sees it
 *   as changed, so the final delta captures it again.
 */
export interface TreeCaptureResult {
  manifest: Manifest;
  manifestHash: string;
  fileCount: number;
  /** Sum of the sizes in the manifest. */
  bytes: number;
  /** Bytes actually read from the source (a delta re-uses unchanged files without reading them). */
  bytesRead: number;
  /** With a base: what differs from it. */
  changed?: DriftChange[];
  /** Entries not captured because they are not regular files (symlinks, ...) or vanished. */
  skipped: SkippedEntry[];
  /** Files that kept changing while being read (see the contract above). */
  unstable: string[];
}

interface CommonOptions {
  vaults: Vault[];
  artifactId: string;
  itemId: string;
  method: string;
  runId: string;
  /** The previous artifact of the same item: files with equal size and mtime re-use its hashes without being read. */
  base?: Manifest;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Clock for the index entry's capturedAt. Default: the real clock. */
  now?: () => Date;
  /** Files read at the same time. Default 4 (with copy workers: at least three per worker). */
  parallel?: number;
  /**
   * Worker threads that read, hash and write files when every vault is a
   * FilesystemVault (other vaults always go through the main thread).
   * 0: none. Default: one per core (at most 4), used when the files to read
   * come to at least 8 MiB or 256 files; below that, starting threads costs
   * more than it saves.
   */
  workers?: number;
}

export interface CaptureTreeOptions extends CommonOptions {
  /** Absolute path of the folder to capture. */
  sourceRoot: string;
  /** Relative paths (files or folders) to leave out. */
  exclude?: string[];
}

export interface CaptureFilesOptions extends CommonOptions {
  /** `path`: absolute path of the file; `name`: its path in the manifest (relative, POSIX). */
  files: { path: string; name: string }[];
  /** Recorded in the manifest, e.g. `sqlite-db`, `sql-text`. */
  format?: string;
}

interface Source {
  name: string;
  abs: string;
  stat: FileStat;
}

const CHUNK = 1024 * 1024;
/** Read buffer of a copy worker: files up to this size take one read and one write. */
const WORKER_CHUNK = 1024 * 1024;
const WORKERS_MAX = 4;
const WORKERS_MIN_BYTES = 8 * 1024 * 1024;
const WORKERS_MIN_FILES = 256;
const BATCH_FILES = 32;
const BATCH_BYTES = 4 * 1024 * 1024;
const MAX_READS = 3;
const YIELD_EVERY_MS = 10;

/** Captures the folder tree at `sourceRoot` (regular files only; see walk). */
export async function captureTree(options: CaptureTreeOptions): Promise<TreeCaptureResult> {
  checkCommon(options);
  const skipped: SkippedEntry[] = [];
  const sources: Source[] = [];
  // Worker threads take ~30 ms each to start: start them while the walk runs once it is clear they will be used.
  const fsVaults = filesystemVaults(options.vaults);
  const eager = fsVaults !== undefined && options.base === undefined && options.workers !== 0;
  let early: Promise<CopyPool> | undefined;
  let seenBytes = 0;
  try {
    for await (const f of walk(options.sourceRoot, { exclude: options.exclude, onSkip: (s) => skipped.push(s) })) {
      options.signal?.throwIfAborted();
      sources.push({ name: f.path, abs: join(options.sourceRoot, f.path), stat: f });
      seenBytes += f.size;
      if (eager && early === undefined && (sources.length >= WORKERS_MIN_FILES || seenBytes >= WORKERS_MIN_BYTES)) {
        early = startPool(fsVaults, options.workers ?? autoWorkers());
        early.catch(() => undefined); // awaited (or closed) below
      }
    }
  } catch (e) {
    await early?.then((p) => p.close()).catch(() => undefined);
    throw e;
  }
  return captureSources(sources, options, undefined, skipped, false, early);
}

/** Captures an explicit list of files (database backup files). Every listed file must exist. */
export async function captureFiles(options: CaptureFilesOptions): Promise<TreeCaptureResult> {
  checkCommon(options);
  const seen = new Set<string>();
  const sources: Source[] = [];
  for (const f of options.files) {
    const problem = relativePathProblem(f.name);
    if (problem) throw new RubiconError('ARGUMENTS_INVALID', `file name '${f.name}' for ${f.path} ${problem}; give a relative POSIX path`);
    if (seen.has(f.name)) throw new RubiconError('ARGUMENTS_INVALID', `file name '${f.name}' is listed twice; give each file its own name`);
    seen.add(f.name);
    let st;
    try {
      st = await stat(f.path);
    } catch (e) {
      throw new RubiconError('CAPTURE_FAILED', `file ${f.path} cannot be read (${codeOf(e)}); check that the method produced it`, { cause: e });
    }
    if (!st.isFile()) throw new RubiconError('CAPTURE_FAILED', `${f.path} is not a regular file; only files can be captured this way`);
    sources.push({ name: f.name, abs: f.path, stat: { path: f.name, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777 } });
  }
  return captureSources(sources, options, options.format, [], true);
}

function checkCommon(o: CommonOptions): void {
  if (o.vaults.length === 0) throw new RubiconError('ARGUMENTS_INVALID', `capture of '${o.itemId}' has no vault; name at least one vault in the runbook`);
  for (const [k, v] of [
    ['artifactId', o.artifactId],
    ['itemId', o.itemId],
    ['method', o.method],
    ['runId', o.runId],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0) throw new RubiconError('ARGUMENTS_INVALID', `capture option '${k}' is empty; it must name the ${k.replace('Id', '')}`);
  }
  const names = new Set(o.vaults.map((v) => v.info.name));
  if (names.size !== o.vaults.length) throw new RubiconError('ARGUMENTS_INVALID', `capture of '${o.itemId}' lists the same vault twice`);
}

async function captureSources(
  sources: Source[],
  options: CommonOptions,
  format: string | undefined,
  skipped: SkippedEntry[],
  vanishedIsError: boolean,
  early?: Promise<CopyPool>,
): Promise<TreeCaptureResult> {
  const { vaults, signal } = options;
  const baseByPath = new Map<string, ManifestEntry>();
  for (const e of options.base?.entries ?? []) baseByPath.set(e.path, e);
  const hasCache = new Map<string, Promise<boolean>>();
  const inAllVaults = (sha: string): Promise<boolean> => {
    let p = hasCache.get(sha);
    if (!p) {
      p = Promise.all(vaults.map((v) => v.has(sha))).then((r) => r.every(Boolean));
      hasCache.set(sha, p);
    }
    return p;
  };

  const totalBytes = sources.reduce((n, s) => n + s.stat.size, 0);
  let doneBytes = 0;
  let bytesRead = 0;
  const progress = (n: number): void => {
    doneBytes += n;
    options.onProgress?.(doneBytes, totalBytes);
  };
  const entries: (ManifestEntry | undefined)[] = new Array(sources.length);
  const unstable: string[] = [];
  const pool = new BufferPool(CHUNK);
  // Small files are handled with synchronous calls: give the event loop a turn every few milliseconds.
  let lastYield = performance.now();
  const maybeYield = async (): Promise<void> => {
    if (performance.now() - lastYield < YIELD_EVERY_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    lastYield = performance.now();
  };

  const reusable = async (src: Source): Promise<ManifestEntry | undefined> => {
    const prev = baseByPath.get(src.name);
    if (prev && prev.size === src.stat.size && prev.mtimeMs === src.stat.mtimeMs && (await inAllVaults(prev.sha256))) {
      return { path: src.name, size: src.stat.size, mtimeMs: src.stat.mtimeMs, mode: src.stat.mode, sha256: prev.sha256 };
    }
    return undefined;
  };
  const record = (src: Source, i: number, got: CopiedFile | 'vanished'): void => {
    if (got === 'vanished') {
      if (vanishedIsError) throw new RubiconError('CAPTURE_FAILED', `file ${src.abs} disappeared during the capture; run the method again`);
      skipped.push({ path: src.name, kind: 'vanished' });
    } else {
      if (!got.stable) unstable.push(src.name);
      entries[i] = { path: src.name, size: got.size, mtimeMs: got.mtimeMs, mode: got.mode, sha256: got.sha256 };
    }
    progress(src.stat.size);
  };

  const fsVaults = filesystemVaults(vaults);
  let workers: number;
  try {
    workers = fsVaults ? workerCount(sources, baseByPath, options) : 0;
  } catch (e) {
    await early?.then((p) => p.close()).catch(() => undefined);
    throw e;
  }
  if (early && workers === 0) {
    await early.then((p) => p.close()).catch(() => undefined);
    early = undefined;
  }
  if (fsVaults && workers > 0) {
    // Copy workers: the main thread only sorts out re-used files, hands out batches and keeps the books.
    const poolStarted = early ?? startPool(fsVaults, workers);
    poolStarted.catch(() => undefined); // awaited below; a failed start must not be "unhandled" meanwhile
    const onAbort = (): void => void poolStarted.then((p) => p.abort(), () => undefined);
    signal?.addEventListener('abort', onAbort);
    try {
      const toCopy: number[] = [];
      for (let i = 0; i < sources.length; i++) {
        const src = sources[i] as Source;
        const reused = await reusable(src);
        if (reused) {
          entries[i] = reused;
          progress(src.stat.size);
        } else toCopy.push(i);
      }
      const copyPool = await poolStarted;
      await runBounded(makeBatches(toCopy, sources), workers * 2, async (batch) => {
        signal?.throwIfAborted();
        const replies = await copyPool.run(batch.map((i) => (sources[i] as Source).abs));
        batch.forEach((i, k) => {
          const src = sources[i] as Source;
          record(src, i, fromReply(replies[k], src, fsVaults, signal, (n) => (bytesRead += n)));
        });
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
      await poolStarted.then((p) => p.close()).catch(() => undefined);
    }
  } else {
    await runBounded(sources, Math.max(1, options.parallel ?? 4), async (src, i) => {
      await maybeYield();
      signal?.throwIfAborted();
      const reused = await reusable(src);
      if (reused) {
        entries[i] = reused;
        progress(src.stat.size);
        return;
      }
      const got = await copyFileIntoVaults(src, vaults, pool, signal, (n) => {
        bytesRead += n;
      });
      record(src, i, got);
    });
  }

  const manifest: Manifest = {
    version: 1,
    artifactId: options.artifactId,
    itemId: options.itemId,
    method: options.method,
    entries: sortEntries(entries.filter((e): e is ManifestEntry => e !== undefined)),
    ...(format !== undefined ? { format } : {}),
  };
  const bytes = encodeManifest(manifest);
  const manifestHash = createHash('sha256').update(bytes).digest('hex');
  signal?.throwIfAborted();
  await Promise.all(
    vaults.map(async (v) => {
      const stored = await v.putBytes(bytes);
      if (stored !== manifestHash) {
        throw new RubiconError('VAULT_IO', `vault '${v.info.name}' stored manifest of '${options.artifactId}' as ${stored}, expected ${manifestHash}`);
      }
      await v.sync();
    }),
  );
  // The index names the artifact only once everything it points to is durable.
  const capturedAt = (options.now ?? (() => new Date()))().toISOString();
  await Promise.all(
    vaults.map(async (v) => {
      await v.putArtifactIndex({
        artifactId: options.artifactId,
        runId: options.runId,
        itemId: options.itemId,
        method: options.method,
        manifestHash,
        capturedAt,
      });
      await v.sync();
    }),
  );

  const fileBytes = manifest.entries.reduce((n, e) => n + e.size, 0);
  return {
    manifest,
    manifestHash,
    fileCount: manifest.entries.length,
    bytes: fileBytes,
    bytesRead,
    ...(options.base ? { changed: diffManifests(options.base, manifest) } : {}),
    skipped: skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
    unstable: unstable.sort(),
  };
}

function filesystemVaults(vaults: Vault[]): FilesystemVault[] | undefined {
  return vaults.every((v) => v instanceof FilesystemVault) ? (vaults as FilesystemVault[]) : undefined;
}

function autoWorkers(): number {
  return Math.min(WORKERS_MAX, availableParallelism());
}

/** Prepares the vault folders and starts `size` copy workers writing into them. */
async function startPool(vaults: FilesystemVault[], size: number): Promise<CopyPool> {
  if (!Number.isInteger(size) || size < 1) throw new RubiconError('ARGUMENTS_INVALID', `capture option 'workers' is ${size}; give a whole number, 0 for none`);
  const targets = await Promise.all(vaults.map((v) => v.workerTarget()));
  return new CopyPool(size, { chunk: WORKER_CHUNK, targets, maxReads: MAX_READS });
}

/** Copy workers to use (see `workers`): 0 below the thresholds in auto mode. */
function workerCount(sources: Source[], baseByPath: Map<string, ManifestEntry>, options: CommonOptions): number {
  const size = options.workers;
  if (size !== undefined) {
    if (!Number.isInteger(size) || size < 0) throw new RubiconError('ARGUMENTS_INVALID', `capture option 'workers' is ${size}; give a whole number, 0 for none`);
    return size;
  }
  let files = 0;
  let bytes = 0;
  for (const s of sources) {
    const prev = baseByPath.get(s.name);
    if (prev && prev.size === s.stat.size && prev.mtimeMs === s.stat.mtimeMs) continue; // will probably be re-used
    files++;
    bytes += s.stat.size;
  }
  if (files < WORKERS_MIN_FILES && bytes < WORKERS_MIN_BYTES) return 0;
  return autoWorkers();
}

/**
 * Consecutive files grouped so that one message carries many small files
 * (a message round trip costs about as much as copying a small file): at
 * most BATCH_FILES files and BATCH_BYTES bytes; a larger file goes alone.
 */
function makeBatches(indexes: number[], sources: Source[]): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (const i of indexes) {
    const size = (sources[i] as Source).stat.size;
    if (current.length > 0 && (current.length >= BATCH_FILES || bytes + size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(i);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

/**
 * A copy worker's reply for one file (same contract as copyFileIntoVaults),
 * with the vaults' bookkeeping for sync(). Errors carry the same codes and
 * messages as the main-thread path.
 */
function fromReply(
  reply: CopyReply | undefined,
  src: Source,
  vaults: FilesystemVault[],
  signal: AbortSignal | undefined,
  onRead: (n: number) => void,
): CopiedFile | 'vanished' {
  if (reply === undefined) throw new RubiconError('INTERNAL', `copy worker gave no reply for ${src.abs}`);
  if (reply.kind === 'aborted') {
    signal?.throwIfAborted();
    throw new RubiconError('CAPTURE_FAILED', `copy of ${src.abs} was stopped; run the capture again`);
  }
  onRead(reply.bytesRead);
  if (reply.kind === 'vanished') return 'vanished';
  if (reply.kind === 'failed') {
    if (reply.where === 'source') {
      throw new RubiconError('CAPTURE_FAILED', `cannot read ${src.abs} (${reply.code} on ${reply.op}); grant read access, or exclude '${src.name}' in the runbook with a reason`);
    }
    const v = vaults[reply.where] as FilesystemVault;
    throw new RubiconError('VAULT_IO', `vault '${v.info.name}': cannot store ${src.abs}: ${reply.op}: ${reply.code}; check the vault folder ${v.root} (space, permissions)`, {
      details: { vault: v.info.name },
    });
  }
  vaults.forEach((v, k) => v.notePlaced(reply.sha256, reply.placed[k] === true, reply.shardCreated[k] === true));
  return { sha256: reply.sha256, size: reply.size, mtimeMs: reply.mtimeMs, mode: reply.mode, stable: reply.stable };
}

interface CopiedFile {
  sha256: string;
  size: number;
  mtimeMs: number;
  mode: number;
  stable: boolean;
}

/**
 * Reads one file once, hashing it and writing it to every vault. Retries
 * when the file changed during the read (size or mtime differ after it).
 * Files up to one chunk are read with synchronous calls (a few microseconds
 * each from the page cache, against a thread-pool round trip per call);
 * larger files stream through two buffers so the next read and the vault
 * writes overlap the hashing of the current chunk.
 */
async function copyFileIntoVaults(
  src: Source,
  vaults: Vault[],
  pool: BufferPool,
  signal: AbortSignal | undefined,
  onRead: (n: number) => void,
): Promise<CopiedFile | 'vanished'> {
  for (let attempt = 1; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(src.abs, 'r');
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return 'vanished';
      throw sourceError(src, e);
    }
    let before: Stats;
    try {
      before = fstatSync(fd);
    } catch (e) {
      closeSync(fd);
      throw sourceError(src, e);
    }
    const got = before.size <= CHUNK ? await copySmall(src, fd, before, vaults, pool, onRead, attempt < MAX_READS) : await copyLarge(src, fd, before, vaults, pool, signal, onRead, attempt < MAX_READS);
    if (got !== 'retry') return got;
  }
}

function isStable(before: Stats, after: Stats, size: number): boolean {
  return after.size === before.size && after.mtimeMs === before.mtimeMs && size === before.size;
}

/** Whole file into one pooled buffer with synchronous reads; closes `fd`. */
async function copySmall(
  src: Source,
  fd: number,
  before: Stats,
  vaults: Vault[],
  pool: BufferPool,
  onRead: (n: number) => void,
  mayRetry: boolean,
): Promise<CopiedFile | 'retry'> {
  const buf = pool.take();
  try {
    let size = 0;
    let after: Stats;
    try {
      while (size < before.size) {
        const n = readSync(fd, buf, size, buf.length - size, null);
        if (n === 0) break;
        size += n;
      }
      after = fstatSync(fd);
    } catch (e) {
      throw sourceError(src, e);
    } finally {
      closeSync(fd);
    }
    onRead(size);
    const stable = isStable(before, after, size);
    if (!stable && mayRetry) return 'retry';
    const chunk = buf.subarray(0, size);
    const sha256 = createHash('sha256').update(chunk).digest('hex');
    await Promise.all(
      vaults.map(async (v) => {
        const w = await v.createWriter();
        try {
          if (size > 0) await w.write(chunk);
          await w.commit(sha256);
        } catch (e) {
          await w.abort().catch(() => undefined);
          throw e;
        }
      }),
    );
    return { sha256, size, mtimeMs: before.mtimeMs, mode: before.mode & 0o7777, stable };
  } finally {
    pool.give(buf);
  }
}

/** Streams through two buffers: read i+1 and the writes of i run while i is hashed. Closes `fd`. */
async function copyLarge(
  src: Source,
  fd: number,
  before: Stats,
  vaults: Vault[],
  pool: BufferPool,
  signal: AbortSignal | undefined,
  onRead: (n: number) => void,
  mayRetry: boolean,
): Promise<CopiedFile | 'retry'> {
  const writers: ObjectWriter[] = [];
  const bufs: Buffer[] = [pool.take(), pool.take()];
  let committed = false;
  let pendingRead: Promise<number> = Promise.resolve(0);
  let pendingWrite: Promise<unknown> = Promise.resolve();
  const readInto = (buf: Buffer): Promise<number> =>
    new Promise<number>((resolve, reject) => readCb(fd, buf, 0, buf.length, null, (e, n) => (e ? reject(sourceError(src, e)) : resolve(n))));
  try {
    for (const v of vaults) writers.push(await v.createWriter());
    const hash = createHash('sha256');
    let size = 0;
    let which = 0;
    pendingRead = readInto(bufs[0] as Buffer);
    for (;;) {
      const n = await pendingRead;
      if (n === 0) break;
      signal?.throwIfAborted();
      const chunk = (bufs[which] as Buffer).subarray(0, n);
      size += n;
      onRead(n);
      await pendingWrite; // the other buffer is free again
      which = 1 - which;
      // A file read up to its size needs no extra read to see EOF: growth shows in the stat after.
      pendingRead = size >= before.size ? Promise.resolve(0) : readInto(bufs[which] as Buffer);
      pendingWrite = Promise.all(writers.map((w) => w.write(chunk)));
      // Both are awaited later; mark them handled so a failure while the other is awaited is not "unhandled".
      pendingRead.catch(() => undefined);
      pendingWrite.catch(() => undefined);
      hash.update(chunk); // on this thread, while the pool threads read and write
    }
    await pendingWrite;
    let after: Stats;
    try {
      after = fstatSync(fd);
    } catch (e) {
      throw sourceError(src, e);
    }
    const stable = isStable(before, after, size);
    if (!stable && mayRetry) return 'retry';
    const sha256 = hash.digest('hex');
    await Promise.all(writers.map((w) => w.commit(sha256)));
    committed = true;
    return { sha256, size, mtimeMs: before.mtimeMs, mode: before.mode & 0o7777, stable };
  } finally {
    // Buffers go back to the pool, and the file is closed, only once no read or write still uses them.
    await Promise.allSettled([pendingRead, pendingWrite]);
    if (!committed) await Promise.all(writers.map((w) => w.abort().catch(() => undefined)));
    for (const b of bufs) pool.give(b);
    closeSync(fd);
  }
}

/** Reuses read buffers so memory stays at two per file in flight. */
class BufferPool {
  private readonly size: number;
  private readonly free: Buffer[] = [];
  constructor(size: number) {
    this.size = size;
  }
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }
  give(b: Buffer): void {
    if (this.free.length < 16) this.free.push(b);
  }
}

function sourceError(src: Source, e: unknown): RubiconError {
  if (e instanceof RubiconError) return e;
  return new RubiconError(
    'CAPTURE_FAILED',
    `cannot read ${src.abs} (${codeOf(e)}); grant read access, or exclude '${src.name}' in the runbook with a reason`,
    { cause: e },
  );
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}
