/**
 * Preflight: can test nets run on this machine? They need Linux, root (for
 * network namespaces and mounts) and a few tools. `findTools` resolves each
 * tool to an absolute path once, so the harness never depends on the PATH of
 * whoever runs it (root's PATH sometimes lacks /usr/sbin).
 */
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';

/** Tool → the Debian package that ships it. */
const TOOLS = {
  ip: 'iproute2',
  sshd: 'openssh-server',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  unshare: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  hostname: 'hostname',
  sh: 'dash',
} as const;
export type ToolName = keyof typeof TOOLS;
export type Tools = Record<ToolName, string>;

/**
 * Files `ip netns exec` binds the host's own copy over. It can only bind over
 * a file that exists (on a machine without /etc/machine-id the bind silently
 * does not happen), so the preflight checks them.
 */
export const BOUND_ETC_FILES = ['hostname', 'hosts', 'machine-id', 'os-release', 'passwd'] as const;

/** Where sshd must be: Debian's path; sshd refuses to run unless started by absolute path. */
const SSHD = '/usr/sbin/sshd';
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export class TestNetUnavailableError extends Error {
  override name = 'TestNetUnavailableError';
  readonly reason: string;
  constructor(reason: string) {
    super(`test hosts (network namespaces) cannot run here: ${reason}`);
    this.reason = reason;
  }
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function which(name: string, envPath: string | undefined, extra: readonly string[]): string | undefined {
  const dirs = [...(envPath ?? '').split(path.delimiter).filter((d) => d.startsWith('/')), ...extra];
  for (const d of dirs) {
    const f = path.join(d, name);
    if (executable(f)) return f;
  }
  return undefined;
}

export interface Preflight {
  tools: Tools | undefined;
  /** Why test nets cannot run here; undefined when they can. */
  reason: string | undefined;
}

/**
 * Checks the machine. `probe` lets a test pretend to be another machine (a
 * PATH without the tools, a non-root uid, another /etc). Side-effect free.
 */
export function preflight(probe: { PATH?: string; uid?: number; platform?: string; etc?: string; sshd?: string } = {}): Preflight {
  const platform = probe.platform ?? process.platform;
  if (platform !== 'linux') return { tools: undefined, reason: `needs Linux network namespaces; this is ${platform}` };
  const uid = probe.uid ?? process.getuid?.() ?? -1;
  const problems: string[] = [];
  if (uid !== 0) problems.push(`needs root (network namespaces, mounts); running as uid ${uid}: run the tests as root (CI does)`);
  const found: Partial<Tools> = {};
  const missing: string[] = [];
  for (const [name, pkg] of Object.entries(TOOLS) as [ToolName, string][]) {
    const sshd = probe.sshd ?? SSHD;
    const f = name === 'sshd' ? (executable(sshd) ? sshd : undefined) : which(name, probe.PATH ?? process.env.PATH, probe.PATH === undefined ? EXTRA_DIRS : []);
    if (f === undefined) missing.push(`${name === 'sshd' ? sshd : name} (apt-get install ${pkg})`);
    else found[name] = f;
  }
  if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
  const etc = probe.etc ?? '/etc';
  const absent = BOUND_ETC_FILES.filter((f) => !existsSync(path.join(etc, f)));
  if (absent.length > 0) {
    problems.push(
      `missing ${absent.map((f) => path.join(etc, f)).join(', ')}: \`ip netns exec\` can only give a host its own copy of a file that exists` +
        (absent.includes('machine-id') ? ' (create /etc/machine-id with `systemd-machine-id-setup` or `dbus-uuidgen --ensure=/etc/machine-id`)' : ''),
    );
  }
  if (problems.length > 0) return { tools: undefined, reason: problems.join('; ') };
  return { tools: found as Tools, reason: undefined };
}

let cached: Preflight | undefined;

/** The tools, or throws TestNetUnavailableError with every reason at once. Cached per process. */
export function requireTools(): Tools {
  cached ??= preflight();
  if (cached.tools === undefined) throw new TestNetUnavailableError(cached.reason ?? 'unknown');
  return cached.tools;
}

/**
 * For test files: the reason to skip tests that need a test net, or
 * undefined to run them. In CI (`process.env.CI` set) it always returns
 * undefined, so the tests run and fail with createTestNet's clear error
 * instead of skipping. Outside CI, when it returns a reason it also prints
 * it, so the skip never goes unexplained:
 *
 *     const noNet = requireTestNet();
 *     describe.skipIf(noNet)(`my suite${noNet ? ` (skipped: ${noNet})` : ''}`, () => { ... });
 */
export function requireTestNet(): string | undefined {
  if (process.env.CI) return undefined;
  cached ??= preflight();
  if (cached.reason !== undefined) {
    console.warn(`[test-hosts] skipping tests that need test hosts: ${cached.reason}`);
  }
  return cached.reason;
}
