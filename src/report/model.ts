/**
 * The report model: everything any report shows, computed once from the run
 * state (itself derived from the journal) and the checklist rows.
 *
 * Contract: `buildReportModel` is pure and deterministic (no clock, no I/O,
 * no randomness: "generatedAt" is the run's last journal time), never
 * throws on a partial run (a run that stopped anywhere still gets a report),
 * and every string in the result has passed through `redact()`. Renderers
 * (json, markdown, html, junit) only format this model; they decide nothing.
 */
import type { RunOutcome } from '../core/events.ts';
import { describeTally, tally32110 } from '../gate/rule-32110.ts';
import type { LandingState, RunState } from '../core/state.ts';
import type {
  Artifact,
  ChecklistRow,
  ChecklistStatus,
  CopyStatus,
  DriftChange,
  FactValue,
  ItemKind,
  Phase,
  Proof,
  ProofCheck,
  RuleStatus,
  VaultInfo,
} from '../core/types.ts';
import { judgeCoverage, type VolumeVerdict } from '../coverage/judge.ts';
import { currentArtifacts, latestProof, proofPassed } from '../gate/current.ts';
import { redactDeep } from './redact.ts';

export const REPORT_SCHEMA = 'rubicon.report/v1';

/** ✔ good, ✘ bad, ⚠ needs a look (warning, not proven, drifted, pending). */
export type Mark = '✔' | '✘' | '⚠';
/** The headline banner's colour: green landed/verified, red refused/failed, amber rehearsed/not confirmed/in progress. */
export type Tone = 'green' | 'red' | 'amber';

export interface Headline {
  tone: Tone;
  /** Short, e.g. "Landed", "Refused: nothing was destroyed". */
  title: string;
  /** One or two sentences telling what happened. */
  sentence: string;
  /** True while the crossing has not started: the target is untouched. */
  nothingDestroyed: boolean;
}

export interface Counts {
  items: number;
  declared: number;
  foundNotDeclared: number;
  missing: number;
  artifacts: number;
  captureFailures: number;
  copiesOk: number;
  copiesBad: number;
  proofsPassed: number;
  proofsFailed: number;
  driftChanges: number;
  rulesPass: number;
  rulesWarn: number;
  rulesFail: number;
  rulesOverridden: number;
  landingPassed: number;
  landingFailed: number;
}

export interface CopyReport {
  vault: string;
  status: CopyStatus;
  mark: Mark;
  detail?: string;
  checkedAt: string;
}

export interface FingerprintReport {
  digest: string;
  tables: number;
  rows: number;
  /** Restored copy vs. the source at capture time; null when either side is unknown. */
  agreesWithSource: boolean | null;
  /** Restored copy vs. the other passing proofs of the same item; null when there is no peer. */
  agreesWithPeers: boolean | null;
  unhashedColumns: string[];
}

export interface ProofReport {
  id: string;
  artifactId: string;
  itemId: string;
  itemName: string;
  method: string;
  origin: 'rubicon' | 'vendor' | 'unknown';
  /** The phase of the artifact proven: its first capture or the final delta after freeze. */
  phase: 'capture' | 'final-capture' | 'unknown';
  /** The vault the proving ground restored from. */
  vault: string;
  provingGround: string;
  outcome: 'passed' | 'failed';
  mark: Mark;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  bytes: number;
  checks: (ProofCheck & { mark: Mark })[];
  fingerprint?: FingerprintReport;
  /** For a failed proof: the failure in plain words, with the engine's message. */
  plain?: string;
}

export interface ArtifactReport {
  id: string;
  itemId: string;
  method: string;
  origin: 'rubicon' | 'vendor';
  phase: 'capture' | 'final-capture';
  independenceGroup: string;
  tool: string;
  host: string;
  position?: string;
  command?: string;
  capturedAt: string;
  captureMs: number;
  bytes: number;
  fileCount: number;
  manifestHash: string;
  baseArtifactId?: string;
  changed?: DriftChange[];
  copies: CopyReport[];
  proofs: ProofReport[];
  /** true: a passing proof; false: proofs ran and all failed; null: never proven. */
  proven: boolean | null;
}

export interface CaptureFailureReport {
  itemId: string;
  itemName: string;
  method: string;
  artifactId: string;
  code: string;
  message: string;
  plain: string;
}

export interface DriftScanReport {
  itemId: string;
  itemName: string;
  artifactId: string;
  stage: 'freeze' | 'pre-gate' | 'verify';
  scannedAt: string;
  changes: DriftChange[];
}

export interface LandingReport {
  itemId: string;
  itemName: string;
  artifactId: string;
  vault?: string;
  bytes?: number;
  restoreMs?: number;
  outcome?: 'passed' | 'failed';
  mark: Mark;
  checks: { name: string; status: 'passed' | 'failed' | 'skipped'; detail: string; mark: Mark }[];
}

export interface ItemReport {
  id: string;
  kind: ItemKind;
  name: string;
  location: string;
  engine?: string;
  declared: boolean;
  discovered: boolean;
  /** Discovered on the target but not in the runbook: the vendor forgot it. */
  foundNotDeclared: boolean;
  status: ChecklistStatus;
  statusLabel: string;
  mark: Mark;
  notes: string[];
  /**
   * Discovery's facts, formatted. `bytes` and `files` here are what
   * discovery measured; the checklist shows `size` instead.
   */
  facts: { key: string; label: string; value: string }[];
  /**
   * The item's size and file count as the checklist shows them (itemSize()):
   * what Rubicon's own whole copy of it held when there is one, else what
   * discovery measured. A folder the vendor's job writes into is empty at
   * discovery and holds the backup at capture: the capture is the truth.
   */
  size: ItemSize;
  why: string[];
  methods: string[];
  artifacts: ArtifactReport[];
  captureFailures: CaptureFailureReport[];
  drift: DriftScanReport[];
  landing?: LandingReport;
  /** 3-2-1-1-0 over this item's verified copies in this run (src/gate/rule-32110.ts); the gate's rule row is the verdict. */
  rule32110: { holds: boolean; text: string };
}

export interface ItemSize {
  bytes: number | null;
  files: number | null;
  /** 'capture': Rubicon's newest whole copy of a folder or volume (artifactId); 'discovery': the discovered facts; 'unknown': neither. */
  source: 'capture' | 'discovery' | 'unknown';
  artifactId?: string;
  /** When the capture differs from discovery: what discovery measured, said plainly. */
  atDiscovery?: string;
}

export interface RuleReport {
  rule: string;
  itemId?: string;
  itemName?: string;
  status: RuleStatus;
  mark: Mark;
  reason: string;
  evidence: string[];
  override?: { reason: string; by: string };
}

export interface GateReport {
  passed: boolean;
  evaluatedAt: string;
  reasons: string[];
  rules: RuleReport[];
}

export interface PermitReport {
  id: string;
  target: string;
  image: string;
  issuedAt: string;
  expiresAt: string;
  proofSetHash: string;
  proofCount: number;
}

