/**
 * Instance-level objects (the instance-objects method's `sql-text`
 * artifacts): proving on the proving ground and drift against the target.
 *
 * Proof contract (proveScripts):
 * - Scripts whose statements may run inside a user transaction (logins.sql,
 *   jobs.sql, operators.sql) run together, in manifest order, in ONE batch:
 *   `SET XACT_ABORT ON; BEGIN TRANSACTION; <scripts>; <presence query>;
 *   ROLLBACK TRANSACTION;`. One batch, so no connection state between
 *   requests matters; XACT_ABORT, so any error rolls the whole transaction
 *   back. Checks: 'restore' (the batch ran without error; the server's
 *   messages are kept), 'objects' (every object the scripts name is there
 *   inside the transaction), 'cleanup' (no transaction left open and the
 *   same objects present as before the proof: nothing was left behind).
 * - Scripts that cannot run in a transaction, or have nothing to run, get a
 *   'restore' check with status 'skipped' and the reason: such an artifact's
 *   proof never passes (a skipped check is not a pass).
 * - An object that already exists on the proving ground is not re-created
 *   (the scripts are guarded by IF … IS NULL / IF NOT EXISTS): the 'objects'
 *   detail names it, since its CREATE was not exercised.
 *
 * Drift contract (driftScripts / driftCertificate): read-only on the target.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { DriftChange, Manifest, ProofCheck } from '../../core/types.ts';
import { compareProperties, jobProperties, loginProperties, type LoginPropertiesFile } from './scripts.ts';
import { formatMessages, type MssqlSession, type SqlParam, type SqlRow, type SqlStatement } from './session.ts';
import { jobSchedulesStatement, jobsStatement, jobStepsStatement, loginsStatement, serverPermissionsStatement, serverRolesStatement } from './sql.ts';

/**
 * Compares the job properties read back on the proving ground with the
 * captured ones (jobs.json). Returns one sentence per difference, naming
 * the job and the property, never a command's text. Pure.
 */
export function compareJobProperties(expected: Record<string, Record<string, string>>, actual: Record<string, Record<string, string>>): string[] {
  const out: string[] = [];
  for (const [job, props] of Object.entries(expected)) {
    const got = actual[job];
    if (!got) {
      out.push(`job ${job}: not found after the script ran`);
      continue;
    }
    for (const k of [...new Set([...Object.keys(props), ...Object.keys(got)])].sort()) {
      if ((props[k] ?? '(absent)') !== (got[k] ?? '(absent)')) out.push(`job ${job}: ${k} is ${k.endsWith('command') ? 'different' : JSON.stringify(got[k] ?? '(absent)')}, captured ${k.endsWith('command') ? 'text differs' : JSON.stringify(props[k] ?? '(absent)')}`);
    }
  }
  return out;
}

/**
 * The scripted jobs (guard lines of jobs.sql) against jobs.json and what
 * was read back: a scripted job jobs.json holds no properties for is a
 * difference too (it could only be proven by name). Pure.
 */
export function jobDifferences(jobNames: string[], expected: Record<string, Record<string, string>>, actual: Record<string, Record<string, string>>, when: string): string[] {
  const unknown = jobNames.filter((j) => !expected[j]).map((j) => `job ${j}: scripted, but jobs.json holds no properties for it`);
  const diff = compareJobProperties(Object.fromEntries(Object.entries(expected).filter(([j]) => jobNames.includes(j))), actual).map((d) => d.replace(': not found after the script ran', `: not found ${when}`));
  return [...unknown, ...diff];
}

export type ScriptedKind = 'login' | 'server-role' | 'job' | 'operator' | 'alert' | 'mail-profile';

export interface ScriptedObject {
  kind: ScriptedKind;
  name: string;
}

/** Marks every statement of this proof (statement logs, tests). */
export const PROOF_MARK = '/* rubicon: instance-objects proof */';

/** Scripts that run inside BEGIN TRANSACTION … ROLLBACK, and what each creates. */
const TRANSACTIONAL: Record<string, ScriptedKind> = { 'logins.sql': 'login', 'operators.sql': 'operator', 'database-mail.sql': 'mail-profile', 'jobs.sql': 'job', 'alerts.sql': 'alert' };

/** Data files of an artifact that are read by the proof, never run. */
const DATA_FILES = new Set(['jobs.json', 'logins.json']);

