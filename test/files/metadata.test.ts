import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod, lchown, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureTree } from '../../src/files/capture.ts';
import { scanDrift } from '../../src/files/drift.ts';
import { manifestHashOf } from '../../src/files/manifest.ts';
import { restoreTree, verifyTree } from '../../src/files/restore.ts';
import { walkTree } from '../../src/files/walk.ts';
import type { FilesystemVault } from '../../src/vaults/filesystem.ts';
import { makeVault, tempDir, withManifest } from './helpers.ts';

// These tests chown for real: they need root (CI and this machine run as root).
const root = process.getuid?.() === 0;
const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;
let vault: FilesystemVault;

/** A tree with what real data folders have: odd modes, owners, empty folders, links, a FIFO, nanosecond mtimes. */
function buildTree(at: string): void {
  mkdirSync(join(at, 'private'), { mode: 0o700 });
  chmodSync(join(at, 'private'), 0o700);
  mkdirSync(join(at, 'shared-tmp'));
  chmodSync(join(at, 'shared-tmp'), 0o1777);
  mkdirSync(join(at, 'empty/nested-empty'), { recursive: true });
  writeFileSync(join(at, 'private/secret.key'), 'k3y\n');
  chmodSync(join(at, 'private/secret.key'), 0o600);
  writeFileSync(join(at, 'suid-tool'), '#!/bin/sh\n');
  writeFileSync(join(at, 'sgid-tool'), '#!/bin/sh\necho g\n');
  writeFileSync(join(at, 'owned.dat'), 'owned by 1234:5678\n');
  writeFileSync(join(at, 'data.db'), 'rows\n');
  linkSync(join(at, 'data.db'), join(at, 'data-hardlink.db'));
  symlinkSync('data.db', join(at, 'current.db'));
  symlinkSync('/nonexistent/target', join(at, 'dangling'));
  symlinkSync('private', join(at, 'to-folder'));
  execFileSync('mkfifo', [join(at, 'private/control.fifo')]);
  if (root) {
    chownSync(join(at, 'owned.dat'), 1234, 5678);
    chownSync(join(at, 'private'), 1234, 5678);
    chownSync(join(at, 'suid-tool'), 0, 0);
    chownSync(join(at, 'sgid-tool'), 0, 50);
    execFileSync('chown', ['-h', '4321:8765', join(at, 'dangling')]);
  }
  chmodSync(join(at, 'suid-tool'), 0o4755);
  chmodSync(join(at, 'sgid-tool'), 0o2755);
  // Nanoseconds that a double number of milliseconds cannot hold.
  execFileSync('touch', ['-h', '-d', '@1700000000.123456789', join(at, 'owned.dat')]);
  execFileSync('touch', ['-h', '-d', '@1700000001.000000001', join(at, 'empty')]);
  execFileSync('touch', ['-h', '-d', '@1700000002.5', join(at, 'current.db')]);
}

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-meta-'));
  src = join(dir, 'src');
  mkdirSync(src, { mode: 0o750 });
  chmodSync(src, 0o750);
  buildTree(src);
  vault = makeVault('nas', join(dir, 'vault'));
});
afterEach(async () => {
  await cleanup();
});

function common(artifactId = 'run1.capture.folder:app.file-mirror') {
  return { vaults: [vault], artifactId, itemId: 'folder:app', method: 'file-mirror', runId: 'run1' };
}

/** Everything lstat shows of a tree, by path: a description, and the mtime in nanoseconds. */
async function describeTree(at: string): Promise<Map<string, { what: string; mtimeNs: bigint }>> {
  const out = new Map<string, { what: string; mtimeNs: bigint }>();
  const first = new Map<string, string>();
  const st = lstatSync(at, { bigint: true });
  out.set('.', { what: `dir ${(Number(st.mode) & 0o7777).toString(8)} ${st.uid}:${st.gid}`, mtimeNs: st.mtimeNs });
  for await (const batch of walkTree(at, { exact: true })) {
    for (const n of batch) {
      let s = `${n.type} ${n.mode.toString(8)} ${n.uid}:${n.gid}`;
      if (n.type === 'symlink') s += ` -> ${n.target}`;
      if (n.type === 'file') {
        s += ` ${n.size}`;
        if (n.linkKey) {
          if (!first.has(n.linkKey)) first.set(n.linkKey, n.path);
          s += ` link-group ${first.get(n.linkKey)}`;
        }
      }
      out.set(n.path, { what: s, mtimeNs: BigInt(n.mtimeNs as string) });
    }
  }
  return out;
}

