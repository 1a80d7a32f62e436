import { readFileSync } from 'node:fs';
import * as pulumi from '@pulumi/pulumi';
import { beforeEach, describe, expect, it } from 'vitest';
import { parseInfraConfig } from '../../src/infra/azure/config.ts';
import { describeVm, type VmFacts } from '../../src/infra/azure/current.ts';
import { TargetServer } from '../../src/infra/azure/components/target-server.ts';
import { TARGET_COMPONENT_NAME } from '../../src/infra/azure/names.ts';
import { adoptionIds, rubiconInfra } from '../../src/infra/azure/program.ts';
import { rawConfig } from './builders.ts';
import { promiseOf, registered } from '../setup/pulumi-mocks.ts';

/**
 * Adopting an existing server: the stack state after the adoption up is
 * shaped like test/infra/fixtures/imported-state.json (hand-made in the shape
 * of `pulumi stack export`, deployment v3, for a legacy VM EHRSRV01 with
 * Azure-generated names, a Gen1 image and a data disk restored from a
 * snapshot). The program, configured with those names, must declare exactly
 * those URNs, import exactly those ids, and ask for the same identifying
 * settings, so the adoption's import succeeds and later ups plan no replace.
 */

interface StateResource {
  urn: string;
  custom: boolean;
  id?: string;
  type: string;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
  protect?: boolean;
}
const state = (JSON.parse(readFileSync(new URL('./fixtures/imported-state.json', import.meta.url), 'utf8')) as { deployment: { resources: StateResource[] } }).deployment.resources;
const imported = state.filter((r) => r.custom && r.type.startsWith('azure-native:'));
const byName = (n: string) => state.find((r) => r.urn.endsWith(`::${n}`))!;

const vmState = byName('targetVm');
const cfgFor = (adopt: boolean) =>
  parseInfraConfig(
    rawConfig({
      resourceGroupName: 'rg-ehr-legacy',
      target: {
        name: 'EHRSRV01',
        vmSize: 'Standard_D4s_v3',
        image: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2019-datacenter', version: 'latest' },
        subnetId: '/subscriptions/3c5a1d7e-2b9f-4e61-8d0a-5b7c9e1f2a34/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/servers',
        adminUsername: 'ehradmin',
        nicName: 'ehrsrv01123',
        nsgName: 'EHRSRV01-nsg',
        osDiskName: 'EHRSRV01_OsDisk_1_4c1d8f3e2a9b4d0c8e7f6a5b4c3d2e1f',
        trustedLaunch: false,
        dataDisks: [{ name: 'sqldata', diskName: 'EHRSRV01_DataDisk_0', lun: 0, sizeGb: 512 }],
        rdpSourcePrefixes: [],
        adopt,
      },
    }),
  );
const secrets = { targetAdminPassword: pulumi.secret('not-read-back-from-azure') };
const NOW = new Date('2026-03-01T10:00:00Z');

/** Pulumi's wire form of a secret (sdk/nodejs/runtime/rpc.ts specialSigKey + secretSig). */
const SECRET_SIG = '4dabf18193072939515e22adb298388d';
const unwrap = (v: unknown): unknown => (v && typeof v === 'object' && SECRET_SIG in v ? (v as unknown as { value: unknown }).value : v);

function pick(o: unknown, paths: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of paths) out[p] = p.split('.').reduce<unknown>((v, k) => { const u = unwrap(v); return u && typeof u === 'object' ? unwrap((u as Record<string, unknown>)[k]) : undefined; }, o);
  return out;
}

const IDENTIFYING: Record<string, string[]> = {
  'azure-native:compute:VirtualMachine': ['vmName', 'resourceGroupName', 'location', 'hardwareProfile.vmSize', 'storageProfile.imageReference', 'storageProfile.osDisk.name', 'osProfile.computerName', 'osProfile.adminUsername'],
  'azure-native:compute:Disk': ['diskName', 'resourceGroupName', 'location', 'diskSizeGB', 'sku.name'],
  'azure-native:network:NetworkInterface': ['networkInterfaceName', 'resourceGroupName', 'location'],
  'azure-native:network:NetworkSecurityGroup': ['networkSecurityGroupName', 'resourceGroupName', 'location'],
};