export interface PhaseReport {
  phase: Phase;
  startedAt: string;
  completedAt?: string;
  /** Measured duration; for a phase still running, the time until the last journal entry. */
  durationMs: number;
  completed: boolean;
  /** Not completed and the run has ended: the run stopped in this phase (a failure, an interruption). */
  stopped: boolean;
  /** Share of the run's total phase time, 0..1, for the timeline bar. */
  fraction: number;
}

export interface EstimateLine {
  itemId: string;
  itemName: string;
  /** Proofs counted: the slowest passing proof of the capture and, if any, of the final delta. */
  proofIds: string[];
  restoreMs: number;
  checkMs: number;
  bytes: number;
}

/** The maintenance window, predicted from measured restore durations on the proving ground. */
export interface WindowEstimate {
  lines: EstimateLine[];
  restoreMs: number;
  checkMs: number;
  /** Measured final capture (freeze → delta), when this run did one. */
  finalCaptureMs: number | null;
  /** Measured crossing (rebuild) duration, when this run crossed (upgrade, or rehearsal on staging). */
  crossingMs: number | null;
  /** The rebuild counted in the total: this run's, else the expected one (a previous run's, the runbook's), else unknown (not counted). */
  crossing: { ms: number | null; source: 'this-run' | CrossingExpectation['source'] | 'unknown'; runId?: string; text: string };
  /** Sum of the known parts, items restored one after another. */
  totalMs: number;
  /** totalMs × margin, rounded up to the minute: what to book. */
  withMarginMs: number;
  margin: number;
  /** Measured landing phase of this run, to compare with the prediction. */
  landingActualMs: number | null;
  /** Items with no passing proof: their restore time is unknown and not included. */
  unknownItems: string[];
  assumptions: string[];
}

/** How long the crossing (the rebuild) is expected to take, when this run did not measure it. */
export interface CrossingExpectation {
  ms: number;
  /** 'previous-run': a previous run of the same target measured it (runId, at); 'runbook': target.expectedCrossingMinutes. */
  source: 'previous-run' | 'runbook';
  runId?: string;
  /** When that run's crossing completed. */
  at?: string;
}

/** What `maintenanceWindow` needs: the model's items and proofs, and the measured phases. */
export interface WindowInput {
  items: readonly Pick<ItemReport, 'id' | 'name' | 'kind' | 'location' | 'discovered' | 'artifacts'>[];
  proofs: readonly ProofReport[];
  coverage?: CoverageReport;
  finalCaptureMs: number | null;
  /** This run's measured crossing, or null. */
  crossingMs: number | null;
  expectedCrossing?: CrossingExpectation;
  landingActualMs: number | null;
}

/** Inputs of a report beyond the run's own journal (found by the caller, at the edge). */
export interface ReportOptions {
  /** The crossing's expected duration, for the window estimate of a run that did not cross. */
  expectedCrossing?: CrossingExpectation;
}

/** The sections every rendering has, by id (HTML anchors). */
export const REPORT_SECTIONS = ['summary', 'timeline', 'checklist', 'coverage', 'proofs', 'drift', 'gate', 'crossing', 'estimate', 'hipaa'] as const;
export type ReportSection = (typeof REPORT_SECTIONS)[number];

export type HipaaStatus = 'evidence' | 'partial' | 'gap';

export interface HipaaSection {
  section: string;
  title: string;
  /** What the regulation asks, in short. */
  asks: string;
  status: HipaaStatus;
  mark: Mark;
  /** Sentences naming the evidence in this report that supports the section. */
  evidence: string[];
  /** Where in the report to look: ids of the report's sections. */
  see: ReportSection[];
}

/**
 * Coverage of what the crossing destroys (docs/coverage.md): the scope as
 * the infra driver declared it, every exclusion in force (the built-in list
 * shown), and per volume the newest map judged from this run's proofs and
 * copies: files and bytes in scope, covered, owned by databases, excluded,
 * uncovered (with the first paths by folder), and what only the everything
 * capture holds.
 */
export interface CoverageReport {
  infra: string;
  os: string;
  volumes: { path: string; label: string; fate: 'destroyed' | 'kept'; capture: boolean }[];
  exclusions: { path: string; source: string; reason: string; by?: string; except?: string[] }[];
  /** The newest map, or undefined when none was recorded. */
  map?: { stage: string; mappedAt: string; skipped: number; hashed: number; verdicts: VolumeVerdict[] };
  /** Every file in scope covered, owned or excluded (per the newest map). */
  complete: boolean;
}

/**
 * One `rubicon rollback` of the run (journaled after the run by appendToRun:
 * rollback.started, then rollback.completed or rollback.failed), in the
 * order they were started. `unfinished`: started, no end recorded (the
 * command was killed or is still running): the target's state is unknown.
 */
export interface RollbackReport {
  startedAt: string;
  /** Who confirmed it and how, as journaled: `name (flag)` (--yes) or `name (prompt)`. */
  by: string;
  outcome: 'completed' | 'failed' | 'unfinished';
  /** When it completed or failed. */
  endedAt?: string;
  durationMs?: number;
  /** completed: what the target boots from now: the OS disk the crossing retired, or a disk made from its snapshot. */
  from?: 'retired-os-disk' | 'os-disk-snapshot';
  diskId?: string;
  image?: string;
  /** failed: the typed error (code, message). */
  error?: { code: string; message: string };
  /** One plain sentence: when, by whom, through what, and the outcome. */
  plain: string;
}

export interface ReportModel {
  schema: typeof REPORT_SCHEMA;
  /** The time of the last journal entry the report was built from. */
  generatedAt: string;
  run: {
    id: string;
    command: RunState['command'];
    target: string;
    runbookPath: string;
    runbookHash: string;
    /** Hash of the last journal record the report was built from, and how many records. */
    journalHead: string;
    journalRecords: number;
    rubiconVersion: string;
    host: string;
    startedAt: string;
    finishedAt?: string;
    durationMs: number;
    resumes: number;
    exitCode?: number;
    error?: { code: string; message: string };
  };
  outcome: RunOutcome | 'in-progress';
  headline: Headline;
  /** Everything that went wrong, each in one plain sentence. */
  plainFailures: string[];
  counts: Counts;
  items: ItemReport[];
  vaults: VaultInfo[];
  proofs: ProofReport[];
  captureFailures: CaptureFailureReport[];
  drift: {
    scans: DriftScanReport[];
    /** Changes found after the artifacts were captured (freeze scans), file by file. */
    afterFreeze: (DriftChange & { itemId: string; itemName: string })[];
    /** Changes still present right before the gate (must be none). */
    beforeGate: (DriftChange & { itemId: string; itemName: string })[];
    finalDelta: ArtifactReport[];
  };
  coverage?: CoverageReport;
  gate?: GateReport;
  permit?: PermitReport;
  rollbackPoint?: RunState['rollbackPoint'] & { released: boolean };
  crossing?: {
    image?: string;
    confirmedBy?: string;
    startedAt?: string;
    completedAt?: string;
    durationMs?: number;
  };
  landing: { items: LandingReport[]; passed: number; failed: number; validated: boolean };
  /** Every `rubicon rollback` of this run, oldest first (none: empty). */
  rollbacks: RollbackReport[];
  timeline: { phases: PhaseReport[]; totalMs: number };
  estimate: WindowEstimate;
  hipaa: HipaaSection[];
  manualSteps: RunState['manualSteps'];
  overrides: RunState['overrides'];
  notes: RunState['notes'];
}

