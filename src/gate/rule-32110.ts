import type { VaultInfo } from '../core/types.ts';

/**
 * The 3-2-1-1-0 rule computed from the vaults' facts, never asserted:
 *
 * - **3 copies**: the source (it still exists at the gate; the crossing is
 *   what destroys it) plus every vault holding a verified copy of the item's
 *   current artifacts, each vault counted once. So two vaults reach 3.
 * - **2 kinds of media** among the vault copies (the backups themselves
 *   must not share one failure mode): `disk` (a folder, a NAS share, an SSH
 *   vault host, a restic repository on one) and `object-storage` (Azure Blob).
 * - **1 off-site**: a vault in another place than the target's site. Only
 *   Azure Blob is off-site by construction (a region's data centre);
 *   `offTarget` is not off-site (a NAS in the same room is off the target).
 * - **1 immutable or offline**: a vault whose copies cannot be altered or
 *   deleted for the retention period, as the vault itself reports (a locked
 *   WORM policy or a legal hold, src/vaults/azure-facts.ts). No vault kind
 *   is offline today.
 * - **0 errors**: no copy of the item's current artifacts failed its last
 *   read-back (checksum-mismatch, size-invalid, missing, error).
 *
 * Pure.
 */
export type Media = 'disk' | 'object-storage';

export function mediaOf(v: VaultInfo): Media {
  return v.kind === 'azure-blob' ? 'object-storage' : 'disk';
}

export function offSiteOf(v: VaultInfo): boolean {
  return v.kind === 'azure-blob';
}

export interface Tally32110 {
  copies: number;
  media: Media[];
  offSite: string[];
  immutable: string[];
  errors: string[];
  vaults: string[];
  holds: boolean;
  /** What is missing, in plain words (empty when it holds). */
  missing: string[];
}

/** `vaults`: the vaults with a verified copy; `errors`: the failed read-backs (plain words); `sourcePresent`: the source still exists. */
export function tally32110(vaults: readonly VaultInfo[], errors: readonly string[], sourcePresent: boolean): Tally32110 {
  const byName = new Map(vaults.map((v) => [v.name, v] as const));
  const vs = [...byName.values()];
  const copies = vs.length + (sourcePresent ? 1 : 0);
  const media = [...new Set(vs.map(mediaOf))].sort();
  const offSite = vs.filter(offSiteOf).map((v) => v.name);
  const immutable = vs.filter((v) => v.immutable === true).map((v) => v.name);
  const missing: string[] = [];
  if (copies < 3) missing.push(`${copies} of 3 copies`);
  if (media.length < 2) missing.push(`${media.length} of 2 kinds of media`);
  if (offSite.length < 1) missing.push('no off-site copy');
  if (immutable.length < 1) missing.push('no immutable or offline copy');
  if (errors.length > 0) missing.push(`${errors.length} read-back error${errors.length === 1 ? '' : 's'}`);
  return { copies, media, offSite, immutable, errors: [...errors], vaults: vs.map((v) => v.name), holds: missing.length === 0, missing };
}

/** "3 copies (the source + 2 vaults: nas, azure), 2 media (disk, object-storage), 1 off-site (azure), 1 immutable (azure), 0 errors". Pure. */
export function describeTally(t: Tally32110, sourcePresent = true): string {
  const list = (xs: readonly string[]) => (xs.length ? ` (${xs.join(', ')})` : '');
  const vaults = t.vaults.length === 1 ? '1 vault' : `${t.vaults.length} vaults`;
  return [
    `${t.copies} ${t.copies === 1 ? 'copy' : 'copies'} (${sourcePresent ? 'the source + ' : ''}${vaults}${t.vaults.length ? `: ${t.vaults.join(', ')}` : ''})`,
    `${t.media.length} media${list(t.media)}`,
    `${t.offSite.length} off-site${list(t.offSite)}`,
    `${t.immutable.length} immutable${list(t.immutable)}`,
    `${t.errors.length} errors`,
  ].join(', ');
}
