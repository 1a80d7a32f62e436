/**
 * The recorded facts of a run: plain, JSON-serialisable data. The journal
 * stores them, the run state is derived from them, and the checklist, the
 * gate and the reports are pure functions over them.
 *
 * Contract: nothing here holds a secret or a row of patient data. Paths are
 * relative to the target's root (POSIX separators) unless a field says
 * otherwise.
 */

/** Phases in the order a run goes through them (README.md, "What the demo shows"). */
export const PHASES = [
  'discover',
  'capture',
  'prove',
  'freeze',
  'final-capture',
  'gate',
  'crossing',
  'landing',
  'report',
] as const;
export type Phase = (typeof PHASES)[number];

export type ItemKind =
  | 'database'
  | 'folder'
  | 'instance-object'
  | 'secret'
  | 'service'
  | 'task'
  | 'share'
  | 'certificate'
  /** The everything capture of one volume in the scope of destruction (src/coverage/, docs/coverage.md). */
  | 'volume';

/** A scalar fact about an item, shown on the checklist (size, file count, ...). */
export type FactValue = string | number | boolean | null;

/**
 * One thing on the target that matters. Its id is stable across runs:
 * `folder:<path>`, `database:<engine>:<name>`, `instance-object:<kind>:<name>`,
 * `volume:<path>` (the everything capture of a volume, path relative to the target root).
 */
export interface Item {
  id: string;
  kind: ItemKind;
  /** Human name: the folder path, the database name. */
  name: string;
  /** Listed in the runbook (by the vendor or the engineer). */
  declared: boolean;
  /** Found by discovery on the target. */
  discovered: boolean;
  /** For databases: the engine kind (`sqlite`, `mssql`, `postgres`). */
  engine?: string;
  /** Where it lives on the target: a path relative to the target root, or an engine locator. */
  location: string;
  /** Facts for the checklist: bytes, files, lastChange (ISO), tables, rows, ... */
  facts: Record<string, FactValue>;
  /** Plain-language reasons this item matters ("referenced by ehr/A/app.ini line 4"). */
  why: string[];
  /** Methods that will capture it, in order (from the runbook after defaults). */
  methods: string[];
}

/** Per-table fingerprint: row count and an order-independent content hash. */
export interface TableFingerprint {
  table: string;
  rows: number;
  /** Hex digest, order-independent over rows (sum of per-row SHA-256 mod 2^256). */
  hash: string;
  /** Columns whose content the hash cannot see (e.g. a type the engine cannot read). */
  unhashedColumns?: string[];
}

export interface Fingerprint {
  engine: string;
  tables: TableFingerprint[];
  /** SHA-256 over the sorted table fingerprints: equal digests ⇔ equal fingerprints. */
  digest: string;
}

/** One file of a file-tree artifact (or the single file of a database artifact). */
export interface ManifestEntry {
  /** Relative path inside the captured item, POSIX separators. */
  path: string;
  size: number;
  mtimeMs: number;
  mode: number;
  /** Hex SHA-256 of the content; also the object's key in every vault. */
  sha256: string;
  /** Version 2: the exact mtime, nanoseconds since the epoch (a decimal integer string); `mtimeMs` is derived from it. */
  mtimeNs?: string;
  /** Version 2: owner and group, by number. */
  uid?: number;
  gid?: number;
  /** Version 2: inode number at capture, a change hint for delta and drift (a replaced file has a new one); never restored. */
  ino?: number;
  /** Version 2: a hard link to the earlier entry at this path (same inode: same content, owner, mode and mtime). */
  link?: string;
}

/** A folder, symlink or FIFO of a version-2 file-tree manifest (regular files are ManifestEntry). */
export interface ManifestNode {
  path: string;
  type: 'dir' | 'symlink' | 'fifo';
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  mtimeMs: number;
  /** Exact mtime, nanoseconds since the epoch (decimal integer string). */
  mtimeNs?: string;
  uid?: number;
  gid?: number;
  /** Symlink only: the link's target, as stored (never followed). */
  target?: string;
}

/** The metadata of the captured folder itself (version 2). */
export type ManifestRoot = Omit<ManifestNode, 'path' | 'type' | 'target'>;

