import { RubiconError } from '../core/errors.ts';
import type { DriftChange, ManifestEntry } from '../core/types.ts';
import { comparePaths, isExcluded } from '../core/paths.ts';
import { normalizeExcludes } from '../files/walk.ts';
import type { Machine, StepKey } from './machine.ts';

/**
 * File trees on a POSIX machine, inspected where the files are: GNU find
 * lists them (stat only), coreutils sha256sum hashes them, and only the
 * results travel back. Nothing here writes on the machine.
 *
 * Contracts:
 * - Paths are relative to the listed folder, POSIX separators, in
 *   comparePaths order, the same as the local walk (src/files/walk.ts).
 * - Only regular files are manifest entries; symlinks, sockets, FIFOs and
 *   devices are listed in `skipped` (never followed: find -P), and so are
 *   names that are not valid UTF-8. Nothing is silently left out.
 * - `-xdev`: a tree never crosses into another filesystem (a mounted vault
 *   or a network share below a data folder is not the target's data).
 */

export interface TreeEntry {
  path: string;
  size: number;
  mtimeMs: number;
  mode: number;
}

export interface TreeListing {
  files: TreeEntry[];
  /** Folders (relative), for discovery. */
  dirs: string[];
  skipped: { path: string; kind: string }[];
}

/** Runs a step when a step runner is given (long work, journaled), else a plain exec. */
export type RunOnMachine = (
  machine: Machine,
  key: StepKey,
  argv: string[],
  input?: string,
  options?: { maxOutputBytes?: number },
) => Promise<{ exitCode: number; stdout: string; stderr: string }>;

/** Output kept of a listing-and-hashing step: a tree of 1M files lists in about 100 MB. */
const LIST_OUTPUT_MAX = 256 * 1024 * 1024;

const FIND_FORMAT = '%y\\0%P\\0%s\\0%T@\\0%m\\0';

/** A glob-escaped path for find's -path (which takes patterns). */
function findPattern(p: string): string {
  return p.replace(/[\\*?[\]]/g, '\\$&');
}

/** find's expression that leaves `exclude` out (empty for none). */
function pruneArgs(exclude: readonly string[]): string[] {
  const prune = exclude.flatMap((x, i) => [...(i > 0 ? ['-o'] : []), '-path', `./${findPattern(x.replace(/\/+$/, ''))}`]);
  return prune.length > 0 ? ['(', ...prune, ')', '-prune', '-o'] : [];
}

/**
 * Lists a folder and hashes files in ONE step on the machine (one round
 * trip, journaled like any step): GNU find's listing (FIND_FORMAT), a
 * marker record, then sha256sum -z of either every regular file the same
 * expression finds (`all`) or the relative paths given on stdin. $1 dir, $2
 * all|given, then the prune expression. Exit 70 when the listing failed.
 */
const LIST_HASH_SCRIPT = String.raw`
cd "$1" 2>/dev/null || { cat > /dev/null; echo missing; exit 0; }
mode=$2; shift 2
printf 'ok
'
find -P . -xdev -mindepth 1 "$@" -printf '${FIND_FORMAT}'; frc=$?
printf 'RUBICON-HASHES\0'
if [ "$mode" = all ]; then cat > /dev/null; find -P . -xdev -mindepth 1 "$@" -type f -printf './%P\0'; else cat; fi | xargs -0 -r sha256sum -z --
hrc=$?
[ "$frc" -eq 0 ] || exit 70
exit "$hrc"
`;

/** Parses LIST_HASH_SCRIPT's output. Undefined when it is not that output (cut, or another program's). Pure. */
export function parseListHash(out: string): { missing: true } | { missing: false; listing: TreeListing; hashes: Map<string, string> } | undefined {
  if (out.startsWith('missing\n')) return { missing: true };
  if (!out.startsWith('ok\n')) return undefined;
  const parts = out.slice(3).split('\0');
  let i = 0;
  while (i < parts.length && parts[i] !== 'RUBICON-HASHES') i += 5;
  if (i >= parts.length) return undefined;
  const listing = parseFind(parts.slice(0, i).join('\0') + (i > 0 ? '\0' : ''));
  return { missing: false, listing, hashes: parseSha256z(parts.slice(i + 1).join('\0')) };
}

