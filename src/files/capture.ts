import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { closeSync, fstatSync, openSync, read as readCb, readSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, relativePathProblem } from '../core/paths.ts';
import type { DriftChange, Manifest, ManifestEntry, ManifestNode, ManifestRoot } from '../core/types.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import type { ObjectPut, ObjectWriter, Vault, VaultReader } from '../vaults/vault.ts';
import { CopyPool } from './copy-pool.ts';
import type { CopyReply } from './copy-pool.ts';
import { Copier } from './copy-worker.js';
import { ManifestCursor, pruneImpliedFolders, recordChange } from './drift.ts';
import { isNode, ManifestEncoder, recordKey } from './manifest.ts';
import type { ManifestRecord } from './manifest.ts';
import { msFromNs, statRoot, walkTree } from './walk.ts';
import type { SkippedEntry, TreeNode } from './walk.ts';

/**
 * The file-mirror method: copies a folder tree (or an explicit list of files)
 * into every vault as content-addressed objects plus a manifest.
 *
 * Guarantees:
 * - Read-only on the source. Each file is read once; the same chunks are
 *   hashed and written to every vault as they are read, so an object's name
 *   is always the hash of the bytes written under it.
 * - A tree's manifest (version 2) holds what the filesystem has: files with
 *   mode (setuid, setgid, sticky included), owner and group by number, the
 *   exact mtime (nanoseconds) and inode; hard links as links to the first
 *   path of the same inode (read once); folders (empty ones too); symlinks
 *   (stored as links, never followed); FIFOs (recreated, never read).
 *   Sockets, devices and names that are not valid UTF-8 are listed in
 *   `skipped` (a bad name with its bytes escaped), never an error.
 * - Streaming: the walk, the base manifest (a delta) and the new manifest
 *   all stream in path order; memory does not grow with the number of files
 *   (only with the files in flight, bounded, and with files that have more
 *   than one hard link).
 * - When every vault is a FilesystemVault, worker threads (`workers`, one per
 *   core) do the reading, hashing and writing, many small files per message
 *   (copy-pool.ts, copy-worker.js); otherwise the main thread does it through
 *   each vault's ObjectWriter. Both give the same manifest, objects, errors
 *   (codes and wording) and the same re-read rule below. A worker that dies
 *   fails the capture (CAPTURE_FAILED); it never hangs it.
 * - An object already in a vault is checked before it is reused, unless the
 *   vault verified it recently enough (docs/files.md, "Damaged objects"); a
 *   damaged one is replaced where the vault allows it (`repaired`), else
 *   listed in `unrepairable`.
 * - Idempotent: a redo with the same artifactId (after a crash) re-uses the
 *   objects already in the vaults and produces the same manifest bytes and
 *   hash for the same source state.
 * - Durable on return: objects and manifest are synced in every vault before
 *   the artifact index entry is written, and that is synced too.
 * - A file that changes while it is read is re-read (up to 3 reads). If it
 *   never holds still, the last read is kept with the mtime seen *before* that
 *   read and the path is listed in `unstable`; a later drift scan then sees it
 *   as changed, so the final delta captures it again.
 */
export interface TreeCaptureResult {
  manifestHash: string;
  /** 2 for a tree, 1 for captureFiles. */
  version: 1 | 2;
  /** Regular files (hard links included). */
  fileCount: number;
  /** Folders, symlinks and FIFOs. */
  nodeCount: number;
  /** Sum of the file sizes in the manifest. */
  bytes: number;
  /** Bytes actually read from the source (a delta re-uses unchanged files without reading them). */
  bytesRead: number;
  /** With a base: what differs from it. */
  changed?: DriftChange[];
  /** Entries not captured (sockets, devices, bad names, vanished). */
  skipped: SkippedEntry[];
  /** Files that kept changing while being read (see the contract above). */
  unstable: string[];
  /** Files stored as hard links to an earlier path. */
  hardLinks: number;
  /** Damaged objects found in a vault and replaced there (the first path that uses each). */
  repaired: ObjectRepair[];
  /** Damaged objects a vault cannot replace (WORM): this artifact's copy in that vault is damaged. */
  unrepairable: ObjectRepair[];
  /** Objects a delta read back and checked before reusing them (not verified since its base). */
  checkedObjects: number;
}

export interface ObjectRepair {
  vault: string;
  sha256: string;
  path: string;
}

/** Where a base manifest comes from: held in memory, or streamed from a vault (memory stays flat). */
export type BaseManifest = Manifest | { vault: VaultReader; manifestHash: string };

