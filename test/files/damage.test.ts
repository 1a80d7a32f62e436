/**
 * Damage in one vault (restic's TestCheckerModifiedData idea): flip a random
 * bit, truncate, or delete a stored object, and expect every reader to
 * notice and name the damage and the vault — and the restore to fall back
 * to the other vault.
 */
import { randomInt } from 'node:crypto';
import { mkdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import type { Manifest, ManifestEntry } from '../../src/core/types.ts';
import { captureTree } from '../../src/files/capture.ts';
import { checkCopy } from '../../src/files/copies.ts';
import { readManifest } from '../../src/files/manifest.ts';
import { restoreTree, verifyTree } from '../../src/files/restore.ts';
import type { FilesystemVault } from '../../src/vaults/filesystem.ts';
import { makeVault, pseudoRandomBytes, readTree, tempDir, writeTree, withManifest } from './helpers.ts';

const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;
let nas: FilesystemVault;
let offsite: FilesystemVault;
let manifest: Manifest;
let manifestHash: string;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-damage-'));
  src = join(dir, 'src');
  nas = makeVault('nas', join(dir, 'vault-nas'));
  offsite = makeVault('offsite', join(dir, 'vault-offsite'));
  const files: Record<string, { content: Uint8Array; mtime: number }> = {};
  for (let i = 0; i < 12; i++) files[`docs/${String(i).padStart(2, '0')}.pdf`] = { content: pseudoRandomBytes(1000 + i * 5000, i + 7), mtime: 1_700_000_000 + i };
  await writeTree(src, files);
  const r = await capT({ vaults: [nas, offsite], sourceRoot: src, artifactId: 'a1', itemId: 'folder:ehr/Y', method: 'file-mirror', runId: 'run1' });
  manifest = r.manifest;
  manifestHash = r.manifestHash;
});
afterEach(async () => {
  await cleanup();
});

function pick(): ManifestEntry {
  return manifest.entries[randomInt(manifest.entries.length)] as ManifestEntry;
}

const damages = {
  'flip a random bit': async (path: string): Promise<void> => {
    const data = await readFile(path);
    const i = randomInt(data.length);
    data[i] = (data[i] as number) ^ (1 << randomInt(8));
    await writeFile(path, data);
  },
  truncate: async (path: string): Promise<void> => {
    const size = (await readFile(path)).length;
    await truncate(path, randomInt(size));
  },
  delete: async (path: string): Promise<void> => {
    await rm(path);
  },
} as const;
const expectedStatus = { 'flip a random bit': 'checksum-mismatch', truncate: 'size-invalid', delete: 'missing' } as const;
const expectedReadCode = { 'flip a random bit': 'VAULT_CORRUPT', truncate: 'VAULT_CORRUPT', delete: 'VAULT_MISSING_OBJECT' } as const;

