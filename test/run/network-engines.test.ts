import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isRubiconError } from '../../src/core/errors.ts';
import type { DatabaseEngine } from '../../src/engines/engine.ts';
import { lazyMssqlEngine } from '../../src/engines/mssql/lazy.ts';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { readManifest } from '../../src/files/manifest.ts';
import { RemoteFilesHost } from '../../src/hosts/remote.ts';
import type { RunContext } from '../../src/run/context.ts';
import { NETWORK_FILE_MAX, networkEngineOf, networkEngines, storeNetworkFiles } from '../../src/run/network-engines.ts';
import { FilesystemVault } from '../../src/vaults/filesystem.ts';

/** src/run/network-engines.ts: which engines the remote phases call from here, and how their small files are stored. The whole path: test/e2e/windows-mssql.test.ts. */

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function temp(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'rubicon-netengine-'));
  dirs.push(d);
  return d;
}

const mssql = lazyMssqlEngine({ connection: { server: 'x', port: 1433, user: 'u', password: 'p', encrypt: false, trustServerCertificate: true }, backupDirectory: 'C:\\x' } as Parameters<typeof lazyMssqlEngine>[0]);
const item = (engine: string) => ({ id: `database:${engine}:EHR`, kind: 'database' as const, name: 'EHR', declared: true, discovered: true, engine, location: 'x', facts: {}, why: [], methods: [] });
function ctx(o: { remote: boolean; engines: Record<string, DatabaseEngine>; remoteEngines?: Record<string, unknown> }): RunContext {
  return { engines: o.engines, ...(o.remote ? { remote: { engines: o.remoteEngines ?? {} } } : {}) } as unknown as RunContext;
}

describe('network engines on a remote target', () => {
  it('the mssql engine says it reaches its servers over the network; SQLite does not', () => {
    expect(mssql.overNetwork).toBe(true);
    expect(sqliteEngine.overNetwork).toBeUndefined();
  });

  it('an item of a network engine on a remote target is theirs; on a local target, of a file engine, or of an engine the target runs remotely, it is not', () => {
    const engines = { sqlite: sqliteEngine, mssql };
    expect(networkEngineOf(ctx({ remote: true, engines, remoteEngines: { sqlite: {} } }), item('mssql'))).toBe(mssql);
    expect(networkEngineOf(ctx({ remote: true, engines, remoteEngines: { sqlite: {} } }), item('sqlite'))).toBeUndefined();
    expect(networkEngineOf(ctx({ remote: false, engines }), item('mssql'))).toBeUndefined();
    expect(networkEngineOf(ctx({ remote: true, engines, remoteEngines: { mssql: {} } }), item('mssql'))).toBeUndefined();
    expect(networkEngineOf(ctx({ remote: true, engines }), undefined)).toBeUndefined();
    expect(networkEngines(ctx({ remote: true, engines, remoteEngines: { sqlite: {} } })).map(([k]) => k)).toEqual(['mssql']);
    expect(networkEngines(ctx({ remote: false, engines }))).toEqual([]);
  });

  it('their host has no files: resolve and exec fail PRECONDITION_FAILED naming the path, the machine and the way out', async () => {
    const h = new RemoteFilesHost('ehr-sql01');
    let e: unknown;
    try {
      h.resolve('mssql/rubicon-service-master-key.key');
    } catch (x) {
      e = x;
    }
    expect(isRubiconError(e) && e.code).toBe('PRECONDITION_FAILED');
    expect((e as Error).message).toContain('"mssql/rubicon-service-master-key.key" is on ehr-sql01');
    expect((e as { hint?: string }).hint).toMatch(/backupToUrl/);
    await expect(h.exec('sqlcmd')).rejects.toMatchObject({ code: 'PRECONDITION_FAILED' });
  });

  it('stores the files made here as documents in every vault, then their manifest: each vault reads it back, sorted, hashes checked', async () => {
    const d = await temp();
    await writeFile(path.join(d, 'b.sql'), 'CREATE LOGIN [ehr_app] ...\n');
    await writeFile(path.join(d, 'a.json'), '{"format":"x"}\n');
    const vaults = ['one', 'two'].map((n) => new FilesystemVault({ name: n, kind: 'filesystem', location: path.join(d, n), offTarget: true, immutable: false }));
    const r = await storeNetworkFiles({ files: [{ path: path.join(d, 'b.sql'), name: 'logins.sql' }, { path: path.join(d, 'a.json'), name: 'rubicon-mssql.json' }], vaults, artifactId: 'r.capture.x.instance-objects', itemId: 'x', method: 'instance-objects', format: 'sql-text' });
    expect(r).toMatchObject({ fileCount: 2, bytes: 27 + 15 });
    for (const v of vaults) {
      const m = await readManifest(v, r.manifestHash);
      expect(m).toMatchObject({ artifactId: 'r.capture.x.instance-objects', itemId: 'x', method: 'instance-objects', format: 'sql-text' });
      expect(m.entries.map((e) => e.path)).toEqual(['logins.sql', 'rubicon-mssql.json']);
      const chunks: Uint8Array[] = [];
      for await (const c of v.read(m.entries[0]!.sha256)) chunks.push(c);
      expect(Buffer.concat(chunks).toString('utf8')).toBe('CREATE LOGIN [ehr_app] ...\n');
    }
  });

  it('refuses a file too large to travel through this computer, and a file the method did not make', async () => {
    const d = await temp();
    const big = path.join(d, 'big.bak');
    await writeFile(big, '');
    await truncate(big, NETWORK_FILE_MAX + 1); // sparse: nothing is read before the size is checked
    const vaults = [new FilesystemVault({ name: 'one', kind: 'filesystem', location: path.join(d, 'one'), offTarget: true, immutable: false })];
    const o = { vaults, artifactId: 'a', itemId: 'x', method: 'm' };
    await expect(storeNetworkFiles({ ...o, files: [{ path: big, name: 'big.bak' }] })).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('more than a remote target\'s capture carries') });
    await expect(storeNetworkFiles({ ...o, files: [{ path: path.join(d, 'none'), name: 'none' }] })).rejects.toMatchObject({ code: 'CAPTURE_FAILED', message: expect.stringContaining('none was not made') });
    await expect(storeNetworkFiles({ ...o, vaults: [], files: [] })).rejects.toMatchObject({ code: 'CAPTURE_FAILED' });
  });
});
