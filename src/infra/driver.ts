import type { Permit, RollbackPoint, ScopeOfDestruction, Volume } from '../core/types.ts';
import type { Host } from '../hosts/host.ts';
import type { Machine } from '../machines/machine.ts';

/**
 * InfraDriver: the machines. The sandbox driver uses local folders; the
 * Pulumi driver uses Azure through the Automation API.
 */

export interface ProvingGroundHandle {
  name: string;
  /** Where restores happen, when the proving ground is a local folder (the sandbox). It can read the vaults and nothing else. */
  host?: Host;
  /** The proving ground as its own machine (manual, Azure): it gets read grants and has no route to the target. */
  machine?: Machine;
}

/**
 * Facts the caller recomputed from its own records (the journal), which an
 * implementation checks the permit against instead of what the permit
 * carries. Optional: without it an implementation can only check the
 * permit's own binding (docs/trust.md).
 */
export interface CrossingFacts {
  /** proofSetHash() of the proofs the journal says the gate relied on. */
  proofSetHash: string;
}

export interface CrossingResult {
  image: string;
  completedAt: string;
  /**
   * The machine the crossing made, as its platform names it (pulumi-azure:
   * the new VM's ARM id and unique `vmId`, confirmed with ARM). Landing
   * refuses a target transport that reaches another one. Absent when the
   * driver cannot tell (sandbox, manual).
   */
  machine?: { resourceId: string; uniqueId: string };
}

/** What a driver's crossing destroys (and keeps), as data; exclusions are added by src/coverage. */
export interface DriverScope {
  os: ScopeOfDestruction['os'];
  volumes: Volume[];
  /** What the driver could not map and why (journaled as warnings at discover). */
  notes?: string[];
}

/**
 * Facts about the target the coverage hook read before asking the driver
 * (docs/coverage.md): on a Windows target, the inventory's volumes (Get-Volume:
 * drive letter, drive type, file system) and the runbook's target root.
 */
export interface ScopeFacts {
  targetRoot: string;
  windowsVolumes?: readonly { driveLetter: string; driveType: string | null; fileSystem: string | null; label?: string | null }[];
}

export interface InfraDriver {
  readonly kind: 'sandbox' | 'pulumi-azure' | 'manual';
  /** The image the target runs now (before the crossing). */
  currentImage(): Promise<string>;
  /** Idempotent: returns the existing proving ground for this run if there is one. */
  provisionProvingGround(runId: string): Promise<ProvingGroundHandle>;
  destroyProvingGround(runId: string): Promise<void>;
  /** Make the target quiet (stop the application's services). Idempotent. */
  freeze(runId: string): Promise<void>;
  /** Undo freeze when the run stops before the crossing. Idempotent. */
  thaw(runId: string): Promise<void>;
  /** Idempotent per run id. */
  createRollbackPoint(runId: string): Promise<RollbackPoint>;
  /**
   * THE CROSSING. Destructive: rebuilds the target with permit.image.
   * Implementations check the permit again (image, expiry) and refuse with
   * PERMIT_INVALID. Idempotent: after a crash mid-way, a second call
   * completes the same rebuild.
   */
  cross(permit: Permit, now: Date, facts?: CrossingFacts): Promise<CrossingResult>;
  releaseRollbackPoint(point: RollbackPoint): Promise<void>;
  /**
   * What the crossing destroys, as data (docs/coverage.md). Read-only.
   * Optional: without it the scope is unknown, and the gate refuses under
   * coverage.complete.
   */
  scopeOfDestruction?(facts?: ScopeFacts): Promise<DriverScope>;
  /**
   * The target machine the composition root selected, adapted for this
   * driver (pulumi-azure: a Run Command machine lifts the VM's ARM lock
   * while it works, src/infra/azure/target-machine.ts). The phases and the
   * landing use what it returns. Optional: without it the machine is used
   * as it is. Pure wrapper; no effect until the machine is used.
   */
  targetMachine?<M extends Machine>(machine: M): M;
}