// ---------------------------------------------------------------- helpers

/** The item's 3-2-1-1-0 from its artifacts' latest copy checks. Pure. */
function itemTally(arts: ArtifactReport[], vaults: VaultInfo[], sourcePresent: boolean): { holds: boolean; text: string } {
  const byName = new Map(vaults.map((v) => [v.name, v] as const));
  const ok = new Map<string, VaultInfo>();
  const errors: string[] = [];
  for (const a of arts) {
    for (const c of a.copies) {
      const v = byName.get(c.vault);
      if (c.status === 'ok' && v) ok.set(v.name, v);
      else if (c.status !== 'ok') errors.push(`${a.id} in ${c.vault}: ${c.status}`);
    }
  }
  const t = tally32110([...ok.values()], errors, sourcePresent);
  return { holds: t.holds, text: `${describeTally(t, sourcePresent)}${t.holds ? '' : ` (missing: ${t.missing.join('; ')})`}` };
}

const ms = (from: string, to: string): number => Math.max(0, Date.parse(to) - Date.parse(from)) || 0;

/** Printed by every renderer under the headline while the crossing has not started. */
export const NOTHING_DESTROYED = 'Nothing was destroyed: the target was not touched.';

const VENDOR_SENTENCE = "The vendor's backup job produces backups that cannot be restored.";

const STATUS_LABEL: Record<ChecklistStatus, string> = {
  proven: 'proven',
  captured: 'captured, not proven',
  'found-not-declared': 'found, not declared',
  failed: 'failed',
  drifted: 'changed after capture',
  missing: 'declared but not found',
  pending: 'pending',
};

function statusMark(s: ChecklistStatus): Mark {
  if (s === 'proven') return '✔';
  if (s === 'failed' || s === 'missing') return '✘';
  return '⚠';
}

function ruleMark(s: RuleStatus): Mark {
  if (s === 'pass') return '✔';
  if (s === 'fail') return '✘';
  return '⚠';
}

function checkMark(s: 'passed' | 'failed' | 'skipped'): Mark {
  return s === 'passed' ? '✔' : s === 'failed' ? '✘' : '⚠';
}

const SIZE_FACTS = new Set(['bytes', 'size', 'files', 'fileCount']);

const FACT_LABELS: Record<string, string> = {
  bytes: 'size',
  files: 'files',
  fileCount: 'files',
  lastChange: 'last change',
  tables: 'tables',
  rows: 'rows',
};

/** Formats a byte count for people: 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** Formats a duration for people: 750 → "750 ms", 65_000 → "1 min 5 s". */
export function formatDuration(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '—';
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)} s`;
  const totalS = Math.round(n / 1000);
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const s = totalS % 60;
  if (h > 0) return `${h} h ${m} min`;
  return s ? `${m} min ${s} s` : `${m} min`;
}

/** Formats an ISO time for people: "2025-03-08T01:00:04.500Z" → "2025-03-08 01:00:04 UTC"; anything else unchanged. */
export function formatTime(iso: string | undefined): string {
  if (iso === undefined) return '—';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/**
 * The size and file count the checklist shows for an item. Pure.
 *
 * Discovery measures an item before anything runs; the vendor's job writes
 * its backup into its output folder during the capture, so that folder is
 * empty at discovery ("0 B, 0 files") and holds the backup by the time it is
 * copied. For a folder or volume, Rubicon's newest whole copy of it (a
 * first-phase artifact of Rubicon's own; a final delta holds only the
 * changed files) is what the item really held and what the vaults keep; for
 * anything else (a database: its dump is not its size) discovery's facts
 * stay the truth.
 */
export function itemSize(kind: ItemKind, facts: Record<string, FactValue>, artifacts: readonly Pick<ArtifactReport, 'id' | 'origin' | 'phase' | 'bytes' | 'fileCount' | 'capturedAt'>[]): ItemSize {
  const num = (v: FactValue | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const discovered = { bytes: num(facts.bytes ?? facts.size), files: num(facts.files ?? facts.fileCount) };
  const whole =
    kind === 'folder' || kind === 'volume'
      ? artifacts
          .filter((a) => a.origin === 'rubicon' && a.phase === 'capture')
          .reduce<(typeof artifacts)[number] | undefined>((newest, a) => (!newest || a.capturedAt >= newest.capturedAt ? a : newest), undefined)
      : undefined;
  if (whole) {
    const same = discovered.bytes === whole.bytes && discovered.files === whole.fileCount;
    const known = discovered.bytes !== null || discovered.files !== null;
    return {
      bytes: whole.bytes,
      files: whole.fileCount,
      source: 'capture',
      artifactId: whole.id,
      ...(known && !same
        ? {
            atDiscovery: `discovery, before the capture, measured ${discovered.bytes === null ? '—' : formatBytes(discovered.bytes)} in ${discovered.files ?? '—'} file(s); the capture took ${formatBytes(whole.bytes)} in ${whole.fileCount} file(s)`,
          }
        : {}),
    };
  }
  if (discovered.bytes !== null || discovered.files !== null) return { ...discovered, source: 'discovery' };
  return { bytes: null, files: null, source: 'unknown' };
}

/** An item's size and file count as the checklist columns show them: "1.5 MiB", "1"; "—" when unknown. */
export function formatItemSize(size: ItemSize): { size: string; files: string } {
  return { size: size.bytes === null ? '—' : formatBytes(size.bytes), files: size.files === null ? '—' : String(size.files) };
}

function formatFact(key: string, v: FactValue): string {
  if (v === null) return '—';
  if (typeof v === 'string') return formatTime(v);
  if (typeof v === 'number' && (key === 'bytes' || key === 'size')) return formatBytes(v);
  return String(v);
}

function firstFailedDetail(checks: readonly ProofCheck[]): string | undefined {
  return checks.find((c) => c.status === 'failed')?.detail ?? checks.find((c) => c.status === 'skipped')?.detail;
}

/** A failed proof, said plainly. The vendor case uses the sentence SCENARIO.md asks for. */
function plainProofFailure(p: Proof, origin: ProofReport['origin'], itemName: string, method: string): string {
  const detail = firstFailedDetail(p.checks);
  const msg = detail ? ` The restore said: ${detail}` : '';
  if (origin === 'vendor') {
    return `${VENDOR_SENTENCE} Its backup of ${itemName} (method ${method}) failed its proof from vault ${p.vault}.${msg}`;
  }
  return `Rubicon's own ${method} capture of ${itemName} could not be proven from vault ${p.vault}.${msg}`;
}

// ---------------------------------------------------------------- builder

/**
 * Builds the report model. Pure; see the module contract.
 * `checklist` is the checklist of this run (src/inventory/checklist.ts);
 * items in the state but not in the checklist are still reported, after it.
 */
