/**
 * Instance-level objects as T-SQL scripts (the instance-objects method):
 * what a rebuild forgets. Pure: discovery rows in, script text out.
 *
 * Contracts:
 * - Logins keep their SID and password hash: `CREATE LOGIN [x] WITH
 *   PASSWORD = 0x… HASHED, SID = 0x…` (the sp_help_revlogin technique), so
 *   database users are not orphaned and nobody needs the plaintext.
 * - No secret is ever written: credentials and linked-server logins are
 *   scripted by name with a placeholder the operator must fill; the
 *   credential's secret is never read.
 * - Every identifier through quoteIdentifier, every value through
 *   sqlStringLiteral / sqlBinaryLiteral (quote.ts).
 * - Deterministic: no timestamp, rows in the order of their ORDER BY (and
 *   role lists ordered in the query), so the same objects give the same
 *   bytes; drift (instance-proof.ts) compares SHA-256 of the scripts.
 * - Every scripted object has exactly one guard line (`IF SUSER_ID(N'…') IS
 *   NULL`, `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysjobs|sysoperators WHERE
 *   name = N'…')`): the proof reads the object names from these lines.
 */
import { createHash } from 'node:crypto';
import { quoteIdentifier, sqlBinaryLiteral, sqlStringLiteral } from './quote.ts';
import type { SqlRow } from './session.ts';

const s = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const header = (what: string, server: string): string =>
  `-- Rubicon instance-objects: ${what} of ${server}\n-- Generated from the live server; review before running on the rebuilt server.\n\n`;

function bytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  return null;
}

/** Logins that must not be recreated from a script: built-in and per-machine accounts. sa is recognised by its SID (0x01), not its name. */
export function skipLogin(name: string, sid?: Uint8Array | null): string | null {
  if (sid && sid.length === 1 && sid[0] === 1) return 'sa (SID 0x01) exists on every instance: it is not created; its name, password hash and state are carried over';
  if (!sid && name === 'sa') return 'sa (SID 0x01) exists on every instance: it is not created; its name, password hash and state are carried over';
  if (/^NT (SERVICE|AUTHORITY)\\/i.test(name)) return 'built-in Windows account, created by setup';
  return null;
}

const isSa = (r: SqlRow): boolean => {
  const sid = bytes(r.sid);
  return sid !== null && sid.length === 1 && sid[0] === 1;
};

const GRANT_STATE: Record<string, string> = { G: 'GRANT', D: 'DENY', W: 'GRANT' };

/** One server permission as T-SQL (classes 100 server, 101 login); endpoint permissions go with the endpoints. */
function permissionLine(p: SqlRow): string | null {
  const verb = GRANT_STATE[s(p.state).trim()];
  if (!verb) return null;
  const grantee = quoteIdentifier(s(p.grantee));
  const perm = s(p.permission_name).trim();
  if (!/^[A-Z ]+$/.test(perm)) return null; // permission names are keywords; anything else is not scripted
  const on = Number(p.class) === 101 ? ` ON LOGIN::${quoteIdentifier(s(p.securable))}` : Number(p.class) === 100 ? '' : null;
  if (on === null) return null;
  return `${verb} ${perm}${on} TO ${grantee}${s(p.state).trim() === 'W' ? ' WITH GRANT OPTION' : ''};`;
}

/**
 * logins.sql: user-defined server roles, logins (SID, password hash,
 * default database and language, policy flags, disabled), sa's name, hash
 * and state, role memberships, then server permissions (DENY CONNECT SQL
 * among them). A login that already exists with another SID stops the
 * script (THROW): its database users would be orphaned while the proof passed.
 */
