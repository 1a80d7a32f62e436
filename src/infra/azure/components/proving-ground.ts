import * as pulumi from '@pulumi/pulumi';
import * as authorization from '@pulumi/azure-native/authorization/index.js';
import * as compute from '@pulumi/azure-native/compute/index.js';
import * as devtestlab from '@pulumi/azure-native/devtestlab/index.js';
import * as managedidentity from '@pulumi/azure-native/managedidentity/index.js';
import * as network from '@pulumi/azure-native/network/index.js';
import * as resources from '@pulumi/azure-native/resources/index.js';
import { RubiconError } from '../../../core/errors.ts';
import type { ImageSpec } from '../config.ts';
import { PROVING_GROUND_TYPE } from '../names.ts';
import { ttlTags } from '../reap.ts';

/** Built-in role "Storage Blob Data Reader": read blobs, nothing else. */
export const STORAGE_BLOB_DATA_READER = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1';

export interface ProvingGroundArgs {
  location: pulumi.Input<string>;
  /** Run this proving ground serves (tag `rubicon-run`). */
  runId: string;
  /** ISO time it was provisioned: start of the TTL (tag `rubicon-created-at`). */
  createdAt: string;
  /** Hours until `rubicon reap` destroys it. Default 8. */
  ttlHours?: number;
  /** VM size. Default `Standard_E4s_v5`. */
  vmSize?: pulumi.Input<string>;
  /** Image. Default SQL Server 2022 Developer on Windows Server 2022 (`MicrosoftSQLServer:sql2022-ws2022:sqldev-gen2:latest`). */
  image?: ImageSpec;
  /** Local administrator. Default `rubiconadmin`. */
  adminUsername?: pulumi.Input<string>;
  /** Local administrator password: a Pulumi secret. */
  adminPassword: pulumi.Input<string>;
  /** Empty data disk for restores, in GB. Default 256. */
  dataDiskSizeGb?: number;
  /** Address space of its own VNet (never peered). Default `10.250.0.0/24`. */
  addressSpace?: string;
  /** Its subnet, inside `addressSpace`. Default `10.250.0.0/26`. */
  subnetPrefix?: string;
  /** ARM id of the vault's backup container: the only thing it may read. */
  vaultContainerId: pulumi.Input<string>;
  /** ARM id of the vault's storage account: the only account the subnet's service endpoint policy lets it reach. */
  vaultStorageAccountId: pulumi.Input<string>;
  /** The regional Storage service tag, e.g. `Storage.WestEurope`. Default: `storageServiceTag(location)`. */
  storageServiceTag?: string;
  /** Daily auto-shutdown time, HHmm. Default `1900`. */
  autoShutdownTime?: string;
  /** Windows time zone id for the shutdown schedule. Default `UTC`. */
  timeZone?: string;
  tags?: Record<string, string>;
}

/** A security rule as this component writes it (every field set). */
export interface RuleSpec {
  name: string;
  priority: number;
  direction: 'Inbound' | 'Outbound';
  access: 'Allow' | 'Deny';
  protocol: 'Tcp' | '*';
  sourceAddressPrefix: string;
  sourcePortRange: '*';
  destinationAddressPrefix: string;
  destinationPortRange: string;
}

/**
 * Region names (`westeurope`) → the spelling of their regional service tags
 * (`WestEurope`, as in `Storage.WestEurope`). Service tags are spelled with
 * the region's display name without spaces, not the lower-case location
 * (https://learn.microsoft.com/azure/virtual-network/service-tags-overview;
 * the weekly "Service Tags – Public" JSON lists e.g. `Storage.WestEurope`,
 * `Storage.EastUS2`, `Storage.UKSouth`). Regions missing here: set
 * rubicon:provingGround.storageServiceTag.
 */
export const REGION_TAG_NAMES: Readonly<Record<string, string>> = {
  australiacentral: 'AustraliaCentral', australiaeast: 'AustraliaEast', australiasoutheast: 'AustraliaSoutheast',
  brazilsouth: 'BrazilSouth', canadacentral: 'CanadaCentral', canadaeast: 'CanadaEast', centralindia: 'CentralIndia',
  centralus: 'CentralUS', eastasia: 'EastAsia', eastus: 'EastUS', eastus2: 'EastUS2', francecentral: 'FranceCentral',
  germanywestcentral: 'GermanyWestCentral', italynorth: 'ItalyNorth', japaneast: 'JapanEast', japanwest: 'JapanWest',
  koreacentral: 'KoreaCentral', northcentralus: 'NorthCentralUS', northeurope: 'NorthEurope', norwayeast: 'NorwayEast',
  polandcentral: 'PolandCentral', southafricanorth: 'SouthAfricaNorth', southcentralus: 'SouthCentralUS',
  southeastasia: 'SoutheastAsia', southindia: 'SouthIndia', spaincentral: 'SpainCentral', swedencentral: 'SwedenCentral',
  switzerlandnorth: 'SwitzerlandNorth', uaenorth: 'UAENorth', uksouth: 'UKSouth', ukwest: 'UKWest',
  westcentralus: 'WestCentralUS', westeurope: 'WestEurope', westus: 'WestUS', westus2: 'WestUS2', westus3: 'WestUS3',
};

