import type { EngineEvent, OpType } from '@pulumi/pulumi/automation/index.js';
import type { Host } from '../../hosts/host.ts';

/**
 * The two narrow ports the Azure driver works through. Real adapters:
 * StackPort → ./automation.ts (Pulumi Automation API over the CLI);
 * MachinePort → ./machines.ts (`AzureMachinePort`, @azure/arm-compute; tested
 * against an HTTPS stand-in for ARM, never against Azure): each method's
 * comment says which Azure call it stands for.
 */

export interface ConfigOptions {
  /** Treat the key as a path (`rubicon:target.image.sku`), like `pulumi config set --path`. */
  path?: boolean;
  /** Store encrypted, like `pulumi config set --secret`. */
  secret?: boolean;
}

export interface OperationOptions {
  /** Preview: save the update plan here. Up: refuse any step not in this plan. */
  planPath?: string;
  /** Only these URNs (`pulumi up --target`): other pending changes are left alone. Default: the whole stack. */
  targets?: string[];
  onEvent?: (event: EngineEvent) => void;
  signal?: AbortSignal;
}

export interface PreviewOutcome {
  /** Every engine event of the preview, in order. */
  events: EngineEvent[];
  /** Where the plan was saved, when asked. The folder exists (the CLI writes the file with os.Create, which makes no folders). */
  planPath?: string;
  changeSummary: Partial<Record<OpType, number>>;
}

export interface UpOutcome {
  events: EngineEvent[];
  outputs: Record<string, unknown>;
  summary: { result: string; resourceChanges?: Partial<Record<OpType, number>> };
}

/**
 * One Pulumi stack of this project. Config goes through the CLI's config
 * commands (they honour `stackConfigDir: stacks`; LocalWorkspace's
 * stack-settings helpers do not, pulumi/pulumi#10305).
 */
export interface StackPort {
  readonly stackName: string;
  /** Read one config value; undefined when unset. */
  getConfig(key: string, options?: ConfigOptions): Promise<string | undefined>;
  /** Idempotent. */
  setConfig(key: string, value: string, options?: ConfigOptions): Promise<void>;
  /** Idempotent: removing an absent key is a no-op. */
  removeConfig(key: string, options?: ConfigOptions): Promise<void>;
  /** Read-only against the cloud (may write the plan file). */
  preview(options?: OperationOptions): Promise<PreviewOutcome>;
  /** Destructive as planned. With `planPath`, refuses any step not in the plan. */
  up(options?: OperationOptions): Promise<UpOutcome>;
  /** Outputs of the last update (secrets stay masked). */
  outputs(): Promise<Record<string, unknown>>;
}

export interface DiskRef {
  id: string;
  /** `os` or the data disk's name. */
  role: string;
}

/** What ARM says about a VM now. */
export interface VmState {
  id: string;
  /** ARM `properties.vmId`: a new one for every VM created, even with the same name. */
  uniqueId: string;
  /** `publisher:offer:sku:version`, when built from a marketplace image reference. */
  image?: string;
  osDiskId?: string;
  dataDiskIds: string[];
}

export interface DiskFacts {
  id: string;
  /** The VM it is attached to (ARM `managedBy`), when attached. */
  attachedTo?: string;
  tags: Record<string, string>;
}

/** A snapshot or a retired OS disk kept as a way back, until released. */
export interface RollbackAsset {
  id: string;
  kind: 'snapshot' | 'disk';
  runId: string;
  /** Tag `rubicon-role`: `rollback` (snapshot) or `rollback-os-disk`. */
  role: string;
  /** Tag `rubicon-disk` of a snapshot: `os` or the data disk's name. */
  disk?: string;
  createdAt?: string;
  attachedTo?: string;
}

/**
 * Azure Resource Manager calls that are not Pulumi's business: the
 * management locks that Pulumi cannot lift, VM and disk facts that confirm
 * a crossing, rollback-asset tags. Real: ./arm.ts (`AzureArmPort`, tested
 * against the HTTPS ARM stand-in).
 */
export interface ArmPort {
  /** Read-only; undefined when the VM does not exist. */
  describeVm(vmId: string): Promise<VmState | undefined>;
  /** Read-only; undefined when the disk does not exist. */
  describeDisk(diskId: string): Promise<DiskFacts | undefined>;
  /** Idempotent: a `CanNotDelete` lock named `rubicon-guard` on the resource. */
  lock(resourceId: string, notes: string): Promise<void>;
  /** Idempotent: removes that lock (absent is fine). */
  unlock(resourceId: string): Promise<void>;
  isLocked(resourceId: string): Promise<boolean>;
  /** Merges tags into a disk's tags. Idempotent. */
  tagDisk(diskId: string, tags: Record<string, string>): Promise<void>;
  /** Destructive; idempotent. */
  deleteDisk(diskId: string): Promise<void>;
  /** A managed disk copied from a snapshot, in the snapshot's resource group and region, tagged. Idempotent by name. Returns its id. */
  createDiskFromSnapshot(snapshotId: string, name: string, tags: Record<string, string>): Promise<string>;
  /** Snapshots and disks tagged as rollback assets in a resource group. Read-only. */
  listRollbackAssets(resourceGroup: string): Promise<RollbackAsset[]>;
}

/**
 * The machines themselves (data plane and Azure control-plane calls that
 * are not Pulumi's business). NOT implemented against Azure in this
 * repository: an adapter needs @azure/arm-compute and @azure/identity.
 */
export interface MachinePort {
  /** The OS and data disks attached to a VM now. Azure: `virtualMachines.get` → storageProfile. */
  disksOf(vmId: string): Promise<DiskRef[]>;
  /**
   * Incremental snapshot of a disk, named `name`, tagged. Azure:
   * `snapshots.beginCreateOrUpdateAndWait({creationData: {createOption: 'Copy', sourceResourceId}, incremental: true})`.
   * Idempotent: an existing snapshot with that name is returned as is.
   */
  snapshotDisk(disk: DiskRef, name: string, tags: Record<string, string>): Promise<{ id: string }>;
  /** Deletes a snapshot. Azure: `snapshots.beginDeleteAndWait`. Idempotent. Destructive. */
  deleteSnapshot(id: string): Promise<void>;
  /**
   * Resolves when the VM agent reports Ready. Azure: `virtualMachines.instanceView` until
   * `vmAgent.statuses[].code === 'ProvisioningState/succeeded'` and displayStatus `Ready`.
   * Rejects after `timeoutMs`.
   */
  waitForVmAgent(vmId: string, timeoutMs: number): Promise<void>;
  /** A Host that runs commands on the VM. Azure: Run Command (`virtualMachines.beginRunCommand`). */
  hostFor(vmId: string, name: string): Host;
}
