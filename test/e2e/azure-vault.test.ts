/**
 * The sandbox story with its off-site vault in Azure Blob (Azurite): the
 * runbook's `kind: azure-blob` goes through the composition root, the
 * capture writes into the container, the isolated prover reads it back,
 * and the report says what the container really is (not immutable on
 * Azurite: it has no WORM), so the gate's 3-2-1-1-0 rule is not required.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveState } from '../../src/core/state.ts';
import { listRuns, readJournal, runPaths } from '../../src/run/journal.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

const run = requireAzurite();
const BIN = fileURLToPath(new URL('../../bin/rubicon.js', import.meta.url));
let az: Azurite;
let tmp: string;

describe.skipIf(!run)(`the sandbox story with an azure-blob vault${run ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  beforeAll(async () => {
    az = await startAzurite();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-e2e-az-'));
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('rehearses with copies in a NAS folder and an Azure container, proven from the vaults', async () => {
    const L = await buildSandbox(path.join(tmp, 'estate'), { patients: 200 });
    const text = await readFile(L.runbook, 'utf8');
    const offsite = '  - name: offsite\n    kind: filesystem\n    path: ./vaults/offsite\n    offTarget: true\n';
    expect(text).toContain(offsite);
    await writeFile(
      L.runbook,
      text.replace(
        offsite,
        `  - name: azure\n    kind: azure-blob\n    accountUrl: ${az.accountUrl}\n    container: clinic-a\n    credential: { kind: shared-key, accountName: ${AZURITE_ACCOUNT}, keyEnv: RUBICON_TEST_AZ_KEY }\n`,
      ),
    );
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json'], {
        env: { ...process.env, RUBICON_TEST_AZ_KEY: AZURITE_KEY },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
    expect(out.code, out.stderr + out.stdout.slice(-3000)).toBe(0);
    expect(out.stdout).not.toContain(AZURITE_KEY);
    const [id] = listRuns(L.stateDir);
    const s = deriveState(readJournal(runPaths(L.stateDir, id!).journal));
    expect(s.outcome).toBe('rehearsed');
    const azure = s.vaults.find((v) => v.name === 'azure')!;
    expect(azure).toMatchObject({ kind: 'azure-blob', offTarget: true, immutable: false });
    // Every Rubicon artifact has a verified copy in the container, and its proofs passed.
    const own = s.artifacts.filter((a) => a.origin === 'rubicon');
    expect(own.length).toBeGreaterThan(3);
    for (const a of own) expect(s.copies.find((c) => c.artifactId === a.id && c.vault === 'azure')?.status, a.id).toBe('ok');
    expect(s.proofs.filter((p) => own.some((a) => a.id === p.artifactId)).every((p) => p.outcome === 'passed')).toBe(true);
    const md = await readFile(path.join(runPaths(L.stateDir, id!).reports, 'checklist.md'), 'utf8');
    expect(md).toContain('3-2-1-1-0 per item');
    expect(md).toMatch(/\| azure \| azure-blob \| .* \| yes \| no \| (yes|no) \|/);
  }, 300_000);
});