export function scriptLogins(rows: SqlRow[], server: string, machineName?: string, extra: { roles?: SqlRow[]; permissions?: SqlRow[] } = {}): string {
  let out = header('logins (SID and password hash kept), server roles and server permissions', server);
  const created = new Set<string>();
  for (const r of extra.roles ?? []) {
    const name = s(r.name);
    out += `IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = ${sqlStringLiteral(name)} AND type = 'R')\n  CREATE SERVER ROLE ${quoteIdentifier(name)};\n\n`;
    created.add(name);
  }
  const members: string[] = [];
  for (const r of rows) {
    const name = s(r.name);
    const q = quoteIdentifier(name);
    const type = s(r.type_desc);
    const sid = bytes(r.sid);
    const language = s(r.default_language_name);
    const lang = language ? `, DEFAULT_LANGUAGE = ${quoteIdentifier(language)}` : '';
    if (isSa(r)) {
      const hash = bytes(r.password_hash);
      out += `-- ${name}: SID 0x01 (sa) exists on every instance; it is renamed, given its password hash and state, never created\n`;
      out += `DECLARE @rubicon_sa_rename nvarchar(max) = N'ALTER LOGIN ' + QUOTENAME(SUSER_SNAME(0x01)) + N' WITH NAME = ' + QUOTENAME(${sqlStringLiteral(name)}) + N';';\n`;
      out += `IF SUSER_SNAME(0x01) <> ${sqlStringLiteral(name)} EXEC sys.sp_executesql @rubicon_sa_rename;\n`;
      if (hash) out += `ALTER LOGIN ${q} WITH PASSWORD = ${sqlBinaryLiteral(hash)} HASHED;\n`;
      out += `ALTER LOGIN ${q} ${r.is_disabled ? 'DISABLE' : 'ENABLE'};\n\n`;
      created.add(name);
      continue;
    }
    const skip = skipLogin(name, sid);
    if (skip) {
      out += `-- skipped ${name}: ${skip}\n\n`;
      continue;
    }
    const local = machineName !== undefined && machineName !== '' && name.toUpperCase().startsWith(`${machineName.toUpperCase()}\\`);
    if (type === 'SQL_LOGIN') {
      const hash = bytes(r.password_hash);
      if (!hash || !sid) {
        // No guard line here: an `IF` followed only by a comment would make the next login's statement its body.
        out += `-- ${name}: password hash or SID not readable (needs CONTROL SERVER): recreate by hand\n\n`;
        continue;
      }
      out += `IF SUSER_ID(${sqlStringLiteral(name)}) IS NULL\n`;
      const opts = [
        `PASSWORD = ${sqlBinaryLiteral(hash)} HASHED`,
        `SID = ${sqlBinaryLiteral(sid)}`,
        `DEFAULT_DATABASE = ${quoteIdentifier(s(r.default_database_name) || 'master')}${lang}`,
        `CHECK_POLICY = ${r.is_policy_checked ? 'ON' : 'OFF'}`,
        `CHECK_EXPIRATION = ${r.is_expiration_checked ? 'ON' : 'OFF'}`,
      ];
      out += `  CREATE LOGIN ${q} WITH ${opts.join(', ')};\n`;
    } else {
      out += `IF SUSER_ID(${sqlStringLiteral(name)}) IS NULL\n`;
      if (local) {
        out += `  -- WARNING: ${name} is a local account of ${machineName}: after an OS rebuild it has a new SID; database users mapped to it must be remapped\n`;
      }
      out += `  CREATE LOGIN ${q} FROM WINDOWS WITH DEFAULT_DATABASE = ${quoteIdentifier(s(r.default_database_name) || 'master')}${lang};\n`;
    }
    if (sid && !local) {
      out += `ELSE IF SUSER_SID(${sqlStringLiteral(name)}) <> ${sqlBinaryLiteral(sid)}\n`;
      out += `  THROW 50000, ${sqlStringLiteral(`login ${name} already exists with another SID: database users mapped to its SID would be orphaned. Drop or rename that login, then run the script again.`)}, 1;\n`;
    }
    if (r.is_disabled) out += `ALTER LOGIN ${q} DISABLE;\n`;
    created.add(name);
    for (const role of s(r.server_roles).split(',').filter(Boolean)) members.push(`ALTER SERVER ROLE ${quoteIdentifier(role)} ADD MEMBER ${q};`);
    out += '\n';
  }
  for (const r of extra.roles ?? []) {
    for (const m of s(r.members).split(',').filter(Boolean)) {
      const line = `ALTER SERVER ROLE ${quoteIdentifier(s(r.name))} ADD MEMBER ${quoteIdentifier(m)};`;
      if (created.has(m) && !members.includes(line)) members.push(line);
    }
  }
  if (members.length) out += `-- server role memberships\n${members.join('\n')}\n\n`;
  const perms = (extra.permissions ?? []).filter((p) => created.has(s(p.grantee)) && !(s(p.permission_name).trim() === 'CONNECT SQL' && s(p.state).trim() === 'G'));
  const lines = perms.map(permissionLine).filter((l): l is string => l !== null);
  if (lines.length) out += `-- server permissions (CONNECT SQL is granted by CREATE LOGIN; a DENY is kept)\n${lines.join('\n')}\n`;
  return out;
}

