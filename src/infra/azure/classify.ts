import type { EngineEvent, OpType } from '@pulumi/pulumi/automation/index.js';

/**
 * Reading a Pulumi preview before the crossing: is the plan exactly the
 * expected rebuild and nothing else? Pure over recorded EngineEvents (the
 * JSON the engine streams to `onEvent`), so it is tested on fixtures.
 *
 * The rule is an allowlist: every step must be a no-op (`same`, `read`,
 * `refresh`) unless it is an allowed replacement of a resource named in the
 * expectation. Anything else — an update, a delete, a replace of a Disk or
 * of the vault — makes the plan unacceptable. The summary's counts are
 * checked too, so a step the stream did not describe cannot slip through.
 */

export interface ResourceRef {
  /** Pulumi type token, e.g. `azure-native:compute:VirtualMachine`. */
  type: string;
  /** Logical name (the last URN segment), e.g. `ehr-prd-01Vm`. */
  name: string;
}

export interface PlanExpectation {
  /** The resources that may be replaced (the target VM). Default none. */
  mayReplace?: ResourceRef[];
  /** The plan must replace (or, when `allowCreate`, create) every `mayReplace` resource. Default false. */
  requireReplace?: boolean;
  /**
   * Accept a plain `create` of a `mayReplace` resource: resuming a crossing
   * whose delete already ran (deleteBeforeReplace) plans a create.
   */
  allowCreate?: boolean;
  /**
   * A component type token (e.g. `rubicon:azure:ProvingGround`): the
   * component and everything under it may be created (provisioning).
   */
  mayCreateUnder?: string;
  /** A component type token: the component and everything under it may be deleted (teardown). */
  mayDeleteUnder?: string;
}

export interface StepRef {
  urn: string;
  op: OpType;
  type: string;
}

export interface UnexpectedStep extends StepRef {
  /** Plain words: why this step is not acceptable. */
  reason: string;
}

export interface PlanClassification {
  ok: boolean;
  /** Steps outside the expectation. Empty when ok. */
  unexpected: UnexpectedStep[];
  /** Replacements seen (allowed or not), with the keys that force them. */
  replaces: (StepRef & { keys: string[] })[];
  /** Plan-level problems: missing replacement, error diagnostics, summary mismatches. */
  problems: string[];
  /** Counts by op from the summary event, when there was one. */
  summary?: Partial<Record<OpType, number>>;
}

const NO_OP: ReadonlySet<string> = new Set(['same', 'read', 'refresh']);
const REPLACE_STEPS: ReadonlySet<string> = new Set(['replace', 'create-replacement', 'delete-replaced']);

/** The asset classes a crossing must never touch, for the reason text. */
function assetClass(type: string): string | undefined {
  if (type === 'azure-native:compute:Disk' || type === 'azure-native:compute:Snapshot') return 'a disk (data or rollback)';
  if (type.startsWith('azure-native:storage:')) return 'the backup vault';
  if (type.startsWith('azure-native:keyvault:')) return 'the Key Vault';
  return undefined;
}

/** Logical name: the part after the last `::` of a URN. */
export function urnName(urn: string): string {
  const i = urn.lastIndexOf('::');
  return i < 0 ? urn : urn.slice(i + 2);
}

/** The URN's type path (`parent$child` types), e.g. `rubicon:azure:TargetServer$azure-native:compute:Disk`. */
export function urnTypePath(urn: string): string[] {
  const parts = urn.split('::');
  return (parts[2] ?? '').split('$');
}

function isUnder(urn: string, component: string | undefined): boolean {
  return component !== undefined && urnTypePath(urn).includes(component);
}

function matches(ref: ResourceRef, step: StepRef): boolean {
  return ref.type === step.type && urnName(step.urn) === ref.name;
}

function describe(op: string): string {
  switch (op) {
    case 'delete':
    case 'delete-replaced':
    case 'discard':
    case 'discard-replaced':
      return 'delete';
    case 'replace':
    case 'create-replacement':
      return 'replace';
    default:
      return op;
  }
}

