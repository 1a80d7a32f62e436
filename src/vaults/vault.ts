import type { CopyStatus, VaultInfo } from '../core/types.ts';

/**
 * A place where copies of artifacts live. Objects are content-addressed by
 * their SHA-256 (hex). Artifact index documents name an artifact's manifest
 * object so a vault can be read without the journal (`rubicon verify`,
 * the proving ground).
 *
 * Contracts:
 * - put is idempotent: writing an object that already exists is a no-op.
 * - every read checks the content hash; a mismatch is reported as
 *   VAULT_CORRUPT naming the vault and the object, never returned as data.
 * - nothing is durable until sync() resolved.
 */
/**
 * What the vault capabilities are (the gate and the capture read them; a
 * vault kind states them, nobody probes for them):
 * - `immutable`: stored copies cannot be altered or deleted during retention (WORM).
 * - `serverHash`: the hash the vault computes itself on upload, if any.
 * - `replaceable`: a damaged object can be replaced under its name (false for WORM).
 * - `offTarget`: the vault does not live on the target.
 * - `encrypted`: stored at rest encrypted by the vault.
 */
export interface VaultCaps {
  immutable: boolean;
  serverHash: 'sha256' | 'md5' | 'crc64' | null;
  replaceable: boolean;
  offTarget: boolean;
  encrypted: boolean;
}

/**
 * What a commit found: `written` (new object), `present` (already there and
 * verified since this vault was opened), `verified` (already there, read back
 * and found equal), `repaired` (already there but damaged: replaced),
 * `unrepairable` (already there, damaged, and the vault cannot replace it).
 */
export type ObjectPut = 'written' | 'present' | 'verified' | 'repaired' | 'unrepairable';

/** What a vault knows of a stored object without reading it. */
export interface ObjectState {
  size: number;
  /** Vault clock (ms) of the last write or read-back check of the object. */
  verifiedAtMs: number;
}

export interface ObjectWriter {
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Make the object visible under `sha256` (the hash the caller computed
   * while writing). An object already stored under that name is checked
   * against the bytes written unless it was verified since the vault was
   * opened; a damaged one is replaced where the vault allows it. Vaults that
   * cannot tell return nothing.
   */
  commit(sha256: string): Promise<ObjectPut | void>;
  /** Drop what was written. Safe to call after a failed write. */
  abort(): Promise<void>;
}

export interface ObjectCheck {
  status: CopyStatus;
  detail?: string;
}

/** The artifact index document: how a vault names its artifacts without the journal. */
export interface ArtifactIndexEntry {
  artifactId: string;
  runId: string;
  itemId: string;
  method: string;
  manifestHash: string;
  capturedAt: string;
  /** Added by the orchestrator so `rubicon verify` can prove from the vault alone. */
  origin?: 'rubicon' | 'vendor';
  independenceGroup?: string;
  sourceFingerprint?: import('../core/types.ts').Fingerprint;
  /** Ed25519 signature by the run's key over the fields that name the artifact (src/trust/index-entry.ts), and the key's id. */
  sig?: string;
  keyId?: string;
  /**
   * Vault clock (ISO) from which every object the manifest lists was written
   * or read back and checked in this vault. Set per vault by the capture; a
   * delta based on this artifact trusts objects verified since then without
   * reading them, and checks the older ones (docs/files.md).
   */
  objectsVerifiedSince?: string;
}

export interface VaultReader {
  readonly info: VaultInfo;
  has(sha256: string): Promise<boolean>;
  /** Streams the object; throws VAULT_CORRUPT at the end if the content does not hash to sha256, VAULT_MISSING_OBJECT if absent. */
  read(sha256: string): AsyncIterable<Uint8Array>;
  /**
   * Optional: like `read` (same checks, same errors), but each chunk is only
   * valid until the next one is asked for (one buffer, reused), for a
   * consumer that uses every chunk at once (manifest parsing): a long object
   * then leaves no trail of buffers for the garbage collector.
   */
  readTransient?(sha256: string): AsyncIterable<Uint8Array>;
  /** Reads the whole object and grades it; never throws for a bad copy. */
  check(sha256: string, expectedSize?: number): Promise<ObjectCheck>;
  /**
   * Optional (azure-blob): grades blobs an artifact keeps in this vault
   * outside the object store (SQL Server's URL stripes, src/vaults/attached.ts)
   * from the service's facts against the recorded size, ETag and Content-MD5;
   * names the first bad blob. Never throws for a bad blob.
   */
  checkBlobs?(blobs: readonly import('./recorded-blob.ts').RecordedBlob[]): Promise<ObjectCheck>;
  /** Artifact index entries, newest first. */
  /**
   * Artifact index entries, newest first. With `onBad`, an index file that
   * cannot be read or parsed is reported there (naming the file) and
   * skipped, instead of failing the whole listing.
   */
  listArtifacts(options?: { onBad?: (file: string, reason: string) => void }): Promise<ArtifactIndexEntry[]>;
}

