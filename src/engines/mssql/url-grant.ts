/**
 * SQL Server `BACKUP … TO URL` and `RESTORE … FROM URL` through a grant of
 * an azure-blob vault: the statements and the grant, as plain data. Pure
 * except issueSqlServerUrlGrant (which asks the vault for a SAS). Used by
 * method mssql-native-url (capture.ts captureNativeUrl; engine.ts
 * openUrlRead for prove and landing).
 *
 * How SQL Server takes a SAS (learn.microsoft.com, "Create a SQL Server
 * credential using a shared access signature"; Microsoft's DataCAT "SQL
 * Server Backup to URL – a cheat sheet"):
 * - a credential NAMED the container URL (https, no trailing slash), with
 *   IDENTITY = 'SHARED ACCESS SIGNATURE' and SECRET = the SAS without its
 *   leading '?'; BACKUP/RESTORE then name only blob URLs, and SQL Server
 *   finds the credential by the URL's container prefix. A credential name is
 *   a sysname: at most 128 characters (QUOTENAME returns NULL beyond, which
 *   would make the whole statement NULL and EXEC do nothing: refused here).
 * - block blobs with a SAS credential; up to 64 stripes (urlStripes).
 * - the SAS must allow read, write, delete and list for backup (SQL Server
 *   removes what a failed backup left): a SQL Server write grant carries
 *   `d`, like restic's. Keep SQL Server's stripes in a container of their
 *   own, never the one holding the immutable copies (a WORM container
 *   refuses those deletes anyway). A read grant (the proving ground's
 *   RESTORE) carries `r l` only.
 *
 * Secrets: CREATE CREDENTIAL accepts only literals, so the client text is
 * constant and the server assembles the statement from parameters
 * (QUOTENAME, quote doubling, sp_executesql), as sql.ts does for
 * passwords. The SAS travels only as the secret parameter @secret (the
 * statement log shows `***`); no URL Rubicon sends carries a query string;
 * the grant object keeps its token out of JSON and out of enumeration.
 */
import { randomBytes } from 'node:crypto';
import { RubiconError } from '../../core/errors.ts';
import type { JournalEvent } from '../../core/events.ts';
import type { AzureBlobVault } from '../../vaults/azure-blob.ts';
import { quoteIdentifier } from './quote.ts';
import type { SqlParam, SqlStatement } from './session.ts';
import { backupToUrlStatement, urlStripes, type FileMove, type NativeBackupOptions } from './sql.ts';

const nv = (name: string, value: string, secret = false): SqlParam => ({ name, type: 'nvarchar', value, secret });

/** A credential name is a sysname. */
export const CREDENTIAL_NAME_MAX = 128;
/**
 * The longest device URL Rubicon sends: msdb.dbo.backupmediafamily keeps
 * `physical_device_name` as nvarchar(260), so a longer URL could not be
 * recorded in the backup history that proofs and landings read.
 */
export const URL_MAX = 259;

/** The credential name for a container URL: https, no query, no trailing slash, ≤ 128 characters. Pure. Throws GRANT_FAILED. */
export function sasCredentialName(containerUrl: string): string {
  let u: URL;
  try {
    u = new URL(containerUrl);
  } catch {
    throw new RubiconError('GRANT_FAILED', `"${containerUrl}" is not a container URL`, { hint: 'the vault\'s accountUrl and container make it: https://<account>.blob.core.windows.net/<container>' });
  }
  if (u.protocol !== 'https:') {
    throw new RubiconError('GRANT_FAILED', `SQL Server backs up only to https URLs; the vault's container is ${u.origin}${u.pathname}`, { hint: 'use the https endpoint of the storage account in the vault\'s accountUrl' });
  }
  if (u.search || u.hash || u.username || u.password) throw new RubiconError('GRANT_FAILED', 'a SQL Server credential is named by the container URL alone, without a query string (the SAS goes in its SECRET)');
  const name = `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
  if (name.split('/').length !== 4 && !/^\d+\.\d+\.\d+\.\d+$|^localhost$/.test(u.hostname)) {
    // https://acct.blob.core.windows.net/container: scheme, '', host, container. (An emulator's path style has the account too.)
    throw new RubiconError('GRANT_FAILED', `${name} is not the URL of one container (SQL Server matches a credential by the container's URL)`, { hint: 'name the container in the vault, not a folder inside it' });
  }
  if (name.length > CREDENTIAL_NAME_MAX) {
    throw new RubiconError('GRANT_FAILED', `the container URL ${name} is ${name.length} characters; a SQL Server credential name (sysname) holds at most ${CREDENTIAL_NAME_MAX}`, { hint: 'use a shorter container name for SQL Server\'s backups' });
  }
  return name;
}

