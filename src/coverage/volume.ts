import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { CoverageExclusion, Item, ManifestEntry, ScopeOfDestruction } from '../core/types.ts';
import { comparePaths } from '../core/paths.ts';
import { walk, type FileStat } from '../files/walk.ts';
import type { Machine } from '../machines/machine.ts';
import { listTree } from '../machines/tree.ts';
import { exclusionOf, walkExcludes } from './exclusions.ts';
import { inVolume, nestedVolumes } from './scope.ts';

/**
 * One volume of the scope on the target: which paths its everything
 * capture leaves out, and listing its files locally (walk) or on a remote
 * Linux target (find, stat only). Read-only.
 */

/** Files owned by database items (the live files, never byte-copied: the engine's backup holds them), by path relative to the target root. */
export function ownedPaths(items: readonly Item[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const i of items) {
    // A database that lives in a server, not in files under the target root (SQL Server: `mssql://SERVER/db`), owns no path here.
    if (i.kind !== 'database' || !i.discovered || !i.location || /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(i.location)) continue;
    for (const suffix of ['', '-wal', '-shm', '-journal']) out.set(`${i.location}${suffix}`, i.id);
  }
  return out;
}

export interface VolumePlan {
  volume: string;
  /** Paths relative to the volume that listing and capture prune (simple exclusions, other volumes, owned files). */
  prune: string[];
  /** Per file (relative to the target root): true when the everything capture leaves it out. */
  leftOut(rel: string): boolean;
}

/**
 * What the everything capture of `volume` leaves out: every exclusion in
 * force (the files stay in the coverage map as "excluded"), other volumes
 * inside it (they have their own capture), and the databases' live files
 * (their engines' backups hold them). Pure.
 */
export function planVolume(volume: string, scope: ScopeOfDestruction, items: readonly Item[]): VolumePlan {
  const owned = ownedPaths(items);
  const rel = (p: string) => (volume === '.' ? p : p.startsWith(`${volume}/`) ? p.slice(volume.length + 1) : undefined);
  const prune = [
    ...walkExcludes(volume, scope.exclusions),
    ...nestedVolumes(volume, scope.volumes),
    ...[...owned.keys()].map(rel).filter((x): x is string => x !== undefined),
  ];
  const nested = nestedVolumes(volume, scope.volumes).map((n) => inVolume(volume, n));
  return {
    volume,
    prune: [...new Set(prune)].sort(comparePaths),
    leftOut: (p) => owned.has(p) || exclusionOf(scope.exclusions, p) !== undefined || nested.some((n) => p === n || p.startsWith(`${n}/`)),
  };
}

/**
 * Expands exclusions with exceptions (Linux `usr` but not `usr/local`)
 * into plain paths a local walk can prune: every child of the excluded
 * folder except the ones leading to an exception. Reads folder listings.
 */
export function expandExcept(rootAbs: string, volume: string, exclusions: readonly CoverageExclusion[]): string[] {
  const out: string[] = [];
  for (const e of exclusions) {
    if (!e.except?.length || e.caseInsensitive) continue;
    const relToVol = volume === '.' ? e.path : e.path.startsWith(`${volume}/`) ? e.path.slice(volume.length + 1) : undefined;
    if (relToVol === undefined) continue;
    const keep = e.except.map((x) => (volume === '.' ? x : x.slice(volume.length + 1)));
    const visit = (dir: string): void => {
      let names: string[];
      try {
        names = readdirSync(path.join(rootAbs, dir));
      } catch {
        return;
      }
      for (const n of names) {
        const child = `${dir}/${n}`;
        if (keep.some((k) => k === child || k.startsWith(`${child}/`))) {
          if (!keep.includes(child)) visit(child);
        } else out.push(child);
      }
    };
    visit(relToVol);
  }
  return out;
}

export interface Listing {
  /** Relative to the target root. */
  files: FileStat[];
  skipped: number;
  /** Paths no artifact may be said to hold (a file that could not be read, a folder that could not be listed: `dir/`). */
  unheld?: string[];
  /** Entries that are not files the map can hold (reparse points, special files, unlistable folders), named for a note. */
  notListed?: { path: string; why: string }[];
}

/** Every regular file of a local volume (nothing left out but other volumes), sorted. */
export async function listLocal(rootAbs: string, volume: string, scope: ScopeOfDestruction): Promise<Listing> {
  let skipped = 0;
  const files: FileStat[] = [];
  const dir = volume === '.' ? rootAbs : path.join(rootAbs, volume);
  for await (const f of walk(dir, { exclude: nestedVolumes(volume, scope.volumes), onSkip: () => skipped++ })) files.push({ ...f, path: inVolume(volume, f.path) });
  return { files, skipped };
}

/** Every regular file of a volume on a remote Linux target (find -xdev, stat only), sorted. */
export async function listRemote(machine: Machine, targetRoot: string, volume: string, scope: ScopeOfDestruction, prune: string[] = nestedVolumes(volume, scope.volumes)): Promise<Listing & { missing: boolean }> {
  const dir = volume === '.' ? targetRoot : path.posix.join(targetRoot, volume);
  const l = await listTree(machine, dir, { exclude: prune });
  return { files: l.files.map((f) => ({ ...f, path: inVolume(volume, f.path) })), skipped: l.skipped.length, missing: l.missing };
}

/** Manifest entries of other artifacts, re-rooted at a volume: what a capture of the volume can reuse by size and mtime. Pure. */
export function reroot(volume: string, itemLocation: string, entries: readonly ManifestEntry[]): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  for (const e of entries) {
    const rel = itemLocation === '.' ? e.path : `${itemLocation}/${e.path}`;
    const inVol = volume === '.' ? rel : rel.startsWith(`${volume}/`) ? rel.slice(volume.length + 1) : undefined;
    if (inVol !== undefined) out.push({ ...e, path: inVol });
  }
  return out;
}
