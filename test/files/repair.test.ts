import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureTree } from '../../src/files/capture.ts';
import { checkCopy } from '../../src/files/copies.ts';
import { indexFileName } from '../../src/vaults/filesystem.ts';
import type { FilesystemVault } from '../../src/vaults/filesystem.ts';
import { makeVault, pseudoRandomBytes, tempDir, withManifest, writeTree } from './helpers.ts';
import { FilesystemVault as Vault } from '../../src/vaults/filesystem.ts';
import { randomBytes } from 'node:crypto';

const KEY = randomBytes(32);

const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-repair-'));
  src = join(dir, 'src');
  await writeTree(src, {
    'small.txt': 'a small file\n',
    'big.bak': { content: pseudoRandomBytes(3 * 1024 * 1024 + 17, 7) },
    'other.txt': 'another one\n',
  });
});
afterEach(async () => {
  await cleanup();
});

/** Fresh vault objects over the same folders: what a later run (another process) sees. */
function open(name: string, immutable = false): FilesystemVault {
  return immutable ? new Vault({ name, kind: 'filesystem', location: join(dir, name), offTarget: true, immutable: true }) : makeVault(name, join(dir, name));
}

function flipByte(path: string, at = 3): void {
  const b = readFileSync(path);
  b[at] = (b[at] as number) ^ 0x01;
  writeFileSync(path, b);
}

function common(vaults: FilesystemVault[], artifactId: string) {
  return { vaults, artifactId, itemId: 'folder:x', method: 'file-mirror', runId: 'r' };
}

describe('damaged objects', () => {
  for (const workers of [0, 2]) {
    it(`a capture checks an object before reusing it and replaces a damaged copy, and says so (workers: ${workers})`, async () => {
      const first = await capT({ ...common([open('a'), open('b')], 'r.capture.folder:x.file-mirror'), sourceRoot: src, workers });
      const sha = (p: string) => first.manifest.entries.find((e) => e.path === p)?.sha256 as string;
      const [a, b] = [open('a'), open('b')];
      flipByte(a.objectPath(sha('small.txt'))); // same size, one bit wrong: reuse by size would keep it
      flipByte(b.objectPath(sha('big.bak')), 1024 * 1024 + 5);
      truncateSync(a.objectPath(sha('other.txt')), 2);
      expect((await checkCopy(a, first.manifest, first.manifestHash)).status).toBe('checksum-mismatch');

      const again = await capT({ ...common([a, b], 'r2.capture.folder:x.file-mirror'), sourceRoot: src, workers });
      expect(again.repaired).toEqual([
        { vault: 'b', sha256: sha('big.bak'), path: 'big.bak' },
        { vault: 'a', sha256: sha('other.txt'), path: 'other.txt' },
        { vault: 'a', sha256: sha('small.txt'), path: 'small.txt' },
      ]);
      expect(again.unrepairable).toEqual([]);
      for (const v of [open('a'), open('b')]) {
        expect(await checkCopy(v, first.manifest, first.manifestHash)).toEqual({ status: 'ok' }); // the old artifact is whole again too
      }
      // The good copies were read back and renewed: a third capture in a new process checks nothing again... unless it must.
      const third = await capT({ ...common([open('a'), open('b')], 'r3.capture.folder:x.file-mirror'), sourceRoot: src, workers });
      expect(third.repaired).toEqual([]);
    });
  }

  it('an encrypting vault (main thread, no copy workers): a delta trusts its objects by plaintext size, and a damaged sealed copy is replaced', async () => {
    const enc = () => makeVault('e', join(dir, 'e'), { encryption: { key: KEY } });
    expect(enc().caps.encrypted).toBe(true);
    const base = await capT({ ...common([enc()], 'r.capture.folder:x.file-mirror'), sourceRoot: src, workers: 2 });
    await writeFile(join(src, 'other.txt'), 'changed!\n');
    const e = enc();
    const delta = await capT({ ...common([e], 'r.final-capture.folder:x.file-mirror'), sourceRoot: src, base: { vault: e, manifestHash: base.manifestHash } });
    expect(delta.checkedObjects).toBe(0);
    expect(delta.bytesRead).toBe(9);
    const sha = base.manifest.entries.find((x) => x.path === 'big.bak')?.sha256 as string;
    flipByte(enc().objectPath(sha), 1024 * 1024 + 5);
    const again = await capT({ ...common([enc()], 'r2.capture.folder:x.file-mirror'), sourceRoot: src });
    expect(again.repaired).toEqual([{ vault: 'e', sha256: sha, path: 'big.bak' }]);
    expect(await enc().check(sha, 3 * 1024 * 1024 + 17)).toEqual({ status: 'ok' });
  });

  it('a vault that cannot replace (WORM) is reported as unrepairable, and its copy stays damaged', async () => {
    const first = await capT({ ...common([open('a'), open('w', true)], 'r.capture.folder:x.file-mirror'), sourceRoot: src });
    const sha = first.manifest.entries.find((e) => e.path === 'small.txt')?.sha256 as string;
    const worm = open('w', true);
    expect(worm.caps).toEqual({ immutable: true, serverHash: null, replaceable: false, offTarget: true, encrypted: false });
    expect(open('a').caps.replaceable).toBe(true);
    flipByte(worm.objectPath(sha));
    const again = await capT({ ...common([open('a'), worm], 'r2.capture.folder:x.file-mirror'), sourceRoot: src });
    expect(again.repaired).toEqual([]);
    expect(again.unrepairable).toEqual([{ vault: 'w', sha256: sha, path: 'small.txt' }]);
    expect((await worm.check(sha, 13)).status).toBe('checksum-mismatch');
  });

  it('a delta trusts objects verified since its base began (no re-read), and checks and repairs older ones', async () => {
    const base = await capT({ ...common([open('a')], 'r.capture.folder:x.file-mirror'), sourceRoot: src });
    const a = open('a');
    const entry = JSON.parse(await readFile(join(a.root, 'index', indexFileName(base.manifest.artifactId)), 'utf8')) as Record<string, unknown>;
    expect(entry.objectsVerifiedSince).toEqual(expect.stringMatching(/^\d{4}-\d\d-\d\dT/));
    await writeFile(join(src, 'other.txt'), 'changed!\n');

    const delta = await capT({ ...common([a], 'r.final-capture.folder:x.file-mirror'), sourceRoot: src, base: { vault: a, manifestHash: base.manifestHash } });
    expect(delta.checkedObjects).toBe(0);
    expect(delta.bytesRead).toBe(9);

    // A base whose index entry does not say since when its objects were verified (an older Rubicon): every reused object is checked.
    const sha = base.manifest.entries.find((e) => e.path === 'big.bak')?.sha256 as string;
    flipByte(a.objectPath(sha), 100);
    delete entry.objectsVerifiedSince;
    await writeFile(join(a.root, 'index', indexFileName(base.manifest.artifactId)), JSON.stringify(entry));
    const b = open('a');
    const checked = await capT({ ...common([b], 'r.final-capture-2.folder:x.file-mirror'), sourceRoot: src, base: { vault: b, manifestHash: base.manifestHash } });
    expect(checked.checkedObjects).toBe(2); // big.bak and small.txt (other.txt changed)
    expect(checked.repaired).toEqual([{ vault: 'a', sha256: sha, path: 'big.bak' }]);
    expect(checked.bytesRead).toBe(9 + 3 * 1024 * 1024 + 17); // the changed file, and the source of the damaged object
    expect(await b.check(sha, 3 * 1024 * 1024 + 17)).toEqual({ status: 'ok' });
  });
});
