/**
 * Builders for SQL Server-shaped replies (column names and types as SQL
 * Server documents them) and a scripted endpoint wired to an mssql
 * connection config. Shared by the mssql engine tests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { RubiconError } from '../../../src/core/errors.ts';
import type { Host } from '../../../src/hosts/host.ts';
import type { MssqlConnectionConfig, StatementLogEntry } from '../../../src/engines/mssql/session.ts';
import { TdsServer, type TdsColumn, type TdsReply, type TdsResultSet, type TdsServerOptions, type TdsType } from '../../tds/server.ts';

export function rs(columns: [string, TdsType, { precision?: number; scale?: number }?][], rows: Record<string, unknown>[]): TdsResultSet {
  return { columns: columns.map(([name, type, o]): TdsColumn => ({ name, type, ...o })), rows };
}

export const one = (set: TdsResultSet): TdsReply => ({ resultSets: [set] });

export interface Scripted {
  server: TdsServer;
  config: MssqlConnectionConfig;
  log: StatementLogEntry[];
  stop(): Promise<void>;
}

/** A scripted endpoint on loopback and the connection config for it (encrypt false: the endpoint has no TLS). */
export async function scripted(options: TdsServerOptions = {}): Promise<Scripted> {
  const server = new TdsServer(options);
  const port = await server.start();
  return {
    server,
    config: { server: '127.0.0.1', port, user: 'rubicon', password: 'not-a-secret', encrypt: false, trustServerCertificate: true, requestTimeoutMs: 10_000 },
    log: [],
    stop: () => server.stop(),
  };
}

