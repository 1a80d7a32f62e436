import path from 'node:path';
import type { CoverageExclusion, Item, ScopeOfDestruction, Volume } from '../core/types.ts';
import type { DriverScope } from '../infra/driver.ts';
import type { Runbook } from '../runbook/load.ts';
import { builtInExclusions, relativeInside } from './exclusions.ts';
import { windowsExclusions, windowsVolumeKey } from './windows.ts';

/**
 * The scope of destruction as recorded: the infra driver's volumes, the
 * runbook's kept volumes that must be captured all the same, and every
 * exclusion in force (built-in, Rubicon's own, the runbook's). Pure.
 */

export const EVERYTHING_RULE = 'coverage.everything';

/** The item id of a volume's everything capture. */
export function volumeItemId(volumePath: string): string {
  return `volume:${volumePath}`;
}

export function isVolumeItem(item: Pick<Item, 'kind'>): boolean {
  return item.kind === 'volume';
}

/** The scope the journal records, from the driver's declaration and the runbook. Pure. */
export function declareScope(driver: DriverScope, rb: Runbook, infraKind: string): ScopeOfDestruction {
  const volumes: Volume[] = driver.volumes.map((v) => ({ ...v }));
  for (const raw of rb.coverage.alsoCapture) {
    // On Windows a kept data disk is named by its drive letter (`D:`), as the inventory reports it.
    const p = driver.os === 'windows' ? raw.replace(/\\/g, '/').replace(/^([a-z]):/, (m) => m.toUpperCase()) : raw;
    const have = volumes.find((v) => v.path === p);
    if (have) have.capture = true;
    else volumes.push({ path: p, label: `the kept volume ${p}`, fate: 'kept', capture: true });
  }
  const local = rb.target.transport.kind === 'local';
  const exclusions: CoverageExclusion[] = [...builtInExclusions(driver.os, local ? '/' : rb.target.root)];
  if (!local) {
    // Rubicon's scratch on the target (staging, step folders, grant files): shipped into the vaults before the crossing.
    const w = driver.os === 'windows' ? windowsVolumeKey(rb.target.root, rb.target.workDir) : undefined;
    const work = driver.os === 'windows' ? (w === '.' ? undefined : w) : relativeInside(rb.target.workDir, rb.target.root);
    if (work !== undefined) exclusions.push({ path: work, source: 'rubicon', reason: "Rubicon's work folder on the target (staging, step logs, grant files): what it holds is in the vaults before the crossing" });
  }
  for (const e of rb.coverage.exclude) exclusions.push({ path: e.path, source: 'runbook', reason: e.reason, by: e.by });
  const scope: ScopeOfDestruction = { infra: infraKind, os: driver.os, volumes, exclusions };
  // Windows: names compare without case, either slash, the built-in list at every drive (src/coverage/windows.ts).
  return driver.os === 'windows' ? { ...scope, exclusions: windowsExclusions(scope) } : scope;
}

/**
 * The override that turns off the everything capture of a volume, if the
 * runbook records one with who and why (the gate shows it under
 * coverage.everything). Pure.
 */
export function everythingOverride(rb: Runbook, volumePath: string): Runbook['overrides'][number] | undefined {
  const id = volumeItemId(volumePath);
  return rb.overrides.find((o) => o.rule === EVERYTHING_RULE && (o.itemId === undefined || o.itemId === id) && o.reason.trim() !== '' && o.by.trim() !== '');
}

/** Paths of other volumes inside `volume` (relative to it): a volume's capture never crosses into another. Pure. */
export function nestedVolumes(volume: string, all: readonly Volume[]): string[] {
  const out: string[] = [];
  for (const v of all) {
    if (v.path === volume || v.path === '') continue;
    if (volume === '.') out.push(v.path);
    else if (v.path.startsWith(`${volume}/`)) out.push(v.path.slice(volume.length + 1));
  }
  return out;
}

/** A path relative to the target root, from one relative to a volume. */
export function inVolume(volume: string, rel: string): string {
  return volume === '.' ? rel : path.posix.join(volume, rel);
}
