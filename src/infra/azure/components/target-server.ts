import * as pulumi from '@pulumi/pulumi';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import { RubiconError } from '../../../core/errors.ts';
import type { ImageSpec } from '../config.ts';
import type { ImageChangeDecision } from '../guard.ts';
import { TARGET_SERVER_TYPE, targetVmLogicalName } from '../names.ts';

/** The VM property whose change means a rebuild (azure-native has no force-new list for Compute). */
export const IMAGE_REFERENCE_PATH = 'storageProfile.imageReference';

export interface TargetDataDisk {
  /** Suffix of the disk's Azure name: `<name>-<disk name>`. */
  name: string;
  /** LUN on the VM; unique. */
  lun: number;
  sizeGb: number;
  /** Managed disk SKU. Default `Premium_LRS`. */
  type?: string;
}

export interface TargetServerArgs {
  /** Existing resource group holding the target. Not created here. */
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  /** VM size, e.g. `Standard_D4s_v5`. */
  vmSize: pulumi.Input<string>;
  /** The image to run. Changing it replaces the VM: see `imageDecision`. */
  image: ImageSpec;
  /**
   * The guard's verdict for this run (src/infra/azure/guard.ts). Required:
   * nobody builds a target without deciding whether its image may change.
   * When `allowed` is false the constructor throws PERMIT_INVALID and creates nothing.
   */
  imageDecision: ImageChangeDecision;
  /** Existing subnet the NIC joins (the target keeps its network across rebuilds). */
  subnetId: pulumi.Input<string>;
  /** Local administrator. Default `rubiconadmin`. */
  adminUsername?: pulumi.Input<string>;
  /** Local administrator password: a Pulumi secret (`pulumi config set --secret`). */
  adminPassword: pulumi.Input<string>;
  /** OS disk SKU. Default `Premium_LRS`. */
  osDiskType?: string;
  /** Data disks: separate `Disk` resources that survive every rebuild. Default none. */
  dataDisks?: TargetDataDisk[];
  /** CIDRs allowed to RDP (3389). Default none: no RDP rule, use Run Command or Bastion. */
  rdpSourcePrefixes?: string[];
  /** Availability zone. Default none (regional). Disks follow the VM's zone. */
  zone?: string;
  /** Trusted Launch (Secure Boot + vTPM); needs a Gen2 image. Default true. */
  trustedLaunch?: boolean;
  tags?: Record<string, string>;
}

/**
 * Pure: the resource options of the target VM. `protect` comes from the
 * guard (true unless a valid permit for the planned image is present);
 * a replace always deletes the old VM first (its NIC and fixed name cannot
 * be shared) and any image change is planned as a replace.
 */
export function targetVmOptions(decision: ImageChangeDecision): {
  protect: boolean;
  deleteBeforeReplace: true;
  replaceOnChanges: string[];
} {
  return { protect: decision.protect, deleteBeforeReplace: true, replaceOnChanges: [IMAGE_REFERENCE_PATH] };
}

/**
 * Pure: the resource options of every data disk. They hold the data: never
 * deleted by Pulumi (retainOnDelete) and never replaced or deleted by a plan
 * (protect), whatever happens to the VM.
 */
export function dataDiskOptions(): { protect: true; retainOnDelete: true } {
  return { protect: true, retainOnDelete: true };
}

/**
 * The server to be rebuilt: a Windows Server VM with its NIC, NSG, boot
 * diagnostics and data disks.
 *
 * Guarantees:
 * - data disks are separate resources attached with `deleteOption: Detach`,
 *   retained and protected: a rebuild never takes them;
 * - the OS disk is `deleteOption: Detach` and unnamed (Azure names it per
 *   VM), so the old OS disk survives a rebuild as a rollback asset;
 * - the NIC is `deleteOption: Detach` and keeps its address;
 * - an image change is planned as a replace (delete first) and only ever
 *   runs when the guard found a valid permit for that image.
 */
export class TargetServer extends pulumi.ComponentResource {
  readonly vm: compute.VirtualMachine;
  readonly nic: network.NetworkInterface;
  readonly nsg: network.NetworkSecurityGroup;
  readonly dataDisks: compute.Disk[];
  readonly vmId: pulumi.Output<string>;
  readonly imageUrn: string;

