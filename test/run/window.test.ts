import { describe, expect, it } from 'vitest';
import { expectedCrossing, maintenanceWindow, windowLine } from '../../src/run/window.ts';

describe('the maintenance window', () => {
  const earlier = [
    { runId: 'r-20261101-100000-aaaa', target: 'ehr-server', crossingMs: 240_000 },
    { runId: 'r-20261115-100000-bbbb', target: 'ehr-server', crossingMs: 300_000 },
    { runId: 'r-20261120-100000-cccc', target: 'other', crossingMs: 1_000 },
    { runId: 'r-20261125-100000-dddd', target: 'ehr-server', crossingMs: null },
  ];

  it('the crossing: this run\'s, else the newest earlier run of the same target that crossed, else unknown', () => {
    expect(expectedCrossing(90_000, 'ehr-server', earlier)).toEqual({ ms: 90_000, source: 'this run' });
    expect(expectedCrossing(null, 'ehr-server', earlier)).toEqual({ ms: 300_000, source: 'run r-20261115-100000-bbbb' });
    expect(expectedCrossing(null, 'new-server', earlier)).toBeNull();
  });

  it('restores + final capture + crossing, × margin, rounded up to the minute; said in one line', () => {
    const w = maintenanceWindow({ restoreMs: 40_000, checkMs: 20_000, finalCaptureMs: 30_000, unknownItems: [] }, { ms: 300_000, source: 'run r-20261115-100000-bbbb' });
    expect(w.totalMs).toBe(390_000);
    expect(w.withMarginMs).toBe(10 * 60_000); // 585 s → 10 min
    expect(windowLine(w)).toBe('maintenance window: book 10 min (restores 1.0 min + final capture 30.0 s + crossing 5.0 min (measured in run r-20261115-100000-bbbb), ×1.5 margin)');
    const unknown = maintenanceWindow({ restoreMs: 1000, checkMs: 0, finalCaptureMs: null, unknownItems: ['ehr'] }, null);
    expect(unknown.withMarginMs).toBe(60_000);
    expect(windowLine(unknown)).toMatch(/crossing not measured yet: add the rebuild time.*unknown for 1 unproven item\(s\): ehr$/);
  });
});
