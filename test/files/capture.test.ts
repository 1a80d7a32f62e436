import { execFileSync } from 'node:child_process';
import { appendFile, chmod, mkdir, open, readdir, readFile, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { captureFiles, captureTree } from '../../src/files/capture.ts';
import { encodeManifest, readManifest } from '../../src/files/manifest.ts';
import { restoreTree, verifyTree } from '../../src/files/restore.ts';
import type { FilesystemVault } from '../../src/vaults/filesystem.ts';
import type { ObjectWriter, Vault } from '../../src/vaults/vault.ts';
import { ageObjects, listObjects, makeVault, pseudoRandomBytes, readTree, sha256, tempDir, writeTree, withManifest } from './helpers.ts';

const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);
const capF = (o: Parameters<typeof captureFiles>[0]) => withManifest(captureFiles(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;
let nas: FilesystemVault;
let offsite: FilesystemVault;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-capture-'));
  src = join(dir, 'src');
  nas = makeVault('nas', join(dir, 'vault-nas'));
  offsite = makeVault('offsite', join(dir, 'vault-offsite'), { durability: 'batch' });
  await writeTree(src, {
    'app.ini': { content: 'db=ehr\n', mode: 0o640, mtime: 1_700_000_000.123456 },
    'bin/run.sh': { content: '#!/bin/sh\necho ok\n', mode: 0o755, mtime: 1_700_000_100 },
    'docs/scan 001.pdf': { content: pseudoRandomBytes(300_000, 1), mode: 0o600, mtime: 1_700_000_200.5 },
    'docs/scan-002.pdf': { content: pseudoRandomBytes(2_500_000, 2), mtime: 1_700_000_300 },
    'docs/copy-of-001.pdf': { content: pseudoRandomBytes(300_000, 1) }, // same content as another file
    'empty.txt': { content: '' },
    'ünïcödé/名前.txt': { content: 'unicode names\n' },
    'a-b': 'sorts before the folder a/',
    'a/x': 'inside a',
  });
});
afterEach(async () => {
  await cleanup();
});

function common(artifactId = 'run1.capture.folder:ehr/A.file-mirror') {
  return { vaults: [nas, offsite], artifactId, itemId: 'folder:ehr/A', method: 'file-mirror', runId: 'run1' };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<RubiconError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RubiconError);
  expect((e as RubiconError).code).toBe(code);
  return e as RubiconError;
}

