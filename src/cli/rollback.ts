import os from 'node:os';
import { EXIT, RubiconError } from '../core/errors.ts';
import { rollbackRun, type RollbackOptions } from '../infra/azure/rollback.ts';
import type { StateStore } from '../state/store.ts';

/** Writes the run's reports again; a failure to do so is said on stderr and never hides the rollback's own outcome. */
async function refreshReports(runId: string, rewrite: ((runId: string) => Promise<unknown>) | undefined): Promise<void> {
  if (!rewrite) return;
  try {
    await rewrite(runId);
  } catch (e) {
    process.stderr.write(`warn: the reports of run ${runId} were not written again (${e instanceof Error ? e.message : String(e)}): run \`rubicon report ${runId}\`\n`);
  }
}

/**
 * `rubicon rollback RUN_ID [--yes] [--json]`: rebuilds the Azure target of a
 * run from its rollback point (the OS disk its crossing retired, or that
 * disk's snapshot) through Pulumi. Thin: the logic is
 * src/infra/azure/rollback.ts. Without --yes it changes nothing and exits 2.
 * Registered in src/cli/main.ts (loaded on demand, like reap).
 */
export async function rollbackCommand(
  runId: string | undefined,
  options: {
    stateDir: string;
    yes: boolean;
    json: boolean;
    state?: StateStore;
    /** Writes the run's reports again once the rollback is on record (main.ts: the same as `rubicon report`). */
    rewriteReports?: (runId: string) => Promise<unknown>;
    /** The Pulumi/ARM ports (tests); the real ones by default. */
    deps?: Omit<RollbackOptions, 'stateDir' | 'state' | 'confirmed' | 'who' | 'log' | 'onStarted'>;
  },
): Promise<number> {
  if (!runId) {
    throw new RubiconError('ARGUMENTS_INVALID', 'rubicon rollback needs a run id', { hint: 'list runs with `rubicon status`' });
  }
  // The driver's lines go to the run's journal (rollbackRun) and, for the person watching, to stderr.
  const who = process.env.RUBICON_OPERATOR ?? process.env.USER ?? os.userInfo().username;
  let result;
  let started = false;
  try {
    result = await rollbackRun(runId, {
      ...options.deps,
      stateDir: options.stateDir,
      ...(options.state ? { state: options.state } : {}),
      confirmed: options.yes,
      who,
      log: (level, message) => process.stderr.write(`${level}: ${message}\n`),
      onStarted: () => (started = true),
    });
  } catch (e) {
    // A rollback that started and failed is on record too: the reports say so (one refused before it started appended nothing).
    if (started) await refreshReports(runId, options.rewriteReports);
    throw e;
  }
  // The reports are evidence read without Rubicon: they show the rollback from now on, not only after `rubicon report`.
  await refreshReports(runId, options.rewriteReports);
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ kind: 'rollback', ...result })}\n`
      : `rolled back: the target now boots from ${result.diskId} (${result.from === 'retired-os-disk' ? 'the OS disk the crossing retired' : 'a disk made from its snapshot'})\n`,
  );
  return EXIT.ok;
}
