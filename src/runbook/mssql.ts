import type { z } from 'zod';
import { RubiconError } from '../core/errors.ts';
import type { MssqlEngineOptions } from '../engines/mssql/engine.ts';
import type { MssqlConnectionConfig } from '../engines/mssql/session.ts';
import type { MssqlConnectionSchema, MssqlSectionSchema } from './schema.ts';

/**
 * The runbook's `engines.mssql` section after normalize, and how it becomes
 * the engine's options. Secrets never live in the runbook or in this shape:
 * only the NAMES of the environment variables holding them. They are read
 * from the environment in two places only: the load-time rule (is it set?)
 * and `mssqlEngineOptions` (building the engine, in the orchestrator and in
 * the isolated proving process, which inherits the environment).
 */

export interface MssqlConnectionSettings {
  server: string;
  port?: number;
  instanceName?: string;
  user: string;
  domain?: string;
  /** NAME of the environment variable holding the password. */
  passwordEnv: string;
  encrypt: boolean | 'strict';
  trustServerCertificate: boolean;
  serverName?: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** 0 = no limit. */
  longRequestTimeoutMs: number;
}

export interface MssqlServerFolder {
  /** As the SQL Server machine names it. */
  directory: string;
  /** Relative to the host root (posix separators). */
  directoryOnHost: string;
}

export interface MssqlSettings {
  connection: MssqlConnectionSettings;
  provingGround: MssqlConnectionSettings;
  backupDirectory: string;
  /** Relative to the target root (posix separators). Absent on a remote target (its server's folder is not on this machine). */
  backupDirectoryOnHost?: string;
  provingGroundStaging?: MssqlServerFolder;
  provingGroundDataDirectory?: string;
  provingGroundLogDirectory?: string;
  existingBackups?: MssqlServerFolder[];
  /** Certificate name → NAME of the environment variable holding its private-key password. */
  certificatePasswordEnv: Record<string, string>;
  compression: boolean;
  agentPollMs: number;
  /** NAME of the variable for key backup files (DMK, SMK). */
  keyBackupPasswordEnv?: string;
  /** NAME of the variable for master's DMK where Rubicon creates one. */
  masterKeyPasswordEnv?: string;
  landing?: MssqlConnectionSettings;
  landingServer?: { productVersion: string; edition: string; engineEdition: number; collation?: string };
  smokeQueries: { name: string; database: string; query: string; columns?: string[]; minRows?: number; maxRows?: number }[];
  landingLayout?: 'source' | 'instance-default' | { dataDirectory: string; logDirectory: string };
  /** msdb's backup history as an evidence item (never replayed). */
  carryBackupHistory: boolean;
  /** The azure-blob vault of mssql-native-url (BACKUP … TO URL / RESTORE … FROM URL). */
  backupToUrl?: string;
}

const posix = (p: string) => p.replace(/\\/g, '/').replace(/\/+$/, '') || '.';

function normalizeConnection(c: z.output<typeof MssqlConnectionSchema>): MssqlConnectionSettings {
  return {
    server: c.server,
    ...(c.port !== undefined ? { port: c.port } : {}),
    ...(c.instanceName !== undefined ? { instanceName: c.instanceName } : {}),
    user: c.user,
    ...(c.domain !== undefined ? { domain: c.domain } : {}),
    passwordEnv: c.passwordEnv,
    encrypt: c.encrypt,
    trustServerCertificate: c.trustServerCertificate,
    ...(c.serverName !== undefined ? { serverName: c.serverName } : {}),
    connectTimeoutMs: Math.round(c.connectTimeoutSeconds * 1000),
    requestTimeoutMs: Math.round(c.requestTimeoutSeconds * 1000),
    longRequestTimeoutMs: Math.round(c.longRequestTimeoutSeconds * 1000),
  };
}

