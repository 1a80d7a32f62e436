import { existsSync } from 'node:fs';
import path from 'node:path';
import { copyFile } from 'node:fs/promises';
import { RubiconError, exitCodeOf, isRubiconError, EXIT } from '../core/errors.ts';
import type { JournalEvent, OnEvent, RunCommand, RunOutcome } from '../core/events.ts';
import { deriveState, isPhaseDone, latestDrift, type RunState } from '../core/state.ts';
import type { Artifact, ChecklistRow, Item, Phase } from '../core/types.ts';
import { buildChecklist } from '../inventory/checklist.ts';
import { describeTally, tally32110 } from '../gate/rule-32110.ts';
import { buildReportModel, describeWindow, type CrossingExpectation } from '../report/model.ts';
import { expectedCrossing } from '../report/previous.ts';
import type { RunSummary } from '../core/summary.ts';
import type { ReportOptions } from '../report/index.ts';
import { checkBeforeStart, loadRunbook, type Runbook } from '../runbook/load.ts';
import { createContext, type Confirmation, type RunContext, type RunHooks } from './context.ts';
import { rethrowIfCrashed } from './faults.ts';
import { listRuns, newRunId, readJournal, runPaths, type Journal } from './journal.ts';
import { LocalStateStore, type StateStore } from '../state/store.ts';
import { acquireRemoteTargetLock, acquireTargetLock, holderFor } from './target-lock.ts';
import * as phases from './phases.ts';
import { auditRecords, recordSigner } from './audit.ts';
import { runSigner } from '../trust/keyring.ts';
import { describeKeySource, verifierFrom, type KeySource, type Signer } from '../trust/keys.ts';
import { proveVaultArtifacts } from './verify.ts';
import { damagedSources } from './findings.ts';

import { RUBICON_VERSION } from '../core/version.ts';
export { RUBICON_VERSION };

export type { RunSummary, StoppedSummary, SummaryLine } from '../core/summary.ts';

/** Which phases each command runs, in order. `report` always ends a run. */
export const COMMAND_PHASES: Record<RunCommand, Phase[]> = {
  plan: ['discover'],
  /** On a target with `stage: staging`, rehearse runs the upgrade's phases. */
  rehearse: ['discover', 'capture', 'prove'],
  verify: ['prove'],
  upgrade: ['discover', 'capture', 'prove', 'freeze', 'final-capture', 'gate', 'crossing', 'landing'],
};

export interface CommonOptions {
  stateDir: string;
  /** Where runs are kept; default: the local state directory `stateDir` (src/state/store.ts). */
  state?: StateStore;
  onEvent: OnEvent;
  /** Asked right before the crossing when it was not confirmed yet. */
  confirm: (ctx: RunContext) => Promise<Confirmation>;
  hooks?: RunHooks;
  signal?: AbortSignal;
  /** How the reports are written (e.g. `--junit-vendor-failures`). */
  report?: ReportOptions;
}