/** A Host over a temporary folder (only resolve() is used by the mssql engine). */
export async function tempHost(): Promise<{ host: Host; root: string; dispose(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'rubicon-mssql-'));
  const host: Host = {
    name: 'test-host',
    kind: 'local',
    resolve(relative: string): string {
      const p = resolve(root, relative);
      if (p !== root && !p.startsWith(root + sep)) throw new RubiconError('ARGUMENTS_INVALID', `path ${relative} escapes the host root`);
      return p;
    },
    exec(): never {
      throw new Error('exec is not used by the mssql engine');
    },
  };
  return { host, root, dispose: () => rm(root, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------- documented result shapes

export interface HeaderSpec {
  position?: number;
  backupType?: number;
  databaseName: string;
  lastLsn?: string;
  isCopyOnly?: boolean;
  hasBackupChecksums?: boolean;
  isDamaged?: boolean;
  software?: [number, number, number];
  encryptorThumbprint?: Buffer | null;
}

/** RESTORE HEADERONLY: the documented columns Rubicon reads, with their SQL Server types. */
export function headerOnly(specs: HeaderSpec[]): TdsReply {
  return one(
    rs(
      [
        ['BackupName', 'nvarchar'],
        ['BackupType', 'smallint'],
        ['Compressed', 'tinyint'],
        ['Position', 'smallint'],
        ['DeviceType', 'tinyint'],
        ['UserName', 'nvarchar'],
        ['ServerName', 'nvarchar'],
        ['DatabaseName', 'nvarchar'],
        ['BackupSize', 'decimal', { precision: 20 }],
        ['FirstLSN', 'decimal', { precision: 25 }],
        ['LastLSN', 'decimal', { precision: 25 }],
        ['CheckpointLSN', 'decimal', { precision: 25 }],
        ['DatabaseBackupLSN', 'decimal', { precision: 25 }],
        ['BackupStartDate', 'datetime'],
        ['BackupFinishDate', 'datetime'],
        ['SoftwareVersionMajor', 'int'],
        ['SoftwareVersionMinor', 'int'],
        ['SoftwareVersionBuild', 'int'],
        ['MachineName', 'nvarchar'],
        ['RecoveryModel', 'nvarchar'],
        ['Collation', 'nvarchar'],
        ['HasBackupChecksums', 'bit'],
        ['IsDamaged', 'bit'],
        ['IsCopyOnly', 'bit'],
        ['CompressedBackupSize', 'decimal', { precision: 20 }],
        ['KeyAlgorithm', 'nvarchar'],
        ['EncryptorThumbprint', 'varbinary'],
      ],
      specs.map((s) => ({
        BackupName: null,
        BackupType: s.backupType ?? 1,
        Compressed: 1,
        Position: s.position ?? 1,
        DeviceType: 2,
        UserName: 'sa',
        ServerName: 'EHR-SQL01',
        DatabaseName: s.databaseName,
        BackupSize: '104857600',
        FirstLSN: '37000000041600001',
        LastLSN: s.lastLsn ?? '37000000043200001',
        CheckpointLSN: '37000000041600037',
        DatabaseBackupLSN: '0',
        BackupStartDate: new Date('2025-01-10T02:00:00Z'),
        BackupFinishDate: new Date('2025-01-10T02:03:00Z'),
        SoftwareVersionMajor: s.software?.[0] ?? 15,
        SoftwareVersionMinor: s.software?.[1] ?? 0,
        SoftwareVersionBuild: s.software?.[2] ?? 4355,
        MachineName: 'EHR-SQL01',
        RecoveryModel: 'FULL',
        Collation: 'SQL_Latin1_General_CP1_CI_AS',
        HasBackupChecksums: s.hasBackupChecksums ?? true,
        IsDamaged: s.isDamaged ?? false,
        IsCopyOnly: s.isCopyOnly ?? true,
        CompressedBackupSize: '20971520',
        KeyAlgorithm: null,
        EncryptorThumbprint: s.encryptorThumbprint ?? null,
      })),
    ),
  );
}

/** RESTORE FILELISTONLY: documented columns. */
export function fileListOnly(files: { logical: string; physical: string; type: 'D' | 'L' | 'S'; fileId: number }[]): TdsReply {
  return one(
    rs(
      [
        ['LogicalName', 'nvarchar'],
        ['PhysicalName', 'nvarchar'],
        ['Type', 'nvarchar'],
        ['FileGroupName', 'nvarchar'],
        ['Size', 'decimal', { precision: 20 }],
        ['MaxSize', 'decimal', { precision: 20 }],
        ['FileId', 'bigint'],
        ['IsPresent', 'bit'],
        ['TDEThumbprint', 'varbinary'],
      ],
      files.map((f) => ({
        LogicalName: f.logical,
        PhysicalName: f.physical,
        Type: f.type,
        FileGroupName: f.type === 'L' ? null : 'PRIMARY',
        Size: '8388608',
        MaxSize: '35184372080640',
        FileId: f.fileId,
        IsPresent: true,
        TDEThumbprint: null,
      })),
    ),
  );
}

/** The INFO messages a successful RESTORE DATABASE sends. */
export function restoreOk(database: string): TdsReply {
  return {
    infos: [
      { number: 3211, class: 0, message: '100 percent processed.' },
      { number: 4035, class: 0, message: `Processed 368 pages for database '${database}', file 'EHR' on file 1.` },
      { number: 3014, class: 0, message: 'RESTORE DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).' },
    ],
  };
}

export function serverInfoReply(version = '15.0.4355.3', edition = 'Standard Edition (64-bit)'): TdsReply {
  return one(
    rs(
      [
        ['product_version', 'nvarchar'],
        ['product_level', 'nvarchar'],
        ['edition', 'nvarchar'],
        ['engine_edition', 'int'],
        ['collation', 'nvarchar'],
        ['machine_name', 'nvarchar'],
        ['server_name', 'nvarchar'],
        ['default_data_path', 'nvarchar'],
        ['default_log_path', 'nvarchar'],
        ['is_hadr_enabled', 'int'],
      ],
      [{ product_version: version, product_level: 'RTM', edition, engine_edition: 2, collation: 'SQL_Latin1_General_CP1_CI_AS', machine_name: 'EHR-SQL01', server_name: 'EHR-SQL01', default_data_path: 'D:\\Data\\', default_log_path: 'L:\\Log\\', is_hadr_enabled: 0 }],
    ),
  );
}

export interface DbSpec {
  name: string;
  id?: number;
  state?: string;
  tdeThumbprint?: string | null;
  tdeCertificate?: string | null;
  lastFull?: Date | null;
  recovery?: string;
}

export function databasesReply(dbs: DbSpec[]): TdsReply {
  return one(
    rs(
      [
        ['name', 'nvarchar'],
        ['database_id', 'int'],
        ['state_desc', 'nvarchar'],
        ['recovery_model_desc', 'nvarchar'],
        ['compatibility_level', 'tinyint'],
        ['collation_name', 'nvarchar'],
        ['is_encrypted', 'int'],
        ['is_trustworthy_on', 'int'],
        ['owner_name', 'nvarchar'],
        ['size_bytes', 'bigint'],
        ['encryption_state', 'int'],
        ['tde_thumbprint', 'nvarchar'],
        ['tde_certificate', 'nvarchar'],
        ['last_full_backup', 'datetime'],
        ['last_log_backup', 'datetime'],
        ['encrypted_backups', 'bigint'],
      ],
      dbs.map((d, i) => ({
        name: d.name,
        database_id: d.id ?? 5 + i,
        state_desc: d.state ?? 'ONLINE',
        recovery_model_desc: d.recovery ?? 'FULL',
        compatibility_level: 150,
        collation_name: 'SQL_Latin1_General_CP1_CI_AS',
        is_encrypted: d.tdeThumbprint ? 1 : 0,
        is_trustworthy_on: 0,
        owner_name: 'sa',
        size_bytes: 52428800n,
        encryption_state: d.tdeThumbprint ? 3 : null,
        tde_thumbprint: d.tdeThumbprint ?? null,
        tde_certificate: d.tdeCertificate ?? null,
        last_full_backup: d.lastFull === undefined ? new Date('2025-01-09T23:00:00Z') : d.lastFull,
        last_log_backup: null,
        encrypted_backups: 0,
      })),
    ),
  );
}

export const ok: TdsReply = {};
