/**
 * createTestNet and the TestNet / TestHost objects. The API is described at
 * the top of ./index.ts; this file is the implementation.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import {
  CTL,
  BLOCKS,
  hostsFile,
  ipScripts,
  planNet,
  reachableAddress,
  type HostNameOf,
  type HostPlan,
  type NetPlan,
  type TestNetSpec,
} from './spec.ts';
import { HostSshd, generateKey, sshdPaths } from './sshd.ts';
import { ETC_NETNS, NETNS_DIR, netDir, processStartTicks, sweepStaleTestNets, teardownSync, trackLive, writeRecord, type NetRecord } from './teardown.ts';
import { requireTools, type Tools } from './tools.ts';

export class TestNetError extends Error {
  override name = 'TestNetError';
}

/** Options of net.exec. */
export interface HostExecOptions {
  /** Written to the command's stdin (stdin is /dev/null otherwise). */
  input?: string | Uint8Array;
  /** Added to (not replacing) this process's environment. */
  env?: Record<string, string | undefined>;
  /** Working directory (an absolute path; every host shares the filesystem). Default: process.cwd(). */
  cwd?: string;
  /** Killed with SIGKILL after this long. Default 60 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Throw TestNetError when the command fails (non-zero exit, signal, timeout). Default true. */
  reject?: boolean;
}

/** Options of net.spawn and net.node. */
export interface HostSpawnOptions {
  /** Written to stdin, which is then closed. */
  input?: string | Uint8Array;
  /** Keep stdin open (child.stdin) for the test to write to. Default false: stdin is closed at once. */
  keepStdinOpen?: boolean;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Killed with SIGKILL after this long. Default: never. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface HostExecResult {
  host: string;
  argv: string[];
  /** undefined when killed by a signal or when it could not start. */
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

type SpawnOpts = { reject: false; stdin: 'pipe'; stdout: 'pipe'; stderr: 'pipe'; encoding: 'utf8' };
/**
 * A long-running command inside a host: execa's subprocess (pid, stdout,
 * stderr, stdin, kill(), and a promise of its result). It never rejects:
 * await it and read exitCode / signal.
 */
export type HostProcess = ResultPromise<SpawnOpts>;

/** An ed25519 key pair made by the harness. */
export interface KeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
  /** `ssh-ed25519 AAAA... comment` */
  publicKey: string;
}

export interface HostAddress {
  segment: string;
  iface: string;
  address: string;
  prefix: number;
}

/** Plain data describing a net (JSON in <dir>/net.json), for child processes and debugging. */
export interface TestNetInfo {
  id: string;
  dir: string;
  knownHostsPath: string;
  sshConfigPath: string;
  clientKey: KeyPair;
  switchNetns: string;
  segments: { name: string; bridge: string; subnet: string; hosts: string[] }[];
  hosts: {
    name: string;
    netns: string;
    addresses: HostAddress[];
    dataDir: string;
    etcDir: string;
    sshd: boolean;
    authorizedKeysPath: string;
    sshdLogPath: string;
  }[];
}

/** The key blob of an OpenSSH public key line (options and comment ignored), or undefined. */
export function keyBlob(line: string): string | undefined {
  const m = /(?:^|\s)((?:ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})(?:\s|$)/.exec(line);
  return m ? `${m[1]} ${m[2]}` : undefined;
}

export class TestHost {
  readonly name: string;
  readonly netns: string;
  /** Every address of the host, one per segment, in the spec's segment order. */
  readonly addresses: readonly HostAddress[];
  /** The host's data folder ("its disk"): an absolute path every namespace and the test see alike. */
  readonly dataDir: string;
  /** /etc/netns/<netns>: the files ip netns exec binds over /etc for this host. */
  readonly etcDir: string;
  /** root's home folder on this host (its own, in the net's folder; /etc/passwd of the host says so): HOME of ssh sessions and of net.exec. */
  readonly home: string;
  readonly authorizedKeysPath: string;
  /** The host's sshd. On a host created with sshd: false every method throws. */
  readonly sshd: HostSshd;
  readonly #net: TestNet<string>;

  constructor(net: TestNet<string>, plan: HostPlan, dataDir: string, sshd: HostSshd) {
    this.#net = net;
    this.name = plan.name;
    this.netns = plan.netns;
    this.addresses = plan.interfaces.map((i) => ({ segment: i.segment, iface: i.iface, address: i.address, prefix: i.prefix }));
    this.dataDir = dataDir;
    this.home = path.join(path.dirname(dataDir), 'root');
    this.etcDir = path.join(ETC_NETNS, plan.netns);
    this.authorizedKeysPath = sshd.paths.authorizedKeys;
    this.sshd = sshd;
  }

