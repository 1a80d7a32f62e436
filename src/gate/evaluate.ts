import type {
  Artifact,
  GateFacts,
  GateResult,
  Item,
  Override,
  Policy,
  Proof,
  RuleResult,
  VaultInfo,
} from '../core/types.ts';
import { describeGroups, formatBytes, judgeCoverage, type JudgeView } from '../coverage/judge.ts';
import { currentArtifacts, isMissing, latestCopies, latestProof, parseIsoTime, proofPassed } from './current.ts';
import { isRuleId, loosenings, RULE_IDS, type RuleId } from './policy.ts';
import { describeTally, tally32110 } from './rule-32110.ts';

/**
 * The gate: the policy evaluated right before the point of no return.
 * Design note: docs/gate.md.
 *
 * Contract:
 * - Pure and deterministic: a function of `facts` alone (no clock, no I/O);
 *   it never mutates its input.
 * - Fails closed: an unknown, missing or unparseable fact (a date, a
 *   fingerprint, a drift scan, a policy number) makes a rule fail, never pass.
 * - Every rule result is returned (pass, fail, warn, overridden) with a
 *   plain-language reason and the ids of its evidence. `passed` is true iff no
 *   result is 'fail'.
 * - An override turns a 'fail' into 'overridden' only when it names who and
 *   why; the override and its reason stay in the result. Nothing else can turn
 *   a 'fail' into anything.
 */

/**
 * A result before overrides are applied. `subject` (default: `itemId`) is
 * what an override's itemId must equal; results about the whole gate have
 * the subject `gate`. Every fail has a subject, so one override covers one
 * rule for one thing, never every result of a rule at once.
 */
interface Draft {
  rule: RuleId;
  itemId?: string;
  subject?: string;
  status: 'pass' | 'fail' | 'warn';
  reason: string;
  evidence: string[];
}

/** The subject of results about the whole gate (facts.now-valid, inventory.empty, rollback.exists). */
export const GATE = 'gate';

interface Usable {
  /** Vaults (declared in facts.vaults) where the artifact — and every base it depends on — has an 'ok' copy. */
  vaults: VaultInfo[];
  /** Plain-language problems: damaged copies, unknown vaults, missing bases. */
  problems: string[];
  evidence: string[];
}

interface Context {
  facts: GateFacts;
  now: number;
  items: Item[];
  currentByItem: Map<string, Artifact[]>;
  usable(artifact: Artifact): Usable;
  proof(artifactId: string): Proof | undefined;
  /** Database artifacts that count: current, latest proof passed, at least one usable copy. */
  counted(item: Item): Artifact[];
  /** The artifacts whose copies must meet the vault rules: counted ones for databases, all current ones otherwise. */
  copyBearing(item: Item): Artifact[];
}

const HOUR_MS = 3_600_000;
const MAX_LISTED_PATHS = 10;