/** A SID or hash as `0x…` hex; '' when absent. */
const hex = (v: unknown): string => (v instanceof Uint8Array ? `0x${Buffer.from(v).toString('hex').toUpperCase()}` : '');

/** One server permission as compared at landing: `GRANT VIEW SERVER STATE`, `DENY IMPERSONATE ON LOGIN::[x]`, `… WITH GRANT OPTION`. */
function permissionText(p: SqlRow): string | null {
  const verb = GRANT_STATE[s(p.state).trim()];
  const perm = s(p.permission_name).trim();
  if (!verb || !/^[A-Z ]+$/.test(perm)) return null;
  const on = Number(p.class) === 101 ? ` ON LOGIN::${quoteIdentifier(s(p.securable))}` : Number(p.class) === 100 ? '' : null;
  if (on === null) return null;
  return `${verb} ${perm}${on}${s(p.state).trim() === 'W' ? ' WITH GRANT OPTION' : ''}`;
}

/** What logins.json holds: every property of the scripted logins and user-defined server roles, read back at landing. */
export interface LoginPropertiesFile {
  version: 1;
  format: 'mssql-login-properties';
  /** The source's machine name: its local Windows accounts get a new SID when the OS is rebuilt, so their SID is not compared. */
  machineName: string;
  /** `login <name>` / `server role <name>` → property → value as text. */
  principals: Record<string, Record<string, string>>;
}

/**
 * The properties of the logins and user-defined server roles logins.sql
 * creates, one flat record per principal (`login <name>`, `server role
 * <name>`), values as text: type, SID (not for a local account of
 * `machineName`), default database and language, disabled, policy flags,
 * the password hash as its SHA-256 (never the hash itself), server role
 * memberships, CONNECT SQL (GRANT / DENY / none) and the other server
 * permissions; for a role its members among the scripted principals and its
 * permissions. The same logins scriptLogins skips are left out. Capture
 * writes them (logins.json); landing computes them again from the rebuilt
 * server's rows with the same queries and compares. Pure.
 */
export function loginProperties(logins: SqlRow[], permissions: SqlRow[], roles: SqlRow[], machineName = ''): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  const scripted = new Set<string>();
  const perms = (grantee: string): { connect: string; others: string } => {
    const mine = permissions.filter((p) => s(p.grantee) === grantee);
    const connect = mine.find((p) => Number(p.class) === 100 && s(p.permission_name).trim() === 'CONNECT SQL');
    const others = mine.filter((p) => !(Number(p.class) === 100 && s(p.permission_name).trim() === 'CONNECT SQL')).map(permissionText).filter((t): t is string => t !== null).sort();
    return { connect: connect ? (GRANT_STATE[s(connect.state).trim()] ?? 'none') : 'none', others: others.join('; ') };
  };
  for (const r of logins) {
    const name = s(r.name);
    const sid = bytes(r.sid);
    const sa = isSa(r);
    if (!sa && skipLogin(name, sid)) continue;
    const type = s(r.type_desc);
    if (type === 'SQL_LOGIN' && !sa && (!bytes(r.password_hash) || !sid)) continue; // not scripted ("recreate by hand")
    const local = machineName !== '' && name.toUpperCase().startsWith(`${machineName.toUpperCase()}\\`);
    const hash = bytes(r.password_hash);
    const p: Record<string, string> = { type };
    if (!local) p.sid = hex(r.sid);
    if (!sa) {
      p['default database'] = s(r.default_database_name) || 'master';
      if (s(r.default_language_name)) p['default language'] = s(r.default_language_name);
    }
    p.disabled = r.is_disabled ? 'yes' : 'no';
    if (type === 'SQL_LOGIN') {
      if (!sa) {
        p['check policy'] = r.is_policy_checked ? 'on' : 'off';
        p['check expiration'] = r.is_expiration_checked ? 'on' : 'off';
      }
      p['password hash'] = hash ? createHash('sha256').update(hash).digest('hex') : '';
    }
    p['server roles'] = s(r.server_roles).split(',').filter(Boolean).sort().join(', ');
    const { connect, others } = perms(name);
    p['CONNECT SQL'] = connect;
    p['server permissions'] = others;
    out[`login ${name}`] = p;
    scripted.add(name);
  }
  for (const r of roles) scripted.add(s(r.name));
  for (const r of roles) {
    const name = s(r.name);
    out[`server role ${name}`] = {
      members: s(r.members).split(',').filter((m) => m && scripted.has(m)).sort().join(', '),
      'server permissions': perms(name).others,
    };
  }
  return out;
}