export interface Vault extends VaultReader {
  readonly caps: VaultCaps;
  createWriter(): Promise<ObjectWriter>;
  /** Convenience: store a small buffer (manifests). Returns its sha256. */
  putBytes(data: Uint8Array): Promise<string>;
  /** Record an artifact in the vault's index (idempotent). */
  putArtifactIndex(entry: ArtifactIndexEntry): Promise<void>;
  /** Durability barrier: everything written before resolves is on stable storage. */
  sync(): Promise<void>;
  /**
   * Optional (a vault that has them lets a delta skip reading what it can
   * trust): the object's size and last verification time, undefined when
   * absent; the vault's clock now; mark an object as just checked good; and
   * read one index entry.
   */
  objectState?(sha256: string): Promise<ObjectState | undefined>;
  clockMs?(): Promise<number>;
  /** The vault clock when this instance started: everything it wrote or checked since has a later verification time. */
  openedAtMs?(): Promise<number>;
  markVerified?(sha256: string): Promise<void>;
  getArtifactIndex?(artifactId: string): Promise<ArtifactIndexEntry | undefined>;
  /**
   * Optional: small documents a run leaves beside its artifacts (the journal
   * heads, src/run/heads.ts), kept apart from the artifact index so nothing
   * reads them as artifacts. `name` is [a-z0-9-]+. Write-once: a name
   * already stored is kept as it is (WORM-friendly; the same head written
   * twice is the same bytes). Durable after sync().
   */
  putRunDocument?(runId: string, name: string, data: Uint8Array): Promise<void>;
  /** Every document stored for the run, with where it is (file, blob, snapshot) for messages. Empty when none. */
  listRunDocuments?(runId: string): Promise<RunDocument[]>;
}

export interface RunDocument {
  name: string;
  where: string;
  data: Uint8Array;
}

/**
 * What a vault can do, read from the vault itself (never trusted from the
 * runbook): the gate's copy rules use these facts.
 */
export interface VaultCaps {
  /** Copies cannot be altered or deleted during retention (WORM), as the vault itself reports. */
  immutable: boolean;
  /** A hash the vault computes itself over what it stores, or null. */
  serverHash: 'sha256' | 'md5' | 'crc64' | null;
  /** A damaged copy can be replaced in place. */
  replaceable: boolean;
  /** The vault does not live on the target (the crossing cannot destroy it). */
  offTarget: boolean;
  /** Content is encrypted at rest by the vault (restic: always). */
  encrypted: boolean;
}

/**
 * What a vault gives a machine so that a tool there can write or read it,
 * for a limited time: a key the vault host accepts until `expiresAt`, the
 * files the tool needs on the machine (all under `dir`, mode 0600), and the
 * tool-specific settings (an ssh command, a repository, a password file).
 * Never holds a secret's value: only where the machine finds it.
 */
export interface Grant {
  id: string;
  vault: string;
  machine: string;
  mode: 'read' | 'write';
  expiresAt: string;
  /** Folder on the machine holding the grant's files; removed by revoke. */
  dir: string;
  /**
   * ssh command for rsync -e (without the host: rsync adds it) or the whole
   * restic sftp.command (with `-l user -s host sftp`). No secrets: a key file path.
   */
  sshCommand: string;
  /** Environment for the tool (paths only, e.g. RESTIC_PASSWORD_FILE). */
  env: Record<string, string>;
  /**
   * Where the tool reaches the vault: for rsync the folder of the vault's
   * trees as the tool must name it (`user@host:/` when sshd forces rrsync
   * into that folder, else `user@host:/path/trees/`); for restic the
   * repository, `sftp:user@host:/path`.
   */
  location: string;
}

export interface GrantOptions {
  beforeKey?: (g: { id: string; dir: string; expiresAt: string }) => void;
  /**
   * The grant gives access but not the vault's own secret (restic: no
   * `password` file in the grant folder). The caller puts a secret it got
   * elsewhere at the path the grant's env names (the proving ground: the
   * password restored from its captured secret item, docs/vaults.md).
   */
  withoutSecret?: boolean;
}