/** Why a script is not run on the proving ground. */
const NOT_RUN: Record<string, string> = {
  'configuration.sql': 'sp_configure needs RECONFIGURE, which cannot run inside a user transaction (Msg 574); run outside one it would change the proving ground for every other proof. Review the values and apply them at landing',
  'startup.sql': 'trace flags are startup parameters (a service restart, not a statement) and sp_procoption needs the startup procedure, which lives in master and is not captured. Apply them at landing',
  'linked-servers.sql': 'sp_addlinkedserver cannot be executed inside a user-defined transaction, and the remote login password is not captured. Apply it at landing and add the remote login by hand',
  'credentials.sql': 'the credential secret is never captured: the script only names the credential (as a comment) and there is nothing to run. Create it at landing from the secrets store',
  'proxies.sql': 'sp_add_proxy needs its credential, whose secret is never captured, so it cannot be created on the proving ground. Create the credential from the secrets store at landing, then run the script',
  'endpoints.sql': 'CREATE ENDPOINT opens a listener port on the proving ground for every other proof. Applied at landing',
};

const LITERAL = String.raw`N'((?:[^']|'')*)'`;
const GUARDS: [ScriptedKind, RegExp][] = [
  ['login', new RegExp(String.raw`^IF SUSER_ID\(${LITERAL}\) IS NULL$`, 'gm')],
  ['server-role', new RegExp(String.raw`^IF NOT EXISTS \(SELECT 1 FROM sys\.server_principals WHERE name = ${LITERAL} AND type = 'R'\)$`, 'gm')],
  ['job', new RegExp(String.raw`^IF NOT EXISTS \(SELECT 1 FROM msdb\.dbo\.sysjobs WHERE name = ${LITERAL}\)$`, 'gm')],
  ['operator', new RegExp(String.raw`^IF NOT EXISTS \(SELECT 1 FROM msdb\.dbo\.sysoperators WHERE name = ${LITERAL}\)$`, 'gm')],
  ['alert', new RegExp(String.raw`^IF NOT EXISTS \(SELECT 1 FROM msdb\.dbo\.sysalerts WHERE name = ${LITERAL}\)$`, 'gm')],
  ['mail-profile', new RegExp(String.raw`^IF NOT EXISTS \(SELECT 1 FROM msdb\.dbo\.sysmail_profile WHERE name = ${LITERAL}\)$`, 'gm')],
];

/** The objects a script creates, read from its guard lines (scripts.ts writes one per object). Pure. */
export function scriptedObjects(text: string): ScriptedObject[] {
  const out: ScriptedObject[] = [];
  for (const [kind, re] of GUARDS) {
    for (const m of text.matchAll(re)) out.push({ kind, name: m[1]!.replaceAll("''", "'") });
  }
  return out;
}

const CATALOG: Record<ScriptedKind, string> = {
  login: 'sys.server_principals',
  'server-role': 'sys.server_principals',
  job: 'msdb.dbo.sysjobs',
  operator: 'msdb.dbo.sysoperators',
  alert: 'msdb.dbo.sysalerts',
  'mail-profile': 'msdb.dbo.sysmail_profile',
};

const KINDS: ScriptedKind[] = ['login', 'server-role', 'job', 'operator', 'alert', 'mail-profile'];
/** Parameter name prefix per kind (letters only: `server-role` is not a T-SQL name). */
const PREFIX: Record<ScriptedKind, string> = { login: 'login', 'server-role': 'role', job: 'job', operator: 'operator', alert: 'alert', 'mail-profile': 'profile' };

/**
 * `SELECT N'login' AS kind, name FROM sys.server_principals WHERE name IN (@login1, …) UNION ALL …;`
 * with one nvarchar parameter per name; undefined when there is nothing to look for. Pure.
 */
export function presenceQuery(objects: ScriptedObject[]): { text: string; params: SqlParam[] } | undefined {
  const params: SqlParam[] = [];
  const parts: string[] = [];
  for (const kind of KINDS) {
    const names = [...new Set(objects.filter((o) => o.kind === kind).map((o) => o.name))];
    if (names.length === 0) continue;
    const refs = names.map((n, i) => {
      params.push({ name: `${PREFIX[kind]}${i + 1}`, type: 'nvarchar', value: n });
      return `@${PREFIX[kind]}${i + 1}`;
    });
    parts.push(`SELECT N'${kind}' AS kind, name FROM ${CATALOG[kind]} WHERE name IN (${refs.join(', ')})`);
  }
  if (parts.length === 0) return undefined;
  return { text: `${parts.join('\nUNION ALL ')};`, params };
}