/** Properties whose value is never shown in a message (only "differs"). */
const HIDDEN = (key: string): boolean => key === 'password hash' || key.endsWith('command');

/**
 * Captured properties against the ones read back (logins and server roles,
 * or jobs): one sentence per difference, naming the principal or job and the
 * property; a hidden property (password hash, a step's command) is only
 * said to differ. `keys`: `union` also reports a property only the rebuilt
 * server has; `expected` compares the captured properties only (a login
 * captured without a default language gets the server's, which is not a
 * difference). Pure.
 */
export function compareProperties(expected: Record<string, Record<string, string>>, actual: Record<string, Record<string, string>>, keys: 'union' | 'expected' = 'union'): string[] {
  const out: string[] = [];
  for (const [who, props] of Object.entries(expected)) {
    const got = actual[who];
    if (!got) {
      out.push(`${who}: not found on the rebuilt server`);
      continue;
    }
    for (const k of [...new Set([...Object.keys(props), ...(keys === 'union' ? Object.keys(got) : [])])].sort()) {
      const want = props[k] ?? '(absent)';
      const have = got[k] ?? '(absent)';
      if (want !== have) out.push(HIDDEN(k) ? `${who}: ${k} differs from the captured one` : `${who}: ${k} is ${JSON.stringify(have)}, captured ${JSON.stringify(want)}`);
    }
  }
  return out;
}

const num = (v: unknown): number => (v === null || v === undefined || v === '' ? 0 : Number(v));
const optional = (name: string, v: unknown): string => (v === null || v === undefined || v === '' ? '' : `, @${name} = ${sqlStringLiteral(s(v))}`);

/** The properties of each job as they are proven back: one flat record per job, values as text. Pure. */
export function jobProperties(jobs: SqlRow[], steps: SqlRow[], schedules: SqlRow[]): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  const v = (x: unknown): string => (x === null || x === undefined ? '' : x instanceof Date ? x.toISOString() : String(x));
  for (const j of jobs) {
    const name = s(j.name);
    const p: Record<string, string> = {};
    for (const k of ['enabled', 'description', 'owner_name', 'category_name', 'start_step_id', 'notify_level_eventlog', 'notify_level_email', 'notify_level_netsend', 'notify_level_page', 'notify_email_operator_name', 'notify_page_operator_name', 'notify_netsend_operator_name', 'delete_level']) p[k] = v(j[k]);
    for (const st of steps.filter((x) => s(x.job_name) === name)) {
      const id = num(st.step_id);
      for (const k of ['step_name', 'subsystem', 'command', 'database_name', 'database_user_name', 'on_success_action', 'on_success_step_id', 'on_fail_action', 'on_fail_step_id', 'retry_attempts', 'retry_interval', 'os_run_priority', 'output_file_name', 'flags', 'cmdexec_success_code', 'proxy_name']) p[`step ${id} ${k}`] = v(st[k]);
    }
    for (const sc of schedules.filter((x) => s(x.job_name) === name)) {
      const sn = s(sc.schedule_name);
      for (const k of ['enabled', 'freq_type', 'freq_interval', 'freq_subday_type', 'freq_subday_interval', 'freq_relative_interval', 'freq_recurrence_factor', 'active_start_date', 'active_end_date', 'active_start_time', 'active_end_time']) p[`schedule ${sn} ${k}`] = v(sc[k]);
    }
    out[name] = p;
  }
  return out;
}

/**
 * jobs.sql, as SSMS scripts a job: category where missing, sp_add_job with
 * owner, notifications and delete level, every step with its flow control
 * (on_success/on_fail action and step), retries, output file, proxy and
 * flags, the start step (sp_update_job), every schedule (sp_add_jobschedule)
 * and the job server. Operators (notify_*_operator_name) and proxies must
 * exist first: operators.sql runs before jobs.sql.
 */
