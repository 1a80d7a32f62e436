import { RubiconError } from '../core/errors.ts';

/**
 * Where a vault keeps a run's documents (Vault.putRunDocument): the same
 * relative key in every vault kind, `runs/<runId>/<name>.json`, apart from
 * the artifact index (so `verify` never reads a run document as an
 * artifact). Throws INTERNAL for a name that could leave that folder: run
 * ids and names are Rubicon's own, never user text.
 */
const SAFE_RUN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SAFE_NAME = /^[a-z0-9][a-z0-9-]{0,127}$/;

export const RUN_DOCS_DIR = 'runs';

export function runDocKey(runId: string, name: string): string {
  return `${runDocsFolder(runId)}/${checkName(name)}.json`;
}

export function runDocsFolder(runId: string): string {
  if (!SAFE_RUN.test(runId) || runId.includes('..')) throw new RubiconError('INTERNAL', `run id '${runId}' cannot name a vault folder`);
  return `${RUN_DOCS_DIR}/${runId}`;
}

function checkName(name: string): string {
  if (!SAFE_NAME.test(name)) throw new RubiconError('INTERNAL', `run document name '${name}' is not [a-z0-9-]+`);
  return name;
}

/** The document name of a key under the run's folder, or undefined for anything else. */
export function runDocName(file: string): string | undefined {
  const m = /^([a-z0-9][a-z0-9-]{0,127})\.json$/.exec(file);
  return m ? m[1] : undefined;
}
