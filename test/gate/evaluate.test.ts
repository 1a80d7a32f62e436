import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { GateFacts, GateResult, Override } from '../../src/core/types.ts';
import { evaluateGate } from '../../src/gate/evaluate.ts';
import { RULES } from '../../src/gate/policy.ts';
import {
  A_BASE,
  A_DELTA,
  DB,
  DB_DUMP,
  DB_VENDOR,
  MUTATIONS,
  TECHNICIAN_CHANGES,
  ago,
  artifact,
  artifactId,
  baselineFacts,
  copies,
  deepFreeze,
  drift,
  folderArtifact,
  folderId,
  item,
  proof,
} from './builders.ts';
import { assertProperty } from '../support/seed.ts';

function failingRules(r: GateResult): string[] {
  return [...new Set(r.results.filter((x) => x.status === 'fail').map((x) => x.rule))].sort();
}

function mutated(...names: string[]): GateFacts {
  const f = baselineFacts();
  for (const n of names) {
    const m = MUTATIONS.find((x) => x.name === n);
    if (!m) throw new Error(`no mutation ${n}`);
    m.apply(f);
  }
  return f;
}

function results(r: GateResult, rule: string, itemId?: string) {
  return r.results.filter((x) => x.rule === rule && (itemId === undefined || x.itemId === itemId));
}

describe('evaluateGate: the baseline scenario', () => {
  it('passes with exactly one warning: the vendor backup that cannot be restored', () => {
    const r = evaluateGate(deepFreeze(baselineFacts()));
    expect(r.passed).toBe(true);
    expect(r.results.filter((x) => x.status === 'fail')).toEqual([]);
    expect(r.results.filter((x) => x.status === 'overridden')).toEqual([]);
    const warns = r.results.filter((x) => x.status === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ rule: 'database.vendor-artifact', itemId: DB });
    expect(warns[0]?.reason).toContain("the vendor's backup job produces backups that cannot be restored");
    expect(warns[0]?.evidence).toContain(DB_VENDOR);
    expect(r.reasons).toEqual([warns[0]?.reason]);
    expect(r.evaluatedAt).toBe(baselineFacts().now);
  });

  it('reports every rule it applies, each with a reason, only ids from RULES', () => {
    const r = evaluateGate(baselineFacts());
    for (const x of r.results) {
      expect(Object.keys(RULES)).toContain(x.rule);
      expect(x.reason.length).toBeGreaterThan(10);
    }
    const seen = new Set(r.results.map((x) => x.rule));
    for (const rule of [
      'facts.now-valid',
      'inventory.empty',
      'policy.not-looser',
      'item.declared-found',
      'item.captured',
      'database.independent-methods',
      'database.fingerprints-agree',
      'database.vendor-artifact',
      'folder.proven',
      'copies.vaults',
      'copies.immutable',
      'proofs.fresh',
      'drift.none',
      'coverage.everything',
      'coverage.complete',
      'manual-steps.confirmed',
      'rollback.exists',
    ]) {
      expect(seen, rule).toContain(rule);
    }
    // 7 items captured (the everything capture too); 2 counted db artifacts + 5 folders + the volume bear copies.
    expect(results(r, 'item.captured')).toHaveLength(7);
    expect(results(r, 'copies.vaults')).toHaveLength(8);
    expect(results(r, 'drift.none')).toHaveLength(7);
    expect(results(r, 'coverage.complete')).toMatchObject([{ status: 'pass', itemId: 'volume:.' }]);
    expect(results(r, 'coverage.everything')).toMatchObject([{ status: 'pass', itemId: 'volume:.' }]);
  });

  it('counts two independent proven methods for the database and names them as evidence', () => {
    const [res] = results(evaluateGate(baselineFacts()), 'database.independent-methods', DB);
    expect(res?.status).toBe('pass');
    expect(res?.reason).toContain('2 independent proven methods (sqlite-backup-api, sql-text-dump)');
    expect(res?.evidence).toEqual(expect.arrayContaining([DB_DUMP, `proof.${DB_DUMP}`]));
    expect(res?.evidence).not.toContain(DB_VENDOR);
  });

  it('is deterministic and does not mutate its input', () => {
    const f = deepFreeze(mutated('drift present', 'a stale proof'));
    expect(evaluateGate(f)).toEqual(evaluateGate(structuredClone(f)));
  });
});

