import type { CoverageClass, CoverageExclusion, CoverageGroup, CoverageMap } from '../core/types.ts';
import { mergeGroups } from './map.ts';

/**
 * Judges a coverage map: which classes of files count as covered, owned,
 * excluded, or not at all. Pure; the gate (coverage.complete) and the
 * report call it with their own view of the artifacts.
 *
 * A class counts, first match wins:
 * 1. owned: its owner item is present and has a current artifact (a
 *    database's live files are never byte-copies of a backup: the engine's
 *    consistent backup holds them, and the database rules, which are
 *    stricter, judge its proofs and copies);
 * 2. covered: one of its holders is a current artifact whose latest proof
 *    passed and which has a usable copy;
 * 3. excluded: its exclusion names a reason (and, for a runbook entry, who
 *    decided it);
 * otherwise its files are uncovered, and every reason is kept.
 */

export interface Tally {
  files: number;
  bytes: number;
}

export interface VolumeVerdict {
  volume: string;
  files: number;
  bytes: number;
  covered: Tally;
  owned: Tally;
  excluded: Tally & { bySource: Record<CoverageExclusion['source'], Tally>; entries: (CoverageExclusion & Tally)[] };
  uncovered: Tally & { groups: CoverageGroup[]; reasons: string[] };
  /** Covered, and held by no artifact but the everything capture: what the everything capture adds. */
  onlyEverything: Tally & { groups: CoverageGroup[] };
  /** Artifact and item ids the verdict relies on. */
  evidence: string[];
}

export interface JudgeView {
  /** Why an artifact does not count (not current, never proven, proof failed, no usable copy), or undefined when it counts. */
  holderProblem(artifactId: string): string | undefined;
  /** Why an owner item does not count (not on the checklist, missing, nothing captured it), or undefined. */
  ownerProblem(itemId: string): string | undefined;
  /** True for an artifact of an everything (volume:) item. */
  isEverything(artifactId: string): boolean;
}

const tally = (): Tally => ({ files: 0, bytes: 0 });
const add = (t: Tally, c: { files: number; bytes: number }) => {
  t.files += c.files;
  t.bytes += c.bytes;
};
const nonEmpty = (s: unknown): s is string => typeof s === 'string' && s.trim() !== '';

/** Why an exclusion does not count, or undefined when it does. Pure. */
export function exclusionProblem(e: CoverageExclusion): string | undefined {
  if (!nonEmpty(e.reason)) return `the exclusion of ${e.path} (${e.source}) gives no reason, so it excludes nothing`;
  if (e.source === 'runbook' && !nonEmpty(e.by)) return `the runbook's exclusion of ${e.path} does not say who decided it, so it excludes nothing`;
  return undefined;
}

function judgeClass(c: CoverageClass, view: JudgeView): { kind: 'owned' | 'covered' | 'excluded' | 'uncovered'; reasons: string[]; evidence: string[] } {
  const reasons: string[] = [];
  if (c.owner) {
    const p = view.ownerProblem(c.owner);
    if (!p) return { kind: 'owned', reasons, evidence: [c.owner] };
    reasons.push(p);
  }
  const counted = c.holders.filter((h) => view.holderProblem(h) === undefined);
  if (counted.length > 0) return { kind: 'covered', reasons, evidence: counted };
  for (const h of c.holders) reasons.push(view.holderProblem(h) as string);
  if (c.exclusion) {
    const p = exclusionProblem(c.exclusion);
    if (!p) return { kind: 'excluded', reasons, evidence: [] };
    reasons.push(p);
  }
  if (!c.owner && c.holders.length === 0 && !c.exclusion) reasons.push('no artifact holds them and no exclusion names them');
  return { kind: 'uncovered', reasons, evidence: [] };
}

/** One verdict per volume of the map, in the map's order. Pure. */
export function judgeCoverage(map: CoverageMap, view: JudgeView): VolumeVerdict[] {
  const out = new Map<string, VolumeVerdict & { uncoveredGroups: CoverageGroup[][]; onlyGroups: CoverageGroup[][] }>();
  for (const v of map.volumes) {
    out.set(v, {
      volume: v,
      files: 0,
      bytes: 0,
      covered: tally(),
      owned: tally(),
      excluded: { ...tally(), bySource: { 'built-in': tally(), runbook: tally(), rubicon: tally() }, entries: [] },
      uncovered: { ...tally(), groups: [], reasons: [] },
      onlyEverything: { ...tally(), groups: [] },
      evidence: [],
      uncoveredGroups: [],
      onlyGroups: [],
    });
  }
  for (const c of map.classes) {
    const v = out.get(c.volume);
    if (!v) continue;
    add(v, c);
    const j = judgeClass(c, view);
    for (const e of j.evidence) if (!v.evidence.includes(e)) v.evidence.push(e);
    if (j.kind === 'owned') add(v.owned, c);
    else if (j.kind === 'covered') {
      add(v.covered, c);
      if (j.evidence.every((a) => view.isEverything(a))) {
        add(v.onlyEverything, c);
        v.onlyGroups.push(c.groups);
      }
    } else if (j.kind === 'excluded') {
      const e = c.exclusion as CoverageExclusion;
      add(v.excluded, c);
      add(v.excluded.bySource[e.source], c);
      const have = v.excluded.entries.find((x) => x.path === e.path && x.source === e.source);
      if (have) add(have, c);
      else v.excluded.entries.push({ ...e, files: c.files, bytes: c.bytes });
    } else {
      add(v.uncovered, c);
      v.uncoveredGroups.push(c.groups);
      for (const r of j.reasons) if (!v.uncovered.reasons.includes(r)) v.uncovered.reasons.push(r);
    }
  }
  return [...out.values()].map(({ uncoveredGroups, onlyGroups, ...v }) => ({
    ...v,
    uncovered: { ...v.uncovered, groups: mergeGroups(uncoveredGroups) },
    onlyEverything: { ...v.onlyEverything, groups: mergeGroups(onlyGroups) },
  }));
}

/** "practice-docs/ 1 file, 14 KiB; ./ 1 file, 2 KiB (root-notes.txt)". Pure. */
export function describeGroups(groups: CoverageGroup[], max = 5, fmt: (n: number) => string = formatBytes): string {
  const shown = groups.slice(0, max).map((g) => `${g.folder} ${g.files} file${g.files === 1 ? '' : 's'}, ${fmt(g.bytes)} (${g.first.slice(0, 3).join(', ')}${g.files > 3 ? ', …' : ''})`);
  return `${shown.join('; ')}${groups.length > max ? `; and ${groups.length - max} more folder(s)` : ''}`;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
