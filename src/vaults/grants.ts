import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { RubiconError, isRubiconError } from '../core/errors.ts';
import type { Machine } from '../machines/machine.ts';
import { writeSmallFiles } from '../machines/posix-machine.ts';
import { windowsPath } from '../machines/windows/windows-machine.ts';
import { WINDOWS_STAND_IN_ENV, type SshSettings } from '../runbook/load.ts';
import type { Grant } from './vault.ts';

/**
 * Grants: time-limited access of one machine (the target, the proving
 * ground) to one vault host, for a tool there (rsync, restic over sftp).
 *
 * What a grant is, on the wire:
 * - a fresh ed25519 key pair made on THIS machine by ssh-keygen in a private
 *   temp folder (0700), removed as soon as the key is read; the private key
 *   is never logged and never passed in argv or env;
 * - one line in the vault host's authorized_keys file (the runbook's
 *   `authorizedKeysFile`, default ~/.ssh/authorized_keys of the vault user):
 *
 *       expiry-time="YYYYMMDDHHMMSSZ",restrict[,command="…"] ssh-ed25519 AAAA… rubicon-grant:<id>
 *
 *   sshd(8), AUTHORIZED_KEYS FILE FORMAT: `expiry-time="timespec"` — the key
 *   is not accepted after that time; "YYYYMMDD[Z] date or YYYYMMDDHHMM[SS][Z]
 *   time", UTC when suffixed by Z. `restrict` turns off port, agent and X11
 *   forwarding, pty allocation and ~/.ssh/rc. `command=` forces one program
 *   whatever the client asks for (rrsync limited to the vault folder, or
 *   internal-sftp for restic); the client's own command reaches it in
 *   SSH_ORIGINAL_COMMAND. sshd checks the expiry when a connection
 *   authenticates: a connection opened before the expiry may finish its work.
 * - files on the receiving machine in `<workDir>/grants/<id>/` (0700 folder,
 *   0600 files, written with writeSmall's guarantees, all in one call): `id_ed25519`, `known_hosts` (the
 *   vault host's key as the runbook's knownHosts file has it), and for restic
 *   `password`.
 *
 * Contracts:
 * - authorized_keys is rewritten atomically (temp file, chown to the file's
 *   owner, rename on the vault host), keeping every other line byte for byte
 *   and the file's owner; expired rubicon-grant lines are dropped on the
 *   way. An edit is two calls to the vault host: one read (content, owner,
 *   our own uid) and one compare-and-swap write that replaces the file only
 *   if its SHA-256 is still the one read, else the edit is done again on the
 *   new content. So edits from this process (serialized per file) and from
 *   another Rubicon process are not lost, except in the instant between the
 *   compare and the rename (a lost grant line fails that grant's tool
 *   loudly; a lost revoke leaves a line that expires by itself).
 * - The files on the machine are written before the key is authorized, and
 *   removed again if authorizing fails: no live key without its owner knowing.
 * - revoke removes the authorized_keys line (matched by its comment, in one
 *   call to the vault host) first, then the grant folder. Idempotent.
 */

/** How a vault describes its host to the grant code. */
export interface GrantHost {
  /** The vault's name (messages). */
  vault: string;
  /** The vault host, reached with Rubicon's own key. */
  vaultHost: Machine;
  /** The vault host as the runbook describes it (host, port, user, knownHosts; authorizedKeysFile). */
  ssh: SshSettings & { authorizedKeysFile?: string };
  runId: string;
  /** `<workDir>` of a machine: grant folders go to `<workDir>/grants/<id>/`. */
  workDirOf: (m: Machine) => string;
  /** Clock (tests make grants that are already expired). Default: the system clock. */
  now?: () => Date;
}

export interface GrantRequest {
  mode: 'read' | 'write';
  ttlMs: number;
  /** Program sshd forces for this key (a shell command line on the vault host), or undefined for none. */
  forcedCommand?: string;
  /** Extra files for the grant folder (name → content), e.g. the restic password. Secret content allowed. */
  files?: Record<string, string>;
  /** Called after the files are on the machine, before the key is authorized (the journal records the grant). */
  beforeKey?: (g: { id: string; dir: string; expiresAt: string }) => void;
  /** Builds the tool settings from the grant folder and the base ssh command (argv). */
  settings: (dir: string, sshArgv: string[]) => { sshCommand: string; env: Record<string, string>; location: string };
}

