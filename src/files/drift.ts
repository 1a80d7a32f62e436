import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, isExcluded } from '../core/paths.ts';
import type { DriftChange, Manifest } from '../core/types.ts';
import type { VaultReader } from '../vaults/vault.ts';
import { isNode, manifestRecords, recordKey, streamManifest } from './manifest.ts';
import type { ManifestHeader, ManifestRecord } from './manifest.ts';
import { normalizeExcludes, walkTree } from './walk.ts';
import type { TreeNode } from './walk.ts';

/**
 * Drift: what changed in a folder since a manifest was captured. Read-only.
 *
 * Rules (the same ones the delta capture uses to re-use a hash):
 * - same size, mtime and inode → content unchanged, not read (stat only);
 * - different size → modified, not read;
 * - same size, different mtime or inode → the file is hashed and reported
 *   modified only if the content differs (a `touch` is not drift);
 * - a metadata-only change is drift too: permission bits, owner or group,
 *   a symlink's target, a hard link split or made, an entry's type;
 * - entries not in the manifest → added (folders too); manifest entries
 *   gone → deleted. An mtime-only change (of a file or folder) is not drift.
 * - A version-1 manifest knows only regular files and their permission
 *   bits: folders, symlinks, FIFOs and owners are not compared against it.
 * The tree and the manifest are both streamed in path order (merge join):
 * memory stays flat whatever the number of files.
 * Assumption: a write changes the mtime or the size. A same-size rewrite
 * inside one mtime tick is invisible to stat; `verifyContent: true` hashes
 * every file for the paranoid check (e.g. right before the gate).
 */
export interface ScanDriftOptions {
  exclude?: string[];
  /** Hash every file, not only those whose mtime or inode moved. Default false. */
  verifyContent?: boolean;
}

/** `manifest`: held in memory, or streamed from a vault (`{ vault, manifestHash }`). */
export async function scanDrift(sourceRoot: string, manifest: Manifest | { vault: VaultReader; manifestHash: string }, options: ScanDriftOptions = {}): Promise<DriftChange[]> {
  const excludes = normalizeExcludes(options.exclude ?? []);
  const base = new Records(manifest);
  await base.start();
  const v1 = base.version === 1;
  const changes: DriftChange[] = [];
  const firstOfInode = new Map<string, string>();
  const gone = (r: ManifestRecord): void => {
    if (isExcluded(r.path, excludes)) return;
    if (v1 && isNode(r)) return;
    changes.push(changeOf(r, undefined));
  };
  for await (const batch of walkTree(sourceRoot, { exclude: options.exclude })) {
    for (const n of batch) {
      const key = n.type === 'dir' ? `${n.path}/` : n.path;
      const sought = base.seek(key, gone);
      const b = sought instanceof Promise ? await sought : sought;
      if (v1 && n.type !== 'file') {
        if (b) gone(b);
        continue;
      }
      if (n.type === 'file' && n.linkKey !== undefined && !firstOfInode.has(n.linkKey)) firstOfInode.set(n.linkKey, n.path);
      if (!b) {
        changes.push(added(n));
        continue;
      }
      // Synchronous unless the file must be hashed: no promise per unchanged file (a fresh-process scan is mostly this loop).
      // The path is joined only when the file is hashed (path.join showed in profiles of this loop).
      const hashNow = async (): Promise<string> => {
        const abs = join(sourceRoot, n.path);
        return (n.type === 'file' && n.size <= HASH_CHUNK ? hashFileSync(abs) : await hashFile(abs)).sha256;
      };
      const compared = compare(n, b, v1, firstOfInode, hashNow, options.verifyContent === true);
      const aspects = compared instanceof Promise ? await compared : compared;
      if (aspects.length > 0) changes.push({ ...changeOf(b, asCurrent(n)), aspects });
    }
  }
  await base.rest(gone);
  return pruneImpliedFolders(changes);
}

/**
 * Sorted by path, without the folders whose addition (or deletion) is
 * implied by an entry under them that was added (or deleted) too: a new
 * folder with files in it shows as its files, as before version 2; an
 * empty one, or one whose mode or owner changed, shows itself. Pure.
 */
export function pruneImpliedFolders(changes: DriftChange[]): DriftChange[] {
  const folders = new Map<string, DriftChange>();
  for (const c of changes) if (c.entryType === 'dir' && c.kind !== 'modified') folders.set(c.path, c);
  const implied = new Set<DriftChange>();
  if (folders.size > 0) {
    for (const c of changes) {
      if (c.kind === 'modified') continue;
      for (let i = c.path.lastIndexOf('/'); i > 0; i = c.path.lastIndexOf('/', i - 1)) {
        const f = folders.get(c.path.slice(0, i));
        if (f && f.kind === c.kind) implied.add(f);
      }
    }
  }
  return changes.filter((c) => !implied.has(c)).sort((a, b) => comparePaths(a.path, b.path));
}

