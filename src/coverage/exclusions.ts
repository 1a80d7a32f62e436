import path from 'node:path';
import type { CoverageExclusion, ScopeOfDestruction } from '../core/types.ts';

/**
 * The built-in exclusion lists: what the new OS lays down itself, so a
 * capture of it would restore nothing anyone needs (and could break the new
 * system). Shown in the plan and the report; anything else is excluded only
 * by a runbook entry with a reason and who decided it (coverage.exclude).
 *
 * Contract: pure data and pure functions. Paths are relative to a volume
 * root (POSIX). Linux paths are absolute on the machine and apply only to
 * the part of them inside the target root (a target rooted at /srv/estate
 * has no /usr of its own). Design note: docs/coverage.md.
 */

const SANDBOX: CoverageExclusion[] = [
  { path: 'os-release', source: 'built-in', reason: 'the sandbox crossing writes it: it names the new OS' },
];

/**
 * Linux: what a reinstall lays down (the package manager's territory) and
 * what is never data (pseudo and temporary filesystems). Deliberately NOT
 * excluded: /etc (ssh host keys, fstab, crontabs, units, application
 * configuration and certificates live there and no reinstall recreates
 * them), /usr/local and /opt (installed by hand), /var/lib except the
 * package databases, /var/log, /home, /root, /srv: the everything capture
 * holds them, and landing restores only what the new OS did not lay down.
 */
const LINUX_ABSOLUTE: { path: string; reason: string; except?: string[] }[] = [
  { path: '/usr', reason: 'installed by the new OS\'s packages', except: ['/usr/local'] },
  { path: '/bin', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/sbin', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/lib', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/lib32', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/lib64', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/libx32', reason: 'installed by the new OS\'s packages (or a link into /usr)' },
  { path: '/boot', reason: 'the new OS\'s kernel and boot loader' },
  { path: '/var/lib/dpkg', reason: 'the package database of the old OS (the new OS writes its own)' },
  { path: '/var/lib/apt', reason: 'the package lists of the old OS' },
  { path: '/var/lib/rpm', reason: 'the package database of the old OS (the new OS writes its own)' },
  { path: '/var/lib/dnf', reason: 'the package manager state of the old OS' },
  { path: '/var/cache', reason: 'caches: by definition rebuilt from elsewhere (FHS 5.5)' },
  { path: '/tmp', reason: 'temporary files, cleared at boot' },
  { path: '/proc', reason: 'a view of the running kernel, not files' },
  { path: '/sys', reason: 'a view of the running kernel, not files' },
  { path: '/dev', reason: 'device nodes, made at boot' },
  { path: '/run', reason: 'runtime state, cleared at boot' },
  { path: '/lost+found', reason: 'fsck\'s own folder on every filesystem' },
  { path: '/swapfile', reason: 'swap space, not data' },
  { path: '/swap.img', reason: 'swap space, not data' },
];

/**
 * Windows (per volume; names compare without case): the OS itself and the
 * component store, paging, hibernation and swap files, restore points and
 * the recycle bin. Program Files, ProgramData and Users are NOT excluded:
 * applications and their data live there.
 */
const WINDOWS: CoverageExclusion[] = [
  { path: 'Windows', source: 'built-in', reason: 'the new Windows installs it', caseInsensitive: true },
  { path: 'Windows/WinSxS', source: 'built-in', reason: 'the component store: installed and serviced by the new Windows', caseInsensitive: true },
  { path: 'pagefile.sys', source: 'built-in', reason: 'the paging file, not data', caseInsensitive: true },
  { path: 'hiberfil.sys', source: 'built-in', reason: 'the hibernation file, not data', caseInsensitive: true },
  { path: 'swapfile.sys', source: 'built-in', reason: 'the swap file, not data', caseInsensitive: true },
  { path: 'System Volume Information', source: 'built-in', reason: 'restore points and the volume\'s own index, made by Windows', caseInsensitive: true },
  { path: 'DATALOSS_WARNING_README.txt', source: 'built-in', reason: 'Azure writes it on the temporary disk of every VM', caseInsensitive: true },
  { path: '$Recycle.Bin', source: 'built-in', reason: 'deleted files', caseInsensitive: true },
];

/**
 * The built-in list for an OS, relative to a target rooted at `targetRoot`
 * (absolute on the machine; only Linux needs it).
 */
export function builtInExclusions(os: ScopeOfDestruction['os'], targetRoot = '/'): CoverageExclusion[] {
  if (os === 'sandbox') return SANDBOX.map((e) => ({ ...e }));
  if (os === 'windows') return WINDOWS.map((e) => ({ ...e }));
  const out: CoverageExclusion[] = [];
  for (const e of LINUX_ABSOLUTE) {
    const rel = relativeInside(e.path, targetRoot);
    if (rel === undefined) continue;
    const except = (e.except ?? []).map((x) => relativeInside(x, targetRoot)).filter((x): x is string => x !== undefined);
    out.push({ path: rel, source: 'built-in', reason: e.reason, ...(except.length ? { except } : {}) });
  }
  return out;
}

/** `abs` relative to `root` (both absolute POSIX), or undefined when it is not strictly inside. */
export function relativeInside(abs: string, root: string): string | undefined {
  const rel = path.posix.relative(path.posix.resolve(root), path.posix.resolve(abs));
  if (rel === '' || rel.startsWith('..') || path.posix.isAbsolute(rel)) return undefined;
  return rel;
}

const norm = (p: string, ci: boolean | undefined) => (ci ? p.toLowerCase() : p);
const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** True when the exclusion names `rel` (a path relative to the target root). Pure. */
export function excludes(e: CoverageExclusion, rel: string): boolean {
  const p = norm(rel, e.caseInsensitive);
  if (!under(p, norm(e.path, e.caseInsensitive))) return false;
  return !(e.except ?? []).some((x) => under(p, norm(x, e.caseInsensitive)));
}

/** The first exclusion that names `rel`, or undefined. Pure. */
export function exclusionOf(list: readonly CoverageExclusion[], rel: string): CoverageExclusion | undefined {
  return list.find((e) => excludes(e, rel));
}

/**
 * The exclude list for a walk or a manifest of one volume (relative to the
 * volume): every exclusion that lies inside it and has no `except` (an
 * exclusion with exceptions is applied per file, after the walk, by
 * exclusionOf). Pure.
 */
export function walkExcludes(volume: string, list: readonly CoverageExclusion[]): string[] {
  const out: string[] = [];
  for (const e of list) {
    if (e.except?.length || e.caseInsensitive) continue;
    if (volume === '.') out.push(e.path);
    else if (e.path.startsWith(`${volume}/`)) out.push(e.path.slice(volume.length + 1));
  }
  return out;
}
