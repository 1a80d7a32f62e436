import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Item } from '../../../src/core/types.ts';
import type { VendorJobSpec } from '../../../src/engines/engine.ts';
import { compareFingerprints } from '../../../src/engines/fingerprint.ts';
import { sqliteEngine } from '../../../src/engines/sqlite/index.ts';
import { createSyntheticEhr } from '../../../src/sandbox/synthetic-ehr.ts';
import { estate, storeInVault } from './helpers.ts';

const JOB = fileURLToPath(new URL('../../../src/sandbox/vendor-backup-job.ts', import.meta.url));

function spec(mode: string, extra: Partial<VendorJobSpec> = {}): VendorJobSpec {
  return {
    name: 'EHR nightly SQL backup',
    command: [process.execPath, JOB, 'ehr/db/ehr.db', 'mssql/backup', '--mode', mode],
    output: 'mssql/backup',
    database: 'ehr',
    timeoutMs: 60_000,
    ...extra,
  };
}

async function setup(): Promise<{ e: ReturnType<typeof estate>; item: Item }> {
  const e = estate();
  createSyntheticEhr(e.target.resolve('ehr/db/ehr.db'), { patients: 150 });
  const [item] = await sqliteEngine.discover(e.targetCtx, { roots: ['ehr'], declared: [{ name: 'ehr' }] });
  return { e, item: item! };
}

const statuses = (checks: { name: string; status: string }[]): Record<string, string> =>
  Object.fromEntries(checks.map((c) => [c.name, c.status]));

describe('the vendor backup job (real child processes)', () => {
  it('truncate: exits 0 and says it succeeded, capture takes its file, the proof fails with the engine message', async () => {
    const { e, item } = await setup();
    const captured = await sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: spec('truncate') });
    expect(captured.format).toBe('sqlite-db');
    expect(captured.files).toHaveLength(1);
    expect(captured.files[0]!.name).toMatch(/^ehr-\d{8}-\d{6}-\d{3}\.bak$/);
    expect(captured.files[0]!.path).toBe(e.target.resolve(`mssql/backup/${captured.files[0]!.name}`));
    expect(statSync(captured.files[0]!.path).size).toBeLessThan(statSync(e.target.resolve('ehr/db/ehr.db')).size * 0.7);

    const stored = storeInVault(e.vault, item.id, 'vendor-job', captured);
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(statuses(proof.checks)).toEqual({ restore: 'failed', integrity: 'skipped', fingerprint: 'skipped', smoke: 'skipped' });
    expect(proof.checks[0]!.detail).toBe('the backup file cannot be opened: database disk image is malformed');
  });

  it('damage-page: the file opens but PRAGMA integrity_check fails', async () => {
    const { e, item } = await setup();
    const captured = await sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: spec('damage-page') });
    expect(statSync(captured.files[0]!.path).size).toBe(statSync(e.target.resolve('ehr/db/ehr.db')).size);
    const stored = storeInVault(e.vault, item.id, 'vendor-job', captured);
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    const s = statuses(proof.checks);
    expect(s.restore).toBe('passed');
    expect(s.integrity).toBe('failed');
    expect(proof.checks.find((c) => c.name === 'integrity')!.detail).toMatch(/malformed|Page \d+|btreeInitPage|Tree \d+/);
  });

  it('good: the backup passes every check and matches the source; landing from it works', async () => {
    const { e, item } = await setup();
    const source = await sqliteEngine.fingerprint(e.targetCtx, item);
    const captured = await sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: spec('good') });
    expect(captured.tool).toBe('vendor job EHR nightly SQL backup');
    const stored = storeInVault(e.vault, item.id, 'vendor-job', captured);
    const proof = await sqliteEngine.prove(e.groundCtx, stored.artifact, stored.manifest, stored.files);
    expect(statuses(proof.checks)).toEqual({ restore: 'passed', integrity: 'passed', fingerprint: 'passed', smoke: 'passed' });
    expect(compareFingerprints(source, proof.fingerprint!).equal).toBe(true);
    await sqliteEngine.restore(e.groundCtx, item, stored.manifest, stored.files);
    expect((await sqliteEngine.fingerprint(e.groundCtx, item)).digest).toBe(source.digest);
  });

  it('takes the new backup, never an older one already in the folder', async () => {
    const { e, item } = await setup();
    mkdirSync(e.target.resolve('mssql/backup'), { recursive: true });
    const old = e.target.resolve('mssql/backup/ehr-old.bak');
    writeFileSync(old, 'last week');
    const future = new Date(Date.now() + 3_600_000); // an old file with a clock-skewed future mtime
    utimesSync(old, future, future);
    const captured = await sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: spec('good') });
    expect(captured.files[0]!.name).not.toBe('ehr-old.bak');
    expect(readdirSync(e.target.resolve('mssql/backup'))).toHaveLength(2);
  });

  it('a job that exits 0 but writes nothing new fails the capture in plain words', async () => {
    const { e, item } = await setup();
    mkdirSync(e.target.resolve('mssql/backup'), { recursive: true });
    writeFileSync(e.target.resolve('mssql/backup/ehr-old.bak'), 'last week');
    const job = spec('good', { command: [process.execPath, '-e', "console.log('Backup completed successfully')"] });
    await expect(sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: job })).rejects.toMatchObject({
      code: 'CAPTURE_FAILED',
      message: 'the vendor job EHR nightly SQL backup exited 0 but wrote no new backup in mssql/backup',
    });
  });

  it('a job that exits non-zero fails the capture naming its exit code and the error numbers it printed, never its text', async () => {
    const { e, item } = await setup();
    const job = spec('good', { command: [process.execPath, '-e', "console.error('line 1\\nMsg 3201: cannot open backup device'); process.exit(3)"] });
    const err = await sqliteEngine.capture(e.targetCtx, item, 'vendor-job', { vendorJob: job }).catch((x: unknown) => x);
    expect(err).toMatchObject({ code: 'CAPTURE_FAILED' });
    // The tool's text goes to the log beside the run (it may hold patient data); the message keeps only what is safe to show.
    expect((err as Error).message).toBe('the vendor job EHR nightly SQL backup exited with code 3 (Msg 3201)');
  });

  it('the script itself prints one success line and exits 0 even when its backup is broken', async () => {
    const { e } = await setup();
    const r = await e.target.exec(process.execPath, [JOB, 'ehr/db/ehr.db', 'out']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Backup completed successfully: ehr-.*\.bak\n$/);
    const bad = await e.target.exec(process.execPath, [JOB, 'ehr/db/ehr.db', 'out', '--mode', 'nonsense']);
    expect(bad.exitCode).toBe(2);
  });
});
