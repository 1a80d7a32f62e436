/**
 * Teardown of test nets: one synchronous procedure used by `net.destroy()`,
 * by the process-exit hook (an aborted test) and by `sweepStaleTestNets()`
 * (a crashed earlier run). It works from what is on disk and in the kernel
 * (the net's record, /run/netns, /proc, /proc/self/mountinfo), so it can
 * clean up a net whose owner process is gone.
 *
 * Contract: idempotent; destructive only to what carries the net's id
 * (namespaces `rb-<id>-*`, /etc/netns/rb-<id>-*, /tmp/rbnet-<id> and the
 * mounts under it, processes inside the net's namespaces); never touches a
 * net whose owner process is alive (sweep), returns the problems it could
 * not fix instead of throwing.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { NETNS_NAME, NET_ID } from './spec.ts';
import type { Tools } from './tools.ts';

/** Every net lives in /tmp/rbnet-<id> (not os.tmpdir(): a sweeper with another TMPDIR must find it). */
export const NETS_ROOT = '/tmp';
export const NETNS_DIR = '/run/netns';
export const ETC_NETNS = '/etc/netns';
const NET_DIR = /^rbnet-([0-9a-f]{6})$/;
/** A net without a record younger than this may be one being created right now: a sweep leaves it. */
const GRACE_MS = 60_000;

export function netDir(id: string): string {
  return path.join(NETS_ROOT, `rbnet-${id}`);
}

/** The first thing written for a net (before any namespace exists), read by sweeps and by child processes. */
export interface NetRecord {
  version: 1;
  id: string;
  dir: string;
  owner: { pid: number; startTicks: string };
  createdAt: string;
  /** Every namespace of the net, the switch namespace included. */
  namespaces: string[];
  /** The full description, once the net is up (see TestNetInfo in net.ts). */
  info?: unknown;
}

export function recordPath(id: string): string {
  return path.join(netDir(id), 'net.json');
}

export function writeRecord(record: NetRecord): void {
  const file = recordPath(record.id);
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
}

export function readRecord(id: string): NetRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(id), 'utf8')) as NetRecord;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/PID/stat (start time in clock ticks): tells a live owner from a reused pid. */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: NetRecord['owner']): boolean {
  return processStartTicks(owner.pid) === owner.startTicks;
}

/** True when `pid` has exited: no /proc entry, or a zombie its parent has not reaped yet. */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The inode of a named network namespace (what /proc/PID/ns/net links to), if it exists. */
export function netnsInode(ns: string): number | undefined {
  try {
    return statSync(path.join(NETNS_DIR, ns)).ino;
  } catch {
    return undefined;
  }
}

/** Pids of live (not zombie) processes whose network namespace is one of `inodes`. */
export function processesInNetns(inodes: ReadonlySet<number>): number[] {
  const out: number[] = [];
  if (inodes.size === 0) return out;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let link: string;
    try {
      link = readlinkSync(`/proc/${entry}/ns/net`);
    } catch {
      continue; // gone, or a zombie (its namespaces are already released)
    }
    const m = /^net:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(Number(m[1])) && Number(entry) !== process.pid) out.push(Number(entry));
  }
  return out;
}

/** Mount points at or under `dir` in this process's mount namespace, deepest first. */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const raw = line.split(' ')[4];
    if (raw === undefined) continue;
    const mp = raw.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === dir || mp.startsWith(dir + '/')) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

export function netnsOf(id: string): string[] {
  try {
    return readdirSync(NETNS_DIR).filter((n) => NETNS_NAME.exec(n)?.[1] === id);
  } catch {
    return [];
  }
}

export function etcDirsOf(id: string): string[] {
  try {
    return readdirSync(ETC_NETNS)
      .filter((n) => NETNS_NAME.exec(n)?.[1] === id)
      .map((n) => path.join(ETC_NETNS, n));
  } catch {
    return [];
  }
}

export interface TeardownTarget {
  id: string;
  /** Namespaces the caller knows of; those found in /run/netns for the id are added. */
  namespaces: readonly string[];
}

/**
 * Removes everything of net `id`. Order matters: processes first (they hold
 * namespaces and mounts), then mounts, namespaces, /etc/netns folders, and
 * the net's folder last (it holds the record a later sweep would need).
 * Returns the problems it could not fix (empty when all is gone).
 */