export function buildReportModel(state: RunState, checklist: ChecklistRow[], opts: ReportOptions = {}): ReportModel {
  const generatedAt = state.finishedAt ?? state.updatedAt;
  const itemById = new Map(state.items.map((i) => [i.id, i]));
  const rowById = new Map(checklist.map((r) => [r.itemId, r]));
  const artifactById = new Map(state.artifacts.map((a) => [a.id, a]));
  const nameOf = (itemId: string): string => itemById.get(itemId)?.name ?? rowById.get(itemId)?.name ?? itemId;

  // Proofs, with fingerprint agreement computed against the source and the item's other passing proofs.
  const proofReports: ProofReport[] = state.proofs.map((p) => {
    const art = artifactById.get(p.artifactId);
    const origin: ProofReport['origin'] = art?.origin ?? 'unknown';
    const method = art?.method ?? 'unknown';
    const itemName = nameOf(p.itemId);
    let fingerprint: FingerprintReport | undefined;
    if (p.fingerprint) {
      const src = art?.sourceFingerprint;
      const peers = state.proofs.filter(
        (q) => q.id !== p.id && q.itemId === p.itemId && q.outcome === 'passed' && q.fingerprint,
      );
      fingerprint = {
        digest: p.fingerprint.digest,
        tables: p.fingerprint.tables.length,
        rows: p.fingerprint.tables.reduce((n, t) => n + t.rows, 0),
        agreesWithSource: src ? src.digest === p.fingerprint.digest : null,
        agreesWithPeers: peers.length ? peers.every((q) => q.fingerprint?.digest === p.fingerprint?.digest) : null,
        unhashedColumns: p.fingerprint.tables.flatMap((t) => (t.unhashedColumns ?? []).map((c) => `${t.table}.${c}`)),
      };
    }
    const report: ProofReport = {
      id: p.id,
      artifactId: p.artifactId,
      itemId: p.itemId,
      itemName,
      method,
      origin,
      phase: art?.phase ?? 'unknown',
      vault: p.vault,
      provingGround: p.provingGround,
      outcome: p.outcome,
      mark: p.outcome === 'passed' ? '✔' : '✘',
      startedAt: p.startedAt,
      finishedAt: p.finishedAt,
      durationMs: p.durationMs,
      bytes: p.bytes,
      checks: p.checks.map((c) => ({ ...c, mark: checkMark(c.status) })),
    };
    if (fingerprint) report.fingerprint = fingerprint;
    if (p.outcome === 'failed') report.plain = plainProofFailure(p, origin, itemName, method);
    return report;
  });

  const artifactReport = (a: Artifact): ArtifactReport => {
    const proofs = proofReports.filter((p) => p.artifactId === a.id);
    const r: ArtifactReport = {
      id: a.id,
      itemId: a.itemId,
      method: a.method,
      origin: a.origin,
      phase: a.phase,
      independenceGroup: a.independenceGroup,
      tool: a.provenance.tool,
      host: a.provenance.host,
      capturedAt: a.provenance.finishedAt,
      captureMs: ms(a.provenance.startedAt, a.provenance.finishedAt),
      bytes: a.bytes,
      fileCount: a.fileCount,
      manifestHash: a.manifestHash,
      copies: state.copies
        .filter((c) => c.artifactId === a.id)
        .map((c) => {
          const cr: CopyReport = { vault: c.vault, status: c.status, mark: c.status === 'ok' ? '✔' : '✘', checkedAt: c.checkedAt };
          if (c.detail) cr.detail = c.detail;
          return cr;
        }),
      proofs,
      proven: proofs.length === 0 ? null : proofs.some((p) => p.outcome === 'passed'),
    };
    if (a.provenance.position) r.position = a.provenance.position;
    if (a.provenance.command) r.command = a.provenance.command;
    if (a.baseArtifactId) r.baseArtifactId = a.baseArtifactId;
    if (a.changed) r.changed = a.changed;
    return r;
  };
  const artifactReports = state.artifacts.map(artifactReport);

  const captureFailures: CaptureFailureReport[] = state.captureFailures.map((f) => {
    const itemName = nameOf(f.itemId);
    const vendor = f.method.startsWith('vendor');
    return {
      ...f,
      itemName,
      plain: vendor
        ? `The vendor's backup job failed to produce a backup of ${itemName}: ${f.message}`
        : `Capturing ${itemName} with ${f.method} failed (${f.code}): ${f.message}`,
    };
  });

  const driftScans: DriftScanReport[] = state.driftScans.map((d) => ({
    itemId: d.itemId,
    itemName: nameOf(d.itemId),
    artifactId: d.artifactId,
    stage: d.stage,
    scannedAt: d.scannedAt,
    changes: d.changes,
  }));
  const newestByItem = (stage: DriftScanReport['stage']) => {
    const m = new Map<string, DriftScanReport>();
    for (const d of driftScans) if (d.stage === stage) m.set(d.itemId, d);
    return [...m.values()].flatMap((d) => d.changes.map((c) => ({ ...c, itemId: d.itemId, itemName: d.itemName })));
  };

  const landingReport = (l: LandingState): LandingReport => {
    const r: LandingReport = {
      itemId: l.itemId,
      itemName: nameOf(l.itemId),
      artifactId: l.artifactId,
      mark: l.outcome === 'passed' ? '✔' : l.outcome === 'failed' ? '✘' : '⚠',
      checks: l.checks.map((c) => ({ ...c, mark: checkMark(c.status) })),
    };
    if (l.vault !== undefined) r.vault = l.vault;
    if (l.bytes !== undefined) r.bytes = l.bytes;
    if (l.restoreMs !== undefined) r.restoreMs = l.restoreMs;
    if (l.outcome !== undefined) r.outcome = l.outcome;
    return r;
  };
  const landingItems = state.landing.map(landingReport);

  // Items: checklist order first, then anything the checklist did not list.
  const orderedIds = [...checklist.map((r) => r.itemId), ...state.items.map((i) => i.id).filter((id) => !rowById.has(id))];
  const items: ItemReport[] = orderedIds.map((id) => {
    const row = rowById.get(id);
    const item = itemById.get(id);
    const declared = row?.declared ?? item?.declared ?? false;
    const discovered = row?.discovered ?? item?.discovered ?? false;
    const status: ChecklistStatus = row?.status ?? 'pending';
    const facts = row?.facts ?? item?.facts ?? {};
    const notes = [...(row?.notes ?? [])];
    const foundNotDeclared = discovered && !declared && (row?.kind ?? item?.kind) !== 'volume';
    const size = itemSize(row?.kind ?? item?.kind ?? 'folder', facts, artifactReports.filter((a) => a.itemId === id));
    if (foundNotDeclared && !notes.some((n) => /found, not declared/i.test(n))) notes.unshift('found, not declared');
    const r: ItemReport = {
      id,
      kind: row?.kind ?? item?.kind ?? 'folder',
      name: row?.name ?? item?.name ?? id,
      location: item?.location ?? '',
      declared,
      discovered,
      foundNotDeclared,
      status,
      statusLabel: STATUS_LABEL[status],
      mark: statusMark(status),
      notes,
      facts: Object.entries(facts).map(([key, v]) => ({
        key,
        // When the capture found another size, discovery's own numbers are labelled as what they are.
        label: `${FACT_LABELS[key] ?? key}${size.atDiscovery && SIZE_FACTS.has(key) ? ' at discovery' : ''}`,
        value: formatFact(key, v),
      })),
      size,
      why: row?.why ?? item?.why ?? [],
      methods: item?.methods ?? [],
      artifacts: artifactReports.filter((a) => a.itemId === id),
      captureFailures: captureFailures.filter((f) => f.itemId === id),
      drift: driftScans.filter((d) => d.itemId === id),
      rule32110: itemTally(artifactReports.filter((a) => a.itemId === id), state.vaults, discovered),
    };
    if (item?.engine) r.engine = item.engine;
    const landing = landingItems.find((l) => l.itemId === id);
    if (landing) r.landing = landing;
    return r;
  });

  // Gate, permit, crossing.
  const gate: GateReport | undefined = state.gate && {
    passed: state.gate.passed,
    evaluatedAt: state.gate.evaluatedAt,
    reasons: state.gate.reasons,
    rules: state.gate.results.map((g) => {
      const rr: RuleReport = { rule: g.rule, status: g.status, mark: ruleMark(g.status), reason: g.reason, evidence: g.evidence };
      if (g.itemId) {
        rr.itemId = g.itemId;
        rr.itemName = nameOf(g.itemId);
      }
      if (g.override) rr.override = { reason: g.override.reason, by: g.override.by };
      return rr;
    }),
  };
  const permit: PermitReport | undefined = state.permit && {
    id: state.permit.id,
    target: state.permit.target,
    image: state.permit.image,
    issuedAt: state.permit.issuedAt,
    expiresAt: state.permit.expiresAt,
    proofSetHash: state.permit.proofSetHash,
    proofCount: state.permit.proofIds.length,
  };
  const crossingPhase = state.phases.find((p) => p.phase === 'crossing');
  const crossing: ReportModel['crossing'] = state.crossing && {
    ...state.crossing,
    ...(state.crossing.startedAt && state.crossing.completedAt
      ? { durationMs: ms(state.crossing.startedAt, state.crossing.completedAt) }
      : crossingPhase?.durationMs !== undefined
        ? { durationMs: crossingPhase.durationMs }
        : {}),
  };

  // Timeline.
  // The report phase is the writing of this very report: it is never finished while the report is
  // written, and it is not part of the run's story, so the timeline leaves it out.
  const phaseReports: PhaseReport[] = state.phases
    .filter((p) => p.phase !== 'report')
    .map((p) => ({
      phase: p.phase,
      startedAt: p.startedAt,
      ...(p.completedAt ? { completedAt: p.completedAt } : {}),
      durationMs: p.durationMs ?? ms(p.startedAt, generatedAt),
      completed: p.completedAt !== undefined,
      stopped: p.completedAt === undefined && state.outcome !== undefined,
      fraction: 0,
    }));
  const totalPhaseMs = phaseReports.reduce((n, p) => n + p.durationMs, 0);
  for (const p of phaseReports) p.fraction = totalPhaseMs > 0 ? p.durationMs / totalPhaseMs : 1 / phaseReports.length;

  const counts: Counts = {
    items: items.length,
    declared: items.filter((i) => i.declared).length,
    foundNotDeclared: items.filter((i) => i.foundNotDeclared).length,
    missing: items.filter((i) => i.declared && !i.discovered).length,
    artifacts: state.artifacts.length,
    captureFailures: state.captureFailures.length,
    copiesOk: state.copies.filter((c) => c.status === 'ok').length,
    copiesBad: state.copies.filter((c) => c.status !== 'ok').length,
    proofsPassed: state.proofs.filter((p) => p.outcome === 'passed').length,
    proofsFailed: state.proofs.filter((p) => p.outcome === 'failed').length,
    driftChanges: newestByItem('freeze').length,
    rulesPass: gate?.rules.filter((r) => r.status === 'pass').length ?? 0,
    rulesWarn: gate?.rules.filter((r) => r.status === 'warn').length ?? 0,
    rulesFail: gate?.rules.filter((r) => r.status === 'fail').length ?? 0,
    rulesOverridden: gate?.rules.filter((r) => r.status === 'overridden').length ?? 0,
    landingPassed: landingItems.filter((l) => l.outcome === 'passed').length,
    landingFailed: landingItems.filter((l) => l.outcome === 'failed').length,
  };

  const rollbacks = state.rollbacks.map(rollbackReport);

  const plainFailures: string[] = [];
  // One vendor sentence per vendor artifact, not per vault it was proven from.
  const seenVendor = new Set<string>();
  for (const p of proofReports) {
    if (p.outcome !== 'failed' || !p.plain) continue;
    if (p.origin === 'vendor') {
      if (seenVendor.has(p.artifactId)) continue;
      seenVendor.add(p.artifactId);
    }
    plainFailures.push(p.plain);
  }
  for (const f of captureFailures) plainFailures.push(f.plain);
  for (const a of artifactReports)
    for (const c of a.copies)
      if (c.status !== 'ok')
        plainFailures.push(
          `The copy of ${nameOf(a.itemId)} (${a.method}) in vault ${c.vault} is damaged (${c.status})${c.detail ? `: ${c.detail}` : ''}; that copy does not count.`,
        );
  for (const r of gate?.rules ?? []) if (r.status === 'fail') plainFailures.push(`Gate rule ${r.rule} failed: ${r.reason}`);
  for (const l of landingItems)
    if (l.outcome === 'failed') {
      const bad = l.checks.find((c) => c.status !== 'passed');
      plainFailures.push(`Landing validation of ${l.itemName} failed${bad ? `: ${bad.name}: ${bad.detail}` : '.'}`);
    }
  if (state.error) plainFailures.push(`The run stopped with ${state.error.code}: ${state.error.message}`);
  for (const r of rollbacks) if (r.outcome !== 'completed') plainFailures.push(r.plain);

  const outcome: ReportModel['outcome'] = state.outcome ?? 'in-progress';
  const nothingDestroyed = !state.crossing?.startedAt;
  const built = buildHeadline(state, outcome, nothingDestroyed, counts, gate, proofReports);
  // A rollback happens after the run's outcome and changes what the target is: the newest one is told at the top.
  const lastRollback = rollbacks.at(-1);
  const headline: Headline = lastRollback
    ? { ...built, ...(lastRollback.outcome === 'completed' ? {} : { tone: 'red' as const }), sentence: `${built.sentence} Afterwards: ${lastRollback.plain}` }
    : built;

  const model: ReportModel = {
    schema: REPORT_SCHEMA,
    generatedAt,
    run: {
      id: state.runId,
      command: state.command,
      target: state.target,
      runbookPath: state.runbookPath,
      runbookHash: state.runbookHash,
      journalHead: state.journalHead,
      journalRecords: state.journalRecords,
      rubiconVersion: state.rubiconVersion,
      host: state.host,
      startedAt: state.startedAt,
      ...(state.finishedAt ? { finishedAt: state.finishedAt } : {}),
      durationMs: ms(state.startedAt, generatedAt),
      resumes: state.resumes,
      ...(state.exitCode !== undefined ? { exitCode: state.exitCode } : {}),
      ...(state.error ? { error: state.error } : {}),
    },
    outcome,
    headline,
    plainFailures,
    counts,
    items,
    vaults: state.vaults,
    proofs: proofReports,
    captureFailures,
    drift: {
      scans: driftScans,
      afterFreeze: newestByItem('freeze'),
      beforeGate: newestByItem('pre-gate'),
      finalDelta: artifactReports.filter((a) => a.phase === 'final-capture'),
    },
    ...(state.scope ? { coverage: buildCoverage(state) } : {}),
    ...(gate ? { gate } : {}),
    ...(permit ? { permit } : {}),
    ...(state.rollbackPoint ? { rollbackPoint: { ...state.rollbackPoint, released: state.rollbackReleased } } : {}),
    ...(crossing ? { crossing } : {}),
    landing: {
      items: landingItems,
      passed: counts.landingPassed,
      failed: counts.landingFailed,
      validated: landingItems.length > 0 && landingItems.every((l) => l.outcome === 'passed'),
    },
    rollbacks,
    timeline: { phases: phaseReports, totalMs: totalPhaseMs },
    estimate: maintenanceWindow({
      items,
      proofs: proofReports,
      ...(state.scope ? { coverage: buildCoverage(state) } : {}),
      finalCaptureMs: state.phases.find((p) => p.phase === 'final-capture')?.durationMs ?? null,
      crossingMs: crossing?.durationMs ?? null,
      ...(opts.expectedCrossing ? { expectedCrossing: opts.expectedCrossing } : {}),
      landingActualMs: state.phases.find((p) => p.phase === 'landing')?.durationMs ?? null,
    }),
    hipaa: [],
    manualSteps: state.manualSteps,
    overrides: state.overrides,
    notes: state.notes,
  };
  model.hipaa = buildHipaa(model);
  return redactDeep(model);
}