export function scriptJobs(jobs: SqlRow[], steps: SqlRow[], server: string, schedules: SqlRow[] = []): string {
  let out = header('SQL Agent jobs (steps, flow, retries, output files, proxies, notifications, schedules)', server);
  for (const j of jobs) {
    const name = s(j.name);
    const jn = sqlStringLiteral(name);
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysjobs WHERE name = ${jn})\nBEGIN\n`;
    const category = s(j.category_name);
    if (category) {
      out += `  IF NOT EXISTS (SELECT 1 FROM msdb.dbo.syscategories WHERE name = ${sqlStringLiteral(category)} AND category_class = 1)\n    EXEC msdb.dbo.sp_add_category @class = N'JOB', @type = N'LOCAL', @name = ${sqlStringLiteral(category)};\n`;
    }
    out += `  EXEC msdb.dbo.sp_add_job @job_name = ${jn}, @enabled = ${j.enabled ? 1 : 0}, @notify_level_eventlog = ${num(j.notify_level_eventlog)}, @notify_level_email = ${num(j.notify_level_email)}, @notify_level_netsend = ${num(j.notify_level_netsend)}, @notify_level_page = ${num(j.notify_level_page)}, @delete_level = ${num(j.delete_level)}, @description = ${sqlStringLiteral(s(j.description))}${optional('category_name', category)}, @owner_login_name = ${sqlStringLiteral(s(j.owner_name) || 'sa')}${optional('notify_email_operator_name', j.notify_email_operator_name)}${optional('notify_page_operator_name', j.notify_page_operator_name)}${optional('notify_netsend_operator_name', j.notify_netsend_operator_name)};\n`;
    for (const st of steps.filter((x) => s(x.job_name) === name)) {
      out += `  EXEC msdb.dbo.sp_add_jobstep @job_name = ${jn}, @step_id = ${num(st.step_id)}, @step_name = ${sqlStringLiteral(s(st.step_name))}, @subsystem = ${sqlStringLiteral(s(st.subsystem))}, @database_name = ${sqlStringLiteral(s(st.database_name) || 'master')}${optional('database_user_name', st.database_user_name)}, @cmdexec_success_code = ${num(st.cmdexec_success_code)}, @on_success_action = ${num(st.on_success_action)}, @on_success_step_id = ${num(st.on_success_step_id)}, @on_fail_action = ${num(st.on_fail_action)}, @on_fail_step_id = ${num(st.on_fail_step_id)}, @retry_attempts = ${num(st.retry_attempts)}, @retry_interval = ${num(st.retry_interval)}, @os_run_priority = ${num(st.os_run_priority)}${optional('output_file_name', st.output_file_name)}, @flags = ${num(st.flags)}${optional('proxy_name', st.proxy_name)}, @command = ${sqlStringLiteral(s(st.command))};\n`;
    }
    out += `  EXEC msdb.dbo.sp_update_job @job_name = ${jn}, @start_step_id = ${num(j.start_step_id) || 1};\n`;
    for (const sc of schedules.filter((x) => s(x.job_name) === name)) {
      out += `  EXEC msdb.dbo.sp_add_jobschedule @job_name = ${jn}, @name = ${sqlStringLiteral(s(sc.schedule_name))}, @enabled = ${sc.enabled ? 1 : 0}, @freq_type = ${num(sc.freq_type)}, @freq_interval = ${num(sc.freq_interval)}, @freq_subday_type = ${num(sc.freq_subday_type)}, @freq_subday_interval = ${num(sc.freq_subday_interval)}, @freq_relative_interval = ${num(sc.freq_relative_interval)}, @freq_recurrence_factor = ${num(sc.freq_recurrence_factor)}, @active_start_date = ${num(sc.active_start_date)}, @active_end_date = ${num(sc.active_end_date)}, @active_start_time = ${num(sc.active_start_time)}, @active_end_time = ${num(sc.active_end_time)};\n`;
    }
    out += `  EXEC msdb.dbo.sp_add_jobserver @job_name = ${jn}, @server_name = N'(local)';\nEND;\n\n`;
  }
  return out;
}

export function scriptOperators(rows: SqlRow[], server: string): string {
  let out = header('SQL Agent operators', server);
  for (const r of rows) {
    const pager = ['weekday_pager_start_time', 'weekday_pager_end_time', 'saturday_pager_start_time', 'saturday_pager_end_time', 'sunday_pager_start_time', 'sunday_pager_end_time', 'pager_days']
      .filter((k) => r[k] !== null && r[k] !== undefined)
      .map((k) => `, @${k} = ${num(r[k])}`)
      .join('');
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysoperators WHERE name = ${sqlStringLiteral(s(r.name))})\n  EXEC msdb.dbo.sp_add_operator @name = ${sqlStringLiteral(s(r.name))}, @enabled = ${r.enabled ? 1 : 0}, @email_address = ${sqlStringLiteral(s(r.email_address))}${optional('pager_address', r.pager_address)}${optional('netsend_address', r.netsend_address)}${pager};\n\n`;
  }
  return out;
}

