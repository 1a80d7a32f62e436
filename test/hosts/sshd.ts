/**
 * One host's sshd: Debian's /usr/sbin/sshd with its own config, host key,
 * authorized_keys, pid file and log in the host's folder, run inside the
 * host's network namespace.
 *
 * How it runs: `ip netns exec <ns> unshare --uts --pid --fork --kill-child
 * --mount-proc -- sh -c 'hostname <host> && exec sshd -D ...'`. So sshd
 * sees the host's own /etc files (ip netns exec binds /etc/netns/<ns>/*),
 * its own host name, and it is process 1 of a PID namespace of its own: the
 * sessions it starts see only the host's processes, and when sshd dies the
 * kernel kills every session with it. That is what `stop()` and `kill()`
 * rely on to be exact: when they resolve, no process of this host's SSH
 * service (listener or session) is left, and a client's connection has
 * dropped.
 */
import { existsSync, readFileSync, rmSync, watch, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Tools } from './tools.ts';

export interface SshdPaths {
  /** The folder holding everything below. */
  dir: string;
  config: string;
  hostKey: string;
  authorizedKeys: string;
  pidFile: string;
  log: string;
}

export function sshdPaths(dir: string): SshdPaths {
  return {
    dir,
    config: path.join(dir, 'sshd_config'),
    hostKey: path.join(dir, 'ssh_host_ed25519_key'),
    authorizedKeys: path.join(dir, 'authorized_keys'),
    pidFile: path.join(dir, 'sshd.pid'),
    log: path.join(dir, 'sshd.log'),
  };
}

/**
 * The sshd_config of a test host. Root logs in with a key only; the
 * authorized_keys file lives in the temp folder (StrictModes off: /tmp is
 * world-writable, which StrictModes rejects on the path to the file); no
 * PAM (no password, no account modules, no lastlog); options such as
 * `expiry-time="YYYYMMDD[HHMM[SS]][Z]"` in authorized_keys are honoured by
 * sshd itself (sshd(8) AUTHORIZED_KEYS FILE FORMAT; without Z the time is
 * the host's local time zone, with Z it is UTC).
 */
