/**
 * Instance-level objects at the protocol level: scripts captured from the
 * scripted target endpoint (the real capture code), proved on the scripted
 * proving ground inside BEGIN TRANSACTION … ROLLBACK, and drift-checked by
 * scripting again. The proving ground endpoint keeps a little state (which
 * objects exist, whether a transaction is open) so the checks have
 * something real to look at.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Artifact, Item, Manifest } from '../../../src/core/types.ts';
import type { EngineContext } from '../../../src/engines/engine.ts';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { PROOF_MARK, scriptedObjects } from '../../../src/engines/mssql/instance-proof.ts';
import { lazyMssqlEngine } from '../../../src/engines/mssql/lazy.ts';
import { scriptLogins } from '../../../src/engines/mssql/scripts.ts';
import { loginsStatement, serverPermissionsStatement } from '../../../src/engines/mssql/sql.ts';
import type { TdsReply, TdsRequest } from '../../tds/server.ts';
import { JOB_COLS, JOB_ROW, one, ok, rs, SCHEDULE_COLS, SCHEDULE_ROW, scripted, serverInfoReply, STEP_COLS, STEP_ROWS, tempHost, type Scripted } from './fixtures.ts';

const HASH = Buffer.from('0200A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6', 'hex');
const SID = Buffer.from('5A1F0C2D3E4B5A69788796A5B4C3D2E1', 'hex');
const JOB = 'EHR Nightly Backup';
const THUMB = '0x9F8E7D6C5B4A39281706F5E4D3C2B1A098765432';
const CERT_PASSWORD = 'Pvk-Secret-Do-Not-Log-7!';

let target: Scripted;
let pg: Scripted;
let h: Awaited<ReturnType<typeof tempHost>>;
let ctx: EngineContext;

beforeEach(async () => {
  target = await scripted();
  pg = await scripted();
  h = await tempHost();
  ctx = { host: h.host, workDir: join(h.root, 'work') };
  await mkdir(ctx.workDir, { recursive: true });
});
afterEach(async () => {
  await target.stop();
  await pg.stop();
  await h.dispose();
});

const engine = () =>
  createMssqlEngine({
    connection: target.config,
    provingGround: pg.config,
    backupDirectory: '/var/opt/mssql/backup',
    backupDirectoryOnHost: 'backup',
    secrets: { certificatePassword: async (name) => (name === 'TDE_Cert' ? CERT_PASSWORD : undefined) },
  });

const objectItem = (kind: string, name: string): Item => ({
  id: `instance-object:mssql:${kind}:${name}`,
  kind: 'instance-object',
  name,
  declared: false,
  discovered: true,
  engine: 'mssql',
  location: `${kind}/${name}`,
  facts: {},
  why: [],
  methods: ['instance-objects'],
});

const loginCols: [string, 'nvarchar' | 'varbinary' | 'int'][] = [
  ['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'],
  ['default_language_name', 'nvarchar'], ['is_disabled', 'int'], ['is_policy_checked', 'int'], ['is_expiration_checked', 'int'], ['server_roles', 'nvarchar'],
];

/** The target's catalog: one SQL login (hash and SID as given), one job with two steps and a schedule, and nothing else. */
function scriptTarget(login: { hash?: Buffer; sid?: Buffer } = {}): void {
  target.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply());
  target.server.on(/FROM sys\.server_principals AS sp/, () =>
    one(rs(loginCols, [{ name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: login.sid ?? SID, password_hash: login.hash ?? HASH, default_database_name: 'EHR', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: 'dbcreator' }])),
  );
  target.server.on(/FROM sys\.server_permissions AS p/, one(rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar'], ['securable', 'nvarchar']], [])));
  target.server.on(/FROM sys\.server_principals AS r\nWHERE r\.type = 'R'/, one(rs([['name', 'nvarchar'], ['owner_name', 'nvarchar'], ['members', 'nvarchar']], [])));
  target.server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(JOB_COLS, [{ ...JOB_ROW, owner_name: 'sa', notify_email_operator_name: null, notify_level_email: 0 }])));
  target.server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, one(rs(STEP_COLS, STEP_ROWS)));
  target.server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, one(rs(SCHEDULE_COLS, [SCHEDULE_ROW])));
  target.server.on(/FROM sys\.configurations/, one(rs([['name', 'nvarchar'], ['value', 'bigint'], ['value_in_use', 'bigint'], ['is_advanced', 'int']], [{ name: 'max server memory (MB)', value: 24576n, value_in_use: 24576n, is_advanced: 1 }])));
}

