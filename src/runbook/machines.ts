import { z } from 'zod';
import { envName } from './schema-common.ts';

/**
 * Runbook sections for machines and vaults: how Rubicon reaches the target,
 * the proving ground and the vault hosts, and what kind each vault is.
 * Parse only; src/runbook/load.ts normalizes (paths resolved against the
 * runbook's folder) and checks cross-field rules.
 */

const posixAbsolute = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => p.startsWith('/'), { message: 'must be an absolute path on that machine, e.g. "/srv/ehr"' })
  .refine((p) => !p.split('/').includes('..'), { message: 'must not contain ".."' });

/** How to log in to a Linux machine with the system's OpenSSH client. */
export const SshSettingsSchema = z
  .object({
    /** Host name or address, as this machine and the target resolve it. */
    host: z.string().min(1, 'must name the machine, e.g. ehr01.example.org or 198.18.0.2'),
    port: z.number().int().min(1, 'must be a TCP port (1-65535)').max(65535, 'must be a TCP port (1-65535)').default(22),
    user: z.string().min(1, 'must name the account Rubicon logs in as, e.g. root'),
    /** Private key file, relative to the runbook's folder. Only this key is offered. */
    identityFile: z.string().min(1, 'must name the private key file Rubicon logs in with, e.g. ./keys/rubicon_ed25519'),
    /** known_hosts file holding the machine's host key, relative to the runbook's folder. Host keys are always checked. */
    knownHosts: z.string().min(1, 'must name a known_hosts file that holds the host key (ssh-keyscan it and check it against the console)'),
    connectTimeoutSeconds: z.number().positive('must be more than 0').default(10),
    /** Deadline of a short command (stat, a manifest read); long steps have their own. */
    commandTimeoutSeconds: z.number().positive('must be more than 0').default(120),
    /** A bastion, passed to ssh's ProxyJump as is. */
    proxyJump: z.string().min(1).optional(),
  })
  .strict();

const powershellProgram = z.enum(['powershell', 'pwsh'], { error: 'must be "powershell" (Windows PowerShell 5.1, on every Windows Server) or "pwsh" (PowerShell 7)' });

/** A Windows Server over OpenSSH whose DefaultShell is PowerShell (src/machines/windows/openssh.ts). */
const OpenSshWindowsSchema = SshSettingsSchema.extend({
  kind: z.literal('openssh-windows'),
  /** The PowerShell each command starts. Default powershell. */
  powershell: powershellProgram.default('powershell'),
}).strict();