  constructor(name: string, args: TargetServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super(TARGET_SERVER_TYPE, name, {}, opts);
    if (!args.imageDecision.allowed) {
      throw new RubiconError('PERMIT_INVALID', args.imageDecision.message ?? `Target ${name}: image change refused.`, {
        hint: args.imageDecision.fix ?? 'Run `rubicon upgrade` to prove the backups and obtain a permit.',
      });
    }
    const { image } = args;
    this.imageUrn = `${image.publisher}:${image.offer}:${image.sku}:${image.version}`;
    const tags = { ...args.tags, 'rubicon-role': 'target' };
    this.nsg = this.createNsg(name, args, tags);
    this.nic = this.createNic(name, args, tags);
    this.dataDisks = this.createDataDisks(name, args, tags);
    this.vm = this.createVm(name, args, tags);
    this.vmId = this.vm.id;
    this.registerOutputs({ vmId: this.vmId, imageUrn: this.imageUrn });
  }

  private createNsg(name: string, args: TargetServerArgs, tags: Record<string, string>): network.NetworkSecurityGroup {
    const rules: network.NetworkSecurityGroupArgs['securityRules'] = [];
    if ((args.rdpSourcePrefixes ?? []).length > 0) {
      rules.push({
        name: 'allow-rdp-management',
        priority: 100,
        direction: 'Inbound',
        access: 'Allow',
        protocol: 'Tcp',
        sourceAddressPrefixes: args.rdpSourcePrefixes,
        sourcePortRange: '*',
        destinationAddressPrefix: '*',
        destinationPortRange: '3389',
      });
    }
    rules.push({
      name: 'deny-internet-inbound',
      priority: 4000,
      direction: 'Inbound',
      access: 'Deny',
      protocol: '*',
      sourceAddressPrefix: 'Internet',
      sourcePortRange: '*',
      destinationAddressPrefix: '*',
      destinationPortRange: '*',
    });
    return new network.NetworkSecurityGroup(
      `${name}Nsg`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        networkSecurityGroupName: `${name}-nsg`,
        securityRules: rules,
        tags,
      },
      { parent: this },
    );
  }

  private createNic(name: string, args: TargetServerArgs, tags: Record<string, string>): network.NetworkInterface {
    return new network.NetworkInterface(
      `${name}Nic`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        networkInterfaceName: `${name}-nic`,
        ipConfigurations: [{ name: 'ipconfig1', subnet: { id: args.subnetId }, privateIPAllocationMethod: 'Dynamic' }],
        networkSecurityGroup: { id: this.nsg.id },
        tags,
      },
      { parent: this },
    );
  }

  private createDataDisks(name: string, args: TargetServerArgs, tags: Record<string, string>): compute.Disk[] {
    return (args.dataDisks ?? []).map(
      (d) =>
        new compute.Disk(
          `${name}Disk-${d.name}`,
          {
            resourceGroupName: args.resourceGroupName,
            location: args.location,
            diskName: `${name}-${d.name}`,
            creationData: { createOption: 'Empty' },
            diskSizeGB: d.sizeGb,
            sku: { name: d.type ?? 'Premium_LRS' },
            ...(args.zone ? { zones: [args.zone] } : {}),
            tags: { ...tags, 'rubicon-disk': d.name },
          },
          { parent: this, ...dataDiskOptions() },
        ),
    );
  }

  private createVm(name: string, args: TargetServerArgs, tags: Record<string, string>): compute.VirtualMachine {
    const disks = args.dataDisks ?? [];
    return new compute.VirtualMachine(
      targetVmLogicalName(name),
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        vmName: name,
        hardwareProfile: { vmSize: args.vmSize },
        storageProfile: {
          imageReference: { ...args.image },
          osDisk: {
            createOption: 'FromImage',
            deleteOption: 'Detach',
            caching: 'ReadWrite',
            managedDisk: { storageAccountType: args.osDiskType ?? 'Premium_LRS' },
          },
          dataDisks: disks.map((d, i) => ({
            lun: d.lun,
            createOption: 'Attach',
            deleteOption: 'Detach',
            caching: 'ReadOnly',
            managedDisk: { id: this.dataDisks[i]!.id },
          })),
        },
        osProfile: {
          computerName: name,
          adminUsername: args.adminUsername ?? 'rubiconadmin',
          adminPassword: args.adminPassword,
          windowsConfiguration: { provisionVMAgent: true, enableAutomaticUpdates: true },
        },
        networkProfile: { networkInterfaces: [{ id: this.nic.id, primary: true, deleteOption: 'Detach' }] },
        diagnosticsProfile: { bootDiagnostics: { enabled: true } },
        ...(args.trustedLaunch === false
          ? {}
          : { securityProfile: { securityType: 'TrustedLaunch', uefiSettings: { secureBootEnabled: true, vTpmEnabled: true } } }),
        ...(args.zone ? { zones: [args.zone] } : {}),
        tags,
      },
      { parent: this, dependsOn: this.dataDisks, ...targetVmOptions(args.imageDecision) },
    );
  }
}
