import type { TransportKind } from './machine.ts';
import { shJoin } from './posix.ts';
import { PosixMachine, type InvokeOptions, type RawResult } from './posix-machine.ts';
import { closeSsh, runSsh, sshControlPath, sshOptionArgs, type SshClientOptions } from './ssh-client.ts';

export { classifySshFailure } from './ssh-client.ts';

export interface SshMachineOptions extends SshClientOptions {
  name: string;
  /** Absolute folder on the machine for this run's step folders. */
  stepsRoot: string;
  /** Default deadline of a short command. */
  commandTimeoutSeconds?: number;
}

/**
 * The ssh transport to a Linux machine: the system's OpenSSH client
 * (src/machines/ssh-client.ts: BatchMode, strict host keys against the
 * runbook's known_hosts file only, IdentitiesOnly, one reused connection,
 * ConnectTimeout and ServerAlive, ssh's own failures as typed errors), with
 * argv quoted for the remote `sh` and the POSIX step protocol
 * (posix-machine.ts). A program's exit code is returned as is.
 */
export class SshMachine extends PosixMachine {
  readonly name: string;
  readonly transport: TransportKind = 'ssh';
  readonly address: string;
  protected readonly stepsRoot: string;
  protected override readonly execTimeoutMs: number;
  private readonly o: SshMachineOptions;
  private readonly controlPath: string;

  constructor(o: SshMachineOptions) {
    super();
    this.o = o;
    this.name = o.name;
    this.address = `ssh ${o.user}@${o.host}:${o.port}`;
    this.stepsRoot = o.stepsRoot;
    this.execTimeoutMs = (o.commandTimeoutSeconds ?? 120) * 1000;
    this.controlPath = sshControlPath(o);
  }

  /** The ssh options every call uses. Exported shape for tools that take an ssh command (rsync -e, restic sftp.command). */
  sshArgs(): string[] {
    return sshOptionArgs(this.o, this.controlPath);
  }

  protected async invoke(argv: readonly string[], o: InvokeOptions): Promise<RawResult> {
    return runSsh(this.o, this.name, this.controlPath, shJoin(argv), o, argv.slice(0, 12).join(' '));
  }

  /** Ends the shared connection. Idempotent. */
  async close(): Promise<void> {
    await closeSsh(this.o, this.controlPath);
  }
}
