import { randomUUID } from 'node:crypto';
import { chmod, lstat, mkdir, open, readdir, rename, rm, rmdir, unlink, utimes } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runBounded } from '../core/bounded.ts';
import { isRubiconError, RubiconError } from '../core/errors.ts';
import { relativePathProblem } from '../core/paths.ts';
import type { Manifest, ManifestEntry } from '../core/types.ts';
import type { VaultReader } from '../vaults/vault.ts';
import { hashFile } from './drift.ts';
import { walk } from './walk.ts';
import type { SkippedEntry } from './walk.ts';

/**
 * Restores a file-tree artifact from vaults into a folder.
 *
 * Destructive inside `destRoot` only: files named in the manifest are
 * replaced; with `exact`, everything else under `destRoot` is deleted.
 * Guarantees:
 * - Each file is streamed from a vault (hash-checked by the vault's read) into
 *   a temp file beside its destination, fsync'd, given its mode and mtime,
 *   and only then renamed over the destination: a file is either the old one
 *   or the complete, verified new one, never a mix.
 * - Vaults are tried in the given order per file; a corrupt or missing object
 *   falls back to the next vault, and the fallback is reported in `fallbacks`.
 *   When no vault has a good copy, LANDING_FAILED names the file and every
 *   vault's problem.
 * - Never writes outside `destRoot`: manifest paths are checked, and a
 *   symlink or file where a folder should be is refused (or, with `exact`,
 *   removed — it is not part of the artifact).
 * Idempotent: running it again gives the same tree.
 */
