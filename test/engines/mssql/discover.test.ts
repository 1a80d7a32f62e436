/**
 * Discovery at the protocol level: every catalog query answered by the
 * scripted endpoint with SQL Server-shaped rows, parsed into checklist Items.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { databasesReply, one, rs, scripted, serverInfoReply, tempHost, type Scripted } from './fixtures.ts';

let t: Scripted;
let h: Awaited<ReturnType<typeof tempHost>>;

beforeEach(async () => {
  t = await scripted();
  h = await tempHost();
});
afterEach(async () => {
  await t.stop();
  await h.dispose();
});

function scriptInstance(): void {
  const s = t.server;
  s.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)', { integratedSecurityOnly: 0, masterKey: 1 }));
  s.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply([
    { name: 'master', id: 1, recovery: 'SIMPLE' },
    { name: 'EHR', id: 5, tdeThumbprint: '0xABCDEF', tdeCertificate: 'TDE_Cert' },
    { name: 'EHR_Archive', id: 6, lastFull: null, recovery: 'SIMPLE' },
  ]));
  s.on(/FROM sys\.server_principals AS sp/, one(rs([['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'], ['is_disabled', 'int'], ['server_roles', 'nvarchar']], [
    { name: 'sa', type_desc: 'SQL_LOGIN', sid: Buffer.from([1]), default_database_name: 'master', is_disabled: 1 },
    { name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: Buffer.from([2]), default_database_name: 'EHR', is_disabled: 0, server_roles: 'dbcreator' },
    { name: 'EHR-SQL01\\svc_interface', type_desc: 'WINDOWS_LOGIN', sid: Buffer.from([3]), default_database_name: 'EHR', is_disabled: 0 },
  ])));
  s.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs([['job_id', 'uniqueidentifier'], ['name', 'nvarchar'], ['enabled', 'int'], ['description', 'nvarchar'], ['owner_name', 'nvarchar'], ['category_name', 'nvarchar'], ['step_count', 'int']], [
    { job_id: '2B5D3C1A-0F4E-4A8B-9C7D-6E5F4A3B2C1D', name: 'EHR Nightly Backup', enabled: 1, owner_name: 'sa', category_name: 'Database Maintenance', step_count: 3 },
  ])));
  s.on(/FROM msdb\.dbo\.sysoperators/, one(rs([['name', 'nvarchar'], ['enabled', 'int'], ['email_address', 'nvarchar']], [{ name: 'DBA Team', enabled: 1, email_address: 'dba@example.org' }])));
  s.on(/FROM sys\.servers AS s WHERE s\.is_linked = 1/, one(rs([['name', 'nvarchar'], ['product', 'nvarchar'], ['provider', 'nvarchar'], ['data_source', 'nvarchar'], ['catalog', 'nvarchar']], [{ name: 'LAB', product: '', provider: 'MSOLEDBSQL', data_source: 'lab-sql.example.org', catalog: 'Results' }])));
  s.on(/FROM sys\.credentials/, one(rs([['name', 'nvarchar'], ['credential_identity', 'nvarchar']], [{ name: 'AgentProxy', credential_identity: 'EHR\\svc_proxy' }])));
  s.on(/FROM master\.sys\.certificates AS c\nWHERE/, one(rs([['name', 'nvarchar'], ['thumbprint', 'nvarchar'], ['subject', 'nvarchar'], ['expiry_date', 'datetime'], ['pvt_key_encryption_type_desc', 'nvarchar'], ['tde_databases', 'int']], [
    { name: 'TDE_Cert', thumbprint: '0xABCDEF', subject: 'EHR TDE', expiry_date: new Date('2030-01-01T00:00:00Z'), pvt_key_encryption_type_desc: 'ENCRYPTED_BY_MASTER_KEY', tde_databases: 1 },
  ])));
  s.on(/FROM sys\.endpoints/, one(rs([['name', 'nvarchar'], ['protocol_desc', 'nvarchar'], ['type_desc', 'nvarchar'], ['state_desc', 'nvarchar']], [])));
  s.on(/FROM sys\.configurations/, one(rs([['name', 'nvarchar'], ['value', 'bigint'], ['value_in_use', 'bigint'], ['is_advanced', 'int']], [
    { name: 'max server memory (MB)', value: 24576n, value_in_use: 24576n, is_advanced: 1 },
    { name: 'max degree of parallelism', value: 4n, value_in_use: 0n, is_advanced: 1 },
  ])));
  s.on(/ExecIsStartup/, one(rs([['name', 'nvarchar']], [{ name: 'usp_StartInterfaceQueue' }])));
  s.on(/FROM msdb\.dbo\.sysalerts AS a/, one(rs([['name', 'nvarchar'], ['message_id', 'int'], ['severity', 'int'], ['enabled', 'int'], ['notifications', 'nvarchar'], ['job_name', 'nvarchar']], [{ name: 'Severity 024', message_id: 0, severity: 24, enabled: 1, notifications: 'DBA Team=1', job_name: null }])));
  s.on(/FROM msdb\.dbo\.sysproxies AS p/, one(rs([['name', 'nvarchar'], ['enabled', 'int'], ['credential_name', 'nvarchar'], ['subsystems', 'nvarchar']], [{ name: 'FileCopyProxy', enabled: 1, credential_name: 'AgentProxy', subsystems: '3' }])));
  s.on(/FROM msdb\.dbo\.sysmail_profile AS p/, one(rs([['profile_name', 'nvarchar'], ['account_name', 'nvarchar'], ['servername', 'nvarchar']], [{ profile_name: 'EHR Alerts', account_name: 'smtp-relay', servername: 'smtp.example.org' }])));
  s.on(/FROM sys\.linked_logins AS ll/, one(rs([['server_name', 'nvarchar'], ['local_login', 'nvarchar'], ['uses_self_credential', 'int'], ['remote_name', 'nvarchar']], [{ server_name: 'LAB', local_login: null, uses_self_credential: 0, remote_name: 'lab_reader' }])));
  s.on(/^DBCC TRACESTATUS\(-1\)/, one(rs([['TraceFlag', 'int'], ['Status', 'int'], ['Global', 'int'], ['Session', 'int']], [{ TraceFlag: 3226, Status: 1, Global: 1, Session: 0 }, { TraceFlag: 1222, Status: 1, Global: 1, Session: 0 }])));
}

describe('mssql discover', () => {
  it('turns the instance into checklist items: databases, instance objects, certificates', async () => {
    scriptInstance();
    const e = createMssqlEngine({ connection: t.config, backupDirectory: '/var/opt/mssql/backup' });
    const items = await e.discover({ host: h.host, workDir: h.root }, { roots: [], declared: [{ name: 'EHR' }, { name: 'EHR_Images' }] });
    const byId = new Map(items.map((i) => [i.id, i]));

    expect([...byId.keys()].sort()).toEqual([
      'certificate:mssql:TDE_Cert',
      'database:mssql:EHR',
      'database:mssql:EHR_Archive',
      'database:mssql:EHR_Images',
      'instance-object:mssql:alert:Severity 024',
      'instance-object:mssql:configuration:EHR-SQL01',
      'instance-object:mssql:credential:AgentProxy',
      'instance-object:mssql:instance:EHR-SQL01',
      'instance-object:mssql:job:EHR Nightly Backup',
      'instance-object:mssql:linked-server:LAB',
      'instance-object:mssql:login:EHR-SQL01\\svc_interface',
      'instance-object:mssql:login:ehr_app',
      'instance-object:mssql:login:sa',
      'instance-object:mssql:mail-profile:EHR Alerts',
      'instance-object:mssql:master-key:EHR-SQL01',
      'instance-object:mssql:operator:DBA Team',
      'instance-object:mssql:proxy:FileCopyProxy',
      'instance-object:mssql:service-master-key:EHR-SQL01',
      'instance-object:mssql:startup-procedure:usp_StartInterfaceQueue',
      'instance-object:mssql:system-database:master',
      'instance-object:mssql:trace-flags:EHR-SQL01',
    ]);
    const ehr = byId.get('database:mssql:EHR')!;
    expect(ehr).toMatchObject({ kind: 'database', engine: 'mssql', declared: true, discovered: true, location: 'mssql://EHR-SQL01/EHR', methods: ['mssql-native-full', 'mssql-history'] });
    expect(ehr.facts).toMatchObject({ state: 'ONLINE', recoveryModel: 'FULL', compatibilityLevel: 150, bytes: 52428800, tde: true, tdeCertificate: 'TDE_Cert', lastFullBackup: '2025-01-09T23:00:00.000Z', system: false });
    expect(ehr.why.join(' ')).toContain('TDE-protected by certificate TDE_Cert');
    expect(byId.get('database:mssql:EHR_Archive')).toMatchObject({ declared: false, discovered: true, why: expect.arrayContaining(['msdb records no full backup of it']) });
    expect(byId.get('database:mssql:EHR_Images')).toMatchObject({ declared: true, discovered: false });
    // system databases are not database items: no test-name restore, no landing over the new instance's own
    expect(byId.get('database:mssql:master')).toBeUndefined();
    expect(byId.get('instance-object:mssql:system-database:master')).toMatchObject({ kind: 'instance-object', methods: ['instance-objects'], why: expect.arrayContaining([expect.stringContaining('HEADERONLY + RESTORE VERIFYONLY')]) });
    expect(byId.get('instance-object:mssql:instance:EHR-SQL01')?.facts.authentication).toBe('SQL Server and Windows (mixed)');
    expect(byId.get('instance-object:mssql:linked-server:LAB')?.facts.logins).toBe('(all)->lab_reader');
    expect(byId.get('instance-object:mssql:alert:Severity 024')?.facts).toMatchObject({ severity: 24, notifies: 'DBA Team=1' });
    expect(byId.get('instance-object:mssql:instance:EHR-SQL01')?.facts).toMatchObject({ productVersion: '15.0.4355.3', edition: 'Standard Edition (64-bit)', collation: 'SQL_Latin1_General_CP1_CI_AS' });
    expect(byId.get('instance-object:mssql:login:EHR-SQL01\\svc_interface')?.why.join(' ')).toContain('its SID changes when the OS is rebuilt');
    expect(byId.get('instance-object:mssql:login:sa')?.why.join(' ')).toContain('sa (SID 0x01) exists on every instance: it is not created');
    expect(byId.get('certificate:mssql:TDE_Cert')).toMatchObject({ kind: 'certificate', facts: { thumbprint: '0xABCDEF', tdeDatabases: 1 }, methods: ['instance-objects'] });
    expect(byId.get('instance-object:mssql:trace-flags:EHR-SQL01')?.facts.flags).toBe('3226,1222');
    expect(byId.get('instance-object:mssql:configuration:EHR-SQL01')?.why.join(' ')).toContain('max degree of parallelism: configured value differs');
    // read-only: nothing but SELECTs and DBCC TRACESTATUS
    for (const s of t.server.statements()) expect(s).toMatch(/^(SELECT|DBCC TRACESTATUS)/);
  });

  it('a connection that cannot log in is ENGINE_FAILED naming the server, never the password', async () => {
    await t.stop();
    t = await scripted({ refuseUsers: ['rubicon'] });
    const e = createMssqlEngine({ connection: t.config, backupDirectory: '/b' });
    const err = await e.discover({ host: h.host, workDir: h.root }, { roots: [], declared: [] }).catch((x: unknown) => x);
    expect(err).toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringContaining(`cannot connect to 127.0.0.1:${t.config.port} as rubicon`) });
    expect(String((err as Error).message)).not.toContain(t.config.password);
  });
});