/** Captures the item from the target and hands the files over as a vault would: a copy with a manifest of real SHA-256s. */
async function captured(item: Item): Promise<{ artifact: Artifact; manifest: Manifest; files: string[] }> {
  const c = await engine().capture(ctx, item, 'instance-objects', {});
  const dir = join(h.root, 'fetched', encodeURIComponent(item.id));
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  const entries: Manifest['entries'] = [];
  for (const f of c.files) {
    const bytes = await readFile(f.path);
    const p = join(dir, f.name);
    await writeFile(p, bytes);
    files.push(p);
    entries.push({ path: f.name, size: bytes.length, mtimeMs: 0, mode: 0o644, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  const id = `run1.capture.${item.id}.instance-objects`;
  const manifest: Manifest = { version: 1, artifactId: id, itemId: item.id, method: 'instance-objects', format: c.format, entries };
  const artifact = { id, runId: 'run1', itemId: item.id, method: 'instance-objects', independenceGroup: 'instance-objects', phase: 'capture', origin: 'rubicon', format: c.format } as unknown as Artifact;
  return { artifact, manifest, files };
}

/**
 * The proving ground's SQL Server with state: `existing` objects are there
 * from the start; the transaction batch "creates" what its guard lines name
 * (unless `fail` says otherwise) and rolls back; the leftover rollback
 * reports @@TRANCOUNT.
 */
function scriptProvingGround(o: { existing?: string[]; fail?: TdsReply; leaveOpen?: boolean; notCreated?: string[]; schedules?: Record<string, unknown>[]; login?: Record<string, unknown> } = {}): { committed: Set<string> } {
  const committed = new Set(o.existing ?? []);
  let open = false;
  const presence = (req: TdsRequest, have: Set<string>): TdsReply => {
    const rows = Object.entries(req.params).flatMap(([param, name]) => {
      const kind = /^(login|job|operator|alert|profile|role)\d+$/.exec(param)?.[1];
      return kind && have.has(`${kind}:${String(name)}`) ? [{ kind, name: String(name) }] : [];
    });
    return one(rs([['kind', 'nvarchar'], ['name', 'nvarchar']], rows));
  };
  pg.server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSET XACT_ABORT ON;`), (req) => {
    if (o.fail) return o.fail;
    const inTx = new Set(committed);
    for (const x of scriptedObjects(req.sql)) if (!o.notCreated?.includes(`${x.kind}:${x.name}`)) inTx.add(`${x.kind}:${x.name}`);
    open = o.leaveOpen === true;
    const p = /UNION ALL|WHERE name IN/.test(req.sql) ? presence(req, inTx) : ok;
    const sets = [...(p.resultSets ?? [])];
    if (req.sql.includes('FROM msdb.dbo.sysjobschedules')) {
      // The job read-back inside the transaction: what the scripted sp_add_job* created (here: the target's rows, unless a test changes them).
      const jobs = [...inTx].filter((k) => k.startsWith('job:')).map((k) => k.slice(4));
      const mine = <T extends Record<string, unknown>>(rows: T[], key: string): T[] => rows.filter((r) => jobs.includes(String(r[key])));
      sets.push(
        rs(JOB_COLS, mine([{ ...JOB_ROW, owner_name: 'sa', notify_email_operator_name: null, notify_level_email: 0 }], 'name')),
        rs(STEP_COLS, mine(STEP_ROWS, 'job_name')),
        rs(SCHEDULE_COLS, mine(o.schedules ?? [SCHEDULE_ROW], 'job_name')),
      );
    }
    if (req.sql.includes('AND sp.name IN (@readlogin1')) {
      // The login read-back after the job reads: what CREATE LOGIN made (the target's row, unless a test changes it), its permissions, no roles.
      const made = inTx.has('login:ehr_app') ? [{ name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: SID, password_hash: HASH, default_database_name: 'EHR', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: 'dbcreator', ...o.login }] : [];
      sets.push(rs(loginCols, made), rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar'], ['securable', 'nvarchar']], []));
      if (req.sql.includes("WHERE r.type = 'R'")) sets.push(rs([['name', 'nvarchar'], ['owner_name', 'nvarchar'], ['members', 'nvarchar']], []));
    }
    return sets.length === (p.resultSets ?? []).length ? p : { resultSets: sets };
  });
  pg.server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nIF @@TRANCOUNT > 0`), () => one(rs([['open_transactions', 'int']], [{ open_transactions: open ? 1 : 0 }])));
  pg.server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSELECT N'`), (req) => presence(req, committed));
  return { committed };
}

const statuses = (checks: { name: string; status: string }[]) => checks.map((c) => `${c.name}:${c.status}`);

describe('proving instance-object scripts on the proving ground', () => {
  it('sends exactly: presence before, the scripts inside SET XACT_ABORT ON; BEGIN TRANSACTION … ROLLBACK with the lookup inside, the leftover rollback, presence after', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('login', 'ehr_app'));
    scriptProvingGround();
    const script = await readFile(files[0]!, 'utf8');
    const r = await engine().prove(ctx, artifact, manifest, files);
    const lookup = `SELECT N'login' AS kind, name FROM sys.server_principals WHERE name IN (@login1);`;
    const sent = pg.server.statements();
    expect(sent).toEqual([
      `${PROOF_MARK}\n${lookup}`,
      `${PROOF_MARK}\nSET XACT_ABORT ON;\nBEGIN TRANSACTION;\n${script};\n${lookup}\n${loginsStatement(['ehr_app'], 'readlogin').text}\n${serverPermissionsStatement().text}\nROLLBACK TRANSACTION;`,
      `${PROOF_MARK}\nIF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;\nSELECT @@TRANCOUNT AS open_transactions;`,
      `${PROOF_MARK}\n${lookup}`,
    ]);
    expect(pg.server.find(/BEGIN TRANSACTION/)[0]?.params).toEqual({ login1: 'ehr_app', readlogin1: 'ehr_app' });
    // The script is the captured one: the login keeps its SID and hash.
    expect(script).toContain(`CREATE LOGIN [ehr_app] WITH PASSWORD = 0x${HASH.toString('hex').toUpperCase()} HASHED, SID = 0x5A1F0C2D3E4B5A69788796A5B4C3D2E1`);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'login-properties:passed', 'cleanup:passed']);
    // Nothing reached the target during the proof beyond the capture's own reads.
    expect(target.server.find(/BEGIN TRANSACTION|CREATE LOGIN/)).toEqual([]);
  });

  it('a login proof and a job proof pass when the objects exist inside the transaction and are gone after it', async () => {
    scriptTarget();
    const e = engine();
    const login = await captured(objectItem('login', 'ehr_app'));
    const job = await captured(objectItem('job', JOB));
    const { committed } = scriptProvingGround();
    const lr = await e.prove(ctx, login.artifact, login.manifest, login.files);
    const jr = await e.prove(ctx, job.artifact, job.manifest, job.files);
    expect(statuses(lr.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'login-properties:passed', 'cleanup:passed']);
    expect(statuses(jr.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'job-properties:passed', 'cleanup:passed']);
    expect(jr.checks.find((c) => c.name === 'job-properties')?.detail).toMatch(/every captured property \(\d+: steps, flow, retries/);
    expect(lr.checks.find((c) => c.name === 'objects')?.detail).toContain('login ehr_app');
    expect(jr.checks.find((c) => c.name === 'objects')?.detail).toContain(`job ${JOB}`);
    expect(pg.server.find(/BEGIN TRANSACTION/)[1]?.sql).toContain(`EXEC msdb.dbo.sp_add_job @job_name = N'${JOB}'`);
    expect(pg.server.find(/BEGIN TRANSACTION/)[1]?.params).toEqual({ job1: JOB });
    // read back inside the transaction, before ROLLBACK
    const tx = pg.server.find(/BEGIN TRANSACTION/)[1]!.sql;
    expect(tx.indexOf('FROM msdb.dbo.sysjobschedules')).toBeLessThan(tx.indexOf('ROLLBACK TRANSACTION'));
    expect([...committed]).toEqual([]);
  });

  it('an object the script does not create fails "objects"; a transaction left open fails "cleanup"', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('login', 'ehr_app'));
    scriptProvingGround({ notCreated: ['login:ehr_app'], leaveOpen: true });
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:failed', 'login-properties:failed', 'cleanup:failed']);
    expect(r.checks.find((c) => c.name === 'objects')?.detail).toContain('not there afterwards: login ehr_app');
    expect(r.checks.find((c) => c.name === 'cleanup')?.detail).toContain('@@TRANCOUNT is 1');
  });

  it('a script error fails the proof with the server\'s words kept, and the rollback is still confirmed', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('login', 'ehr_app'));
    scriptProvingGround({
      fail: { errors: [{ number: 15025, class: 16, message: "The server principal 'ehr_app' already exists." }] },
    });
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:failed', 'objects:skipped', 'cleanup:passed']);
    expect(r.checks.find((c) => c.name === 'restore')?.detail).toContain("Msg 15025, Level 16, State 1: The server principal 'ehr_app' already exists.");
    expect(pg.server.statements().at(-2)).toMatch(/IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;/);
  });

  it('an object already on the proving ground is named as not re-created', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('login', 'ehr_app'));
    scriptProvingGround({ existing: ['login:ehr_app'] });
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'login-properties:passed', 'cleanup:passed']);
    expect(r.checks.find((c) => c.name === 'objects')?.detail).toContain('already on the proving ground before the proof, so the script did not re-create them: login ehr_app');
  });

  it('a configuration item gets an honest skipped restore (RECONFIGURE cannot run in a transaction) and nothing is sent', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('configuration', 'EHR-SQL01'));
    scriptProvingGround();
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:skipped']);
    expect(r.checks[1]!.detail).toContain('configuration.sql: not run on the proving ground: sp_configure needs RECONFIGURE');
    expect(pg.server.statements()).toEqual([]);
  });

  it('the whole-instance artifact runs logins, jobs and operators in one transaction and skips the rest by name', async () => {
    scriptTarget();
    target.server.on(() => true, ok);
    const { artifact, manifest, files } = await captured(objectItem('instance', 'EHR-SQL01'));
    scriptProvingGround();
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', ...Array(6).fill('restore:skipped'), 'restore:passed', 'objects:passed', 'job-properties:passed', 'login-properties:passed', 'cleanup:passed']);
    expect(r.checks.filter((c) => c.status === 'skipped').map((c) => c.detail.split(':')[0])).toEqual(['proxies.sql', 'linked-servers.sql', 'credentials.sql', 'endpoints.sql', 'configuration.sql', 'startup.sql']);
    // operators and Database Mail before the jobs and alerts that notify through them
    expect(manifest.entries.map((e) => e.path)).toEqual(['logins.sql', 'logins.json', 'operators.sql', 'database-mail.sql', 'proxies.sql', 'jobs.sql', 'jobs.json', 'alerts.sql', 'linked-servers.sql', 'credentials.sql', 'endpoints.sql', 'configuration.sql', 'startup.sql']);
    const [tx] = pg.server.find(/BEGIN TRANSACTION/);
    expect(tx?.sql.indexOf('CREATE LOGIN [ehr_app]')).toBeLessThan(tx!.sql.indexOf('sp_add_job'));
    expect(tx?.params).toEqual({ login1: 'ehr_app', job1: JOB, readlogin1: 'ehr_app' });
  });

  it('a login that is not the captured one inside the transaction (another SID, default database, disabled) fails login-properties, naming the login and each property', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('login', 'ehr_app'));
    scriptProvingGround({ existing: ['login:ehr_app'], login: { sid: Buffer.from('00000000000000000000000000000042', 'hex'), default_database_name: 'master', is_disabled: 1 } });
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'login-properties:failed', 'cleanup:passed']);
    const detail = r.checks.find((c) => c.name === 'login-properties')?.detail;
    expect(detail).toContain('login ehr_app: sid is "0x00000000000000000000000000000042"');
    expect(detail).toContain('login ehr_app: default database is "master", captured "EHR"');
    expect(detail).toContain('login ehr_app: disabled is "yes", captured "no"');
  });

  it('a job whose schedule is not there after the script ran fails job-properties, naming the job and the property', async () => {
    scriptTarget();
    const { artifact, manifest, files } = await captured(objectItem('job', JOB));
    scriptProvingGround({ schedules: [] });
    const r = await engine().prove(ctx, artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['copy-read:passed', 'restore:passed', 'objects:passed', 'job-properties:failed', 'cleanup:passed']);
    expect(r.checks.find((c) => c.name === 'job-properties')?.detail).toContain(`job ${JOB}: schedule nightly 02:00 freq_type is "(absent)", captured "4"`);
  });

  it('a certificate artifact passes when CREATE CERTIFICATE restores it with the captured thumbprint', async () => {
    const dir = join(h.root, 'fetched', 'cert');
    await mkdir(dir, { recursive: true });
    const names = ['TDE_Cert.cer', 'TDE_Cert.pvk', 'certificate.json'];
    const files = names.map((n) => join(dir, n));
    await writeFile(files[0]!, 'cer bytes');
    await writeFile(files[1]!, 'pvk bytes');
    await writeFile(files[2]!, JSON.stringify({ version: 1, format: 'mssql-certificate', certificate: { name: 'TDE_Cert', thumbprint: THUMB, certFile: names[0], keyFile: names[1] } }));
    const manifest: Manifest = { version: 1, artifactId: 'a', itemId: 'certificate:mssql:TDE_Cert', method: 'instance-objects', format: 'mssql-certificate', entries: names.map((n) => ({ path: n, size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) })) };
    let created = false;
    pg.server.on(/WHERE CONVERT\(nvarchar\(130\), c\.thumbprint, 1\) = @thumbprint/, () => one(rs([['name', 'nvarchar']], created ? [{ name: 'TDE_Cert' }] : [])));
    pg.server.on(/^CREATE DATABASE \[rubicon-keycheck-/, ok);
    pg.server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
    pg.server.on((q) => q.sql.includes('CREATE CERTIFICATE') && q.sql.includes('rubicon-keycheck-'), ok);
    pg.server.on(/FROM \[rubicon-keycheck-[0-9a-f]+\]\.sys\.certificates/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: THUMB }])));
    pg.server.on(/N'CREATE CERTIFICATE '/, () => ((created = true), ok));
    pg.server.on(/AS thumbprint FROM master\.sys\.certificates AS c WHERE c\.name = @certificate/, one(rs([['thumbprint', 'nvarchar']], [{ thumbprint: THUMB }])));
    const r = await engine().prove(ctx, { id: 'a' } as Artifact, manifest, files);
    expect(statuses(r.checks)).toEqual(['certificate:passed']);
    expect(r.checks[0]!.detail).toContain(`thumbprint ${THUMB} matches (tested in a scratch database, dropped)`);
    expect(r.checks[0]!.detail).toContain('restored into master with its private key');
    expect(pg.server.find((q) => q.sql.includes("N'CREATE CERTIFICATE '") && q.sql.includes('EXEC master.'))[0]?.params).toMatchObject({ certificate: 'TDE_Cert', certFile: files[0], keyFile: files[1], password: CERT_PASSWORD });
  });
});

