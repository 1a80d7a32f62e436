/**
 * What an Azure Blob container really guarantees, computed from what the
 * service says about it. Pure functions over the service's own response
 * shapes, so the gate's immutability fact is read, never declared.
 *
 * Sources (the shapes the parsers take):
 * - Get Container Properties (Blob service REST API): response headers
 *   `x-ms-has-immutability-policy`, `x-ms-has-legal-hold`,
 *   `x-ms-immutable-storage-with-versioning-enabled`,
 *   `x-ms-default-encryption-scope`, `x-ms-deny-encryption-scope-override`.
 *   (@azure/storage-blob's ContainerGetPropertiesResponse: hasImmutabilityPolicy,
 *   hasLegalHold, isImmutableStorageWithVersioningEnabled, defaultEncryptionScope.)
 * - Get Blob Properties: `x-ms-immutability-policy-until-date`,
 *   `x-ms-immutability-policy-mode` (`unlocked` | `locked`), `x-ms-legal-hold`,
 *   `x-ms-server-encrypted`, `x-ms-encryption-scope`, `x-ms-encryption-key-sha256`,
 *   `x-ms-creation-time`.
 * - ARM (Microsoft.Storage), for what the data plane does not say:
 *   `blobServices/default/containers/{c}/immutabilityPolicies/default`
 *   (properties.immutabilityPeriodSinceCreationInDays, properties.state
 *   `Locked` | `Unlocked`, properties.allowProtectedAppendWrites) and the
 *   account's `properties.encryption.keySource` (`Microsoft.Storage` |
 *   `Microsoft.Keyvault`, i.e. customer-managed keys).
 *
 * The rule ("immutable" means a copy cannot be deleted or overwritten for the
 * policy's period, by anyone, including the account's owner):
 * - a legal hold on the copy: immutable while it is held (no end date);
 * - a **locked** time-based policy whose period covers the retention the
 *   run needs: immutable;
 * - an **unlocked** policy: NOT immutable (an administrator can shorten or
 *   delete it; Microsoft: "unlocked policies are for testing"), reported as
 *   `unlocked` so the report can say so;
 * - a container-level (not version-level) policy seen only as
 *   `hasImmutabilityPolicy: true` on the data plane: its lock state is an ARM
 *   fact; without it, reported as `unknown-lock`, NOT immutable.
 */

export type ImmutabilityState = 'none' | 'unlocked' | 'locked' | 'legal-hold' | 'unknown-lock';

export interface ImmutabilityFacts {
  state: ImmutabilityState;
  /** True only when a copy written now cannot be deleted or overwritten for `periodDays` (or while held). */
  immutable: boolean;
  /** The policy's period in days, when known. */
  periodDays?: number;
  /** Plain words for the report. */
  detail: string;
}

/** The container's data-plane flags (ContainerGetPropertiesResponse). */
export interface ContainerImmutabilityFlags {
  hasImmutabilityPolicy?: boolean;
  hasLegalHold?: boolean;
  isImmutableStorageWithVersioningEnabled?: boolean;
}

/** A blob's immutability properties (BlobGetPropertiesResponse). */
export interface BlobImmutabilityProps {
  immutabilityPolicyExpiresOn?: Date;
  /** The SDK's BlobImmutabilityPolicyMode: 'Mutable' | 'Unlocked' | 'Locked' (the header is lower case). */
  immutabilityPolicyMode?: string;
  legalHold?: boolean;
  createdOn?: Date;
}

/** ARM's ImmutabilityPolicy resource (container-level WORM), as GET returns it. */
export interface ArmImmutabilityPolicy {
  properties?: { immutabilityPeriodSinceCreationInDays?: number; state?: string; allowProtectedAppendWrites?: boolean };
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Parses ARM's immutabilityPolicies/default response body. Returns undefined
 * for a body that is not that shape (the caller then says `unknown-lock`).
 */
export function parseArmImmutabilityPolicy(body: unknown): { periodDays: number; locked: boolean } | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const p = (body as ArmImmutabilityPolicy).properties;
  if (!p || typeof p.immutabilityPeriodSinceCreationInDays !== 'number' || typeof p.state !== 'string') return undefined;
  return { periodDays: p.immutabilityPeriodSinceCreationInDays, locked: p.state.toLowerCase() === 'locked' };
}

/**
 * The facts for a container, from its flags, the properties of a blob
 * written into it under the container's default policy (the vault's marker
 * blob; undefined when none could be written or read) and, when available,
 * the ARM policy. `minDays`: the retention the run needs (the policy must
 * cover at least that). Pure.
 */
