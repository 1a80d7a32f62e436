/**
 * Discovery: what is on a SQL Server instance, as checklist Items. Read-only
 * (SELECTs on catalog views and msdb, DBCC TRACESTATUS).
 *
 * Item ids:
 *   database:mssql:<db>
 *   instance-object:mssql:instance:<server>       version, edition, collation
 *   instance-object:mssql:login:<name>            SID and password hash are scripted
 *   instance-object:mssql:job:<name>
 *   instance-object:mssql:operator:<name>
 *   instance-object:mssql:linked-server:<name>
 *   instance-object:mssql:credential:<name>
 *   instance-object:mssql:endpoint:<name>
 *   instance-object:mssql:startup-procedure:<name>
 *   instance-object:mssql:configuration:<server>
 *   instance-object:mssql:trace-flags:<server>
 *   instance-object:mssql:alert:<name>
 *   instance-object:mssql:proxy:<name>
 *   instance-object:mssql:mail-profile:<name>      Database Mail profile and its accounts
 *   instance-object:mssql:master-key:<server>      master's database master key (BACKUP MASTER KEY)
 *   instance-object:mssql:service-master-key:<server>   BACKUP SERVICE MASTER KEY
 *   instance-object:mssql:backup-history:<server>  msdb's backup history as evidence (runbook carryBackupHistory)
 *   instance-object:mssql:system-database:<name>   master, model, msdb: backed up, verified, never
 *                                                  restored under a test name (see prove.ts)
 *   certificate:mssql:<name>                      exported WITH PRIVATE KEY
 */
import type { FactValue, Item } from '../../core/types.ts';
import type { DiscoverOptions } from '../engine.ts';
import { skipLogin } from './scripts.ts';
import type { MssqlSession, SqlRow } from './session.ts';
import {
  alertsStatement,
  certificatesStatement,
  linkedLoginsStatement,
  mailProfilesStatement,
  proxiesStatement,
  configurationStatement,
  credentialsStatement,
  databasesStatement,
  endpointsStatement,
  jobsStatement,
  linkedServersStatement,
  loginsStatement,
  operatorsStatement,
  serverInfoStatement,
  startupProceduresStatement,
  traceFlagsStatement,
} from './sql.ts';

export const DATABASE_METHODS = ['mssql-native-full', 'mssql-history'];
/** System databases get their own method: a copy-only full backup, proven by HEADERONLY + VERIFYONLY only. */
export const SYSTEM_DATABASE_METHODS = ['instance-objects'];
export const INSTANCE_METHODS = ['instance-objects'];

export interface InstanceRows {
  server: SqlRow;
  databases: SqlRow[];
  logins: SqlRow[];
  jobs: SqlRow[];
  operators: SqlRow[];
  linkedServers: SqlRow[];
  credentials: SqlRow[];
  certificates: SqlRow[];
  endpoints: SqlRow[];
  configuration: SqlRow[];
  startupProcedures: SqlRow[];
  traceFlags: SqlRow[];
  alerts: SqlRow[];
  proxies: SqlRow[];
  mailProfiles: SqlRow[];
  linkedLogins: SqlRow[];
}

export async function readInstance(session: MssqlSession, signal?: AbortSignal): Promise<InstanceRows> {
  const q = (stmt: Parameters<MssqlSession['query']>[0], what: string): Promise<SqlRow[]> => session.query(stmt, what, signal);
  return {
    server: (await q(serverInfoStatement(), 'reading the server version'))[0] ?? {},
    databases: await q(databasesStatement(), 'listing databases'),
    logins: await q(loginsStatement(), 'listing logins'),
    jobs: await q(jobsStatement(), 'listing SQL Agent jobs'),
    operators: await q(operatorsStatement(), 'listing SQL Agent operators'),
    linkedServers: await q(linkedServersStatement(), 'listing linked servers'),
    credentials: await q(credentialsStatement(), 'listing credentials'),
    certificates: await q(certificatesStatement(), 'listing certificates'),
    endpoints: await q(endpointsStatement(), 'listing endpoints'),
    configuration: await q(configurationStatement(), 'reading the server configuration'),
    startupProcedures: await q(startupProceduresStatement(), 'listing startup procedures'),
    traceFlags: await q(traceFlagsStatement(), 'reading global trace flags'),
    alerts: await q(alertsStatement(), 'listing SQL Agent alerts'),
    proxies: await q(proxiesStatement(), 'listing SQL Agent proxies'),
    mailProfiles: await q(mailProfilesStatement(), 'listing Database Mail profiles'),
    linkedLogins: await q(linkedLoginsStatement(), 'listing linked-server logins'),
  };
}

