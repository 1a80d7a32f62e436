/**
 * The maintenance window to book: the rehearsal's measured restore (and
 * check) durations, the final capture, and the crossing's expected duration
 * (this run's if it crossed, else the newest measured crossing of the same
 * target in an earlier run, else unknown and said so), times a margin.
 *
 * Pure. The terminal (src/cli/main.ts, via the summary's `window`) and the
 * report are meant to show the same numbers by calling `maintenanceWindow`
 * and `windowLine` with the report model's estimate (src/report/model.ts
 * `WindowEstimate`: restoreMs, checkMs, finalCaptureMs, crossingMs,
 * unknownItems).
 */

/** A crossing measured in some run: its duration and where the number comes from. */
export interface CrossingExpectation {
  ms: number;
  /** "this run" or "run r-…" (the earlier run it was measured in). */
  source: string;
}

/** The facts of an earlier run of the same target that matter here. */
export interface EarlierCrossing {
  runId: string;
  target: string;
  /** Measured crossing phase duration; null when that run did not cross. */
  crossingMs: number | null;
}

/**
 * This run's crossing, or the newest earlier one of the same target (run ids
 * sort by time), or null.
 */
export function expectedCrossing(thisRunMs: number | null, target: string, earlier: readonly EarlierCrossing[]): CrossingExpectation | null {
  if (thisRunMs !== null) return { ms: thisRunMs, source: 'this run' };
  const prev = [...earlier].filter((r) => r.target === target && r.crossingMs !== null).sort((a, b) => b.runId.localeCompare(a.runId))[0];
  return prev ? { ms: prev.crossingMs!, source: `run ${prev.runId}` } : null;
}

export interface MaintenanceWindow {
  restoresMs: number;
  finalCaptureMs: number | null;
  crossing: CrossingExpectation | null;
  /** The known parts added up. */
  totalMs: number;
  /** totalMs × margin, rounded up to the minute: what to book. */
  withMarginMs: number;
  margin: number;
  unknownItems: string[];
}

export function maintenanceWindow(
  e: { restoreMs: number; checkMs: number; finalCaptureMs: number | null; unknownItems: readonly string[] },
  crossing: CrossingExpectation | null,
  margin = 1.5,
): MaintenanceWindow {
  const restoresMs = e.restoreMs + e.checkMs;
  const totalMs = restoresMs + (e.finalCaptureMs ?? 0) + (crossing?.ms ?? 0);
  return {
    restoresMs,
    finalCaptureMs: e.finalCaptureMs,
    crossing,
    totalMs,
    withMarginMs: Math.max(60_000, Math.ceil((totalMs * margin) / 60_000) * 60_000),
    margin,
    unknownItems: [...e.unknownItems],
  };
}

const secs = (ms: number) => (ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`);

/** One line for people, the same wherever it is shown. */
export function windowLine(w: MaintenanceWindow): string {
  const parts = [`restores ${secs(w.restoresMs)}`];
  if (w.finalCaptureMs !== null) parts.push(`final capture ${secs(w.finalCaptureMs)}`);
  parts.push(w.crossing ? `crossing ${secs(w.crossing.ms)} (measured in ${w.crossing.source})` : 'crossing not measured yet: add the rebuild time');
  const unknown = w.unknownItems.length ? `; unknown for ${w.unknownItems.length} unproven item(s): ${w.unknownItems.slice(0, 3).join(', ')}${w.unknownItems.length > 3 ? ', …' : ''}` : '';
  return `maintenance window: book ${Math.round(w.withMarginMs / 60_000)} min (${parts.join(' + ')}, ×${w.margin} margin)${unknown}`;
}