describe('file metadata: captured, landed, and checked', () => {
  it('round trip keeps modes (0700, 1777, setuid, setgid), owners, empty folders, symlinks, hard links, FIFOs and mtimes', async () => {
    const r = await capT({ ...common(), sourceRoot: src });
    expect(r.skipped).toEqual([]);
    expect(r.hardLinks).toBe(1);
    expect(r.bytesRead).toBe(r.bytes - 'rows\n'.length); // the hard link is not read twice
    const m = r.manifest;
    expect(m.version).toBe(2);
    expect(m.root).toMatchObject({ mode: 0o750 });
    const byPath = new Map([...m.entries, ...(m.nodes ?? [])].map((e) => [e.path, e] as const));
    expect(byPath.get('owned.dat')).toMatchObject({ mtimeNs: '1700000000123456789', ...(root ? { uid: 1234, gid: 5678 } : {}) });
    expect(byPath.get('data.db')).toMatchObject({ link: 'data-hardlink.db' }); // '-' sorts before '.': the first path of the inode
    expect(byPath.get('private')).toMatchObject({ type: 'dir', mode: 0o700 });
    expect(byPath.get('shared-tmp')).toMatchObject({ type: 'dir', mode: 0o1777 });
    expect(byPath.get('empty/nested-empty')).toMatchObject({ type: 'dir' });
    expect(byPath.get('dangling')).toMatchObject({ type: 'symlink', target: '/nonexistent/target' });
    expect(byPath.get('to-folder')).toMatchObject({ type: 'symlink', target: 'private' }); // not followed
    expect(byPath.get('private/control.fifo')).toMatchObject({ type: 'fifo' });
    expect(byPath.get('suid-tool')).toMatchObject({ mode: 0o4755 });
    expect(byPath.get('sgid-tool')).toMatchObject({ mode: 0o2755 });

    const dest = join(dir, 'landed');
    const landed = await restoreTree({ vaults: [vault], manifest: m, destRoot: dest });
    expect(landed.validated).toEqual({ files: m.entries.length, bytes: r.bytes });
    expect(landed.fileCount).toBe(m.entries.length);
    expect(landed.nodeCount).toBe(m.nodes?.length);
    // Only the sub-microsecond part of mtimes may be lost (Node's utimes takes a double), and it is said.
    expect(landed.notKept.map((n) => n.what)).toEqual(['mtime-ns']);
    expect(landed.notKept[0]?.examples).toContain('owned.dat');

    const want = await describeTree(src);
    const got = await describeTree(dest);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [p, w] of want) {
      const g = got.get(p) as { what: string; mtimeNs: bigint };
      expect(g.what, p).toBe(w.what);
      const off = g.mtimeNs - w.mtimeNs;
      expect(off < 0n ? -off : off, `${p}: mtime off by ${off} ns`).toBeLessThan(250n); // a double's precision near 2023
    }
    expect(lstatSync(join(dest, 'data.db')).ino).toBe(lstatSync(join(dest, 'data-hardlink.db')).ino);
    expect(readlinkSync(join(dest, 'to-folder'))).toBe('private');
    expect(lstatSync(join(dest, 'private/control.fifo')).isFIFO()).toBe(true);
    expect(await verifyTree(dest, m)).toEqual({ ok: true, mismatches: [] });

    // the restore workers land the same tree (forced on: this tree is below their threshold)
    const viaWorkers = join(dir, 'landed-by-workers');
    const w = await restoreTree({ vaults: [vault], manifest: m, destRoot: viaWorkers, workers: 2 });
    expect(w.validated).toEqual(landed.validated);
    expect(w.notKept).toEqual(landed.notKept);
    const gotW = await describeTree(viaWorkers);
    for (const [p, g] of got) expect(gotW.get(p)?.what, p).toBe(g.what);

    // idempotent: a second landing over the first gives the same tree
    await restoreTree({ vaults: [vault], manifest: m, destRoot: dest, exact: true });
    expect(await describeTree(dest)).toEqual(got);
  });

  it('drift sees a metadata-only change: mode, owner, symlink target, a split hard link, a new empty folder', async () => {
    const { manifest } = await capT({ ...common(), sourceRoot: src });
    expect(await scanDrift(src, manifest)).toEqual([]);
    await chmod(join(src, 'shared-tmp'), 0o777);
    if (root) await lchown(join(src, 'owned.dat'), 1, 1);
    await rm(join(src, 'current.db'));
    await symlink('data-hardlink.db', join(src, 'current.db'));
    await rm(join(src, 'data-hardlink.db'));
    await writeFile(join(src, 'data-hardlink.db'), 'rows\n'); // same content, no longer the same inode
    mkdirSync(join(src, 'new-empty'));
    mkdirSync(join(src, 'new-full'));
    writeFileSync(join(src, 'new-full/file.txt'), 'x'); // a new folder with a file shows as its file (the folder is implied)
    const changes = await scanDrift(src, manifest);
    expect(changes.map((c) => [c.path, c.kind, c.aspects ?? c.entryType])).toEqual([
      ['current.db', 'modified', ['target']],
      ['data.db', 'modified', ['link']],
      ['new-empty', 'added', 'dir'],
      ['new-full/file.txt', 'added', undefined],
      ...(root ? [['owned.dat', 'modified', ['owner']]] : []),
      ['shared-tmp', 'modified', ['mode']],
    ]);
    // A delta captures exactly these, and lists the same changes.
    const delta = await capT({ ...common('run1.final-capture.folder:app.file-mirror'), sourceRoot: src, base: { vault, manifestHash: manifestHashOf(manifest) } });
    expect(delta.changed?.map((c) => [c.path, c.kind])).toEqual(changes.map((c) => [c.path, c.kind]));
    expect(await scanDrift(src, { vault, manifestHash: delta.manifestHash })).toEqual([]);
  });

  it('a name that is not valid UTF-8 is listed as skipped with its bytes escaped, and nothing throws', async () => {
    const badName = Buffer.concat([Buffer.from(join(src, 'private', 'scan-')), Buffer.from([0xff, 0xfe]), Buffer.from('.pdf')]);
    writeFileSync(badName, 'patient scan');
    const badDir = Buffer.concat([Buffer.from(join(src, 'caf')), Buffer.from([0xe9])]);
    mkdirSync(badDir);
    writeFileSync(Buffer.concat([badDir, Buffer.from('/inside.txt')]), 'x');
    const r = await capT({ ...common(), sourceRoot: src });
    expect(r.skipped).toEqual([
      { path: 'caf\\xe9', kind: 'bad-name' },
      { path: 'private/scan-\\xff\\xfe.pdf', kind: 'bad-name' },
    ]);
    expect(r.manifest.entries.map((e) => e.path)).toContain('private/secret.key');
    expect(await scanDrift(src, r.manifest)).toEqual([]);
  });

  it('as a user that may not chown (nobody), the landing lists the owners it could not keep instead of failing', async () => {
    if (!root) throw new Error('this test runs the landing as nobody, which needs root to set up (CI runs as root)');
    const r = await capT({ ...common(), sourceRoot: src });
    const dest = join(dir, 'as-nobody');
    mkdirSync(dest);
    chownSync(dest, 65534, 65534);
    chmodSync(dir, 0o755);
    chmodSync(vault.root, 0o755);
    // The vault must be readable by nobody: objects are written 0600.
    execFileSync('chmod', ['-R', 'a+rX', vault.root]);
    const script = `
      import { restoreTree } from ${JSON.stringify(new URL('../../src/files/restore.ts', import.meta.url).pathname)};
      import { readManifest } from ${JSON.stringify(new URL('../../src/files/manifest.ts', import.meta.url).pathname)};
      import { FilesystemVault } from ${JSON.stringify(new URL('../../src/vaults/filesystem.ts', import.meta.url).pathname)};
      const v = new FilesystemVault({ name: 'nas', kind: 'filesystem', location: ${JSON.stringify(vault.root)}, offTarget: true, immutable: false });
      const m = await readManifest(v, ${JSON.stringify(r.manifestHash)});
      const res = await restoreTree({ vaults: [v], manifest: m, destRoot: ${JSON.stringify(dest)} });
      process.stdout.write(JSON.stringify(res.notKept));
    `;
    const out = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', cwd: dir });
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    const notKept = JSON.parse(out.stdout) as { what: string; count: number; examples: string[] }[];
    const owner = notKept.find((n) => n.what === 'owner');
    expect(owner?.count).toBeGreaterThan(0);
    expect(owner?.examples).toContain('owned.dat');
    expect(lstatSync(join(dest, 'owned.dat')).uid).toBe(65534);
    expect((await readdir(dest)).sort()).toEqual((await readdir(src)).sort());
  });
});
