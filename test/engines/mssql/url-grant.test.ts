/**
 * SQL Server BACKUP TO URL / RESTORE FROM URL through an azure-blob grant
 * (src/engines/mssql/url-grant.ts), where SQL Server cannot run: at the
 * protocol level. Three independent checks:
 * - Microsoft's T-SQL parser (ScriptDom, TSql130 and TSql160) parses every
 *   statement, and the inner CREATE/DROP CREDENTIAL the server assembles
 *   from the parameters (hostile names and a SAS with quotes);
 * - the statements go through the engine's real session (mssql/tedious)
 *   to the scripted TDS endpoint: the SAS crosses only as the secret
 *   parameter @secret, never in a statement text, never in the statement
 *   log, and no device URL carries a query string;
 * - the SAS the credential carries, against Azurite over HTTPS: it lets
 *   SQL Server's operations through (Put Block / Put Block List of a
 *   stripe, list, delete for a write grant; read and list for a read grant)
 *   and refuses the rest.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MssqlSession, type StatementLogEntry } from '../../../src/engines/mssql/session.ts';
import {
  checkDeviceUrls,
  checkSasPermissions,
  createSasCredentialStatement,
  dropSasCredentialStatement,
  fileListOnlyFromUrlStatement,
  issueSqlServerUrlGrant,
  restoreFromUrlStatement,
  sasCredentialName,
  stripeBlobs,
  urlBackupPlan,
  urlRestorePlan,
  type SqlServerUrlGrant,
} from '../../../src/engines/mssql/url-grant.ts';
import { AzureBlobVault } from '../../../src/vaults/azure-blob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, selfSignedCert, startAzurite, type Azurite } from '../../azure/azurite.ts';
import { parseAll, scriptDomMissing } from '../../tsql/scriptdom.ts';
import { HOSTILE, innerStatements } from '../../tsql/statements.ts';
import { scripted, type Scripted } from './fixtures.ts';

const CONTAINER = 'https://ehrbackups.blob.core.windows.net/sql';
/** A SAS shaped like the service's, with a quote and a bracket that must survive quote doubling. */
const SAS = "sv=2025-01-05&st=2026-01-01T00%3A00%3A00Z&se=2026-01-01T02%3A00%3A00Z&sr=c&sp=rcwdal&sig=AbC%2Bd'e]F%3D";
function fakeGrant(mode: 'read' | 'write', credential = CONTAINER, token = SAS): SqlServerUrlGrant {
  const g = { vault: 'azure', mode, credential, expiresAt: '2026-01-01T02:00:00.000Z', sasKind: 'service' } as SqlServerUrlGrant;
  Object.defineProperty(g, 'token', { value: token, enumerable: false });
  return g;
}
const fakeVault = { blobName: (r: string) => `rubicon/${r}`, blobUrl: (n: string) => `${CONTAINER}/${n}` };

describe('what a SQL Server grant may allow (sp, sr)', () => {
  const sas = (sp: string, sr = 'c') => `sv=2025-01-05&se=2026-12-01T16%3A00%3A00Z&sr=${sr}&sp=${sp}&sig=SECRETSIG`;
  it('a read grant is exactly read + list on a container: anything that writes, deletes or is scoped otherwise is refused, naming the vault and what it carried', () => {
    expect(() => checkSasPermissions(sas('rl'), 'read', 'sqlbak')).not.toThrow();
    expect(() => checkSasPermissions(`?${sas('rl')}`, 'read', 'sqlbak')).not.toThrow();
    for (const sp of ['rwl', 'rdl', 'rcwdal', 'racwdl', 'r', 'l', 'rlx', 'rlt', 'rll']) {
      let err: unknown;
      try {
        checkSasPermissions(sas(sp), 'read', 'sqlbak');
      } catch (e) {
        err = e;
      }
      expect(err, sp).toMatchObject({ code: 'GRANT_FAILED', message: expect.stringContaining(`vault 'sqlbak' gave a read grant for SQL Server with permissions '${sp}'`) });
      expect(String((err as Error).message)).not.toContain('SECRETSIG');
    }
    expect(() => checkSasPermissions(sas('rl', 'b'), 'read', 'sqlbak')).toThrow(/scope 'b'/);
    expect(() => checkSasPermissions('sv=1&sig=x', 'read', 'sqlbak')).toThrow(/permissions ''/);
  });
  it('a write grant stays within r a c w d l and has at least r w l', () => {
    expect(() => checkSasPermissions(sas('racwdl'), 'write', 'sqlbak')).not.toThrow();
    expect(() => checkSasPermissions(sas('rwl'), 'write', 'sqlbak')).not.toThrow();
    expect(() => checkSasPermissions(sas('racwdlx'), 'write', 'sqlbak')).toThrow(/GRANT|permissions 'racwdlx'/);
    expect(() => checkSasPermissions(sas('rw'), 'write', 'sqlbak')).toThrow(/permissions 'rw'/);
  });
});