describe('evaluateGate: each rule fails alone', () => {
  it.each(MUTATIONS.map((m) => [m.name, m] as const))('%s', (_name, m) => {
    const f = baselineFacts();
    m.apply(f);
    const r = evaluateGate(deepFreeze(f));
    expect(r.passed).toBe(false);
    expect(failingRules(r)).toEqual([m.rule]);
    const fails = r.results.filter((x) => x.status === 'fail');
    expect(r.reasons).toEqual(fails.map((x) => x.reason));
    for (const x of fails) expect(x.reason).not.toBe('');
  });
});

/** Every policy field with a looser value than the default (requireImmutableCopy defaults to false: nothing looser). */
function loosenAll(f: GateFacts): void {
  f.policy = { ...f.policy, minIndependentMethods: 1, minVaults: 1, minOffTargetVaults: 0, maxProofAgeHours: 48, requireRollbackPoint: false, requireManualSteps: false };
}

describe('evaluateGate: overrides', () => {
  /** One override per failing result, each naming the result's subject as its item. */
  function overridesFor(r: GateResult, reason: string, by: string): Override[] {
    const seen = new Map<string, Override>();
    for (const x of r.results.filter((y) => y.status === 'fail')) {
      expect(x.subject, `${x.rule}: every fail names the subject an override must name`).toBeDefined();
      seen.set(`${x.rule}\u0000${x.subject}`, { rule: x.rule, itemId: x.subject, reason, by });
    }
    return [...seen.values()];
  }

  it.each(MUTATIONS.map((m) => [m.name, m] as const))('%s: a recorded override with a reason, naming the item, passes, visibly', (_name, m) => {
    const f = baselineFacts();
    m.apply(f);
    f.overrides = overridesFor(evaluateGate(f), 'accepted by the practice owner for this window', 'j.smith');
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    const over = r.results.filter((x) => x.status === 'overridden');
    expect(over.length).toBeGreaterThan(0);
    for (const x of over) {
      expect(x.rule).toBe(m.rule);
      expect(x.override).toEqual({ rule: m.rule, itemId: x.subject, reason: 'accepted by the practice owner for this window', by: 'j.smith' });
      expect(x.reason).toContain('accepted by the practice owner for this window');
      expect(x.reason).toContain('j.smith');
      expect(r.reasons).toContain(x.reason);
    }
  });

  it.each(MUTATIONS.map((m) => [m.name, m] as const))('%s: an override with an empty reason is ignored and refuses', (_name, m) => {
    const f = baselineFacts();
    m.apply(f);
    f.overrides = overridesFor(evaluateGate(f), '   ', 'j.smith');
    const r = evaluateGate(f);
    expect(r.passed).toBe(false);
    expect(failingRules(r)).toEqual([m.rule, 'override.reason-required'].sort());
    expect(r.results.some((x) => x.status === 'overridden')).toBe(false);
  });

  it('an override without who made it is ignored', () => {
    const f = mutated('no rollback point');
    f.overrides = [{ rule: 'rollback.exists', itemId: 'gate', reason: 'snapshot taken by hand', by: '' }];
    const r = evaluateGate(f);
    expect(failingRules(r)).toEqual(['override.reason-required', 'rollback.exists']);
    expect(results(r, 'override.reason-required')[0]?.reason).toContain('who made it');
  });

  it('an override for one item does not cover another item', () => {
    const f = mutated('drift scan missing', 'drift present'); // ehr/X and ehr/A
    f.overrides = [{ rule: 'drift.none', itemId: folderId('ehr/X'), reason: 'scanner cannot read X; checked by hand', by: 'ops' }];
    const r = evaluateGate(f);
    expect(r.passed).toBe(false);
    expect(results(r, 'drift.none', folderId('ehr/X'))[0]?.status).toBe('overridden');
    expect(results(r, 'drift.none', folderId('ehr/A'))[0]?.status).toBe('fail');
  });

  // An override names one rule and one item (or policy field, or "gate"): without an item it covers nothing,
  // so it can never loosen several things at once, and it refuses, saying what is missing.
  it.each([
    { name: 'six policy fields loosened', apply: loosenAll, rule: 'policy.not-looser', stillFailing: 6 },
    { name: 'drift on two folders', apply: (f: GateFacts) => MUTATIONS.filter((m) => m.name === 'drift scan missing' || m.name === 'drift present').forEach((m) => m.apply(f)), rule: 'drift.none', stillFailing: 2 },
    { name: 'no rollback point (a rule about the whole gate)', apply: (f: GateFacts) => void delete f.rollbackPoint, rule: 'rollback.exists', stillFailing: 1 },
  ])('an override without an item covers nothing and refuses: $name', ({ apply, rule, stillFailing }) => {
    const f = baselineFacts();
    apply(f);
    for (const itemId of [undefined, '', '  ']) {
      f.overrides = [{ rule, ...(itemId === undefined ? {} : { itemId }), reason: 'accepted for this window by the owner', by: 'ops' }];
      const r = evaluateGate(f);
      expect(r.passed).toBe(false);
      expect(r.results.filter((x) => x.status === 'overridden')).toEqual([]);
      expect(results(r, rule).filter((x) => x.status === 'fail')).toHaveLength(stillFailing);
      const [refused] = results(r, 'override.reason-required');
      expect(refused?.status).toBe('fail');
      expect(refused?.reason).toMatch(/which one item it covers/);
    }
  });

  it('an override names exactly one item: each loosened policy field needs its own', () => {
    const f = baselineFacts();
    loosenAll(f);
    const fields = results(evaluateGate(f), 'policy.not-looser').map((x) => x.subject!);
    expect(fields).toEqual(['minIndependentMethods', 'minVaults', 'minOffTargetVaults', 'maxProofAgeHours', 'requireRollbackPoint', 'requireManualSteps']);
    f.overrides = fields.slice(1).map((itemId) => ({ rule: 'policy.not-looser', itemId, reason: 'accepted for this window', by: 'ops' }));
    const r = evaluateGate(f);
    expect(results(r, 'policy.not-looser').filter((x) => x.status === 'fail').map((x) => x.subject)).toEqual(['minIndependentMethods']);
    f.overrides.push({ rule: 'policy.not-looser', itemId: 'minIndependentMethods', reason: 'accepted for this window', by: 'ops' });
    expect(results(evaluateGate(f), 'policy.not-looser').every((x) => x.status === 'overridden')).toBe(true);
  });

  it('a rule about the whole gate is overridden with item "gate"', () => {
    const f = mutated('no rollback point');
    f.overrides = [{ rule: 'rollback.exists', itemId: 'gate', reason: 'the hypervisor snapshot is taken by hand', by: 'ops' }];
    expect(results(evaluateGate(f), 'rollback.exists')[0]).toMatchObject({ status: 'overridden', subject: 'gate' });
    f.overrides = [{ rule: 'rollback.exists', itemId: folderId('ehr/A'), reason: 'the hypervisor snapshot is taken by hand', by: 'ops' }];
    expect(evaluateGate(f).passed).toBe(false);
  });

  it('a manual step override matches the step id', () => {
    const f = mutated('a manual step not confirmed');
    f.overrides = [{ rule: 'manual-steps.confirmed', itemId: 'vendor-backup-job', reason: 'vendor confirmed by e-mail', by: 'ops' }];
    expect(evaluateGate(f).passed).toBe(true);
    f.overrides = [{ rule: 'manual-steps.confirmed', itemId: 'other-step', reason: 'x', by: 'ops' }];
    expect(evaluateGate(f).passed).toBe(false);
  });

  it('a policy loosening override matches the field name', () => {
    const f = mutated('the policy loosened (minVaults 1)');
    f.overrides = [{ rule: 'policy.not-looser', itemId: 'maxProofAgeHours', reason: 'x', by: 'ops' }];
    expect(evaluateGate(f).passed).toBe(false);
    f.overrides = [{ rule: 'policy.not-looser', itemId: 'minVaults', reason: 'single NAS at this site', by: 'ops' }];
    expect(evaluateGate(f).passed).toBe(true);
  });

  it('an override naming an unknown rule is reported and covers nothing', () => {
    const f = mutated('a database proof failed');
    f.overrides = [{ rule: 'database.independant-methods', itemId: DB, reason: 'typo', by: 'ops' }];
    const r = evaluateGate(f);
    expect(r.passed).toBe(false);
    const [unused] = results(r, 'override.unused');
    expect(unused?.status).toBe('warn');
    expect(unused?.reason).toContain('does not exist');
  });

  it('an unused override on a passing gate is a warning, not a refusal', () => {
    const f = baselineFacts();
    f.overrides = [{ rule: 'rollback.exists', itemId: 'gate', reason: 'just in case', by: 'ops' }];
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    expect(r.reasons.some((x) => x.includes('matched no failing rule'))).toBe(true);
  });
});

