import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, closeSync, fstatSync, constants as fsConstants, fsync as fsyncCb, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync, write as writeCb, writeSync } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, sep } from 'node:path';
import { runBounded } from '../core/bounded.ts';
import { RubiconError } from '../core/errors.ts';
import { isSha256Hex } from '../core/paths.ts';
import type { VaultInfo } from '../core/types.ts';
import { indexEntrySchema } from './index-entry.ts';
import { runDocKey, runDocName, runDocsFolder } from './run-docs.ts';
import { deriveKeys, plainSize, Sealer, sealedName, sealedSize, unseal, UnsealError, type VaultKeys } from './sealed.ts';
import type { ArtifactIndexEntry, ObjectCheck, ObjectPut, ObjectState, ObjectWriter, RunDocument, Vault, VaultCaps } from './vault.ts';

/**
 * A vault in a local (or mounted) folder.
 *
 * Layout:
 *   <root>/objects/<first 2 hex>/<sha256>   content-addressed objects
 *   <root>/index/<encoded artifactId>.json  ArtifactIndexEntry documents
 *   <root>/tmp/                             in-flight writes (temp → rename)
 *   <root>/objects/<2 hex>/.<name>.tmp      in-flight writes of the capture's copy
 *                                           workers whose hash is known (the rename
 *                                           stays in one folder)
 *
 * Contracts:
 * - Objects are written to tmp/ and renamed into place by commit(); a reader
 *   never sees a half-written object under its final name (unless the OS
 *   crashed before sync() with 'batch'/'syncfs' durability, see below —
 *   reads still catch it).
 * - put is idempotent: committing an object that already exists with the
 *   same size leaves the stored object untouched (small objects are not even
 *   written to tmp/; large ones are, and the temp file is dropped).
 * - Metadata calls (open, stat, rename, mkdir) and small writes are
 *   synchronous: microseconds on a local disk against a thread-pool round
 *   trip each; this was the difference between 5x and 1x of `cp -a` on many
 *   small files (docs/files.md). Data writes over 256 KiB, reads and fsyncs
 *   go through the thread pool.
 * - Every read hashes while streaming and throws VAULT_CORRUPT (naming the
 *   vault and the object) when the content does not match; VAULT_MISSING_OBJECT
 *   when absent. check() grades instead of throwing.
 * - Durability: see `FilesystemVaultOptions.durability`. Nothing is promised
 *   durable until sync() resolved.
 * - commit() trusts the hash the caller computed while writing (the capture
 *   hashes exactly the bytes it writes); every later read re-verifies it.
 */
export interface FilesystemVaultOptions {
  /**
   * How sync() makes writes durable. Default 'syncfs'.
   * - 'commit': fsync each object's data before it is renamed into place, so
   *   an object present under its name is always complete, even after a power
   *   loss; directory entries are fsync'd at sync(). Slowest for many small files.
   * - 'batch': no fsync at commit; sync() fsyncs every object written or
   *   re-used since the last sync (bounded parallelism), then the directories.
   * - 'syncfs': no fsync at commit; sync() flushes the vault's whole
   *   filesystem once (`sync -f <root>`, syncfs(2), Linux). Falls back to
   *   'batch' where that is not available.
   * With 'batch' and 'syncfs', an OS crash before sync() may leave an object
   * truncated or empty under its name: reads and check() report it, and a
   * re-capture replaces an object whose size is wrong. Nothing is recorded
   * as captured before sync() resolved, so the journal never names such an
   * object. docs/files.md has the measurements behind the default.
   */
  durability?: 'commit' | 'batch' | 'syncfs';
  /**
   * Encryption at rest (src/vaults/sealed.ts): AES-256-GCM with keys derived
   * from this 32-byte key, objects named HMAC(name key, SHA-256). The key
   * comes from the secret source the runbook names; it is never written
   * into the vault. Index entries stay plain (ids, hashes, no content).
   */
  encryption?: { key: Buffer };
}

/** Metadata calls and writes up to this size are synchronous: cheaper than a thread-pool round trip on a local disk. */
const SYNC_WRITE_MAX = 256 * 1024;
/** Objects up to this size are held in memory until commit (see createWriter). */
const LAZY_MAX = 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
const SYNC_PARALLELISM = 8;

/** In 'syncfs' mode sync() fsyncs files one by one when no more than this many were written since the last sync (cheaper than running `sync -f`), else flushes the filesystem. */
const FSYNC_EACH_MAX = 32;

/**
 * File name for an artifact id: characters outside [A-Za-z0-9._-] and a
 * leading dot are %-encoded (ids contain ':' and '/'); very long ids are
 * shortened with a hash suffix. The entry inside holds the real id.
 */
