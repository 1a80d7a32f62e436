import { lstatSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import type { BigIntStats, Dirent, Stats } from 'node:fs';
import { join } from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, isExcluded, normalizeExclude } from '../core/paths.ts';

/**
 * Walks a folder tree, read-only, and yields what it holds: regular files,
 * folders, symlinks (never followed) and FIFOs, with their metadata.
 *
 * Guarantees:
 * - Order is deterministic: depth-first, each folder's names sorted with
 *   folders keyed as `name/` (`nodeKey`), so the files come out in global
 *   path order (comparePaths) and a folder comes right before its content.
 *   No full-tree sort, nothing held but the current path of folders.
 * - Sockets and devices are not captured: they are reported through
 *   `onSkip`. So are names that are not valid UTF-8 ('bad-name', the path
 *   given with the bad bytes escaped as `\xNN`), symlinks whose target is not
 *   valid UTF-8 ('bad-link-target'), and entries that vanished during the walk.
 *   A folder that cannot be read is an error (CAPTURE_FAILED naming it):
 *   silently leaving data out is never acceptable.
 * - `exact: true` takes bigint stats, so mtimes come with their nanoseconds
 *   (`mtimeNs`); `mtimeMs` is always the same number Node's plain stat gives.
 *
 * Metadata calls are synchronous on purpose: on a local disk a stat from the
 * page cache costs a few microseconds, while a promise round trip through the
 * thread pool costs ten times that, and the drift scan is all stats. Nodes
 * come in batches (one await per batch, not per file); the walk gives the
 * event loop a turn every few milliseconds.
 */
export interface FileStat {
  /** Relative to the walk root, POSIX separators. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
}

interface NodeMeta {
  path: string;
  /** mode & 0o7777: permission bits with setuid, setgid and sticky. */
  mode: number;
  mtimeMs: number;
  /** With `exact`: nanoseconds since the epoch, as a decimal integer string. */
  mtimeNs?: string;
  /** Undefined on Windows. */
  uid?: number;
  gid?: number;
}

export interface FileNode extends NodeMeta {
  type: 'file';
  size: number;
  /** Undefined when the filesystem's inode number is not a safe integer. */
  ino?: number;
  /** `${dev}:${ino}` when the file has more than one hard link, else undefined. */
  linkKey?: string;
}
export interface DirNode extends NodeMeta {
  type: 'dir';
}
export interface SymlinkNode extends NodeMeta {
  type: 'symlink';
  target: string;
}
export interface FifoNode extends NodeMeta {
  type: 'fifo';
}
export type TreeNode = FileNode | DirNode | SymlinkNode | FifoNode;

export type SkippedKind = 'symlink' | 'socket' | 'fifo' | 'block-device' | 'char-device' | 'unknown' | 'vanished' | 'bad-name' | 'bad-link-target';

export interface SkippedEntry {
  /** For 'bad-name': the path with every byte that is not valid UTF-8 written as `\xNN`. */
  path: string;
  kind: SkippedKind;
}

export interface WalkOptions {
  /** Relative paths (files or folders) to leave out; a folder excludes everything under it. */
  exclude?: string[];
  /** Called for every entry that is not captured (see SkippedKind). */
  onSkip?: (entry: SkippedEntry) => void;
}

export interface WalkTreeOptions extends WalkOptions {
  /**
   * Exact nanosecond mtimes (bigint stats): `true` for every node; `'nodes'`
   * for folders, symlinks and FIFOs only (a file's exact mtime then comes
   * from the reader's own fstat: bigint stats allocate ~15 BigInts each,
   * which showed as GC and peak memory on big trees). Default false.
   */
  exact?: boolean | 'nodes';
}

/** The sort key of a node: a folder sorts as `path/`, so it comes right before its content. */
export function nodeKey(path: string, type: string): string {
  return type === 'dir' ? `${path}/` : path;
}

const BATCH = 1024;
const YIELD_EVERY_MS = 8;

interface Listed {
  name: string;
  rel: string;
  kind: 'dir' | 'file' | 'symlink' | 'fifo' | 'other';
  /** Sort key: folders as `name/` so the depth-first order is the global path order. */
  key: string;
}

/** Metadata of the root folder itself (it must be a folder). */
export function statRoot(root: string, exact = false): Omit<NodeMeta, 'path'> {
  let st: Stats | BigIntStats;
  try {
    st = exact ? statSync(root, { bigint: true }) : statSync(root);
  } catch (e) {
    throw new RubiconError('CAPTURE_FAILED', `folder ${root} cannot be read (${codeOf(e)}); check that it exists and is readable`, { cause: e });
  }
  if (!st.isDirectory()) {
    throw new RubiconError('CAPTURE_FAILED', `${root} is not a folder; a file-tree capture needs a folder`);
  }
  const { path: _p, ...meta } = metaOf('', st);
  return meta;
}

