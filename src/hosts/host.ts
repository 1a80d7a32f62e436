/**
 * Host: where commands run and where a machine's files are. The sandbox uses
 * LocalHost (a folder standing in for a server); production adapters (ssh,
 * azure-run-command) implement the same interface.
 */

export interface CommandResult {
  command: string;
  args: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface ExecOptions {
  /** Working directory, relative to the host root. */
  cwd?: string;
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Kill the command after this long. */
  timeoutMs?: number;
}

export interface Host {
  readonly name: string;
  /** `remote`: a machine whose files this process cannot read (RemoteFilesHost: engines that reach their server over the network). */
  readonly kind: 'local' | 'ssh' | 'azure-run-command' | 'remote';
  /**
   * Absolute path on this machine for a path relative to the host's root.
   * Throws RubiconError(ARGUMENTS_INVALID) for a path that escapes the root.
   * Only hosts whose files are on this machine (local) implement it; others throw.
   */
  resolve(relative: string): string;
  /** Runs a program without a shell. Never throws for a non-zero exit: the caller reads exitCode. */
  exec(file: string, args: string[], options?: ExecOptions): Promise<CommandResult>;
}
