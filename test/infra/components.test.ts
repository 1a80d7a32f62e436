import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { ProvingGround, STORAGE_BLOB_DATA_READER, provingGroundRules } from '../../src/infra/azure/components/proving-ground.ts';
import { TargetServer, dataDiskOptions, targetVmOptions, type TargetServerArgs } from '../../src/infra/azure/components/target-server.ts';
import { Vault } from '../../src/infra/azure/components/vault.ts';
import { imageChangeDecision } from '../../src/infra/azure/guard.ts';
import { NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, SUBNET, permit } from './builders.ts';
import { SUBSCRIPTION, optionsRecorder, promiseOf, registered, settled } from '../setup/pulumi-mocks.ts';

const image = { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' };
const noPermit = imageChangeDecision({ target: 't', currentImage: NEW_IMAGE, plannedImage: NEW_IMAGE, permit: undefined, proofSetHash: undefined, now: NOW });
const withPermit = imageChangeDecision({ target: 'ehr-01', currentImage: OLD_IMAGE, plannedImage: NEW_IMAGE, permit: permit(), proofSetHash: PROOF_SET_HASH, now: NOW });

function targetArgs(over: Partial<TargetServerArgs> = {}): TargetServerArgs {
  return {
    resourceGroupName: 'rg-ehr',
    location: 'westeurope',
    vmSize: 'Standard_D4s_v5',
    image,
    imageDecision: noPermit,
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
      replaceOnChanges: ['storageProfile.imageReference'],
    });
  });

  it('lifts protect only with a valid permit', async () => {
    const rec = optionsRecorder();
    const t = new TargetServer('tgt-c', targetArgs({ imageDecision: withPermit }), { transformations: [rec.transformation] });
    await settled([t.vm]);
    expect(rec.options.get('tgt-cVm')?.protect).toBe(false);
    expect(targetVmOptions(withPermit).protect).toBe(false);
    expect(targetVmOptions(noPermit).protect).toBe(true);
    expect(dataDiskOptions()).toEqual({ protect: true, retainOnDelete: true });
  });

  it('refuses to exist when the decision refuses the change', () => {
    const refused = imageChangeDecision({ target: 'tgt-d', currentImage: OLD_IMAGE, plannedImage: NEW_IMAGE, permit: undefined, proofSetHash: undefined, now: NOW });
    expect(() => new TargetServer('tgt-d', targetArgs({ imageDecision: refused }))).toThrow(RubiconError);
    expect(registered.some((r) => r.name.startsWith('tgt-d'))).toBe(false);
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
  const containerId = `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-vault/providers/Microsoft.Storage/storageAccounts/v/blobServices/default/containers/rubicon-backups`;
  const make = (name: string) =>
    new ProvingGround(name, {
      location: 'westeurope',
      runId: 'run-7',
      createdAt: '2026-03-01T08:00:00Z',
      ttlHours: 6,
      adminPassword: pulumi.secret('not-a-real-password'),
      vaultContainerId: containerId,
    });
  const children = (pg: ProvingGround) => [pg.resourceGroup, pg.vnet, pg.subnet, pg.nsg, pg.nic, pg.identity, pg.vaultReader, pg.vm, pg.shutdown];

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
    expect(allowOut).toEqual([expect.objectContaining({ destinationAddressPrefix: 'Storage.westeurope', destinationPortRange: '443', protocol: 'Tcp' })]);
    expect(rules).toContainEqual(expect.objectContaining({ direction: 'Outbound', access: 'Deny', destinationAddressPrefix: 'Internet', destinationPortRange: '*' }));
    expect(rules).toContainEqual(expect.objectContaining({ direction: 'Inbound', access: 'Deny', sourceAddressPrefix: 'Internet', destinationPortRange: '*' }));
    expect(rules.filter((r) => r.direction === 'Inbound' && r.access === 'Allow')).toEqual([]);
    const deny = rules.find((r) => r.name === 'deny-internet-outbound')!;
    expect(allowOut[0]!.priority!).toBeLessThan(deny.priority!);
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
