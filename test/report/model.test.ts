import { describe, expect, it } from 'vitest';
import { deriveState } from '../../src/core/state.ts';
import type { JournalRecord } from '../../src/core/events.ts';
import { buildReportModel, describeWindow, formatDuration, formatItemSize, formatTime, itemSize, maintenanceWindow, REPORT_SECTIONS } from '../../src/report/model.ts';
import { expectedCrossing } from '../../src/report/previous.ts';
import { checklistFor, DB_ID, DRIFT_CHANGES, landedStory, refusedStory, rehearsalStory, VENDOR_ENGINE_MESSAGE } from './builders.ts';

const VENDOR = "The vendor's backup job produces backups that cannot be restored.";

describe('buildReportModel: the landed story (SCENARIO.md)', () => {
  const { state, checklist } = landedStory();
  const m = buildReportModel(state, checklist);

  it('has a green headline that tells what happened', () => {
    expect(m.outcome).toBe('landed');
    expect(m.headline.tone).toBe('green');
    expect(m.headline.title).toMatch(/^Landed/);
    expect(m.headline.sentence).toContain('MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest');
    expect(m.headline.sentence).toContain('1 warning');
    expect(m.headline.sentence).toContain('3 file(s) changed after freeze were captured again and proven');
    expect(m.headline.nothingDestroyed).toBe(false);
  });

  it('says the vendor sentence once, with the engine message', () => {
    const vendor = m.plainFailures.filter((f) => f.startsWith(VENDOR));
    expect(vendor).toHaveLength(1);
    expect(vendor[0]).toContain(VENDOR_ENGINE_MESSAGE);
    const vendorProof = m.proofs.find((p) => p.method === 'vendor-job');
    expect(vendorProof?.outcome).toBe('failed');
    expect(vendorProof?.plain).toContain(VENDOR);
    expect(m.plainFailures).toHaveLength(1);
  });

  it('lists declared and found-not-declared items with why they matter', () => {
    expect(m.counts).toMatchObject({ items: 7, declared: 4, foundNotDeclared: 3, missing: 0 });
    const fnd = m.items.filter((i) => i.foundNotDeclared).map((i) => i.name);
    expect(fnd).toEqual(['ehr/X', 'ehr/Y', 'ehr/Z']);
    const x = m.items.find((i) => i.name === 'ehr/X')!;
    expect(x.notes).toContain('found, not declared');
    expect(x.why.join(' ')).toContain('referenced by ehr/A/app.ini');
    expect(x.facts).toContainEqual({ key: 'bytes', label: 'size', value: '700 MiB' });
    expect(m.items.find((i) => i.name === 'ehr/A')!.foundNotDeclared).toBe(false);
  });

  it('shows per artifact: vault restored from, checks with durations, fingerprint agreement', () => {
    const db = m.items.find((i) => i.id === DB_ID)!;
    expect(db.artifacts.map((a) => [a.method, a.origin, a.proven])).toEqual([
      ['vendor-job', 'vendor', false],
      ['sqlite-backup-api', 'rubicon', true],
      ['sql-text-dump', 'rubicon', true],
    ]);
    const dump = db.artifacts[2]!.proofs[0]!;
    expect(dump.vault).toBe('offsite');
    expect(dump.checks.find((c) => c.name === 'restore')).toMatchObject({ status: 'passed', durationMs: 9100, mark: '✔' });
    expect(dump.fingerprint).toMatchObject({ tables: 4, rows: 17_500, agreesWithSource: true, agreesWithPeers: true });
    expect(db.artifacts[0]!.copies.map((c) => `${c.vault}:${c.status}`)).toEqual(['nas:ok', 'offsite:ok']);
  });

  it('lists drift after freeze file by file and the final delta', () => {
    expect(m.drift.afterFreeze.map((d) => `${d.itemName}/${d.path}:${d.kind}`)).toEqual([
      'ehr/A/app.ini:modified',
      'ehr/A/forms/intake.xml:modified',
      'ehr/A/import/batch-0042.hl7:added',
    ]);
    expect(m.drift.finalDelta).toHaveLength(1);
    expect(m.drift.finalDelta[0]).toMatchObject({ itemId: 'folder:ehr/A', proven: true, changed: DRIFT_CHANGES });
    expect(m.drift.beforeGate).toEqual([]);
    expect(m.counts.driftChanges).toBe(3);
  });

  it('carries every gate rule with its evidence, the permit and the crossing', () => {
    expect(m.gate?.passed).toBe(true);
    expect(m.gate?.rules.map((r) => r.rule)).toEqual(
      expect.arrayContaining(['database.independent-methods', 'database.vendor-artifact', 'copies.vaults', 'drift.none', 'proofs.fresh', 'rollback.exists']),
    );
    const warn = m.gate!.rules.find((r) => r.status === 'warn')!;
    expect(warn).toMatchObject({ rule: 'database.vendor-artifact', itemName: 'ehr', mark: '⚠' });
    expect(warn.evidence[0]).toContain('vendor-job');
    expect(m.counts).toMatchObject({ rulesPass: 12, rulesWarn: 1, rulesFail: 0 });
    expect(m.permit).toMatchObject({ id: 'permit-7f3a', proofCount: 10 });
    expect(m.permit?.proofSetHash).toMatch(/^[0-9a-f]{64}$/);
    expect(m.crossing?.durationMs).toBe(95_000);
    expect(m.rollbackPoint?.released).toBe(true);
  });

  it('reports the landing validation per item', () => {
    expect(m.landing).toMatchObject({ passed: 7, failed: 0, validated: true });
    expect(m.landing.items.find((l) => l.itemName === 'ehr/A')?.checks[0]?.detail).toContain('3 changed after freeze');
  });

  it('builds a timeline whose shares follow the measured durations', () => {
    const phases = m.timeline.phases;
    expect(phases.map((p) => p.phase)).toEqual(['discover', 'capture', 'prove', 'freeze', 'final-capture', 'gate', 'crossing', 'landing']);
    // The report phase is the writing of this report: never in its own timeline, never "not finished".
    expect(phases.every((p) => p.completed && !p.stopped)).toBe(true);
    const sum = phases.reduce((n, p) => n + p.fraction, 0);
    expect(sum).toBeCloseTo(1, 9);
    const crossing = phases.find((p) => p.phase === 'crossing')!;
    expect(crossing.fraction).toBeCloseTo(crossing.durationMs / m.timeline.totalMs, 12);
    expect(crossing.durationMs).toBeGreaterThan(95_000);
  });

  it('estimates the maintenance window from measured restore durations', () => {
    const e = m.estimate;
    const db = e.lines.find((l) => l.itemId === DB_ID)!;
    // the slowest passing database proof is the SQL dump (×1.3): restore 9.1 s
    expect(db.restoreMs).toBe(9100);
    expect(db.proofIds).toEqual([`${'r-20250308-0100'}.capture.${DB_ID}.sql-text-dump.proof.offsite`]);
    // the drifted folder counts its capture and its final delta
    expect(e.lines.find((l) => l.itemId === 'folder:ehr/A')!.proofIds).toHaveLength(2);
    expect(e.restoreMs).toBe(e.lines.reduce((n, l) => n + l.restoreMs, 0));
    expect(e.crossingMs).toBe(95_000);
    expect(e.totalMs).toBe(e.restoreMs + e.checkMs + (e.finalCaptureMs ?? 0) + 95_000);
    expect(e.withMarginMs).toBeGreaterThanOrEqual(e.totalMs * e.margin);
    expect(e.withMarginMs % 60_000).toBe(0);
    expect(e.unknownItems).toEqual([]);
  });

  it('maps the evidence to the HIPAA sections without overclaiming', () => {
    expect(m.hipaa.map((h) => h.section)).toEqual([
      '§164.308(a)(7)(ii)(A)',
      '§164.308(a)(7)(ii)(D)',
      '§164.310(d)(2)(iv)',
      '§164.312(c)(1), (c)(2)',
      '§164.312(b)',
    ]);
    expect(m.hipaa.every((h) => h.status === 'evidence')).toBe(true);
    expect(m.hipaa[1]!.evidence.join(' ')).toContain(VENDOR);
    for (const h of m.hipaa) for (const s of h.see) expect(REPORT_SECTIONS).toContain(s);
    expect(JSON.stringify(m.hipaa)).not.toMatch(/\bcompliant\b/i);
  });

  it('is pure and deterministic', () => {
    const before = JSON.stringify(state);
    const again = buildReportModel(state, checklist);
    expect(again).toEqual(m);
    expect(JSON.stringify(state)).toBe(before);
    expect(m.generatedAt).toBe(state.finishedAt);
  });
});

