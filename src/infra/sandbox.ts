import { cp, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import type { Permit, RollbackPoint } from '../core/types.ts';
import { checkPermit } from '../gate/permit.ts';
import { LocalHost } from '../hosts/local.ts';
import { checkpoint } from '../run/faults.ts';
import type { CrossingResult, DriverScope, InfraDriver, ProvingGroundHandle } from './driver.ts';

/**
 * The sandbox infra driver: the target is a local folder, the proving ground
 * a fresh folder per run (restores there get vault readers and no handle on
 * the target), the rollback point a full copy of the target folder, and the
 * crossing wipes the target folder and writes `os-release` naming the new
 * image.
 */
export interface SandboxOptions {
  targetRoot: string;
  targetName: string;
  provingGroundRoot: string;
  rollbackRoot: string;
  /** The image the target runs before the crossing, when it has no os-release yet. */
  currentImage: string;
  /** The image the runbook says the crossing installs. */
  plannedImage: string;
}

export const OS_RELEASE = 'os-release';

export class SandboxDriver implements InfraDriver {
  readonly kind = 'sandbox' as const;
  private readonly o: SandboxOptions;

  constructor(options: SandboxOptions) {
    this.o = options;
  }

  async currentImage(): Promise<string> {
    try {
      const text = await readFile(path.join(this.o.targetRoot, OS_RELEASE), 'utf8');
      const m = /^NAME="(.*)"$/m.exec(text);
      if (m?.[1]) return m[1];
    } catch {
      /* never rebuilt */
    }
    return this.o.currentImage;
  }

  async provisionProvingGround(runId: string): Promise<ProvingGroundHandle> {
    const root = path.join(this.o.provingGroundRoot, runId);
    await mkdir(root, { recursive: true });
    return { name: `sandbox-proving-ground/${runId}`, host: new LocalHost(`proving-ground-${runId}`, root) };
  }

  async destroyProvingGround(runId: string): Promise<void> {
    await rm(path.join(this.o.provingGroundRoot, runId), { recursive: true, force: true });
  }

  private frozenMarker(runId: string): string {
    return path.join(this.o.rollbackRoot, `${runId}.frozen`);
  }

  /** Sandbox freeze: records that the application's services are stopped (there are none to stop). */
  async freeze(runId: string): Promise<void> {
    await mkdir(this.o.rollbackRoot, { recursive: true });
    await writeFile(this.frozenMarker(runId), new Date().toISOString());
  }

  async thaw(runId: string): Promise<void> {
    await rm(this.frozenMarker(runId), { force: true });
  }

  /** A full copy of the target folder, written to a temp folder and renamed into place. Idempotent. */
  async createRollbackPoint(runId: string): Promise<RollbackPoint> {
    const dest = path.join(this.o.rollbackRoot, runId);
    const doneMarker = path.join(this.o.rollbackRoot, `${runId}.json`);
    if (existsSync(doneMarker)) return JSON.parse(await readFile(doneMarker, 'utf8')) as RollbackPoint;
    const tmp = `${dest}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(this.o.rollbackRoot, { recursive: true });
    await cp(this.o.targetRoot, tmp, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
    const point: RollbackPoint = { id: `rollback-${runId}`, kind: 'sandbox-copy', location: dest, createdAt: new Date().toISOString() };
    await writeFile(doneMarker, JSON.stringify(point));
    return point;
  }

  /**
   * THE CROSSING: wipes everything under the target root and writes
   * os-release. Checks the permit first (image, expiry) and refuses with
   * PERMIT_INVALID. Idempotent: a second call after a crash finishes the
   * wipe and rewrites the marker.
   */
  async cross(permit: Permit, now: Date): Promise<CrossingResult> {
    const check = checkPermit(permit, { image: this.o.plannedImage, now, target: this.o.targetName });
    if (!check.valid) {
      throw new RubiconError('PERMIT_INVALID', `the crossing was refused: ${check.reason}`, { hint: check.fix });
    }
    await mkdir(this.o.targetRoot, { recursive: true });
    const entries = await readdir(this.o.targetRoot);
    let n = 0;
    for (const e of entries) {
      await rm(path.join(this.o.targetRoot, e), { recursive: true, force: true });
      if (++n === Math.ceil(entries.length / 2)) checkpoint('crossing.half-wiped');
    }
    checkpoint('crossing.wiped');
    const completedAt = new Date().toISOString();
    await writeFile(
      path.join(this.o.targetRoot, OS_RELEASE),
      `NAME="${permit.image}"\nREBUILT_AT="${completedAt}"\nPERMIT="${permit.id}"\n`,
    );
    return { image: permit.image, completedAt };
  }

  async releaseRollbackPoint(point: RollbackPoint): Promise<void> {
    await rm(point.location, { recursive: true, force: true });
  }

  /** The crossing wipes everything under the target root (see cross). */
  async scopeOfDestruction(): Promise<DriverScope> {
    return { os: 'sandbox', volumes: [{ path: '.', label: 'the whole target folder', fate: 'destroyed', capture: true }] };
  }
}
