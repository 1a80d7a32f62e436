import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { RubiconError } from '../core/errors.ts';

/**
 * Ed25519 signing keys (node:crypto only). See docs/trust.md for what is
 * signed with which key and where each key lives.
 *
 * Contract:
 * - The private key never leaves this module's closures: a Signer carries
 *   only its key id and public key as data (JSON.stringify(signer) shows no
 *   secret), and no error message contains key material.
 * - Where the private key comes from is the caller's choice, named by a
 *   KeySource (an environment variable or a file the runbook names); this
 *   module never looks in the state directory or the stack config.
 * - A key file readable by group or others is refused (KEY_INSECURE) before
 *   its content is read.
 * - Errors: KEY_INVALID (missing, unreadable, not an unencrypted PKCS#8 PEM
 *   Ed25519 key), KEY_INSECURE; both exit 3: nothing was touched.
 */

/** Where a private key comes from: an environment variable holding a PKCS#8 PEM, or a file holding one. */
export type KeySource = { env: string } | { file: string };

export interface Signer {
  /** First 16 hex digits of SHA-256 over the public key's SPKI DER. */
  readonly keyId: string;
  /** The public key (SPKI PEM): what a verifier is built from. */
  readonly publicKeyPem: string;
  /** Ed25519 signature (64 bytes) over exactly `bytes`. */
  sign(bytes: Uint8Array): Buffer;
}

export interface Verifier {
  readonly keyId: string;
  /** True only for a valid Ed25519 signature by this key over exactly `bytes`. Never throws. */
  verify(bytes: Uint8Array, signature: Uint8Array): boolean;
}

/** Plain words for a key source, for messages (never the key itself). */
export function describeKeySource(source: KeySource): string {
  return 'env' in source ? `environment variable ${source.env}` : `file ${source.file}`;
}

function keyInvalid(source: string, why: string, hint: string): RubiconError {
  return new RubiconError('KEY_INVALID', `The signing key in ${source} ${why}.`, { hint, details: { source } });
}

const GENERATE_HINT =
  'Create one with `openssl genpkey -algorithm ed25519 -out rubicon-signing.pem && chmod 600 rubicon-signing.pem` ' +
  '(docs/trust.md), and put its public key (`openssl pkey -in rubicon-signing.pem -pubout`) in the stack config rubicon:permitPublicKey.';

/** keyId: first 16 hex digits of SHA-256 over the SPKI DER of a public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

function readPem(source: KeySource, env: NodeJS.ProcessEnv): string {
  const where = describeKeySource(source);
  if ('env' in source) {
    const value = env[source.env];
    if (value === undefined || value.trim() === '') {
      throw keyInvalid(where, 'is not set', `export ${source.env} with the PKCS#8 PEM private key before running rubicon. ${GENERATE_HINT}`);
    }
    // CI secret stores often keep a PEM on one line with literal "\n".
    return value.includes('\n') ? value : value.replace(/\\n/g, '\n');
  }
  let st;
  try {
    st = statSync(source.file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw keyInvalid(where, code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`, `Check the path the runbook names. ${GENERATE_HINT}`);
  }
  if (!st.isFile()) throw keyInvalid(where, 'is not a regular file', 'Point the runbook at the PEM file itself.');
  // POSIX permission bits; Windows has none to check (rely on the file's ACL there).
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new RubiconError(
      'KEY_INSECURE',
      `The signing key file ${source.file} is readable by others (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}): refused before reading it.`,
      { hint: `chmod 600 ${source.file} (only its owner may read a private key), then run the command again.`, details: { source: where } },
    );
  }
  try {
    return readFileSync(source.file, 'utf8');
  } catch (e) {
    throw keyInvalid(where, `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 'Check that the user running rubicon owns the file.');
  }
}

function privateKeyFrom(pem: string, where: string): KeyObject {
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem)) {
    throw keyInvalid(where, 'is encrypted with a passphrase', 'Rubicon reads unencrypted PKCS#8 keys only: protect the file (chmod 600) or the variable (a secret store) instead.');
  }
  if (!/-----BEGIN PRIVATE KEY-----/.test(pem)) {
    throw keyInvalid(where, 'is not a PKCS#8 PEM private key (no "BEGIN PRIVATE KEY" block)', GENERATE_HINT);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw keyInvalid(where, 'cannot be parsed as a PEM private key', GENERATE_HINT);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw keyInvalid(where, `is a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`, GENERATE_HINT);
  }
  return key;
}

/**
 * The signer for the private key in `source`. Reads the environment or the
 * file once, now. Throws KEY_INVALID / KEY_INSECURE naming the source.
 */
export function loadSigner(source: KeySource, env: NodeJS.ProcessEnv = process.env): Signer {
  const where = describeKeySource(source);
  const privateKey = privateKeyFrom(readPem(source, env), where);
  const publicKey = createPublicKey(privateKey);
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const keyId = keyIdOf(publicKey);
  return Object.freeze({
    keyId,
    publicKeyPem,
    sign: (bytes: Uint8Array): Buffer => sign(null, bytes, privateKey),
  });
}

/** A verifier for an Ed25519 public key (SPKI PEM). Throws KEY_INVALID when it is not one. */
export function verifierFrom(publicKeyPem: string): Verifier {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: publicKeyPem, format: 'pem' });
  } catch {
    throw new RubiconError('KEY_INVALID', 'The public key is not a PEM public key ("BEGIN PUBLIC KEY").', {
      hint: 'Use the output of `openssl pkey -in rubicon-signing.pem -pubout` (docs/trust.md).',
    });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new RubiconError('KEY_INVALID', `The public key is a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519.`, {
      hint: 'Rubicon signs with Ed25519 only; generate a key with `openssl genpkey -algorithm ed25519`.',
    });
  }
  const keyId = keyIdOf(key);
  return Object.freeze({
    keyId,
    verify: (bytes: Uint8Array, signature: Uint8Array): boolean => {
      if (signature.length !== 64) return false;
      try {
        return verify(null, bytes, key, signature);
      } catch {
        return false;
      }
    },
  });
}

/** A fresh Ed25519 key pair as PEM (PKCS#8 private, SPKI public). For setup and tests; store the private key only where Rubicon runs. */
export function generateKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