describe('buildReportModel: refused', () => {
  const { state, checklist } = refusedStory();
  const m = buildReportModel(state, checklist);

  it('says at the top that the gate refused, why, and that nothing was destroyed', () => {
    expect(m.outcome).toBe('refused');
    expect(m.headline.tone).toBe('red');
    expect(m.headline.title).toMatch(/^Refused/);
    expect(m.headline.sentence).toContain('0 of 2 required independent methods proven');
    expect(m.headline.nothingDestroyed).toBe(true);
    expect(m.crossing).toBeUndefined();
    expect(m.permit).toBeUndefined();
    expect(m.run.exitCode).toBe(2);
  });

  it('names every failed database artifact in plain words', () => {
    expect(m.counts.proofsFailed).toBe(3);
    expect(m.plainFailures.filter((f) => f.startsWith(VENDOR))).toHaveLength(1);
    expect(m.plainFailures.filter((f) => f.startsWith("Rubicon's own"))).toHaveLength(2);
    expect(m.plainFailures.some((f) => f.startsWith('Gate rule database.independent-methods failed'))).toBe(true);
    expect(m.items.find((i) => i.id === DB_ID)).toMatchObject({ status: 'failed', mark: '✘' });
  });

  it('leaves the database out of the estimate and says so; HIPAA shows the gaps', () => {
    expect(m.estimate.unknownItems).toEqual(['ehr']);
    expect(m.estimate.lines.some((l) => l.itemId === DB_ID)).toBe(false);
    expect(m.hipaa.find((h) => h.section === '§164.308(a)(7)(ii)(D)')?.status).toBe('partial');
    expect(m.hipaa.find((h) => h.section === '§164.310(d)(2)(iv)')?.evidence.join(' ')).toContain('refused');
  });
});

