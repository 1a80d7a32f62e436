/**
 * Plain findings about a run, for people at the end of it (the terminal's
 * closing lines and the summary's `findings`). Pure: read from the run
 * state, no effects.
 */
import type { RunState } from '../core/state.ts';

/** What a damaged source database says when it is read (SQLite; SQL Server's DBCC wording). */
const DAMAGED = /malformed|SQLITE_CORRUPT|SQLITE_NOTADB|file is not a database|integrity_check|consistency errors|Msg 824|Msg 8928/i;

/**
 * A production database that is itself damaged: every capture of it failed
 * on a damaged read, or every artifact of it (Rubicon's independent methods
 * included) failed its integrity check. Then nothing can be proven and the
 * fix is on the source, not in Rubicon: one plain sentence per database.
 */
export function damagedSources(s: RunState): string[] {
  const out: string[] = [];
  for (const item of s.items.filter((i) => i.kind === 'database')) {
    const failures = s.captureFailures.filter((f) => f.itemId === item.id);
    const artifacts = s.artifacts.filter((a) => a.itemId === item.id);
    const where = item.location ? ` (${item.location})` : '';
    if (artifacts.length === 0 && failures.length > 0 && failures.every((f) => DAMAGED.test(f.message))) {
      const first = failures[0]!.message.replace(/^.*?: (?=[^:]*$)/, '');
      out.push(
        `The production database ${item.name}${where} is itself damaged: every capture of it (${failures.map((f) => f.method).join(', ')}) failed reading it (${first}). Nothing can be proven. Fix the source before upgrading: check it with its engine (PRAGMA integrity_check for SQLite) and restore it from a good backup.`,
      );
      continue;
    }
    const ours = artifacts.filter((a) => a.origin !== 'vendor');
    const proofs = ours.map((a) => s.proofs.filter((p) => p.artifactId === a.id));
    const integrityFailed = (ps: RunState['proofs']) => ps.length > 0 && ps.every((p) => p.checks.some((c) => c.name === 'integrity' && c.status === 'failed'));
    if (ours.length > 0 && proofs.every(integrityFailed)) {
      out.push(
        `The production database ${item.name}${where} is itself damaged: the integrity check failed on every copy Rubicon made of it (${ours.map((a) => a.method).join(', ')}). Nothing can be proven. Fix the source before upgrading.`,
      );
    }
  }
  return out;
}

/** A reason as a sentence of its own: a capital first letter and a full stop. */
export function asSentence(text: string): string {
  const t = text.trim();
  if (!t) return t;
  const first = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?)]$/.test(first) && !first.endsWith(')') ? first : `${first}.`;
}
