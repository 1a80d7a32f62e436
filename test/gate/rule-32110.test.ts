import { describe, expect, it } from 'vitest';
import type { GateFacts, VaultInfo } from '../../src/core/types.ts';
import { evaluateGate } from '../../src/gate/evaluate.ts';
import { describeTally, tally32110 } from '../../src/gate/rule-32110.ts';
import { baselineFacts, copies, deepFreeze, folderArtifact, folderId } from './builders.ts';

const nas: VaultInfo = { name: 'nas', kind: 'filesystem', location: '/mnt/nas/rubicon', offTarget: true, immutable: false };
const nas2: VaultInfo = { name: 'nas2', kind: 'sftp', location: 'sftp://vault/srv', offTarget: true, immutable: false };
const azure: VaultInfo = { name: 'azure', kind: 'azure-blob', location: 'https://acct.blob.core.windows.net/rubicon', offTarget: true, immutable: true, encrypted: true };
const azureMutable: VaultInfo = { ...azure, name: 'azure-hot', immutable: false };

describe('tally32110: the rule from the vaults\' facts', () => {
  it.each([
    { name: 'NAS + immutable Azure', vaults: [nas, azure], errors: [], holds: true, missing: [] },
    { name: 'NAS only', vaults: [nas], errors: [], holds: false, missing: ['2 of 3 copies', '1 of 2 kinds of media', 'no off-site copy', 'no immutable or offline copy'] },
    { name: 'two NAS shares', vaults: [nas, nas2], errors: [], holds: false, missing: ['1 of 2 kinds of media', 'no off-site copy', 'no immutable or offline copy'] },
    { name: 'NAS + Azure without a locked policy', vaults: [nas, azureMutable], errors: [], holds: false, missing: ['no immutable or offline copy'] },
    { name: 'Azure alone', vaults: [azure], errors: [], holds: false, missing: ['2 of 3 copies', '1 of 2 kinds of media'] },
    { name: 'a read-back error', vaults: [nas, azure], errors: ['the copy in nas is checksum-mismatch'], holds: false, missing: ['1 read-back error'] },
    { name: 'one vault listed twice counts once', vaults: [nas, nas, azure], errors: [], holds: true, missing: [] },
  ])('$name', ({ vaults, errors, holds, missing }) => {
    const t = tally32110(vaults, errors, true);
    expect(t.holds).toBe(holds);
    expect(t.missing).toEqual(missing);
  });

  it('without the source (after a crossing) two vaults are two copies', () => {
    expect(tally32110([nas, azure], [], false).missing).toEqual(['2 of 3 copies']);
  });

  it('describes the tally in words', () => {
    expect(describeTally(tally32110([nas, azure], [], true))).toBe(
      '3 copies (the source + 2 vaults: nas, azure), 2 media (disk, object-storage), 1 off-site (azure), 1 immutable (azure), 0 errors',
    );
  });
});

/** The baseline with its 'offsite' vault turned into an immutable Azure container. */
function withAzure(immutable: boolean): GateFacts {
  const f = baselineFacts();
  f.vaults = f.vaults.map((v) => (v.name === 'offsite' ? { ...v, kind: 'azure-blob' as const, location: 'https://acct.blob.core.windows.net/c', immutable } : v));
  return f;
}

describe('gate rule copies.three-two-one-one-zero', () => {
  it('is not required while no vault is immutable (the baseline passes as before)', () => {
    const r = evaluateGate(deepFreeze(baselineFacts()));
    const rows = r.results.filter((x) => x.rule === 'copies.three-two-one-one-zero');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'pass' });
    expect(rows[0]!.reason).toContain('not required yet');
  });

  it('once an immutable vault is configured, two filesystem vaults on one medium refuse, per item', () => {
    const f = baselineFacts();
    f.vaults = [...f.vaults, azure]; // configured, but holding no copies
    const r = evaluateGate(deepFreeze(f));
    const rows = r.results.filter((x) => x.rule === 'copies.three-two-one-one-zero');
    expect(rows.length).toBeGreaterThan(1);
    expect(rows.every((x) => x.status === 'fail')).toBe(true);
    expect(rows[0]!.reason).toContain('1 of 2 kinds of media');
    expect(r.passed).toBe(false);
  });

  it('NAS + an immutable Azure container holding the copies: holds for every item', () => {
    const r = evaluateGate(deepFreeze(withAzure(true)));
    const rows = r.results.filter((x) => x.rule === 'copies.three-two-one-one-zero');
    expect(rows.length).toBeGreaterThan(1);
    for (const x of rows) expect(x).toMatchObject({ status: 'pass' });
    expect(rows[0]!.reason).toContain('2 media (disk, object-storage), 1 off-site (offsite), 1 immutable (offsite), 0 errors');
    expect(r.passed).toBe(true);
  });

  it('a damaged copy in the immutable vault is an error that refuses', () => {
    const f = withAzure(true);
    f.copies.push({ ...copies(folderArtifact('ehr/X'), ['offsite'], 0)[0]!, status: 'checksum-mismatch', detail: 'blob c/objects/ab/ab… hashes to 00…' });
    const r = evaluateGate(deepFreeze(f));
    const row = r.results.find((x) => x.rule === 'copies.three-two-one-one-zero' && x.itemId === folderId('ehr/X'));
    expect(row?.status).toBe('fail');
    expect(row?.reason).toMatch(/read-back error/);
    expect(r.passed).toBe(false);
  });
});
