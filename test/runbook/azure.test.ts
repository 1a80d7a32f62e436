import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { parseAzureSection } from '../../src/runbook/azure.ts';
import { generateKeyPair } from '../../src/trust/keys.ts';

/** The runbook's infra section for kind pulumi-azure: fields, defaults, messages naming the field. */

const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-azure-section-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(path.join(dir, 'Pulumi.yaml'), 'name: rubicon\nruntime: nodejs\n');
const RUNBOOK = path.join(dir, 'estate', 'runbook.yaml');
const KEY = generateKeyPair().privateKeyPem;
const ENV = { RUBICON_SIGNING_KEY: KEY, AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001' };

function problems(raw: unknown, env: NodeJS.ProcessEnv = ENV): { path: string; message: string }[] {
  try {
    parseAzureSection(raw, RUNBOOK, env);
  } catch (e) {
    if (e instanceof RubiconError) {
      expect(e.code).toBe('RUNBOOK_INVALID');
      expect(e.exitCode).toBe(3);
      return (e.details as { problems: { path: string; message: string }[] }).problems;
    }
    throw e;
  }
  return [];
}

describe('infra (kind: pulumi-azure)', () => {
  it('fills every default and resolves paths against the runbook', () => {
    const s = parseAzureSection({ kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { env: 'RUBICON_SIGNING_KEY' } }, RUBICON_FILE(), ENV);
    expect(s).toEqual({
      kind: 'pulumi-azure',
      stack: 'prod',
      workDir: dir,
      signingKey: { env: 'RUBICON_SIGNING_KEY' },
      planDir: path.join(dir, '.rubicon', 'plans'),
      subscriptionIdEnv: 'AZURE_SUBSCRIPTION_ID',
      freezeServices: [],
      agentTimeoutMs: 20 * 60_000,
    });
  });

  it('takes a key file that only its owner may read; names the file and chmod 600 otherwise', () => {
    const file = path.join(dir, 'signing.pem');
    writeFileSync(file, KEY);
    chmodSync(file, 0o600);
    expect(parseAzureSection({ kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { file: '../signing.pem' } }, RUBICON_FILE(), ENV).signingKey).toEqual({ file });
    chmodSync(file, 0o644);
    expect(problems({ kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { file: '../signing.pem' } })).toEqual([
      { path: 'infra.signingKey.file', message: `${file} is readable by others: chmod 600 ${file}` },
    ]);
  });

  it.each<[string, unknown, NodeJS.ProcessEnv, string, RegExp]>([
    ['no signing key', { kind: 'pulumi-azure', stack: 'prod', workDir: '..' }, ENV, 'infra.signingKey', /required|must be/],
    ['a key written into the runbook', { kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { file: KEY } }, ENV, 'infra.signingKey.file', /never write a key into the runbook|must be \{ env/],
    ['an unset key variable', { kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { env: 'NOPE_KEY' } }, ENV, 'infra.signingKey.env', /NOPE_KEY is not set/],
    ['an unset subscription variable', { kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { env: 'RUBICON_SIGNING_KEY' } }, { RUBICON_SIGNING_KEY: KEY }, 'infra.subscriptionIdEnv', /AZURE_SUBSCRIPTION_ID is not set/],
    ['a workDir without Pulumi.yaml', { kind: 'pulumi-azure', stack: 'prod', signingKey: { env: 'RUBICON_SIGNING_KEY' } }, ENV, 'infra.workDir', /has no Pulumi.yaml/],
    ['a bad stack name', { kind: 'pulumi-azure', stack: 'prod stack', workDir: '..', signingKey: { env: 'RUBICON_SIGNING_KEY' } }, ENV, 'infra.stack', /stack name/],
    ['an unknown field', { kind: 'pulumi-azure', stack: 'prod', workDir: '..', signingKey: { env: 'RUBICON_SIGNING_KEY' }, image: 'x' }, ENV, 'infra', /unknown field "image"/],
  ])('refuses %s, naming the field (exit 3)', (_label, raw, env, at, message) => {
    const found = problems(raw, env);
    expect(found.length).toBeGreaterThan(0);
    expect(found[0]!.path).toBe(at);
    expect(found[0]!.message).toMatch(message);
    // A key never appears in a message.
    expect(JSON.stringify(found)).not.toContain('PRIVATE KEY-----\nMC');
  });
});

function RUBICON_FILE(): string {
  return RUNBOOK;
}