export function summarize(state: RunState, stateDir: string, error?: RubiconError, crossingExpected?: CrossingExpectation): RunSummary {
  const checklist = buildChecklist({
    items: state.items,
    artifacts: state.artifacts,
    copies: state.copies,
    proofs: state.proofs,
    driftScans: state.driftScans,
    captureFailures: state.captureFailures,
  });
  const estimate = state.proofs.length > 0 ? buildReportModel(state, checklist, crossingExpected ? { expectedCrossing: crossingExpected } : {}).estimate : undefined;
  return {
    runId: state.runId,
    outcome: state.outcome ?? 'failed',
    exitCode: state.exitCode ?? EXIT.failure,
    gate: state.gate
      ? {
          passed: state.gate.passed,
          reasons: state.gate.reasons,
          refusals: state.gate.results.filter((r) => r.status === 'fail').map((r) => r.reason),
          warnings: state.gate.results.filter((r) => r.status === 'warn' || r.status === 'overridden').map((r) => r.reason),
        }
      : null,
    checklist,
    crossed: Boolean(state.crossing?.completedAt),
    window: estimate
      ? { totalMs: estimate.totalMs, withMarginMs: estimate.withMarginMs, unknownItems: estimate.unknownItems, crossing: estimate.crossing.ms === null ? null : { ms: estimate.crossing.ms, source: estimate.crossing.text }, text: describeWindow(estimate) }
      : null,
    artifacts: state.artifacts.map((a) => ({ id: a.id, itemId: a.itemId, method: a.method, origin: a.origin, bytes: a.bytes, files: a.fileCount })),
    proofs: state.proofs.map((p) => ({
      id: p.id,
      artifactId: p.artifactId,
      outcome: p.outcome,
      vault: p.vault,
      durationMs: p.durationMs,
      failed: p.checks.filter((c) => c.status !== 'passed').map((c) => `${c.name}: ${c.status}${c.detail ? ` (${c.detail})` : ''}`),
    })),
    drift: everyDrift(state).map((d) => ({ itemId: d.itemId, stage: d.stage, changes: d.changes.length, paths: d.changes.slice(0, 20).map((c) => `${c.kind} ${c.path}`) })),
    reports: state.reports,
    findings: damagedSources(state),
    ...(state.outcome === 'waiting' && state.crossingInstructions ? { crossingInstructions: state.crossingInstructions } : {}),
    plan: {
      methods: state.items.map((i) => ({ itemId: i.id, methods: i.methods })),
      vaults: state.vaults.map((v) => `${v.name} (${v.kind}${v.offTarget ? ', off the target' : ''}${v.immutable ? ', immutable' : ''}${v.encrypted ? ', encrypted' : ''})`),
      policy: state.policy,
      // What the vaults can give an item written into all of them (the gate computes it per item from the copies).
      rule32110: ((t) => ({ holds: t.holds, text: `${describeTally(t)}${t.holds ? '' : ` (missing: ${t.missing.join('; ')})`}` }))(tally32110(state.vaults, [], true)),
    },
    ...(state.error || error ? { error: { code: error?.code ?? state.error!.code, message: error?.message ?? state.error!.message, hint: error?.hint } } : {}),
    stateDir,
  };
}

/**
 * Every drift found in the run, across its stages (freeze, final capture,
 * before the gate): the newest scan per item and stage, those with changes
 * first in the order they were found; an item whose every scan was clean
 * appears once, with its newest scan (0 changes). The freeze's 3 changes stay
 * visible after the final capture's scan found none.
 */
export function everyDrift(state: RunState): RunState['driftScans'] {
  const byKey = new Map<string, RunState['driftScans'][number]>();
  for (const d of state.driftScans) if (d.changes.length > 0) byKey.set(`${d.itemId}\u0000${d.stage}`, d);
  const withChanges = [...byKey.values()];
  const clean = latestDrift(state).filter((d) => !withChanges.some((w) => w.itemId === d.itemId));
  return [...withChanges, ...clean];
}

/**
 * The runbook a run started with: the file itself where it still is, else
 * the run's copy read as if it were there (its relative paths resolve
 * against the original's folder, never the state directory).
 */
