import * as pulumi from '@pulumi/pulumi';
import { RubiconError } from '../../core/errors.ts';
import { CONFIG_KEYS, CONFIG_NAMESPACE, parseInfraConfig, type InfraConfig, type RawInfraConfig } from './config.ts';
import { targetDecision, type CurrentTarget, type GuardDecision } from './guard.ts';
import { ProvingGround } from './components/proving-ground.ts';
import { TargetServer } from './components/target-server.ts';
import { Vault } from './components/vault.ts';
import { TARGET_COMPONENT_NAME, provingGroundName } from './names.ts';

/**
 * The Rubicon Pulumi program: vault, target server and (when enabled) the
 * proving ground. No side effects at import time: the entry point
 * (./main.ts) and the tests call `rubiconInfra` after Pulumi (or the mocks)
 * are set up.
 */

export interface ProgramDeps {
  /**
   * What Azure says about the target VM now (absent, or present with its
   * image, location and zone). Real: an ARM read (./current.ts); tests: a stub.
   * Throws when it cannot tell: the program then declares nothing.
   */
  currentTarget(cfg: InfraConfig): Promise<CurrentTarget>;
  now(): Date;
  /**
   * Builds the engine-side delete guard (./hooks.ts) for this decision. Real:
   * always under the Pulumi engine; left out under the mock monitor, which
   * cannot register hooks.
   */
  deleteGuard?: (decision: GuardDecision, target: string) => pulumi.ResourceHook;
}

export interface InfraOutputs {
  targetVmId: pulumi.Output<string>;
  /** The VM's unique id (ARM `properties.vmId`): it changes when the VM is really recreated, unlike its resource id. */
  targetVmUniqueId: pulumi.Output<string>;
  targetVmName: string;
  targetImage: string;
  /** True when the VM is protected in this deployment (no valid permit). */
  targetProtected: boolean;
  dataDiskIds: pulumi.Output<string>[];
  vaultContainerId: pulumi.Output<string>;
  vaultBlobEndpoint: pulumi.Output<string>;
  keyVaultUri: pulumi.Output<string>;
  provingGround: { vmId: pulumi.Output<string>; resourceGroup: pulumi.Output<string>; tags: Record<string, string> } | null;
}

/** Reads the `rubicon:` settings. Effect: reads Pulumi config (call it while the program runs). */
export function readInfraConfig(config: pulumi.Config = new pulumi.Config(CONFIG_NAMESPACE)): InfraConfig {
  const raw: RawInfraConfig = {};
  for (const key of CONFIG_KEYS) {
    const v = config.get(key);
    if (v !== undefined) raw[key] = v;
  }
  return parseInfraConfig(raw);
}

export interface Secrets {
  targetAdminPassword: pulumi.Output<string>;
  provingGroundAdminPassword?: pulumi.Output<string>;
}

/** Reads the secret settings. Effect: reads Pulumi config. */
export function readSecrets(cfg: InfraConfig, config: pulumi.Config = new pulumi.Config(CONFIG_NAMESPACE)): Secrets {
  const target = config.getSecret('targetAdminPassword');
  if (target === undefined) {
    throw new RubiconError('ARGUMENTS_INVALID', 'Pulumi config rubicon:targetAdminPassword is not set.', {
      hint: 'Set it as a secret: `pulumi config set --secret rubicon:targetAdminPassword`.',
      details: { key: 'rubicon:targetAdminPassword' },
    });
  }
  const pg = config.getSecret('provingGroundAdminPassword');
  if (cfg.provingGround.enabled && pg === undefined) {
    throw new RubiconError('ARGUMENTS_INVALID', 'Pulumi config rubicon:provingGroundAdminPassword is not set but rubicon:provingGround.enabled is true.', {
      hint: 'Set it as a secret: `pulumi config set --secret rubicon:provingGroundAdminPassword`.',
      details: { key: 'rubicon:provingGroundAdminPassword' },
    });
  }
  return { targetAdminPassword: target, ...(pg ? { provingGroundAdminPassword: pg } : {}) };
}

/**
 * Pure: the ARM ids of the existing resources an adoption imports, from the
 * configured names (the subscription is the one of rubicon:target.subnetId).
 */
export function adoptionIds(cfg: InfraConfig): { vm: string; nic: string; nsg: string; disks: Record<string, string> } {
  const sub = /^\/subscriptions\/([^/]+)\//i.exec(cfg.target.subnetId)?.[1] ?? '';
  const rg = `/subscriptions/${sub}/resourceGroups/${cfg.resourceGroupName}/providers`;
  return {
    vm: `${rg}/Microsoft.Compute/virtualMachines/${cfg.target.name}`,
    nic: `${rg}/Microsoft.Network/networkInterfaces/${cfg.target.nicName}`,
    nsg: `${rg}/Microsoft.Network/networkSecurityGroups/${cfg.target.nsgName}`,
    disks: Object.fromEntries(cfg.target.dataDisks.map((d) => [d.name, `${rg}/Microsoft.Compute/disks/${d.diskName}`])),
  };
}