interface CommonOptions {
  vaults: Vault[];
  artifactId: string;
  itemId: string;
  method: string;
  runId: string;
  /** The previous artifact of the same item: files with equal size, mtime and inode re-use its hashes without being read. */
  base?: BaseManifest;
  signal?: AbortSignal;
  /** `totalBytes` grows while the walk runs (the tree is streamed, not listed first). */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Clock for the index entry's capturedAt. Default: the real clock. */
  now?: () => Date;
  /** Files read at the same time on the main-thread path. Default 4. */
  parallel?: number;
  /**
   * Worker threads that read, hash and write files when every vault is a
   * FilesystemVault (other vaults always go through the main thread).
   * 0: none. Default: one per core (at most 4), started once the files to
   * read come to 16 MiB or 2,048 files; below that, starting threads costs more
   * than it saves.
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

/** A file to capture, with the metadata the walk (or stat) saw. */
interface FileItem {
  name: string;
  abs: string;
  size: number;
  mtimeMs: number;
  mtimeNs?: string;
  mode: number;
  uid?: number;
  gid?: number;
  ino?: number;
  linkKey?: string;
}

/** What a copy gave: the object and the metadata of the read that was kept. */
interface Copied {
  sha256: string;
  size: number;
  mtimeMs: number;
  mtimeNs?: string;
  mode: number;
  uid?: number;
  gid?: number;
  ino?: number;
  stable: boolean;
  /** Per vault (same order as the capture's vaults). */
  puts: (ObjectPut | undefined)[];
}

const CHUNK = 1024 * 1024;
/** Read buffer of a copy worker: files up to this size take one read and one write. */
const WORKER_CHUNK = 1024 * 1024;
const WORKERS_MAX = 4;
const WORKERS_MIN_BYTES = 16 * 1024 * 1024;
const WORKERS_MIN_FILES = 2048;
const BATCH_FILES = 32;
const BATCH_BYTES = 4 * 1024 * 1024;
const MAX_READS = 3;
/** Files in flight (walked, not yet in the manifest): bounds memory whatever the tree. */
const MAX_PENDING = 1024;
/** Manifest text written to the vaults in pieces of about this size: below V8's large-object size (128 KiB), so each piece's string and buffer die young instead of waiting for a full GC (the peak RSS grew with the tree). */
const MANIFEST_PIECE = 64 * 1024;
const STATE_CACHE = 4096;
/** A file's fixed cost in bytes of copying, for balancing the workers (open, stat, create, rename: about a 64 KiB copy). */
const FILE_COST = 64 * 1024;

/** Captures the folder tree at `sourceRoot` (see the contract above). Manifest version 2. */
export async function captureTree(options: CaptureTreeOptions): Promise<TreeCaptureResult> {
  checkCommon(options);
  const root = statRoot(options.sourceRoot, true);
  const skipped: SkippedEntry[] = [];
  const source = treeSource(options.sourceRoot, options.exclude, skipped);
  return capture(options, source, { version: 2, root, skipped, vanishedIsError: false });
}

async function* treeSource(sourceRoot: string, exclude: string[] | undefined, skipped: SkippedEntry[]): AsyncGenerator<(FileItem | ManifestNode)[]> {
  const rootSlash = sourceRoot.endsWith('/') ? sourceRoot : `${sourceRoot}/`;
  for await (const batch of walkTree(sourceRoot, { exclude, exact: 'nodes', onSkip: (s) => skipped.push(s) })) {
    yield batch.map((n) => fromWalk(rootSlash, n));
  }
}

/** A walked node as a file to capture or a node record (built field by field: this runs once per file). */
function fromWalk(rootSlash: string, n: TreeNode): FileItem | ManifestNode {
  if (n.type === 'file') {
    const f: FileItem = { name: n.path, abs: `${rootSlash}${n.path}`, size: n.size, mtimeMs: n.mtimeMs, mode: n.mode };
    if (n.mtimeNs !== undefined) f.mtimeNs = n.mtimeNs;
    if (n.uid !== undefined) f.uid = n.uid;
    if (n.gid !== undefined) f.gid = n.gid;
    if (n.ino !== undefined) f.ino = n.ino;
    if (n.linkKey !== undefined) f.linkKey = n.linkKey;
    return f;
  }
  const r: ManifestNode = { path: n.path, type: n.type, mode: n.mode, mtimeMs: n.mtimeMs };
  if (n.mtimeNs !== undefined) r.mtimeNs = n.mtimeNs;
  if (n.uid !== undefined) r.uid = n.uid;
  if (n.gid !== undefined) r.gid = n.gid;
  if (n.type === 'symlink') r.target = n.target;
  return r;
}

/** Captures an explicit list of files (database backup files). Every listed file must exist. Manifest version 1 (as before version 2: same hashes). */
export async function captureFiles(options: CaptureFilesOptions): Promise<TreeCaptureResult> {
  checkCommon(options);
  const seen = new Set<string>();
  const items: FileItem[] = [];
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
    items.push({ name: f.name, abs: f.path, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777 });
  }
  items.sort((a, b) => comparePaths(a.name, b.name));
  return capture(options, (async function* () {
    yield items;
  })(), { version: 1, format: options.format, skipped: [], vanishedIsError: true });
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
  if (o.workers !== undefined && (!Number.isInteger(o.workers) || o.workers < 0)) {
    throw new RubiconError('ARGUMENTS_INVALID', `capture option 'workers' is ${o.workers}; give a whole number, 0 for none`);
  }
}

// ---------------------------------------------------------------- the capture

interface Slot {
  rec?: ManifestRecord;
  base?: ManifestRecord;
  done: boolean;
  promise?: Promise<void>;
  size: number;
}