  /** The host's first address (on the first segment of the spec it is on). */
  get address(): string {
    const a = this.addresses[0];
    if (!a) throw new TestNetError(`host ${this.name} has no address (it is on no segment)`);
    return a.address;
  }

  /** Its address on `segment`, or undefined. */
  addressOn(segment: string): string | undefined {
    return this.addresses.find((a) => a.segment === segment)?.address;
  }

  /** What /etc/machine-id reads on this host. */
  get machineId(): string {
    return readFileSync(path.join(this.etcDir, 'machine-id'), 'utf8').trim();
  }

  /** What /etc/os-release reads on this host. */
  get osRelease(): string {
    return readFileSync(path.join(this.etcDir, 'os-release'), 'utf8');
  }

  /**
   * Changes /etc/machine-id as every process of the host sees it, at once,
   * running sshd and open sessions included (the file is rewritten in place,
   * so the bind mounts keep pointing at it). For "the engineer reinstalled
   * the server", together with setOsRelease and sshd.regenerateHostKey.
   */
  async setMachineId(id: string): Promise<void> {
    if (!/^[0-9a-f]{32}$/.test(id)) throw new TestNetError(`machine id for host ${this.name} must be 32 lowercase hex digits (machine-id(5)), not "${id}"`);
    writeFileSync(path.join(this.etcDir, 'machine-id'), `${id}\n`);
  }

  /** Changes /etc/os-release as every process of the host sees it, at once (rewritten in place). */
  async setOsRelease(text: string): Promise<void> {
    writeFileSync(path.join(this.etcDir, 'os-release'), text.endsWith('\n') ? text : `${text}\n`);
  }

  /** The lines of the host's authorized_keys. */
  authorizedKeys(): string[] {
    return readFileSync(this.authorizedKeysPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  }

  /**
   * Adds one authorized_keys line (options allowed, e.g.
   * `expiry-time="20300101Z" ssh-ed25519 AAAA... grant`); sshd reads the file
   * at each login, so it counts from the next one. Idempotent for the exact
   * same line.
   */
  async authorize(line: string): Promise<void> {
    const l = line.trim();
    if (l.includes('\n') || keyBlob(l) === undefined) throw new TestNetError(`authorize on host ${this.name}: not one OpenSSH public key line: "${l.slice(0, 80)}"`);
    const lines = this.authorizedKeys();
    if (!lines.includes(l)) this.#writeAuthorized([...lines, l]);
  }

  /**
   * Removes every authorized_keys line holding the same key (type and blob;
   * options and comment do not matter). Returns how many lines it removed.
   */
  async revoke(keyOrLine: string): Promise<number> {
    const blob = keyBlob(keyOrLine);
    if (blob === undefined) throw new TestNetError(`revoke on host ${this.name}: no OpenSSH public key in "${keyOrLine.slice(0, 80)}"`);
    const lines = this.authorizedKeys();
    const kept = lines.filter((l) => keyBlob(l) !== blob);
    if (kept.length !== lines.length) this.#writeAuthorized(kept);
    return lines.length - kept.length;
  }

  #writeAuthorized(lines: string[]): void {
    // Atomic replace: a login reading the file mid-write sees the old or the new list, never half.
    const tmp = `${this.authorizedKeysPath}.tmp`;
    writeFileSync(tmp, lines.map((l) => `${l}\n`).join(''), { mode: 0o600 });
    renameSync(tmp, this.authorizedKeysPath);
  }

  /** net.exec(this.name, ...) */
  exec(argv: readonly string[], options?: HostExecOptions): Promise<HostExecResult> {
    return this.#net.exec(this.name, argv, options);
  }
}

function randomMachineId(): string {
  return randomBytes(16).toString('hex');
}

function pickBlocks(n: number): number[] {
  const out = new Set<number>();
  while (out.size < n) out.add(randomInt(BLOCKS));
  return [...out];
}

export class TestNet<N extends string = string> {
  readonly id: string;
  /** /tmp/rbnet-<id>: everything of the net on disk. */
  readonly dir: string;
  /** known_hosts with every host's names, addresses and host key (as of creation, or the last updateKnownHosts()). */
  readonly knownHostsPath: string;
  /** An ssh_config for clients in the net: User root, strict host keys from knownHostsPath, BatchMode, IdentitiesOnly. No IdentityFile: pass -i. */
  readonly sshConfigPath: string;
  /** The client key every host's sshd accepts for root (at creation). */
  readonly clientKey: KeyPair;
  readonly hosts: Readonly<Record<N, TestHost>>;
  readonly plan: NetPlan;
  readonly #tools: Tools;
  readonly #children = new Set<HostProcess>();
  #destroyed: Promise<void> | undefined;
  #untrack: () => void = () => undefined;

