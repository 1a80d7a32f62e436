import * as pulumi from '@pulumi/pulumi';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { parseInfraConfig } from '../../src/infra/azure/config.ts';
import type { CurrentTarget } from '../../src/infra/azure/guard.ts';
import { DELETE_GUARD_HOOK, hooksSupported } from '../../src/infra/azure/hooks.ts';
import { readSecrets, rubiconInfra } from '../../src/infra/azure/program.ts';
import { FORGER, KEYS, NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, permit, rawConfig, signed } from './builders.ts';
import { promiseOf, registered } from '../setup/pulumi-mocks.ts';

const secrets = { targetAdminPassword: pulumi.secret('not-a-real-password'), provingGroundAdminPassword: pulumi.secret('not-a-real-password-either') };
const runs = (image: string | undefined, over: Partial<CurrentTarget & { state: 'present' }> = {}): CurrentTarget =>
  ({ state: 'present', image, imageSource: image ? `marketplace image ${image}` : 'shared gallery image /SharedGalleries/x', location: 'westeurope', ...over }) as CurrentTarget;
const deps = (current: CurrentTarget) => ({ currentTarget: async () => current, now: () => NOW });
const armed = (over: Record<string, unknown> = {}) => rawConfig({ permit: signed(), permitPublicKey: KEYS.publicKeyPem, proofSetHash: PROOF_SET_HASH, ...over });

async function refusal(p: Promise<unknown>): Promise<RubiconError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected the program to refuse');
}

