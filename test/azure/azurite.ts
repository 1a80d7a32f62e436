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
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

export async function startAzurite(o: { location?: string; port?: number } = {}): Promise<Azurite> {
  const location = o.location ?? mkdtempSync(path.join(os.tmpdir(), 'rubicon-azurite-'));
  const child = spawn(
    process.execPath,
    [MAIN, '--blobHost', '127.0.0.1', '--blobPort', String(o.port ?? 0), '--location', location, '--disableTelemetry', '--skipApiVersionCheck', '--loose'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
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
    accountUrl: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
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
    restart: () => startAzurite({ location, port }),
    async dispose() {
      await az.stop();
      rmSync(location, { recursive: true, force: true });
    },
  };
  return az;
}
