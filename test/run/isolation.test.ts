import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { permissionFlags } from '../../src/run/isolation.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { tempDir } from '../e2e/helpers.ts';

const ESCAPE = fileURLToPath(new URL('./fixtures/escape.ts', import.meta.url));
const WORKER = fileURLToPath(new URL('../../src/run/prove-worker.ts', import.meta.url));

describe('proving ground isolation (Node permission model)', () => {
  it('the prover may read the vaults and write its scratch space, and nothing else', async () => {
    const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 50 });
    const vault = L.vaults[0]!;
    await mkdir(path.join(vault, 'objects'), { recursive: true });
    const pg = path.join(L.provingGround, 'run');
    await mkdir(pg, { recursive: true });
    const flags = permissionFlags({
      runbookFile: L.runbook,
      pgRoot: pg,
      vaults: [{ name: 'nas', kind: 'filesystem', location: vault, offTarget: true, immutable: false }],
    });
    const r = await execa(process.execPath, [...flags, ESCAPE, L.target, vault, pg]);
    expect(JSON.parse(r.stdout)).toEqual({
      readTarget: 'denied',
      listTarget: 'denied',
      writeTarget: 'denied',
      readVault: 'allowed',
      writeVault: 'denied',
      writeProvingGround: 'allowed',
      spawn: 'denied',
    });
  });

  it('the prover refuses to prove when it is not confined', async () => {
    const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 50 });
    const job = {
      runbookFile: L.runbook,
      pgName: 'pg',
      pgRoot: L.provingGround,
      vaults: [],
      items: [],
      artifacts: [],
      knownCopies: [],
      forbidden: [L.target],
    };
    // Started without --permission: the target is readable, so it must refuse.
    const r = await execa(process.execPath, [WORKER], { input: JSON.stringify(job), reject: false });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/can read .*target: refusing to prove without isolation/);
    // With the flags it confirms the isolation and proves (nothing, here).
    const ok = await execa(process.execPath, [...permissionFlags({ runbookFile: L.runbook, pgRoot: L.provingGround, vaults: [] }), WORKER], {
      input: JSON.stringify(job),
      reject: false,
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('"kind":"isolation"');
    expect(ok.stdout).toContain('"kind":"done"');
  });
});

describe('grant events from the confined prover', () => {
  it('only grant.issued / grant.revoked in their own shape reach the journal; extra fields (a secret the worker might add) are dropped', async () => {
    const { grantEventFrom } = await import('../../src/run/isolation.ts');
    const grant = { id: 'mssql-url-00', vault: 'sqlbak', machine: 'proving ground SQL Server pg:1433', mode: 'read', expiresAt: '2026-12-01T16:00:00.000Z', dir: 'https://a.blob.core.windows.net/c', holder: 'sql-server-credential' };
    expect(grantEventFrom({ type: 'grant.issued', grant: { ...grant, sas: 'sv=2024&sig=SECRET' }, extra: 1 })).toEqual({ type: 'grant.issued', grant });
    expect(grantEventFrom({ type: 'grant.revoked', grantIds: ['mssql-url-00'], sas: 'x' })).toEqual({ type: 'grant.revoked', grantIds: ['mssql-url-00'] });
    expect(grantEventFrom({ type: 'note', level: 'error', message: 'verify: forged' })).toBeUndefined();
    expect(grantEventFrom({ type: 'grant.issued', grant: { ...grant, mode: 'delete' } })).toBeUndefined();
    expect(grantEventFrom({ type: 'grant.revoked', grantIds: [1] })).toBeUndefined();
    expect(grantEventFrom(null)).toBeUndefined();
  });
});