/** Every node under `root` (not the root itself), in batches, in nodeKey order. */
export async function* walkTree(root: string, options: WalkTreeOptions = {}): AsyncGenerator<TreeNode[]> {
  const excludes = normalizeExcludes(options.exclude ?? []);
  const onSkip = options.onSkip ?? (() => undefined);
  const exact = options.exact === true;
  const exactNodes = options.exact === 'nodes';
  statRoot(root);
  const rootSlash = root.endsWith('/') ? root : `${root}/`;

  const stack: { items: Listed[]; i: number }[] = [];
  const first = listDir(root, '', excludes, onSkip);
  if (first) stack.push({ items: first, i: 0 });
  let batch: TreeNode[] = [];
  let lastYield = performance.now();
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as { items: Listed[]; i: number };
    if (frame.i >= frame.items.length) {
      stack.pop();
      continue;
    }
    const item = frame.items[frame.i++] as Listed;
    if (item.kind === 'other') continue; // reported by listDir
    const abs = `${rootSlash}${item.rel}`; // rel is already normal: no join (it showed in profiles)
    let st: Stats | BigIntStats | undefined;
    try {
      st = exact ? lstatSync(abs, { bigint: true, throwIfNoEntry: false }) : lstatSync(abs, { throwIfNoEntry: false });
    } catch (e) {
      throw new RubiconError('CAPTURE_FAILED', `cannot stat ${abs} (${codeOf(e)}); grant read access or exclude '${item.rel}' with a reason`, { cause: e });
    }
    if (st === undefined) {
      onSkip({ path: item.rel, kind: 'vanished' });
      continue;
    }
    // lstat is the truth (the type may have changed since readdir).
    if (st.isFile()) {
      // Built in one go (no spreads): this is the hot loop of drift and delta.
      const n = metaOf(item.rel, st) as FileNode;
      n.type = 'file';
      n.size = Number(st.size);
      const ino = Number(st.ino);
      if (Number.isSafeInteger(ino)) n.ino = ino;
      if (Number(st.nlink) > 1) n.linkKey = `${st.dev}:${st.ino}`;
      batch.push(n);
    } else if (exactNodes && !st.isFile() && (st = lstatSync(abs, { bigint: true, throwIfNoEntry: false })) === undefined) {
      onSkip({ path: item.rel, kind: 'vanished' });
    } else if (st.isDirectory()) {
      batch.push({ type: 'dir', ...metaOf(item.rel, st) });
      const children = listDir(root, item.rel, excludes, onSkip);
      if (children) stack.push({ items: children, i: 0 });
    } else if (st.isSymbolicLink()) {
      const target = readTarget(abs, item.rel, onSkip);
      if (target !== undefined) batch.push({ type: 'symlink', ...metaOf(item.rel, st), target });
    } else if (st.isFIFO()) {
      batch.push({ type: 'fifo', ...metaOf(item.rel, st) });
    } else {
      onSkip({ path: item.rel, kind: kindOf(st) });
    }
    if (batch.length >= BATCH) {
      yield batch;
      batch = [];
      if (performance.now() - lastYield >= YIELD_EVERY_MS) {
        await yieldToLoop();
        lastYield = performance.now();
      }
    }
  }
  if (batch.length > 0) yield batch;
}

/**
 * Regular files only, as before version 2: symlinks and FIFOs are reported
 * through `onSkip` like sockets and devices (discovery counts files with it).
 */