describe.each(Object.keys(damages) as (keyof typeof damages)[])('%s in one vault', (damage) => {
  it('check, checkCopy, read and restore all notice it; the other vault carries the restore', async () => {
    expect(await checkCopy(nas, manifest, manifestHash)).toEqual({ status: 'ok' });
    const victim = pick();
    const sharing = manifest.entries.filter((e) => e.sha256 === victim.sha256).map((e) => e.path);
    await damages[damage](nas.objectPath(victim.sha256));

    expect((await nas.check(victim.sha256, victim.size)).status).toBe(expectedStatus[damage]);

    const copy = await checkCopy(nas, manifest, manifestHash);
    expect(copy.status).toBe(expectedStatus[damage]);
    expect(copy.detail).toContain("vault 'nas'");
    for (const p of sharing) expect(copy.detail).toContain(p);
    expect(await checkCopy(offsite, manifest, manifestHash)).toEqual({ status: 'ok' });

    const e = await (async () => {
      try {
        for await (const _ of nas.read(victim.sha256)) {
          // drain
        }
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(RubiconError);
    expect((e as RubiconError).code).toBe(expectedReadCode[damage]);
    expect((e as RubiconError).message).toContain('nas');
    expect((e as RubiconError).message).toContain(victim.sha256);

    // Default (a small tree: the workers' Lander on this thread), and the path-based main-thread landing (workers: 0, as under the permission model).
    for (const [name, workers] of [['restored', undefined], ['restored-main', 0]] as const) {
      const dest = join(dir, name);
      const res = await restoreTree({ vaults: [nas, offsite], manifest, destRoot: dest, ...(workers === undefined ? {} : { workers }) });
      expect(res.fallbacks.map((f) => f.path)).toEqual(sharing);
      expect(res.fallbacks[0]?.usedVault).toBe('offsite');
      expect(res.fallbacks[0]?.failed[0]).toMatchObject({ vault: 'nas', code: expectedReadCode[damage] });
      expect(res.vaultUsed).toEqual({ nas: manifest.entries.length - sharing.length, offsite: sharing.length });
      expect(await verifyTree(dest, manifest)).toEqual({ ok: true, mismatches: [] });
      expect(await readTree(dest)).toEqual(await readTree(src));
    }
  });
});

describe('damage everywhere, or in the manifest', () => {
  it('restore fails with LANDING_FAILED naming the file and each vault when no vault has a good copy', async () => {
    const victim = pick();
    await damages['flip a random bit'](nas.objectPath(victim.sha256));
    await rm(offsite.objectPath(victim.sha256));
    const dest = join(dir, 'restored');
    const err = await restoreTree({ vaults: [nas, offsite], manifest, destRoot: dest }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RubiconError);
    expect((err as RubiconError).code).toBe('LANDING_FAILED');
    expect((err as RubiconError).message).toContain(victim.path);
    expect((err as RubiconError).message).toContain('nas: VAULT_CORRUPT');
    expect((err as RubiconError).message).toContain('offsite: VAULT_MISSING_OBJECT');
  });

  it('a damaged manifest object grades the copy and fails readManifest', async () => {
    await damages['flip a random bit'](nas.objectPath(manifestHash));
    const copy = await checkCopy(nas, manifest, manifestHash);
    expect(copy.status).toBe('checksum-mismatch');
    expect(copy.detail).toContain(`manifest ${manifestHash}`);
    await expect(readManifest(nas, manifestHash)).rejects.toMatchObject({ code: 'VAULT_CORRUPT' });
    expect(await readManifest(offsite, manifestHash)).toEqual(manifest);
  });

  it('checkCopy names only the first few paths when many are bad, worst status first', async () => {
    for (const e of manifest.entries.slice(0, 8)) await rm(nas.objectPath(e.sha256));
    const last = manifest.entries[11] as ManifestEntry;
    await damages['flip a random bit'](nas.objectPath(last.sha256));
    const copy = await checkCopy(nas, manifest, manifestHash);
    expect(copy.status).toBe('missing');
    expect(copy.detail).toContain('9 of 12 files');
    expect(copy.detail).toContain('and 4 more');
    expect(copy.detail).toContain('docs/00.pdf (missing)');
  });

  it('checkCopy refuses a manifest that does not match the hash given', async () => {
    const other = { ...manifest, entries: manifest.entries.slice(1) };
    expect((await checkCopy(nas, other, manifestHash)).status).toBe('error');
  });
});

describe('restore into an existing folder', () => {
  it('exact removes files, symlinks and folders the manifest does not list; without exact they stay', async () => {
    const dest = join(dir, 'dest');
    await writeTree(dest, { 'old/leftover.txt': 'not in the artifact', 'docs/00.pdf': 'stale content' });
    await symlink('/etc', join(dest, 'link'));
    const keep = await restoreTree({ vaults: [nas], manifest, destRoot: dest });
    expect(keep.removed).toEqual([]);
    const v = await verifyTree(dest, manifest);
    expect(v.ok).toBe(false);
    expect(v.mismatches).toEqual([
      { path: 'link', problem: 'extra' },
      { path: 'old', problem: 'extra' },
      { path: 'old/leftover.txt', problem: 'extra' },
    ]);
    const exact = await restoreTree({ vaults: [nas], manifest, destRoot: dest, exact: true });
    expect(exact.removed).toEqual(['link', 'old/leftover.txt']);
    expect(await verifyTree(dest, manifest)).toEqual({ ok: true, mismatches: [] });
    expect(await readTree(dest)).toEqual(await readTree(src));
  });

  it('never writes through a symlink where a folder should be', async () => {
    const dest = join(dir, 'dest');
    const outside = join(dir, 'outside');
    await mkdir(dest, { recursive: true });
    await mkdir(outside);
    await symlink(outside, join(dest, 'docs'));
    const err = await restoreTree({ vaults: [nas], manifest, destRoot: dest }).catch((e: unknown) => e);
    expect((err as RubiconError).code).toBe('LANDING_FAILED');
    expect((err as RubiconError).message).toContain('symlink');
    expect(await readTree(outside)).toEqual(new Map());
    await restoreTree({ vaults: [nas], manifest, destRoot: dest, exact: true });
    expect(await readTree(outside)).toEqual(new Map());
    expect(await verifyTree(dest, manifest)).toEqual({ ok: true, mismatches: [] });
  });

  it('the restore workers replace what is in the way: a stale file, a symlink to outside (never written through), a folder only with exact; a bad object falls back', async () => {
    const dest = join(dir, 'dest');
    const outside = join(dir, 'outside.txt');
    await writeFile(outside, 'outside, must stay');
    await writeTree(dest, { 'docs/00.pdf': 'stale content', 'docs/03.pdf/inner.txt': 'a folder where a file goes' });
    await symlink(outside, join(dest, 'docs/01.pdf'));
    const bad = manifest.entries.find((e) => e.path === 'docs/05.pdf') as ManifestEntry;
    await damages['flip a random bit'](join(dir, 'vault-nas', 'objects', bad.sha256.slice(0, 2), bad.sha256));
    const err = await restoreTree({ vaults: [nas, offsite], manifest, destRoot: dest, workers: 2 }).catch((e: unknown) => e);
    expect((err as RubiconError).code).toBe('LANDING_FAILED');
    expect((err as RubiconError).message).toContain("'docs/03.pdf'");
    expect(await readFile(join(dest, 'docs/03.pdf/inner.txt'), 'utf8')).toBe('a folder where a file goes');
    const r = await restoreTree({ vaults: [nas, offsite], manifest, destRoot: dest, workers: 2, exact: true });
    expect(r.fallbacks.map((f) => [f.path, f.usedVault, f.failed.map((x) => x.code)])).toEqual([['docs/05.pdf', 'offsite', ['VAULT_CORRUPT']]]);
    expect(await readFile(outside, 'utf8')).toBe('outside, must stay');
    expect(await verifyTree(dest, manifest)).toEqual({ ok: true, mismatches: [] });
    expect(await readTree(dest)).toEqual(await readTree(src));
  });

  it('verifyTree reports missing, size and hash mismatches', async () => {
    const dest = join(dir, 'dest');
    await restoreTree({ vaults: [offsite], manifest, destRoot: dest });
    await rm(join(dest, 'docs/01.pdf'));
    await writeFile(join(dest, 'docs/02.pdf'), 'short');
    const third = join(dest, 'docs/03.pdf');
    const data = await readFile(third);
    data[0] = (data[0] as number) ^ 1;
    await writeFile(third, data);
    expect((await verifyTree(dest, manifest)).mismatches).toEqual([
      { path: 'docs/01.pdf', problem: 'missing' },
      { path: 'docs/02.pdf', problem: 'size' },
      { path: 'docs/03.pdf', problem: 'hash' },
    ]);
  });

  it('refuses a manifest with an unsafe path before writing anything', async () => {
    const evil: Manifest = { ...manifest, entries: [{ ...(manifest.entries[0] as ManifestEntry), path: '../escape.pdf' }] };
    const dest = join(dir, 'dest');
    const err = await restoreTree({ vaults: [nas], manifest: evil, destRoot: dest }).catch((e: unknown) => e);
    expect((err as RubiconError).code).toBe('LANDING_FAILED');
    expect(await readFile(join(dir, 'escape.pdf')).catch(() => 'absent')).toBe('absent');
  });
});
