import * as pulumi from '@pulumi/pulumi';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import { RubiconError } from '../../../core/errors.ts';
import type { ImageSpec } from '../config.ts';
import type { GuardDecision } from '../guard.ts';
import { TARGET_SERVER_TYPE, targetChildName } from '../names.ts';

/** The VM property whose change means a rebuild (azure-native has no force-new list for Compute). */
export const IMAGE_REFERENCE_PATH = 'storageProfile.imageReference';
/** Which existing OS disk the VM boots from (a rollback): a change of it is a rebuild too. */
export const OS_DISK_SOURCE_PATH = 'storageProfile.osDisk.managedDisk.id';
/** ARM refuses to change the admin password of an existing VM through the VM resource. */
export const ADMIN_PASSWORD_PATH = 'osProfile.adminPassword';

export interface TargetDataDisk {
  /** Role of the disk (`sqldata`); names its resource (`<component>Disk-<name>`). */
  name: string;
  /** Azure name of the disk. Default `<vm name>-<name>`. */
  diskName?: string;
  /** LUN on the VM; unique. */
  lun: number;
  sizeGb: number;
  /** Managed disk SKU. Default `Premium_LRS`. `PremiumV2_LRS` gets host caching None (ARM accepts nothing else). */
  type?: string;
}

export interface TargetServerArgs {
  /** Azure name of the VM and its Windows computer name (rubicon:target.name). */
  name: string;
  /** Names the target had before: aliases, so a rename is planned as a replace (refused) and never as a second VM. Default none. */
  formerNames?: string[];
  /** Existing resource group holding the target. Not created here. */
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  /** VM size, e.g. `Standard_D4s_v5`. */
  vmSize: pulumi.Input<string>;
  /** The image to run. Changing it replaces the VM: see `decision`. */
  image: ImageSpec;
  /**
   * The guard's verdict for this run (src/infra/azure/guard.ts). Required:
   * nobody builds a target without deciding whether it may be replaced.
   * When `allowed` is false the constructor throws PERMIT_INVALID and creates nothing.
   */
  decision: GuardDecision;
  /** The engine-side delete guard (../hooks.ts) on the VM and every data disk. Default none (unit tests under mocks). */
  deleteGuard?: pulumi.ResourceHook;
  /** Existing subnet the NIC joins (the target keeps its network across rebuilds). */
  subnetId: pulumi.Input<string>;
  /** Local administrator. Default `rubiconadmin`. */
  adminUsername?: pulumi.Input<string>;
  /** Local administrator password: a Pulumi secret. Ignored after creation (ARM cannot change it on an existing VM). */
  adminPassword: pulumi.Input<string>;
  /** OS disk SKU. Default `Premium_LRS`. */
  osDiskType?: string;
  /** OS disk name. Default: Azure names it. Adoption: the existing one's name; each crossing sets a fresh one. */
  osDiskName?: string;
  /**
   * Adoption: ARM ids of the existing VM, NIC, NSG and data disks (by role)
   * to import instead of create (Pulumi's `import` option). Default none.
   */
  adoptIds?: { vm: string; nic: string; nsg: string; disks: Record<string, string> };
  /** Boot from this existing OS disk instead of `image` (set by `rubicon rollback`). Default: from the image. */
  restoreFromDisk?: string;
  /** Azure name of the NIC. Default `<name>-nic`. */
  nicName?: string;
  /** Azure name of the NSG. Default `<name>-nsg`. */
  nsgName?: string;
  /** Data disks: separate `Disk` resources that survive every rebuild. Default none. */
  dataDisks?: TargetDataDisk[];
  /** CIDRs allowed to RDP (3389). Default none: no RDP rule, use Run Command or Bastion. */
  rdpSourcePrefixes?: string[];
  /** Availability zone. Default none (regional). Disks follow the VM's zone. */
  zone?: string;
  /** Trusted Launch (Secure Boot + vTPM); needs a Gen2 image. Default true; false to adopt a Gen1 VM. */
  trustedLaunch?: boolean;
  tags?: Record<string, string>;
}

/** Pure: the aliases of a child named `<component><suffix>`, for every name its URN had before (`<former><suffix>`). */
export function childAliases(formerComponentNames: string[], suffix: string): { name: string }[] {
  return formerComponentNames.map((n) => ({ name: `${n}${suffix}` }));
}

/**
 * Pure: the resource options of the target VM. `protect` comes from the
 * guard (true unless a valid permit is present); a replace always deletes
 * the old VM first (its NIC and fixed name cannot be shared); any image
 * change is planned as a replace; the admin password is ignored after
 * creation (ARM rejects changing it on an existing VM); the delete guard
 * hook refuses any delete without a permit.
 */
