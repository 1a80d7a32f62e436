import os from 'node:os';
import { EXIT, RubiconError } from '../core/errors.ts';
import { rollbackRun } from '../infra/azure/rollback.ts';

/**
 * `rubicon rollback RUN_ID [--yes] [--json]`: rebuilds the Azure target of a
 * run from its rollback point (the OS disk its crossing retired, or that
 * disk's snapshot) through Pulumi. Thin: the logic is
 * src/infra/azure/rollback.ts. Without --yes it changes nothing and exits 2.
 * Registered in src/cli/main.ts (loaded on demand, like reap).
 */
export async function rollbackCommand(runId: string | undefined, options: { stateDir: string; yes: boolean; json: boolean }): Promise<number> {
  if (!runId) {
    throw new RubiconError('ARGUMENTS_INVALID', 'rubicon rollback needs a run id', { hint: 'list runs with `rubicon status`' });
  }
  // The driver's lines go to the run's journal (rollbackRun) and, for the person watching, to stderr.
  const who = process.env.RUBICON_OPERATOR ?? process.env.USER ?? os.userInfo().username;
  const result = await rollbackRun(runId, { stateDir: options.stateDir, confirmed: options.yes, who, log: (level, message) => process.stderr.write(`${level}: ${message}\n`) });
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ kind: 'rollback', ...result })}\n`
      : `rolled back: the target now boots from ${result.diskId} (${result.from === 'retired-os-disk' ? 'the OS disk the crossing retired' : 'a disk made from its snapshot'})\n`,
  );
  return EXIT.ok;
}
