import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Item } from '../../src/core/types.ts';
import { vendorBackups } from '../../src/inventory/vendor-output.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { cli, tempDir } from '../e2e/helpers.ts';

const db = (name: string, location: string, declared = false): Item => ({
  id: `database:sqlite:${name}`, kind: 'database', name, declared, discovered: true, engine: 'sqlite', location, facts: {}, why: [], methods: [],
});
const job = (output: string, command: string[] = ['node', 'job.ts']) => ({ database: 'ehr', engine: 'sqlite', output, command });

describe('vendorBackups: the vendor job output folder', () => {
  it('leaves out earlier backups in the output folder, and keeps the live database even when the folder contains it', () => {
    const live = db('ehr', 'mssql/data/ehr.db');
    const bak = db('ehr-20261127-010000-000', 'mssql/backup/ehr-20261127-010000-000.bak');
    expect([...vendorBackups([live, bak], [job('mssql/backup')])]).toEqual([bak.id]);
    // output: mssql holds the live database too: it stays (the job backs it up by name).
    expect([...vendorBackups([live, bak], [job('mssql')])]).toEqual([bak.id]);
  });

  it('keeps a database in the output folder that is declared, or that the job\'s command names', () => {
    const other = db('reports', 'mssql/reports.db');
    expect([...vendorBackups([other], [job('mssql')])]).toEqual([other.id]);
    expect([...vendorBackups([db('reports', 'mssql/reports.db', true)], [job('mssql')])]).toEqual([]);
    expect([...vendorBackups([other], [job('mssql', ['node', 'job.ts', 'mssql/reports.db', 'mssql/backup'])])]).toEqual([]);
  });
});

describe('discovery with a vendor output folder that contains the database', () => {
  it('rubicon plan still lists the database (and not the vendor\'s earlier backup)', async () => {
    const L = await buildSandbox(path.join(await tempDir('rubicon-vendor-out-'), 'estate'), { patients: 30 });
    await copyFile(path.join(L.target, 'mssql/data/ehr.db'), path.join(L.target, 'mssql/backup/ehr-20261127-010000-000.bak'));
    await writeFile(L.runbook, (await readFile(L.runbook, 'utf8')).replace('    output: mssql/backup', '    output: mssql'));
    const r = await cli(['plan', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const ids = (r.summary as { checklist: { itemId: string }[] }).checklist.map((c) => c.itemId);
    expect(ids).toContain('database:sqlite:ehr');
    expect(ids.filter((i) => i.startsWith('database:'))).toEqual(['database:sqlite:ehr']);
    expect(ids).toContain('volume:.');
  });
});
