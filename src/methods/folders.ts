/**
 * Folder capture methods: which tool captures a data folder, where it runs
 * and which kind of vault it writes. The capture itself is in
 * src/run/capture-local.ts (file-mirror, in this process) and
 * src/run/capture-remote.ts (tools on the target writing straight into
 * their vaults).
 *
 * Independence: two methods are independent when they share neither the
 * tool nor the repository (restic into a restic repository; rsync into an
 * SFTP folder), so one tool's bug or one repository's damage cannot take
 * both copies.
 */
export interface FolderMethod {
  name: 'file-mirror' | 'restic' | 'rsync' | 'robocopy';
  origin: 'rubicon';
  independenceGroup: string;
  /** Where it runs: this process reading local files, or the tool on a remote Linux target. */
  runsOn: 'local' | 'remote';
  /** The vault kind it writes. */
  vaultKind: 'filesystem' | 'restic' | 'sftp';
  description: string;
}

export const FOLDER_METHODS: readonly FolderMethod[] = [
  {
    name: 'file-mirror',
    origin: 'rubicon',
    independenceGroup: 'file-mirror',
    runsOn: 'local',
    vaultKind: 'filesystem',
    description: 'copy + SHA-256 in one pass into every filesystem vault, content-addressed, with a manifest',
  },
  {
    name: 'restic',
    origin: 'rubicon',
    independenceGroup: 'restic',
    runsOn: 'remote',
    vaultKind: 'restic',
    description: 'restic backup --json on the target into a restic repository; restic check --read-data; manifest built on the target',
  },
  {
    name: 'rsync',
    origin: 'rubicon',
    independenceGroup: 'rsync',
    runsOn: 'remote',
    vaultKind: 'sftp',
    description: 'rsync from the target onto an SFTP vault host; SHA-256 manifest built on the target and checked on the vault host',
  },
  {
    // A Windows target: the capture script's robocopy /MIR from its VSS shadow into the sftp vault's SMB share (the vault's smb section), checked on the vault host like rsync's trees.
    name: 'robocopy',
    origin: 'rubicon',
    independenceGroup: 'robocopy',
    runsOn: 'remote',
    vaultKind: 'sftp',
    description: "robocopy /MIR on a Windows target from the capture script's VSS shadow into an sftp vault's SMB share; SHA-256 manifest built on the target and checked on the vault host (sha256sum) before the tree gets its name",
  },
];
