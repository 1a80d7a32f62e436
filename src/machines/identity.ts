import { execa } from 'execa';
import type { Machine } from './machine.ts';

/**
 * Who a machine is, as far as a rebuild changes it: its systemd machine id,
 * its OS release, and (for ssh) the host keys a known_hosts file holds for
 * it. Used to refuse landing on a server that was not really rebuilt.
 */
export interface MachineIdentity {
  machineId: string | null;
  osRelease: string | null;
}

export async function readIdentity(machine: Machine): Promise<MachineIdentity> {
  const read = async (p: string) => {
    try {
      return Buffer.from(await machine.readSmall(p, 64 * 1024)).toString('utf8');
    } catch {
      return null;
    }
  };
  const id = (await read('/etc/machine-id'))?.trim() || null;
  const os = await read('/etc/os-release');
  return { machineId: id, osRelease: os ? osReleaseName(os) : null };
}

/** PRETTY_NAME of an os-release file, else NAME VERSION_ID. Pure. */
export function osReleaseName(text: string): string | null {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1'));
  }
  return kv.get('PRETTY_NAME') ?? ([kv.get('NAME'), kv.get('VERSION_ID')].filter(Boolean).join(' ') || null);
}

/** Does the rebuilt server's OS match what the runbook names? PRETTY_NAME equal, or starting with the expected text. Pure. */
export function osReleaseMatches(actual: string | null, expected: string): boolean {
  if (!actual) return false;
  const a = actual.trim().toLowerCase();
  const e = expected.trim().toLowerCase();
  return a === e || a.startsWith(`${e} `) || a.startsWith(`${e}(`);
}

/** The host key blobs a known_hosts file holds for host:port (handles hashed names through ssh-keygen -F). */
export async function knownHostKeys(knownHostsFile: string, host: string, port: number): Promise<string[]> {
  const name = port === 22 ? host : `[${host}]:${port}`;
  const r = await execa('ssh-keygen', ['-F', name, '-f', knownHostsFile], { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) return [];
  return String(r.stdout)
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.trim().split(/\s+/).slice(1, 3).join(' '))
    .filter(Boolean);
}