describe('rubiconInfra: a plain `pulumi up` cannot rebuild the target', () => {
  beforeEach(() => {
    registered.length = 0;
  });

  it('refuses an image change without a permit, before declaring anything', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(rawConfig()), secrets, deps(runs(OLD_IMAGE))));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('Refusing to rebuild target "ehr-01"');
    expect(e.message).toContain('there is no permit');
    expect(e.hint).toContain('rubicon upgrade');
    expect(registered).toEqual([]);
  });

  // Bypass 1: the forged permit of the review: empty proofs, any hash, expiry 2099.
  it('refuses a hand-written permit in the stack config, before declaring anything', async () => {
    const forged = { ...signed(), permit: permit({ proofIds: [], proofSetHash: '0'.repeat(64), expiresAt: '2099-12-31T00:00:00Z' }) };
    const e = await refusal(rubiconInfra(parseInfraConfig(armed({ permit: forged, proofSetHash: '0'.repeat(64) })), secrets, deps(runs(OLD_IMAGE))));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.message).toContain('does not verify');
    expect(registered).toEqual([]);
  });

  it('refuses a permit signed with a key the stack does not trust', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(armed({ permit: signed({}, FORGER) })), secrets, deps(runs(OLD_IMAGE))));
    expect(e.message).toContain('but the trusted key is');
  });

  it('refuses with an expired permit', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(armed({ permit: signed({ expiresAt: '2026-03-01T09:45:00Z' }) })), secrets, deps(runs(OLD_IMAGE))));
    expect(e.message).toContain('expired at 2026-03-01T09:45:00Z');
  });

  it('refuses with a permit bound to another proof set', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(armed({ proofSetHash: '0'.repeat(64) })), secrets, deps(runs(OLD_IMAGE))));
    expect(e.message).toContain('different set of proofs');
  });

  // Bypass 4: unknown is a refusal, not a first deployment.
  it('refuses a VM whose current image is unknown (gallery image), even with a valid permit', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(armed()), secrets, deps(runs(undefined))));
    expect(e.message).toContain('current image is unknown (shared gallery image /SharedGalleries/x)');
    expect(registered).toEqual([]);
  });

  it('propagates a failed read of Azure: nothing is declared', async () => {
    const failing = { currentTarget: async () => Promise.reject(new RubiconError('INFRA_FAILED', 'Cannot read target VM ehr-01')), now: () => NOW };
    await expect(rubiconInfra(parseInfraConfig(rawConfig()), secrets, failing)).rejects.toThrow('Cannot read target VM ehr-01');
    expect(registered).toEqual([]);
  });

  // Bypass 2: path parameters and force-new properties replace the VM.
  it('refuses a change of location', async () => {
    const e = await refusal(rubiconInfra(parseInfraConfig(rawConfig({ location: 'northeurope' })), secrets, deps(runs(NEW_IMAGE))));
    expect(e.message).toContain('a location change deletes and recreates the VM');
  });

  it('accepts the change with a valid signed permit: the VM is declared with the new image and unprotected', async () => {
    const out = await rubiconInfra(parseInfraConfig(armed()), secrets, deps(runs(OLD_IMAGE)));
    expect(out.targetProtected).toBe(false);
    expect(out.targetImage).toBe(NEW_IMAGE);
    await promiseOf(out.targetVmId);
    const vm = registered.find((r) => r.type === 'azure-native:compute:VirtualMachine' && r.name === 'targetVm');
    expect((vm?.inputs['storageProfile'] as { imageReference: unknown }).imageReference).toEqual({
      publisher: 'MicrosoftWindowsServer',
      offer: 'WindowsServer',
      sku: '2025-datacenter-azure-edition',
      version: 'latest',
    });
    expect(await promiseOf(out.targetVmUniqueId)).toMatch(/^[0-9a-f-]{36}$/);
    expect(out.provingGround).toBeNull();
    expect(registered.some((r) => r.type.startsWith('azure-native:resources:'))).toBe(false);
  });

  it('keeps the VM protected when nothing changes and there is no permit; a first deployment too', async () => {
    expect((await rubiconInfra(parseInfraConfig(rawConfig()), secrets, deps(runs(NEW_IMAGE)))).targetProtected).toBe(true);
    expect((await rubiconInfra(parseInfraConfig(rawConfig()), secrets, deps({ state: 'absent' }))).targetProtected).toBe(true);
  });

  it('names the target resources from a stable logical name, whatever rubicon:target.name says', async () => {
    await promiseOf((await rubiconInfra(parseInfraConfig(rawConfig({ target: { name: 'ehr-02', formerNames: ['ehr-01'] } })), secrets, deps({ state: 'absent' }))).targetVmId);
    const mine = registered.filter((r) => (r.type.startsWith('azure-native:compute:') || r.type.startsWith('azure-native:network:')) && r.name.startsWith('target'));
    expect([...new Set(mine.map((r) => r.name))].sort()).toEqual(['targetDisk-ehrfiles', 'targetDisk-sqldata', 'targetNic', 'targetNsg', 'targetVm'].sort());
    expect(mine.some((r) => r.name === 'targetVm' && r.inputs['vmName'] === 'ehr-02')).toBe(true);
    expect(registered.some((r) => r.name.startsWith('ehr-0'))).toBe(false);
  });

  it('a rollback config boots the VM from the retired OS disk: refused without a permit for disk:<id>, declared with one', async () => {
    const disk = '/subscriptions/s/resourceGroups/rg-ehr/providers/Microsoft.Compute/disks/ehr-01_OsDisk_1_aaaa';
    const image = `disk:${disk.toLowerCase()}`;
    const plain = rawConfig({ target: { restoreFromDisk: disk } });
    const e = await refusal(rubiconInfra(parseInfraConfig(plain), secrets, deps(runs(NEW_IMAGE))));
    expect(e.message).toContain(`from ${NEW_IMAGE} to ${image}`);
    const out = await rubiconInfra(parseInfraConfig({ ...plain, permit: signed({ image }), permitPublicKey: KEYS.publicKeyPem, proofSetHash: PROOF_SET_HASH }), secrets, deps(runs(NEW_IMAGE)));
    await promiseOf(out.targetVmId);
    const vm = registered.filter((r) => r.name === 'targetVm').at(-1)!;
    expect(vm.inputs['storageProfile']).toEqual({
      osDisk: { createOption: 'Attach', osType: 'Windows', deleteOption: 'Detach', caching: 'ReadWrite', managedDisk: { id: disk } },
      dataDisks: expect.any(Array),
    });
    expect(vm.inputs).not.toHaveProperty('osProfile');
    expect(out.targetImage).toBe(image);
  });

  it('declares the proving ground only when enabled, wired to the vault container and account', async () => {
    const cfg = parseInfraConfig(rawConfig({ provingGround: { enabled: true, runId: 'run-7', createdAt: '2026-03-01T08:00:00Z' } }));
    const out = await rubiconInfra(cfg, secrets, deps(runs(NEW_IMAGE)));
    expect(out.provingGround?.tags).toMatchObject({ 'rubicon-run': 'run-7', 'rubicon-ttl': '8h', 'rubicon-expires-at': '2026-03-01T16:00:00.000Z' });
    await promiseOf(out.provingGround!.vmId);
    const role = registered.find((r) => r.type === 'azure-native:authorization:RoleAssignment');
    expect(role).toBeDefined();
    expect(await promiseOf(pulumi.output(role!.inputs['scope'] as string))).toBe(await promiseOf(out.vaultContainerId));
    const policy = registered.find((r) => r.type === 'azure-native:network:ServiceEndpointPolicy');
    const account = registered.find((r) => r.type === 'azure-native:storage:StorageAccount');
    expect((policy?.inputs['serviceEndpointPolicyDefinitions'] as { serviceResources: string[] }[])[0]!.serviceResources).toEqual([account!.id]);
  });

  it('readSecrets asks for the proving-ground password only when the proving ground is enabled', () => {
    pulumi.runtime.setAllConfig({ 'rubicon:targetAdminPassword': 'x' }, ['rubicon:targetAdminPassword']);
    expect(() => readSecrets(parseInfraConfig(rawConfig()))).not.toThrow();
    const enabled = parseInfraConfig(rawConfig({ provingGround: { enabled: true, createdAt: '2026-03-01T08:00:00Z' } }));
    expect(() => readSecrets(enabled)).toThrow(/rubicon:provingGroundAdminPassword is not set/);
    pulumi.runtime.setAllConfig({}, []);
    expect(() => readSecrets(parseInfraConfig(rawConfig()))).toThrow(/rubicon:targetAdminPassword is not set/);
  });
});

describe('the delete guard hook is wired under a real engine only', () => {
  it('is left out under the mock monitor (it cannot register hooks) and built otherwise', () => {
    expect(hooksSupported()).toBe(false);
    const spy = vi.spyOn(pulumi.runtime, 'getMonitor').mockReturnValue({} as ReturnType<typeof pulumi.runtime.getMonitor>);
    try {
      expect(hooksSupported()).toBe(true);
    } finally {
      spy.mockRestore();
    }
    expect(DELETE_GUARD_HOOK).toBe('rubicon-target-delete-guard');
  });
});
