import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TokenCredential } from '@azure/core-auth';
import {
  BlobSASPermissions,
  BlobServiceClient,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
  type BlobGetPropertiesResponse,
  type ContainerClient,
  type UserDelegationKey,
} from '@azure/storage-blob';
import { RubiconError } from '../core/errors.ts';
import type { VaultInfo } from '../core/types.ts';
import { isSha256Hex } from '../core/paths.ts';
import type { Machine } from '../machines/machine.ts';
import { gradeRecordedBlob, type RecordedBlob } from './recorded-blob.ts';
import { encryptionFacts, immutabilityFacts, type EncryptionFacts, type ImmutabilityFacts } from './azure-facts.ts';
import { indexFileName } from './filesystem.ts';
import { indexDocument, parseIndexDocument, sameIndexEntry, sortIndex } from './remote-tools.ts';
import { runDocKey, runDocName, runDocsFolder } from './run-docs.ts';
import type { ArtifactIndexEntry, Grant, ObjectCheck, ObjectWriter, RunDocument, Vault, VaultCaps } from './vault.ts';

/**
 * A vault in an Azure Blob Storage container (`kind: azure-blob`).
 *
 * Layout under the runbook's `prefix` in the container:
 *   <prefix>/objects/<2 hex>/<sha256>   content-addressed block blobs, metadata rubicon_sha256
 *   <prefix>/index/<name>/<doc sha256>.json  ArtifactIndexEntry documents (write-once)
 *   <prefix>/runs/<runId>/<name>.json   a run's documents (journal heads), write-once
 *   <prefix>/vault.json                 the marker blob: written once, its properties
 *                                       tell which immutability policy a new blob gets
 *   <prefix>/grants/                    (nothing stored: grants are SAS tokens)
 *
 * Contracts:
 * - Write-once: every blob is created with If-None-Match: * and never
 *   overwritten or deleted by Rubicon, so the layout works unchanged in a
 *   container with a WORM policy. put is idempotent: an object that already
 *   exists with Rubicon's SHA-256 in its metadata and the right size is kept.
 *   Index entries are write-once too (one blob per distinct document);
 *   listArtifacts picks the newest per artifact.
 * - Nothing is visible under an object's name until all of it is stored:
 *   large objects are staged as blocks (bounded concurrency) and only the
 *   final Put Block List makes the blob exist; an upload that fails midway
 *   leaves uncommitted blocks that the service discards (after 7 days) and
 *   no blob. So a network error never leaves a half object counted.
 * - Transport integrity is checked by the service: every Put Block carries a
 *   transactional Content-MD5 that the service verifies (400 Md5Mismatch
 *   otherwise) and echoes, and single-shot Put Blob carries Content-MD5 and
 *   the MD5 the service stores is compared with Rubicon's. The service's own
 *   hash is MD5 (serverHash 'md5'); Rubicon's SHA-256 is in the metadata.
 * - Every read re-hashes with SHA-256 and throws VAULT_CORRUPT naming the
 *   vault and the blob; check() grades instead (checksum-mismatch,
 *   size-invalid, missing) and names the blob.
 * - Capabilities come from the service (open()), never the runbook:
 *   immutability from the container's WORM policy and legal hold as a
 *   blob written into it gets them (src/vaults/azure-facts.ts), encryption
 *   from the service's x-ms-server-encrypted.
 * - sync() has nothing to do: the service acknowledges a write only once it
 *   is durable (three copies in the region at least).
 */
export interface AzureBlobSettings {
  name: string;
  kind: 'azure-blob';
  /** https://<account>.blob.core.windows.net (or Azurite's http://127.0.0.1:<port>/<account>), without a query string. */
  accountUrl: string;
  container: string;
  /** Folder inside the container ('' or 'a/b', no leading or trailing slash). */
  prefix: string;
  /**
   * How Rubicon authenticates: `default` is @azure/identity's
   * DefaultAzureCredential (managed identity, workload identity, az login);
   * grants are user-delegation SAS. `shared-key` reads the account key from
   * the environment variable named (never from the runbook); grants are
   * service SAS signed with it.
   */
  credential: { kind: 'default' } | { kind: 'shared-key'; accountName: string; keyEnv: string };
  /** Blocks uploaded at once per object. Default 8. */
  concurrency: number;
  /** Block size in MiB (objects up to this size go in one Put Blob). Default 8. */
  blockSizeMiB: number;
  /** The retention the copies need, in days: a WORM policy shorter than this is not counted as immutable. Default 30. */
  retentionDays: number;
  /** ARM's account encryption keySource when known (Microsoft.Storage | Microsoft.Keyvault): the report names customer-managed keys. */
  keySource?: string;
}