/** Which scripted objects exist now, before the proof. Read-only. */
export function presenceStatement(objects: ScriptedObject[]): SqlStatement | undefined {
  const q = presenceQuery(objects);
  return q && { text: `${PROOF_MARK}\n${q.text}`, params: q.params };
}

/**
 * The scripts, then the presence query and `readBack` (queries reading the
 * created objects' properties, e.g. every job property), inside a
 * transaction that is always rolled back. Their result sets are the batch's
 * last ones, in this order. Pure.
 */
export function transactionStatement(scripts: string[], objects: ScriptedObject[], readBack: SqlStatement[] = []): SqlStatement {
  const q = presenceQuery(objects);
  const body = scripts.map((s) => (s.endsWith('\n') ? s : `${s}\n`)).join('');
  const reads = readBack.map((r) => `${r.text}\n`).join('');
  const names = new Set((q?.params ?? []).map((p) => p.name));
  const extra = readBack.flatMap((r) => r.params).filter((p) => !names.has(p.name) && (names.add(p.name), true));
  return {
    text: `${PROOF_MARK}\nSET XACT_ABORT ON;\nBEGIN TRANSACTION;\n${body};\n${q ? `${q.text}\n` : ''}${reads}ROLLBACK TRANSACTION;`,
    params: [...(q?.params ?? []), ...extra],
    long: true,
  };
}

/** Rolls back whatever the proof might have left open on this connection and reports @@TRANCOUNT. Idempotent. */
export function leftoverRollbackStatement(): SqlStatement {
  return { text: `${PROOF_MARK}\nIF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;\nSELECT @@TRANCOUNT AS open_transactions;`, params: [] };
}

const key = (o: { kind?: unknown; name?: unknown }): string => `${String(o.kind)}:${String(o.name)}`;
const label = (o: ScriptedObject): string => `${o.kind} ${o.name}`;
const infos = (messages: { kind: string; number: number; message: string }[]): string =>
  messages.filter((m) => m.kind === 'info').map((m) => `Msg ${m.number}: ${m.message}`).join(' | ');

