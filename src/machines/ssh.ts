import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { RubiconError } from '../core/errors.ts';
import type { TransportKind } from './machine.ts';
import { shJoin } from './posix.ts';
import { DEFAULT_MAX_OUTPUT, PosixMachine, type InvokeOptions, type RawResult } from './posix-machine.ts';

export interface SshMachineOptions {
  name: string;
  host: string;
  port: number;
  user: string;
  /** Private key file (absolute). Only this key is offered (IdentitiesOnly). */
  identityFile: string;
  /** known_hosts file (absolute) that must hold the machine's host key: StrictHostKeyChecking=yes. */
  knownHostsFile: string;
  connectTimeoutSeconds: number;
  /** Absolute folder on the machine for this run's step folders. */
  stepsRoot: string;
  /** Default deadline of a short command. */
  commandTimeoutSeconds?: number;
  /** ProxyJump (bastion), passed to ssh as is. */
  proxyJump?: string;
}

/**
 * The ssh transport: the system's OpenSSH client through execa.
 *
 * - Never interactive: BatchMode=yes (no password or passphrase prompt),
 *   StrictHostKeyChecking=yes against the known_hosts file the runbook
 *   names and no other (GlobalKnownHostsFile=/dev/null), only the runbook's
 *   identity (IdentitiesOnly=yes), no user ssh config (-F /dev/null).
 * - One connection per machine, reused (ControlMaster=auto,
 *   ControlPersist=60 s); close() ends it. The control socket lives in a
 *   short private folder under the temp dir (sockets have a 108-byte path limit).
 * - ConnectTimeout and ServerAlive keep a dead host from hanging a run.
 * - ssh's own failures (exit 255 with ssh's messages) become typed errors
 *   naming the machine and the fix; a program's exit code is returned as is.
 */
export class SshMachine extends PosixMachine {
  readonly name: string;
  readonly transport: TransportKind = 'ssh';
  readonly address: string;
  protected readonly stepsRoot: string;
  protected override readonly execTimeoutMs: number;
  private readonly o: SshMachineOptions;
  private readonly controlPath: string;