describe('script guard lines', () => {
  it('a login whose hash is unreadable gets a comment and no dangling IF (which would swallow the next login); names with quotes round-trip', () => {
    const text = scriptLogins([
      { name: 'no_hash', type_desc: 'SQL_LOGIN', sid: SID, password_hash: null },
      { name: "o'brien", type_desc: 'SQL_LOGIN', sid: SID, password_hash: HASH, default_database_name: 'EHR' },
    ], 'EHR-SQL01');
    expect(text).not.toContain("IF SUSER_ID(N'no_hash')");
    expect(text).toContain('-- no_hash: password hash or SID not readable');
    expect(scriptedObjects(text)).toEqual([{ kind: 'login', name: "o'brien" }]);
  });
});

describe('drift of instance-level objects', () => {
  it('an unchanged login gives [] (the scripts are the same bytes), read-only on the target', async () => {
    scriptTarget();
    const item = objectItem('login', 'ehr_app');
    const { artifact, manifest, files } = await captured(item);
    const before = target.server.statements().length;
    const changes = await engine().drift!(ctx, item, manifest, files);
    expect(changes).toEqual([]);
    expect(artifact.id).toContain('ehr_app');
    const sent = target.server.statements().slice(before);
    expect(sent.length).toBeGreaterThan(0);
    for (const s of sent) expect(s).toMatch(/^(SELECT|DBCC TRACESTATUS)/);
  });

  it('a login whose password hash changed gives "modified" for logins.sql and logins.json (what landing reads back); so does a changed SID', async () => {
    let current: { hash?: Buffer; sid?: Buffer } = {};
    target.server.on(/FROM sys\.server_principals AS sp/, () =>
      one(rs(loginCols, [{ name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: current.sid ?? SID, password_hash: current.hash ?? HASH, default_database_name: 'EHR', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: 'dbcreator' }])),
    );
    scriptTarget();
    const item = objectItem('login', 'ehr_app');
    const { manifest, files } = await captured(item);
    current = { hash: Buffer.from(HASH.map((b, i) => (i === HASH.length - 1 ? b ^ 0xff : b))) };
    expect(await engine().drift!(ctx, item, manifest, files)).toEqual([{ path: 'logins.sql', kind: 'modified', size: expect.any(Number) }, { path: 'logins.json', kind: 'modified', size: expect.any(Number) }]);
    current = { sid: Buffer.from('00000000000000000000000000000001', 'hex') };
    expect(await engine().drift!(ctx, item, manifest, files)).toEqual([{ path: 'logins.sql', kind: 'modified', size: expect.any(Number) }, { path: 'logins.json', kind: 'modified', size: expect.any(Number) }]);
    current = {};
    expect(await engine().drift!(ctx, item, manifest, files)).toEqual([]);
  });

  it('a certificate: same thumbprint → [], gone → deleted; a database artifact → undefined (cannot tell here); the lazy engine forwards drift', async () => {
    const dir = join(h.root, 'fetched', 'cert');
    await mkdir(dir, { recursive: true });
    const meta = join(dir, 'certificate.json');
    await writeFile(meta, JSON.stringify({ version: 1, format: 'mssql-certificate', certificate: { name: 'TDE_Cert', thumbprint: THUMB, certFile: 'c.cer', keyFile: 'c.pvk' } }));
    const manifest: Manifest = { version: 1, artifactId: 'a', itemId: 'certificate:mssql:TDE_Cert', method: 'instance-objects', format: 'mssql-certificate', entries: [{ path: 'certificate.json', size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) }] };
    let present = true;
    target.server.on(/AS thumbprint FROM master\.sys\.certificates AS c WHERE c\.name = @certificate/, () => one(rs([['thumbprint', 'nvarchar']], present ? [{ thumbprint: THUMB.toLowerCase() }] : [])));
    const item = { ...objectItem('certificate', 'TDE_Cert'), id: 'certificate:mssql:TDE_Cert', kind: 'certificate' as const, location: 'certificate/TDE_Cert' };
    const lazy = lazyMssqlEngine({ connection: target.config, backupDirectory: '/b' });
    expect(await lazy.drift!(ctx, item, manifest, [meta])).toEqual([]);
    present = false;
    expect(await engine().drift!(ctx, item, manifest, [meta])).toEqual([{ path: 'certificate/TDE_Cert', kind: 'deleted' }]);
    expect(await engine().drift!(ctx, objectItem('login', 'x'), { ...manifest, format: 'mssql-bak' }, [meta])).toBeUndefined();
  });
});

