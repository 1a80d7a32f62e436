import type { JournalEvent, JournalRecord, RunCommand, RunOutcome } from './events.ts';
import type {
  Artifact,
  Copy,
  Drift,
  GateResult,
  Item,
  LandingPreflight,
  ManualStep,
  Override,
  Permit,
  Phase,
  Policy,
  Proof,
  RollbackPoint,
  ScopeOfDestruction,
  CoverageMap,
  VaultInfo,
} from './types.ts';

/**
 * The state of a run, derived from its journal by a pure fold. Nothing in
 * here is stored anywhere else: resume and every report read this.
 */
export interface PhaseState {
  phase: Phase;
  startedAt: string;
  completedAt?: string;
  durationMs?: number;
}

export interface LandingState {
  itemId: string;
  artifactId: string;
  vault?: string;
  bytes?: number;
  restoreMs?: number;
  outcome?: 'passed' | 'failed';
  checks: { name: string; status: 'passed' | 'failed' | 'skipped'; detail: string }[];
}

export interface RunState {
  runId: string;
  command: RunCommand;
  target: string;
  runbookPath: string;
  runbookHash: string;
  rubiconVersion: string;
  host: string;
  startedAt: string;
  updatedAt: string;
  finishedAt?: string;
  policy: Policy;
  vaults: VaultInfo[];
  manualSteps: ManualStep[];
  overrides: Override[];
  phases: PhaseState[];
  items: Item[];
  /** Capture attempts started and not (yet) finished: what resume redoes. */
  capturesInFlight: { itemId: string; method: string; artifactId: string }[];
  artifacts: Artifact[];
  captureFailures: { itemId: string; method: string; artifactId: string; code: string; message: string }[];
  /** Newest check per (artifact, vault). */
  copies: Copy[];
  proofs: Proof[];
  /** Every drift scan in order. */
  driftScans: Drift[];
  /** Every landing preflight in order (absent in states derived before it existed). */
  preflights?: LandingPreflight[];
  frozen: boolean;
  /** How many times the target was frozen in this run (a resume after a thaw freezes again), and when last. */
  freezeRound: number;
  frozenAt?: string;
  /** When phases were last reopened (a new freeze round is due). */
  reopenedAt?: string;
  rollbackPoint?: RollbackPoint;
  rollbackReleased: boolean;
  gate?: GateResult;
  permit?: Permit;
  /** The permit's signature as recorded (verified at the crossing against the run's own key, never trusted as recorded). */
  permitSignature?: { keyId: string; signature: string } | undefined;
  /** The id of the key that signs this run (run.started). */
  signingKeyId?: string;
  crossing?: { confirmedBy?: string; startedAt?: string; completedAt?: string; image?: string; machine?: { resourceId: string; uniqueId: string } };
  landing: LandingState[];
  reports: { kind: string; path: string }[];
  notes: { level: 'info' | 'warn' | 'error'; message: string; itemId?: string; at: string }[];
  outcome?: RunOutcome;
  exitCode?: number;
  error?: { code: string; message: string };
  resumes: number;
  /** Steps started and not (yet) completed, and completed ones, by id. */
  steps: Record<string, { machine: string; what: string; idempotent: boolean; startedAt: string; completedAt?: string; exitCode?: number; log?: { path: string; sha256: string; lines: number; bytes: number } }>;
  /** Grants issued in this run, by id; `revoked` once their key is gone from the vault host. Absent before the first grant. */
  grants?: Record<string, { vault: string; machine: string; mode: 'read' | 'write'; expiresAt: string; dir: string; holder?: 'sql-server-credential'; issuedAt: string; revoked?: boolean }>;
  /** Services the freeze stopped, as they were before. */
  stoppedServices?: { name: string; active: string; enabled: string }[];
  crossingInstructions?: string;
  targetIdentity?: { machine: string; machineId: string | null; osRelease: string | null; hostKeys: string[]; platform?: { resourceId: string; uniqueId: string } };
  rebuildVerified?: { machine: string; osRelease: string; machineIdChanged: boolean | null; hostKeyChanged: boolean | null; platform?: { resourceId: string; uniqueId: string; changed: boolean | null }; at: string };
  /** `rubicon rollback` runs on this run's rollback point, in order (src/infra/azure/rollback.ts). */
  rollbacks: { startedAt: string; by: string; outcome?: 'completed' | 'failed'; at?: string; from?: string; diskId?: string; image?: string; error?: { code: string; message: string } }[];
  /** What the crossing destroys, as declared at discover (docs/coverage.md). */
  scope?: ScopeOfDestruction;
  /** Every coverage map, in order (the newest is the one the gate reads). */
  coverageMaps: CoverageMap[];
  /** Hash of the newest journal record folded in: the evidence's fingerprint (verify with `rubicon status RUN_ID`). */
  journalHead: string;
  journalRecords: number;
}

function upsert<T>(list: T[], value: T, same: (a: T) => boolean): T[] {
  const i = list.findIndex(same);
  if (i === -1) return [...list, value];
  const copy = list.slice();
  copy[i] = value;
  return copy;
}

