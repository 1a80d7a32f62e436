import type { Policy } from '../core/types.ts';

/**
 * The default policy (docs/gate.md) and the table of gate rules.
 *
 * Contract: pure data and pure functions. A runbook may only make the policy
 * stricter; anything looser (see `loosenings`) needs an override with a
 * reason, and the gate itself refuses a looser policy under rule
 * `policy.not-looser` unless such an override is recorded.
 */
export const DEFAULT_POLICY: Policy = Object.freeze({
  minIndependentMethods: 2,
  minVaults: 2,
  minOffTargetVaults: 1,
  maxProofAgeHours: 24,
  requireRollbackPoint: true,
  requireManualSteps: true,
  requireImmutableCopy: false,
  // A confirmation ("the vendor stopped the application") is about this
  // maintenance window, not last month's: three days covers a Friday
  // confirmation for a Monday upgrade.
  maxConfirmationAgeHours: 72,
});

/**
 * Stable rule ids with a one-line description each. Ids never change meaning
 * and are never renamed: overrides, reports and pipelines match on them.
 * The order is the order in which the gate reports its results.
 */
export const RULES = {
  'facts.now-valid': 'The gate was given a valid ISO-8601 time with a zone; every age check depends on it.',
  'inventory.empty': 'Discovery found at least one item; the gate refuses to cross blind.',
  'policy.not-looser': 'The policy is the default or stricter; a looser field needs an override with a reason.',
  'item.declared-found': 'Every item declared in the runbook was found on the target.',
  'item.captured': 'Every item found on the target (declared or not) has at least one current artifact.',
  'database.independent-methods':
    'Every database has artifacts from at least minIndependentMethods independent methods, each proven by a restore and holding a verified copy.',
  'database.fingerprints-agree':
    'The fingerprints of every proven database artifact agree with each other and with the source at capture time.',
  'database.vendor-artifact': "A vendor's database backup that cannot be restored is reported (a warning while other methods cover it).",
  'folder.proven': "Every folder's current artifacts were restored on the proving ground and passed their checks.",
  'item.proven': 'Every other captured item (instance-level objects: logins, jobs, ...) has its current artifacts proven on the proving ground.',
  'secrets.captured': 'Every secret and certificate has a passed proof: a restore from the vault alone needs the keys.',
  'copies.vaults':
    'Every counted artifact has verified copies in at least minVaults vaults, at least minOffTargetVaults of them off the target.',
  'copies.immutable': 'When the policy requires it, every counted artifact has a verified copy in an immutable vault.',
  'copies.three-two-one-one-zero':
    'Once an immutable vault is configured, every item meets 3-2-1-1-0 from the vaults\' facts: 3 copies (the source + vaults), 2 kinds of media, 1 off-site, 1 immutable, 0 errors on the last read-back.',
  'proofs.fresh': 'Every proof the verdict relies on is younger than maxProofAgeHours.',
  'drift.none':
    'Every captured item was scanned for drift after its current capture, against that capture, and nothing changed.',
  'manual-steps.confirmed': 'Every declared manual step was confirmed, with who and when (no later than the gate, and younger than maxConfirmationAgeHours).',
  'coverage.everything':
    'Every volume the crossing destroys has its everything capture (the default); it is off only by an override with a reason.',
  'coverage.complete':
    'Every file the crossing destroys is held by a proven artifact (by path and SHA-256), owned by a captured database, or excluded with a reason (built-in OS list or a runbook entry naming who).',
  'landing.preflight':
    'Every engine that can check the server the target lands on (version, edition, limits such as Express\'s 10 GB) did so right before the gate, and no check failed.',
  'rollback.exists': 'A rollback point exists before the crossing.',
  'override.reason-required': 'Every recorded override names its rule, the one item (or policy field, or gate) it covers, who made it and why; one without is ignored and refuses.',
  'override.unused': 'An override that matched no failing rule is reported (a typo in a rule id shows up here).',
} as const;

export type RuleId = keyof typeof RULES;

export const RULE_IDS = Object.keys(RULES) as RuleId[];

export function isRuleId(id: string): id is RuleId {
  return Object.hasOwn(RULES, id);
}

/** Which way is stricter for each field. */
const STRICTER: { [K in keyof Policy]: 'higher' | 'lower' | 'true' } = {
  minIndependentMethods: 'higher',
  minVaults: 'higher',
  minOffTargetVaults: 'higher',
  maxProofAgeHours: 'lower',
  requireRollbackPoint: 'true',
  requireManualSteps: 'true',
  requireImmutableCopy: 'true',
  maxConfirmationAgeHours: 'lower',
};

export interface Loosening {
  field: keyof Policy;
  default: unknown;
  value: unknown;
}

/**
 * The fields where `policy` is looser than DEFAULT_POLICY, in field order.
 * Pure. A value that is not a finite number (for a number field) or not
 * `true` (for a field whose default is `true`) counts as looser: a value that
 * cannot be shown to be at least as strict is treated as looser.
 */
export function loosenings(policy: Policy): Loosening[] {
  const out: Loosening[] = [];
  for (const field of Object.keys(STRICTER) as (keyof Policy)[]) {
    const def = DEFAULT_POLICY[field];
    const value: unknown = (policy as unknown as Record<string, unknown>)[field];
    const dir = STRICTER[field];
    let looser: boolean;
    if (dir === 'higher') looser = typeof value !== 'number' || !Number.isFinite(value) || value < (def as number);
    else if (dir === 'lower') looser = typeof value !== 'number' || !Number.isFinite(value) || value > (def as number);
    else looser = def === true && value !== true;
    if (looser) out.push({ field, default: def, value });
  }
  return out;
}
