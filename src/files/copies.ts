import { runBounded } from '../core/bounded.ts';
import type { CopyStatus, Manifest } from '../core/types.ts';
import type { VaultReader } from '../vaults/vault.ts';
import { manifestHashOf } from './manifest.ts';

/**
 * Grades one artifact's copy in one vault by reading the manifest object and
 * every object it lists (pgBackRest-style: never throws for a bad copy).
 * Read-only. The worst status wins:
 *   missing > checksum-mismatch > size-invalid > error > ok.
 * `detail` names the vault and the first bad file paths with their problem
 * (paths and hashes, never content).
 */
export const COPY_STATUS_SEVERITY: Record<CopyStatus, number> = {
  ok: 0,
  error: 1,
  'size-invalid': 2,
  'checksum-mismatch': 3,
  missing: 4,
};

const SHOW_PATHS = 5;

export async function checkCopy(
  vault: VaultReader,
  manifest: Manifest,
  manifestHash: string,
  options: { parallel?: number } = {},
): Promise<{ status: CopyStatus; detail?: string }> {
  const name = vault.info.name;
  if (manifestHashOf(manifest) !== manifestHash) {
    return {
      status: 'error',
      detail: `the manifest given for '${manifest.artifactId}' does not hash to ${manifestHash}; the caller passed the wrong manifest`,
    };
  }
  const m = await vault.check(manifestHash).catch((e: unknown) => ({ status: 'error' as const, detail: String(e) }));
  if (m.status !== 'ok') {
    return { status: m.status, detail: `vault '${name}': manifest ${manifestHash} of '${manifest.artifactId}': ${m.status}${m.detail ? ` (${m.detail})` : ''}` };
  }

  // Each distinct object once; a bad object names every path that uses it.
  const bySha = new Map<string, { size: number; paths: string[] }>();
  for (const e of manifest.entries) {
    const o = bySha.get(e.sha256);
    if (o) o.paths.push(e.path);
    else bySha.set(e.sha256, { size: e.size, paths: [e.path] });
  }
  const objects = [...bySha.entries()];
  const bad: { paths: string[]; status: CopyStatus }[] = [];
  await runBounded(objects, options.parallel ?? 4, async ([sha, o]) => {
    const r = await vault.check(sha, o.size).catch(() => ({ status: 'error' as const }));
    if (r.status !== 'ok') bad.push({ paths: o.paths, status: r.status });
  });
  if (bad.length === 0) return { status: 'ok' };

  let worst: CopyStatus = 'ok';
  for (const b of bad) if (COPY_STATUS_SEVERITY[b.status] > COPY_STATUS_SEVERITY[worst]) worst = b.status;
  const lines = bad
    .flatMap((b) => b.paths.map((p) => ({ p, status: b.status })))
    .sort((a, b) => (a.p < b.p ? -1 : a.p > b.p ? 1 : 0));
  const shown = lines
    .slice(0, SHOW_PATHS)
    .map((l) => `${l.p} (${l.status})`)
    .join(', ');
  const more = lines.length > SHOW_PATHS ? ` and ${lines.length - SHOW_PATHS} more` : '';
  return {
    status: worst,
    detail: `vault '${name}': ${lines.length} of ${manifest.entries.length} files of '${manifest.artifactId}' are bad: ${shown}${more}`,
  };
}