/** What an artifact consists of. Stored in each vault as a content-addressed JSON object. */
export interface Manifest {
  /** 1: regular files only (database artifacts, and trees captured before version 2). 2: file trees with their metadata. */
  version: 1 | 2;
  artifactId: string;
  itemId: string;
  method: string;
  /** Regular files (hard links included), sorted by path. */
  entries: ManifestEntry[];
  /** For databases: the format of the file(s), e.g. `sqlite-db`, `sql-text`, `mssql-bak`. */
  format?: string;
  /** Version 2: folders (empty or not), symlinks and FIFOs, sorted by path with a folder keyed as `path/`. */
  nodes?: ManifestNode[];
  /** Version 2: mode, owner and mtime of the captured folder itself. */
  root?: ManifestRoot;
}

export interface Provenance {
  method: string;
  /** Tool and version that produced the bytes, e.g. `node:sqlite 3.50.4`, `vendor job`. */
  tool: string;
  host: string;
  startedAt: string;
  finishedAt: string;
  /** Engine position at capture: an LSN, a SQLite data_version, a snapshot id. */
  position?: string;
  /** The command that ran, with secrets redacted. */
  command?: string;
}

export interface Artifact {
  /** Deterministic: `<runId>.<phase>.<itemId>.<method>`, so a redo after a crash reuses it. */
  id: string;
  runId: string;
  itemId: string;
  method: string;
  /**
   * Methods in the same group are not independent of each other (e.g. two
   * copies of the vendor's job output). Defaults to the method name.
   */
  independenceGroup: string;
  phase: 'capture' | 'final-capture';
  /** Whose method: Rubicon's own or the vendor's (the vendor's may fail without refusing the gate). */
  origin: 'rubicon' | 'vendor';
  /** SHA-256 of the manifest object as stored in the vaults. */
  manifestHash: string;
  fileCount: number;
  bytes: number;
  /** For a delta: the artifact it was computed against, and what changed. */
  baseArtifactId?: string;
  changed?: DriftChange[];
  /** For databases: the source's fingerprint taken at capture time. */
  sourceFingerprint?: Fingerprint;
  provenance: Provenance;
  /** Vaults that hold a copy. Absent (older journals, file-mirror before remote vaults): every vault of the run. */
  vaults?: string[];
  /** Per vault, where its copy is when it is not content-addressed objects: a restic snapshot id, an sftp tree folder. */
  locators?: Record<string, string>;
  /** The folder the files came from, absolute on the source machine (restic keeps absolute paths). */
  sourceDir?: string;
  /**
   * A Windows folder's ACLs as `icacls /save` wrote them at capture: the
   * file's SHA-256 (a document in the same vaults as the copy), its size
   * and entry count. Landing restores them with `icacls /restore`.
   */
  acl?: { sha256: string; bytes: number; entries: number };
}

/** Result of checking one artifact's copy in one vault (pgBackRest-style grades). */
export type CopyStatus = 'ok' | 'missing' | 'checksum-mismatch' | 'size-invalid' | 'error';

export interface Copy {
  artifactId: string;
  vault: string;
  status: CopyStatus;
  /** Which object(s) failed, in plain words; no content. */
  detail?: string;
  checkedAt: string;
}

export type CheckStatus = 'passed' | 'failed' | 'skipped';

export interface ProofCheck {
  /** e.g. `copy-read`, `restore`, `integrity`, `fingerprint-source`, `fingerprint-peers`, `files-hash`, `smoke`. */
  name: string;
  status: CheckStatus;
  /** Plain words: what was checked and what came out (engine messages kept). */
  detail: string;
  durationMs: number;
}

/**
 * Evidence that an artifact was restored on the proving ground from one
 * vault and checked. `passed` only when every check ran and passed: a
 * skipped check is never a success.
 */
export interface Proof {
  id: string;
  artifactId: string;
  itemId: string;
  vault: string;
  provingGround: string;
  outcome: 'passed' | 'failed';
  checks: ProofCheck[];
  /** For databases: the fingerprint of the restored copy. */
  fingerprint?: Fingerprint;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Bytes restored, for the maintenance-window estimate. */
  bytes: number;
}

export interface DriftChange {
  path: string;
  kind: 'added' | 'modified' | 'deleted';
  size?: number;
  mtimeMs?: number;
  /** Absent for a regular file. */
  entryType?: 'dir' | 'symlink' | 'fifo';
  /** For 'modified': what changed (a metadata-only change is drift too). */
  aspects?: ('content' | 'mode' | 'owner' | 'type' | 'target' | 'link')[];
}

/** What changed on the target after an artifact was captured. */
export interface Drift {
  itemId: string;
  /** The artifact the target was compared against. */
  artifactId: string;
  /** When in the run the scan ran. */
  stage: 'freeze' | 'pre-gate' | 'verify';
  changes: DriftChange[];
  scannedAt: string;
}