const COMMENT_PREFIX = 'rubicon-grant:';
const AUTHORIZED_KEYS_MAX = 8 * 1024 * 1024;

/** Serializes edits of one authorized_keys file from this process. */
const editLocks = new Map<string, Promise<unknown>>();

/**
 * The lock of one authorized_keys file: by the vault host's address, not the
 * Machine's name, because two vaults on one host (an sftp folder and a
 * restic repository) have two Machines for the same file, and the end of a
 * phase revokes their grants at the same time.
 */
function lockKey(h: GrantHost, file: string): string {
  return `${h.vaultHost.address}\0${file}`;
}

/** `20261201184500Z`: sshd's expiry-time timespec, UTC. Pure. */
export function expiryTimespec(at: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(at.getUTCFullYear(), 4)}${p(at.getUTCMonth() + 1)}${p(at.getUTCDate())}${p(at.getUTCHours())}${p(at.getUTCMinutes())}${p(at.getUTCSeconds())}Z`;
}

/** Parses an expiry-time timespec (the forms sshd(8) accepts) as a Date, or undefined. Pure. Without Z: treated as UTC too (Rubicon only writes Z). */
export function parseExpiryTimespec(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?Z?$/.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', se = '00'] = m;
  const t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(se));
  return Number.isNaN(t) ? undefined : new Date(t);
}

/** A value inside an authorized_keys option's double quotes (sshd only unescapes \"). Pure. */
export function quoteOptionValue(v: string): string {
  if (/[\r\n\0]/.test(v)) throw new RubiconError('INTERNAL', 'an authorized_keys option value cannot hold a line break');
  return `"${v.replace(/"/g, '\\"')}"`;
}

/** The authorized_keys line of a grant. Pure. */
export function authorizedKeyLine(o: { publicKey: string; id: string; expiresAt: Date; forcedCommand?: string }): string {
  const [type, blob] = o.publicKey.trim().split(/\s+/);
  if (!type || !blob) throw new RubiconError('INTERNAL', 'ssh-keygen wrote a public key Rubicon cannot read');
  const options = [`expiry-time=${quoteOptionValue(expiryTimespec(o.expiresAt))}`, 'restrict', ...(o.forcedCommand ? [`command=${quoteOptionValue(o.forcedCommand)}`] : [])];
  return `${options.join(',')} ${type} ${blob} ${COMMENT_PREFIX}${o.id}`;
}

/** The grant id a line carries in its comment, or undefined. Pure. */
export function grantIdOf(line: string): string | undefined {
  const m = /(?:^|\s)rubicon-grant:(\S+)\s*$/.exec(line);
  return m?.[1];
}

/** The expiry of a rubicon-grant line, or undefined. Pure. */
function lineExpiry(line: string): Date | undefined {
  const m = /(?:^|,)expiry-time="([^"]*)"/.exec(line);
  return m?.[1] ? parseExpiryTimespec(m[1]) : undefined;
}

/**
 * One argument of an ssh command line that rsync (-e) and restic
 * (sftp.command) split themselves: both split on white space and honour
 * single and double quotes (rsync main.c do_cmd; restic
 * internal/backend/shell_split.go). Pure.
 */
