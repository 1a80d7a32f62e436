import type { Permit } from '../core/types.ts';
import { checkPermit, type PermitCheck } from '../gate/permit.ts';
import { signingBytes } from './canonical.ts';
import type { Signer, Verifier } from './keys.ts';

/**
 * Signed permits: what the gate issues, made unforgeable (docs/trust.md).
 *
 * The signature covers `rubicon/permit/v1` + LF + canonical JSON of the
 * permit (every field: id, run, target, image, proof ids, proof-set hash,
 * issue and expiry times). `keyId` and `signature` travel beside it.
 *
 * Contract: signPermit is deterministic (Ed25519 is); verifySignedPermit is
 * pure and never throws: anything malformed is a refusal with a reason.
 * Verification never trusts a value the permit carries for a check it can
 * make against the caller's own facts: the image, the target, the time and
 * the proof-set hash come from the caller (recomputed from the journal's
 * proofs, the runbook, the clock), and the permit must match them.
 */

export const PERMIT_SIGNATURE_DOMAIN = 'rubicon/permit/v1';

export interface SignedPermit {
  permit: Permit;
  /** Key id of the signing key (keys.ts `keyIdOf`). */
  keyId: string;
  /** Ed25519 signature, base64 (standard alphabet, padded). */
  signature: string;
}

export interface SignedPermitExpectation {
  /** The image the crossing would install (runbook / stack config). */
  image: string;
  /** The target the crossing would rebuild. */
  target: string;
  now: Date;
  /**
   * The proof-set hash the caller recomputed from its own facts (the
   * journal's proofs), never the one the permit carries.
   */
  proofSetHash: string;
}

const FIX_SIGNED =
  'run `rubicon upgrade --runbook <file>` again: it re-evaluates the gate and issues a freshly signed permit; never write a permit by hand';

/** The exact bytes a permit's signature covers. */
export function permitSigningBytes(permit: Permit): Buffer {
  return signingBytes(PERMIT_SIGNATURE_DOMAIN, permit);
}

/** Signs a permit. The permit is copied as plain data (only its own fields), so what is returned is what was signed. */
export function signPermit(permit: Permit, signer: Signer): SignedPermit {
  const copy: Permit = {
    id: permit.id,
    runId: permit.runId,
    target: permit.target,
    image: permit.image,
    proofIds: [...permit.proofIds],
    proofSetHash: permit.proofSetHash,
    issuedAt: permit.issuedAt,
    expiresAt: permit.expiresAt,
  };
  return { permit: copy, keyId: signer.keyId, signature: signer.sign(permitSigningBytes(copy)).toString('base64') };
}

const PERMIT_STRING_FIELDS = ['id', 'runId', 'target', 'image', 'proofSetHash', 'issuedAt', 'expiresAt'] as const;

/** Pure: what is wrong with the shape of a signed permit, or undefined when it is well-formed. */
export function signedPermitShapeProblem(sp: unknown): string | undefined {
  if (sp === null || typeof sp !== 'object' || Array.isArray(sp)) return 'it is not an object';
  const o = sp as Record<string, unknown>;
  if (typeof o['keyId'] !== 'string' || !/^[0-9a-f]{16}$/.test(o['keyId'])) return 'keyId is not 16 hex digits';
  if (typeof o['signature'] !== 'string') return 'signature is not a string';
  const sig = o['signature'];
  const bytes = Buffer.from(sig, 'base64');
  if (bytes.length !== 64 || bytes.toString('base64') !== sig) return 'signature is not 64 bytes in base64';
  const p = o['permit'];
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return 'permit is not an object';
  const permit = p as Record<string, unknown>;
  for (const f of PERMIT_STRING_FIELDS) {
    if (typeof permit[f] !== 'string' || permit[f] === '') return `permit.${f} is not a non-empty string`;
  }
  if (!Array.isArray(permit['proofIds']) || !permit['proofIds'].every((x) => typeof x === 'string')) return 'permit.proofIds is not a list of strings';
  return undefined;
}

/**
 * Verifies a signed permit against the caller's facts. Refuses, in this
 * order: missing or malformed; signed with another key than `verifier`'s;
 * a signature that does not verify over the permit (any change of any
 * field after signing); then every check of checkPermit (times, expiry,
 * image, proof-set hash, target) against `expect`.
 */
export function verifySignedPermit(sp: SignedPermit | undefined | unknown, verifier: Verifier, expect: SignedPermitExpectation): PermitCheck {
  if (sp === undefined || sp === null) return { valid: false, reason: 'no permit: the gate has not passed for this crossing', fix: FIX_SIGNED };
  const shape = signedPermitShapeProblem(sp);
  if (shape) return { valid: false, reason: `the signed permit is malformed: ${shape}`, fix: FIX_SIGNED };
  const s = sp as SignedPermit;
  if (s.keyId !== verifier.keyId) {
    return {
      valid: false,
      reason: `permit ${s.permit.id} is signed with key ${s.keyId}, but the trusted key is ${verifier.keyId}`,
      fix: `${FIX_SIGNED}, with the signing key whose public key is trusted (key ${verifier.keyId})`,
    };
  }
  let ok = false;
  try {
    ok = verifier.verify(permitSigningBytes(s.permit), Buffer.from(s.signature, 'base64'));
  } catch {
    ok = false; // a permit that cannot be put in canonical form cannot have been signed
  }
  if (!ok) {
    return {
      valid: false,
      reason: `the signature of permit ${s.permit.id} does not verify with key ${verifier.keyId}: the permit was changed after it was signed, or never signed by that key`,
      fix: FIX_SIGNED,
    };
  }
  const check = checkPermit(s.permit, { image: expect.image, now: expect.now, proofSetHash: expect.proofSetHash, target: expect.target });
  return check.valid ? check : { valid: false, reason: check.reason, fix: check.fix };
}