  /** @internal use createTestNet */
  constructor(plan: NetPlan, tools: Tools, clientKey: KeyPair) {
    this.plan = plan;
    this.id = plan.id;
    this.dir = netDir(plan.id);
    this.knownHostsPath = path.join(this.dir, 'known_hosts');
    this.sshConfigPath = path.join(this.dir, 'ssh_config');
    this.clientKey = clientKey;
    this.#tools = tools;
    const hosts: Record<string, TestHost> = {};
    for (const h of plan.hosts) {
      const sshd = new HostSshd(h.name, h.netns, sshdPaths(path.join(this.dir, h.name, 'ssh')), tools, h.sshd);
      hosts[h.name] = new TestHost(this as TestNet<string>, h, path.join(this.dir, h.name, 'srv'), sshd);
    }
    this.hosts = hosts as Record<N, TestHost>;
  }

  host(name: N): TestHost {
    const h = (this.hosts as Record<string, TestHost | undefined>)[name];
    if (!h) throw new TestNetError(`net ${this.id} has no host "${name}"; hosts: ${Object.keys(this.hosts).join(', ')}`);
    return h;
  }

  /** The address of `to` on a segment it shares with `from`; undefined when they share none (no route). */
  reachableAddress(from: N, to: N): string | undefined {
    return reachableAddress(this.plan, this.host(from).name, this.host(to).name);
  }

  /** An address on `segment` that no host has: connecting to it fails with "No route to host" (after ARP gives up, ~3 s). */
  unusedAddress(segment: string): string {
    const seg = this.plan.segments.find((s) => s.name === segment);
    if (!seg) throw new TestNetError(`net ${this.id} has no segment "${segment}"`);
    return `${seg.base}.250`;
  }

  #alive(): void {
    if (this.#destroyed) throw new TestNetError(`net ${this.id} was destroyed`);
  }

  /** The caller's env over HOME = the host's root home (as a login on that host would have). */
  #env(host: N, env: Record<string, string | undefined> | undefined): Record<string, string | undefined> {
    return { HOME: this.host(host).home, ...env };
  }