describe('evaluateGate: details and edge cases', () => {
  it('refuses when the clock is invalid or has no zone', () => {
    for (const now of ['', 'yesterday', '2025-03-14T12:00:00', '2025-02-30T12:00:00Z']) {
      const f = baselineFacts();
      f.now = now;
      const r = evaluateGate(f);
      expect(r.passed, now).toBe(false);
      expect(failingRules(r), now).toContain('facts.now-valid');
    }
  });

  it('refuses proofs, scans, confirmations and rollback points dated in the future', () => {
    const f = baselineFacts();
    f.proofs = f.proofs.map((p) => (p.artifactId === folderArtifact('ehr/Y') ? { ...p, finishedAt: ago(-1) } : p));
    f.drift = f.drift.map((d) => (d.itemId === folderId('ehr/X') ? { ...d, scannedAt: ago(-1) } : d));
    f.manualSteps = f.manualSteps.map((s) => ({ ...s, confirmedAt: ago(-1) }));
    f.rollbackPoint = { ...f.rollbackPoint!, createdAt: ago(-1) };
    const r = evaluateGate(f);
    expect(failingRules(r)).toEqual(['drift.none', 'manual-steps.confirmed', 'proofs.fresh', 'rollback.exists']);
  });

  // confirmedAt against the gate's time and policy.maxConfirmationAgeHours (default 72 h).
  it.each([
    { confirmedAt: ago(6), maxAge: 72, passes: true, why: /confirmed by/ },
    { confirmedAt: ago(71.9), maxAge: 72, passes: true, why: /confirmed by/ },
    { confirmedAt: ago(72.1), maxAge: 72, passes: false, why: /more than 72 h \(policy\.maxConfirmationAgeHours\)/ },
    { confirmedAt: ago(7), maxAge: 6, passes: false, why: /more than 6 h/ },
    { confirmedAt: '1970-01-01T00:00:00Z', maxAge: 72, passes: false, why: /more than 72 h/ },
    { confirmedAt: ago(-0.01), maxAge: 72, passes: false, why: /not confirmed with who and a valid time/ },
    { confirmedAt: '2025-02-30T09:00:00Z', maxAge: 72, passes: false, why: /not confirmed with who and a valid time/ },
    { confirmedAt: 'Dec 1 2026', maxAge: 72, passes: false, why: /not confirmed with who and a valid time/ },
    { confirmedAt: '1', maxAge: 72, passes: false, why: /not confirmed with who and a valid time/ },
    { confirmedAt: ago(1), maxAge: Number.NaN, passes: false, why: /not a number of hours/ },
  ])('a manual step confirmed at $confirmedAt with maxConfirmationAgeHours $maxAge: passes=$passes', ({ confirmedAt, maxAge, passes, why }) => {
    const f = baselineFacts();
    f.policy.maxConfirmationAgeHours = maxAge;
    f.manualSteps = f.manualSteps.map((m) => ({ ...m, confirmedAt }));
    const [res] = results(evaluateGate(f), 'manual-steps.confirmed');
    expect(res?.status).toBe(passes ? 'pass' : 'fail');
    expect(res?.reason).toMatch(why);
  });

  it('names the drifted files, at most 10, and the count', () => {
    const f = baselineFacts();
    const changes = Array.from({ length: 13 }, (_, i) => ({ path: `docs/scan-${i}.pdf`, kind: 'added' as const }));
    f.drift = f.drift.map((d) => (d.itemId === folderId('ehr/A') ? { ...d, changes } : d));
    const [res] = results(evaluateGate(f), 'drift.none', folderId('ehr/A'));
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain('13 changes');
    expect(res?.reason).toContain('added docs/scan-9.pdf');
    expect(res?.reason).not.toContain('docs/scan-10.pdf');
    expect(res?.reason).toContain('and 3 more');
  });

  it('says "drift unknown" when an item was never scanned', () => {
    const [res] = results(evaluateGate(mutated('drift scan missing')), 'drift.none', folderId('ehr/X'));
    expect(res?.reason).toContain('drift unknown');
  });

  it('names the artifacts whose fingerprints disagree', () => {
    const [res] = results(evaluateGate(mutated('fingerprint mismatch')), 'database.fingerprints-agree', DB);
    expect(res?.reason).toContain('fingerprints disagree');
    expect(res?.reason).toContain(`${DB_DUMP} restored`);
    expect(res?.reason).toContain('bbbbbbbbbbbb');
  });

  it('refuses a proven database artifact without a source fingerprint', () => {
    const f = baselineFacts();
    f.artifacts = f.artifacts.map((a) => (a.id === DB_DUMP ? { ...a, sourceFingerprint: undefined } : a));
    const r = evaluateGate(f);
    expect(failingRules(r)).toEqual(['database.fingerprints-agree']);
  });

  it('a damaged copy still leaving enough vaults is a warning naming artifact and vault', () => {
    const f = baselineFacts();
    // Not immutable: an immutable vault would bring in copies.three-two-one-one-zero for every item (test/gate/rule-32110.test.ts).
    f.vaults.push({ name: 'blob', kind: 'azure-blob', location: 'https://acct.blob.core.windows.net/c', offTarget: true, immutable: false });
    const x = folderArtifact('ehr/X');
    f.copies.push(...copies(x, ['blob']));
    f.copies = f.copies.map((c) => (c.artifactId === x && c.vault === 'nas' ? { ...c, status: 'checksum-mismatch' as const } : c));
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    const [res] = results(r, 'copies.vaults', folderId('ehr/X'));
    expect(res?.status).toBe('warn');
    expect(res?.reason).toContain(`the copy of ${x} in vault nas is checksum-mismatch`);
    expect(res?.evidence).not.toContain(`${x}@nas`);
  });

  it('names the damaged copy in the refusal when the rule no longer holds', () => {
    const [res] = results(evaluateGate(mutated('one copy damaged, leaving 1 vault')), 'copies.vaults', folderId('ehr/X'));
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain(`the copy of ${folderArtifact('ehr/X')} in vault nas is checksum-mismatch`);
    expect(res?.reason).toContain('requires 2');
  });

  // A folder captured by two methods (restic into one vault, rsync into another) is held by both together.
  function twoMethodFolder(vaultsOf: { restic: string[]; rsync: string[] }) {
    const f = baselineFacts();
    const x = folderId('ehr/X');
    const old = folderArtifact('ehr/X');
    f.artifacts = f.artifacts.filter((a) => a.id !== old);
    f.copies = f.copies.filter((c) => c.artifactId !== old);
    f.proofs = f.proofs.filter((p) => p.artifactId !== old);
    f.items = f.items.map((i) => (i.id === x ? { ...i, methods: ['restic', 'rsync'] } : i));
    for (const m of ['restic', 'rsync'] as const) {
      const a = artifact({ id: artifactId('capture', x, m), itemId: x, method: m, vaults: vaultsOf[m] }, 5);
      f.artifacts.push(a);
      f.copies.push(...copies(a.id, vaultsOf[m]));
      f.proofs.push(proof(a, 4));
    }
    f.drift = f.drift.map((d) => (d.itemId === x ? { ...d, artifactId: artifactId('capture', x, 'rsync') } : d));
    return f;
  }

  it('two methods of one folder in two different vaults together hold the copies the policy asks for', () => {
    const r = evaluateGate(twoMethodFolder({ restic: ['offsite'], rsync: ['nas'] }));
    const res = results(r, 'copies.vaults', folderId('ehr/X'));
    expect(res).toHaveLength(1);
    expect(res[0]?.status).toBe('pass');
    expect(res[0]?.reason).toContain('from restic and rsync in 2 vaults');
    expect(r.passed).toBe(true);
  });

  it('two methods of one folder in the same single vault do not make two vaults', () => {
    const r = evaluateGate(twoMethodFolder({ restic: ['nas'], rsync: ['nas'] }));
    const [res] = results(r, 'copies.vaults', folderId('ehr/X'));
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain('in 1 vault');
    expect(r.passed).toBe(false);
  });

  it('a copy in a vault the runbook does not declare does not count', () => {
    const f = baselineFacts();
    f.copies = f.copies.map((c) => (c.artifactId === folderArtifact('ehr/Y') && c.vault === 'offsite' ? { ...c, vault: 'usb-stick' } : c));
    const [res] = results(evaluateGate(f), 'copies.vaults', folderId('ehr/Y'));
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain('usb-stick, which the runbook does not declare');
  });

  it('the newest copy check per vault wins (a later damage check overrides an earlier ok)', () => {
    const f = baselineFacts();
    f.copies.push({ artifactId: folderArtifact('ehr/Y'), vault: 'nas', status: 'missing', checkedAt: ago(0.1) });
    expect(failingRules(evaluateGate(f))).toEqual(['copies.vaults']);
  });

  it('a delta whose base is not recorded has no usable copies', () => {
    const f = baselineFacts();
    f.artifacts = f.artifacts.map((a) => (a.id === A_DELTA ? { ...a, baseArtifactId: 'run-1.capture.folder:ehr/A.nothing' } : a));
    const [res] = results(evaluateGate(f), 'copies.vaults', folderId('ehr/A'));
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain('not recorded');
  });

  it('a third method with a failed proof of our own is a warning, not a refusal', () => {
    const f = baselineFacts();
    const extra = artifact({ id: artifactId('capture', DB, 'vacuum-into'), itemId: DB, method: 'vacuum-into', sourceFingerprint: f.artifacts[1]!.sourceFingerprint }, 4.6);
    f.artifacts.push(extra);
    f.copies.push(...copies(extra.id));
    f.proofs.push(proof(extra, 3, 'failed'));
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    const [res] = results(r, 'database.independent-methods', DB);
    expect(res?.status).toBe('warn');
    expect(res?.reason).toContain('vacuum-into');
  });

  it('two artifacts of the same independence group count once', () => {
    const f = baselineFacts();
    f.artifacts = f.artifacts.map((a) => (a.id === DB_DUMP ? { ...a, independenceGroup: 'sqlite-backup-api' } : a));
    const [res] = results(evaluateGate(f), 'database.independent-methods', DB);
    expect(res?.status).toBe('fail');
    expect(res?.reason).toContain('1 independent proven method');
  });

  it('a proven vendor artifact counts like any other', () => {
    const f = mutated('a database proof failed');
    f.proofs = f.proofs.map((p) => (p.artifactId === DB_VENDOR ? proof(f.artifacts[0]!, 3.5, 'passed', f.artifacts[0]!.sourceFingerprint) : p));
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    expect(results(r, 'database.vendor-artifact')[0]?.status).toBe('pass');
  });

  it('an unproven vendor artifact is a warning', () => {
    const f = baselineFacts();
    f.proofs = f.proofs.filter((p) => p.artifactId !== DB_VENDOR);
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    expect(results(r, 'database.vendor-artifact')[0]?.reason).toContain('never proven');
  });

  it('a re-capture supersedes the older artifact of the same method', () => {
    const f = baselineFacts();
    // ehr/A's base proof fails later: irrelevant, the delta is current.
    f.proofs = f.proofs.map((p) => (p.artifactId === A_BASE ? { ...p, outcome: 'failed' as const } : p));
    expect(evaluateGate(f).passed).toBe(true);
    // but without the delta, ehr/A's current artifact is the base, whose proof failed
    f.artifacts = f.artifacts.filter((a) => a.id !== A_DELTA);
    f.drift = f.drift.map((d) => (d.artifactId === A_DELTA ? { ...d, artifactId: A_BASE } : d));
    expect(failingRules(evaluateGate(f))).toEqual(['folder.proven']);
  });

  it('a proven secret passes; a service needs a capture, a proof and a drift scan like every other item', () => {
    const f = baselineFacts();
    const sid = 'secret:vault-key';
    const s = artifact({ id: artifactId('capture', sid, 'secret-export'), itemId: sid, method: 'secret-export' }, 4);
    const vid = 'service:EhrInterface';
    const v = artifact({ id: artifactId('capture', vid, 'service-config'), itemId: vid, method: 'service-config' }, 4);
    f.items.push(item({ id: sid, kind: 'secret', name: 'vault key' }), item({ id: vid, kind: 'service', name: 'EhrInterface' }));
    f.artifacts.push(s, v);
    f.copies.push(...copies(s.id), ...copies(v.id));
    f.proofs.push(proof(s, 3));
    f.drift.push(drift(sid, s.id), drift(vid, v.id));
    // The service's capture was never proven: "prove every capture restorable".
    expect(failingRules(evaluateGate(f))).toEqual(['item.proven']);
    f.proofs.push(proof(v, 3));
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    expect(results(r, 'secrets.captured', sid)[0]?.status).toBe('pass');
    expect(results(r, 'item.proven', vid)[0]?.status).toBe('pass');
    f.drift = f.drift.filter((d) => d.itemId !== vid);
    expect(failingRules(evaluateGate(f))).toEqual(['drift.none']);
  });

  it("a vault's own password counts the vault it opens once another vault holds it intact, never that vault alone", () => {
    const f = baselineFacts();
    const sid = 'secret:restic-password:offsite';
    const s = artifact({ id: artifactId('capture', sid, 'vault-password'), itemId: sid, method: 'vault-password' }, 4);
    f.items.push(item({ id: sid, kind: 'secret', name: 'password of restic vault offsite', facts: { vault: 'offsite' } }));
    f.artifacts.push(s);
    f.proofs.push(proof(s, 3));
    f.drift.push(drift(sid, s.id));
    // Held in nas only (it is never put into the repository it opens): nas and offsite, the two the policy requires.
    f.copies.push(...copies(s.id, ['nas']));
    let r = evaluateGate(f);
    expect(r.passed).toBe(true);
    const [res] = results(r, 'copies.vaults', sid);
    expect(res?.status).toBe('pass');
    expect(res?.reason).toMatch(/nas, offsite, the vault it opens/);
    // The copy in nas damaged: no vault holds it intact, and offsite alone does not count.
    f.copies = f.copies.map((c) => (c.artifactId === s.id ? { ...c, status: 'checksum-mismatch' as const } : c));
    r = evaluateGate(f);
    expect(results(r, 'copies.vaults', sid)[0]?.status).toBe('fail');
    // The same single copy for a secret that opens no vault does not reach two vaults.
    const f2 = baselineFacts();
    f2.items.push(item({ id: sid, kind: 'secret', name: 'an application key' }));
    f2.artifacts.push(s);
    f2.proofs.push(proof(s, 3));
    f2.drift.push(drift(sid, s.id));
    f2.copies.push(...copies(s.id, ['nas']));
    expect(results(evaluateGate(f2), 'copies.vaults', sid)[0]?.status).toBe('fail');
  });

  it('a policy value that is not a number is treated as looser and refuses', () => {
    const f = baselineFacts();
    (f.policy as unknown as Record<string, unknown>)['maxProofAgeHours'] = Number.NaN;
    const r = evaluateGate(f);
    expect(failingRules(r)).toContain('policy.not-looser');
    expect(failingRules(r)).toContain('proofs.fresh');
  });

  it('a missing policy refuses rather than passing', () => {
    const f = baselineFacts() as unknown as Record<string, unknown>;
    delete f['policy'];
    const r = evaluateGate(f as unknown as GateFacts);
    expect(r.passed).toBe(false);
    expect(failingRules(r)).toEqual(expect.arrayContaining(['policy.not-looser', 'database.independent-methods', 'copies.vaults', 'proofs.fresh']));
  });

  it('a stricter policy is not a loosening', () => {
    const f = baselineFacts();
    f.policy = { ...f.policy, minIndependentMethods: 2, maxProofAgeHours: 12, minOffTargetVaults: 2 };
    expect(evaluateGate(f).passed).toBe(true);
    f.policy.minIndependentMethods = 3;
    expect(failingRules(evaluateGate(f))).toEqual(['database.independent-methods']);
  });

  it('the drift scan of the technician changes lists them', () => {
    const [res] = results(evaluateGate(mutated('drift present')), 'drift.none', folderId('ehr/A'));
    for (const c of TECHNICIAN_CHANGES) expect(res?.reason).toContain(`${c.kind} ${c.path}`);
    expect(res?.reason).toContain('3 changes');
  });

  it('a gate with no results is impossible: zero items still yields a refusal with a reason', () => {
    const r = evaluateGate(mutated('empty inventory'));
    expect(r.reasons).toContain('nothing was discovered; refusing to cross blind');
  });
});