/** What differs between a walked node and its manifest record; a promise only when the file has to be hashed. */
function compare(
  n: TreeNode,
  b: ManifestRecord,
  v1: boolean,
  firstOfInode: Map<string, string>,
  hashNow: () => Promise<string>,
  verifyContent: boolean,
): NonNullable<DriftChange['aspects']> | Promise<NonNullable<DriftChange['aspects']>> {
  const aspects: NonNullable<DriftChange['aspects']> = [];
  const bType = isNode(b) ? b.type : 'file';
  if (bType !== n.type) return ['type'];
  if (n.mode !== b.mode) aspects.push('mode');
  if (!v1 && ((b.uid !== undefined && n.uid !== undefined && b.uid !== n.uid) || (b.gid !== undefined && n.gid !== undefined && b.gid !== n.gid))) aspects.push('owner');
  if (n.type === 'symlink' && isNode(b) && b.target !== n.target) aspects.push('target');
  if (n.type === 'file' && !isNode(b)) {
    let hashIt = false;
    if (n.size !== b.size) aspects.unshift('content');
    else if (verifyContent || n.mtimeMs !== b.mtimeMs || (b.ino !== undefined && n.ino !== undefined && b.ino !== n.ino)) hashIt = true;
    if (!v1) {
      const first = n.linkKey !== undefined ? firstOfInode.get(n.linkKey) : undefined;
      const nowLink = first !== undefined && first !== n.path ? first : undefined;
      if (nowLink !== b.link) aspects.push('link');
    }
    // 'content' goes first, as when it is known from the size.
    if (hashIt) return hashNow().then((h) => (h !== b.sha256 ? ['content', ...aspects] : aspects));
  }
  return aspects;
}

function asCurrent(n: TreeNode): { size?: number; mtimeMs: number } {
  return n.type === 'file' ? { size: n.size, mtimeMs: n.mtimeMs } : { mtimeMs: n.mtimeMs };
}

function added(n: TreeNode): DriftChange {
  return n.type === 'file'
    ? { path: n.path, kind: 'added', size: n.size, mtimeMs: n.mtimeMs }
    : { path: n.path, kind: 'added', mtimeMs: n.mtimeMs, entryType: n.type };
}

/** A change for record `b` (deleted when `cur` is undefined, else modified with the current size and mtime). */
function changeOf(b: ManifestRecord, cur: { size?: number; mtimeMs: number } | undefined): DriftChange {
  const c: DriftChange = { path: b.path, kind: cur ? 'modified' : 'deleted' };
  const size = cur ? cur.size : isNode(b) ? undefined : b.size;
  if (size !== undefined) c.size = size;
  c.mtimeMs = cur ? cur.mtimeMs : b.mtimeMs;
  if (isNode(b)) c.entryType = b.type;
  return c;
}

/**
 * The change from record `b` (base) to `r` (current), or undefined when
 * they agree on everything but the mtime. Pure. Used by diffManifests and the
 * delta capture.
 */
export function recordChange(b: ManifestRecord | undefined, r: ManifestRecord | undefined, baseV1 = false): DriftChange | undefined {
  if (!b && !r) return undefined;
  if (!b) {
    const rr = r as ManifestRecord;
    const c: DriftChange = { path: rr.path, kind: 'added' };
    if (!isNode(rr)) c.size = rr.size;
    c.mtimeMs = rr.mtimeMs;
    if (isNode(rr)) c.entryType = rr.type;
    return c;
  }
  if (!r) return changeOf(b, undefined);
  const aspects: NonNullable<DriftChange['aspects']> = [];
  const bType = isNode(b) ? b.type : 'file';
  const rType = isNode(r) ? r.type : 'file';
  if (bType !== rType) aspects.push('type');
  else {
    if (!isNode(b) && !isNode(r) && b.sha256 !== r.sha256) aspects.push('content');
    if (b.mode !== r.mode) aspects.push('mode');
    if (!baseV1 && ((b.uid !== undefined && r.uid !== undefined && b.uid !== r.uid) || (b.gid !== undefined && r.gid !== undefined && b.gid !== r.gid))) aspects.push('owner');
    if (isNode(b) && isNode(r) && b.target !== r.target) aspects.push('target');
    if (!baseV1 && !isNode(b) && !isNode(r) && b.link !== r.link) aspects.push('link');
  }
  if (aspects.length === 0) return undefined;
  return { ...changeOf(b, { ...(isNode(r) ? {} : { size: r.size }), mtimeMs: r.mtimeMs }), ...(isNode(r) ? { entryType: r.type } : {}), aspects };
}

/**
 * What differs between two manifests of the same item, by path. Pure.
 * Modified = different content hash, permission bits, owner, symlink target,
 * hard link or type; an mtime-only difference is not a change.
 */