  #nsArgv(host: N, argv: readonly string[]): string[] {
    const t = this.#tools;
    const h = this.host(host);
    if (argv.length === 0) throw new TestNetError(`exec on host ${h.name}: empty argv`);
    // unshare --uts + hostname: `hostname`/`uname -n` name the host. exec keeps the pid: the command's pid is the child's pid.
    return ['netns', 'exec', h.netns, t.unshare, '--uts', '--', t.sh, '-c', `${t.hostname} "$0" && exec "$@"`, h.name, ...argv];
  }

  /**
   * Runs argv inside host `host` (its network namespace, its /etc files, its
   * host name) and waits for it. Throws TestNetError on failure unless
   * `reject: false`.
   */
  async exec(host: N, argv: readonly string[], options: HostExecOptions = {}): Promise<HostExecResult> {
    this.#alive();
    const started = performance.now();
    const r = await execa(this.#tools.ip, this.#nsArgv(host, argv), {
      reject: false,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : 'pipe',
      env: this.#env(host, options.env),
      cwd: options.cwd,
      timeout: options.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
      cancelSignal: options.signal,
      encoding: 'utf8',
    });
    const result: HostExecResult = {
      host,
      argv: [...argv],
      exitCode: r.exitCode,
      signal: r.signal,
      stdout: String(r.stdout ?? ''),
      stderr: String(r.stderr ?? ''),
      timedOut: r.timedOut,
      durationMs: Math.round(performance.now() - started),
    };
    if (r.failed && options.reject !== false) {
      const how = r.timedOut ? `timed out after ${options.timeoutMs ?? 60_000} ms` : r.exitCode !== undefined ? `exited ${r.exitCode}` : r.signal ? `was killed by ${r.signal}` : r.shortMessage;
      throw new TestNetError(`on host ${host}: \`${argv.join(' ')}\` ${how}${result.stderr.trim() ? `: ${result.stderr.trim().slice(-2000)}` : ''}`);
    }
    return result;
  }

  /** Starts argv inside host `host` and returns the running child (see HostProcess). Killed at destroy(). */
  spawn(host: N, argv: readonly string[], options: HostSpawnOptions = {}): HostProcess {
    this.#alive();
    const child = execa(this.#tools.ip, this.#nsArgv(host, argv), {
      reject: false,
      input: options.input,
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      encoding: 'utf8',
      env: this.#env(host, options.env),
      cwd: options.cwd,
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
      cancelSignal: options.signal,
    }) as unknown as HostProcess;
    if (options.input === undefined && !options.keepStdinOpen) child.stdin.end();
    this.#children.add(child);
    void child.then(() => this.#children.delete(child));
    return child;
  }

  /**
   * Runs this process's own Node binary (process.execPath) inside host
   * `host`: `net.node('ctl', [BIN, 'upgrade', '--runbook', file])`. A string
   * is one script path. Same contract as spawn.
   */
  node(host: N, args: string | readonly string[], options: HostSpawnOptions = {}): HostProcess {
    return this.spawn(host, [process.execPath, ...(typeof args === 'string' ? [args] : args)], options);
  }

  /**
   * argv of an ssh client for `to`, with the net's config (strict host keys
   * from knownHostsPath, BatchMode) and `key` (default: the client key).
   * Append the remote command. Run it inside a host: net.exec(from, argv).
   * The destination is the host name, resolved by the client host's own
   * /etc/hosts (its address on a shared segment).
   */
  sshArgv(to: N, options: { key?: KeyPair; options?: readonly string[] } = {}): string[] {
    return [this.#tools.ssh, '-F', this.sshConfigPath, '-i', (options.key ?? this.clientKey).privateKeyPath, ...(options.options ?? []), `root@${this.host(to).name}`];
  }

  /** Runs `command` (a command line for the remote login shell) on `to` over ssh from `from`. */
  ssh(from: N, to: N, command: string, options: HostExecOptions & { key?: KeyPair; sshOptions?: readonly string[] } = {}): Promise<HostExecResult> {
    return this.exec(from, [...this.sshArgv(to, { key: options.key, options: options.sshOptions }), '--', command], options);
  }

  /** A new key pair in <dir>/keys, authorized nowhere (for grants and "wrong key" tests). */
  async makeClientKey(name: string): Promise<KeyPair> {
    this.#alive();
    if (!/^[a-z0-9][a-z0-9_-]{0,39}$/.test(name)) throw new TestNetError(`key name "${name}" must match [a-z0-9][a-z0-9_-]{0,39}`);
    const dir = path.join(this.dir, 'keys');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, name);
    const publicKey = await generateKey(this.#tools, file, `${name}@rubicon-test-${this.id}`);
    return { privateKeyPath: file, publicKeyPath: `${file}.pub`, publicKey };
  }

  /** known_hosts text for `hosts` (default: every host with an sshd), with their current host keys. */
  knownHostsText(hosts?: readonly N[]): string {
    const names = hosts ?? (Object.keys(this.hosts) as N[]).filter((n) => this.host(n).sshd.enabled);
    return names
      .map((n) => {
        const h = this.host(n);
        const blob = keyBlob(h.sshd.hostPublicKey);
        return `${[h.name, ...h.addresses.map((a) => a.address)].join(',')} ${blob}\n`;
      })
      .join('');
  }

  /** Rewrites knownHostsPath with the current host keys (after regenerateHostKey, when the test means to trust the new key). */
  async updateKnownHosts(): Promise<void> {
    writeFileSync(this.knownHostsPath, this.knownHostsText());
  }

  info(): TestNetInfo {
    return {
      id: this.id,
      dir: this.dir,
      knownHostsPath: this.knownHostsPath,
      sshConfigPath: this.sshConfigPath,
      clientKey: this.clientKey,
      switchNetns: this.plan.switchNetns,
      segments: this.plan.segments.map((s) => ({ name: s.name, bridge: s.bridge, subnet: s.subnet, hosts: s.hosts })),
      hosts: Object.values<TestHost>(this.hosts).map((h) => ({
        name: h.name,
        netns: h.netns,
        addresses: [...h.addresses],
        dataDir: h.dataDir,
        etcDir: h.etcDir,
        sshd: h.sshd.enabled,
        authorizedKeysPath: h.authorizedKeysPath,
        sshdLogPath: h.sshd.paths.log,
      })),
    };
  }

  #namespaces(): string[] {
    return [this.plan.switchNetns, ...this.plan.hosts.map((h) => h.netns)];
  }

  /** @internal synchronous teardown (process exit, failed creation). */
  teardownNow(): string[] {
    const problems = teardownSync(this.#tools, { id: this.id, namespaces: this.#namespaces() });
    this.#untrack();
    return problems;
  }

  /** @internal */
  setUntrack(f: () => void): void {
    this.#untrack = f;
  }

  /**
   * Kills every sshd, session and child of the net, unmounts its tmpfs
   * disks, deletes its namespaces (and with them the veths and bridges),
   * its /etc/netns folders and /tmp/rbnet-<id>. Idempotent (a second call
   * returns the first call's promise). Rejects with TestNetError listing
   * what it could not remove.
   */
  destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      const children = [...this.#children];
      for (const c of children) c.kill('SIGKILL');
      await Promise.allSettled([
        ...children,
        ...Object.values<TestHost>(this.hosts).filter((h) => h.sshd.enabled).map((h) => h.sshd.kill()),
      ]);
      const problems = this.teardownNow();
      if (problems.length > 0) throw new TestNetError(`destroying net ${this.id} left things behind:\n- ${problems.join('\n- ')}`);
    })();
    return this.#destroyed;
  }
}