describe('evaluateGate: properties', () => {
  const subsets = fc.shuffledSubarray(MUTATIONS);

  it('passes iff no mutation was applied', () => {
    assertProperty(
      fc.property(subsets, (ms) => {
        const f = baselineFacts();
        for (const m of ms) m.apply(f);
        const r = evaluateGate(f);
        expect(r.passed).toBe(ms.length === 0);
        expect(r.results.some((x) => x.status === 'fail')).toBe(ms.length > 0);
      }),
      { numRuns: 300 },
    );
  });

  it('overriding every failing rule passes, and every fail turns into a recorded override', () => {
    assertProperty(
      fc.property(subsets, (ms) => {
        const f = baselineFacts();
        for (const m of ms) m.apply(f);
        const before = evaluateGate(f);
        const failing = new Map(before.results.filter((x) => x.status === 'fail').map((x) => [`${x.rule} ${x.subject}`, x] as const));
        f.overrides = [...failing.values()].map((x) => ({ rule: x.rule, itemId: x.subject, reason: `accepted: ${x.rule}`, by: 'owner' }));
        const after = evaluateGate(f);
        expect(after.passed).toBe(true);
        const overridden = after.results.filter((x) => x.status === 'overridden');
        expect(overridden.length).toBe(before.results.filter((x) => x.status === 'fail').length);
        for (const x of overridden) expect(x.reason).toContain(`accepted: ${x.rule}`);
      }),
      { numRuns: 150 },
    );
  });
});

