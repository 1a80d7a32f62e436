import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { generateKeyPair, keyIdOf, loadSigner, verifierFrom } from '../../src/trust/keys.ts';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refusal(fn: () => unknown): RubiconError {
  try {
    fn();
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

function keyFile(name: string, content: string, mode = 0o600): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  chmodSync(file, mode);
  return file;
}

describe('loadSigner / verifierFrom', () => {
  const pair = generateKeyPair();

  it('signs from an environment variable; the verifier accepts exactly that signature', () => {
    const signer = loadSigner({ env: 'RUBICON_TEST_KEY' }, { RUBICON_TEST_KEY: pair.privateKeyPem });
    const verifier = verifierFrom(pair.publicKeyPem);
    expect(signer.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(verifier.keyId).toBe(signer.keyId);
    expect(signer.publicKeyPem).toBe(pair.publicKeyPem);
    const sig = signer.sign(Buffer.from('hello'));
    expect(sig).toHaveLength(64);
    expect(verifier.verify(Buffer.from('hello'), sig)).toBe(true);
    expect(verifier.verify(Buffer.from('hellO'), sig)).toBe(false);
    expect(verifier.verify(Buffer.from('hello'), sig.subarray(0, 63))).toBe(false);
    // The signer carries no secret as data.
    expect(JSON.stringify(signer)).not.toContain('PRIVATE');
  });

  it('accepts a one-line PEM with literal \\n, as CI secret stores keep it', () => {
    const oneLine = pair.privateKeyPem.trim().replace(/\n/g, '\\n');
    expect(loadSigner({ env: 'K' }, { K: oneLine }).keyId).toBe(verifierFrom(pair.publicKeyPem).keyId);
  });

  it('keyId is the first 16 hex of SHA-256 over the SPKI DER (checked with openssl)', () => {
    const file = keyFile('spki.pem', pair.publicKeyPem);
    const der = execFileSync('openssl', ['pkey', '-pubin', '-in', file, '-outform', 'DER']);
    const { createHash } = require_crypto();
    expect(verifierFrom(pair.publicKeyPem).keyId).toBe(createHash('sha256').update(der).digest('hex').slice(0, 16));
    expect(keyIdOf(createPublicKey(pair.publicKeyPem))).toBe(verifierFrom(pair.publicKeyPem).keyId);
  });

  it('reads a key file written by openssl genpkey with mode 600', () => {
    const file = path.join(dir, 'openssl.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', file]);
    chmodSync(file, 0o600);
    const pub = execFileSync('openssl', ['pkey', '-in', file, '-pubout']).toString();
    const signer = loadSigner({ file });
    expect(verifierFrom(pub).verify(Buffer.from('x'), signer.sign(Buffer.from('x')))).toBe(true);
  });

  it.each([0o640, 0o604, 0o644])('refuses a key file with mode %o, naming the file and chmod 600, before reading it', (mode) => {
    const file = keyFile(`loose-${mode.toString(8)}.pem`, pair.privateKeyPem, mode);
    const e = refusal(() => loadSigner({ file }));
    expect(e.code).toBe('KEY_INSECURE');
    expect(e.exitCode).toBe(3);
    expect(e.message).toContain(file);
    expect(e.hint).toContain(`chmod 600 ${file}`);
  });

  it.each([
    ['an unset variable', () => loadSigner({ env: 'NOPE' }, {}), 'environment variable NOPE is not set'],
    ['a missing file', () => loadSigner({ file: path.join(dir, 'absent.pem') }), 'does not exist'],
    ['a directory', () => loadSigner({ file: dir }), 'not a regular file'],
    ['a public key where a private one belongs', () => loadSigner({ env: 'K' }, { K: pair.publicKeyPem }), 'not a PKCS#8 PEM private key'],
    ['garbage inside a PEM block', () => loadSigner({ env: 'K' }, { K: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }), 'cannot be parsed'],
    [
      'an RSA key',
      () => loadSigner({ env: 'K' }, { K: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }),
      'rsa key, not Ed25519',
    ],
    [
      'an encrypted key',
      () => loadSigner({ env: 'K' }, { K: generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'p' }).toString() }),
      'encrypted with a passphrase',
    ],
  ])('refuses %s with KEY_INVALID (exit 3), naming the source', (_label, fn, text) => {
    const e = refusal(fn);
    expect(e.code).toBe('KEY_INVALID');
    expect(e.exitCode).toBe(3);
    expect(e.message).toContain(text);
    // No key material (a base64 run) in the message.
    expect(`${e.message} ${e.hint}`).not.toMatch(/[A-Za-z0-9+/=]{40,}/);
  });

  it('verifierFrom refuses what is not an Ed25519 public key', () => {
    expect(refusal(() => verifierFrom('not a key')).code).toBe('KEY_INVALID');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(refusal(() => verifierFrom(rsa)).message).toContain('not Ed25519');
  });

  it('a verifier of another key refuses the signature', () => {
    const signer = loadSigner({ env: 'K' }, { K: pair.privateKeyPem });
    const other = verifierFrom(generateKeyPair().publicKeyPem);
    expect(other.keyId).not.toBe(signer.keyId);
    expect(other.verify(Buffer.from('x'), signer.sign(Buffer.from('x')))).toBe(false);
  });
});

function require_crypto(): typeof import('node:crypto') {
  return process.getBuiltinModule('node:crypto');
}
