import * as pulumi from '@pulumi/pulumi';
import * as keyvault from '@pulumi/azure-native/keyvault/index.js';
import * as storage from '@pulumi/azure-native/storage/index.js';
import { VAULT_TYPE } from '../names.ts';

export interface VaultArgs {
  /** Resource group of the vault (exists; not created here). Keep it apart from the target's where you can. */
  resourceGroupName: pulumi.Input<string>;
  location: pulumi.Input<string>;
  /** Storage account name: 3-24 lowercase letters or digits, globally unique. */
  storageAccountName: string;
  /** Blob container for backups. Default `rubicon-backups`. */
  containerName?: string;
  /** Storage redundancy. Default `Standard_GRS` (a copy in the paired region). */
  sku?: string;
  /** WORM retention: days each blob version stays immutable after it is written. Default 30. */
  retentionDays?: number;
  /** Soft delete for blobs and containers, in days. Default 14. */
  softDeleteDays?: number;
  /** Allow account-key (shared key) access. Default false: Entra ID only. */
  allowSharedKeyAccess?: boolean;
  /** Key Vault name for Rubicon's secrets (vault passwords, backup-encryption keys). */
  keyVaultName: string;
  /** Entra tenant id the Key Vault trusts. */
  tenantId: pulumi.Input<string>;
  tags?: Record<string, string>;
}

/** Pure: the options of every vault resource. Backups outlive the stack: never deleted by Pulumi, never replaced by a plan. */
export function vaultResourceOptions(): { protect: true; retainOnDelete: true } {
  return { protect: true, retainOnDelete: true };
}

/**
 * The off-target vault: a storage account (HTTPS only, TLS 1.2+, no public
 * blob access, versioning, soft delete) with a container whose blob versions
 * are immutable (WORM) for `retentionDays`, and a Key Vault (RBAC, soft
 * delete, purge protection) for secrets.
 *
 * Guarantees: every resource here is protected and retained on delete, so a
 * `pulumi destroy` or a bad plan cannot take the backups. The immutability
 * policy is created unlocked; locking it is a deliberate, irreversible,
 * imperative step (docs/infra.md).
 */
export class Vault extends pulumi.ComponentResource {
  readonly account: storage.StorageAccount;
  readonly blobService: storage.BlobServiceProperties;
  readonly container: storage.BlobContainer;
  readonly immutabilityPolicy: storage.BlobContainerImmutabilityPolicy;
  readonly keyVault: keyvault.Vault;
  /** ARM id of the backup container: the scope of the proving ground's read-only role. */
  readonly containerId: pulumi.Output<string>;
  readonly containerName: string;
  readonly blobEndpoint: pulumi.Output<string>;
  readonly keyVaultUri: pulumi.Output<string>;

  constructor(name: string, args: VaultArgs, opts?: pulumi.ComponentResourceOptions) {
    super(VAULT_TYPE, name, {}, opts);
    const tags = { ...args.tags, 'rubicon-role': 'vault' };
    const keep = { parent: this, ...vaultResourceOptions() };
    this.containerName = args.containerName ?? 'rubicon-backups';
    const softDelete = { enabled: true, days: args.softDeleteDays ?? 14 };

    this.account = new storage.StorageAccount(
      `${name}Account`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        accountName: args.storageAccountName,
        kind: 'StorageV2',
        sku: { name: args.sku ?? 'Standard_GRS' },
        enableHttpsTrafficOnly: true,
        minimumTlsVersion: 'TLS1_2',
        allowBlobPublicAccess: false,
        allowSharedKeyAccess: args.allowSharedKeyAccess ?? false,
        tags,
      },
      keep,
    );

    this.blobService = new storage.BlobServiceProperties(
      `${name}BlobService`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: this.account.name,
        blobServicesName: 'default',
        isVersioningEnabled: true,
        deleteRetentionPolicy: softDelete,
        containerDeleteRetentionPolicy: softDelete,
      },
      keep,
    );

    this.container = new storage.BlobContainer(
      `${name}Container`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: this.account.name,
        containerName: this.containerName,
        publicAccess: 'None',
        immutableStorageWithVersioning: { enabled: true },
      },
      { ...keep, dependsOn: [this.blobService] },
    );

    this.immutabilityPolicy = new storage.BlobContainerImmutabilityPolicy(
      `${name}Worm`,
      {
        resourceGroupName: args.resourceGroupName,
        accountName: this.account.name,
        containerName: this.container.name,
        immutabilityPolicyName: 'default',
        immutabilityPeriodSinceCreationInDays: args.retentionDays ?? 30,
        allowProtectedAppendWrites: false,
      },
      keep,
    );

    this.keyVault = new keyvault.Vault(
      `${name}KeyVault`,
      {
        resourceGroupName: args.resourceGroupName,
        location: args.location,
        vaultName: args.keyVaultName,
        properties: {
          tenantId: args.tenantId,
          sku: { family: 'A', name: 'standard' },
          enableRbacAuthorization: true,
          enableSoftDelete: true,
          softDeleteRetentionInDays: 90,
          enablePurgeProtection: true,
        },
        tags,
      },
      keep,
    );

    this.containerId = this.container.id;
    this.blobEndpoint = this.account.primaryEndpoints.apply((e) => e?.blob ?? '');
    this.keyVaultUri = this.keyVault.properties.apply((p) => p?.vaultUri ?? '');
    this.registerOutputs({ containerId: this.containerId, blobEndpoint: this.blobEndpoint, keyVaultUri: this.keyVaultUri });
  }
}
