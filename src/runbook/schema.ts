import { z } from 'zod';
import { parseIsoTime } from '../gate/current.ts';
import { ManualInfraSchema, ProvingGroundSchema, SandboxInfraSchema, TransportSchema, VaultSchema } from './machines.ts';
import { envName, relPath } from './schema-common.ts';
import { PulumiAzureSectionSchema } from './azure.ts';

export { envName, relPath };

/**
 * The runbook: the declarative description of one upgrade. This module owns
 * raw input: parse (this schema) → normalize (`normalize` in
 * src/runbook/load.ts, every default filled) → rules (cross-field checks).
 * Nothing outside src/runbook sees the raw shape.
 *
 * Paths in a runbook are relative to the runbook file's folder (vault and
 * sandbox paths) or to the target root (declared items, discovery roots).
 */

const name = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may hold letters, digits, ".", "_" and "-" only, starting with a letter or digit');

/**
 * An instant: ISO 8601 date AND time WITH a zone, by the gate's own rules
 * (parseIsoTime in src/gate/current.ts), so the runbook accepts exactly what
 * the gate will believe. "1", "Dec 1 2026", "2026-12-01" (no time),
 * "2026-12-01T09:00" (no zone) and "2026-02-30T09:00:00Z" (no such day) are
 * refused. Whether it is in the future or too old is checked when a run
 * starts (checkBeforeStart in load.ts), against the policy.
 */
const ISO_INSTANT =
  'must be an ISO 8601 date and time with a zone, e.g. 2026-11-28T09:00:00Z or 2026-11-28T10:00:00+01:00 (a date alone, a time without Z or ±hh:mm, or a day that does not exist is refused)';
const isoInstant = z.string({ error: ISO_INSTANT }).refine((s) => !Number.isNaN(parseIsoTime(s)), { message: ISO_INSTANT });

/**
 * Upper bounds on what a runbook may list. A runbook describes one server's
 * upgrade; these are far above any real one (a vendor names a handful of
 * folders) and low enough that a mistaken or hostile runbook is refused in
 * milliseconds instead of making discovery and the checklist quadratic
 * (100,000 declared folders took minutes and gigabytes). Documented in
 * docs/inputs.md; raising one is a code change with a reason.
 */
export const RUNBOOK_LIMITS = {
  /** The runbook file itself, in bytes (a real one is a few KiB; 1,000 declared folders with long paths fit; YAML parsing takes seconds past a few hundred KiB). */
  fileBytes: 128 * 1024,
  /** YAML alias expansions (`*name`): the `yaml` package's maxAliasCount; stops "billion laughs". */
  yamlAliases: 100,
  /** Nesting of YAML flow collections (`[ ]`, `{ }`): deeper is refused before parsing, which recurses. */
  yamlFlowDepth: 32,
  declaredFolders: 1000,
  declaredDatabases: 200,
  vendorJobs: 50,
  discoveryRoots: 100,
  discoveryExcludes: 1000,
  vaults: 16,
  overrides: 200,
  manualSteps: 200,
  services: 100,
} as const;

const atMost = (n: number, what: string) => `lists more than ${n.toLocaleString('en-US')} ${what}, the most a runbook may hold: list fewer (a runbook describes one server; see docs/inputs.md)`;

/** Folder methods: file-mirror on a local target; restic and rsync run on a Linux target and write straight into their vaults; restic and robocopy (into an sftp vault's SMB share) on a Windows target. */
export const FOLDER_METHODS = ['file-mirror', 'restic', 'rsync', 'robocopy'] as const;

/** SQLite methods: node:sqlite in this process (local target) or the sqlite3 CLI on the target (ssh). */
export const SQLITE_METHODS = ['sqlite-backup-api', 'sqlite-sql-dump', 'sqlite3-backup', 'sqlite3-dump'] as const;

export { VaultSchema };