export interface RestoreTreeOptions {
  /** In order of preference. */
  vaults: VaultReader[];
  manifest: Manifest;
  /** Absolute path of the folder to restore into (created if missing). */
  destRoot: string;
  /** Delete files (and symlinks, empty folders) under destRoot that are not in the manifest. Default false. */
  exact?: boolean;
  /** fsync each restored file before its rename. Default true. */
  fsync?: boolean;
  /** Files restored at the same time. Default 4. */
  parallel?: number;
  signal?: AbortSignal;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface RestoreTreeResult {
  bytes: number;
  fileCount: number;
  /** Files restored from each vault. */
  vaultUsed: Record<string, number>;
  /** Files whose preferred vault(s) failed, with what went wrong there. */
  fallbacks: { path: string; failed: { vault: string; code: string; message: string }[]; usedVault: string }[];
  /** Paths deleted because of `exact`. */
  removed: string[];
}

export async function restoreTree(options: RestoreTreeOptions): Promise<RestoreTreeResult> {
  const { manifest, destRoot, vaults } = options;
  if (vaults.length === 0) throw new RubiconError('ARGUMENTS_INVALID', `restore of '${manifest.artifactId}' was given no vault`);
  for (const e of manifest.entries) {
    const problem = relativePathProblem(e.path);
    if (problem) {
      throw new RubiconError('LANDING_FAILED', `manifest of '${manifest.artifactId}' has an unsafe path '${e.path}' (${problem}); nothing was restored`);
    }
  }
  await mkdir(destRoot, { recursive: true });
  const exact = options.exact === true;
  const wanted = new Set(manifest.entries.map((e) => e.path));
  const removed: string[] = [];
  if (exact) removed.push(...(await removeExtras(destRoot, wanted)));

  const dirs = new DirGuard(destRoot, exact, manifest.artifactId);
  const vaultUsed: Record<string, number> = Object.fromEntries(vaults.map((v) => [v.info.name, 0]));
  const fallbacks: RestoreTreeResult['fallbacks'] = [];
  const totalBytes = manifest.entries.reduce((n, e) => n + e.size, 0);
  let doneBytes = 0;

  await runBounded(manifest.entries, Math.max(1, options.parallel ?? 4), async (entry) => {
    options.signal?.throwIfAborted();
    const dest = join(destRoot, entry.path);
    await dirs.ensure(dirname(entry.path));
    await clearDirectoryAt(dest, exact, entry.path, manifest.artifactId);
    const failed: { vault: string; code: string; message: string }[] = [];
    for (const vault of vaults) {
      const outcome = await restoreOne(vault, entry, dest, options);
      if (outcome === 'ok') {
        vaultUsed[vault.info.name] = (vaultUsed[vault.info.name] ?? 0) + 1;
        if (failed.length > 0) fallbacks.push({ path: entry.path, failed, usedVault: vault.info.name });
        doneBytes += entry.size;
        options.onProgress?.(doneBytes, totalBytes);
        return;
      }
      failed.push({ vault: vault.info.name, code: outcome.code, message: outcome.message });
    }
    throw new RubiconError(
      'LANDING_FAILED',
      `no vault has a good copy of '${entry.path}' (artifact '${manifest.artifactId}'): ${failed.map((f) => `${f.vault}: ${f.code}`).join('; ')}; prove the copies with 'rubicon verify' and capture again from the source if it still exists`,
      { details: { path: entry.path, failed } },
    );
  });
  if (exact) await removeEmptyDirs(destRoot, wanted);
  fallbacks.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { bytes: totalBytes, fileCount: manifest.entries.length, vaultUsed, fallbacks, removed };
}

/** 'ok', or the vault-side problem (the next vault may help). Destination-side errors throw LANDING_FAILED. */
async function restoreOne(
  vault: VaultReader,
  entry: ManifestEntry,
  dest: string,
  options: RestoreTreeOptions,
): Promise<'ok' | { code: string; message: string }> {
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
      options.signal?.throwIfAborted();
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
      if (options.fsync !== false) await fh.sync();
      await fh.close();
      // Path-based chmod/utimes (not fchmod/futimes): Node's permission model,
      // which confines the proving process, refuses the fd-based calls.
      const mtime = entry.mtimeMs / 1000;
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
 * Creates the folders for restored files, refusing to go through a symlink
 * or a non-folder (with `exact` those are removed: they are not in the
 * artifact). Each folder is checked once.
 */
class DirGuard {
  private readonly root: string;
  private readonly exact: boolean;
  private readonly artifactId: string;
  private readonly done = new Map<string, Promise<void>>();
  constructor(root: string, exact: boolean, artifactId: string) {
    this.root = root;
    this.exact = exact;
    this.artifactId = artifactId;
  }
  ensure(rel: string): Promise<void> {
    if (rel === '.' || rel === '') return Promise.resolve();
    let p = this.done.get(rel);
    if (!p) {
      p = this.ensure(dirname(rel)).then(() => this.make(rel));
      this.done.set(rel, p);
    }
    return p;
  }
  private async make(rel: string): Promise<void> {
    const abs = join(this.root, rel);
    const st = await lstat(abs).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) {
      if (!this.exact) {
        throw new RubiconError(
          'LANDING_FAILED',
          `cannot restore '${this.artifactId}': ${abs} should be a folder but is a ${st.isSymbolicLink() ? 'symlink' : 'file'}; move it away or restore with exact`,
        );
      }
      await rm(abs, { force: true, recursive: false });
    }
    await mkdir(abs).catch((e: unknown) => {
      if (codeOf(e) !== 'EEXIST') throw destError(rel, abs, e);
    });
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

/** Deletes regular files, symlinks and special files under root that the manifest does not list. */
async function removeExtras(root: string, wanted: ReadonlySet<string>): Promise<string[]> {
  const skipped: SkippedEntry[] = [];
  const extras: string[] = [];
  for await (const f of walk(root, { onSkip: (s) => skipped.push(s) })) if (!wanted.has(f.path)) extras.push(f.path);
  for (const s of skipped) if (s.kind !== 'vanished') extras.push(s.path);
  for (const p of extras) {
    await unlink(join(root, p)).catch((e: unknown) => {
      if (codeOf(e) !== 'ENOENT') throw destError(p, join(root, p), e);
    });
  }
  return extras.sort();
}

/** Removes folders left empty that hold no manifest file (bottom-up). */
async function removeEmptyDirs(root: string, wanted: ReadonlySet<string>): Promise<void> {
  const needed = new Set<string>();
  for (const p of wanted) for (let d = dirname(p); d !== '.'; d = dirname(d)) needed.add(d);
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
  problem: 'missing' | 'size' | 'hash' | 'extra';
}

/**
 * Landing validation: hashes every file under root and compares with the
 * manifest. Read-only. Non-regular entries (symlinks, ...) are 'extra'.
 */
export async function verifyTree(root: string, manifest: Manifest, options: { parallel?: number } = {}): Promise<{ ok: boolean; mismatches: TreeMismatch[] }> {
  const byPath = new Map(manifest.entries.map((e) => [e.path, e] as const));
  const mismatches: TreeMismatch[] = [];
  const skipped: SkippedEntry[] = [];
  const toHash: { path: string; entry: ManifestEntry }[] = [];
  const seen = new Set<string>();
  for await (const f of walk(root, { onSkip: (s) => skipped.push(s) })) {
    const e = byPath.get(f.path);
    if (!e) mismatches.push({ path: f.path, problem: 'extra' });
    else {
      seen.add(f.path);
      if (f.size !== e.size) mismatches.push({ path: f.path, problem: 'size' });
      else toHash.push({ path: f.path, entry: e });
    }
  }
  for (const s of skipped) if (!byPath.has(s.path) && s.kind !== 'vanished') mismatches.push({ path: s.path, problem: 'extra' });
  for (const e of manifest.entries) if (!seen.has(e.path)) mismatches.push({ path: e.path, problem: 'missing' });
  await runBounded(toHash, options.parallel ?? 2, async ({ path, entry }) => {
    const h = await hashFile(join(root, path));
    if (h.sha256 !== entry.sha256 || h.size !== entry.size) mismatches.push({ path, problem: h.size !== entry.size ? 'size' : 'hash' });
  });
  mismatches.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ok: mismatches.length === 0, mismatches };
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}
