import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseInfraConfig, SECRET_KEYS, type RawInfraConfig } from '../../src/infra/azure/config.ts';
import main, { currentImageFromAzure } from '../../src/infra/azure/main.ts';
import { invokeAnswers, promiseOf } from '../setup/pulumi-mocks.ts';

/** The entry point Pulumi.yaml names, run against the real stack files under the mocks. */

function stackConfig(stack: string): Record<string, unknown> {
  return (parse(readFileSync(new URL(`../../stacks/Pulumi.${stack}.yaml`, import.meta.url), 'utf8')) as { config: Record<string, unknown> }).config;
}

function asPulumiConfig(cfg: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

const vmWithImage = (sku: string) => () => ({
  storageProfile: { imageReference: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku, version: 'latest' } },
});

describe('stack files', () => {
  it.each(['staging', 'prod'])('stacks/Pulumi.%s.yaml is valid, holds no secret and no permit', (stack) => {
    const cfg = stackConfig(stack);
    const raw: RawInfraConfig = {};
    for (const [k, v] of Object.entries(cfg)) raw[k.replace(/^rubicon:/, '') as keyof RawInfraConfig] = v;
    const parsed = parseInfraConfig(raw);
    expect(parsed.target.imageUrn).toBe('MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest');
    expect(parsed.provingGround.enabled).toBe(false);
    for (const key of [...SECRET_KEYS, 'permit', 'proofSetHash']) expect(Object.keys(cfg)).not.toContain(`rubicon:${key}`);
    expect(Object.keys(cfg).every((k) => k.startsWith('rubicon:'))).toBe(true);
  });
});

describe('main (Pulumi.yaml entry point)', () => {
  afterEach(() => invokeAnswers.clear());

  it('refuses the staging stack when Azure reports another image and no permit is configured', async () => {
    pulumi.runtime.setAllConfig({ ...asPulumiConfig(stackConfig('staging')), 'rubicon:targetAdminPassword': 'x' }, ['rubicon:targetAdminPassword']);
    invokeAnswers.set('azure-native:compute:getVirtualMachine', vmWithImage('2022-datacenter-azure-edition'));
    await expect(main()).rejects.toThrow(/Refusing to rebuild target "ehr-stg-01": its image would change from .*2022.* to .*2025/);
  });

  it('declares the stack when Azure already runs the configured image', async () => {
    pulumi.runtime.setAllConfig({ ...asPulumiConfig(stackConfig('prod')), 'rubicon:targetAdminPassword': 'x' }, ['rubicon:targetAdminPassword']);
    invokeAnswers.set('azure-native:compute:getVirtualMachine', vmWithImage('2025-datacenter-azure-edition'));
    const out = await main();
    expect(out.targetVmName).toBe('ehr-prd-01');
    expect(out.targetProtected).toBe(true);
    expect(await promiseOf(out.targetVmId)).toContain('ehr-prd-01');
  });

  it('currentImageFromAzure: undefined for a missing VM, rethrows anything else', async () => {
    const cfg = parseInfraConfig(Object.fromEntries(Object.entries(stackConfig('prod')).map(([k, v]) => [k.replace('rubicon:', ''), v])));
    // The engine's gRPC error carries its text in `details`, which the SDK turns into the Error's message.
    const grpcError = (text: string) => Object.assign(new Error(text), { details: text });
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => {
      throw grpcError(`Status=404 Code="ResourceNotFound" Message="The Resource 'Microsoft.Compute/virtualMachines/ehr-prd-01' under resource group 'rg-ehr-prod' was not found."`);
    });
    expect(await currentImageFromAzure(cfg)).toBeUndefined();
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => {
      throw grpcError('Status=403 Code="AuthorizationFailed" Message="no read access"');
    });
    await expect(currentImageFromAzure(cfg)).rejects.toThrow(/AuthorizationFailed/);
  });
});