async function capture(
  options: CommonOptions,
  source: AsyncIterable<(FileItem | ManifestNode)[]>,
  how: { version: 1 | 2; root?: ManifestRoot; format?: string; skipped: SkippedEntry[]; vanishedIsError: boolean },
): Promise<TreeCaptureResult> {
  const { vaults, signal } = options;
  const skipped = how.skipped;
  const unstable: string[] = [];
  const repaired: ObjectRepair[] = [];
  const unrepairable: ObjectRepair[] = [];
  const changed: DriftChange[] | undefined = options.base ? [] : undefined;
  let checkedObjects = 0;
  let hardLinks = 0;
  let fileCount = 0;
  let nodeCount = 0;
  let bytes = 0;
  let bytesRead = 0;
  let seenBytes = 0;
  let doneBytes = 0;
  const progress = (n: number): void => {
    doneBytes += n;
    options.onProgress?.(doneBytes, seenBytes);
  };

  // Vault clocks: what this capture may trust, and what it will promise in the index entry.
  const opened = await Promise.all(vaults.map(async (v) => (v.openedAtMs ? await v.openedAtMs() : v.clockMs ? await v.clockMs() : undefined)));
  const cursor = options.base ? new ManifestCursor(options.base) : undefined;
  await cursor?.start();
  const baseV1 = cursor?.version === 1;
  // A delta trusts an object verified since its base's capture began in that vault (undefined: check each).
  const fences = await Promise.all(
    vaults.map(async (v) => {
      if (!cursor || !v.getArtifactIndex) return undefined;
      const since = (await v.getArtifactIndex(cursor.artifactId))?.objectsVerifiedSince;
      const ms = since === undefined ? Number.NaN : Date.parse(since);
      return Number.isFinite(ms) ? ms : undefined;
    }),
  );
  const trustedFrom: (number | undefined)[] = vaults.map(() => undefined);

  const fsVaults = filesystemVaults(vaults);
  const engine: CopyEngine =
    fsVaults && options.workers !== 0
      ? new WorkerEngine(fsVaults, options.workers ?? autoWorkers(), options.workers === undefined, options.parallel)
      : new MainEngine(vaults, Math.max(1, options.parallel ?? 4));
  const onAbort = (): void => engine.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort);

  const writers: ObjectWriter[] = [];
  const hash = createHash('sha256');
  const enc = new ManifestEncoder(how.version);
  let text = '';
  /** A promise only when a piece is written (not one per record). */
  const emit = (s: string, force = false): Promise<unknown> | undefined => {
    text += s;
    if (text.length < MANIFEST_PIECE && !force) return undefined;
    const piece = Buffer.from(text, 'utf8');
    text = '';
    hash.update(piece);
    return Promise.all(writers.map((w) => w.write(piece)));
  };

  const queue: Slot[] = [];
  let head = 0;
  const links = new Map<string, Slot>();
  const stateCache = new Map<string, boolean | Promise<boolean>>();
  const syncStates = fsVaultsOf(vaults);

  const noteChange = (base: ManifestRecord | undefined, rec: ManifestRecord | undefined): void => {
    if (!changed) return;
    if (baseV1 && ((base && isNode(base)) || (rec && isNode(rec)))) return; // a version-1 base knows no folders or links
    const c = recordChange(base, rec, baseV1);
    if (c) changed.push(c);
  };
  const flush = async (): Promise<void> => {
    while (head < queue.length && (queue[head] as Slot).done) {
      const slot = queue[head] as Slot;
      queue[head++] = undefined as unknown as Slot;
      if (slot.rec) {
        const written = emit(enc.push(slot.rec));
        if (written) await written;
        if (isNode(slot.rec)) nodeCount++;
        else {
          fileCount++;
          bytes += slot.rec.size;
        }
      }
      noteChange(slot.base, slot.rec);
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
  };
  const settle = (slot: Slot, work: Promise<ManifestRecord | undefined>): void => {
    slot.promise = work.then((rec) => {
      slot.rec = rec;
      slot.done = true;
    });
    slot.promise.catch(() => undefined); // awaited in order below
  };

  const recordOf = (f: FileItem, c: Copied): ManifestEntry => {
    const e: ManifestEntry = { path: f.name, size: c.size, mtimeMs: c.mtimeMs, mode: c.mode, sha256: c.sha256 };
    if (how.version === 2) {
      if (c.mtimeNs !== undefined) e.mtimeNs = c.mtimeNs;
      if (c.uid !== undefined) e.uid = c.uid;
      if (c.gid !== undefined) e.gid = c.gid;
      if (c.ino !== undefined) e.ino = c.ino;
    }
    return e;
  };
  const noteOutcomes = (f: FileItem, c: Copied): void => {
    c.puts.forEach((p, k) => {
      const v = vaults[k] as Vault;
      if (p === 'repaired') repaired.push({ vault: v.info.name, sha256: c.sha256, path: f.name });
      else if (p === 'unrepairable') unrepairable.push({ vault: v.info.name, sha256: c.sha256, path: f.name });
    });
  };
  const copyFile = async (f: FileItem): Promise<ManifestEntry | undefined> => {
    const got = await engine.copy(f, (n) => (bytesRead += n));
    if (got === 'vanished') {
      if (how.vanishedIsError) throw new RubiconError('CAPTURE_FAILED', `file ${f.abs} disappeared during the capture; run the method again`);
      skipped.push({ path: f.name, kind: 'vanished' });
      progress(f.size);
      return undefined;
    }
    if (!got.stable) unstable.push(f.name);
    noteOutcomes(f, got);
    progress(f.size);
    return recordOf(f, got);
  };
  /** Whether every vault holds `sha256` in a state a delta may trust without reading the source (checks an untrusted one). */
  const reusableObject = (sha256: string, size: number): boolean | Promise<boolean> => {
    let p = stateCache.get(sha256);
    if (p !== undefined) return p;
    if (stateCache.size >= STATE_CACHE) stateCache.clear();
    const quick = trustedNow(sha256, size);
    if (quick !== undefined) {
      stateCache.set(sha256, quick);
      return quick;
    }
    p = (async () => {
      let all = true;
      for (let k = 0; k < vaults.length; k++) {
        const v = vaults[k] as Vault;
        if (!v.objectState) {
          if (!(await v.has(sha256))) all = false;
          continue;
        }
        const st = await v.objectState(sha256);
        if (!st || st.size !== size) {
          all = false; // missing or damaged there: the copy stores (or repairs) it
          continue;
        }
        const fence = fences[k];
        if (fence !== undefined && st.verifiedAtMs >= fence) {
          trustedFrom[k] = Math.min(trustedFrom[k] ?? fence, fence);
          continue;
        }
        checkedObjects++;
        const c = await v.check(sha256, size);
        if (c.status === 'ok') await v.markVerified?.(sha256);
        else all = false;
      }
      return all;
    })();
    stateCache.set(sha256, p);
    return p;
  };
  /**
   * The same decision as reusableObject without a promise, when every vault
   * answers with a synchronous stat (FilesystemVault): true when each holds the
   * object at the right size, verified since its fence; false when one lacks it
   * or holds the wrong size (the copy stores or repairs it); undefined when
   * one must be read back first (the slow path does that).
   */
  const trustedNow = (sha256: string, size: number): boolean | undefined => {
    if (!syncStates) return undefined;
    let all = true;
    const trusted: number[] = [];
    for (let k = 0; k < syncStates.length; k++) {
      const st = (syncStates[k] as FilesystemVault).objectStateSync(sha256);
      if (!st || st.size !== size) {
        all = false;
        continue;
      }
      const fence = fences[k];
      if (fence === undefined || st.verifiedAtMs < fence) return undefined;
      trusted.push(k);
    }
    // As the slow path does: each vault that was trusted lowers its promise to its fence.
    for (const k of trusted) trustedFrom[k] = Math.min(trustedFrom[k] ?? (fences[k] as number), fences[k] as number);
    return all;
  };
  // The walk's plain stat has no nanoseconds: an unchanged file keeps its base's (same mtime to the double, about 0.24 µs).
  const reuse = (f: FileItem, b: ManifestEntry): ManifestEntry =>
    recordOf(f, { sha256: b.sha256, size: f.size, mtimeMs: f.mtimeMs, mtimeNs: f.mtimeNs ?? b.mtimeNs, mode: f.mode, uid: f.uid, gid: f.gid, ino: f.ino, stable: true, puts: [] });
  const sameFile = (f: FileItem, b: ManifestRecord | undefined): b is ManifestEntry =>
    b !== undefined &&
    !isNode(b) &&
    b.size === f.size &&
    b.mtimeMs === f.mtimeMs &&
    (b.mtimeNs === undefined || f.mtimeNs === undefined || b.mtimeNs === f.mtimeNs) &&
    (b.ino === undefined || f.ino === undefined || b.ino === f.ino);

  let failed = false;
  try {
    for (const v of vaults) writers.push(await v.createWriter());
    await emit(enc.head({ version: how.version, artifactId: options.artifactId, itemId: options.itemId, method: options.method, ...(how.format !== undefined ? { format: how.format } : {}), ...(how.root ? { root: how.root } : {}) }));
    const gone = (r: ManifestRecord): void => noteChange(r, undefined);
    for await (const batch of source) {
      for (const item of batch) {
        signal?.throwIfAborted();
        const isFile = 'abs' in item;
        const key = isFile ? item.name : recordKey(item);
        const slot: Slot = { done: false, size: isFile ? item.size : 0 };
        if (cursor) {
          const sought = cursor.seek(key, gone);
          slot.base = sought instanceof Promise ? await sought : sought;
        }
        queue.push(slot);
        if (!isFile) {
          slot.rec = item;
          slot.done = true;
          continue;
        }
        seenBytes += item.size;
        const first = item.linkKey !== undefined ? links.get(item.linkKey) : undefined;
        if (first) {
          hardLinks++;
          settle(
            slot,
            (first.promise ?? Promise.resolve()).then(() => {
              const r = first.rec;
              if (r && !isNode(r)) {
                progress(item.size);
                return { ...r, path: item.name, link: r.path };
              }
              hardLinks--;
              return copyFile(item);
            }),
          );
          continue;
        }
        if (item.linkKey !== undefined) links.set(item.linkKey, slot);
        const b = slot.base;
        if (sameFile(item, b)) {
          const ok = reusableObject(b.sha256, b.size);
          if (ok === true) {
            // Cleared by size, mtime and inode, the object trusted: done now, no promise (most of a delta).
            slot.rec = reuse(item, b);
            slot.done = true;
            progress(item.size);
          } else if (ok === false) settle(slot, copyFile(item));
          else {
            settle(
              slot,
              ok.then((yes) => {
                if (!yes) return copyFile(item);
                progress(item.size);
                return reuse(item, b);
              }),
            );
          }
        } else settle(slot, copyFile(item));
        if (queue.length - head > MAX_PENDING) {
          engine.finish(false); // copies still held (too few for threads) must not block the window
          engine.flush();
          await (queue[head] as Slot).promise;
          await flush();
        }
      }
      await flush();
    }
    engine.finish();
    engine.flush();
    for (let i = head; i < queue.length; i++) {
      const slot = queue[i] as Slot;
      if (!slot.done) {
        engine.flush();
        await slot.promise;
      }
    }
    await flush();
    if (cursor) await cursor.rest(gone);
    await emit(enc.end(), true);
    signal?.throwIfAborted();
  } catch (e) {
    failed = true;
    engine.abort(signal?.reason);
    // Let every started copy settle before the pool closes (their errors are the same or a consequence).
    await Promise.allSettled(queue.slice(head).map((s) => s?.promise));
    if (signal?.aborted) throw signal.reason;
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await engine.close();
    if (failed) await Promise.all(writers.map((w) => w.abort().catch(() => undefined)));
  }

  const manifestHash = hash.digest('hex');
  await Promise.all(
    vaults.map(async (v, k) => {
      const put = await (writers[k] as ObjectWriter).commit(manifestHash);
      if (put === 'repaired') repaired.push({ vault: v.info.name, sha256: manifestHash, path: '(manifest)' });
      if (put === 'unrepairable') unrepairable.push({ vault: v.info.name, sha256: manifestHash, path: '(manifest)' });
      await v.sync();
    }),
  );
  // The index names the artifact only once everything it points to is durable.
  const capturedAt = (options.now ?? (() => new Date()))().toISOString();
  await Promise.all(
    vaults.map(async (v, k) => {
      const since = minDefined(opened[k], trustedFrom[k]);
      await v.putArtifactIndex({
        artifactId: options.artifactId,
        runId: options.runId,
        itemId: options.itemId,
        method: options.method,
        manifestHash,
        capturedAt,
        ...(since !== undefined ? { objectsVerifiedSince: new Date(Math.floor(since)).toISOString() } : {}),
      });
      await v.sync();
    }),
  );

  const byPath = (a: { path: string }, b: { path: string }): number => comparePaths(a.path, b.path);
  return {
    manifestHash,
    version: how.version,
    fileCount,
    nodeCount,
    bytes,
    bytesRead,
    ...(changed ? { changed: pruneImpliedFolders(changed) } : {}),
    skipped: skipped.sort(byPath),
    unstable: unstable.sort(comparePaths),
    hardLinks,
    repaired: repaired.sort(byPath),
    unrepairable: unrepairable.sort(byPath),
    checkedObjects,
  };
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

/** Every vault a FilesystemVault (encrypting or not): their object state is one synchronous stat. */
function fsVaultsOf(vaults: Vault[]): FilesystemVault[] | undefined {
  return vaults.every((v) => v instanceof FilesystemVault) ? (vaults as FilesystemVault[]) : undefined;
}

function filesystemVaults(vaults: Vault[]): FilesystemVault[] | undefined {
  // Copy workers write plain objects: an encrypting vault goes through its ObjectWriter on the main thread.
  return vaults.every((v) => v instanceof FilesystemVault && v.keys === undefined) ? (vaults as FilesystemVault[]) : undefined;
}

function autoWorkers(): number {
  return Math.min(WORKERS_MAX, availableParallelism());
}

// ---------------------------------------------------------------- copy engines

interface CopyEngine {
  /** Copies one file into every vault; 'vanished' when it is gone. */
  copy(f: FileItem, onRead: (n: number) => void): Promise<Copied | 'vanished'>;
  /** Every file the walk met (for the worker start threshold). */
  /** Sends what is batched. */
  flush(): void;
  /** Decide now: the source has ended, or (`final` false) the window of files in flight is full and copies are held (they go to the main thread). */
  finish(final?: boolean): void;
  abort(reason?: unknown): void;
  close(): Promise<void>;
}

/**
 * Copy workers: the main thread hands out batches of up to BATCH_FILES
 * files or BATCH_BYTES bytes (a message round trip costs about as much as
 * copying a small file) and keeps the vaults' books. Until the files to copy
 * reach the worker thresholds (auto mode), they are copied on the main
 * thread: starting threads costs more than a small capture.
 */
class WorkerEngine implements CopyEngine {
  private readonly vaults: FilesystemVault[];
  private readonly size: number;
  private readonly auto: boolean;
  private readonly main: CopyEngine;
  private pool: Promise<CopyPool> | undefined;
  private batch: { f: FileItem; onRead: (n: number) => void; resolve: (c: Copied | 'vanished') => void; reject: (e: unknown) => void }[] = [];
  private batchBytes = 0;
  private flushScheduled = false;
  /** Auto mode, before the decision: copies held until the thresholds say "workers", or the end says "main thread". */
  private held: { f: FileItem; onRead: (n: number) => void; resolve: (c: Copied | 'vanished') => void; reject: (e: unknown) => void }[] | undefined;
  private heldBytes = 0;
  /** Auto mode: files met before the decision (copied on the main thread, or held when large). */
  private seenFiles = 0;
  /** `auto`: copy on the main thread until the files to copy reach the thresholds, then start the pool. */
  constructor(vaults: FilesystemVault[], size: number, auto: boolean, parallel: number | undefined) {
    this.vaults = vaults;
    this.size = size;
    this.auto = auto;
    this.main = new LocalEngine(vaults, new MainEngine(vaults, Math.max(1, parallel ?? 4)));
    if (auto) this.held = [];
  }
  private startPool(): Promise<CopyPool> {
    this.pool ??= (async () => {
      const targets = await Promise.all(this.vaults.map((v) => v.workerTarget()));
      return new CopyPool(this.size, { chunk: WORKER_CHUNK, targets, maxReads: MAX_READS });
    })();
    this.pool.catch(() => undefined);
    return this.pool;
  }
  copy(f: FileItem, onRead: (n: number) => void): Promise<Copied | 'vanished'> {
    const held = this.held;
    if (held !== undefined) {
      this.seenFiles++;
      this.heldBytes += f.size;
      if (this.seenFiles < WORKERS_MIN_FILES && this.heldBytes < WORKERS_MIN_BYTES && f.size <= WORKER_CHUNK) {
        // Undecided: a small file is copied on the main thread right away (synchronous calls, no thread to wait for).
        return this.main.copy(f, onRead);
      }
      return new Promise((resolve, reject) => {
        held.push({ f, onRead, resolve, reject });
        if (this.seenFiles >= WORKERS_MIN_FILES || this.heldBytes >= WORKERS_MIN_BYTES) {
          this.held = undefined; // workers it is
          for (const h of held) this.enqueue(h);
        }
      });
    }
    return new Promise((resolve, reject) => this.enqueue({ f, onRead, resolve, reject }));
  }
  /** The source has ended (or the window is full): copies still held are too few for threads, so they go to the main thread. */
  finish(final = true): void {
    const held = this.held;
    if (held === undefined) return;
    if (!final && held.length === 0) return; // nothing waits on the decision: keep counting
    this.held = undefined;
    this.useMain = true;
    for (const h of held) this.main.copy(h.f, h.onRead).then(h.resolve, h.reject);
  }
  private useMain = false;
  private enqueue(b: { f: FileItem; onRead: (n: number) => void; resolve: (c: Copied | 'vanished') => void; reject: (e: unknown) => void }): void {
    if (this.useMain) {
      this.main.copy(b.f, b.onRead).then(b.resolve, b.reject);
      return;
    }
    const f = b.f;
    const { resolve, reject, onRead } = b;
    void this.startPool();
    {
      if (this.batch.length > 0 && (this.batch.length >= BATCH_FILES || this.batchBytes + f.size > BATCH_BYTES)) this.flush();
      this.batch.push({ f, onRead, resolve, reject });
      this.batchBytes += f.size;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    }
  }
  flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    const weight = batch.reduce((n, b) => n + b.f.size + FILE_COST, 0);
    void this.startPool()
      .then((pool) => pool.run(batch.map((b) => b.f.abs), weight))
      .then(
        (replies) => {
          batch.forEach((b, k) => {
            try {
              b.resolve(fromReply(replies[k], b.f, this.vaults, b.onRead));
            } catch (e) {
              b.reject(e);
            }
          });
        },
        (e: unknown) => {
          for (const b of batch) b.reject(e);
        },
      );
  }
  abort(reason?: unknown): void {
    this.main.abort(reason);
    void this.pool?.then((p) => p.abort(), () => undefined);
  }
  async close(): Promise<void> {
    await this.pool?.then((p) => p.close()).catch(() => undefined);
  }
}