function buildCoverage(state: RunState): CoverageReport {
  const scope = state.scope!;
  const map = state.coverageMaps?.at(-1);
  const current = new Map(currentArtifacts(state.artifacts).map((a) => [a.id, a] as const));
  const verdicts = map
    ? judgeCoverage(map, {
        holderProblem: (id) => {
          const a = current.get(id);
          if (!a) return `${id} is not a current artifact`;
          if (!proofPassed(latestProof(state.proofs, id))) return `${a.method} artifact ${id} is not proven`;
          if (!state.copies.some((c) => c.artifactId === id && c.status === 'ok')) return `${id} has no verified copy`;
          return undefined;
        },
        ownerProblem: (id) => (state.artifacts.some((a) => a.itemId === id) ? undefined : `${id} was captured by nothing`),
        isEverything: (id) => current.get(id)?.itemId.startsWith('volume:') === true,
      })
    : [];
  return {
    infra: scope.infra,
    os: scope.os,
    volumes: scope.volumes.map((v) => ({ path: v.path, label: v.label, fate: v.fate, capture: v.capture })),
    exclusions: scope.exclusions.map((e) => ({ path: e.path, source: e.source, reason: e.reason, ...(e.by ? { by: e.by } : {}), ...(e.except ? { except: e.except } : {}) })),
    ...(map ? { map: { stage: map.stage, mappedAt: map.mappedAt, skipped: map.skipped, hashed: map.hashed, verdicts } } : {}),
    complete: map !== undefined && verdicts.every((v) => v.uncovered.files === 0),
  };
}