/** Fills defaults, converts seconds to milliseconds, host paths to posix. Pure. */
export function normalizeMssql(raw: z.output<typeof MssqlSectionSchema>): MssqlSettings {
  const folder = (f: { directory: string; directoryOnHost: string }): MssqlServerFolder => ({ directory: f.directory, directoryOnHost: posix(f.directoryOnHost) });
  return {
    connection: normalizeConnection(raw.connection),
    provingGround: normalizeConnection(raw.provingGround),
    backupDirectory: raw.backupDirectory,
    ...(raw.backupDirectoryOnHost !== undefined ? { backupDirectoryOnHost: posix(raw.backupDirectoryOnHost) } : {}),
    ...(raw.provingGroundStaging ? { provingGroundStaging: folder(raw.provingGroundStaging) } : {}),
    ...(raw.provingGroundDataDirectory ? { provingGroundDataDirectory: raw.provingGroundDataDirectory } : {}),
    ...(raw.provingGroundLogDirectory ? { provingGroundLogDirectory: raw.provingGroundLogDirectory } : {}),
    ...(raw.existingBackups ? { existingBackups: raw.existingBackups.map(folder) } : {}),
    certificatePasswordEnv: { ...raw.certificatePasswordEnv },
    compression: raw.compression,
    agentPollMs: Math.round(raw.agentPollSeconds * 1000),
    ...(raw.keyBackupPasswordEnv ? { keyBackupPasswordEnv: raw.keyBackupPasswordEnv } : {}),
    ...(raw.masterKeyPasswordEnv ? { masterKeyPasswordEnv: raw.masterKeyPasswordEnv } : {}),
    ...(raw.landing ? { landing: normalizeConnection(raw.landing) } : {}),
    ...(raw.landingServer ? { landingServer: { ...raw.landingServer } } : {}),
    smokeQueries: (raw.smokeQueries ?? []).map((q) => ({ ...q })),
    ...(raw.landingLayout ? { landingLayout: typeof raw.landingLayout === 'string' ? raw.landingLayout : { ...raw.landingLayout } } : {}),
    carryBackupHistory: raw.carryBackupHistory,
    ...(raw.backupToUrl ? { backupToUrl: raw.backupToUrl } : {}),
  };
}

export interface MssqlProblem {
  path: string;
  message: string;
}

/** Every environment variable the section names: where it is named, and what it is for. */
export function mssqlSecretVariables(s: MssqlSettings): { path: string; variable: string; what: string }[] {
  return [
    { path: 'engines.mssql.connection.passwordEnv', variable: s.connection.passwordEnv, what: `the password of login ${s.connection.user} on the target's SQL Server` },
    { path: 'engines.mssql.provingGround.passwordEnv', variable: s.provingGround.passwordEnv, what: `the password of login ${s.provingGround.user} on the proving ground's SQL Server` },
    ...(s.landing ? [{ path: 'engines.mssql.landing.passwordEnv', variable: s.landing.passwordEnv, what: `the password of login ${s.landing.user} on the rebuilt server's SQL Server` }] : []),
    ...(s.keyBackupPasswordEnv ? [{ path: 'engines.mssql.keyBackupPasswordEnv', variable: s.keyBackupPasswordEnv, what: 'the password that encrypts the master key and service master key backups' }] : []),
    ...(s.masterKeyPasswordEnv ? [{ path: 'engines.mssql.masterKeyPasswordEnv', variable: s.masterKeyPasswordEnv, what: "the password for master's database master key where Rubicon creates one" }] : []),
    ...Object.entries(s.certificatePasswordEnv).map(([cert, variable]) => ({
      path: `engines.mssql.certificatePasswordEnv.${cert}`,
      variable,
      what: `the private-key password of certificate ${cert}`,
    })),
  ];
}

const endpoint = (c: MssqlConnectionSettings) => `${c.server.toLowerCase()}:${c.instanceName ? `\\${c.instanceName.toLowerCase()}` : String(c.port ?? 1433)}`;

/**
 * Cross-field rules of the section. `env` is read for presence only (never
 * copied anywhere): a named variable that is unset or empty is a problem
 * naming the variable. Adds warnings for settings fit only for a lab.
 */
export function mssqlRules(s: MssqlSettings, env: NodeJS.ProcessEnv, warnings: string[]): MssqlProblem[] {
  const problems: MssqlProblem[] = [];
  for (const v of mssqlSecretVariables(s)) {
    if (!env[v.variable]) {
      problems.push({ path: v.path, message: `environment variable ${v.variable} is not set: export it with ${v.what} before running rubicon (the runbook only names the variable)` });
    }
  }
  if (endpoint(s.connection) === endpoint(s.provingGround)) {
    problems.push({
      path: 'engines.mssql.provingGround.server',
      message: `${endpoint(s.provingGround)} is the target's SQL Server: the proving ground must be a separate, disposable server that sees only the vaults`,
    });
  }
  if (s.landing && endpoint(s.landing) === endpoint(s.provingGround)) {
    problems.push({ path: 'engines.mssql.landing.server', message: `${endpoint(s.landing)} is the proving ground's SQL Server: landing goes onto the rebuilt target` });
  }
  for (const [i, q] of s.smokeQueries.entries()) {
    if (q.minRows !== undefined && q.maxRows !== undefined && q.minRows > q.maxRows) {
      problems.push({ path: `engines.mssql.smokeQueries.${i}.maxRows`, message: `is ${q.maxRows}, below minRows ${q.minRows}: no result can pass` });
    }
  }
  for (const [which, c] of [['connection', s.connection], ['provingGround', s.provingGround], ...(s.landing ? [['landing', s.landing] as const] : [])] as const) {
    if (c.encrypt === false) warnings.push(`engines.mssql.${which}.encrypt is false: logins and data cross the network in clear text (fit only for a test endpoint on loopback)`);
    if (c.trustServerCertificate) warnings.push(`engines.mssql.${which}.trustServerCertificate is true: any certificate is accepted (fit only for a lab server)`);
  }
  return problems;
}

