import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, readdir, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { FilesystemVault, indexFileName } from '../../src/vaults/filesystem.ts';
import { ageObjects, listObjects, makeVault, sha256, tempDir, vaultInfo } from '../files/helpers.ts';
import { assertProperty } from '../support/seed.ts';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-vault-'));
});
afterEach(async () => {
  await cleanup();
});

async function readAll(vault: FilesystemVault, hash: string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of vault.read(hash)) chunks.push(c);
  return Buffer.concat(chunks);
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

/** Flips one random bit of a file in place (restic's TestCheckerModifiedData idea). */
async function flipRandomBit(path: string): Promise<void> {
  const data = await readFile(path);
  const i = randomInt(data.length);
  data[i] = (data[i] as number) ^ (1 << randomInt(8));
  await writeFile(path, data);
}

describe('FilesystemVault', () => {
  it('stores content-addressed objects in the documented layout and reads them back', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = randomBytes(3 * 1024 * 1024 + 17); // several read chunks
    const hash = await vault.putBytes(data);
    expect(hash).toBe(sha256(data));
    expect((await readFile(join(dir, 'v', 'objects', hash.slice(0, 2), hash))).equals(data)).toBe(true);
    expect(await vault.has(hash)).toBe(true);
    expect(await vault.has(sha256('other'))).toBe(false);
    expect((await readAll(vault, hash)).equals(data)).toBe(true);
    expect(await vault.check(hash, data.length)).toEqual({ status: 'ok' });
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
  });

  it('readTransient gives the same bytes through one reused buffer, and the same damage errors as read', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = randomBytes(3 * 1024 * 1024 + 17); // several read chunks
    const hash = await vault.putBytes(data);
    const copies: Buffer[] = [];
    const views = new Set<ArrayBufferLike>();
    for await (const c of vault.readTransient(hash)) {
      copies.push(Buffer.from(c)); // used at once, as the contract says
      views.add(c.buffer);
    }
    expect(Buffer.concat(copies).equals(data)).toBe(true);
    expect(views.size).toBe(1);
    await flipRandomBit(vault.objectPath(hash));
    const drain = async (): Promise<void> => {
      for await (const _ of vault.readTransient(hash)) void _;
    };
    await expectCode(drain(), 'VAULT_CORRUPT');
    await expectCode((async () => { for await (const _ of vault.readTransient(sha256('absent'))) void _; })(), 'VAULT_MISSING_OBJECT');
  });

  it('run documents (journal heads) are write-once under runs/<run>/, never listed as artifacts, and read back by a new vault object', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const run = 'r-20261202-010000-abcd';
    await vault.putRunDocument(run, 'head-gate-41', Buffer.from('first\n'));
    await vault.putRunDocument(run, 'head-gate-41', Buffer.from('second\n'));
    await vault.putRunDocument(run, 'head-landed-80', Buffer.from('landed\n'));
    await vault.sync();
    expect(await readFile(join(dir, 'v', 'runs', run, 'head-gate-41.json'), 'utf8')).toBe('first\n');
    const again = makeVault('nas', join(dir, 'v'));
    const docs = await again.listRunDocuments(run);
    expect(docs.map((d) => [d.name, Buffer.from(d.data).toString()])).toEqual([['head-gate-41', 'first\n'], ['head-landed-80', 'landed\n']]);
    expect(docs[0]!.where).toBe(join(dir, 'v', 'runs', run, 'head-gate-41.json'));
    expect(await again.listRunDocuments('r-20261202-020000-ffff')).toEqual([]);
    expect(await again.listArtifacts()).toEqual([]);
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
    await expect(vault.putRunDocument('../escape', 'x', Buffer.from(''))).rejects.toThrow(/cannot name a vault folder/);
    await expect(vault.putRunDocument(run, '../x', Buffer.from(''))).rejects.toThrow(/is not \[a-z0-9-\]\+/);
  });

  it('put of an existing object is a no-op: the stored file is not rewritten', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const hash = await vault.putBytes(Buffer.from('hello'));
    await ageObjects(join(dir, 'v'));
    const before = await listObjects(join(dir, 'v'));
    const w = await vault.createWriter();
    await w.write(Buffer.from('hel'));
    await w.write(Buffer.from('lo'));
    await w.commit(hash);
    expect(await vault.putBytes(Buffer.from('hello'))).toBe(hash);
    await vault.sync();
    expect(await listObjects(join(dir, 'v'))).toEqual(before);
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
  });

  it('replaces an existing object whose size is wrong (left truncated by a crash before sync)', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = Buffer.from('complete content');
    const hash = await vault.putBytes(data);
    await truncate(vault.objectPath(hash), 3);
    expect((await vault.check(hash)).status).toBe('checksum-mismatch');
    await vault.putBytes(data);
    expect(await vault.check(hash, data.length)).toEqual({ status: 'ok' });
  });

  it('a small object is held in memory until commit; a large one spills to tmp/, and abort drops it', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const small = await vault.createWriter();
    await small.write(Buffer.from('partial'));
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]); // nothing on disk yet
    await small.abort();

    const big = await vault.createWriter();
    const chunk = Buffer.alloc(700 * 1024, 1);
    await big.write(chunk);
    chunk.fill(2); // the writer must have copied what it held
    await big.write(chunk);
    expect((await readdir(join(dir, 'v', 'tmp'))).length).toBe(1);
    await big.abort();
    await big.abort(); // safe twice
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
    expect(await listObjects(join(dir, 'v'))).toEqual(new Map());

    const again = await vault.createWriter();
    const a = Buffer.alloc(700 * 1024, 1);
    const b = Buffer.alloc(700 * 1024, 2);
    await again.write(a);
    a.fill(9);
    await again.write(b);
    const expected = Buffer.concat([Buffer.alloc(700 * 1024, 1), b]);
    await again.commit(sha256(expected));
    expect((await readAll(vault, sha256(expected))).equals(expected)).toBe(true);

    const w2 = await vault.createWriter();
    await w2.write(Buffer.from('x'));
    await w2.commit(sha256('x'));
    await expectCode(w2.write(Buffer.from('y')), 'INTERNAL');
  });

  it('refuses a hash that is not hex SHA-256 and a relative location', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const w = await vault.createWriter();
    await expectCode(w.commit('../../etc/passwd'), 'ARGUMENTS_INVALID');
    await w.abort();
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
    expect(() => new FilesystemVault(vaultInfo('rel', 'relative/path'))).toThrow(/not an absolute folder path/);
  });

  it('a missing object: read throws VAULT_MISSING_OBJECT naming the vault, check grades missing', async () => {
    const vault = makeVault('offsite', join(dir, 'v'));
    const hash = sha256('never stored');
    const e = await expectCode(readAll(vault, hash), 'VAULT_MISSING_OBJECT');
    expect(e.message).toContain("'offsite'");
    expect(e.message).toContain(hash);
    expect((await vault.check(hash)).status).toBe('missing');
  });

  it('a flipped bit: read throws VAULT_CORRUPT naming vault and object; check grades checksum-mismatch', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = randomBytes(200_000);
    const hash = await vault.putBytes(data);
    await flipRandomBit(vault.objectPath(hash));
    const e = await expectCode(readAll(vault, hash), 'VAULT_CORRUPT');
    expect(e.message).toContain("vault 'nas'");
    expect(e.message).toContain(hash);
    expect(e.details).toMatchObject({ vault: 'nas', object: hash });
    const c = await vault.check(hash, data.length);
    expect(c.status).toBe('checksum-mismatch');
    expect(c.detail).toContain(hash);
  });

  it('a truncated object grades size-invalid when the size is known, checksum-mismatch otherwise', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = randomBytes(10_000);
    const hash = await vault.putBytes(data);
    await truncate(vault.objectPath(hash), 9_999);
    expect((await vault.check(hash, data.length)).status).toBe('size-invalid');
    expect((await vault.check(hash)).status).toBe('checksum-mismatch');
    await expectCode(readAll(vault, hash), 'VAULT_CORRUPT');
  });

  it('an unreadable object grades error, not ok', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const hash = sha256('shape');
    await mkdir(vault.objectPath(hash), { recursive: true }); // a folder where the object should be
    const c = await vault.check(hash);
    expect(c.status).toBe('error');
    expect(c.detail).toContain('EISDIR');
  });

  it('detects any single-bit flip (property)', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    await assertProperty(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), fc.nat(), fc.integer({ min: 0, max: 7 }), async (bytes, pos, bit) => {
        const data = Buffer.from(bytes);
        const hash = await vault.putBytes(data);
        expect((await readAll(vault, hash)).equals(data)).toBe(true);
        const path = vault.objectPath(hash);
        const stored = await readFile(path);
        const i = pos % stored.length;
        stored[i] = (stored[i] as number) ^ (1 << bit);
        await writeFile(path, stored);
        expect((await vault.check(hash, data.length)).status).toBe('checksum-mismatch');
        await rm(path);
      }),
      { numRuns: 40 },
    );
  });

  it('artifact index: idempotent, ids with ":" and "/" survive, newest first', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const m = sha256('manifest');
    const a = { artifactId: 'run1.capture.folder:ehr/A.file-mirror', runId: 'run1', itemId: 'folder:ehr/A', method: 'file-mirror', manifestHash: m, capturedAt: '2025-01-01T00:00:00.000Z' };
    const b = { ...a, artifactId: 'run1.capture.folder:ehr/X.file-mirror', itemId: 'folder:ehr/X', capturedAt: '2025-01-02T00:00:00.000Z' };
    await vault.putArtifactIndex(a);
    await vault.putArtifactIndex(b);
    await vault.putArtifactIndex({ ...a, capturedAt: '2030-01-01T00:00:00.000Z' }); // same manifest: kept as is
    await vault.sync();
    expect(await vault.listArtifacts()).toEqual([b, a]);
    expect(await readdir(join(dir, 'v', 'index'))).toEqual([indexFileName(a.artifactId), indexFileName(b.artifactId)].sort());
    expect(indexFileName(a.artifactId)).not.toMatch(/[/:]/);
    const redo = { ...a, manifestHash: sha256('newer manifest'), capturedAt: '2025-01-03T00:00:00.000Z' };
    await vault.putArtifactIndex(redo);
    expect(await vault.listArtifacts()).toEqual([redo, b]);
    expect(indexFileName('x'.repeat(500)).length).toBeLessThan(200);
    expect(indexFileName('.hidden')).toBe('%2Ehidden.json');
  });

  it('listArtifacts names a damaged index file', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    expect(await vault.listArtifacts()).toEqual([]);
    await vault.putArtifactIndex({ artifactId: 'a', runId: 'r', itemId: 'i', method: 'm', manifestHash: sha256('m'), capturedAt: '2025-01-01T00:00:00.000Z' });
    await writeFile(join(dir, 'v', 'index', 'a.json'), '{"artifactId": "a"');
    const e = await expectCode(vault.listArtifacts(), 'VAULT_CORRUPT');
    expect(e.message).toContain('a.json');
  });

  it.each(['commit', 'batch', 'syncfs'] as const)('durability %s: objects survive a new vault instance after sync', async (durability) => {
    const vault = makeVault('nas', join(dir, 'v'), { durability });
    const hashes = await Promise.all(Array.from({ length: 20 }, (_, i) => vault.putBytes(Buffer.from(`object ${i}`))));
    await vault.sync();
    await vault.sync(); // nothing pending: still fine
    const again = makeVault('nas', join(dir, 'v'), { durability });
    for (const [i, h] of hashes.entries()) expect((await readAll(again, h)).toString()).toBe(`object ${i}`);
  });

  it('concurrent writers of the same content leave one intact object', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const data = randomBytes(500_000);
    const hash = sha256(data);
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const w = await vault.createWriter();
        for (let off = 0; off < data.length; off += 100_000) await w.write(data.subarray(off, off + 100_000));
        await w.commit(hash);
      }),
    );
    expect([...(await listObjects(join(dir, 'v'))).keys()]).toEqual([hash]);
    expect(await vault.check(hash, data.length)).toEqual({ status: 'ok' });
    expect(await readdir(join(dir, 'v', 'tmp'))).toEqual([]);
  });

  it('removeStaleTemp removes old temp files only', async () => {
    const vault = makeVault('nas', join(dir, 'v'));
    const live = await vault.createWriter();
    await live.write(Buffer.alloc(2 * 1024 * 1024)); // spilled to tmp/: an in-flight write
    const tmp = join(dir, 'v', 'tmp');
    const hourAgo = Date.now() / 1000 - 4000;
    for (const n of ['crash-1.tmp', 'crash-2.tmp']) {
      await writeFile(join(tmp, n), 'left by a crash');
      await utimes(join(tmp, n), hourAgo, hourAgo);
    }
    const hash = await vault.putBytes(Buffer.from('kept'));
    await utimes(vault.objectPath(hash), hourAgo, hourAgo);
    // a copy worker's temp file inside the object's shard folder, old and fresh
    const shard = join(dir, 'v', 'objects', hash.slice(0, 2));
    await writeFile(join(shard, '.w1-1-1.tmp'), 'left by a crash');
    await utimes(join(shard, '.w1-1-1.tmp'), hourAgo, hourAgo);
    await writeFile(join(shard, '.w1-1-2.tmp'), 'in flight');
    expect(await vault.removeStaleTemp()).toBe(3);
    expect((await readdir(tmp)).length).toBe(1); // the live writer's file
    expect((await readdir(shard)).sort()).toEqual(['.w1-1-2.tmp', hash]);
    expect(await vault.has(hash)).toBe(true);
    await live.abort();
    expect(await readdir(tmp)).toEqual([]);
  });
});
