import type { Artifact, Copy, Item, Proof } from '../core/types.ts';

/**
 * Small pure readers over recorded facts, shared by the gate and the
 * checklist. "Newest" always means later in the array, i.e. later in the
 * journal: recorded order is trusted, recorded clocks are not.
 */

/**
 * The newest artifact per (itemId, method), by array (journal) order. The
 * result keeps the array order of the winners. A final-capture artifact
 * therefore supersedes the capture-phase artifact of the same method.
 */
export function currentArtifacts(artifacts: readonly Artifact[]): Artifact[] {
  const newest = new Map<string, number>();
  artifacts.forEach((a, i) => newest.set(`${a.itemId}\u0000${a.method}`, i));
  return [...newest.values()].sort((x, y) => x - y).map((i) => artifacts[i] as Artifact);
}

/** The newest proof recorded for an artifact (array order), or undefined when it was never proven. */
export function latestProof(proofs: readonly Proof[], artifactId: string): Proof | undefined {
  for (let i = proofs.length - 1; i >= 0; i--) {
    const p = proofs[i] as Proof;
    if (p.artifactId === artifactId) return p;
  }
  return undefined;
}

/** The newest copy check per vault for an artifact, in order of each vault's first appearance. */
export function latestCopies(copies: readonly Copy[], artifactId: string): Copy[] {
  const byVault = new Map<string, Copy>();
  for (const c of copies) if (c.artifactId === artifactId) byVault.set(c.vault, c);
  return [...byVault.values()];
}

/** Vault names whose newest copy check of the artifact is 'ok'. Any other status never counts. */
export function okVaults(copies: readonly Copy[], artifactId: string): string[] {
  return latestCopies(copies, artifactId)
    .filter((c) => c.status === 'ok')
    .map((c) => c.vault);
}

/**
 * A proof counts as passed only when its outcome says so AND it has at least
 * one check AND every check passed. A skipped check is never a success, and
 * an outcome flag contradicted by its own checks is not believed.
 */
export function proofPassed(proof: Proof | undefined): boolean {
  if (!proof || proof.outcome !== 'passed') return false;
  const checks = Array.isArray(proof.checks) ? proof.checks : [];
  return checks.length > 0 && checks.every((c) => c.status === 'passed');
}

/**
 * A declared item that discovery did not find: declared, not discovered, and
 * marked `facts.missing === true` by discovery. (A declared item that
 * discovery did not list but did not mark missing is treated as found; its
 * capture rules then decide.)
 */
export function isMissing(item: Item): boolean {
  return item.declared && !item.discovered && item.facts?.['missing'] === true;
}

const ISO_WITH_ZONE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/**
 * Milliseconds since the epoch for an ISO-8601 time WITH a zone (`Z` or
 * `±hh:mm`), NaN for anything else — including impossible calendar dates
 * (`2025-02-30`), which Date.parse would silently roll over. A time without a
 * zone is ambiguous (it would be read as the local time of whoever evaluates
 * it) and is refused like garbage: callers must treat NaN as "unknown", and
 * unknown never passes.
 */
export function parseIsoTime(value: unknown): number {
  if (typeof value !== 'string') return Number.NaN;
  const m = ISO_WITH_ZONE.exec(value);
  if (!m) return Number.NaN;
  const [y, mo, d, h, mi, s = '0', , oh = '0', om = '0'] = m.slice(1);
  const n = (x: string | undefined): number => Number(x);
  const daysInMonth = new Date(Date.UTC(n(y), n(mo), 0)).getUTCDate();
  if (n(mo) < 1 || n(mo) > 12 || n(d) < 1 || n(d) > daysInMonth) return Number.NaN;
  if (n(h) > 23 || n(mi) > 59 || n(s) > 59 || n(oh) > 23 || n(om) > 59) return Number.NaN;
  return Date.parse(value);
}
