import path from 'node:path';
import type { CoverageExclusion, CoverageMap, Item } from '../core/types.ts';
import { hashFile } from '../files/drift.ts';
import { currentArtifacts } from '../gate/current.ts';
import { hashFiles } from '../machines/tree.ts';
import type { RunContext } from '../run/context.ts';
import { manifest } from './everything.ts';
import { exclusionOf } from './exclusions.ts';
import { describeGroups, formatBytes } from './judge.ts';
import { buildCoverageMap, mergeGroups, type MappedFile } from './map.ts';
import { listLocal, listRemote, ownedPaths, type Listing } from './volume.ts';

/**
 * The coverage collector: lists every file of the scope of destruction
 * (local walk, or find on the remote target: stat only), and matches each
 * against the current folder and volume artifacts by path and SHA-256. A
 * file whose size and mtime equal a manifest entry is vouched for by that
 * entry (the drift rule); one whose size matches but mtime moved is hashed
 * where it is; anything else is not held by that artifact. Read-only on the
 * target; journals one `coverage.mapped` event with counts and first paths.
 */

export interface Entry {
  artifactId: string;
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** path (relative to the target root) → the current artifacts' entries for it. */
async function holderIndex(ctx: RunContext): Promise<Map<string, Entry[]>> {
  const s = ctx.state();
  const byId = new Map<string, Item>(s.items.map((i) => [i.id, i]));
  const index = new Map<string, Entry[]>();
  for (const a of currentArtifacts(s.artifacts)) {
    const item = byId.get(a.itemId);
    if (!item || (item.kind !== 'folder' && item.kind !== 'volume')) continue;
    let entries;
    try {
      entries = (await manifest(ctx, a)).entries;
    } catch {
      continue; // an unreadable manifest holds nothing; the artifact's proof says the rest
    }
    for (const e of entries) {
      const rel = item.location === '.' ? e.path : `${item.location}/${e.path}`;
      const list = index.get(rel);
      const v = { artifactId: a.id, size: e.size, mtimeMs: e.mtimeMs, sha256: e.sha256 };
      if (list) list.push(v);
      else index.set(rel, [v]);
    }
  }
  return index;
}

/**
 * One volume's listing against the holders: a file is held by an entry
 * with its path, size and mtime; same size and another mtime must be
 * hashed (`toHash`); an unheld path (unreadable, unlistable) is held by
 * nothing. Pure.
 */
export function mapListing(listing: Listing, index: ReadonlyMap<string, readonly Entry[]>, owned: ReadonlyMap<string, string>, exclusions: readonly CoverageExclusion[]): { files: MappedFile[]; toHash: { file: MappedFile; mtimeMs: number; candidates: Entry[] }[] } {
  const unheld = new Set(listing.unheld ?? []);
  const files: MappedFile[] = [];
  const toHash: { file: MappedFile; mtimeMs: number; candidates: Entry[] }[] = [];
  for (const f of listing.files) {
    // Unreadable (or a folder that could not be listed): no artifact can be said to hold it.
    const cands = unheld.has(f.path) ? [] : (index.get(f.path) ?? []);
    const holders = cands.filter((c) => c.size === f.size && c.mtimeMs === f.mtimeMs).map((c) => c.artifactId);
    const exclusion = exclusionOf(exclusions, f.path);
    const owner = owned.get(f.path);
    const m: MappedFile = { path: f.path, size: f.size, holders, ...(owner ? { owner } : {}), ...(exclusion ? { exclusion } : {}) };
    files.push(m);
    const unsure = cands.filter((c) => c.size === f.size && c.mtimeMs !== f.mtimeMs);
    if (unsure.length > 0) toHash.push({ file: m, mtimeMs: f.mtimeMs, candidates: [...unsure] });
  }
  return { files, toHash };
}

/** Maps the scope and records `coverage.mapped`. A run without a recorded scope records nothing (the gate refuses). */
export async function mapCoverage(ctx: RunContext, stage: CoverageMap['stage']): Promise<CoverageMap | undefined> {
  const s = ctx.state();
  const scope = s.scope;
  if (!scope) return undefined;
  const volumes = scope.volumes.filter((v) => v.capture && v.path !== '');
  const index = await holderIndex(ctx);
  const owned = ownedPaths(s.items);
  const mapped: { path: string; files: MappedFile[]; skipped: number }[] = [];
  const toHash: { file: MappedFile; mtimeMs: number; candidates: Entry[] }[] = [];
  const plane = ctx.remote?.plane;
  const notListed: { path: string; why: string }[] = [];
  for (const v of volumes) {
    const listing = plane?.listVolume
      ? await plane.listVolume(ctx, v.path, scope, stage)
      : ctx.remote
        ? await listRemote(ctx.target, ctx.runbook.target.root, v.path, scope)
        : await listLocal(ctx.localTarget!.resolve('.'), v.path, scope);
    notListed.push(...(listing.notListed ?? []));
    const m = mapListing(listing, index, owned, scope.exclusions);
    toHash.push(...m.toHash);
    mapped.push({ path: v.path, files: m.files, skipped: listing.skipped });
  }
  if (notListed.length > 0) {
    const named = notListed.slice(0, 10).map((n) => `${n.path}: ${n.why}`).join('; ');
    ctx.record({ type: 'note', level: 'warn', message: `coverage (${stage}): ${notListed.length} entr${notListed.length === 1 ? 'y is' : 'ies are'} not files the map can hold: ${named}${notListed.length > 10 ? ` and ${notListed.length - 10} more` : ''}` });
  }
  // Hash only where a file must be matched by content. A plane with its own listing (Windows) lists stat only and hashes no chosen set: such files stay held by nothing (fail closed).
  if (toHash.length > 0 && plane?.listVolume) {
    ctx.record({ type: 'note', level: 'warn', message: `coverage (${stage}): ${toHash.length} file(s) have the size an artifact recorded but another modification time, and are not hashed on a ${plane.os} target: they count as held by nothing (${toHash.slice(0, 5).map((h) => h.file.path).join(', ')})` });
    toHash.length = 0;
  }
  if (toHash.length > 0) {
    const hashes = new Map<string, string>();
    if (ctx.remote) {
      const got = await hashFiles(ctx.steps.onMachine, ctx.target, { id: `coverage/${stage}/hash-${s.resumes}`, idempotent: true }, ctx.runbook.target.root, toHash.map((h) => h.file.path));
      for (const [k, v] of got) hashes.set(k, v);
    } else {
      for (const h of toHash) {
        try {
          hashes.set(h.file.path, (await hashFile(path.join(ctx.localTarget!.resolve('.'), h.file.path))).sha256);
        } catch {
          // vanished or unreadable: held by nothing
        }
      }
    }
    for (const h of toHash) {
      const sha = hashes.get(h.file.path);
      for (const c of h.candidates) if (sha && c.sha256 === sha) h.file.holders.push(c.artifactId);
    }
  }
  const map = buildCoverageMap({ stage, mappedAt: ctx.now().toISOString(), volumes: mapped, hashed: toHash.length });
  ctx.record({ type: 'coverage.mapped', map });
  // Said early, before the freeze: what nothing holds now is what the gate will name unless it is captured or excluded.
  const bare = map.classes.filter((c) => c.holders.length === 0 && !c.owner && !c.exclusion);
  if (stage === 'capture' && bare.length > 0) {
    const n = bare.reduce((a, c) => a + c.files, 0);
    const bytes = bare.reduce((a, c) => a + c.bytes, 0);
    ctx.record({ type: 'note', level: 'warn', message: `coverage: ${n} file(s) (${formatBytes(bytes)}) in what the crossing destroys are held by no artifact and named by no exclusion: ${describeGroups(mergeGroups(bare.map((c) => c.groups)))}; the gate refuses them (coverage.complete) unless a capture holds them or coverage.exclude names them with a reason` });
  }
  return map;
}
