import { describe, expect, it } from 'vitest';
import { imageChangeDecision, type ImageChangeInput } from '../../src/infra/azure/guard.ts';
import { NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, permit } from './builders.ts';

const change = (over: Partial<ImageChangeInput> = {}): ImageChangeInput => ({
  target: 'ehr-01',
  currentImage: OLD_IMAGE,
  plannedImage: NEW_IMAGE,
  permit: permit(),
  proofSetHash: PROOF_SET_HASH,
  now: NOW,
  ...over,
});

describe('imageChangeDecision', () => {
  it('accepts an image change with a valid permit and lifts protect', () => {
    expect(imageChangeDecision(change())).toEqual({ protect: false, allowed: true, changing: true, permitValid: true });
  });

  it.each([
    ['no permit', { permit: undefined }, 'there is no permit (config `rubicon:permit` is not set)'],
    ['an expired permit', { permit: permit({ expiresAt: '2026-03-01T09:59:59Z' }) }, 'expired at 2026-03-01T09:59:59Z'],
    ['a permit for another image', { permit: permit({ image: OLD_IMAGE.replace('2022', '2019') }) }, 'is for image MicrosoftWindowsServer:WindowsServer:2019-datacenter-azure-edition:latest'],
    ['a permit bound to other proofs', { proofSetHash: 'f'.repeat(64) }, 'different set of proofs'],
    ['a permit without the proof-set binding', { proofSetHash: undefined }, 'not bound to a proof set (config `rubicon:proofSetHash` is not set)'],
    ['a permit for another target', { permit: permit({ target: 'ehr-02' }) }, 'is for target ehr-02'],
    ['a permit not yet valid', { permit: permit({ issuedAt: '2026-03-01T10:30:00Z' }) }, 'not valid before'],
  ])('refuses an image change with %s, saying what is missing and how to get it', (_label, over, reason) => {
    const d = imageChangeDecision(change(over));
    expect(d.allowed).toBe(false);
    expect(d.protect).toBe(true);
    expect(d.message).toContain(`from ${OLD_IMAGE} to ${NEW_IMAGE}`);
    expect(d.message).toContain(reason);
    expect(d.fix).toContain('rubicon upgrade');
    expect(d.fix).toContain('rubicon:permit');
  });

  it('an unchanged image is allowed without a permit, and stays protected', () => {
    expect(imageChangeDecision(change({ currentImage: NEW_IMAGE, permit: undefined }))).toEqual({
      protect: true,
      allowed: true,
      changing: false,
      permitValid: false,
    });
  });

  it('a first deployment (no current image) is allowed and protected', () => {
    const d = imageChangeDecision(change({ currentImage: undefined, permit: undefined }));
    expect(d).toMatchObject({ allowed: true, protect: true, changing: false });
  });

  it('expiry is exclusive: a permit is dead at its expiresAt instant', () => {
    expect(imageChangeDecision(change({ now: new Date('2026-03-01T11:30:00Z') })).allowed).toBe(false);
    expect(imageChangeDecision(change({ now: new Date('2026-03-01T11:29:59Z') })).allowed).toBe(true);
  });
});
