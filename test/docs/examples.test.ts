import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadRunbook } from '../../src/runbook/load.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';
import { generateKeyPair } from '../../src/trust/keys.ts';

/** The example runbooks (examples/runbooks/) load through the real runbook loader: parse, normalize, rules. */
const DIR = path.join(import.meta.dirname, '../../examples/runbooks');
const ENV = {
  RUBICON_SIGNING_KEY: generateKeyPair().privateKeyPem,
  AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001',
  EHR_SQL_PASSWORD: 'not-a-real-password',
  PG_SQL_PASSWORD: 'not-a-real-password',
  RESTIC_PASSWORD: 'not-a-real-password',
};
const saved: Record<string, string | undefined> = {};
beforeEach(() => {
  for (const [k, v] of Object.entries(ENV)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});
afterEach(() => {
  for (const k of Object.keys(ENV)) if (saved[k] === undefined) delete process.env[k];
  else process.env[k] = saved[k];
});

describe('example runbooks', () => {
  it('the sandbox: what `rubicon sandbox` writes, schema line included', async () => {
    const text = await readFile(path.join(DIR, 'sandbox.yaml'), 'utf8');
    expect(text).toBe(sandboxRunbook('truncate', new Date('2026-12-01T20:00:00Z'), '../../docs/schema/runbook.schema.json'));
    const rb = await loadRunbook(path.join(DIR, 'sandbox.yaml'));
    expect(rb.infra.kind).toBe('sandbox');
  });

  it('a Linux server over SSH with a manual crossing', async () => {
    const rb = await loadRunbook(path.join(DIR, 'linux-ssh-manual.yaml'));
    expect([rb.target.transport.kind, rb.infra.kind, rb.vaults.map((v) => v.kind)]).toEqual(['ssh', 'manual', ['sftp', 'restic']]);
  });

  it('a Windows Server with SQL Server on Azure', async () => {
    const rb = await loadRunbook(path.join(DIR, 'windows-sqlserver-azure.yaml'));
    expect([rb.target.transport.kind, rb.infra.kind, rb.engines?.mssql ? 'mssql' : 'none']).toEqual(['azure-run-command', 'pulumi-azure', 'mssql']);
    expect(rb.vaults.map((v) => v.kind)).toContain('azure-blob');
  });

  it('each names the JSON Schema on its first line, and the loader refuses a broken one', async () => {
    for (const f of ['sandbox.yaml', 'linux-ssh-manual.yaml', 'windows-sqlserver-azure.yaml']) {
      expect((await readFile(path.join(DIR, f), 'utf8')).split('\n')[0]).toBe('# yaml-language-server: $schema=../../docs/schema/runbook.schema.json');
    }
    const { parseRunbook } = await import('../../src/runbook/load.ts');
    const text = await readFile(path.join(DIR, 'linux-ssh-manual.yaml'), 'utf8');
    expect(() => parseRunbook(text.replace('kind: manual', 'kind: manul'), path.join(DIR, 'x.yaml'))).toThrow(/infra/);
  });
});
