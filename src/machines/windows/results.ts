import { z } from 'zod';
import { RubiconError } from '../../core/errors.ts';
import type { ManifestEntry } from '../../core/types.ts';
import { relativePathProblem } from '../../core/paths.ts';
import type { ScriptOutput } from './scripts.ts';

/**
 * The data each Windows script returns (result.data), as the transport and
 * the orchestrator consume it. The contracts are in each script's header
 * (src/machines/windows/scripts/*.ps1) and in docs/windows.md; the
 * PowerShell side writes dates as ISO strings, enums by name, lists always
 * as arrays, null for what it could not tell.
 */

// ------------------------------------------------------------ manifest

const fileRecord = z
  .object({
    kind: z.literal('file'),
    path: z.string().min(1),
    size: z.number().int().nonnegative(),
    mtimeMs: z.number().finite(),
    mode: z.number().int().min(0).max(0o7777),
    sha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
    stable: z.boolean(),
  })
  .strict();
const reparseRecord = z.object({ kind: z.literal('reparse'), path: z.string().min(1), linkType: z.string(), target: z.string().nullable() }).strict();
const specialRecord = z.object({ kind: z.literal('special'), path: z.string().min(1), type: z.string() }).strict();
const unreadableRecord = z
  .object({
    kind: z.literal('unreadable'),
    path: z.string().min(1),
    code: z.enum(['ACCESS_DENIED', 'LOCKED', 'VANISHED', 'PATH_TOO_LONG', 'IO_ERROR']),
    message: z.string().nullable(),
    size: z.number().int().nonnegative(),
    mtimeMs: z.number().finite(),
  })
  .strict();
const dirUnreadableRecord = z
  .object({ kind: z.literal('dir-unreadable'), path: z.string().min(1), code: z.string(), message: z.string().nullable() })
  .strict();

export const manifestRecordSchema = z.discriminatedUnion('kind', [fileRecord, reparseRecord, specialRecord, unreadableRecord, dirUnreadableRecord]);
export type ManifestRecord = z.infer<typeof manifestRecordSchema>;

export interface ManifestData {
  root: string;
  files: number;
  bytes: number;
  reparse: number;
  special: number;
  unreadable: number;
  dirUnreadable: number;
  unstable: number;
  /** Nothing unreadable and every file stable while read. */
  complete: boolean;
}

/** An entry of the tree that is not in the manifest, and why. Never silently dropped. */
export type ManifestProblem = Exclude<ManifestRecord, { kind: 'file' }> | (Extract<ManifestRecord, { kind: 'file' }> & { problem: 'unstable' | 'not-hashed' });

/**
 * Pure: the manifest script's records as Rubicon ManifestEntry values
 * (src/core/types.ts) plus everything that is not an entry (reparse
 * points, special files, unreadable files and folders, files that changed
 * while read or were not hashed). Validates every record (a remote
 * script's output is input): a malformed record or an unsafe path is
 * SCRIPT_OUTPUT_INVALID naming it.
 */