/**
 * Pure: the properties forcing a replacement. The engine's `keys` are the
 * provider's replace keys plus the changed TOP-LEVEL keys a replaceOnChanges
 * path contains; for a nested path (`storageProfile.imageReference`) no
 * top-level key is contained, so `keys` comes out empty (pulumi/pulumi
 * pkg/resource/deploy/step_generator.go, applyReplaceOnChanges) and the
 * reason is only in `detailedDiff` (kind `update-replace` etc.). Falls back
 * to those paths.
 */
export function replaceKeysOf(m: { keys?: string[]; detailedDiff?: Record<string, { diffKind?: string; kind?: string }> | null }): string[] {
  if (m.keys && m.keys.length > 0) return [...m.keys];
  return Object.entries(m.detailedDiff ?? {})
    .filter(([, d]) => /-replace$/.test(String(d.diffKind ?? d.kind ?? '')))
    .map(([p]) => p)
    .sort();
}

/** Pure: URNs of the steps with `op` under a component type (e.g. the proving ground's deletes). */
export function urnsUnder(events: readonly EngineEvent[], componentType: string, ops: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    const m = e.resourcePreEvent?.metadata;
    if (m && ops.includes(m.op) && isUnder(m.urn, componentType) && !out.includes(m.urn)) out.push(m.urn);
  }
  return out;
}

/** The ops per URN of a stream: preview steps (`planning`) or executed steps, from the pre-events. */
function opsByUrn(events: readonly EngineEvent[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of events) {
    const m = e.resourcePreEvent?.metadata;
    if (!m || NO_OP.has(m.op)) continue;
    const ops = out.get(m.urn) ?? [];
    if (!ops.includes(m.op)) ops.push(m.op);
    out.set(m.urn, ops);
  }
  return out;
}

function nonZero(c: Partial<Record<string, number>> | undefined): Record<string, number> {
  return Object.fromEntries(Object.entries(c ?? {}).filter(([op, n]) => !NO_OP.has(op) && typeof n === 'number' && n > 0)) as Record<string, number>;
}

export interface ExecutionComparison {
  ok: boolean;
  /** Plain words, one per difference. */
  problems: string[];
}

/**
 * Pure: did `up` do exactly what the classified preview showed? `up --plan`
 * lets a `same` stand in for a planned update or replace, and an unknown in
 * the plan accepts any value, so an up can "succeed" without the rebuild.
 * Compares, for every resource, the non-trivial steps the preview planned
 * with the ones the up executed (both ways), and the summary's change
 * counts (ignoring `same`).
 */
export function compareWithPreview(
  previewEvents: readonly EngineEvent[],
  upEvents: readonly EngineEvent[],
  upSummary: Partial<Record<string, number>> | undefined,
): ExecutionComparison {
  const planned = opsByUrn(previewEvents);
  const executed = opsByUrn(upEvents);
  const problems: string[] = [];
  for (const [urn, ops] of planned) {
    const done = executed.get(urn) ?? [];
    const missing = ops.filter((op) => !done.includes(op));
    if (missing.length > 0) problems.push(`${urnName(urn)}: the preview planned ${missing.join(', ')}, but the up did ${done.length ? done.join(', ') : 'nothing (same)'}`);
  }
  for (const [urn, ops] of executed) {
    const extra = ops.filter((op) => !(planned.get(urn) ?? []).includes(op));
    if (extra.length > 0) problems.push(`${urnName(urn)}: the up did ${extra.join(', ')}, which the preview did not plan`);
  }
  let previewSummary: Partial<Record<string, number>> | undefined;
  for (const e of previewEvents) if (e.summaryEvent) previewSummary = e.summaryEvent.resourceChanges;
  const a = nonZero(previewSummary);
  const b = nonZero(upSummary);
  for (const op of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if ((a[op] ?? 0) !== (b[op] ?? 0)) problems.push(`summary: the preview counted ${op}: ${a[op] ?? 0}, the up ${op}: ${b[op] ?? 0}`);
  }
  if (!upSummary) problems.push('the up reported no resource changes summary');
  return { ok: problems.length === 0, problems };
}