export async function* walk(root: string, options: WalkOptions = {}): AsyncGenerator<FileStat> {
  const onSkip = options.onSkip ?? (() => undefined);
  for await (const batch of walkTree(root, { exclude: options.exclude, onSkip })) {
    for (const n of batch) {
      if (n.type === 'file') yield { path: n.path, size: n.size, mtimeMs: n.mtimeMs, mode: n.mode };
      else if (n.type === 'symlink' || n.type === 'fifo') onSkip({ path: n.path, kind: n.type });
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

/** Milliseconds as Node's plain stat gives them (sec * 1e3 + nsec / 1e6), from nanoseconds since the epoch. */
export function msFromNs(ns: bigint | string): number {
  // The common case without BigInt arithmetic: a positive decimal string of more than 9 digits.
  if (typeof ns === 'string' && ns.length > 9 && ns.charCodeAt(0) !== 45) return Number(ns.slice(0, -9)) * 1e3 + Number(ns.slice(-9)) / 1e6;
  const n = typeof ns === 'bigint' ? ns : BigInt(ns);
  let sec = n / 1_000_000_000n;
  let nsec = n % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return Number(sec) * 1e3 + Number(nsec) / 1e6;
}

const onWindows = process.platform === 'win32';

function metaOf(path: string, st: Stats | BigIntStats): NodeMeta {
  const m: NodeMeta = { path, mode: Number(st.mode) & 0o7777, mtimeMs: 0 };
  if (typeof st.mtimeMs === 'bigint') {
    const ns = (st as BigIntStats).mtimeNs;
    m.mtimeMs = msFromNs(ns);
    m.mtimeNs = ns.toString();
  } else m.mtimeMs = st.mtimeMs;
  if (!onWindows) {
    m.uid = Number(st.uid);
    m.gid = Number(st.gid);
  }
  return m;
}

function readTarget(abs: string, rel: string, onSkip: (e: SkippedEntry) => void): string | undefined {
  try {
    const target = readlinkSync(abs);
    if (target.includes('\uFFFD') && !isUtf8(readlinkSync(abs, { encoding: 'buffer' }))) {
      onSkip({ path: rel, kind: 'bad-link-target' });
      return undefined;
    }
    return target;
  } catch (e) {
    if (codeOf(e) === 'ENOENT') {
      onSkip({ path: rel, kind: 'vanished' });
      return undefined;
    }
    throw new RubiconError('CAPTURE_FAILED', `cannot read the symlink ${abs} (${codeOf(e)}); grant read access or exclude '${rel}' with a reason`, { cause: e });
  }
}

function listDir(root: string, rel: string, excludes: ReadonlySet<string>, onSkip: (e: SkippedEntry) => void): Listed[] | undefined {
  const abs = rel === '' ? root : join(root, rel);
  let dirents: Dirent[];
  try {
    dirents = readdirSync(abs, { withFileTypes: true });
  } catch (e) {
    const code = codeOf(e);
    if (code === 'ENOENT' && rel !== '') {
      onSkip({ path: rel, kind: 'vanished' });
      return undefined;
    }
    throw new RubiconError('CAPTURE_FAILED', `folder ${abs} cannot be read (${code}); grant read access or list '${rel}' under exclude with a reason`, { cause: e });
  }
  let badNames: Set<string> | undefined;
  const items: Listed[] = [];
  for (const d of dirents) {
    if (d.name.includes('\uFFFD')) {
      // Maybe not valid UTF-8: such a name cannot be opened by its decoded form. Report it with its bytes.
      badNames ??= reportBadNames(abs, rel, onSkip);
      if (badNames.has(d.name)) continue;
    }
    const childRel = rel === '' ? d.name : `${rel}/${d.name}`;
    if (isExcluded(childRel, excludes)) continue;
    let kind: Listed['kind'];
    if (d.isDirectory()) kind = 'dir';
    else if (d.isFile()) kind = 'file';
    else if (d.isSymbolicLink()) kind = 'symlink';
    else if (d.isFIFO()) kind = 'fifo';
    else if (d.isSocket() || d.isBlockDevice() || d.isCharacterDevice()) {
      onSkip({ path: childRel, kind: direntKind(d) });
      kind = 'other';
    } else kind = 'file'; // DT_UNKNOWN (some filesystems): lstat decides
    if (kind !== 'other') items.push({ name: d.name, rel: childRel, kind, key: kind === 'dir' ? `${d.name}/` : d.name });
  }
  items.sort((a, b) => comparePaths(a.key, b.key));
  return items;
}

/** Reports the names in `abs` that are not valid UTF-8 (escaped) and returns their lossy decoded forms, to leave out. */
function reportBadNames(abs: string, rel: string, onSkip: (e: SkippedEntry) => void): Set<string> {
  const lossy = new Set<string>();
  let raw: Buffer[];
  try {
    raw = readdirSync(abs, { encoding: 'buffer' });
  } catch {
    return lossy;
  }
  for (const b of raw) {
    if (isUtf8(b)) continue;
    lossy.add(b.toString('utf8'));
    const escaped = escapeBytes(b);
    onSkip({ path: rel === '' ? escaped : `${rel}/${escaped}`, kind: 'bad-name' });
  }
  return lossy;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function isUtf8(b: Uint8Array): boolean {
  try {
    strictUtf8.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** Valid UTF-8 runs as text, every other byte as `\xNN` (and a backslash as `\x5c`, so the form is unambiguous). */
export function escapeBytes(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i] as number;
    const len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len > 0 && i + len <= b.length && isUtf8(b.subarray(i, i + len))) {
      out += c === 0x5c ? '\\x5c' : Buffer.from(b.subarray(i, i + len)).toString('utf8');
      i += len;
    } else {
      out += `\\x${c.toString(16).padStart(2, '0')}`;
      i++;
    }
  }
  return out;
}

function direntKind(d: Dirent): SkippedKind {
  if (d.isSocket()) return 'socket';
  if (d.isBlockDevice()) return 'block-device';
  if (d.isCharacterDevice()) return 'char-device';
  return 'unknown';
}

function kindOf(st: Stats | BigIntStats): SkippedKind {
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
