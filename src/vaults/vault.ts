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
  /** Reads the whole object and grades it; never throws for a bad copy. */
  check(sha256: string, expectedSize?: number): Promise<ObjectCheck>;
  /** Artifact index entries, newest first. */
  listArtifacts(): Promise<ArtifactIndexEntry[]>;
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
}
