/**
 * mssql-native-url wired into the SQL Server engine, at the protocol level:
 * the real mssql/tedious client against the scripted TDS endpoint playing
 * the target's, the proving ground's and the landing SQL Server, and the
 * stripes in Azurite over HTTPS. When the scripted endpoint "runs" BACKUP
 * … TO URL it puts a blob at every @urlN into Azurite (as SQL Server does
 * through its credential), so the engine's read-back of each stripe (size,
 * ETag) is the vault's real answer. Without the wiring (method unknown,
 * restore FROM DISK of a file the artifact does not have) every test fails.
 *
 * Independent checks: the statement texts are Microsoft's own forms
 * (test/tsql enumerates them through ScriptDom: "restoreDatabase from URL",
 * "headerOnly from URL"); the SAS is asserted absent from every log line,
 * event, statement text and the sidecar.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path, { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Artifact, Item, Manifest } from '../../../src/core/types.ts';
import { parseSidecar, SIDECAR_NAME, testDatabaseName, type Sidecar } from '../../../src/engines/mssql/artifact.ts';
import { createMssqlEngine, type MssqlEngineOptions } from '../../../src/engines/mssql/engine.ts';
import type { CapturedFiles, EngineContext } from '../../../src/engines/engine.ts';
import type { UrlGrantEvent } from '../../../src/engines/mssql/url-grant.ts';
import { AzureBlobVault } from '../../../src/vaults/azure-blob.ts';
import { encodeManifest, manifestHashOf } from '../../../src/files/manifest.ts';
import { gradeCopies } from '../../../src/run/prover.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, selfSignedCert, startAzurite, type Azurite } from '../../azure/azurite.ts';
import type { TdsReply, TdsRequest, TdsServer } from '../../tds/server.ts';
import {
  BACKUP_SET_GUID,
  checkDbClock,
  columnsReply,
  DB_FEATURES,
  databaseFeaturesReply,
  databasesReply,
  fileListOnly,
  headerOnly,
  one,
  ok,
  ORPHANS,
  orphansReply,
  restoreOk,
  rs,
  scripted,
  serverInfoReply,
  tableHashOf,
  tableHashReply,
  targetServerReply,
  tempHost,
  VERSION_READ,
  type Scripted,
} from './fixtures.ts';

const ARTIFACT_ID = 'run1.capture.database:mssql:EHR.mssql-native-url';
const TEST_DB = testDatabaseName('EHR', ARTIFACT_ID);
const STRIPE_BYTES = 4096 + 17;
/** The credential drop alone (CREATE CREDENTIAL's text starts with the same drop of an earlier one). */
const isDrop = (sql: string): boolean => sql.includes('DECLARE @drop') && !sql.includes('CREATE CREDENTIAL');