/** sha256sum -z records ("<hex>  ./<path>\0") → path → hash. Pure. */
function parseSha256z(out: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const rec of out.split('\0')) {
    if (rec.length < 67) continue;
    const sha = rec.slice(0, 64);
    const name = rec.slice(66).replace(/^\.\//, '');
    if (/^[0-9a-f]{64}$/.test(sha)) map.set(name, sha);
  }
  return map;
}

/** Runs LIST_HASH_SCRIPT as a step and parses it; MACHINE_FAILED when the listing failed or was cut. */
async function listAndHash(
  run: RunOnMachine,
  machine: Machine,
  key: StepKey,
  dir: string,
  o: { exclude?: readonly string[]; paths?: readonly string[] },
): Promise<{ missing: true } | { missing: false; listing: TreeListing; hashes: Map<string, string>; exitCode: number; stderr: string }> {
  const input = o.paths ? (o.paths.length ? o.paths.map((p) => `./${p}`).join('\0') + '\0' : '') : '';
  const r = await run(machine, key, ['sh', '-c', LIST_HASH_SCRIPT, 'rubicon', dir, o.paths ? 'given' : 'all', ...pruneArgs(o.exclude ?? [])], input, { maxOutputBytes: LIST_OUTPUT_MAX });
  const parsed = parseListHash(r.stdout);
  if (!parsed) {
    throw new RubiconError('MACHINE_FAILED', `cannot list ${dir} on ${machine.name}: ${r.stderr.trim().split('\n').slice(0, 2).join('; ') || `exit ${r.exitCode}, or the listing was longer than Rubicon reads`}`, {
      hint: `check that GNU find and sha256sum are installed on ${machine.name}`,
    });
  }
  if (parsed.missing) return parsed;
  if (r.exitCode === 70) {
    throw new RubiconError('MACHINE_FAILED', `listing ${dir} on ${machine.name} failed: ${r.stderr.trim().split('\n').slice(0, 3).join('; ')}`, {
      hint: `check that Rubicon's account can read every file under ${dir} on ${machine.name}`,
    });
  }
  return { ...parsed, exitCode: r.exitCode, stderr: r.stderr };
}

/**
 * Lists a folder on the machine. `exclude`: relative paths (files or
 * folders) left out, as the local walk's `exclude`. A missing folder lists
 * as empty with `missing: true`.
 */
export async function listTree(machine: Machine, dir: string, o: { exclude?: string[]; maxDepth?: number; timeoutMs?: number } = {}): Promise<TreeListing & { missing: boolean }> {
  const prune = pruneArgs(o.exclude ?? []);
  const script = [
    'cd "$1" 2>/dev/null || { echo missing; exit 0; }',
    'shift',
    'printf "ok\\n"',
    'exec find -P . -xdev -mindepth 1 "$@"',
  ].join('\n');
  const args = [
    ...(o.maxDepth !== undefined ? ['-maxdepth', String(o.maxDepth)] : []),
    ...prune,
    '-printf',
    FIND_FORMAT,
  ];
  const r = await machine.exec({ argv: ['sh', '-c', script, 'rubicon', dir, ...args] }, { timeoutMs: o.timeoutMs ?? 600_000, maxOutputBytes: 512 * 1024 * 1024 });
  if (r.stdout.startsWith('missing')) return { files: [], dirs: [], skipped: [], missing: true };
  if (!r.stdout.startsWith('ok\n')) {
    throw new RubiconError('MACHINE_FAILED', `cannot list ${dir} on ${machine.name}: ${r.stderr.trim() || `exit ${r.exitCode}`}`, { hint: `check that GNU find is installed on ${machine.name}` });
  }
  if (r.exitCode !== 0) {
    throw new RubiconError('MACHINE_FAILED', `listing ${dir} on ${machine.name} failed: ${r.stderr.trim().split('\n').slice(0, 3).join('; ')}`, {
      hint: `check that Rubicon's account can read every file under ${dir} on ${machine.name}`,
    });
  }
  return { ...parseFind(r.stdout.slice(3)), missing: false };
}