export function targetVmOptions(
  decision: GuardDecision,
  extra: { deleteGuard?: pulumi.ResourceHook; aliases?: { name: string }[] } = {},
): {
  protect: boolean;
  deleteBeforeReplace: true;
  replaceOnChanges: string[];
  ignoreChanges: string[];
  hooks?: { beforeDelete: pulumi.ResourceHook[] };
  aliases?: { name: string }[];
} {
  return {
    protect: decision.protect,
    deleteBeforeReplace: true,
    replaceOnChanges: [IMAGE_REFERENCE_PATH, OS_DISK_SOURCE_PATH],
    ignoreChanges: [ADMIN_PASSWORD_PATH],
    ...(extra.deleteGuard ? { hooks: { beforeDelete: [extra.deleteGuard] } } : {}),
    ...(extra.aliases && extra.aliases.length > 0 ? { aliases: extra.aliases } : {}),
  };
}

/**
 * Pure: the resource options of every data disk. They hold the data: never
 * deleted by Pulumi (retainOnDelete), never replaced or deleted by a plan
 * (protect, and the delete guard hook), whatever happens to the VM.
 * `creationData` only matters when a disk is created, and an adopted disk's
 * differs (Copy, Restore): it is ignored, so adoption never plans a replace.
 */
export function dataDiskOptions(extra: { deleteGuard?: pulumi.ResourceHook; aliases?: { name: string }[] } = {}): {
  protect: true;
  retainOnDelete: true;
  ignoreChanges: string[];
  hooks?: { beforeDelete: pulumi.ResourceHook[] };
  aliases?: { name: string }[];
} {
  return {
    protect: true,
    retainOnDelete: true,
    ignoreChanges: ['creationData'],
    ...(extra.deleteGuard ? { hooks: { beforeDelete: [extra.deleteGuard] } } : {}),
    ...(extra.aliases && extra.aliases.length > 0 ? { aliases: extra.aliases } : {}),
  };
}

/** Pure: host caching for a data disk SKU (Premium SSD v2 and Ultra accept only None). */
export function dataDiskCaching(type: string | undefined): 'None' | 'ReadOnly' {
  return type === 'PremiumV2_LRS' || type === 'UltraSSD_LRS' ? 'None' : 'ReadOnly';
}

/**
 * The server to be rebuilt: a Windows Server VM with its NIC, NSG, boot
 * diagnostics and data disks.
 *
 * Guarantees:
 * - data disks are separate resources attached with `deleteOption: Detach`,
 *   retained and protected, with the delete guard: a rebuild never takes them;
 * - the OS disk is `deleteOption: Detach`, so the old OS disk survives a
 *   rebuild as a rollback asset;
 * - the NIC is `deleteOption: Detach` and keeps its address;
 * - an image change is planned as a replace (delete first) and only ever
 *   runs when the guard found a valid signed permit; without one the engine's
 *   delete hook refuses the delete, and the ARM lock behind it stops ARM.
 */
export class TargetServer extends pulumi.ComponentResource {
  readonly vm: compute.VirtualMachine;
  readonly nic: network.NetworkInterface;
  readonly nsg: network.NetworkSecurityGroup;
  readonly dataDisks: compute.Disk[];
  readonly vmId: pulumi.Output<string>;
  readonly imageUrn: string;
  readonly #component: string;
  readonly #former: string[];

  /** `component` is the logical (URN) name, stable across renames (names.ts TARGET_COMPONENT_NAME); `args.name` is the Azure name. */
  constructor(component: string, args: TargetServerArgs, opts?: pulumi.ComponentResourceOptions) {
    const former = [...new Set([args.name, ...(args.formerNames ?? [])])].filter((n) => n !== component);
    super(TARGET_SERVER_TYPE, component, {}, { ...opts, aliases: [...(opts?.aliases ?? []), ...former.map((name) => ({ name }))] });
    this.#component = component;
    this.#former = former;
    if (!args.decision.allowed) {
      throw new RubiconError('PERMIT_INVALID', args.decision.message ?? `Target ${args.name}: change refused.`, {
        hint: args.decision.fix ?? 'Run `rubicon upgrade` to prove the backups and obtain a permit.',
      });
    }
    const { image } = args;
    this.imageUrn = args.restoreFromDisk ? `disk:${args.restoreFromDisk.toLowerCase()}` : `${image.publisher}:${image.offer}:${image.sku}:${image.version}`;
    const tags = { ...args.tags, 'rubicon-role': 'target' };
    this.nsg = this.createNsg(args, tags);
    this.nic = this.createNic(args, tags);
    this.dataDisks = this.createDataDisks(args, tags);
    this.vm = this.createVm(args, tags);
    this.vmId = this.vm.id;
    this.registerOutputs({ vmId: this.vmId, imageUrn: this.imageUrn });
  }