/** alerts.sql: sp_add_alert with its condition and response, then one sp_add_notification per operator. After operators and jobs. */
export function scriptAlerts(rows: SqlRow[], server: string): string {
  let out = header('SQL Agent alerts and their notifications', server);
  for (const r of rows) {
    const name = sqlStringLiteral(s(r.name));
    const perf = s(r.performance_condition);
    const condition = perf
      ? `@performance_condition = ${sqlStringLiteral(perf)}`
      : `@message_id = ${num(r.message_id)}, @severity = ${num(r.severity)}${optional('database_name', r.database_name)}${optional('event_description_keyword', r.event_description_keyword)}`;
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysalerts WHERE name = ${name})\nBEGIN\n`;
    out += `  EXEC msdb.dbo.sp_add_alert @name = ${name}, ${condition}, @enabled = ${r.enabled ? 1 : 0}, @delay_between_responses = ${num(r.delay_between_responses)}, @include_event_description_in = ${num(r.include_event_description)}${optional('job_name', r.job_name)}${optional('category_name', r.category_name)};\n`;
    for (const n of s(r.notifications).split(';').filter(Boolean)) {
      const i = n.lastIndexOf('=');
      out += `  EXEC msdb.dbo.sp_add_notification @alert_name = ${name}, @operator_name = ${sqlStringLiteral(n.slice(0, i))}, @notification_method = ${num(n.slice(i + 1))};\n`;
    }
    out += `END;\n\n`;
  }
  return out;
}

/** proxies.sql: sp_add_proxy on its credential (whose secret is never captured), subsystems, logins. */
export function scriptProxies(rows: SqlRow[], server: string): string {
  let out = header('SQL Agent proxies (their credentials must exist first: the secret is never captured)', server);
  for (const r of rows) {
    const name = sqlStringLiteral(s(r.name));
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysproxies WHERE name = ${name})\nBEGIN\n`;
    out += `  EXEC msdb.dbo.sp_add_proxy @proxy_name = ${name}, @credential_name = ${sqlStringLiteral(s(r.credential_name))}, @enabled = ${r.enabled ? 1 : 0}, @description = ${sqlStringLiteral(s(r.description))};\n`;
    for (const sub of s(r.subsystems).split(',').filter(Boolean)) out += `  EXEC msdb.dbo.sp_grant_proxy_to_subsystem @proxy_name = ${name}, @subsystem_id = ${num(sub)};\n`;
    for (const login of s(r.logins).split(',').filter(Boolean)) out += `  EXEC msdb.dbo.sp_grant_login_to_proxy @proxy_name = ${name}, @login_name = ${sqlStringLiteral(login)};\n`;
    out += `END;\n\n`;
  }
  return out;
}

