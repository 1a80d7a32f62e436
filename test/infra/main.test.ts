import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { parseInfraConfig, SECRET_KEYS, type RawInfraConfig } from '../../src/infra/azure/config.ts';
import { describeVm, isVmNotFound, readCurrentTarget } from '../../src/infra/azure/current.ts';
import main from '../../src/infra/azure/main.ts';
import { invokeAnswers, promiseOf } from '../setup/pulumi-mocks.ts';

/** The entry point Pulumi.yaml names, run against the real stack files under the mocks, and its read of Azure. */

function stackConfig(stack: string): Record<string, unknown> {
  return (parse(readFileSync(new URL(`../../stacks/Pulumi.${stack}.yaml`, import.meta.url), 'utf8')) as { config: Record<string, unknown> }).config;
}

function asPulumiConfig(cfg: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

const vmWithImage = (sku: string) => () => ({
  location: 'westeurope',
  vmId: '11111111-2222-4333-8444-555555555555',
  storageProfile: { imageReference: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku, version: 'latest', exactVersion: '26100.2894.250113' } },
});

// The engine's gRPC error carries its text in `details`, which the SDK turns into the Error's message.
const grpcError = (text: string) => Object.assign(new Error(text), { details: text });
// azure-native v3 reports ARM errors in the Azure SDK for Go's shape (azcore ResponseError.Error()).
const azcore404 = (code: string, url: string) =>
  `GET ${url}\n--------------------------------------------------------------------------------\nRESPONSE 404: 404 Not Found\nERROR CODE: ${code}\n--------------------------------------------------------------------------------\n{\n  "error": {\n    "code": "${code}",\n    "message": "..."\n  }\n}\n`;
const VM_URL = 'https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ehr-prod/providers/Microsoft.Compute/virtualMachines/ehr-prd-01?api-version=2024-11-01';

describe('stack files', () => {
  it.each(['staging', 'prod'])('stacks/Pulumi.%s.yaml is valid, holds no secret and no permit', (stack) => {
    const cfg = stackConfig(stack);
    const raw: RawInfraConfig = {};
    for (const [k, v] of Object.entries(cfg)) raw[k.replace(/^rubicon:/, '') as keyof RawInfraConfig] = v;
    const parsed = parseInfraConfig(raw);
    expect(parsed.target.imageUrn).toBe('MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest');
    expect(parsed.provingGround.enabled).toBe(false);
    for (const key of [...SECRET_KEYS, 'permit', 'proofSetHash', 'armed']) expect(Object.keys(cfg)).not.toContain(`rubicon:${key}`);
    expect(Object.keys(cfg).every((k) => k.startsWith('rubicon:'))).toBe(true);
    // The trusted key is committed (a public key), never a private one.
    expect(JSON.stringify(cfg)).not.toContain('PRIVATE KEY');
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
});

describe('readCurrentTarget: what Azure says, and only a missing VM is absent', () => {
  const cfg = parseInfraConfig(Object.fromEntries(Object.entries(stackConfig('prod')).map(([k, v]) => [k.replace('rubicon:', ''), v])));
  afterEach(() => invokeAnswers.clear());

  it.each([
    ['the azcore shape', azcore404('ResourceNotFound', VM_URL)],
    ['the older Status=404 shape', `Status=404 Code="ResourceNotFound" Message="The Resource 'Microsoft.Compute/virtualMachines/ehr-prd-01' under resource group 'rg-ehr-prod' was not found."`],
  ])('a 404 ResourceNotFound for this VM (%s) is absent', async (_label, text) => {
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => {
      throw grpcError(text);
    });
    expect(await readCurrentTarget(cfg)).toEqual({ state: 'absent' });
  });

  it.each([
    ['ResourceGroupNotFound', azcore404('ResourceGroupNotFound', VM_URL)],
    ['SubscriptionNotFound', azcore404('SubscriptionNotFound', VM_URL)],
    ['a NotFound for another VM', azcore404('ResourceNotFound', VM_URL.replace('ehr-prd-01', 'ehr-prd-012'))],
    ['a 403', 'Status=403 Code="AuthorizationFailed" Message="no read access to virtualMachines/ehr-prd-01"'],
    ['a timeout', 'context deadline exceeded'],
  ])('%s is a refusal naming the VM, never a first deployment', async (_label, text) => {
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => {
      throw grpcError(text);
    });
    await expect(readCurrentTarget(cfg)).rejects.toThrow(/Cannot read target VM ehr-prd-01 in resource group rg-ehr-prod, so its current image is unknown/);
  });

  it('reads image, location and zone of a marketplace VM; names the source of any other', async () => {
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => ({ ...vmWithImage('2022-datacenter-azure-edition')(), zones: ['2'] }));
    expect(await readCurrentTarget(cfg)).toEqual({
      state: 'present',
      image: 'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest',
      imageSource: 'marketplace image MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest',
      location: 'westeurope',
      zone: '2',
    });
    expect(describeVm({ location: 'westeurope', storageProfile: { imageReference: { sharedGalleryImageId: '/SharedGalleries/g/Images/win/Versions/1.0.0' } } })).toMatchObject({
      image: undefined,
      imageSource: 'shared gallery image /SharedGalleries/g/Images/win/Versions/1.0.0',
    });
    // A VM booting from an existing OS disk (a rollback) is identified by that disk: any image change is a rebuild.
    expect(describeVm({ location: 'westeurope', storageProfile: { osDisk: { createOption: 'Attach', managedDisk: { id: '/Disks/D' } } } })).toMatchObject({
      image: 'disk:/disks/d',
      imageSource: 'the attached OS disk /Disks/D',
    });
    expect(describeVm({ location: 'westeurope', storageProfile: { osDisk: { createOption: 'Attach' } } })).toMatchObject({ image: undefined });
    expect(isVmNotFound(azcore404('ResourceNotFound', VM_URL), 'ehr-prd-01')).toBe(true);
  });
});
