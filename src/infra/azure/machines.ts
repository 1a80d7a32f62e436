import { ComputeManagementClient, type ComputeManagementClientOptionalParams } from '@azure/arm-compute';
import { DefaultAzureCredential } from '@azure/identity';
import { RubiconError } from '../../core/errors.ts';
import type { Host } from '../../hosts/host.ts';
import { AzureRunCommandHost, describeArmError, statusOf } from '../../machines/windows/run-command.ts';
import type { DiskRef, MachinePort } from './ports.ts';

/**
 * MachinePort over the Azure Resource Manager (Compute) API, through
 * @azure/arm-compute's ComputeManagementClient.
 *
 * Design note:
 * - Every method is one short conversation with ARM; nothing is cached
 *   between calls except a VM's location inside one Host.
 * - Snapshots are incremental copies in the source disk's resource group and
 *   region. `snapshotDisk` is idempotent by name: GET first; a snapshot of
 *   that name and source is returned as is (an unfinished one is PUT again,
 *   which ARM treats as the same request); a same-named snapshot of another
 *   disk is refused, never overwritten.
 * - Run Command (managed, v2) hosts: AzureRunCommandHost, which lives with
 *   the azure-run-command transport in src/machines/windows/run-command.ts
 *   (re-exported here with its helpers, so imports keep working).
 * - Secrets: environment values travel as `protectedParameters` (base64),
 *   never in the script text; no error message contains an argument or an
 *   environment value.
 * - Assumptions: one subscription per port (ids of other subscriptions are
 *   refused); the credential may read VMs and disks, write snapshots and
 *   `Microsoft.Compute/virtualMachines/runCommands`.
 */

export type AzureTokenCredential = ConstructorParameters<typeof ComputeManagementClient>[0];

