import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesystemVault } from '../../src/vaults/filesystem.ts';
import { deriveKeys, plainSize, readVaultKey, Sealer, SEAL_CHUNK, sealedName, sealedSize, unseal, UnsealError } from '../../src/vaults/sealed.ts';
import { createHash } from 'node:crypto';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const KEY = randomBytes(32);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-sealed-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}
async function* from(...parts: Buffer[]): AsyncIterable<Buffer> {
  for (const p of parts) yield p;
}
function seal(plain: Buffer, keys = deriveKeys(KEY)): Buffer {
  const s = new Sealer(keys);
  return Buffer.concat([...s.push(plain), ...s.final()]);
}

describe('sealed objects (AES-256-GCM, chunked)', () => {
  it.each([0, 1, SEAL_CHUNK - 1, SEAL_CHUNK, SEAL_CHUNK + 1, 3 * SEAL_CHUNK])('round-trips %i bytes, sized as sealedSize says', async (n) => {
    const plain = randomBytes(n);
    const sealed = seal(plain);
    expect(sealed.length).toBe(sealedSize(n));
    expect((await collect(unseal(deriveKeys(KEY), from(sealed)))).equals(plain)).toBe(true);
  });

  it.each([
    ['a flipped bit', (b: Buffer) => { b[b.length - 40] = b[b.length - 40]! ^ 1; return b; }],
    ['the final chunk cut off', (b: Buffer) => b.subarray(0, 16 + SEAL_CHUNK + 16)],
    ['a truncated tail', (b: Buffer) => b.subarray(0, b.length - 1)],
    ['chunks swapped', (b: Buffer) => Buffer.concat([b.subarray(0, 16), b.subarray(16 + SEAL_CHUNK + 16, 16 + 2 * (SEAL_CHUNK + 16)), b.subarray(16, 16 + SEAL_CHUNK + 16), b.subarray(16 + 2 * (SEAL_CHUNK + 16))])],
  ])('refuses %s', async (_w, damage) => {
    const sealed = damage(Buffer.from(seal(randomBytes(2 * SEAL_CHUNK + 100))));
    await expect(collect(unseal(deriveKeys(KEY), from(sealed)))).rejects.toBeInstanceOf(UnsealError);
  });

  it('refuses another key', async () => {
    await expect(collect(unseal(deriveKeys(randomBytes(32)), from(seal(Buffer.from('x')))))).rejects.toThrow(/another key/);
  });
});

describe('filesystem vault with encryption at rest', () => {
  it('stores no plaintext and no plaintext hash, reads back verified, deduplicates', async () => {
    const v = new FilesystemVault({ name: 'nas', kind: 'filesystem', location: dir, offTarget: true, immutable: false }, { encryption: { key: KEY } });
    expect(v.info.encrypted).toBe(true);
    const patient = Buffer.from('SQLite format 3\0 patient: Jane Roe, DOB 1970-01-01 '.repeat(50_000)); // > 1 MiB: spills to tmp/
    const small = Buffer.from('manifest');
    const w = await v.createWriter();
    await w.write(patient);
    await w.commit(sha(patient));
    await v.putBytes(small);
    await v.putBytes(small);
    await v.sync();
    const names = readdirSync(path.join(dir, 'objects'), { recursive: true }).map(String).filter((n) => /[0-9a-f]{64}$/.test(n));
    expect(names).toHaveLength(2);
    expect(names.join()).not.toContain(sha(patient));
    expect(names.join()).toContain(sealedName(deriveKeys(KEY), sha(patient)));
    for (const n of names) {
      const raw = readFileSync(path.join(dir, 'objects', n));
      expect(raw.includes(Buffer.from('Jane Roe'))).toBe(false);
      expect(raw.includes(Buffer.from('manifest'))).toBe(false);
    }
    expect((await collect(v.read(sha(patient)))).equals(patient)).toBe(true);
    expect(await v.check(sha(patient), patient.length)).toEqual({ status: 'ok' });
    expect((await v.check(sha(patient), patient.length + 1)).status).toBe('size-invalid');
    // A bit flipped on disk: named, never returned.
    const p = v.objectPath(sha(small));
    const b = readFileSync(p);
    b[b.length - 1] = b[b.length - 1]! ^ 1;
    writeFileSync(p, b);
    expect(await v.check(sha(small))).toMatchObject({ status: 'checksum-mismatch' });
    await expect(collect(v.read(sha(small)))).rejects.toMatchObject({ code: 'VAULT_CORRUPT' });
    // The same folder opened without the key cannot find or read the objects.
    const plainView = new FilesystemVault({ name: 'nas', kind: 'filesystem', location: dir, offTarget: true, immutable: false });
    expect(await plainView.has(sha(patient))).toBe(false);
  });
});