/**
 * A copy worker's reply for one file (same contract as copyOnMain), with the
 * vaults' bookkeeping for sync(). Errors carry the same codes and messages as
 * the main-thread path.
 */
function fromReply(reply: CopyReply | undefined, f: FileItem, vaults: FilesystemVault[], onRead: (n: number) => void): Copied | 'vanished' {
  if (reply === undefined) throw new RubiconError('INTERNAL', `copy worker gave no reply for ${f.abs}`);
  if (reply.kind === 'aborted') throw new RubiconError('CAPTURE_FAILED', `copy of ${f.abs} was stopped; run the capture again`);
  onRead(reply.bytesRead);
  if (reply.kind === 'vanished') return 'vanished';
  if (reply.kind === 'failed') {
    if (reply.where === 'source') {
      throw new RubiconError('CAPTURE_FAILED', `cannot read ${f.abs} (${reply.code} on ${reply.op}); grant read access, or exclude '${f.name}' in the runbook with a reason`);
    }
    const v = vaults[reply.where] as FilesystemVault;
    throw new RubiconError('VAULT_IO', `vault '${v.info.name}': cannot store ${f.abs}: ${reply.op}: ${reply.code}; check the vault folder ${v.root} (space, permissions)`, {
      details: { vault: v.info.name },
    });
  }
  vaults.forEach((v, k) => {
    const put = reply.puts[k];
    v.notePlaced(reply.sha256, put === 'written' || put === 'repaired', reply.shardCreated[k] === true);
  });
  // Field by field, no spreads: this runs once per file.
  const c: Copied = { sha256: reply.sha256, size: reply.size, mtimeMs: msFromNs(reply.mtimeNs), mtimeNs: reply.mtimeNs, mode: reply.mode, stable: reply.stable, puts: reply.puts };
  if (process.platform !== 'win32') {
    c.uid = reply.uid;
    c.gid = reply.gid;
  }
  if (Number.isSafeInteger(reply.ino)) c.ino = reply.ino;
  return c;
}

