/**
 * Grants of a vault that authenticates with Entra ID: user-delegation SAS
 * (Get User Delegation Key, then a SAS signed with that key, `skoid`/`sktid`
 * naming the identity), against Azurite in its OAuth mode (`--oauth basic`,
 * which needs HTTPS: a self-signed certificate made here with openssl).
 * Azurite checks a UDK SAS's signature against the key it derives for the
 * token's oid/tid, its start and expiry, and the key's own times
 * (BlobSASAuthenticator, azurite 3.37), like the service.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalMachine } from '../../src/machines/local.ts';
import { AzureBlobVault, type AzureBlobSettings } from '../../src/vaults/azure-blob.ts';
import { azuriteMissing, fakeEntraCredential, requireAzurite, selfSignedCert, startAzurite, type Azurite } from '../azure/azurite.ts';

const run = requireAzurite();
let az: Azurite;
let tmp: string;
let n = 0;
const identity = fakeEntraCredential();

function settings(over: Partial<AzureBlobSettings> = {}): AzureBlobSettings {
  return {
    name: `udk${++n}`,
    kind: 'azure-blob',
    accountUrl: az.accountUrl,
    container: `u${n}-${randomBytes(3).toString('hex')}`,
    prefix: 'rubicon',
    credential: { kind: 'default' },
    concurrency: 2,
    blockSizeMiB: 1,
    retentionDays: 30,
    ...over,
  };
}

describe.skipIf(!run)(`user-delegation SAS grants on Azurite over HTTPS with OAuth${run ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-udk-'));
    az = await startAzurite({ tls: selfSignedCert(tmp) });
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('a vault on Entra ID gives user-delegation SAS: they work in their scope and mode, and are refused outside it and once expired', async () => {
    expect(az.accountUrl).toMatch(/^https:/);
    const v = await new AzureBlobVault(settings(), { tokenCredential: identity }).open();
    const h = await v.putBytes(Buffer.from('hello'));
    const other = await v.putBytes(Buffer.from('other'));
    const m = new LocalMachine({ name: 'proving-ground', root: '/', stepsRoot: path.join(tmp, 'steps') });
    const workDir = path.join(tmp, 'pg');

    // A read grant for exactly one blob.
    const g = await v.grant(m, 'read', 10 * 60 * 1000, { workDir, runId: 'r-20260101-000000-abcd', blobs: [`objects/${h.slice(0, 2)}/${h}`] });
    expect(g.sasKind).toBe('user-delegation');
    expect(g.scope).toBe('blobs');
    const token = (await readFile(path.join(g.dir, 'sas.0'), 'utf8')).trim();
    const q = new URLSearchParams(token);
    // Signed with a delegation key bound to this identity, never the account key; read only, no delete.
    expect(q.get('skoid')).toBe(identity.oid);
    expect(q.get('sktid')).toBe(identity.tid);
    expect(q.get('sr')).toBe('b');
    expect(q.get('sp')).toBe('r');
    expect(JSON.stringify(g)).not.toContain(q.get('sig')!);
    const via = (name: string, t: string) => new ContainerClient(`${v.container.url}?${t}`).getBlobClient(name);
    expect((await via(v.objectBlob(h), token).downloadToBuffer()).toString()).toBe('hello');
    // Outside it: another blob under the same prefix, writing, deleting.
    await expect(via(v.objectBlob(other), token).downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });
    await expect(new ContainerClient(`${v.container.url}?${token}`).getBlockBlobClient(v.objectBlob(h)).upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });
    await expect(via(v.objectBlob(h), token).delete()).rejects.toMatchObject({ statusCode: 403 });
    // A signature that is not the delegation key's (one character changed) is refused: Azurite checks it.
    const sig = q.get('sig')!;
    const forged = new URLSearchParams(token);
    forged.set('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`);
    await expect(via(v.objectBlob(h), forged.toString()).downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });

    // A container write grant: creates and appends, cannot delete a copy, opens no other container.
    const wg = await v.grant(m, 'write', 10 * 60 * 1000, { workDir, runId: 'r-20260101-000000-abcd' });
    expect(wg.sasKind).toBe('user-delegation');
    expect(wg.scope).toBe('container');
    const wt = (await readFile(path.join(wg.dir, 'sas'), 'utf8')).trim();
    expect(new URLSearchParams(wt).get('sr')).toBe('c');
    expect(new URLSearchParams(wt).get('sp')).not.toContain('d');
    const wc = new ContainerClient(`${v.container.url}?${wt}`);
    await wc.getBlockBlobClient(v.blobName('mssql/a/stripe-01.bak')).upload('bak', 3);
    expect((await v.container.getBlobClient(v.blobName('mssql/a/stripe-01.bak')).downloadToBuffer()).toString()).toBe('bak');
    await expect(wc.getBlobClient(v.objectBlob(h)).delete()).rejects.toMatchObject({ statusCode: 403 });
    const elsewhere = await new AzureBlobVault(settings(), { tokenCredential: identity }).open();
    await expect(new ContainerClient(`${elsewhere.container.url}?${wt}`).getBlockBlobClient('x').upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });

    // Expired: a grant made two hours ago for one hour (its delegation key expired with it).
    const past = new AzureBlobVault(v.settings, { tokenCredential: identity, now: () => new Date(Date.now() - 2 * 3600_000) });
    const old = await past.sas('read', 3600_000, v.objectBlob(h));
    expect(old.kind).toBe('user-delegation');
    await expect(via(v.objectBlob(h), old.token).downloadToBuffer()).rejects.toMatchObject({ statusCode: 403 });
    // The control: made at the same time for three hours, it still works (the refusal above is the expiry).
    const still = await past.sas('read', 3 * 3600_000, v.objectBlob(h));
    expect((await via(v.objectBlob(h), still.token).downloadToBuffer()).toString()).toBe('hello');

    // The service's limit for a delegation key: a grant longer than 7 days is refused before anything is asked.
    await expect(v.sas('read', 8 * 24 * 3600_000, v.objectBlob(h))).rejects.toMatchObject({ code: 'GRANT_FAILED', message: expect.stringContaining('7 days') });

    await v.revoke(wg, m);
    await v.revoke(g, m);
    await expect(readFile(path.join(g.dir, 'sas.0'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 60_000);
});