export function toolArg(a: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a)) return a;
  if (!/['"\\\0\r\n]/.test(a)) return `'${a}'`;
  throw new RubiconError('ARGUMENTS_INVALID', `"${a}" cannot be passed in an ssh command for rsync or restic (quotes, backslashes or line breaks)`, {
    hint: 'use a Rubicon work folder (workDir) and a vault path made of plain characters',
  });
}

/** A work folder in Windows form (a drive letter or UNC): a grant for a real Windows machine. Pure. */
export function isWindowsFolder(p: string): boolean {
  return /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
}

/**
 * The base ssh argv of a grant (no host, no remote command). Pure. With
 * `windows` (a grant folder like C:\ProgramData\Rubicon\grants\<id>): the
 * folder in forward slashes (Win32-OpenSSH takes them, and they pass
 * toolArg, which refuses backslashes), `-F none` and
 * `GlobalKnownHostsFile=none` (ssh(1) and ssh_config(5): "none" reads no
 * file; Windows has no /dev/null outside Win32-OpenSSH's own open(),
 * PowerShell/openssh-portable#105). `ssh` is the Windows OpenSSH client on
 * the PATH (C:\Windows\System32\OpenSSH, installed with the server).
 */
export function grantSshArgv(dir: string, port: number, connectTimeoutSeconds: number, windows = false): string[] {
  const d = windows ? dir.replace(/\\/g, '/') : dir;
  const none = windows ? 'none' : '/dev/null';
  return [
    'ssh',
    '-F', none,
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${d}/known_hosts`,
    '-o', `GlobalKnownHostsFile=${none}`,
    '-o', 'IdentitiesOnly=yes',
    '-o', `IdentityFile=${d}/id_ed25519`,
    '-o', 'PasswordAuthentication=no',
    '-o', `ConnectTimeout=${connectTimeoutSeconds}`,
    '-o', 'ServerAliveInterval=15',
    '-o', 'ServerAliveCountMax=4',
    '-o', 'LogLevel=ERROR',
    '-p', String(port),
  ];
}

/** Grant ids start with the run's id, so a run's leftovers can be found: `<runId>.<16 hex>`. */
function grantIdPrefix(runId: string): string {
  return `${runId.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.`;
}

function newGrantId(runId: string): string {
  return `${grantIdPrefix(runId)}${randomBytes(8).toString('hex')}`;
}

/** Makes an ed25519 key pair on this machine; nothing of it stays on disk. */
async function makeKeyPair(comment: string): Promise<{ privateKey: string; publicKey: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rubicon-grant-'));
  try {
    const file = path.join(dir, 'key');
    const r = await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { reject: false, stdin: 'ignore', timeout: 30_000 });
    if (r.exitCode !== 0) {
      const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      throw new RubiconError(missing ? 'TOOL_MISSING' : 'GRANT_FAILED', missing ? 'ssh-keygen is not installed on this machine' : `ssh-keygen could not make a grant key: ${String(r.stderr).trim().slice(0, 200)}`, {
        hint: missing ? 'install openssh-client (Debian: apt-get install openssh-client)' : undefined,
      });
    }
    return { privateKey: await readFile(file, 'utf8'), publicKey: await readFile(`${file}.pub`, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Home folders found per vault host Machine (they do not move during a run). */
const homes = new WeakMap<Machine, string>();

/** The absolute authorized_keys path on the vault host. */
async function authorizedKeysPath(h: GrantHost): Promise<string> {
  if (h.ssh.authorizedKeysFile) return h.ssh.authorizedKeysFile;
  const known = homes.get(h.vaultHost);
  if (known) return `${known}/.ssh/authorized_keys`;
  const r = await h.vaultHost.exec({ argv: ['sh', '-c', 'printf %s "$HOME"'] });
  const home = r.stdout.trim();
  if (r.exitCode !== 0 || !home.startsWith('/')) {
    throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': cannot find the home folder of ${h.ssh.user} on ${h.vaultHost.name} (${h.vaultHost.address})`, {
      hint: `name the authorized_keys file in the runbook (vaults[].host.authorizedKeysFile)`,
    });
  }
  homes.set(h.vaultHost, home.replace(/\/+$/, ''));
  return `${home.replace(/\/+$/, '')}/.ssh/authorized_keys`;
}

/**
 * Reads authorized_keys with its owner, ours and its SHA-256 (taken before
 * the content is read: if it changes in between, the compare-and-swap
 * refuses and the edit is done again): "<owner uid:gid|-> <our uid:gid>
 * <sha256|->\n" then the content. $1 file, $2 max bytes.
 */
const READ_KEYS_SCRIPT = String.raw`
me="$(id -u):$(id -g)"
if [ -e "$1" ]; then
  o=$(stat -c %u:%g -- "$1") && s=$(stat -c %s -- "$1") || exit 1
  [ "$s" -le "$2" ] || { echo "$s" >&2; exit 45; }
  h=$(sha256sum < "$1" | cut -c1-64) || exit 1
  echo "$o $me $h"
  exec cat -- "$1"
fi
echo "- $me -"
`;

/**
 * Compare-and-swap write of authorized_keys: $1 file, $2 SHA-256 of the
 * content it must still have ('-': must still be absent), $3 owner to give
 * the new file ('-': leave it ours); stdin the new content. Exit 47 when
 * the file changed since it was read (nothing written), 46 on a write
 * failure, 48 when chown failed. The new file gets its owner and mode 0600
 * before the rename, so it is never in place with the wrong ones.
 */
const CAS_KEYS_SCRIPT = String.raw`
f=$1; want=$2; owner=$3
umask 077
if [ -e "$f" ]; then cur=$(sha256sum < "$f" | cut -c1-64) || exit 46; else cur=-; fi
[ "$cur" = "$want" ] || { cat > /dev/null; exit 47; }
mkdir -p -- "$(dirname -- "$f")" || exit 46
t="$f.rubicon-tmp.$$"
cat > "$t" && chmod 600 "$t" || { rm -f -- "$t"; exit 46; }
if [ "$owner" != - ]; then chown -- "$owner" "$t" || { rm -f -- "$t"; exit 48; }; fi
mv -f -- "$t" "$f" || { rm -f -- "$t"; exit 46; }
`;

/**
 * Rewrites authorized_keys on the vault host with `edit` (lines without
 * their newline), atomically, keeping the owner. Expired rubicon-grant lines
 * are dropped. Returns whether the file changed.
 */
async function editAuthorizedKeys(h: GrantHost, edit: (lines: string[]) => string[], o: { after?: Promise<unknown> } = {}): Promise<boolean> {
  const file = await authorizedKeysPath(h);
  const key = lockKey(h, file);
  const prev = editLocks.get(key) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(async () => {
    for (let attempt = 1; ; attempt++) {
      const reading = h.vaultHost.exec({ argv: ['sh', '-c', READ_KEYS_SCRIPT, 'rubicon', file, String(AUTHORIZED_KEYS_MAX)] }, { maxOutputBytes: AUTHORIZED_KEYS_MAX + 4096 });
      // `after` (the grant's files on the machine) runs while the file is read; nothing is written before it succeeded.
      if (attempt === 1 && o.after) {
        const [, gate] = await Promise.allSettled([reading, o.after]);
        if (gate.status === 'rejected') throw gate.reason;
      }
      const r = await reading;
      if (r.exitCode === 45) throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': ${file} on ${h.vaultHost.name} is ${r.stderr.trim()} bytes, more than Rubicon edits`, { hint: `clean up ${file} on ${h.vaultHost.name}` });
      const nl = r.stdout.indexOf('\n');
      const head = /^(-|\d+:\d+) (\d+:\d+) (-|[0-9a-f]{64})$/.exec(nl < 0 ? '' : r.stdout.slice(0, nl));
      if (r.exitCode !== 0 || !head) {
        throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': cannot read ${file} on ${h.vaultHost.name} (${h.vaultHost.address}): ${r.stderr.trim().slice(0, 200) || `exit ${r.exitCode}`}`, {
          hint: `check that ${h.ssh.user} can read and write ${file} on ${h.vaultHost.name}`,
        });
      }
      const [, owner, me, want] = head as unknown as [string, string, string, string];
      const text = r.stdout.slice(nl + 1);
      const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
      const now = (h.now ?? (() => new Date()))().getTime();
      const kept = lines.filter((l) => {
        if (grantIdOf(l) === undefined) return true;
        const exp = lineExpiry(l);
        return exp === undefined || exp.getTime() > now - 60_000;
      });
      const out = edit(kept);
      const changed = out.length !== lines.length || out.some((l, i) => l !== lines[i]);
      if (!changed) return false;
      const w = await h.vaultHost.exec({
        argv: ['sh', '-c', CAS_KEYS_SCRIPT, 'rubicon', file, want, owner !== '-' && owner !== me ? owner : '-'],
        input: out.length === 0 ? '' : `${out.join('\n')}\n`,
      });
      if (w.exitCode === 0) return true;
      if (w.exitCode === 47 && attempt < 10) continue; // changed by someone else since the read: edit the new content
      if (w.exitCode === 48) {
        throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': cannot give the rewritten ${file} on ${h.vaultHost.name} back to its owner ${owner}: ${w.stderr.trim().slice(0, 200)}`, {
          hint: `let Rubicon log in to the vault host as the owner of that file, or run chown ${owner} ${file} on ${h.vaultHost.name}`,
        });
      }
      const full = /No space left/i.test(w.stderr);
      throw new RubiconError(full ? 'NO_SPACE' : 'GRANT_FAILED', `vault '${h.vault}': cannot write ${file} on ${h.vaultHost.name} (${h.vaultHost.address}): ${w.exitCode === 47 ? 'it keeps changing under Rubicon' : w.stderr.trim().slice(0, 200) || `exit ${w.exitCode}`}`, {
        hint: full ? `free space on ${h.vaultHost.name} where ${file} lives, then resume the run` : `check that ${h.ssh.user} can write ${file} on ${h.vaultHost.name}`,
      });
    }
  });
  editLocks.set(key, next);
  try {
    return await next;
  } finally {
    if (editLocks.get(key) === next) editLocks.delete(key);
  }
}