describe('encrypting filesystem vault: damaged-object repair (place, placeHeld)', () => {
  it.each([0, 1, SEAL_CHUNK - 1, SEAL_CHUNK, SEAL_CHUNK + 1, 3 * SEAL_CHUNK])('plainSize inverts sealedSize for %i bytes', (n) => {
    expect(plainSize(sealedSize(n))).toBe(n);
  });
  it('plainSize refuses sizes no plaintext seals to', () => {
    expect([0, 31, sealedSize(SEAL_CHUNK - 1) + 1].map(plainSize)).toEqual([undefined, undefined, undefined]);
  });

  it('reports caps.encrypted, plaintext sizes in objectState, and keeps, re-verifies or repairs an object whose sealed bytes differ on every write', async () => {
    const info = { name: 'nas', kind: 'filesystem' as const, location: dir, offTarget: true, immutable: false };
    const put = async (v: FilesystemVault, data: Buffer) => {
      const w = await v.createWriter();
      await w.write(data);
      return w.commit(sha(data));
    };
    const small = Buffer.from('a small object, held in memory until commit');
    const large = randomBytes(2 * SEAL_CHUNK + 7); // spills to tmp/: place()
    const v1 = new FilesystemVault(info, { encryption: { key: KEY } });
    expect(v1.caps.encrypted).toBe(true);
    expect(new FilesystemVault(info).caps.encrypted).toBe(false);
    expect([await put(v1, small), await put(v1, large)]).toEqual(['written', 'written']);
    expect(await v1.objectState(sha(large))).toMatchObject({ size: large.length });
    expect(await v1.objectState(sha(small))).toMatchObject({ size: small.length });
    // Written since this instance opened: present.
    expect([await put(v1, small), await put(v1, large)]).toEqual(['present', 'present']);
    // A later instance (its fence after the writes) decrypts and re-hashes the stored copies: verified, not repaired.
    // (Only a ctime strictly after an instance's fence counts as present: a later instance's fence is at or after the writes.)
    const v2 = new FilesystemVault(info, { encryption: { key: KEY } });
    await v2.openedAtMs();
    expect([await put(v2, small), await put(v2, large)]).toEqual(['verified', 'verified']);
    // Damaged on disk (same size): a third instance replaces them, and they read back right.
    for (const h of [sha(small), sha(large)]) {
      const p = v2.objectPath(h);
      const b = readFileSync(p);
      b[b.length - 3] = b[b.length - 3]! ^ 1;
      writeFileSync(p, b);
    }
    const v3 = new FilesystemVault(info, { encryption: { key: KEY } });
    await v3.openedAtMs();
    expect([await put(v3, small), await put(v3, large)]).toEqual(['repaired', 'repaired']);
    expect((await collect(v3.read(sha(small)))).equals(small)).toBe(true);
    expect((await collect(v3.read(sha(large)))).equals(large)).toBe(true);
  });
});

describe('readVaultKey', () => {
  it('reads hex or base64 from an env var or a 0600 file, and refuses others naming the source, not the value', () => {
    const hex = randomBytes(32).toString('hex');
    expect(readVaultKey({ env: 'K' }, 'nas', { K: hex }).toString('hex')).toBe(hex);
    const f = path.join(dir, 'key');
    writeFileSync(f, Buffer.from(hex, 'hex').toString('base64') + '\n', { mode: 0o600 });
    expect(readVaultKey({ file: f }, 'nas').toString('hex')).toBe(hex);
    chmodSync(f, 0o644);
    expect(() => readVaultKey({ file: f }, 'nas')).toThrow(/readable by others/);
    let msg = '';
    try {
      readVaultKey({ env: 'K' }, 'nas', { K: 'too-short-secret' });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('the environment variable K');
    expect(msg).not.toContain('too-short-secret');
  });
});
