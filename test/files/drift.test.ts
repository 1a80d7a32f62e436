import { execFileSync } from 'node:child_process';
import { chmod, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Manifest } from '../../src/core/types.ts';
import { captureTree } from '../../src/files/capture.ts';
import { diffManifests, scanDrift } from '../../src/files/drift.ts';
import { encodeManifest, manifestHashOf, parseManifest, readManifest } from '../../src/files/manifest.ts';
import { walk, walkAll } from '../../src/files/walk.ts';
import { RubiconError } from '../../src/core/errors.ts';
import { makeVault, sha256, tempDir, writeTree, withManifest } from './helpers.ts';

const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;
let manifest: Manifest;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-drift-'));
  src = join(dir, 'src');
  await writeTree(src, {
    'A/app.exe': { content: 'binary v1', mtime: 1_700_000_000 },
    'A/config/app.ini': { content: 'port=1433\n', mtime: 1_700_000_001.25 },
    'A/logs/today.log': { content: 'line\n', mtime: 1_700_000_002 },
    'A/readme.txt': { content: 'hello', mtime: 1_700_000_003 },
  });
  const vault = makeVault('nas', join(dir, 'v'));
  manifest = (await capT({ vaults: [vault], sourceRoot: src, artifactId: 'a', itemId: 'folder:A', method: 'file-mirror', runId: 'r' })).manifest;
});
afterEach(async () => {
  await cleanup();
});

describe('scanDrift', () => {
  it('an unchanged tree has no drift', async () => {
    expect(await scanDrift(src, manifest)).toEqual([]);
    expect(await scanDrift(src, manifest, { verifyContent: true })).toEqual([]);
  });

  it('finds added, modified and deleted files, sorted by path', async () => {
    await writeFile(join(src, 'A/config/app.ini'), 'port=1434\n'); // same size, new content
    await writeFile(join(src, 'A/readme.txt'), 'hello, longer'); // new size
    await writeFile(join(src, 'A/config/new.ini'), 'x'); // the technician's new file
    await rm(join(src, 'A/app.exe'));
    const changes = await scanDrift(src, manifest);
    expect(changes.map((c) => [c.path, c.kind])).toEqual([
      ['A/app.exe', 'deleted'],
      ['A/config/app.ini', 'modified'],
      ['A/config/new.ini', 'added'],
      ['A/readme.txt', 'modified'],
    ]);
    expect(changes.find((c) => c.path === 'A/readme.txt')?.size).toBe(13);
  });

  it('ignores a touch that did not change the content', async () => {
    await utimes(join(src, 'A/config/app.ini'), 1_800_000_000, 1_800_000_000);
    execFileSync('touch', [join(src, 'A/app.exe')]);
    expect(await scanDrift(src, manifest)).toEqual([]);
  });

  it('reports a permission change', async () => {
    await chmod(join(src, 'A/app.exe'), 0o700);
    expect(await scanDrift(src, manifest)).toEqual([{ path: 'A/app.exe', kind: 'modified', size: 9, mtimeMs: 1_700_000_000_000, aspects: ['mode'] }]);
  });

  it('a same-size rewrite that keeps the mtime is seen only with verifyContent', async () => {
    await writeFile(join(src, 'A/app.exe'), 'binary v2');
    await utimes(join(src, 'A/app.exe'), 1_700_000_000, 1_700_000_000);
    expect(await scanDrift(src, manifest)).toEqual([]);
    expect((await scanDrift(src, manifest, { verifyContent: true })).map((c) => c.path)).toEqual(['A/app.exe']);
  });

  it('honours exclude on both sides, and a file replaced by a symlink is a type change', async () => {
    await writeFile(join(src, 'A/logs/today.log'), 'many more lines\n');
    await writeFile(join(src, 'A/logs/tomorrow.log'), 'x');
    expect(await scanDrift(src, manifest, { exclude: ['A/logs/'] })).toEqual([]);
    await rm(join(src, 'A/readme.txt'));
    await symlink('/etc/hostname', join(src, 'A/readme.txt'));
    expect((await scanDrift(src, manifest, { exclude: ['A/logs'] })).map((c) => [c.path, c.kind, c.aspects])).toEqual([['A/readme.txt', 'modified', ['type']]]);
  });
});

describe('diffManifests', () => {
  it('compares by content hash and mode, not mtime', () => {
    const e = (path: string, sha: string, mtimeMs = 1, mode = 0o644) => ({ path, size: 1, mtimeMs, mode, sha256: sha256(sha) });
    const base: Manifest = { version: 1, artifactId: 'a', itemId: 'i', method: 'm', entries: [e('a', '1'), e('b', '2'), e('c', '3'), e('d', '4')] };
    const cur: Manifest = { ...base, entries: [e('a', '1', 999), e('b', '2', 1, 0o600), e('c', 'changed'), e('e', '5')] };
    expect(diffManifests(base, cur).map((c) => [c.path, c.kind])).toEqual([
      ['b', 'modified'],
      ['c', 'modified'],
      ['d', 'deleted'],
      ['e', 'added'],
    ]);
  });
});

