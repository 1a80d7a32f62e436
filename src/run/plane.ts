import type { Artifact, DriftChange, Item, ScopeOfDestruction } from '../core/types.ts';
import type { Listing } from '../coverage/volume.ts';
import type { MachineIdentity } from '../machines/identity.ts';
import type { Machine, MachineOs } from '../machines/machine.ts';
import type { RunContext } from './context.ts';

/**
 * The target plane: the part of the remote phases that depends on the
 * target's operating system (how a folder is listed and hashed, how
 * services stop, how a machine says who it is). One implementation per OS,
 * chosen by the composition root (src/compose/root.ts) from the target
 * machine's `os`; src/run/phases.ts calls only this interface, never an OS
 * test of its own. What is the same on every OS (vaults, grants, the
 * proving ground, the gate, the journal) stays in the phases.
 *
 * - posix (src/run/plane-posix.ts): find, sha256sum, systemctl, os-release
 *   over ssh (src/run/remote.ts).
 * - windows (src/run/windows.ts): Rubicon's PowerShell scripts (inventory,
 *   manifest, capture, freeze, thaw, landing) as journaled steps over openssh-windows or
 *   azure-run-command, every output's sentinel checked.
 *
 * Every method is idempotent against the journal (it skips what the state
 * says is done), like the phases.
 */
export interface TargetPlane {
  readonly os: MachineOs;
  /** Whether the coverage hooks (src/coverage) can list this OS's volumes (the scope, the map, coverage.complete). */
  readonly coverage: boolean;
  /** Whether the everything capture (src/coverage/everything.ts) runs on this OS; false: no volume item, and coverage.everything refuses unless overridden. */
  readonly everything: boolean;
  /**
   * Lists one volume of the scope (paths relative to the target root, stat
   * only), as one journaled idempotent step per volume and stage; `unheld`:
   * paths no artifact may be said to hold (unreadable). Absent: find over
   * ssh (src/coverage/volume.ts, listRemote), with sha256sum where a file
   * must be matched by content. Read-only.
   */
  listVolume?(ctx: RunContext, volume: string, scope: ScopeOfDestruction, stage: string): Promise<Listing>;
  /** Facts the infra driver's scopeOfDestruction needs from this target (Windows: the inventory's volumes). Read-only. */
  scopeFacts?(ctx: RunContext): Promise<{ windowsVolumes?: { driveLetter: string; driveType: string | null; fileSystem: string | null; label?: string | null }[] }>;
  /** Who `machine` is (the target before the crossing, the rebuilt one after): a machine id and an OS name. Read-only. */
  identify(ctx: RunContext, machine: Machine): Promise<MachineIdentity>;
  /** Databases and folders found on the target. Read-only. */
  discover(ctx: RunContext, ownedOf: (dbs: Item[]) => string[]): Promise<{ databases: Item[]; folders: Item[] }>;
  /** Captures a folder item with each of its methods into their vaults; records artifact.captured or capture.failed per method. */
  captureFolder(
    ctx: RunContext,
    item: Item,
    phase: Artifact['phase'],
    exclude: string[],
    artifactIdOf: (method: string) => string,
    baseOf: (method: string) => Artifact | undefined,
  ): Promise<void>;
  /** What changed since the artifact; undefined when this item kind cannot be scanned here. Read-only. */
  drift(ctx: RunContext, item: Item, artifact: Artifact, exclude: string[], stage: string): Promise<DriftChange[] | undefined>;
  /** Restores one item onto the rebuilt target and records landing.restored and landing.validated. Destructive at the item's location. */
  landItem(ctx: RunContext, item: Item, pick: Artifact): Promise<void>;
  /** Stops the runbook's services, recording what they were (a thaw after a crash restores exactly that). */
  freeze(ctx: RunContext, services: readonly string[]): Promise<void>;
  /** Restores the services freeze stopped, as they were found. Idempotent. */
  thaw(ctx: RunContext, services: readonly string[]): Promise<void>;
}
