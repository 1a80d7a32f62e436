/**
 * What a SQL Server artifact consists of, and paths as SQL Server sees them.
 *
 * Every database artifact carries a small sidecar, `rubicon-mssql.json`,
 * beside its backup file(s): source version and edition, the restore
 * sequence (which files, which position, full/diff/log) and the
 * certificates the restore needs. The proving ground reads it from the
 * vault, so it needs nothing from the target ("from the vault alone").
 * It holds no secret: certificate private keys are in their own .pvk files,
 * encrypted by SQL Server with the runbook's password.
 */
import { createHash } from 'node:crypto';
import { RubiconError } from '../../core/errors.ts';

export const SIDECAR_NAME = 'rubicon-mssql.json';

export interface SidecarCertificate {
  name: string;
  thumbprint: string;
  /** File names inside the artifact. */
  certFile: string;
  keyFile: string;
}

export interface RestoreStep {
  kind: 'full' | 'diff' | 'log';
  /** File names inside the artifact (one per stripe, in family order). */
  files: string[];
  /** Backup set position inside the media (WITH FILE = n). */
  position: number;
  /** Exact LastLSN (msdb's decimal text). */
  lastLsn?: string;
  backupFinishDate?: string | null;
  /**
   * HEADERONLY BackupSetGUID (= msdb backupset.backup_set_uuid) at capture:
   * the restore step uses only a backup set with exactly this GUID, so an
   * older or another backup in the same file name and position is refused.
   */
  backupSetGuid?: string;
  /** HEADERONLY HasBackupChecksums at capture (RESTORE WITH CHECKSUM only when true). */
  hasBackupChecksums?: boolean;
}

/** What of the source database must survive the restore (read at capture). */
export interface SidecarDatabase {
  compatibilityLevel: number | null;
  collation: string | null;
  owner: string | null;
  ownerSid: string | null;
  trustworthy: boolean;
  /** sys.dm_db_persisted_sku_features of the source database. */
  skuFeatures: string[];
  filestreamFilegroups: number;
  clrAssemblies: number;
  /** Sum of the data files' sizes (bytes), for Express's 10 GB limit. */
  dataBytes: number | null;
}

export interface Sidecar {
  version: 1;
  format: 'mssql-bak';
  database: string;
  method: string;
  source: {
    server: string;
    productVersion: string;
    edition: string;
    /** SERVERPROPERTY('EngineEdition'). */
    engineEdition?: number;
    /** The source instance's collation. */
    collation?: string;
  };
  /** The source database's settings (absent in artifacts of earlier versions). */
  databaseFacts?: SidecarDatabase;
  /**
   * What the capture-time source fingerprint is comparable with: `frozen`
   * (the database was read-only or not MULTI_USER: no writes between the
   * fingerprint and the backup) or `live` (writes between them show up as
   * differences: compare the restored copies with each other, and the final
   * capture after freeze with the source).
   */
  fingerprintBasis?: 'frozen' | 'live';
  /** master/model/msdb: never restored under a test name (see prove.ts). */
  system?: boolean;
  steps: RestoreStep[];
  certificates: SidecarCertificate[];
  /** Thumbprints the restore will ask for (TDE, backup encryption). */
  requiredThumbprints: string[];
  /**
   * A backup to URL (method mssql-native-url): the stripes are blobs in an
   * azure-blob vault's container, not files of the artifact. The steps'
   * `files` are the stripe blob names; prove and landing restore FROM URL
   * through a read grant of `vault`.
   */
  url?: SidecarUrl;
}

export interface SidecarUrlStripe {
  /** Blob name in the container (the vault's prefix included). */
  blob: string;
  /** The device URL SQL Server wrote (no query string). */
  url: string;
  /** Size read back from the vault after the backup. */
  bytes: number;
  /** The service's Content-MD5 (base64). SQL Server's Put Block List sets none: the capture sets it (AzureBlobVault.recordBlob); absent in older sidecars. */
  contentMd5?: string;
  /** The service's ETag at read-back. */
  etag?: string;
}

export interface SidecarUrl {
  /** The runbook's name of the azure-blob vault holding the stripes. */
  vault: string;
  /** The container URL (= the SAS credential's name). */
  container: string;
  stripes: SidecarUrlStripe[];
}

export function serializeSidecar(s: Sidecar): string {
  return `${JSON.stringify(s, null, 2)}\n`;
}

/** Parses and checks a sidecar; throws ENGINE_FAILED naming the artifact file when it is not one. */
export function parseSidecar(text: string, where: string): Sidecar {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new RubiconError('ENGINE_FAILED', `mssql: ${where} is not valid JSON`, { cause: e });
  }
  const s = v as Partial<Sidecar>;
  if (s.version !== 1 || s.format !== 'mssql-bak' || typeof s.database !== 'string' || !Array.isArray(s.steps) || s.steps.length === 0) {
    throw new RubiconError('ENGINE_FAILED', `mssql: ${where} is not a Rubicon SQL Server sidecar (version 1, format mssql-bak, steps)`, {
      hint: 'The artifact was not written by this version of Rubicon, or it was altered.',
    });
  }
  return { certificates: [], requiredThumbprints: [], ...s } as Sidecar;
}

/**
 * Joins a directory and a file name the way the SQL Server's OS does:
 * backslash when the directory is a Windows path (`D:\…`, `\\server\…`), else `/`.
 */
export function serverJoin(directory: string, name: string): string {
  const windows = /^[A-Za-z]:[\\/]|^\\\\/.test(directory) || (directory.includes('\\') && !directory.includes('/'));
  const sep = windows ? '\\' : '/';
  return directory.endsWith('\\') || directory.endsWith('/') ? `${directory}${name}` : `${directory}${sep}${name}`;
}

/** Last segment of a Windows or POSIX path. */
export function serverBasename(path: string): string {
  const i = Math.max(path.lastIndexOf('\\'), path.lastIndexOf('/'));
  return i === -1 ? path : path.slice(i + 1);
}

/**
 * A file-name-safe, collision-free token for a database name: safe
 * characters kept, the rest `_`, plus 8 hex of SHA-256 of the real name
 * (so `a b` and `a_b` never share a file).
 */
export function fileToken(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
  const h = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 8);
  return `${safe}-${h}`;
}

/** The scratch database name used on the proving ground for one artifact. Deterministic (a redo drops it first). */
export function testDatabaseName(database: string, artifactId: string): string {
  const h = createHash('sha256').update(artifactId, 'utf8').digest('hex').slice(0, 10);
  return `rubicon-prove-${database.slice(0, 80)}-${h}`;
}

/** Target path of one restored file: the data or log directory, `<test db>_<fileId><ext>`. */
export function movePath(dataDir: string, logDir: string, testDb: string, file: { type: string; fileId: number }): string {
  const base = `${fileToken(testDb)}_${file.fileId}`;
  if (file.type === 'L') return serverJoin(logDir, `${base}.ldf`);
  if (file.type === 'S' || file.type === 'F') return serverJoin(dataDir, `${base}_container`);
  return serverJoin(dataDir, `${base}${file.fileId === 1 ? '.mdf' : '.ndf'}`);
}