describe('walk', () => {
  it('yields regular files in global path order with permission bits', async () => {
    await writeTree(src, { 'a-b': '1', 'a/x': '2', 'a.b/c': '3', B: '4' });
    await chmod(join(src, 'a/x'), 0o751);
    const paths: string[] = [];
    let mode = 0;
    for await (const f of walk(src)) {
      paths.push(f.path);
      if (f.path === 'a/x') mode = f.mode;
    }
    expect(paths).toEqual([...paths].sort());
    expect(paths.slice(0, 4)).toEqual(['A/app.exe', 'A/config/app.ini', 'A/logs/today.log', 'A/readme.txt']);
    expect(paths).toContain('a-b');
    expect(mode).toBe(0o751);
  });

  it('skips symlinks (even to folders), FIFOs and excluded paths, and reports what it skipped', async () => {
    await symlink(join(src, 'A'), join(src, 'loop'));
    execFileSync('mkfifo', [join(src, 'A/queue')]);
    await mkdir(join(src, 'empty'));
    const { files, skipped } = await walkAll(src, { exclude: ['./A/config', 'A/readme.txt'] });
    expect(files.map((f) => f.path)).toEqual(['A/app.exe', 'A/logs/today.log']);
    expect(skipped).toEqual([
      { path: 'A/queue', kind: 'fifo' },
      { path: 'loop', kind: 'symlink' },
    ]);
  });

  it('refuses a missing root, a file as root, and an exclude that escapes', async () => {
    await expect(walkAll(join(dir, 'nope'))).rejects.toMatchObject({ code: 'CAPTURE_FAILED' });
    await expect(walkAll(join(src, 'A/app.exe'))).rejects.toMatchObject({ code: 'CAPTURE_FAILED' });
    await expect(walkAll(src, { exclude: ['../etc'] })).rejects.toMatchObject({ code: 'ARGUMENTS_INVALID' });
    await expect(walkAll(src, { exclude: ['.'] })).rejects.toBeInstanceOf(RubiconError);
  });
});

