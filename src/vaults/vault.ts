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
export interface ObjectWriter {
  write(chunk: Uint8Array): Promise<void>;
  /** Make the object visible under `sha256` (the hash the caller computed while writing). */
  commit(sha256: string): Promise<void>;
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
  createWriter(): Promise<ObjectWriter>;
  /** Convenience: store a small buffer (manifests). Returns its sha256. */
  putBytes(data: Uint8Array): Promise<string>;
  /** Record an artifact in the vault's index (idempotent). */
  putArtifactIndex(entry: ArtifactIndexEntry): Promise<void>;
  /** Durability barrier: everything written before resolves is on stable storage. */
  sync(): Promise<void>;
}