function buildHeadline(
  state: RunState,
  outcome: ReportModel['outcome'],
  nothingDestroyed: boolean,
  counts: Counts,
  gate: GateReport | undefined,
  proofs: ProofReport[],
): Headline {
  // "Nothing was destroyed" is not repeated in the sentences: renderers print
  // NOTHING_DESTROYED whenever `nothingDestroyed` is true.
  const proofLine = `${counts.proofsPassed} of ${proofs.length} proofs passed`;
  const fnd = counts.foundNotDeclared ? `; ${counts.foundNotDeclared} item(s) found that the runbook did not declare` : '';
  switch (outcome) {
    case 'landed': {
      const deltaProven = proofs.some((p) => p.phase === 'final-capture' && p.outcome === 'passed');
      const drift = counts.driftChanges
        ? ` ${counts.driftChanges} file(s) changed after freeze${deltaProven ? ' were captured again and proven before the gate' : ''}.`
        : '';
      return {
        tone: 'green',
        title: 'Landed: rebuilt, restored and validated',
        sentence: `${state.target} was rebuilt on ${state.crossing?.image ?? 'the new image'}; ${counts.landingPassed} item(s) were restored from the vaults and validated against their proofs. The gate passed with ${counts.rulesWarn} warning(s); ${proofLine}${fnd}.${drift}`,
        nothingDestroyed,
      };
    }
    case 'refused': {
      const why = gate?.reasons.length ? ` Why: ${gate.reasons.join(' ')}` : '';
      return {
        tone: 'red',
        title: 'Refused: the gate stopped the rebuild',
        sentence: `The gate refused the crossing of ${state.target} (${counts.rulesFail} rule(s) failed).${why}`,
        nothingDestroyed,
      };
    }
    case 'not-confirmed':
      return {
        tone: 'amber',
        title: 'Gate passed, crossing not confirmed',
        sentence: `The gate passed for ${state.target}, but nobody confirmed the crossing.`,
        nothingDestroyed,
      };
    case 'rehearsed':
      return {
        tone: 'amber',
        title: 'Rehearsal: captured and proven, target untouched',
        sentence: `A rehearsal of the rebuild of ${state.target}: ${counts.artifacts} artifact(s) captured, ${proofLine}${fnd}.${state.crossing?.startedAt ? ' The crossing ran on the staging stack.' : ''}`,
        nothingDestroyed,
      };
    case 'verified':
      return {
        tone: counts.proofsFailed ? 'red' : 'green',
        title: counts.proofsFailed ? 'Verify: some backups cannot be restored' : 'Verified: the latest backups restore',
        sentence: `Scheduled verification of ${state.target}: ${proofLine}.`,
        nothingDestroyed,
      };
    case 'planned':
      return {
        tone: 'amber',
        title: 'Plan: discovery only',
        sentence: `${counts.items} item(s) on the checklist for ${state.target}${fnd}. Nothing was changed.`,
        nothingDestroyed,
      };
    case 'failed':
      return {
        tone: 'red',
        title: nothingDestroyed ? 'Failed before the crossing' : 'Failed after the crossing started',
        sentence: `The run stopped${state.error ? ` with ${state.error.code}: ${state.error.message}` : ''}.${
          nothingDestroyed
            ? ''
            : state.rollbackPoint && !state.rollbackReleased
              ? ` The rollback point ${state.rollbackPoint.id} is kept (${state.rollbackPoint.location}).`
              : ''
        } Resume with: rubicon resume ${state.runId}`,
        nothingDestroyed,
      };
    default:
      return {
        tone: 'amber',
        title: 'In progress',
        sentence: `The run of ${state.target} has not finished (${proofLine}).${nothingDestroyed ? '' : ' The crossing has started.'}`,
        nothingDestroyed,
      };
  }
}