/** A time-limited SAS for SQL Server, held in memory only: it reaches the server as the credential's secret parameter and nowhere else. */
export interface SqlServerUrlGrant {
  /** Journaled (grant.issued / grant.revoked): `mssql-url-<16 hex>`. */
  id: string;
  vault: string;
  mode: 'read' | 'write';
  /** The credential's name: the container URL. */
  credential: string;
  expiresAt: string;
  sasKind: 'user-delegation' | 'service';
  /** The SAS (no leading '?'). Not enumerable: never in JSON, logs or the journal. */
  readonly token: string;
}

/**
 * Asks the vault for a container SAS for SQL Server: write `r c w d a l`
 * (SQL Server's backup needs delete), read `r l`. Nothing is written
 * anywhere; the token lives in the returned object until the credential
 * statement sends it. Throws GRANT_FAILED (https only, name too long, the
 * vault's own refusals).
 */
export async function issueSqlServerUrlGrant(vault: AzureBlobVault, mode: 'read' | 'write', ttlMs: number): Promise<SqlServerUrlGrant> {
  const credential = sasCredentialName(vault.container.url);
  const s = await vault.sas(mode, ttlMs, undefined, { delete: mode === 'write' });
  checkSasPermissions(s.token, mode, vault.info.name);
  const g = { id: `mssql-url-${randomBytes(8).toString('hex')}`, vault: vault.info.name, mode, credential, expiresAt: s.expiresOn.toISOString(), sasKind: s.kind } as SqlServerUrlGrant;
  Object.defineProperty(g, 'token', { value: s.token.replace(/^\?/, ''), enumerable: false });
  return g;
}

/** What each grant may carry: a read grant exactly read + list; a write grant what SQL Server's backup uses (docs/azure-blob.md), never more. */
const READ_PERMISSIONS = 'lr';
const WRITE_PERMISSIONS = 'acdlrw';

/**
 * The SAS's own word on what it allows (`sp`) and what it is scoped to
 * (`sr`), checked before SQL Server is given it: a read grant (the proving
 * ground's and the landing's RESTORE … FROM URL) must be a container SAS
 * with exactly `r l`, so a restore can never write, delete or overwrite a
 * backup; a write grant a container SAS within `r c w d a l` with at least
 * `r w l` (BACKUP writes, HEADERONLY reads, SQL Server lists). Pure. Throws
 * GRANT_FAILED naming the vault and what the SAS carried; never shows the
 * signature.
 */
export function checkSasPermissions(token: string, mode: 'read' | 'write', vault: string): void {
  const q = new URLSearchParams(token.replace(/^\?/, ''));
  const sp = q.get('sp') ?? '';
  const sr = q.get('sr') ?? '';
  const got = [...new Set(sp)].sort().join('');
  const ok = mode === 'read' ? got === READ_PERMISSIONS && sp.length === 2 : [...sp].every((c) => WRITE_PERMISSIONS.includes(c)) && ['r', 'w', 'l'].every((c) => sp.includes(c));
  if (sr !== 'c' || !ok) {
    throw new RubiconError(
      'GRANT_FAILED',
      `vault '${vault}' gave a ${mode} grant for SQL Server with permissions '${sp}' on scope '${sr}'; a ${mode} grant must be a container SAS (sr=c) with ${mode === 'read' ? "exactly 'rl' (read, list): a restore FROM URL must not be able to write or delete a backup" : "at most 'racwdl' and at least 'rwl'"}. Refused: nothing was given to SQL Server`,
      { hint: mode === 'read' ? 'the read grant of an azure-blob vault is r l; check the vault settings and the Rubicon version' : 'check the azure-blob vault\'s grant settings' },
    );
  }
}

