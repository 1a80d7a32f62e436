/**
 * The runbook's engines.mssql section: parse → normalize → rules, the
 * password-by-environment-variable contract, and the mapping onto the
 * engine's options.
 */
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { DATABASE_METHODS } from '../../src/engines/mssql/discover.ts';
import { MSSQL_METHODS } from '../../src/engines/mssql/engine.ts';
import { createEngines } from '../../src/run/context.ts';
import { parseRunbook } from '../../src/runbook/load.ts';
import { mssqlEngineOptions } from '../../src/runbook/mssql.ts';
import { MSSQL_DATABASE_METHODS, MSSQL_DEFAULT_METHODS } from '../../src/runbook/schema.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';

const FILE = '/estate/runbook.yaml';
const SECRET = 'Tr0ub4dor&3-never-in-a-file';
const ENV = { RUBICON_MSSQL_PASSWORD: SECRET, RUBICON_PG_PASSWORD: 'pg-secret', RUBICON_TDE_PASSWORD: 'pvk-secret' };

const SECTION = `
engines:
  mssql:
    connection:
      server: ehr-sql01.example.org
      user: rubicon
      passwordEnv: RUBICON_MSSQL_PASSWORD
      encrypt: true
      trustServerCertificate: false
      requestTimeoutSeconds: 30
    provingGround:
      server: pg-sql01.example.org
      port: 14330
      user: rubicon
      passwordEnv: RUBICON_PG_PASSWORD
      encrypt: strict
      trustServerCertificate: false
    backupDirectory: 'D:\\Rubicon'
    backupDirectoryOnHost: 'mssql\\rubicon\\'
    provingGroundStaging: { directory: /var/opt/mssql/stage, directoryOnHost: stage }
    certificatePasswordEnv:
      TDE_Cert: RUBICON_TDE_PASSWORD
`;

const BASE = sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z'))
  .replace('declared:\n  folders:', 'declared:\n  databases:\n    - {name: EHR, engine: mssql}\n  folders:')
  .replace('    timeoutSeconds: 600\n', '    timeoutSeconds: 600\n  - name: vendor nightly\n    database: EHR\n    engine: mssql\n    agentJob: EHR Nightly Backup\n    output: mssql/backup\n    timeoutSeconds: 900\n');
const GOOD = BASE + SECTION;

function refused(text: string, env: NodeJS.ProcessEnv = ENV): { e: RubiconError; problems: { path: string; message: string }[] } {
  try {
    parseRunbook(text, FILE, env);
  } catch (e) {
    if (e instanceof RubiconError) return { e, problems: (e.details as { problems: { path: string; message: string }[] }).problems };
    throw e;
  }
  throw new Error('expected the runbook to be refused');
}

