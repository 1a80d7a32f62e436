import { chmod, copyFile, lstat, lutimes, mkdir, readFile, readdir, readlink, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
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
    checkpoint('freeze.marked'); // frozen, not yet journaled
  }

  async thaw(runId: string): Promise<void> {
    await rm(this.frozenMarker(runId), { force: true });
  }

  /**
   * A full copy of the target folder (copyTree below: any file name, modes,
   * times, symlinks as they are), written to a temp folder and renamed into
   * place. What a folder copy cannot hold (FIFOs, sockets, devices) is listed
   * in the point's `notKept`, never a reason to fail. Idempotent.
   */
  async createRollbackPoint(runId: string): Promise<RollbackPoint> {
    const dest = path.join(this.o.rollbackRoot, runId);
    const doneMarker = path.join(this.o.rollbackRoot, `${runId}.json`);
    if (existsSync(doneMarker)) return JSON.parse(await readFile(doneMarker, 'utf8')) as RollbackPoint;
    const tmp = `${dest}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(this.o.rollbackRoot, { recursive: true });
    const notKept = await copyTree(this.o.targetRoot, tmp);
    checkpoint('rollback.copied'); // copied, not yet in place
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
    const point: RollbackPoint = {
      id: `rollback-${runId}`,
      kind: 'sandbox-copy',
      location: dest,
      createdAt: new Date().toISOString(),
      ...(notKept.length > 0 ? { notKept } : {}),
    };
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
    // Names as bytes: a name that is not UTF-8 must be wiped too, not skipped as "not found".
    const root = Buffer.from(this.o.targetRoot);
    const entries = await readdir(root, { encoding: 'buffer' });
    let n = 0;
    for (const e of entries) {
      await rm(join(root, e), { recursive: true, force: true });
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

/** `dir/name` for byte paths. */
function join(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/** A name for messages: UTF-8 as is, other bytes as \xNN. */
export function displayPath(p: Buffer): string {
  const text = p.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(p)) return text;
  let out = '';
  for (const b of p) out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}

/**
 * Copies the tree at `src` to `dest` (which must not exist) for a rollback
 * point: names are handled as bytes (a file name that is not UTF-8 is copied
 * under its own name), regular files with their mode and times, folders with
 * their mode and times, symlinks verbatim (never followed). FIFOs, sockets
 * and devices have no content a copy could keep: they are skipped and
 * returned as "<relative path> (<kind>)". Hard links become separate copies.
 */
export async function copyTree(src: string, dest: string): Promise<string[]> {
  const notKept: string[] = [];
  const walk = async (from: Buffer, to: Buffer, rel: Buffer | undefined): Promise<void> => {
    const st = await lstat(from);
    const relText = () => (rel ? displayPath(rel) : '.');
    if (st.isDirectory()) {
      await mkdir(to, { mode: 0o700 });
      for (const name of await readdir(from, { encoding: 'buffer' })) {
        await walk(join(from, name), join(to, name), rel ? join(rel, name) : name);
      }
      await chmod(to, st.mode & 0o7777);
      await utimes(to, st.atime, st.mtime);
    } else if (st.isFile()) {
      await copyFile(from, to);
      await chmod(to, st.mode & 0o7777);
      await utimes(to, st.atime, st.mtime);
    } else if (st.isSymbolicLink()) {
      await symlink(await readlink(from, { encoding: 'buffer' }), to);
      await lutimes(to, st.atime, st.mtime).catch(() => undefined); // not every filesystem keeps symlink times
    } else {
      const kind = st.isFIFO() ? 'FIFO' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'character device' : st.isBlockDevice() ? 'block device' : 'special file';
      notKept.push(`${relText()} (${kind})`);
    }
  };
  await walk(Buffer.from(src), Buffer.from(dest), undefined);
  return notKept;
}