/** Parses find's NUL-separated `-printf` records (FIND_FORMAT). Pure. Exported for tests. */
export function parseFind(out: string): TreeListing {
  const parts = out.split('\0');
  const files: TreeEntry[] = [];
  const dirs: string[] = [];
  const skipped: { path: string; kind: string }[] = [];
  for (let i = 0; i + 4 < parts.length; i += 5) {
    const [type, rel, size, mtime, mode] = parts.slice(i, i + 5) as [string, string, string, string, string];
    if (rel.includes('\uFFFD')) {
      skipped.push({ path: rel, kind: 'bad-name' });
      continue;
    }
    if (type === 'd') dirs.push(rel);
    else if (type === 'f') files.push({ path: rel, size: Number(size), mtimeMs: secondsToMs(mtime), mode: parseInt(mode, 8) & 0o7777 });
    else skipped.push({ path: rel, kind: { l: 'symlink', p: 'fifo', s: 'socket', b: 'block-device', c: 'char-device' }[type] ?? 'unknown' });
  }
  files.sort((a, b) => comparePaths(a.path, b.path));
  dirs.sort(comparePaths);
  return { files, dirs, skipped };
}

/**
 * `1701443000.1234567890` → milliseconds exactly as Node's stat computes
 * mtimeMs (sec * 1e3 + nsec / 1e6 in doubles), so a manifest built on a
 * machine and one built by this process agree to the last bit.
 */
export function secondsToMs(s: string): number {
  const [whole = '0', frac = ''] = s.split('.');
  return Number(whole) * 1e3 + Number((frac + '000000000').slice(0, 9)) / 1e6;
}

/**
 * SHA-256 of the given files (relative to dir), computed on the machine by
 * sha256sum. One step (long for big trees; idempotent). Throws
 * MACHINE_FAILED naming the files it could not read.
 */
export async function hashFiles(run: RunOnMachine, machine: Machine, key: StepKey, dir: string, paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (paths.length === 0) return out;
  const script = 'cd "$1" || exit 125; xargs -0 -r sha256sum -z --';
  const r = await run(machine, key, ['sh', '-c', script, 'rubicon', dir], paths.map((p) => `./${p}`).join('\0') + '\0', { maxOutputBytes: LIST_OUTPUT_MAX });
  for (const [k, v] of parseSha256z(r.stdout)) out.set(k, v);
  const missing = paths.filter((p) => !out.has(p));
  if (r.exitCode !== 0 || missing.length > 0) throw cannotHash(machine, dir, missing, r.stderr);
  return out;
}

/**
 * Manifest entries of a folder on the machine. With `base`, a file whose
 * size, mtime and mode equal the base entry keeps the base's hash without
 * being read (the delta rule of src/files/capture.ts): a listing, then one
 * step hashing only what changed. Without a base, listing and hashing are
 * one step (one round trip).
 */
export async function buildTreeManifest(
  run: RunOnMachine,
  machine: Machine,
  key: StepKey,
  dir: string,
  o: { exclude?: string[]; base?: readonly ManifestEntry[] } = {},
): Promise<{ entries: ManifestEntry[]; skipped: { path: string; kind: string }[]; missing: boolean; hashed: number }> {
  if (!o.base || o.base.length === 0) {
    const r = await listAndHash(run, machine, key, dir, { exclude: o.exclude ?? [] });
    if (r.missing) return { entries: [], skipped: [], missing: true, hashed: 0 };
    const unhashed = r.listing.files.filter((f) => !r.hashes.has(f.path)).map((f) => f.path);
    if (unhashed.length > 0) throw cannotHash(machine, dir, unhashed, r.stderr);
    const entries = r.listing.files.map((f) => ({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: r.hashes.get(f.path)! }));
    return { entries, skipped: r.listing.skipped, missing: false, hashed: entries.length };
  }
  const listing = await listTree(machine, dir, { exclude: o.exclude });
  const base = new Map((o.base ?? []).map((e) => [e.path, e] as const));
  const toHash = listing.files.filter((f) => {
    const b = base.get(f.path);
    return !(b && b.size === f.size && b.mtimeMs === f.mtimeMs && b.mode === f.mode);
  });
  const hashes = await hashFiles(run, machine, key, dir, toHash.map((f) => f.path));
  const entries = listing.files.map((f) => ({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: hashes.get(f.path) ?? base.get(f.path)!.sha256 }));
  return { entries, skipped: listing.skipped, missing: listing.missing, hashed: toHash.length };
}

function cannotHash(machine: Machine, dir: string, missing: readonly string[], stderr: string): RubiconError {
  return new RubiconError('MACHINE_FAILED', `cannot hash ${missing.length} file(s) under ${dir} on ${machine.name} (first: ${missing.slice(0, 3).join(', ')}): ${stderr.trim().split('\n').slice(0, 2).join('; ')}`, {
    hint: `check that every file under ${dir} is readable by Rubicon's account on ${machine.name}; a locked or vanished file is named above`,
  });
}

