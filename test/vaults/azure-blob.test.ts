/**
 * The azure-blob vault against Azurite (the real emulator, started here).
 * What Azurite cannot emulate (WORM policies, legal holds, user-delegation
 * keys without OAuth over HTTPS) is covered at the protocol level in
 * azure-facts.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BlobServiceClient, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { LocalMachine } from '../../src/machines/local.ts';
import { AzureBlobVault, type AzureBlobSettings } from '../../src/vaults/azure-blob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

const run = requireAzurite();
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let az: Azurite;
let tmp: string;
let n = 0;

function settings(over: Partial<AzureBlobSettings> = {}): AzureBlobSettings {
  return {
    name: `az${++n}`,
    kind: 'azure-blob',
    accountUrl: az.accountUrl,
    container: `c${n}-${randomBytes(3).toString('hex')}`,
    prefix: 'rubicon/vault',
    credential: { kind: 'shared-key', accountName: AZURITE_ACCOUNT, keyEnv: 'AZ_TEST_KEY' },
    concurrency: 4,
    blockSizeMiB: 1,
    retentionDays: 30,
    ...over,
  };
}
const env = { AZ_TEST_KEY: AZURITE_KEY };
const raw = (container: string): ContainerClient =>
  new BlobServiceClient(az.accountUrl, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)).getContainerClient(container);

async function readAll(v: AzureBlobVault, h: string): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of v.read(h)) out.push(c);
  return Buffer.concat(out);
}
async function rejection(p: Promise<unknown>): Promise<RubiconError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(RubiconError);
  return e as RubiconError;
}

describe.skipIf(!run)(`azure-blob vault on Azurite${run ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  beforeAll(async () => {
    az = await startAzurite();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-azv-'));
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('uploads small and block-staged objects, reads them back verified, and keeps an index', async () => {
    const v = await new AzureBlobVault(settings(), { env }).open();
    const small = Buffer.from('manifest {"a":1}\n');
    const h1 = await v.putBytes(small);
    expect(h1).toBe(sha(small));
    expect(await v.putBytes(small)).toBe(h1); // idempotent

    // 3.5 blocks through a writer (spills to a temp file, staged at commit).
    const big = randomBytes(3.5 * 1024 * 1024);
    const w = await v.createWriter();
    for (let off = 0; off < big.length; off += 300_000) await w.write(big.subarray(off, off + 300_000));
    await w.commit(sha(big));
    expect(await v.has(sha(big))).toBe(true);
    expect((await readAll(v, sha(big))).equals(big)).toBe(true);
    expect(await v.check(sha(big), big.length)).toEqual({ status: 'ok' });

    // A file staged straight from disk, hash verified on the way.
    const f = path.join(tmp, 'f.bin');
    const data = randomBytes(2 * 1024 * 1024 + 17);
    writeFileSync(f, data);
    expect(await v.putFile(f, sha(data), data.length)).toBe(true);
    expect(await v.putFile(f, sha(data), data.length)).toBe(false);
    expect((await readAll(v, sha(data))).equals(data)).toBe(true);

    // Rubicon's SHA-256 is in the blob's metadata; the service's MD5 of a single Put Blob equals ours.
    const props = await raw(v.settings.container).getBlobClient(v.objectBlob(h1)).getProperties();
    expect(props.metadata?.rubicon_sha256).toBe(h1);
    expect(Buffer.from(props.contentMD5!).equals(createHash('md5').update(small).digest())).toBe(true);

    await v.putArtifactIndex({ artifactId: 'a:1', runId: 'r', itemId: 'folder:x', method: 'file-mirror', manifestHash: h1, capturedAt: '2026-01-01T00:00:00Z' });
    await v.putArtifactIndex({ artifactId: 'a:1', runId: 'r', itemId: 'folder:x', method: 'file-mirror', manifestHash: h1, capturedAt: '2026-01-01T00:00:00Z', origin: 'rubicon' });
    const list = await v.listArtifacts();
    expect(list).toHaveLength(1);
    expect(list[0]!.origin).toBe('rubicon');
  }, 60_000);

  it('run documents (journal heads) are write-once blobs under runs/<run>/, never listed as artifacts', async () => {
    const s = settings();
    const v = await new AzureBlobVault(s, { env }).open();
    const run = 'r-20261202-010000-abcd';
    const before = await v.listArtifacts();
    await v.putRunDocument(run, 'head-gate-41', Buffer.from('first\n'));
    await v.putRunDocument(run, 'head-gate-41', Buffer.from('second\n'));
    await v.putRunDocument(run, 'head-landed-80', Buffer.from('landed\n'));
    const again = await new AzureBlobVault(s, { env }).open();
    const docs = await again.listRunDocuments(run);
    expect(docs.map((d) => [d.name, Buffer.from(d.data).toString()])).toEqual([['head-gate-41', 'first\n'], ['head-landed-80', 'landed\n']]);
    expect(docs[0]!.where).toMatch(/runs\/r-20261202-010000-abcd\/head-gate-41\.json$/);
    expect(await again.listRunDocuments('r-20261202-020000-ffff')).toEqual([]);
    expect(await again.listArtifacts()).toEqual(before);
  }, 60_000);

  it('a file that changed since it was hashed is never stored under that name', async () => {
    const v = await new AzureBlobVault(settings(), { env }).open();
    const f = path.join(tmp, 'moving.bin');
    const data = randomBytes(3 * 1024 * 1024);
    writeFileSync(f, data);
    const claimed = sha(Buffer.from('something else'));
    const e = await rejection(v.putFile(f, claimed, data.length));
    expect(e.code).toBe('CAPTURE_FAILED');
    expect(await v.has(claimed)).toBe(false);
  }, 60_000);

  it('names the vault and the blob of a copy altered after upload', async () => {
    const v = await new AzureBlobVault(settings(), { env }).open();
    const good = randomBytes(1000);
    const h = await v.putBytes(good);
    const bad = Buffer.from(good);
    bad[10] = bad[10]! ^ 0x20;
    // Someone with the account key overwrites the blob (possible without WORM), metadata and all.
    await raw(v.settings.container).getBlockBlobClient(v.objectBlob(h)).upload(bad, bad.length, { metadata: { rubicon_sha256: h } });
    const c = await v.check(h, good.length);
    expect(c.status).toBe('checksum-mismatch');
    expect(c.detail).toContain(`blob ${v.settings.container}/${v.objectBlob(h)} in vault '${v.info.name}'`);
    const e = await rejection(readAll(v, h));
    expect(e.code).toBe('VAULT_CORRUPT');
    expect(e.message).toContain(v.objectBlob(h));
    expect(e.details).toMatchObject({ vault: v.info.name, blob: v.objectBlob(h) });
    expect((await v.check(sha(Buffer.from('never stored')))).status).toBe('missing');
  }, 60_000);

  it('reports a container without immutability as not immutable, and the encryption the service reports', async () => {
    const v = await new AzureBlobVault(settings(), { env }).open();
    expect(v.immutability.state).toBe('none');
    expect(v.caps.immutable).toBe(false);
    expect(v.info.immutable).toBe(false);
    expect(v.caps.replaceable).toBe(true);
    expect(v.caps.offTarget).toBe(true);
    expect(v.caps.serverHash).toBe('md5');
    // Azurite answers x-ms-server-encrypted: true like Azure (it does not really encrypt; see docs/azure-blob.md).
    expect(v.caps.encrypted).toBe(v.encryption.encrypted);
    expect(v.info.encrypted).toBe(v.encryption.encrypted);
  }, 60_000);

  it('a network error mid-upload leaves nothing counted, and the redo completes', async () => {
    const local = await startAzurite();
    try {
      const s = { ...settings(), accountUrl: local.accountUrl };
      const f = path.join(tmp, 'large.bin');
      const data = randomBytes(12 * 1024 * 1024);
      writeFileSync(f, data);
      let killed: Promise<void> | undefined;
      const v = await new AzureBlobVault(s, { env, retry: { maxTries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 100 }, onBlock: (_b, bytes) => { if (bytes >= 2 * 1024 * 1024) killed ??= local.kill(); } }).open();
      const e = await rejection(v.putFile(f, sha(data), data.length));
      expect(e.code).toBe('VAULT_IO');
      await killed;
      const again = await local.restart();
      try {
        const v2 = await new AzureBlobVault({ ...s, accountUrl: again.accountUrl }, { env }).open();
        // Uncommitted blocks are not a blob: nothing under the object's name.
        expect(await v2.has(sha(data))).toBe(false);
        expect(await v2.check(sha(data))).toMatchObject({ status: 'missing' });
        expect(await v2.putFile(f, sha(data), data.length)).toBe(true);
        expect(await v2.check(sha(data), data.length)).toEqual({ status: 'ok' });
      } finally {
        await again.stop();
      }
    } finally {
      await local.dispose();
    }
  }, 120_000);

  it('grants: a SAS works for its scope and mode, and is refused once expired or outside it', async () => {
    const v = await new AzureBlobVault(settings(), { env }).open();
    const h = await v.putBytes(Buffer.from('hello'));
    const m = new LocalMachine({ name: 'proving-ground', root: '/', stepsRoot: path.join(tmp, 'steps') });
    const workDir = path.join(tmp, 'pg');
    const g = await v.grant(m, 'read', 10 * 60 * 1000, { workDir, runId: 'r-20260101-000000-abcd', blobs: [`objects/${h.slice(0, 2)}/${h}`] });
    expect(g.scope).toBe('blobs');
    expect(g.sasKind).toBe('service');
    const token = (await readFile(path.join(g.dir, 'sas.0'), 'utf8')).trim();
    expect(JSON.stringify(g)).not.toContain(token); // the Grant holds no secret
    const via = (name: string, t: string) => new ContainerClient(`${v.container.url}?${t}`).getBlobClient(name);
    expect((await via(v.objectBlob(h), token).downloadToBuffer()).toString()).toBe('hello');

    // Outside the grant: another blob under the same prefix, and writing.
    const other = await v.putBytes(Buffer.from('other'));
    await expect(via(v.objectBlob(other), token).downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });
    await expect(new ContainerClient(`${v.container.url}?${token}`).getBlockBlobClient(v.objectBlob(h)).upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });

    // A container write grant: can create, cannot delete a copy, and does not open another container.
    const wg = await v.grant(m, 'write', 10 * 60 * 1000, { workDir, runId: 'r-20260101-000000-abcd' });
    expect(wg.scope).toBe('container');
    const wt = (await readFile(path.join(wg.dir, 'sas'), 'utf8')).trim();
    expect(await readFile(path.join(wg.dir, 'rclone.conf'), 'utf8')).toContain('type = azureblob');
    const wc = new ContainerClient(`${v.container.url}?${wt}`);
    await wc.getBlockBlobClient(v.blobName('staging/new.bak')).upload('new', 3);
    await expect(wc.getBlobClient(v.objectBlob(h)).delete()).rejects.toMatchObject({ statusCode: 403 });
    const elsewhere = await new AzureBlobVault(settings(), { env }).open();
    await expect(new ContainerClient(`${elsewhere.container.url}?${wt}`).getBlockBlobClient('x').upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });

    // Expired: a grant made two hours ago for one hour.
    const past = new AzureBlobVault(v.settings, { env, now: () => new Date(Date.now() - 2 * 3600_000) });
    const old = await past.sas('read', 3600_000, v.objectBlob(h));
    await expect(via(v.objectBlob(h), old.token).downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });

    await v.revoke(wg, m);
    await v.revoke(g, m);
    await expect(readFile(path.join(g.dir, 'sas.0'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 60_000);
});
