import * as pulumi from '@pulumi/pulumi';
import { beforeEach, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { parseInfraConfig } from '../../src/infra/azure/config.ts';
import { readSecrets, rubiconInfra } from '../../src/infra/azure/program.ts';
import { NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, permit, rawConfig } from './builders.ts';
import { promiseOf, registered } from '../setup/pulumi-mocks.ts';

const secrets = { targetAdminPassword: pulumi.secret('not-a-real-password'), provingGroundAdminPassword: pulumi.secret('not-a-real-password-either') };
const deps = (current: string | undefined) => ({ currentImage: async () => current, now: () => NOW });

async function refusal(p: Promise<unknown>): Promise<RubiconError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected the program to refuse');
}

describe('rubiconInfra: the permit-guarded rebuild', () => {
  beforeEach(() => {
    registered.length = 0;
  });

  it('refuses an image change without a permit, before declaring anything', async () => {
    const cfg = parseInfraConfig(rawConfig());
    const e = await refusal(rubiconInfra(cfg, secrets, deps(OLD_IMAGE)));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('Refusing to rebuild target "ehr-01"');
    expect(e.message).toContain('there is no permit');
    expect(e.hint).toContain('rubicon upgrade');
    expect(registered).toEqual([]);
  });

  it('refuses with an expired permit', async () => {
    const cfg = parseInfraConfig(rawConfig({ permit: permit({ expiresAt: '2026-03-01T09:45:00Z' }), proofSetHash: PROOF_SET_HASH }));
    const e = await refusal(rubiconInfra(cfg, secrets, deps(OLD_IMAGE)));
    expect(e.message).toContain('expired at 2026-03-01T09:45:00Z');
  });

  it('refuses with a permit for another image', async () => {
    const cfg = parseInfraConfig(rawConfig({ permit: permit({ image: OLD_IMAGE }), proofSetHash: PROOF_SET_HASH }));
    const e = await refusal(rubiconInfra(cfg, secrets, deps(OLD_IMAGE)));
    expect(e.message).toContain(`is for image ${OLD_IMAGE}, but the crossing would install ${NEW_IMAGE}`);
  });

  it('refuses with a permit bound to another proof set', async () => {
    const cfg = parseInfraConfig(rawConfig({ permit: permit(), proofSetHash: '0'.repeat(64) }));
    const e = await refusal(rubiconInfra(cfg, secrets, deps(OLD_IMAGE)));
    expect(e.message).toContain('different set of proofs');
  });

  it('accepts the change with a valid permit: the VM is declared with the new image and unprotected', async () => {
    const cfg = parseInfraConfig(rawConfig({ permit: permit(), proofSetHash: PROOF_SET_HASH }));
    const out = await rubiconInfra(cfg, secrets, deps(OLD_IMAGE));
    expect(out.targetProtected).toBe(false);
    expect(out.targetImage).toBe(NEW_IMAGE);
    await promiseOf(out.targetVmId);
    const vm = registered.find((r) => r.type === 'azure-native:compute:VirtualMachine' && r.name === 'ehr-01Vm');
    expect((vm?.inputs['storageProfile'] as { imageReference: unknown }).imageReference).toEqual({
      publisher: 'MicrosoftWindowsServer',
      offer: 'WindowsServer',
      sku: '2025-datacenter-azure-edition',
      version: 'latest',
    });
    expect(out.provingGround).toBeNull();
    expect(registered.some((r) => r.type.startsWith('azure-native:resources:'))).toBe(false);
  });

  it('keeps the VM protected when nothing changes and there is no permit', async () => {
    const cfg = parseInfraConfig(rawConfig());
    const out = await rubiconInfra(cfg, secrets, deps(NEW_IMAGE));
    expect(out.targetProtected).toBe(true);
  });

  it('declares the proving ground only when enabled, wired to the vault container', async () => {
    const cfg = parseInfraConfig(rawConfig({ provingGround: { enabled: true, runId: 'run-7', createdAt: '2026-03-01T08:00:00Z' } }));
    const out = await rubiconInfra(cfg, secrets, deps(NEW_IMAGE));
    expect(out.provingGround?.tags).toMatchObject({ 'rubicon-run': 'run-7', 'rubicon-ttl': '8h', 'rubicon-expires-at': '2026-03-01T16:00:00.000Z' });
    await promiseOf(out.provingGround!.vmId);
    const role = registered.find((r) => r.type === 'azure-native:authorization:RoleAssignment');
    expect(role).toBeDefined();
    expect(await promiseOf(pulumi.output(role!.inputs['scope'] as string))).toBe(await promiseOf(out.vaultContainerId));
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
