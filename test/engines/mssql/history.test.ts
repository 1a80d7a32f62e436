/**
 * msdb backup history carried "where wanted" (engines.mssql.carryBackupHistory):
 * its own item, captured as evidence (backup-history.json, the documented
 * columns of backupmediaset, backupmediafamily, backupset and backupfile),
 * proven whole when read back from the vault, reported at landing and never
 * inserted into the rebuilt msdb (history.ts says why), its drift the set
 * GUIDs read again. Protocol level against the scripted TDS endpoint; the
 * statement itself is parsed by ScriptDom in tsql-parse.test.ts.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Artifact, Item, Manifest } from '../../../src/core/types.ts';
import type { EngineContext } from '../../../src/engines/engine.ts';
import { toItems, type InstanceRows } from '../../../src/engines/mssql/discover.ts';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { HISTORY_FILE, judgeBackupHistory } from '../../../src/engines/mssql/history.ts';
import { backupHistoryEvidenceStatement } from '../../../src/engines/mssql/sql.ts';
import type { TdsReply } from '../../tds/server.ts';
import { rs, scripted, serverInfoReply, tempHost, type Scripted } from './fixtures.ts';

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

const ITEM: Item = { id: 'instance-object:mssql:backup-history:EHR-SQL01', kind: 'instance-object', name: 'msdb backup history', declared: false, discovered: true, engine: 'mssql', location: 'mssql://EHR-SQL01/backup-history', facts: {}, why: [], methods: ['instance-objects'] };
const engine = () => createMssqlEngine({ connection: target.config, provingGround: pg.config, landing: target.config, backupDirectory: '/var/opt/mssql/backup', carryBackupHistory: true });

/** A 23-digit LSN: more than a double holds exactly (numeric(25,0) arrives as text). */
const LSN = '12345678901234567890123';
const FULL_GUID = '3F2504E0-4F89-41D3-9A0C-0305E82C3301';
const LOG_GUID = '7C9E6679-7425-40DE-944B-E07FC1F90AE7';

/** backupHistoryEvidenceStatement's four result sets, with the columns and types msdb documents. */
function historyReply(sets: { guid: string; id: number; type: string; finish: string }[]): TdsReply {
  return {
    resultSets: [
      rs([['media_set_id', 'int'], ['media_uuid', 'nvarchar'], ['media_family_count', 'int'], ['name', 'nvarchar'], ['software_name', 'nvarchar'], ['mirror_count', 'int'], ['is_compressed', 'int'], ['is_encrypted', 'int']],
        sets.map((s) => ({ media_set_id: s.id, media_uuid: `AAAAAAAA-0000-0000-0000-00000000000${s.id}`, media_family_count: 1, name: null, software_name: 'Microsoft SQL Server', mirror_count: 1, is_compressed: 1, is_encrypted: 0 }))),
      rs([['media_set_id', 'int'], ['family_sequence_number', 'int'], ['mirror', 'int'], ['physical_device_name', 'nvarchar'], ['device_type', 'int']],
        sets.map((s) => ({ media_set_id: s.id, family_sequence_number: 1, mirror: 0, physical_device_name: `E:\\Backup\\EHR_${s.id}.${s.type === 'L' ? 'trn' : 'bak'}`, device_type: 2 }))),
      rs([['backup_set_id', 'int'], ['backup_set_uuid', 'nvarchar'], ['media_set_id', 'int'], ['position', 'int'], ['backup_start_date', 'nvarchar'], ['backup_finish_date', 'nvarchar'], ['type', 'nvarchar'], ['database_name', 'nvarchar'], ['first_lsn', 'nvarchar'], ['last_lsn', 'nvarchar'], ['is_copy_only', 'int'], ['has_backup_checksums', 'int'], ['backup_size', 'nvarchar']],
        sets.map((s) => ({ backup_set_id: s.id, backup_set_uuid: s.guid, media_set_id: s.id, position: 1, backup_start_date: s.finish, backup_finish_date: s.finish, type: s.type, database_name: 'EHR', first_lsn: LSN, last_lsn: LSN, is_copy_only: 0, has_backup_checksums: 1, backup_size: '98765432109876' }))),
      rs([['backup_set_id', 'int'], ['file_number', 'int'], ['file_type', 'nvarchar'], ['logical_name', 'nvarchar'], ['physical_name', 'nvarchar'], ['is_present', 'int']],
        sets.flatMap((s) => [{ backup_set_id: s.id, file_number: 1, file_type: 'D', logical_name: 'EHR', physical_name: 'E:\\SQLData\\EHR.mdf', is_present: 1 }])),
    ],
  };
}
const TWO = [
  { guid: FULL_GUID, id: 41, type: 'D', finish: '2026-11-30T01:12:09.000' },
  { guid: LOG_GUID, id: 42, type: 'L', finish: '2026-11-30T01:27:01.000' },
];

/** Captures the item and hands the file over as a vault would. */
async function captured(): Promise<{ manifest: Manifest; files: string[] }> {
  const c = await engine().capture(ctx, ITEM, 'instance-objects', {});
  const dir = join(h.root, 'fetched');
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
  expect(c.format).toBe('mssql-backup-history');
  return { manifest: { version: 1, artifactId: 'a1', itemId: ITEM.id, method: 'instance-objects', format: c.format, entries }, files };
}
const ARTIFACT = { id: 'a1', itemId: ITEM.id, method: 'instance-objects' } as unknown as Artifact;