/** database-mail.sql: accounts (no password: set it at landing), profiles, profile-account links. */
export function scriptDatabaseMail(rows: SqlRow[], server: string): string {
  let out = header('Database Mail profiles and accounts (SMTP passwords are never read)', server);
  const accounts = new Map<string, SqlRow>();
  const profiles = new Map<string, SqlRow>();
  for (const r of rows) {
    if (s(r.account_name)) accounts.set(s(r.account_name), r);
    profiles.set(s(r.profile_name), r);
  }
  for (const [name, a] of accounts) {
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysmail_account WHERE name = ${sqlStringLiteral(name)})\n  EXEC msdb.dbo.sysmail_add_account_sp @account_name = ${sqlStringLiteral(name)}, @email_address = ${sqlStringLiteral(s(a.email_address))}${optional('display_name', a.display_name)}${optional('replyto_address', a.replyto_address)}${optional('description', a.account_description)}, @mailserver_name = ${sqlStringLiteral(s(a.servername))}, @port = ${num(a.port) || 25}, @enable_ssl = ${num(a.enable_ssl)}${optional('username', a.username)}, @use_default_credentials = ${num(a.use_default_credentials)};\n`;
    if (s(a.username)) out += `-- ${name}: the SMTP password is not captured: EXEC msdb.dbo.sysmail_update_account_sp @account_name = ${sqlStringLiteral(name)}, @password = <from the secrets store>;\n`;
    out += '\n';
  }
  for (const [name, p] of profiles) {
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysmail_profile WHERE name = ${sqlStringLiteral(name)})\n  EXEC msdb.dbo.sysmail_add_profile_sp @profile_name = ${sqlStringLiteral(name)}${optional('description', p.profile_description)};\n`;
    for (const r of rows.filter((x) => s(x.profile_name) === name && s(x.account_name))) {
      out += `EXEC msdb.dbo.sysmail_add_profileaccount_sp @profile_name = ${sqlStringLiteral(name)}, @account_name = ${sqlStringLiteral(s(r.account_name))}, @sequence_number = ${num(r.sequence_number) || 1};\n`;
    }
    out += '\n';
  }
  return out;
}

const AUTH: Record<string, string> = { NEGOTIATE: 'WINDOWS NEGOTIATE', NTLM: 'WINDOWS NTLM', KERBEROS: 'WINDOWS KERBEROS' };

/** endpoints.sql: database-mirroring / AG and Service Broker endpoints with Windows authentication; certificate ones as notes. */
export function scriptEndpoints(rows: SqlRow[], server: string, permissions: SqlRow[] = []): string {
  let out = header('endpoints (mirroring / availability groups / Service Broker)', server);
  for (const r of rows) {
    const name = s(r.name);
    const type = s(r.type_desc);
    const auth = AUTH[s(r.connection_auth_desc).toUpperCase()];
    const port = num(r.port);
    const state = ['STARTED', 'STOPPED', 'DISABLED'].includes(s(r.state_desc)) ? s(r.state_desc) : 'STARTED';
    const enc = num(r.is_encryption_enabled) === 1 ? `REQUIRED ALGORITHM ${/^RC4/.test(s(r.encryption_algorithm_desc)) ? 'RC4' : 'AES'}` : 'DISABLED';
    if ((type === 'DATABASE_MIRRORING' || type === 'SERVICE_BROKER') && auth && port > 0) {
      const role = ['ALL', 'PARTNER', 'WITNESS'].includes(s(r.role_desc)) ? s(r.role_desc) : 'ALL';
      const body = type === 'DATABASE_MIRRORING' ? `FOR DATABASE_MIRRORING (ROLE = ${role}, AUTHENTICATION = ${auth}, ENCRYPTION = ${enc})` : `FOR SERVICE_BROKER (AUTHENTICATION = ${auth}, ENCRYPTION = ${enc === 'DISABLED' ? 'DISABLED' : 'REQUIRED'})`;
      out += `IF NOT EXISTS (SELECT 1 FROM sys.endpoints WHERE name = ${sqlStringLiteral(name)})\n  CREATE ENDPOINT ${quoteIdentifier(name)} STATE = ${state} AS TCP (LISTENER_PORT = ${port}) ${body};\n`;
    } else {
      out += `-- endpoint ${name} (${type}, ${s(r.protocol_desc)}, port ${port || 'none'}, authentication ${s(r.connection_auth_desc) || 'n/a'}): recreate by hand (certificate authentication or another type)\n`;
    }
    for (const p of permissions.filter((x) => Number(x.class) === 105 && s(x.securable) === name)) {
      const verb = GRANT_STATE[s(p.state).trim()];
      if (verb && s(p.permission_name).trim() === 'CONNECT') out += `${verb} CONNECT ON ENDPOINT::${quoteIdentifier(name)} TO ${quoteIdentifier(s(p.grantee))};\n`;
    }
    out += '\n';
  }
  return out;
}