export function classifyPlan(events: readonly EngineEvent[], expect: PlanExpectation): PlanClassification {
  const mayReplace = expect.mayReplace ?? [];
  const unexpected: UnexpectedStep[] = [];
  const replaces: (StepRef & { keys: string[] })[] = [];
  const problems: string[] = [];
  const replacedUrns = new Set<string>();
  const createdExpected = new Set<string>();
  const seenUnexpected = new Set<string>();
  let summary: PlanClassification['summary'];
  let scopedCreates = 0;
  let scopedDeletes = 0;

  for (const e of events) {
    if (e.diagnosticEvent?.severity === 'error') {
      problems.push(`the engine reported an error${e.diagnosticEvent.urn ? ` on ${e.diagnosticEvent.urn}` : ''}: ${e.diagnosticEvent.message.trim()}`);
    }
    if (e.resOpFailedEvent) {
      const m = e.resOpFailedEvent.metadata;
      problems.push(`step ${m.op} of ${m.urn} failed`);
    }
    if (e.policyEvent?.enforcementLevel === 'mandatory') {
      problems.push(`policy ${e.policyEvent.policyName} (${e.policyEvent.policyPackName}) is violated: ${e.policyEvent.message.trim()}`);
    }
    if (e.summaryEvent) summary = { ...e.summaryEvent.resourceChanges };
    const m = e.resourcePreEvent?.metadata;
    if (!m) continue;
    const step: StepRef = { urn: m.urn, op: m.op, type: m.type };
    if (NO_OP.has(m.op)) continue;
    const expected = mayReplace.find((r) => matches(r, step));
    if (REPLACE_STEPS.has(m.op)) {
      if (m.op === 'replace' || !replacedUrns.has(m.urn)) {
        if (!replaces.some((r) => r.urn === m.urn)) replaces.push({ ...step, keys: replaceKeysOf(m) });
      }
      replacedUrns.add(m.urn);
      if (expected) continue;
    } else if (m.op === 'create' && expected && expect.allowCreate) {
      createdExpected.add(m.urn);
      continue;
    } else if (m.op === 'create' && isUnder(m.urn, expect.mayCreateUnder)) {
      scopedCreates += 1;
      continue;
    } else if (m.op === 'delete' && isUnder(m.urn, expect.mayDeleteUnder)) {
      scopedDeletes += 1;
      continue;
    }
    const key = `${m.urn}\u0000${describe(m.op)}`;
    if (seenUnexpected.has(key)) continue;
    seenUnexpected.add(key);
    const asset = assetClass(m.type);
    let reason: string;
    if (asset) reason = `would ${describe(m.op)} ${asset}; a crossing never does`;
    else if (expected) reason = `would ${m.op} the target VM instead of replacing it (an image change planned as an update is rejected by Azure; check replaceOnChanges)`;
    else reason = `would ${describe(m.op)} a resource the crossing does not touch`;
    unexpected.push({ ...step, op: m.op, reason });
  }

  if (expect.requireReplace) {
    for (const ref of mayReplace) {
      const done = [...replacedUrns, ...createdExpected].some((urn) => urnName(urn) === ref.name);
      if (!done) problems.push(`the plan does not rebuild ${ref.type} "${ref.name}": the image change is missing (is rubicon:target.image set to the permit's image?)`);
    }
  }

  if (summary) {
    const allowedReplaces = [...replacedUrns].filter((urn) => mayReplace.some((r) => urnName(urn) === r.name)).length;
    const extra: string[] = [];
    for (const [op, n] of Object.entries(summary) as [OpType, number][]) {
      if (!n || NO_OP.has(op)) continue;
      if (REPLACE_STEPS.has(op) && n <= allowedReplaces) continue;
      if (op === 'create' && n <= createdExpected.size + scopedCreates) continue;
      if (op === 'delete' && n <= scopedDeletes) continue;
      extra.push(`${op}: ${n}`);
    }
    if (extra.length > 0) problems.push(`the plan's summary counts changes beyond the expected rebuild (${extra.join(', ')})`);
  } else {
    problems.push('the event stream has no summary: the preview did not finish');
  }

  return { ok: unexpected.length === 0 && problems.length === 0, unexpected, replaces, problems, ...(summary ? { summary } : {}) };
}

/** Pure: a refusal message listing what is wrong with a plan, for people and logs. */
export function describePlanRefusal(c: PlanClassification): string {
  const lines = [
    ...c.unexpected.map((u) => `- ${u.urn} (${u.type}): ${u.op} — ${u.reason}`),
    ...c.problems.map((p) => `- ${p}`),
  ];
  return `The plan is not exactly the expected rebuild:\n${lines.join('\n')}`;
}
