import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanDrift } from '../../src/files/drift.ts';
import { walkAll } from '../../src/files/walk.ts';
import { LocalMachine } from '../../src/machines/local.ts';
import { buildTreeManifest, listTree, parseFind, scanTreeDrift, secondsToMs, verifyTreeOn, type RunOnMachine } from '../../src/machines/tree.ts';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * Trees inspected on the machine (GNU find + sha256sum through a Machine)
 * must agree with Rubicon's own local walk and drift scan: two independent
 * implementations over the same real files.
 */
let dir: string;
let m: LocalMachine;
const run: RunOnMachine = async (machine, key, argv, input, o) => machine.run(key, { argv, ...(input !== undefined ? { input } : {}) }, o);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rubicon-tree-'));
  m = new LocalMachine({ name: 'here', root: dir, stepsRoot: path.join(dir, '.steps') });
  const t = path.join(dir, 'tree');
  await mkdir(path.join(t, 'a/b c'), { recursive: true });
  await mkdir(path.join(t, 'empty'), { recursive: true });
  await mkdir(path.join(t, 'skip/me'), { recursive: true });
  await writeFile(path.join(t, 'a/b c/ünï cødé.txt'), 'hello\n');
  await writeFile(path.join(t, 'a/new\nline'), 'odd name\n');
  await writeFile(path.join(t, 'a/empty.bin'), '');
  await writeFile(path.join(t, 'a-b'), 'sorts before a/');
  await writeFile(path.join(t, 'skip/me/x'), 'excluded');
  await symlink('a-b', path.join(t, 'link'));
  await utimes(path.join(t, 'a-b'), new Date(1_700_000_000_123), new Date(1_700_000_000_123));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('trees on a machine (find + sha256sum)', () => {
  it('parses find records and nanosecond times exactly', () => {
    expect(secondsToMs('1700000000.1234567890')).toBe(1700000000123.456789);
    const rec = ['f', 'x', '3', '1.5', '644', 'l', 'y', '0', '1', '777', ''].join('\0');
    expect(parseFind(rec).files).toEqual([{ path: 'x', size: 3, mtimeMs: 1500, mode: 0o644 }]);
    expect(parseFind(rec).skipped).toEqual([{ path: 'y', kind: 'symlink' }]);
  });

  it('lists what Rubicon\'s own walk lists, in the same order, and names what it skips', async () => {
    const t = path.join(dir, 'tree');
    const remote = await listTree(m, t, { exclude: ['skip'] });
    const local = await walkAll(t, { exclude: ['skip'] });
    expect(remote.files.map((f) => [f.path, f.size, f.mode])).toEqual(local.files.map((f) => [f.path, f.size, f.mode]));
    expect(remote.files.find((f) => f.path === 'a-b')?.mtimeMs).toBe(local.files.find((f) => f.path === 'a-b')?.mtimeMs);
    expect(remote.skipped).toEqual([{ path: 'link', kind: 'symlink' }]);
    expect((await listTree(m, path.join(dir, 'nope'))).missing).toBe(true);
  });

  it('hashes every file where it is, re-using a base manifest for unchanged files', async () => {
    const t = path.join(dir, 'tree');
    const first = await buildTreeManifest(run, m, { id: 'r/m1', idempotent: true }, t, { exclude: ['skip'] });
    for (const e of first.entries) {
      const want = createHash('sha256').update(await readFile(path.join(t, e.path))).digest('hex');
      expect(e.sha256, e.path).toBe(want);
    }
    const again = await buildTreeManifest(run, m, { id: 'r/m2', idempotent: true }, t, { exclude: ['skip'], base: first.entries });
    expect(again.hashed).toBe(0);
    expect(again.entries).toEqual(first.entries);
  });

  it('finds the same drift as the local scan (a touch is not drift), and verifies a copy', async () => {
    const t = path.join(dir, 'tree');
    const base = await buildTreeManifest(run, m, { id: 'r/m3', idempotent: true }, t, { exclude: ['skip'] });
    await writeFile(path.join(t, 'a/b c/ünï cødé.txt'), 'hello, changed\n');
    await writeFile(path.join(t, 'a/added'), 'new');
    await utimes(path.join(t, 'a-b'), new Date(), new Date());
    const manifest = { version: 1 as const, artifactId: 'x', itemId: 'folder:t', method: 'rsync', entries: base.entries };
    const remote = await scanTreeDrift(run, m, { id: 'r/d1', idempotent: true }, t, base.entries, { exclude: ['skip'] });
    const local = await scanDrift(t, manifest, { exclude: ['skip'] });
    expect(remote.map((c) => [c.path, c.kind])).toEqual(local.map((c) => [c.path, c.kind]));
    expect(remote.map((c) => c.kind).sort()).toEqual(['added', 'modified']);
    const v = await verifyTreeOn(run, m, { id: 'r/v1', idempotent: true }, t, base.entries);
    expect(v.ok).toBe(false);
    expect(v.mismatches).toEqual(expect.arrayContaining([{ path: 'a/b c/ünï cødé.txt', problem: 'size' }, { path: 'a/added', problem: 'extra' }]));
  });

  it('lists and hashes in one step: a file named like the marker, a missing folder, and a file outside the tree hashed alongside', async () => {
    const t = path.join(dir, 'marker');
    await mkdir(path.join(t, 'sub'), { recursive: true });
    await writeFile(path.join(t, 'RUBICON-HASHES'), 'not the marker\n');
    await writeFile(path.join(t, 'sub/RUBICON-HASHES'), 'nor this\n');
    await writeFile(path.join(dir, 'outside.txt'), 'a document beside the tree\n');
    const sha = async (f: string) => createHash('sha256').update(await readFile(f)).digest('hex');
    const steps: string[] = [];
    const counting: RunOnMachine = async (machine, key, argv, input, o) => {
      steps.push(key.id);
      return run(machine, key, argv, input, o);
    };
    const built = await buildTreeManifest(counting, m, { id: 'r/mk1', idempotent: true }, t);
    expect(built.entries.map((e) => e.path)).toEqual(['RUBICON-HASHES', 'sub/RUBICON-HASHES']);
    for (const e of built.entries) expect(e.sha256).toBe(await sha(path.join(t, e.path)));
    const v = await verifyTreeOn(counting, m, { id: 'r/mk2', idempotent: true }, t, built.entries, { alsoHash: ['../outside.txt', '../absent.txt'] });
    expect(v).toMatchObject({ ok: true, mismatches: [] });
    expect(v.also).toEqual(new Map([['../outside.txt', await sha(path.join(dir, 'outside.txt'))]]));
    expect(steps).toEqual(['r/mk1', 'r/mk2']);
    const gone = await verifyTreeOn(counting, m, { id: 'r/mk3', idempotent: true }, path.join(dir, 'no-such-tree'), built.entries);
    expect(gone).toMatchObject({ ok: false, dirMissing: true });
    expect(gone.mismatches.map((x) => x.problem)).toEqual(['missing', 'missing']);
  });
});