export function diffManifests(base: Manifest, current: Manifest): DriftChange[] {
  const baseV1 = base.version === 1;
  const a = [...manifestRecords(base)];
  const b = [...manifestRecords(current)].filter((r) => !(baseV1 && isNode(r)));
  const changes: DriftChange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    const c = x === undefined ? 1 : y === undefined ? -1 : comparePaths(recordKey(x), recordKey(y));
    const change = c < 0 ? recordChange(x, undefined, baseV1) : c > 0 ? recordChange(undefined, y, baseV1) : recordChange(x, y, baseV1);
    if (change) changes.push(change);
    if (c <= 0) i++;
    if (c >= 0) j++;
  }
  return pruneImpliedFolders(changes);
}

/** A manifest's records in key order, from memory or streamed from a vault. */
class Records {
  private readonly it: Iterator<ManifestRecord> | AsyncGenerator<ManifestHeader | ManifestRecord[]>;
  private readonly streamed: boolean;
  private buf: ManifestRecord[] = [];
  private i = 0;
  private ended = false;
  version: 1 | 2;
  artifactId = '';
  constructor(m: Manifest | { vault: VaultReader; manifestHash: string }) {
    if ('entries' in m) {
      this.it = manifestRecords(m);
      this.streamed = false;
      this.version = m.version;
      this.artifactId = m.artifactId;
    } else {
      this.it = streamManifest(m.vault, m.manifestHash);
      this.streamed = true;
      this.version = 2;
    }
  }
  async start(): Promise<void> {
    if (!this.streamed) return;
    const first = await (this.it as AsyncGenerator<ManifestHeader | ManifestRecord[]>).next();
    if (first.done || Array.isArray(first.value)) throw new RubiconError('INTERNAL', 'manifest stream gave no header');
    this.version = first.value.version;
    this.artifactId = first.value.artifactId;
  }
  private async fill(): Promise<boolean> {
    while (this.i >= this.buf.length) {
      if (this.ended) return false;
      const r = this.streamed ? await (this.it as AsyncGenerator<ManifestHeader | ManifestRecord[]>).next() : (this.it as Iterator<ManifestRecord>).next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      this.buf = Array.isArray(r.value) ? r.value : 'path' in r.value ? [r.value as ManifestRecord] : [];
      this.i = 0;
    }
    return true;
  }
  /**
   * The record with `key`, or undefined (records before it go to `gone`).
   * Synchronous while the records read so far reach `key` (the common case:
   * one await per piece of the manifest, not one per file); a promise only
   * when the next piece has to be read. Callers check `instanceof Promise`.
   */
  seek(key: string, gone: (r: ManifestRecord) => void): ManifestRecord | undefined | Promise<ManifestRecord | undefined> {
    for (;;) {
      if (this.i >= this.buf.length) return this.ended ? undefined : this.seekAsync(key, gone);
      const r = this.buf[this.i] as ManifestRecord;
      const c = comparePaths(recordKey(r), key);
      if (c > 0) return undefined;
      this.i++;
      if (c === 0) return r;
      gone(r);
    }
  }
  private async seekAsync(key: string, gone: (r: ManifestRecord) => void): Promise<ManifestRecord | undefined> {
    for (;;) {
      if (this.i >= this.buf.length && !(await this.fill())) return undefined;
      const r = this.buf[this.i] as ManifestRecord;
      const c = comparePaths(recordKey(r), key);
      if (c > 0) return undefined;
      this.i++;
      if (c === 0) return r;
      gone(r);
    }
  }
  async rest(gone: (r: ManifestRecord) => void): Promise<void> {
    for (;;) {
      if (this.i >= this.buf.length && !(await this.fill())) return;
      gone(this.buf[this.i++] as ManifestRecord);
    }
  }
}

export { Records as ManifestCursor };

const HASH_CHUNK = 1024 * 1024;
let hashBuf: Buffer | undefined;

/** SHA-256 and size of a file with synchronous reads through one shared 1 MiB buffer (no allocation per file). Read-only. */
export function hashFileSync(path: string): { sha256: string; size: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `cannot read ${path} (${codeOf(e)}) to compare its content; check read access`, { cause: e });
  }
  try {
    hashBuf ??= Buffer.allocUnsafeSlow(HASH_CHUNK);
    const hash = createHash('sha256');
    let size = 0;
    for (;;) {
      const n = readSync(fd, hashBuf, 0, HASH_CHUNK, null);
      if (n === 0) break;
      hash.update(hashBuf.subarray(0, n));
      size += n;
    }
    return { sha256: hash.digest('hex'), size };
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `cannot read ${path} (${codeOf(e)}) to compare its content; check read access`, { cause: e });
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 and size of a file, streamed through the thread pool with one buffer (sized to the file, at most 1 MiB). Read-only. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `cannot read ${path} (${codeOf(e)}) to compare its content; check read access`, { cause: e });
  }
  try {
    const hash = createHash('sha256');
    const len = Math.max(1, Math.min(HASH_CHUNK, (await fh.stat()).size));
    const buf = Buffer.allocUnsafe(len);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, len, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { sha256: hash.digest('hex'), size };
  } finally {
    await fh.close();
  }
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}
