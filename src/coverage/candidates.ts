import type { FileStat } from '../files/walk.ts';
import { groupOf } from './map.ts';
import { formatBytes } from './judge.ts';

/**
 * Discovery that looks further: what lies outside every known folder, so
 * the checklist explains what the everything capture holds beyond the
 * items ("practice-docs/: 1 file, 14 KiB, changed 2 days ago"). Pure.
 *
 * Seam: `refs` are facts that point at paths from elsewhere (on Windows the
 * inventory's services, scheduled tasks, shares, IIS sites and ODBC DSNs;
 * none are supplied yet). A referenced folder is listed first, with why.
 */

export interface ReferenceFact {
  /** Relative to the target root. */
  path: string;
  /** Plain words: "the service EHRApp runs from it". */
  why: string;
}

export interface Candidate {
  folder: string;
  files: number;
  bytes: number;
  /** ms since the epoch of the newest file. */
  lastChange: number;
  large: boolean;
  recent: boolean;
  why: string[];
}

export const LARGE_BYTES = 1 << 20;
export const RECENT_MS = 30 * 86_400_000;

export function candidatesOutside(files: readonly FileStat[], known: (rel: string) => boolean, now: number, refs: readonly ReferenceFact[] = []): Candidate[] {
  const byFolder = new Map<string, Candidate>();
  for (const f of files) {
    if (known(f.path)) continue;
    const g = groupOf(f.path);
    let c = byFolder.get(g);
    if (!c) {
      c = { folder: g, files: 0, bytes: 0, lastChange: 0, large: false, recent: false, why: [] };
      byFolder.set(g, c);
    }
    c.files += 1;
    c.bytes += f.size;
    c.lastChange = Math.max(c.lastChange, f.mtimeMs);
  }
  for (const c of byFolder.values()) {
    c.large = c.bytes >= LARGE_BYTES;
    c.recent = now - c.lastChange < RECENT_MS;
    const dir = c.folder === './' ? '' : c.folder;
    for (const r of refs) if (dir && (r.path === dir.slice(0, -1) || r.path.startsWith(dir))) c.why.push(r.why);
  }
  const score = (c: Candidate) => (c.why.length ? 4 : 0) + (c.large ? 2 : 0) + (c.recent ? 1 : 0);
  return [...byFolder.values()].sort((a, b) => score(b) - score(a) || b.bytes - a.bytes || (a.folder < b.folder ? -1 : 1));
}

/** One line for the checklist: "practice-docs/ 1 file, 14 KiB, changed 2026-11-30 (recent)". Pure. */
export function describeCandidate(c: Candidate): string {
  const tags = [c.large ? 'large' : '', c.recent ? 'recently changed' : '', ...c.why].filter(Boolean);
  return `${c.folder} ${c.files} file${c.files === 1 ? '' : 's'}, ${formatBytes(c.bytes)}, changed ${new Date(c.lastChange).toISOString().slice(0, 10)}${tags.length ? ` (${tags.join('; ')})` : ''}`;
}