export function indexFileName(artifactId: string): string {
  let encoded = '';
  for (const byte of Buffer.from(artifactId, 'utf8')) {
    const c = String.fromCharCode(byte);
    const plain = /[A-Za-z0-9_-]/.test(c) || (c === '.' && encoded.length > 0);
    encoded += plain ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (encoded.length > 180) {
    const digest = createHash('sha256').update(artifactId).digest('hex').slice(0, 32);
    encoded = `${encoded.slice(0, 120)}~${digest}`;
  }
  return `${encoded}.json`;
}

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

export class FilesystemVault implements Vault {
  readonly info: VaultInfo;
  /** From the info: replaceable unless declared immutable (WORM); no server-side hash; not encrypted. */
  readonly caps: VaultCaps;
  readonly root: string;
  readonly durability: 'commit' | 'batch' | 'syncfs';
  private readonly objectsDir: string;
  private readonly indexDir: string;
  private readonly tmpDir: string;
  private ready: Promise<void> | undefined;
  /**
   * Vault clock (ctime of a probe file) when this instance was first used:
   * an object whose ctime is at least this was written or checked since,
   * so commits do not check it again (docs/files.md, "Damaged objects").
   */
  private fenceMs = Number.POSITIVE_INFINITY;
  private readonly knownShards = new Set<string>();
  private readonly shardPaths = new Map<string, string>();
  /**
   * Files whose data sync() must fsync ('batch' mode). In 'syncfs' mode only
   * the first FSYNC_EACH_MAX are kept (then `dirtyOverflow`): memory does not
   * grow with the number of objects written.
   */
  private readonly dirtyFiles = new Set<string>();
  private dirtyOverflow = false;
  /** Directories whose entries sync() must fsync. */
  private readonly dirtyDirs = new Set<string>();
  /** @internal Present when the vault encrypts at rest. */
  readonly keys: VaultKeys | undefined;

  /** `info.location` must be an absolute folder path; it is created on first use. */
  constructor(info: VaultInfo, options: FilesystemVaultOptions = {}) {
    if (!isAbsolute(info.location)) {
      throw new RubiconError(
        'ARGUMENTS_INVALID',
        `vault '${info.name}': location '${info.location}' is not an absolute folder path; give the full path of the vault folder`,
      );
    }
    this.keys = options.encryption ? deriveKeys(options.encryption.key) : undefined;
    this.info = this.keys ? { ...info, encrypted: true } : info;
    this.caps = { immutable: info.immutable, serverHash: null, replaceable: !info.immutable, offTarget: info.offTarget, encrypted: this.keys !== undefined };
    this.root = info.location;
    this.durability = options.durability ?? 'syncfs';
    this.objectsDir = join(this.root, 'objects');
    this.indexDir = join(this.root, 'index');
    this.tmpDir = join(this.root, 'tmp');
  }

  /** Absolute path where the object with this hash lives (whether or not it exists). */
  objectPath(sha256: string): string {
    this.assertHash(sha256);
    const name = this.keys ? sealedName(this.keys, sha256) : sha256;
    // objectsDir is already normalised and a name is hex: plain concatenation gives join()'s result at a fraction of its cost (once per file).
    return `${this.objectsDir}${sep}${name.slice(0, 2)}${sep}${name}`;
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.existingSize(sha256)) !== undefined;
  }

  /**
   * Size of the content (for an encrypting vault: the plaintext size its
   * sealed size stands for, -1 when no plaintext size gives it) and last
   * verification (ctime: set by the write and by markVerified) of a stored
   * object; undefined when absent.
   */
  async objectState(sha256: string): Promise<ObjectState | undefined> {
    return this.objectStateSync(sha256);
  }

  /** `objectState` without a promise (one stat): a delta asks it once per unchanged file. */
  objectStateSync(sha256: string): ObjectState | undefined {
    const path = this.objectPath(sha256);
    try {
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st?.isFile()) return undefined;
      return { size: this.keys ? (plainSize(st.size) ?? -1) : st.size, verifiedAtMs: st.ctimeMs };
    } catch (e) {
      throw this.ioError(`cannot look up object ${sha256}`, e);
    }
  }

  /** The vault's clock now: the ctime of a probe file written in tmp/ (the clock object ctimes come from). */
  async clockMs(): Promise<number> {
    await this.init();
    return this.probeClock();
  }

  /** The vault clock when this instance was first used (see `fenceMs`). */
  async openedAtMs(): Promise<number> {
    await this.init();
    return this.fenceMs;
  }

  /**
   * Records that the object was just read back and found good: a chmod to
   * its own mode, which sets its ctime to the vault clock's now. Changes no
   * content and no visible metadata.
   */
  async markVerified(sha256: string): Promise<void> {
    const path = this.objectPath(sha256);
    try {
      const st = statSync(path);
      chmodSync(path, st.mode & 0o7777);
    } catch (e) {
      throw this.ioError(`cannot mark object ${sha256} as checked`, e);
    }
  }

  /** One index entry, or undefined when this vault has none for the artifact (or it is unreadable: listArtifacts names that). */
  async getArtifactIndex(artifactId: string): Promise<ArtifactIndexEntry | undefined> {
    const schema = indexEntrySchema;
    try {
      const parsed = schema.parse(JSON.parse(await readFile(join(this.indexDir, indexFileName(artifactId)), 'utf8')));
      return parsed.artifactId === artifactId ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  /** Streams the object; the last iteration throws VAULT_CORRUPT if the content does not hash to `sha256`. */
  read(sha256: string): AsyncIterable<Uint8Array> {
    return this.readChunks(sha256, false);
  }

  /** As `read`, through one buffer that each chunk reuses (VaultReader.readTransient: valid until the next chunk). */
  readTransient(sha256: string): AsyncIterable<Uint8Array> {
    return this.readChunks(sha256, true);
  }

  private async *readChunks(sha256: string, reuse: boolean): AsyncIterable<Uint8Array> {
    const path = this.objectPath(sha256);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') throw this.missing(sha256);
      throw this.ioError(`cannot open object ${sha256}`, e);
    }
    if (this.keys) {
      yield* this.readSealed(fh, sha256);
      return;
    }
    try {
      const hash = createHash('sha256');
      // Buffers sized to the object (the consumer may keep each chunk, so they are not reused): a small object costs one small allocation, not 1 MiB.
      let left = (await fh.stat()).size;
      let shared: Buffer | undefined;
      for (;;) {
        const len = Math.max(1, Math.min(READ_CHUNK, left));
        const buf = reuse ? (shared ??= Buffer.allocUnsafe(len)) : Buffer.allocUnsafe(len);
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(buf, 0, len, null));
        } catch (e) {
          throw this.ioError(`cannot read object ${sha256}`, e);
        }
        if (n === 0) break;
        left -= n;
        const chunk = buf.subarray(0, n);
        hash.update(chunk);
        yield chunk;
      }
      const actual = hash.digest('hex');
      if (actual !== sha256) throw this.corrupt(sha256, actual);
    } finally {
      await fh.close();
    }
  }

  /** Decrypts and re-hashes; a chunk that does not authenticate is VAULT_CORRUPT. Closes fh. */
  private async *readSealed(fh: FileHandle, sha256: string): AsyncIterable<Uint8Array> {
    const keys = this.keys!;
    const chunks = async function* (v: FilesystemVault): AsyncIterable<Uint8Array> {
      for (;;) {
        const buf = Buffer.allocUnsafe(READ_CHUNK);
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(buf, 0, READ_CHUNK, null));
        } catch (e) {
          throw v.ioError(`cannot read object ${sha256}`, e);
        }
        if (n === 0) return;
        yield buf.subarray(0, n);
      }
    };
    try {
      const hash = createHash('sha256');
      try {
        for await (const plain of unseal(keys, chunks(this))) {
          hash.update(plain);
          yield plain;
        }
      } catch (e) {
        if (e instanceof UnsealError) {
          throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': encrypted object ${sha256} is corrupt (${e.message}); restore from another vault or capture the item again`, {
            details: { vault: this.info.name, object: sha256 },
          });
        }
        throw e;
      }
      const actual = hash.digest('hex');
      if (actual !== sha256) throw this.corrupt(sha256, actual);
    } finally {
      await fh.close();
    }
  }

  async check(sha256: string, expectedSize?: number): Promise<ObjectCheck> {
    if (this.keys && isSha256Hex(sha256)) return this.checkSealed(sha256, expectedSize);
    if (!isSha256Hex(sha256)) return { status: 'error', detail: `'${sha256}' is not a SHA-256 hex digest` };
    const path = this.objectPath(sha256);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return { status: 'missing', detail: `object ${sha256} is missing from vault '${this.info.name}'` };
      return { status: 'error', detail: `vault '${this.info.name}': cannot open object ${sha256}: ${errnoCode(e) ?? String(e)}` };
    }
    try {
      const size = (await fh.stat()).size;
      if (expectedSize !== undefined && size !== expectedSize) {
        return {
          status: 'size-invalid',
          detail: `object ${sha256} in vault '${this.info.name}' has ${size} bytes, expected ${expectedSize}`,
        };
      }
      const hash = createHash('sha256');
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
      }
      const actual = hash.digest('hex');
      if (actual !== sha256) {
        return {
          status: 'checksum-mismatch',
          detail: `object ${sha256} in vault '${this.info.name}' hashes to ${actual}`,
        };
      }
      return { status: 'ok' };
    } catch (e) {
      return { status: 'error', detail: `vault '${this.info.name}': cannot read object ${sha256}: ${errnoCode(e) ?? String(e)}` };
    } finally {
      await fh.close();
    }
  }

  private async checkSealed(sha256: string, expectedSize?: number): Promise<ObjectCheck> {
    const path = this.objectPath(sha256);
    const where = `object ${sha256} in vault '${this.info.name}'`;
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) return { status: 'missing', detail: `${where} is missing` };
    if (expectedSize !== undefined && st.size !== sealedSize(expectedSize)) {
      return { status: 'size-invalid', detail: `${where} has ${st.size} bytes on disk, expected ${sealedSize(expectedSize)} for ${expectedSize} bytes of content` };
    }
    try {
      for await (const _ of this.read(sha256)) {
        // read() decrypts and re-hashes
      }
      return { status: 'ok' };
    } catch (e) {
      if (e instanceof RubiconError && e.code === 'VAULT_CORRUPT') return { status: 'checksum-mismatch', detail: e.message };
      if (e instanceof RubiconError && e.code === 'VAULT_MISSING_OBJECT') return { status: 'missing', detail: `${where} is missing` };
      return { status: 'error', detail: `${where}: ${e instanceof Error ? e.message : String(e)}` };
    }
  }

  /**
   * Objects up to LAZY_MAX are held in memory (copied) until commit, so an
   * object the vault already has is never written again, not even to tmp/;
   * larger ones spill to a temp file as soon as they outgrow that.
   */
  async createWriter(): Promise<ObjectWriter> {
    await this.init();
    return new FsObjectWriter(this);
  }

  /** @internal Creates an exclusive temp file in tmp/. */
  createTemp(): { fd: number; path: string } {
    const path = join(this.tmpDir, `${randomUUID()}.tmp`);
    try {
      return { fd: openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600), path };
    } catch (e) {
      throw this.ioError(`cannot create a temp file in ${this.tmpDir}`, e);
    }
  }

  async putBytes(data: Uint8Array): Promise<string> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    const writer = await this.createWriter();
    try {
      await writer.write(data);
      await writer.commit(sha256);
    } catch (e) {
      await writer.abort();
      throw e;
    }
    return sha256;
  }

  /**
   * Idempotent. An existing entry for the same artifact with the same
   * manifest is kept as is (its capturedAt wins); a different manifest hash
   * (a redo after a crash that saw newer files) replaces it.
   */
  async putArtifactIndex(entry: ArtifactIndexEntry): Promise<void> {
    const schema = indexEntrySchema;
    const parsed = schema.safeParse(entry);
    if (!parsed.success) {
      throw new RubiconError(
        'INTERNAL',
        `vault '${this.info.name}': artifact index entry for '${entry.artifactId}' is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    }
    await this.init();
    const path = join(this.indexDir, indexFileName(entry.artifactId));
    // Kept from the current entry when the manifest is the same (the orchestrator's re-put does not know it).
    let verifiedSince = parsed.data.objectsVerifiedSince;
    try {
      const current = schema.parse(JSON.parse(await readFile(path, 'utf8')));
      if (current.manifestHash === entry.manifestHash && verifiedSince === undefined) verifiedSince = current.objectsVerifiedSince;
      // Same artifact, same manifest, and nothing new to add (the orchestrator
      // re-puts the entry with origin and source fingerprint after capture).
      const extra = (e: Partial<ArtifactIndexEntry>) => JSON.stringify([e.origin, e.independenceGroup, e.sourceFingerprint]);
      if (
        current.artifactId === entry.artifactId &&
        current.manifestHash === entry.manifestHash &&
        current.runId === entry.runId &&
        current.itemId === entry.itemId &&
        current.method === entry.method &&
        (entry.origin === undefined || extra(current) === extra(parsed.data)) &&
        (entry.objectsVerifiedSince === undefined || entry.objectsVerifiedSince === current.objectsVerifiedSince) &&
        (entry.sig === undefined || entry.sig === current.sig)
      ) {
        this.markDirtyFile(path);
        return;
      }
    } catch {
      // absent or unreadable: (re)write it below
    }
    const doc = {
      artifactId: entry.artifactId,
      runId: entry.runId,
      itemId: entry.itemId,
      method: entry.method,
      manifestHash: entry.manifestHash,
      capturedAt: entry.capturedAt,
      ...(parsed.data.origin ? { origin: parsed.data.origin } : {}),
      ...(parsed.data.independenceGroup ? { independenceGroup: parsed.data.independenceGroup } : {}),
      ...(parsed.data.sourceFingerprint ? { sourceFingerprint: parsed.data.sourceFingerprint } : {}),
      ...(verifiedSince !== undefined ? { objectsVerifiedSince: verifiedSince } : {}),
      ...(parsed.data.sig !== undefined ? { sig: parsed.data.sig, ...(parsed.data.keyId !== undefined ? { keyId: parsed.data.keyId } : {}) } : {}),
    };
    const tmpPath = join(this.tmpDir, `${randomUUID()}.index.tmp`);
    try {
      const fh = await open(tmpPath, 'wx', 0o600);
      try {
        await fh.writeFile(`${JSON.stringify(doc, null, 2)}\n`);
        if (this.durability === 'commit') await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmpPath, path);
    } catch (e) {
      await unlink(tmpPath).catch(() => undefined);
      throw this.ioError(`cannot write the index entry for artifact '${entry.artifactId}'`, e);
    }
    if (this.durability !== 'commit') this.addDirtyFile(path);
    this.dirtyDirs.add(this.indexDir);
  }

  /**
   * Write-once (Vault.putRunDocument): the document is written to a temp
   * file, made durable as the vault's durability says, and linked under its
   * name; a name already there is kept. Plain, not sealed: run documents
   * hold hashes and signatures, never data.
   */
  async putRunDocument(runId: string, name: string, data: Uint8Array): Promise<void> {
    const rel = runDocKey(runId, name);
    await this.init();
    const file = join(this.root, rel);
    const dir = dirname(file);
    const tmpPath = join(this.tmpDir, `${randomUUID()}.run.tmp`);
    try {
      await mkdir(dir, { recursive: true });
      const fh = await open(tmpPath, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        if (this.durability === 'commit') await fh.sync();
      } finally {
        await fh.close();
      }
      try {
        await link(tmpPath, file);
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST') throw e;
      }
    } catch (e) {
      throw this.ioError(`cannot write ${rel}`, e);
    } finally {
      await unlink(tmpPath).catch(() => undefined);
    }
    if (this.durability !== 'commit') this.addDirtyFile(file);
    this.dirtyDirs.add(dir);
    this.dirtyDirs.add(dirname(dir));
    this.dirtyDirs.add(this.root);
  }

  async listRunDocuments(runId: string): Promise<RunDocument[]> {
    const dir = join(this.root, runDocsFolder(runId));
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw this.ioError(`cannot list ${dir}`, e);
    }
    const out: RunDocument[] = [];
    for (const f of names.sort()) {
      const name = runDocName(f);
      if (!name) continue;
      const where = join(dir, f);
      try {
        out.push({ name, where, data: await readFile(where) });
      } catch (e) {
        throw this.ioError(`cannot read ${where}`, e);
      }
    }
    return out;
  }

  /** Newest first by capturedAt, then by artifact id. Throws VAULT_CORRUPT naming an unreadable index file. */
  async listArtifacts(options: { onBad?: (file: string, reason: string) => void } = {}): Promise<ArtifactIndexEntry[]> {
    let names: string[];
    try {
      names = await readdir(this.indexDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw this.ioError(`cannot list ${this.indexDir}`, e);
    }
    const entries: ArtifactIndexEntry[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const path = join(this.indexDir, name);
      let parsed: ArtifactIndexEntry;
      try {
        parsed = indexEntrySchema.parse(JSON.parse(await readFile(path, 'utf8')));
      } catch (e) {
        if (options.onBad) {
          options.onBad(path, e instanceof Error ? e.message.split('\n')[0]!.slice(0, 200) : 'unreadable');
          continue;
        }
        throw new RubiconError(
          'VAULT_CORRUPT',
          `vault '${this.info.name}': artifact index file ${path} is not a valid index entry; move it aside and re-run the capture of that artifact`,
          { cause: e, details: { vault: this.info.name, file: path } },
        );
      }
      entries.push(parsed);
    }
    return entries.sort((a, b) =>
      a.capturedAt !== b.capturedAt ? (a.capturedAt < b.capturedAt ? 1 : -1) : a.artifactId < b.artifactId ? -1 : a.artifactId > b.artifactId ? 1 : 0,
    );
  }

  /** Durability barrier: every object, manifest and index entry written (or re-used) before the call is on stable storage when it resolves. */
  async sync(): Promise<void> {
    const files = [...this.dirtyFiles];
    const dirs = [...this.dirtyDirs];
    const overflow = this.dirtyOverflow;
    if (files.length === 0 && dirs.length === 0 && !overflow) return;
    // A few files (a small delta, the index entry after the objects): fsync them; many: one syncfs.
    const flushAll = this.durability === 'syncfs' && (overflow || files.length + dirs.length > FSYNC_EACH_MAX);
    this.dirtyOverflow = false;
    if (!(flushAll && (await syncFilesystem(this.root)))) {
      if (overflow) {
        // The file list was dropped (syncfs mode on Linux) and `sync -f` is not there: never claim durability.
        this.dirtyOverflow = true;
        throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot flush ${this.root}: coreutils 'sync -f' is missing; install coreutils >= 8.24 or use durability 'batch'`);
      }
      await runBounded(files, SYNC_PARALLELISM, async (path) => {
        await fsyncPath(path).catch((e: unknown) => {
          throw this.ioError(`cannot fsync ${path}`, e);
        });
      });
      // Folders too: an entry is durable only when its folder is (all done before sync() resolves, so their order does not matter).
      if (process.platform !== 'win32') {
        // folders cannot be fsync'd on Windows; NTFS journals renames
        await runBounded(dirs, SYNC_PARALLELISM, async (dir) => {
          await fsyncPath(dir).catch((e: unknown) => {
            throw this.ioError(`cannot fsync folder ${dir}`, e);
          });
        });
      }
    }
    for (const f of files) this.dirtyFiles.delete(f);
    for (const d of dirs) this.dirtyDirs.delete(d);
  }

  /**
   * Removes temp files older than `olderThanMs` (left by a crash): everything
   * in tmp/, and the copy workers' `.*.tmp` files inside objects/<2 hex>/.
   * Never touches objects (their names are 64 hex digits) or index entries.
   * Returns how many were removed.
   */
  async removeStaleTemp(olderThanMs = 60 * 60 * 1000): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = await this.removeOldFiles(this.tmpDir, cutoff, () => true);
    let shards: string[];
    try {
      shards = await readdir(this.objectsDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return removed;
      throw this.ioError(`cannot list ${this.objectsDir}`, e);
    }
    for (const shard of shards) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      removed += await this.removeOldFiles(join(this.objectsDir, shard), cutoff, (name) => name.startsWith('.') && name.endsWith('.tmp'));
    }
    return removed;
  }

  private async removeOldFiles(dir: string, cutoff: number, pick: (name: string) => boolean): Promise<number> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return 0;
      throw this.ioError(`cannot list ${dir}`, e);
    }
    let removed = 0;
    for (const name of names) {
      if (!pick(name)) continue;
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < cutoff) {
        await unlink(path).catch(() => undefined);
        removed++;
      }
    }
    return removed;
  }

  // ---- internal, used by the capture's copy workers (src/files/copy-worker.ts) ----

  /**
   * @internal Makes sure the vault folders exist and says where a copy worker
   * writes: temp files in `tmpDir`, renamed into `objectsDir/<2 hex>/<sha>`,
   * fsync'd before the rename when `fsyncEach` ('commit' durability). The
   * worker must report every object it placed or found through notePlaced,
   * so that sync() covers it.
   */
  async workerTarget(): Promise<{ objectsDir: string; tmpDir: string; fsyncEach: boolean; fenceMs: number; replaceable: boolean }> {
    await this.init();
    return { objectsDir: this.objectsDir, tmpDir: this.tmpDir, fsyncEach: this.durability === 'commit', fenceMs: this.fenceMs, replaceable: this.caps.replaceable };
  }

  /**
   * @internal Records what a copy worker did for one object, exactly as
   * commit() would have: `placed` (renamed into place) or found already
   * stored with the right size; `shardCreated` when it created objects/<2 hex>.
   */
  notePlaced(sha256: string, placed: boolean, shardCreated: boolean): void {
    this.assertHash(sha256);
    if (this.keys) throw new RubiconError('INTERNAL', `vault '${this.info.name}' encrypts: copy workers write plain objects and must not be used for it`);
    // Once per file: the shard's path string is built once (a Set lookup of a string hashes it each time it is new).
    const prefix = sha256.slice(0, 2);
    let shard = this.shardPaths.get(prefix);
    if (shard === undefined) {
      shard = `${this.objectsDir}${sep}${prefix}`;
      this.shardPaths.set(prefix, shard);
    }
    if (shardCreated) this.dirtyDirs.add(this.objectsDir);
    if (!placed) {
      if (!this.dirtyOverflow) this.markDirtyFile(`${shard}${sep}${sha256}`);
      return;
    }
    this.knownShards.add(shard);
    if (this.durability !== 'commit' && !this.dirtyOverflow) this.addDirtyFile(`${shard}${sep}${sha256}`);
    this.dirtyDirs.add(shard);
  }

  // ---- internal, used by FsObjectWriter ----

  /**
   * @internal Moves a finished temp file into place. An object already stored
   * under the name is kept when it was verified since this vault was opened
   * ('present') or when it hashes right ('verified'); otherwise the temp file
   * replaces it ('repaired', fsync'd first: a good copy must not be swapped
   * for one that is not yet durable), unless the vault cannot replace
   * ('unrepairable'). Closes `fd` in every case.
   */
  async place(fd: number, tmpPath: string, sha256: string, size: number): Promise<ObjectPut> {
    let synced = this.durability === 'commit';
    try {
      if (synced) await fsyncFd(fd);
      const found = this.existing(sha256);
      if (found !== undefined) {
        const outcome = found.size === size && (found.ctimeMs > this.fenceMs || (await this.hashesTo(sha256, size))) ? (found.ctimeMs > this.fenceMs ? 'present' : 'verified') : undefined;
        if (outcome !== undefined || !this.caps.replaceable) {
          closeSync(fd);
          fd = -1;
          unlinkSync(tmpPath);
          if (outcome === 'verified') await this.markVerified(sha256);
          this.markDirtyFile(this.objectPath(sha256));
          return outcome ?? 'unrepairable';
        }
        if (!synced) {
          await fsyncFd(fd);
          synced = true;
        }
        closeSync(fd);
        fd = -1;
        this.moveIntoPlace(tmpPath, sha256);
        return 'repaired';
      }
    } finally {
      if (fd >= 0) closeSync(fd);
    }
    this.moveIntoPlace(tmpPath, sha256);
    return 'written';
  }

  /** @internal Stores a held (small) object; an existing one is kept, checked against the held bytes, or replaced, as in place(). */
  async placeHeld(held: readonly Buffer[], sha256: string, size: number): Promise<ObjectPut> {
    const found = this.existing(sha256);
    let outcome: ObjectPut = 'written';
    if (found !== undefined) {
      if (found.size === size && found.ctimeMs > this.fenceMs) outcome = 'present';
      // Sealed bytes differ on every write (a random nonce prefix): an encrypting vault decrypts and re-hashes the stored copy instead.
      else if (found.size === size && (this.keys ? await this.hashesTo(sha256, size) : this.equalsHeld(sha256, held, size))) outcome = 'verified';
      else outcome = this.caps.replaceable ? 'repaired' : 'unrepairable';
      if (outcome !== 'repaired') {
        if (outcome === 'verified') await this.markVerified(sha256);
        this.markDirtyFile(this.objectPath(sha256));
        return outcome;
      }
    }
    const { fd, path } = this.createTemp();
    try {
      try {
        for (const b of held) {
          let off = 0;
          while (off < b.byteLength) off += writeSync(fd, b, off, b.byteLength - off);
        }
        if (this.durability === 'commit' || outcome === 'repaired') await fsyncFd(fd);
      } finally {
        closeSync(fd);
      }
      this.moveIntoPlace(path, sha256);
    } catch (e) {
      try {
        unlinkSync(path);
      } catch {
        // moved or gone
      }
      throw e;
    }
    return outcome;
  }

  /** Whether the stored object holds exactly `held` (read with synchronous calls: small objects only). */
  private equalsHeld(sha256: string, held: readonly Buffer[], size: number): boolean {
    const want = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, size);
    const got = Buffer.allocUnsafe(size);
    let fd: number;
    try {
      fd = openSync(this.objectPath(sha256), 'r');
    } catch (e) {
      throw this.ioError(`cannot open object ${sha256}`, e);
    }
    try {
      let n = 0;
      while (n < size) {
        const r = readSync(fd, got, n, size - n, null);
        if (r === 0) return false;
        n += r;
      }
      return got.equals(want);
    } finally {
      closeSync(fd);
    }
  }

  /** Whether the stored object is `size` bytes (as stored: sealed for an encrypting vault) whose content hashes to its name (a full read). */
  private async hashesTo(sha256: string, size: number): Promise<boolean> {
    if (this.keys) return this.existing(sha256)?.size === size && (await this.check(sha256)).status === 'ok';
    return (await this.check(sha256, size)).status === 'ok';
  }

  private moveIntoPlace(tmpPath: string, sha256: string): void {
    const finalPath = this.objectPath(sha256);
    const shard = dirname(finalPath);
    if (!this.knownShards.has(shard)) {
      const created = mkdirSync(shard, { recursive: true });
      if (created !== undefined) this.dirtyDirs.add(this.objectsDir);
      this.knownShards.add(shard);
    }
    renameSync(tmpPath, finalPath);
    if (this.durability !== 'commit') this.addDirtyFile(finalPath);
    this.dirtyDirs.add(shard);
  }

  private markDirtyFile(path: string): void {
    // In 'commit' mode a file was fsync'd before it got its name; one found in
    // place may still sit in the page cache (written by a process that then
    // crashed), so sync() flushes it either way.
    this.addDirtyFile(path);
  }

  private addDirtyFile(path: string): void {
    if (this.dirtyOverflow) return;
    if (this.durability === 'syncfs' && process.platform === 'linux' && this.dirtyFiles.size >= FSYNC_EACH_MAX) {
      // sync() will flush the whole filesystem: no need to remember which files.
      this.dirtyOverflow = true;
      this.dirtyFiles.clear();
      return;
    }
    this.dirtyFiles.add(path);
  }

  private async existingSize(sha256: string): Promise<number | undefined> {
    return this.existing(sha256)?.size;
  }

  private existing(sha256: string): { size: number; ctimeMs: number } | undefined {
    try {
      const st = statSync(this.objectPath(sha256), { throwIfNoEntry: false });
      return st?.isFile() ? { size: st.size, ctimeMs: st.ctimeMs } : undefined;
    } catch (e) {
      throw this.ioError(`cannot look up object ${sha256}`, e);
    }
  }

  /** ctime of a fresh probe file in tmp/ (created and removed). */
  private probeClock(): number {
    const { fd, path } = this.createTemp();
    try {
      return fstatSync(fd).ctimeMs;
    } finally {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // gone already
      }
    }
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      try {
        const created = await mkdir(this.root, { recursive: true });
        await mkdir(this.objectsDir, { recursive: true });
        await mkdir(this.indexDir, { recursive: true });
        await mkdir(this.tmpDir, { recursive: true });
        this.fenceMs = this.probeClock();
        this.dirtyDirs.add(this.root);
        if (created !== undefined) this.dirtyDirs.add(join(this.root, '..'));
      } catch (e) {
        this.ready = undefined;
        throw this.ioError(`cannot create the vault folders under ${this.root}`, e);
      }
    })();
    return this.ready;
  }

  private assertHash(sha256: string): void {
    if (!isSha256Hex(sha256)) {
      throw new RubiconError('ARGUMENTS_INVALID', `vault '${this.info.name}': '${sha256}' is not a lower-case hex SHA-256 digest`);
    }
  }

  private missing(sha256: string): RubiconError {
    return new RubiconError(
      'VAULT_MISSING_OBJECT',
      `vault '${this.info.name}' has no object ${sha256} (expected at ${this.objectPath(sha256)}); restore from another vault or capture the item again`,
      { details: { vault: this.info.name, object: sha256 } },
    );
  }

  private corrupt(sha256: string, actual: string): RubiconError {
    return new RubiconError(
      'VAULT_CORRUPT',
      `vault '${this.info.name}': object ${sha256} is corrupt (its content hashes to ${actual}); this copy cannot be trusted: restore from another vault or capture the item again`,
      { details: { vault: this.info.name, object: sha256, actual } },
    );
  }

  /** @internal */
  ioError(what: string, e: unknown): RubiconError {
    if (e instanceof RubiconError) return e;
    return new RubiconError('VAULT_IO', `vault '${this.info.name}': ${what}: ${errnoCode(e) ?? String(e)}; check the vault folder ${this.root} (space, permissions)`, {
      cause: e,
      details: { vault: this.info.name },
    });
  }
}

