import * as compute from '@pulumi/azure-native/compute/index.js';
import { RubiconError } from '../../core/errors.ts';
import { diskImageUrn, type InfraConfig } from './config.ts';
import type { CurrentTarget } from './guard.ts';

/**
 * What Azure says about the target VM right now, read by the program with an
 * invoke (it runs in preview too). Kept out of main.ts so that the entry
 * point exports nothing but its default (Pulumi's loader refuses a module
 * with both a default and named exports).
 *
 * Contract: `absent` only for a 404 ResourceNotFound naming this VM; every
 * other failure (ResourceGroupNotFound, SubscriptionNotFound, 403, a
 * timeout) is a refusal (INFRA_FAILED), never a first deployment.
 */

/** The parts of an ARM VM this module reads (azure-native's GetVirtualMachineResult, or ARM's JSON flattened). */
export interface VmFacts {
  location: string;
  zones?: string[];
  storageProfile?: {
    imageReference?: { publisher?: string; offer?: string; sku?: string; version?: string; id?: string; sharedGalleryImageId?: string; communityGalleryImageId?: string };
    osDisk?: { createOption?: string; managedDisk?: { id?: string } };
  };
}

/** Pure: the VM's facts as the guard needs them. */
export function describeVm(vm: VmFacts): CurrentTarget & { state: 'present' } {
  const r = vm.storageProfile?.imageReference;
  const base = { state: 'present' as const, location: vm.location, ...(vm.zones && vm.zones.length > 0 ? { zone: vm.zones[0]! } : {}) };
  if (r?.publisher && r.offer && r.sku) {
    const urn = `${r.publisher}:${r.offer}:${r.sku}:${r.version ?? 'latest'}`;
    return { ...base, image: urn, imageSource: `marketplace image ${urn}` };
  }
  const os = vm.storageProfile?.osDisk;
  if (!r?.publisher && os?.createOption?.toLowerCase() === 'attach' && os.managedDisk?.id) {
    // Booted from an existing OS disk (a rollback, or built that way): its identity is that disk.
    const urn = diskImageUrn(os.managedDisk.id);
    return { ...base, image: urn, imageSource: `the attached OS disk ${os.managedDisk.id}` };
  }
  let source = 'no image reference';
  if (r?.sharedGalleryImageId) source = `shared gallery image ${r.sharedGalleryImageId}`;
  else if (r?.communityGalleryImageId) source = `community gallery image ${r.communityGalleryImageId}`;
  else if (r?.id) source = `image ${r.id}`;
  else if (os?.createOption?.toLowerCase() === 'attach') source = 'an attached OS disk without a managed disk id';
  return { ...base, image: undefined, imageSource: source };
}

/**
 * Pure: is this error text ARM's "this VM does not exist" and nothing else?
 * Accepts the two shapes azure-native reports a 404 in (the Go SDK's
 * `RESPONSE 404 … ERROR CODE: ResourceNotFound` and the older
 * `Status=404 Code="ResourceNotFound"`), and requires the VM's own name in
 * the text, so a ResourceGroupNotFound / SubscriptionNotFound / ParentResourceNotFound
 * (another resource missing) never reads as an absent VM.
 */
export function isVmNotFound(text: string, vmName: string): boolean {
  const is404 = /RESPONSE 404|Status=404|\b404 Not Found\b|statusCode["']?\s*[:=]\s*404/i.test(text);
  const code = /ERROR CODE:\s*ResourceNotFound\b|Code="ResourceNotFound"|"code"\s*:\s*"ResourceNotFound"/.test(text);
  const otherMissing = /(ResourceGroupNotFound|SubscriptionNotFound|ParentResourceNotFound|AuthorizationFailed)/.test(text);
  const namesVm = new RegExp(`virtualMachines/${vmName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9-])`, 'i').test(text);
  return is404 && code && !otherMissing && namesVm;
}

/** Reads the target VM from Azure. Effect: one ARM read through the azure-native provider. */
export async function readCurrentTarget(cfg: InfraConfig): Promise<CurrentTarget> {
  try {
    const vm = await compute.getVirtualMachine({ resourceGroupName: cfg.resourceGroupName, vmName: cfg.target.name });
    return describeVm(vm as VmFacts);
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    if (isVmNotFound(text, cfg.target.name)) return { state: 'absent' };
    throw new RubiconError(
      'INFRA_FAILED',
      `Cannot read target VM ${cfg.target.name} in resource group ${cfg.resourceGroupName}, so its current image is unknown and nothing is deployed: ${text.replace(/\s+/g, ' ').slice(0, 400)}`,
      {
        hint: 'Check rubicon:resourceGroupName (it must exist), the subscription, and that this identity may read the VM (Reader); then run again.',
        cause: e,
      },
    );
  }
}
