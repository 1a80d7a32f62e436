import { RubiconError } from '../core/errors.ts';
import type { CommandResult, Host } from './host.ts';

/**
 * The Host a network engine (DatabaseEngine.overNetwork) gets on a remote
 * target (ssh, openssh-windows, azure-run-command): the machine's files are
 * not on this computer and no command runs through it. resolve() and exec()
 * throw PRECONDITION_FAILED naming the path and the machine, so a method
 * that needs the database server's files here (a BACKUP TO DISK read back
 * through a mount) fails typed and is recorded as that method's failure;
 * the methods whose bytes go straight into a vault, or whose files the
 * engine makes on this computer, never call it. Pure: touches nothing.
 */
export class RemoteFilesHost implements Host {
  readonly kind = 'remote' as const;
  readonly name: string;

  constructor(name: string) {
    this.name = name;
  }

  resolve(relative: string): string {
    throw new RubiconError('PRECONDITION_FAILED', `"${relative}" is on ${this.name}, whose files this computer cannot read: a method that reads the database server's backup files here does not run on a remote target`, {
      hint: 'use a method that writes straight into a vault (SQL Server: engines.mssql.backupToUrl with method mssql-native-url), or reach the target through the local transport with its backup folder mounted here',
    });
  }

  exec(file: string): Promise<CommandResult> {
    return Promise.reject(
      new RubiconError('PRECONDITION_FAILED', `${file} cannot run on ${this.name} through an engine's host: the target is a remote machine`, {
        hint: 'commands on a remote target run as the phases\' journaled steps, never through an engine',
      }),
    );
  }
}