/** A step runner as vaults see it (src/run/steps.ts). */
export type VaultStepRun = (
  machine: import('../machines/machine.ts').Machine,
  key: import('../machines/machine.ts').StepKey,
  cmd: import('../machines/machine.ts').Command,
  what: string,
  options?: import('../machines/machine.ts').ExecOptions,
) => Promise<import('../machines/machine.ts').StepResult>;

/**
 * A vault whose copies are written and read by tools on the machines where
 * the data is (rsync to an SFTP vault host, restic to a repository), never
 * streamed through the orchestrator. Its small documents (manifests, index
 * entries) go through the Vault interface (read/putBytes/putArtifactIndex);
 * createWriter is refused.
 *
 * Contracts:
 * - ingest runs the tool on `from` through a write grant and returns where
 *   the copy is (`locator`); it does not trust the tool's exit code: it
 *   checks the tool's own report against the manifest built on `from`.
 *   Idempotent for the same artifact id (a redo replaces its own partial copy).
 * - checkCopy reads the copy back where it is stored (hashes computed on the
 *   vault host; restic check --read-data) and grades it; never throws for a
 *   bad copy. A vault may verify its whole store once per vault object and
 *   reuse that verdict for every artifact (restic: check --read-data is
 *   repository-wide); make a new object to read it again.
 * - restoreTo puts the copy's files under `dest` on the machine through a
 *   read grant; the caller verifies them against the manifest there.
 */
export interface ToolVault extends Vault {
  readonly tool: 'rsync' | 'restic';
  readonly caps: VaultCaps;
  /**
   * `beforeKey` is called once the grant's files are on the machine and
   * before its key is authorized on the vault host (the journal records it
   * there, so no live key exists that the journal does not know of).
   */
  grant(to: import('../machines/machine.ts').Machine, mode: 'read' | 'write', ttlMs: number, o?: GrantOptions): Promise<Grant>;
  /** Removes the grant's key from the vault host, then its folder on `on` (default: the machine this object granted to). Idempotent. */
  revoke(grant: Grant, on?: import('../machines/machine.ts').Machine): Promise<void>;
  ingest(
    run: VaultStepRun,
    from: import('../machines/machine.ts').Machine,
    grant: Grant,
    o: {
      artifactId: string;
      stepId: string;
      /** Absolute folder on `from`. */
      srcDir: string;
      /** Relative paths under srcDir: exactly the files of the manifest. */
      files: readonly string[];
      /**
       * The manifest's entries (built on `from`), in the same order as `files`:
       * the tool's report and the copy are checked against them (sizes,
       * SHA-256 where the vault host can hash).
       */
      entries: readonly import('../core/types.ts').ManifestEntry[];
      /** A previous copy of the same item in this vault (delta: only what changed moves). */
      base?: { artifactId: string; locator: string };
      signal?: AbortSignal;
    },
  ): Promise<{ locator: string; tool: string; report: { files: number; bytes: number } }>;
  checkCopy(
    run: VaultStepRun,
    o: {
      artifactId: string;
      locator: string;
      entries: readonly import('../core/types.ts').ManifestEntry[];
      stepId: string;
      /** The artifact's source folder (Artifact.sourceDir); restic copies are compared under it. Optional: the vault records it too. */
      srcDir?: string;
      /** Also check the artifact's manifest document where it is stored (a copy is provable from the vault alone only with it). */
      manifestHash?: string;
    },
  ): Promise<ObjectCheck>;
  /**
   * Optional: an artifact's manifest and its index entry stored together,
   * in one call to the vault host where the vault can (restic: one
   * snapshot; sftp: one write of both files). The same contracts as
   * putBytes followed by putArtifactIndex. Returns the manifest's SHA-256.
   */
  putArtifactDocuments?(manifest: Uint8Array, entry: ArtifactIndexEntry): Promise<string>;
  restoreTo(
    run: VaultStepRun,
    on: import('../machines/machine.ts').Machine,
    grant: Grant,
    o: { artifactId: string; locator: string; dest: string; stepId: string; srcDir: string; signal?: AbortSignal },
  ): Promise<void>;
}

export function isToolVault(v: Vault): v is ToolVault {
  return 'ingest' in v && typeof (v as ToolVault).ingest === 'function';
}
