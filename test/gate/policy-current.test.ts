import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Policy, Proof } from '../../src/core/types.ts';
import { currentArtifacts, isMissing, latestProof, okVaults, parseIsoTime, proofPassed } from '../../src/gate/current.ts';
import { DEFAULT_POLICY, loosenings, RULES } from '../../src/gate/policy.ts';
import { artifact, checks, item, proof } from './builders.ts';
import { assertProperty } from '../support/seed.ts';

describe('DEFAULT_POLICY and RULES', () => {
  it('holds the documented defaults and cannot be changed by accident', () => {
    expect(DEFAULT_POLICY).toEqual({
      minIndependentMethods: 2,
      minVaults: 2,
      minOffTargetVaults: 1,
      maxProofAgeHours: 24,
      requireRollbackPoint: true,
      requireManualSteps: true,
      requireImmutableCopy: false,
      maxConfirmationAgeHours: 72,
    });
    expect(() => {
      (DEFAULT_POLICY as { minVaults: number }).minVaults = 1;
    }).toThrow(TypeError);
  });

  it('has a one-line description for every stable rule id', () => {
    for (const [id, text] of Object.entries(RULES)) {
      expect(id).toMatch(/^[a-z-]+\.[a-z-]+$/);
      expect(text).not.toContain('\n');
      expect(text.length).toBeGreaterThan(20);
    }
  });
});

describe('loosenings', () => {
  it('is empty for the default policy and for stricter ones', () => {
    expect(loosenings({ ...DEFAULT_POLICY })).toEqual([]);
    expect(
      loosenings({ ...DEFAULT_POLICY, minIndependentMethods: 3, minVaults: 3, minOffTargetVaults: 2, maxProofAgeHours: 6, requireImmutableCopy: true }),
    ).toEqual([]);
  });

  it('names each looser field with its default and value', () => {
    const p: Policy = {
      minIndependentMethods: 1,
      minVaults: 1,
      minOffTargetVaults: 0,
      maxProofAgeHours: 48,
      requireRollbackPoint: false,
      requireManualSteps: false,
      requireImmutableCopy: false,
      maxConfirmationAgeHours: 24 * 30,
    };
    expect(loosenings(p)).toEqual([
      { field: 'minIndependentMethods', default: 2, value: 1 },
      { field: 'minVaults', default: 2, value: 1 },
      { field: 'minOffTargetVaults', default: 1, value: 0 },
      { field: 'maxProofAgeHours', default: 24, value: 48 },
      { field: 'requireRollbackPoint', default: true, value: false },
      { field: 'requireManualSteps', default: true, value: false },
      { field: 'maxConfirmationAgeHours', default: 72, value: 720 },
    ]);
  });

  it('treats values that are not finite numbers or not true as looser', () => {
    const bad = { ...DEFAULT_POLICY, minVaults: Number.NaN, maxProofAgeHours: Infinity, requireRollbackPoint: 'yes' } as unknown as Policy;
    expect(loosenings(bad).map((l) => l.field)).toEqual(['minVaults', 'maxProofAgeHours', 'requireRollbackPoint']);
    const missing = { ...DEFAULT_POLICY } as Partial<Policy>;
    delete missing.minIndependentMethods;
    expect(loosenings(missing as Policy).map((l) => l.field)).toEqual(['minIndependentMethods']);
  });

  it('property: a field is reported iff it is looser than the default', () => {
    assertProperty(
      fc.property(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 1, max: 72 }), fc.boolean(), (minVaults, maxAge, rollback) => {
        const fields = loosenings({ ...DEFAULT_POLICY, minVaults, maxProofAgeHours: maxAge, requireRollbackPoint: rollback }).map((l) => l.field);
        expect(fields.includes('minVaults')).toBe(minVaults < 2);
        expect(fields.includes('maxProofAgeHours')).toBe(maxAge > 24);
        expect(fields.includes('requireRollbackPoint')).toBe(!rollback);
      }),
    );
  });
});