export function sshdConfig(paths: SshdPaths, addresses: readonly string[]): string {
  return [
    '# Written by the Rubicon test-host harness (test/hosts/sshd.ts).',
    ...addresses.map((a) => `ListenAddress ${a}:22`),
    `HostKey ${paths.hostKey}`,
    `PidFile ${paths.pidFile}`,
    `AuthorizedKeysFile ${paths.authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    // Tests open many connections at once (ControlMaster, parallel steps).
    'MaxStartups 100:30:200',
    'MaxSessions 100',
    // Speed, not realism: the default post-quantum key exchange (sntrup761) costs
    // ~130 ms per connection on a loaded 2-core machine; nothing tested depends on it.
    'KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** ssh-keygen a new ed25519 key pair at `file` / `file.pub` (replacing one that is there); returns the public key line. */
export async function generateKey(tools: Pick<Tools, 'ssh-keygen'>, file: string, comment: string): Promise<string> {
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  await execa(tools['ssh-keygen'], ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdin: 'ignore' });
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

/** Pids of the children of `pid` (via /proc/PID/task/*\/children, else by scanning /proc for its ppid). */
function childrenOf(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    }
    if (out.length > 0) return out;
  } catch {
    /* no CONFIG_PROC_CHILDREN: scan */
  }
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

export class SshdError extends Error {
  override name = 'SshdError';
}

type SshdChild = ResultPromise<{ reject: false; stdin: 'ignore'; stdout: 'ignore'; stderr: 'pipe' }>;

const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

export class HostSshd {
  readonly host: string;
  readonly paths: SshdPaths;
  /** False when the host was created with `sshd: false`: every method then throws. */
  readonly enabled: boolean;
  readonly #netns: string;
  readonly #tools: Tools;
  #child: SshdChild | undefined;
  #pid: number | undefined;
  #busy: Promise<unknown> = Promise.resolve();

  constructor(host: string, netns: string, paths: SshdPaths, tools: Tools, enabled: boolean) {
    this.host = host;
    this.#netns = netns;
    this.paths = paths;
    this.#tools = tools;
    this.enabled = enabled;
  }

  /** True between a resolved start() and the next stop()/kill() (or sshd dying by itself). */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The sshd listener's pid (as this process sees it), while running. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** The current host public key line, `ssh-ed25519 AAAA... root@<host>`. */
  get hostPublicKey(): string {
    this.#check();
    return readFileSync(`${this.paths.hostKey}.pub`, 'utf8').trim();
  }

  #check(): void {
    if (!this.enabled) throw new SshdError(`host ${this.host} has no sshd (it was created with sshd: false)`);
  }

  /** Runs operations one at a time, so start/stop/regenerate never interleave. */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.#busy.then(op, op);
    this.#busy = next.catch(() => undefined);
    return next;
  }

  /** Starts sshd; resolves once it listens on every address (it writes its pid file only then). Idempotent. */
  start(): Promise<void> {
    this.#check();
    return this.#serial(() => this.#start());
  }

  async #start(): Promise<void> {
    if (this.#child) return;
    rmSync(this.paths.pidFile, { force: true });
    const t = this.#tools;
    const child = execa(
      t.ip,
      [
        'netns', 'exec', this.#netns,
        t.unshare, '--uts', '--pid', '--fork', '--kill-child', '--mount-proc', '--propagation', 'slave', '--',
        t.sh, '-c', `${t.hostname} "$0" && exec "$@"`, this.host,
        t.sshd, '-D', '-f', this.paths.config, '-E', this.paths.log,
      ],
      { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' },
    );
    this.#child = child;
    void child.then(() => {
      if (this.#child === child) {
        this.#child = undefined;
        this.#pid = undefined;
      }
    });
    try {
      await this.#ready(child);
    } catch (e) {
      child.kill('SIGKILL');
      await child;
      throw e;
    }
    const upid = child.pid!;
    this.#pid = childrenOf(upid)[0];
    if (this.#pid === undefined) throw new SshdError(`sshd on host ${this.host} is listening but its pid could not be found under ${upid}`);
  }

  #ready(child: SshdChild): Promise<void> {
    const { pidFile, dir, log } = this.paths;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        watcher.close();
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const watcher = watch(dir, () => {
        if (existsSync(pidFile)) finish();
      });
      const timer = setTimeout(() => finish(new SshdError(`sshd on host ${this.host} did not start listening within ${READY_TIMEOUT_MS / 1000} s; see ${log}`)), READY_TIMEOUT_MS);
      void child.then((r) => {
        let tail = '';
        try {
          tail = readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
        } catch {
          /* no log yet */
        }
        finish(new SshdError(`sshd on host ${this.host} exited before listening (${r.exitCode ?? r.signal}): ${[String(r.stderr).trim(), tail].filter(Boolean).join('\n')}`));
      });
      if (existsSync(pidFile)) finish();
    });
  }

  /**
   * Stops sshd with SIGTERM (SIGKILL if it lingers); resolves when the
   * listener and every session of this host's SSH service are gone, so open
   * connections have dropped. Idempotent.
   */
  stop(): Promise<void> {
    this.#check();
    return this.#serial(() => this.#end('SIGTERM'));
  }

  /**
   * SIGKILL, as in "sshd killed mid-capture": resolves when the listener and
   * every session are gone (clients see "Connection ... closed by remote
   * host", new connections "Connection refused"). Idempotent.
   */
  kill(): Promise<void> {
    this.#check();
    return this.#serial(() => this.#end('SIGKILL'));
  }

  async #end(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const pid = this.#pid;
    try {
      if (pid !== undefined) process.kill(pid, signal);
      else child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
    const timer = setTimeout(() => {
      // sshd ignored SIGTERM: kill sshd (which takes the sessions with it) and the unshare parent.
      try {
        if (pid !== undefined) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    await child;
    clearTimeout(timer);
    if (this.#child === child) {
      this.#child = undefined;
      this.#pid = undefined;
    }
  }

  /**
   * "The server was rebuilt": a new ed25519 host key replaces the old one.
   * If sshd was running it is restarted with the new key (sessions drop);
   * if it was stopped it stays stopped. The net's known_hosts is NOT
   * changed: a strict client now fails with "REMOTE HOST IDENTIFICATION HAS
   * CHANGED" until the test calls net.updateKnownHosts(). Returns the new
   * public key line.
   */
  regenerateHostKey(): Promise<string> {
    this.#check();
    return this.#serial(async () => {
      const wasRunning = this.#child !== undefined;
      if (wasRunning) await this.#end('SIGTERM');
      const line = await generateKey(this.#tools, this.paths.hostKey, `root@${this.host}`);
      if (wasRunning) await this.#start();
      return line;
    });
  }

  /** Writes the config (at net creation). */
  writeConfig(addresses: readonly string[]): void {
    writeFileSync(this.paths.config, sshdConfig(this.paths, addresses));
  }
}
