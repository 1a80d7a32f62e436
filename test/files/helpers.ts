import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Manifest, VaultInfo } from '../../src/core/types.ts';
import { readManifest } from '../../src/files/manifest.ts';
import type { VaultReader } from '../../src/vaults/vault.ts';
import { FilesystemVault } from '../../src/vaults/filesystem.ts';
import type { FilesystemVaultOptions } from '../../src/vaults/filesystem.ts';

/** A fresh temp folder; removed by the returned cleanup. */
export async function tempDir(prefix = 'rubicon-files-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function vaultInfo(name: string, location: string): VaultInfo {
  return { name, kind: 'filesystem', location, offTarget: true, immutable: false };
}

export function makeVault(name: string, location: string, options?: FilesystemVaultOptions): FilesystemVault {
  return new FilesystemVault(vaultInfo(name, location), options);
}

export interface FileSpec {
  content: string | Uint8Array;
  mode?: number;
  /** Seconds since the epoch (fractional allowed). */
  mtime?: number;
}

/** Writes files (relative paths) under root with the given modes and mtimes. */
export async function writeTree(root: string, files: Record<string, FileSpec | string>): Promise<void> {
  for (const [rel, specOrContent] of Object.entries(files)) {
    const spec = typeof specOrContent === 'string' ? { content: specOrContent } : specOrContent;
    const abs = join(root, rel);
    await mkdir(dirname(abs), { recursive: true });
    await writeFile(abs, spec.content);
    if (spec.mode !== undefined) await chmod(abs, spec.mode);
    if (spec.mtime !== undefined) await utimes(abs, spec.mtime, spec.mtime);
  }
}

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Every object file in a filesystem vault: hash → { size, mtimeMs }. */
export async function listObjects(vaultRoot: string): Promise<Map<string, { size: number; mtimeMs: number }>> {
  const out = new Map<string, { size: number; mtimeMs: number }>();
  const objects = join(vaultRoot, 'objects');
  for (const shard of await readdir(objects).catch(() => [] as string[])) {
    for (const name of await readdir(join(objects, shard))) {
      const st = await stat(join(objects, shard, name));
      out.set(name, { size: st.size, mtimeMs: st.mtimeMs });
    }
  }
  return out;
}

/**
 * Sets every stored object's mtime to a fixed day long past, so a test can
 * see that a later write did not touch them (a rewrite stamps the present)
 * without sleeping to make clocks tick apart.
 */
export const AGED = new Date('2001-01-01T00:00:00Z');
export async function ageObjects(vaultRoot: string): Promise<void> {
  const objects = join(vaultRoot, 'objects');
  for (const shard of await readdir(objects).catch(() => [] as string[])) {
    for (const name of await readdir(join(objects, shard))) await utimes(join(objects, shard, name), AGED, AGED);
  }
}

export async function readTree(root: string): Promise<Map<string, { content: Buffer; mode: number; mtimeMs: number }>> {
  const out = new Map<string, { content: Buffer; mode: number; mtimeMs: number }>();
  const visit = async (rel: string): Promise<void> => {
    for (const d of await readdir(rel === '' ? root : join(root, rel), { withFileTypes: true })) {
      const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) await visit(childRel);
      else if (d.isFile()) {
        const abs = join(root, childRel);
        const st = await stat(abs);
        out.set(childRel, { content: await readFile(abs), mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
      }
    }
  };
  await visit('');
  return out;
}

/** Deterministic pseudo-random bytes (xorshift), so tests can reproduce data without storing it. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    if (i + 4 <= length) buf.writeUInt32LE(x, i);
    else for (let j = i; j < length; j++) buf[j] = (x >>> ((j - i) * 8)) & 0xff;
  }
  return buf;
}

/**
 * A capture result with its manifest read back from the first vault (the
 * capture streams the manifest and does not hold it; tests want to look).
 */
export async function withManifest<T extends { manifestHash: string }>(p: Promise<T>, vaults: readonly VaultReader[]): Promise<T & { manifest: Manifest }> {
  const r = await p;
  return { ...r, manifest: await readManifest(vaults[0] as VaultReader, r.manifestHash) };
}