class FsObjectWriter implements ObjectWriter {
  private readonly vault: FilesystemVault;
  /** Chunks held in memory (copies) while the object is small. */
  private held: Buffer[] = [];
  private temp: { fd: number; path: string } | undefined;
  private size = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  /** Encrypting vault: plaintext goes in, only sealed bytes reach memory held for commit or the temp file. */
  private readonly sealer: Sealer | undefined;

  constructor(vault: FilesystemVault) {
    this.vault = vault;
    this.sealer = vault.keys ? new Sealer(vault.keys) : undefined;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.state !== 'open') throw new RubiconError('INTERNAL', `write after ${this.state} on a writer of vault '${this.vault.info.name}'`);
    if (!this.sealer) return this.writeStored(chunk);
    for (const piece of this.sealer.push(chunk)) await this.writeStored(piece);
  }

  /** Writes bytes as they are stored (sealed ones for an encrypting vault). */
  private async writeStored(chunk: Uint8Array): Promise<void> {
    if (this.temp === undefined && this.size + chunk.byteLength <= LAZY_MAX) {
      const copy = Buffer.allocUnsafe(chunk.byteLength); // a copy: the caller reuses its buffer once write resolved
      copy.set(chunk);
      this.held.push(copy);
      this.size += chunk.byteLength;
      return;
    }
    try {
      if (this.temp === undefined) {
        this.temp = this.vault.createTemp();
        for (const b of this.held) await writeAll(this.temp.fd, b);
        this.held = [];
      }
      await writeAll(this.temp.fd, chunk);
    } catch (e) {
      throw this.vault.ioError(`cannot write ${this.temp?.path ?? 'a temp file'}`, e);
    }
    this.size += chunk.byteLength;
  }

  async commit(sha256: string): Promise<ObjectPut> {
    if (this.state !== 'open') throw new RubiconError('INTERNAL', `commit after ${this.state} on a writer of vault '${this.vault.info.name}'`);
    this.vault.objectPath(sha256); // validates the hash before anything moves
    if (this.sealer) for (const piece of this.sealer.final()) await this.writeStored(piece);
    this.state = 'committed';
    const temp = this.temp;
    try {
      if (temp === undefined) return await this.vault.placeHeld(this.held, sha256, this.size);
      return await this.vault.place(temp.fd, temp.path, sha256, this.size);
    } catch (e) {
      if (temp) {
        try {
          unlinkSync(temp.path);
        } catch {
          // already moved or gone
        }
      }
      throw this.vault.ioError(`cannot store object ${sha256}`, e);
    } finally {
      this.held = [];
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.held = [];
    if (!this.temp) return;
    try {
      closeSync(this.temp.fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(this.temp.path);
    } catch {
      // already gone
    }
  }
}

/** Small writes synchronously (cheaper than a thread-pool round trip), large ones on the pool. */
async function writeAll(fd: number, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    off += data.byteLength - off <= SYNC_WRITE_MAX ? writeSync(fd, data, off, data.byteLength - off) : await writeFd(fd, data, off, data.byteLength - off);
  }
}

