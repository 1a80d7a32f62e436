import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, realpathSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import type { Machine } from '../machines/machine.ts';
import type { Runbook } from '../runbook/load.ts';

/**
 * One run per TARGET at a time, whatever state directory a run uses: the
 * lock is keyed by the target's identity (its real root path on this
 * machine, or user@host:port and root for a remote server), not by its name
 * in one state directory — two state directories can no longer upgrade one
 * server at once, and two estates that happen to share a name no longer
 * block each other.
 *
 * - On this machine: a lock file per identity in a machine-wide folder
 *   ($RUBICON_LOCK_DIR, default /var/tmp/rubicon-locks), created
 *   exclusively.
 * - On a remote target, also a lock file on the target itself
 *   (`<workDir>/rubicon.lock`, created exclusively with the shell's
 *   noclobber), so orchestrators on two different machines exclude each
 *   other too.
 *
 * A lock names its holder: run id, host, pid and the pid's start time (from
 * /proc), so a stale lock whose pid was reused by another process is taken
 * over instead of locking forever. A lock held from another host is never
 * taken over automatically (LOCK_HELD names it and the fix).
 */
export interface LockHolder {
  runId: string;
  host: string;
  pid: number;
  /** The pid's start time in clock ticks since boot (/proc/<pid>/stat field 22), or null where unknown. */
  startTime: string | null;
  at: string;
  target: string;
  identity: string;
}

export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** Alive and the same process: its start time matches the one recorded (a reused pid is not the holder). */
export function holderAlive(h: Pick<LockHolder, 'pid' | 'startTime'>): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (h.startTime === null) return true;
  return processStartTime(h.pid) === h.startTime;
}

export function targetIdentity(rb: Runbook): string {
  const t = rb.target.transport;
  if (t.kind === 'local') {
    let root = rb.target.root;
    try {
      root = realpathSync(root);
    } catch {
      /* not there yet */
    }
    return `local:${root}`;
  }
  if (t.kind === 'ssh') return `ssh:${t.user}@${t.host}:${t.port}${rb.target.root}`;
  return `${(t as { kind: string }).kind}:${rb.target.name}`;
}

export function machineLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.RUBICON_LOCK_DIR ?? '/var/tmp/rubicon-locks');
}

function lockHeld(h: LockHolder | undefined, where: string): RubiconError {
  return new RubiconError(
    'LOCK_HELD',
    h ? `target ${h.target} (${h.identity}) is locked by run ${h.runId} (pid ${h.pid} on ${h.host}, since ${h.at})` : `target is locked (${where})`,
    {
      hint: h
        ? `wait for that run to end, or resume it (rubicon resume ${h.runId}); remove ${where} only if you are sure no run of it is alive on ${h.host}`
        : `remove ${where} only if you are sure no run is active`,
    },
  );
}

/** Exclusive lock file on this machine. Returns a release function (removes only our own lock). */
export function acquireLockFile(file: string, holder: LockHolder): () => void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o1777 });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, JSON.stringify(holder));
      fsyncSync(fd);
      closeSync(fd);
      return () => {
        try {
          const held = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
          if (held.pid === holder.pid && held.runId === holder.runId) unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let held: LockHolder | undefined;
      try {
        held = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
      } catch {
        // Torn by a crash between create and write: stale after a minute.
        if (existsSync(file) && Date.now() - statSync(file).mtimeMs > 60_000) {
          unlinkSync(file);
          continue;
        }
      }
      if (held && held.host === holder.host && !holderAlive(held)) {
        try {
          unlinkSync(file);
        } catch {
          /* raced */
        }
        continue;
      }
      throw lockHeld(held, file);
    }
  }
  throw new RubiconError('LOCK_HELD', `could not take the lock ${file}`, { hint: 'try again' });
}

export function holderFor(rb: Runbook, runId: string, host: string): LockHolder {
  return { runId, host, pid: process.pid, startTime: processStartTime(process.pid), at: new Date().toISOString(), target: rb.target.name, identity: targetIdentity(rb) };
}

/** The lock on this machine for the runbook's target. */
export function acquireTargetLock(rb: Runbook, runId: string, host: string, env: NodeJS.ProcessEnv = process.env): () => void {
  const id = targetIdentity(rb);
  const file = path.join(machineLockDir(env), `${createHash('sha256').update(id).digest('hex').slice(0, 32)}.lock`);
  return acquireLockFile(file, holderFor(rb, runId, host));
}

const REMOTE_LOCK = String.raw`
f=$1; new=$2
mkdir -p -- "$(dirname -- "$f")" || exit 46
if ( set -C; printf '%s' "$new" > "$f" ) 2>/dev/null; then echo acquired; exit 0; fi
echo held; cat -- "$f"
`;

/**
 * The lock on the remote target itself. A stale lock of a dead holder on
 * THIS host is taken over; one from another host is LOCK_HELD.
 */
export async function acquireRemoteTargetLock(machine: Machine, file: string, holder: LockHolder): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await machine.exec({ argv: ['sh', '-c', REMOTE_LOCK, 'rubicon', file, JSON.stringify(holder)] });
    if (r.stdout.startsWith('acquired')) {
      return async () => {
        await machine
          .exec({ argv: ['sh', '-c', 'grep -qF -- "$2" "$1" 2>/dev/null && rm -f -- "$1"; exit 0', 'rubicon', file, `"runId":"${holder.runId}"`] })
          .catch(() => undefined);
      };
    }
    let held: LockHolder | undefined;
    try {
      held = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n') + 1)) as LockHolder;
    } catch {
      held = undefined;
    }
    if (held && held.host === holder.host && !holderAlive(held)) {
      await machine.exec({ argv: ['rm', '-f', '--', file] });
      continue;
    }
    throw lockHeld(held, `${file} on ${machine.name}`);
  }
  throw new RubiconError('LOCK_HELD', `could not take the lock ${file} on ${machine.name}`, { hint: 'try again' });
}
