import type { MethodInfo } from '../engine.ts';

/**
 * The mssql engine's methods, in a module of their own so the orchestrator
 * can list them (plan, checklist) without loading the SQL Server driver
 * (src/engines/mssql/lazy.ts).
 */
export const MSSQL_METHODS: Record<string, MethodInfo> = {
  'mssql-native-full': {
    name: 'mssql-native-full',
    origin: 'rubicon',
    independenceGroup: 'mssql-native-full',
    description: 'BACKUP DATABASE … WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT (the customer\'s backup chain is untouched), confirmed with RESTORE HEADERONLY',
  },
  'mssql-native-url': {
    name: 'mssql-native-url',
    origin: 'rubicon',
    independenceGroup: 'mssql-native-full',
    description: 'BACKUP DATABASE … TO URL (COPY_ONLY, CHECKSUM, striped by size) straight into the azure-blob vault through a write grant (SAS credential, dropped after), confirmed with RESTORE HEADERONLY FROM URL and each stripe read back from the vault; proven and landed FROM URL through a read grant',
  },
  'mssql-system-full': {
    name: 'mssql-system-full',
    origin: 'rubicon',
    independenceGroup: 'mssql-native-full',
    description: 'system database (master, model, msdb): BACKUP … COPY_ONLY, CHECKSUM, proven by HEADERONLY (BackupSetGUID) and RESTORE VERIFYONLY only; never restored under a test name or at landing',
  },
  'mssql-history': {
    name: 'mssql-history',
    origin: 'rubicon',
    independenceGroup: 'mssql-history',
    description: 'the newest existing backup chain from msdb, each file confirmed with RESTORE HEADERONLY',
  },
  'vendor-job': {
    name: 'vendor-job',
    origin: 'vendor',
    independenceGroup: 'vendor-job',
    description: "the vendor's SQL Agent job, waited for, every step checked, its backup confirmed by new backupset rows and RESTORE HEADERONLY",
  },
  'instance-objects': {
    name: 'instance-objects',
    origin: 'rubicon',
    independenceGroup: 'instance-objects',
    description: 'logins (SID and hash, server roles and permissions), jobs (steps, schedules, notifications), operators, alerts, proxies, Database Mail, linked servers and their logins (names), endpoints, credentials (names only), configuration and authentication mode as T-SQL; certificates WITH PRIVATE KEY; BACKUP MASTER KEY and BACKUP SERVICE MASTER KEY',
  },
};