describe('names, stripes and limits', () => {
  it('the credential is named by the container URL: https, no query, no trailing slash, at most 128 characters', () => {
    expect(sasCredentialName(`${CONTAINER}/`)).toBe(CONTAINER);
    expect(() => sasCredentialName('http://ehrbackups.blob.core.windows.net/sql')).toThrow(/only to https/);
    expect(() => sasCredentialName(`${CONTAINER}?sv=1`)).toThrow(/without a query string/);
    expect(() => sasCredentialName(`${CONTAINER}/folder`)).toThrow(/not the URL of one container/);
    expect(() => sasCredentialName(`https://ehrbackups.blob.core.windows.net/${'c'.repeat(100)}`)).toThrow(/at most 128/);
  });
  it('stripes by size (one per started 100 GB), names them in order, and keeps every URL in the container, without a query, within 259 characters', () => {
    const plan = urlBackupPlan(fakeVault, fakeGrant('write'), 'EHR', 'mssql:EHR:20260101', 250 * 1024 ** 3);
    expect(plan.blobs).toEqual(['rubicon/mssql/mssql_EHR_20260101/stripe-01-of-03.bak', 'rubicon/mssql/mssql_EHR_20260101/stripe-02-of-03.bak', 'rubicon/mssql/mssql_EHR_20260101/stripe-03-of-03.bak']);
    expect(plan.backup.params.map((p) => p.value)).toEqual(plan.urls);
    expect(plan.backup.text).toBe('BACKUP DATABASE [EHR] TO URL = @url1, URL = @url2, URL = @url3 WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10, MAXTRANSFERSIZE = 4194304, BLOCKSIZE = 65536;');
    expect(stripeBlobs('a', 64).at(-1)).toBe('mssql/a/stripe-64-of-64.bak');
    expect(() => stripeBlobs('a', 65)).toThrow(RangeError);
    expect(() => checkDeviceUrls(CONTAINER, [`${CONTAINER}/${'x'.repeat(230)}`])).toThrow(/at most 259/);
    expect(() => checkDeviceUrls(CONTAINER, [`${CONTAINER}/a.bak?${SAS}`])).toThrow(/query string/);
    expect(() => checkDeviceUrls(CONTAINER, ['https://other.blob.core.windows.net/sql/a.bak'])).toThrow(/not inside the container/);
    expect(() => urlBackupPlan(fakeVault, fakeGrant('read'), 'EHR', 'a', 1)).toThrow(/needs a write grant/);
  });
});

const parserMissing = scriptDomMissing();
if (parserMissing && process.env.CI) throw new Error(`url-grant: ${parserMissing}`);

