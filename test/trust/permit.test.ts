import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Permit } from '../../src/core/types.ts';
import { generateKeyPair, loadSigner, verifierFrom } from '../../src/trust/keys.ts';
import { PERMIT_SIGNATURE_DOMAIN, permitSigningBytes, signPermit, verifySignedPermit, type SignedPermit } from '../../src/trust/permit.ts';
import { assertProperty } from './fc-seed.ts';

const pair = generateKeyPair();
const signer = loadSigner({ env: 'KEY' }, { KEY: pair.privateKeyPem });
const verifier = verifierFrom(pair.publicKeyPem);
const otherPair = generateKeyPair();
const otherSigner = loadSigner({ env: 'KEY' }, { KEY: otherPair.privateKeyPem });

const IMAGE = 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest';
const HASH = 'a'.repeat(64);
const NOW = new Date('2026-03-01T10:00:00Z');

const permit = (over: Partial<Permit> = {}): Permit => ({
  id: 'permit.run-7.9f2c',
  runId: 'run-7',
  target: 'ehr-prd-01',
  image: IMAGE,
  proofIds: ['proof.a', 'proof.b'],
  proofSetHash: HASH,
  issuedAt: '2026-03-01T09:30:00Z',
  expiresAt: '2026-03-01T11:30:00Z',
  ...over,
});
const expect_ = { image: IMAGE, target: 'ehr-prd-01', now: NOW, proofSetHash: HASH };

function flipBit(b64: string, bit: number): string {
  const bytes = Buffer.from(b64, 'base64');
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return bytes.toString('base64');
}