/**
 * A vendor's own backup job. `engine` says which kind of database it backs up:
 * - sqlite (the default, so older runbooks keep working): `command` is run on
 *   the target without a shell;
 * - mssql: `agentJob` names the SQL Agent job (msdb.dbo.sysjobs.name) that
 *   Rubicon starts with sp_start_job and waits for.
 * `output` is the folder the job writes its backup into, relative to the
 * target root (for mssql: where the target host sees the folder the job's
 * BACKUP writes to; the file is read there by name).
 */
export const VendorJobSchema = z
  .object({
    name: z.string().min(1),
    database: z.string().min(1),
    engine: z.enum(['sqlite', 'mssql']).default('sqlite'),
    command: z.array(z.string().min(1)).min(1, 'must name the program to run, e.g. ["node", "ehr/A/bin/sqlbackup.ts"]').optional(),
    agentJob: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters (a SQL Agent job name)').optional(),
    output: relPath,
    timeoutSeconds: z.number().int().positive().default(3600),
  })
  .strict()
  .superRefine((j, ctx) => {
    if (j.engine === 'sqlite') {
      if (j.command === undefined) ctx.addIssue({ code: 'custom', path: ['command'], message: 'is required for a sqlite vendor job: name the program to run, e.g. ["node", "ehr/A/bin/sqlbackup.ts"]' });
      if (j.agentJob !== undefined) ctx.addIssue({ code: 'custom', path: ['agentJob'], message: 'is for engine: mssql only: remove it, or set engine: mssql if the job is a SQL Agent job' });
    } else {
      if (j.agentJob === undefined) ctx.addIssue({ code: 'custom', path: ['agentJob'], message: 'is required for an mssql vendor job: the SQL Agent job\'s name as msdb.dbo.sysjobs lists it, e.g. "EHR Nightly Backup"' });
      if (j.command !== undefined) ctx.addIssue({ code: 'custom', path: ['command'], message: 'is for sqlite vendor jobs: an mssql vendor job starts a SQL Agent job, name it in agentJob instead' });
    }
  });

export const ManualStepSchema = z
  .object({
    id: name,
    description: z.string().min(1),
    confirmedBy: z.string().min(1).optional(),
    confirmedAt: isoInstant.optional(),
  })
  .strict();

const OVERRIDE_ITEM =
  'is required: an override names exactly one item: an item id from the checklist (e.g. folder:ehr/X), a manual step id, for rule policy.not-looser the policy field (e.g. minVaults), or "gate" for a rule about the whole gate (e.g. rollback.exists); add one override per item';

export const OverrideSchema = z
  .object({
    rule: z.string().min(1),
    /**
     * Exactly one thing the override applies to: an item id from the
     * checklist (e.g. folder:ehr/X), a manual step id, for policy.not-looser
     * the policy field (e.g. minVaults), or `gate` for a rule about the whole
     * gate (rollback.exists). Required: an override never covers every item of
     * a rule at once.
     */
    item: z
      .string({ error: OVERRIDE_ITEM })
      .min(1, OVERRIDE_ITEM),
    reason: z.string().trim().min(10, 'must explain why, in at least 10 characters'),
    by: z.string().min(1, 'must name who takes responsibility'),
  })
  .strict();

export const PolicySchema = z
  .object({
    minIndependentMethods: z.number().int().min(1).optional(),
    minVaults: z.number().int().min(1).optional(),
    minOffTargetVaults: z.number().int().min(0).optional(),
    maxProofAgeHours: z.number().positive().optional(),
    requireRollbackPoint: z.boolean().optional(),
    requireManualSteps: z.boolean().optional(),
    requireImmutableCopy: z.boolean().optional(),
    maxConfirmationAgeHours: z.number().positive().optional(),
  })
  .strict();

// ------------------------------------------------------------- engines.mssql

/** A folder as a SQL Server machine names it: `D:\Rubicon`, `\\nas\share`, `/var/opt/mssql/backup`. */
const serverPath = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => /^([A-Za-z]:[\\/]|\\\\[^\\]+\\|\/)/.test(p), {
    message: 'must be an absolute path as the SQL Server machine names it, e.g. "D:\\Rubicon" or "/var/opt/mssql/backup"',
  });

