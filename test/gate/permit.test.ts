import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import type { GateResult, Proof } from '../../src/core/types.ts';
import { evaluateGate, reliedOnProofs } from '../../src/gate/evaluate.ts';
import { checkPermit, issuePermit, proofSetHash } from '../../src/gate/permit.ts';
import { A_BASE, baselineFacts, DB_VENDOR, MUTATIONS, NOW } from './builders.ts';
import { assertProperty } from '../support/seed.ts';

const IMAGE = 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest';
const TARGET = 'ehr-sql-01';

function passing() {
  const facts = baselineFacts();
  return { gate: evaluateGate(facts), proofs: facts.proofs };
}

function issue(over: Partial<Parameters<typeof issuePermit>[0]> = {}) {
  const { gate, proofs } = passing();
  return issuePermit({ runId: 'run-1', target: TARGET, image: IMAGE, gate, proofs, now: new Date(NOW), ...over });
}

function refusal(fn: () => unknown): RubiconError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a RubiconError');
}

describe('proofSetHash', () => {
  it('is the SHA-256 of the sorted id:outcome lines', async () => {
    const { createHash } = await import('node:crypto');
    const proofs = [
      { id: 'p2', outcome: 'failed' },
      { id: 'p1', outcome: 'passed' },
    ] as Proof[];
    expect(proofSetHash(proofs)).toBe(createHash('sha256').update('p1:passed\np2:failed').digest('hex'));
  });

  it('ignores order, sees any change of id or outcome', () => {
    assertProperty(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 8 }), fc.nat(), (ids, k) => {
        const proofs = ids.map((id) => ({ id, outcome: 'passed' as const }));
        const h = proofSetHash(proofs);
        expect(proofSetHash([...proofs].reverse())).toBe(h);
        const i = k % proofs.length;
        const flipped = proofs.map((p, j) => (j === i ? { ...p, outcome: 'failed' as const } : p));
        expect(proofSetHash(flipped)).not.toBe(h);
        expect(proofSetHash(proofs.filter((_, j) => j !== i))).not.toBe(h);
      }),
    );
  });
});

describe('issuePermit', () => {
  it('issues a permit bound to the proofs, the image and the target, valid 120 minutes by default', () => {
    const { proofs } = passing();
    const p = issue();
    expect(p).toMatchObject({ runId: 'run-1', target: TARGET, image: IMAGE, issuedAt: NOW, expiresAt: '2025-03-14T14:00:00.000Z' });
    expect(p.proofIds).toEqual(proofs.map((x) => x.id).sort());
    expect(p.proofSetHash).toBe(proofSetHash(proofs));
    expect(p.id).toMatch(/^permit\.run-1\.[0-9a-f]{16}$/);
    expect(issue().id).toBe(p.id); // stable across a resume
    expect(issue({ id: 'permit-x', validForMinutes: 30 })).toMatchObject({ id: 'permit-x', expiresAt: '2025-03-14T12:30:00.000Z' });
  });

  it('never outlives its evidence when the proof age limit is given', () => {
    const { proofs } = passing();
    const oldest = Math.min(...proofs.map((p) => Date.parse(p.finishedAt)));
    const p = issue({ maxProofAgeHours: 4, validForMinutes: 600 });
    expect(Date.parse(p.expiresAt)).toBe(oldest + 4 * 3_600_000);
    expect(refusal(() => issue({ maxProofAgeHours: 1 })).code).toBe('GATE_REFUSED');
  });

  it('refuses with GATE_REFUSED when the gate did not pass', () => {
    const facts = baselineFacts();
    MUTATIONS.find((m) => m.name === 'no rollback point')!.apply(facts);
    const gate = evaluateGate(facts);
    const e = refusal(() => issuePermit({ runId: 'run-1', target: TARGET, image: IMAGE, gate, proofs: facts.proofs, now: new Date(NOW) }));
    expect(e.code).toBe('GATE_REFUSED');
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain('no rollback point');
  });

  it('does not take a forged `passed` flag on its own', () => {
    const { gate } = passing();
    const forged: GateResult = { ...gate, results: [...gate.results, { rule: 'drift.none', status: 'fail', reason: 'ehr/A changed', evidence: [] }] };
    expect(refusal(() => issue({ gate: forged })).code).toBe('GATE_REFUSED');
    const empty: GateResult = { passed: true, evaluatedAt: NOW, results: [], reasons: [] };
    expect(refusal(() => issue({ gate: empty })).code).toBe('GATE_REFUSED');
  });

  it('refuses a nonsense validity', () => {
    expect(refusal(() => issue({ validForMinutes: 0 })).code).toBe('INTERNAL');
    expect(refusal(() => issue({ now: new Date('nope') })).code).toBe('INTERNAL');
  });
});

describe('checkPermit', () => {
  const permit = issue();
  const expectOk = { image: IMAGE, now: new Date('2025-03-14T13:00:00Z'), proofSetHash: permit.proofSetHash, target: TARGET };

  it('accepts a valid permit, with and without the optional checks', () => {
    expect(checkPermit(permit, expectOk)).toEqual({ valid: true });
    expect(checkPermit(permit, { image: IMAGE, now: new Date(NOW) })).toEqual({ valid: true });
  });

  const cases: [string, Parameters<typeof checkPermit>[0], Partial<typeof expectOk>, string][] = [
    ['missing', undefined, {}, 'no permit'],
    ['expired', permit, { now: new Date('2025-03-14T14:00:00Z') }, 'expired at 2025-03-14T14:00:00.000Z'],
    ['not yet valid', permit, { now: new Date('2025-03-14T11:00:00Z') }, 'not valid before'],
    ['image mismatch', permit, { image: 'MicrosoftWindowsServer:WindowsServer:2019-datacenter:latest' }, 'is for image'],
    ['proof set mismatch', permit, { proofSetHash: proofSetHash([{ id: 'other', outcome: 'passed' }]) }, 'different set of proofs'],
    ['target mismatch', permit, { target: 'ehr-sql-02' }, 'is for target ehr-sql-01, not ehr-sql-02'],
    ['unreadable times', { ...permit, expiresAt: 'tomorrow' }, {}, 'unreadable times'],
  ];
  it.each(cases)('refuses: %s', (_name, p, over, text) => {
    const r = checkPermit(p, { ...expectOk, ...over });
    expect(r.valid).toBe(false);
    if (r.valid) return;
    expect(r.reason).toContain(text);
    expect(r.fix).toContain('rubicon upgrade --runbook <file>');
  });
});

describe('reliedOnProofs', () => {
  it('is the latest passed proofs of counted artifacts: not the vendor failure, not superseded ones', () => {
    const facts = baselineFacts();
    const ids = reliedOnProofs(facts).map((p) => p.artifactId);
    expect(ids).toHaveLength(8); // 2 database methods + 5 folders + the everything capture (its final delta)
    expect(ids).not.toContain(DB_VENDOR);
    expect(ids).not.toContain(A_BASE);
    const p = issue({ proofs: reliedOnProofs(facts) });
    expect(p.proofIds).toHaveLength(8);
  });
});
