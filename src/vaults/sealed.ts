import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { RubiconError } from '../core/errors.ts';

/**
 * Encryption at rest for the filesystem vault (AES-256-GCM from node:crypto,
 * chunked so that objects of any size stream in bounded memory).
 *
 * Key: 32 bytes (64 hex digits or base64) from the secret source the
 * runbook names (an environment variable or a file); never in the runbook,
 * never in the vault. Two keys are derived with HKDF-SHA256: one names
 * objects, one encrypts them.
 *
 * Naming (the choice, written down): an object is stored under
 * HMAC-SHA256(name key, plaintext SHA-256), not under the plaintext hash.
 * - Content addressing still works: callers ask for the plaintext SHA-256;
 *   the vault maps it to the stored name, and a read re-hashes the
 *   decrypted content against the SHA-256 asked for.
 * - Deduplication still works inside the vault: the same content has the
 *   same name, so it is stored once.
 * - What leaks: someone who can list the vault sees which objects are equal
 *   to each other (that is deduplication) and their sizes (ciphertext = plaintext
 *   + 16 + 16 per MiB). What does not leak: whether the vault holds a file
 *   whose content they know or guess (naming by the plain hash would let
 *   anyone check sha256(guess) against the folder), and the content.
 *   Naming by a random id would hide equality too, at the price of
 *   deduplication and of an index that maps hashes to ids: not chosen.
 *
 * Format: header (16 bytes: "RBE1", key id (4), nonce prefix (8, random per
 * object)), then chunks of 1 MiB plaintext, each ciphertext + 16-byte tag,
 * nonce = prefix || chunk counter (32-bit); AAD = header || counter ||
 * final flag. The last chunk (0 to 1 MiB − 1 bytes) carries the final flag,
 * so a truncated or re-ordered object fails authentication.
 */
export const SEAL_CHUNK = 1024 * 1024;
const HEADER = 16;
const TAG = 16;
const MAGIC = Buffer.from('RBE1');

export interface VaultKeys {
  name: Buffer;
  data: Buffer;
  /** First 4 bytes of SHA-256(data key): which key sealed an object (not secret). */
  id: Buffer;
}

export function deriveKeys(master: Buffer): VaultKeys {
  const name = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'rubicon vault object names', 32));
  const data = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'rubicon vault object data', 32));
  return { name, data, id: createHash('sha256').update(data).digest().subarray(0, 4) };
}

/** The stored name of the object whose plaintext hashes to `sha256`. Pure. */
export function sealedName(keys: VaultKeys, sha256: string): string {
  return createHmac('sha256', keys.name).update(sha256).digest('hex');
}

/** Bytes on disk for `n` bytes of plaintext. Pure. */
export function sealedSize(n: number): number {
  return HEADER + n + TAG * (Math.floor(n / SEAL_CHUNK) + 1);
}

/** The plaintext size whose sealed size is `stored`, or undefined when none is. Pure; the inverse of sealedSize. */
export function plainSize(stored: number): number | undefined {
  const x = stored - HEADER;
  if (!Number.isSafeInteger(x) || x < TAG) return undefined;
  const n = x - TAG * (Math.floor((x - TAG) / (SEAL_CHUNK + TAG)) + 1);
  return sealedSize(n) === stored ? n : undefined;
}

function aad(header: Buffer, counter: number, final: boolean): Buffer {
  const b = Buffer.alloc(HEADER + 5);
  header.copy(b, 0);
  b.writeUInt32BE(counter, HEADER);
  b[HEADER + 4] = final ? 1 : 0;
  return b;
}

function nonce(header: Buffer, counter: number): Buffer {
  const n = Buffer.alloc(12);
  header.copy(n, 0, 8, 16);
  n.writeUInt32BE(counter, 8);
  return n;
}

/** Seals a stream: push() plaintext, get sealed bytes; final() once. */
export class Sealer {
  private readonly keys: VaultKeys;
  readonly header: Buffer;
  private counter = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private started = false;

  constructor(keys: VaultKeys) {
    this.keys = keys;
    this.header = Buffer.concat([MAGIC, keys.id, randomBytes(8)]);
  }

  private seal(plain: Buffer, final: boolean): Buffer {
    const c = createCipheriv('aes-256-gcm', this.keys.data, nonce(this.header, this.counter));
    c.setAAD(aad(this.header, this.counter, final));
    const out = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
    this.counter++;
    return out;
  }