describe('manifest encoding', () => {
  const v1: Manifest = {
    version: 1,
    artifactId: 'run1.capture.database:sqlite:ehr.sqlite-backup-api',
    itemId: 'database:sqlite:ehr',
    method: 'sqlite-backup-api',
    format: 'sqlite-db',
    entries: [
      { path: 'ehr.db', size: 3, mtimeMs: 1_700_000_000_123.456, mode: 0o640, sha256: sha256('abc') },
      { path: 'meta/app.ini', size: 0, mtimeMs: 1_700_000_001_000, mode: 0o600, sha256: sha256('') },
    ],
  };
  // The bytes a version-1 manifest always had (written by the code before version 2): they must not move.
  const v1Bytes = `{"version":1,"artifactId":"run1.capture.database:sqlite:ehr.sqlite-backup-api","itemId":"database:sqlite:ehr","method":"sqlite-backup-api","format":"sqlite-db","entries":[{"path":"ehr.db","size":3,"mtimeMs":1700000000123.456,"mode":416,"sha256":"${sha256('abc')}"},{"path":"meta/app.ini","size":0,"mtimeMs":1700000001000,"mode":384,"sha256":"${sha256('')}"}]}\n`;

  it('version 1 keeps its exact bytes and hash, whatever the entry or key order', () => {
    expect(Buffer.from(encodeManifest(v1)).toString('utf8')).toBe(v1Bytes);
    const shuffled: Manifest = {
      method: v1.method,
      entries: [...v1.entries].reverse().map((e) => ({ sha256: e.sha256, mode: e.mode, mtimeMs: e.mtimeMs, size: e.size, path: e.path })),
      format: 'sqlite-db',
      itemId: v1.itemId,
      artifactId: v1.artifactId,
      version: 1,
    };
    expect(manifestHashOf(shuffled)).toBe(sha256(v1Bytes));
    expect(parseManifest(new TextEncoder().encode(v1Bytes), 'test')).toEqual(v1);
  });

  it('version 2 is deterministic JSON Lines and round-trips files, folders, links and the root', () => {
    expect(manifest.version).toBe(2);
    const bytes = encodeManifest(manifest);
    const lines = Buffer.from(bytes).toString('utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ version: 2, artifactId: 'a', root: { mode: expect.any(Number), mtimeNs: expect.stringMatching(/^[0-9]+$/) } });
    expect(parseManifest(bytes, 'test')).toEqual(manifest);
    const shuffled: Manifest = { ...manifest, entries: [...manifest.entries].reverse(), nodes: [...(manifest.nodes ?? [])].reverse() };
    expect(manifestHashOf(shuffled)).toBe(manifestHashOf(manifest));
    // folders sort as 'path/': 'A' comes right before its content, after nothing that sorts before 'A/'
    expect(lines.slice(1, -1).map((l) => JSON.parse(l).path)).toEqual(['A', 'A/app.exe', 'A/config', 'A/config/app.ini', 'A/logs', 'A/logs/today.log', 'A/readme.txt']);
    const withLink: Manifest = { ...manifest, entries: [...manifest.entries, { ...(manifest.entries[0] as Manifest['entries'][number]), path: 'A/zz-link', link: 'A/app.exe' }] };
    expect(parseManifest(encodeManifest(withLink), 'test')).toEqual(withLink);
  });

  it('a manifest of several read chunks streams from a vault (in slices, through one buffer) to the same records, multi-byte names across slices included', async () => {
    const entries = Array.from({ length: 12000 }, (_, i) => ({
      path: `données/${String(i).padStart(5, '0')}-${i % 3 === 0 ? 'é' : i % 3 === 1 ? '日本' : '🗂'}.txt`,
      size: i,
      mode: 0o640,
      mtimeMs: 1_700_000_000_000,
      mtimeNs: '1700000000000000000',
      uid: 1000,
      gid: 1000,
      ino: 100 + i,
      sha256: sha256(String(i)),
    }));
    const big: Manifest = { version: 2, artifactId: 'big', itemId: 'folder:big', method: 'file-mirror', entries, nodes: [{ path: 'données', type: 'dir', mode: 0o755, mtimeMs: 1_700_000_000_000, mtimeNs: '1700000000000000000' }] };
    const bytes = encodeManifest(big);
    expect(bytes.byteLength).toBeGreaterThan(2 * 1024 * 1024); // more than one 1 MiB read, many 32 KiB slices
    const vault = makeVault('nas', join(dir, 'v-big'));
    const hash = await vault.putBytes(bytes);
    expect(await readManifest(vault, hash)).toEqual(parseManifest(bytes, 'test'));
    expect((await readManifest(vault, hash)).entries).toEqual(entries);
    const text = Buffer.from(bytes).toString('utf8').split('\n');
    text[7001] = text[7001]!.replace('"mode":416', '"mode":-1');
    const broken = await vault.putBytes(new TextEncoder().encode(text.join('\n')));
    await expect(readManifest(vault, broken)).rejects.toMatchObject({ code: 'VAULT_CORRUPT', message: expect.stringContaining('line 7002.mode') });
  });

  it('rejects unsafe, unsorted or malformed manifests, naming the field', async () => {
    const bad = (m: unknown) => new TextEncoder().encode(JSON.stringify(m));
    const entry = v1.entries[0];
    expect(() => parseManifest(bad({ ...v1, entries: [{ ...entry, path: '../../etc/passwd' }] }), 'x')).toThrow(/entries\.0\.path.*".." segment/);
    expect(() => parseManifest(bad({ ...v1, entries: [...v1.entries].reverse() }), 'x')).toThrow(/out of order/);
    expect(() => parseManifest(bad({ ...v1, entries: [{ ...entry, sha256: 'abc' }] }), 'x')).toThrow(/sha256/);
    expect(() => parseManifest(bad({ ...v1, version: 3 }), 'x')).toThrow(/version/);
    expect(() => parseManifest(new TextEncoder().encode('{not json'), 'manifest X in vault Y')).toThrow(/manifest X in vault Y is not a JSON manifest/);
    const v2 = Buffer.from(encodeManifest(manifest)).toString('utf8').split('\n');
    const line = (i: number, patch: Record<string, unknown>) => [...v2.slice(0, i), JSON.stringify({ ...JSON.parse(v2[i] as string), ...patch }), ...v2.slice(i + 1)].join('\n');
    expect(() => parseManifest(new TextEncoder().encode(line(2, { path: '/etc/shadow' })), 'x')).toThrow(/line 3\.path.*absolute/);
    expect(() => parseManifest(new TextEncoder().encode(line(2, { mtimeNs: '1.5' })), 'x')).toThrow(/line 3\.mtimeNs/);
    expect(() => parseManifest(new TextEncoder().encode(line(1, { type: 'socket' })), 'x')).toThrow(/line 2\.type/);
    expect(() => parseManifest(new TextEncoder().encode(line(2, { link: 'zzz' })), 'x')).toThrow(/line 3\.link.*earlier/);
    expect(() => parseManifest(new TextEncoder().encode(v2.slice(0, -1).join('\n')), 'x')).toThrow(/newline/);
    const vault = makeVault('nas', join(dir, 'v2'));
    const hash = await vault.putBytes(bad({ hello: 'world' }));
    await expect(readManifest(vault, hash)).rejects.toMatchObject({ code: 'VAULT_CORRUPT', message: expect.stringContaining(`manifest ${hash} in vault 'nas'`) });
  });
});