/** Pure: `westeurope` (or `West Europe`) → `Storage.WestEurope`. Throws ARGUMENTS_INVALID for a region it does not know. */
export function storageServiceTag(location: string): string {
  const key = location.replace(/\s+/g, '').toLowerCase();
  const name = REGION_TAG_NAMES[key];
  if (!name) {
    throw new RubiconError('ARGUMENTS_INVALID', `Rubicon does not know the service-tag spelling of region "${location}" for the proving ground's Storage rule.`, {
      hint: "Set it: `pulumi config set --path 'rubicon:provingGround.storageServiceTag' Storage.<Region>` (the spelling in Azure's Service Tags JSON).",
      details: { key: 'rubicon:provingGround.storageServiceTag' },
    });
  }
  return `Storage.${name}`;
}

/**
 * Pure: the proving ground's NSG rules. HTTPS to Azure Storage in its own
 * region is the one way out (reading the vault); the Internet is denied both
 * ways. Restores are driven through Azure Run Command, which needs no
 * inbound rule.
 */
export function provingGroundRules(location: string, tag: string = storageServiceTag(location)): RuleSpec[] {
  const rule = (r: Omit<RuleSpec, 'sourcePortRange'>): RuleSpec => ({ ...r, sourcePortRange: '*' });
  return [
    rule({ name: 'allow-vault-storage-https', priority: 100, direction: 'Outbound', access: 'Allow', protocol: 'Tcp', sourceAddressPrefix: 'VirtualNetwork', destinationAddressPrefix: tag, destinationPortRange: '443' }),
    rule({ name: 'deny-internet-outbound', priority: 4000, direction: 'Outbound', access: 'Deny', protocol: '*', sourceAddressPrefix: '*', destinationAddressPrefix: 'Internet', destinationPortRange: '*' }),
    rule({ name: 'deny-internet-inbound', priority: 4000, direction: 'Inbound', access: 'Deny', protocol: '*', sourceAddressPrefix: 'Internet', destinationAddressPrefix: '*', destinationPortRange: '*' }),
  ];
}

/**
 * The disposable, isolated restore-test machine: a SQL Server on Windows VM
 * in its own resource group and VNet (no peering, no default outbound
 * access, no public IP), an NSG denying the Internet both ways, a managed
 * identity that may only read the vault's backup container, a daily
 * auto-shutdown and TTL tags that `rubicon reap` acts on.
 *
 * Guarantees: it has no network path to the target and no credential for
 * it; every resource is deleted with it (no retainOnDelete, no protect).
 */
export class ProvingGround extends pulumi.ComponentResource {
  readonly resourceGroup: resources.ResourceGroup;
  readonly vnet: network.VirtualNetwork;
  readonly subnet: network.Subnet;
  readonly endpointPolicy: network.ServiceEndpointPolicy;
  readonly nsg: network.NetworkSecurityGroup;
  readonly nic: network.NetworkInterface;
  readonly identity: managedidentity.UserAssignedIdentity;
  readonly vaultReader: authorization.RoleAssignment;
  readonly vm: compute.VirtualMachine;
  readonly shutdown: devtestlab.GlobalSchedule;
  readonly tags: Record<string, string>;
  readonly vmId: pulumi.Output<string>;