/** Applies one journal record. Pure. */
export function reduce(state: RunState | undefined, record: JournalRecord): RunState {
  const e: JournalEvent = record.event;
  const at = record.at;
  if (e.type === 'run.started') {
    return {
      runId: e.runId,
      command: e.command,
      target: e.target,
      runbookPath: e.runbookPath,
      runbookHash: e.runbookHash,
      rubiconVersion: e.rubiconVersion,
      host: e.host,
      startedAt: at,
      updatedAt: at,
      policy: e.policy,
      vaults: e.vaults,
      manualSteps: e.manualSteps,
      overrides: e.overrides,
      phases: [],
      items: [],
      capturesInFlight: [],
      artifacts: [],
      captureFailures: [],
      copies: [],
      proofs: [],
      driftScans: [],
      frozen: false,
      freezeRound: 0,
      rollbackReleased: false,
      rollbacks: [],
      landing: [],
      reports: [],
      notes: [],
      resumes: 0,
      steps: {},
      ...(e.signingKeyId ? { signingKeyId: e.signingKeyId } : {}),
      coverageMaps: [],
      journalHead: record.hash,
      journalRecords: record.seq,
    };
  }
  if (!state) throw new Error(`journal does not start with run.started (seq ${record.seq} is ${e.type})`);
  const s: RunState = { ...state, updatedAt: at, journalHead: record.hash, journalRecords: record.seq };
  switch (e.type) {
    case 'run.resumed':
      s.resumes += 1;
      delete s.outcome;
      delete s.exitCode;
      delete s.error;
      delete s.finishedAt;
      break;
    case 'phase.started':
      s.phases = upsert(s.phases, { phase: e.phase, startedAt: at }, (p) => p.phase === e.phase);
      break;
    case 'phase.completed':
      s.phases = s.phases.map((p) =>
        p.phase === e.phase ? { ...p, completedAt: at, durationMs: e.durationMs } : p,
      );
      break;
    case 'item.discovered':
      s.items = upsert(s.items, e.item, (i) => i.id === e.item.id);
      break;
    case 'capture.started':
      s.capturesInFlight = upsert(
        s.capturesInFlight,
        { itemId: e.itemId, method: e.method, artifactId: e.artifactId },
        (c) => c.artifactId === e.artifactId,
      );
      break;
    case 'artifact.captured':
      s.capturesInFlight = s.capturesInFlight.filter((c) => c.artifactId !== e.artifact.id);
      s.artifacts = upsert(s.artifacts, e.artifact, (a) => a.id === e.artifact.id);
      s.captureFailures = s.captureFailures.filter((f) => f.artifactId !== e.artifact.id);
      break;
    case 'capture.failed':
      s.capturesInFlight = s.capturesInFlight.filter((c) => c.artifactId !== e.artifactId);
      s.captureFailures = upsert(
        s.captureFailures,
        { itemId: e.itemId, method: e.method, artifactId: e.artifactId, code: e.code, message: e.message },
        (f) => f.artifactId === e.artifactId,
      );
      break;
    case 'copy.checked':
      s.copies = upsert(s.copies, e.copy, (c) => c.artifactId === e.copy.artifactId && c.vault === e.copy.vault);
      break;
    case 'proof.recorded':
      s.proofs = upsert(s.proofs, e.proof, (p) => p.id === e.proof.id);
      break;
    case 'target.frozen':
      s.frozen = true;
      s.freezeRound += 1;
      s.frozenAt = at;
      break;
    case 'phases.reopened':
      s.phases = s.phases.map((p) => (e.phases.includes(p.phase) ? { phase: p.phase, startedAt: p.startedAt } : p));
      s.reopenedAt = at;
      break;
    case 'target.thawed':
      s.frozen = false;
      break;
    case 'preflight.checked':
      s.preflights = [...(s.preflights ?? []), e.preflight];
      break;
    case 'drift.scanned':
      s.driftScans = [...s.driftScans, e.drift];
      break;
    case 'rollback.created':
      s.rollbackPoint = e.rollbackPoint;
      break;
    case 'rollback.released':
      s.rollbackReleased = true;
      break;
    case 'rollback.started':
      s.rollbacks = [...s.rollbacks, { startedAt: at, by: `${e.who} (${e.by})` }];
      break;
    case 'rollback.completed':
    case 'rollback.failed': {
      const last = s.rollbacks.at(-1);
      const done = e.type === 'rollback.completed' ? { outcome: 'completed' as const, from: e.from, diskId: e.diskId, image: e.image } : { outcome: 'failed' as const, error: { code: e.code, message: e.message } };
      s.rollbacks = [...s.rollbacks.slice(0, -1), { ...(last ?? { startedAt: at, by: '?' }), ...done, at }];
      break;
    }
    case 'gate.evaluated':
      s.gate = e.result;
      break;
    case 'permit.issued':
      s.permit = e.permit;
      s.permitSignature = e.signature && e.keyId ? { keyId: e.keyId, signature: e.signature } : undefined;
      break;
    case 'crossing.confirmed':
      s.crossing = { ...s.crossing, confirmedBy: `${e.who} (${e.by})` };
      break;
    case 'crossing.started':
      s.crossing = { ...s.crossing, startedAt: at, image: e.image };
      break;
    case 'crossing.completed':
      s.crossing = { ...s.crossing, completedAt: at, image: e.image, ...(e.machine ? { machine: e.machine } : {}) };
      break;
    case 'landing.restored':
      s.landing = upsert(
        s.landing,
        { itemId: e.itemId, artifactId: e.artifactId, vault: e.vault, bytes: e.bytes, restoreMs: e.durationMs, checks: [] },
        (l) => l.itemId === e.itemId,
      );
      break;
    case 'landing.validated': {
      const prev = s.landing.find((l) => l.itemId === e.itemId);
      s.landing = upsert(
        s.landing,
        { ...(prev ?? { itemId: e.itemId, artifactId: e.artifactId }), outcome: e.outcome, checks: e.checks },
        (l) => l.itemId === e.itemId,
      );
      break;
    }
    case 'report.written':
      s.reports = e.files;
      break;
    case 'journal.head.stored':
      // Evidence for `rubicon audit` (src/run/heads.ts); the run state does not depend on it.
      break;
    case 'note':
      s.notes = [...s.notes, { level: e.level, message: e.message, itemId: e.itemId, at }];
      break;
    case 'run.completed':
      s.outcome = e.outcome;
      s.exitCode = e.exitCode;
      s.finishedAt = at;
      if (e.error) s.error = e.error;
      break;
    case 'step.started':
      s.steps = { ...s.steps, [e.stepId]: { machine: e.machine, what: e.what, idempotent: e.idempotent, startedAt: at } };
      break;
    case 'step.completed': {
      const prev = s.steps[e.stepId];
      s.steps = { ...s.steps, [e.stepId]: { ...(prev ?? { machine: '?', what: '?', idempotent: false, startedAt: at }), completedAt: at, exitCode: e.exitCode, ...(e.log ? { log: e.log } : {}) } };
      break;
    }
    case 'services.stopped':
      s.stoppedServices = e.services;
      break;
    case 'target.identified':
      s.targetIdentity = { machine: e.machine, machineId: e.machineId, osRelease: e.osRelease, hostKeys: e.hostKeys, ...(e.platform ? { platform: e.platform } : {}) };
      break;
    case 'crossing.instructions':
      s.crossingInstructions = e.text;
      break;
    case 'rebuild.verified':
      s.rebuildVerified = { machine: e.machine, osRelease: e.osRelease, machineIdChanged: e.machineIdChanged, hostKeyChanged: e.hostKeyChanged, ...(e.platform ? { platform: e.platform } : {}), at };
      break;
    case 'run.interrupted':
      s.outcome = 'interrupted';
      break;
    case 'manual-step.confirmed':
      s.manualSteps = s.manualSteps.map((m) => (m.id === e.stepId ? { ...m, confirmedBy: e.by, confirmedAt: at } : m));
      break;
    case 'scope.declared':
      s.scope = e.scope;
      break;
    case 'coverage.mapped':
      s.coverageMaps = [...(s.coverageMaps ?? []), e.map];
      break;
    case 'grant.issued': {
      const { id, ...g } = e.grant;
      s.grants = { ...s.grants, [id]: { ...g, issuedAt: at } };
      break;
    }
    case 'grant.revoked': {
      const grants = { ...s.grants };
      for (const id of e.grantIds) if (grants[id]) grants[id] = { ...grants[id], revoked: true };
      s.grants = grants;
      break;
    }
    default: {
      const never: never = e;
      throw new Error(`unknown journal event ${(never as { type: string }).type}`);
    }
  }
  return s;
}