describe('buildReportModel: rehearsal', () => {
  const { state, checklist } = rehearsalStory();
  const m = buildReportModel(state, checklist);

  it('is amber, untouched, and predicts the window without a measured rebuild', () => {
    expect(m.outcome).toBe('rehearsed');
    expect(m.headline.tone).toBe('amber');
    expect(m.headline.title).toMatch(/^Rehearsal/);
    expect(m.headline.nothingDestroyed).toBe(true);
    expect(m.gate).toBeUndefined();
    expect(m.timeline.phases.map((p) => p.phase)).toEqual(['discover', 'capture', 'prove']);
    expect(m.estimate.crossingMs).toBeNull();
    expect(m.estimate.crossing).toMatchObject({ ms: null, source: 'unknown' });
    expect(m.estimate.finalCaptureMs).toBeNull();
    expect(m.estimate.assumptions.join(' ')).toContain('The rebuild itself (crossing) is not included');
    expect(m.estimate.assumptions.join(' ')).toContain('target.expectedCrossingMinutes');
    expect(m.estimate.lines).toHaveLength(7);
    expect(m.estimate.totalMs).toBe(m.estimate.restoreMs + m.estimate.checkMs);
  });
});

describe('buildReportModel: partial runs and redaction', () => {
  it('reports a run that stopped mid-phase, with the running phase measured to the last entry', () => {
    const { records } = landedStory();
    const cut = records.findIndex((r) => r.event.type === 'phase.started' && r.event.phase === 'prove');
    const state = deriveState(records.slice(0, cut + 3));
    const m = buildReportModel(state, []);
    expect(m.outcome).toBe('in-progress');
    expect(m.headline.tone).toBe('amber');
    expect(m.headline.nothingDestroyed).toBe(true);
    const prove = m.timeline.phases.at(-1)!;
    expect(prove).toMatchObject({ phase: 'prove', completed: false });
    expect(prove.durationMs).toBe(Date.parse(state.updatedAt) - Date.parse(prove.startedAt));
    // items not on the (empty) checklist are still reported
    expect(m.items).toHaveLength(7);
  });

  it('redacts secrets that slipped into engine messages and commands', () => {
    const { state, checklist } = refusedStory();
    const leaky = structuredClone(state);
    leaky.proofs[0]!.checks[1]!.detail = 'Login failed; Server=db;User Id=sa;Password=Winter2025!;';
    leaky.artifacts[0]!.provenance.command = 'backup.cmd https://acct.blob.core.windows.net/c?sig=SECRETSIG';
    const json = JSON.stringify(buildReportModel(leaky, checklist));
    expect(json).not.toContain('Winter2025!');
    expect(json).not.toContain('SECRETSIG');
    expect(json).toContain('Password=[redacted]');
  });

  it('formats durations and times for people', () => {
    expect(formatDuration(420)).toBe('420 ms');
    expect(formatDuration(9100)).toBe('9.1 s');
    expect(formatDuration(95_000)).toBe('1 min 35 s');
    expect(formatDuration(3 * 3600_000 + 5 * 60_000)).toBe('3 h 5 min');
    expect(formatTime('2025-03-08T01:00:04.500Z')).toBe('2025-03-08 01:00:04 UTC');
    expect(formatTime('not a time')).toBe('not a time');
  });
});

