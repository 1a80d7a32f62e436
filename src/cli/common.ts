import os from 'node:os';
import path from 'node:path';
import { RubiconError, isRubiconError } from '../core/errors.ts';
import type { StateStore } from '../state/store.ts';

/**
 * What every command shares: the parsed flags, where runs are kept, the
 * shared store of --state. Light on purpose: main.ts loads a command's own
 * module only when that command runs (`rubicon --version` and `help` load
 * nearly nothing), and the Azure SDK behind --state only with --state.
 */
export interface Flags {
  runbook?: string;
  json: boolean;
  yes: boolean;
  dir?: string;
  html?: string;
  stateDir?: string;
  /** --state azblob://… (shared run state). */
  state?: string;
  stack: string[];
  dryRun: boolean;
  help: boolean;
  crossed: boolean;
  by?: string;
  publicKey?: string;
  /** audit: check the journal alone, not the heads in the vaults. */
  journalOnly?: boolean;
  junitVendorFailures: boolean;
  version: boolean;
}

export function defaultStateDir(flags: Flags): string {
  if (flags.stateDir) return path.resolve(flags.stateDir);
  if (process.env.RUBICON_STATE_DIR) return path.resolve(process.env.RUBICON_STATE_DIR);
  const base = process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'rubicon');
}

/** The shared store of --state, or undefined (the local state directory). */
export async function sharedState(flags: Flags): Promise<StateStore | undefined> {
  if (!flags.state) return undefined;
  if (!flags.state.startsWith('azblob://')) {
    throw new RubiconError('ARGUMENTS_INVALID', `--state ${flags.state}: only azblob://ACCOUNT/CONTAINER/PREFIX is supported`, { hint: 'use --state-dir DIR for a local folder' });
  }
  const { azblobStateStore, defaultCacheRoot } = await import('../state/azblob.ts');
  return azblobStateStore(flags.state, defaultCacheRoot());
}

/**
 * A run id that names no run: say where runs were looked for and how to look
 * elsewhere. Other errors pass unchanged.
 */
export function explainMissingRun(e: unknown, runId: string, flags: Flags, shared?: StateStore): never {
  if (isRubiconError(e) && e.code === 'RUN_NOT_FOUND') {
    const where = shared ? shared.location : defaultStateDir(flags);
    const from = shared ? '--state' : flags.stateDir ? '--state-dir' : process.env.RUBICON_STATE_DIR ? '$RUBICON_STATE_DIR' : 'the default';
    throw new RubiconError('RUN_NOT_FOUND', `no run ${runId} in ${where} (runs are kept there, from ${from})`, {
      hint: `\`rubicon status${shared ? ` --state ${shared.location}` : flags.stateDir ? ` --state-dir ${where}` : ''}\` lists the runs kept there; a run kept elsewhere needs --state-dir DIR (the demo keeps its runs in DIR/state and prints the --state-dir at its end)`,
      cause: e,
    });
  }
  throw e;
}

export function reportOptions(flags: Flags): { junit: { vendorFailures: boolean } } {
  return { junit: { vendorFailures: flags.junitVendorFailures } };
}
