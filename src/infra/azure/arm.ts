import { ComputeManagementClient, type ComputeManagementClientOptionalParams } from '@azure/arm-compute';
import { DefaultAzureCredential } from '@azure/identity';
import {
  bearerTokenAuthenticationPolicy,
  createDefaultHttpClient,
  createHttpHeaders,
  createPipelineFromOptions,
  createPipelineRequest,
  type HttpClient,
  type Pipeline,
} from '@azure/core-rest-pipeline';
import { RubiconError } from '../../core/errors.ts';
import { normalizeArmId, parseComputeId, type ArmId, type AzureTokenCredential } from './machines.ts';
import { diskImageUrn } from './config.ts';
import type { ArmPort, DiskFacts, RollbackAsset, VmState } from './ports.ts';
import { RUN_TAG } from './reap.ts';

/**
 * ArmPort over Azure Resource Manager: management locks as REST calls
 * (`{resource id}/providers/Microsoft.Authorization/locks/{name}`,
 * api-version 2020-05-01) through the Azure SDK's own HTTP pipeline
 * (@azure/core-rest-pipeline: bearer token, retries, the same one
 * arm-compute uses); VM and disk facts, disk tags and deletes through
 * @azure/arm-compute. Not @azure/arm-locks: its 2.1.0 `…ByScope` methods
 * percent-encode the slashes of the scope (`/subscriptions%2F…`), which the
 * HTTPS stand-in test caught; ARM's documented path has them plain.
 *
 * Design note (the hard stop Pulumi cannot lift):
 * - Rubicon puts a `CanNotDelete` lock named `rubicon-guard` on the target
 *   VM and on each of its disks. ARM refuses every DELETE of a locked
 *   resource (409 ScopeLocked), whoever asks, until the lock is gone; the
 *   resource can still be updated (tags, start, stop, attach).
 * - Only an identity with `Microsoft.Authorization/locks/delete` removes a
 *   lock: Owner and User Access Administrator have it, Contributor does not
 *   (its NotActions exclude `Microsoft.Authorization/*\/Delete`). Engineers
 *   and pipelines that run `pulumi up` get Contributor (or less); Rubicon's
 *   identity gets a custom role with `Microsoft.Authorization/locks/*` on the
 *   target's resource group (docs/infra.md, "Who holds which permission").
 * - A lock on the VM is inherited by its child resources, including Run
 *   Command resources: they cannot be deleted while the VM is locked, so the
 *   driver lifts the VM's lock around a Run Command on the target (the
 *   disks' locks stay: a VM deleted in that window detaches its disks).
 * - Contract: `lock` and `unlock` are idempotent; `unlock` of an absent lock
 *   or resource is fine; every failure is INFRA_FAILED naming the resource.
 */

export const LOCK_NAME = 'rubicon-guard';
export const LOCKS_API_VERSION = '2020-05-01';

export interface AzureArmPortOptions {
  subscriptionId: string;
  credential: AzureTokenCredential;
  /** ARM base URL. Default `https://management.azure.com`. Tests point it at a local stand-in. */
  endpoint?: string;
  /** Passed to both SDK clients (e.g. `agent`, `retryOptions`). */
  clientOptions?: Omit<ComputeManagementClientOptionalParams, 'endpoint'>;
  /** First delay between polls of long-running operations. Default 5 s. */
  pollIntervalMs?: number;
}

function statusOf(e: unknown): number | undefined {
  const s = (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function describeArmError(e: unknown): string {
  const status = statusOf(e);
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return `${status !== undefined ? `HTTP ${status}` : 'error'}${typeof code === 'string' ? ` ${code}` : ''}: ${message.replace(/\s+/g, ' ').slice(0, 300)}`;
}

function infraError(message: string, hint: string, cause?: unknown): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(cause === undefined ? {} : { cause }) });
}

/** Pure: the URL path of the Rubicon lock on a resource (scope slashes plain, as ARM documents it). */
export function lockPath(resourceId: string): string {
  const scope = normalizeArmId(resourceId).replace(/\/+$/, '');
  if (!scope.startsWith('/subscriptions/')) throw new RubiconError('ARGUMENTS_INVALID', `"${resourceId}" is not an Azure resource id`, { hint: 'Expected /subscriptions/<id>/resourceGroups/<group>/providers/…' });
  return `${scope.split('/').map(encodeURIComponent).join('/')}/providers/Microsoft.Authorization/locks/${LOCK_NAME}`;
}

