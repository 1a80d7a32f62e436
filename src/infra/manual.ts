import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import type { Permit, RollbackPoint } from '../core/types.ts';
import type { Machine } from '../machines/machine.ts';
import type { Runbook } from '../runbook/load.ts';
import type { Volume } from '../core/types.ts';
import { windowsManualScope } from '../coverage/windows.ts';
import type { CrossingResult, DriverScope, InfraDriver, ProvingGroundHandle, ScopeFacts } from './driver.ts';

/**
 * The manual crossing, for the many servers that are not in a cloud: the
 * engineer reinstalls the server by hand or with any hypervisor. Rubicon
 * runs every phase up to the gate; at the crossing it prints and journals
 * exactly what to do and stops (outcome `waiting`); `rubicon confirm RUN_ID
 * --crossed` (a person) or `rubicon resume RUN_ID --yes` (a pipeline after
 * its own reinstall step) continues it. Before landing the phases check the
 * machine really was rebuilt (src/run/phases.ts, verifyRebuilt).
 *
 * This driver never destroys anything itself: cross() refuses.
 */
export interface ManualDriverOptions {
  runbook: Runbook;
  runId: string;
  target: Machine;
  provingGround: Machine;
}

export class ManualDriver implements InfraDriver {
  readonly kind = 'manual' as const;
  private readonly o: ManualDriverOptions;

  constructor(o: ManualDriverOptions) {
    this.o = o;
  }

  private get infra(): Extract<Runbook['infra'], { kind: 'manual' }> {
    return this.o.runbook.infra as Extract<Runbook['infra'], { kind: 'manual' }>;
  }

  async currentImage(): Promise<string> {
    return this.infra.currentImage;
  }

  /** The proving ground is a machine that already exists: a scratch folder per run on it. */
  async provisionProvingGround(runId: string): Promise<ProvingGroundHandle> {
    const root = path.posix.join(this.o.runbook.provingGround.root, runId);
    const r = await this.o.provingGround.exec({ argv: ['mkdir', '-p', '--', root] });
    if (r.exitCode !== 0) {
      throw new RubiconError('INFRA_FAILED', `cannot create ${root} on the proving ground ${this.o.provingGround.address}: ${r.stderr.trim()}`, {
        hint: 'check provingGround.root in the runbook and free space there',
      });
    }
    return { name: `${this.o.provingGround.name} (${this.o.provingGround.address})`, machine: this.o.provingGround };
  }

  async destroyProvingGround(runId: string): Promise<void> {
    await this.o.provingGround.exec({ argv: ['rm', '-rf', '--', path.posix.join(this.o.runbook.provingGround.root, runId)] });
  }

  /** Services are stopped by the phases (the target's OS), not by this driver. */
  async freeze(): Promise<void> {}

  async thaw(): Promise<void> {}

  /** The engineer's own rollback point (a hypervisor snapshot), described in the runbook; none when it names none. */
  async createRollbackPoint(runId: string): Promise<RollbackPoint> {
    const rb = this.infra.rollback;
    if (!rb) {
      throw new RubiconError('PRECONDITION_FAILED', 'a manual crossing has no rollback point unless the runbook describes one', {
        hint: 'take a snapshot of the server, describe it in infra.rollback.description, and confirm it with a manual step',
      });
    }
    return { id: `rollback-${runId}`, kind: 'manual', location: rb.description, createdAt: new Date().toISOString() };
  }