/**
 * Copy workers' code on the main thread, for FilesystemVaults when the
 * capture is too small for threads: a small file (up to the workers' buffer)
 * is copied by a Copier (copy-worker.js) with synchronous calls, the same
 * code, replies and bookkeeping as in a worker, without a thread's start
 * (0.1 s of CPU each) or a message per batch; a larger file goes to `large`
 * (the ObjectWriter path, which does not hold the event loop for a whole
 * file).
 */
class LocalEngine implements CopyEngine {
  private readonly vaults: FilesystemVault[];
  private readonly large: MainEngine;
  private copier: Promise<Copier> | undefined;
  private readonly abortFlag = new Int32Array(new SharedArrayBuffer(4));
  constructor(vaults: FilesystemVault[], large: MainEngine) {
    this.vaults = vaults;
    this.large = large;
  }
  private start(): Promise<Copier> {
    this.copier ??= (async () => {
      const targets = await Promise.all(this.vaults.map((v) => v.workerTarget()));
      return new Copier({ chunk: WORKER_CHUNK, targets, maxReads: MAX_READS, abortFlag: this.abortFlag });
    })();
    return this.copier;
  }
  async copy(f: FileItem, onRead: (n: number) => void): Promise<Copied | 'vanished'> {
    if (f.size > WORKER_CHUNK) return this.large.copy(f, onRead);
    const copier = await this.start();
    if (Atomics.load(this.abortFlag, 0) !== 0) throw new RubiconError('CAPTURE_FAILED', `copy of ${f.abs} was stopped; run the capture again`);
    return fromReply(copier.run(f.abs) as CopyReply, f, this.vaults, onRead);
  }
  flush(): void {}
  finish(_final?: boolean): void {}
  abort(reason?: unknown): void {
    Atomics.store(this.abortFlag, 0, 1);
    this.large.abort(reason);
  }
  async close(): Promise<void> {}
}