function connectionConfig(c: MssqlConnectionSettings, env: NodeJS.ProcessEnv, path: string): MssqlConnectionConfig {
  const password = env[c.passwordEnv];
  if (!password) {
    throw new RubiconError('RUNBOOK_INVALID', `${path}: environment variable ${c.passwordEnv} is not set`, {
      hint: `export ${c.passwordEnv} with the password of login ${c.user} (on ${c.server}), then run the command again`,
      details: { path, variable: c.passwordEnv },
    });
  }
  return {
    server: c.server,
    ...(c.port !== undefined ? { port: c.port } : {}),
    ...(c.instanceName !== undefined ? { instanceName: c.instanceName } : {}),
    user: c.user,
    password,
    ...(c.domain !== undefined ? { domain: c.domain } : {}),
    encrypt: c.encrypt,
    trustServerCertificate: c.trustServerCertificate,
    ...(c.serverName !== undefined ? { serverName: c.serverName } : {}),
    connectTimeoutMs: c.connectTimeoutMs,
    requestTimeoutMs: c.requestTimeoutMs,
    longRequestTimeoutMs: c.longRequestTimeoutMs,
  };
}

/**
 * The engine's options for the section. Reads the passwords from `env` now
 * (RUNBOOK_INVALID naming the variable when one is gone, e.g. on resume
 * from another shell); certificate passwords are read when the engine asks.
 *
 * Landing restores stage files through the backup directory: the rebuilt
 * target's SQL Server reads them where it wrote its backups.
 */
export function mssqlEngineOptions(s: MssqlSettings, env: NodeJS.ProcessEnv, extra: Pick<MssqlEngineOptions, 'log' | 'onStatement' | 'backupToUrl' | 'onGrant'> = {}): MssqlEngineOptions {
  return {
    connection: connectionConfig(s.connection, env, 'engines.mssql.connection.passwordEnv'),
    provingGround: connectionConfig(s.provingGround, env, 'engines.mssql.provingGround.passwordEnv'),
    backupDirectory: s.backupDirectory,
    ...(s.backupDirectoryOnHost !== undefined ? { backupDirectoryOnHost: s.backupDirectoryOnHost } : {}),
    ...(s.existingBackups ? { pathMap: s.existingBackups.map((f) => ({ server: f.directory, host: f.directoryOnHost })) } : {}),
    ...(s.provingGroundStaging ? { provingGroundFiles: { serverDirectory: s.provingGroundStaging.directory, hostDirectory: s.provingGroundStaging.directoryOnHost } } : {}),
    // Without a host folder (a remote target) the rebuilt server gets no staged files: what lands there is scripts and URL stripes.
    ...(s.backupDirectoryOnHost !== undefined ? { landingFiles: { serverDirectory: s.backupDirectory, hostDirectory: s.backupDirectoryOnHost } } : {}),
    ...(s.provingGroundDataDirectory ? { provingGroundDataDirectory: s.provingGroundDataDirectory } : {}),
    ...(s.provingGroundLogDirectory ? { provingGroundLogDirectory: s.provingGroundLogDirectory } : {}),
    ...(s.landing ? { landing: connectionConfig(s.landing, env, 'engines.mssql.landing.passwordEnv') } : {}),
    ...(s.landingServer ? { landingServer: { ...s.landingServer } } : {}),
    ...(s.smokeQueries.length ? { smokeQueries: s.smokeQueries.map((q) => ({ ...q })) } : {}),
    ...(s.landingLayout ? { landingLayout: s.landingLayout } : {}),
    ...(s.carryBackupHistory ? { carryBackupHistory: true } : {}),
    secrets: {
      certificatePassword: async (name: string) => {
        const variable = s.certificatePasswordEnv[name];
        return variable ? env[variable] || undefined : undefined;
      },
      // Read when the engine asks, never copied into the options.
      keyBackupPassword: async () => (s.keyBackupPasswordEnv ? env[s.keyBackupPasswordEnv] || undefined : undefined),
      masterKeyPassword: async () => (s.masterKeyPasswordEnv ? env[s.masterKeyPasswordEnv] || undefined : undefined),
    },
    compression: s.compression,
    pollIntervalMs: s.agentPollMs,
    ...extra,
  };
}