let swept = false;

/**
 * Creates a net (see ./index.ts). Throws TestNetUnavailableError when this
 * machine cannot run test nets (no root, missing tool), TestNetSpecError for
 * a bad spec, TestNetError when building fails (then nothing is left behind).
 */
export async function createTestNet<const S extends TestNetSpec>(spec: S): Promise<TestNet<HostNameOf<S>>> {
  const tools = requireTools();
  if (!swept) {
    swept = true;
    const s = sweepStaleTestNets(tools);
    if (s.problems.length > 0) console.warn(`[test-hosts] sweeping stale test nets: ${s.problems.join('; ')}`);
  }

  // Validate before touching anything (with placeholder id and blocks).
  const segments = Object.keys(spec.segments).length;
  planNet(spec, '000000', pickBlocks(segments));

  // Reserve an id: mkdir is atomic, and the record is written before any namespace exists.
  let id = '';
  for (let attempt = 0; ; attempt++) {
    id = randomBytes(3).toString('hex');
    if (existsSync(path.join(NETNS_DIR, `rb-${id}-${CTL}`))) continue;
    try {
      mkdirSync(netDir(id), { mode: 0o755 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 20) throw e;
    }
  }
  chmodSync(netDir(id), 0o755);
  const plan = planNet(spec, id, pickBlocks(segments));
  const record: NetRecord = {
    version: 1,
    id,
    dir: netDir(id),
    owner: { pid: process.pid, startTicks: processStartTicks(process.pid) ?? '' },
    createdAt: new Date().toISOString(),
    namespaces: [plan.switchNetns, ...plan.hosts.map((h) => h.netns)],
  };
  writeRecord(record);

  let net: TestNet<HostNameOf<S>> | undefined;
  const untrack = trackLive({ teardownNow: () => void (net ? net.teardownNow() : teardownSync(tools, { id, namespaces: record.namespaces })) });
  try {
    const clientDir = path.join(netDir(id), 'client');
    mkdirSync(clientDir, { mode: 0o700 });
    const privateKeyPath = path.join(clientDir, 'id_ed25519');
    const publicKey = await generateKey(tools, privateKeyPath, `rubicon-test-${id}`);
    net = new TestNet<HostNameOf<S>>(plan, tools, { privateKeyPath, publicKeyPath: `${privateKeyPath}.pub`, publicKey });
    net.setUntrack(untrack);
    await build(net, plan, tools);
  } catch (e) {
    const problems = net ? net.teardownNow() : teardownSync(tools, { id, namespaces: record.namespaces });
    untrack();
    throw new TestNetError(
      `could not create test net ${id}: ${(e as Error).message}${problems.length ? `\n(cleanup also failed: ${problems.join('; ')})` : ''}`,
      { cause: e },
    );
  }
  writeRecord({ ...record, info: net.info() });
  return net;
}

async function ip(tools: Tools, args: string[], lines: string[]): Promise<void> {
  const r = await execa(tools.ip, [...args, '-batch', '-'], { input: lines.join('\n') + '\n', reject: false });
  if (r.failed) throw new TestNetError(`ip ${args.join(' ')} -batch failed (${r.exitCode}): ${String(r.stderr).trim()}\nscript:\n${lines.join('\n')}`);
}

async function build(net: TestNet<string>, plan: NetPlan, tools: Tools): Promise<void> {
  // 1. Namespaces, bridges and veths. Links are created directly inside their
  //    namespaces (`link add ... netns X ... peer ... netns Y`): nothing ever
  //    appears in the root namespace.
  const scripts = ipScripts(plan);
  await ip(tools, [], scripts.root);
  await Promise.all([...scripts.perNetns].map(([ns, lines]) => ip(tools, ['-n', ns], lines)));

  // 2. Per host: data folder (tmpfs disk), /etc/netns files, sshd folder.
  const systemOsRelease = readFileSync('/etc/os-release', 'utf8');
  const systemPasswd = readFileSync('/etc/passwd', 'utf8');
  const anySshd = plan.hosts.some((h) => h.sshd);
  if (anySshd && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 }); // sshd's privilege separation directory

  await Promise.all(
    plan.hosts.map(async (h) => {
      const host = net.host(h.name);
      mkdirSync(host.dataDir, { recursive: true, mode: 0o755 });
      if (h.diskMb !== undefined) {
        const r = await execa(tools.mount, ['-t', 'tmpfs', '-o', `size=${h.diskMb}m,mode=0755`, `rbnet-${plan.id}-${h.name}`, host.dataDir], { reject: false });
        if (r.failed) throw new TestNetError(`could not mount a ${h.diskMb} MiB tmpfs on ${host.dataDir} for host ${h.name}: ${String(r.stderr).trim()}`);
      }
      mkdirSync(host.etcDir, { recursive: true, mode: 0o755 });
      writeFileSync(path.join(host.etcDir, 'hostname'), `${h.name}\n`);
      writeFileSync(path.join(host.etcDir, 'hosts'), hostsFile(plan, h.name));
      writeFileSync(path.join(host.etcDir, 'machine-id'), `${h.machineId ?? randomMachineId()}\n`, { mode: 0o444 });
      writeFileSync(path.join(host.etcDir, 'os-release'), h.osRelease ?? systemOsRelease);
      mkdirSync(host.home, { recursive: true, mode: 0o700 });
      writeFileSync(path.join(host.etcDir, 'passwd'), passwdForHost(systemPasswd, host.home, h.shell, h.name));

      mkdirSync(host.sshd.paths.dir, { recursive: true, mode: 0o700 });
      writeFileSync(host.authorizedKeysPath, `${net.clientKey.publicKey}\n`, { mode: 0o600 });
      if (h.sshd) {
        host.sshd.writeConfig(h.interfaces.map((i) => i.address));
        await generateKey(tools, host.sshd.paths.hostKey, `root@${h.name}`);
      }
    }),
  );

  // 3. The client side: known_hosts and ssh_config.
  await net.updateKnownHosts();
  writeFileSync(
    net.sshConfigPath,
    [
      '# Written by the Rubicon test-host harness. Use with -i <key>.',
      'Host *',
      '  User root',
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${net.knownHostsPath}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '  CheckHostIP no',
      '  UpdateHostKeys no',
      '  ConnectTimeout 5',
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );

  // 4. sshd on every host that has one, in parallel.
  await Promise.all(plan.hosts.filter((h) => h.sshd).map((h) => net.host(h.name).sshd.start()));
}

/** This machine's /etc/passwd with root's home (field 6) and, when given, shell (field 7) replaced. */
export function passwdForHost(passwd: string, home: string, shell: string | undefined, host: string): string {
  let found = false;
  const out = passwd.split('\n').map((line) => {
    const f = line.split(':');
    if (f[0] !== 'root' || f.length !== 7) return line;
    found = true;
    f[5] = home;
    if (shell !== undefined) f[6] = shell;
    return f.join(':');
  });
  if (!found) throw new TestNetError(`cannot set up host ${host}: this machine's /etc/passwd has no root line`);
  if (shell !== undefined && !existsSync(shell)) throw new TestNetError(`cannot give host ${host} the shell ${shell}: it does not exist`);
  return out.join('\n');
}