describe('buildReportModel: 3-2-1-1-0 and encryption per vault', () => {
  it('gives each found item its tally from its copies (two filesystem vaults: one medium, nothing off-site or immutable)', () => {
    const { state, checklist } = landedStory();
    state.vaults = state.vaults.map((v) => ({ ...v, kind: 'filesystem' as const, immutable: false }));
    const m = buildReportModel(state, checklist);
    const x = m.items.find((i) => i.name === 'ehr/X')!;
    expect(x.rule32110.holds).toBe(false);
    expect(x.rule32110.text).toContain('3 copies (the source + 2 vaults');
    expect(x.rule32110.text).toContain('1 media (disk)');
    expect(x.rule32110.text).toContain('missing: 1 of 2 kinds of media; no off-site copy; no immutable or offline copy');
  });

  it('holds once the second vault is an immutable Azure container, and the HIPAA backup section names encryption per vault', () => {
    const { state, checklist } = landedStory();
    const second = state.vaults[1]!.name;
    state.vaults = state.vaults.map((v) => (v.name === second ? { ...v, kind: 'azure-blob' as const, immutable: true, encrypted: true } : { ...v, encrypted: false }));
    const m = buildReportModel(state, checklist);
    const x = m.items.find((i) => i.name === 'ehr/X')!;
    expect(x.rule32110).toMatchObject({ holds: true });
    const backup = m.hipaa.find((h) => h.section === '§164.308(a)(7)(ii)(A)')!;
    expect(backup.evidence[0]).toContain(`${second} (azure-blob, off the target, immutable, encrypted at rest)`);
    expect(backup.evidence[0]).toContain('not encrypted at rest');
  });
});