/** `text` ending with a full stop. */
const sentence = (text: string): string => (/[.!?]$/.test(text.trim()) ? text.trim() : `${text.trim()}.`);

/** A journaled rollback as the report tells it. Pure. */
function rollbackReport(r: RunState['rollbacks'][number]): RollbackReport {
  const outcome = r.outcome ?? 'unfinished';
  const durationMs = r.at ? ms(r.startedAt, r.at) : undefined;
  const head = `A rollback of the target (rubicon rollback, through the infra driver) was started ${formatTime(r.startedAt)}, confirmed by ${r.by}`;
  const from = r.from === 'retired-os-disk' ? 'the OS disk the crossing retired' : r.from === 'os-disk-snapshot' ? 'a disk made from the snapshot of that disk' : 'its rollback point';
  const plain =
    outcome === 'completed'
      ? `${head}; it completed ${formatTime(r.at)}: the target boots again from ${from} (${r.diskId ?? '?'}, image ${r.image ?? '?'}).`
      : outcome === 'failed'
        ? `${head}; it failed ${formatTime(r.at)} with ${r.error?.code ?? '?'}: ${sentence(r.error?.message ?? '')} The target may be neither the rebuilt nor the old server: look at it before anything else.`
        : `${head}; no end was recorded (the command was stopped or is still running): the target's state is unknown.`;
  return {
    startedAt: r.startedAt,
    by: r.by,
    outcome,
    ...(r.at ? { endedAt: r.at } : {}),
    ...(durationMs !== undefined ? { durationMs } : {}),
    ...(r.from === 'retired-os-disk' || r.from === 'os-disk-snapshot' ? { from: r.from } : {}),
    ...(r.diskId ? { diskId: r.diskId } : {}),
    ...(r.image ? { image: r.image } : {}),
    ...(r.error ? { error: r.error } : {}),
    plain,
  };
}

function restoreOf(p: ProofReport): number {
  return p.checks.find((c) => c.name === 'restore')?.durationMs ?? p.durationMs;
}

/**
 * The maintenance window to book, from measurements only. Pure and
 * deterministic; exported so the terminal shows the same numbers as the
 * report (`describeWindow` gives the same sentence).
 *
 * - Restores and checks: per item, its slowest passing proof on the proving
 *   ground (of its capture and, if it drifted, of its final delta), the items
 *   restored one after another; an everything capture counts only for the
 *   share of its bytes no item restores.
 * - Final capture: this run's measured final-capture phase, when it had one.
 * - Crossing (the rebuild): this run's measured crossing; else the expected
 *   one the caller hands in (a previous run's measured crossing of the same
 *   target, or the runbook's `target.expectedCrossingMinutes`); else unknown,
 *   said in the assumptions.
 * - Total × margin, rounded up to the minute.
 */
export function maintenanceWindow(input: WindowInput): WindowEstimate {
  const MARGIN = 1.5;
  const { items, proofs, coverage } = input;
  // An everything capture lands only what no item restores: its share of the volume's bytes (docs/coverage.md).
  const share = (item: WindowInput['items'][number]): number => {
    if (item.kind !== 'volume') return 1;
    const v = coverage?.map?.verdicts.find((x) => x.volume === item.location);
    return v && v.bytes > 0 ? v.onlyEverything.bytes / v.bytes : 1;
  };
  const lines: EstimateLine[] = [];
  const unknownItems: string[] = [];
  for (const item of items) {
    const counted: ProofReport[] = [];
    for (const phase of ['capture', 'final-capture'] as const) {
      const candidates = proofs.filter(
        (p) => p.itemId === item.id && p.outcome === 'passed' && item.artifacts.some((a) => a.id === p.artifactId && a.phase === phase),
      );
      const slowest = [...candidates].sort((a, b) => b.durationMs - a.durationMs)[0];
      if (slowest) counted.push(slowest);
    }
    if (!counted.length) {
      if (item.discovered) unknownItems.push(item.name);
      continue;
    }
    const f = share(item);
    const restoreMs = Math.round(counted.reduce((n, p) => n + restoreOf(p), 0) * f);
    const total = Math.round(counted.reduce((n, p) => n + p.durationMs, 0) * f);
    lines.push({
      itemId: item.id,
      itemName: item.name,
      proofIds: counted.map((p) => p.id),
      restoreMs,
      checkMs: Math.max(0, total - restoreMs),
      bytes: Math.round(counted.reduce((n, p) => n + p.bytes, 0) * f),
    });
  }
  const restoreMs = lines.reduce((n, l) => n + l.restoreMs, 0);
  const checkMs = lines.reduce((n, l) => n + l.checkMs, 0);
  const { finalCaptureMs } = input;
  const crossing: WindowEstimate['crossing'] =
    input.crossingMs !== null
      ? { ms: input.crossingMs, source: 'this-run', text: `measured in this run` }
      : input.expectedCrossing?.source === 'previous-run'
        ? {
            ms: input.expectedCrossing.ms,
            source: 'previous-run',
            ...(input.expectedCrossing.runId ? { runId: input.expectedCrossing.runId } : {}),
            text: `expected: measured in run ${input.expectedCrossing.runId ?? '(unnamed)'}${input.expectedCrossing.at ? ` of ${formatTime(input.expectedCrossing.at)}` : ''}`,
          }
        : input.expectedCrossing?.source === 'runbook'
          ? { ms: input.expectedCrossing.ms, source: 'runbook', text: 'expected: as the runbook states (target.expectedCrossingMinutes)' }
          : { ms: null, source: 'unknown', text: 'not known: no run measured it and the runbook does not state it' };
  const totalMs = restoreMs + checkMs + (finalCaptureMs ?? 0) + (crossing.ms ?? 0);
  const assumptions = [
    'Items are restored one after another, each as long as its slowest passing proof on the proving ground.',
    'A folder that drifted is restored twice: its capture, then its final delta.',
    'An everything capture counts only for the share of its bytes that no item restores (what it lands).',
    `A margin of ×${MARGIN} covers a slower target than the proving ground; rounded up to the minute.`,
  ];
  if (crossing.source === 'unknown')
    assumptions.push('The rebuild itself (crossing) is not included: no run of this target measured it; state it in the runbook as target.expectedCrossingMinutes, or rehearse on a staging target.');
  else if (crossing.source !== 'this-run') assumptions.push(`The rebuild (crossing) was not measured in this run; its duration is ${crossing.text}.`);
  if (finalCaptureMs === null) assumptions.push('The final capture after freeze was not measured in this run: add it.');
  return {
    lines,
    restoreMs,
    checkMs,
    finalCaptureMs,
    crossingMs: input.crossingMs,
    crossing,
    totalMs,
    withMarginMs: Math.ceil((totalMs * MARGIN) / 60_000) * 60_000,
    margin: MARGIN,
    landingActualMs: input.landingActualMs,
    unknownItems,
    assumptions,
  };
}

/**
 * The window in one sentence, the same for the terminal, the Markdown and
 * the HTML report: "Book 8 min: measured 5 min 2 s × 1.5 = restores …,
 * checks …, final capture …, rebuild … (expected: …)."
 */