export interface AzureBlobVaultDeps {
  env?: NodeJS.ProcessEnv;
  /** A token credential (tests; production: DefaultAzureCredential, loaded on demand). */
  tokenCredential?: TokenCredential;
  now?: () => Date;
  /** The ARM immutability policy of the container when the caller could read it (azure-facts.ts parseArmImmutabilityPolicy). */
  armPolicy?: { periodDays: number; locked: boolean };
  /** Called after each block the service accepted (bytes so far of that object): progress, and the tests' cue to cut the network. */
  onBlock?: (blob: string, bytesStaged: number) => void;
  /** The SDK's retry policy (default: its own, 4 tries with exponential backoff). */
  retry?: { maxTries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
}

/** A grant: a SAS the machine finds in a 0600 file, scoped to the container or to named blobs. */
export interface AzureGrant extends Grant {
  /** `container`: the whole container (restic, listing tools); `blobs`: exactly the blobs named (SQL Server stripes, known files). */
  scope: 'container' | 'blobs';
  /** The blobs of a `blobs` grant (names in the container), each with its own token. */
  blobs: string[];
  /** `user-delegation` (Entra ID) or `service` (shared key). */
  sasKind: 'user-delegation' | 'service';
}

const META_SHA = 'rubicon_sha256';
const META_SIZE = 'rubicon_size';

function statusOf(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null && 'statusCode' in e && typeof e.statusCode === 'number' ? e.statusCode : undefined;
}
function codeOf(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const d = (e as { details?: { errorCode?: string } }).details;
  return d?.errorCode ?? ((e as { code?: string }).code || undefined);
}

/** "acct" from https://acct.blob.core.windows.net or http://127.0.0.1:port/acct (Azurite's path style). Pure. */
export function accountNameOf(accountUrl: string): string {
  const u = new URL(accountUrl);
  const first = u.pathname.split('/').filter(Boolean)[0];
  if (/^[0-9.]+$|^\[|^localhost$/.test(u.hostname) && first) return first;
  return u.hostname.split('.')[0] ?? u.hostname;
}

export class AzureBlobVault implements Vault {
  readonly info: VaultInfo;
  readonly settings: AzureBlobSettings;
  caps: VaultCaps;
  immutability: ImmutabilityFacts = { state: 'none', immutable: false, detail: 'not read yet (open() reads it from the container)' };
  encryption: EncryptionFacts = { encrypted: false, keys: 'unknown', detail: 'not read yet' };
  readonly container: ContainerClient;
  private readonly service: BlobServiceClient;
  private readonly shared: StorageSharedKeyCredential | undefined;
  private readonly token: TokenCredential | undefined;
  private readonly now: () => Date;
  private readonly armPolicy: { periodDays: number; locked: boolean } | undefined;
  private delegation: { key: UserDelegationKey; until: number } | undefined;
  private readonly onBlock: ((blob: string, bytesStaged: number) => void) | undefined;
  private tmpDir: string | undefined;

  constructor(settings: AzureBlobSettings, deps: AzureBlobVaultDeps = {}) {
    this.settings = settings;
    this.now = deps.now ?? (() => new Date());
    this.armPolicy = deps.armPolicy;
    this.onBlock = deps.onBlock;
    const env = deps.env ?? process.env;
    const url = settings.accountUrl.replace(/\/+$/, '');
    if (settings.credential.kind === 'shared-key') {
      const key = env[settings.credential.keyEnv];
      if (!key) {
        throw new RubiconError('RUNBOOK_INVALID', `vault '${settings.name}': the environment variable ${settings.credential.keyEnv} (the storage account key) is not set`, {
          hint: `export ${settings.credential.keyEnv} in the shell or pipeline that runs Rubicon, or use credential: default (Entra ID)`,
        });
      }
      this.shared = new StorageSharedKeyCredential(settings.credential.accountName, key);
      this.service = new BlobServiceClient(url, this.shared, deps.retry ? { retryOptions: deps.retry } : {});
    } else {
      this.token = deps.tokenCredential;
      this.service = new BlobServiceClient(url, this.token ?? lazyDefaultCredential(), deps.retry ? { retryOptions: deps.retry } : {});
    }
    this.container = this.service.getContainerClient(settings.container);
    const location = `${url}/${settings.container}${settings.prefix ? `/${settings.prefix}` : ''}`;
    this.info = { name: settings.name, kind: 'azure-blob', location, offTarget: true, immutable: false, encrypted: false };
    this.caps = { immutable: false, serverHash: 'md5', replaceable: false, offTarget: true, encrypted: false };
  }

  /** Blob name for a path under the vault's prefix. Pure. */
  blobName(rel: string): string {
    return this.settings.prefix ? `${this.settings.prefix}/${rel}` : rel;
  }

  objectBlob(sha256: string): string {
    this.assertHash(sha256);
    return this.blobName(`objects/${sha256.slice(0, 2)}/${sha256}`);
  }

  /**
   * Reads the container's facts: creates the container when absent (the
   * account must exist), writes the marker blob once, and reads the
   * immutability and encryption a blob gets there. Sets `info` and `caps`.
   * Idempotent.
   */
  async open(): Promise<this> {
    try {
      await this.container.createIfNotExists();
      const marker = this.container.getBlockBlobClient(this.blobName('vault.json'));
      const body = Buffer.from(`${JSON.stringify({ rubicon: 'vault', name: this.settings.name }, null, 2)}\n`);
      let encryptedOnWrite: boolean | undefined;
      try {
        const put = await marker.upload(body, body.length, { conditions: { ifNoneMatch: '*' }, blobHTTPHeaders: { blobContentType: 'application/json' } });
        encryptedOnWrite = put.isServerEncrypted;
      } catch (e) {
        if (!this.exists(e)) throw e;
      }
      const [cprops, bprops] = await Promise.all([this.container.getProperties(), marker.getProperties()]);
      this.immutability = immutabilityFacts(
        cprops,
        { immutabilityPolicyExpiresOn: bprops.immutabilityPolicyExpiresOn, immutabilityPolicyMode: bprops.immutabilityPolicyMode, legalHold: bprops.legalHold, createdOn: bprops.createdOn },
        this.armPolicy,
        this.settings.retentionDays,
      );
      this.encryption = encryptionFacts(
        { isServerEncrypted: bprops.isServerEncrypted ?? encryptedOnWrite, encryptionScope: bprops.encryptionScope ?? cprops.defaultEncryptionScope, encryptionKeySha256: bprops.encryptionKeySha256 },
        this.settings.keySource,
      );
    } catch (e) {
      throw this.ioError('cannot read the container', e);
    }
    this.caps = { immutable: this.immutability.immutable, serverHash: 'md5', replaceable: !this.immutability.immutable, offTarget: true, encrypted: this.encryption.encrypted };
    Object.assign(this.info, { immutable: this.caps.immutable, encrypted: this.caps.encrypted });
    return this;
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.storedProps(sha256)) !== undefined;
  }

  async *read(sha256: string): AsyncIterable<Uint8Array> {
    const name = this.objectBlob(sha256);
    let stream: NodeJS.ReadableStream;
    try {
      const r = await this.container.getBlobClient(name).download(0);
      stream = r.readableStreamBody!;
    } catch (e) {
      if (statusOf(e) === 404) throw this.missing(sha256);
      throw this.ioError(`cannot read blob ${name}`, e);
    }
    const hash = createHash('sha256');
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        yield chunk;
      }
    } catch (e) {
      throw this.ioError(`cannot read blob ${name}`, e);
    }
    const actual = hash.digest('hex');
    if (actual !== sha256) throw this.corrupt(sha256, actual);
  }

  async check(sha256: string, expectedSize?: number): Promise<ObjectCheck> {
    if (!isSha256Hex(sha256)) return { status: 'error', detail: `'${sha256}' is not a SHA-256 hex digest` };
    const name = this.objectBlob(sha256);
    const where = `blob ${this.settings.container}/${name} in vault '${this.info.name}'`;
    try {
      const client = this.container.getBlobClient(name);
      const r = await client.download(0);
      const size = r.contentLength ?? -1;
      if (expectedSize !== undefined && size !== expectedSize) {
        r.readableStreamBody?.resume();
        return { status: 'size-invalid', detail: `${where} has ${size} bytes, expected ${expectedSize}` };
      }
      const hash = createHash('sha256');
      for await (const chunk of r.readableStreamBody as AsyncIterable<Buffer>) hash.update(chunk);
      const actual = hash.digest('hex');
      if (actual !== sha256) return { status: 'checksum-mismatch', detail: `${where} hashes to ${actual} (altered after upload)` };
      if (r.metadata?.[META_SHA] !== undefined && r.metadata[META_SHA] !== sha256) {
        return { status: 'checksum-mismatch', detail: `${where}: its metadata names ${r.metadata[META_SHA]}` };
      }
      return { status: 'ok' };
    } catch (e) {
      if (statusOf(e) === 404) return { status: 'missing', detail: `${where} is missing` };
      return { status: 'error', detail: `${where}: ${this.describe(e)}` };
    }
  }

  /**
   * Grades blobs an artifact keeps in this container outside the object
   * store (SQL Server's URL stripes) against what was recorded at capture,
   * from the service's own facts (Get Blob Properties: no data read):
   * missing, size-invalid, or checksum-mismatch when the Content-MD5 the
   * service reports is not the recorded one (or gone: a Put Block List
   * without one rewrote the blob) or the ETag changed (rewritten). The
   * first bad blob is named with the vault ("vault 'sqlbak': blob c/…").
   * Read-only; never throws for a bad blob.
   */
  async checkBlobs(blobs: readonly RecordedBlob[]): Promise<ObjectCheck> {
    for (const b of blobs) {
      const where = `blob ${this.settings.container}/${b.blob} in vault '${this.info.name}'`;
      let p: BlobGetPropertiesResponse;
      try {
        p = await this.container.getBlobClient(b.blob).getProperties();
      } catch (e) {
        if (statusOf(e) === 404) return { status: 'missing', detail: `${where} is missing` };
        return { status: 'error', detail: `${where}: ${this.describe(e)}` };
      }
      const g = gradeRecordedBlob(b, { bytes: Number(p.contentLength ?? -1), ...(p.etag ? { etag: p.etag } : {}), ...(p.contentMD5 ? { contentMd5: Buffer.from(p.contentMD5).toString('base64') } : {}) });
      if (g) return { status: g.status, detail: `${where}: ${g.detail}` };
    }
    return { status: 'ok' };
  }

  /**
   * The service's facts of a blob someone else wrote (SQL Server's stripe),
   * with a Content-MD5 the service reports from now on: when the blob has
   * none (SQL Server's Put Block List sets none), it is read once, its MD5
   * computed and set as the blob's Content-MD5 (Set Blob Properties,
   * If-Match its ETag, the other headers kept), so a later check compares
   * the service's answer with this one without reading the data again.
   * Needs write access (the vault's own credential). Throws the service's
   * error (404: not there) to the caller; a concurrent rewrite makes the
   * If-Match fail (412), which is thrown too. When the service refuses to
   * set the property (403 no permission, 409 e.g. an immutable blob), the
   * record has no MD5 (graded by size and ETag only) and `md5NotSet` says
   * why, for the caller to report.
   */
  async recordBlob(blob: string): Promise<RecordedBlob & { md5NotSet?: string }> {
    const client = this.container.getBlobClient(blob);
    let p = await client.getProperties();
    if (!p.contentMD5 && Number(p.contentLength ?? 0) > 0) {
      const r = await client.download(0, undefined, { conditions: { ifMatch: p.etag } });
      const md5 = createHash('md5');
      for await (const chunk of r.readableStreamBody as AsyncIterable<Buffer>) md5.update(chunk);
      const set = await client.setHTTPHeaders(
        {
          blobContentMD5: md5.digest(),
          ...(p.contentType ? { blobContentType: p.contentType } : {}),
          ...(p.contentEncoding ? { blobContentEncoding: p.contentEncoding } : {}),
          ...(p.contentLanguage ? { blobContentLanguage: p.contentLanguage } : {}),
          ...(p.contentDisposition ? { blobContentDisposition: p.contentDisposition } : {}),
          ...(p.cacheControl ? { blobCacheControl: p.cacheControl } : {}),
        },
        { conditions: { ifMatch: p.etag } },
      ).then(
        () => undefined,
        (e: unknown) => {
          const st = statusOf(e);
          if (st === 403 || st === 409) return `the service refused to set its Content-MD5 (${this.describe(e)})`;
          throw e;
        },
      );
      if (set) return { blob, bytes: Number(p.contentLength ?? 0), ...(p.etag ? { etag: p.etag } : {}), md5NotSet: set };
      p = await client.getProperties();
    }
    return { blob, bytes: Number(p.contentLength ?? 0), ...(p.etag ? { etag: p.etag } : {}), ...(p.contentMD5 ? { contentMd5: Buffer.from(p.contentMD5).toString('base64') } : {}) };
  }

  async createWriter(): Promise<ObjectWriter> {
    return new AzureObjectWriter(this);
  }

  async putBytes(data: Uint8Array): Promise<string> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    await this.putBuffer(Buffer.from(data.buffer, data.byteOffset, data.byteLength), sha256);
    return sha256;
  }

  /**
   * Stores the file at `file` under `sha256`, staging blocks in parallel
   * straight from the file (no temp copy) and hashing it on the way: the
   * block list is committed only when the file really hashes to `sha256`,
   * so a file that changed since it was hashed never gets a name. Returns
   * false when the vault already had the object. Idempotent.
   */
  async putFile(file: string, sha256: string, size: number): Promise<boolean> {
    if ((await this.storedProps(sha256, size)) !== undefined) return false;
    if (size <= this.blockSize()) {
      const fh = await open(file, 'r');
      try {
        const buf = Buffer.allocUnsafe(size);
        let off = 0;
        while (off < size) {
          const { bytesRead } = await fh.read(buf, off, size - off, off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
        const actual = createHash('sha256').update(buf.subarray(0, off)).digest('hex');
        if (off !== size || actual !== sha256) throw this.changed(file, sha256, actual);
        await this.putBuffer(buf, sha256);
      } finally {
        await fh.close();
      }
      return true;
    }
    await this.stageAndCommit(file, sha256, size, true);
    return true;
  }

  /** @internal Single Put Blob (≤ one block) with Content-MD5, If-None-Match: *. */
  async putBuffer(buf: Buffer, sha256: string): Promise<void> {
    const name = this.objectBlob(sha256);
    if ((await this.storedProps(sha256, buf.length)) !== undefined) return;
    const md5 = createHash('md5').update(buf).digest();
    try {
      const r = await this.container.getBlockBlobClient(name).upload(buf, buf.length, {
        blobHTTPHeaders: { blobContentMD5: md5, blobContentType: 'application/octet-stream' },
        metadata: { [META_SHA]: sha256, [META_SIZE]: String(buf.length) },
        conditions: { ifNoneMatch: '*' },
      });
      if (r.contentMD5 && !Buffer.from(r.contentMD5).equals(md5)) {
        throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': the service stored blob ${name} with MD5 ${Buffer.from(r.contentMD5).toString('base64')}, Rubicon sent ${md5.toString('base64')}`, {
          details: { vault: this.info.name, blob: name },
        });
      }
    } catch (e) {
      if (this.exists(e) && (await this.storedProps(sha256, buf.length)) !== undefined) return;
      throw this.ioError(`cannot store blob ${name}`, e);
    }
  }

  /**
   * @internal Stages the file's blocks (a sequential reader, `concurrency`
   * Put Block calls in flight, each with its transactional MD5 checked by
   * the service), then commits the list under the object's name. With
   * `verify`, the SHA-256 is computed on the way and nothing is committed
   * unless it matches.
   */
  async stageAndCommit(file: string, sha256: string, size: number, verify: boolean): Promise<void> {
    const name = this.objectBlob(sha256);
    const blob = this.container.getBlockBlobClient(name);
    const bs = this.blockSize();
    const count = Math.ceil(size / bs);
    // Block ids: same length for every block (a service rule), unique per upload.
    const salt = randomBytes(6).toString('hex');
    const ids = Array.from({ length: count }, (_, i) => Buffer.from(`${salt}-${String(i).padStart(6, '0')}`).toString('base64'));
    const hash = verify ? createHash('sha256') : undefined;
    const fh: FileHandle = await open(file, 'r');
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let staged = 0;
    try {
      for (let i = 0; i < count && failure === undefined; i++) {
        const len = Math.min(bs, size - i * bs);
        const buf = Buffer.allocUnsafe(len);
        let off = 0;
        while (off < len) {
          const { bytesRead } = await fh.read(buf, off, len - off, i * bs + off);
          if (bytesRead === 0) throw this.changed(file, sha256, 'a shorter file');
          off += bytesRead;
        }
        hash?.update(buf);
        const md5 = createHash('md5').update(buf).digest();
        const p = blob
          .stageBlock(ids[i]!, buf, len, { transactionalContentMD5: md5 })
          .then((r) => {
            if (r.contentMD5 && !Buffer.from(r.contentMD5).equals(md5)) throw new Error(`the service echoed another MD5 for block ${i}`);
            staged += len;
            this.onBlock?.(name, staged);
          })
          .catch((e: unknown) => {
            failure ??= e;
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= this.settings.concurrency) await Promise.race(inflight);
      }
      await Promise.all(inflight);
    } finally {
      await fh.close();
    }
    if (failure !== undefined) throw this.ioError(`cannot upload blob ${name}`, failure);
    if (hash) {
      const actual = hash.digest('hex');
      if (actual !== sha256) throw this.changed(file, sha256, actual);
    }
    try {
      await blob.commitBlockList(ids, {
        metadata: { [META_SHA]: sha256, [META_SIZE]: String(size) },
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
        conditions: { ifNoneMatch: '*' },
      });
    } catch (e) {
      if (this.exists(e) && (await this.storedProps(sha256, size)) !== undefined) return;
      throw this.ioError(`cannot commit blob ${name}`, e);
    }
  }

  /**
   * Write-once: one blob per distinct document under index/<name>/. The
   * same document again is a no-op (If-None-Match: *).
   */
  async putArtifactIndex(entry: ArtifactIndexEntry): Promise<void> {
    const { doc, bytes } = indexDocument(this.info.name, entry);
    const current = (await this.listArtifacts()).find((e) => e.artifactId === entry.artifactId);
    if (current && sameIndexEntry(current, doc)) return;
    const digest = createHash('sha256').update(bytes).digest('hex');
    const name = this.blobName(`index/${indexFileName(entry.artifactId).replace(/\.json$/, '')}/${digest}.json`);
    try {
      await this.container.getBlockBlobClient(name).upload(bytes, bytes.length, {
        conditions: { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json', blobContentMD5: createHash('md5').update(bytes).digest() },
      });
    } catch (e) {
      if (!this.exists(e)) throw this.ioError(`cannot write the index entry for artifact '${entry.artifactId}'`, e);
    }
  }

  /** Write-once (If-None-Match: *): a name already stored is kept. */
  async putRunDocument(runId: string, name: string, data: Uint8Array): Promise<void> {
    const blob = this.blobName(runDocKey(runId, name));
    try {
      await this.container.getBlockBlobClient(blob).upload(data, data.byteLength, {
        conditions: { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json', blobContentMD5: createHash('md5').update(data).digest() },
      });
    } catch (e) {
      if (!this.exists(e)) throw this.ioError(`cannot write ${runDocKey(runId, name)}`, e);
    }
  }

  async listRunDocuments(runId: string): Promise<RunDocument[]> {
    const prefix = `${this.blobName(runDocsFolder(runId))}/`;
    const out: RunDocument[] = [];
    try {
      for await (const b of this.container.listBlobsFlat({ prefix })) {
        const name = runDocName(b.name.slice(prefix.length));
        if (!name) continue;
        out.push({ name, where: `${this.settings.container}/${b.name}`, data: await this.container.getBlobClient(b.name).downloadToBuffer() });
      }
    } catch (e) {
      throw this.ioError(`cannot list ${runDocsFolder(runId)}`, e);
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Newest first; for an artifact with several documents, the newest (a redo, or the entry with origin and fingerprint added). */
  async listArtifacts(): Promise<ArtifactIndexEntry[]> {
    const docs: { entry: ArtifactIndexEntry; at: number }[] = [];
    try {
      for await (const b of this.container.listBlobsFlat({ prefix: this.blobName('index/') })) {
        const bytes = await this.container.getBlobClient(b.name).downloadToBuffer();
        docs.push({ entry: parseIndexDocument(this.info.name, `${this.settings.container}/${b.name}`, bytes), at: b.properties.createdOn?.getTime() ?? 0 });
      }
    } catch (e) {
      if (e instanceof RubiconError) throw e;
      throw this.ioError('cannot list the artifact index', e);
    }
    const best = new Map<string, { entry: ArtifactIndexEntry; at: number }>();
    for (const d of docs) {
      const cur = best.get(d.entry.artifactId);
      const richer = (x: ArtifactIndexEntry) => (x.origin ? 1 : 0) + (x.sourceFingerprint ? 1 : 0);
      if (
        !cur ||
        d.entry.capturedAt > cur.entry.capturedAt ||
        (d.entry.capturedAt === cur.entry.capturedAt && (d.at > cur.at || (d.at === cur.at && richer(d.entry) > richer(cur.entry))))
      ) {
        best.set(d.entry.artifactId, d);
      }
    }
    return sortIndex([...best.values()].map((d) => d.entry));
  }

  async sync(): Promise<void> {
    // Every write was acknowledged by the service only once durable.
  }

  // ---------------------------------------------------------------- grants

  /**
   * A SAS for `mode`, valid `ttlMs` from now, for the container or exactly
   * the blobs named. read: r (+l for the container); write: c w a (+l r for
   * the container: restic lists and reads its own files), never d (delete):
   * a grant cannot remove a copy. Secret: the caller puts it where only the
   * tool reads it. Uses a user-delegation key with Entra ID, the account
   * key otherwise.
   */
  async sas(mode: 'read' | 'write', ttlMs: number, blob?: string, o: { delete?: boolean } = {}): Promise<{ token: string; expiresOn: Date; kind: 'user-delegation' | 'service' }> {
    const startsOn = new Date(this.now().getTime() - 5 * 60 * 1000); // clock skew
    const expiresOn = new Date(this.now().getTime() + ttlMs);
    const permissions = blob
      ? BlobSASPermissions.parse(mode === 'read' ? 'r' : 'cw')
      : ContainerSASPermissions.parse(mode === 'read' ? 'rl' : o.delete ? 'rcwdal' : 'rcwal');
    const base = { containerName: this.settings.container, ...(blob ? { blobName: blob } : {}), permissions, startsOn, expiresOn };
    const account = this.shared?.accountName ?? accountNameOf(this.settings.accountUrl);
    if (this.shared) return { token: generateBlobSASQueryParameters(base, this.shared).toString(), expiresOn, kind: 'service' };
    const key = await this.delegationKey(startsOn, expiresOn);
    return { token: generateBlobSASQueryParameters(base, key, account).toString(), expiresOn, kind: 'user-delegation' };
  }

  /** The URL of a blob of this container (no query string). */
  blobUrl(name: string): string {
    return this.container.getBlobClient(name).url;
  }

  /**
   * Gives `to` a SAS until `ttlMs` from now, written to
   * `<workDir>/grants/<id>/sas` (0600) through writeSmall, never in argv or
   * env. `blobs`: a grant for exactly those blob names (relative to the
   * prefix), one token each in `<dir>/sas.<n>`; without: the container.
   * The Grant carries the container URL (`location`) and, for restic, an
   * rclone remote in `<dir>/rclone.conf` (restic 0.14's own azure backend
   * reads the SAS only from the environment, AZURE_ACCOUNT_SAS, which
   * Rubicon never uses for secrets; its rclone backend reads a 0600 file).
   */
  async grant(
    to: Machine,
    mode: 'read' | 'write',
    ttlMs: number,
    o: {
      workDir: string;
      runId: string;
      blobs?: string[];
      /**
       * 'restic': a write grant may also delete (restic removes its own lock
       * files and cannot run without it): keep a restic repository in its
       * own container, never the one holding Rubicon's immutable copies.
       */
      tool?: 'restic';
    },
  ): Promise<AzureGrant> {
    const id = `${o.runId}.${randomBytes(8).toString('hex')}`;
    const dir = path.posix.join(o.workDir, 'grants', id);
    const names = (o.blobs ?? []).map((b) => this.blobName(b));
    const containerUrl = this.container.url;
    let expiresOn: Date;
    let kind: 'user-delegation' | 'service';
    if (names.length === 0) {
      const s = await this.sas(mode, ttlMs, undefined, { delete: mode === 'write' && o.tool === 'restic' });
      ({ expiresOn, kind } = s);
      await to.writeSmall(path.posix.join(dir, 'sas'), Buffer.from(s.token + '\n'));
      const conf = `[rubicon-${this.info.name}]\ntype = azureblob\nsas_url = ${containerUrl}?${s.token}\n`;
      await to.writeSmall(path.posix.join(dir, 'rclone.conf'), Buffer.from(conf));
    } else {
      const tokens = await Promise.all(names.map((n) => this.sas(mode, ttlMs, n)));
      expiresOn = tokens[0]!.expiresOn;
      kind = tokens[0]!.kind;
      for (const [i, t] of tokens.entries()) await to.writeSmall(path.posix.join(dir, `sas.${i}`), Buffer.from(t.token + '\n'));
    }
    return {
      id,
      vault: this.info.name,
      machine: to.name,
      mode,
      expiresAt: expiresOn.toISOString(),
      dir,
      sshCommand: '',
      env: names.length === 0 ? { RCLONE_CONFIG: path.posix.join(dir, 'rclone.conf'), RESTIC_REPOSITORY: `rclone:rubicon-${this.info.name}:${this.settings.container}/${this.blobName('restic')}` } : {},
      location: containerUrl,
      scope: names.length === 0 ? 'container' : 'blobs',
      blobs: names,
      sasKind: kind,
    };
  }

  /**
   * Removes the grant's files from the machine. A SAS cannot be recalled
   * one by one (a user-delegation SAS dies with its key: revoking every
   * key of the account is `revokeUserDelegationKeys`, a service SAS with
   * the account key's rotation); it expires by itself at `expiresAt`,
   * which is why grants are short. Idempotent.
   */
  async revoke(grant: AzureGrant, on: Machine): Promise<void> {
    await on.exec({ argv: ['rm', '-rf', '--', grant.dir] }).catch(() => undefined);
  }

  // ---------------------------------------------------------------- internals

  /** @internal */
  blockSize(): number {
    return Math.max(1, this.settings.blockSizeMiB) * 1024 * 1024;
  }

  /** @internal A private folder for writers that outgrow one block. */
  tempDir(): string {
    this.tmpDir ??= mkdtempSync(path.join(os.tmpdir(), 'rubicon-azblob-'));
    return this.tmpDir;
  }

  /** The stored object's properties when it exists with Rubicon's hash (and size): undefined when absent. */
  private async storedProps(sha256: string, size?: number): Promise<BlobGetPropertiesResponse | undefined> {
    const name = this.objectBlob(sha256);
    try {
      const p = await this.container.getBlobClient(name).getProperties();
      if (p.metadata?.[META_SHA] !== sha256 || (size !== undefined && p.contentLength !== size)) {
        // Something else under our name: with write-once blobs it stays; check() will grade it.
        return size === undefined ? p : undefined;
      }
      return p;
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw this.ioError(`cannot look up blob ${name}`, e);
    }
  }

  private async delegationKey(startsOn: Date, expiresOn: Date): Promise<UserDelegationKey> {
    if (this.delegation && this.delegation.until >= expiresOn.getTime()) return this.delegation.key;
    // The key lives at most 7 days (service limit); one covers this grant.
    if (expiresOn.getTime() - this.now().getTime() > 7 * 24 * 3600_000) {
      throw new RubiconError('GRANT_FAILED', `vault '${this.info.name}': a user-delegation SAS cannot outlive 7 days (the service's limit for its key)`, { hint: 'give the grant a shorter TTL' });
    }
    let r: UserDelegationKey;
    try {
      r = await this.service.getUserDelegationKey(startsOn, expiresOn);
    } catch (e) {
      const s = statusOf(e);
      if (s === 403 || s === 401) {
        throw new RubiconError('GRANT_FAILED', `vault '${this.info.name}' (${this.info.location}): the service refused a user-delegation key (${this.describe(e)}) for the identity Rubicon runs as`, {
          cause: e,
          hint: 'give that identity a role with Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey on the account (e.g. "Storage Blob Delegator", beside "Storage Blob Data Contributor" on the container), or use credential: shared-key',
          details: { vault: this.info.name },
        });
      }
      throw this.ioError('cannot get a user-delegation key for a grant', e);
    }
    this.delegation = { key: r, until: expiresOn.getTime() };
    return r;
  }

  private exists(e: unknown): boolean {
    const s = statusOf(e);
    return s === 409 || s === 412 || codeOf(e) === 'BlobAlreadyExists' || codeOf(e) === 'ConditionNotMet';
  }

  private assertHash(sha256: string): void {
    if (!isSha256Hex(sha256)) throw new RubiconError('ARGUMENTS_INVALID', `vault '${this.info.name}': '${sha256}' is not a lower-case hex SHA-256 digest`);
  }

  private missing(sha256: string): RubiconError {
    const name = this.objectBlob(sha256);
    return new RubiconError('VAULT_MISSING_OBJECT', `vault '${this.info.name}' has no blob ${this.settings.container}/${name}; restore from another vault or capture the item again`, {
      details: { vault: this.info.name, object: sha256, blob: name },
    });
  }

  private corrupt(sha256: string, actual: string): RubiconError {
    const name = this.objectBlob(sha256);
    return new RubiconError(
      'VAULT_CORRUPT',
      `vault '${this.info.name}': blob ${this.settings.container}/${name} was altered after upload (its content hashes to ${actual}); this copy cannot be trusted: restore from another vault or capture the item again`,
      { details: { vault: this.info.name, object: sha256, blob: name, actual } },
    );
  }

  private changed(file: string, sha256: string, actual: string): RubiconError {
    return new RubiconError('CAPTURE_FAILED', `vault '${this.info.name}': ${file} no longer hashes to ${sha256} (read ${actual}); nothing was stored under that name: capture it again`, {
      details: { vault: this.info.name, file },
    });
  }

  private describe(e: unknown): string {
    const s = statusOf(e);
    const c = codeOf(e);
    return [s ? `HTTP ${s}` : undefined, c, s === undefined && e instanceof Error ? e.message.split('\n')[0] : undefined].filter(Boolean).join(' ') || String(e);
  }

  /** @internal Never includes a SAS or key: the SDK's messages carry no query strings of ours (requests are signed in headers or by the SAS we never log). */
  ioError(what: string, e: unknown): RubiconError {
    if (e instanceof RubiconError) return e;
    const s = statusOf(e);
    const auth = s === 403 || s === 401;
    return new RubiconError(
      auth ? 'GRANT_FAILED' : 'VAULT_IO',
      `vault '${this.info.name}' (${this.info.location}): ${what}: ${this.describe(e)}${auth ? '; the credential was refused (expired SAS, missing role "Storage Blob Data Contributor", or a wrong key)' : '; check the network and the account'}`,
      { cause: e, details: { vault: this.info.name } },
    );
  }
}

/**
 * Holds up to one block in memory; beyond, spills to a private temp file
 * (never a temp blob: in a WORM container a temp blob could not be removed)
 * and uploads it at commit under its final name.
 */
class AzureObjectWriter implements ObjectWriter {
  private readonly vault: AzureBlobVault;
  private held: Buffer[] = [];
  private size = 0;
  private temp: { fd: number; path: string } | undefined;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(vault: AzureBlobVault) {
    this.vault = vault;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw new RubiconError('INTERNAL', `write after ${this.state} on a writer of vault '${this.vault.info.name}'`);
    if (!this.temp && this.size + chunk.byteLength <= this.vault.blockSize()) {
      this.held.push(Buffer.from(chunk)); // a copy: the caller reuses its buffer
      this.size += chunk.byteLength;
      return;
    }
    if (!this.temp) {
      const p = path.join(this.vault.tempDir(), `${randomUUID()}.tmp`);
      this.temp = { fd: openSync(p, 'wx', 0o600), path: p };
      for (const b of this.held) writeAllSync(this.temp.fd, b);
      this.held = [];
    }
    writeAllSync(this.temp.fd, chunk);
    this.size += chunk.byteLength;
  }

  async commit(sha256: string): Promise<void> {
    if (this.state !== 'open') throw new RubiconError('INTERNAL', `commit after ${this.state} on a writer of vault '${this.vault.info.name}'`);
    this.state = 'committed';
    try {
      if (!this.temp) await this.vault.putBuffer(Buffer.concat(this.held, this.size), sha256);
      else {
        closeSync(this.temp.fd);
        // The caller hashed exactly these bytes; the temp file is ours.
        if (!(await this.vault.has(sha256))) await this.vault.stageAndCommit(this.temp.path, sha256, this.size, false);
      }
    } finally {
      this.held = [];
      if (this.temp) rmSync(this.temp.path, { force: true });
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.held = [];
    if (this.temp) {
      try {
        closeSync(this.temp.fd);
      } catch {
        // closed
      }
      rmSync(this.temp.path, { force: true });
    }
  }
}

function writeAllSync(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
}

/** DefaultAzureCredential, loaded on first use (the identity SDK is large and only this credential needs it). */
function lazyDefaultCredential(): TokenCredential {
  let real: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      real ??= import('@azure/identity').then((m) => new m.DefaultAzureCredential());
      return (await real).getToken(scopes, options);
    },
  };
}