/** The journal's record of a SQL Server grant, as every other grant is journaled (docs/events.md): never the SAS. */
export type UrlGrantEvent = Extract<JournalEvent, { type: 'grant.issued' | 'grant.revoked' }>;

/**
 * grant.issued for a SQL Server grant, recorded before the credential is
 * created: `machine` names the SQL Server that holds it, `dir` the
 * credential (the container URL). Pure; carries no secret (the token is not
 * enumerable and not read here).
 */
export function urlGrantIssued(g: SqlServerUrlGrant, machine: string): UrlGrantEvent {
  return { type: 'grant.issued', grant: { id: g.id, vault: g.vault, machine, mode: g.mode, expiresAt: g.expiresAt, dir: g.credential, holder: 'sql-server-credential' } };
}

/** grant.revoked, recorded once the credential is dropped (the SAS itself lapses at its expiry). Pure. */
export function urlGrantRevoked(g: SqlServerUrlGrant): UrlGrantEvent {
  return { type: 'grant.revoked', grantIds: [g.id] };
}

/**
 * Creates the SAS credential (dropping one of the same name first: a
 * credential's secret is replaced whole). The SAS is the secret parameter
 * @secret; the server assembles the statement with QUOTENAME and quote
 * doubling and runs it with sp_executesql. Not idempotent by itself, but
 * running it again gives the same end state (the newest secret).
 */
export function createSasCredentialStatement(grant: SqlServerUrlGrant): SqlStatement {
  if (grant.credential.length > CREDENTIAL_NAME_MAX) throw new RubiconError('INTERNAL', 'credential name longer than a sysname');
  return {
    text: `${DROP_TEXT}
DECLARE @stmt nvarchar(max) = N'CREATE CREDENTIAL ' + QUOTENAME(@name) + N' WITH IDENTITY = N''SHARED ACCESS SIGNATURE'', SECRET = N''' + REPLACE(@secret, N'''', N'''''') + N''';';
EXEC master.sys.sp_executesql @stmt;`,
    params: [nv('name', grant.credential), nv('secret', grant.token, true)],
  };
}

const DROP_TEXT = `IF EXISTS (SELECT 1 FROM master.sys.credentials WHERE name = @name)
BEGIN
  DECLARE @drop nvarchar(max) = N'DROP CREDENTIAL ' + QUOTENAME(@name) + N';';
  EXEC master.sys.sp_executesql @drop;
END;`;

/** Removes the credential (the SAS stays valid until its expiry, but the server no longer holds it). Idempotent. */
export function dropSasCredentialStatement(credential: string): SqlStatement {
  return { text: DROP_TEXT, params: [nv('name', credential)] };
}

/**
 * The stripe blobs of one backup, relative to the vault's prefix:
 * `mssql/<artifact>/stripe-01-of-03.bak`… `artifactId` is made safe for a
 * blob name (anything but letters, digits, '.', '_', '-' becomes '_'). Pure.
 */
export function stripeBlobs(artifactId: string, stripes: number): string[] {
  if (!Number.isInteger(stripes) || stripes < 1 || stripes > 64) throw new RangeError(`a backup to URL has 1..64 stripes, not ${stripes}`);
  const safe = artifactId.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  const w = String(stripes).length < 2 ? 2 : String(stripes).length;
  return Array.from({ length: stripes }, (_, i) => `mssql/${safe}/stripe-${String(i + 1).padStart(w, '0')}-of-${String(stripes).padStart(w, '0')}.bak`);
}

/** Checks the URLs a statement will name: inside the credential's container, no query string, ≤ URL_MAX characters. Pure. */
export function checkDeviceUrls(credential: string, urls: string[]): void {
  if (urls.length < 1 || urls.length > 64) throw new RangeError(`backup to URL needs 1..64 stripes, got ${urls.length}`);
  for (const url of urls) {
    if (!url.startsWith(`${credential}/`)) throw new RubiconError('INTERNAL', `${url} is not inside the container of credential ${credential}`);
    if (url.includes('?') || url.includes('#')) throw new RubiconError('INTERNAL', 'a device URL must not carry a query string (a SAS goes only in the credential)');
    if (url.length > URL_MAX) {
      throw new RubiconError('GRANT_FAILED', `the stripe URL ${url} is ${url.length} characters; SQL Server's backup history keeps at most ${URL_MAX}`, { hint: 'use a shorter vault prefix or container name for SQL Server\'s backups' });
    }
  }
}