/**
 * Gives `to` time-limited access to the vault host. See the contracts at the
 * top of this file. Throws GRANT_FAILED (naming the vault, the machine and
 * the fix), NO_SPACE, or the transport's own errors.
 */
export async function issueGrant(h: GrantHost, to: Machine, req: GrantRequest): Promise<Grant> {
  if (!(req.ttlMs > 0) || !Number.isFinite(req.ttlMs)) throw new RubiconError('INTERNAL', `grant for vault '${h.vault}': ttlMs must be a positive number of milliseconds`);
  // A Windows machine takes a grant in Windows form (its work folder is C:\...); a POSIX work folder on a
  // Windows machine is only the PowerShell-on-Linux stand-in (docs/windows.md), whose revoke runs rm.
  const workDir = h.workDirOf(to);
  const windows = to.os === 'windows' && isWindowsFolder(workDir);
  const standIn = process.env[WINDOWS_STAND_IN_ENV] === '1' && workDir.startsWith('/');
  if (to.os !== 'linux' && !windows && !standIn) {
    throw new RubiconError('GRANT_FAILED', `vault '${h.vault}' can give grants to Linux machines and Windows machines with a Windows work folder; ${to.name} runs ${to.os} with work folder ${workDir}`, { hint: 'give the target a Windows work folder (target.workDir, e.g. C:\\ProgramData\\Rubicon)' });
  }
  if (!windows && !workDir.startsWith('/')) throw new RubiconError('INTERNAL', `grant for vault '${h.vault}': the work folder of ${to.name} is not absolute (${workDir})`);
  let knownHosts: string;
  try {
    knownHosts = await readFile(h.ssh.knownHosts, 'utf8');
  } catch (e) {
    throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': cannot read the known_hosts file ${h.ssh.knownHosts}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
      hint: 'fix vaults[].host.knownHosts in the runbook: it must hold the vault host\'s host key',
    });
  }
  const now = (h.now ?? (() => new Date()))();
  const expiresAt = new Date(Math.ceil((now.getTime() + req.ttlMs) / 1000) * 1000);
  const id = newGrantId(h.runId);
  const dir = windows ? windowsPath(workDir, 'grants', id) : `${workDir.replace(/\/+$/, '')}/grants/${id}`;
  const sshArgv = grantSshArgv(dir, h.ssh.port, h.ssh.connectTimeoutSeconds, windows);
  sshArgv.forEach(toolArg); // refuse a folder the tools cannot be told about, before anything is written
  const keys = await makeKeyPair(`${COMMENT_PREFIX}${id}`);
  const line = authorizedKeyLine({ publicKey: keys.publicKey, id, expiresAt, forcedCommand: req.forcedCommand });
  // The grant's files go to the machine (one call) while authorized_keys is read; the key line is
  // written only after the files are there and the journal knows the grant (beforeKey).
  const files = writeSmallFiles(to, [
    { path: windowsPath(dir, 'id_ed25519'), data: keys.privateKey, mode: 0o600 },
    { path: windowsPath(dir, 'known_hosts'), data: knownHosts, mode: 0o600 },
    ...Object.entries(req.files ?? {}).map(([name, content]) => ({ path: windowsPath(dir, name), data: content, mode: 0o600 })),
  ]).then(() => req.beforeKey?.({ id, dir, expiresAt: expiresAt.toISOString() }));
  try {
    await editAuthorizedKeys(h, (lines) => [...lines, line], { after: files });
  } catch (e) {
    await files.catch(() => undefined);
    await removeGrantFolder(to, dir).catch(() => undefined);
    throw e;
  }
  const s = req.settings(dir, sshArgv);
  return { id, vault: h.vault, machine: to.name, mode: req.mode, expiresAt: expiresAt.toISOString(), dir, ...s };
}