const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const fact = (v: unknown): FactValue =>
  v === null || v === undefined ? null : v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? Number(v) : typeof v === 'number' || typeof v === 'boolean' ? v : String(v);

function item(kind: Item['kind'], id: string, name: string, location: string, facts: Record<string, FactValue>, why: string[], methods: string[]): Item {
  return { id, kind, name, declared: false, discovered: true, engine: 'mssql', location, facts, why, methods };
}

/** Turns the instance's rows into checklist Items. Pure. `carryBackupHistory` (runbook engines.mssql): msdb's backup history as an item of its own. */
export function toItems(rows: InstanceRows, options: DiscoverOptions, extra: { carryBackupHistory?: boolean } = {}): Item[] {
  const server = str(rows.server.server_name) || str(rows.server.machine_name);
  const loc = (what: string): string => `mssql://${server}/${what}`;
  const items: Item[] = [];

  items.push(
    item(
      'instance-object',
      `instance-object:mssql:instance:${server}`,
      server,
      loc(''),
      {
        productVersion: fact(rows.server.product_version),
        productLevel: fact(rows.server.product_level),
        edition: fact(rows.server.edition),
        collation: fact(rows.server.collation),
        hadrEnabled: rows.server.is_hadr_enabled === 1,
        authentication: rows.server.integrated_security_only === 1 ? 'Windows only' : rows.server.integrated_security_only === 0 ? 'SQL Server and Windows (mixed)' : null,
        filestreamLevel: fact(rows.server.filestream_level),
        clrEnabled: rows.server.clr_enabled === 1,
      },
      ['the rebuilt instance needs the same or a newer version, the same collation and the same authentication mode', 'every instance-level object below is scripted from here'],
      INSTANCE_METHODS,
    ),
  );

  const declared = new Set(options.declared.map((d) => d.name));
  const found = new Set<string>();
  for (const d of rows.databases) {
    const name = str(d.name);
    found.add(name);
    if (Number(d.database_id) <= 4 || ['master', 'model', 'msdb'].includes(name.toLowerCase())) {
      items.push({
        ...item(
          'instance-object',
          `instance-object:mssql:system-database:${name}`,
          name,
          loc(name),
          { state: fact(d.state_desc), bytes: d.size_bytes === null || d.size_bytes === undefined ? null : Number(d.size_bytes), lastFullBackup: fact(d.last_full_backup) },
          [
            'system database: backed up COPY_ONLY and checked with HEADERONLY + RESTORE VERIFYONLY; it is not restored under a test name or onto the rebuilt instance',
            'what lives in it (logins, jobs, operators, alerts, proxies, Database Mail) is carried by its own items',
          ],
          SYSTEM_DATABASE_METHODS,
        ),
        declared: declared.has(name),
      });
      continue;
    }
    const tde = Number(d.encryption_state ?? 0) === 3 || d.is_encrypted === 1;
    const why: string[] = [];
    if (tde) why.push(`TDE-protected by certificate ${str(d.tde_certificate) || str(d.tde_thumbprint)}: it cannot be restored without that certificate and its private key`);
    if (Number(d.encrypted_backups ?? 0) > 0) why.push('its backups are encrypted: the encryptor certificate must be captured too');
    if (!d.last_full_backup) why.push('msdb records no full backup of it');
    if (str(d.recovery_model_desc) === 'FULL') why.push('FULL recovery: the log chain must not be broken (Rubicon backs up COPY_ONLY)');
    if (d.is_trustworthy_on === 1) why.push('TRUSTWORTHY is on: re-set it after restore');
    items.push({
      ...item(
        'database',
        `database:mssql:${name}`,
        name,
        loc(name),
        {
          state: fact(d.state_desc),
          recoveryModel: fact(d.recovery_model_desc),
          compatibilityLevel: fact(d.compatibility_level),
          collation: fact(d.collation_name),
          bytes: d.size_bytes === null || d.size_bytes === undefined ? null : Number(d.size_bytes),
          owner: fact(d.owner_name),
          tde,
          tdeCertificate: fact(d.tde_certificate),
          tdeThumbprint: fact(d.tde_thumbprint),
          lastFullBackup: fact(d.last_full_backup),
          lastLogBackup: fact(d.last_log_backup),
          encryptedBackups: Number(d.encrypted_backups ?? 0),
          trustworthy: d.is_trustworthy_on === 1,
          system: false,
        },
        why,
        DATABASE_METHODS,
      ),
      declared: declared.has(name),
    });
  }
  for (const d of options.declared) {
    if (found.has(d.name)) continue;
    items.push({
      ...item('database', `database:mssql:${d.name}`, d.name, loc(d.name), {}, ['declared in the runbook but not on the server'], DATABASE_METHODS),
      declared: true,
      discovered: false,
    });
  }

  const machine = str(rows.server.machine_name).toUpperCase();
  for (const l of rows.logins) {
    const name = str(l.name);
    const why = ['logins are scripted with SID and password hash so database users are not orphaned'];
    const skip = skipLogin(name, l.sid instanceof Uint8Array ? l.sid : null);
    if (skip) why.push(skip);
    if (machine && name.toUpperCase().startsWith(`${machine}\\`)) why.push(`local account of ${machine}: its SID changes when the OS is rebuilt`);
    items.push(
      item('instance-object', `instance-object:mssql:login:${name}`, name, loc(`login/${name}`), { type: fact(l.type_desc), disabled: l.is_disabled === 1, defaultDatabase: fact(l.default_database_name), serverRoles: fact(l.server_roles) }, why, INSTANCE_METHODS),
    );
  }
  for (const j of rows.jobs) {
    const name = str(j.name);
    items.push(
      item('instance-object', `instance-object:mssql:job:${name}`, name, loc(`job/${name}`), { enabled: j.enabled === 1, owner: fact(j.owner_name), category: fact(j.category_name), steps: fact(j.step_count) }, ['SQL Agent jobs live in msdb and are lost with the instance'], INSTANCE_METHODS),
    );
  }
  for (const o of rows.operators) {
    const name = str(o.name);
    items.push(item('instance-object', `instance-object:mssql:operator:${name}`, name, loc(`operator/${name}`), { enabled: o.enabled === 1 }, ['job notifications go to operators'], INSTANCE_METHODS));
  }
  for (const s of rows.linkedServers) {
    const name = str(s.name);
    items.push(
      item(
        'instance-object',
        `instance-object:mssql:linked-server:${name}`,
        name,
        loc(`linked-server/${name}`),
        {
          provider: fact(s.provider),
          dataSource: fact(s.data_source),
          logins: rows.linkedLogins.filter((l) => str(l.server_name) === name).map((l) => `${str(l.local_login) || '(all)'}->${Number(l.uses_self_credential) === 1 ? '(self)' : str(l.remote_name)}`).join(', '),
        },
        ['queries and interfaces that use it fail without it; its login mappings are scripted by name, remote passwords are not captured'],
        INSTANCE_METHODS,
      ),
    );
  }
  for (const c of rows.credentials) {
    const name = str(c.name);
    items.push(
      item('instance-object', `instance-object:mssql:credential:${name}`, name, loc(`credential/${name}`), { identity: fact(c.credential_identity) }, ['used by Agent proxies or backup to URL; its secret must come from the secrets store'], INSTANCE_METHODS),
    );
  }
  for (const e of rows.endpoints) {
    const name = str(e.name);
    items.push(item('instance-object', `instance-object:mssql:endpoint:${name}`, name, loc(`endpoint/${name}`), { protocol: fact(e.protocol_desc), type: fact(e.type_desc), state: fact(e.state_desc), port: fact(e.port), authentication: fact(e.connection_auth_desc) }, ['mirroring / AG / Service Broker traffic depends on it'], INSTANCE_METHODS));
  }
  for (const p of rows.startupProcedures) {
    const name = str(p.name);
    items.push(item('instance-object', `instance-object:mssql:startup-procedure:${name}`, name, loc(`startup-procedure/${name}`), {}, ['runs at every SQL Server start; forgotten in rebuilds'], INSTANCE_METHODS));
  }
  const changed = rows.configuration.filter((c) => String(c.value) !== String(c.value_in_use)).map((c) => str(c.name));
  items.push(
    item(
      'instance-object',
      `instance-object:mssql:configuration:${server}`,
      'server configuration',
      loc('configuration'),
      { options: rows.configuration.length, pendingReconfigure: changed.length },
      ['sp_configure values (max server memory, MAXDOP, backup compression default, …) return to defaults on a new instance', ...changed.map((n) => `${n}: configured value differs from the value in use (RECONFIGURE pending)`)],
      INSTANCE_METHODS,
    ),
  );
  const flags = rows.traceFlags.filter((f) => Number(f.Global) === 1).map((f) => Number(f.TraceFlag));
  items.push(
    item('instance-object', `instance-object:mssql:trace-flags:${server}`, 'global trace flags', loc('trace-flags'), { flags: flags.join(',') }, flags.length ? ['global trace flags come from startup parameters, which a rebuild loses'] : ['no global trace flag is on'], INSTANCE_METHODS),
  );
  for (const a of rows.alerts) {
    const name = str(a.name);
    items.push(item('instance-object', `instance-object:mssql:alert:${name}`, name, loc(`alert/${name}`), { enabled: a.enabled === 1, severity: fact(a.severity), messageId: fact(a.message_id), notifies: fact(a.notifications), job: fact(a.job_name) }, ['SQL Agent alerts live in msdb and are lost with the instance: nobody is told about severe errors after the rebuild'], INSTANCE_METHODS));
  }
  for (const p of rows.proxies) {
    const name = str(p.name);
    items.push(item('instance-object', `instance-object:mssql:proxy:${name}`, name, loc(`proxy/${name}`), { enabled: p.enabled === 1, credential: fact(p.credential_name), subsystems: fact(p.subsystems) }, ['job steps that run as this proxy fail without it; its credential\'s secret must come from the secrets store'], INSTANCE_METHODS));
  }
  for (const name of [...new Set(rows.mailProfiles.map((m) => str(m.profile_name)))]) {
    const accounts = rows.mailProfiles.filter((m) => str(m.profile_name) === name && m.account_name);
    items.push(item('instance-object', `instance-object:mssql:mail-profile:${name}`, name, loc(`mail-profile/${name}`), { accounts: accounts.map((a) => str(a.account_name)).join(', '), servers: accounts.map((a) => str(a.servername)).join(', ') }, ['job and alert e-mails go through Database Mail; SMTP passwords are not captured'], INSTANCE_METHODS));
  }
  if (Number(rows.server.master_key ?? 0) > 0) {
    items.push(item('instance-object', `instance-object:mssql:master-key:${server}`, "master's database master key", loc('master-key'), {}, ["protects the private keys of master's certificates: backed up with BACKUP MASTER KEY (password from the secrets store)"], INSTANCE_METHODS));
  }
  if (extra.carryBackupHistory) {
    const users = rows.databases.filter((d) => !(Number(d.database_id) <= 4 || ['master', 'model', 'msdb'].includes(str(d.name).toLowerCase())));
    items.push(
      item(
        'instance-object',
        `instance-object:mssql:backup-history:${server}`,
        'msdb backup history',
        loc('backup-history'),
        { databases: users.length },
        [
          "msdb's backup history (backupset, backupmediaset, backupmediafamily, backupfile) of the user databases is lost with the instance; the runbook asks to carry it (engines.mssql.carryBackupHistory)",
          'kept as evidence (backup-history.json), proven readable; never inserted into the rebuilt msdb: SQL Server writes those tables itself and Microsoft says not to INSERT into system tables',
        ],
        INSTANCE_METHODS,
      ),
    );
  }
  items.push(item('instance-object', `instance-object:mssql:service-master-key:${server}`, 'service master key', loc('service-master-key'), {}, ['encrypts linked-server and credential passwords and master\'s DMK: backed up with BACKUP SERVICE MASTER KEY (password from the secrets store)'], INSTANCE_METHODS));
  for (const c of rows.certificates) {
    const name = str(c.name);
    const tdeDbs = Number(c.tde_databases ?? 0);
    items.push(
      item(
        'certificate',
        `certificate:mssql:${name}`,
        name,
        loc(`certificate/${name}`),
        { thumbprint: fact(c.thumbprint), subject: fact(c.subject), expires: fact(c.expiry_date), privateKey: fact(c.pvt_key_encryption_type_desc), tdeDatabases: tdeDbs },
        tdeDbs > 0 ? [`protects ${tdeDbs} TDE database(s): without it and its private key those backups cannot be restored (Msg 33111)`] : ['may encrypt backups or sign modules: exported with its private key'],
        INSTANCE_METHODS,
      ),
    );
  }
  return items;
}