export interface UrlBackupPlan {
  credential: SqlStatement;
  backup: SqlStatement;
  drop: SqlStatement;
  /** Blob names in the container, one per stripe (what the artifact records). */
  blobs: string[];
  urls: string[];
}

/**
 * Everything one database's backup to the vault needs, in order: create the
 * credential, BACKUP … TO URL (COPY_ONLY, CHECKSUM; stripes by size), drop
 * the credential. Pure given the vault's names.
 */
export function urlBackupPlan(
  vault: Pick<AzureBlobVault, 'blobName' | 'blobUrl'>,
  grant: SqlServerUrlGrant,
  database: string,
  artifactId: string,
  sizeBytes: number,
  o: NativeBackupOptions = {},
): UrlBackupPlan {
  if (grant.mode !== 'write') throw new RubiconError('INTERNAL', `a backup to URL needs a write grant; grant of vault '${grant.vault}' is ${grant.mode}`);
  const blobs = stripeBlobs(artifactId, urlStripes(sizeBytes)).map((b) => vault.blobName(b));
  const urls = blobs.map((b) => vault.blobUrl(b));
  checkDeviceUrls(grant.credential, urls);
  return { credential: createSasCredentialStatement(grant), backup: backupToUrlStatement(database, urls, o), drop: dropSasCredentialStatement(grant.credential), blobs, urls };
}

function fromUrls(urls: string[]): { text: string; params: SqlParam[] } {
  if (urls.length === 0) throw new RangeError('a restore needs at least one backup URL');
  return { text: urls.map((_, i) => `URL = @url${i + 1}`).join(', '), params: urls.map((u, i) => nv(`url${i + 1}`, u)) };
}

/** RESTORE FILELISTONLY FROM URL (the proving ground learns the logical files before it restores under a test name). */
export function fileListOnlyFromUrlStatement(urls: string[]): SqlStatement {
  const from = fromUrls(urls);
  return { text: `RESTORE FILELISTONLY FROM ${from.text};`, params: from.params, long: true };
}

/** RESTORE DATABASE <test name> FROM URL … WITH MOVE …, CHECKSUM: the same options as the restore from disk in sql.ts. */
export function restoreFromUrlStatement(testDatabase: string, urls: string[], moves: FileMove[], recovery: boolean, checksum = true): SqlStatement {
  const from = fromUrls(urls);
  const moveText = moves.map((_, i) => `MOVE @logical${i + 1} TO @physical${i + 1}`).join(', ');
  const moveParams = moves.flatMap((m, i) => [nv(`logical${i + 1}`, m.logicalName), nv(`physical${i + 1}`, m.physicalPath)]);
  return {
    text: `RESTORE DATABASE ${quoteIdentifier(testDatabase)} FROM ${from.text} WITH ${moveText}${moves.length ? ', ' : ''}${checksum ? 'CHECKSUM, ' : ''}${recovery ? 'RECOVERY' : 'NORECOVERY'}, STATS = 10;`,
    params: [...from.params, ...moveParams],
    long: true,
  };
}

export interface UrlRestorePlan {
  credential: SqlStatement;
  fileList: SqlStatement;
  restore: (moves: FileMove[]) => SqlStatement;
  drop: SqlStatement;
}

/** The proving ground's side: a read grant's credential, FILELISTONLY, the restore under a test name, the drop. Pure. */
export function urlRestorePlan(grant: SqlServerUrlGrant, urls: string[], testDatabase: string): UrlRestorePlan {
  checkDeviceUrls(grant.credential, urls);
  return {
    credential: createSasCredentialStatement(grant),
    fileList: fileListOnlyFromUrlStatement(urls),
    restore: (moves) => restoreFromUrlStatement(testDatabase, urls, moves, true),
    drop: dropSasCredentialStatement(grant.credential),
  };
}