export function immutabilityFacts(
  container: ContainerImmutabilityFlags,
  probe: BlobImmutabilityProps | undefined,
  arm: { periodDays: number; locked: boolean } | undefined,
  minDays = 1,
): ImmutabilityFacts {
  if (probe?.legalHold === true || (container.hasLegalHold === true && probe === undefined)) {
    return { state: 'legal-hold', immutable: true, detail: 'a legal hold is set: copies cannot be deleted or overwritten until it is cleared' };
  }
  if (container.isImmutableStorageWithVersioningEnabled === true && probe) {
    const mode = (probe.immutabilityPolicyMode ?? '').toLowerCase();
    const until = probe.immutabilityPolicyExpiresOn;
    const created = probe.createdOn;
    const periodDays = until && created ? Math.round((until.getTime() - created.getTime()) / DAY_MS) : undefined;
    const period = periodDays !== undefined ? `${periodDays} days` : 'an unknown period';
    if (mode === 'locked') {
      const enough = periodDays !== undefined && periodDays >= minDays;
      return {
        state: 'locked',
        immutable: enough,
        ...(periodDays !== undefined ? { periodDays } : {}),
        detail: enough
          ? `a locked version-level WORM policy of ${period}: a copy cannot be deleted or overwritten for ${period}, by anyone`
          : `a locked version-level WORM policy of ${period}, shorter than the ${minDays} days the run needs`,
      };
    }
    if (mode === 'unlocked') {
      return {
        state: 'unlocked',
        immutable: false,
        ...(periodDays !== undefined ? { periodDays } : {}),
        detail: `an UNLOCKED version-level WORM policy of ${period}: an administrator can shorten or remove it, so copies are not immutable; lock the policy`,
      };
    }
    return { state: 'none', immutable: false, detail: 'version-level immutability is enabled on the container but a new blob gets no policy: set a default policy on the container and lock it' };
  }
  if (container.hasImmutabilityPolicy === true) {
    if (!arm) {
      return {
        state: 'unknown-lock',
        immutable: false,
        detail: 'the container has a container-level immutability policy whose lock state only Azure Resource Manager can tell; Rubicon counts it as not immutable until it can read the policy',
      };
    }
    if (!arm.locked) {
      return {
        state: 'unlocked',
        immutable: false,
        periodDays: arm.periodDays,
        detail: `an UNLOCKED container-level WORM policy of ${arm.periodDays} days: it can be removed, so copies are not immutable; lock the policy`,
      };
    }
    const enough = arm.periodDays >= minDays;
    return {
      state: 'locked',
      immutable: enough,
      periodDays: arm.periodDays,
      detail: enough
        ? `a locked container-level WORM policy of ${arm.periodDays} days`
        : `a locked container-level WORM policy of ${arm.periodDays} days, shorter than the ${minDays} days the run needs`,
    };
  }
  return { state: 'none', immutable: false, detail: 'the container has no immutability policy and no legal hold: copies can be deleted or overwritten' };
}

export interface EncryptionFacts {
  encrypted: boolean;
  /** `service-managed` (Microsoft-managed keys), `customer-managed` (Key Vault), `customer-provided` (a key per request), or `unknown`. */
  keys: 'service-managed' | 'customer-managed' | 'customer-provided' | 'unknown';
  scope?: string;
  detail: string;
}

/**
 * Encryption at rest of a blob as the service reports it (`x-ms-server-encrypted`
 * on upload and Get Blob Properties; every Azure Storage write is encrypted
 * with AES-256, "Azure Storage encryption for data at rest"). Whether the
 * account's keys are Microsoft's or the customer's is ARM's
 * `encryption.keySource`: pass it when known. Pure.
 */
export function encryptionFacts(
  blob: { isServerEncrypted?: boolean; encryptionScope?: string; encryptionKeySha256?: string } | undefined,
  keySource?: string,
): EncryptionFacts {
  if (!blob || blob.isServerEncrypted !== true) {
    return { encrypted: false, keys: 'unknown', detail: 'the service did not report the blob as encrypted at rest' };
  }
  const scope = blob.encryptionScope ? { scope: blob.encryptionScope } : {};
  if (blob.encryptionKeySha256) return { encrypted: true, keys: 'customer-provided', ...scope, detail: 'service-side AES-256 with a key provided per request' };
  if (keySource?.toLowerCase() === 'microsoft.keyvault') {
    return { encrypted: true, keys: 'customer-managed', ...scope, detail: `service-side AES-256 with customer-managed keys (Key Vault)${blob.encryptionScope ? `, scope ${blob.encryptionScope}` : ''}` };
  }
  if (keySource?.toLowerCase() === 'microsoft.storage') {
    return { encrypted: true, keys: 'service-managed', ...scope, detail: `service-side AES-256 with Microsoft-managed keys${blob.encryptionScope ? `, scope ${blob.encryptionScope}` : ''}` };
  }
  return {
    encrypted: true,
    keys: 'unknown',
    ...scope,
    detail: `service-side AES-256${blob.encryptionScope ? ` (encryption scope ${blob.encryptionScope})` : ''}; whether the keys are Microsoft-managed or customer-managed is an account setting Rubicon did not read`,
  };
}
