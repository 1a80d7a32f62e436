/**
 * Every statement the SQL Server engine can send, built by the engine's own
 * builders with representative and hostile inputs, for Microsoft's parser
 * (tsql-parse.test.ts). Where the server assembles an inner statement from
 * parameters (`DECLARE @stmt nvarchar(max) = N'…' + QUOTENAME(@x) + …;
 * EXEC sp_executesql @stmt`), the inner statement is assembled here the same
 * way (QUOTENAME, quote doubling) and parsed too.
 */
import { presenceStatement, leftoverRollbackStatement, transactionStatement, scriptedObjects } from '../../src/engines/mssql/instance-proof.ts';
import { quoteIdentifier } from '../../src/engines/mssql/quote.ts';
import {
  jobProperties,
  scriptAlerts,
  scriptConfiguration,
  scriptCredentials,
  scriptDatabaseMail,
  scriptEndpoints,
  scriptJobs,
  scriptLinkedServers,
  scriptLogins,
  scriptOperators,
  scriptProxies,
  scriptStartupAndTraceFlags,
} from '../../src/engines/mssql/scripts.ts';
import type { SqlStatement } from '../../src/engines/mssql/session.ts';
import * as q from '../../src/engines/mssql/sql.ts';

/** Hostile identifiers: brackets, quotes, statement breakers, unicode, the 128-character maximum. */
export const HOSTILE = [
  'EHR',
  "x]'; DROP DATABASE master; --",
  ']]',
  '"quoted" name',
  "O'Brien",
  '患者データ',
  'Zoë ß 𝔘',
  'a'.repeat(128),
  `${'b]'.repeat(63)}cc`, // 128 characters that double to 191
];

/** QUOTENAME as SQL Server computes it. */
const quotename = (s: string): string => `[${s.replaceAll(']', ']]')}]`;