  constructor(name: string, args: ProvingGroundArgs, opts?: pulumi.ComponentResourceOptions) {
    super(PROVING_GROUND_TYPE, name, {}, opts);
    this.tags = {
      ...args.tags,
      'rubicon-role': 'proving-ground',
      ...ttlTags({ runId: args.runId, createdAt: args.createdAt, ttlHours: args.ttlHours ?? 8 }),
    };
    const tags = this.tags;
    const child = { parent: this };
    const location = args.location;

    this.resourceGroup = new resources.ResourceGroup(`${name}Rg`, { resourceGroupName: `${name}-rg`, location, tags }, child);
    const rg = this.resourceGroup.name;

    this.nsg = new network.NetworkSecurityGroup(
      `${name}Nsg`,
      {
        resourceGroupName: rg,
        location,
        networkSecurityGroupName: `${name}-nsg`,
        securityRules: pulumi.output(location).apply((l) => provingGroundRules(l, args.storageServiceTag ?? storageServiceTag(l))),
        tags,
      },
      child,
    );

    // No `virtualNetworkPeerings`, no gateway: an island.
    this.vnet = new network.VirtualNetwork(
      `${name}Vnet`,
      {
        resourceGroupName: rg,
        location,
        virtualNetworkName: `${name}-vnet`,
        addressSpace: { addressPrefixes: [args.addressSpace ?? '10.250.0.0/24'] },
        tags,
      },
      child,
    );

    // The NSG's Storage tag admits every storage account in the region; the
    // service endpoint policy narrows the subnet's Storage traffic to the
    // vault's account alone, so restored data cannot be copied out to
    // another account through the same route.
    this.endpointPolicy = new network.ServiceEndpointPolicy(
      `${name}StoragePolicy`,
      {
        resourceGroupName: rg,
        location,
        serviceEndpointPolicyName: `${name}-storage-policy`,
        serviceEndpointPolicyDefinitions: [
          {
            name: 'vault-only',
            service: 'Microsoft.Storage',
            serviceResources: [args.vaultStorageAccountId],
            description: 'The proving ground may reach the backup vault account and no other storage account',
          },
        ],
        tags,
      },
      child,
    );

    this.subnet = new network.Subnet(
      `${name}Subnet`,
      {
        resourceGroupName: rg,
        virtualNetworkName: this.vnet.name,
        subnetName: 'restore',
        addressPrefix: args.subnetPrefix ?? '10.250.0.0/26',
        defaultOutboundAccess: false,
        networkSecurityGroup: { id: this.nsg.id },
        // Reach the vault over the Azure backbone, without any outbound Internet route.
        serviceEndpoints: [{ service: 'Microsoft.Storage', locations: [location] }],
        serviceEndpointPolicies: [{ id: this.endpointPolicy.id }],
      },
      child,
    );

    this.nic = new network.NetworkInterface(
      `${name}Nic`,
      {
        resourceGroupName: rg,
        location,
        networkInterfaceName: `${name}-nic`,
        ipConfigurations: [{ name: 'ipconfig1', subnet: { id: this.subnet.id }, privateIPAllocationMethod: 'Dynamic' }],
        tags,
      },
      child,
    );

    this.identity = new managedidentity.UserAssignedIdentity(
      `${name}Identity`,
      { resourceGroupName: rg, location, resourceName: `${name}-id`, tags },
      child,
    );

    const scope = pulumi.output(args.vaultContainerId);
    this.vaultReader = new authorization.RoleAssignment(
      `${name}VaultReader`,
      {
        scope,
        principalId: this.identity.principalId,
        principalType: 'ServicePrincipal',
        roleDefinitionId: scope.apply((id) => `/subscriptions/${id.split('/')[2] ?? ''}/providers/Microsoft.Authorization/roleDefinitions/${STORAGE_BLOB_DATA_READER}`),
        description: `Rubicon proving ground ${name}: read the backup vault, nothing else`,
      },
      child,
    );

    const image = args.image ?? { publisher: 'MicrosoftSQLServer', offer: 'sql2022-ws2022', sku: 'sqldev-gen2', version: 'latest' };
    this.vm = new compute.VirtualMachine(
      `${name}Vm`,
      {
        resourceGroupName: rg,
        location,
        vmName: `${name}-vm`,
        hardwareProfile: { vmSize: args.vmSize ?? 'Standard_E4s_v5' },
        storageProfile: {
          imageReference: { ...image },
          osDisk: { createOption: 'FromImage', deleteOption: 'Delete', managedDisk: { storageAccountType: 'Premium_LRS' } },
          dataDisks: [{ lun: 0, createOption: 'Empty', diskSizeGB: args.dataDiskSizeGb ?? 256, deleteOption: 'Delete', managedDisk: { storageAccountType: 'Premium_LRS' } }],
        },
        osProfile: {
          computerName: 'rubicon-pg',
          adminUsername: args.adminUsername ?? 'rubiconadmin',
          adminPassword: args.adminPassword,
          windowsConfiguration: { provisionVMAgent: true, enableAutomaticUpdates: false },
        },
        networkProfile: { networkInterfaces: [{ id: this.nic.id, primary: true, deleteOption: 'Delete' }] },
        identity: { type: 'UserAssigned', userAssignedIdentities: [this.identity.id] },
        diagnosticsProfile: { bootDiagnostics: { enabled: true } },
        securityProfile: { securityType: 'TrustedLaunch', uefiSettings: { secureBootEnabled: true, vTpmEnabled: true } },
        tags,
      },
      child,
    );

    this.shutdown = new devtestlab.GlobalSchedule(
      `${name}Shutdown`,
      {
        resourceGroupName: rg,
        location,
        name: pulumi.interpolate`shutdown-computevm-${this.vm.name}`,
        taskType: 'ComputeVmShutdownTask',
        status: 'Enabled',
        dailyRecurrence: { time: args.autoShutdownTime ?? '1900' },
        timeZoneId: args.timeZone ?? 'UTC',
        targetResourceId: this.vm.id,
        tags,
      },
      child,
    );

    this.vmId = this.vm.id;
    this.registerOutputs({ vmId: this.vmId, tags: this.tags });
  }
}