export function scriptLinkedServers(rows: SqlRow[], server: string, logins: SqlRow[] = []): string {
  let out = header('linked servers and their login mappings (names only: no remote password is read)', server);
  for (const r of rows) {
    const name = s(r.name);
    out += `IF NOT EXISTS (SELECT 1 FROM sys.servers WHERE name = ${sqlStringLiteral(name)})\n  EXEC master.dbo.sp_addlinkedserver @server = ${sqlStringLiteral(name)}, @srvproduct = ${sqlStringLiteral(s(r.product))}, @provider = ${sqlStringLiteral(s(r.provider))}, @datasrc = ${sqlStringLiteral(s(r.data_source))}, @catalog = ${sqlStringLiteral(s(r.catalog))};\n`;
    for (const l of logins.filter((x) => s(x.server_name) === name)) {
      const local = l.local_login === null || l.local_login === undefined ? 'NULL' : sqlStringLiteral(s(l.local_login));
      if (num(l.uses_self_credential) === 1) {
        out += `EXEC master.dbo.sp_addlinkedsrvlogin @rmtsrvname = ${sqlStringLiteral(name)}, @useself = N'True', @locallogin = ${local};\n`;
      } else {
        out += `-- linked login ${s(l.local_login) || '(all logins)'} -> remote user ${s(l.remote_name)}: the remote password is not captured:\n--   EXEC master.dbo.sp_addlinkedsrvlogin @rmtsrvname = ${sqlStringLiteral(name)}, @useself = N'False', @locallogin = ${local}, @rmtuser = ${sqlStringLiteral(s(l.remote_name))}, @rmtpassword = <from the secrets store>;\n`;
      }
    }
    out += '\n';
  }
  return out;
}

export function scriptCredentials(rows: SqlRow[], server: string): string {
  let out = header('credentials (names and identities only: secrets are never read)', server);
  for (const r of rows) {
    out += `-- CREATE CREDENTIAL ${quoteIdentifier(s(r.name))} WITH IDENTITY = ${sqlStringLiteral(s(r.credential_identity))}, SECRET = N'<fill in from the secrets store>';\n`;
  }
  return out;
}

export function scriptConfiguration(rows: SqlRow[], server: string, integratedSecurityOnly?: boolean | null): string {
  let out = header('server configuration (sp_configure values in use, authentication mode)', server);
  if (integratedSecurityOnly === true || integratedSecurityOnly === false) {
    out += `-- authentication mode: ${integratedSecurityOnly ? 'Windows only (LoginMode 1)' : 'SQL Server and Windows (mixed, LoginMode 2)'}; takes effect after the SQL Server service restarts\n`;
    out += `EXEC master.sys.xp_instance_regwrite N'HKEY_LOCAL_MACHINE', N'Software\\Microsoft\\MSSQLServer\\MSSQLServer', N'LoginMode', N'REG_DWORD', ${integratedSecurityOnly ? 1 : 2};\n`;
  }
  out += `EXEC sys.sp_configure N'show advanced options', 1;\nRECONFIGURE;\n`;
  for (const r of rows) {
    if (s(r.name) === 'show advanced options') continue;
    out += `EXEC sys.sp_configure ${sqlStringLiteral(s(r.name))}, ${BigInt(String(r.value_in_use ?? 0)).toString()};\n`;
  }
  out += `RECONFIGURE;\n`;
  return out;
}

export function scriptStartupAndTraceFlags(procs: SqlRow[], flags: SqlRow[], server: string): string {
  let out = header('startup procedures and global trace flags', server);
  for (const p of procs) out += `EXEC sys.sp_procoption @ProcName = ${sqlStringLiteral(s(p.name))}, @OptionName = N'startup', @OptionValue = N'on';\n`;
  // DBCC TRACESTATUS has no documented order: sorted, so the script is the same bytes for the same flags (drift compares hashes).
  for (const f of [...flags].sort((a, b) => Number(a.TraceFlag) - Number(b.TraceFlag))) {
    const n = Number(f.TraceFlag);
    if (Number.isInteger(n)) out += `-- trace flag ${n} is on globally: add -T${n} to the SQL Server startup parameters, or DBCC TRACEON(${n}, -1);\n`;
  }
  return out;
}