/** Derives the run state from the whole journal. Pure. */
export function deriveState(records: readonly JournalRecord[]): RunState {
  let state: RunState | undefined;
  for (const r of records) state = reduce(state, r);
  if (!state) throw new Error('empty journal');
  return state;
}

/**
 * The newest drift scan per item at a stage, or for any stage when omitted.
 * Freeze scans count only from the latest freeze on (a run frozen again
 * after a thaw scans again).
 */
export function latestDrift(state: RunState, stage?: Drift['stage']): Drift[] {
  const byItem = new Map<string, Drift>();
  const since = stage === 'freeze' && state.frozenAt ? Date.parse(state.frozenAt) : -Infinity;
  for (const d of state.driftScans) if ((!stage || d.stage === stage) && !(Date.parse(d.scannedAt) < since)) byItem.set(d.itemId, d);
  return [...byItem.values()];
}

/** The newest landing preflight per engine, of any stage (the gate refuses one not taken right before it). */
export function latestPreflight(state: RunState): LandingPreflight[] {
  const byEngine = new Map<string, LandingPreflight>();
  for (const p of state.preflights ?? []) byEngine.set(p.engine, p);
  return [...byEngine.values()];
}

export function isPhaseDone(state: RunState, phase: Phase): boolean {
  return state.phases.some((p) => p.phase === phase && p.completedAt !== undefined);
}