/**
 * Removes a grant folder. POSIX: `rm -rf`. Windows form: `cmd.exe /c rmdir
 * /s /q <dir>` (learn.microsoft.com/windows-server/administration/windows-commands/rmdir:
 * /s the folder and everything in it, /q no prompt; a folder that is not
 * there is an error that leaves nothing behind, so it is checked first with
 * `if exist <dir>\`). The folder name is checked to be a grant folder of
 * plain characters (no spaces: the words reach cmd.exe unquoted) before
 * anything runs. Never run on a real Windows Server yet.
 */
async function removeGrantFolder(on: Machine, dir: string): Promise<void> {
  const win = on.os === 'windows' && isWindowsFolder(dir);
  // Windows: plain characters only (no spaces, quotes or cmd.exe operators), so cmd.exe's own parsing cannot split it.
  if (win ? !/^[A-Za-z]:\\[A-Za-z0-9._\\-]*\\grants\\[A-Za-z0-9._-]+$/.test(dir) : !/\/grants\/[^/]+$/.test(dir)) {
    throw new RubiconError('INTERNAL', `refusing to remove ${dir}: not a grant folder`);
  }
  const r = await on.exec({ argv: win ? ['cmd.exe', '/d', '/c', 'if', 'exist', `${dir}\\`, 'rmdir', '/s', '/q', dir] : ['rm', '-rf', '--', dir] });
  if (r.exitCode !== 0) {
    throw new RubiconError('GRANT_FAILED', `cannot remove the grant folder ${dir} on ${on.name}: ${r.stderr.trim().slice(0, 200)}`, { hint: `remove ${dir} on ${on.name} by hand` });
  }
}