describe('runbook engines.mssql', () => {
  it('accepts the section and normalizes it: milliseconds, posix host paths, default methods, the Agent job as the vendor job', () => {
    const rb = parseRunbook(GOOD, FILE, ENV);
    const m = rb.engines?.mssql;
    expect(m?.connection).toEqual({
      server: 'ehr-sql01.example.org',
      user: 'rubicon',
      passwordEnv: 'RUBICON_MSSQL_PASSWORD',
      encrypt: true,
      trustServerCertificate: false,
      connectTimeoutMs: 15_000,
      requestTimeoutMs: 30_000,
      longRequestTimeoutMs: 0,
    });
    expect(m?.provingGround).toMatchObject({ server: 'pg-sql01.example.org', port: 14330, encrypt: 'strict' });
    expect(m?.backupDirectory).toBe('D:\\Rubicon');
    expect(m?.backupDirectoryOnHost).toBe('mssql/rubicon');
    expect(m?.certificatePasswordEnv).toEqual({ TDE_Cert: 'RUBICON_TDE_PASSWORD' });
    expect(m).toMatchObject({ compression: true, agentPollMs: 5000 });
    expect(rb.methods.databases.mssql).toEqual(['mssql-native-full', 'mssql-history']);
    expect(rb.declared.databases).toEqual([{ name: 'EHR', engine: 'mssql', location: undefined }]);
    expect(rb.vendorJobs.map((j) => ({ engine: j.engine, command: j.command, timeoutMs: j.timeoutMs }))).toEqual([
      { engine: 'sqlite', command: ['node', 'ehr/A/bin/sqlbackup.ts', 'mssql/data/ehr.db', 'mssql/backup', '--mode', 'truncate'], timeoutMs: 600_000 },
      { engine: 'mssql', command: ['EHR Nightly Backup'], timeoutMs: 900_000 },
    ]);
    expect(rb.warnings).toEqual([]);
    // The normalized runbook holds variable names, never a password.
    expect(JSON.stringify(rb)).not.toContain(SECRET);
  });

  it('the default database methods are the engine\'s own database methods', () => {
    expect([...MSSQL_DEFAULT_METHODS]).toEqual(DATABASE_METHODS);
    for (const m of MSSQL_DATABASE_METHODS) expect(MSSQL_METHODS[m]?.origin).toBe('rubicon');
    expect(MSSQL_DATABASE_METHODS).toContain('mssql-native-url');
  });

  it('mssql-native-url: backupToUrl must name an azure-blob vault, and the method needs it', () => {
    const withUrl = (vault: string, method = true) =>
      (method ? GOOD.replace('\nvaults:\n', '\nmethods:\n  databases:\n    mssql: [mssql-native-url]\n\nvaults:\n') : GOOD)
        .replace('\nvaults:\n', '\nvaults:\n  - name: sqlbak\n    kind: azure-blob\n    accountUrl: https://ehrbackups.blob.core.windows.net\n    container: sql\n    credential: { kind: shared-key, accountName: ehrbackups, keyEnv: RUBICON_AZ_KEY }\n')
        .replace("    backupDirectory: 'D:", `    backupToUrl: ${vault}\n    backupDirectory: 'D:`);
    const env = { ...ENV, RUBICON_AZ_KEY: 'k' };
    const rb = parseRunbook(withUrl('sqlbak'), FILE, env);
    expect(rb.engines?.mssql?.backupToUrl).toBe('sqlbak');
    expect(rb.methods.databases.mssql).toEqual(['mssql-native-url']);
    expect(refused(withUrl('nas'), env).problems).toContainEqual({ path: 'engines.mssql.backupToUrl', message: expect.stringContaining("names vault 'nas', which is filesystem") });
    expect(refused(withUrl('nowhere'), env).problems).toContainEqual({ path: 'engines.mssql.backupToUrl', message: expect.stringContaining("no vault of the runbook ('nowhere')") });
    expect(refused(GOOD.replace('\nvaults:\n', '\nmethods:\n  databases:\n    mssql: [mssql-native-url]\n\nvaults:\n')).problems).toContainEqual({ path: 'methods.databases.mssql', message: expect.stringContaining('needs engines.mssql.backupToUrl') });
  });

  it('without the section nothing is read from the environment and nothing changes for sqlite', () => {
    const rb = parseRunbook(sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z')), FILE, {});
    expect(rb.engines).toBeUndefined();
    expect(rb.vendorJobs[0]?.engine).toBe('sqlite');
    expect(Object.keys(createEngines(rb))).toEqual(['sqlite']);
  });

  it('a password variable that is not set (or empty) is invalid input, exit 3, naming the variable and the field', () => {
    const { e, problems } = refused(GOOD, { ...ENV, RUBICON_MSSQL_PASSWORD: undefined, RUBICON_TDE_PASSWORD: '' });
    expect(e.code).toBe('RUNBOOK_INVALID');
    expect(e.exitCode).toBe(3);
    expect(problems).toEqual(
      expect.arrayContaining([
        { path: 'engines.mssql.connection.passwordEnv', message: expect.stringMatching(/environment variable RUBICON_MSSQL_PASSWORD is not set: export it with the password of login rubicon on the target's SQL Server/) },
        { path: 'engines.mssql.certificatePasswordEnv.TDE_Cert', message: expect.stringMatching(/RUBICON_TDE_PASSWORD is not set.*certificate TDE_Cert/) },
      ]),
    );
    expect(problems).toHaveLength(2);
    expect(e.message).toContain('RUBICON_MSSQL_PASSWORD');
    expect(e.message).not.toContain('pg-secret');
  });

  // Each mistake: the field it names and words of the fix.
  const CASES: { name: string; edit: (t: string) => string; path: string; fix: RegExp }[] = [
    { name: 'a password written into the file', edit: (t) => t.replace('      passwordEnv: RUBICON_MSSQL_PASSWORD\n', `      passwordEnv: RUBICON_MSSQL_PASSWORD\n      password: ${SECRET}\n`), path: 'engines.mssql.connection.password', fix: /never write the password into the runbook.*passwordEnv/ },
    { name: 'a password where the variable name belongs', edit: (t) => t.replace('passwordEnv: RUBICON_PG_PASSWORD', 'passwordEnv: "hunter2!"'), path: 'engines.mssql.provingGround.passwordEnv', fix: /NAME of an environment variable/ },
    { name: 'encrypt not stated', edit: (t) => t.replace('      encrypt: true\n', ''), path: 'engines.mssql.connection.encrypt', fix: /must be stated: true .* in production/ },
    { name: 'encrypt a string', edit: (t) => t.replace('      encrypt: true\n', '      encrypt: "yes"\n'), path: 'engines.mssql.connection.encrypt', fix: /must be stated/ },
    { name: 'trustServerCertificate not stated', edit: (t) => t.replace('      trustServerCertificate: false\n      requestTimeoutSeconds', '      requestTimeoutSeconds'), path: 'engines.mssql.connection.trustServerCertificate', fix: /false in production/ },
    { name: 'a relative backup directory', edit: (t) => t.replace("backupDirectory: 'D:\\Rubicon'", 'backupDirectory: Rubicon'), path: 'engines.mssql.backupDirectory', fix: /absolute path as the SQL Server machine names it/ },
    { name: 'an absolute backupDirectoryOnHost', edit: (t) => t.replace("backupDirectoryOnHost: 'mssql\\rubicon\\'", 'backupDirectoryOnHost: /mnt/sql'), path: 'engines.mssql.backupDirectoryOnHost', fix: /relative to the target root/ },
    { name: 'the proving ground is the target', edit: (t) => t.replace('server: pg-sql01.example.org\n      port: 14330', 'server: EHR-SQL01.example.org\n      port: 1433'), path: 'engines.mssql.provingGround.server', fix: /is the target's SQL Server: the proving ground must be a separate/ },
    { name: 'a typo in the section', edit: (t) => t.replace('    backupDirectory:', '    backupDirectry: x\n    backupDirectory:'), path: 'engines.mssql', fix: /unknown field "backupDirectry"/ },
    { name: 'a vendor job as a database method', edit: (t) => t.replace('vaults:\n', 'methods:\n  databases:\n    mssql: [vendor-job]\nvaults:\n'), path: 'methods.databases.mssql[0]', fix: /one of "mssql-native-full", "mssql-history"/ },
    { name: 'an mssql vendor job without its Agent job', edit: (t) => t.replace('    agentJob: EHR Nightly Backup\n', ''), path: 'vendorJobs[1].agentJob', fix: /required for an mssql vendor job.*sysjobs/ },
    { name: 'an mssql vendor job with a command', edit: (t) => t.replace('    agentJob: EHR Nightly Backup\n', '    agentJob: EHR Nightly Backup\n    command: [sqlcmd]\n'), path: 'vendorJobs[1].command', fix: /name it in agentJob/ },
    { name: 'a sqlite vendor job with an Agent job', edit: (t) => t.replace('    output: mssql/backup\n    timeoutSeconds: 600', '    agentJob: x\n    output: mssql/backup\n    timeoutSeconds: 600'), path: 'vendorJobs[0].agentJob', fix: /engine: mssql only/ },
    { name: 'a sqlite vendor job without a command', edit: (t) => t.replace(/ {4}command: \[node.*\n/, ''), path: 'vendorJobs[0].command', fix: /required for a sqlite vendor job/ },
    { name: 'an mssql database without the section', edit: (t) => t.slice(0, t.indexOf('\nengines:')), path: 'declared.databases[0].engine', fix: /needs an engines\.mssql section/ },
    { name: 'vendor jobs of two engines for one database name', edit: (t) => t.replace('    database: EHR\n    engine: mssql', '    database: ehr\n    engine: mssql'), path: 'vendorJobs[1].database', fix: /not supported yet/ },
  ];
  for (const c of CASES) {
    it(`refuses: ${c.name}`, () => {
      const { e, problems } = refused(c.edit(GOOD));
      expect(e.exitCode).toBe(3);
      const hit = problems.find((p) => p.path === c.path);
      expect(hit, JSON.stringify(problems)).toBeDefined();
      expect(hit!.message).toMatch(c.fix);
      expect(e.message).not.toContain(SECRET);
    });
  }

  it('an mssql vendor job without the section names the vendor job too', () => {
    const { problems } = refused(GOOD.slice(0, GOOD.indexOf('\nengines:')));
    expect(problems.find((p) => p.path === 'vendorJobs[1].engine')?.message).toMatch(/needs an engines\.mssql section/);
  });

  it('warns when a connection has no TLS or trusts any certificate', () => {
    const rb = parseRunbook(GOOD.replace('      encrypt: true\n      trustServerCertificate: false', '      encrypt: false\n      trustServerCertificate: true'), FILE, ENV);
    expect(rb.warnings).toEqual([
      'engines.mssql.connection.encrypt is false: logins and data cross the network in clear text (fit only for a test endpoint on loopback)',
      'engines.mssql.connection.trustServerCertificate is true: any certificate is accepted (fit only for a lab server)',
    ]);
  });
});

describe('mssqlEngineOptions', () => {
  it('maps the section onto the engine: passwords from the environment, staging, landing through the backup folder', async () => {
    const rb = parseRunbook(GOOD, FILE, ENV);
    const o = mssqlEngineOptions(rb.engines!.mssql!, ENV);
    expect(o.connection).toEqual({ server: 'ehr-sql01.example.org', user: 'rubicon', password: SECRET, encrypt: true, trustServerCertificate: false, connectTimeoutMs: 15_000, requestTimeoutMs: 30_000, longRequestTimeoutMs: 0 });
    expect(o.provingGround).toMatchObject({ server: 'pg-sql01.example.org', port: 14330, password: 'pg-secret', encrypt: 'strict' });
    expect(o).toMatchObject({
      backupDirectory: 'D:\\Rubicon',
      backupDirectoryOnHost: 'mssql/rubicon',
      provingGroundFiles: { serverDirectory: '/var/opt/mssql/stage', hostDirectory: 'stage' },
      landingFiles: { serverDirectory: 'D:\\Rubicon', hostDirectory: 'mssql/rubicon' },
      compression: true,
      pollIntervalMs: 5000,
    });
    expect(o.pathMap).toBeUndefined();
    // msdb backup history is carried only when the runbook asks for it
    expect(o.carryBackupHistory).toBeUndefined();
    expect(mssqlEngineOptions(parseRunbook(`${GOOD}    carryBackupHistory: true\n`, FILE, ENV).engines!.mssql!, ENV).carryBackupHistory).toBe(true);
    expect(await o.secrets?.certificatePassword('TDE_Cert')).toBe('pvk-secret');
    expect(await o.secrets?.certificatePassword('Other_Cert')).toBeUndefined();
  });

  it('refuses with RUNBOOK_INVALID naming the variable when a password is gone by the time the engine is built (resume from another shell)', () => {
    const rb = parseRunbook(GOOD, FILE, ENV);
    let err: unknown;
    try {
      mssqlEngineOptions(rb.engines!.mssql!, { ...ENV, RUBICON_PG_PASSWORD: undefined });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'RUNBOOK_INVALID', message: 'engines.mssql.provingGround.passwordEnv: environment variable RUBICON_PG_PASSWORD is not set' });
    expect((err as RubiconError).exitCode).toBe(3);
  });

  it('createEngines adds the mssql engine when the section is there', () => {
    const rb = parseRunbook(GOOD, FILE, ENV);
    const engines = createEngines(rb, { env: ENV });
    expect(Object.keys(engines)).toEqual(['sqlite', 'mssql']);
    expect(engines.mssql?.kind).toBe('mssql');
    expect(Object.keys(engines.mssql!.methods)).toEqual(Object.keys(MSSQL_METHODS));
  });

  it('issue 11: key passwords, a landing connection, the declared landing server and vendor smoke queries', async () => {
    const extra = `    keyBackupPasswordEnv: RUBICON_KEY_BACKUP_PASSWORD
    masterKeyPasswordEnv: RUBICON_DMK_PASSWORD
    landing:
      server: ehr-sql02.example.org
      user: rubicon
      passwordEnv: RUBICON_LANDING_PASSWORD
      encrypt: true
      trustServerCertificate: false
    landingServer: { productVersion: 16.0.4135.4, edition: Standard Edition (64-bit), engineEdition: 2 }
    landingLayout: { dataDirectory: 'E:\\Data', logDirectory: 'F:\\Log' }
    smokeQueries:
      - { name: patients are there, database: EHR, query: 'SELECT COUNT(*) AS n FROM dbo.Patients', columns: [n], minRows: 1, maxRows: 1 }
`;
    const env = { ...ENV, RUBICON_KEY_BACKUP_PASSWORD: 'key-secret', RUBICON_DMK_PASSWORD: 'dmk-secret', RUBICON_LANDING_PASSWORD: 'landing-secret' };
    const rb = parseRunbook(GOOD + extra, FILE, env);
    const o = mssqlEngineOptions(rb.engines!.mssql!, env);
    expect(o.landing).toMatchObject({ server: 'ehr-sql02.example.org', password: 'landing-secret', encrypt: true });
    expect(o.landingServer).toEqual({ productVersion: '16.0.4135.4', edition: 'Standard Edition (64-bit)', engineEdition: 2 });
    expect(o.landingLayout).toEqual({ dataDirectory: 'E:\\Data', logDirectory: 'F:\\Log' });
    expect(o.smokeQueries).toEqual([{ name: 'patients are there', database: 'EHR', query: 'SELECT COUNT(*) AS n FROM dbo.Patients', columns: ['n'], minRows: 1, maxRows: 1 }]);
    expect(await o.secrets?.keyBackupPassword?.()).toBe('key-secret');
    expect(await o.secrets?.masterKeyPassword?.('landing')).toBe('dmk-secret');
    // the values never enter the runbook object
    expect(JSON.stringify(rb)).not.toMatch(/key-secret|dmk-secret|landing-secret/);
    // a named variable that is not set is refused at load, naming it
    const r = refused(GOOD + extra, { ...env, RUBICON_DMK_PASSWORD: '' });
    expect(r.problems.map((p) => p.path)).toContain('engines.mssql.masterKeyPasswordEnv');
    // an impossible shape is refused
    const bad = refused(GOOD + extra.replace('minRows: 1, maxRows: 1', 'minRows: 2, maxRows: 1'), env);
    expect(bad.problems.map((p) => p.path)).toContain('engines.mssql.smokeQueries.0.maxRows');
  });
});

describe('engines.mssql on a local or a remote target', () => {
  it('a local target needs backupDirectoryOnHost (where this machine sees the server\'s backup folder)', () => {
    const { e, problems } = refused(GOOD.replace("    backupDirectoryOnHost: 'mssql\\rubicon\\'\n", ''));
    expect(e.exitCode).toBe(3);
    expect(problems.find((p) => p.path === 'engines.mssql.backupDirectoryOnHost')?.message).toMatch(/required on a local target.*mount/);
  });

  // A Windows Server over OpenSSH whose databases are its SQL Server's, written straight into an azure-blob vault.
  const WINDOWS = `version: 1
name: ehr-upgrade-windows-sql
target:
  name: ehr-sql01
  root: 'D:\\'
  image: Windows Server 2025 Datacenter
  transport: { kind: openssh-windows, host: ehr-sql01.example.org, user: rubicon, identityFile: ./keys/id, knownHosts: ./known_hosts }
infra:
  kind: manual
  rebuilt: { osRelease: Microsoft Windows NT 10.0.26100.0, knownHosts: ./known_hosts.rebuilt }
declared:
  databases:
    - {name: EHR, engine: mssql}
discovery:
  roots: [EHR]
methods:
  folders: []
  databases:
    mssql: [mssql-native-url]
vaults:
  - { name: sqlbak, kind: azure-blob, accountUrl: 'https://ehrbackup.blob.core.windows.net', container: sql, credential: { kind: default } }
engines:
  mssql:
    connection: { server: ehr-sql01.example.org, user: rubicon, passwordEnv: RUBICON_MSSQL_PASSWORD, encrypt: true, trustServerCertificate: false }
    provingGround: { server: pg-sql01.example.org, user: rubicon, passwordEnv: RUBICON_PG_PASSWORD, encrypt: true, trustServerCertificate: false }
    backupToUrl: sqlbak
    backupDirectory: 'C:\\ProgramData\\Rubicon\\mssql'
policy: {}
`;

  it('a remote target takes the section without backupDirectoryOnHost, and no folder method; its engine has no landing files to stage', () => {
    const rb = parseRunbook(WINDOWS, FILE, ENV);
    expect(rb.methods.folders).toEqual([]);
    expect(rb.engines?.mssql?.backupDirectoryOnHost).toBeUndefined();
    const o = mssqlEngineOptions(rb.engines!.mssql!, ENV);
    expect(o.backupDirectoryOnHost).toBeUndefined();
    expect(o.landingFiles).toBeUndefined();
  });

  it('a remote target refuses backupDirectoryOnHost: no folder of its server is on this machine', () => {
    const { problems } = refused(WINDOWS.replace("    backupDirectory: 'C:", "    backupDirectoryOnHost: mssql\n    backupDirectory: 'C:"));
    expect(problems.find((p) => p.path === 'engines.mssql.backupDirectoryOnHost')?.message).toMatch(/openssh-windows target does not have: remove it.*backupToUrl/);
  });
});

describe("README's Windows Server + SQL Server runbook", () => {
  it('loads through the real loader (its variables set): openssh-windows, restic for the folders, BACKUP TO URL for SQL Server', async () => {
    const { readFile } = await import('node:fs/promises');
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## A Windows Server running SQL Server'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(yaml).toBeDefined();
    const rb = parseRunbook(yaml!, FILE, { RUBICON_MSSQL_PASSWORD: 'x', RUBICON_PG_MSSQL_PASSWORD: 'y', RUBICON_KEY_BACKUP_PASSWORD: 'z' });
    expect([rb.target.transport.kind, rb.infra.kind, rb.methods.folders, rb.methods.databases.mssql, rb.engines?.mssql?.backupToUrl]).toEqual(['openssh-windows', 'manual', ['restic'], ['mssql-native-url'], 'sqlbak']);
  });
});