/** The main-thread path: each vault's ObjectWriter, `parallel` files at a time. */
class MainEngine implements CopyEngine {
  private readonly vaults: Vault[];
  private readonly limit: number;
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly pool = new BufferPool(CHUNK);
  private readonly ac = new AbortController();
  constructor(vaults: Vault[], limit: number) {
    this.vaults = vaults;
    this.limit = limit;
  }
  flush(): void {}
  finish(): void {}
  abort(reason?: unknown): void {
    if (!this.ac.signal.aborted) this.ac.abort(reason);
  }
  async close(): Promise<void> {}
  async copy(f: FileItem, onRead: (n: number) => void): Promise<Copied | 'vanished'> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      this.ac.signal.throwIfAborted();
      return await copyOnMain(f, this.vaults, this.pool, this.ac.signal, onRead);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * Reads one file once, hashing it and writing it to every vault. Retries
 * when the file changed during the read (size, mtime or inode differ after
 * it). Files up to one chunk are read with synchronous calls (a few
 * microseconds each from the page cache, against a thread-pool round trip
 * per call); larger files stream through two buffers so the next read and
 * the vault writes overlap the hashing of the current chunk.
 */
async function copyOnMain(f: FileItem, vaults: Vault[], pool: BufferPool, signal: AbortSignal, onRead: (n: number) => void): Promise<Copied | 'vanished'> {
  for (let attempt = 1; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(f.abs, 'r');
    } catch (e) {
      if (codeOf(e) === 'ENOENT') return 'vanished';
      throw sourceError(f, e);
    }
    let before: BigIntStats;
    try {
      before = fstatSync(fd, { bigint: true });
    } catch (e) {
      closeSync(fd);
      throw sourceError(f, e);
    }
    const got = Number(before.size) <= CHUNK ? await copySmall(f, fd, before, vaults, pool, onRead, attempt < MAX_READS) : await copyLarge(f, fd, before, vaults, pool, signal, onRead, attempt < MAX_READS);
    if (got !== 'retry') return got;
  }
}