describe('captureTree → restoreTree', () => {
  it('round trip is exact: content, mtime and mode, from either vault', async () => {
    const r = await capT({ ...common(), sourceRoot: src });
    const source = await readTree(src);
    expect(r.fileCount).toBe(source.size);
    expect(r.bytes).toBe([...source.values()].reduce((n, f) => n + f.content.length, 0));
    expect(r.bytesRead).toBe(r.bytes);
    expect(r.manifest.entries.map((e) => e.path)).toEqual([...r.manifest.entries.map((e) => e.path)].sort());
    expect(r.manifest.entries.map((e) => e.path).indexOf('a-b')).toBeLessThan(r.manifest.entries.map((e) => e.path).indexOf('a/x'));
    // the manifest is stored in both vaults and is what the index names
    for (const v of [nas, offsite]) {
      expect(await readManifest(v, r.manifestHash)).toEqual(r.manifest);
      expect((await v.listArtifacts()).map((a) => [a.artifactId, a.manifestHash])).toEqual([[r.manifest.artifactId, r.manifestHash]]);
      expect(await readdir(join(v.root, 'tmp'))).toEqual([]);
    }
    // identical content stored once
    expect(r.fileCount).toBe(9);
    expect((await listObjects(nas.root)).size).toBe(9); // 8 distinct contents (2 files share one) + the manifest

    for (const vaults of [[nas], [offsite]]) {
      const dest = join(dir, `dest-${vaults[0]?.info.name}`);
      const res = await restoreTree({ vaults, manifest: r.manifest, destRoot: dest });
      expect(res.fileCount).toBe(r.fileCount);
      expect(res.bytes).toBe(r.bytes);
      expect(res.vaultUsed).toEqual({ [vaults[0]?.info.name as string]: r.fileCount });
      expect(res.fallbacks).toEqual([]);
      expect(await readTree(dest)).toEqual(source);
      expect(await verifyTree(dest, r.manifest)).toEqual({ ok: true, mismatches: [] });
    }
    // sanity: the source really had the modes and fractional mtimes we compare
    expect(source.get('bin/run.sh')?.mode).toBe(0o755);
    expect(source.get('app.ini')?.mode).toBe(0o640);
    expect(source.get('app.ini')?.mtimeMs).not.toBe(Math.floor(source.get('app.ini')?.mtimeMs ?? 0));
  });

  it('the manifest hash matches sha256sum of the manifest object, and entries match sha256sum of the files', async () => {
    const r = await capT({ ...common(), sourceRoot: src });
    const out = execFileSync('sha256sum', [nas.objectPath(r.manifestHash)], { encoding: 'utf8' });
    expect(out.split(' ')[0]).toBe(r.manifestHash);
    const sums = execFileSync('sha256sum', ['docs/scan-002.pdf', 'app.ini'], { cwd: src, encoding: 'utf8' });
    for (const line of sums.trim().split('\n')) {
      const [hash, path] = line.split(/ +/);
      expect(r.manifest.entries.find((e) => e.path === path)?.sha256).toBe(hash);
    }
  });

  it('records symlinks (not followed) and FIFOs (not read) as nodes, honours exclude, and lists a socket as skipped', async () => {
    await symlink('/etc/passwd', join(src, 'link-out'));
    execFileSync('mkfifo', [join(src, 'docs', 'pipe')]);
    const r = await capT({ ...common(), sourceRoot: src, exclude: ['docs', 'a/x'] });
    expect(r.manifest.version).toBe(2);
    expect(r.manifest.entries.map((e) => e.path)).toEqual(['a-b', 'app.ini', 'bin/run.sh', 'empty.txt', 'ünïcödé/名前.txt']);
    expect(r.manifest.nodes?.map((n) => [n.path, n.type, n.target])).toEqual([
      ['a', 'dir', undefined],
      ['bin', 'dir', undefined],
      ['link-out', 'symlink', '/etc/passwd'],
      ['ünïcödé', 'dir', undefined],
    ]);
    expect(r.skipped).toEqual([]);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(src, 'docs', 'sock'), resolve));
    try {
      const all = await capT({ ...common('other'), sourceRoot: src });
      expect(all.manifest.nodes?.find((n) => n.path === 'docs/pipe')?.type).toBe('fifo');
      expect(all.skipped).toEqual([{ path: 'docs/sock', kind: 'socket' }]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('re-capture with the same artifactId gives the same manifest hash and writes nothing new', async () => {
    const first = await capT({ ...common(), sourceRoot: src, now: () => new Date('2025-01-01T00:00:00Z') });
    for (const v of [nas, offsite]) await ageObjects(v.root);
    const before = { nas: await listObjects(nas.root), offsite: await listObjects(offsite.root) };
    const temps = vi.spyOn(nas, 'createTemp');
    const second = await capT({ ...common(), sourceRoot: src, now: () => new Date('2025-01-02T00:00:00Z') });
    // small objects already stored are not even written to tmp/; only the one file over 1 MiB streams through it
    expect(temps).toHaveBeenCalledTimes(1);
    expect(second.manifestHash).toBe(first.manifestHash);
    expect(Buffer.from(encodeManifest(second.manifest)).equals(Buffer.from(encodeManifest(first.manifest)))).toBe(true);
    expect(await listObjects(nas.root)).toEqual(before.nas); // same objects, none rewritten (mtimes unchanged)
    expect(await listObjects(offsite.root)).toEqual(before.offsite);
    expect(await readdir(join(nas.root, 'tmp'))).toEqual([]);
    const index = await nas.listArtifacts();
    expect(index).toHaveLength(1);
    expect(index[0]?.capturedAt).toBe('2025-01-01T00:00:00.000Z'); // the first record stands
  });

  it('a redo after a crash mid-capture completes from the objects already stored', async () => {
    const controller = new AbortController();
    let seen = 0;
    const crashed = captureTree({
      ...common(),
      sourceRoot: src,
      parallel: 1,
      signal: controller.signal,
      onProgress: () => {
        if (++seen === 4) controller.abort(new Error('simulated crash'));
      },
    });
    await expect(crashed).rejects.toThrow('simulated crash');
    expect(await nas.listArtifacts()).toEqual([]); // no index entry for a capture that did not finish
    const partial = (await listObjects(nas.root)).size;
    expect(partial).toBeGreaterThan(0);
    expect(await readdir(join(nas.root, 'tmp'))).toEqual([]); // in-flight writes were dropped
    const redo = await capT({ ...common(), sourceRoot: src });
    const clean = await capT({ ...common('fresh'), sourceRoot: src, vaults: [makeVault('fresh', join(dir, 'fresh'))] });
    expect(redo.manifest.entries).toEqual(clean.manifest.entries);
    expect(await nas.listArtifacts()).toHaveLength(1);
  });
});

describe('delta capture', () => {
  it('reads only changed files, re-uses the rest, and lists the changes', async () => {
    const full = await capT({ ...common(), sourceRoot: src });
    await writeFile(join(src, 'app.ini'), 'db=EHR\n'); // same size, new content, new mtime
    await writeFile(join(src, 'new.txt'), 'technician was here\n');
    await unlink(join(src, 'a/x'));
    const touched = join(src, 'docs', 'scan-002.pdf'); // new mtime, same content: read, but not a change
    await utimes(touched, 1_800_000_000, 1_800_000_000);
    await chmod(join(src, 'bin/run.sh'), 0o700); // permission change, same content and mtime

    const delta = await capT({ ...common('run1.final-capture.folder:ehr/A.file-mirror'), sourceRoot: src, base: full.manifest });
    expect(delta.bytesRead).toBe(7 + 20 + 2_500_000);
    expect(delta.changed).toEqual([
      { path: 'a/x', kind: 'deleted', size: 8, mtimeMs: expect.any(Number) },
      { path: 'app.ini', kind: 'modified', size: 7, mtimeMs: expect.any(Number), aspects: ['content'] },
      { path: 'bin/run.sh', kind: 'modified', size: 18, mtimeMs: 1_700_000_100_000, aspects: ['mode'] },
      { path: 'new.txt', kind: 'added', size: 20, mtimeMs: expect.any(Number) },
    ]);
    const dest = join(dir, 'dest');
    await restoreTree({ vaults: [nas], manifest: delta.manifest, destRoot: dest });
    expect(await readTree(dest)).toEqual(await readTree(src));
  });

  it('reads an unchanged file again when a vault lacks its object, and stores it there', async () => {
    const full = await capT({ ...common(), sourceRoot: src });
    const entry = full.manifest.entries.find((e) => e.path === 'docs/scan-002.pdf');
    await rm(offsite.objectPath(entry?.sha256 as string));
    const delta = await capT({ ...common('delta'), sourceRoot: src, base: full.manifest });
    expect(delta.bytesRead).toBe(2_500_000);
    expect(delta.changed).toEqual([]);
    expect(await offsite.check(entry?.sha256 as string, 2_500_000)).toEqual({ status: 'ok' });
  });
});

describe('captureFiles', () => {
  it('captures an explicit file list under manifest names, with a format', async () => {
    const r = await capF({
      ...common('run1.capture.database:sqlite:ehr.sqlite-backup-api'),
      files: [
        { path: join(src, 'docs', 'scan-002.pdf'), name: 'ehr.db' },
        { path: join(src, 'app.ini'), name: 'meta/app.ini' },
      ],
      format: 'sqlite-db',
    });
    expect(r.manifest.format).toBe('sqlite-db');
    expect(r.manifest.entries.map((e) => e.path)).toEqual(['ehr.db', 'meta/app.ini']);
    expect(r.manifest.entries[0]?.sha256).toBe(sha256(await readFile(join(src, 'docs', 'scan-002.pdf'))));
    expect((await readManifest(offsite, r.manifestHash)).format).toBe('sqlite-db');
  });

  it('refuses unsafe or duplicate names and a missing file', async () => {
    const base = common('x');
    await expectCode(captureFiles({ ...base, files: [{ path: join(src, 'app.ini'), name: '../escape' }] }), 'ARGUMENTS_INVALID');
    await expectCode(
      captureFiles({
        ...base,
        files: [
          { path: join(src, 'app.ini'), name: 'a' },
          { path: join(src, 'empty.txt'), name: 'a' },
        ],
      }),
      'ARGUMENTS_INVALID',
    );
    const e = await expectCode(captureFiles({ ...base, files: [{ path: join(src, 'nope.bak'), name: 'nope.bak' }] }), 'CAPTURE_FAILED');
    expect(e.message).toContain('nope.bak');
    await expectCode(captureFiles({ ...base, vaults: [], files: [] }), 'ARGUMENTS_INVALID');
  });
});

/** A real vault whose writer runs a hook on every write (to change the source mid-read, or watch chunk sizes). */
function hooked(vault: FilesystemVault, onWrite: (chunk: Uint8Array, index: number) => Promise<void>): Vault {
  return {
    info: vault.info,
    caps: vault.caps,
    has: (h) => vault.has(h),
    read: (h) => vault.read(h),
    check: (h, s) => vault.check(h, s),
    listArtifacts: () => vault.listArtifacts(),
    putBytes: (d) => vault.putBytes(d),
    putArtifactIndex: (e) => vault.putArtifactIndex(e),
    sync: () => vault.sync(),
    createWriter: async (): Promise<ObjectWriter> => {
      const w = await vault.createWriter();
      let index = 0;
      return {
        write: async (c) => {
          await onWrite(c, index++);
          await w.write(c);
        },
        commit: (h) => w.commit(h),
        abort: () => w.abort(),
      };
    },
  };
}

describe('files that change while they are read', () => {
  it('re-reads a file that changed once, and records the new content', async () => {
    const target = join(src, 'docs', 'scan-002.pdf');
    let changed = false;
    const vault = hooked(nas, async (chunk) => {
      if (!changed && chunk.byteLength === 1024 * 1024) {
        changed = true;
        await appendFile(target, 'appended during the read');
      }
    });
    const r = await capT({ ...common(), vaults: [vault], sourceRoot: join(src, 'docs'), parallel: 1 });
    expect(r.unstable).toEqual([]);
    const e = r.manifest.entries.find((x) => x.path === 'scan-002.pdf');
    expect(e?.sha256).toBe(sha256(await readFile(target)));
    expect(r.bytesRead).toBeGreaterThan(r.bytes); // the first read was thrown away
  });

  it('lists a file that never holds still as unstable, with the mtime from before its read', async () => {
    const target = join(src, 'docs', 'scan-002.pdf');
    let n = 0;
    const vault = hooked(nas, async (chunk, index) => {
      if (index === 0 && chunk.byteLength === 1024 * 1024) {
        // first chunk of each read of the big file
        await appendFile(target, `change ${n++}`);
        await utimes(target, 1_750_000_000 + n, 1_750_000_000 + n);
      }
    });
    const r = await capT({ ...common(), vaults: [vault], sourceRoot: join(src, 'docs'), parallel: 1 });
    expect(r.unstable).toEqual(['scan-002.pdf']);
    const e = r.manifest.entries.find((x) => x.path === 'scan-002.pdf');
    expect(e?.mtimeMs).toBe((1_750_000_000 + n - 1) * 1000); // before the last change: drift will flag it
    expect(n).toBe(3);
  });
});

describe('streaming', () => {
  it('captures a 64 MiB file in bounded chunks without holding it in memory', async () => {
    const big = join(dir, 'big');
    await mkdir(big);
    const fh = await open(join(big, 'ehr.bak'), 'w');
    for (let i = 0; i < 64; i++) await fh.write(pseudoRandomBytes(1024 * 1024, i + 1));
    await fh.close();
    const expected = execFileSync('sha256sum', [join(big, 'ehr.bak')], { encoding: 'utf8' }).split(' ')[0];

    let maxChunk = 0;
    let writes = 0;
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = baseline;
    const vault = hooked(nas, async (c) => {
      maxChunk = Math.max(maxChunk, c.byteLength);
      writes++;
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    });
    const r = await capT({ ...common(), vaults: [vault, offsite], sourceRoot: big });
    expect(r.manifest.entries[0]?.sha256).toBe(expected);
    expect(maxChunk).toBeLessThanOrEqual(1024 * 1024);
    expect(writes).toBeGreaterThanOrEqual(64);
    expect(peak - baseline).toBeLessThan(16 * 1024 * 1024); // a quarter of the file, at most
    expect(await offsite.check(expected as string, 64 * 1024 * 1024)).toEqual({ status: 'ok' });
  });
});