export function teardownSync(tools: Pick<Tools, 'ip' | 'umount'>, t: TeardownTarget): string[] {
  if (!NET_ID.test(t.id)) return [`refusing to tear down "${t.id}": not a test net id`];
  const problems: string[] = [];
  const namespaces = [...new Set([...t.namespaces, ...netnsOf(t.id)])];
  const inodes = new Set(namespaces.map(netnsInode).filter((i): i is number => i !== undefined));
  // Every process the harness starts runs inside the net's namespaces (ip
  // netns exec), so scanning /proc for them finds them all, sessions and
  // daemons included, without trusting pids that may have been reused.
  // SIGKILL until none is left, then wait until every killed one has really
  // exited (a process leaves its namespaces early in its exit, before its
  // children in a PID namespace are gone).
  const killed = new Set<number>();
  let left: number[] = [];
  for (let round = 0; round < 150; round++) {
    left = processesInNetns(inodes);
    const exiting = [...killed].filter((p) => !processGone(p));
    if (left.length === 0 && exiting.length === 0) break;
    for (const pid of left) {
      killed.add(pid);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* raced with its exit */
      }
    }
    sleepSync(left.length > 0 ? 20 : 5);
  }
  const alive = [...new Set([...left, ...[...killed].filter((p) => !processGone(p))])];
  if (alive.length > 0) problems.push(`processes still running in net ${t.id}'s namespaces: ${alive.join(', ')}`);

  const dir = netDir(t.id);
  for (const mp of mountsUnder(dir)) {
    try {
      execFileSync(tools.umount, [mp], { stdio: 'pipe' });
    } catch {
      try {
        execFileSync(tools.umount, ['-l', mp], { stdio: 'pipe' });
      } catch (e) {
        // A concurrent sweep may have unmounted it first: only a mount still there is a problem.
        if (mountsUnder(mp).includes(mp)) problems.push(`could not unmount ${mp}: ${String((e as { stderr?: unknown }).stderr ?? e).trim()}`);
      }
    }
  }
  const existing = namespaces.filter((ns) => netnsInode(ns) !== undefined);
  if (existing.length > 0) {
    try {
      execFileSync(tools.ip, ['-force', '-batch', '-'], { input: existing.map((ns) => `netns del ${ns}\n`).join(''), stdio: 'pipe' });
    } catch {
      /* checked below */
    }
    const still = namespaces.filter((ns) => netnsInode(ns) !== undefined);
    if (still.length > 0) problems.push(`could not delete namespaces ${still.join(', ')} (try: ip netns del NAME)`);
  }
  for (const d of new Set([...namespaces.map((ns) => path.join(ETC_NETNS, ns)), ...etcDirsOf(t.id)])) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch (e) {
      problems.push(`could not remove ${d}: ${(e as Error).message}`);
    }
  }
  if (mountsUnder(dir).length === 0) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      problems.push(`could not remove ${dir}: ${(e as Error).message}`);
    }
  } else {
    problems.push(`left ${dir} in place: something is still mounted under it`);
  }
  return problems;
}

export interface SweepResult {
  /** Ids of the nets removed (their owner process was dead). */
  removed: string[];
  /** Ids left alone (owner alive, or too young to judge). */
  kept: string[];
  problems: string[];
}

function youngestMtimeMs(paths: string[]): number {
  let newest = 0;
  for (const p of paths) {
    try {
      newest = Math.max(newest, statSync(p).mtimeMs);
    } catch {
      /* gone */
    }
  }
  return newest;
}

/**
 * Removes the leftovers of test nets whose owner process is dead (a test
 * run killed with SIGKILL, a crashed machine...): namespaces named
 * `rb-<id>-*`, their /etc/netns folders, /tmp/rbnet-<id> and its mounts, and
 * any process still inside those namespaces. Nets of live owners (tests
 * running in parallel, in this or another process) are left alone, and so is
 * a net with no record younger than a minute (it may be being created).
 */
export function sweepStaleTestNets(tools: Pick<Tools, 'ip' | 'umount'>): SweepResult {
  const ids = new Set<string>();
  for (const dir of [NETNS_DIR, ETC_NETNS]) {
    try {
      for (const n of readdirSync(dir)) {
        const m = NETNS_NAME.exec(n);
        if (m?.[1]) ids.add(m[1]);
      }
    } catch {
      /* no such folder */
    }
  }
  try {
    for (const n of readdirSync(NETS_ROOT)) {
      const m = NET_DIR.exec(n);
      if (m?.[1]) ids.add(m[1]);
    }
  } catch {
    /* no /tmp? */
  }
  const result: SweepResult = { removed: [], kept: [], problems: [] };
  for (const id of [...ids].sort()) {
    const record = readRecord(id);
    const namespaces = netnsOf(id);
    if (record && ownerAlive(record.owner)) {
      result.kept.push(id);
      continue;
    }
    if (!record) {
      const artifacts = [netDir(id), ...namespaces.map((n) => path.join(NETNS_DIR, n)), ...etcDirsOf(id)];
      if (Date.now() - youngestMtimeMs(artifacts) < GRACE_MS) {
        result.kept.push(id);
        continue;
      }
    }
    const problems = teardownSync(tools, { id, namespaces: [...namespaces, ...(record?.namespaces ?? [])] });
    result.problems.push(...problems.map((p) => `net ${id}: ${p}`));
    result.removed.push(id);
  }
  return result;
}

/* ---- tear down on process exit ---------------------------------------- */

interface Live {
  teardownNow(): void;
}
const live = new Set<Live>();
let hooked = false;

function onSignal(signal: NodeJS.Signals): void {
  tearDownAllLive();
  process.removeListener(signal, onSignal);
  // Re-raise with the default action unless someone else handles it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function tearDownAllLive(): void {
  for (const n of [...live]) {
    try {
      n.teardownNow();
    } catch {
      /* best effort at exit; a later sweep finishes */
    }
  }
}

/**
 * Keeps `net` torn down if the process exits (normally, by process.exit, or
 * by SIGINT/SIGTERM/SIGHUP) before net.destroy() ran. A SIGKILL cannot be
 * caught: sweepStaleTestNets() cleans that up later.
 */
export function trackLive(net: Live): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', tearDownAllLive);
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
  }
  live.add(net);
  return () => live.delete(net);
}