export function manifestEntriesFromOutput(output: ScriptOutput<ManifestData>): { entries: ManifestEntry[]; problems: ManifestProblem[] } {
  const entries: ManifestEntry[] = [];
  const problems: ManifestProblem[] = [];
  output.records.forEach((raw, i) => {
    const parsed = manifestRecordSchema.safeParse(raw);
    if (!parsed.success) {
      throw new RubiconError('SCRIPT_OUTPUT_INVALID', `manifest record ${i + 1} is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {
        hint: 'the manifest script and this Rubicon disagree on the record format; use the script this version ships',
      });
    }
    const r = parsed.data;
    const unsafe = relativePathProblem(r.path);
    if (unsafe) throw new RubiconError('SCRIPT_OUTPUT_INVALID', `manifest record ${i + 1} has the path '${r.path}', which ${unsafe}`, { hint: 'this is a bug in the manifest script' });
    if (r.kind !== 'file') {
      problems.push(r);
      return;
    }
    if (r.sha256 === null) {
      problems.push({ ...r, problem: 'not-hashed' });
      return;
    }
    if (!r.stable) {
      problems.push({ ...r, problem: 'unstable' });
      return;
    }
    entries.push({ path: r.path, size: r.size, mtimeMs: r.mtimeMs, mode: r.mode, sha256: r.sha256 });
  });
  return { entries, problems };
}

// ------------------------------------------------------------ inventory

export interface InventorySection<T> {
  status: 'ok' | 'unavailable' | 'failed';
  items: T[];
  error: { code: string; message: string } | null;
}

export interface InventoryService {
  name: string;
  displayName: string | null;
  /** Win32_Service State: Running, Stopped, Start Pending, ... */
  state: string | null;
  /** Win32_Service StartMode: Auto, Manual, Disabled, Boot, System. */
  startMode: string | null;
  delayedAutoStart: boolean;
  pathName: string | null;
  binaryPath: string | null;
  account: string | null;
  processId: number;
  dependsOn: string[];
  builtInAccount: boolean;
  needsPerson: boolean;
}

export interface InventoryScheduledTask {
  path: string;
  name: string;
  state: string | null;
  author: string | null;
  principal: { userId: string | null; logonType: string | null; runLevel: string | null };
  actions: { type: string; execute: string | null; arguments: string | null; workingDirectory: string | null }[];
  triggers: { type: string; enabled: boolean; startBoundary: string | null }[];
  /** Export-ScheduledTask XML, what landing re-registers. */
  xml: string;
  needsPerson: boolean;
}

export interface ShareAccess {
  accountName: string;
  accessControlType: 'Allow' | 'Deny' | string;
  accessRight: 'Full' | 'Change' | 'Read' | 'Custom' | string;
}

export interface InventoryShare {
  name: string;
  path: string | null;
  description: string | null;
  pathExists: boolean;
  access: ShareAccess[];
  ntfs: { identity: string; rights: string; type: string; inherited: boolean; isLocalAccount: boolean }[];
  ntfsError: string | null;
  needsPerson: boolean;
}

export interface InventoryIisSite {
  name: string;
  id: number;
  state: string | null;
  bindings: { protocol: string; bindingInformation: string; certificateHash: string | null; certificateStoreName: string | null }[];
  applications: { path: string; applicationPool: string | null; virtualDirectories: { path: string; physicalPath: string }[] }[];
}

export interface InventoryIisAppPool {
  name: string;
  state: string | null;
  managedRuntimeVersion: string | null;
  managedPipelineMode: string | null;
  identityType: string | null;
  userName: string | null;
  needsPerson: boolean;
}

export interface InventoryOdbcDsn {
  name: string;
  dsnType: string | null;
  platform: string | null;
  driverName: string | null;
  /** Values of keys named like a password are null and listed in `redacted`. */
  attributes: Record<string, string | null>;
  redacted: string[];
}

export interface InventoryCertificate {
  subject: string;
  issuer: string;
  thumbprint: string;
  notBefore: string;
  notAfter: string;
  hasPrivateKey: boolean;
  exportable: boolean | null;
  friendlyName: string;
  needsPerson: boolean;
}

export interface InventoryData {
  sections: {
    services?: InventorySection<InventoryService>;
    scheduledTasks?: InventorySection<InventoryScheduledTask>;
    shares?: InventorySection<InventoryShare>;
    iisSites?: InventorySection<InventoryIisSite>;
    iisAppPools?: InventorySection<InventoryIisAppPool>;
    odbcDsns?: InventorySection<InventoryOdbcDsn>;
    certificates?: InventorySection<InventoryCertificate>;
    programs?: InventorySection<{ name: string; version: string | null; publisher: string | null; installLocation: string | null; installDate: string | null; scope: '64-bit' | '32-bit' }>;
    volumes?: InventorySection<{ driveLetter: string; label: string | null; fileSystem: string | null; driveType: string | null; healthStatus: string | null; size: number; sizeRemaining: number }>;
    sqlInstances?: InventorySection<{ name: string; id: string; edition: string | null; version: string | null; dataRoot: string | null; programDir: string | null }>;
    localUsers?: InventorySection<{ name: string; enabled: boolean; sid: string | null; description: string | null; lastLogon: string | null; principalSource: string | null }>;
    localGroups?: InventorySection<{
      name: string;
      sid: string | null;
      description: string | null;
      members: { name: string; sid: string | null; objectClass: string | null; principalSource: string | null }[];
      membersVia: 'Get-LocalGroupMember' | 'ADSI' | null;
      membersError: string | null;
    }>;
    firewallRules?: InventorySection<{
      name: string;
      displayName: string | null;
      group: string | null;
      direction: string | null;
      action: string | null;
      profile: string | null;
      custom: boolean;
      protocol: string | null;
      localPort: string[];
      remotePort: string[];
      program: string | null;
    }>;
    hostsFile?: InventorySection<{ address: string; names: string[] }>;
    environment?: InventorySection<{ name: string; value: string | null; redacted: boolean }>;
  };
  /** Folders named by services, tasks, shares, IIS, ODBC and SQL Server, outside %SystemRoot%. */
  referencedFolders: { path: string; exists: boolean; references: { kind: string; name: string; via: string }[] }[];
}

// ------------------------------------------------------------ capture

export interface RobocopyResult {
  exitCode: number;
  /** Bits of the exit code: copied, extra, mismatched, failed, fatal. */
  bits: string[];
  /** Exit code >= 8. */
  failed: boolean;
  /** One per path and Win32 error code; relativePath is relative to the copy's source, '/' separated. */
  errors: { code: number; path: string | null; message: string | null; attempts: number; relativePath: string | null }[];
  logPath: string;
  /** The SMB share the script mapped for the copy (capture and landing v3), with whether its mapping was removed afterwards; null without one. */
  share?: { root: string; user: string; disconnected: boolean } | null;
}

export interface CaptureData {
  key: string;
  source: string;
  volume: string;
  shadow: { id: string; deviceObject: string; link: string; deleted: boolean };
  robocopy: (Omit<RobocopyResult, never> & { destination: string }) | null;
  restic: {
    exitCode: number;
    failed: boolean;
    complete: boolean;
    snapshotId: string | null;
    summary: Record<string, number> | null;
    errors: { item: string; during: string; message: string | null }[];
  } | null;
  acl: {
    exitCode: number;
    failed: boolean;
    processed: number | null;
    failedCount: number | null;
    savePath: string;
    sha256: string | null;
    bytes: number;
    entries: number;
    sids: string[];
  } | null;
  staleShadowRemoved: string | null;
  cleanup: { linkRemoved: boolean; shadowDeleted: boolean; errors: string[] };
}

// ------------------------------------------------------------ freeze / thaw

export interface FreezeData {
  statePath: string;
  resumed: boolean;
  /** Stop order: dependents before what they depend on. */
  order: string[];
  services: {
    name: string;
    requested: boolean;
    dependentOf: string | null;
    priorState: string;
    priorStartMode: string;
    priorDelayedAutoStart: boolean;
    action: 'stopped' | 'already-stopped';
    startModeSetTo: 'Disabled' | null;
  }[];
}

export interface ThawData {
  statePath: string;
  reapplied: boolean;
  services: { name: string; startMode: string; delayedAutoStart: boolean; priorState: string; action: 'started' | 'already-running' | 'left-stopped'; state: string }[];
}

// ------------------------------------------------------------ landing

export type LandingManualReason =
  | 'path-missing'
  | 'path-conflict'
  | 'account-not-found'
  | 'needs-password'
  | 'register-failed'
  | 'service-missing'
  | 'sid-unresolved'
  | 'acl-root-mismatch';

export interface LandingData {
  folders: {
    source: string;
    destination: string;
    exact: boolean;
    /** Null for a folder restored from a restic repository. */
    robocopy: RobocopyResult | null;
    /** A folder restored from a restic repository (`restic` in the folder's input), else null. */
    restic: { snapshot: string; exitCode: number | null; failed: boolean; restored: boolean; alreadyLanded: boolean; errorLines: number } | null;
    acl: { exitCode: number | null; failed: boolean; processed: number | null; failedCount: number | null; unresolvedSids: string[] } | null;
  }[];
  shares: { name: string; path: string; action: 'created' | 'updated' | 'unchanged' | 'manual'; granted: ShareAccess[]; extraAccess: ShareAccess[] }[];
  scheduledTasks: { path: string; name: string; logonType: string | null; action: 'registered' | 'manual' }[];
  services: { name: string; present: boolean }[];
  /** What a person must do before validation. */
  manualSteps: { kind: 'share' | 'scheduledTask' | 'service' | 'acl'; name: string; reason: LandingManualReason; detail: string }[];
}