/** The same folder twice: as the SQL Server names it, and relative to a host root (a mount or share of it). */
const serverFolder = z
  .object({
    /** As the SQL Server machine names it. */
    directory: serverPath,
    /** The same folder relative to the host's root (target root, or the proving ground's root). */
    directoryOnHost: relPath,
  })
  .strict();

/**
 * How Rubicon logs in to one SQL Server. The password is never in the
 * runbook: `passwordEnv` names the environment variable that holds it, and
 * a `password` field is refused.
 */
export const MssqlConnectionSchema = z
  .object({
    /** Host name or address. */
    server: z.string().min(1, 'must name the SQL Server host, e.g. ehr-sql01.example.org'),
    /** TCP port; default 1433 (ignored with instanceName: SQL Browser resolves it). */
    port: z.number().int().min(1, 'must be a TCP port (1-65535)').max(65535, 'must be a TCP port (1-65535)').optional(),
    /** Named instance, e.g. EHR for SERVER\EHR. */
    instanceName: z.string().min(1, 'must not be empty').optional(),
    /** SQL login, or a Windows account when `domain` is set (NTLM). */
    user: z.string().min(1, 'must name the login Rubicon uses (it needs sysadmin)'),
    /** Windows domain for NTLM; absent = SQL authentication. */
    domain: z.string().min(1, 'must not be empty').optional(),
    /** NAME of the environment variable holding the password. Checked at load time. */
    passwordEnv: envName,
    /** Refused: a password never goes into the runbook. */
    password: z
      .undefined({ error: 'never write the password into the runbook: put it in an environment variable and name that variable in passwordEnv' })
      .optional(),
    /** TLS: required, no default. true (or "strict", TDS 8) in production; false only for a loopback test endpoint. */
    encrypt: z.union([z.boolean(), z.literal('strict')], {
      error: 'must be stated: true (or "strict" for TDS 8) in production; false only for a test endpoint on loopback',
    }),
    /** Accept any server certificate: required, no default. false in production. */
    trustServerCertificate: z.boolean({
      error: 'must be stated: false in production (install a certificate this machine trusts, or name it in serverName); true only for a lab server with a self-signed certificate',
    }),
    /** Name the server certificate is validated against, when it differs from `server`. */
    serverName: z.string().min(1, 'must not be empty').optional(),
    /** TCP + PRELOGIN + LOGIN7; default 15. */
    connectTimeoutSeconds: z.number().positive('must be more than 0').default(15),
    /** Discovery, msdb queries, job polling; default 60. */
    requestTimeoutSeconds: z.number().positive('must be more than 0').default(60),
    /** BACKUP, RESTORE, DBCC CHECKDB, fingerprints; default 0 = no limit (the run's abort signal is the limit). */
    longRequestTimeoutSeconds: z.number().min(0, 'must be 0 (no limit) or more').default(0),
  })
  .strict();

/** The SQL Server the rebuilt target will run (engines.mssql.landingServer). */
export const MssqlLandingServerSchema = z
  .object({
    /** e.g. 16.0.4135.4 (SERVERPROPERTY('ProductVersion')). */
    productVersion: z.string().regex(/^\d+\.\d+\.\d+/, 'must be a SQL Server version such as 16.0.4135.4'),
    /** e.g. "Standard Edition (64-bit)" (SERVERPROPERTY('Edition')). */
    edition: z.string().min(1, 'must name the edition, e.g. "Standard Edition (64-bit)"'),
    /** SERVERPROPERTY('EngineEdition'): 2 Standard/Web, 3 Enterprise/Developer, 4 Express. */
    engineEdition: z.number().int().min(1).max(12),
    /** The instance collation it is installed with. */
    collation: z.string().min(1).optional(),
  })
  .strict();