describe('current facts', () => {
  it('currentArtifacts keeps the newest per (item, method) in journal order', () => {
    const a1 = artifact({ id: 'a1', itemId: 'folder:A', method: 'file-mirror' }, 4);
    const b1 = artifact({ id: 'b1', itemId: 'folder:B', method: 'file-mirror' }, 4);
    const a2 = artifact({ id: 'a2', itemId: 'folder:A', method: 'restic' }, 4);
    const a3 = artifact({ id: 'a3', itemId: 'folder:A', method: 'file-mirror', phase: 'final-capture' }, 1);
    expect(currentArtifacts([a1, b1, a2, a3]).map((a) => a.id)).toEqual(['b1', 'a2', 'a3']);
    expect(currentArtifacts([])).toEqual([]);
  });

  it('latestProof is the last recorded proof of that artifact', () => {
    const a = artifact({ id: 'a', itemId: 'folder:A', method: 'm' }, 4);
    const p1 = { ...proof(a, 3, 'passed'), id: 'p1' };
    const p2 = { ...proof(a, 2, 'failed'), id: 'p2' };
    const other = { ...proof(artifact({ id: 'b', itemId: 'folder:B', method: 'm' }, 4), 1), id: 'p3' };
    expect(latestProof([p1, p2, other], 'a')?.id).toBe('p2');
    expect(latestProof([p1, other], 'a')?.id).toBe('p1');
    expect(latestProof([other], 'a')).toBeUndefined();
  });

  it('okVaults counts only the newest ok check per vault', () => {
    const c = (vault: string, status: 'ok' | 'checksum-mismatch' | 'missing', artifactId = 'a') => ({ artifactId, vault, status, checkedAt: '2025-01-01T00:00:00Z' });
    expect(okVaults([c('nas', 'ok'), c('blob', 'ok'), c('nas', 'checksum-mismatch'), c('usb', 'ok', 'b')], 'a')).toEqual(['blob']);
    expect(okVaults([c('nas', 'missing'), c('nas', 'ok')], 'a')).toEqual(['nas']);
    expect(okVaults([], 'a')).toEqual([]);
  });

  it('proofPassed believes the checks, not the outcome flag alone', () => {
    const a = artifact({ id: 'a', itemId: 'folder:A', method: 'm' }, 4);
    const ok = proof(a, 1, 'passed');
    expect(proofPassed(ok)).toBe(true);
    expect(proofPassed(undefined)).toBe(false);
    expect(proofPassed({ ...ok, outcome: 'failed' })).toBe(false);
    expect(proofPassed({ ...ok, checks: [] })).toBe(false);
    const skipped: Proof = { ...ok, checks: checks().map((x, i) => (i === 1 ? { ...x, status: 'skipped' } : x)) };
    expect(proofPassed(skipped)).toBe(false);
  });

  it('isMissing needs declared, not discovered, and facts.missing', () => {
    const base = item({ id: 'folder:B', kind: 'folder', name: 'B', declared: true, discovered: false, facts: { missing: true } });
    expect(isMissing(base)).toBe(true);
    expect(isMissing({ ...base, discovered: true })).toBe(false);
    expect(isMissing({ ...base, declared: false })).toBe(false);
    expect(isMissing({ ...base, facts: {} })).toBe(false);
  });

  it('parseIsoTime accepts ISO-8601 with a zone only, and real calendar dates only', () => {
    expect(parseIsoTime('2025-03-14T12:00:00.000Z')).toBe(Date.UTC(2025, 2, 14, 12));
    expect(parseIsoTime('2025-03-14T13:00:00+01:00')).toBe(Date.UTC(2025, 2, 14, 12));
    expect(parseIsoTime('2025-03-14T12:00Z')).toBe(Date.UTC(2025, 2, 14, 12));
    expect(parseIsoTime('2024-02-29T00:00:00Z')).toBe(Date.UTC(2024, 1, 29));
    for (const bad of ['2025-03-14T12:00:00', '2025-03-14', 'Fri, 14 Mar 2025 12:00:00 GMT', '2025-02-29T00:00:00Z', '2025-13-01T00:00:00Z', '2025-03-14T24:00:00Z', '', null, 1_700_000_000_000, undefined]) {
      expect(parseIsoTime(bad), String(bad)).toBeNaN();
    }
  });

  it('parseIsoTime round-trips every valid instant', () => {
    assertProperty(
      fc.property(fc.date({ min: new Date('1990-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }), (d) => {
        expect(parseIsoTime(d.toISOString())).toBe(d.getTime());
      }),
    );
  });
});
