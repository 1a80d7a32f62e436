import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { RubiconError } from '../core/errors.ts';

/**
 * The system's OpenSSH client as every ssh-based transport uses it (the
 * Linux `ssh` transport and `openssh-windows`): one place for the option
 * list, the shared connection, the call and the classification of ssh's own
 * failures, so both transports are exactly as strict.
 *
 * - Never interactive: BatchMode=yes (no password or passphrase prompt),
 *   StrictHostKeyChecking=yes against the known_hosts file the runbook
 *   names and no other (GlobalKnownHostsFile=/dev/null), only the runbook's
 *   identity (IdentitiesOnly=yes), no user ssh config (-F /dev/null).
 * - One connection per (machine, key, known_hosts), reused
 *   (ControlMaster=auto, ControlPersist=60 s); `closeSsh` ends it. The
 *   control socket lives in a short private folder under the temp dir
 *   (sockets have a 108-byte path limit).
 * - ConnectTimeout and ServerAlive keep a dead host from hanging a run.
 * - ssh's own failures (exit 255 with ssh's messages) become typed errors
 *   naming the machine and the fix; the remote command's exit code is
 *   returned as is.
 */

export interface SshClientOptions {
  host: string;
  port: number;
  user: string;
  /** Private key file (absolute). Only this key is offered (IdentitiesOnly). */
  identityFile: string;
  /** known_hosts file (absolute) that must hold the machine's host key: StrictHostKeyChecking=yes. */
  knownHostsFile: string;
  connectTimeoutSeconds: number;
  /** ProxyJump (bastion), passed to ssh as is. */
  proxyJump?: string;
}

/** What one ssh call returned: the remote command's exit code and raw stdout. */
export interface SshResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: string;
  durationMs: number;
}

export interface SshCallOptions {
  input?: string | Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  maxOutputBytes?: number;
}

export const DEFAULT_SSH_MAX_OUTPUT = 8 * 1024 * 1024;

/**
 * The control socket of one (user, host, port, key, known_hosts file and its
 * content, jump). Keyed by the known_hosts content too: after a rebuild the
 * same file holds the new host key, and a master still open to the old
 * server (ControlPersist) must never carry a command meant for the new one.
 */
export function sshControlPath(o: SshClientOptions): string {
  const dir = path.join(os.tmpdir(), `rubicon-ssh-${process.getuid?.() ?? 'u'}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let knownHosts = '';
  try {
    knownHosts = createHash('sha256').update(readFileSync(o.knownHostsFile)).digest('hex');
  } catch {
    // No file yet: ssh itself refuses the connection and says so (HOST_KEY_UNKNOWN).
  }
  const key = createHash('sha256').update(JSON.stringify([o.user, o.host, o.port, o.identityFile, o.knownHostsFile, knownHosts, o.proxyJump ?? ''])).digest('hex').slice(0, 20);
  return path.join(dir, key);
}

/** The ssh options every call uses (without the host). Also the shape for tools that take an ssh command (rsync -e, restic sftp.command). */
export function sshOptionArgs(o: SshClientOptions, controlPath: string): string[] {
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
    '-o', `ControlPath=${controlPath}`,
    '-o', 'ControlPersist=60',
    '-o', 'LogLevel=ERROR',
    ...(o.proxyJump ? ['-o', `ProxyJump=${o.proxyJump}`] : []),
    '-p', String(o.port),
    '-l', o.user,
  ];
}

/**
 * Runs `remoteCommand` (one string, handed by sshd to the account's login
 * shell) on the machine. Throws MACHINE_TIMEOUT, TOOL_MISSING (no ssh
 * here) and ssh's own failures (classifySshFailure); returns any other exit.
 */
export async function runSsh(o: SshClientOptions, name: string, controlPath: string, remoteCommand: string, c: SshCallOptions, trace?: string): Promise<SshResult> {
  const t0 = performance.now();
  const r = await execa('ssh', [...sshOptionArgs(o, controlPath), o.host, '--', remoteCommand], {
    reject: false,
    encoding: 'buffer',
    input: c.input === undefined ? undefined : typeof c.input === 'string' ? Buffer.from(c.input) : c.input,
    stdin: c.input === undefined ? 'ignore' : undefined,
    timeout: c.timeoutMs,
    cancelSignal: c.signal,
    maxBuffer: c.maxOutputBytes ?? DEFAULT_SSH_MAX_OUTPUT,
    stripFinalNewline: false,
  });
  const stderr = Buffer.from(r.stderr ?? new Uint8Array()).toString('utf8');
  // Debugging aid for performance work: RUBICON_TRACE_SSH=<file> appends "machine<TAB>ms<TAB>command head" per call (no input, no output).
  if (process.env.RUBICON_TRACE_SSH) {
    appendFileSync(process.env.RUBICON_TRACE_SSH, `${name}\t${Math.round(performance.now() - t0)}\t${(trace ?? remoteCommand).replace(/\s+/g, ' ').slice(0, 200)}\n`);
  }
  if (r.exitCode === undefined && !r.timedOut && !r.isCanceled && !r.isMaxBuffer) {
    const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    throw new RubiconError(missing ? 'TOOL_MISSING' : 'MACHINE_FAILED', missing ? 'the OpenSSH client (ssh) is not installed on this machine' : `cannot start ssh: ${r.shortMessage}`, {
      hint: missing ? 'install openssh-client (Debian: apt-get install openssh-client)' : undefined,
    });
  }
  if (r.isCanceled) c.signal?.throwIfAborted();
  if (r.timedOut) {
    throw new RubiconError('MACHINE_TIMEOUT', `${name} (ssh ${o.user}@${o.host}:${o.port}) did not answer within ${Math.round((c.timeoutMs ?? 0) / 1000)} s`, {
      hint: `check that ${o.host} is up and reachable, then resume the run`,
    });
  }
  if (r.exitCode === 255) {
    const err = classifySshFailure(stderr, name, o);
    if (err) throw err;
  }
  return { exitCode: r.exitCode ?? 1, stdout: r.stdout ?? new Uint8Array(), stderr, durationMs: Math.round(performance.now() - t0) };
}

/** Ends the shared connection. Idempotent. */
export async function closeSsh(o: SshClientOptions, controlPath: string): Promise<void> {
  await execa('ssh', [...sshOptionArgs(o, controlPath), '-O', 'exit', o.host], { reject: false, stdin: 'ignore', timeout: 10_000 });
}

/** ssh's own failure messages → typed errors naming the machine and the fix. Undefined: not ssh's own failure. */
export function classifySshFailure(stderr: string, name: string, o: Pick<SshClientOptions, 'host' | 'port' | 'user' | 'knownHostsFile' | 'identityFile'>): RubiconError | undefined {
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
