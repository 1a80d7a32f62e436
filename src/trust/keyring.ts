import { existsSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { generateKeyPair, loadSigner, type KeySource, type Signer } from './keys.ts';

/**
 * Which key signs a run's permit and journal (docs/trust.md):
 * 1. the runbook's `trust.signingKey` (an environment variable or a file),
 * 2. else, for `infra.kind: pulumi-azure`, its `infra.signingKey` (the
 *    stack's rubicon:permitPublicKey verifies that one),
 * 3. else this user's own key, `$RUBICON_KEY_DIR/signing.pem` (default
 *    `$XDG_CONFIG_HOME/rubicon/keys`, i.e. ~/.config/rubicon/keys), created
 *    with mode 0600 on first use — so a sandbox or a single engineer's run is
 *    signed too, with a key that does not live beside the journal.
 *
 * Contract: the key never lives in the state directory (refused, exit 3,
 * naming the file and the fix): whoever can write the journal must not be
 * able to sign it.
 */
export function defaultKeyDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RUBICON_KEY_DIR) return path.resolve(env.RUBICON_KEY_DIR);
  const base = env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config');
  return path.join(base, 'rubicon', 'keys');
}

function real(p: string): string {
  // The longest existing ancestor resolved, the rest appended: works for paths that do not exist yet.
  let cur = path.resolve(p);
  const rest: string[] = [];
  while (!existsSync(cur) && path.dirname(cur) !== cur) {
    rest.unshift(path.basename(cur));
    cur = path.dirname(cur);
  }
  try {
    return path.join(realpathSync(cur), ...rest);
  } catch {
    return path.resolve(p);
  }
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(real(parent), real(child));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export function ensureUserKey(dir: string): KeySource {
  const file = path.join(dir, 'signing.pem');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { privateKeyPem } = generateKeyPair();
    writeFileSync(file, privateKeyPem, { mode: 0o600, flag: 'wx' });
  }
  return { file };
}

export interface RunKeyOptions {
  /** The runbook's trust.signingKey, or the Azure section's signingKey. */
  source?: KeySource;
  stateDir: string;
  env?: NodeJS.ProcessEnv;
}

/** The signer of a run. Throws KEY_INVALID / KEY_INSECURE (exit 3) before anything runs. */
export function runSigner(o: RunKeyOptions): { signer: Signer; source: KeySource } {
  const env = o.env ?? process.env;
  const source = o.source ?? ensureUserKey(defaultKeyDir(env));
  if ('file' in source && inside(source.file, o.stateDir)) {
    throw new RubiconError('KEY_INVALID', `the signing key ${source.file} is inside the state directory ${o.stateDir}: whoever can write the journal could sign it`, {
      hint: 'keep the key elsewhere (trust.signingKey in the runbook, or $RUBICON_KEY_DIR), then run the command again; nothing was touched',
    });
  }
  return { signer: loadSigner(source, env), source };
}
