import { lstatSync, readdirSync, statSync } from 'node:fs';
import type { Dirent, Stats } from 'node:fs';
import { join } from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, isExcluded, normalizeExclude } from '../core/paths.ts';

/**
 * Walks a folder tree and yields its regular files, read-only.
 *
 * Guarantees:
 * - Order is deterministic: globally sorted by relative path (comparePaths),
 *   produced depth-first by sorting each folder's names with folders keyed as
 *   `name/`, so no full-tree sort is needed.
 * - Regular files only. Symlinks are never followed; they, sockets, FIFOs and
 *   devices are reported through `onSkip` (and by walkAll) instead.
 * - A file or folder that disappears during the walk is reported as
 *   'vanished', not an error. A folder that cannot be read is an error
 *   (CAPTURE_FAILED naming it): silently leaving data out is never acceptable.
 * - `mode` is the permission bits only (mode & 0o7777).
 *
 * Metadata calls are synchronous on purpose: on a local disk a stat from the
 * page cache costs a few microseconds, while a promise round-trip through the
 * thread pool costs ten times that, and the drift scan is all stats. The walk
 * yields to the event loop between folders and every WALK_YIELD_EVERY files.
 */
export interface FileStat {
  /** Relative to the walk root, POSIX separators. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
}

export type SkippedKind = 'symlink' | 'socket' | 'fifo' | 'block-device' | 'char-device' | 'unknown' | 'vanished' | 'bad-name';

export interface SkippedEntry {
  path: string;
  kind: SkippedKind;
}

export interface WalkOptions {
  /** Relative paths (files or folders) to leave out; a folder excludes everything under it. */
  exclude?: string[];
  /** Called for every entry that is not a regular file or folder, or that vanished. */
  onSkip?: (entry: SkippedEntry) => void;
}

const WALK_YIELD_EVERY = 2000;

interface Listed {
  name: string;
  rel: string;
  dir: boolean;
  /** Sort key: folders as `name/` so the depth-first order is the global path order. */
  key: string;
}

export async function* walk(root: string, options: WalkOptions = {}): AsyncGenerator<FileStat> {
  const excludes = normalizeExcludes(options.exclude ?? []);
  const onSkip = options.onSkip ?? (() => undefined);
  let rootStat: Stats;
  try {
    rootStat = statSync(root);
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `folder ${root} cannot be read (${codeOf(e)}); check that it exists and is readable`, { cause: e });
  }
  if (!rootStat.isDirectory()) {
    throw new RubiconError('CAPTURE_FAILED', `${root} is not a folder; a file-tree capture needs a folder`);
  }

  const stack: { items: Listed[]; i: number }[] = [];
  const first = listDir(root, '', excludes, onSkip);
  if (first) stack.push({ items: first, i: 0 });
  let sinceYield = 0;
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as { items: Listed[]; i: number };
    if (frame.i >= frame.items.length) {
      stack.pop();
      continue;
    }
    const item = frame.items[frame.i++] as Listed;
    if (item.dir) {
      const children = listDir(root, item.rel, excludes, onSkip);
      if (children) stack.push({ items: children, i: 0 });
      await yieldToLoop();
      sinceYield = 0;
      continue;
    }
    const st = lstatSync(join(root, item.rel), { throwIfNoEntry: false });
    if (st === undefined) {
      onSkip({ path: item.rel, kind: item.name.includes('\uFFFD') ? 'bad-name' : 'vanished' });
      continue;
    }
    if (!st.isFile()) {
      // It changed type between readdir and lstat.
      if (st.isDirectory()) {
        const children = listDir(root, item.rel, excludes, onSkip);
        if (children) stack.push({ items: children, i: 0 });
      } else onSkip({ path: item.rel, kind: kindOf(st) });
      continue;
    }
    yield { path: item.rel, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode & 0o7777 };
    if (++sinceYield >= WALK_YIELD_EVERY) {
      await yieldToLoop();
      sinceYield = 0;
    }
  }
}

/** The whole walk as arrays: files and skipped entries, each in path order. */
export async function walkAll(root: string, options: { exclude?: string[] } = {}): Promise<{ files: FileStat[]; skipped: SkippedEntry[] }> {
  const files: FileStat[] = [];
  const skipped: SkippedEntry[] = [];
  for await (const f of walk(root, { exclude: options.exclude, onSkip: (s) => skipped.push(s) })) files.push(f);
  return { files, skipped: skipped.sort((a, b) => comparePaths(a.path, b.path)) };
}

export function normalizeExcludes(exclude: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const entry of exclude) {
    const n = normalizeExclude(entry);
    if (n === undefined) {
      throw new RubiconError(
        'ARGUMENTS_INVALID',
        `exclude entry '${entry}' is not a relative path inside the folder; use a path like 'logs' or 'cache/tmp' (no '..', not absolute, not the folder itself)`,
      );
    }
    out.add(n);
  }
  return out;
}

function listDir(root: string, rel: string, excludes: ReadonlySet<string>, onSkip: (e: SkippedEntry) => void): Listed[] | undefined {
  let dirents: Dirent[];
  try {
    dirents = readdirSync(rel === '' ? root : join(root, rel), { withFileTypes: true });
  } catch (e) {
    const code = codeOf(e);
    if (code === 'ENOENT' && rel !== '') {
      onSkip({ path: rel, kind: 'vanished' });
      return undefined;
    }
    throw new RubiconError(
      'CAPTURE_FAILED',
      `folder ${rel === '' ? root : join(root, rel)} cannot be read (${code}); grant read access or list '${rel}' under exclude with a reason`,
      { cause: e },
    );
  }
  const items: Listed[] = [];
  for (const d of dirents) {
    const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
    if (isExcluded(childRel, excludes)) continue;
    let dir = d.isDirectory();
    let file = d.isFile();
    if (!dir && !file && !d.isSymbolicLink() && !d.isFIFO() && !d.isSocket() && !d.isBlockDevice() && !d.isCharacterDevice()) {
      // DT_UNKNOWN (some filesystems): ask lstat.
      const st = lstatSync(join(root, childRel), { throwIfNoEntry: false });
      if (st === undefined) {
        onSkip({ path: childRel, kind: 'vanished' });
        continue;
      }
      dir = st.isDirectory();
      file = st.isFile();
      if (!dir && !file) {
        onSkip({ path: childRel, kind: kindOf(st) });
        continue;
      }
    } else if (!dir && !file) {
      onSkip({ path: childRel, kind: direntKind(d) });
      continue;
    }
    items.push({ name: d.name, rel: childRel, dir, key: dir ? `${d.name}/` : d.name });
  }
  items.sort((a, b) => comparePaths(a.key, b.key));
  return items;
}

function direntKind(d: Dirent): SkippedKind {
  if (d.isSymbolicLink()) return 'symlink';
  if (d.isSocket()) return 'socket';
  if (d.isFIFO()) return 'fifo';
  if (d.isBlockDevice()) return 'block-device';
  if (d.isCharacterDevice()) return 'char-device';
  return 'unknown';
}

function kindOf(st: Stats): SkippedKind {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isSocket()) return 'socket';
  if (st.isFIFO()) return 'fifo';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isCharacterDevice()) return 'char-device';
  return 'unknown';
}

function codeOf(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
