/**
 * Scripted SQL Servers for a run whose SQL Server items travel by BACKUP
 * TO URL (test/e2e/windows-mssql.test.ts): the target's instance (the
 * catalog queries discovery sends, fingerprints, BACKUP … TO URL putting
 * each stripe into Azurite as SQL Server does through its credential), the
 * proving ground's (RESTORE … FROM URL, CHECKDB, the instance-object
 * proofs inside a rolled-back transaction), and the rebuilt server the
 * target endpoint plays once `crossed()` says so (an empty instance of the
 * declared landing version).
 *
 * The same shapes as test/e2e/mssql.test.ts's (which scripts the disk
 * path of the sandbox: a near-copy of its rules, parametrized here by what
 * differs; folding both into one module is left to the lead). Result shapes
 * are the documented ones in test/engines/mssql/fixtures.ts.
 */
import { ContainerClient } from '@azure/storage-blob';
import type { TdsReply, TdsRequest, TdsServer } from '../tds/server.ts';
import { PROOF_MARK, scriptedObjects } from '../../src/engines/mssql/instance-proof.ts';
import { checkDbClock, columnsReply, DB_FEATURES, databaseFeaturesReply, databasesReply, fileListOnly, headerOnly, one, ok, ORPHANS, orphansReply, restoreOk, rs, serverInfoReply, tableHashOf, tableHashReply, targetServerReply, VERSION_READ } from '../engines/mssql/fixtures.ts';

export const FAKE_STRIPE = 'fake backup stripe: no real SQL Server wrote this blob\n';

const JOB_COLS: [string, 'nvarchar' | 'int' | 'uniqueidentifier'][] = [['job_id', 'uniqueidentifier'], ['name', 'nvarchar'], ['enabled', 'int'], ['description', 'nvarchar'], ['owner_name', 'nvarchar'], ['category_name', 'nvarchar'], ['step_count', 'int']];
const JOB_ROW = { job_id: '2B5D3C1A-0F4E-4A8B-9C7D-6E5F4A3B2C1D', name: 'EHR Nightly Backup', enabled: 1, owner_name: 'sa', category_name: 'Database Maintenance', step_count: 3 };
const LOGINS = rs([['name', 'nvarchar'], ['type_desc', 'nvarchar'], ['sid', 'varbinary'], ['password_hash', 'varbinary'], ['default_database_name', 'nvarchar'], ['is_disabled', 'int'], ['server_roles', 'nvarchar']], [
  { name: 'ehr_app', type_desc: 'SQL_LOGIN', sid: Buffer.from([2]), password_hash: Buffer.from('0200A1B2C3D4E5F6', 'hex'), default_database_name: 'EHR', is_disabled: 0, server_roles: null },
]);
const empty = (cols: [string, 'nvarchar' | 'int' | 'bigint'][]): TdsReply => one(rs(cols, []));

/** The EHR database's tables, the same on the source, the restored copy and the landed one; `patients()` is the row count now (the application writes). */
export function scriptTables(server: TdsServer, patients: () => number): void {
  server.on(VERSION_READ, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar']], [{ product_version: '15.0.4355.3', edition: 'Standard Edition (64-bit)' }])));
  server.on(/FROM \[[^\]]+\]\.sys\.tables/, columnsReply([
    { table: 'Patients', column: 'id', base: 'int' },
    { table: 'Patients', column: 'notes', base: 'nvarchar' },
    { table: 'Visits', column: 'id', base: 'bigint' },
  ]));
  server.on(tableHashOf('Patients'), () => tableHashReply(patients(), ['100', '200', '300', '400', '500']));
  server.on(tableHashOf('Visits'), tableHashReply(5400, ['600', '700', '800', '900', '1000']));
}

/** CREATE / DROP CREDENTIAL (the URL grants): the SAS secrets SQL Server was given are collected in `secrets`. */
export function scriptCredentials(server: TdsServer, secrets: string[]): void {
  server.on('CREATE CREDENTIAL', (req: TdsRequest) => {
    secrets.push(String(req.params.secret));
    return ok;
  });
  server.on('DROP CREDENTIAL', ok);
}