describe('adopting an existing server', () => {
  beforeEach(() => {
    registered.length = 0;
  });

  it('an imported VM reads as present with its image (not a first deployment)', () => {
    const cur = describeVm(vmState.outputs as unknown as VmFacts);
    expect(cur).toMatchObject({ state: 'present', image: 'MicrosoftWindowsServer:WindowsServer:2019-datacenter:latest', location: 'westeurope' });
  });

  it('with adopt: true the program imports exactly the ids in the state, under the same URNs, asking for the same settings', async () => {
    const cfg = cfgFor(true);
    expect(adoptionIds(cfg)).toEqual({
      vm: vmState.id,
      nic: byName('targetNic').id,
      nsg: byName('targetNsg').id,
      disks: { sqldata: byName('targetDisk-sqldata').id },
    });
    const current = describeVm(vmState.outputs as unknown as VmFacts);
    const out = await rubiconInfra(cfg, secrets, { currentTarget: async () => current, now: () => NOW });
    expect(out.targetProtected).toBe(true);
    await promiseOf(out.targetVmId);
    for (const r of imported) {
      const name = r.urn.slice(r.urn.lastIndexOf('::') + 2);
      const declared = registered.filter((x) => x.type === r.type && x.name === name).at(-1);
      expect(declared, name).toBeDefined();
      // The mock monitor passes the import option on as the id.
      expect(declared!.id, name).toBe(r.id);
      expect(pick(declared!.inputs, IDENTIFYING[r.type]!), name).toEqual(pick(r.inputs, IDENTIFYING[r.type]!));
    }
  });

  it('the target component and its children get the URNs of the state (stack name aside)', async () => {
    const stackless = (u: string) => u.replace(/^urn:pulumi:[^:]+::/, 'urn:pulumi:*::');
    const cfg = cfgFor(false);
    const t = new TargetServer(TARGET_COMPONENT_NAME, {
      name: cfg.target.name,
      resourceGroupName: cfg.resourceGroupName,
      location: cfg.location,
      vmSize: cfg.target.vmSize,
      image: cfg.target.image,
      decision: { protect: true, allowed: true, changing: false, permitValid: false, deleteAllowed: false },
      subnetId: cfg.target.subnetId,
      adminPassword: secrets.targetAdminPassword,
      nicName: cfg.target.nicName,
      nsgName: cfg.target.nsgName,
      dataDisks: cfg.target.dataDisks,
    });
    const urns = await Promise.all([t.urn, t.vm.urn, t.nic.urn, t.nsg.urn, ...t.dataDisks.map((d) => d.urn)].map((u) => promiseOf(u)));
    const expected = ['target', 'targetVm', 'targetNic', 'targetNsg', 'targetDisk-sqldata'].map((n) => stackless(byName(n).urn));
    expect(urns.map(stackless)).toEqual(expected);
  });

  it('the imported data disk was restored from a snapshot: its creationData differs, and is ignored, so no replace is planned', () => {
    expect((byName('targetDisk-sqldata').inputs as { creationData: { createOption: string } }).creationData.createOption).toBe('Restore');
    // target-server.ts dataDiskOptions(): ignoreChanges ['creationData'] (tested in components.test.ts).
  });

  it('after adoption (adopt: false) nothing is imported again', async () => {
    const current = describeVm(vmState.outputs as unknown as VmFacts);
    const out = await rubiconInfra(cfgFor(false), secrets, { currentTarget: async () => current, now: () => NOW });
    await promiseOf(out.targetVmId);
    const vm = registered.filter((x) => x.name === 'targetVm').at(-1)!;
    expect(vm.id).not.toBe(vmState.id); // a generated id: no import option
  });
});
