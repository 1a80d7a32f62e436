import { describe, expect, it } from 'vitest';
import { deleteVerdict, targetDecision, type CurrentTarget, type GuardInput } from '../../src/infra/azure/guard.ts';
import { deleteGuardCallback } from '../../src/infra/azure/hooks.ts';
import { FORGER, FORGER_KEYS, KEYS, NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, permit, signed } from './builders.ts';

const present = (over: Partial<CurrentTarget & { state: 'present' }> = {}): CurrentTarget => ({
  state: 'present',
  image: OLD_IMAGE,
  imageSource: `marketplace image ${OLD_IMAGE}`,
  location: 'westeurope',
  ...over,
});

const input = (over: Partial<GuardInput> = {}): GuardInput => ({
  target: 'ehr-01',
  current: present(),
  planned: { image: NEW_IMAGE, location: 'westeurope' },
  permit: signed(),
  publicKeyPem: KEYS.publicKeyPem,
  proofSetHash: PROOF_SET_HASH,
  now: NOW,
  ...over,
});

describe('targetDecision', () => {
  it('accepts an image change with a valid signed permit, lifts protect and allows the VM delete', () => {
    expect(targetDecision(input())).toEqual({ protect: false, allowed: true, changing: true, permitValid: true, deleteAllowed: true });
  });

  it.each<[string, Partial<GuardInput>, string]>([
    ['no permit', { permit: undefined }, 'there is no permit (config `rubicon:permit` is not set)'],
    // Bypass 1: a hand-written permit (empty proofs, any hash, expiry 2099), unsigned or re-signed by a forger.
    ['a hand-written unsigned permit', { permit: permit({ proofIds: [], expiresAt: '2099-01-01T00:00:00Z' }) }, 'the signed permit is malformed'],
    ['a signed permit edited afterwards', { permit: { ...signed(), permit: { ...permit(), expiresAt: '2099-01-01T00:00:00Z', proofIds: [] } } }, 'does not verify'],
    ['a permit signed with a key the stack does not trust', { permit: signed({}, FORGER) }, 'but the trusted key is'],
    ['no trusted key in the stack config', { publicKeyPem: undefined }, 'rubicon:permitPublicKey` is not set'],
    ['a garbage trusted key', { publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }, 'rubicon:permitPublicKey` is unusable'],
    ['an expired permit', { permit: signed({ expiresAt: '2026-03-01T09:59:59Z' }) }, 'expired at 2026-03-01T09:59:59Z'],
    ['a permit for another image', { permit: signed({ image: OLD_IMAGE.replace('2022', '2019') }) }, 'is for image'],
    ['a permit bound to other proofs', { proofSetHash: 'f'.repeat(64) }, 'different set of proofs'],
    ['a permit without the proof-set binding', { proofSetHash: undefined }, 'not bound to a proof set'],
    ['a permit for another target', { permit: signed({ target: 'ehr-02' }) }, 'is for target ehr-02'],
  ])('refuses an image change with %s, saying what is missing and how to get it', (_label, over, reason) => {
    const d = targetDecision(input(over));
    expect(d).toMatchObject({ allowed: false, protect: true, deleteAllowed: false, permitValid: false });
    expect(d.message).toContain(`from ${OLD_IMAGE} to ${NEW_IMAGE}`);
    expect(d.message).toContain(reason);
    expect(d.fix).toMatch(/rubicon upgrade|rubicon:permitPublicKey/);
  });

  it('the forger wins the program only by also replacing the trusted key (the ARM lock and KEY_MISMATCH are what stop that: docs/trust.md)', () => {
    expect(targetDecision(input({ permit: signed({}, FORGER), publicKeyPem: FORGER_KEYS.publicKeyPem })).permitValid).toBe(true);
  });

  // Bypass 4: an unknown current image is a refusal, not a first deployment.
  it.each([
    ['a shared gallery image', 'shared gallery image /subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/x/images/y'],
    ['an attached OS disk', 'an attached OS disk /subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d'],
  ])('refuses a VM built from %s, even with no image change planned', (_label, source) => {
    const d = targetDecision(input({ current: present({ image: undefined, imageSource: source }), permit: undefined }));
    expect(d.allowed).toBe(false);
    expect(d.message).toContain('current image is unknown');
    expect(d.message).toContain(source);
  });

  it('a VM Azure reports absent is a first deployment: allowed, protected, no delete allowed', () => {
    expect(targetDecision(input({ current: { state: 'absent' }, permit: undefined }))).toEqual({
      protect: true,
      allowed: true,
      changing: false,
      permitValid: false,
      deleteAllowed: false,
    });
  });

  // Bypass 2: a location or zone change (path parameters / force-new) replaces the VM: refused even with a permit.
  it.each<[string, Partial<GuardInput>]>([
    ['another location', { planned: { image: NEW_IMAGE, location: 'northeurope' } }],
    ['a zone', { planned: { image: NEW_IMAGE, location: 'westeurope', zone: '1' } }],
  ])('refuses moving the target to %s, with or without a permit', (_label, over) => {
    expect(targetDecision(input(over)).allowed).toBe(false);
    expect(targetDecision(input({ ...over, permit: undefined })).allowed).toBe(false);
  });

  it('location spelling does not matter ("West Europe" = westeurope)', () => {
    expect(targetDecision(input({ current: present({ location: 'West Europe' }) })).allowed).toBe(true);
  });

  it('an unchanged image is allowed without a permit, stays protected, and no delete is allowed', () => {
    expect(targetDecision(input({ current: present({ image: NEW_IMAGE }), permit: undefined }))).toEqual({
      protect: true,
      allowed: true,
      changing: false,
      permitValid: false,
      deleteAllowed: false,
    });
  });

  it('expiry is exclusive: a permit is dead at its expiresAt instant', () => {
    expect(targetDecision(input({ now: new Date('2026-03-01T11:30:00Z') })).allowed).toBe(false);
    expect(targetDecision(input({ now: new Date('2026-03-01T11:29:59Z') })).allowed).toBe(true);
  });
});

describe('the delete guard (engine hook), whatever caused the delete', () => {
  const noPermit = targetDecision(input({ current: present({ image: NEW_IMAGE }), permit: undefined }));
  const withPermit = targetDecision(input());
  const vm = { type: 'azure-native:compute:VirtualMachine', name: 'targetVm', urn: 'urn:pulumi:prod::rubicon::rubicon:azure:TargetServer$azure-native:compute:VirtualMachine::targetVm' };
  const disk = { type: 'azure-native:compute:Disk', name: 'targetDisk-sqldata', urn: 'urn:…::targetDisk-sqldata' };

  it('refuses the VM delete without a permit (a rename, --ignore-protect, a destroy --run-program), naming what to do', () => {
    expect(() => deleteGuardCallback(noPermit, 'ehr-01')(vm)).toThrow(/refuses to delete the VM of target "ehr-01".*no valid signed permit.*pulumi preview --diff/s);
    expect(deleteVerdict(noPermit, 'ehr-01', vm).ok).toBe(false);
  });

  it('lets the VM go with a valid permit', () => {
    expect(() => deleteGuardCallback(withPermit, 'ehr-01')(vm)).not.toThrow();
  });

  it('never lets a disk go, permit or not', () => {
    expect(() => deleteGuardCallback(withPermit, 'ehr-01')(disk)).toThrow(/disk targetDisk-sqldata/);
    expect(() => deleteGuardCallback(noPermit, 'ehr-01')(disk)).toThrow(/never lets a plan delete or replace one/);
  });
});
