import type { Permit } from '../../src/core/types.ts';
import { proofSetHash } from '../../src/gate/permit.ts';
import type { RawInfraConfig } from '../../src/infra/azure/config.ts';
import { generateKeyPair, loadSigner } from '../../src/trust/keys.ts';
import { signPermit, type SignedPermit } from '../../src/trust/permit.ts';

/** Builders for infra tests: a valid raw config, permits relative to a fixed clock, and a test signing key. */

/** A throwaway signing key for the tests (never a real one). */
export const KEYS = generateKeyPair();
export const SIGNER = loadSigner({ env: 'RUBICON_TEST_SIGNING_KEY' }, { RUBICON_TEST_SIGNING_KEY: KEYS.privateKeyPem });
/** Another key: what a forger who can write the stack config would sign with. */
export const FORGER_KEYS = generateKeyPair();
export const FORGER = loadSigner({ env: 'K' }, { K: FORGER_KEYS.privateKeyPem });

export const NOW = new Date('2026-03-01T10:00:00Z');
export const OLD_IMAGE = 'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest';
export const NEW_IMAGE = 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest';
export const SUBNET = '/subscriptions/3c5a1d7e-2b9f-4e61-8d0a-5b7c9e1f2a34/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/servers';

export const PROOFS = [
  { id: 'proof.run-7.db.mssql-native-full', outcome: 'passed' as const },
  { id: 'proof.run-7.db.restic', outcome: 'passed' as const },
  { id: 'proof.run-7.folder-x.file-mirror', outcome: 'passed' as const },
];
export const PROOF_SET_HASH = proofSetHash(PROOFS);

export function rawConfig(over: Partial<Record<'target' | 'vault' | 'provingGround', Record<string, unknown>>> & Omit<RawInfraConfig, 'target' | 'vault' | 'provingGround'> = {}): RawInfraConfig {
  const { target, vault, provingGround, ...rest } = over;
  return {
    location: 'westeurope',
    resourceGroupName: 'rg-ehr',
    target: {
      name: 'ehr-01',
      vmSize: 'Standard_D4s_v5',
      image: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' },
      subnetId: SUBNET,
      dataDisks: [
        { name: 'sqldata', lun: 0, sizeGb: 256 },
        { name: 'ehrfiles', lun: 1, sizeGb: 128, type: 'StandardSSD_LRS' },
      ],
      rdpSourcePrefixes: ['10.10.0.0/24'],
      ...target,
    },
    vault: {
      storageAccountName: 'rubiconvault01',
      keyVaultName: 'kv-rubicon-01',
      tenantId: '11111111-2222-3333-4444-555555555555',
      ...vault,
    },
    ...(provingGround ? { provingGround } : {}),
    ...rest,
  };
}

export function permit(over: Partial<Permit> = {}): Permit {
  return {
    id: 'permit.run-7.9f2c',
    runId: 'run-7',
    target: 'ehr-01',
    image: NEW_IMAGE,
    proofIds: PROOFS.map((p) => p.id),
    proofSetHash: PROOF_SET_HASH,
    issuedAt: '2026-03-01T09:30:00Z',
    expiresAt: '2026-03-01T11:30:00Z',
    ...over,
  };
}

/** A permit signed with the test key, as `rubicon upgrade` writes it into the stack config. */
export function signed(over: Partial<Permit> = {}, signer = SIGNER): SignedPermit {
  return signPermit(permit(over), signer);
}