const azurite = requireAzurite();
describe.skipIf(!azurite)(`mssql-native-url against Azurite over HTTPS${azurite ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  let az: Azurite;
  let tmp: string;
  let vault: AzureBlobVault;
  let target: Scripted;
  let pg: Scripted;
  let h: Awaited<ReturnType<typeof tempHost>>;
  let events: string[];
  /** What the engine handed to the journal: grant.issued / grant.revoked. */
  let grants: UrlGrantEvent[];
  /** Every SAS the scripted servers received as @secret: must appear nowhere else. */
  let secrets: string[];

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-mssqlurl-'));
    az = await startAzurite({ tls: selfSignedCert(tmp) });
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  beforeEach(async () => {
    vault = await new AzureBlobVault(
      { name: 'sqlbak', kind: 'azure-blob', accountUrl: az.accountUrl, container: `sql-${randomBytes(4).toString('hex')}`, prefix: 'rubicon', credential: { kind: 'shared-key', accountName: AZURITE_ACCOUNT, keyEnv: 'K' }, concurrency: 2, blockSizeMiB: 1, retentionDays: 30 },
      { env: { K: AZURITE_KEY } },
    ).open();
    target = await scripted();
    pg = await scripted();
    h = await tempHost();
    events = [];
    grants = [];
    secrets = [];
    for (const s of [target, pg]) {
      s.server.on('CREATE CREDENTIAL', (req: TdsRequest) => {
        secrets.push(String(req.params.secret));
        return ok;
      });
      s.server.on('DROP CREDENTIAL', ok);
    }
  });
  afterEach(async () => {
    await target.stop();
    await pg.stop();
    await h.dispose();
  });

  const item: Item = { id: 'database:mssql:EHR', kind: 'database', name: 'EHR', declared: true, discovered: true, engine: 'mssql', location: '', facts: {}, why: [], methods: [] };

  function engine(over: Partial<MssqlEngineOptions> = {}): ReturnType<typeof createMssqlEngine> {
    return createMssqlEngine({
      connection: target.config,
      provingGround: pg.config,
      backupDirectory: '/var/opt/mssql/backup',
      backupDirectoryOnHost: 'backup',
      onStatement: (e) => events.push(`statement: ${JSON.stringify(e)}`),
      log: (lvl, m) => events.push(`${lvl}: ${m}`),
      onGrant: (e) => {
        grants.push(e);
        events.push(`journal: ${JSON.stringify(e)}`);
      },
      backupToUrl: { vault: async () => vault, ttlMs: 30 * 60_000 },
      ...over,
    });
  }

  /** The target's SQL Server: BACKUP … TO URL writes each stripe into Azurite (unless `skip` says which not to). */
  function target_(server: TdsServer, o: { skip?: number; blocks?: boolean } = {}): void {
    server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3'));
    server.on(/FROM sys\.databases AS d\nLEFT JOIN/, databasesReply([{ name: 'EHR' }]));
    server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner', trustworthy: true }));
    server.on(/bs\.backup_set_uuid = @guid/, one(rs([['backup_set_uuid', 'uniqueidentifier']], [])));
    server.on(/^BACKUP DATABASE/, async (req: TdsRequest): Promise<TdsReply> => {
      const urls = Object.entries(req.params).filter(([k]) => /^url\d+$/.test(k)).map(([, v]) => String(v));
      for (const [i, u] of urls.entries()) {
        if (i === o.skip) continue;
        const blob = decodeURIComponent(new URL(u).pathname.split('/').slice(3).join('/'));
        const data = Buffer.alloc(STRIPE_BYTES, i + 1);
        if (o.blocks) await putLikeSqlServer(blob, data);
        else await vault.container.getBlockBlobClient(blob).upload(data, STRIPE_BYTES);
      }
      return { infos: [{ number: 3014, class: 0, message: 'BACKUP DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).' }] };
    });
    server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
  }

  /** As SQL Server writes a stripe: Put Block, then Put Block List without x-ms-blob-content-md5, so the service keeps no Content-MD5. */
  async function putLikeSqlServer(blob: string, data: Buffer): Promise<void> {
    const b = vault.container.getBlockBlobClient(blob);
    const id = Buffer.from('block-000001').toString('base64');
    await b.stageBlock(id, data, data.length);
    await b.commitBlockList([id]);
  }

  async function capture(e = engine()): Promise<{ c: CapturedFiles; sidecar: Sidecar }> {
    const ctx: EngineContext = { host: h.host, workDir: join(h.root, 'capture', encodeURIComponent(ARTIFACT_ID)) };
    mkdirSync(ctx.workDir, { recursive: true });
    const c = await e.capture(ctx, item, 'mssql-native-url', {});
    const f = c.files.find((x) => x.name === SIDECAR_NAME)!;
    const text = await readFile(f.path, 'utf8');
    return { c, sidecar: parseSidecar(text, 'test') };
  }

  /** The SAS (any of them) appears in no event, log line, statement text or non-secret parameter, and in no file given. */
  function noSecretLeft(...texts: string[]): void {
    expect(secrets.length).toBeGreaterThan(0);
    const all = [...events, ...texts, ...[target, pg].flatMap((s) => s.server.requests.map((r) => JSON.stringify({ sql: r.sql, params: { ...r.params, secret: undefined } })))].join('\n');
    for (const sas of secrets) {
      expect(sas).toMatch(/sig=/);
      expect(all).not.toContain(sas);
      expect(all).not.toContain(new URLSearchParams(sas).get('sig')!);
    }
  }

  it('capture: credential, BACKUP TO URL, HEADERONLY FROM URL, credential dropped; each stripe read back from the vault; the artifact is the sidecar naming the stripes', async () => {
    target_(target.server);
    const { c, sidecar } = await capture();

    const sent = target.server.statements();
    const at = (re: RegExp): number => sent.findIndex((s) => re.test(s));
    expect(at(/CREATE CREDENTIAL/)).toBeGreaterThanOrEqual(0);
    expect(at(/CREATE CREDENTIAL/)).toBeLessThan(at(/^BACKUP DATABASE/));
    expect(at(/^BACKUP DATABASE/)).toBeLessThan(at(/^RESTORE HEADERONLY/));
    expect(at(/^RESTORE HEADERONLY/)).toBeLessThan(sent.findIndex(isDrop));
    const [backup] = target.server.find(/^BACKUP DATABASE/);
    expect(backup?.sql).toBe('BACKUP DATABASE [EHR] TO URL = @url1 WITH COPY_ONLY, CHECKSUM, COMPRESSION, FORMAT, INIT, STATS = 10, MAXTRANSFERSIZE = 4194304, BLOCKSIZE = 65536;');
    const url = String(backup?.params.url1);
    expect(url).toBe(`${vault.container.url}/rubicon/mssql/${ARTIFACT_ID.replace(/[^A-Za-z0-9._-]+/g, '_')}/stripe-01-of-01.bak`);
    expect(target.server.find(/^RESTORE HEADERONLY/)[0]?.sql).toBe('RESTORE HEADERONLY FROM URL = @file1;');
    expect(target.server.find(/^RESTORE HEADERONLY/)[0]?.params.file1).toBe(url);
    // the write grant: r c w d a l (SQL Server's backup deletes what a failed backup left), credential named by the container
    const cred = target.server.requests.find((r) => r.sql.includes('CREATE CREDENTIAL'))!;
    expect(cred.params.name).toBe(vault.container.url);
    expect([...new URLSearchParams(String(cred.params.secret)).get('sp')!].sort().join('')).toBe('acdlrw');
    expect(target.server.requests.filter((r) => isDrop(r.sql)).map((r) => r.params.name)).toEqual([vault.container.url]);

    expect(c.files.map((f) => f.name)).toEqual([SIDECAR_NAME]);
    expect(c.tool).toContain('BACKUP DATABASE TO URL');
    expect(sidecar.method).toBe('mssql-native-url');
    expect(sidecar.steps).toMatchObject([{ kind: 'full', position: 1, backupSetGuid: BACKUP_SET_GUID, hasBackupChecksums: true, files: [`rubicon/mssql/${ARTIFACT_ID.replace(/[^A-Za-z0-9._-]+/g, '_')}/stripe-01-of-01.bak`] }]);
    const props = await vault.container.getBlobClient(sidecar.steps[0]!.files[0]!).getProperties();
    expect(sidecar.url).toEqual({ vault: 'sqlbak', container: vault.container.url, stripes: [{ blob: sidecar.steps[0]!.files[0], url, bytes: STRIPE_BYTES, etag: props.etag, ...(props.contentMD5 ? { contentMd5: Buffer.from(props.contentMD5).toString('base64') } : {}) }] });
    expect(events.filter((e) => /grant of vault 'sqlbak'/.test(e))).toEqual([
      expect.stringMatching(/^info: EHR: write grant of vault 'sqlbak' issued to SQL Server .* expires /),
      expect.stringMatching(/^info: EHR: write grant of vault 'sqlbak' revoked .*credential .* dropped/),
    ]);
    // Journaled like every grant: issued before the credential exists, revoked once it is dropped; the same id.
    expect(grants).toEqual([
      { type: 'grant.issued', grant: { id: expect.stringMatching(/^mssql-url-[0-9a-f]{16}$/), vault: 'sqlbak', machine: expect.stringMatching(/^SQL Server /), mode: 'write', expiresAt: expect.any(String), dir: vault.container.url, holder: 'sql-server-credential' } },
      { type: 'grant.revoked', grantIds: [(grants[0] as Extract<UrlGrantEvent, { type: 'grant.issued' }>).grant.id] },
    ]);
    const order = events.filter((e) => e.startsWith('journal: ') || e.includes('CREATE CREDENTIAL') || (e.includes('DECLARE @drop') && !e.includes('CREATE CREDENTIAL')));
    expect(order.map((e) => (e.startsWith('journal: ') ? JSON.parse(e.slice(9)).type : e.includes('CREATE CREDENTIAL') ? 'create' : 'drop'))).toEqual(['grant.issued', 'create', 'drop', 'grant.revoked']);
    noSecretLeft(JSON.stringify(c), JSON.stringify(sidecar));
  }, 60_000);

  it('a stripe SQL Server did not leave in the container fails the capture, naming the blob and the vault; the credential is dropped all the same', async () => {
    target_(target.server, { skip: 0 });
    await expect(capture()).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringMatching(/stripe rubicon\/mssql\/.*stripe-01-of-01\.bak is not in vault 'sqlbak'/) });
    expect(target.server.statements().filter(isDrop)).toHaveLength(1);
  }, 60_000);

  it('a failed BACKUP TO URL still drops the credential', async () => {
    target.server.on(/^BACKUP DATABASE/, { errors: [{ number: 3201, class: 16, message: 'Cannot open backup device. Operating system error 50(The request is not supported.).' }] });
    target_(target.server);
    await expect(capture()).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('Operating system error 50') });
    const sent = target.server.statements();
    expect(sent.findIndex(isDrop)).toBeGreaterThan(sent.findIndex((s) => s.startsWith('BACKUP DATABASE')));
    expect(target.server.find(/^RESTORE HEADERONLY/)).toEqual([]);
  }, 60_000);

  /** The proving ground (or the landing server): restores, CHECKDB, fingerprints. */
  function restoringServer(server: TdsServer, db: string): void {
    server.on(/InstanceDefaultDataPath/, targetServerReply());
    server.on(/^IF DB_ID\(@database\) IS NOT NULL/, ok);
    server.on(/^RESTORE HEADERONLY/, headerOnly([{ databaseName: 'EHR' }]));
    server.on(/^RESTORE FILELISTONLY/, fileListOnly([
      { logical: 'EHR', physical: 'E:\\SQLData\\EHR.mdf', type: 'D', fileId: 1 },
      { logical: 'EHR_log', physical: 'F:\\SQLLog\\EHR_log.ldf', type: 'L', fileId: 2 },
    ]));
    server.on(/^RESTORE DATABASE/, restoreOk(db));
    server.on(/^DBCC CHECKDB/, ok);
    checkDbClock(server);
    server.on(VERSION_READ, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar']], [{ product_version: '16.0.4135.4', edition: 'Developer Edition (64-bit)' }])));
    server.on(/FROM \[[^\]]+\]\.sys\.tables/, columnsReply([{ table: 'Patients', column: 'id', base: 'int' }]));
    server.on(tableHashOf('Patients'), tableHashReply(1200));
    server.on(DB_FEATURES, databaseFeaturesReply({ owner: 'ehr_owner', trustworthy: true }));
    server.on(ORPHANS, orphansReply());
    server.on(/user_access_desc/, one(rs([['state_desc', 'nvarchar'], ['user_access_desc', 'nvarchar'], ['is_read_only', 'int'], ['user_objects', 'int']], [{ state_desc: 'ONLINE', user_access_desc: 'MULTI_USER', is_read_only: 0, user_objects: 42 }])));
  }

  function handOver(c: CapturedFiles): { manifest: Manifest; files: string[]; artifact: Artifact } {
    return {
      manifest: { version: 1, artifactId: ARTIFACT_ID, itemId: item.id, method: 'mssql-native-url', format: 'mssql-bak', entries: c.files.map((f) => ({ path: f.name, size: 1, mtimeMs: 0, mode: 0o644, sha256: '0'.repeat(64) })) },
      files: c.files.map((f) => f.path),
      artifact: { id: ARTIFACT_ID, runId: 'run1', itemId: item.id, method: 'mssql-native-url', independenceGroup: 'mssql-native-full', phase: 'capture', origin: 'rubicon', manifestHash: '0'.repeat(64), fileCount: 1, bytes: 1, provenance: { method: 'mssql-native-url', tool: 't', host: 't', startedAt: '', finishedAt: '' } },
    };
  }

  it('prove: the stripes read back from the vault, a read grant as credential, RESTORE … FROM URL under the test name, CHECKDB, fingerprint, credential dropped', async () => {
    target_(target.server);
    const { c, sidecar } = await capture();
    restoringServer(pg.server, TEST_DB);
    pg.server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: TEST_DB, state_desc: 'ONLINE' }])));
    const { manifest, files, artifact } = handOver(c);
    const ctx: EngineContext = { host: h.host, workDir: join(h.root, 'prove') };
    const r = await engine().prove(ctx, artifact, manifest, files);

    expect(r.checks.map((x) => `${x.name}:${x.status}`)).toEqual(['url-stripes:passed', 'version:passed', 'certificates:passed', 'restore:passed', 'integrity:passed', 'fingerprint-source:skipped', 'database-settings:passed', 'smoke:passed', 'cleanup:passed']);
    expect(r.checks[0]?.detail).toMatch(/1 stripe\(s\), 4113 bytes, read back from vault 'sqlbak'.*read grant .*r l.*revoked \(credential .* dropped/);
    const url = sidecar.url!.stripes[0]!.url;
    const [restore] = pg.server.find(/^RESTORE DATABASE/);
    expect(restore?.sql).toBe(`RESTORE DATABASE [${TEST_DB}] FROM URL = @file1 WITH FILE = @position, MOVE @logical1 TO @physical1, MOVE @logical2 TO @physical2, CHECKSUM, RECOVERY, STATS = 10;`);
    expect(restore?.params.file1).toBe(url);
    expect(pg.server.find(/^RESTORE FILELISTONLY/)[0]?.sql).toBe('RESTORE FILELISTONLY FROM URL = @file1 WITH FILE = @position;');
    // the read grant: r l only; created before the restore, dropped after it
    const cred = pg.server.requests.find((x) => x.sql.includes('CREATE CREDENTIAL'))!;
    expect([...new URLSearchParams(String(cred.params.secret)).get('sp')!].sort().join('')).toBe('lr');
    const sent = pg.server.statements();
    expect(sent.findIndex((s) => s.includes('CREATE CREDENTIAL'))).toBeLessThan(sent.findIndex((s) => s.startsWith('RESTORE HEADERONLY')));
    expect(sent.findLastIndex(isDrop)).toBeGreaterThan(sent.findIndex((s) => s.startsWith('RESTORE DATABASE')));
    expect(target.server.find(/^RESTORE DATABASE|DBCC/)).toEqual([]);
    // the read grant journaled as held by the proving ground's SQL Server, and revoked
    const read = grants.slice(2);
    expect(read).toEqual([
      { type: 'grant.issued', grant: { id: expect.stringMatching(/^mssql-url-/), vault: 'sqlbak', machine: expect.stringMatching(/^proving ground SQL Server /), mode: 'read', expiresAt: expect.any(String), dir: vault.container.url, holder: 'sql-server-credential' } },
      { type: 'grant.revoked', grantIds: [(read[0] as Extract<UrlGrantEvent, { type: 'grant.issued' }>).grant.id] },
    ]);
    noSecretLeft(JSON.stringify(r));
  }, 60_000);

  it('prove: a stripe rewritten in the container after capture is refused before any RESTORE, naming the blob', async () => {
    target_(target.server);
    const { c, sidecar } = await capture();
    await vault.container.getBlockBlobClient(sidecar.url!.stripes[0]!.blob).upload(Buffer.alloc(100, 9), 100);
    restoringServer(pg.server, TEST_DB);
    const { manifest, files, artifact } = handOver(c);
    const r = await engine().prove({ host: h.host, workDir: join(h.root, 'prove') }, artifact, manifest, files);
    expect(r.checks).toEqual([expect.objectContaining({ name: 'url-stripes', status: 'failed', detail: expect.stringMatching(/stripe-01-of-01\.bak: 100 bytes, 4113 at capture/) })]);
    expect(pg.server.find(/^RESTORE|CREATE CREDENTIAL/)).toEqual([]);
  }, 60_000);

  it('landing: RESTORE DATABASE [EHR] FROM URL through a read grant, CHECKDB, owner and TRUSTWORTHY; the credential dropped', async () => {
    target_(target.server);
    const { c, sidecar } = await capture();
    const landing = await scripted();
    try {
      landing.server.on('CREATE CREDENTIAL', (req: TdsRequest) => {
        secrets.push(String(req.params.secret));
        return ok;
      });
      landing.server.on('DROP CREDENTIAL', ok);
      let restored = false;
      landing.server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, () => (restored ? one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [{ name: 'EHR', state_desc: 'ONLINE' }])) : one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], []))));
      landing.server.on(/^RESTORE DATABASE/, () => {
        restored = true;
        return restoreOk('EHR');
      });
      restoringServer(landing.server, 'EHR');
      landing.server.on(/ALTER AUTHORIZATION|SET TRUSTWORTHY ON/, ok);
      const { manifest, files } = handOver(c);
      await engine({ landing: landing.config, landingFiles: { serverDirectory: '/var/opt/mssql/backup', hostDirectory: 'backup' } }).restore({ host: h.host, workDir: join(h.root, 'land'), landing: true }, item, manifest, files);
      const [restore] = landing.server.find(/^RESTORE DATABASE/);
      expect(restore?.sql).toMatch(/^RESTORE DATABASE \[EHR\] FROM URL = @file1 WITH FILE = @position, MOVE/);
      expect(restore?.params.file1).toBe(sidecar.url!.stripes[0]!.url);
      const sent = landing.server.statements();
      expect(sent.findIndex((s) => s.includes('CREATE CREDENTIAL'))).toBeLessThan(sent.findIndex((s) => s.startsWith('RESTORE DATABASE')));
      expect(sent.findLastIndex(isDrop)).toBeGreaterThan(sent.findIndex((s) => s.startsWith('DBCC CHECKDB')));
      expect(events.some((e) => /database:mssql:EHR: read grant of vault 'sqlbak' revoked/.test(e))).toBe(true);
      expect(grants.slice(2).map((e) => (e.type === 'grant.issued' ? `issued ${e.grant.mode} to ${e.grant.machine}` : 'revoked'))).toEqual([expect.stringMatching(/^issued read to landing SQL Server /), 'revoked']);
      noSecretLeft(...landing.server.requests.map((r) => JSON.stringify({ sql: r.sql, params: { ...r.params, secret: undefined } })));
    } finally {
      await landing.stop();
    }
  }, 60_000);

  it('without backupToUrl the method is refused in plain words', async () => {
    target_(target.server);
    await expect(capture(engine({ backupToUrl: undefined } as Partial<MssqlEngineOptions>))).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('no azure-blob vault is named'), hint: expect.stringContaining('engines.mssql.backupToUrl') });
  }, 60_000);

  it('a stripe SQL Server left without Content-MD5 gets one at capture (read once, set If-Match); the proof and the copy grading then catch a same-size rewrite by the service\'s MD5, naming artifact, vault and blob', async () => {
    target_(target.server, { blocks: true });
    const { c, sidecar } = await capture();
    const stripe = sidecar.url!.stripes[0]!;
    const data = Buffer.alloc(STRIPE_BYTES, 1);
    expect(stripe.contentMd5).toBe(createHash('md5').update(data).digest('base64'));
    const props = await vault.container.getBlobClient(stripe.blob).getProperties();
    expect(Buffer.from(props.contentMD5!).toString('base64')).toBe(stripe.contentMd5);
    expect(props.etag).toBe(stripe.etag);

    // The artifact's copy in the vault: the sidecar as its object, the manifest naming it (as the capture stores it).
    const sidecarBytes = await readFile(c.files.find((f) => f.name === SIDECAR_NAME)!.path);
    const sha = await vault.putBytes(sidecarBytes);
    const manifest: Manifest = { version: 1, artifactId: ARTIFACT_ID, itemId: item.id, method: 'mssql-native-url', format: 'mssql-bak', entries: [{ path: SIDECAR_NAME, size: sidecarBytes.length, mtimeMs: 0, mode: 0o644, sha256: sha }] };
    const manifestHash = await vault.putBytes(encodeManifest(manifest));
    expect(manifestHash).toBe(manifestHashOf(manifest));
    const artifact = { ...handOver(c).artifact, manifestHash, vaults: ['sqlbak'] };
    const grade = async () => (await gradeCopies({ vaults: [vault], knownCopies: [], now: () => new Date() } as unknown as Parameters<typeof gradeCopies>[0], artifact)).graded.map((x) => ({ status: x.status, detail: x.detail }));
    expect(await grade()).toEqual([{ status: 'ok', detail: undefined }]);

    // Rewritten after capture, same size, the way SQL Server writes (no MD5 of its own): the service's MD5 is gone.
    await putLikeSqlServer(stripe.blob, Buffer.alloc(STRIPE_BYTES, 7));
    const where = `blob ${vault.container.containerName}/${stripe.blob} in vault 'sqlbak'`;
    expect(await grade()).toEqual([{ status: 'checksum-mismatch', detail: `'${ARTIFACT_ID}': ${where}: was altered after upload: the service reports Content-MD5 (none), ${stripe.contentMd5} at capture` }]);
    // Rewritten by a Put Blob, same size: the service computes a new MD5, not the recorded one.
    await vault.container.getBlockBlobClient(stripe.blob).upload(Buffer.alloc(STRIPE_BYTES, 8), STRIPE_BYTES);
    const other = createHash('md5').update(Buffer.alloc(STRIPE_BYTES, 8)).digest('base64');
    expect(await grade()).toEqual([{ status: 'checksum-mismatch', detail: `'${ARTIFACT_ID}': ${where}: was altered after upload: the service reports Content-MD5 ${other}, ${stripe.contentMd5} at capture` }]);
    // And the proof refuses it before any RESTORE, naming the blob.
    restoringServer(pg.server, TEST_DB);
    const h2 = handOver(c);
    const r = await engine().prove({ host: h.host, workDir: join(h.root, 'prove') }, h2.artifact, h2.manifest, h2.files);
    expect(r.checks).toEqual([expect.objectContaining({ name: 'url-stripes', status: 'failed', detail: expect.stringContaining(`${stripe.blob}: was altered after upload: the service reports Content-MD5 ${other}`) })]);
    expect(pg.server.find(/^RESTORE|CREATE CREDENTIAL/)).toEqual([]);
    // Gone: missing, named.
    await vault.container.getBlobClient(stripe.blob).delete();
    expect(await grade()).toEqual([{ status: 'missing', detail: `'${ARTIFACT_ID}': ${where} is missing` }]);
  }, 60_000);

  it('a read grant that could write or delete is refused before SQL Server sees it, for the proof and for the landing', async () => {
    target_(target.server);
    const { c } = await capture();
    // The vault hands out a container SAS with r c w d a l where r l was asked (a misconfigured or altered vault).
    const real = vault.sas.bind(vault);
    vault.sas = (mode, ttl, blob, o) => real(mode === 'read' ? 'write' : mode, ttl, blob, mode === 'read' ? { delete: true } : o);
    restoringServer(pg.server, TEST_DB);
    const { manifest, files, artifact } = handOver(c);
    const r = await engine().prove({ host: h.host, workDir: join(h.root, 'prove') }, artifact, manifest, files);
    expect(r.checks).toEqual([expect.objectContaining({ name: 'url-stripes', status: 'failed', detail: expect.stringMatching(/vault 'sqlbak' gave a read grant for SQL Server with permissions '[a-z]*d[a-z]*'.*exactly 'rl'/) })]);
    expect(pg.server.find(/CREATE CREDENTIAL|^RESTORE/)).toEqual([]);
    const landing = await scripted();
    try {
      landing.server.on(/FROM sys\.databases AS d WHERE d\.name = @database;$/, one(rs([['name', 'nvarchar'], ['state_desc', 'nvarchar']], [])));
      restoringServer(landing.server, 'EHR');
      await expect(engine({ landing: landing.config, landingFiles: { serverDirectory: '/var/opt/mssql/backup', hostDirectory: 'backup' } }).restore({ host: h.host, workDir: join(h.root, 'land'), landing: true }, item, manifest, files)).rejects.toMatchObject({ message: expect.stringContaining("exactly 'rl'") });
      expect(landing.server.find(/CREATE CREDENTIAL|^RESTORE DATABASE/)).toEqual([]);
    } finally {
      await landing.stop();
    }
    // No grant was journaled as issued for the refused ones (only the capture's write grant and its revocation).
    expect(grants.map((g) => (g.type === 'grant.issued' ? g.grant.mode : 'revoked'))).toEqual(['write', 'revoked']);
  }, 60_000);

  it('a stripe whose Content-MD5 the service will not set (409, an immutable blob) is recorded without one, said in a warning, and graded by size and ETag', async () => {
    target_(target.server, { blocks: true });
    const getBlobClient = vault.container.getBlobClient.bind(vault.container);
    vault.container.getBlobClient = (name: string) => {
      const c = getBlobClient(name);
      c.setHTTPHeaders = async () => {
        throw Object.assign(new Error('This operation is not permitted as the blob is immutable due to a policy.'), { statusCode: 409, details: { errorCode: 'BlobImmutableDueToPolicy' } });
      };
      return c;
    };
    const { sidecar } = await capture();
    const stripe = sidecar.url!.stripes[0]!;
    expect(stripe.contentMd5).toBeUndefined();
    expect(stripe.etag).toEqual(expect.any(String));
    expect(events.filter((e) => e.startsWith('warn: '))).toEqual([expect.stringMatching(/stripe .*stripe-01-of-01\.bak in vault 'sqlbak' has no Content-MD5 and the service refused to set its Content-MD5 \(HTTP 409 BlobImmutableDueToPolicy\): it is checked by size and ETag only/)]);
  }, 60_000);
});