/** An Azure VM through managed Run Command (src/machines/windows/run-command.ts). */
const AzureRunCommandSchema = z
  .object({
    kind: z.literal('azure-run-command'),
    /** NAME of the environment variable holding the subscription id. */
    subscriptionIdEnv: envName.default('AZURE_SUBSCRIPTION_ID'),
    resourceGroup: z.string().min(1, 'must name the resource group of the VM'),
    vmName: z.string().min(1, 'must name the VM'),
    /** Blob container for output append blobs (the instance view keeps only 4 KB): https://<account>.blob.core.windows.net/<container>, no SAS. */
    outputContainer: z
      .string()
      .regex(/^https:\/\/[^/?#\s]+\/[^/?#\s]+\/?$/, 'must be a blob container URL, https://<account>.blob.core.windows.net/<container>, without a SAS token (the VM writes with its managed identity)')
      .optional(),
    /** Client id of the VM's user-assigned identity that writes the blobs. Default: its system-assigned identity. */
    outputIdentityClientId: z.string().min(1).optional(),
    /** default: DefaultAzureCredential; azure-pipelines: AzurePipelinesCredential from the pipeline's service connection. */
    credential: z.enum(['default', 'azure-pipelines']).default('default'),
    /** The PowerShell the Run Command script runs in. Default powershell (5.1, on every Windows Server). */
    powershell: powershellProgram.default('powershell'),
    /** Deadline of a short command (a Run Command takes 20 s or more to start). */
    commandTimeoutSeconds: z.number().positive('must be more than 0').default(1800),
  })
  .strict();

export const TransportSchema = z.discriminatedUnion(
  'kind',
  [
    z.object({ kind: z.literal('local') }).strict(),
    SshSettingsSchema.extend({ kind: z.literal('ssh') }).strict(),
    OpenSshWindowsSchema,
    AzureRunCommandSchema,
  ],
  { error: 'must have kind "local" (this machine), "ssh" (a Linux server over OpenSSH), "openssh-windows" (a Windows Server over OpenSSH and PowerShell) or "azure-run-command" (an Azure VM through Run Command)' },
);

/** The proving ground as its own machine. */
export const ProvingGroundSchema = z
  .object({
    transport: TransportSchema,
    /** Scratch folder on the proving ground where restores happen (absolute on that machine). */
    root: posixAbsolute,
    /** Where Rubicon keeps step folders and grants on that machine. */
    workDir: posixAbsolute.default('/var/tmp/rubicon'),
  })
  .strict();

const vaultName = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may hold letters, digits, ".", "_" and "-" only, starting with a letter or digit');

const vaultHost = SshSettingsSchema.extend({
  /**
   * The authorized_keys file on the vault host where Rubicon adds
   * time-limited keys (grants) for the target and the proving ground.
   * Default: ~/.ssh/authorized_keys of `user`.
   */
  authorizedKeysFile: posixAbsolute.optional(),
}).strict();

const removedFlag = (what: string) =>
  z
    .undefined({ error: `is not a runbook setting any more: Rubicon reads whether a vault is ${what} from the vault itself; remove the field` })
    .optional()
    .describe(`Not a setting (refused if present): Rubicon reads whether the vault is ${what} from the vault itself.`);

/**
 * An sftp vault's folder as an SMB share (a NAS that serves the same folder
 * over SSH to Rubicon and over SMB to the Windows server). `unc` names the
 * vault's folder itself as the Windows server reaches it; the password is
 * never in the runbook: passwordEnv or passwordFile names where it is.
 */
export const SmbShareSchema = z
  .object({
    // \\server\share or \\server\share\folder: the vault's `path` as the Windows server sees it.
    unc: z
      .string({ error: 'must be the UNC path of the vault folder as the Windows server sees it, e.g. "\\\\nas01\\rubicon"' })
      .regex(/^\\\\[A-Za-z0-9._-]+\\[^\\/:*?"<>|\r\n\0]+(\\[^\\/:*?"<>|\r\n\0]+)*\\?$/, 'must be the UNC path of the vault folder as the Windows server sees it, e.g. "\\\\nas01\\rubicon" (server, share, optional folders; no drive letter, no forward slashes)'),
    // The SMB account the Windows server maps the share with (NAS\\user or user).
    user: z.string().min(1, 'must name the SMB account the Windows server connects with, e.g. rubicon').regex(/^[^\r\n\0"]+$/, 'must be one line without double quotes'),
    // NAME of the environment variable holding the SMB password.
    passwordEnv: envName.optional(),
    // Or a file holding it (one line, mode 0600), relative to the runbook's folder.
    passwordFile: z.string().min(1, 'must not be empty').optional(),
    password: z.undefined({ error: 'never write the SMB password into the runbook: name an environment variable in passwordEnv or a file in passwordFile' }).optional(),
  })
  .strict()
  .refine((s) => (s.passwordEnv === undefined) !== (s.passwordFile === undefined), { message: 'name exactly one of passwordEnv (an environment variable) or passwordFile (a file) for the SMB password' });

export const VaultSchema = z.discriminatedUnion(
  'kind',
  [
    z
      .object({
        name: vaultName,
        kind: z.literal('filesystem'),
        /** A folder on this machine (a local disk or a mounted NAS share), relative to the runbook's folder. */
        path: z.string().min(1, 'must not be empty'),
        /** Kept for older runbooks: a filesystem vault is off the target when its folder is outside the target's root (checked, not trusted). */
        offTarget: z.boolean().optional(),
        immutable: removedFlag('immutable'),
        /**
         * Encryption at rest (AES-256-GCM): the 32-byte key (64 hex digits or base64) from an
         * environment variable (keyEnv) or a 0600 file (keyFile, relative to the runbook's folder).
         */
        encryption: z
          .object({
            keyEnv: envName.optional(),
            keyFile: z.string().min(1).optional(),
            key: z.undefined({ error: 'never write the encryption key into the runbook: name an environment variable in keyEnv or a file in keyFile' }).optional(),
          })
          .strict()
          .refine((e) => (e.keyEnv === undefined) !== (e.keyFile === undefined), { message: 'name exactly one of keyEnv (an environment variable) or keyFile (a file) for the key' })
          .optional(),
      })
      .strict(),
    z
      .object({
        name: vaultName,
        kind: z.literal('sftp'),
        /** The vault host (Linux, OpenSSH with sftp and rsync, coreutils sha256sum). */
        host: vaultHost,
        /** The vault's folder on the vault host. */
        path: posixAbsolute,
        /** The same folder as an SMB share a Windows target writes into with robocopy (method robocopy; docs/vaults.md, "SMB"): `unc` the folder as the Windows server sees it (\\server\share or \\server\share\folder), `user` the SMB account, and passwordEnv (a variable's NAME) or passwordFile (one line, 0600) for its password, never the password itself. */
        smb: SmbShareSchema.optional(),
        offTarget: removedFlag('off the target'),
        immutable: removedFlag('immutable'),
      })
      .strict(),
    z
      .object({
        name: vaultName,
        kind: z.literal('restic'),
        /** The vault host holding the repository (restic installed there: checks run where the data is). */
        host: vaultHost,
        /** The repository's folder on the vault host; others reach it as sftp:<user>@<host>:<path>. */
        path: posixAbsolute,
        /** NAME of the environment variable holding the repository password (never the password itself). */
        passwordEnv: envName.optional(),
        /** Or a file holding it, relative to the runbook's folder (mode 0600). */
        passwordFile: z.string().min(1).optional(),
        password: z.undefined({ error: 'never write the repository password into the runbook: name an environment variable in passwordEnv or a file in passwordFile' }).optional(),
        offTarget: removedFlag('off the target'),
        immutable: removedFlag('immutable'),
      })
      .strict()
      .superRefine((v, ctx) => {
        if ((v.passwordEnv === undefined) === (v.passwordFile === undefined)) {
          ctx.addIssue({ code: 'custom', path: ['passwordEnv'], message: 'name exactly one of passwordEnv (an environment variable) or passwordFile (a file) for the repository password' });
        }
      }),
    z
      .object({
        name: vaultName,
        kind: z.literal('azure-blob'),
        /** https://<account>.blob.core.windows.net (an emulator: http://127.0.0.1:<port>/<account>); no query string, no SAS. */
        accountUrl: z
          .string()
          .url('must be a URL like https://contoso.blob.core.windows.net')
          .refine((u) => !u.includes('?'), { message: 'must not carry a query string: never put a SAS into the runbook (Rubicon makes its own, short-lived)' })
          .refine((u) => u.startsWith('https://') || /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(u), { message: 'must be https:// (plain http only for an emulator on loopback)' }),
        /** The container (lower case, 3-63 characters). One container per vault: a SAS scopes to a container, not to a folder of it. */
        container: z.string().regex(/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/, 'must be a container name: 3-63 lower-case letters, digits and single hyphens'),
        /** Folder inside the container. Default "rubicon". */
        prefix: z
          .string()
          .regex(/^(?:[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*)?$/, 'must be a folder path like "rubicon/clinic-a" (no leading or trailing slash)')
          .default('rubicon'),
        /**
         * default: Entra ID through DefaultAzureCredential (managed identity, workload identity, az login); grants are user-delegation SAS.
         * shared-key: the account key from the environment variable keyEnv (never the key itself).
         */
        credential: z
          .discriminatedUnion('kind', [
            z.object({ kind: z.literal('default') }).strict(),
            z.object({ kind: z.literal('shared-key'), accountName: z.string().regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name'), keyEnv: envName }).strict(),
          ])
          .default({ kind: 'default' }),
        /** Blocks in flight per object. Default 8. */
        concurrency: z.number().int().min(1).max(64).default(8),
        /** Block size in MiB. Default 8. */
        blockSizeMiB: z.number().int().min(1).max(4000).default(8),
        /** Days the copies must stay immutable: a shorter WORM policy does not count. Default 30. */
        retentionDays: z.number().int().min(1).max(36500).default(30),
        /** The account's encryption key source as ARM reports it, to name customer-managed keys in the report. */
        keySource: z.enum(['Microsoft.Storage', 'Microsoft.Keyvault']).optional(),
        accountKey: z.undefined({ error: 'never write the account key into the runbook: name an environment variable in credential.keyEnv' }).optional(),
        sas: z.undefined({ error: 'never write a SAS into the runbook: Rubicon makes short-lived ones itself' }).optional(),
        connectionString: z.undefined({ error: 'never write a connection string into the runbook: use credential (default, or shared-key with keyEnv)' }).optional(),
        offTarget: removedFlag('off the target'),
        immutable: removedFlag('immutable'),
      })
      .strict(),
  ],
  { error: 'must have kind "filesystem" (a folder here), "sftp" (a folder on an SSH vault host), "restic" (a restic repository on an SSH vault host) or "azure-blob" (an Azure Blob container)' },
);

/** `infra.kind: manual`: the engineer rebuilds the server; Rubicon checks that it really was rebuilt. */
export const ManualInfraSchema = z
  .object({
    kind: z.literal('manual'),
    /** The image the target runs now, for the report. */
    currentImage: z.string().min(1).default('unknown'),
    /** What the engineer must do at the crossing, in addition to Rubicon's own text. */
    instructions: z.string().min(1).optional(),
    rebuilt: z
      .object({
        /** The rebuilt server's /etc/os-release must have this PRETTY_NAME (or NAME + VERSION_ID, e.g. "Debian GNU/Linux 13"). */
        osRelease: z.string().min(1, 'must name the OS the rebuilt server runs, e.g. "Debian GNU/Linux 13 (trixie)"'),
        /** The machine id must differ from the old server's (/etc/machine-id). Default true. */
        newMachineId: z.boolean().default(true),
        /**
         * Where the rebuilt server's host key comes from: a known_hosts file
         * (relative to the runbook's folder) the engineer fills from the
         * console after the reinstall. Rubicon requires it to differ from the old key.
         */
        knownHosts: z.string().min(1, 'must name the known_hosts file that will hold the rebuilt server\'s host key'),
      })
      .strict(),
    /** A rollback point the engineer made (a hypervisor snapshot, a disk image), described for the report; confirm it with a manual step. */
    rollback: z.object({ description: z.string().min(1) }).strict().optional(),
    /**
     * The volumes the reinstall wipes, as mount points on the target (e.g.
     * ["/", "/srv"]; a Windows target: drive letters or folders, ["C:\\",
     * "D:\\"]). Default: every local filesystem mounted under target.root (a
     * Windows target: the root and every local fixed volume), found at
     * discovery (docs/coverage.md).
     */
    destroys: z
      .array(z.union([posixAbsolute, z.string().regex(/^[A-Za-z]:([\\/]|$)/, { message: 'must be an absolute path on that machine, e.g. "/srv/ehr" or (a Windows target) "D:\\"' })]))
      .min(1, 'must name at least one volume, e.g. ["/"] or ["C:\\", "D:\\"]; leave it out to mean every local volume')
      .optional(),
  })
  .strict();

export const SandboxInfraSchema = z
  .object({
    kind: z.literal('sandbox'),
    /** The proving ground's folder, relative to the runbook's folder. */
    provingGround: z.string().min(1),
    /** Folder the sandbox keeps its rollback copy of the target in, relative to the runbook's folder. */
    rollback: z.string().min(1).default('./rollback'),
    /** The image the sandbox target "runs" now, for the report. */
    currentImage: z.string().min(1).default('Windows Server 2016 Standard'),
  })
  .strict();
