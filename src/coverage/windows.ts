import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ScopeOfDestruction, Volume } from '../core/types.ts';
import type { FileStat } from '../files/walk.ts';
import type { DriverScope } from '../infra/driver.ts';
import { manifestEntriesFromOutput, type InventoryData, type ManifestData } from '../machines/windows/results.ts';
import type { ScriptOutput } from '../machines/windows/scripts.ts';
import type { RunContext } from '../run/context.ts';
import { nestedVolumes } from './scope.ts';
import type { Listing } from './volume.ts';

/**
 * Coverage on a Windows target (docs/coverage.md, "Windows"): the scope of
 * destruction as volumes keyed relative to the target root, and the listing
 * of one volume by Rubicon's manifest script with `hash: false` (stat only;
 * one journaled, idempotent step per volume and stage; the built-in
 * exclusions pruned there, the rest listed and counted as excluded).
 *
 * Volume keys (Volume.path): '.' is the target root, a relative path is a
 * folder under it ('/'-separated), and a volume on another drive than the
 * root is `X:` (or `X:/folder`): a key no folder item can have (a Windows
 * name cannot hold ':'), so its files are never mistaken for a folder
 * item's. The root's own drive outside the root is not mapped (as on Linux,
 * where only what lies under target.root is the target's).
 *
 * Contracts: the scope functions and listingOf are pure; listWindowsVolume
 * runs the manifest script read-only. Nothing is skipped silently: reparse
 * points and special files are counted (map.skipped) and named in a note; a
 * folder the script could not list is an entry of the map (`dir/`) that no
 * artifact can hold, so the gate refuses until it is readable or excluded.
 */

/** Get-Volume's DriveType of a local fixed disk: the text the Storage module shows, or MSFT_Volume's code 3 (learn.microsoft.com, MSFT_Volume class: 0 Unknown, 1 Invalid Root Path, 2 Removable, 3 Fixed, 4 Remote, 5 CD-ROM, 6 RAM Disk). */
const FIXED = new Set(['fixed', '3']);
/** File systems that hold data on a Windows volume (not CDFS/UDF media). */
const DATA_FS = new Set(['ntfs', 'refs', 'fat', 'fat32', 'exfat', 'csvfs']);

/** What the scope needs of an inventory volume (the `volumes` section's items, InventoryData). */
export type InventoryVolume = Pick<NonNullable<InventoryData['sections']['volumes']>['items'][number], 'driveLetter' | 'driveType' | 'fileSystem'> & {
  /** Get-Volume's FileSystemLabel, when the inventory gave it (the Azure temporary disk is told by it). */
  label?: string | null;
};

/**
 * The label Azure gives the temporary (resource) disk of a Windows VM. Its
 * contents do not survive the VM being replaced (Microsoft: "Azure VM
 * temporary disk": data on it may be lost on redeploy, resize or when the
 * host changes; it holds DATALOSS_WARNING_README.txt).
 */
export const AZURE_TEMPORARY_DISK_LABEL = 'Temporary Storage';

/** Whether an inventory volume is the Azure temporary disk, by its label (no case). Pure. */
export function isAzureTemporaryDisk(v: Pick<InventoryVolume, 'label'>): boolean {
  return (v.label ?? '').trim().toLowerCase() === AZURE_TEMPORARY_DISK_LABEL.toLowerCase();
}

const isWindowsAbs = (p: string) => /^[A-Za-z]:([\\/]|$)/.test(p) || p.startsWith('\\\\');

/** `\\?\D:\x` → `D:\x` (the long-path prefix names the same place). Pure. */
export function stripLongPrefix(p: string): string {
  return /^\\\\\?\\[A-Za-z]:/.test(p) ? p.slice(4) : p;
}

/**
 * The volume key of `abs` for a target rooted at `root` (see above), or
 * undefined when `abs` lies on the root's own drive outside the root.
 * Windows paths compare without case and with either slash. Pure.
 */