  constructor(o: SshMachineOptions) {
    super();
    this.o = o;
    this.name = o.name;
    this.address = `ssh ${o.user}@${o.host}:${o.port}`;
    this.stepsRoot = o.stepsRoot;
    this.execTimeoutMs = (o.commandTimeoutSeconds ?? 120) * 1000;
    const dir = path.join(os.tmpdir(), `rubicon-ssh-${process.getuid?.() ?? 'u'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // One socket per (machine, key, known_hosts): a changed known_hosts file never reuses an old master.
    const key = createHash('sha256').update(JSON.stringify([o.user, o.host, o.port, o.identityFile, o.knownHostsFile, o.proxyJump ?? ''])).digest('hex').slice(0, 20);
    this.controlPath = path.join(dir, key);
  }

  /** The ssh options every call uses. Exported shape for tools that take an ssh command (rsync -e, restic sftp.command). */
  sshArgs(): string[] {
    const o = this.o;
    return [
      '-F', '/dev/null',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${o.knownHostsFile}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'IdentitiesOnly=yes',
      '-o', `IdentityFile=${o.identityFile}`,
      '-o', `ConnectTimeout=${o.connectTimeoutSeconds}`,
      '-o', 'ServerAliveInterval=5',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'ControlMaster=auto',
      '-o', `ControlPath=${this.controlPath}`,
      '-o', 'ControlPersist=60',
      '-o', 'LogLevel=ERROR',
      ...(o.proxyJump ? ['-o', `ProxyJump=${o.proxyJump}`] : []),
      '-p', String(o.port),
      '-l', o.user,
    ];
  }

  protected async invoke(argv: readonly string[], o: InvokeOptions): Promise<RawResult> {
    const t0 = performance.now();
    const r = await execa('ssh', [...this.sshArgs(), this.o.host, '--', shJoin(argv)], {
      reject: false,
      encoding: 'buffer',
      input: o.input === undefined ? undefined : typeof o.input === 'string' ? Buffer.from(o.input) : o.input,
      stdin: o.input === undefined ? 'ignore' : undefined,
      timeout: o.timeoutMs,
      cancelSignal: o.signal,
      maxBuffer: o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT,
      stripFinalNewline: false,
    });
    const stderr = Buffer.from(r.stderr ?? new Uint8Array()).toString('utf8');
    // Debugging aid for performance work: RUBICON_TRACE_SSH=<file> appends "machine<TAB>ms<TAB>argv head" per call (no input, no output).
    if (process.env.RUBICON_TRACE_SSH) {
      // A script is shown by its first words and its arguments (a step: its folder and program), not its whole text.
      const shown = argv[0] === 'sh' && argv[1] === '-c' ? [`sh -c ${(argv[2] ?? '').trim().replace(/\s+/g, ' ').slice(0, 40)}…`, ...argv.slice(4, 16)] : argv.slice(0, 12);
      appendFileSync(process.env.RUBICON_TRACE_SSH, `${this.name}\t${Math.round(performance.now() - t0)}\t${shown.join(' ').replace(/\s+/g, ' ').slice(0, 300)}\n`);
    }
    if (r.exitCode === undefined && !r.timedOut && !r.isCanceled && !r.isMaxBuffer) {
      const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      throw new RubiconError(missing ? 'TOOL_MISSING' : 'MACHINE_FAILED', missing ? 'the OpenSSH client (ssh) is not installed on this machine' : `cannot start ssh: ${r.shortMessage}`, {
        hint: missing ? 'install openssh-client (Debian: apt-get install openssh-client)' : undefined,
      });
    }
    if (r.isCanceled) o.signal?.throwIfAborted();
    if (r.timedOut) {
      throw new RubiconError('MACHINE_TIMEOUT', `${this.name} (${this.address}) did not answer within ${Math.round((o.timeoutMs ?? 0) / 1000)} s`, {
        hint: `check that ${this.o.host} is up and reachable, then resume the run`,
      });
    }
    if (r.exitCode === 255) {
      const err = classifySshFailure(stderr, this.name, this.o);
      if (err) throw err;
    }
    return { exitCode: r.exitCode ?? 1, stdout: r.stdout ?? new Uint8Array(), stderr, durationMs: Math.round(performance.now() - t0) };
  }

  /** Ends the shared connection. Idempotent. */
  async close(): Promise<void> {
    await execa('ssh', [...this.sshArgs(), '-O', 'exit', this.o.host], { reject: false, stdin: 'ignore', timeout: 10_000 });
  }
}

/** ssh's own failure messages → typed errors naming the machine and the fix. Undefined: not ssh's own failure. */
export function classifySshFailure(stderr: string, name: string, o: Pick<SshMachineOptions, 'host' | 'port' | 'user' | 'knownHostsFile' | 'identityFile'>): RubiconError | undefined {
  const where = `${name} (${o.user}@${o.host}:${o.port})`;
  const first = stderr.trim().split('\n').filter((l) => !l.startsWith('@')).slice(0, 2).join(' ').slice(0, 300);
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(stderr)) {
    return new RubiconError('MACHINE_HOST_KEY', `the host key of ${where} is not the one in ${o.knownHostsFile}: the server was rebuilt, or someone is in between`, {
      hint: `verify the new host key out of band (console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then put it into ${o.knownHostsFile}; never turn host key checking off`,
      details: { machine: name, reason: 'changed' },
    });
  }
  if (/Host key verification failed|No \S+ host key is known|host key is not known/i.test(stderr)) {
    return new RubiconError('MACHINE_HOST_KEY', `the host key of ${where} is not in ${o.knownHostsFile}`, {
      hint: `get the host key out of band (e.g. ssh-keyscan -t ed25519 ${o.host}, checked against the console) and add it to ${o.knownHostsFile}`,
      details: { machine: name, reason: 'unknown' },
    });
  }
  if (/Permission denied|Too many authentication failures|no mutual signature|Load key .*: /i.test(stderr)) {
    return new RubiconError('MACHINE_AUTH', `${where} refused the key ${o.identityFile}: ${first}`, {
      hint: `add the public key of ${o.identityFile} to ${o.user}'s authorized_keys on ${o.host}, or name the right identityFile in the runbook`,
      details: { machine: name },
    });
  }
  if (/Connection refused|No route to host|Network is unreachable|Connection timed out|timed out|Could not resolve hostname|Connection closed|Connection reset|Broken pipe|kex_exchange_identification|banner exchange|mux_client|Control socket connect/i.test(stderr)) {
    return new RubiconError('MACHINE_UNREACHABLE', `cannot reach ${where}: ${first}`, {
      hint: `check that ${o.host} is up, that sshd runs on port ${o.port} and that this machine can reach it; then resume the run`,
      details: { machine: name },
    });
  }
  if (stderr.trim() === '') return undefined;
  if (/^ssh: |^ssh_|^kex_|^Bad |^command-line/m.test(stderr)) {
    return new RubiconError('MACHINE_UNREACHABLE', `ssh to ${where} failed: ${first}`, { hint: `check the ssh settings of ${name} in the runbook`, details: { machine: name } });
  }
  return undefined;
}
