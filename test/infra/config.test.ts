import * as pulumi from '@pulumi/pulumi';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { cidrRange, parseInfraConfig } from '../../src/infra/azure/config.ts';
import { readInfraConfig } from '../../src/infra/azure/program.ts';
import { KEYS, rawConfig, signed } from './builders.ts';

function errorOf(fn: () => unknown): RubiconError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a RubiconError');
}

describe('parseInfraConfig: parse → normalize → rules', () => {
  it('fills every default and renders images as URNs', () => {
    const c = parseInfraConfig(rawConfig());
    expect(c.target.imageUrn).toBe('MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest');
    expect(c.target.adminUsername).toBe('rubiconadmin');
    expect(c.target.osDiskType).toBe('Premium_LRS');
    expect(c.target.dataDisks.map((d) => d.type)).toEqual(['Premium_LRS', 'StandardSSD_LRS']);
    expect(c.vault).toMatchObject({ containerName: 'rubicon-backups', sku: 'Standard_GRS', retentionDays: 30, softDeleteDays: 14, allowSharedKeyAccess: false });
    expect(c.provingGround).toMatchObject({ enabled: false, ttlHours: 8, addressSpace: '10.250.0.0/24', subnetPrefix: '10.250.0.0/26' });
    expect(c.provingGround.imageUrn).toBe('MicrosoftSQLServer:sql2022-ws2022:sqldev-gen2:latest');
    expect(c.permit).toBeUndefined();
  });

  it('accepts objects as JSON strings and "true"/numbers as the CLI stores them with --path', () => {
    const raw = rawConfig({ provingGround: { enabled: 'true', ttlHours: '12', createdAt: '2026-03-01T08:00:00Z' } });
    const c = parseInfraConfig({ ...raw, target: JSON.stringify(raw.target), provingGround: JSON.stringify(raw.provingGround), permit: JSON.stringify(signed()) });
    expect(c.provingGround.enabled).toBe(true);
    expect(c.provingGround.ttlHours).toBe(12);
    expect(c.permit?.permit.id).toBe('permit.run-7.9f2c');
  });

  it('never coerces other strings into booleans', () => {
    const e = errorOf(() => parseInfraConfig(rawConfig({ provingGround: { enabled: 'yes' } })));
    expect(e.message).toContain('rubicon:provingGround.enabled');
  });

  it.each([
    [{ target: { name: 'this-name-is-far-too-long' } }, 'rubicon:target.name', '1-15'],
    [{ target: { subnetId: 'servers' } }, 'rubicon:target.subnetId', 'subnet resource id'],
    [{ target: { dataDisks: [{ name: 'a', lun: 64, sizeGb: 10 }] } }, 'rubicon:target.dataDisks[0].lun', ''],
    [{ target: { dataDisk: [] } }, 'rubicon:target', 'unknown setting "dataDisk"'],
    [{ vault: { storageAccountName: 'Has-Caps' } }, 'rubicon:vault.storageAccountName', 'storage account'],
    [{ vault: { tenantId: 'contoso' } }, 'rubicon:vault.tenantId', 'GUID'],
    [{ location: undefined }, 'rubicon:location', 'is required'],
  ])('names the key at fault: %j', (over, key, text) => {
    const raw = rawConfig(over as never);
    if ('location' in over) delete raw.location;
    const e = errorOf(() => parseInfraConfig(raw));
    expect(e.code).toBe('ARGUMENTS_INVALID');
    expect(e.message).toContain(key);
    expect(e.message).toContain(text);
    expect(e.hint).toContain('pulumi config set');
  });

  it('reports invalid JSON under the key', () => {
    const e = errorOf(() => parseInfraConfig({ ...rawConfig(), target: '{"name":' }));
    expect(e.message).toBe('Pulumi config rubicon:target is not valid JSON');
  });

  it.each([
    [{ target: { dataDisks: [{ name: 'a', lun: 0, sizeGb: 10 }, { name: 'b', lun: 0, sizeGb: 10 }] } }, 'rubicon:target.dataDisks[1].lun', 'LUN 0'],
    [{ target: { dataDisks: [{ name: 'a', lun: 0, sizeGb: 10 }, { name: 'a', lun: 1, sizeGb: 10 }] } }, 'rubicon:target.dataDisks[1].name', 'unique'],
    [{ provingGround: { subnetPrefix: '10.251.0.0/26' } }, 'rubicon:provingGround.subnetPrefix', 'inside'],
    [{ provingGround: { enabled: true } }, 'rubicon:provingGround.createdAt', 'not set'],
    [{ target: { rdpSourcePrefixes: ['0.0.0.0/0'] } }, 'rubicon:target.rdpSourcePrefixes', 'Internet'],
    // ARM rejects Premium SSD v2 on a VM without a zone.
    [{ target: { dataDisks: [{ name: 'a', lun: 0, sizeGb: 10, type: 'PremiumV2_LRS' }] } }, 'rubicon:target.dataDisks[0].type', 'availability zone'],
    [{ target: { formerNames: ['ehr-01'] } }, 'rubicon:target.formerNames', 'current name'],
  ])('cross-field rule: %j', (over, key, text) => {
    const e = errorOf(() => parseInfraConfig(rawConfig(over as never)));
    expect(e.message).toContain(key);
    expect(e.message).toContain(text);
  });

  it('warns when the permit names another target', () => {
    const c = parseInfraConfig(rawConfig({ permit: signed({ target: 'other-01' }) }));
    expect(c.warnings).toEqual([expect.stringContaining('"other-01"')]);
  });

  it('takes the signed permit, the trusted public key and existing names for adoption', () => {
    const c = parseInfraConfig(
      rawConfig({
        permit: signed(),
        permitPublicKey: KEYS.publicKeyPem,
        target: { nicName: 'EHRSRV01-nic-7f3a', nsgName: 'EHRSRV01-nsg', osDiskName: 'EHRSRV01_OsDisk_1_4c1d', trustedLaunch: false, dataDisks: [{ name: 'sqldata', diskName: 'EHRSRV01_DataDisk_0', lun: 0, sizeGb: 512 }] },
      }),
    );
    expect(c.permitPublicKey).toBe(KEYS.publicKeyPem);
    expect(c.target).toMatchObject({ nicName: 'EHRSRV01-nic-7f3a', nsgName: 'EHRSRV01-nsg', osDiskName: 'EHRSRV01_OsDisk_1_4c1d', trustedLaunch: false });
    expect(c.target.dataDisks[0]).toMatchObject({ name: 'sqldata', diskName: 'EHRSRV01_DataDisk_0' });
    const d = parseInfraConfig(rawConfig());
    expect(d.target).toMatchObject({ nicName: 'ehr-01-nic', nsgName: 'ehr-01-nsg', trustedLaunch: true, formerNames: [] });
    expect(d.target.dataDisks.map((x) => x.diskName)).toEqual(['ehr-01-sqldata', 'ehr-01-ehrfiles']);
    expect(d.target).not.toHaveProperty('osDiskName');
  });

  it('refuses an unsigned permit and a private key where the public one belongs', () => {
    expect(errorOf(() => parseInfraConfig(rawConfig({ permit: signed().permit }))).message).toContain('rubicon:permit');
    expect(errorOf(() => parseInfraConfig(rawConfig({ permitPublicKey: KEYS.privateKeyPem }))).message).toContain('rubicon:permitPublicKey');
  });

  it('cidrRange computes ranges', () => {
    expect(cidrRange('10.250.0.0/24')).toEqual([0x0afa0000, 0x0afa00ff]);
    expect(cidrRange('10.250.0.77/26')).toEqual([0x0afa0040, 0x0afa007f]);
    expect(cidrRange('10.250.0/24')).toBeUndefined();
  });
});

describe('readInfraConfig', () => {
  it('reads the rubicon: namespace from Pulumi config', () => {
    const raw = rawConfig();
    pulumi.runtime.setAllConfig({
      'rubicon:location': 'northeurope',
      'rubicon:resourceGroupName': 'rg-from-config',
      'rubicon:target': JSON.stringify(raw.target),
      'rubicon:vault': JSON.stringify(raw.vault),
    });
    const c = readInfraConfig();
    expect(c.location).toBe('northeurope');
    expect(c.resourceGroupName).toBe('rg-from-config');
    expect(c.target.name).toBe('ehr-01');
  });
});