/** Evaluates the server-side concatenation `N'…' + QUOTENAME(@p) + REPLACE(@p, N'''', N'''''') + …` with the statement's parameters. */
export function evalConcat(expr: string, params: Record<string, string>): string {
  let out = '';
  let i = 0;
  const value = (name: string): string => {
    const v = params[name];
    if (v === undefined) throw new Error(`no parameter @${name} for the inner statement`);
    return v;
  };
  while (i < expr.length) {
    const rest = expr.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\s+|^\+/.exec(rest))) {
      i += m[0].length;
    } else if ((m = /^N'((?:[^']|'')*)'/.exec(rest))) {
      out += m[1]!.replaceAll("''", "'");
      i += m[0].length;
    } else if ((m = /^QUOTENAME\(@(\w+)\)/.exec(rest))) {
      out += quotename(value(m[1]!));
      i += m[0].length;
    } else if ((m = /^QUOTENAME\(N'((?:[^']|'')*)'\)/.exec(rest))) {
      out += quotename(m[1]!.replaceAll("''", "'"));
      i += m[0].length;
    } else if ((m = /^QUOTENAME\(SUSER_SNAME\(0x01\)\)/.exec(rest))) {
      out += quotename('sa');
      i += m[0].length;
    } else if ((m = /^REPLACE\(@(\w+), N'''', N''''''\)/.exec(rest))) {
      out += value(m[1]!).replaceAll("'", "''");
      i += m[0].length;
    } else {
      throw new Error(`evalConcat: cannot read ${rest.slice(0, 60)}`);
    }
  }
  return out;
}

/** The inner statements a text assembles with `DECLARE @v nvarchar(max) = <concatenation>;`. */
export function innerStatements(text: string, params: Record<string, string>): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/DECLARE @\w+ nvarchar\(max\) = ([\s\S]*?);\n/g)) out.push(evalConcat(m[1]!, params));
  return out;
}

const HASH = Buffer.from('0200A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6', 'hex');
const SID = Buffer.from('5A1F0C2D3E4B5A69788796A5B4C3D2E1', 'hex');

export interface Entry {
  id: string;
  text: string;
}

/** Which sql.ts builders the catalog calls (the test checks none is missing). */
export const COVERED = new Set<string>();

function add(list: Entry[], id: string, stmt: SqlStatement | string): void {
  const text = typeof stmt === 'string' ? stmt : stmt.text;
  list.push({ id, text });
  if (typeof stmt !== 'string') {
    const params = Object.fromEntries(stmt.params.map((p) => [p.name, String(p.value)]));
    innerStatements(text, params).forEach((inner, i) => list.push({ id: `${id} (inner ${i + 1})`, text: inner }));
  }
}

/** Calls a builder of sql.ts by name and records that it was covered. */
function b<K extends keyof typeof q>(name: K): (typeof q)[K] {
  COVERED.add(name);
  return q[name];
}

export function catalog(): Entry[] {
  const list: Entry[] = [];
  const path = "D:\\Rubicon\\it's ]here[\\x.bak";
  const password = "p@ss'w0rd]; --";
  for (const [i, n] of HOSTILE.entries()) {
    const k = `name ${i}`;
    add(list, `backupToDisk ${k}`, b('backupToDiskStatement')(n, path));
    add(list, `backupToDisk no compression ${k}`, b('backupToDiskStatement')(n, path, { compression: false }));
    add(list, `backupToUrl ${k}`, b('backupToUrlStatement')(n, ['https://a.blob.core.windows.net/c/1.bak', 'https://a.blob.core.windows.net/c/2.bak']));
    add(list, `backupCertificate ${k}`, b('backupCertificateStatement')(n, path, path, password));
    add(list, `createCertificate ${k}`, b('createCertificateStatement')(n, path, path, password));
    add(list, `createScratchCertificate ${k}`, b('createScratchCertificateStatement')(`rubicon-keycheck-${i}`, n, path, path, password, password));
    add(list, `scratchCertificateThumbprint ${k}`, b('scratchCertificateThumbprintStatement')(n, n));
    add(list, `createDatabase ${k}`, b('createDatabaseStatement')(n));
    add(list, `restoreMasterKeyToScratch ${k}`, b('restoreMasterKeyToScratchStatement')(n, path, password, password));
    add(list, `certificateByThumbprint ${k}`, b('certificateByThumbprintStatement')('0xABCDEF'));
    add(list, `certificateThumbprint ${k}`, b('certificateThumbprintStatement')(n));
    add(list, `restoreDatabase ${k}`, b('restoreDatabaseStatement')(n, [path, path], 2, [{ logicalName: n, physicalPath: path }, { logicalName: 'log', physicalPath: path }], false));
    add(list, `restoreDatabase no checksum ${k}`, b('restoreDatabaseStatement')(n, [path], 1, [], true, false));
    // mssql-native-url: the same builders with stripe URLs as devices (URL = @fileN).
    const urls = ['https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-01-of-02.bak', 'https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-02-of-02.bak'];
    add(list, `restoreDatabase from URL ${k}`, b('restoreDatabaseStatement')(n, urls, 1, [{ logicalName: n, physicalPath: path }, { logicalName: 'log', physicalPath: path }], true));
    add(list, `restoreLog ${k}`, b('restoreLogStatement')(n, [path], 3, true));
    add(list, `restoreLog no checksum ${k}`, b('restoreLogStatement')(n, [path], 3, false, false));
    add(list, `checkDb ${k}`, b('checkDbStatement')(n));
    add(list, `databaseExists ${k}`, b('databaseExistsStatement')(n));
    add(list, `dropDatabase ${k}`, b('dropDatabaseStatement')(n));
    add(list, `tableColumns ${k}`, b('tableColumnsStatement')(n));
    add(
      list,
      `tableHash ${k}`,
      b('tableHashStatement')(n, n, n, ['int', 'nvarchar', 'text', 'ntext', 'xml', 'image', 'sql_variant', 'clr', 'datetimeoffset', 'float', 'uniqueidentifier', 'timestamp'].map((t, j) => ({ name: `${n.slice(0, 100)}${j}`, baseType: t }))),
    );
    add(list, `tableHash no columns ${k}`, b('tableHashStatement')(n, 'dbo', n, []));
    add(list, `backupHistory ${k}`, b('backupHistoryStatement')(n));
    add(list, `newBackups ${k}`, b('newBackupsStatement')(n, 41));
    add(list, `backupBaseline ${k}`, b('backupBaselineStatement')(n));
    add(list, `databaseIncarnation ${k}`, b('databaseIncarnationStatement')(n));
    add(list, `jobByName ${k}`, b('jobByNameStatement')(n));
    add(list, `startJob ${k}`, b('startJobStatement')(n));
    add(list, `smoke ${k}`, b('smokeStatement')(n));
    add(list, `databaseFeatures ${k}`, b('databaseFeaturesStatement')(n));
    add(list, `orphanedUsers ${k}`, b('orphanedUsersStatement')(n));
    add(list, `remapUser ${k}`, b('remapUserStatement')(n, n, n));
    add(list, `setOwner ${k}`, b('setOwnerStatement')(n, n));
    add(list, `setTrustworthy ${k}`, b('setTrustworthyStatement')(n));
    add(list, `smokeQuery ${k}`, b('smokeQueryStatement')(n, 'SELECT 1 AS one'));
    add(list, `lastGoodCheckDb ${k}`, b('lastGoodCheckDbStatement')(n));
    add(list, `jobs filtered ${k}`, b('jobsStatement')([n, 'other']));
    add(list, `logins filtered ${k}`, b('loginsStatement')([n, 'other']));
    add(list, `logins filtered, proof prefix ${k}`, b('loginsStatement')([n], 'readlogin'));
    add(list, `jobSteps filtered ${k}`, b('jobStepsStatement')([n]));
    add(list, `jobSchedules filtered ${k}`, b('jobSchedulesStatement')([n]));
    add(list, `verifyOnly ${k}`, b('verifyOnlyStatement')([path], 1, i % 2 === 0));
  }
  for (const [id, stmt] of [
    ['serverInfo', b('serverInfoStatement')()],
    ['databases', b('databasesStatement')()],
    ['logins', b('loginsStatement')()],
    ['logins none', b('loginsStatement')([])],
    ['backupHistoryEvidence', b('backupHistoryEvidenceStatement')()],
    ['jobs', b('jobsStatement')()],
    ['jobs none', b('jobsStatement')([])],
    ['jobSteps', b('jobStepsStatement')()],
    ['jobSchedules', b('jobSchedulesStatement')()],
    ['operators', b('operatorsStatement')()],
    ['alerts', b('alertsStatement')()],
    ['proxies', b('proxiesStatement')()],
    ['mailProfiles', b('mailProfilesStatement')()],
    ['linkedLogins', b('linkedLoginsStatement')()],
    ['serverRoles', b('serverRolesStatement')()],
    ['serverPermissions', b('serverPermissionsStatement')()],
    ['linkedServers', b('linkedServersStatement')()],
    ['credentials', b('credentialsStatement')()],
    ['certificates', b('certificatesStatement')()],
    ['endpoints', b('endpointsStatement')()],
    ['configuration', b('configurationStatement')()],
    ['startupProcedures', b('startupProceduresStatement')()],
    ['traceFlags', b('traceFlagsStatement')()],
    ['ensureMasterKey', b('ensureMasterKeyStatement')(password)],
    ['backupMasterKey', b('backupMasterKeyStatement')(path, password)],
    ['backupServiceMasterKey', b('backupServiceMasterKeyStatement')(path, password)],
    ['keyIdentity master-key', b('keyIdentityStatement')('master-key')],
    ['keyIdentity service-master-key', b('keyIdentityStatement')('service-master-key')],
    ['restoreMasterKey', b('restoreMasterKeyStatement')(path, password, password)],
    ['restoreServiceMasterKey', b('restoreServiceMasterKeyStatement')(path, password)],
    ['headerOnly', b('headerOnlyStatement')([path, path])],
    ['fileListOnly', b('fileListOnlyStatement')([path], 2)],
    ['headerOnly from URL', b('headerOnlyStatement')(['https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-01-of-02.bak', 'https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-02-of-02.bak'])],
    ['fileListOnly from URL', b('fileListOnlyStatement')(['https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-01-of-01.bak'], 1)],
    ['verifyOnly from URL', b('verifyOnlyStatement')(['https://a.blob.core.windows.net/c/rubicon/mssql/x/stripe-01-of-01.bak'], 1, true)],
    ['backupSetByGuid', b('backupSetByGuidStatement')('3F2504E0-4F89-41D3-9A0C-0305E82C3301')],
    ['jobActivity', b('jobActivityStatement')('3F2504E0-4F89-41D3-9A0C-0305E82C3301')],
    ['jobRunHistory', b('jobRunHistoryStatement')('3F2504E0-4F89-41D3-9A0C-0305E82C3301', 900)],
    ['version', b('versionStatement')()],
    ['serverClock', b('serverClockStatement')()],
    ['targetServer', b('targetServerStatement')()],
  ] as const) {
    add(list, id, stmt);
  }
  // Constant texts sent from elsewhere in the engine.
  add(list, 'vendor job clock', 'SELECT SYSDATETIME() AS server_now;');
  // Generated scripts (instance-objects artifacts), with hostile names and values.
  for (const [i, n] of HOSTILE.entries()) {
    const k = `name ${i}`;
    const logins = scriptLogins(
      [
        { name: n === 'EHR' ? 'sa_renamed' : n, type_desc: 'SQL_LOGIN', sid: Buffer.from([1]), password_hash: HASH, default_database_name: n, default_language_name: 'us_english', is_disabled: 1, is_policy_checked: 1 },
        { name: `${n.slice(0, 120)}_sql`, type_desc: 'SQL_LOGIN', sid: SID, password_hash: HASH, default_database_name: n, default_language_name: 'British', is_disabled: 1, is_policy_checked: 1, is_expiration_checked: 0, server_roles: `sysadmin,${n}` },
        { name: `HOST\\${n.slice(0, 100)}`, type_desc: 'WINDOWS_LOGIN', sid: Buffer.from([1, 5, 0, 0, 0, 0, 0, 5, 21]), default_database_name: n, is_disabled: 0 },
        { name: `DOM\\${n.slice(0, 100)}`, type_desc: 'WINDOWS_GROUP', sid: Buffer.from([1, 5, 0, 0, 0, 0, 0, 5, 22]), default_database_name: 'master', is_disabled: 0 },
        { name: 'NT SERVICE\\SQLSERVERAGENT', type_desc: 'WINDOWS_LOGIN', sid: Buffer.from([1, 6]), default_database_name: 'master' },
        { name: 'no_hash', type_desc: 'SQL_LOGIN', sid: null, password_hash: null },
      ],
      'EHR-SQL01',
      'HOST',
      {
        roles: [{ name: n, members: `${n.slice(0, 120)}_sql` }],
        permissions: [
          { grantee: `${n.slice(0, 120)}_sql`, class: 100, permission_name: 'VIEW SERVER STATE', state: 'G' },
          { grantee: `HOST\\${n.slice(0, 100)}`, class: 100, permission_name: 'CONNECT SQL', state: 'D' },
          { grantee: n, class: 101, permission_name: 'IMPERSONATE', state: 'W', securable: `${n.slice(0, 120)}_sql` },
        ],
      },
    );
    add(list, `logins.sql ${k}`, logins);
    const rename = innerStatements(logins, { rubicon_sa_rename: '' });
    rename.forEach((t, j) => list.push({ id: `logins.sql sa rename ${k} ${j}`, text: t }));
    const jobs = [{ name: n, enabled: 1, description: `it's "${n}"`, owner_name: n, category_name: n, start_step_id: 2, notify_level_eventlog: 2, notify_level_email: 2, notify_level_netsend: 0, notify_level_page: 0, notify_email_operator_name: n, notify_page_operator_name: null, notify_netsend_operator_name: null, delete_level: 0 }];
    const steps = [
      { job_name: n, step_id: 1, step_name: n, subsystem: 'TSQL', command: `EXEC dbo.x N'${n}';\nGO\nSELECT 1`, database_name: n, database_user_name: n, on_success_action: 3, on_success_step_id: 0, on_fail_action: 4, on_fail_step_id: 2, retry_attempts: 3, retry_interval: 5, os_run_priority: 0, output_file_name: path, flags: 2, cmdexec_success_code: 0, proxy_name: null },
      { job_name: n, step_id: 2, step_name: 'copy', subsystem: 'CmdExec', command: 'robocopy a b', database_name: null, on_success_action: 1, on_success_step_id: 0, on_fail_action: 2, on_fail_step_id: 0, retry_attempts: 0, retry_interval: 0, os_run_priority: 0, output_file_name: null, flags: 0, cmdexec_success_code: 1, proxy_name: n },
    ];
    const schedules = [{ job_name: n, schedule_name: n, enabled: 1, freq_type: 8, freq_interval: 62, freq_subday_type: 4, freq_subday_interval: 15, freq_relative_interval: 0, freq_recurrence_factor: 1, active_start_date: 20240101, active_end_date: 99991231, active_start_time: 0, active_end_time: 235959 }];
    const jobsSql = scriptJobs(jobs, steps, 'EHR-SQL01', schedules);
    add(list, `jobs.sql ${k}`, jobsSql);
    add(list, `operators.sql ${k}`, scriptOperators([{ name: n, enabled: 1, email_address: `${n}@example.org`, pager_address: null, weekday_pager_start_time: 80000, weekday_pager_end_time: 180000, pager_days: 62 }], 'EHR-SQL01'));
    add(list, `alerts.sql ${k}`, scriptAlerts([
      { name: n, message_id: 0, severity: 24, enabled: 1, delay_between_responses: 60, include_event_description: 1, database_name: n, event_description_keyword: "it's", job_name: n, category_name: null, notifications: `${n}=1;DBA Team=4` },
      { name: `${n.slice(0, 120)}_perf`, message_id: 0, severity: 0, enabled: 1, delay_between_responses: 0, include_event_description: 0, performance_condition: 'SQLServer:Buffer Manager|Page life expectancy||<|300', notifications: null },
    ], 'EHR-SQL01'));
    add(list, `proxies.sql ${k}`, scriptProxies([{ name: n, enabled: 1, description: "it's", credential_name: n, subsystems: '3,12', logins: `${n},other` }], 'EHR-SQL01'));
    add(list, `database-mail.sql ${k}`, scriptDatabaseMail([
      { profile_name: n, profile_description: "it's", sequence_number: 1, account_name: n, email_address: 'ehr@example.org', display_name: n, replyto_address: null, account_description: null, servername: 'smtp.example.org', port: 587, enable_ssl: 1, username: 'relay', use_default_credentials: 0 },
      { profile_name: `${n.slice(0, 120)}_2`, profile_description: null, sequence_number: null, account_name: null },
    ], 'EHR-SQL01'));
    add(list, `linked-servers.sql ${k}`, scriptLinkedServers([{ name: n, product: '', provider: 'MSOLEDBSQL', data_source: "lab'sql", catalog: n }], 'EHR-SQL01', [
      { server_name: n, local_login: null, uses_self_credential: 0, remote_name: n },
      { server_name: n, local_login: n, uses_self_credential: 1, remote_name: null },
    ]));
    add(list, `credentials.sql ${k}`, scriptCredentials([{ name: n, credential_identity: n }], 'EHR-SQL01'));
    add(list, `endpoints.sql ${k}`, scriptEndpoints([
      { name: n, protocol_desc: 'TCP', type_desc: 'DATABASE_MIRRORING', state_desc: 'STARTED', port: 5022, role_desc: 'ALL', connection_auth_desc: 'NEGOTIATE', encryption_algorithm_desc: 'AES', is_encryption_enabled: 1 },
      { name: `${n.slice(0, 120)}_sb`, protocol_desc: 'TCP', type_desc: 'SERVICE_BROKER', state_desc: 'STOPPED', port: 4022, connection_auth_desc: 'KERBEROS', is_encryption_enabled: 0 },
      { name: `${n.slice(0, 120)}_cert`, protocol_desc: 'TCP', type_desc: 'DATABASE_MIRRORING', state_desc: 'STARTED', port: 5023, connection_auth_desc: 'CERTIFICATE', is_encryption_enabled: 1 },
    ], 'EHR-SQL01', [{ grantee: n, class: 105, permission_name: 'CONNECT', state: 'G', securable: n }]));
    add(list, `configuration.sql ${k}`, scriptConfiguration([{ name: 'max server memory (MB)', value_in_use: 24576n }, { name: "it's odd", value_in_use: 1 }], 'EHR-SQL01', i % 2 === 0));
    add(list, `startup.sql ${k}`, scriptStartupAndTraceFlags([{ name: n }], [{ TraceFlag: 3226 }, { TraceFlag: 1222 }], 'EHR-SQL01'));
    // The proof's own batches around the transactional scripts.
    const objects = [...scriptedObjects(logins), ...scriptedObjects(jobsSql)];
    const names = [...new Set(objects.filter((o) => o.kind === 'job').map((o) => o.name))];
    const pres = presenceStatement(objects);
    if (pres) add(list, `presence ${k}`, pres);
    const loginNames = objects.filter((o) => o.kind === 'login').map((o) => o.name);
    add(list, `proof transaction ${k}`, transactionStatement([logins, jobsSql], objects, [b('jobsStatement')(names), b('jobStepsStatement')(names), b('jobSchedulesStatement')(names), b('loginsStatement')(loginNames, 'readlogin'), b('serverPermissionsStatement')(), b('serverRolesStatement')()]));
    void jobProperties;
    void quoteIdentifier;
  }
  add(list, 'leftover rollback', leftoverRollbackStatement());
  return list;
}