describe('evaluateGate: landing.preflight (the server the target lands on)', () => {
  const pf = (f: GateFacts, o: Partial<NonNullable<GateFacts['preflight']>[number]> = {}) => ({
    engine: 'mssql',
    stage: 'pre-gate' as const,
    checks: [{ name: 'landing-server', status: 'passed' as const, detail: 'landing 16.0.4135 >= source 15.0.4355', durationMs: 0 }],
    checkedAt: ago(0.1),
    ...o,
  });

  it('no engine with a preflight: no result, the baseline passes as before', () => {
    const r = evaluateGate(baselineFacts());
    expect(results(r, 'landing.preflight')).toEqual([]);
    expect(r.passed).toBe(true);
  });

  it('a passed pre-gate check passes, naming the engine as its subject', () => {
    const f = baselineFacts();
    f.preflight = [pf(f)];
    const r = evaluateGate(deepFreeze(f));
    expect(r.passed).toBe(true);
    expect(results(r, 'landing.preflight')).toMatchObject([{ status: 'pass' }]);
    expect(results(r, 'landing.preflight')[0]?.reason).toContain('landing 16.0.4135 >= source 15.0.4355');
  });

  it.each([
    ['a failed check', (f: GateFacts) => pf(f, { checks: [{ name: 'landing-server', status: 'failed', detail: 'the landing server runs SQL Server 2016, older than the source', durationMs: 0 }] }), 'older than the source'],
    ['a skipped check (fail closed)', (f: GateFacts) => pf(f, { checks: [{ name: 'landing-server', status: 'skipped', detail: 'not checked', durationMs: 0 }] }), 'not checked'],
    ['a newest check taken before capture, not right before the gate', (f: GateFacts) => pf(f, { stage: 'capture' }), 'not checked right before the gate'],
    ['a check with no valid time', (f: GateFacts) => pf(f, { checkedAt: 'yesterday' }), 'no valid time'],
    ['a check dated after the gate', (f: GateFacts) => pf(f, { checkedAt: ago(-1) }), 'dated after'],
  ])('%s refuses, alone, with subject engine:mssql', (_name, make, words) => {
    const f = baselineFacts();
    f.preflight = [make(f)];
    const r = evaluateGate(deepFreeze(f));
    expect(r.passed).toBe(false);
    expect(failingRules(r)).toEqual(['landing.preflight']);
    expect(results(r, 'landing.preflight')).toMatchObject([{ status: 'fail', subject: 'engine:mssql' }]);
    expect(r.reasons.join(' ')).toContain(words);
  });

  it('an override names the engine, with who and why, and turns only that fail', () => {
    const f = baselineFacts();
    f.preflight = [pf(f, { checks: [{ name: 'landing-server', status: 'failed', detail: 'collation differs', durationMs: 0 }] }), pf(f, { engine: 'other', checks: [{ name: 'x', status: 'failed', detail: 'no', durationMs: 0 }] })];
    f.overrides = [{ rule: 'landing.preflight', itemId: 'engine:mssql', reason: 'the vendor accepts the new collation in writing', by: 'dba' }];
    const r = evaluateGate(deepFreeze(f));
    expect(results(r, 'landing.preflight').map((x) => `${x.subject}:${x.status}`)).toEqual(['engine:mssql:overridden', 'engine:other:fail']);
    expect(r.passed).toBe(false);
  });
});
