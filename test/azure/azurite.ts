/**
 * Azurite (npm `azurite`, Microsoft's Azure Storage emulator) started by the
 * tests: blob service only, on 127.0.0.1 with a port the OS picks, its data
 * in a temp folder, telemetry off (it would otherwise phone home). The
 * account is Azurite's documented development account `devstoreaccount1`
 * and its published key (learn.microsoft.com, "Use the Azurite emulator":
 * "Account name: devstoreaccount1, Account key: Eby8vdM02x…"), not a secret.
 *
 * Missing Azurite: in CI the suite fails (it is a devDependency, `npm ci`
 * brings it); elsewhere the tests skip and say why (azuriteMissing()).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import tls from 'node:tls';
import type { AccessToken, TokenCredential } from '@azure/core-auth';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const MAIN = fileURLToPath(new URL('../../node_modules/azurite/dist/src/blob/main.js', import.meta.url));

/** Why Azurite cannot run here, or undefined. In CI a missing Azurite is a failure, not a skip: call requireAzurite(). */
export function azuriteMissing(): string | undefined {
  return existsSync(MAIN) ? undefined : `Azurite is not installed (${MAIN} missing): run npm ci (azurite is a devDependency)`;
}

export function requireAzurite(): boolean {
  const why = azuriteMissing();
  if (why && process.env.CI) throw new Error(`CI: ${why}`);
  return why === undefined;
}

export interface Azurite {
  /** http://127.0.0.1:<port>/devstoreaccount1 */
  accountUrl: string;
  port: number;
  location: string;
  child: ChildProcess;
  /** Stops it (SIGTERM) and waits. */
  stop(): Promise<void>;
  /** SIGKILL, as a network failure mid-upload. */
  kill(): Promise<void>;
  /** Starts it again on the same folder and port (after stop or kill). */
  restart(): Promise<Azurite>;
  /** Stops it and removes its folder. */
  dispose(): Promise<void>;
}

/**
 * `tls`: serve HTTPS with this certificate and key (PEM files) and accept
 * OAuth bearer tokens (`--oauth basic`: Azurite checks a token's audience,
 * issuer and times, not its signature): what user-delegation keys need.
 */
export async function startAzurite(o: { location?: string; port?: number; tls?: { cert: string; key: string } } = {}): Promise<Azurite> {
  const location = o.location ?? mkdtempSync(path.join(os.tmpdir(), 'rubicon-azurite-'));
  const child = spawn(
    process.execPath,
    [
      MAIN,
      ...['--blobHost', '127.0.0.1', '--blobPort', String(o.port ?? 0), '--location', location, '--disableTelemetry', '--skipApiVersionCheck', '--loose'],
      ...(o.tls ? ['--oauth', 'basic', '--cert', o.tls.cert, '--key', o.tls.key] : []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /successfully listens on https?:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`Azurite exited (${code}) before listening: ${out.slice(-2000)}`)));
  });
  child.removeAllListeners('exit');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const az: Azurite = {
    accountUrl: `${o.tls ? 'https' : 'http'}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    port,
    location,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    restart: () => startAzurite({ location, port, ...(o.tls ? { tls: o.tls } : {}) }),
    async dispose() {
      await az.stop();
      rmSync(location, { recursive: true, force: true });
    },
  };
  return az;
}

/**
 * A self-signed certificate for 127.0.0.1 made with openssl (Debian's, in
 * the image) in `dir`: Azurite's --cert/--key for HTTPS, which its OAuth
 * mode requires (it refuses a bearer token over HTTP). This process trusts
 * it from here on (trustCertificate).
 */
export function selfSignedCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'azurite-cert.pem');
  const key = path.join(dir, 'azurite-key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  trustCertificate(readFileSync(cert, 'utf8'));
  return { cert, key };
}

/**
 * Adds a CA certificate to what this process's TLS clients trust (the
 * Azure SDK's https agents included): tls.setDefaultCACertificates where
 * Node has it; an older Node gets NODE_TLS_REJECT_UNAUTHORIZED=0 for this
 * test process only (read at each connection): the only TLS peer the
 * tests talk to is the Azurite they started on 127.0.0.1.
 */
function trustCertificate(pem: string): void {
  const t = tls as typeof tls & { setDefaultCACertificates?: (c: string[]) => void; getCACertificates?: (w: string) => string[] };
  if (t.setDefaultCACertificates && t.getCACertificates) t.setDefaultCACertificates([...t.getCACertificates('default'), pem]);
  else process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
}

/**
 * An Entra ID token credential as Azurite's `--oauth basic` checks one: a
 * JWT whose audience is https://storage.azure.com, issuer
 * https://sts.windows.net/<tenant>/, with iat/nbf/exp around now, and the
 * oid/tid a user-delegation key is bound to (Azurite does not check the
 * signature; Azure would). Stands in for DefaultAzureCredential.
 */
export function fakeEntraCredential(o: { oid?: string; tid?: string } = {}): TokenCredential & { oid: string; tid: string } {
  const oid = o.oid ?? randomUUID();
  const tid = o.tid ?? randomUUID();
  const b64 = (x: unknown) => Buffer.from(JSON.stringify(x)).toString('base64url');
  return {
    oid,
    tid,
    async getToken(): Promise<AccessToken> {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + 3600;
      const payload = { aud: 'https://storage.azure.com', iss: `https://sts.windows.net/${tid}/`, iat: now - 60, nbf: now - 60, exp, oid, tid, sub: oid, ver: '1.0' };
      return { token: `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`, expiresOnTimestamp: exp * 1000 };
    },
  };
}
