import type { ArtifactIndexEntry } from '../vaults/vault.ts';
import { signingBytes } from './canonical.ts';
import type { Signer, Verifier } from './keys.ts';

/**
 * Signed artifact index entries: a vault can be read without the journal
 * (`rubicon verify`, the proving ground), so what its index says about an
 * artifact (which manifest, which item, whose method, when) must be
 * authenticated too. The signature covers every field that names the
 * artifact, not the vault-local `objectsVerifiedSince`, so one signature
 * holds in every vault.
 */
export const INDEX_SIGNATURE_DOMAIN = 'rubicon/index/v1';

function signedPart(e: ArtifactIndexEntry): Record<string, unknown> {
  return {
    artifactId: e.artifactId,
    runId: e.runId,
    itemId: e.itemId,
    method: e.method,
    manifestHash: e.manifestHash,
    capturedAt: e.capturedAt,
    origin: e.origin ?? null,
    independenceGroup: e.independenceGroup ?? null,
    sourceFingerprint: e.sourceFingerprint ?? null,
  };
}

export function signIndexEntry(e: ArtifactIndexEntry, signer: Signer): ArtifactIndexEntry {
  return { ...e, keyId: signer.keyId, sig: signer.sign(signingBytes(INDEX_SIGNATURE_DOMAIN, signedPart(e))).toString('base64') };
}

/** True only when the entry carries a valid signature by this verifier's key over its naming fields. Never throws. */
export function indexEntrySigned(e: ArtifactIndexEntry, verifier: Verifier): boolean {
  if (typeof e.sig !== 'string') return false;
  try {
    const sig = Buffer.from(e.sig, 'base64');
    return sig.length === 64 && verifier.verify(signingBytes(INDEX_SIGNATURE_DOMAIN, signedPart(e)), sig);
  } catch {
    return false;
  }
}