/** Pure: the guard's verdict for this configuration and what Azure says now. */
export function decide(cfg: InfraConfig, current: CurrentTarget, now: Date): GuardDecision {
  return targetDecision({
    target: cfg.target.name,
    current,
    planned: { image: cfg.target.imageUrn, location: cfg.location, ...(cfg.target.zone ? { zone: cfg.target.zone } : {}) },
    permit: cfg.permit,
    publicKeyPem: cfg.permitPublicKey,
    proofSetHash: cfg.proofSetHash,
    now,
  });
}

/**
 * Declares every resource. Refuses (PERMIT_INVALID, before declaring
 * anything) an image change without a valid signed permit, a target whose
 * current image is unknown, and a move to another location or zone.
 */
export async function rubiconInfra(cfg: InfraConfig, secrets: Secrets, deps: ProgramDeps): Promise<InfraOutputs> {
  for (const w of cfg.warnings) void pulumi.log.warn(w);
  const decision = decide(cfg, await deps.currentTarget(cfg), deps.now());
  if (!decision.allowed) {
    throw new RubiconError('PERMIT_INVALID', decision.message ?? 'Image change refused.', {
      hint: decision.fix,
      details: { target: cfg.target.name, plannedImage: cfg.target.imageUrn },
    });
  }
  const stackTags = { 'rubicon-stack': pulumi.getStack() };

  const vault = new Vault('vault', {
    resourceGroupName: cfg.vault.resourceGroupName ?? cfg.resourceGroupName,
    location: cfg.location,
    storageAccountName: cfg.vault.storageAccountName,
    containerName: cfg.vault.containerName,
    sku: cfg.vault.sku,
    retentionDays: cfg.vault.retentionDays,
    softDeleteDays: cfg.vault.softDeleteDays,
    allowSharedKeyAccess: cfg.vault.allowSharedKeyAccess,
    keyVaultName: cfg.vault.keyVaultName,
    tenantId: cfg.vault.tenantId,
    tags: stackTags,
  });

  const t = cfg.target;
  const target = new TargetServer(TARGET_COMPONENT_NAME, {
    name: t.name,
    formerNames: t.formerNames,
    resourceGroupName: cfg.resourceGroupName,
    location: cfg.location,
    vmSize: t.vmSize,
    image: t.image,
    decision,
    ...(deps.deleteGuard ? { deleteGuard: deps.deleteGuard(decision, t.name) } : {}),
    subnetId: t.subnetId,
    adminUsername: t.adminUsername,
    adminPassword: secrets.targetAdminPassword,
    osDiskType: t.osDiskType,
    ...(t.osDiskName ? { osDiskName: t.osDiskName } : {}),
    ...(t.restoreFromDisk ? { restoreFromDisk: t.restoreFromDisk } : {}),
    ...(t.adopt ? { adoptIds: adoptionIds(cfg) } : {}),
    nicName: t.nicName,
    nsgName: t.nsgName,
    dataDisks: t.dataDisks,
    rdpSourcePrefixes: t.rdpSourcePrefixes,
    ...(t.zone ? { zone: t.zone } : {}),
    trustedLaunch: t.trustedLaunch,
    tags: stackTags,
  });

  let provingGround: InfraOutputs['provingGround'] = null;
  const p = cfg.provingGround;
  if (p.enabled) {
    const pg = new ProvingGround(provingGroundName(pulumi.getStack()), {
      location: cfg.location,
      runId: p.runId,
      createdAt: p.createdAt,
      ttlHours: p.ttlHours,
      vmSize: p.vmSize,
      image: p.image,
      adminUsername: p.adminUsername,
      adminPassword: secrets.provingGroundAdminPassword!,
      dataDiskSizeGb: p.dataDiskSizeGb,
      addressSpace: p.addressSpace,
      subnetPrefix: p.subnetPrefix,
      vaultContainerId: vault.containerId,
      vaultStorageAccountId: vault.account.id,
      ...(p.storageServiceTag ? { storageServiceTag: p.storageServiceTag } : {}),
      autoShutdownTime: p.autoShutdownTime,
      timeZone: p.timeZone,
      tags: stackTags,
    });
    provingGround = { vmId: pg.vmId, resourceGroup: pg.resourceGroup.name, tags: pg.tags };
  }

  return {
    targetVmId: target.vmId,
    targetVmUniqueId: target.vm.vmId,
    targetVmName: t.name,
    targetImage: t.imageUrn,
    targetProtected: decision.protect,
    dataDiskIds: target.dataDisks.map((d) => d.id),
    vaultContainerId: vault.containerId,
    vaultBlobEndpoint: vault.blobEndpoint,
    keyVaultUri: vault.keyVaultUri,
    provingGround,
  };
}
