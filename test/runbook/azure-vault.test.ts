import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { parseRunbook } from '../../src/runbook/load.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';

const FILE = '/estate/runbook.yaml';
const GOOD = sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z'));
const OFFSITE = `  - name: offsite
    kind: filesystem
    path: ./vaults/offsite
    offTarget: true
`;
const withAzure = (fields: string) => GOOD.replace(OFFSITE, `  - name: azure\n    kind: azure-blob\n${fields}`);

function problems(text: string): string {
  try {
    parseRunbook(text, FILE);
  } catch (e) {
    return (e as RubiconError).message;
  }
  throw new Error('accepted');
}

describe('runbook: kind azure-blob', () => {
  it('fills the defaults: Entra ID credential, prefix rubicon, 8 blocks of 8 MiB, 30 days', () => {
    expect(GOOD).toContain(OFFSITE);
    const rb = parseRunbook(withAzure('    accountUrl: https://contoso.blob.core.windows.net/\n    container: rubicon-vault\n'), FILE);
    expect(rb.vaults[1]).toEqual({
      name: 'azure',
      kind: 'azure-blob',
      accountUrl: 'https://contoso.blob.core.windows.net',
      container: 'rubicon-vault',
      prefix: 'rubicon',
      credential: { kind: 'default' },
      concurrency: 8,
      blockSizeMiB: 8,
      retentionDays: 30,
    });
  });

  it('takes a shared key only by the name of its environment variable', () => {
    const rb = parseRunbook(
      withAzure('    accountUrl: https://contoso.blob.core.windows.net\n    container: vault\n    credential: { kind: shared-key, accountName: contoso, keyEnv: CONTOSO_KEY }\n'),
      FILE,
    );
    expect(rb.vaults[1]).toMatchObject({ credential: { kind: 'shared-key', accountName: 'contoso', keyEnv: 'CONTOSO_KEY' } });
  });

  it.each([
    ['a key', '    accountKey: abc\n', 'never write the account key'],
    ['a SAS', '    sas: sv=2024\n', 'never write a SAS'],
    ['a connection string', '    connectionString: x\n', 'never write a connection string'],
    ['a SAS in the URL', '    accountUrlX: 1\n', 'unknown field'],
    ['immutable declared', '    immutable: true\n', 'Rubicon reads whether a vault is immutable from the vault itself'],
  ])('refuses %s', (_what, extra, message) => {
    expect(problems(withAzure(`    accountUrl: https://contoso.blob.core.windows.net\n    container: vault\n${extra}`))).toContain(message);
  });

  it.each([
    ['https://contoso.blob.core.windows.net?sv=2024&sig=x', 'must not carry a query string'],
    ['http://contoso.blob.core.windows.net', 'must be https://'],
  ])('refuses the account URL %s', (url, message) => {
    expect(problems(withAzure(`    accountUrl: "${url}"\n    container: vault\n`))).toContain(message);
  });

  it('allows plain http only for an emulator on loopback, and checks the container name', () => {
    expect(() => parseRunbook(withAzure('    accountUrl: http://127.0.0.1:10000/devstoreaccount1\n    container: vault\n'), FILE)).not.toThrow();
    expect(problems(withAzure('    accountUrl: https://contoso.blob.core.windows.net\n    container: Vault_1\n'))).toContain('must be a container name');
  });
});