  /** Returns the sealed bytes ready so far (the header first). */
  push(chunk: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    if (!this.started) {
      out.push(this.header);
      this.started = true;
    }
    this.pending.push(Buffer.from(chunk));
    this.pendingBytes += chunk.byteLength;
    while (this.pendingBytes >= SEAL_CHUNK) {
      const all = Buffer.concat(this.pending, this.pendingBytes);
      out.push(this.seal(all.subarray(0, SEAL_CHUNK), false));
      const rest = all.subarray(SEAL_CHUNK);
      this.pending = rest.length ? [Buffer.from(rest)] : [];
      this.pendingBytes = rest.length;
    }
    return out;
  }

  final(): Buffer[] {
    const out: Buffer[] = [];
    if (!this.started) {
      out.push(this.header);
      this.started = true;
    }
    out.push(this.seal(Buffer.concat(this.pending, this.pendingBytes), true));
    this.pending = [];
    return out;
  }
}

/** Thrown by unseal for a wrong key, a damaged, truncated or re-ordered object. */
export class UnsealError extends Error {}

/** Opens a sealed stream; throws UnsealError when it does not authenticate. */
export async function* unseal(keys: VaultKeys, source: AsyncIterable<Uint8Array>): AsyncIterable<Buffer> {
  let buf = Buffer.alloc(0);
  let header: Buffer | undefined;
  let counter = 0;
  const open = (sealed: Buffer, final: boolean): Buffer => {
    const d = createDecipheriv('aes-256-gcm', keys.data, nonce(header!, counter));
    d.setAAD(aad(header!, counter, final));
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    try {
      const plain = Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
      counter++;
      return plain;
    } catch {
      throw new UnsealError(`chunk ${counter} does not authenticate (damaged, truncated, or sealed with another key)`);
    }
  };
  for await (const c of source) {
    buf = buf.length ? Buffer.concat([buf, c]) : Buffer.from(c);
    if (!header) {
      if (buf.length < HEADER) continue;
      header = Buffer.from(buf.subarray(0, HEADER));
      if (!header.subarray(0, 4).equals(MAGIC)) throw new UnsealError('not a sealed object (no RBE1 header)');
      if (!header.subarray(4, 8).equals(keys.id)) throw new UnsealError('sealed with another key (key id differs)');
      buf = buf.subarray(HEADER);
    }
    // A full chunk is final only if nothing follows it: keep one back until more arrives.
    while (buf.length > SEAL_CHUNK + TAG) {
      yield open(buf.subarray(0, SEAL_CHUNK + TAG), false);
      buf = buf.subarray(SEAL_CHUNK + TAG);
    }
  }
  if (!header) throw new UnsealError('truncated before the header');
  if (buf.length < TAG || buf.length >= SEAL_CHUNK + TAG) {
    if (buf.length === SEAL_CHUNK + TAG) {
      yield open(buf, false);
      throw new UnsealError('truncated: the final chunk is missing');
    }
    throw new UnsealError('truncated');
  }
  yield open(buf, true);
}

/**
 * Reads a vault key from its source: `{ env }` the variable's value, `{ file }`
 * the file's content (mode 0600 or stricter), 64 hex digits or base64 of 32
 * bytes. RUNBOOK_INVALID naming the vault and the source otherwise (never the value).
 */
export function readVaultKey(source: { env: string } | { file: string }, vault: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  let text: string | undefined;
  let where: string;
  if ('env' in source) {
    where = `the environment variable ${source.env}`;
    text = env[source.env];
  } else {
    where = `the file ${source.file}`;
    try {
      const st = statSync(source.file);
      if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
        throw new RubiconError('KEY_INSECURE', `vault '${vault}': ${where} is readable by others (mode ${(st.mode & 0o777).toString(8)})`, { hint: `chmod 600 ${source.file}` });
      }
      text = readFileSync(source.file, 'utf8');
    } catch (e) {
      if (e instanceof RubiconError) throw e;
      text = undefined;
    }
  }
  const t = text?.trim() ?? '';
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/]{43}=$/.test(t) ? Buffer.from(t, 'base64') : undefined;
  if (!key || key.length !== 32) {
    throw new RubiconError('RUNBOOK_INVALID', `vault '${vault}': ${where} must hold the vault's encryption key: 32 bytes as 64 hex digits or base64`, {
      hint: `make one with \`openssl rand -hex 32\`, keep it in your secrets store, and provide it as ${where}; losing it loses the vault's contents`,
    });
  }
  return key;
}