/**
 * What changed in a folder on the machine since `entries` (the same rules as
 * src/files/drift.ts scanDrift: size and mtime first, a touch without a
 * content change is not drift).
 */
export async function scanTreeDrift(
  run: RunOnMachine,
  machine: Machine,
  key: StepKey,
  dir: string,
  entries: readonly ManifestEntry[],
  o: { exclude?: string[] } = {},
): Promise<DriftChange[]> {
  const listing = await listTree(machine, dir, { exclude: o.exclude });
  const excludes = normalizeExcludes(o.exclude ?? []);
  const byPath = new Map<string, ManifestEntry>();
  for (const e of entries) if (!isExcluded(e.path, excludes)) byPath.set(e.path, e);
  const changes: DriftChange[] = [];
  const recheck: TreeEntry[] = [];
  for (const f of listing.files) {
    const e = byPath.get(f.path);
    if (!e) {
      changes.push({ path: f.path, kind: 'added', size: f.size, mtimeMs: f.mtimeMs });
      continue;
    }
    byPath.delete(f.path);
    if (f.size !== e.size || f.mode !== e.mode) changes.push({ path: f.path, kind: 'modified', size: f.size, mtimeMs: f.mtimeMs });
    else if (f.mtimeMs !== e.mtimeMs) recheck.push(f);
  }
  if (recheck.length > 0) {
    const hashes = await hashFiles(run, machine, key, dir, recheck.map((f) => f.path));
    const before = new Map(entries.map((e) => [e.path, e.sha256] as const));
    for (const f of recheck) if (hashes.get(f.path) !== before.get(f.path)) changes.push({ path: f.path, kind: 'modified', size: f.size, mtimeMs: f.mtimeMs });
  }
  for (const e of byPath.values()) changes.push({ path: e.path, kind: 'deleted', size: e.size, mtimeMs: e.mtimeMs });
  return changes.sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * Checks a tree on the machine against manifest entries: every entry
 * present with its size and SHA-256. The listing and the hashing are ONE
 * step on the machine (one round trip); only the manifest's paths are
 * hashed. Extra files are reported separately. A missing folder is every
 * entry missing (and `dirMissing`). `alsoHash`: more files (relative to
 * dir, may lead out of it: a vault's manifest document) hashed in the same
 * step, returned in `also` (absent when unreadable). Read-only.
 */
export async function verifyTreeOn(
  run: RunOnMachine,
  machine: Machine,
  key: StepKey,
  dir: string,
  entries: readonly ManifestEntry[],
  o: { alsoHash?: readonly string[] } = {},
): Promise<{ ok: boolean; dirMissing?: boolean; mismatches: { path: string; problem: 'missing' | 'size' | 'hash' | 'extra' }[]; also?: Map<string, string> }> {
  const also = o.alsoHash ?? [];
  const r = await listAndHash(run, machine, key, dir, { paths: [...entries.map((e) => e.path), ...also] });
  if (r.missing) return { ok: entries.length === 0, dirMissing: true, mismatches: entries.map((e) => ({ path: e.path, problem: 'missing' as const })) };
  const have = new Map(r.listing.files.map((f) => [f.path, f] as const));
  const mismatches: { path: string; problem: 'missing' | 'size' | 'hash' | 'extra' }[] = [];
  const unhashed: string[] = [];
  for (const e of entries) {
    const f = have.get(e.path);
    if (!f) mismatches.push({ path: e.path, problem: 'missing' });
    else if (f.size !== e.size) mismatches.push({ path: e.path, problem: 'size' });
    else {
      const h = r.hashes.get(e.path);
      if (h === undefined) unhashed.push(e.path);
      else if (h !== e.sha256) mismatches.push({ path: e.path, problem: 'hash' });
    }
  }
  // Listed with the right size, yet sha256sum could not read it: not a verdict on the copy, a failure to check it.
  if (unhashed.length > 0) throw cannotHash(machine, dir, unhashed, r.stderr);
  const listed = new Set(entries.map((e) => e.path));
  for (const f of r.listing.files) if (!listed.has(f.path)) mismatches.push({ path: f.path, problem: 'extra' });
  const alsoHashes = new Map(also.flatMap((p) => (r.hashes.has(p) ? [[p, r.hashes.get(p)!] as const] : [])));
  return { ok: mismatches.every((m) => m.problem === 'extra'), mismatches, ...(also.length ? { also: alsoHashes } : {}) };
}
