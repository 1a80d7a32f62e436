import * as compute from '@pulumi/azure-native/compute/index.js';
import type { InfraConfig } from './config.ts';
import { readInfraConfig, readSecrets, rubiconInfra, type InfraOutputs } from './program.ts';

/**
 * Pulumi entry point (Pulumi.yaml `main`). Pulumi's Node.js language host
 * imports this ES module and runs its default export; the returned object
 * becomes the stack outputs. Importing it has no side effects.
 *
 * Never run here with the real Pulumi CLI (not installable on the build
 * machines): see docs/infra.md.
 */

/**
 * The target's current image, read from Azure (an invoke; runs in preview
 * too). Undefined only when the VM does not exist (first deployment); any
 * other failure propagates, so an unknown current image never slips past
 * the guard.
 */
export async function currentImageFromAzure(cfg: InfraConfig): Promise<string | undefined> {
  try {
    const vm = await compute.getVirtualMachine({ resourceGroupName: cfg.resourceGroupName, vmName: cfg.target.name });
    const r = vm.storageProfile?.imageReference;
    if (!r?.publisher || !r.offer || !r.sku) return undefined;
    return `${r.publisher}:${r.offer}:${r.sku}:${r.version ?? 'latest'}`;
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    if (/ResourceNotFound|NotFound|was not found/i.test(text)) return undefined;
    throw e;
  }
}

export default async function main(): Promise<InfraOutputs> {
  const cfg = readInfraConfig();
  return rubiconInfra(cfg, readSecrets(cfg), { currentImage: currentImageFromAzure, now: () => new Date() });
}
