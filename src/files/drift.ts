import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, isExcluded } from '../core/paths.ts';
import type { DriftChange, Manifest, ManifestEntry } from '../core/types.ts';
import { normalizeExcludes, walk } from './walk.ts';

/**
 * Drift: what changed in a folder since a manifest was captured. Read-only.
 *
 * Rules (the same ones the delta capture uses to re-use a hash):
 * - same size and mtime and permission bits → unchanged, not read (stat only);
 * - different size → modified, not read;
 * - same size, different mtime → the file is hashed and reported modified
 *   only if the content differs (a `touch` is not drift);
 * - same size and mtime, different permission bits → modified;
 * - files not in the manifest → added; manifest files gone (or no longer
 *   regular files) → deleted.
 * Assumption: a write changes the mtime or the size. A same-size rewrite
 * inside one mtime tick is invisible to stat; `verifyContent: true` hashes
 * every file for the paranoid check (e.g. right before the gate).
 */
export interface ScanDriftOptions {
  exclude?: string[];
  /** Hash every file, not only those whose mtime moved. Default false. */
  verifyContent?: boolean;
}

export async function scanDrift(sourceRoot: string, manifest: Manifest, options: ScanDriftOptions = {}): Promise<DriftChange[]> {
  const excludes = normalizeExcludes(options.exclude ?? []);
  const byPath = new Map<string, ManifestEntry>();
  for (const e of manifest.entries) if (!isExcluded(e.path, excludes)) byPath.set(e.path, e);
  const changes: DriftChange[] = [];
  for await (const f of walk(sourceRoot, { exclude: options.exclude })) {
    const e = byPath.get(f.path);
    if (!e) {
      changes.push({ path: f.path, kind: 'added', size: f.size, mtimeMs: f.mtimeMs });
      continue;
    }
    byPath.delete(f.path);
    let modified: boolean;
    if (f.size !== e.size) modified = true;
    else if (f.mtimeMs !== e.mtimeMs || options.verifyContent === true) {
      modified = (await hashFile(join(sourceRoot, f.path))).sha256 !== e.sha256 || f.mode !== e.mode;
    } else modified = f.mode !== e.mode;
    if (modified) changes.push({ path: f.path, kind: 'modified', size: f.size, mtimeMs: f.mtimeMs });
  }
  for (const e of byPath.values()) changes.push({ path: e.path, kind: 'deleted', size: e.size, mtimeMs: e.mtimeMs });
  return changes.sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * What differs between two manifests of the same item, by path. Pure.
 * Modified = different content hash or permission bits; an mtime-only
 * difference is not a change.
 */
export function diffManifests(base: Manifest, current: Manifest): DriftChange[] {
  const before = new Map(base.entries.map((e) => [e.path, e] as const));
  const changes: DriftChange[] = [];
  for (const e of current.entries) {
    const b = before.get(e.path);
    if (!b) changes.push({ path: e.path, kind: 'added', size: e.size, mtimeMs: e.mtimeMs });
    else {
      before.delete(e.path);
      if (b.sha256 !== e.sha256 || b.mode !== e.mode) changes.push({ path: e.path, kind: 'modified', size: e.size, mtimeMs: e.mtimeMs });
    }
  }
  for (const b of before.values()) changes.push({ path: b.path, kind: 'deleted', size: b.size, mtimeMs: b.mtimeMs });
  return changes.sort((a, b) => comparePaths(a.path, b.path));
}

const HASH_CHUNK = 1024 * 1024;

/** SHA-256 and size of a file, streamed with one 1 MiB buffer. Read-only. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `cannot read ${path} (${codeOf(e)}) to compare its content; check read access`, { cause: e });
  }
  try {
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, HASH_CHUNK, null);
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