/**
 * Ends a grant: its authorized_keys line first (so the key stops working
 * even if the machine is gone), then its folder on `on`. Idempotent. Without
 * `on` only the key is removed and GRANT_FAILED says the folder is left.
 */
export async function revokeGrant(h: GrantHost, grant: Grant, on: Machine | undefined): Promise<void> {
  await removeKeyLine(h, grant.id);
  if (!on) {
    throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': the key of grant ${grant.id} is revoked, but its folder ${grant.dir} on ${grant.machine} was not removed (machine not known to this process)`, {
      hint: `remove ${grant.dir} on ${grant.machine}; it holds a key that no longer opens anything${grant.env.RESTIC_PASSWORD_FILE ? ' and the repository password' : ''}`,
    });
  }
  await removeGrantFolder(on, grant.dir);
}

/**
 * Removes the line of one grant from authorized_keys in ONE call to the
 * vault host: awk keeps every line whose last field is not the grant's
 * comment, byte for byte; the new file gets the old one's owner and mode
 * 0600 before it is renamed into place. Nothing is written when the line
 * is not there (idempotent). Exit 48: the owner could not be kept.
 */
const REMOVE_KEY_SCRIPT = String.raw`
f=$1; c="rubicon-grant:$2"
[ -e "$f" ] || exit 0
awk -v c="$c" '$NF == c { found = 1 } END { exit found ? 0 : 1 }' "$f" || exit 0
umask 077
t="$f.rubicon-tmp.$$"
awk -v c="$c" '$NF != c' "$f" > "$t" || { rm -f -- "$t"; exit 46; }
o=$(stat -c %u:%g -- "$f") && chown -- "$o" "$t" || { rm -f -- "$t"; exit 48; }
chmod 600 "$t" && mv -f -- "$t" "$f" || { rm -f -- "$t"; exit 46; }
`;

