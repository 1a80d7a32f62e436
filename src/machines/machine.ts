/**
 * Machines: the computers Rubicon acts on (the target, the proving ground, a
 * vault host), each reached through a transport (local, ssh; the Windows
 * transports implement the same interface). The orchestrator decides,
 * records and checks; bytes move with real tools on the machine where the
 * data is. A machine runs commands and reads and writes SMALL files
 * (manifests, tool reports, grant files); a data set never streams through
 * the orchestrator unless the machine is local.
 *
 * Contracts every transport keeps:
 * - A Command is a program and its arguments, never a shell string: the
 *   transport quotes them for whatever shell the machine has, so an argument
 *   arrives byte for byte.
 * - Neither argv nor env may carry a secret (both are visible in the
 *   machine's process list). Secrets travel in files written with
 *   writeSmall(..., {mode: 0o600}) and are removed when the grant ends.
 * - exec() and run() never throw for a non-zero exit of the program: the
 *   caller reads exitCode and the tool's own report. They throw a
 *   RubiconError (MACHINE_UNREACHABLE, MACHINE_HOST_KEY, MACHINE_AUTH,
 *   MACHINE_TIMEOUT, ...) when the transport itself failed, naming the
 *   machine and the fix.
 * - run() is keyed by a journal step id (src/run/steps.ts records it before
 *   calling). Calling run() again with the same id after the orchestrator
 *   died re-attaches to the step if it is still running or already finished
 *   on the machine, re-runs it when it is idempotent and its result was
 *   lost, and throws STEP_LOST for a non-idempotent step whose result was
 *   lost: such a step is never run twice.
 */

export type MachineOs = 'linux' | 'windows';
export type TransportKind = 'local' | 'ssh' | 'openssh-windows' | 'azure-run-command';

export interface Command {
  /** Program and arguments. The program is looked up on the machine's PATH. */
  argv: readonly string[];
  /** Bytes for the program's stdin (small). Absent: stdin is empty. */
  input?: string | Uint8Array;
  /** Extra environment variables (never secrets: see the contract above). */
  env?: Readonly<Record<string, string>>;
  /** Working directory, absolute on the machine. */
  cwd?: string;
}

export interface StepKey {
  /**
   * Stable across resume and unique in the run, e.g.
   * `r-20261201-101500-ab12/capture/folder:ehr/X/restic/backup`.
   */
  id: string;
  /**
   * True when running it again from scratch is safe (read-only, or it
   * overwrites only its own output). A vendor's backup job is not.
   */
  idempotent: boolean;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface StepResult extends ExecResult {
  /** The step was started by an earlier process and this call attached to it (or read its recorded result). */
  reattached: boolean;
}

export interface ExecOptions {
  /** Kill the command after this long (the transport's default otherwise). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Output kept per stream; more is cut with a marker line. Default 8 MiB. */
  maxOutputBytes?: number;
}

export interface Machine {
  /** The name the runbook gives it (target name, vault name, `proving-ground`). */
  readonly name: string;
  readonly os: MachineOs;
  readonly transport: TransportKind;
  /** Where it is, for messages and reports: `ssh root@198.18.0.2:22`, `local`. No secrets. */
  readonly address: string;
  /** Present only when the machine's files are this process's own files (the local transport). */
  readonly local?: LocalFiles;
  /** A short command: not journaled, bounded output, default timeout of the transport. */
  exec(cmd: Command, options?: ExecOptions): Promise<ExecResult>;
  /** A long step keyed by the journal; see the contract above. */
  run(step: StepKey, cmd: Command, options?: ExecOptions): Promise<StepResult>;
  /** Reads a whole small file (absolute path). MACHINE_FILE_MISSING when absent, MACHINE_FILE_TOO_LARGE over maxBytes. */
  readSmall(path: string, maxBytes: number): Promise<Uint8Array>;
  /** Writes a small file atomically (temp file and rename), creating parent folders. Default mode 0o600. */
  writeSmall(path: string, data: string | Uint8Array, options?: { mode?: number }): Promise<void>;
  /** Ends connections (ssh ControlMaster). Idempotent; the machine can be used again afterwards. */
  close(): Promise<void>;
  /**
   * Optional ability (found by asking): who the cloud platform says this
   * machine is, for transports that reach a machine through its platform
   * (azure-run-command: the VM's ARM resource id and its unique `vmId`,
   * which a recreated VM never keeps). Read-only; creates nothing on the
   * machine. Used to refuse landing on a VM the crossing did not make.
   */
  platformIdentity?(signal?: AbortSignal): Promise<PlatformIdentity>;
}

/** A machine as its cloud platform names it. `uniqueId` changes whenever the machine is recreated, even under the same name. */
export interface PlatformIdentity {
  /** e.g. `/subscriptions/…/virtualMachines/ehr-prd-01` (the name stays across a replace). */
  resourceId: string;
  /** e.g. ARM's `properties.vmId` (a GUID per VM instance). */
  uniqueId: string;
}

export interface LocalFiles {
  /** The machine's root on this computer: the sandbox folder, or `/` when Rubicon runs on the server itself. */
  readonly root: string;
}

/** A step that is still running when the caller gave up waiting is a timeout, not a failure of the tool. */
export const STEP_TIMEOUT_EXIT = 124;