class ArmHttpError extends Error {
  readonly statusCode: number;
  readonly code: string | undefined;
  constructor(status: number, code: string | undefined, message: string) {
    super(message);
    this.statusCode = status;
    this.code = code;
  }
}

function imageUrnOf(r: { publisher?: string; offer?: string; sku?: string; version?: string } | undefined): string | undefined {
  return r?.publisher && r.offer && r.sku ? `${r.publisher}:${r.offer}:${r.sku}:${r.version ?? 'latest'}` : undefined;
}

export class AzureArmPort implements ArmPort {
  readonly #compute: ComputeManagementClient;
  readonly #pipeline: Pipeline;
  readonly #http: HttpClient;
  readonly #endpoint: string;
  readonly #subscriptionId: string;
  readonly #pollMs: number;

  constructor(options: AzureArmPortOptions) {
    if (!options.subscriptionId) throw new RubiconError('ARGUMENTS_INVALID', 'AzureArmPort needs a subscriptionId', { hint: 'Set AZURE_SUBSCRIPTION_ID.' });
    this.#subscriptionId = options.subscriptionId.toLowerCase();
    const endpoint = options.endpoint ? { endpoint: options.endpoint } : {};
    this.#compute = new ComputeManagementClient(options.credential, options.subscriptionId, { ...options.clientOptions, ...endpoint });
    this.#endpoint = (options.endpoint ?? 'https://management.azure.com').replace(/\/+$/, '');
    const co = options.clientOptions ?? {};
    this.#pipeline = createPipelineFromOptions({
      ...(co.agent ? { agent: co.agent } : {}),
      ...(co.retryOptions ? { retryOptions: co.retryOptions } : {}),
      ...(co.proxyOptions ? { proxyOptions: co.proxyOptions } : {}),
      userAgentOptions: { userAgentPrefix: 'rubicon-locks' },
    });
    this.#pipeline.addPolicy(bearerTokenAuthenticationPolicy({ credential: options.credential, scopes: 'https://management.azure.com/.default' }));
    this.#http = createDefaultHttpClient();
    this.#pollMs = options.pollIntervalMs ?? 5_000;
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

  /** Read-only. Undefined when the VM does not exist (404). */
  async describeVm(vmId: string): Promise<VmState | undefined> {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    let got;
    try {
      got = await this.#compute.virtualMachines.get(vm.resourceGroup, vm.name);
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw infraError(`Reading VM ${vm.name} (resource group ${vm.resourceGroup}) failed: ${describeArmError(e)}`, 'Check that the credential may read the VM (Reader).', e);
    }
    const sp = got.storageProfile;
    const osDiskId = sp?.osDisk?.managedDisk?.id;
    // A VM booting from an existing OS disk (a rollback) is identified by that disk, as the guard does (current.ts).
    const image = imageUrnOf(sp?.imageReference) ?? (sp?.osDisk?.createOption?.toLowerCase() === 'attach' && osDiskId ? diskImageUrn(osDiskId) : undefined);
    return {
      id: normalizeArmId(got.id ?? vmId),
      uniqueId: got.vmId ?? '',
      ...(image ? { image } : {}),
      ...(osDiskId ? { osDiskId: normalizeArmId(osDiskId) } : {}),
      dataDiskIds: (sp?.dataDisks ?? []).map((d) => d.managedDisk?.id).filter((x): x is string => !!x).map(normalizeArmId),
    };
  }

  /** Read-only. Undefined when the disk does not exist. */
  async describeDisk(diskId: string): Promise<DiskFacts | undefined> {
    const d = this.#parse(diskId, 'disks', 'Disk id');
    try {
      const got = await this.#compute.disks.get(d.resourceGroup, d.name);
      return { id: normalizeArmId(got.id ?? diskId), ...(got.managedBy ? { attachedTo: normalizeArmId(got.managedBy) } : {}), tags: { ...(got.tags ?? {}) } };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw infraError(`Reading disk ${d.name} (resource group ${d.resourceGroup}) failed: ${describeArmError(e)}`, 'Check that the credential may read disks.', e);
    }
  }

  /** One call of the locks API. Returns status and parsed body; an error status throws ArmHttpError with ARM's error code. */
  async #lockCall(method: 'GET' | 'PUT' | 'DELETE', resourceId: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const request = createPipelineRequest({
      url: `${this.#endpoint}${lockPath(resourceId)}?api-version=${LOCKS_API_VERSION}`,
      method,
      headers: createHttpHeaders({ accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json; charset=utf-8' } : {}) }),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const response = await this.#pipeline.sendRequest(this.#http, request);
    let parsed: unknown;
    try {
      parsed = response.bodyAsText ? (JSON.parse(response.bodyAsText) as unknown) : undefined;
    } catch {
      parsed = undefined;
    }
    if (response.status >= 400) {
      const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ArmHttpError(response.status, err?.code, err?.message ?? `HTTP ${response.status}`);
    }
    return { status: response.status, body: parsed };
  }

  /** Idempotent: puts (or keeps) the `CanNotDelete` lock `rubicon-guard` on the resource. */
  async lock(resourceId: string, notes: string): Promise<void> {
    try {
      await this.#lockCall('PUT', resourceId, { properties: { level: 'CanNotDelete', notes: notes.slice(0, 512) } });
    } catch (e) {
      throw infraError(
        `Locking ${normalizeArmId(resourceId)} against deletion failed: ${describeArmError(e)}`,
        "Rubicon's identity needs Microsoft.Authorization/locks/write on the target's resource group (docs/infra.md); nothing is crossed without the lock.",
        e,
      );
    }
  }

  /** Idempotent: removes the lock `rubicon-guard` (an absent lock or resource is fine). Removes the hard stop: for the crossing only. */
  async unlock(resourceId: string): Promise<void> {
    try {
      await this.#lockCall('DELETE', resourceId);
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw infraError(
        `Removing the lock of ${normalizeArmId(resourceId)} failed: ${describeArmError(e)}`,
        "Rubicon's identity needs Microsoft.Authorization/locks/delete on the target's resource group (docs/infra.md).",
        e,
      );
    }
  }

  /** Read-only: is the `rubicon-guard` lock there? */
  async isLocked(resourceId: string): Promise<boolean> {
    try {
      const l = (await this.#lockCall('GET', resourceId)).body as { properties?: { level?: string } } | undefined;
      return l?.properties?.level === 'CanNotDelete' || l?.properties?.level === 'ReadOnly';
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw infraError(`Reading the lock of ${normalizeArmId(resourceId)} failed: ${describeArmError(e)}`, 'Check that the credential may read locks (Microsoft.Authorization/locks/read).', e);
    }
  }

  /** Merges `tags` into the disk's tags (PATCH). Idempotent. */
  async tagDisk(diskId: string, tags: Record<string, string>): Promise<void> {
    const d = this.#parse(diskId, 'disks', 'Disk id');
    try {
      const current = (await this.#compute.disks.get(d.resourceGroup, d.name)).tags ?? {};
      await this.#compute.disks.update(d.resourceGroup, d.name, { tags: { ...current, ...tags } }, { updateIntervalInMs: this.#pollMs }).pollUntilDone();
    } catch (e) {
      throw infraError(`Tagging disk ${d.name} (resource group ${d.resourceGroup}) failed: ${describeArmError(e)}`, 'Retry; tagging is idempotent.', e);
    }
  }

  /** Deletes a disk. Destructive; idempotent (404 fine). The caller removes its lock first and checks it is detached. */
  async deleteDisk(diskId: string): Promise<void> {
    const d = this.#parse(diskId, 'disks', 'Disk id');
    try {
      await this.#compute.disks.delete(d.resourceGroup, d.name, { updateIntervalInMs: this.#pollMs }).pollUntilDone();
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw infraError(`Deleting disk ${d.name} (resource group ${d.resourceGroup}) failed: ${describeArmError(e)}`, 'Retry; deleting is idempotent. A 409 ScopeLocked means its lock is still there.', e);
    }
  }

  /**
   * A managed disk copied from a snapshot, in the snapshot's resource group
   * and region. Idempotent by name: an existing disk of that name made from
   * that snapshot is returned; one made from something else is refused.
   */
  async createDiskFromSnapshot(snapshotId: string, name: string, tags: Record<string, string>): Promise<string> {
    const snap = this.#parse(snapshotId, 'snapshots', 'Snapshot id');
    const rg = snap.resourceGroup;
    try {
      const existing = await this.#compute.disks.get(rg, name);
      const source = existing.creationData?.sourceResourceId ?? '';
      if (normalizeArmId(source).toLowerCase() !== normalizeArmId(snapshotId).toLowerCase()) {
        throw infraError(`Disk ${name} in resource group ${rg} already exists and is not a copy of ${normalizeArmId(snapshotId)}.`, 'Nothing was changed. Delete or rename that disk, or check the run id.');
      }
      return normalizeArmId(existing.id ?? '');
    } catch (e) {
      if (e instanceof RubiconError) throw e;
      if (statusOf(e) !== 404) throw infraError(`Reading disk ${name} in resource group ${rg} failed: ${describeArmError(e)}`, 'Check the credential may read disks there.', e);
    }
    try {
      const source = await this.#compute.snapshots.get(rg, snap.name);
      const disk = await this.#compute.disks
        .createOrUpdate(rg, name, { location: source.location, tags, creationData: { createOption: 'Copy', sourceResourceId: normalizeArmId(snapshotId) } }, { updateIntervalInMs: this.#pollMs })
        .pollUntilDone();
      if (!disk.id) throw new Error('ARM returned no id');
      return normalizeArmId(disk.id);
    } catch (e) {
      throw infraError(`Creating disk ${name} from snapshot ${snap.name} failed: ${describeArmError(e)}`, 'Retry: it is idempotent by name. Check the disk quota.', e);
    }
  }

  /** Read-only: snapshots and disks of a resource group that Rubicon tagged as rollback assets. */
  async listRollbackAssets(resourceGroup: string): Promise<RollbackAsset[]> {
    const out: RollbackAsset[] = [];
    try {
      for await (const s of this.#compute.snapshots.listByResourceGroup(resourceGroup)) {
        const role = s.tags?.['rubicon-role'];
        if (role?.startsWith('rollback') && s.id) {
          out.push({
            id: normalizeArmId(s.id),
            kind: 'snapshot',
            runId: s.tags?.[RUN_TAG] ?? '',
            role,
            ...(s.tags?.['rubicon-disk'] ? { disk: s.tags['rubicon-disk'] } : {}),
            ...(s.timeCreated ? { createdAt: new Date(s.timeCreated).toISOString() } : {}),
          });
        }
      }
      for await (const d of this.#compute.disks.listByResourceGroup(resourceGroup)) {
        const role = d.tags?.['rubicon-role'];
        if (role?.startsWith('rollback') && d.id) {
          out.push({
            id: normalizeArmId(d.id),
            kind: 'disk',
            runId: d.tags?.[RUN_TAG] ?? '',
            role,
            ...(d.timeCreated ? { createdAt: new Date(d.timeCreated).toISOString() } : {}),
            ...(d.managedBy ? { attachedTo: normalizeArmId(d.managedBy) } : {}),
          });
        }
      }
    } catch (e) {
      throw infraError(`Listing rollback assets in resource group ${resourceGroup} failed: ${describeArmError(e)}`, 'Check that the credential may read disks and snapshots there.', e);
    }
    return out;
  }
}

/** The production ArmPort: DefaultAzureCredential and AZURE_SUBSCRIPTION_ID (missing → INFRA_FAILED naming it). */
export function azureArmPortFromEnv(env: Record<string, string | undefined> = process.env, options: Omit<AzureArmPortOptions, 'subscriptionId' | 'credential'> = {}): AzureArmPort {
  const subscriptionId = env['AZURE_SUBSCRIPTION_ID']?.trim();
  if (!subscriptionId) {
    throw new RubiconError('INFRA_FAILED', 'Environment variable AZURE_SUBSCRIPTION_ID is not set: Rubicon cannot lock the target or read its disks.', {
      hint: 'export AZURE_SUBSCRIPTION_ID=<subscription id of the target>; sign in with `az login` or set AZURE_TENANT_ID/AZURE_CLIENT_ID (DefaultAzureCredential).',
    });
  }
  return new AzureArmPort({ ...options, subscriptionId, credential: new DefaultAzureCredential() });
}