export async function loadRunRunbook(startedWith: string, copy: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Runbook> {
  if (existsSync(startedWith) || !copy) return loadRunbook(startedWith, env);
  return loadRunbook(copy, env, { resolveFrom: path.dirname(startedWith) });
}

/** Starts a new run. Input errors (runbook) throw before anything is written. */
export async function startRun(command: RunCommand, runbookFile: string, o: CommonOptions): Promise<RunSummary> {
  const runbook = await loadRunbook(runbookFile);
  if (COMMAND_PHASES[command].includes('discover')) await checkBeforeStart(runbook);
  // The key first: a missing or misplaced key is invalid input, and nothing has been touched yet.
  const { signer } = runSigner({ ...(signingKeyOf(runbook) ? { source: signingKeyOf(runbook)! } : {}), stateDir: o.stateDir });
  const runId = newRunId();
  const store = o.state ?? new LocalStateStore(o.stateDir);
  const paths = store.paths(runId);
  const release = await lockTarget(store, runbook, runId);
  let journal: Journal | undefined;
  try {
    journal = await store.createJournal(runId);
    journal.signWith(recordSigner(signer));
    await copyFile(runbook.file, paths.runbookCopy);
    const ctx = await createContext({ runId, paths, runbook, journal, onEvent: o.onEvent, confirm: o.confirm, hooks: o.hooks, signal: o.signal, signer, ...stateFlagOf(store) });
    ctx.record({
      type: 'run.started',
      runId,
      command,
      target: runbook.target.name,
      runbookPath: runbook.file,
      runbookHash: runbook.hash,
      policy: runbook.policy,
      vaults: ctx.vaults.map((v) => v.info),
      manualSteps: runbook.manualSteps,
      overrides: runbook.overrides,
      rubiconVersion: RUBICON_VERSION,
      host: phases.hostName(),
      signingKeyId: signer.keyId,
    });
    for (const w of runbook.warnings) ctx.record({ type: 'note', level: 'warn', message: w });
    // A shared store has the run's start and its runbook copy before any phase runs (another agent can resume it).
    await store.flush(runId);
    return await drive(ctx, o.stateDir, store, o.report);
  } finally {
    journal?.close();
    await release();
  }
}

/**
 * `rubicon confirm RUN_ID --crossed`: a person says the manual crossing was
 * done. Records who, then continues the run (which checks the machine really
 * was rebuilt before it lands anything).
 */
export async function confirmCrossed(runId: string, who: string, o: CommonOptions): Promise<RunSummary> {
  const store = o.state ?? new LocalStateStore(o.stateDir);
  const before = deriveState(await store.readJournal(runId));
  if (before.outcome !== 'waiting' && !(before.crossing?.startedAt && !before.crossing.completedAt)) {
    throw new RubiconError('ARGUMENTS_INVALID', `run ${runId} is not waiting at a manual crossing (it is ${before.outcome ?? 'in progress'})`, {
      hint: `see \`rubicon status ${runId}\``,
    });
  }
  return resumeRun(runId, { ...o, confirm: async () => ({ confirmed: true, by: 'command', who }) });
}

/**
 * `rubicon confirm RUN_ID STEP --by NAME`: a person confirms a manual step
 * of the run's runbook. Journals who and when (the record's time), signed
 * like every record; the gate reads it as the step's confirmation. A run the
 * gate refused for want of it goes on with `rubicon resume RUN_ID`. Not
 * destructive; confirming a step twice records it twice (the newest counts).
 */
export async function confirmManualStep(runId: string, stepId: string, by: string, o: Pick<CommonOptions, 'stateDir' | 'state'>): Promise<{ stepId: string; by: string; at: string; outcome: RunOutcome | undefined }> {
  const store = o.state ?? new LocalStateStore(o.stateDir);
  const records = await store.readJournal(runId);
  const before = deriveState(records);
  const step = before.manualSteps.find((m) => m.id === stepId);
  if (!step) {
    throw new RubiconError('ARGUMENTS_INVALID', `run ${runId} has no manual step "${stepId}" (its runbook declares ${before.manualSteps.map((m) => m.id).join(', ') || 'none'})`, {
      hint: `e.g. rubicon confirm ${runId} ${before.manualSteps[0]?.id ?? 'STEP'} --by "Jane Doe"`,
    });
  }
  const at = new Date();
  await appendToRun(runId, o, async (record) => record({ type: 'manual-step.confirmed', stepId, by }, at));
  return { stepId, by, at: at.toISOString(), outcome: before.outcome };
}

/**
 * Appends records to the journal of an existing run from outside its phases
 * (`rubicon confirm`, `rubicon rollback`): checks the journal's signatures
 * first (EVIDENCE_INVALID), holds the target's lock while `body` runs (no
 * run acts on the target meanwhile), signs every record with the run's key;
 * each record is durable once `record` returned; the store is flushed at
 * the end, also when `body` throws.
 */
export async function appendToRun<T>(
  runId: string,
  o: Pick<CommonOptions, 'stateDir' | 'state'> & { env?: NodeJS.ProcessEnv },
  body: (record: (event: JournalEvent, at?: Date) => void) => Promise<T>,
): Promise<T> {
  const store = o.state ?? new LocalStateStore(o.stateDir);
  const records = await store.readJournal(runId);
  const before = deriveState(records);
  const env = o.env ?? process.env;
  // The runbook the run started with; when it is gone, the run's own copy (a shared store's, or the one beside the journal).
  const local = store.paths(runId).runbookCopy;
  const copy = (await store.runbookCopy(runId)) ?? (existsSync(local) ? local : undefined);
  const runbook = await loadRunRunbook(before.runbookPath, copy, env);
  const { signer, source } = runSigner({ ...(signingKeyOf(runbook) ? { source: signingKeyOf(runbook)! } : {}), stateDir: o.stateDir, env });
  const mismatch = runKeyMismatch(before, runId, signer, source, signingKeyOf(runbook) !== undefined, store instanceof LocalStateStore ? '' : ` (--state ${store.location})`);
  if (mismatch) throw mismatch;
  const audit = auditRecords(records, verifierFrom(signer.publicKeyPem));
  if (!audit.ok) throw new RubiconError('EVIDENCE_INVALID', `the journal of run ${runId} cannot be trusted: record ${audit.firstBad.seq} (${audit.firstBad.type}) ${audit.firstBad.reason}`, { hint: `see \`rubicon audit ${runId}\`` });
  const release = await lockTarget(store, runbook, runId);
  let journal: Journal | undefined;
  try {
    journal = await store.openJournal(runId);
    journal.signWith(recordSigner(signer));
    const j = journal;
    try {
      return await body((event, at) => void j.append(event, at ?? new Date()));
    } finally {
      await store.flush(runId);
    }
  } finally {
    journal?.close();
    await release();
  }
}

/** Continues a run from its journal: the normal path after a crash. */
export async function resumeRun(runId: string, o: CommonOptions): Promise<RunSummary> {
  const store = o.state ?? new LocalStateStore(o.stateDir);
  const paths = store.paths(runId);
  const records = await store.readJournal(runId);
  const before = deriveState(records);
  // Terminal outcomes are final; a failed, interrupted, waiting or not-confirmed run goes on, and so does a
  // refused one in which a person confirmed a manual step after the refusal (the gate is evaluated again).
  const lastEnd = records.findLastIndex((r) => r.event.type === 'run.completed');
  const confirmedSince = before.outcome === 'refused' && records.slice(lastEnd + 1).some((r) => r.event.type === 'manual-step.confirmed');
  if (before.outcome && !RESUMABLE.has(before.outcome) && !confirmedSince) {
    return summarize(before, o.stateDir);
  }
  // Another agent (shared state): its runbook path may not exist here; the run's own copy does.
  const runbook = await loadRunRunbook(before.runbookPath, await store.runbookCopy(runId));
  if (runbook.hash !== before.runbookHash) {
    throw new RubiconError('RUNBOOK_INVALID', `runbook ${runbook.file} changed since run ${runId} started`, {
      hint: `put back the runbook the run started with (a copy is at ${paths.runbookCopy}), or start a new run`,
    });
  }
  const { signer, source } = runSigner({ ...(signingKeyOf(runbook) ? { source: signingKeyOf(runbook)! } : {}), stateDir: o.stateDir });
  // Another agent's run signed with another key: said plainly, before the audit would call it a bad signature.
  const mismatch = runKeyMismatch(before, runId, signer, source, signingKeyOf(runbook) !== undefined, store instanceof LocalStateStore ? '' : ` (--state ${store.location})`);
  if (mismatch) throw mismatch;
  // Never resume from a history this run's key did not sign: an edited journal stops here.
  const audit = auditRecords(records, verifierFrom(signer.publicKeyPem));
  if (!audit.ok) {
    throw new RubiconError('EVIDENCE_INVALID', `the journal of run ${runId} cannot be trusted: record ${audit.firstBad.seq} (${audit.firstBad.type}) ${audit.firstBad.reason}`, {
      hint: `see \`rubicon audit ${runId}${store instanceof LocalStateStore ? '' : ` --state ${store.location}`}\`; start a new run (the vaults' objects are reused)`,
    });
  }
  const release = await lockTarget(store, runbook, runId);
  let journal: Journal | undefined;
  try {
    // The store's journal (verified again: a shared one may have grown since it was read above).
    journal = await store.openJournal(runId);
    journal.signWith(recordSigner(signer));
    const ctx = await createContext({ runId, paths, runbook, journal, onEvent: o.onEvent, confirm: o.confirm, hooks: o.hooks, signal: o.signal, signer, ...stateFlagOf(store) });
    ctx.record({ type: 'run.resumed', pid: process.pid });
    if (before.outcome === 'not-confirmed' || confirmedSince) {
      // Nobody confirmed the crossing and the target was thawed: what was proven still stands, but the
      // target has run since. Freeze again, scan the drift and capture it, evaluate the gate again, then cross.
      ctx.record({
        type: 'phases.reopened',
        phases: ['freeze', 'final-capture', 'gate', 'crossing'],
        reason: confirmedSince
          ? 'a manual step was confirmed after the gate refused: the target is frozen again, its drift scanned and captured, and the gate evaluated again before any crossing'
          : 'the crossing was not confirmed and the target was thawed: it is frozen again, its drift scanned and captured, and the gate evaluated again before the crossing',
      });
    }
    return await drive(ctx, o.stateDir, store, o.report);
  } finally {
    journal?.close();
    await release();
  }
}

/**
 * One run per target: the machine-wide lock on the target's identity
 * (src/run/target-lock.ts), then the store's own lock (a shared store: its
 * lease, which excludes the other agents). Returns the release of both.
 */
async function lockTarget(store: StateStore, runbook: Runbook, runId: string): Promise<() => Promise<void>> {
  const releaseHere = acquireTargetLock(runbook, runId, phases.hostName());
  let releaseStore: () => Promise<void>;
  try {
    releaseStore = await store.lock(runbook.target.name, runId, phases.hostName());
  } catch (e) {
    releaseHere();
    throw e;
  }
  return async () => {
    try {
      await releaseStore();
    } finally {
      releaseHere();
    }
  };
}

/** The option that names a shared store to the commands continuing a run; nothing for the local state directory. */
function stateFlagOf(store: StateStore): { stateFlag?: string } {
  return store instanceof LocalStateStore ? {} : { stateFlag: `--state ${store.location}` };
}

/** The key source the runbook names for signing: its trust section, or the Azure section's key. */
export function signingKeyOf(rb: Runbook): KeySource | undefined {
  if (rb.trust) return rb.trust.signingKey;
  if (rb.infra.kind === 'pulumi-azure') return rb.infra.azure.signingKey;
  return undefined;
}

/**
 * A run whose journal names a signing key other than the one this agent
 * signs with (another agent started it with its own key, shared state):
 * KEY_MISMATCH saying which keys and how to give this agent the run's key,
 * before anything is touched, instead of the signature failure the audit
 * would report. Undefined when the keys agree (or the run names none: the
 * audit then decides). Pure.
 */
export function runKeyMismatch(st: Pick<RunState, 'signingKeyId' | 'host'>, runId: string, signer: Signer, source: KeySource, keyFromRunbook: boolean, where: string): RubiconError | undefined {
  if (!st.signingKeyId || st.signingKeyId === signer.keyId) return undefined;
  return new RubiconError(
    'KEY_MISMATCH',
    `run ${runId} was started on ${st.host} and its journal names key ${st.signingKeyId} as its signing key; this agent signs with key ${signer.keyId} (${describeKeySource(source)}${keyFromRunbook ? ', as the runbook says' : ', this user\'s own key: the runbook names none'}), so it can neither verify that journal nor continue it. Nothing was touched.`,
    {
      hint: keyFromRunbook
        ? `give this agent the key the run was started with (key id ${st.signingKeyId}) in the place the runbook's trust.signingKey names, then run the command again${where}`
        : `every agent that may continue a run needs the same key: set trust.signingKey in the runbook (e.g. { env: RUBICON_SIGNING_KEY }, the PEM in a pipeline secret every agent gets), or copy the signing key of ${st.host} (key id ${st.signingKeyId}) into this agent's $RUBICON_KEY_DIR/signing.pem (0600); or continue the run on ${st.host}${where}`,
      details: { runId, runKeyId: st.signingKeyId, agentKeyId: signer.keyId },
    },
  );
}

/** Outcomes a resume continues from. */
export const RESUMABLE: ReadonlySet<RunOutcome> = new Set(['failed', 'interrupted', 'waiting', 'not-confirmed']);

const PHASE_FNS: Record<Exclude<Phase, 'gate' | 'crossing' | 'landing' | 'report'>, (ctx: RunContext) => Promise<void>> = {
  discover: phases.discover,
  capture: phases.capture,
  prove: phases.prove,
  freeze: phases.freeze,
  'final-capture': phases.finalCapture,
};

/**
 * Runs the command's phases from wherever the journal says the run is. A
 * refusal (gate, confirmation) ends the run before the crossing with exit
 * 2 and the target thawed and untouched.
 */
async function drive(ctx: RunContext, stateDir: string, store: StateStore, reportOptions: ReportOptions = {}): Promise<RunSummary> {
  const command = ctx.state().command;
  // A rehearsal on a staging target goes all the way: that is what rehearsing an upgrade means there.
  const phaseList = command === 'rehearse' && ctx.runbook.target.stage === 'staging' ? COMMAND_PHASES.upgrade : COMMAND_PHASES[command];
  let outcome: RunOutcome = ({ plan: 'planned', rehearse: 'rehearsed', verify: 'verified', upgrade: 'landed' } as const)[command];
  let exitCode: number = EXIT.ok;
  let failure: RubiconError | undefined;
  let releaseRemote: (() => Promise<void>) | undefined;
  try {
    // The lock on the remote target itself, so orchestrators on other machines are excluded too
    // (after a manual crossing: on the rebuilt server, reached with its new host key).
    if (ctx.remote && ctx.runbook.target.transport.kind === 'ssh') {
      const s = ctx.state();
      const m = s.crossing?.startedAt ? ctx.remote.rebuiltTarget : ctx.target;
      // Not while a manual crossing is under way: the server is being reinstalled (the local lock holds).
      if (!(s.crossing?.startedAt && !s.crossing.completedAt && ctx.runbook.infra.kind === 'manual')) {
        releaseRemote = await acquireRemoteTargetLock(m, `${ctx.runbook.target.workDir}/rubicon.lock`, holderFor(ctx.runbook, ctx.runId, phases.hostName()));
      }
    }
    // A run that failed after its freeze was thawed: freeze again, scan drift, capture it, gate again, before any crossing.
    const s0 = ctx.state();
    // A run stopped after its gate (killed, interrupted): scan drift again before crossing, and capture what changed.
    if (phaseList.includes('freeze') && isPhaseDone(s0, 'freeze') && !s0.crossing?.startedAt && s0.outcome !== 'refused' && (!s0.frozen || s0.phases.some((p) => p.phase === 'gate'))) {
      ctx.record({
        type: 'phases.reopened',
        phases: ['freeze', 'final-capture', 'gate'],
        reason: s0.frozen
          ? 'the run stopped after its gate: the drift is scanned again and what changed captured before any crossing'
          : 'the target was thawed after its freeze (the run stopped): it is frozen again and its drift scanned before the gate',
      });
    }
    for (const phase of phaseList) {
      if (isPhaseDone(ctx.state(), phase)) continue;
      // A signal stops the run between phases too (not only inside a machine's step): above all, no crossing begins after it.
      if (ctx.signal?.aborted) throw new Error('interrupted');
      const t0 = performance.now();
      ctx.record({ type: 'phase.started', phase });
      let stop = false;
      if (command === 'verify' && phase === 'prove') {
        await proveVaultArtifacts(ctx);
      } else if (phase === 'gate') {
        const g = await phases.gate(ctx);
        if (!g.passed) {
          outcome = 'refused';
          exitCode = EXIT.gateRefused;
          stop = true;
        }
      } else if (phase === 'crossing') {
        const c = await phases.crossing(ctx);
        if (c === 'not-confirmed') {
          outcome = 'not-confirmed';
          exitCode = EXIT.gateRefused;
          stop = true;
        } else if (c === 'refused') {
          // The crossing's own evaluation of the gate refused (drift after the permit, a forged or stale record).
          outcome = 'refused';
          exitCode = EXIT.gateRefused;
          stop = true;
        } else if (c === 'waiting') {
          // Stopped at a manual crossing: still frozen, the phase not done; confirm or resume continues here.
          outcome = 'waiting';
          exitCode = EXIT.waiting;
          break;
        }
      } else if (phase === 'landing') {
        if (!(await phases.landing(ctx))) {
          outcome = 'failed';
          exitCode = EXIT.failure;
          failure = new RubiconError('LANDING_FAILED', 'landing validation failed: the rebuilt target does not match the proofs', {
            hint: `the rollback point is kept (${ctx.state().rollbackPoint?.location ?? 'none'}); see the report, then restore from it or from the vaults`,
          });
        }
      } else if (phase !== 'report') {
        await PHASE_FNS[phase](ctx);
      }
      if (stop) {
        ctx.record({ type: 'phase.completed', phase, durationMs: Math.round(performance.now() - t0) });
        if (ctx.state().frozen && !ctx.state().crossing?.startedAt) await phases.thaw(ctx);
        break;
      }
      ctx.record({ type: 'phase.completed', phase, durationMs: Math.round(performance.now() - t0) });
      await ctx.hooks.afterPhase?.(phase, ctx);
    }
    if (command === 'verify' || command === 'rehearse') {
      const bad = verifyFailures(ctx.state());
      if (command === 'verify' && bad.some((b) => b.fatal)) {
        outcome = 'failed';
        exitCode = EXIT.failure;
        failure = new RubiconError('ENGINE_FAILED', 'verify: some of Rubicon\'s own artifacts or their copies are damaged', { hint: 'see the report; capture again with `rubicon rehearse`' });
      }
      for (const b of bad) ctx.record({ type: 'note', level: b.fatal ? 'error' : 'warn', message: b.message });
    }
  } catch (e) {
    rethrowIfCrashed(e); // a simulated death is never turned into an outcome (src/run/faults.ts)
    const interrupted = ctx.signal?.aborted === true;
    failure = interrupted
      ? new RubiconError('INTERRUPTED', `interrupted by ${String(ctx.signal?.reason ?? 'a signal')}: the run stopped where it was`, { hint: `rubicon resume ${ctx.runId} continues it` })
      : isRubiconError(e)
        ? e
        : new RubiconError('INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
    // Exit 3 means "invalid input, nothing was touched": only the CLI and runbook loading may say it.
    // Once a run has started, a broken precondition is exit 1 with the same message and fix.
    if (failure.exitCode === EXIT.invalidInput) {
      failure = new RubiconError('PRECONDITION_FAILED', failure.message, { ...(failure.hint ? { hint: failure.hint } : {}), cause: failure });
    }
    // A landing preflight that refused before capture is a refusal like the gate's (exit 2, nothing captured or touched).
    outcome = interrupted ? 'interrupted' : failure.code === 'PREFLIGHT_REFUSED' ? 'refused' : 'failed';
    exitCode = exitCodeOf(failure);
    if (interrupted) ctx.record({ type: 'run.interrupted', signal: String(ctx.signal?.reason ?? 'signal') });
    const s = ctx.state();
    if (s.frozen && !s.crossing?.startedAt) {
      try {
        await phases.thaw(ctx);
      } catch (t) {
        ctx.record({ type: 'note', level: 'error', message: `the target could not be thawed: ${t instanceof Error ? t.message : String(t)}` });
      }
    }
  }
  // The window estimate of a run that did not cross counts the crossing a previous run measured, or the runbook's figure.
  const crossingExpected = await expectedCrossing(store, { target: ctx.runbook.target.name, runId: ctx.runId, runbookMinutes: ctx.runbook.target.expectedCrossingMinutes });
  try {
    const t0 = performance.now();
    ctx.record({ type: 'phase.started', phase: 'report' });
    await phases.report(ctx, { outcome, exitCode, ...(failure ? { error: { code: failure.code, message: failure.message } } : {}) }, { ...reportOptions, ...(crossingExpected ? { expectedCrossing: crossingExpected } : {}) });
    ctx.record({ type: 'phase.completed', phase: 'report', durationMs: Math.round(performance.now() - t0) });
  } catch (e) {
    rethrowIfCrashed(e);
    ctx.record({ type: 'note', level: 'error', message: `report could not be written: ${e instanceof Error ? e.message : String(e)}` });
  }
  ctx.record({
    type: 'run.completed',
    outcome,
    exitCode,
    ...(failure ? { error: { code: failure.code, message: failure.message } } : {}),
  });
  await releaseRemote?.().catch(() => undefined);
  await ctx.close().catch(() => undefined);
  // A shared store: the last records, the runbook copy and the reports reach it before the run returns.
  await store.flush(ctx.runId);
  return summarize(ctx.state(), stateDir, failure, crossingExpected);
}

/** For rehearse and verify: Rubicon's own artifacts that failed their proof. Vendor failures are reported, not fatal. */
function verifyFailures(s: RunState): { fatal: boolean; message: string }[] {
  const out: { fatal: boolean; message: string }[] = [];
  for (const p of s.proofs) {
    if (p.outcome === 'passed') continue;
    const a = s.artifacts.find((x) => x.id === p.artifactId);
    const who = a?.origin === 'vendor' ? "the vendor's backup job produces backups that cannot be restored" : `artifact ${p.artifactId} failed its proof`;
    out.push({
      fatal: a?.origin !== 'vendor',
      message: `${who}: ${p.checks.filter((c) => c.status === 'failed').map((c) => `${c.name}: ${c.detail}`).join('; ')}`,
    });
  }
  for (const f of s.captureFailures) out.push({ fatal: false, message: `capture of ${f.itemId} by ${f.method} failed: ${f.message}` });
  // verify's own findings about the vaults' indexes (a forged, unreadable or disagreeing entry) fail it.
  for (const n of s.notes) if (n.level === 'error' && n.message.startsWith('verify: ')) out.push({ fatal: true, message: n.message.slice('verify: '.length) });
  // A damaged copy breaks the "copies in N vaults" promise even when another copy still restores.
  for (const c of s.copies) {
    if (c.status !== 'ok') out.push({ fatal: true, message: `the copy of ${c.artifactId} in vault ${c.vault} is ${c.status}${c.detail ? `: ${c.detail}` : ''}` });
  }
  return out;
}

export type { Runbook, Artifact, Item };