describe.skipIf(parserMissing !== undefined)(`Microsoft's parser${parserMissing ? ` (skipped: ${parserMissing})` : ''}`, () => {
  it('parses every statement and the CREATE/DROP CREDENTIAL the server assembles, with hostile names and a SAS with quotes', async () => {
    const list: { id: string; text: string }[] = [];
    const add = (id: string, stmt: { text: string; params: { name: string; value: unknown }[] }) => {
      list.push({ id, text: stmt.text });
      const params = Object.fromEntries(stmt.params.map((p) => [p.name, String(p.value)]));
      innerStatements(stmt.text, params).forEach((t, i) => list.push({ id: `${id} (inner ${i + 1})`, text: t }));
    };
    const urls = [`${CONTAINER}/rubicon/mssql/a/stripe-01-of-02.bak`, `${CONTAINER}/rubicon/mssql/a/stripe-02-of-02.bak`];
    for (const [i, n] of HOSTILE.entries()) {
      const cred = `https://a.blob.core.windows.net/${n.replace(/[^a-z0-9-]/g, '') || 'c'}${"]'".repeat(i)}`.slice(0, 128);
      add(`createCredential ${i}`, createSasCredentialStatement(fakeGrant('write', cred, `${SAS}${"'])--".repeat(i)}`)));
      add(`dropCredential ${i}`, dropSasCredentialStatement(cred));
      add(`restoreFromUrl ${i}`, restoreFromUrlStatement(n, urls, [{ logicalName: n, physicalPath: 'D:\\t\\x.mdf' }, { logicalName: 'log', physicalPath: 'D:\\t\\x.ldf' }], i % 2 === 0, i % 3 !== 0));
    }
    add('fileListOnlyFromUrl', fileListOnlyFromUrlStatement(urls));
    add('restoreFromUrl no moves', restoreFromUrlStatement('t', urls.slice(0, 1), [], false));
    // The inner statements really are the credential statements, with the SAS as a literal.
    expect(list.find((x) => x.id === 'createCredential 0 (inner 2)')?.text).toBe(`CREATE CREDENTIAL [https://a.blob.core.windows.net/c] WITH IDENTITY = N'SHARED ACCESS SIGNATURE', SECRET = N'${SAS.replaceAll("'", "''")}';`);
    expect(list.find((x) => x.id === 'dropCredential 0 (inner 1)')?.text).toBe('DROP CREDENTIAL [https://a.blob.core.windows.net/c];');
    // A broken one must fail: the parser is really consulted.
    list.push({ id: 'broken', text: "CREATE CREDENTIAL [x WITH IDENTITY = N'SHARED ACCESS SIGNATURE';" });
    const r = await parseAll(list);
    expect(r.failures.map((f) => f.id).sort()).toEqual(['broken', 'broken']);
    expect(r.parsed['130']).toBe(list.length);
    expect(r.parsed['160']).toBe(list.length);
  }, 120_000);
});