function isStable(before: BigIntStats, after: BigIntStats, size: number): boolean {
  return after.size === before.size && after.mtimeNs === before.mtimeNs && after.ino === before.ino && size === Number(before.size);
}

function copiedOf(before: BigIntStats, sha256: string, size: number, stable: boolean, puts: (ObjectPut | undefined)[]): Copied {
  const ino = Number(before.ino);
  return {
    sha256,
    size,
    mtimeMs: msFromNs(before.mtimeNs),
    mtimeNs: before.mtimeNs.toString(),
    mode: Number(before.mode) & 0o7777,
    ...(process.platform === 'win32' ? {} : { uid: Number(before.uid), gid: Number(before.gid) }),
    ...(Number.isSafeInteger(ino) ? { ino } : {}),
    stable,
    puts,
  };
}

async function commitAll(writers: ObjectWriter[], sha256: string): Promise<(ObjectPut | undefined)[]> {
  return Promise.all(writers.map(async (w) => (await w.commit(sha256)) ?? undefined));
}

/** Whole file into one pooled buffer with synchronous reads; closes `fd`. */
async function copySmall(f: FileItem, fd: number, before: BigIntStats, vaults: Vault[], pool: BufferPool, onRead: (n: number) => void, mayRetry: boolean): Promise<Copied | 'retry'> {
  const buf = pool.take();
  try {
    let size = 0;
    let after: BigIntStats;
    const want = Number(before.size);
    try {
      while (size < want) {
        const n = readSync(fd, buf, size, buf.length - size, null);
        if (n === 0) break;
        size += n;
      }
      after = fstatSync(fd, { bigint: true });
    } catch (e) {
      throw sourceError(f, e);
    } finally {
      closeSync(fd);
    }
    onRead(size);
    const stable = isStable(before, after, size);
    if (!stable && mayRetry) return 'retry';
    const chunk = buf.subarray(0, size);
    const sha256 = createHash('sha256').update(chunk).digest('hex');
    const puts = await Promise.all(
      vaults.map(async (v) => {
        const w = await v.createWriter();
        try {
          if (size > 0) await w.write(chunk);
          return (await w.commit(sha256)) ?? undefined;
        } catch (e) {
          await w.abort().catch(() => undefined);
          throw e;
        }
      }),
    );
    return copiedOf(before, sha256, size, stable, puts);
  } finally {
    pool.give(buf);
  }
}

