/**
 * The crossing's expected duration, for the maintenance window of a run that
 * does not cross itself (a rehearsal of production, a refused upgrade).
 *
 * Contract: reads journals through the state store, never writes; never
 * throws (a journal that cannot be read or fails its hash chain is skipped:
 * an estimate is not worth failing a report for). Looks at the newest
 * `limit` runs started before `runId` (run ids sort by their start time) and
 * takes the newest one of the same target whose crossing started and
 * completed; else the runbook's `target.expectedCrossingMinutes`; else
 * nothing. A measured crossing wins over a stated one: it is evidence.
 */
import { deriveState } from '../core/state.ts';
import type { StateStore } from '../state/store.ts';
import type { CrossingExpectation } from './model.ts';

export async function expectedCrossing(
  store: Pick<StateStore, 'listRuns' | 'readJournal'>,
  opts: { target: string; runId: string; runbookMinutes?: number | undefined; limit?: number },
): Promise<CrossingExpectation | undefined> {
  let ids: string[] = [];
  try {
    ids = (await store.listRuns()).filter((id) => id < opts.runId).sort().reverse().slice(0, opts.limit ?? 50);
  } catch {
    ids = [];
  }
  for (const id of ids) {
    try {
      const s = deriveState(await store.readJournal(id));
      const c = s.crossing;
      if (s.target !== opts.target || !c?.startedAt || !c.completedAt) continue;
      const ms = Date.parse(c.completedAt) - Date.parse(c.startedAt);
      if (Number.isFinite(ms) && ms >= 0) return { ms, source: 'previous-run', runId: id, at: c.completedAt };
    } catch {
      // unreadable or broken journal: not evidence, skip it
    }
  }
  if (opts.runbookMinutes !== undefined && opts.runbookMinutes > 0) return { ms: Math.round(opts.runbookMinutes * 60_000), source: 'runbook' };
  return undefined;
}