describe('msdb backup history as evidence (carryBackupHistory)', () => {
  it('is an item only when the runbook asks for it', () => {
    const rows = { server: { server_name: 'EHR-SQL01' }, databases: [{ name: 'msdb', database_id: 4 }, { name: 'EHR', database_id: 5 }], logins: [], jobs: [], operators: [], linkedServers: [], linkedLogins: [], credentials: [], endpoints: [], startupProcedures: [], configuration: [], traceFlags: [], alerts: [], proxies: [], mailProfiles: [], certificates: [] } as unknown as InstanceRows;
    expect(toItems(rows, { roots: [], declared: [] }).some((i) => i.id.includes('backup-history'))).toBe(false);
    const item = toItems(rows, { roots: [], declared: [] }, { carryBackupHistory: true }).find((i) => i.id === ITEM.id);
    expect(item).toMatchObject({ kind: 'instance-object', methods: ['instance-objects'], facts: { databases: 1 } });
    expect(item?.why.join(' ')).toContain('never inserted into the rebuilt msdb');
  });

  it('capture reads the four tables in one read-only batch and keeps LSNs and sizes exact; the proof reads the file back whole without the proving ground', async () => {
    target.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)'));
    target.server.on(/FROM msdb\.dbo\.backupmediaset AS ms/, historyReply(TWO));
    const a = await captured();
    expect(target.server.find(/FROM msdb\.dbo\.backupmediaset AS ms/).map((r) => r.sql)).toEqual([backupHistoryEvidenceStatement().text]);
    for (const s of target.server.statements()) expect(s).toMatch(/^SELECT/);
    const json = JSON.parse(await readFile(a.files[0]!, 'utf8'));
    expect(json).toMatchObject({ format: 'mssql-backup-history', databases: ['EHR'], counts: { mediaSets: 2, mediaFamilies: 2, backupSets: 2, backupFiles: 2 } });
    expect(json.backupset[0]).toMatchObject({ backup_set_uuid: FULL_GUID, last_lsn: LSN, backup_size: '98765432109876' });

    const proof = await engine().prove(ctx, ARTIFACT, a.manifest, a.files);
    expect(proof.checks).toEqual([expect.objectContaining({ name: 'backup-history', status: 'passed', detail: expect.stringContaining('EHR: 2 backup set(s) (1 full, 1 log) from 2026-11-30T01:12:09.000 to 2026-11-30T01:27:01.000') })]);
    expect(pg.server.statements()).toEqual([]);
  });

  it('a file that is not whole fails its proof, naming what is missing: a media set gone, counts that do not match, a duplicated set, not JSON', async () => {
    target.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)'));
    target.server.on(/FROM msdb\.dbo\.backupmediaset AS ms/, historyReply(TWO));
    const a = await captured();
    const good = JSON.parse(await readFile(a.files[0]!, 'utf8'));
    expect(judgeBackupHistory(JSON.stringify(good))).toMatchObject({ ok: true, setGuids: [FULL_GUID, LOG_GUID].sort() });
    const noMedia = { ...good, backupmediaset: good.backupmediaset.slice(1), counts: { ...good.counts, mediaSets: 1 } };
    expect(judgeBackupHistory(JSON.stringify(noMedia)).problems).toEqual(['backup set 41 names media set 41, which is not in the file']);
    expect(judgeBackupHistory(JSON.stringify({ ...good, backupfile: [] })).problems.join(' ')).toContain('row counts do not match');
    const dup = { ...good, backupset: [good.backupset[0], { ...good.backupset[1], backup_set_uuid: FULL_GUID }] };
    expect(judgeBackupHistory(JSON.stringify(dup)).problems).toContain(`backup_set_uuid ${FULL_GUID} appears 2 times`);
    expect(judgeBackupHistory('{"format": "mssql-backup-history", "version": 1, "counts"').problems[0]).toContain('is not JSON');

    await writeFile(a.files[0]!, JSON.stringify(noMedia));
    const [check] = (await engine().prove(ctx, ARTIFACT, a.manifest, a.files)).checks;
    expect(check).toMatchObject({ name: 'backup-history', status: 'failed', detail: expect.stringContaining('media set 41') });
  });

  it('landing sends nothing to the rebuilt server and reports the evidence; drift is the set GUIDs read again', async () => {
    target.server.on(/SERVERPROPERTY\('ProductLevel'\)/, serverInfoReply('15.0.4355.3', 'Standard Edition (64-bit)'));
    let now = TWO;
    target.server.on(/FROM msdb\.dbo\.backupmediaset AS ms/, () => historyReply(now));
    const a = await captured();
    const before = target.server.statements().length;
    await engine().restore(ctx, ITEM, a.manifest, a.files);
    const [check] = await engine().validateLanding!(ctx, ITEM, a.manifest, a.files);
    expect(target.server.statements().length).toBe(before);
    expect(check).toMatchObject({ name: 'backup-history', status: 'passed', detail: expect.stringContaining('not inserted into the rebuilt msdb') });

    expect(await engine().drift!(ctx, ITEM, a.manifest, a.files)).toEqual([]);
    now = [...TWO, { guid: 'C56A4180-65AA-42EC-A945-5FD21DEC0538', id: 43, type: 'L', finish: '2026-11-30T01:42:00.000' }];
    expect(await engine().drift!(ctx, ITEM, a.manifest, a.files)).toEqual([{ path: HISTORY_FILE, kind: 'modified' }]);
    for (const s of target.server.statements().slice(before)) expect(s).toMatch(/^SELECT/);
  });
});