describe('on the wire (the engine\'s session against the scripted TDS endpoint)', () => {
  let s: Scripted;
  beforeAll(async () => {
    s = await scripted();
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('the SAS crosses only as the secret parameter of the credential statement: never in a text, never in the log, never in a URL', async () => {
    s.server.on('CREATE CREDENTIAL', {}).on('DROP CREDENTIAL', {}).on('BACKUP DATABASE', { infos: [{ number: 3014, class: 0, message: 'BACKUP DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).' }] });
    s.server.on('RESTORE FILELISTONLY', {}).on('RESTORE DATABASE', {});
    const log: StatementLogEntry[] = [];
    const session = await MssqlSession.connect(s.config, (e) => log.push(e));
    try {
      const write = fakeGrant('write');
      const plan = urlBackupPlan(fakeVault, write, 'EHR', 'mssql:EHR:1', 10 * 1024 ** 3);
      for (const stmt of [plan.credential, plan.backup, plan.drop]) expect((await session.run(stmt)).ok).toBe(true);
      const read = fakeGrant('read', CONTAINER, SAS.replace('sp=rcwdal', 'sp=rl'));
      const restore = urlRestorePlan(read, plan.urls, 'rubicon_proof_EHR');
      for (const stmt of [restore.credential, restore.fileList, restore.restore([{ logicalName: 'EHR', physicalPath: 'D:\\t\\x.mdf' }]), restore.drop]) expect((await session.run(stmt)).ok).toBe(true);
    } finally {
      await session.close();
    }
    const sent = s.server.requests.filter((r) => !r.internal);
    const creds = sent.filter((r) => r.sql.includes('CREATE CREDENTIAL'));
    expect(creds).toHaveLength(2);
    expect(creds.map((r) => r.params.secret)).toEqual([SAS, SAS.replace('sp=rcwdal', 'sp=rl')]);
    expect(creds.every((r) => r.params.name === CONTAINER && r.procedure === 'sp_executesql')).toBe(true);
    for (const r of sent) {
      expect(r.sql).not.toContain('sig=');
      for (const [k, v] of Object.entries(r.params)) if (k !== 'secret') expect(String(v)).not.toContain('sig=');
    }
    const backup = sent.find((r) => r.sql.startsWith('BACKUP DATABASE'))!;
    expect(Object.values(backup.params).every((u) => typeof u === 'string' && u.startsWith(`${CONTAINER}/rubicon/mssql/`) && !u.includes('?'))).toBe(true);
    expect(log.length).toBeGreaterThanOrEqual(7);
    expect(JSON.stringify(log)).not.toContain('sig=');
    expect(log.filter((e) => 'secret' in e.params).map((e) => e.params.secret)).toEqual(['***', '***']);
    // The grant object itself: the token is there to use, but never serialized.
    expect(fakeGrant('write').token).toBe(SAS);
    expect(JSON.stringify(fakeGrant('write'))).not.toContain('sig=');
  }, 60_000);
});

const azurite = requireAzurite();
describe.skipIf(!azurite)(`the credential's SAS against Azurite over HTTPS${azurite ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  let az: Azurite;
  let tmp: string;
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-sqlurl-'));
    az = await startAzurite({ tls: selfSignedCert(tmp) });
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('a write grant lets SQL Server stage and commit its stripes, list and clean up; a read grant reads and lists and nothing more', async () => {
    const v = await new AzureBlobVault(
      { name: 'sqlbak', kind: 'azure-blob', accountUrl: az.accountUrl, container: `sql-${randomBytes(3).toString('hex')}`, prefix: 'rubicon', credential: { kind: 'shared-key', accountName: AZURITE_ACCOUNT, keyEnv: 'K' }, concurrency: 2, blockSizeMiB: 1, retentionDays: 30 },
      { env: { K: AZURITE_KEY } },
    ).open();
    const write = await issueSqlServerUrlGrant(v, 'write', 10 * 60 * 1000);
    expect(write.credential).toBe(v.container.url);
    expect(Object.keys(write)).not.toContain('token');
    expect(JSON.stringify(write)).not.toContain(write.token);
    expect([...new URLSearchParams(write.token).get('sp')!].sort().join('')).toBe('acdlrw');
    const plan = urlBackupPlan(v, write, 'EHR', 'mssql:EHR:1', 1000);
    // What SQL Server does with the credential: Put Block with MAXTRANSFERSIZE-sized blocks, then Put Block List, on each stripe URL.
    const stripe = new BlockBlobClient(`${plan.urls[0]}?${write.token}`);
    const id = Buffer.from('000001').toString('base64');
    await stripe.stageBlock(id, Buffer.from('TAPE header…'), 12);
    await stripe.commitBlockList([id]);
    const wc = new ContainerClient(`${write.credential}?${write.token}`);
    const listed: string[] = [];
    for await (const b of wc.listBlobsFlat({ prefix: 'rubicon/mssql/' })) listed.push(b.name);
    expect(listed).toEqual(plan.blobs);
    // A failed backup's leftover is removed by SQL Server: the write grant allows delete (keep these stripes in their own container).
    const leftover = new BlockBlobClient(`${write.credential}/rubicon/mssql/failed.bak?${write.token}`);
    await leftover.upload('x', 1);
    await leftover.delete();

    const read = await issueSqlServerUrlGrant(v, 'read', 10 * 60 * 1000);
    expect([...new URLSearchParams(read.token).get('sp')!].sort().join('')).toBe('lr');
    const rc = new ContainerClient(`${read.credential}?${read.token}`);
    expect((await rc.getBlobClient(plan.blobs[0]!).downloadToBuffer()).toString()).toBe('TAPE header…');
    const seen: string[] = [];
    for await (const b of rc.listBlobsFlat({ prefix: 'rubicon/mssql/' })) seen.push(b.name);
    expect(seen).toEqual(plan.blobs);
    await expect(rc.getBlockBlobClient(plan.blobs[0]!).upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });
    await expect(rc.getBlobClient(plan.blobs[0]!).delete()).rejects.toMatchObject({ statusCode: 403 });
  }, 60_000);
});