/** A vendor-declared smoke query and the shape of its result (never its values). */
export const MssqlSmokeQuerySchema = z
  .object({
    name: z.string().min(1, 'must name the check, e.g. "patients are there"'),
    /** The database it runs in (its restored copy on the proving ground). */
    database: z.string().min(1),
    /** T-SQL, run inside a transaction that is rolled back. */
    query: z.string().min(1),
    /** Column names of the first result set, in order. */
    columns: z.array(z.string().min(1)).min(1).optional(),
    minRows: z.number().int().min(0).optional(),
    maxRows: z.number().int().min(0).optional(),
  })
  .strict();

/** The database methods of the mssql engine a runbook may choose (instance-level items always use instance-objects). */
export const MSSQL_DATABASE_METHODS = ['mssql-native-full', 'mssql-history', 'mssql-native-url'] as const;
/** The methods a runbook gets without naming any (mssql-native-url needs engines.mssql.backupToUrl, so it is chosen, never a default). */
export const MSSQL_DEFAULT_METHODS = ['mssql-native-full', 'mssql-history'] as const;

/** `engines.mssql`: the target's SQL Server, the proving ground's, and how backup files travel. */
export const MssqlSectionSchema = z
  .object({
    /** The target's SQL Server: discovery, fingerprints, capture. */
    connection: MssqlConnectionSchema,
    /** The proving ground's SQL Server: every capture is restored there. Must not be the target's. */
    provingGround: MssqlConnectionSchema,
    /** Where BACKUP writes Rubicon's own backups, as the target's SQL Server names the folder. */
    backupDirectory: serverPath,
    /** The same folder relative to the target root (a mount or share of it). Required on a local target; refused on a remote one (no folder of it is on this machine). */
    backupDirectoryOnHost: relPath.optional(),
    /** Where the proving ground's SQL Server reads artifact files; absent = the local scratch paths (SQL Server on the proving ground host itself). */
    provingGroundStaging: serverFolder.optional(),
    /** MOVE targets on the proving ground; default its InstanceDefaultDataPath / InstanceDefaultLogPath. */
    provingGroundDataDirectory: serverPath.optional(),
    provingGroundLogDirectory: serverPath.optional(),
    /** Folders of existing backups (mssql-history) and where the target host sees them; default: backupDirectory only. */
    existingBackups: z.array(serverFolder).optional(),
    /** Certificate name → NAME of the environment variable holding its private-key password (TDE, backup encryption). Checked at load time. */
    certificatePasswordEnv: z.record(z.string().min(1, 'must name a certificate'), envName).default({}),
    /** WITH COMPRESSION on Rubicon's backups (ignored on Express); default true. */
    compression: z.boolean().default(true),
    /** Polling interval while a vendor SQL Agent job runs; default 5. */
    agentPollSeconds: z.number().positive('must be more than 0').default(5),
    // -- issue 11 (SQL Server engine): additive, all optional --
    /** NAME of the variable with the password that encrypts BACKUP MASTER KEY / BACKUP SERVICE MASTER KEY files. */
    keyBackupPasswordEnv: envName.optional(),
    /** NAME of the variable with the password for master's database master key where Rubicon creates one (proving ground, landing). */
    masterKeyPasswordEnv: envName.optional(),
    /** The rebuilt server's SQL Server when it differs from `connection` (same shape); default `connection`. */
    landing: MssqlConnectionSchema.optional(),
    /** The SQL Server the rebuilt target will run, checked before the gate when it cannot be reached yet. */
    landingServer: MssqlLandingServerSchema.optional(),
    /** Where landing puts database files: `source` (default: the source's paths), `instance-default`, or given folders. */
    landingLayout: z
      .union([z.enum(['source', 'instance-default']), z.object({ dataDirectory: serverPath, logDirectory: serverPath }).strict()])
      .optional(),
    /** Vendor-declared smoke queries: run in the restored copy on every proof and at landing; only the result's shape is checked. */
    smokeQueries: z.array(MssqlSmokeQuerySchema).default([]),
    /**
     * Carry msdb's backup history (backupset, backupmediaset, backupmediafamily, backupfile of the user databases) as its own item:
     * captured as evidence, proven readable, reported at landing; never inserted into the rebuilt msdb (docs/mssql.md). Default false.
     */
    carryBackupHistory: z.boolean().default(false),
    /**
     * The name of an azure-blob vault of the runbook: method mssql-native-url backs up with BACKUP … TO URL straight into its
     * container (a write grant held by SQL Server as a SAS credential), and proofs and landing restore FROM URL (docs/mssql.md).
     */
    backupToUrl: z.string().min(1, 'must name an azure-blob vault of the runbook').optional(),
  })
  .strict();

