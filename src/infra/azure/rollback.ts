import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { RubiconError, isRubiconError } from '../../core/errors.ts';
import { parseAzureSection, type PulumiAzureSettings } from '../../runbook/azure.ts';
import { readJournal, runPaths } from '../../run/journal.ts';
import { appendToRun } from '../../run/run.ts';
import type { StateStore } from '../../state/store.ts';
import type { RollbackResult } from './driver.ts';
import { createPulumiAzureInfra, type PulumiAzureInfraDeps } from './factory.ts';
import type { RollbackAsset } from './ports.ts';

/**
 * `rubicon rollback RUN_ID` and the rollback-asset listing of `rubicon
 * status`, as functions (the CLI file src/cli/rollback.ts is thin).
 *
 * The run's own runbook copy (in the state directory) says which stack and
 * key; relative paths in it are resolved against where the runbook was when
 * the run started (journal `run.started.runbookPath`). Rollback is
 * destructive for the current VM only (docs/infra.md, "Rollback"); it is
 * refused unless the caller confirmed it.
 */

/** The `infra` section (pulumi-azure) of run RUN_ID, from its runbook copy. Throws ARGUMENTS_INVALID for a run of another kind. */
export async function azureSectionOfRun(stateDir: string, runId: string, env: NodeJS.ProcessEnv = process.env): Promise<PulumiAzureSettings> {
  const paths = runPaths(stateDir, runId);
  const started = readJournal(paths.journal).find((r) => r.event.type === 'run.started')?.event;
  const runbookPath = started && started.type === 'run.started' ? started.runbookPath : paths.runbookCopy;
  let text: string;
  try {
    text = await readFile(paths.runbookCopy, 'utf8');
  } catch (e) {
    throw new RubiconError('RUN_NOT_FOUND', `run ${runId} has no runbook copy at ${paths.runbookCopy}`, { hint: 'check the run id with `rubicon status`', cause: e });
  }
  const infra = (parse(text) as { infra?: { kind?: unknown } } | null)?.infra;
  if (!infra || infra.kind !== 'pulumi-azure') {
    throw new RubiconError('ARGUMENTS_INVALID', `run ${runId} did not run on Azure (infra.kind is ${JSON.stringify(infra?.kind ?? null)}): there is no Pulumi rollback for it`, {
      hint: 'a sandbox run keeps its rollback point as a folder copy: see `rubicon status RUN_ID`',
    });
  }
  return parseAzureSection(infra, runbookPath, env);
}

export interface RollbackOptions extends PulumiAzureInfraDeps {
  /** Where the run's journal and runbook copy are on this machine (with `state`: that store's cache folder, already filled). */
  stateDir: string;
  /**
   * The shared store the run lives in (`--state azblob://…`): the rollback's
   * records are appended there under the store's target lock and uploaded,
   * not only to the local cache copy.
   */
  state?: StateStore;
  /** The caller's confirmation (`--yes`, or the operator typing the target's name). */
  confirmed: boolean;
  /** Who confirmed (journaled with `rollback.started`). */
  who?: string;
  /** Called once `rollback.started` is on record (from then on the journal holds the rollback's outcome, failed or not). */
  onStarted?: () => void;
}

/** Rebuilds the target of run RUN_ID from its rollback point through Pulumi. Destructive for the current VM (kept as a rollback asset). */
export async function rollbackRun(runId: string, o: RollbackOptions): Promise<RollbackResult> {
  const section = await azureSectionOfRun(o.stateDir, runId, o.env);
  if (!o.confirmed) {
    throw new RubiconError('CROSSING_NOT_CONFIRMED', `rollback of run ${runId} replaces the target VM of stack ${section.stack}: not confirmed, nothing was changed`, {
      hint: `run \`rubicon rollback ${runId} --yes\` to confirm`,
    });
  }
  // The rollback is part of the run's evidence: its start, the driver's lines (locks lifted and restored, disarming)
  // and its end are appended to the run's own journal, signed like the run's records (docs/infra.md, "Rollback").
  return appendToRun(runId, { stateDir: o.stateDir, ...(o.state ? { state: o.state } : {}), ...(o.env ? { env: o.env } : {}) }, async (record) => {
    record({ type: 'rollback.started', by: 'flag', who: o.who ?? 'unknown' });
    o.onStarted?.();
    const log = (level: 'info' | 'warn', message: string) => {
      record({ type: 'note', level, message });
      o.log?.(level, message);
    };
    try {
      const driver = await createPulumiAzureInfra(section, { ...o, log });
      const r = await driver.rollback(runId, (o.now ?? (() => new Date()))());
      record({ type: 'rollback.completed', from: r.from, diskId: r.diskId, image: r.image });
      return r;
    } catch (e) {
      record({ type: 'rollback.failed', code: isRubiconError(e) ? e.code : 'INTERNAL', message: (e instanceof Error ? e.message : String(e)).slice(0, 1000) });
      throw e;
    }
  });
}

/** Every rollback asset (snapshots, retired OS disks) of the target's resource group that is still kept. Read-only. */
export async function rollbackAssetsOf(section: PulumiAzureSettings, deps: PulumiAzureInfraDeps = {}): Promise<RollbackAsset[]> {
  const driver = await createPulumiAzureInfra(section, deps);
  return driver.rollbackAssets();
}
