import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { rollbackRun } from '../../src/infra/azure/rollback.ts';
import { Journal, newRunId, readJournal, runPaths } from '../../src/run/journal.ts';
import type { JournalEvent } from '../../src/core/events.ts';
import { loadSigner, verifierFrom } from '../../src/trust/keys.ts';
import { auditRecords, recordSigner } from '../../src/run/audit.ts';
import { deriveState } from '../../src/core/state.ts';
import { FakeArm, FakeMachines, FakeStack, fixture } from './fake-ports.ts';
import { KEYS, NEW_IMAGE } from './builders.ts';
import { cli } from '../e2e/helpers.ts';
import { rollbackCommand } from '../../src/cli/rollback.ts';
import { rewriteReports } from '../../src/cli/inspect.ts';
import { AzureStateStore } from '../../src/state/azblob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

/** `rubicon rollback RUN_ID` as a function: the run's runbook copy names the stack and key; confirmation required. */

const root = mkdtempSync(path.join(os.tmpdir(), 'rubicon-rollback-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
writeFileSync(path.join(root, 'Pulumi.yaml'), 'name: rubicon\n');
const env = { RUBICON_SIGNING_KEY: KEYS.privateKeyPem, AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001' };
const RG = '/subscriptions/s/resourceGroups/rg-ehr/providers/Microsoft.Compute';
const VM = `${RG}/virtualMachines/ehr-prd-01`;
const RETIRED = `${RG}/disks/ehr-prd-01_OsDisk_1_old`;

/**
 * A run's journal as `rubicon upgrade` leaves it: signed by the runbook's key
 * (so `rollback` may append to it), with a runbook copy that loads.
 */
function run(infra: string): { stateDir: string; runId: string } {
  const stateDir = path.join(root, `state-${Math.random().toString(16).slice(2)}`);
  const runId = newRunId();
  const paths = runPaths(stateDir, runId);
  const journal = Journal.create(paths.journal);
  journal.signWith(recordSigner(loadSigner({ env: 'RUBICON_SIGNING_KEY' }, env)));
  journal.append(started(runId));
  journal.close();
  writeFileSync(paths.runbookCopy, runbookCopy(infra));
  return { stateDir, runId };
}

function started(runId: string): JournalEvent {
  return {
    type: 'run.started',
    runId,
    command: 'upgrade',
    target: 'ehr-prd-01',
    runbookPath: path.join(root, 'runbook.yaml'),
    runbookHash: '0'.repeat(64),
    policy: DEFAULT_POLICY,
    vaults: [],
    manualSteps: [],
    overrides: [],
    rubiconVersion: '0.1.0',
    host: 'test',
  };
}

function runbookCopy(infra: string): string {
  const t = (d: string) => path.join(root, d);
  return `version: 1\nname: x\ntarget: { name: ehr-prd-01, root: ${t('t')}, image: "${NEW_IMAGE}", transport: { kind: local } }\nprovingGround: { root: ${t('pg')}, transport: { kind: local } }\ndiscovery: { roots: [ehr] }\nvaults:\n  - { name: nas, kind: filesystem, path: ${t('v')} }\n${infra}`;
}

/** The Azure side of a run that can be rolled back: its retired OS disk tagged, the stack's next up boots from it. */
function rollbackable(runId: string): { stack: FakeStack; arm: FakeArm } {
  const stack = new FakeStack('prod', { targetVmId: VM, targetImage: NEW_IMAGE, targetVmUniqueId: 'uid-new', dataDiskIds: [] }, {
    'rubicon:target.name': 'ehr-prd-01',
    'rubicon:resourceGroupName': 'rg-ehr',
    'rubicon:permitPublicKey': KEYS.publicKeyPem,
  });
  const arm = new FakeArm();
  arm.vms.set(VM, { id: VM, uniqueId: 'uid-new', image: NEW_IMAGE, osDiskId: `${RG}/disks/new`, dataDiskIds: [] });
  arm.disks.set(RETIRED, { id: RETIRED, tags: { 'rubicon-run': runId, 'rubicon-role': 'rollback-os-disk' } });
  stack.previews.push(fixture('clean-vm-replace'), [{ sequence: 0, timestamp: 1, summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: { same: 14 }, policyPacks: {} } }]);
  stack.onUp = (s) => {
    if (!s.config.has('rubicon:permit')) return s.outputsValue;
    arm.vms.set(VM, { id: VM, uniqueId: 'uid-back', image: `disk:${RETIRED.toLowerCase()}`, osDiskId: RETIRED, dataDiskIds: [] });
    return { ...s.outputsValue, targetImage: `disk:${RETIRED.toLowerCase()}`, targetVmUniqueId: 'uid-back' };
  };
  return { stack, arm };
}

const AZURE = 'infra:\n  kind: pulumi-azure\n  stack: prod\n  workDir: .\n  signingKey: { env: RUBICON_SIGNING_KEY }\n';

describe('rollbackRun', () => {
  it('without confirmation changes nothing and exits 2', async () => {
    const { stateDir, runId } = run(AZURE);
    const e = (await rollbackRun(runId, { stateDir, confirmed: false, env }).then(() => undefined, (x: unknown) => x)) as RubiconError;
    expect(e).toBeInstanceOf(RubiconError);
    expect(e.code).toBe('CROSSING_NOT_CONFIRMED');
    expect(e.exitCode).toBe(2);
    expect(e.hint).toContain(`rubicon rollback ${runId} --yes`);
  });

  it('refuses a run that did not run on Azure', async () => {
    const { stateDir, runId } = run('infra:\n  kind: sandbox\n  provingGround: ./pg\n');
    await expect(rollbackRun(runId, { stateDir, confirmed: true, env })).rejects.toThrow(/did not run on Azure/);
  });

  it('rebuilds the target from the OS disk the run retired, through the stack the runbook copy names', async () => {
    const { stateDir, runId } = run(AZURE);
    const { stack, arm } = rollbackable(runId);
    const stderr: string[] = [];
    const r = await rollbackRun(runId, { stateDir, confirmed: true, env, stack, arm, machines: new FakeMachines([]), who: 'Jane Engineer', log: (l, m) => stderr.push(`${l}: ${m}`) });
    expect(r).toMatchObject({ runId, from: 'retired-os-disk', diskId: RETIRED });
    expect(stack.config.get('rubicon:target.restoreFromDisk')).toBe(RETIRED);
    expect(arm.locks.has(VM)).toBe(true);
    // The rollback is in the run's journal (signed like its records), not only on stderr: started, the driver's lines, completed.
    const records = readJournal(runPaths(stateDir, runId).journal);
    expect(auditRecords(records, verifierFrom(KEYS.publicKeyPem)).ok).toBe(true);
    const events = records.map((x) => x.event).slice(1);
    expect(events[0]).toEqual({ type: 'rollback.started', by: 'flag', who: 'Jane Engineer' });
    expect(events.at(-1)).toEqual({ type: 'rollback.completed', from: 'retired-os-disk', diskId: RETIRED, image: `disk:${RETIRED.toLowerCase()}` });
    const notes = events.flatMap((e) => (e.type === 'note' ? [`${e.level}: ${e.message}`] : []));
    expect(notes.some((n) => n.startsWith('warn: ') && n.includes(`deletion lock on VM ${VM} removed for the rollback`))).toBe(true);
    expect(notes).toEqual(stderr);
    expect(deriveState(records).rollbacks).toMatchObject([{ by: 'Jane Engineer (flag)', outcome: 'completed', diskId: RETIRED }]);
  });

  it('journals a failed rollback with its code, and `rubicon status` shows each rollback where rollback points are listed', async () => {
    const { stateDir, runId } = run(AZURE);
    const stack = new FakeStack('prod', { targetVmId: VM, targetImage: NEW_IMAGE, targetVmUniqueId: 'uid-new', dataDiskIds: [] }, {
      'rubicon:target.name': 'ehr-prd-01',
      'rubicon:resourceGroupName': 'rg-ehr',
      'rubicon:permitPublicKey': KEYS.publicKeyPem,
    });
    const arm = new FakeArm();
    arm.vms.set(VM, { id: VM, uniqueId: 'uid-new', image: NEW_IMAGE, osDiskId: `${RG}/disks/new`, dataDiskIds: [] });
    // No retired OS disk and no snapshot of this run: nothing to roll back to.
    const e = (await rollbackRun(runId, { stateDir, confirmed: true, env, stack, arm, machines: new FakeMachines([]), who: 'Jane Engineer' }).then(() => undefined, (x: unknown) => x)) as RubiconError;
    expect(e.code).toBe('INFRA_FAILED');
    const events = readJournal(runPaths(stateDir, runId).journal).map((x) => x.event);
    expect(events.at(-1)).toMatchObject({ type: 'rollback.failed', code: 'INFRA_FAILED', message: expect.stringContaining(`No rollback point of run ${runId}`) });
    const all = await cli(['status', '--state-dir', stateDir]);
    expect(all.stdout).toMatch(new RegExp(`rollbacks \\(\`rubicon rollback\`, from the run's journal\\):\\n  ${runId}  started \\S+ by Jane Engineer \\(flag\\), FAILED \\S+: INFRA_FAILED: No rollback point of run ${runId}`));
    const one = await cli(['status', runId, '--state-dir', stateDir]);
    expect(one.stdout).toContain('  rollback: started ');
    const json = await cli(['status', runId, '--state-dir', stateDir, '--json']);
    expect(JSON.parse(json.stdout.trim().split('\n').at(-1)!)).toMatchObject({ rollbacks: [{ outcome: 'failed', error: { code: 'INFRA_FAILED' } }] });
  });

  it('is a command: `rubicon rollback RUN_ID` reaches rollbackRun (exit 2 unconfirmed, 3 without a run id or for a run not on Azure)', async () => {
    const { stateDir, runId } = run(AZURE);
    const unconfirmed = await cli(['rollback', runId, '--state-dir', stateDir], env);
    expect(unconfirmed.stderr).toMatch(new RegExp(`rollback of run ${runId} replaces the target VM of stack prod: not confirmed`));
    expect(unconfirmed.exitCode).toBe(2);
    const noId = await cli(['rollback', '--state-dir', stateDir], env);
    expect(noId.stderr).toMatch(/rubicon rollback needs a run id/);
    expect(noId.exitCode).toBe(3);
    const sandbox = run('infra:\n  kind: sandbox\n  provingGround: ./pg\n');
    const notAzure = await cli(['rollback', sandbox.runId, '--state-dir', sandbox.stateDir, '--yes'], env);
    expect(notAzure.stderr).toMatch(/did not run on Azure/);
    expect(notAzure.exitCode).toBe(3);
    expect((await cli(['--help'])).stdout).toContain('rubicon rollback RUN_ID');
  });

  it('`rubicon status` lists a run\'s rollback assets until the run releases them', async () => {
    const { stateDir, runId } = run(AZURE);
    const journal = Journal.open(runPaths(stateDir, runId).journal);
    journal.signWith(recordSigner(loadSigner({ env: 'RUBICON_SIGNING_KEY' }, env)));
    const snap = `${RG}/snapshots/rubicon-${runId}-os`;
    journal.append({ type: 'rollback.created', rollbackPoint: { id: `rollback.${runId}`, kind: 'azure-disk-snapshot', location: `${snap},${RG}/snapshots/rubicon-${runId}-sqldata`, createdAt: '2026-12-01T10:00:00.000Z' } });
    const kept = await cli(['status', '--state-dir', stateDir]);
    expect(kept.exitCode).toBe(0);
    expect(kept.stdout).toContain('rollback points kept');
    expect(kept.stdout).toContain(`${runId}  Azure snapshots rubicon-${runId}-os, rubicon-${runId}-sqldata and the OS disk the crossing retired`);
    const one = await cli(['status', runId, '--state-dir', stateDir, '--json']);
    expect(JSON.parse(one.stdout.trim().split('\n').at(-1)!)).toMatchObject({ rollbackKept: { kind: 'azure-disk-snapshot' } });
    journal.append({ type: 'rollback.released', rollbackPointId: `rollback.${runId}` });
    const released = await cli(['status', '--state-dir', stateDir]);
    expect(released.stdout).toContain(runId);
    expect(released.stdout).not.toContain('rollback points kept');
  });
});

const withAzurite = requireAzurite();

describe.skipIf(!withAzurite)(`rubicon rollback on shared state${withAzurite ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  let az: Azurite;
  beforeAll(async () => {
    az = await startAzurite();
  }, 120_000);
  afterAll(async () => {
    await az?.dispose();
  });

  const storeIn = (container: string, cacheDir: string) =>
    new AzureStateStore({ accountUrl: az.accountUrl, container, prefix: 'clinic-a', credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), cacheDir, leaseSeconds: 15 });

  it('appends the rollback to the store\'s journal (another agent reads it) and writes the reports again, which show it', async () => {
    const container = `rb-${randomBytes(3).toString('hex')}`;
    const a = storeIn(container, path.join(root, `cache-a-${container}`));
    const runId = newRunId();
    const journal = await a.createJournal(runId);
    journal.signWith(recordSigner(loadSigner({ env: 'RUBICON_SIGNING_KEY' }, env)));
    journal.append(started(runId));
    journal.close();
    writeFileSync(a.paths(runId).runbookCopy, runbookCopy(AZURE));
    await a.flush(runId);

    const { stack, arm } = rollbackable(runId);
    const flags = { json: true, yes: true, stack: [], dryRun: false, help: false, crossed: false, junitVendorFailures: false, version: false };
    const written: string[] = [];
    const out = await captureStdout(() =>
      rollbackCommand(runId, {
        stateDir: path.dirname(path.dirname(a.paths(runId).dir)),
        yes: true,
        json: true,
        state: a,
        rewriteReports: async (id) => {
          const files = await rewriteReports(id, flags, a);
          written.push(...files.map((f) => f.path));
        },
        deps: { env, stack, arm, machines: new FakeMachines([]) },
      }),
    );
    expect(JSON.parse(out.trim())).toMatchObject({ kind: 'rollback', from: 'retired-os-disk', diskId: RETIRED });

    // Another agent, its own empty cache: the store holds the rollback's records, signed, after the run's own.
    const b = storeIn(container, path.join(root, `cache-b-${container}`));
    const records = await b.readJournal(runId);
    expect(auditRecords(records, verifierFrom(KEYS.publicKeyPem)).ok).toBe(true);
    expect(records.map((r) => r.event.type)).toEqual(expect.arrayContaining(['run.started', 'rollback.started', 'rollback.completed']));
    // The reports were written again from that journal, and uploaded beside the run.
    const md = written.find((f) => f.endsWith('.md'));
    expect(md, written.join(', ')).toBeDefined();
    expect(readFileSync(md!, 'utf8')).toContain('## Rollback');
    const uploaded: string[] = [];
    for await (const blob of b.container.listBlobsFlat({ prefix: `clinic-a/runs/${runId}/report/` })) uploaded.push(blob.name);
    expect(uploaded.some((n) => n.endsWith('.md'))).toBe(true);
  });
});

async function captureStdout(body: () => Promise<unknown>): Promise<string> {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    await body();
  } finally {
    process.stdout.write = write;
  }
  return out;
}
