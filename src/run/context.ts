import type { JournalEvent, OnEvent, ProgressEvent } from '../core/events.ts';
import { reduce, type RunState } from '../core/state.ts';
import type { Phase } from '../core/types.ts';
import { createAdapters, createEngines, type Adapters } from '../compose/root.ts';
import type { DatabaseEngine, RemoteDatabaseEngine } from '../engines/engine.ts';
import type { LocalHost } from '../hosts/local.ts';
import type { InfraDriver } from '../infra/driver.ts';
import { LocalMachine } from '../machines/local.ts';
import type { Machine } from '../machines/machine.ts';
import type { TargetPlane } from './plane.ts';
import type { Runbook } from '../runbook/load.ts';
import type { Vault } from '../vaults/vault.ts';
import { checkpoint } from './faults.ts';
import type { Journal, RunPaths } from './journal.ts';
import { createStepRunner, type StepRunner } from './steps.ts';
import type { Signer } from '../trust/keys.ts';
import { GrantPool } from './grant-pool.ts';
import { isToolVault, type ToolVault } from '../vaults/vault.ts';

export { createEngines };

/**
 * Everything a phase needs. Phases read facts only from `state` (derived
 * from the journal) and record facts only through `record`, so a resumed
 * run sees exactly what a continuous one would. Adapters come from the
 * composition root (src/compose/root.ts); nothing here names a concrete one.
 */
export interface Confirmation {
  confirmed: boolean;
  by: 'flag' | 'prompt' | 'command';
  who: string;
  /** Why not, when not confirmed (no terminal and no --yes, typed the wrong name). */
  reason?: string;
}

export interface RunHooks {
  /** Called after a phase completed (the demo's technician acts after `prove`). */
  afterPhase?: (phase: Phase, ctx: RunContext) => Promise<void>;
}

export interface RunContext {
  runId: string;
  paths: RunPaths;
  runbook: Runbook;
  journal: Journal;
  /** The target machine (before the crossing). */
  target: Machine;
  /** The target's files as this process sees them, when the target is local (the sandbox). */
  localTarget?: LocalHost;
  /** Present when the target is remote: what the remote phases use (src/run/remote.ts). */
  remote?: {
    provingGround: Machine;
    rebuiltTarget: Machine;
    /** The OS-specific part of the remote phases (src/run/plane.ts), chosen by the composition root. */
    plane: TargetPlane;
    engines: Record<string, RemoteDatabaseEngine>;
    folderMethods: Adapters['folderMethods'];
    /** Grants per phase (src/run/grant-pool.ts): revoked at every phase's end and when the run ends, whichever way. */
    grants: GrantPool;
  };
  vaults: Vault[];
  engines: Record<string, DatabaseEngine>;
  infra: InfraDriver;
  /** Journaled steps on machines. */
  steps: StepRunner;
  state: () => RunState;
  record: (event: JournalEvent) => void;
  progress: (event: ProgressEvent) => void;
  confirm: (ctx: RunContext) => Promise<Confirmation>;
  hooks: RunHooks;
  now: () => Date;
  signal?: AbortSignal;
  /** Ends machine connections (ssh masters). */
  close: () => Promise<void>;
  /** The run's signing key (permits and journal records); it never lives in the state directory. */
  signer?: Signer;
  /** Where the run is kept, as the commands that continue it must be told: `--state azblob://…` for a shared store; absent: the local state directory. */
  stateFlag?: string;
}

export interface ContextInput {
  runId: string;
  paths: RunPaths;
  runbook: Runbook;
  journal: Journal;
  onEvent: OnEvent;
  confirm: (ctx: RunContext) => Promise<Confirmation>;
  hooks?: RunHooks;
  signal?: AbortSignal;
  now?: () => Date;
  signer?: Signer;
  stateFlag?: string;
}

export async function createContext(input: ContextInput): Promise<RunContext> {
  const { runbook, journal, onEvent } = input;
  let state: RunState | undefined;
  for (const r of journal.all()) state = reduce(state, r);
  let pool: GrantPool | undefined;
  journal.onAppend((r) => {
    state = reduce(state, r);
    onEvent({ ...r, kind: 'journal' });
    // A phase's grants end with it; a failure or an interrupt goes to the report phase (and close() waits for them).
    const e = r.event;
    if (pool && (e.type === 'phase.completed' || e.type === 'run.interrupted' || (e.type === 'phase.started' && e.phase === 'report'))) pool.release();
    checkpoint(r.event.type);
  });
  const now = input.now ?? (() => new Date());
  const record = (event: JournalEvent) => {
    journal.append(event, now());
  };
  const adapters = await createAdapters(runbook, {
    runId: input.runId,
    workDir: input.paths.work,
    log: (level, message) => record({ type: 'note', level, message }),
    onGrant: record,
  });
  const steps = createStepRunner(
    {
      record,
      started: (id) => Boolean(state?.steps[id]),
      completed: (id) => {
        const s = state?.steps[id];
        return s?.completedAt !== undefined ? { exitCode: s.exitCode ?? 0 } : undefined;
      },
    },
    input.paths.dir,
    input.runId,
  );
  const isLocal = adapters.target instanceof LocalMachine;
  if (!isLocal) {
    pool = new GrantPool({
      record,
      state: () => {
        if (!state) throw new Error('run state read before run.started');
        return state;
      },
      now,
      vaults: () => adapters.vaults.filter((v): v is ToolVault => isToolVault(v)),
      // A grant for the target before the crossing was on the old server; after it, the target is the rebuilt one.
      machineNamed: (name) => {
        const crossed = Boolean(state?.crossing?.startedAt);
        if (name === adapters.provingGround.name) return adapters.provingGround;
        if (name === adapters.target.name) return crossed ? adapters.rebuiltTarget : adapters.target;
        return undefined;
      },
    });
  }
  const grants = pool;
  const ctx: RunContext = {
    runId: input.runId,
    paths: input.paths,
    ...(input.stateFlag ? { stateFlag: input.stateFlag } : {}),
    runbook,
    journal,
    target: adapters.target,
    ...(adapters.target instanceof LocalMachine ? { localTarget: adapters.target.host } : {}),
    ...(!isLocal
      ? { remote: { provingGround: adapters.provingGround, rebuiltTarget: adapters.rebuiltTarget, plane: adapters.plane, engines: adapters.remoteEngines, folderMethods: adapters.folderMethods, grants: grants! } }
      : {}),
    vaults: adapters.vaults,
    engines: adapters.engines,
    infra: adapters.infra,
    steps,
    state: () => {
      if (!state) throw new Error('run state read before run.started');
      return state;
    },
    record,
    progress: (event) => onEvent({ ...event, kind: 'progress' }),
    confirm: input.confirm,
    hooks: input.hooks ?? {},
    now,
    ...(input.signal ? { signal: input.signal } : {}),
    ...(input.signer ? { signer: input.signer } : {}),
    close: async () => {
      // Every way out of a run ends here: no grant outlives the process that holds it (a kill -9 leaves it to the next process, or its expiry).
      await grants?.close().catch(() => undefined);
      for (const m of new Set([adapters.target, adapters.rebuiltTarget, adapters.provingGround])) await m.close().catch(() => undefined);
    },
  };
  return ctx;
}