export function windowsVolumeKey(root: string, abs: string): string | undefined {
  if (!isWindowsAbs(stripLongPrefix(root))) {
    // The PowerShell stand-in on Linux: POSIX paths, compared exactly.
    const rel = path.posix.relative(root, abs);
    if (rel === '') return '.';
    if (rel.startsWith('..') || path.posix.isAbsolute(rel)) return undefined;
    return rel;
  }
  const norm = (p: string) => stripLongPrefix(p).replace(/\//g, '\\').replace(/\\+$/, '');
  const r = norm(root);
  const a = norm(abs);
  if (a.toLowerCase() === r.toLowerCase()) return '.';
  if (a.toLowerCase().startsWith(`${r.toLowerCase()}\\`)) return a.slice(r.length + 1).split('\\').filter(Boolean).join('/');
  const drive = /^([A-Za-z]):(.*)$/.exec(a);
  if (!drive) return undefined;
  const letter = drive[1]!.toUpperCase();
  if (/^([A-Za-z]):/.exec(r)?.[1]?.toUpperCase() === letter) return undefined;
  const rest = drive[2]!.split('\\').filter(Boolean).join('/');
  return rest ? `${letter}:/${rest}` : `${letter}:`;
}

/** The folder on the server a volume key names (the inverse of windowsVolumeKey). Pure. */
export function windowsVolumePath(root: string, key: string): string {
  const drive = /^([A-Z]):(?:\/(.*))?$/.exec(key);
  if (drive) return `${drive[1]}:\\${(drive[2] ?? '').split('/').join('\\')}`;
  if (key === '.' || key === '') return root;
  if (!isWindowsAbs(stripLongPrefix(root))) return [root.replace(/\/+$/, ''), ...key.split('/')].join('/');
  return [root.replace(/\//g, '\\').replace(/\\+$/, ''), ...key.split('/')].join('\\');
}

/** Local fixed data volumes from the inventory's `volumes` section, as `X:\`, sorted. Pure. */
export function fixedVolumes(volumes: readonly InventoryVolume[] | undefined): string[] {
  const out = new Set<string>();
  for (const v of volumes ?? []) {
    if (!/^[A-Za-z]$/.test(v.driveLetter)) continue;
    if (!FIXED.has(String(v.driveType ?? '').toLowerCase())) continue;
    // No file system (RAW): no files to lose, and nothing to list.
    if (v.fileSystem === null || !DATA_FS.has(v.fileSystem.toLowerCase())) continue;
    out.add(`${v.driveLetter.toUpperCase()}:\\`);
  }
  return [...out].sort();
}

/**
 * What a manual reinstall of a Windows server destroys: `infra.destroys`
 * (drive letters or folders), or by default the target root and every
 * local fixed data volume the inventory reports (network drives, removable
 * media and CD-ROMs survive). A volume that holds the target root counts as
 * the root. `notes`: what is not mapped and why. Pure.
 */
export function windowsManualScope(o: { root: string; target: string; destroys?: readonly string[]; volumes?: readonly InventoryVolume[] }): DriverScope & { notes: string[] } {
  const notes: string[] = [];
  const points = o.destroys ?? [o.root, ...fixedVolumes(o.volumes)];
  const volumes: Volume[] = [];
  for (const p of points) {
    let key = windowsVolumeKey(o.root, p);
    if (key === undefined) {
      // The root's own drive (D:\ for a root D:\Estate): only the root is the target's.
      const holdsRoot = windowsVolumeKey(p, o.root) !== undefined;
      if (!holdsRoot) {
        notes.push(`${p} lies outside the target root ${o.root} on its own drive: it is not mapped; set target.root to the drive (e.g. ${o.root.slice(0, 3)}) to map it`);
        continue;
      }
      if (o.destroys === undefined) notes.push(`the reinstall wipes ${p}; only the target root ${o.root} on it is mapped (set target.root to ${p} to map the whole volume)`);
      key = '.';
    }
    if (volumes.some((v) => v.path === key)) continue;
    volumes.push({ path: key, label: key === '.' ? `the volume of ${o.root} on ${o.target}` : `the volume ${windowsVolumePath(o.root, key)} on ${o.target}`, fate: 'destroyed', capture: true });
  }
  return { os: 'windows', volumes, notes };
}

/**
 * Azure: the OS disk (C:) is replaced; the temporary disk (labelled
 * `Temporary Storage`) is wiped with the VM, so it is mapped and must be
 * held or excluded like the OS disk; every other local fixed volume the
 * inventory reports is a data disk, detached and kept (not mapped unless
 * coverage.alsoCapture names its key, e.g. `D:`). Without the inventory the
 * driver's own list stands (data disks without a drive letter). Pure.
 */
export function windowsAzureScope(root: string, declared: DriverScope, volumes: readonly InventoryVolume[] | undefined): DriverScope {
  const fixed = fixedVolumes(volumes);
  if (fixed.length === 0) return declared;
  const os = windowsVolumeKey(root, 'C:\\') ?? '.';
  const temporary = new Set((volumes ?? []).filter(isAzureTemporaryDisk).map((v) => `${v.driveLetter.toUpperCase()}:\\`));
  const out: Volume[] = [{ path: os, label: 'the OS disk (C:)', fate: 'destroyed', capture: true }];
  for (const f of fixed) {
    const key = windowsVolumeKey(root, f);
    if (key === undefined || key === os) continue;
    // The temporary disk is not a data disk: the replaced VM gets a new, empty one. What someone left there is lost.
    if (temporary.has(f)) out.push({ path: key, label: `the Azure temporary disk ${f} (wiped: the new VM gets an empty one)`, fate: 'destroyed', capture: true });
    else out.push({ path: key, label: `the data disk ${f} (detached and kept)`, fate: 'kept', capture: false });
  }
  return { os: 'windows', volumes: out };
}

/**
 * Exclusions of a Windows scope: the runbook's paths with either slash
 * become '/'-separated and compare without case (as NTFS names do), and the
 * built-in list applies at every drive volume (`X:/Windows`), not only the
 * root. Pure.
 */
export function windowsExclusions(scope: ScopeOfDestruction): ScopeOfDestruction['exclusions'] {
  const out: ScopeOfDestruction['exclusions'] = [];
  for (const e of scope.exclusions) {
    const p = e.path.replace(/\\/g, '/').replace(/\/+$/, '');
    out.push({ ...e, path: p, caseInsensitive: true });
    if (e.source === 'built-in') {
      for (const v of scope.volumes) if (/^[A-Z]:$/.test(v.path)) out.push({ ...e, path: `${v.path}/${p}`, caseInsensitive: true });
    }
  }
  return out;
}

/**
 * What the manifest script is told to leave out of a volume's listing
 * (relative to the volume): other volumes inside it and the built-in list
 * (the OS's own folders: C:\Windows alone holds some 100,000 files). The
 * runbook's and Rubicon's exclusions are listed and counted as excluded, as
 * on Linux, so the gate and the report say how much they leave out. Pure.
 */
export function windowsPrune(volume: string, scope: ScopeOfDestruction): string[] {
  const out = new Set<string>(nestedVolumes(volume, scope.volumes).filter((n) => !/^[A-Z]:/.test(n)));
  for (const e of scope.exclusions) {
    if (e.except?.length || e.source !== 'built-in') continue;
    // Given as written: a folder spelled otherwise on disk is listed and then excluded per file (exclusionOf, without case).
    if (volume === '.') {
      if (!/^[A-Z]:/.test(e.path)) out.add(e.path);
    } else if (e.path.toLowerCase().startsWith(`${volume.toLowerCase()}/`)) out.add(e.path.slice(volume.length + 1));
  }
  return [...out].sort();
}

export interface WindowsListing extends Listing {
  unheld: string[];
  notListed: { path: string; why: string }[];
}

/** A volume's listing from the manifest script's records (relative to the volume) → paths relative to the target root. Pure. */
export function listingOf(volume: string, output: ScriptOutput<ManifestData>): WindowsListing {
  const at = (p: string) => (volume === '.' ? p : `${volume}/${p}`);
  const { entries, problems } = manifestEntriesFromOutput(output);
  const files: FileStat[] = entries.map((e) => ({ path: at(e.path), size: e.size, mtimeMs: e.mtimeMs, mode: e.mode }));
  const unheld: string[] = [];
  const notListed: { path: string; why: string }[] = [];
  for (const p of problems) {
    if (p.kind === 'file') files.push({ path: at(p.path), size: p.size, mtimeMs: p.mtimeMs, mode: p.mode });
    else if (p.kind === 'unreadable') {
      files.push({ path: at(p.path), size: p.size, mtimeMs: p.mtimeMs, mode: 0o444 });
      unheld.push(at(p.path));
    } else if (p.kind === 'dir-unreadable') {
      // Its files are unknown: the folder itself stands in the map, held by nothing.
      files.push({ path: `${at(p.path)}/`, size: 0, mtimeMs: 0, mode: 0 });
      unheld.push(`${at(p.path)}/`);
      notListed.push({ path: `${at(p.path)}/`, why: `cannot be listed (${p.code})` });
    } else if (p.kind === 'reparse') notListed.push({ path: at(p.path), why: `a reparse point (${p.linkType}), not followed` });
    else notListed.push({ path: at(p.path), why: `a special file (${p.type})` });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, skipped: notListed.filter((n) => !n.path.endsWith('/')).length, unheld, notListed };
}

/** Step id of a volume's listing: one per volume, stage and resume. */
export function listingStepId(stage: string, volume: string, resumes: number): string {
  return `coverage/${stage}/list-${createHash('sha256').update(volume).digest('hex').slice(0, 12)}-${resumes}`;
}

/**
 * Lists one volume of the scope on a Windows target: the manifest script
 * with `hash: false` (stat only) over the volume's folder, minus what the
 * scope prunes. Read-only; one journaled idempotent step.
 */
export async function listWindowsVolume(ctx: RunContext, volume: string, scope: ScopeOfDestruction, stage: string): Promise<WindowsListing> {
  const dir = windowsVolumePath(ctx.runbook.target.root, volume);
  const exclude = windowsPrune(volume, scope);
  const r = await ctx.steps.runScript<ManifestData>(
    ctx.target,
    { id: listingStepId(stage, volume, ctx.state().resumes), idempotent: true },
    'manifest',
    { root: dir, hash: false, ...(exclude.length ? { exclude } : {}) },
    `manifest script on ${ctx.target.name} (coverage listing of ${dir}, stat only)`,
  );
  return listingOf(volume, r.output);
}