  #child(suffix: string): { name: string; aliases: { name: string }[] } {
    return { name: targetChildName(this.#component, suffix), aliases: childAliases(this.#former, suffix) };
  }

  private createNsg(args: TargetServerArgs, tags: Record<string, string>): network.NetworkSecurityGroup {
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
    const c = this.#child('Nsg');
    return new network.NetworkSecurityGroup(
      c.name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        networkSecurityGroupName: args.nsgName ?? `${args.name}-nsg`,
        securityRules: rules,
        tags,
      },
      { parent: this, aliases: c.aliases, ...(args.adoptIds ? { import: args.adoptIds.nsg } : {}) },
    );
  }

  private createNic(args: TargetServerArgs, tags: Record<string, string>): network.NetworkInterface {
    const c = this.#child('Nic');
    return new network.NetworkInterface(
      c.name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        networkInterfaceName: args.nicName ?? `${args.name}-nic`,
        ipConfigurations: [{ name: 'ipconfig1', subnet: { id: args.subnetId }, privateIPAllocationMethod: 'Dynamic' }],
        networkSecurityGroup: { id: this.nsg.id },
        tags,
      },
      { parent: this, aliases: c.aliases, ...(args.adoptIds ? { import: args.adoptIds.nic } : {}) },
    );
  }

  private createDataDisks(args: TargetServerArgs, tags: Record<string, string>): compute.Disk[] {
    return (args.dataDisks ?? []).map((d) => {
      const c = this.#child(`Disk-${d.name}`);
      return new compute.Disk(
        c.name,
        {
          resourceGroupName: args.resourceGroupName,
          location: args.location,
          diskName: d.diskName ?? `${args.name}-${d.name}`,
          creationData: { createOption: 'Empty' },
          diskSizeGB: d.sizeGb,
          sku: { name: d.type ?? 'Premium_LRS' },
          ...(args.zone ? { zones: [args.zone] } : {}),
          tags: { ...tags, 'rubicon-disk': d.name },
        },
        {
          parent: this,
          ...dataDiskOptions({ ...(args.deleteGuard ? { deleteGuard: args.deleteGuard } : {}), aliases: c.aliases }),
          ...(args.adoptIds?.disks[d.name] ? { import: args.adoptIds.disks[d.name] } : {}),
        },
      );
    });
  }

  private createVm(args: TargetServerArgs, tags: Record<string, string>): compute.VirtualMachine {
    const disks = args.dataDisks ?? [];
    const c = this.#child('Vm');
    return new compute.VirtualMachine(
      c.name,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        vmName: args.name,
        hardwareProfile: { vmSize: args.vmSize },
        storageProfile: {
          ...(args.restoreFromDisk
            ? {
                osDisk: { createOption: 'Attach', osType: 'Windows', deleteOption: 'Detach', caching: 'ReadWrite', managedDisk: { id: args.restoreFromDisk } },
              }
            : {
                imageReference: { ...args.image },
                osDisk: {
                  ...(args.osDiskName ? { name: args.osDiskName } : {}),
                  createOption: 'FromImage',
                  deleteOption: 'Detach',
                  caching: 'ReadWrite',
                  managedDisk: { storageAccountType: args.osDiskType ?? 'Premium_LRS' },
                },
              }),
          dataDisks: disks.map((d, i) => ({
            lun: d.lun,
            createOption: 'Attach',
            deleteOption: 'Detach',
            caching: dataDiskCaching(d.type),
            managedDisk: { id: this.dataDisks[i]!.id },
          })),
        },
        // ARM refuses an osProfile for a VM booting from an attached OS disk (it keeps its own).
        ...(args.restoreFromDisk
          ? {}
          : {
              osProfile: {
                computerName: args.name,
                adminUsername: args.adminUsername ?? 'rubiconadmin',
                adminPassword: args.adminPassword,
                windowsConfiguration: { provisionVMAgent: true, enableAutomaticUpdates: true },
              },
            }),
        networkProfile: { networkInterfaces: [{ id: this.nic.id, primary: true, deleteOption: 'Detach' }] },
        diagnosticsProfile: { bootDiagnostics: { enabled: true } },
        ...(args.trustedLaunch === false
          ? {}
          : { securityProfile: { securityType: 'TrustedLaunch', uefiSettings: { secureBootEnabled: true, vTpmEnabled: true } } }),
        ...(args.zone ? { zones: [args.zone] } : {}),
        tags,
      },
      {
        parent: this,
        dependsOn: this.dataDisks,
        ...targetVmOptions(args.decision, { ...(args.deleteGuard ? { deleteGuard: args.deleteGuard } : {}), aliases: c.aliases }),
        ...(args.adoptIds ? { import: args.adoptIds.vm } : {}),
      },
    );
  }
}
