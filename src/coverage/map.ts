import type { CoverageClass, CoverageExclusion, CoverageGroup, CoverageMap } from '../core/types.ts';

/**
 * The coverage map, pure: which files of the scope of destruction are held
 * by which artifacts (by path AND SHA-256), owned by which item, named by
 * which exclusion. The collector (collect.ts) gathers the facts; this module
 * only sorts them into classes; the judge (judge.ts) decides, from proofs
 * and copies, which class counts. Design note: docs/coverage.md.
 *
 * Contract: deterministic for the same input; never reads a file's content;
 * the map holds counts, sizes and at most MAX_GROUPS × MAX_FIRST paths per
 * class, so it stays small on a server with millions of files.
 */

export const MAX_GROUPS = 20;
export const MAX_FIRST = 5;

/** One file of the scope as the collector saw it. */
export interface MappedFile {
  /** Relative to the target root, POSIX. */
  path: string;
  size: number;
  /** Artifacts whose manifest has this path with this file's SHA-256 (vouched by size+mtime, or hashed). */
  holders: string[];
  /** The item that owns it (a database's file), when one does. */
  owner?: string;
  exclusion?: CoverageExclusion;
}

/** The folder a path is grouped under: its parent, cut to two levels (`ehr/X/`), `./` at the root. Pure. */
export function groupOf(rel: string): string {
  const parts = rel.split('/');
  parts.pop();
  if (parts.length === 0) return './';
  return `${parts.slice(0, 2).join('/')}/`;
}

function classKey(volume: string, f: MappedFile): string {
  const ex = f.exclusion ? `${f.exclusion.source}\u0001${f.exclusion.path}` : '';
  return [volume, [...f.holders].sort().join(','), f.owner ?? '', ex].join('\u0000');
}

interface Building {
  cls: CoverageClass;
  groups: Map<string, CoverageGroup>;
}

/** Sorts the files of each volume into classes. Pure. */
export function buildCoverageMap(input: {
  stage: CoverageMap['stage'];
  mappedAt: string;
  volumes: { path: string; files: MappedFile[]; skipped: number }[];
  hashed: number;
}): CoverageMap {
  const byKey = new Map<string, Building>();
  let files = 0;
  let bytes = 0;
  let skipped = 0;
  for (const v of input.volumes) {
    skipped += v.skipped;
    for (const f of v.files) {
      files += 1;
      bytes += f.size;
      const key = classKey(v.path, f);
      let b = byKey.get(key);
      if (!b) {
        b = {
          cls: {
            volume: v.path,
            holders: [...f.holders].sort(),
            ...(f.owner ? { owner: f.owner } : {}),
            ...(f.exclusion ? { exclusion: f.exclusion } : {}),
            files: 0,
            bytes: 0,
            groups: [],
          },
          groups: new Map(),
        };
        byKey.set(key, b);
      }
      b.cls.files += 1;
      b.cls.bytes += f.size;
      const g = groupOf(f.path);
      let grp = b.groups.get(g);
      if (!grp) {
        grp = { folder: g, files: 0, bytes: 0, first: [] };
        b.groups.set(g, grp);
      }
      grp.files += 1;
      grp.bytes += f.size;
      if (grp.first.length < MAX_FIRST) grp.first.push(f.path);
    }
  }
  const classes = [...byKey.values()].map((b) => ({ ...b.cls, groups: topGroups([...b.groups.values()]) }));
  classes.sort((a, b) => (a.volume < b.volume ? -1 : a.volume > b.volume ? 1 : b.bytes - a.bytes || a.files - b.files));
  return { stage: input.stage, mappedAt: input.mappedAt, volumes: input.volumes.map((v) => v.path), files, bytes, classes, skipped, hashed: input.hashed };
}

/** The largest groups first (ties: by name), at most MAX_GROUPS, each with its first paths sorted. Pure. */
export function topGroups(groups: CoverageGroup[]): CoverageGroup[] {
  return groups
    .map((g) => ({ ...g, first: [...g.first].sort().slice(0, MAX_FIRST) }))
    .sort((a, b) => b.bytes - a.bytes || b.files - a.files || (a.folder < b.folder ? -1 : 1))
    .slice(0, MAX_GROUPS);
}

/** Adds groups of several classes together (same folder → one group). Pure. */
export function mergeGroups(lists: CoverageGroup[][]): CoverageGroup[] {
  const m = new Map<string, CoverageGroup>();
  for (const list of lists) {
    for (const g of list) {
      const have = m.get(g.folder);
      if (!have) m.set(g.folder, { ...g, first: [...g.first] });
      else {
        have.files += g.files;
        have.bytes += g.bytes;
        have.first = [...have.first, ...g.first];
      }
    }
  }
  return topGroups([...m.values()]);
}