function writeFd(fd: number, data: Uint8Array, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => writeCb(fd, data, offset, length, null, (e, n) => (e ? reject(e) : resolve(n))));
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsyncCb(fd, (e) => (e ? reject(e) : resolve())));
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * syncfs(2) of the filesystem holding `path`, through coreutils `sync -f`
 * (Node has no binding). Returns false when that is not available here, so
 * the caller falls back to per-file fsync; a failing flush is an error.
 */
let syncfsAvailable: boolean | undefined = process.platform === 'linux' ? undefined : false;
async function syncFilesystem(path: string): Promise<boolean> {
  if (syncfsAvailable === false) return false;
  // Loaded here, not with the module: a reader (drift scan, landing, proof) never flushes, and child_process costs a fresh process 4-8 ms.
  const { execFile } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    execFile('sync', ['-f', path], { timeout: 10 * 60 * 1000 }, (e, _stdout, stderr) => {
      if (!e) {
        syncfsAvailable = true;
        resolve(true);
      } else if (syncfsAvailable === undefined && (errnoCode(e) === 'ENOENT' || /invalid option|unrecognized option/.test(stderr))) {
        syncfsAvailable = false;
        resolve(false);
      } else reject(new RubiconError('VAULT_IO', `flushing the filesystem of ${path} failed (sync -f): ${stderr.trim() || String(e)}`, { cause: e }));
    });
  });
}
