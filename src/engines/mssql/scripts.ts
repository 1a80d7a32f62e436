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
import { quoteIdentifier, sqlBinaryLiteral, sqlStringLiteral } from './quote.ts';
import type { SqlRow } from './session.ts';

const s = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const header = (what: string, server: string): string =>
  `-- Rubicon instance-objects: ${what} of ${server}\n-- Generated from the live server; review before running on the rebuilt server.\n\n`;

function bytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  return null;
}

/** Logins that must not be recreated from a script: built-in and per-machine accounts. */
export function skipLogin(name: string): string | null {
  if (name === 'sa') return 'sa exists on every instance (its password is set at install)';
  if (/^NT (SERVICE|AUTHORITY)\\/i.test(name)) return 'built-in Windows account, created by setup';
  return null;
}

export function scriptLogins(rows: SqlRow[], server: string, machineName?: string): string {
  let out = header('logins (SID and password hash kept)', server);
  for (const r of rows) {
    const name = s(r.name);
    const skip = skipLogin(name);
    if (skip) {
      out += `-- skipped ${name}: ${skip}\n\n`;
      continue;
    }
    const q = quoteIdentifier(name);
    const type = s(r.type_desc);
    if (type === 'SQL_LOGIN') {
      const hash = bytes(r.password_hash);
      const sid = bytes(r.sid);
      if (!hash || !sid) {
        // No guard line here: an `IF` followed only by a comment would make the next login's statement its body.
        out += `-- ${name}: password hash or SID not readable (needs CONTROL SERVER): recreate by hand\n\n`;
        continue;
      }
      out += `IF SUSER_ID(${sqlStringLiteral(name)}) IS NULL\n`;
      const opts = [
        `PASSWORD = ${sqlBinaryLiteral(hash)} HASHED`,
        `SID = ${sqlBinaryLiteral(sid)}`,
        `DEFAULT_DATABASE = ${quoteIdentifier(s(r.default_database_name) || 'master')}`,
        `CHECK_POLICY = ${r.is_policy_checked ? 'ON' : 'OFF'}`,
        `CHECK_EXPIRATION = ${r.is_expiration_checked ? 'ON' : 'OFF'}`,
      ];
      out += `  CREATE LOGIN ${q} WITH ${opts.join(', ')};\n`;
    } else {
      out += `IF SUSER_ID(${sqlStringLiteral(name)}) IS NULL\n`;
      if (machineName && name.toUpperCase().startsWith(`${machineName.toUpperCase()}\\`)) {
        out += `  -- WARNING: ${name} is a local account of ${machineName}: after an OS rebuild it has a new SID; database users mapped to it must be remapped\n`;
      }
      out += `  CREATE LOGIN ${q} FROM WINDOWS WITH DEFAULT_DATABASE = ${quoteIdentifier(s(r.default_database_name) || 'master')};\n`;
    }
    if (r.is_disabled) out += `ALTER LOGIN ${q} DISABLE;\n`;
    for (const role of s(r.server_roles).split(',').filter(Boolean)) {
      out += `ALTER SERVER ROLE ${quoteIdentifier(role)} ADD MEMBER ${q};\n`;
    }
    out += '\n';
  }
  return out;
}

export function scriptJobs(jobs: SqlRow[], steps: SqlRow[], server: string): string {
  let out = header('SQL Agent jobs', server);
  for (const j of jobs) {
    const name = s(j.name);
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysjobs WHERE name = ${sqlStringLiteral(name)})\nBEGIN\n`;
    out += `  EXEC msdb.dbo.sp_add_job @job_name = ${sqlStringLiteral(name)}, @enabled = ${j.enabled ? 1 : 0}, @description = ${sqlStringLiteral(s(j.description))}, @owner_login_name = ${sqlStringLiteral(s(j.owner_name) || 'sa')};\n`;
    for (const st of steps.filter((x) => s(x.job_name) === name)) {
      out += `  EXEC msdb.dbo.sp_add_jobstep @job_name = ${sqlStringLiteral(name)}, @step_id = ${Number(st.step_id)}, @step_name = ${sqlStringLiteral(s(st.step_name))}, @subsystem = ${sqlStringLiteral(s(st.subsystem))}, @database_name = ${sqlStringLiteral(s(st.database_name) || 'master')}, @on_success_action = ${Number(st.on_success_action)}, @on_fail_action = ${Number(st.on_fail_action)}, @command = ${sqlStringLiteral(s(st.command))};\n`;
    }
    out += `  EXEC msdb.dbo.sp_add_jobserver @job_name = ${sqlStringLiteral(name)};\n`;
    out += `  -- schedules: re-create from the Agent UI or msdb.dbo.sysschedules (not scripted)\nEND;\n\n`;
  }
  return out;
}

export function scriptOperators(rows: SqlRow[], server: string): string {
  let out = header('SQL Agent operators', server);
  for (const r of rows) {
    out += `IF NOT EXISTS (SELECT 1 FROM msdb.dbo.sysoperators WHERE name = ${sqlStringLiteral(s(r.name))})\n  EXEC msdb.dbo.sp_add_operator @name = ${sqlStringLiteral(s(r.name))}, @enabled = ${r.enabled ? 1 : 0}, @email_address = ${sqlStringLiteral(s(r.email_address))};\n\n`;
  }
  return out;
}

export function scriptLinkedServers(rows: SqlRow[], server: string): string {
  let out = header('linked servers (remote logins are NOT scripted: no secret is read)', server);
  for (const r of rows) {
    out += `IF NOT EXISTS (SELECT 1 FROM sys.servers WHERE name = ${sqlStringLiteral(s(r.name))})\n  EXEC master.dbo.sp_addlinkedserver @server = ${sqlStringLiteral(s(r.name))}, @srvproduct = ${sqlStringLiteral(s(r.product))}, @provider = ${sqlStringLiteral(s(r.provider))}, @datasrc = ${sqlStringLiteral(s(r.data_source))}, @catalog = ${sqlStringLiteral(s(r.catalog))};\n-- TODO: sp_addlinkedsrvlogin for ${s(r.name)}: the remote password is not captured\n\n`;
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

export function scriptConfiguration(rows: SqlRow[], server: string): string {
  let out = header('server configuration (sp_configure values in use)', server);
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