/** The target's SQL Server 2019: discovery, fingerprints, BACKUP TO URL (each stripe put into `blobs`), HEADERONLY. */
export function scriptTarget(server: TdsServer, blobs: ContainerClient, patients: () => number, onBackup: () => void = () => {}): void {
  server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)', { masterKey: 0 }));
  server.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply([{ name: 'EHR', id: 5 }]));
  server.on(/FROM sys\.server_principals AS sp/, one(LOGINS));
  server.on(/FROM msdb\.dbo\.sysjobs AS j\n/, one(rs(JOB_COLS, [JOB_ROW])));
  server.on(/FROM msdb\.dbo\.sysoperators/, empty([['name', 'nvarchar'], ['enabled', 'int'], ['email_address', 'nvarchar']]));
  server.on(/FROM sys\.servers AS s WHERE s\.is_linked = 1/, empty([['name', 'nvarchar'], ['product', 'nvarchar'], ['provider', 'nvarchar'], ['data_source', 'nvarchar'], ['catalog', 'nvarchar']]));
  server.on(/FROM sys\.credentials/, empty([['name', 'nvarchar'], ['credential_identity', 'nvarchar']]));
  server.on(/FROM master\.sys\.certificates AS c\nWHERE/, empty([['name', 'nvarchar'], ['thumbprint', 'nvarchar'], ['subject', 'nvarchar'], ['pvt_key_encryption_type_desc', 'nvarchar'], ['tde_databases', 'int']]));
  server.on(/FROM sys\.endpoints/, empty([['name', 'nvarchar'], ['protocol_desc', 'nvarchar'], ['type_desc', 'nvarchar'], ['state_desc', 'nvarchar']]));
  server.on(/FROM sys\.configurations/, one(rs([['name', 'nvarchar'], ['value', 'bigint'], ['value_in_use', 'bigint'], ['is_advanced', 'int']], [{ name: 'max server memory (MB)', value: 24576n, value_in_use: 24576n, is_advanced: 1 }])));
  server.on(/ExecIsStartup/, empty([['name', 'nvarchar']]));
  server.on(/^DBCC TRACESTATUS\(-1\)/, one(rs([['TraceFlag', 'int'], ['Status', 'int'], ['Global', 'int'], ['Session', 'int']], [])));
  server.on(/FROM msdb\.dbo\.sysalerts AS a/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysproxies AS p/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysmail_profile AS p/, empty([['profile_name', 'nvarchar']]));
  server.on(/FROM sys\.linked_logins AS ll/, empty([['server_name', 'nvarchar']]));
  server.on(/FROM sys\.server_permissions AS p/, empty([['grantee', 'nvarchar']]));
  server.on(/FROM sys\.server_principals AS r\nWHERE r\.type = 'R'/, empty([['name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysjobsteps AS s\nJOIN/, empty([['job_name', 'nvarchar']]));
  server.on(/FROM msdb\.dbo\.sysjobschedules AS js/, empty([['job_name', 'nvarchar']]));
  server.on(DB_FEATURES, databaseFeaturesReply());
  server.on(/bs\.backup_set_uuid = @guid/, empty([['backup_set_id', 'int']]));
  scriptTables(server, patients);
  checkDbClock(server);
  server.on(/^BACKUP DATABASE \[EHR\] TO URL/, async (req: TdsRequest): Promise<TdsReply> => {
    // SQL Server writes each stripe into the container through its SAS credential: here with the account key.
    onBackup();
    for (const [k, u] of Object.entries(req.params)) {
      if (!/^url\d+$/.test(k)) continue;
      const blob = decodeURIComponent(new URL(String(u)).pathname.split('/').slice(3).join('/'));
      await blobs.getBlockBlobClient(blob).upload(FAKE_STRIPE, FAKE_STRIPE.length);
    }
    return { infos: [{ number: 3014, message: 'BACKUP DATABASE successfully processed 370 pages in 0.100 seconds (28.906 MB/sec).' }] };
  });
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
}

/** The proving ground's SQL Server 2022: RESTORE FROM URL under a test name, CHECKDB, fingerprints, the instance-object proofs. */
export function scriptProvingGround(server: TdsServer, patients: () => number): void {
  const names = (req: TdsRequest, have: Set<string>) =>
    one(rs([['kind', 'nvarchar'], ['name', 'nvarchar']], Object.entries(req.params).flatMap(([param, name]) => {
      const kind = /^(login|job|operator|alert|profile|role)\d+$/.exec(param)?.[1];
      return kind && have.has(`${kind}:${String(name)}`) ? [{ kind, name: String(name) }] : [];
    })));
  // The batch inside BEGIN TRANSACTION … ROLLBACK "creates" what its guard lines name; the job and login read back inside it are the target's rows.
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSET XACT_ABORT ON;`), (req) => {
    const inTx = new Set(scriptedObjects(req.sql).map((x) => `${x.kind}:${x.name}`));
    const p = /UNION ALL|WHERE name IN/.test(req.sql) ? names(req, inTx) : ok;
    const sets = [...(p.resultSets ?? [])];
    if (req.sql.includes('FROM msdb.dbo.sysjobschedules')) sets.push(rs(JOB_COLS, [JOB_ROW]), rs([['job_name', 'nvarchar']], []), rs([['job_name', 'nvarchar']], []));
    if (req.sql.includes('AND sp.name IN (@readlogin1')) {
      sets.push(LOGINS, rs([['grantee', 'nvarchar']], []));
      if (req.sql.includes("WHERE r.type = 'R'")) sets.push(rs([['name', 'nvarchar']], []));
    }
    return { ...p, resultSets: sets };
  });
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nIF @@TRANCOUNT > 0`), one(rs([['open_transactions', 'int']], [{ open_transactions: 0 }])));
  server.on((r) => r.sql.startsWith(`${PROOF_MARK}\nSELECT N'`), (req) => names(req, new Set()));
  server.on(/InstanceDefaultDataPath/, targetServerReply('16.0.4135.4', 'Developer Edition (64-bit)'));
  server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
  server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
  server.on(/^RESTORE FILELISTONLY/, fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(/^RESTORE DATABASE/, (req) => restoreOk(String(/^RESTORE DATABASE \[([^\]]+)\]/.exec(req.sql)?.[1])));
  server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, (req) => one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: String(req.params.database), state_desc: 'ONLINE' }])));
  server.on(/^DBCC CHECKDB/, ok);
  checkDbClock(server);
  scriptTables(server, patients);
  server.on(DB_FEATURES, databaseFeaturesReply());
  server.on(ORPHANS, orphansReply());
  server.on(/user_access_desc/, one(rs([['state_desc', 'nvarchar'], ['user_access_desc', 'nvarchar'], ['is_read_only', 'int'], ['user_objects', 'int']], [{ state_desc: 'ONLINE', user_access_desc: 'MULTI_USER', is_read_only: 0, user_objects: 42 }])));
}

