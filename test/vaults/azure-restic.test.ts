/**
 * A tool on the target writes straight into the container through a grant:
 * real restic 0.14 through its rclone backend (rclone's azureblob backend,
 * the SAS in the grant's 0600 rclone.conf, never in an environment), into
 * Azurite. restic's own azure backend cannot be pointed at an emulator in
 * 0.14 (no endpoint setting) and reads the SAS only from the environment.
 * The target here is this machine (LocalMachine); the orchestrator never
 * touches the data.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalMachine } from '../../src/machines/local.ts';
import { AzureBlobVault } from '../../src/vaults/azure-blob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

const exec = promisify(execFile);
const has = async (tool: string) => exec(tool, ['version']).then(() => true, () => false);
const tools = (await has('restic')) && (await has('rclone'));
if (!tools && process.env.CI) throw new Error('CI: restic and rclone are needed (.ci/run installs them)');
const run = requireAzurite() && tools;
const why = azuriteMissing() ?? (tools ? '' : 'restic or rclone is not installed');

let az: Azurite;
let tmp: string;

describe.skipIf(!run)(`restic into an azure-blob vault through a grant${run ? '' : ` (skipped: ${why})`}`, () => {
  beforeAll(async () => {
    az = await startAzurite();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-azrestic-'));
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('backs up with a write grant, restores with a read grant, and the read grant cannot write', async () => {
    const v = await new AzureBlobVault(
      { name: 'azrestic', kind: 'azure-blob', accountUrl: az.accountUrl, container: 'restic-repo', prefix: 'rubicon', credential: { kind: 'shared-key', accountName: AZURITE_ACCOUNT, keyEnv: 'K' }, concurrency: 4, blockSizeMiB: 8, retentionDays: 30 },
      { env: { K: AZURITE_KEY } },
    ).open();
    const target = new LocalMachine({ name: 'target', root: '/', stepsRoot: path.join(tmp, 'steps') });
    const src = path.join(tmp, 'data');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'chart.txt'), 'patient chart\n');
    writeFileSync(path.join(src, 'sub', 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    writeFileSync(path.join(tmp, 'password'), 'correct horse\n', { mode: 0o600 });

    const w = await v.grant(target, 'write', 10 * 60 * 1000, { workDir: path.join(tmp, 'target'), runId: 'r-20260101-000000-abcd', tool: 'restic' });
    expect(w.env.RESTIC_REPOSITORY).toBe('rclone:rubicon-azrestic:restic-repo/rubicon/restic');
    const token = readFileSync(path.join(w.dir, 'sas'), 'utf8').trim();
    expect(Object.values(w.env).join(' ')).not.toContain(token); // the SAS is in a file, not in the environment
    const env = (g: typeof w) => ({ PATH: process.env.PATH ?? '', HOME: tmp, XDG_CACHE_HOME: path.join(tmp, 'cache'), RESTIC_PASSWORD_FILE: path.join(tmp, 'password'), ...g.env });

    await exec('restic', ['init'], { env: env(w) });
    const backup = await exec('restic', ['backup', '--json', src], { env: env(w) });
    const summary = backup.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((m) => m.message_type === 'summary');
    expect(summary).toMatchObject({ total_files_processed: 2, total_bytes_processed: 3 * 1024 * 1024 + 14 });
    await exec('restic', ['check', '--read-data'], { env: env(w) });

    // The proving ground: a read grant, restic without locks (it cannot write them).
    const pg = new LocalMachine({ name: 'proving-ground', root: '/', stepsRoot: path.join(tmp, 'pg-steps') });
    const r = await v.grant(pg, 'read', 10 * 60 * 1000, { workDir: path.join(tmp, 'pg'), runId: 'r-20260101-000000-abcd' });
    const dest = path.join(tmp, 'restored');
    await exec('restic', ['--no-lock', 'restore', 'latest', '--target', dest], { env: env(r) });
    expect(readFileSync(path.join(dest, src, 'chart.txt'), 'utf8')).toBe('patient chart\n');
    // The read grant cannot write (asked directly: restic would retry a refused write for minutes).
    const readToken = readFileSync(path.join(r.dir, 'sas'), 'utf8').trim();
    await expect(new ContainerClient(`${v.container.url}?${readToken}`).getBlockBlobClient('rubicon/restic/locks/x').upload('x', 1)).rejects.toMatchObject({ statusCode: 403 });
    await v.revoke(w, target);
    await v.revoke(r, pg);
  }, 120_000);
});