export interface ManualStep {
  id: string;
  description: string;
  confirmedBy?: string;
  confirmedAt?: string;
}

export interface Override {
  /** The gate rule id it overrides, e.g. `database.independent-methods`. */
  rule: string;
  /**
   * The one thing it applies to: an item id, a manual step id, a policy field
   * (policy.not-looser) or `gate` (a rule about the whole gate). The runbook
   * requires it; an override without one covers nothing and refuses.
   */
  itemId?: string;
  reason: string;
  by: string;
}

export interface VaultInfo {
  name: string;
  kind: 'filesystem' | 'azure-blob' | 'restic' | 'sftp';
  /** Where, for the report (no credentials): a path or URL without query string. */
  location: string;
  /** True when the vault does not live on the target itself (read from the vault, not the runbook). */
  offTarget: boolean;
  /** True when stored copies cannot be altered or deleted during retention (WORM), as the vault itself reports. */
  immutable: boolean;
  /** Encrypted at rest by the vault (restic always is). Absent in older journals. */
  encrypted?: boolean;
  /** The tool that writes and reads its copies where the data is (rsync, restic); absent: Rubicon itself (filesystem). */
  tool?: string;
}

export interface RollbackPoint {
  id: string;
  kind: 'sandbox-copy' | 'azure-disk-snapshot' | 'manual';
  /** Where it is, for the report: a path or resource ids. */
  location: string;
  createdAt: string;
  /** What the rollback point could not hold (FIFOs, sockets, devices), as "<path relative to the target> (<kind>)". */
  notKept?: string[];
}

/** The policy as the gate evaluates it: defaults filled, only ever stricter than DEFAULT_POLICY. */
export interface Policy {
  /** Independent proven methods required per database. Default 2. */
  minIndependentMethods: number;
  /** Vaults holding a verified copy of each folder artifact. Default 2. */
  minVaults: number;
  /** Of those, how many must be off the target. Default 1. */
  minOffTargetVaults: number;
  /** Proofs must be younger than this at the crossing. Default 24 h. */
  maxProofAgeHours: number;
  /** A rollback point must exist before the crossing. Default true. */
  requireRollbackPoint: boolean;
  /** Declared manual steps must be confirmed. Default true. */
  requireManualSteps: boolean;
  /** An immutable vault copy required for each item. Default false (stricter when true). */
  requireImmutableCopy: boolean;
  /** A manual step's confirmation must be younger than this when a run starts and at the gate. Default 72 h. */
  maxConfirmationAgeHours: number;
}

export interface Permit {
  id: string;
  runId: string;
  target: string;
  /** The image the crossing installs, e.g. `MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest`. */
  image: string;
  proofIds: string[];
  /** SHA-256 over the sorted proof ids and their outcomes: binds the permit to exactly this evidence. */
  proofSetHash: string;
  issuedAt: string;
  expiresAt: string;
}

export type RuleStatus = 'pass' | 'fail' | 'warn' | 'overridden';

export interface RuleResult {
  /** Stable rule id, e.g. `database.independent-methods`. */
  rule: string;
  itemId?: string;
  status: RuleStatus;
  /** One sentence in plain words. */
  reason: string;
  /** Ids of artifacts/proofs/copies that support the verdict. */
  evidence: string[];
  /** For `overridden`: the recorded override. */
  override?: Override;
  /** On `fail` and `overridden`: what an override of this result names as its item (item id, step id, policy field, or `gate`). */
  subject?: string;
}

export interface GateResult {
  passed: boolean;
  evaluatedAt: string;
  results: RuleResult[];
  /** The reasons for a refusal (fail results), or warnings on a pass. */
  reasons: string[];
}

// ---------------------------------------------------------------- coverage (docs/coverage.md)

/**
 * A decision that files need not be captured: the built-in list of what the
 * new OS lays down itself, Rubicon's own work folder on the target, or a
 * runbook entry (with who decided it). `path` is relative to the target
 * root (POSIX); it names a file or a folder (everything under it), minus
 * `except` (paths under it that stay in scope, e.g. usr/local under usr).
 */
export interface CoverageExclusion {
  path: string;
  source: 'built-in' | 'runbook' | 'rubicon';
  /** Why, in plain words. Required: an exclusion without a reason excludes nothing. */
  reason: string;
  /** Who decided it (runbook entries; required there). */
  by?: string;
  except?: string[];
  /** Windows: names compare without case. */
  caseInsensitive?: boolean;
}