/**
 * Landing validation of instance scripts: after logins.sql / jobs.sql ran on
 * the rebuilt server, every login and job is read back from it (the same
 * catalog queries capture used, filtered to the landed names) and each
 * property compared with logins.json / jobs.json. Before this, a script that
 * ran counted as landed: these tests fail without the read-back.
 */
describe('landed logins and jobs are read back from the rebuilt server', () => {
  let rebuilt: Scripted;
  beforeEach(async () => {
    rebuilt = await scripted();
  });
  afterEach(async () => {
    await rebuilt.stop();
  });
  const landingEngine = () => createMssqlEngine({ connection: target.config, landing: rebuilt.config, backupDirectory: '/var/opt/mssql/backup', backupDirectoryOnHost: 'backup' });
  /** The rebuilt server: the scripts run; the catalog answers with what the scripts made (the target's rows unless a test says otherwise). */
  function scriptRebuilt(o: { login?: Record<string, unknown> | null; steps?: Record<string, unknown>[]; schedules?: Record<string, unknown>[]; permissions?: Record<string, unknown>[] } = {}): void {
    rebuilt.server.on(/^-- Rubicon instance-objects/, ok);
    const login = { name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: SID, password_hash: HASH, default_database_name: 'EHR', is_disabled: 0, is_policy_checked: 1, is_expiration_checked: 0, server_roles: 'dbcreator' };
    rebuilt.server.on(/FROM sys\.server_principals AS sp/, one(rs(loginCols, o.login === null ? [] : [{ ...login, ...o.login }])));
    rebuilt.server.on(/FROM sys\.server_permissions AS p/, one(rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar'], ['securable', 'nvarchar']], o.permissions ?? [])));
    rebuilt.server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(JOB_COLS, [{ ...JOB_ROW, owner_name: 'sa', notify_email_operator_name: null, notify_level_email: 0 }])));
    rebuilt.server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, one(rs(STEP_COLS, o.steps ?? STEP_ROWS)));
    rebuilt.server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, one(rs(SCHEDULE_COLS, o.schedules ?? [SCHEDULE_ROW])));
  }
  async function land(item: Item, files: { manifest: Manifest; files: string[] }) {
    const e = landingEngine();
    await e.restore(ctx, item, files.manifest, files.files);
    return e.validateLanding!(ctx, item, files.manifest, files.files);
  }

  it('a login landed as captured passes; the read-back names only the landed login and sends nothing but SELECTs after the script', async () => {
    scriptTarget();
    scriptRebuilt();
    const item = objectItem('login', 'ehr_app');
    const a = await captured(item);
    const checks = await land(item, a);
    expect(checks).toEqual([expect.objectContaining({ name: 'login-properties', status: 'passed', detail: expect.stringContaining('for 1 login(s)') })]);
    const [readBack] = rebuilt.server.find(/FROM sys\.server_principals AS sp/);
    expect(readBack?.sql).toContain('AND sp.name IN (@login1)');
    expect(readBack?.params).toEqual({ login1: 'ehr_app' });
    const sent = rebuilt.server.statements();
    expect(sent[0]).toMatch(/^-- Rubicon instance-objects: logins/);
    for (const s of sent.slice(1)) expect(s).toMatch(/^SELECT/);
    expect(target.server.find(/AND sp\.name IN/)).toEqual([]);
  });

  it('a landed login with another SID fails the landing validation naming the login and the property; so do a lost DENY CONNECT SQL, another hash and a missing login', async () => {
    // The source denies ehr_app CONNECT SQL (a rule before scriptTarget's: the first matching rule answers).
    target.server.on(/FROM sys\.server_permissions AS p/, one(rs([['grantee', 'nvarchar'], ['class', 'int'], ['permission_name', 'nvarchar'], ['state', 'nvarchar'], ['securable', 'nvarchar']], [{ grantee: 'ehr_app', class: 100, permission_name: 'CONNECT SQL', state: 'D', securable: null }])));
    scriptTarget();
    const item = objectItem('login', 'ehr_app');
    const a = await captured(item);
    scriptRebuilt({ login: { sid: Buffer.from('00000000000000000000000000000042', 'hex'), password_hash: Buffer.from(HASH.map((b, i) => (i === 5 ? b ^ 1 : b))) }, permissions: [{ grantee: 'ehr_app', class: 100, permission_name: 'CONNECT SQL', state: 'G', securable: null }] });
    const [check] = await land(item, a);
    expect(check).toMatchObject({ name: 'login-properties', status: 'failed' });
    expect(check?.detail).toContain(`login ehr_app: sid is "0x00000000000000000000000000000042", captured "0x${SID.toString('hex').toUpperCase()}"`);
    expect(check?.detail).toContain('login ehr_app: CONNECT SQL is "GRANT", captured "DENY"');
    expect(check?.detail).toContain('login ehr_app: password hash differs from the captured one');
    // The hash is never shown, neither the captured one nor the landed one.
    expect(check?.detail).not.toMatch(/0200A1B2|[0-9a-f]{64}/i);

    await rebuilt.stop();
    rebuilt = await scripted();
    scriptRebuilt({ login: null });
    const [missing] = await land(item, a);
    expect(missing).toMatchObject({ name: 'login-properties', status: 'failed', detail: expect.stringContaining('login ehr_app: not found on the rebuilt server') });
  });

  it('a landed job missing its schedule fails naming the job and the schedule; another step flow too; as captured it passes', async () => {
    scriptTarget();
    const item = objectItem('job', JOB);
    const a = await captured(item);
    scriptRebuilt({ schedules: [], steps: [{ ...STEP_ROWS[0]!, on_fail_action: 2, on_fail_step_id: 0, command: 'EXEC dbo.Other;' }, STEP_ROWS[1]!] });
    const [check] = await land(item, a);
    expect(check).toMatchObject({ name: 'job-properties', status: 'failed' });
    expect(check?.detail).toContain(`job ${JOB}: schedule nightly 02:00 freq_type is "(absent)", captured "4"`);
    expect(check?.detail).toContain(`job ${JOB}: step 1 on_fail_action is "2", captured "4"`);
    expect(check?.detail).toContain(`job ${JOB}: step 1 on_fail_step_id is "0", captured "2"`);
    // a command's text is never shown
    expect(check?.detail).toContain(`job ${JOB}: step 1 command is different`);
    expect(check?.detail).not.toContain('dbo.Other');
    const [readBack] = rebuilt.server.find(/FROM msdb\.dbo\.sysjobschedules AS js/);
    expect(readBack?.params).toEqual({ job1: JOB });

    await rebuilt.stop();
    rebuilt = await scripted();
    scriptRebuilt();
    expect(await land(item, a)).toEqual([expect.objectContaining({ name: 'job-properties', status: 'passed', detail: expect.stringContaining('for 1 job(s)') })]);
  });

  it('an artifact of an earlier Rubicon (logins.sql without logins.json) cannot pass: its script ran, but nothing shows the login is the source\'s', async () => {
    scriptTarget();
    scriptRebuilt();
    const item = objectItem('login', 'ehr_app');
    const a = await captured(item);
    const keep = a.manifest.entries.map((e, i) => ({ e, f: a.files[i]! })).filter((x) => x.e.path !== 'logins.json');
    const [check] = await land(item, { manifest: { ...a.manifest, entries: keep.map((x) => x.e) }, files: keep.map((x) => x.f) });
    expect(check).toMatchObject({ name: 'login-properties', status: 'failed', detail: expect.stringContaining('no logins.json') });
  });
});