  /**
   * What the engineer must do, in plain words, for the target's OS: a Linux
   * server (os-release, OpenSSH, the Linux tools) or a Windows Server (a
   * clean install and its new MachineGuid, OpenSSH Server with PowerShell as
   * its DefaultShell or the Azure VM agent for Run Command, the new host key
   * into the file the runbook names). `where`: the option that names where
   * the run is kept (`--state-dir DIR` or `--state azblob://…`). Pure.
   */
  instructions(permit: Permit, runId: string, where: string): string {
    const rb = this.o.runbook;
    const t = rb.target.transport;
    const rebuilt = this.infra.rebuilt;
    const windows = this.o.target.os === 'windows';
    const steps: string[] = [this.infra.rollback ? `Make sure the rollback point exists: ${this.infra.rollback.description}.` : 'Keep the old disks until landing is validated (the runbook names no rollback point).'];
    if (windows) {
      steps.push(
        `Reinstall ${rb.target.name} with ${permit.image}: a clean install, not an in-place upgrade. The runbook expects the OS version "${rebuilt.osRelease}" (PowerShell there: [Environment]::OSVersion.VersionString)` +
          `, and a new MachineGuid (HKLM\\SOFTWARE\\Microsoft\\Cryptography): ${rebuilt.newMachineId ? 'Rubicon refuses the old one' : 'Rubicon records whether it changed'}. A server cloned from a disk image of the old one keeps the old MachineGuid.`,
      );
      if (t.kind === 'openssh-windows') {
        steps.push(
          `Install OpenSSH Server (Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; Start-Service sshd; Set-Service sshd -StartupType Automatic), set its DefaultShell to ${t.powershell === 'pwsh' ? 'PowerShell 7 (pwsh.exe)' : 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe'} (HKLM:\\SOFTWARE\\OpenSSH, value DefaultShell), and give ${t.user} the public key of ${t.identityFile} (an administrator's key goes into C:\\ProgramData\\ssh\\administrators_authorized_keys); install restic, which landing runs there.`,
          `Put its NEW host key into ${rebuilt.knownHosts} (the file the runbook names in infra.rebuilt.knownHosts), checked against the console (PowerShell there: ssh-keygen -lf C:\\ProgramData\\ssh\\ssh_host_ed25519_key.pub).`,
        );
      } else if (t.kind === 'azure-run-command') {
        steps.push(`Keep the Azure VM agent (WindowsAzureGuestAgent) installed and Ready on ${t.vmName}: Rubicon reaches it through Run Command; install restic, which landing runs there.`);
      } else {
        steps.push('Install the tools landing needs.');
      }
    } else {
      steps.push(`Reinstall ${rb.target.name} with ${permit.image} (the runbook expects os-release "${rebuilt.osRelease}"${rebuilt.newMachineId ? ', and a new /etc/machine-id' : ''}).`);
      if (t.kind === 'ssh') {
        steps.push(
          `Give it OpenSSH access for ${t.user} with the public key of ${t.identityFile}, and the tools landing needs (restic, rsync, sqlite3, coreutils).`,
          `Put its NEW host key into ${rebuilt.knownHosts}, checked against the console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there).`,
        );
      } else {
        steps.push('Install the tools landing needs.');
      }
    }
    if (this.infra.instructions) steps.push(this.infra.instructions);
    const lines = [
      `The gate passed and permit ${permit.id} allows the rebuild of ${rb.target.name} into "${permit.image}" until ${permit.expiresAt}.`,
      `Every item is captured and proven from the vaults; the application's services are stopped.`,
      `Now, by hand:`,
      ...steps.map((x, i) => `  ${i + 1}. ${x}`),
      `Then: rubicon confirm ${runId} --crossed ${where}   (a person; the journal records who)`,
      `   or: rubicon resume ${runId} --yes ${where}       (a pipeline, after its own reinstall step)`,
      `Rubicon then checks that the server really was rebuilt before it restores anything.`,
    ];
    return lines.join('\n');
  }

  async cross(): Promise<CrossingResult> {
    throw new RubiconError('INTERNAL', 'a manual crossing is done by the engineer, never by Rubicon');
  }

  async releaseRollbackPoint(): Promise<void> {}

  /**
   * The volumes the engineer's reinstall wipes: the runbook's
   * infra.destroys, or else every local filesystem mounted under the target
   * root (from /proc/self/mounts on the target) and the target root itself.
   * A Windows target: drive letters or folders, by default the root and
   * every local fixed volume the inventory reports. Read-only.
   */
  async scopeOfDestruction(facts?: ScopeFacts): Promise<DriverScope> {
    const root = this.o.runbook.target.root;
    const named = this.infra.destroys;
    if (this.o.target.os === 'windows') {
      // Drive letters and folders; by default the root and every local fixed volume of the inventory (src/coverage/windows.ts).
      return windowsManualScope({ root, target: this.o.target.name, ...(named ? { destroys: named } : {}), ...(facts?.windowsVolumes ? { volumes: facts.windowsVolumes } : {}) });
    }
    const points = named ?? [root, ...(await localMounts(this.o.target)).filter((m) => insidePosix(m, root))];
    const volumes: Volume[] = [];
    for (const p of points) {
      const rel = path.posix.relative(path.posix.resolve(root), path.posix.resolve(p)) || '.';
      if (volumes.some((v) => v.path === rel)) continue;
      volumes.push({ path: rel, label: rel === '.' ? `the volume of ${root} on ${this.o.target.name}` : `the volume ${p} on ${this.o.target.name}`, fate: 'destroyed', capture: true });
    }
    return { os: 'linux', volumes };
  }
}

const insidePosix = (child: string, parent: string) => {
  const rel = path.posix.relative(path.posix.resolve(parent), path.posix.resolve(child));
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
};

/** Filesystems that hold data (not proc, tmpfs, overlays of containers, network shares). */
const DATA_FS = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'zfs', 'f2fs', 'jfs', 'reiserfs', 'vfat', 'exfat', 'ntfs', 'ntfs3', 'fuseblk']);

/** Mount points of local data filesystems on a Linux machine, from /proc/self/mounts (octal escapes decoded). */
export async function localMounts(machine: Machine): Promise<string[]> {
  let text: string;
  try {
    text = Buffer.from(await machine.readSmall('/proc/self/mounts', 4 << 20)).toString('utf8');
  } catch {
    return [];
  }
  return parseMounts(text);
}

/** Pure: the mount points of data filesystems in /proc/self/mounts text. */
export function parseMounts(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (!mountPoint || !fsType || !DATA_FS.has(fsType)) continue;
    const mp = mountPoint.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (!out.includes(mp)) out.push(mp);
  }
  return out;
}