/** One volume (or root) the crossing destroys or keeps, as the infra driver declares it. */
export interface Volume {
  /** Relative to the target root, POSIX; '.' = the whole root. Empty when the driver cannot say where it is mounted. */
  path: string;
  /** For people: "the whole target folder", "the OS disk (C:)", "data disk sqldata". */
  label: string;
  /** What the crossing does to it. */
  fate: 'destroyed' | 'kept';
  /** Its files must be covered: every destroyed volume; a kept one when the runbook says so (coverage.alsoCapture). */
  capture: boolean;
}

/** What the crossing destroys, recorded once per run (journal `scope.declared`). */
export interface ScopeOfDestruction {
  /** The infra kind that declared it. */
  infra: string;
  /** Which built-in exclusion list applies. */
  os: 'sandbox' | 'linux' | 'windows';
  volumes: Volume[];
  /** Every exclusion in force: built-in, Rubicon's own, the runbook's. */
  exclusions: CoverageExclusion[];
}

/** Files of one class, grouped by folder (at most two levels deep), for people: never contents. */
export interface CoverageGroup {
  /** e.g. `practice-docs/`, `ehr/X/`, `./` for files at the volume root. */
  folder: string;
  files: number;
  bytes: number;
  /** The first few paths (relative to the target root), sorted. */
  first: string[];
}

/**
 * Files of one volume that share how they are accounted for: the artifacts
 * that hold every one of them by path and SHA-256, the item that owns them
 * (a database's files: held by its engine's artifacts, judged by the
 * database rules), and the exclusion that names them. Which of those counts
 * is decided by the gate from the proofs and copies (src/coverage/judge.ts).
 */
export interface CoverageClass {
  volume: string;
  holders: string[];
  owner?: string;
  exclusion?: CoverageExclusion;
  files: number;
  bytes: number;
  groups: CoverageGroup[];
}

/** The coverage map of the scope of destruction at one point of the run (journal `coverage.mapped`). */
export interface CoverageMap {
  stage: 'capture' | 'final-capture';
  mappedAt: string;
  /** Volume paths mapped. */
  volumes: string[];
  files: number;
  bytes: number;
  classes: CoverageClass[];
  /** Entries that are not regular files (symlinks, sockets, ...): listed, not covered or uncovered. */
  skipped: number;
  /** Files hashed to match them against an artifact (the rest were vouched for by size and mtime). */
  hashed: number;
}

/** Everything the gate looks at. Built from the journal; nothing else. */
export interface GateFacts {
  now: string;
  policy: Policy;
  items: Item[];
  artifacts: Artifact[];
  copies: Copy[];
  proofs: Proof[];
  /** The newest drift scan per item (stage `pre-gate`). A missing scan counts as drift unknown → refuse. */
  drift: Drift[];
  vaults: VaultInfo[];
  manualSteps: ManualStep[];
  overrides: Override[];
  rollbackPoint?: RollbackPoint;
  /** What the crossing destroys, as the infra driver declared it. Absent: unknown, and coverage.complete refuses. */
  scope?: ScopeOfDestruction;
  /** The newest coverage map. Absent: coverage unknown, and coverage.complete refuses. */
  coverage?: CoverageMap;
  /**
   * The newest landing preflight per engine (DatabaseEngine.preflight): can
   * the server the target lands on take what was proven? Absent or empty: no
   * engine of this run has such a check. A failed check, or a newest record
   * not taken right before the gate, refuses (`landing.preflight`).
   */
  preflight?: LandingPreflight[];
}

/** One engine's landing preflight, as journaled (`preflight.checked`). No secrets. */
export interface LandingPreflight {
  /** The engine's kind (`mssql`). */
  engine: string;
  /** `capture`: before anything was captured; `pre-gate`: right before the gate (the one the gate may rely on). */
  stage: 'capture' | 'pre-gate';
  checks: ProofCheck[];
  checkedAt: string;
}

export type ChecklistStatus =
  | 'proven' // captured, copies verified, proven
  | 'captured' // captured, not (yet) proven
  | 'found-not-declared' // discovered only; shown with whatever else is true
  | 'failed' // a capture or proof failed and nothing else covers it
  | 'drifted' // changed after its last capture
  | 'missing' // declared but not found on the target
  | 'pending';

export interface ChecklistRow {
  itemId: string;
  kind: ItemKind;
  name: string;
  declared: boolean;
  discovered: boolean;
  status: ChecklistStatus;
  /** Short labels: "found, not declared", "vendor backup cannot be restored", ... */
  notes: string[];
  facts: Record<string, FactValue>;
  why: string[];
  artifacts: { id: string; method: string; proven: boolean | null; vaultsOk: string[]; vaultsBad: string[] }[];
}