/** Streams through two buffers: read i+1 and the writes of i run while i is hashed. Closes `fd`. */
async function copyLarge(
  f: FileItem,
  fd: number,
  before: BigIntStats,
  vaults: Vault[],
  pool: BufferPool,
  signal: AbortSignal,
  onRead: (n: number) => void,
  mayRetry: boolean,
): Promise<Copied | 'retry'> {
  const writers: ObjectWriter[] = [];
  const bufs: Buffer[] = [pool.take(), pool.take()];
  let committed = false;
  let pendingRead: Promise<number> = Promise.resolve(0);
  let pendingWrite: Promise<unknown> = Promise.resolve();
  const readInto = (buf: Buffer): Promise<number> =>
    new Promise<number>((resolve, reject) => readCb(fd, buf, 0, buf.length, null, (e, n) => (e ? reject(sourceError(f, e)) : resolve(n))));
  try {
    for (const v of vaults) writers.push(await v.createWriter());
    const hash: Hash = createHash('sha256');
    const want = Number(before.size);
    let size = 0;
    let which = 0;
    pendingRead = readInto(bufs[0] as Buffer);
    for (;;) {
      const n = await pendingRead;
      if (n === 0) break;
      signal.throwIfAborted();
      const chunk = (bufs[which] as Buffer).subarray(0, n);
      size += n;
      onRead(n);
      await pendingWrite; // the other buffer is free again
      which = 1 - which;
      // A file read up to its size needs no extra read to see EOF: growth shows in the stat after.
      pendingRead = size >= want ? Promise.resolve(0) : readInto(bufs[which] as Buffer);
      pendingWrite = Promise.all(writers.map((w) => w.write(chunk)));
      // Both are awaited later; mark them handled so a failure while the other is awaited is not "unhandled".
      pendingRead.catch(() => undefined);
      pendingWrite.catch(() => undefined);
      hash.update(chunk); // on this thread, while the pool threads read and write
    }
    await pendingWrite;
    let after: BigIntStats;
    try {
      after = fstatSync(fd, { bigint: true });
    } catch (e) {
      throw sourceError(f, e);
    }
    const stable = isStable(before, after, size);
    if (!stable && mayRetry) return 'retry';
    const sha256 = hash.digest('hex');
    const puts = await commitAll(writers, sha256);
    committed = true;
    return copiedOf(before, sha256, size, stable, puts);
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

function sourceError(f: FileItem, e: unknown): RubiconError {
  if (e instanceof RubiconError) return e;
  return new RubiconError('CAPTURE_FAILED', `cannot read ${f.abs} (${codeOf(e)}); grant read access, or exclude '${f.name}' in the runbook with a reason`, { cause: e });
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}

export { WORKERS_MIN_BYTES, WORKERS_MIN_FILES };
