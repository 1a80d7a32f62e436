import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { ProvingGround, STORAGE_BLOB_DATA_READER, provingGroundRules, storageServiceTag } from '../../src/infra/azure/components/proving-ground.ts';
import { TargetServer, dataDiskCaching, dataDiskOptions, targetVmOptions, type TargetServerArgs } from '../../src/infra/azure/components/target-server.ts';
import { Vault } from '../../src/infra/azure/components/vault.ts';
import { targetDecision, type GuardInput } from '../../src/infra/azure/guard.ts';
import { KEYS, NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, SUBNET, signed } from './builders.ts';
import { SUBSCRIPTION, optionsRecorder, promiseOf, registered, settled } from '../setup/pulumi-mocks.ts';

const image = { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' };
const decision = (over: Partial<GuardInput>) =>
  targetDecision({
    target: 'ehr-01',
    current: { state: 'present', image: OLD_IMAGE, imageSource: 'x', location: 'westeurope' },
    planned: { image: NEW_IMAGE, location: 'westeurope' },
    permit: signed(),
    publicKeyPem: KEYS.publicKeyPem,
    proofSetHash: PROOF_SET_HASH,
    now: NOW,
    ...over,
  });
const noPermit = decision({ current: { state: 'present', image: NEW_IMAGE, imageSource: 'x', location: 'westeurope' }, permit: undefined });
const withPermit = decision({});

function targetArgs(over: Partial<TargetServerArgs> = {}): TargetServerArgs {
  return {
    name: 'ehr-01',
    resourceGroupName: 'rg-ehr',
    location: 'westeurope',
    vmSize: 'Standard_D4s_v5',
    image,
    decision: noPermit,
    subnetId: SUBNET,
    adminPassword: pulumi.secret('not-a-real-password'),
    dataDisks: [
      { name: 'sqldata', lun: 0, sizeGb: 256 },
      { name: 'ehrfiles', lun: 1, sizeGb: 128 },
    ],
    rdpSourcePrefixes: ['10.10.0.0/24'],
    ...over,
  };
}

describe('TargetServer', () => {
  it('keeps data disks as separate retained, protected Disks attached with deleteOption Detach', async () => {
    const rec = optionsRecorder();
    const t = new TargetServer('tgt-a', targetArgs(), { transformations: [rec.transformation] });
    await settled([t.vm, t.nic, t.nsg, ...t.dataDisks]);
    expect(t.dataDisks).toHaveLength(2);
    for (const d of ['tgt-aDisk-sqldata', 'tgt-aDisk-ehrfiles']) {
      expect(rec.options.get(d)).toMatchObject({ type: 'azure-native:compute:Disk', retainOnDelete: true, protect: true });
    }
    expect(await promiseOf(t.dataDisks[0]!.diskSizeGB)).toBe(256);
    const storage = await promiseOf(t.vm.storageProfile);
    const diskIds = await Promise.all(t.dataDisks.map((d) => promiseOf(d.id)));
    expect(storage?.dataDisks).toEqual([
      expect.objectContaining({ lun: 0, createOption: 'Attach', deleteOption: 'Detach', managedDisk: expect.objectContaining({ id: diskIds[0] }) }),
      expect.objectContaining({ lun: 1, createOption: 'Attach', deleteOption: 'Detach', managedDisk: expect.objectContaining({ id: diskIds[1] }) }),
    ]);
    expect(storage?.osDisk).toMatchObject({ createOption: 'FromImage', deleteOption: 'Detach' });
    expect(storage?.osDisk).not.toHaveProperty('name');
    expect(storage?.imageReference).toEqual(image);
  });

  it('protects the VM without a permit; replaces it (delete first) on any image change', async () => {
    const rec = optionsRecorder();
    const t = new TargetServer('tgt-b', targetArgs(), { transformations: [rec.transformation] });
    await settled([t.vm]);
    expect(rec.options.get('tgt-bVm')).toMatchObject({
      type: 'azure-native:compute:VirtualMachine',
      protect: true,
      deleteBeforeReplace: true,
      replaceOnChanges: ['storageProfile.imageReference', 'storageProfile.osDisk.managedDisk.id'],
      // ARM refuses a password change on an existing VM (and an imported VM has none to read).
      ignoreChanges: ['osProfile.adminPassword'],
    });
  });

  it('lifts protect only with a valid permit', async () => {
    const rec = optionsRecorder();
    const t = new TargetServer('tgt-c', targetArgs({ decision: withPermit }), { transformations: [rec.transformation] });
    await settled([t.vm]);
    expect(rec.options.get('tgt-cVm')?.protect).toBe(false);
    expect(targetVmOptions(withPermit).protect).toBe(false);
    expect(targetVmOptions(noPermit).protect).toBe(true);
    expect(dataDiskOptions()).toEqual({ protect: true, retainOnDelete: true, ignoreChanges: ['creationData'] });
  });

  it('puts the delete guard hook on the VM and on every data disk', async () => {
    const fakeHook = { name: 'rubicon-target-delete-guard' } as unknown as pulumi.ResourceHook;
    const seen = new Map<string, unknown>();
    // Record the hooks, then strip them: the mock monitor cannot register hooks.
    const strip: pulumi.ResourceTransformation = (a) => {
      seen.set(a.name, a.opts.hooks);
      return { props: a.props, opts: { ...a.opts, hooks: undefined } };
    };
    const t = new TargetServer('tgt-h', targetArgs({ deleteGuard: fakeHook }), { transformations: [strip] });
    await settled([t.vm, ...t.dataDisks]);
    for (const n of ['tgt-hVm', 'tgt-hDisk-sqldata', 'tgt-hDisk-ehrfiles']) expect(seen.get(n)).toEqual({ beforeDelete: [fakeHook] });
    expect(seen.get('tgt-hNic')).toBeUndefined();
  });

  it('refuses to exist when the decision refuses the change', () => {
    const refused = decision({ permit: undefined });
    expect(() => new TargetServer('tgt-d', targetArgs({ decision: refused }))).toThrow(RubiconError);
    expect(registered.some((r) => r.name.startsWith('tgt-d'))).toBe(false);
  });

  it('keeps URNs stable across a rename: every child aliases the names it had under the former target names', async () => {
    const rec = optionsRecorder();
    const t = new TargetServer('tgt-f', targetArgs({ name: 'ehr-02', formerNames: ['ehr-01'] }), { transformations: [rec.transformation] });
    await settled([t.vm, t.nic, t.nsg, ...t.dataDisks]);
    // The Azure names follow the new name (so the plan is a replace of the VM, which the guard refuses) ...
    expect(await promiseOf(t.vm.name)).toBe('ehr-02');
    // ... but the logical names do not: no second VM beside the first.
    // (azure-native adds its own type aliases for its API versions after ours.)
    const names = (n: string) => (rec.options.get(n)?.aliases ?? []).filter((a) => typeof a === 'object' && 'name' in a);
    expect(names('tgt-fVm')).toEqual([{ name: 'ehr-02Vm' }, { name: 'ehr-01Vm' }]);
    expect(names('tgt-fNic')).toEqual([{ name: 'ehr-02Nic' }, { name: 'ehr-01Nic' }]);
    expect(names('tgt-fDisk-sqldata')).toEqual([{ name: 'ehr-02Disk-sqldata' }, { name: 'ehr-01Disk-sqldata' }]);
  });

  it('uses existing Azure names when adopting, and host caching None for Premium SSD v2', async () => {
    const t = new TargetServer(
      'tgt-g',
      targetArgs({
        name: 'EHRSRV01',
        nicName: 'ehrsrv01123',
        nsgName: 'EHRSRV01-nsg',
        osDiskName: 'EHRSRV01_OsDisk_1_4c1d',
        zone: '1',
        trustedLaunch: false,
        dataDisks: [{ name: 'sqldata', diskName: 'EHRSRV01_DataDisk_0', lun: 0, sizeGb: 512, type: 'PremiumV2_LRS' }],
      }),
    );
    await settled([t.vm, t.nic, t.nsg, ...t.dataDisks]);
    expect(await promiseOf(t.nic.name)).toBe('ehrsrv01123');
    expect(await promiseOf(t.nsg.name)).toBe('EHRSRV01-nsg');
    expect(await promiseOf(t.dataDisks[0]!.name)).toBe('EHRSRV01_DataDisk_0');
    const sp = await promiseOf(t.vm.storageProfile);
    expect(sp?.osDisk?.name).toBe('EHRSRV01_OsDisk_1_4c1d');
    expect(sp?.dataDisks?.[0]?.caching).toBe('None');
    expect(await promiseOf(t.vm.securityProfile)).toBeUndefined();
    expect(dataDiskCaching('Premium_LRS')).toBe('ReadOnly');
  });

  it('has boot diagnostics, a NIC kept across rebuilds and no public IP; RDP only from the listed networks', async () => {
    const t = new TargetServer('tgt-e', targetArgs());
    await settled([t.vm, t.nic, t.nsg]);
    expect(await promiseOf(t.vm.diagnosticsProfile)).toEqual({ bootDiagnostics: { enabled: true } });
    const nics = (await promiseOf(t.vm.networkProfile))?.networkInterfaces;
    expect(nics).toEqual([expect.objectContaining({ id: await promiseOf(t.nic.id), deleteOption: 'Detach' })]);
    const ipc = await promiseOf(t.nic.ipConfigurations);
    expect(ipc?.[0]).not.toHaveProperty('publicIPAddress');
    const rules = (await promiseOf(t.nsg.securityRules)) ?? [];
    const rdp = rules.find((r) => r.destinationPortRange === '3389');
    expect(rdp).toMatchObject({ access: 'Allow', direction: 'Inbound', sourceAddressPrefixes: ['10.10.0.0/24'] });
    expect(rules).toContainEqual(expect.objectContaining({ access: 'Deny', direction: 'Inbound', sourceAddressPrefix: 'Internet' }));
    expect(registered.filter((r) => r.name.startsWith('tgt-e')).map((r) => r.type)).not.toContain('azure-native:network:PublicIPAddress');
  });
});

describe('ProvingGround', () => {
  const accountId = `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-vault/providers/Microsoft.Storage/storageAccounts/v`;
  const containerId = `${accountId}/blobServices/default/containers/rubicon-backups`;
  const make = (name: string) =>
    new ProvingGround(name, {
      location: 'westeurope',
      runId: 'run-7',
      createdAt: '2026-03-01T08:00:00Z',
      ttlHours: 6,
      adminPassword: pulumi.secret('not-a-real-password'),
      vaultContainerId: containerId,
      vaultStorageAccountId: accountId,
    });
  const children = (pg: ProvingGround) => [pg.resourceGroup, pg.vnet, pg.subnet, pg.endpointPolicy, pg.nsg, pg.nic, pg.identity, pg.vaultReader, pg.vm, pg.shutdown];

  it('has no public IP, no peering and no default outbound access', async () => {
    const pg = make('pg-a');
    await settled(children(pg));
    const mine = registered.filter((r) => r.name.startsWith('pg-a') && r.type.startsWith('azure-native:'));
    expect(mine.map((r) => r.type).sort()).toEqual(
      [
        'azure-native:authorization:RoleAssignment',
        'azure-native:compute:VirtualMachine',
        'azure-native:devtestlab:GlobalSchedule',
        'azure-native:managedidentity:UserAssignedIdentity',
        'azure-native:network:NetworkInterface',
        'azure-native:network:NetworkSecurityGroup',
        'azure-native:network:ServiceEndpointPolicy',
        'azure-native:network:Subnet',
        'azure-native:network:VirtualNetwork',
        'azure-native:resources:ResourceGroup',
      ].sort(),
    );
    expect(await promiseOf(pg.subnet.defaultOutboundAccess)).toBe(false);
    expect(await promiseOf(pg.subnet.networkSecurityGroup)).toEqual({ id: await promiseOf(pg.nsg.id) });
    expect(await promiseOf(pg.vnet.virtualNetworkPeerings)).toBeUndefined();
    expect((await promiseOf(pg.nic.ipConfigurations))?.[0]).not.toHaveProperty('publicIPAddress');
  });

  it('denies the Internet both ways; the only way out is HTTPS to Storage in its region', async () => {
    const pg = make('pg-b');
    await settled(children(pg));
    const rules = (await promiseOf(pg.nsg.securityRules)) ?? [];
    expect(rules).toEqual(provingGroundRules('westeurope'));
    const allowOut = rules.filter((r) => r.direction === 'Outbound' && r.access === 'Allow');
    // The regional service tag is spelled with the region's display name (Storage.WestEurope), not the location.
    expect(allowOut).toEqual([expect.objectContaining({ destinationAddressPrefix: 'Storage.WestEurope', destinationPortRange: '443', protocol: 'Tcp' })]);
    expect(rules).toContainEqual(expect.objectContaining({ direction: 'Outbound', access: 'Deny', destinationAddressPrefix: 'Internet', destinationPortRange: '*' }));
    expect(rules).toContainEqual(expect.objectContaining({ direction: 'Inbound', access: 'Deny', sourceAddressPrefix: 'Internet', destinationPortRange: '*' }));
    expect(rules.filter((r) => r.direction === 'Inbound' && r.access === 'Allow')).toEqual([]);
    const deny = rules.find((r) => r.name === 'deny-internet-outbound')!;
    expect(allowOut[0]!.priority!).toBeLessThan(deny.priority!);
  });

  it('its subnet reaches Storage only through a service endpoint policy naming the vault account alone', async () => {
    const pg = make('pg-e');
    await settled(children(pg));
    expect(await promiseOf(pg.endpointPolicy.serviceEndpointPolicyDefinitions)).toEqual([
      expect.objectContaining({ service: 'Microsoft.Storage', serviceResources: [accountId] }),
    ]);
    expect(await promiseOf(pg.subnet.serviceEndpointPolicies)).toEqual([{ id: await promiseOf(pg.endpointPolicy.id) }]);
    expect(await promiseOf(pg.subnet.serviceEndpoints)).toEqual([{ service: 'Microsoft.Storage', locations: ['westeurope'] }]);
  });

  it('spells regional Storage tags as Azure does, and refuses a region it does not know', () => {
    expect(storageServiceTag('westeurope')).toBe('Storage.WestEurope');
    expect(storageServiceTag('East US 2')).toBe('Storage.EastUS2');
    expect(storageServiceTag('uksouth')).toBe('Storage.UKSouth');
    expect(() => storageServiceTag('marsnorth')).toThrow(/does not know the service-tag spelling of region "marsnorth"/);
    expect(provingGroundRules('marsnorth', 'Storage.MarsNorth')[0]!.destinationAddressPrefix).toBe('Storage.MarsNorth');
  });

  it('its identity may only read the vault container', async () => {
    const pg = make('pg-c');
    await settled(children(pg));
    expect(await promiseOf(pg.vaultReader.scope)).toBe(containerId);
    expect(await promiseOf(pg.vaultReader.roleDefinitionId)).toBe(`/subscriptions/${SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/${STORAGE_BLOB_DATA_READER}`);
    expect(await promiseOf(pg.vaultReader.principalId)).toBe(await promiseOf(pg.identity.principalId));
    expect(registered.filter((r) => r.name.startsWith('pg-c') && r.type === 'azure-native:authorization:RoleAssignment')).toHaveLength(1);
    expect(await promiseOf(pg.vm.identity)).toEqual({ type: 'UserAssigned', userAssignedIdentities: [await promiseOf(pg.identity.id)] });
  });

  it('runs SQL Server on Windows, shuts down daily and carries its TTL', async () => {
    const pg = make('pg-d');
    await settled(children(pg));
    expect((await promiseOf(pg.vm.storageProfile))?.imageReference).toEqual({ publisher: 'MicrosoftSQLServer', offer: 'sql2022-ws2022', sku: 'sqldev-gen2', version: 'latest' });
    expect(await promiseOf(pg.shutdown.taskType)).toBe('ComputeVmShutdownTask');
    expect(await promiseOf(pg.shutdown.status)).toBe('Enabled');
    expect(await promiseOf(pg.shutdown.targetResourceId)).toBe(await promiseOf(pg.vm.id));
    expect(await promiseOf(pg.shutdown.name)).toBe('shutdown-computevm-pg-d-vm');
    expect(await promiseOf(pg.vm.tags)).toMatchObject({ 'rubicon-role': 'proving-ground', 'rubicon-ttl': '6h', 'rubicon-expires-at': '2026-03-01T14:00:00.000Z' });
  });
});

describe('Vault', () => {
  it('is a WORM container in an HTTPS-only, TLS 1.2, private account with soft delete, all retained', async () => {
    const rec = optionsRecorder();
    const v = new Vault(
      'vault-a',
      { resourceGroupName: 'rg-vault', location: 'westeurope', storageAccountName: 'rubiconvault01', keyVaultName: 'kv-rubicon-01', tenantId: '11111111-2222-3333-4444-555555555555', retentionDays: 35 },
      { transformations: [rec.transformation] },
    );
    await settled([v.account, v.blobService, v.container, v.immutabilityPolicy, v.keyVault]);
    expect(await promiseOf(v.account.enableHttpsTrafficOnly)).toBe(true);
    expect(await promiseOf(v.account.minimumTlsVersion)).toBe('TLS1_2');
    expect(await promiseOf(v.account.allowBlobPublicAccess)).toBe(false);
    expect(await promiseOf(v.account.allowSharedKeyAccess)).toBe(false);
    expect(await promiseOf(v.container.immutableStorageWithVersioning)).toEqual({ enabled: true });
    expect(await promiseOf(v.container.publicAccess)).toBe('None');
    expect(await promiseOf(v.blobService.isVersioningEnabled)).toBe(true);
    expect(await promiseOf(v.blobService.deleteRetentionPolicy)).toEqual({ enabled: true, days: 14 });
    expect(await promiseOf(v.immutabilityPolicy.immutabilityPeriodSinceCreationInDays)).toBe(35);
    const worm = registered.find((r) => r.name === 'vault-aWorm');
    expect(worm?.inputs).toMatchObject({ containerName: 'rubicon-backups', accountName: 'rubiconvault01', allowProtectedAppendWrites: false });
    for (const n of ['vault-aAccount', 'vault-aBlobService', 'vault-aContainer', 'vault-aWorm', 'vault-aKeyVault']) {
      expect(rec.options.get(n)).toMatchObject({ retainOnDelete: true, protect: true });
    }
    expect(await promiseOf(v.keyVault.properties)).toMatchObject({ enableRbacAuthorization: true, enableSoftDelete: true, enablePurgeProtection: true });
    expect(await promiseOf(v.blobEndpoint)).toBe('https://rubiconvault01.blob.core.windows.net/');
  });
});
