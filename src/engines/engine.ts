import type { Artifact, DriftChange, Fingerprint, Item, Manifest, ProofCheck } from '../core/types.ts';
import type { Host } from '../hosts/host.ts';

/**
 * A database engine (sqlite, mssql, postgres): discovery, capture methods,
 * proving and restore. One folder per engine under src/engines/.
 */

export interface MethodInfo {
  name: string;
  origin: 'rubicon' | 'vendor';
  /** Methods sharing a group are not independent of each other. */
  independenceGroup: string;
  /** One line for the plan and the report. */
  description: string;
}

/** A vendor's own backup job, as the runbook declares it. */
export interface VendorJobSpec {
  name: string;
  /** Program and arguments, run without a shell on the target host (sandbox); an Agent job name for mssql. */
  command: string[];
  /** Where the job writes its backup, relative to the target root; newest matching file wins. */
  output: string;
  database: string;
  timeoutMs: number;
}

export interface EngineContext {
  host: Host;
  /** Scratch folder on this machine for files the engine writes (absolute). */
  workDir: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface DiscoverOptions {
  /** Folders to search, relative to the target root. */
  roots: string[];
  /** Declared databases (by name and location) that must be found. */
  declared: { name: string; location?: string }[];
}

export interface CapturedFiles {
  /** Absolute paths of the files the method produced, in ctx.workDir or on the host. */
  files: { path: string; name: string }[];
  format: string;
  tool: string;
  position?: string;
  /** The command that ran, redacted. */
  command?: string;
}

export interface ProveResult {
  checks: ProofCheck[];
  fingerprint?: Fingerprint;
}

export interface DatabaseEngine {
  readonly kind: string;
  readonly methods: Record<string, MethodInfo>;
  /** Finds databases under the roots. Read-only. */
  discover(ctx: EngineContext, options: DiscoverOptions): Promise<Item[]>;
  /** Fingerprints the live source. Read-only. */
  fingerprint(ctx: EngineContext, item: Item): Promise<Fingerprint>;
  /**
   * Produces a backup of the item with one method. Never modifies the source
   * database (the vendor job may write into its own output folder).
   * Idempotent: a redo overwrites its own output files.
   */
  capture(ctx: EngineContext, item: Item, method: string, options: { vendorJob?: VendorJobSpec }): Promise<CapturedFiles>;
  /**
   * On the proving ground: restore the artifact's files (already fetched
   * from a vault and hash-checked; absolute paths, in manifest order) into
   * a scratch database under ctx.workDir, check integrity, fingerprint.
   * Never reads the target. Returns failed checks rather than throwing for a
   * bad backup.
   */
  prove(ctx: EngineContext, artifact: Artifact, manifest: Manifest, files: string[]): Promise<ProveResult>;
  /**
   * Optional. Drift of an item the orchestrator cannot scan itself (neither
   * a folder nor a database): what changed on the live target since the
   * artifact was captured. `files` are the artifact's files (fetched from a
   * vault and hash-checked; absolute paths, in manifest order). Read-only on
   * the target; may write scratch files under ctx.workDir only. Returns []
   * for no change, the changes otherwise, and undefined when it cannot tell
   * (the gate then sees "drift unknown", never "no drift").
   */
  drift?(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<DriftChange[] | undefined>;
  /** Landing: restore onto the rebuilt target at item.location. Destructive at that location only. */
  restore(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<void>;
  /**
   * Optional. Before the gate: can the server that will run after the
   * crossing (the landing server) take what the proofs restored (version,
   * edition, engine-specific limits)? Read-only. A failed check must refuse
   * the gate.
   */
  preflight?(ctx: EngineContext, items: Item[]): Promise<ProofCheck[]>;
  /**
   * Optional, pure. The order this engine's items must land in (keys before
   * what they decrypt, logins before databases, databases before the jobs
   * that name them). Items of other engines are returned where they were.
   */
  landingOrder?(items: Item[]): Item[];
  /**
   * Optional. After restore() of an item on the rebuilt target: the
   * engine's own validation (settings against the source, orphaned users,
   * smoke queries), as checks for landing.validated. Read-only.
   */
  validateLanding?(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<ProofCheck[]>;
}