/** Runs the artifact's scripts on the proving ground as described above. `local`: file name → local path, manifest order. */
export async function proveScripts(session: MssqlSession, local: Map<string, string>, signal?: AbortSignal): Promise<ProofCheck[]> {
  const checks: ProofCheck[] = [];
  const texts: { name: string; text: string }[] = [];
  const t0 = Date.now();
  const empty: string[] = [];
  for (const [name, path] of local) {
    const text = await readFile(path, 'utf8');
    if (text.trim().length === 0) empty.push(name);
    texts.push({ name: basename(name), text });
  }
  checks.push({
    name: 'copy-read',
    status: empty.length ? 'failed' : 'passed',
    detail: empty.length ? `empty script(s): ${empty.join(', ')}` : `${local.size} script(s) read from the vault: ${[...local.keys()].join(', ')}`,
    durationMs: Date.now() - t0,
  });
  if (empty.length) return checks;

  for (const t of texts) {
    if (TRANSACTIONAL[t.name] || DATA_FILES.has(t.name)) continue;
    checks.push({ name: 'restore', status: 'skipped', detail: `${t.name}: not run on the proving ground: ${NOT_RUN[t.name] ?? 'not a script Rubicon knows how to prove'}`, durationMs: 0 });
  }
  const runnable = texts.filter((t) => TRANSACTIONAL[t.name]);
  if (runnable.length === 0) return checks;

  const files = runnable.map((t) => t.name).join(', ');
  const objects = runnable.flatMap((t) => scriptedObjects(t.text));
  const jobsJson = texts.find((t) => t.name === 'jobs.json');
  const expectedJobs = jobsJson ? ((JSON.parse(jobsJson.text) as { jobs?: Record<string, Record<string, string>> }).jobs ?? {}) : undefined;
  const jobNames = [...new Set(objects.filter((o) => o.kind === 'job').map((o) => o.name))];
  const jobReads = expectedJobs && jobNames.length > 0 ? [jobsStatement(jobNames), jobStepsStatement(jobNames), jobSchedulesStatement(jobNames)] : [];
  // The logins and server roles logins.json names, read back inside the transaction with the queries landing uses (after the job reads).
  const hasLogins = runnable.some((t) => t.name === 'logins.sql');
  const loginsJson = texts.find((t) => t.name === 'logins.json');
  const loginFile = loginsJson ? (JSON.parse(loginsJson.text) as Partial<LoginPropertiesFile>) : undefined;
  const expectedLogins = loginFile?.format === 'mssql-login-properties' && loginFile.principals ? loginFile.principals : undefined;
  const loginNames = Object.keys(expectedLogins ?? {}).filter((k) => k.startsWith('login ')).map((k) => k.slice('login '.length));
  const loginRoles = Object.keys(expectedLogins ?? {}).some((k) => k.startsWith('server role '));
  const loginReads = hasLogins && expectedLogins && (loginNames.length > 0 || loginRoles) ? [loginsStatement(loginNames, 'readlogin'), serverPermissionsStatement(), ...(loginRoles ? [serverRolesStatement()] : [])] : [];
  const readBack = [...jobReads, ...loginReads];
  const presence = presenceStatement(objects);
  const present = async (): Promise<Set<string>> => new Set(presence ? (await session.query(presence, 'looking up the scripted objects', signal)).map(key) : []);

  const before = await present();
  let tx: Awaited<ReturnType<MssqlSession['run']>> | undefined;
  try {
    tx = await session.run(transactionStatement(runnable.map((t) => t.text), objects, readBack), signal);
    checks.push({
      name: 'restore',
      status: tx.ok ? 'passed' : 'failed',
      detail: tx.ok
        ? `${files} ran without error inside BEGIN TRANSACTION … ROLLBACK${tx.messages.length ? `; server messages: ${infos(tx.messages)}` : ''}`
        : `${files} failed on the proving ground's SQL Server (the transaction was rolled back): ${formatMessages(tx.messages, ['info', 'error'])}`,
      durationMs: tx.durationMs,
    });
    if (!tx.ok) {
      checks.push({ name: 'objects', status: 'skipped', detail: 'not run: restore failed', durationMs: 0 });
    } else {
      const sets = tx.recordsets.slice(-(1 + readBack.length));
      const found = new Set(((sets[0] ?? []) as SqlRow[]).map(key));
      const missing = objects.filter((o) => !found.has(key(o)));
      const existed = objects.filter((o) => before.has(key(o)));
      const note = existed.length ? `; already on the proving ground before the proof, so the script did not re-create them: ${existed.map(label).join(', ')}` : '';
      checks.push(
        objects.length === 0
          ? { name: 'objects', status: 'passed', detail: `${files} name no object to create (nothing of these kinds on the source)`, durationMs: 0 }
          : missing.length
            ? { name: 'objects', status: 'failed', detail: `the script ran but these objects are not there afterwards: ${missing.map(label).join(', ')}`, durationMs: 0 }
            : { name: 'objects', status: 'passed', detail: `all ${objects.length} scripted object(s) exist inside the transaction: ${objects.map(label).join(', ')}${note}`, durationMs: 0 },
      );
      if (expectedJobs && jobNames.length > 0) {
        const actual = jobProperties((sets[1] ?? []) as SqlRow[], (sets[2] ?? []) as SqlRow[], (sets[3] ?? []) as SqlRow[]);
        const diff = jobDifferences(jobNames, expectedJobs, actual, 'after the script ran');
        const count = Object.values(expectedJobs).reduce((n, p) => n + Object.keys(p).length, 0);
        checks.push(
          diff.length
            ? { name: 'job-properties', status: 'failed', detail: `read back inside the transaction, the jobs differ from the captured ones: ${diff.slice(0, 20).join('; ')}${diff.length > 20 ? `; … and ${diff.length - 20} more` : ''}`, durationMs: 0 }
            : { name: 'job-properties', status: 'passed', detail: `every captured property (${count}: steps, flow, retries, output files, proxies, notifications, schedules, start step) read back equal for ${jobNames.length} job(s)`, durationMs: 0 },
        );
      } else if (jobNames.length > 0) {
        checks.push({ name: 'job-properties', status: 'failed', detail: 'the artifact has no jobs.json (captured by an earlier Rubicon): job properties cannot be proven, only names', durationMs: 0 });
      }
      if (hasLogins) {
        if (!expectedLogins) {
          checks.push({ name: 'login-properties', status: 'failed', detail: 'the artifact has no logins.json (captured by an earlier Rubicon): login properties cannot be proven, only names', durationMs: 0 });
        } else {
          const ls = sets.slice(1 + jobReads.length) as SqlRow[][];
          const guarded = objects.filter((o) => o.kind === 'login' || o.kind === 'server-role').map((o) => `${o.kind === 'login' ? 'login' : 'server role'} ${o.name}`);
          const unknown = guarded.filter((k) => !expectedLogins[k]).map((k) => `${k}: scripted, but logins.json holds no properties for it`);
          const diff = loginReads.length ? [...unknown, ...compareProperties(expectedLogins, loginProperties(ls[0] ?? [], ls[1] ?? [], loginRoles ? (ls[2] ?? []) : [], loginFile?.machineName ?? ''), 'expected')] : unknown;
          checks.push(
            diff.length
              ? { name: 'login-properties', status: 'failed', detail: `read back inside the transaction, the logins differ from the captured ones: ${listed(diff)}`, durationMs: 0 }
              : { name: 'login-properties', status: 'passed', detail: `every captured property (SID, type, default database and language, disabled, policy, password hash, server roles, CONNECT SQL, server permissions) read back equal for ${loginNames.length} login(s)${loginRoles ? ' and the user-defined server roles' : ''}`, durationMs: 0 },
          );
        }
      }
    }
  } finally {
    // Never skipped: the proving ground is left as it was, or the proof says it is not.
    const c0 = Date.now();
    let cleanup: ProofCheck;
    try {
      const rolled = await session.query(leftoverRollbackStatement(), 'rolling back the proof transaction', signal);
      const open = Number(rolled[0]?.open_transactions ?? -1);
      const after = await present();
      const left = objects.filter((o) => after.has(key(o)) && !before.has(key(o)));
      cleanup =
        open !== 0
          ? { name: 'cleanup', status: 'failed', detail: `@@TRANCOUNT is ${open} after ROLLBACK: the proof transaction is still open`, durationMs: Date.now() - c0 }
          : left.length
            ? { name: 'cleanup', status: 'failed', detail: `still on the proving ground after ROLLBACK: ${left.map(label).join(', ')}`, durationMs: Date.now() - c0 }
            : { name: 'cleanup', status: 'passed', detail: `rolled back: no transaction open and no scripted object left behind`, durationMs: Date.now() - c0 };
    } catch (e) {
      cleanup = { name: 'cleanup', status: 'failed', detail: `could not confirm the rollback: ${(e as Error).message}`, durationMs: Date.now() - c0 };
    }
    checks.push(cleanup);
  }
  return checks;
}