export interface AzureMachinePortOptions {
  subscriptionId: string;
  credential: AzureTokenCredential;
  /** ARM base URL. Default `https://management.azure.com` (the SDK's). Tests point it at a local stand-in. */
  endpoint?: string;
  /** Passed to the ComputeManagementClient (e.g. `agent`, `retryOptions`, `proxyOptions`). */
  clientOptions?: Omit<ComputeManagementClientOptionalParams, 'endpoint'>;
  /** First delay between polls (VM agent, long-running ARM operations). Default 5 s. */
  pollIntervalMs?: number;
  /** Longest delay between VM-agent polls (the delay grows by half each poll). Default 30 s. */
  maxPollIntervalMs?: number;
  /** Run Command timeout when `exec` is given none. Default 30 minutes. */
  defaultCommandTimeoutMs?: number;
  /** How long past a command's own timeout we wait for ARM before giving up. Default 5 minutes. */
  runCommandGraceMs?: number;
  /** Clock for the VM-agent deadline (ms since epoch). Default Date.now. */
  now?: () => number;
  /** Delay between VM-agent polls. Default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Progress and cleanup warnings for people; never secrets. */
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** The parts of an ARM resource id this port uses. */
export interface ArmId {
  subscriptionId: string;
  resourceGroup: string;
  /** e.g. `virtualMachines`, `disks`, `snapshots`. */
  type: string;
  name: string;
}

const TYPES: Record<string, string> = { virtualmachines: 'virtualMachines', disks: 'disks', snapshots: 'snapshots' };

/**
 * Pure: parses `/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/T/N`
 * (keywords case-insensitive, as ARM returns them in varying case); undefined
 * when it is not a Compute VM, disk or snapshot id.
 */
export function parseComputeId(id: string): ArmId | undefined {
  const m = /^\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/providers\/microsoft\.compute\/([^/]+)\/([^/]+)\/?$/i.exec(id.trim());
  if (!m) return undefined;
  const type = TYPES[m[3]!.toLowerCase()];
  if (!type) return undefined;
  return { subscriptionId: m[1]!.toLowerCase(), resourceGroup: m[2]!, type, name: m[4]! };
}

/**
 * Pure: one spelling per resource: keywords in ARM's canonical case, the
 * subscription id lower-case, resource group and name as given, no trailing
 * slash. Ids that are not Compute VM/disk/snapshot ids come back trimmed only.
 * Compare normalised ids with `sameArmId` (resource group and name are
 * case-insensitive in ARM).
 */
export function normalizeArmId(id: string): string {
  const p = parseComputeId(id);
  if (!p) return id.trim();
  return `/subscriptions/${p.subscriptionId}/resourceGroups/${p.resourceGroup}/providers/Microsoft.Compute/${p.type}/${p.name}`;
}

/** Pure: ARM ids are case-insensitive. */
export function sameArmId(a: string, b: string): boolean {
  return normalizeArmId(a).toLowerCase() === normalizeArmId(b).toLowerCase();
}

export { psLiteral } from './powershell.ts';
export { quoteWindowsArg, windowsCommandLine } from '../../machines/windows/quote.ts';
export { AzureRunCommandHost, envParameterName, runCommandScript } from '../../machines/windows/run-command.ts';

/** The vmAgent status that means Ready. */
function agentReady(statuses: { code?: string; displayStatus?: string }[] | undefined): boolean {
  return (statuses ?? []).some((s) => s.code?.toLowerCase() === 'provisioningstate/succeeded' && s.displayStatus === 'Ready');
}

function describeStatuses(statuses: { code?: string; displayStatus?: string; message?: string }[] | undefined): string {
  if (!statuses || statuses.length === 0) return 'no vmAgent status reported';
  return statuses.map((s) => `${s.code ?? '?'} (${s.displayStatus ?? '?'})${s.message ? `: ${s.message}` : ''}`).join('; ').slice(0, 400);
}

function infraError(message: string, hint: string, cause?: unknown, details?: Record<string, unknown>): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(cause === undefined ? {} : { cause }), ...(details ? { details } : {}) });
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class AzureMachinePort implements MachinePort {
  readonly #client: ComputeManagementClient;
  readonly #subscriptionId: string;
  readonly #pollMs: number;
  readonly #maxPollMs: number;
  readonly #defaultCommandTimeoutMs: number;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #log: (level: 'info' | 'warn', message: string) => void;

  constructor(options: AzureMachinePortOptions) {
    if (!options.subscriptionId) throw new RubiconError('ARGUMENTS_INVALID', 'AzureMachinePort needs a subscriptionId', { hint: 'Set AZURE_SUBSCRIPTION_ID.' });
    this.#subscriptionId = options.subscriptionId.toLowerCase();
    this.#client = new ComputeManagementClient(options.credential, options.subscriptionId, {
      ...options.clientOptions,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    });
    this.#pollMs = options.pollIntervalMs ?? 5_000;
    this.#maxPollMs = options.maxPollIntervalMs ?? 30_000;
    this.#defaultCommandTimeoutMs = options.defaultCommandTimeoutMs ?? 30 * 60_000;
    this.#graceMs = options.runCommandGraceMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#log = options.log ?? (() => {});
  }

  #parse(id: string, type: string, what: string): ArmId {
    const p = parseComputeId(id);
    if (!p || p.type !== type) {
      throw new RubiconError('ARGUMENTS_INVALID', `${what} "${id}" is not an Azure ${type} resource id`, {
        hint: `Expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/${type}/<name>.`,
      });
    }
    if (p.subscriptionId !== this.#subscriptionId) {
      throw new RubiconError('ARGUMENTS_INVALID', `${what} "${id}" is in subscription ${p.subscriptionId}, but this port works in ${this.#subscriptionId}`, {
        hint: 'Set AZURE_SUBSCRIPTION_ID to the subscription of the target.',
      });
    }
    return p;
  }

  /** Read-only. The OS disk (role `os`) and every data disk (role = its name), ids normalised. */
  async disksOf(vmId: string): Promise<DiskRef[]> {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    let got;
    try {
      got = await this.#client.virtualMachines.get(vm.resourceGroup, vm.name);
    } catch (e) {
      throw infraError(`Reading VM ${vm.name} (resource group ${vm.resourceGroup}) failed: ${describeArmError(e)}`, 'Check that the VM exists and the credential may read it (Reader on the resource group).', e);
    }
    const sp = got.storageProfile;
    const osId = sp?.osDisk?.managedDisk?.id;
    if (!osId) {
      throw infraError(`VM ${vm.name} has no managed OS disk in its storageProfile.`, 'Rubicon snapshots managed disks only; convert unmanaged disks to managed disks first.');
    }
    const disks: DiskRef[] = [{ id: normalizeArmId(osId), role: 'os' }];
    for (const d of sp?.dataDisks ?? []) {
      const id = d.managedDisk?.id;
      if (!id) {
        throw infraError(`Data disk ${d.name ?? `at LUN ${d.lun}`} of VM ${vm.name} is not a managed disk.`, 'Rubicon snapshots managed disks only; convert it to a managed disk first.');
      }
      disks.push({ id: normalizeArmId(id), role: d.name ?? parseComputeId(id)?.name ?? `lun${d.lun}` });
    }
    return disks;
  }

  /**
   * Incremental snapshot `name` of `disk` in the disk's resource group and
   * region, tagged. Idempotent: an existing snapshot of that name and source
   * is returned as is (PUT again if it is not finished). A same-named
   * snapshot of another source is refused. Creates a resource (costs money
   * until deleted); never deletes or overwrites one.
   */
  async snapshotDisk(disk: DiskRef, name: string, tags: Record<string, string>): Promise<{ id: string }> {
    const src = this.#parse(disk.id, 'disks', `Disk ${disk.role}`);
    const rg = src.resourceGroup;
    let existing;
    try {
      existing = await this.#client.snapshots.get(rg, name);
    } catch (e) {
      if (statusOf(e) !== 404) throw infraError(`Reading snapshot ${name} in resource group ${rg} failed: ${describeArmError(e)}`, 'Check the credential may read snapshots there and retry.', e);
    }
    if (existing) {
      const existingSource = existing.creationData?.sourceResourceId ?? '';
      if (!sameArmId(existingSource, disk.id)) {
        throw infraError(
          `Snapshot ${name} in resource group ${rg} already exists but is a copy of ${existingSource || '(unknown source)'}, not of ${normalizeArmId(disk.id)} (disk ${disk.role}).`,
          'Nothing was changed. Delete or rename that snapshot if it is stale, or use another run id.',
          undefined,
          { snapshot: name, existingSource, wantedSource: disk.id },
        );
      }
      if (existing.provisioningState === undefined || existing.provisioningState === 'Succeeded') {
        return { id: normalizeArmId(existing.id ?? '') };
      }
      this.#log('info', `Snapshot ${name} exists in state ${existing.provisioningState}: asking ARM again and waiting.`);
    }
    let location = existing?.location;
    if (!location) {
      try {
        location = (await this.#client.disks.get(rg, src.name)).location;
      } catch (e) {
        throw infraError(`Reading disk ${src.name} (${disk.role}) in resource group ${rg} failed: ${describeArmError(e)}`, 'Check that the disk exists and the credential may read it.', e);
      }
    }
    try {
      const snap = await this.#client.snapshots
        .createOrUpdate(
          rg,
          name,
          { location, tags, incremental: true, creationData: { createOption: 'Copy', sourceResourceId: normalizeArmId(disk.id) } },
          { updateIntervalInMs: this.#pollMs },
        )
        .pollUntilDone();
      if (!snap.id) throw new Error('ARM returned no id');
      return { id: normalizeArmId(snap.id) };
    } catch (e) {
      throw infraError(
        `Snapshot ${name} of disk ${src.name} (${disk.role}) failed: ${describeArmError(e)}`,
        'Retry: snapshotting is idempotent by name. If it keeps failing, check quota and that the disk is not being detached.',
        e,
      );
    }
  }

  /** Deletes a snapshot. Destructive. Idempotent: an absent snapshot is fine. */
  async deleteSnapshot(id: string): Promise<void> {
    const snap = this.#parse(id, 'snapshots', 'Snapshot id');
    try {
      await this.#client.snapshots.delete(snap.resourceGroup, snap.name, { updateIntervalInMs: this.#pollMs }).pollUntilDone();
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw infraError(`Deleting snapshot ${snap.name} in resource group ${snap.resourceGroup} failed: ${describeArmError(e)}`, 'Retry; deleting is idempotent. Check for a lock on the resource group.', e);
    }
  }

  /**
   * Read-only. Polls the VM's instance view (delays growing by half, capped)
   * until the VM agent reports ProvisioningState/succeeded + Ready; rejects
   * after `timeoutMs` naming the last status seen. A missing VM (404) fails
   * at once; other read errors count as "not ready yet".
   */
  async waitForVmAgent(vmId: string, timeoutMs: number): Promise<void> {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    const deadline = this.#now() + timeoutMs;
    let delay = this.#pollMs;
    let last = 'no answer yet';
    let polls = 0;
    for (;;) {
      polls++;
      try {
        const view = await this.#client.virtualMachines.instanceView(vm.resourceGroup, vm.name);
        if (agentReady(view.vmAgent?.statuses)) return;
        last = describeStatuses(view.vmAgent?.statuses);
      } catch (e) {
        if (statusOf(e) === 404) {
          throw infraError(`VM ${vm.name} (resource group ${vm.resourceGroup}) does not exist: its VM agent cannot become ready.`, 'Check the stack output targetVmId / provingGround.vmId against the portal.', e);
        }
        last = `instanceView failed: ${describeArmError(e)}`;
      }
      const left = deadline - this.#now();
      if (left <= 0) {
        throw infraError(
          `VM agent of ${vm.name} (resource group ${vm.resourceGroup}) not Ready after ${Math.round(timeoutMs / 1000)} s (${polls} polls); last status: ${last}`,
          'Open the VM in the portal (boot diagnostics, Run Command availability). Running the same Rubicon command again waits again.',
          undefined,
          { vm: vm.name, lastStatus: last, polls },
        );
      }
      await this.#sleep(Math.min(delay, left));
      delay = Math.min(Math.ceil(delay * 1.5), this.#maxPollMs);
    }
  }

  /** A Host whose `exec` runs on the VM through managed Run Command (see AzureRunCommandHost). */
  hostFor(vmId: string, name: string): Host {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    return new AzureRunCommandHost(this.#client, vm, name, {
      pollMs: this.#pollMs,
      defaultTimeoutMs: this.#defaultCommandTimeoutMs,
      graceMs: this.#graceMs,
      log: this.#log,
    });
  }
}

/**
 * The production MachinePort: DefaultAzureCredential (environment, workload
 * identity, managed identity, Azure CLI, ...) and AZURE_SUBSCRIPTION_ID.
 * Public Azure cloud (for another cloud pass `endpoint` and matching
 * `clientOptions.credentials.scopes`).
 */
export function azureMachinePortFromEnv(
  env: Record<string, string | undefined> = process.env,
  options: Omit<AzureMachinePortOptions, 'subscriptionId' | 'credential'> = {},
): AzureMachinePort {
  const subscriptionId = env['AZURE_SUBSCRIPTION_ID']?.trim();
  if (!subscriptionId) {
    throw new RubiconError('INFRA_FAILED', 'Environment variable AZURE_SUBSCRIPTION_ID is not set: Rubicon cannot reach the Azure machines (snapshots, VM agent, Run Command).', {
      hint: 'export AZURE_SUBSCRIPTION_ID=<subscription id of the target>; sign in with `az login` or set AZURE_TENANT_ID/AZURE_CLIENT_ID (DefaultAzureCredential).',
    });
  }
  return new AzureMachinePort({ ...options, subscriptionId, credential: new DefaultAzureCredential() });
}