async function removeKeyLine(h: GrantHost, id: string): Promise<void> {
  if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new RubiconError('INTERNAL', `"${id}" is not a grant id`);
  const file = await authorizedKeysPath(h);
  const key = lockKey(h, file);
  const prev = editLocks.get(key) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(async () => {
    const r = await h.vaultHost.exec({ argv: ['sh', '-c', REMOVE_KEY_SCRIPT, 'rubicon', file, id] });
    if (r.exitCode !== 0) {
      throw new RubiconError('GRANT_FAILED', `vault '${h.vault}': cannot remove the key of grant ${id} from ${file} on ${h.vaultHost.name} (${h.vaultHost.address}): ${r.stderr.trim().slice(0, 200) || `exit ${r.exitCode}`}`, {
        hint: `remove the line ending in rubicon-grant:${id} from ${file} on ${h.vaultHost.name}; it expires by itself otherwise`,
      });
    }
  });
  editLocks.set(key, next);
  try {
    await next;
  } finally {
    if (editLocks.get(key) === next) editLocks.delete(key);
  }
}

/** Removes every authorized_keys line of this run's grants (end of a run, or after a crash). Returns how many. Idempotent. */
export async function revokeRunGrants(h: GrantHost): Promise<number> {
  const prefix = grantIdPrefix(h.runId);
  let removed = 0;
  await editAuthorizedKeys(h, (lines) =>
    lines.filter((l) => {
      const id = grantIdOf(l);
      const mine = id !== undefined && id.startsWith(prefix) && /^[0-9a-f]{16}$/.test(id.slice(prefix.length));
      if (mine) removed++;
      return !mine;
    }),
  );
  return removed;
}

/** Lines of authorized_keys on the vault host that carry a rubicon-grant comment (tests, `rubicon` diagnostics). */
export async function listGrantLines(h: GrantHost): Promise<string[]> {
  const file = await authorizedKeysPath(h);
  try {
    const text = Buffer.from(await h.vaultHost.readSmall(file, AUTHORIZED_KEYS_MAX)).toString('utf8');
    return text.split('\n').filter((l) => grantIdOf(l) !== undefined);
  } catch (e) {
    if (isRubiconError(e) && e.code === 'MACHINE_FILE_MISSING') return [];
    throw e;
  }
}

/** Refuses a grant that is not for this vault and machine, or has expired (by this machine's clock). */
export function assertGrant(g: Grant, vault: string, machine: Machine, mode: 'read' | 'write', now: Date = new Date()): void {
  if (g.vault !== vault || g.machine !== machine.name) {
    throw new RubiconError('INTERNAL', `grant ${g.id} is for vault '${g.vault}' on ${g.machine}, not for vault '${vault}' on ${machine.name}`);
  }
  if (mode === 'write' && g.mode !== 'write') throw new RubiconError('INTERNAL', `grant ${g.id} of vault '${vault}' is read-only; writing needs a write grant`);
  if (Date.parse(g.expiresAt) <= now.getTime()) {
    throw new RubiconError('GRANT_FAILED', `grant ${g.id} of vault '${vault}' for ${machine.name} expired at ${g.expiresAt}`, { hint: 'resume the run: it asks the vault for a new grant' });
  }
}