export function describeWindow(e: WindowEstimate): string {
  const rebuild = e.crossing.ms === null ? 'rebuild not included (not known)' : `rebuild ${formatDuration(e.crossing.ms)} (${e.crossing.text})`;
  return `Book ${formatDuration(e.withMarginMs)}: measured ${formatDuration(e.totalMs)} × ${e.margin}, of which restores ${formatDuration(e.restoreMs)} and checks ${formatDuration(e.checkMs)} on the proving ground for ${e.lines.length} item(s), final capture ${
    e.finalCaptureMs === null ? 'not measured' : formatDuration(e.finalCaptureMs)
  }, ${rebuild}.${e.landingActualMs === null ? '' : ` This run's landing actually took ${formatDuration(e.landingActualMs)}.`}`;
}

function hipaaMark(s: HipaaStatus): Mark {
  return s === 'evidence' ? '✔' : s === 'gap' ? '✘' : '⚠';
}

/**
 * Which evidence in this report supports which HIPAA Security Rule section.
 * It states what was shown, never "compliant": compliance is the covered
 * entity's judgement over its whole programme.
 */
function buildHipaa(m: ReportModel): HipaaSection[] {
  const c = m.counts;
  const sections: Omit<HipaaSection, 'mark'>[] = [];
  const discovered = m.items.filter((i) => i.discovered);
  const captured = discovered.filter((i) => i.artifacts.some((a) => a.copies.some((cp) => cp.status === 'ok')));
  const proven = discovered.filter((i) => i.artifacts.some((a) => a.proven === true));
  const vaultNames = m.vaults.map(
    (v) => `${v.name} (${v.kind}${v.offTarget ? ', off the target' : ''}${v.immutable ? ', immutable' : ''}, ${v.encrypted === true ? 'encrypted at rest' : v.encrypted === false ? 'not encrypted at rest' : 'encryption at rest not reported'})`,
  );

  sections.push({
    section: '§164.308(a)(7)(ii)(A)',
    title: 'Data backup plan',
    asks: 'Establish and implement procedures to create and maintain retrievable exact copies of ePHI.',
    status: discovered.length > 0 && captured.length === discovered.length ? 'evidence' : captured.length ? 'partial' : 'gap',
    evidence: [
      `${captured.length} of ${discovered.length} item(s) found on the target were captured (${c.artifacts} artifact(s)) with verified copies in: ${vaultNames.join(', ') || 'no vault'}.`,
      `${c.foundNotDeclared} item(s) the runbook did not declare were found by discovery and captured as well.`,
      `The runbook ${m.run.runbookPath} (SHA-256 ${m.run.runbookHash}) is the written plan; the policy it enforces is in the gate section.`,
    ],
    see: ['checklist', 'proofs'],
  });
  sections.push({
    section: '§164.308(a)(7)(ii)(D)',
    title: 'Testing and revision procedures',
    asks: 'Implement procedures for periodic testing and revision of contingency plans.',
    status: proven.length > 0 && proven.length === discovered.length ? 'evidence' : proven.length ? 'partial' : 'gap',
    evidence: [
      `${c.proofsPassed} proof(s) passed and ${c.proofsFailed} failed: each artifact was restored on the isolated proving ground from a vault alone and checked (integrity, fingerprints, smoke checks), with durations.`,
      `${proven.length} of ${discovered.length} item(s) have at least one passing proof.`,
      ...m.plainFailures.filter((f) => f.startsWith(VENDOR_SENTENCE)).map((f) => `Finding from testing: ${f}`),
    ],
    see: ['proofs', 'estimate'],
  });
  const beforeMove = m.gate?.passed === true && (m.crossing?.startedAt ?? '') >= m.gate.evaluatedAt;
  sections.push({
    section: '§164.310(d)(2)(iv)',
    title: 'Data backup and storage before movement of equipment',
    asks: 'Create a retrievable, exact copy of ePHI, when needed, before movement of equipment.',
    status: m.crossing?.startedAt
      ? beforeMove && m.drift.beforeGate.length === 0
        ? 'evidence'
        : 'gap'
      : c.proofsPassed > 0
        ? 'partial'
        : 'gap',
    evidence: m.crossing?.startedAt
      ? [
          `The gate passed at ${m.gate?.evaluatedAt ?? '—'} with proven copies, before the crossing started at ${m.crossing.startedAt}.`,
          `Drift after freeze: ${m.drift.afterFreeze.length} change(s), captured again by ${m.drift.finalDelta.length} final delta artifact(s); ${m.drift.beforeGate.length} change(s) remained before the gate.`,
          m.permit ? `Permit ${m.permit.id} bound the crossing to ${m.permit.proofCount} proof(s) (proof set SHA-256 ${m.permit.proofSetHash}).` : 'No permit was recorded.',
        ]
      : [
          `No equipment was moved in this run (${m.outcome}). ${c.proofsPassed} proven copies exist.`,
          m.gate ? `The gate ${m.gate.passed ? 'passed' : 'refused'} at ${m.gate.evaluatedAt}.` : 'The gate was not evaluated in this run.',
        ],
    see: ['drift', 'gate', 'crossing'],
  });
  const fpAll = m.proofs.filter((p) => p.outcome === 'passed' && p.fingerprint);
  const fpAgree = fpAll.filter((p) => p.fingerprint?.agreesWithSource !== false && p.fingerprint?.agreesWithPeers !== false);
  sections.push({
    section: '§164.312(c)(1), (c)(2)',
    title: 'Integrity: ePHI not improperly altered, and a mechanism to corroborate it',
    asks: 'Protect ePHI from improper alteration; corroborate that it has not been altered.',
    status:
      c.copiesOk > 0 && fpAgree.length === fpAll.length && c.landingFailed === 0
        ? c.copiesBad === 0
          ? 'evidence'
          : 'partial'
        : 'gap',
    evidence: [
      `${c.copiesOk} vault copies verified by SHA-256 content hash; ${c.copiesBad} damaged cop(ies) named and not counted.`,
      `${fpAgree.length} of ${fpAll.length} database proof fingerprint(s) (per-table row counts and content hashes) agree with the source and with each other.`,
      m.landing.items.length
        ? `Landing: ${c.landingPassed} of ${m.landing.items.length} item(s) restored on the rebuilt target validated against their proofs.`
        : 'No landing in this run.',
    ],
    see: ['proofs', 'crossing'],
  });
  sections.push({
    section: '§164.312(b)',
    title: 'Audit controls',
    asks: 'Record and examine activity in systems that contain ePHI.',
    status: 'evidence',
    evidence: [
      `This report is derived from run ${m.run.id}'s append-only, hash-chained journal; every phase, capture, proof, drift scan and gate decision has a timestamp.`,
      ...(m.overrides.length ? [`${m.overrides.length} policy override(s), each with reason and who.`] : []),
      ...(m.manualSteps.length
        ? [`${m.manualSteps.filter((s) => s.confirmedBy).length} of ${m.manualSteps.length} manual step(s) confirmed with who and when.`]
        : []),
    ],
    see: ['timeline', 'gate'],
  });
  return sections.map((s) => ({ ...s, mark: hipaaMark(s.status) }));
}