describe('issue 14: the real size of an item, a timeline without the report, the window with the expected crossing', () => {
  const art = (over: Partial<Parameters<typeof itemSize>[2][number]>) => ({
    id: 'a1',
    origin: 'rubicon' as const,
    phase: 'capture' as const,
    bytes: 1_607_270,
    fileCount: 1,
    capturedAt: '2025-03-08T01:00:10.000Z',
    ...over,
  });

  it("itemSize: the vendor's output folder, empty at discovery, shows what its capture held", () => {
    const s = itemSize('folder', { bytes: 0, files: 0, lastChange: null }, [art({})]);
    expect(s).toMatchObject({ bytes: 1_607_270, files: 1, source: 'capture', artifactId: 'a1' });
    expect(s.atDiscovery).toBe('discovery, before the capture, measured 0 B in 0 file(s); the capture took 1.5 MiB in 1 file(s)');
    expect(formatItemSize(s)).toEqual({ size: '1.5 MiB', files: '1' });
  });

  it('itemSize: the newest whole copy counts; a final delta and a vendor artifact do not; a database keeps its discovered size', () => {
    const arts = [
      art({ id: 'old', bytes: 10, fileCount: 1, capturedAt: '2025-03-08T01:00:00.000Z' }),
      art({ id: 'new', bytes: 20, fileCount: 2, capturedAt: '2025-03-08T02:00:00.000Z' }),
      art({ id: 'delta', phase: 'final-capture', bytes: 5, fileCount: 1, capturedAt: '2025-03-08T03:00:00.000Z' }),
      art({ id: 'vendor', origin: 'vendor', bytes: 99, fileCount: 9, capturedAt: '2025-03-08T04:00:00.000Z' }),
    ];
    expect(itemSize('folder', { bytes: 20, files: 2 }, arts)).toEqual({ bytes: 20, files: 2, source: 'capture', artifactId: 'new' });
    expect(itemSize('database', { bytes: 2_678_784 }, [art({ bytes: 4_551_220 })])).toEqual({ bytes: 2_678_784, files: null, source: 'discovery' });
    expect(itemSize('folder', {}, [])).toEqual({ bytes: null, files: null, source: 'unknown' });
    expect(formatItemSize(itemSize('folder', {}, []))).toEqual({ size: '—', files: '—' });
  });

  it('the model: the checklist size comes from the capture, and discovery\'s differing numbers are labelled as such', () => {
    const { state } = landedStory();
    const id = 'folder:mssql/backup';
    const item = state.items.find((i) => i.id === id)!;
    item.facts = { ...item.facts, bytes: 0, files: 0 }; // as discovery saw it before the vendor's job wrote its backup
    const m = buildReportModel(state, checklistFor(state));
    const r = m.items.find((i) => i.id === id)!;
    const a = r.artifacts.find((x) => x.phase === 'capture' && x.origin === 'rubicon')!;
    expect(r.size).toMatchObject({ bytes: a.bytes, files: a.fileCount, source: 'capture' });
    expect(a.bytes).toBeGreaterThan(0);
    expect(r.facts.find((f) => f.key === 'bytes')).toEqual({ key: 'bytes', label: 'size at discovery', value: '0 B' });
  });

  it('the timeline: a phase the run stopped in is "stopped", the report phase is never there', () => {
    const { records } = landedStory();
    // Cut right after prove started, then end the run there (as a failure does).
    const cut = records.findIndex((r) => r.event.type === 'phase.started' && r.event.phase === 'prove');
    const state = { ...deriveState(records.slice(0, cut + 1)), outcome: 'failed' as const };
    state.phases = [...state.phases, { phase: 'report', startedAt: state.updatedAt }];
    const m = buildReportModel(state, []);
    expect(m.timeline.phases.map((p) => [p.phase, p.completed, p.stopped])).toEqual([
      ['discover', true, false],
      ['capture', true, false],
      ['prove', false, true],
    ]);
  });

  it('maintenanceWindow: a rehearsal counts the crossing a previous run measured, or the runbook\'s figure; this run\'s own wins', () => {
    const { state, checklist } = rehearsalStory();
    const bare = buildReportModel(state, checklist).estimate;
    const prev = buildReportModel(state, checklist, { expectedCrossing: { ms: 300_000, source: 'previous-run', runId: 'r-1', at: '2025-03-01T02:00:00.000Z' } }).estimate;
    expect(prev.crossing).toEqual({ ms: 300_000, source: 'previous-run', runId: 'r-1', text: 'expected: measured in run r-1 of 2025-03-01 02:00:00 UTC' });
    expect(prev.totalMs).toBe(bare.totalMs + 300_000);
    expect(prev.withMarginMs).toBe(Math.ceil((prev.totalMs * 1.5) / 60_000) * 60_000);
    expect(describeWindow(prev)).toContain('rebuild 5 min (expected: measured in run r-1 of 2025-03-01 02:00:00 UTC)');
    const rb = buildReportModel(state, checklist, { expectedCrossing: { ms: 20 * 60_000, source: 'runbook' } }).estimate;
    expect(rb.crossing).toMatchObject({ ms: 1_200_000, source: 'runbook' });
    expect(describeWindow(rb)).toContain('rebuild 20 min (expected: as the runbook states (target.expectedCrossingMinutes))');
    // The same pure function the model uses, called directly, gives the same window.
    const direct = maintenanceWindow({
      items: buildReportModel(state, checklist).items,
      proofs: buildReportModel(state, checklist).proofs,
      finalCaptureMs: null,
      crossingMs: null,
      expectedCrossing: { ms: 20 * 60_000, source: 'runbook' },
      landingActualMs: null,
    });
    expect(direct).toEqual(rb);
    // A run that crossed counts its own measured crossing, whatever it is handed.
    const landed = landedStory();
    const own = buildReportModel(landed.state, landed.checklist, { expectedCrossing: { ms: 1, source: 'runbook' } }).estimate;
    expect(own.crossing).toMatchObject({ ms: 95_000, source: 'this-run' });
  });

  it('expectedCrossing: the newest earlier run of the same target that crossed; else the runbook; broken journals skipped', async () => {
    const landed = landedStory().records; // target ehr-srv01, crossed for 95 s or more
    const rehearsal = rehearsalStory().records;
    const journals: Record<string, JournalRecord[] | Error> = {
      'r-20250301-0100': landed,
      'r-20250302-0100': rehearsal,
      'r-20250303-0100': new Error('JOURNAL_CORRUPT'),
      'r-20250309-0100': landed, // later than the run asking: not a previous run
    };
    const store = {
      listRuns: async () => Object.keys(journals),
      readJournal: async (id: string) => {
        const j = journals[id]!;
        if (j instanceof Error) throw j;
        return j;
      },
    };
    const got = await expectedCrossing(store, { target: 'ehr-srv01', runId: 'r-20250308-0100', runbookMinutes: 45 });
    const s = deriveState(landed);
    expect(got).toEqual({ ms: Date.parse(s.crossing!.completedAt!) - Date.parse(s.crossing!.startedAt!), source: 'previous-run', runId: 'r-20250301-0100', at: s.crossing!.completedAt });
    expect(await expectedCrossing(store, { target: 'another-server', runId: 'r-20250308-0100', runbookMinutes: 45 })).toEqual({ ms: 2_700_000, source: 'runbook' });
    expect(await expectedCrossing(store, { target: 'another-server', runId: 'r-20250308-0100' })).toBeUndefined();
  });
});
