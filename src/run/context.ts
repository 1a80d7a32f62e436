import type { JournalEvent, OnEvent, ProgressEvent } from '../core/events.ts';
import { reduce, type RunState } from '../core/state.ts';
import type { Phase } from '../core/types.ts';
import type { DatabaseEngine } from '../engines/engine.ts';
import { lazyMssqlEngine } from '../engines/mssql/lazy.ts';
import { sqliteEngine } from '../engines/sqlite/index.ts';
import { LocalHost } from '../hosts/local.ts';
import type { InfraDriver } from '../infra/driver.ts';
import { SandboxDriver } from '../infra/sandbox.ts';
import type { Runbook } from '../runbook/load.ts';
import { mssqlEngineOptions } from '../runbook/mssql.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import type { Vault } from '../vaults/vault.ts';
import { checkpoint } from './faults.ts';
import type { Journal, RunPaths } from './journal.ts';

/**
 * Everything a phase needs. Phases read facts only from `state` (derived
 * from the journal) and record facts only through `record`, so a resumed
 * run sees exactly what a continuous one would.
 */
export interface Confirmation {
  confirmed: boolean;
  by: 'flag' | 'prompt';
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
  target: LocalHost;
  vaults: Vault[];
  engines: Record<string, DatabaseEngine>;
  infra: InfraDriver;
  state: () => RunState;
  record: (event: JournalEvent) => void;
  progress: (event: ProgressEvent) => void;
  confirm: (ctx: RunContext) => Promise<Confirmation>;
  hooks: RunHooks;
  now: () => Date;
  signal?: AbortSignal;
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
}

/**
 * The database engines a runbook uses. Also called inside the isolated
 * proving process (src/run/prove-worker.ts), so it must build engines from
 * the runbook alone (and the environment, which holds the passwords the
 * runbook names; the proving process inherits it).
 *
 * sqlite is always there; mssql when the runbook has an engines.mssql
 * section (loaded on first use). Throws RUNBOOK_INVALID naming the
 * variable when a password variable is no longer set (e.g. resume from
 * another shell). `log` receives the engines' plain-words messages.
 */
export function createEngines(
  runbook: Runbook,
  options: { env?: NodeJS.ProcessEnv; log?: (level: 'info' | 'warn', message: string) => void } = {},
): Record<string, DatabaseEngine> {
  const engines: Record<string, DatabaseEngine> = { sqlite: sqliteEngine };
  const mssql = runbook.engines?.mssql;
  if (mssql) engines.mssql = lazyMssqlEngine(mssqlEngineOptions(mssql, options.env ?? process.env, options.log ? { log: options.log } : {}));
  return engines;
}

export function createContext(input: ContextInput): RunContext {
  const { runbook, journal, onEvent } = input;
  let state: RunState | undefined;
  for (const r of journal.all()) state = reduce(state, r);
  journal.onAppend((r) => {
    state = reduce(state, r);
    onEvent({ ...r, kind: 'journal' });
    checkpoint(r.event.type);
  });
  const ctx: RunContext = {
    runId: input.runId,
    paths: input.paths,
    runbook,
    journal,
    target: new LocalHost(runbook.target.name, runbook.target.root),
    vaults: runbook.vaults.map((v) => {
      if (v.kind !== 'filesystem') throw new Error('not yet');
      return new FilesystemVault({ name: v.name, kind: v.kind, location: v.path, offTarget: true, immutable: false });
    }),
    engines: createEngines(runbook, { log: (level, message) => ctx.record({ type: 'note', level, message }) }),
    infra: new SandboxDriver({
      targetRoot: runbook.target.root,
      targetName: runbook.target.name,
      provingGroundRoot: runbook.provingGround.root,
      rollbackRoot: runbook.infra.kind === 'sandbox' ? runbook.infra.rollback : '',
      currentImage: runbook.infra.currentImage,
      plannedImage: runbook.target.image,
    }),
    state: () => {
      if (!state) throw new Error('run state read before run.started');
      return state;
    },
    record: (event) => {
      journal.append(event, (input.now ?? (() => new Date()))());
    },
    progress: (event) => onEvent({ ...event, kind: 'progress' }),
    confirm: input.confirm,
    hooks: input.hooks ?? {},
    now: input.now ?? (() => new Date()),
    signal: input.signal,
  };
  return ctx;
}