describe('signPermit / verifySignedPermit', () => {
  it('signs the domain-separated canonical JSON of the permit', () => {
    const sp = signPermit(permit(), signer);
    expect(sp.keyId).toBe(signer.keyId);
    expect(permitSigningBytes(sp.permit).toString('utf8').startsWith(`${PERMIT_SIGNATURE_DOMAIN}\n{"expiresAt":`)).toBe(true);
    expect(verifier.verify(permitSigningBytes(sp.permit), Buffer.from(sp.signature, 'base64'))).toBe(true);
    // Deterministic, and a JSON round trip (stack config, journal) keeps it valid.
    expect(signPermit(permit(), signer)).toEqual(sp);
    expect(verifySignedPermit(JSON.parse(JSON.stringify(sp)), verifier, expect_)).toEqual({ valid: true });
  });

  const valid = () => signPermit(permit(), signer);
  it.each<[string, () => unknown, Partial<typeof expect_>, RegExp]>([
    ['no permit', () => undefined, {}, /no permit/],
    ['not an object', () => 'permit', {}, /malformed: it is not an object/],
    ['a signature that is not base64 of 64 bytes', () => ({ ...valid(), signature: 'abc' }), {}, /malformed: signature is not 64 bytes/],
    ['a missing field', () => ({ ...valid(), permit: { ...valid().permit, image: undefined } }), {}, /malformed: permit.image/],
    ['proofIds not a list of strings', () => ({ ...valid(), permit: { ...valid().permit, proofIds: [1] } }), {}, /malformed: permit.proofIds/],
    ['a permit signed by another key', () => signPermit(permit(), otherSigner), {}, /signed with key [0-9a-f]{16}, but the trusted key is/],
    ['another key\'s signature under the trusted key id', () => ({ ...signPermit(permit(), otherSigner), keyId: signer.keyId }), {}, /does not verify/],
    ['a hand-written permit (forged expiry, empty proofs)', () => ({ ...valid(), permit: { ...valid().permit, proofIds: [], expiresAt: '2099-01-01T00:00:00Z' } }), {}, /does not verify/],
    ['an expired permit', () => signPermit(permit({ expiresAt: '2026-03-01T10:00:00Z' }), signer), {}, /expired at/],
    ['a permit for another image', valid, { image: IMAGE.replace('2025', '2022') }, /is for image/],
    ['a permit for another target', valid, { target: 'ehr-prd-02' }, /is for target ehr-prd-01, not ehr-prd-02/],
    ['a permit bound to other proofs than the facts', valid, { proofSetHash: 'b'.repeat(64) }, /different set of proofs/],
    ['a permit not yet valid', () => signPermit(permit({ issuedAt: '2026-03-01T10:30:00Z' }), signer), {}, /not valid before/],
  ])('refuses %s', (_label, make, over, reason) => {
    const r = verifySignedPermit(make(), verifier, { ...expect_, ...over });
    expect(r.valid).toBe(false);
    if (!r.valid) {
      expect(r.reason).toMatch(reason);
      expect(r.fix).toContain('rubicon upgrade');
    }
  });

  it('checks the proof-set hash against the caller\'s facts, not the one the permit carries', () => {
    // The permit says HASH; the facts say otherwise: refused even though the signature is fine.
    const sp = valid();
    expect(verifySignedPermit(sp, verifier, { ...expect_, proofSetHash: sp.permit.proofSetHash }).valid).toBe(true);
    expect(verifySignedPermit(sp, verifier, { ...expect_, proofSetHash: '' }).valid).toBe(false);
  });

  const text = fc.string({ minLength: 1, maxLength: 30 });
  const permitArb = fc.record({
    id: text,
    runId: text,
    target: text,
    image: text,
    proofIds: fc.array(text, { maxLength: 5 }),
    proofSetHash: fc.stringMatching(/^[0-9a-f]{64}$/),
    issuedAt: fc.constant('2026-03-01T09:00:00.000Z'),
    expiresAt: fc.constant('2026-03-01T12:00:00.000Z'),
  });
  const FIELDS = ['id', 'runId', 'target', 'image', 'proofIds', 'proofSetHash', 'issuedAt', 'expiresAt'] as const;

  it('property: any single-field change of a signed permit is refused', () => {
    assertProperty(
      fc.property(permitArb, fc.constantFrom(...FIELDS), text, (p, field, replacement) => {
        const sp = signPermit(p, signer);
        const exp = { image: p.image, target: p.target, now: NOW, proofSetHash: p.proofSetHash };
        expect(verifySignedPermit(sp, verifier, exp)).toEqual({ valid: true });
        const changed: Permit = { ...sp.permit };
        if (field === 'proofIds') changed.proofIds = [...p.proofIds, replacement];
        else if (field === 'issuedAt' || field === 'expiresAt') changed[field] = new Date(Date.parse(p[field]) + 1000).toISOString();
        else if (field === 'proofSetHash') changed.proofSetHash = p.proofSetHash.replace(/^./, (c) => (c === '0' ? '1' : '0'));
        else changed[field] = p[field] === replacement ? `${replacement}x` : replacement;
        // The caller's facts follow the change, so only the signature can catch it.
        const exp2 = { image: changed.image, target: changed.target, now: NOW, proofSetHash: changed.proofSetHash };
        const r = verifySignedPermit({ ...sp, permit: changed }, verifier, exp2);
        expect(r.valid).toBe(false);
        if (!r.valid) expect(r.reason).toContain('does not verify');
      }),
      { numRuns: 200 },
    );
  });

  it('property: any single bit flip of the signature is refused', () => {
    const sp = valid();
    assertProperty(
      fc.property(fc.integer({ min: 0, max: 511 }), (bit) => {
        expect(verifySignedPermit({ ...sp, signature: flipBit(sp.signature, bit) } satisfies SignedPermit, verifier, expect_).valid).toBe(false);
      }),
      { numRuns: 512 },
    );
    // And exhaustively, since there are only 512 bits.
    for (let bit = 0; bit < 512; bit++) expect(verifySignedPermit({ ...sp, signature: flipBit(sp.signature, bit) }, verifier, expect_).valid).toBe(false);
  });
});