const MAX_SHOWN = 20;
const listed = (diff: string[]): string => `${diff.slice(0, MAX_SHOWN).join('; ')}${diff.length > MAX_SHOWN ? `; … and ${diff.length - MAX_SHOWN} more` : ''}`;

/**
 * After an instance-objects artifact landed (its scripts ran on the rebuilt
 * server): every login and user-defined server role logins.sql made, and
 * every job jobs.sql made, read back from the rebuilt server with the
 * queries capture used, and each property compared with logins.json /
 * jobs.json. Checks `login-properties` (SID, type, default database and
 * language, disabled, policy flags, password hash, server roles, CONNECT
 * SQL, server permissions; roles' members and permissions) and
 * `job-properties` (steps and their flow, retries, output files, proxies,
 * schedules, notifications, start step, owner, …). A difference fails the
 * check naming the principal or job and the property; a script whose data
 * file is missing (an artifact of an earlier Rubicon) fails it too: a
 * script that ran is not a landed object. Read-only. `files`: the
 * artifact's files by name.
 */
export async function readBackLanded(session: MssqlSession, files: { name: string; text: string }[], signal?: AbortSignal): Promise<ProofCheck[]> {
  const checks: ProofCheck[] = [];
  const text = (n: string): string | undefined => files.find((f) => f.name === n)?.text;
  const loginsSql = text('logins.sql');
  if (loginsSql !== undefined) {
    const t0 = Date.now();
    const json = text('logins.json');
    if (json === undefined) {
      checks.push({ name: 'login-properties', status: 'failed', detail: 'the artifact has no logins.json (captured by an earlier Rubicon): the landed logins cannot be compared with the source; capture the item again', durationMs: 0 });
    } else {
      const captured = JSON.parse(json) as Partial<LoginPropertiesFile>;
      const expected = captured.format === 'mssql-login-properties' && captured.principals ? captured.principals : undefined;
      if (!expected) {
        checks.push({ name: 'login-properties', status: 'failed', detail: 'logins.json is not a Rubicon login-properties file', durationMs: 0 });
      } else {
        const guarded = scriptedObjects(loginsSql).filter((o) => o.kind === 'login' || o.kind === 'server-role').map((o) => `${o.kind === 'login' ? 'login' : 'server role'} ${o.name}`);
        const unknown = guarded.filter((k) => !expected[k]).map((k) => `${k}: scripted, but logins.json holds no properties for it`);
        const names = Object.keys(expected).filter((k) => k.startsWith('login ')).map((k) => k.slice('login '.length));
        const roles = Object.keys(expected).some((k) => k.startsWith('server role '));
        let diff = unknown;
        if (names.length > 0 || roles) {
          const rows = names.length > 0 ? await session.query(loginsStatement(names), 'reading the landed logins back', signal) : [];
          const permissions = await session.query(serverPermissionsStatement(), 'reading the landed server permissions back', signal);
          const roleRows = roles ? await session.query(serverRolesStatement(), 'reading the landed server roles back', signal) : [];
          diff = [...unknown, ...compareProperties(expected, loginProperties(rows, permissions, roleRows, captured.machineName ?? ''), 'expected')];
        }
        const count = Object.values(expected).reduce((n, p) => n + Object.keys(p).length, 0);
        checks.push(
          diff.length
            ? { name: 'login-properties', status: 'failed', detail: `read back from the rebuilt server, the logins differ from the captured ones: ${listed(diff)}`, durationMs: Date.now() - t0 }
            : names.length === 0 && !roles
              ? { name: 'login-properties', status: 'passed', detail: 'logins.sql creates no login or server role (nothing of the kind was scripted): nothing to read back', durationMs: Date.now() - t0 }
              : { name: 'login-properties', status: 'passed', detail: `every captured property (${count}: SID, type, default database and language, disabled, policy, password hash, server roles, CONNECT SQL, server permissions) read back equal for ${names.length} login(s)${roles ? ' and the user-defined server roles' : ''}`, durationMs: Date.now() - t0 },
        );
      }
    }
  }
  const jobsSql = text('jobs.sql');
  if (jobsSql !== undefined) {
    const t0 = Date.now();
    const json = text('jobs.json');
    const jobNames = [...new Set(scriptedObjects(jobsSql).filter((o) => o.kind === 'job').map((o) => o.name))];
    if (json === undefined) {
      checks.push({ name: 'job-properties', status: 'failed', detail: 'the artifact has no jobs.json (captured by an earlier Rubicon): the landed jobs cannot be compared with the source; capture the item again', durationMs: 0 });
    } else {
      const expected = (JSON.parse(json) as { jobs?: Record<string, Record<string, string>> }).jobs ?? {};
      const all = [...new Set([...jobNames, ...Object.keys(expected)])];
      let diff: string[] = [];
      if (all.length > 0) {
        const jobs = await session.query(jobsStatement(all), 'reading the landed jobs back', signal);
        const steps = await session.query(jobStepsStatement(all), 'reading the landed job steps back', signal);
        const schedules = await session.query(jobSchedulesStatement(all), 'reading the landed job schedules back', signal);
        diff = jobDifferences(all, expected, jobProperties(jobs, steps, schedules), 'on the rebuilt server');
      }
      const count = Object.values(expected).reduce((n, p) => n + Object.keys(p).length, 0);
      checks.push(
        diff.length
          ? { name: 'job-properties', status: 'failed', detail: `read back from the rebuilt server, the jobs differ from the captured ones: ${listed(diff)}`, durationMs: Date.now() - t0 }
          : { name: 'job-properties', status: 'passed', detail: `every captured property (${count}: steps, flow, retries, output files, proxies, notifications, schedules, start step, owner) read back equal for ${all.length} job(s)`, durationMs: Date.now() - t0 },
      );
    }
  }
  return checks;
}

/** SHA-256 of a string, hex (as manifests record it). Pure. */
export function sha256Hex(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Compares freshly scripted files (name → text) with the artifact's
 * manifest entries by SHA-256. Pure.
 */
export function compareScripts(manifest: Manifest, now: { name: string; text: string }[]): DriftChange[] {
  const changes: DriftChange[] = [];
  const fresh = new Map(now.map((f) => [f.name, f.text]));
  for (const e of manifest.entries) {
    const text = fresh.get(basename(e.path));
    if (text === undefined) changes.push({ path: e.path, kind: 'deleted' });
    else if (sha256Hex(text) !== e.sha256) changes.push({ path: e.path, kind: 'modified', size: Buffer.byteLength(text) });
  }
  const had = new Set(manifest.entries.map((e) => basename(e.path)));
  for (const f of now) if (!had.has(f.name)) changes.push({ path: f.name, kind: 'added', size: Buffer.byteLength(f.text) });
  return changes;
}
