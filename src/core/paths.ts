/**
 * Relative paths inside a captured item: POSIX separators, no `.`/`..`
 * segments, never absolute. Pure functions; shared by walk, manifests,
 * drift, restore and the vaults so all of them agree on order and on what
 * is safe. Lives in core/ because files/ and vaults/ both need it and
 * vaults/ must not import files/.
 */

/**
 * The one order used everywhere (walk output, manifest entries, drift
 * lists): plain UTF-16 code-unit comparison of the full relative path.
 * Deterministic on every platform and locale.
 */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Why `p` is not a safe relative path, or undefined when it is. Safe means:
 * non-empty, not absolute, POSIX separators, no empty / `.` / `..` segment,
 * no NUL. Restore relies on this to never write outside its destination.
 */
/** Anything that could make a path unsafe; paths without any of it are safe (the fast path of relativePathProblem). */
const MAYBE_UNSAFE = /\0|^\/|^[A-Za-z]:|\/\/|\/$|(^|\/)\.\.?(\/|$)/;

export function relativePathProblem(p: string): string | undefined {
  if (p.length === 0) return 'is empty';
  if (!MAYBE_UNSAFE.test(p)) return undefined;
  if (p.includes('\0')) return 'contains a NUL character';
  if (p.startsWith('/')) return 'is absolute (starts with "/")';
  if (/^[A-Za-z]:/.test(p)) return 'is absolute (has a drive letter)';
  for (const segment of p.split('/')) {
    if (segment === '') return 'has an empty segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
  }
  return undefined;
}

export function isSafeRelativePath(p: string): boolean {
  return relativePathProblem(p) === undefined;
}

/**
 * Normalises exclude patterns (relative paths of files or folders): strips a
 * leading `./` and trailing `/`, turns `\` into `/`. Returns undefined for an
 * entry that names the root itself or escapes it, so callers can reject it.
 */
export function normalizeExclude(entry: string): string | undefined {
  let e = entry.replaceAll('\\', '/');
  while (e.startsWith('./')) e = e.slice(2);
  while (e.endsWith('/')) e = e.slice(0, -1);
  return isSafeRelativePath(e) ? e : undefined;
}

/** True when `rel` is one of `excludes` or lies inside one of them. */
export function isExcluded(rel: string, excludes: ReadonlySet<string>): boolean {
  if (excludes.size === 0) return false;
  if (excludes.has(rel)) return true;
  let i = rel.indexOf('/');
  while (i !== -1) {
    if (excludes.has(rel.slice(0, i))) return true;
    i = rel.indexOf('/', i + 1);
  }
  return false;
}

/** A lower-case hex SHA-256 digest, the key of every vault object. */
export function isSha256Hex(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}