/**
 * `coverage` (docs/coverage.md): what need not be captured although the
 * crossing destroys it, each entry with why and who decided it, and which
 * kept volumes must be captured all the same.
 */
export const CoverageSectionSchema = z
  .object({
    exclude: z
      .array(
        z
          .object({
            /** Relative to the target root: a file or a folder (everything under it). */
            path: relPath,
            reason: z.string().trim().min(10, 'must explain why these files need not survive the crossing, in at least 10 characters'),
            by: z.string().trim().min(1, 'must name who decided it'),
          })
          .strict(),
      )
      .default([]),
    /** Volumes the crossing keeps (data disks) whose contents must be captured all the same, relative to the target root. */
    alsoCapture: z.array(relPath).default([]),
  })
  .strict();

export const RunbookSchema = z
  .object({
    version: z.literal(1, { message: 'must be 1 (the only runbook version so far)' }),
    name,
    target: z
      .object({
        name,
        /**
         * Where the target's files start: the sandbox folder (local, relative
         * to the runbook) or an absolute path on the server (ssh, usually "/").
         */
        root: z.string().min(1, 'must be the folder standing in for the server, e.g. "./target", or "/" on a real server'),
        image: z.string().min(1, 'must name the image the rebuild installs, e.g. "Windows Server 2025 Datacenter"'),
        /**
         * `staging`: `rubicon rehearse` goes all the way (freeze, gate,
         * crossing, landing) to rehearse the upgrade on a copy of production.
         * `production` (default): rehearse never reaches the point of no return.
         */
        stage: z.enum(['production', 'staging']).default('production'),
        /** How Rubicon reaches the target: this machine (default) or ssh. */
        transport: TransportSchema.default({ kind: 'local' }),
        /** Where Rubicon keeps step folders and grant files on a remote target. */
        workDir: z.string().min(1).default('/var/tmp/rubicon'),
        /** systemd units the freeze stops (and the thaw restores exactly as found), e.g. [ehr-app.service]. */
        services: z
          .array(z.string().regex(/^[A-Za-z0-9@._:-]+$/, 'must be a systemd unit name, e.g. ehr-app.service'))
          .max(RUNBOOK_LIMITS.services, atMost(RUNBOOK_LIMITS.services, 'services'))
          .default([]),
        /**
         * How long the rebuild (the crossing) is expected to take, in minutes,
         * for the maintenance-window estimate of a run that does not cross
         * (a rehearsal of production). A previous run of this target that
         * measured its crossing wins over this figure. Absent: not counted.
         */
        expectedCrossingMinutes: z.number().positive().max(7 * 24 * 60, 'must be at most 10080 (a week), in minutes').optional(),
      })
      .strict(),
    /** The proving ground as its own machine; absent: the sandbox's local folder (infra.provingGround). */
    provingGround: ProvingGroundSchema.optional(),
    infra: z.discriminatedUnion('kind', [SandboxInfraSchema, ManualInfraSchema, PulumiAzureSectionSchema], {
      error: 'must have kind "sandbox" (local folders), "manual" (the engineer rebuilds the server; Rubicon stops at the crossing and waits) or "pulumi-azure" (an Azure VM rebuilt through its Pulumi stack)',
    }),
    declared: z
      .object({
        folders: z.array(relPath).max(RUNBOOK_LIMITS.declaredFolders, atMost(RUNBOOK_LIMITS.declaredFolders, 'folders')).default([]),
        databases: z
          .array(z.object({ name: z.string().min(1), engine: z.enum(['sqlite', 'mssql']), location: relPath.optional() }).strict())
          .max(RUNBOOK_LIMITS.declaredDatabases, atMost(RUNBOOK_LIMITS.declaredDatabases, 'databases'))
          .default([]),
      })
      .strict()
      .default({ folders: [], databases: [] }),
    vendorJobs: z.array(VendorJobSchema).max(RUNBOOK_LIMITS.vendorJobs, atMost(RUNBOOK_LIMITS.vendorJobs, 'vendor jobs')).default([]),
    discovery: z
      .object({
        roots: z
          .array(relPath)
          .min(1, 'must list at least one folder to search, e.g. ["."]')
          .max(RUNBOOK_LIMITS.discoveryRoots, atMost(RUNBOOK_LIMITS.discoveryRoots, 'roots')),
        depth: z.number().int().min(1).max(4).default(1),
        exclude: z.array(relPath).max(RUNBOOK_LIMITS.discoveryExcludes, atMost(RUNBOOK_LIMITS.discoveryExcludes, 'excludes')).default([]),
      })
      .strict(),
    /** Absent lists take the defaults of the target's transport (local: file-mirror and node:sqlite; ssh: restic, rsync and the sqlite3 CLI). */
    methods: z
      .object({
        // [] is allowed (a runbook for a database server only, e.g. SQL Server on Windows): a folder that discovery still finds has no method, and the gate refuses it (item.captured).
        folders: z.array(z.enum(FOLDER_METHODS)).optional(),
        databases: z
          .object({
            sqlite: z.array(z.enum(SQLITE_METHODS)).min(1).optional(),
            /** Used only with an engines.mssql section; default both of the engine's database methods. */
            mssql: z.array(z.enum(MSSQL_DATABASE_METHODS)).min(1).default([...MSSQL_DEFAULT_METHODS]),
          })
          .strict()
          .default({ mssql: [...MSSQL_DEFAULT_METHODS] }),
      })
      .strict()
      .default({ databases: { mssql: [...MSSQL_DEFAULT_METHODS] } }),
    /** Database engines beyond the built-in sqlite; each section is optional. */
    engines: z.object({ mssql: MssqlSectionSchema.optional() }).strict().default({}),
    vaults: z
      .array(VaultSchema)
      .min(1, 'must list at least one vault (the default policy needs two)')
      .max(RUNBOOK_LIMITS.vaults, atMost(RUNBOOK_LIMITS.vaults, 'vaults')),
    policy: PolicySchema.default({}),
    overrides: z.array(OverrideSchema).max(RUNBOOK_LIMITS.overrides, atMost(RUNBOOK_LIMITS.overrides, 'overrides')).default([]),
    manualSteps: z.array(ManualStepSchema).max(RUNBOOK_LIMITS.manualSteps, atMost(RUNBOOK_LIMITS.manualSteps, 'manual steps')).default([]),
    coverage: CoverageSectionSchema.default({ exclude: [], alsoCapture: [] }),
    permit: z.object({ validForMinutes: z.number().int().positive().max(24 * 60).default(120) }).strict().default({ validForMinutes: 120 }),
    /**
     * The key that signs this run's permit and journal (docs/trust.md): an
     * environment variable or a file holding an Ed25519 PKCS#8 PEM key, never
     * the key itself. Absent: this user's own key (~/.config/rubicon/keys).
     */
    trust: z
      .object({
        signingKey: z.union([
          z.object({ env: envName }).strict(),
          z.object({ file: z.string().min(1).refine((s) => !/-----BEGIN/.test(s), { message: 'holds a key: name the FILE that holds it' }) }).strict(),
        ], { error: 'must be { env: VARIABLE } or { file: PATH } naming where the Ed25519 private key is' }),
      })
      .strict()
      .optional(),
  })
  .strict();

export type RawRunbook = z.input<typeof RunbookSchema>;
export type ParsedRunbook = z.output<typeof RunbookSchema>;
