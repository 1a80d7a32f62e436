/**
 * Immutability and encryption facts of an Azure container. Azurite has no
 * WORM policies and no legal holds (it answers neither header), so these are
 * checked at the protocol level: the pure rule as a table, ARM's policy body
 * as its REST reference shows it, and the real SDK reading real-shaped
 * response headers from a local HTTP endpoint (the header names and values
 * of the Blob service REST reference: Get Container Properties, Get Blob
 * Properties, version 2020-10-02 and later).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encryptionFacts, immutabilityFacts, parseArmImmutabilityPolicy } from '../../src/vaults/azure-facts.ts';
import { AzureBlobVault } from '../../src/vaults/azure-blob.ts';

const created = new Date('2026-01-01T00:00:00Z');
const days = (n: number) => new Date(created.getTime() + n * 86_400_000);

describe('immutabilityFacts', () => {
  it.each([
    { name: 'nothing', c: {}, p: {}, arm: undefined, state: 'none', immutable: false },
    { name: 'locked version-level, 90 days', c: { isImmutableStorageWithVersioningEnabled: true }, p: { immutabilityPolicyMode: 'Locked', immutabilityPolicyExpiresOn: days(90), createdOn: created }, arm: undefined, state: 'locked', immutable: true },
    { name: 'locked, shorter than needed', c: { isImmutableStorageWithVersioningEnabled: true }, p: { immutabilityPolicyMode: 'Locked', immutabilityPolicyExpiresOn: days(7), createdOn: created }, arm: undefined, state: 'locked', immutable: false },
    { name: 'unlocked version-level', c: { isImmutableStorageWithVersioningEnabled: true }, p: { immutabilityPolicyMode: 'Unlocked', immutabilityPolicyExpiresOn: days(90), createdOn: created }, arm: undefined, state: 'unlocked', immutable: false },
    { name: 'version-level on, no default policy', c: { isImmutableStorageWithVersioningEnabled: true }, p: { immutabilityPolicyMode: 'Mutable' }, arm: undefined, state: 'none', immutable: false },
    { name: 'legal hold on the blob', c: { hasLegalHold: true }, p: { legalHold: true }, arm: undefined, state: 'legal-hold', immutable: true },
    { name: 'container-level policy, lock unknown', c: { hasImmutabilityPolicy: true }, p: {}, arm: undefined, state: 'unknown-lock', immutable: false },
    { name: 'container-level policy, ARM: unlocked', c: { hasImmutabilityPolicy: true }, p: {}, arm: { periodDays: 90, locked: false }, state: 'unlocked', immutable: false },
    { name: 'container-level policy, ARM: locked', c: { hasImmutabilityPolicy: true }, p: {}, arm: { periodDays: 90, locked: true }, state: 'locked', immutable: true },
  ])('$name', ({ c, p, arm, state, immutable }) => {
    const f = immutabilityFacts(c, p, arm, 30);
    expect(f.state).toBe(state);
    expect(f.immutable).toBe(immutable);
    if (state === 'unlocked') expect(f.detail).toContain('UNLOCKED');
  });

  it('parses ARM\'s immutability policy body (BlobContainers_GetImmutabilityPolicy response shape)', () => {
    const body = {
      id: '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/res1782/providers/Microsoft.Storage/storageAccounts/sto7069/blobServices/default/containers/container6397/immutabilityPolicies/default',
      name: 'default',
      type: 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies',
      etag: '"8d59f830d0c3bf9"',
      properties: { immutabilityPeriodSinceCreationInDays: 3, allowProtectedAppendWrites: true, state: 'Unlocked' },
    };
    expect(parseArmImmutabilityPolicy(body)).toEqual({ periodDays: 3, locked: false });
    expect(parseArmImmutabilityPolicy({ ...body, properties: { ...body.properties, state: 'Locked' } })).toEqual({ periodDays: 3, locked: true });
    expect(parseArmImmutabilityPolicy({ properties: {} })).toBeUndefined();
    expect(parseArmImmutabilityPolicy('x')).toBeUndefined();
  });
});

describe('encryptionFacts', () => {
  it.each([
    [{ isServerEncrypted: true }, 'Microsoft.Keyvault', 'customer-managed'],
    [{ isServerEncrypted: true }, 'Microsoft.Storage', 'service-managed'],
    [{ isServerEncrypted: true }, undefined, 'unknown'],
    [{ isServerEncrypted: true, encryptionKeySha256: 'abc=' }, undefined, 'customer-provided'],
  ] as const)('%j with keySource %s → %s', (blob, source, keys) => {
    const f = encryptionFacts(blob, source);
    expect(f.encrypted).toBe(true);
    expect(f.keys).toBe(keys);
  });
  it('not reported encrypted → not encrypted', () => {
    expect(encryptionFacts({ isServerEncrypted: false }).encrypted).toBe(false);
    expect(encryptionFacts(undefined).encrypted).toBe(false);
  });
});

/** A local endpoint answering the four calls open() makes with the service's header shapes. */
function blobEndpoint(headers: { container: Record<string, string>; blob: Record<string, string> }) {
  const common = { 'x-ms-request-id': '00000000-0000-0000-0000-000000000000', 'x-ms-version': '2025-11-05', date: new Date().toUTCString() };
  const error = (res: ServerResponse, status: number, code: string) => {
    res.writeHead(status, { ...common, 'x-ms-error-code': code, 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`);
  };
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'PUT' && url.searchParams.get('restype') === 'container') return error(res, 409, 'ContainerAlreadyExists');
    if (req.method === 'PUT') return error(res, 409, 'BlobAlreadyExists');
    if (req.method === 'GET' && url.searchParams.get('restype') === 'container') {
      res.writeHead(200, { ...common, etag: '"0x8D"', 'last-modified': new Date().toUTCString(), ...headers.container });
      return res.end();
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { ...common, etag: '"0x8D"', 'content-length': '40', 'x-ms-blob-type': 'BlockBlob', 'last-modified': new Date().toUTCString(), ...headers.blob });
      return res.end();
    }
    error(res, 400, 'UnsupportedHttpVerb');
  });
}

describe('open() reads the WORM policy through the real SDK (protocol level)', () => {
  const servers: ReturnType<typeof createServer>[] = [];
  const start = async (h: Parameters<typeof blobEndpoint>[0]) => {
    const s = blobEndpoint(h);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/devstoreaccount1`;
    return new AzureBlobVault(
      { name: 'worm', kind: 'azure-blob', accountUrl: url, container: 'vault', prefix: 'rubicon', credential: { kind: 'shared-key', accountName: 'devstoreaccount1', keyEnv: 'K' }, concurrency: 2, blockSizeMiB: 1, retentionDays: 30 },
      { env: { K: Buffer.from('key').toString('base64') }, retry: { maxTries: 1 } },
    ).open();
  };
  beforeAll(() => undefined);
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
  });

  it('a locked version-level policy of 365 days: immutable, not replaceable', async () => {
    const v = await start({
      container: { 'x-ms-immutable-storage-with-versioning-enabled': 'true', 'x-ms-has-immutability-policy': 'false', 'x-ms-has-legal-hold': 'false' },
      blob: {
        'x-ms-creation-time': 'Thu, 01 Jan 2026 00:00:00 GMT',
        'x-ms-immutability-policy-until-date': 'Fri, 01 Jan 2027 00:00:00 GMT',
        'x-ms-immutability-policy-mode': 'locked',
        'x-ms-server-encrypted': 'true',
      },
    });
    expect(v.immutability).toMatchObject({ state: 'locked', immutable: true, periodDays: 365 });
    expect(v.caps).toMatchObject({ immutable: true, replaceable: false, encrypted: true });
    expect(v.info).toMatchObject({ immutable: true, encrypted: true });
  });

  it('the same policy unlocked: reported as unlocked, not immutable', async () => {
    const v = await start({
      container: { 'x-ms-immutable-storage-with-versioning-enabled': 'true' },
      blob: {
        'x-ms-creation-time': 'Thu, 01 Jan 2026 00:00:00 GMT',
        'x-ms-immutability-policy-until-date': 'Fri, 01 Jan 2027 00:00:00 GMT',
        'x-ms-immutability-policy-mode': 'unlocked',
        'x-ms-server-encrypted': 'true',
        'x-ms-encryption-scope': 'clinic-cmk',
      },
    });
    expect(v.immutability.state).toBe('unlocked');
    expect(v.caps.immutable).toBe(false);
    expect(v.encryption).toMatchObject({ encrypted: true, scope: 'clinic-cmk' });
  });

  it('a legal hold: immutable while held', async () => {
    const v = await start({ container: { 'x-ms-has-legal-hold': 'true' }, blob: { 'x-ms-legal-hold': 'true', 'x-ms-server-encrypted': 'true' } });
    expect(v.immutability.state).toBe('legal-hold');
    expect(v.caps.immutable).toBe(true);
  });
});