function list<T>(v: readonly T[] | undefined): T[] {
  return Array.isArray(v) ? [...v] : [];
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function short(digest: string | undefined): string {
  return digest ? digest.slice(0, 12) : 'none';
}

function itemLabel(item: Item): string {
  return `${item.kind} ${item.name}`;
}

function copyId(artifactId: string, vault: string): string {
  return `${artifactId}@${vault}`;
}

function buildContext(raw: GateFacts): Context {
  // A missing policy is not a lenient one: every field reads as undefined, which fails closed.
  const facts: GateFacts = { ...raw, policy: raw.policy ?? ({} as Policy) };
  const items = list(facts.items);
  const artifacts = list(facts.artifacts);
  const proofs = list(facts.proofs);
  const copies = list(facts.copies);
  const current = currentArtifacts(artifacts);
  const currentByItem = new Map<string, Artifact[]>();
  for (const a of current) currentByItem.set(a.itemId, [...(currentByItem.get(a.itemId) ?? []), a]);
  const artifactById = new Map(artifacts.map((a) => [a.id, a] as const));
  const vaultByName = new Map(list(facts.vaults).map((v) => [v.name, v] as const));

  const usableMemo = new Map<string, Usable>();
  const usable = (artifact: Artifact, seen: Set<string> = new Set()): Usable => {
    const memo = usableMemo.get(artifact.id);
    if (memo) return memo;
    const problems: string[] = [];
    const evidence: string[] = [];
    let vaults: VaultInfo[] = [];
    for (const c of latestCopies(copies, artifact.id)) {
      const info = vaultByName.get(c.vault);
      if (c.status !== 'ok') {
        problems.push(
          `the copy of ${artifact.id} in vault ${c.vault} is ${c.status}${c.detail ? ` (${c.detail})` : ''} and does not count`,
        );
      } else if (!info) {
        problems.push(`the copy of ${artifact.id} is in vault ${c.vault}, which the runbook does not declare, and does not count`);
      } else {
        vaults.push(info);
        evidence.push(copyId(artifact.id, c.vault));
      }
    }
    if (artifact.baseArtifactId !== undefined) {
      // A delta restores only on top of its base: a vault counts only if the whole chain is there.
      const base = artifactById.get(artifact.baseArtifactId);
      if (!base || base.id === artifact.id || seen.has(base.id)) {
        problems.push(`${artifact.id} is a delta on ${artifact.baseArtifactId}, which is not recorded (or the chain loops); none of its copies count`);
        vaults = [];
      } else {
        const b = usable(base, new Set([...seen, artifact.id]));
        const baseNames = new Set(b.vaults.map((v) => v.name));
        for (const v of vaults) {
          if (!baseNames.has(v.name)) {
            problems.push(`vault ${v.name} lacks a good copy of base ${base.id} of delta ${artifact.id}, so that vault does not count`);
          }
        }
        vaults = vaults.filter((v) => baseNames.has(v.name));
        evidence.push(...b.evidence);
        problems.push(...b.problems);
      }
    }
    const result = { vaults, problems, evidence };
    usableMemo.set(artifact.id, result);
    return result;
  };

  const proof = (artifactId: string): Proof | undefined => latestProof(proofs, artifactId);
  const counted = (item: Item): Artifact[] =>
    (currentByItem.get(item.id) ?? []).filter((a) => proofPassed(proof(a.id)) && usable(a).vaults.length >= 1);
  const copyBearing = (item: Item): Artifact[] =>
    item.kind === 'database' ? counted(item) : (currentByItem.get(item.id) ?? []);

  return {
    facts,
    now: parseIsoTime(facts.now),
    items,
    currentByItem,
    usable: (a) => usable(a),
    proof,
    counted,
    copyBearing,
  };
}

/** Items that are on the target (everything except declared items discovery did not find). */
function presentItems(ctx: Context): Item[] {
  return ctx.items.filter((i) => !isMissing(i));
}

function failedChecks(p: Proof): string {
  const bad = list(p.checks).filter((c) => c.status !== 'passed');
  if (bad.length === 0) return p.outcome === 'passed' ? 'no checks recorded' : 'outcome failed';
  return bad.map((c) => `${c.name} ${c.status}`).join(', ');
}

/** Why an artifact's latest proof does not count, or undefined when it passed. */
function proofProblem(ctx: Context, a: Artifact): string | undefined {
  const p = ctx.proof(a.id);
  if (!p) return `${a.method} artifact ${a.id} was never proven`;
  if (proofPassed(p)) return undefined;
  return `${a.method} artifact ${a.id} failed its proof (${failedChecks(p)})`;
}

// ---------------------------------------------------------------- rules

function ruleNowValid(ctx: Context): Draft[] {
  if (Number.isNaN(ctx.now)) {
    return [
      {
        rule: 'facts.now-valid',
        subject: GATE,
        status: 'fail',
        reason: `the gate's time "${String(ctx.facts.now)}" is not an ISO-8601 time with a zone, so no age can be checked`,
        evidence: [],
      },
    ];
  }
  return [{ rule: 'facts.now-valid', status: 'pass', reason: `evaluated at ${ctx.facts.now}`, evidence: [] }];
}

function ruleInventoryEmpty(ctx: Context): Draft[] {
  if (ctx.items.length === 0) {
    return [{ rule: 'inventory.empty', subject: GATE, status: 'fail', reason: 'nothing was discovered; refusing to cross blind', evidence: [] }];
  }
  const declared = ctx.items.filter((i) => i.declared).length;
  const found = ctx.items.filter((i) => i.discovered).length;
  return [
    {
      rule: 'inventory.empty',
      status: 'pass',
      reason: `${plural(ctx.items.length, 'item')} on the checklist (${declared} declared, ${found} found by discovery)`,
      evidence: [],
    },
  ];
}

function rulePolicy(ctx: Context): Draft[] {
  const loose = loosenings(ctx.facts.policy);
  if (loose.length === 0) {
    return [{ rule: 'policy.not-looser', status: 'pass', reason: 'the policy is the default or stricter', evidence: [] }];
  }
  return loose.map((l) => ({
    rule: 'policy.not-looser' as const,
    subject: l.field,
    status: 'fail' as const,
    reason: `policy.${l.field} is ${JSON.stringify(l.value) ?? 'undefined'}, looser than the default ${JSON.stringify(l.default)}; record an override (rule policy.not-looser, itemId ${l.field}) with a reason, or use the default`,
    evidence: [],
  }));
}

function ruleDeclaredFound(ctx: Context): Draft[] {
  return ctx.items
    .filter((i) => i.declared)
    .map((i) =>
      isMissing(i)
        ? {
            rule: 'item.declared-found' as const,
            itemId: i.id,
            status: 'fail' as const,
            reason: `${itemLabel(i)} is declared in the runbook but was not found on the target; fix the runbook entry or find where it went`,
            evidence: [],
          }
        : {
            rule: 'item.declared-found' as const,
            itemId: i.id,
            status: 'pass' as const,
            reason: `${itemLabel(i)} is declared and was found`,
            evidence: [],
          },
    );
}

function ruleCaptured(ctx: Context): Draft[] {
  return presentItems(ctx).map((i) => {
    const current = ctx.currentByItem.get(i.id) ?? [];
    if (current.length === 0) {
      return {
        rule: 'item.captured' as const,
        itemId: i.id,
        status: 'fail' as const,
        reason: `${itemLabel(i)} was ${i.declared ? 'declared' : 'found by discovery'} but nothing captured it`,
        evidence: [],
      };
    }
    return {
      rule: 'item.captured' as const,
      itemId: i.id,
      status: 'pass' as const,
      reason: `${itemLabel(i)} captured by ${current.map((a) => a.method).join(', ')}`,
      evidence: current.map((a) => a.id),
    };
  });
}

function databases(ctx: Context): Item[] {
  return presentItems(ctx).filter((i) => i.kind === 'database');
}

function ruleIndependentMethods(ctx: Context): Draft[] {
  const min = ctx.facts.policy.minIndependentMethods;
  return databases(ctx).map((i) => {
    const current = ctx.currentByItem.get(i.id) ?? [];
    const counted = ctx.counted(i);
    const groups = [...new Set(counted.map((a) => a.independenceGroup || a.method))];
    const uncounted = current.filter((a) => !counted.includes(a));
    const why = (a: Artifact): string =>
      proofProblem(ctx, a) ?? `${a.method} artifact ${a.id} has no verified copy in any declared vault`;
    const notCounted = uncounted.map(why);
    // The vendor's own failures are reported by database.vendor-artifact; ours make this rule a warning.
    const ownNotCounted = uncounted.filter((a) => a.origin !== 'vendor').map(why);
    const evidence = counted.flatMap((a) => [a.id, ctx.proof(a.id)?.id ?? '']).filter(Boolean);
    if (!(groups.length >= min)) {
      evidence.push(...uncounted.flatMap((a) => [a.id, ctx.proof(a.id)?.id ?? '']).filter(Boolean));
      return {
        rule: 'database.independent-methods' as const,
        itemId: i.id,
        status: 'fail' as const,
        reason:
          `database ${i.name} has ${plural(groups.length, 'independent proven method')}` +
          `${groups.length ? ` (${groups.join(', ')})` : ''}; the policy requires ${min}` +
          `${notCounted.length ? `; not counted: ${notCounted.join('; ')}` : ''}`,
        evidence,
      };
    }
    return {
      rule: 'database.independent-methods' as const,
      itemId: i.id,
      status: ownNotCounted.length ? ('warn' as const) : ('pass' as const),
      reason:
        `database ${i.name} has ${plural(groups.length, 'independent proven method')} (${groups.join(', ')}); the policy requires ${min}` +
        `${ownNotCounted.length ? `; not counted: ${ownNotCounted.join('; ')}` : ''}`,
      evidence,
    };
  });
}

function ruleFingerprints(ctx: Context): Draft[] {
  return databases(ctx).map((i) => {
    const proven = (ctx.currentByItem.get(i.id) ?? []).filter((a) => proofPassed(ctx.proof(a.id)));
    if (proven.length === 0) {
      return {
        rule: 'database.fingerprints-agree' as const,
        itemId: i.id,
        status: 'warn' as const,
        reason: `database ${i.name} has no proven artifact whose fingerprint could be compared (see database.independent-methods)`,
        evidence: [],
      };
    }
    const problems: string[] = [];
    const digests = new Map<string, string[]>();
    const evidence: string[] = [];
    const note = (digest: string, who: string): void => {
      digests.set(digest, [...(digests.get(digest) ?? []), who]);
    };
    for (const a of proven) {
      const p = ctx.proof(a.id) as Proof;
      evidence.push(a.id, p.id);
      const restored = p.fingerprint?.digest;
      const source = a.sourceFingerprint?.digest;
      if (!restored) problems.push(`proof ${p.id} of ${a.id} recorded no fingerprint of the restored copy`);
      else note(restored, `${a.id} restored`);
      if (!source) problems.push(`${a.id} recorded no fingerprint of the source at capture time`);
      else note(source, `${a.id} source`);
    }
    if (digests.size > 1) {
      const parts = [...digests.entries()].map(([d, who]) => `${short(d)}: ${who.join(', ')}`);
      problems.unshift(`fingerprints disagree (${parts.join(' | ')})`);
    }
    if (problems.length) {
      return {
        rule: 'database.fingerprints-agree' as const,
        itemId: i.id,
        status: 'fail' as const,
        reason: `database ${i.name}: ${problems.join('; ')}`,
        evidence,
      };
    }
    return {
      rule: 'database.fingerprints-agree' as const,
      itemId: i.id,
      status: 'pass' as const,
      reason: `database ${i.name}: ${plural(proven.length, 'proven artifact')} and the source agree on fingerprint ${short([...digests.keys()][0])}`,
      evidence,
    };
  });
}

function ruleVendor(ctx: Context): Draft[] {
  const out: Draft[] = [];
  for (const i of databases(ctx)) {
    for (const a of (ctx.currentByItem.get(i.id) ?? []).filter((x) => x.origin === 'vendor')) {
      const p = ctx.proof(a.id);
      if (proofPassed(p)) {
        out.push({
          rule: 'database.vendor-artifact',
          itemId: i.id,
          status: 'pass',
          reason: `the vendor's backup of ${i.name} (${a.method}) restored and passed its checks`,
          evidence: [a.id, (p as Proof).id],
        });
      } else if (p) {
        out.push({
          rule: 'database.vendor-artifact',
          itemId: i.id,
          status: 'warn',
          reason: `the vendor's backup job produces backups that cannot be restored: ${a.method} artifact ${a.id} failed its proof (${failedChecks(p)})`,
          evidence: [a.id, p.id],
        });
      } else {
        out.push({
          rule: 'database.vendor-artifact',
          itemId: i.id,
          status: 'warn',
          reason: `the vendor's backup of ${i.name} (${a.id}, ${a.method}) was never proven and is not counted`,
          evidence: [a.id],
        });
      }
    }
  }
  return out;
}

function ruleFolderProven(ctx: Context): Draft[] {
  const out: Draft[] = [];
  for (const i of presentItems(ctx).filter((x) => x.kind === 'folder')) {
    const current = ctx.currentByItem.get(i.id) ?? [];
    if (current.length === 0) continue; // item.captured refuses
    const problems = current.map((a) => proofProblem(ctx, a)).filter((x): x is string => x !== undefined);
    const evidence = current.flatMap((a) => [a.id, ctx.proof(a.id)?.id ?? '']).filter(Boolean);
    out.push(
      problems.length
        ? { rule: 'folder.proven', itemId: i.id, status: 'fail', reason: `folder ${i.name}: ${problems.join('; ')}`, evidence }
        : {
            rule: 'folder.proven',
            itemId: i.id,
            status: 'pass',
            reason: `folder ${i.name} restored and checked on the proving ground (${current.map((a) => a.method).join(', ')})`,
            evidence,
          },
    );
  }
  return out;
}

/** Kinds proven under their own rules; every other kind falls under `item.proven`. */
const KINDS_WITH_OWN_PROOF_RULE: ReadonlySet<Item['kind']> = new Set(['database', 'folder', 'secret', 'certificate']);

function ruleOtherProven(ctx: Context): Draft[] {
  const out: Draft[] = [];
  for (const i of presentItems(ctx).filter((x) => !KINDS_WITH_OWN_PROOF_RULE.has(x.kind))) {
    const current = ctx.currentByItem.get(i.id) ?? [];
    if (current.length === 0) continue; // item.captured refuses
    const problems = current.map((a) => proofProblem(ctx, a)).filter((x): x is string => x !== undefined);
    const evidence = current.flatMap((a) => [a.id, ctx.proof(a.id)?.id ?? '']).filter(Boolean);
    out.push(
      problems.length
        ? { rule: 'item.proven', itemId: i.id, status: 'fail', reason: `${i.kind} ${i.name}: ${problems.join('; ')}`, evidence }
        : { rule: 'item.proven', itemId: i.id, status: 'pass', reason: `${i.kind} ${i.name} proven on the proving ground (${current.map((a) => a.method).join(', ')})`, evidence },
    );
  }
  return out;
}

function ruleSecrets(ctx: Context): Draft[] {
  return presentItems(ctx)
    .filter((i) => i.kind === 'secret' || i.kind === 'certificate')
    .map((i) => {
      const current = ctx.currentByItem.get(i.id) ?? [];
      const proven = current.filter((a) => proofPassed(ctx.proof(a.id)));
      if (proven.length === 0) {
        const why = current.map((a) => proofProblem(ctx, a)).filter((x): x is string => x !== undefined);
        return {
          rule: 'secrets.captured' as const,
          itemId: i.id,
          status: 'fail' as const,
          reason: `${itemLabel(i)} has no passed proof, so a restore from the vault alone would lack it${why.length ? `: ${why.join('; ')}` : ' (nothing captured it)'}`,
          evidence: current.map((a) => a.id),
        };
      }
      return {
        rule: 'secrets.captured' as const,
        itemId: i.id,
        status: 'pass' as const,
        reason: `${itemLabel(i)} captured and proven`,
        evidence: proven.flatMap((a) => [a.id, (ctx.proof(a.id) as Proof).id]),
      };
    });
}

function ruleVaults(ctx: Context): Draft[] {
  const { minVaults, minOffTargetVaults } = ctx.facts.policy;
  const out: Draft[] = [];
  for (const i of presentItems(ctx)) {
    const bearing = ctx.copyBearing(i);
    // A folder captured by several methods (restic into one vault, rsync into
    // another) is held by all of them together: its copies count per item.
    // A database's artifacts each need their own copies.
    if (i.kind !== 'database' && bearing.length > 1) {
      const byName = new Map<string, VaultInfo>();
      const evidence: string[] = [];
      const problems: string[] = [];
      for (const a of bearing) {
        const u = ctx.usable(a);
        for (const v of u.vaults) byName.set(v.name, v);
        evidence.push(a.id, ...u.evidence);
        problems.push(...u.problems);
      }
      const vaults = [...byName.values()];
      const off = vaults.filter((v) => v.offTarget === true);
      const holds = vaults.length >= minVaults && off.length >= minOffTargetVaults;
      const where = vaults.length ? vaults.map((v) => v.name).join(', ') : 'none';
      const counts = `${itemLabel(i)} has verified copies from ${bearing.map((a) => a.method).join(' and ')} in ${plural(vaults.length, 'vault')} (${where}; ${off.length} off the target)`;
      const extra = problems.length ? `; ${problems.join('; ')}` : '';
      out.push({
        rule: 'copies.vaults',
        itemId: i.id,
        status: !holds ? 'fail' : problems.length ? 'warn' : 'pass',
        reason: holds ? `${counts}${extra}` : `${counts}; the policy requires ${minVaults} with ${minOffTargetVaults} off the target${extra}`,
        evidence,
      });
      continue;
    }
    // A vault's own secret (a restic password) is needed only to read that vault: held intact in at least one
    // other vault, it is as safe as the vault it opens, which therefore counts among its vaults. Never in it alone.
    const opens = i.kind === 'secret' && typeof i.facts['vault'] === 'string' ? list(ctx.facts.vaults).find((v) => v.name === i.facts['vault']) : undefined;
    for (const a of bearing) {
      const u = ctx.usable(a);
      const others = opens ? u.vaults.filter((v) => v.name !== opens.name) : u.vaults;
      const counted = opens && others.length > 0 ? [...others, opens] : others;
      const off = counted.filter((v) => v.offTarget === true);
      const holds = counted.length >= minVaults && off.length >= minOffTargetVaults;
      const where = counted.length ? counted.map((v) => (v === opens ? `${v.name}, the vault it opens` : v.name)).join(', ') : 'none';
      const counts = `${a.id} (${itemLabel(i)}) has verified copies in ${plural(counted.length, 'vault')} (${where}; ${off.length} off the target)`;
      const problems = u.problems.length ? `; ${u.problems.join('; ')}` : '';
      out.push({
        rule: 'copies.vaults',
        itemId: i.id,
        status: !holds ? 'fail' : u.problems.length ? 'warn' : 'pass',
        reason: holds
          ? `${counts}${problems}`
          : `${counts}; the policy requires ${minVaults} with ${minOffTargetVaults} off the target${problems}`,
        evidence: [a.id, ...u.evidence],
      });
    }
  }
  return out;
}

function ruleImmutable(ctx: Context): Draft[] {
  if (ctx.facts.policy.requireImmutableCopy !== true) {
    return [{ rule: 'copies.immutable', status: 'pass', reason: 'the policy does not require an immutable copy', evidence: [] }];
  }
  const out: Draft[] = [];
  for (const i of presentItems(ctx)) {
    for (const a of ctx.copyBearing(i)) {
      const u = ctx.usable(a);
      const imm = u.vaults.filter((v) => v.immutable === true);
      out.push(
        imm.length
          ? {
              rule: 'copies.immutable',
              itemId: i.id,
              status: 'pass',
              reason: `${a.id} has a verified copy in immutable vault ${imm.map((v) => v.name).join(', ')}`,
              evidence: [a.id, ...imm.map((v) => copyId(a.id, v.name))],
            }
          : {
              rule: 'copies.immutable',
              itemId: i.id,
              status: 'fail',
              reason: `${a.id} (${itemLabel(i)}) has no verified copy in an immutable vault, which the policy requires`,
              evidence: [a.id],
            },
      );
    }
  }
  return out;
}

/**
 * copies.three-two-one-one-zero (src/gate/rule-32110.ts): required once any vault of the
 * run reports itself immutable; per item, over the vaults holding a usable
 * copy of its copy-bearing artifacts, with their damaged copies as errors.
 */
function rule32110(ctx: Context): Draft[] {
  const immutableVaults = list(ctx.facts.vaults).filter((v) => v.immutable === true);
  if (immutableVaults.length === 0) {
    return [{ rule: 'copies.three-two-one-one-zero', status: 'pass', reason: 'no vault is immutable, so 3-2-1-1-0 is not required yet (it is once one is configured)', evidence: [] }];
  }
  const out: Draft[] = [];
  for (const i of presentItems(ctx)) {
    const bearing = ctx.copyBearing(i);
    const vaults: VaultInfo[] = [];
    const errors: string[] = [];
    const evidence: string[] = [];
    for (const a of bearing) {
      const u = ctx.usable(a);
      vaults.push(...u.vaults);
      errors.push(...u.problems.filter((p) => / is (checksum-mismatch|size-invalid|missing|error)/.test(p)));
      evidence.push(a.id, ...u.evidence);
    }
    const t = tally32110(vaults, errors, true);
    const what = `${itemLabel(i)}: ${describeTally(t)}`;
    out.push({
      rule: 'copies.three-two-one-one-zero',
      itemId: i.id,
      status: t.holds ? 'pass' : 'fail',
      reason: t.holds ? `${what}: 3-2-1-1-0 holds` : `${what}: 3-2-1-1-0 does not hold (${t.missing.join('; ')})${errors.length ? `: ${errors.join('; ')}` : ''}`,
      evidence,
    });
  }
  return out;
}

/** The proofs a verdict on an item relies on. */
function reliedProofs(ctx: Context, i: Item): { artifact: Artifact; proof: Proof }[] {
  const arts =
    i.kind === 'database'
      ? ctx.counted(i)
      : (ctx.currentByItem.get(i.id) ?? []).filter((a) => proofPassed(ctx.proof(a.id)));
  return arts.map((artifact) => ({ artifact, proof: ctx.proof(artifact.id) as Proof }));
}

function ruleFresh(ctx: Context): Draft[] {
  const maxHours = ctx.facts.policy.maxProofAgeHours;
  const maxMs = typeof maxHours === 'number' ? maxHours * HOUR_MS : Number.NaN;
  const out: Draft[] = [];
  for (const i of presentItems(ctx)) {
    const relied = reliedProofs(ctx, i);
    if (relied.length === 0) continue;
    const problems: string[] = [];
    let oldest = -Infinity;
    for (const { artifact, proof } of relied) {
      const finished = parseIsoTime(proof.finishedAt);
      const captured = parseIsoTime(artifact.provenance?.finishedAt);
      const age = ctx.now - finished;
      if (Number.isNaN(finished)) {
        problems.push(`proof ${proof.id} has no valid finish time ("${String(proof.finishedAt)}")`);
        continue;
      }
      if (!(age >= 0)) problems.push(`proof ${proof.id} is dated after the gate's time (${proof.finishedAt})`);
      else if (!(age < maxMs)) problems.push(`proof ${proof.id} is ${(age / HOUR_MS).toFixed(1)} h old`);
      if (!(finished >= captured)) {
        problems.push(`proof ${proof.id} is not dated after the capture of ${artifact.id} finished (${String(artifact.provenance?.finishedAt)})`);
      }
      oldest = Math.max(oldest, age);
    }
    const evidence = relied.map((r) => r.proof.id);
    out.push(
      problems.length
        ? {
            rule: 'proofs.fresh',
            itemId: i.id,
            status: 'fail',
            reason: `${itemLabel(i)}: ${problems.join('; ')}; the policy allows ${maxHours} h; prove again (rubicon verify) before crossing`,
            evidence,
          }
        : {
            rule: 'proofs.fresh',
            itemId: i.id,
            status: 'pass',
            reason: `${itemLabel(i)}: the oldest proof relied on is ${(oldest / HOUR_MS).toFixed(1)} h old (limit ${maxHours} h)`,
            evidence,
          },
    );
  }
  return out;
}

function ruleDrift(ctx: Context): Draft[] {
  const scans = new Map<string, GateFacts['drift'][number]>();
  for (const d of list(ctx.facts.drift)) scans.set(d.itemId, d);
  const out: Draft[] = [];
  for (const i of presentItems(ctx)) {
    const current = ctx.currentByItem.get(i.id) ?? [];
    if (current.length === 0) continue; // item.captured refuses
    const scan = scans.get(i.id);
    const fail = (reason: string, evidence: string[]): Draft => ({ rule: 'drift.none', itemId: i.id, status: 'fail', reason, evidence });
    if (!scan) {
      out.push(fail(`drift unknown: ${itemLabel(i)} was not scanned for drift after its capture; run the pre-gate drift scan`, current.map((a) => a.id)));
      continue;
    }
    const scanId = `drift:${i.id}@${scan.scannedAt}`;
    const problems: string[] = [];
    const scanned = parseIsoTime(scan.scannedAt);
    if (Number.isNaN(scanned)) problems.push(`drift unknown: the scan time "${String(scan.scannedAt)}" is not a valid time`);
    else if (!(scanned <= ctx.now)) problems.push(`drift unknown: the scan is dated after the gate's time (${scan.scannedAt})`);
    if (!current.some((a) => a.id === scan.artifactId)) {
      problems.push(`drift unknown: the newest scan compared against ${scan.artifactId}, which is not a current artifact of this item`);
    }
    for (const a of Number.isNaN(scanned) ? [] : current) {
      const captured = parseIsoTime(a.provenance?.finishedAt);
      if (!(scanned > captured)) {
        problems.push(
          `drift unknown: the newest scan (${String(scan.scannedAt)}) is not after the capture of ${a.id} finished (${String(a.provenance?.finishedAt)})`,
        );
      }
    }
    const changes = list(scan.changes);
    if (changes.length) {
      const shown = changes.slice(0, MAX_LISTED_PATHS).map((c) => `${c.kind} ${c.path}`);
      const more = changes.length > MAX_LISTED_PATHS ? ` and ${changes.length - MAX_LISTED_PATHS} more` : '';
      problems.push(`changed after capture: ${plural(changes.length, 'change')} (${shown.join(', ')}${more}); capture the final delta and prove it`);
    }
    out.push(
      problems.length
        ? fail(`${itemLabel(i)}: ${problems.join('; ')}`, [scanId, ...current.map((a) => a.id)])
        : {
            rule: 'drift.none',
            itemId: i.id,
            status: 'pass',
            reason: `${itemLabel(i)} unchanged since ${scan.artifactId} (scanned ${scan.scannedAt})`,
            evidence: [scanId, scan.artifactId],
          },
    );
  }
  return out;
}

function nonEmpty(s: unknown): s is string {
  return typeof s === 'string' && s.trim() !== '';
}

function ruleManualSteps(ctx: Context): Draft[] {
  if (ctx.facts.policy.requireManualSteps !== true) {
    return [{ rule: 'manual-steps.confirmed', status: 'pass', reason: 'the policy does not require manual steps to be confirmed', evidence: [] }];
  }
  const steps = list(ctx.facts.manualSteps);
  if (steps.length === 0) {
    return [{ rule: 'manual-steps.confirmed', status: 'pass', reason: 'no manual steps are declared', evidence: [] }];
  }
  const maxAge = ctx.facts.policy.maxConfirmationAgeHours;
  const maxAgeMs = typeof maxAge === 'number' && Number.isFinite(maxAge) && maxAge > 0 ? maxAge * 3_600_000 : Number.NaN;
  return steps.map((s) => {
    const at = parseIsoTime(s.confirmedAt);
    const fresh = !Number.isNaN(maxAgeMs) && ctx.now - at <= maxAgeMs;
    const ok = nonEmpty(s.confirmedBy) && !Number.isNaN(at) && at <= ctx.now && fresh;
    if (!ok && nonEmpty(s.confirmedBy) && !Number.isNaN(at) && at <= ctx.now) {
      return {
        rule: 'manual-steps.confirmed' as const,
        subject: s.id,
        status: 'fail' as const,
        reason: Number.isNaN(maxAgeMs)
          ? `manual step ${s.id}: policy.maxConfirmationAgeHours is ${JSON.stringify(maxAge) ?? 'undefined'}, not a number of hours, so no confirmation can be shown fresh`
          : `manual step ${s.id} ("${s.description}") was confirmed at ${s.confirmedAt}, more than ${maxAge} h (policy.maxConfirmationAgeHours) before the gate: confirm it again (rubicon confirm RUN_ID ${s.id} --by NAME, then rubicon resume RUN_ID)`,
        evidence: [s.id],
      };
    }
    return ok
      ? {
          rule: 'manual-steps.confirmed' as const,
          subject: s.id,
          status: 'pass' as const,
          reason: `manual step ${s.id} ("${s.description}") confirmed by ${s.confirmedBy} at ${s.confirmedAt}`,
          evidence: [s.id],
        }
      : {
          rule: 'manual-steps.confirmed' as const,
          subject: s.id,
          status: 'fail' as const,
          reason: `manual step ${s.id} ("${s.description}") is not confirmed with who and a valid time no later than the gate's; a person confirms it with rubicon confirm RUN_ID ${s.id} --by NAME, then rubicon resume RUN_ID, or in the runbook (confirmedBy, confirmedAt)`,
          evidence: [s.id],
        };
  });
}

function ruleRollback(ctx: Context): Draft[] {
  if (ctx.facts.policy.requireRollbackPoint !== true) {
    return [{ rule: 'rollback.exists', status: 'pass', reason: 'the policy does not require a rollback point', evidence: [] }];
  }
  const rb = ctx.facts.rollbackPoint;
  const created = parseIsoTime(rb?.createdAt);
  if (!rb || !nonEmpty(rb.id) || Number.isNaN(created) || !(created <= ctx.now)) {
    return [
      {
        rule: 'rollback.exists',
        subject: GATE,
        status: 'fail',
        reason: rb
          ? `rollback point ${String(rb.id)} has no valid creation time no later than the gate's ("${String(rb.createdAt)}")`
          : 'no rollback point exists; take one (disk snapshot) before the crossing',
        evidence: [],
      },
    ];
  }
  return [
    {
      rule: 'rollback.exists',
      status: 'pass',
      reason: `rollback point ${rb.id} (${rb.kind}) created ${rb.createdAt} at ${rb.location}`,
      evidence: [rb.id],
    },
  ];
}

// ---------------------------------------------------------------- coverage (docs/coverage.md)

/** The volumes whose files must be covered. */
function coverageVolumes(ctx: Context) {
  return list(ctx.facts.scope?.volumes).filter((v) => v.capture === true && typeof v.path === 'string' && v.path !== '');
}

const volumeItemId = (p: string) => `volume:${p}`;

/** The everything capture is the default for every volume in scope: off only by an override with a reason. */
function ruleCoverageEverything(ctx: Context): Draft[] {
  const scope = ctx.facts.scope;
  if (!scope) return [{ rule: 'coverage.everything', status: 'pass', reason: 'no scope of destruction recorded (coverage.complete refuses)', evidence: [] }];
  const vols = coverageVolumes(ctx);
  if (vols.length === 0) return [{ rule: 'coverage.everything', status: 'pass', reason: 'the crossing destroys no volume whose files must be covered', evidence: [] }];
  return vols.map((v) => {
    const id = volumeItemId(v.path);
    const it = ctx.items.find((i) => i.id === id && i.discovered && !isMissing(i));
    if (it) return { rule: 'coverage.everything' as const, itemId: id, status: 'pass' as const, reason: `the everything capture of ${v.label} is on (${id})`, evidence: [id] };
    const onMap = list(ctx.facts.coverage?.classes).filter((c) => c.volume === v.path);
    if (ctx.facts.coverage && list(ctx.facts.coverage.volumes).includes(v.path) && onMap.every((c) => c.files === 0)) {
      return { rule: 'coverage.everything' as const, itemId: id, status: 'pass' as const, reason: `${v.label} holds no file: there is nothing for an everything capture to hold`, evidence: [] };
    }
    return {
      rule: 'coverage.everything' as const,
      itemId: id,
      status: 'fail' as const,
      reason: `the everything capture of ${v.label} is off: it is the default for every volume the crossing destroys; remove what turned it off, or record an override {rule: coverage.everything, item: ${id}, reason, by}`,
      evidence: [],
    };
  });
}

/** Every file in the scope of destruction is held by a proven artifact, owned by a captured item, or excluded with a reason. */
function ruleCoverageComplete(ctx: Context): Draft[] {
  const scope = ctx.facts.scope;
  // A fail about no volume in particular (no scope, no map) is about the whole gate: an override names "gate".
  const fail = (reason: string, subject?: string): Draft => ({ rule: 'coverage.complete', ...(subject ? { itemId: subject } : { subject: GATE }), status: 'fail', reason, evidence: [] });
  if (!scope) return [fail('the scope of destruction is unknown: the infra driver did not record what the crossing destroys, so no file can be shown to be covered')];
  const vols = coverageVolumes(ctx);
  if (vols.length === 0) return [{ rule: 'coverage.complete', status: 'pass', reason: 'the crossing destroys no volume whose files must be covered', evidence: [] }];
  const map = ctx.facts.coverage;
  if (!map) return [fail(`coverage unknown: no coverage map was recorded for ${vols.map((v) => v.label).join(', ')}; map it after the final capture`)];
  const mapId = `coverage:${map.stage}@${String(map.mappedAt)}`;
  const mapped = parseIsoTime(map.mappedAt);
  const stale: string[] = [];
  if (Number.isNaN(mapped)) stale.push(`the map's time "${String(map.mappedAt)}" is not a valid time`);
  else if (!(mapped <= ctx.now)) stale.push(`the map is dated after the gate's time (${map.mappedAt})`);
  else {
    for (const arts of ctx.currentByItem.values()) {
      for (const a of arts) {
        if (!(mapped > parseIsoTime(a.provenance?.finishedAt))) stale.push(`the map (${map.mappedAt}) is not after the capture of ${a.id} finished (${String(a.provenance?.finishedAt)})`);
      }
    }
  }
  if (stale.length) return vols.map((v) => fail(`coverage unknown for ${v.label}: ${stale.slice(0, 3).join('; ')}${stale.length > 3 ? ` and ${stale.length - 3} more` : ''}; map it again after the final capture`, volumeItemId(v.path)));
  const current = new Map<string, Artifact>();
  for (const arts of ctx.currentByItem.values()) for (const a of arts) current.set(a.id, a);
  const view: JudgeView = {
    holderProblem: (id) => {
      const a = current.get(id);
      if (!a) return `${id} is not a current artifact (superseded, or not recorded)`;
      const p = proofProblem(ctx, a);
      if (p) return p;
      if (ctx.usable(a).vaults.length === 0) return `${a.method} artifact ${a.id} has no verified copy in any declared vault`;
      return undefined;
    },
    ownerProblem: (id) => {
      const it = ctx.items.find((i) => i.id === id);
      if (!it) return `their owner ${id} is not on the checklist`;
      if (isMissing(it)) return `their owner ${itemLabel(it)} was not found on the target`;
      if ((ctx.currentByItem.get(id) ?? []).length === 0) return `their owner ${itemLabel(it)} was captured by nothing`;
      return undefined;
    },
    isEverything: (id) => current.get(id)?.itemId.startsWith('volume:') === true,
  };
  const verdicts = judgeCoverage(map, view);
  return vols.map((v) => {
    const subject = volumeItemId(v.path);
    const verdict = verdicts.find((x) => x.volume === v.path);
    if (!verdict) return fail(`coverage unknown: the coverage map does not include ${v.label} (${v.path})`, subject);
    const ex = verdict.excluded;
    const counts =
      `${plural(verdict.files, 'file')} (${formatBytes(verdict.bytes)}) on ${v.label}: ` +
      `${verdict.covered.files} held by proven artifacts, ${verdict.owned.files} owned by captured databases, ` +
      `${ex.files} excluded (${ex.bySource['built-in'].files} by the built-in ${scope.os} list, ${ex.bySource.runbook.files} by the runbook, ${ex.bySource.rubicon.files} Rubicon's own)`;
    const u = verdict.uncovered;
    if (u.files > 0) {
      return {
        rule: 'coverage.complete' as const,
        itemId: subject,
        status: 'fail' as const,
        reason: `${counts}; ${plural(u.files, 'file')} (${formatBytes(u.bytes)}) NOT covered, the crossing would destroy them: ${describeGroups(u.groups)}; why: ${u.reasons.slice(0, 4).join('; ')}; capture them (the everything capture is the default), or exclude them in the runbook (coverage.exclude with reason and by)`,
        evidence: [mapId, ...verdict.evidence],
      };
    }
    return { rule: 'coverage.complete' as const, itemId: subject, status: 'pass' as const, reason: `${counts}; uncovered: 0`, evidence: [mapId, ...verdict.evidence] };
  });
}

// ---------------------------------------------------------------- landing preflight

/**
 * `landing.preflight`, per engine (subject `engine:<kind>`): the newest
 * preflight must be the one taken right before the gate (`pre-gate`), dated
 * validly and not after now, with no failed check. No record: no engine of
 * this run has a landing preflight, nothing to judge.
 */
function rulePreflight(ctx: Context): Draft[] {
  return list(ctx.facts.preflight).map((p): Draft => {
    const subject = `engine:${String(p.engine)}`;
    const fail = (reason: string): Draft => ({ rule: 'landing.preflight', subject, status: 'fail', reason, evidence: [] });
    const at = parseIsoTime(p.checkedAt);
    if (Number.isNaN(at)) return fail(`${p.engine}: the landing preflight has no valid time ("${String(p.checkedAt)}"); run it again before the gate`);
    if (!(at <= ctx.now)) return fail(`${p.engine}: the landing preflight is dated after the gate's time (${p.checkedAt})`);
    if (p.stage !== 'pre-gate') return fail(`${p.engine}: the server the target lands on was not checked right before the gate (the newest check is from ${String(p.stage)}); run the gate again`);
    const checks = list(p.checks);
    // Fail closed: a check that did not pass (failed, skipped) refuses.
    const bad = checks.filter((c) => c.status !== 'passed');
    if (bad.length) {
      return fail(
        `${p.engine}: the server the target lands on cannot take what was proven: ${bad.map((c) => `${c.name}: ${c.detail}`).join('; ')}; ` +
          `fix the landing server (or its declaration in the runbook), or record an override {rule: landing.preflight, item: ${subject}, reason, by}`,
      );
    }
    return { rule: 'landing.preflight', subject, status: 'pass', reason: `${p.engine}: ${checks.length ? checks.map((c) => `${c.name}: ${c.detail}`).join('; ') : 'nothing to check'}`, evidence: [] };
  });
}

// ---------------------------------------------------------------- overrides

function validOverride(o: Override): boolean {
  return nonEmpty(o.reason) && nonEmpty(o.by) && nonEmpty(o.rule) && nonEmpty(o.itemId);
}

/** Rules whose fails an override can never turn: overriding them would be circular. */
const NOT_OVERRIDABLE: ReadonlySet<string> = new Set<RuleId>(['override.reason-required', 'override.unused']);

function applyOverrides(drafts: Draft[], overrides: Override[]): RuleResult[] {
  const valid = overrides.filter(validOverride);
  const used = new Set<Override>();
  const results: RuleResult[] = drafts.map((d) => {
    const base: RuleResult = { rule: d.rule, status: d.status, reason: d.reason, evidence: d.evidence };
    if (d.itemId !== undefined) base.itemId = d.itemId;
    if (d.status !== 'fail') return base;
    const subject = d.subject ?? d.itemId;
    if (subject !== undefined) base.subject = subject;
    if (NOT_OVERRIDABLE.has(d.rule)) return base;
    // Exactly this rule for exactly this subject: an override never matches by rule alone.
    const match = subject === undefined ? undefined : valid.find((o) => o.rule === d.rule && o.itemId === subject);
    if (!match) return base;
    used.add(match);
    return {
      ...base,
      status: 'overridden',
      reason: `overridden by ${match.by.trim()} ("${match.reason.trim()}"): ${d.reason}`,
      override: match,
    };
  });
  for (const o of overrides) {
    if (!validOverride(o)) {
      const lacking = [
        ...(nonEmpty(o.rule) ? [] : ['which rule']),
        ...(nonEmpty(o.itemId) ? [] : [`which one item it covers (an item id, a step id, the policy field for policy.not-looser, or "${GATE}")`]),
        ...(nonEmpty(o.by) ? [] : ['who made it']),
        ...(nonEmpty(o.reason) ? [] : ['why']),
      ];
      results.push({
        rule: 'override.reason-required',
        ...(o.itemId !== undefined ? { itemId: o.itemId } : {}),
        status: 'fail',
        reason: `an override of rule ${nonEmpty(o.rule) ? o.rule : '(none)'}${o.itemId ? ` for ${o.itemId}` : ''} does not say ${lacking.join(', ')}, so it is ignored; add the missing field to the override in the runbook`,
        evidence: [],
      });
    } else if (!used.has(o)) {
      results.push({
        rule: 'override.unused',
        ...(o.itemId !== undefined ? { itemId: o.itemId } : {}),
        status: 'warn',
        reason: isRuleId(o.rule)
          ? `the override of ${o.rule}${o.itemId ? ` for ${o.itemId}` : ''} by ${o.by} matched no failing rule`
          : `the override names rule "${o.rule}", which does not exist (known rules: ${RULE_IDS.join(', ')})`,
        evidence: [],
      });
    }
  }
  return results;
}

// ---------------------------------------------------------------- the gate

/** Evaluates the policy over the recorded facts. Pure; see the contract at the top of this file. */
export function evaluateGate(facts: GateFacts): GateResult {
  const ctx = buildContext(facts);
  const drafts: Draft[] = [
    ...ruleNowValid(ctx),
    ...ruleInventoryEmpty(ctx),
    ...rulePolicy(ctx),
    ...ruleDeclaredFound(ctx),
    ...ruleCaptured(ctx),
    ...ruleIndependentMethods(ctx),
    ...ruleFingerprints(ctx),
    ...ruleVendor(ctx),
    ...ruleFolderProven(ctx),
    ...ruleOtherProven(ctx),
    ...ruleSecrets(ctx),
    ...ruleVaults(ctx),
    ...ruleImmutable(ctx),
    ...rule32110(ctx),
    ...ruleFresh(ctx),
    ...ruleDrift(ctx),
    ...ruleCoverageEverything(ctx),
    ...ruleCoverageComplete(ctx),
    ...ruleManualSteps(ctx),
    ...rulePreflight(ctx),
    ...ruleRollback(ctx),
  ];
  const results = applyOverrides(drafts, list(facts.overrides));
  const passed = results.length > 0 && !results.some((r) => r.status === 'fail');
  const reasons = passed
    ? results.filter((r) => r.status === 'warn' || r.status === 'overridden').map((r) => r.reason)
    : results.filter((r) => r.status === 'fail').map((r) => r.reason);
  return { passed, evaluatedAt: String(facts.now), results, reasons };
}

/**
 * The proofs a passing verdict relies on (the latest passed proofs of counted
 * database artifacts, of folders, secrets and certificates), in journal order.
 * Pure. This is the set a permit should bind to (issuePermit's `proofs`).
 */
export function reliedOnProofs(facts: GateFacts): Proof[] {
  const ctx = buildContext(facts);
  const ids = new Set(presentItems(ctx).flatMap((i) => reliedProofs(ctx, i).map((r) => r.proof.id)));
  return list(facts.proofs).filter((p) => ids.has(p.id));
}
