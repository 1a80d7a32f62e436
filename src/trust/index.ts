/** Rubicon's signing: keys (Ed25519), canonical JSON, signed permits. See docs/trust.md. */
export { describeKeySource, generateKeyPair, keyIdOf, loadSigner, verifierFrom, type KeySource, type Signer, type Verifier } from './keys.ts';
export { canonicalBytes, canonicalJson, signingBytes } from './canonical.ts';
export {
  PERMIT_SIGNATURE_DOMAIN,
  permitSigningBytes,
  signPermit,
  signedPermitShapeProblem,
  verifySignedPermit,
  type SignedPermit,
  type SignedPermitExpectation,
} from './permit.ts';
