import type { Artifact, DriftChange, Fingerprint, Item, Manifest, ProofCheck } from '../core/types.ts';
import type { Host } from '../hosts/host.ts';
import type { Machine } from '../machines/machine.ts';
import type { StepRunner } from '../run/steps.ts';

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
  /**
   * Set by the orchestrator on calls about the rebuilt target at landing
   * (restore, validateLanding, the fingerprint after it). An engine with a
   * landing server of its own (SQL Server's `landing` connection) connects
   * there; others ignore it.
   */
  landing?: boolean;
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
  /**
   * Optional: the only vaults (by name) that hold this artifact, when the
   * data went straight into one vault and the files here are only its
   * description (SQL Server's BACKUP TO URL: the stripes are blobs of the
   * azure-blob vault, `files` is the sidecar). The orchestrator stores the
   * files and the index entry in these vaults only, so no other vault is
   * graded as holding a copy it does not have. Absent: every vault.
   */
  vaults?: string[];
}

export interface ProveResult {
  checks: ProofCheck[];
  fingerprint?: Fingerprint;
}

export interface DatabaseEngine {
  readonly kind: string;
  readonly methods: Record<string, MethodInfo>;
  /**
   * Optional. True when the engine reaches its database servers from this
   * process over the network (SQL Server over TDS: the target's, the
   * proving ground's and the landing server's connections), not through the
   * target's files. Then the remote phases (a target over ssh,
   * openssh-windows or azure-run-command) call this engine as the local path
   * does (src/run/network-engines.ts), with a ctx.host that holds no files
   * (its resolve() throws PRECONDITION_FAILED naming the path): the methods
   * that read backup files through the host fail there, typed and recorded,
   * and those whose bytes go straight into a vault (BACKUP TO URL) or whose
   * files are made here (scripts, descriptions) work. Absent: the engine
   * reads the target's files (SQLite) and a remote target needs a
   * RemoteDatabaseEngine of its kind.
   */
  readonly overNetwork?: boolean;
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
   * Optional. Can the server that will run after the crossing (the landing
   * server) take what this engine's items need (version, edition,
   * engine-specific limits)? Read-only. `items` are this engine's discovered
   * items. The orchestrator asks before capture (a run that will cross stops
   * there, PREFLIGHT_REFUSED, exit 2) and again right before the gate, whose
   * rule `landing.preflight` refuses on any check that did not pass. A throw
   * is recorded as a failed check. Engines without it (SQLite: the landing
   * target is the same machine with the same library) are not asked.
   */
  preflight?(ctx: EngineContext, items: Item[]): Promise<ProofCheck[]>;
  /**
   * Optional, pure. The order this engine's items must land in (keys before
   * what they decrypt, logins before databases, databases before the jobs
   * that name them). Returns the same items: this engine's are reordered
   * among the positions they held, items of other engines stay where they
   * were. Without it, items land in discovery order.
   */
  landingOrder?(items: Item[]): Item[];
  /**
   * Optional. After restore() of an item on the rebuilt target (ctx.landing
   * set): the engine's own validation (settings against the source,
   * orphaned users, smoke queries), as checks for landing.validated, beside
   * the orchestrator's fingerprint comparison for databases. Every check
   * must pass for the item to count as landed. Read-only.
   */
  validateLanding?(ctx: EngineContext, item: Item, manifest: Manifest, files: string[]): Promise<ProofCheck[]>;
}

/**
 * What a remote engine works with: a machine (the target, or the proving
 * ground for prove), journaled steps on it, and a scratch folder there.
 * Every command runs ON the machine with the engine's own tools; only
 * results (counts, hashes, status lines) travel back, never rows or files.
 */
export interface RemoteEngineContext {
  /** The target (discover, fingerprint, capture, restore) or the proving ground (prove). */
  machine: Machine;
  /** Journaled long steps: steps.run(machine, {id, idempotent}, cmd, what). */
  steps: StepRunner;
  /** Prefix for step ids, unique per artifact and phase (e.g. `<artifactId>/`). */
  stepPrefix: string;
  /** Absolute scratch folder ON the machine (the engine creates it, the caller removes it). */
  workDir: string;
  signal?: AbortSignal;
}

/** What a remote capture produced. */
export interface RemoteCapture {
  /** Absolute on the machine, with their names in the artifact. */
  files: { path: string; name: string }[];
  format: string;
  tool: string;
  position?: string;
  /**
   * Optional: the source's fingerprint taken inside the capture's own read
   * transaction, i.e. of exactly the snapshot the artifact holds. Prefer it
   * to a separate fingerprint() call, which sees another state of a
   * database the application keeps writing.
   */
  sourceFingerprint?: Fingerprint;
}

/**
 * A database engine whose every action runs on a (Linux) machine with the
 * engine's own command-line tools, e.g. the sqlite3 CLI. Paths are absolute
 * on ctx.machine. Contracts per method below; see docs/sqlite-remote.md for
 * the SQLite one.
 */
export interface RemoteDatabaseEngine {
  readonly kind: string;
  readonly methods: Record<string, MethodInfo>;
  /**
   * Finds databases under `roots` (absolute folders on the machine; `root`
   * is the target's root and item.location is relative to it, POSIX).
   * Read-only on the data (may write small scratch files in ctx.workDir).
   */
  discover(ctx: RemoteEngineContext, o: { root: string; roots: string[]; declared: { name: string; location?: string }[] }): Promise<Item[]>;
  /** Fingerprint of the live database at `path` (absolute on the machine). Read-only. */
  fingerprint(ctx: RemoteEngineContext, path: string): Promise<Fingerprint>;
  /**
   * Writes the backup into ctx.workDir on the machine and returns its files
   * (absolute on the machine) with their names in the artifact. Never
   * modifies the source. Idempotent: a redo overwrites its own output.
   */
  capture(ctx: RemoteEngineContext, item: Item, method: string, path: string): Promise<RemoteCapture>;
  /**
   * On the proving ground: the artifact's files are already restored and
   * hash-checked (absolute on ctx.machine, manifest order). Restores into a
   * scratch database under ctx.workDir, checks integrity, fingerprints.
   * Graded checks: never throws for a bad backup (only for a broken machine).
   */
  prove(ctx: RemoteEngineContext, artifact: Artifact, manifest: Manifest, files: string[]): Promise<ProveResult>;
  /**
   * Landing: puts the database from the artifact's files at destPath
   * (absolute on the rebuilt target). Destructive at destPath (and its
   * -wal/-shm/-journal) only; atomic (temp file beside it, then rename).
   */
  restore(ctx: RemoteEngineContext, item: Item, manifest: Manifest, files: string[], destPath: string): Promise<void>;
}