/**
 * The rebuilt server, played by the target endpoint once `crossed()`: an
 * empty instance of `version` (no EHR until RESTORE made it). Rules go in
 * before scriptTarget's and answer only after the crossing.
 */
export function scriptRebuilt(server: TdsServer, crossed: () => boolean, version: string): void {
  const after = (re: RegExp) => (r: TdsRequest) => crossed() && re.test(r.sql);
  let restored = false;
  server.on(after(/^-- Rubicon instance-objects/), ok);
  server.on(after(/SERVERPROPERTY\('ProductLevel'\)/), serverInfoReply(version, 'Standard Edition (64-bit)', { masterKey: 0 }));
  server.on(after(/FROM sys\.databases AS d WHERE d\.name = @database;$/), () => one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], restored ? [{ name: 'EHR', state_desc: 'ONLINE' }] : [])));
  server.on(after(/InstanceDefaultDataPath/), targetServerReply(version, 'Standard Edition (64-bit)', { dataPath: 'D:\\Data\\', logPath: 'L:\\Log\\' }));
  server.on(after(/^RESTORE FILELISTONLY/), fileListOnly([
    { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
    { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
  ]));
  server.on(after(/^RESTORE DATABASE/), () => ((restored = true), restoreOk('EHR')));
  server.on(after(/^DBCC CHECKDB/), ok);
  server.on(after(/^ALTER AUTHORIZATION/), ok);
  server.on(after(ORPHANS), orphansReply());
  server.on(after(/user_access_desc/), one(rs([['state_desc', 'nvarchar'], ['user_access_desc', 'nvarchar'], ['is_read_only', 'int'], ['user_objects', 'int']], [{ state_desc: 'ONLINE', user_access_desc: 'MULTI_USER', is_read_only: 0, user_objects: 42 }])));
}
