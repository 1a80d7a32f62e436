import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { PulumiAzureDriver, parseImageUrn, psQuote, reapPortOver } from '../../src/infra/azure/driver.ts';
import { reap } from '../../src/infra/azure/reap.ts';
import { FakeMachines, FakeStack, fixture } from './fake-ports.ts';
import { NEW_IMAGE, NOW, OLD_IMAGE, permit } from './builders.ts';

const TARGET = 'ehr-prd-01';
const OLD_VM = '/subscriptions/s/resourceGroups/rg-ehr-prod/providers/Microsoft.Compute/virtualMachines/ehr-prd-01';
const NEW_VM = `${OLD_VM}#rebuilt`;
const prodPermit = () => permit({ target: TARGET });

function allSame(): EngineEvent[] {
  return [{ sequence: 0, timestamp: 1767261600, summaryEvent: { maybeCorrupt: false, durationSeconds: 2, resourceChanges: { same: 14 }, policyPacks: {} } }];
}

function teardownEvents(): EngineEvent[] {
  const json = JSON.stringify(fixture('provision-proving-ground')).replaceAll('"op":"create"', '"op":"delete"').replace('"create":10', '"delete":10');
  return JSON.parse(json) as EngineEvent[];
}

function setup(opts: { outputs?: Record<string, unknown>; config?: Record<string, string> } = {}) {
  const timeline: string[] = [];
  const stack = new FakeStack('prod', opts.outputs ?? { targetVmId: OLD_VM, targetImage: OLD_IMAGE, targetVmName: TARGET, provingGround: null }, {
    'rubicon:target.name': TARGET,
    'rubicon:target.image.publisher': 'MicrosoftWindowsServer',
    'rubicon:target.image.offer': 'WindowsServer',
    'rubicon:target.image.sku': '2022-datacenter-azure-edition',
    'rubicon:target.image.version': 'latest',
    ...opts.config,
  });
  stack.timeline = timeline;
  const machines = new FakeMachines(
    [
      { id: '/disks/ehr-prd-01_OsDisk_1', role: 'os' },
      { id: '/disks/ehr-prd-01-sqldata', role: 'sqldata' },
      { id: '/disks/ehr-prd-01-ehrfiles', role: 'ehrfiles' },
    ],
    timeline,
  );
  const driver = new PulumiAzureDriver({ stack, machines, planDir: '/var/lib/rubicon/plans', freezeServices: ["EHR App", "EHR's Queue"], now: () => NOW });
  return { stack, machines, driver, timeline };
}

async function refusalOf(p: Promise<unknown>): Promise<RubiconError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('PulumiAzureDriver.cross', () => {
  it('snapshots, arms, previews, checks the plan, ups with that plan, waits for the agent, then disarms', async () => {
    const { stack, machines, driver, timeline } = setup();
    stack.previews.push(fixture('clean-vm-replace'), allSame());
    stack.onUp = (s) => ({ ...s.outputsValue, targetVmId: NEW_VM, targetImage: NEW_IMAGE });
    const result = await driver.cross(prodPermit(), NOW);
    expect(result).toEqual({ image: NEW_IMAGE, completedAt: NOW.toISOString() });
    expect(timeline).toEqual([
      `disksOf ${OLD_VM}`,
      'snapshot rubicon-run-7-os',
      'snapshot rubicon-run-7-sqldata',
      'snapshot rubicon-run-7-ehrfiles',
      'setConfig rubicon:target.image.publisher',
      'setConfig rubicon:target.image.offer',
      'setConfig rubicon:target.image.sku',
      'setConfig rubicon:target.image.version',
      'setConfig rubicon:permit',
      'setConfig rubicon:proofSetHash',
      'preview',
      'up',
      `waitForVmAgent ${NEW_VM}`,
      'removeConfig rubicon:permit',
      'removeConfig rubicon:proofSetHash',
      'preview',
      'up',
    ]);
    const ups = stack.calls.filter((c) => c.op === 'up');
    expect(ups[0]!.args).toEqual(['/var/lib/rubicon/plans/run-7.crossing.plan.json']);
    expect(stack.calls.find((c) => c.op === 'preview')!.args).toEqual(['/var/lib/rubicon/plans/run-7.crossing.plan.json']);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2025-datacenter-azure-edition');
    expect(stack.config.has('rubicon:permit')).toBe(false);
    expect(machines.snapshots.get('rubicon-run-7-sqldata')?.tags).toMatchObject({ 'rubicon-run': 'run-7', 'rubicon-role': 'rollback' });
  });

  it('refuses an unexpected disk replace: no up, and the stack is disarmed', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('unexpected-disk-replace'));
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('ehr-prd-01Disk-sqldata');
    expect(e.message).toContain('a disk (data or rollback)');
    expect(e.hint).toContain('Nothing was changed');
    expect(stack.ops()).not.toContain('up');
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2022-datacenter-azure-edition');
    expect(stack.config.has('rubicon:permit')).toBe(false);
    expect(stack.config.has('rubicon:proofSetHash')).toBe(false);
  });

  it('refuses a plan that deletes the vault', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('vault-delete'));
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('vaultContainer');
    expect(e.message).toContain('the backup vault');
    expect(stack.ops()).not.toContain('up');
  });

  it('refuses an expired permit before touching anything', async () => {
    const { stack, machines, driver } = setup();
    const e = await refusalOf(driver.cross(prodPermit(), new Date('2026-03-01T12:00:00Z')));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.message).toContain('expired');
    expect(stack.calls).toEqual([]);
    expect(machines.log).toEqual([]);
  });

  it('refuses a permit for another target', async () => {
    const { driver } = setup();
    const e = await refusalOf(driver.cross(permit({ target: 'ehr-tst-01' }), NOW));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.message).toContain('is for target ehr-tst-01');
  });

  it('is idempotent: after a completed rebuild it only waits for the agent', async () => {
    const { driver, timeline } = setup({ outputs: { targetVmId: NEW_VM, targetImage: NEW_IMAGE } });
    await driver.cross(prodPermit(), NOW);
    expect(timeline).toEqual([`waitForVmAgent ${NEW_VM}`, 'removeConfig rubicon:permit', 'removeConfig rubicon:proofSetHash']);
  });

  it('resumes after a crash that deleted the old VM: a plain create of the VM is accepted', async () => {
    const { stack, driver } = setup();
    const resumed = JSON.parse(
      JSON.stringify(fixture('clean-vm-replace').filter((e) => !['delete-replaced', 'replace'].includes(e.resourcePreEvent?.metadata.op ?? '')))
        .replaceAll('"op":"create-replacement"', '"op":"create"')
        .replace('"replace":1', '"create":1'),
    ) as EngineEvent[];
    stack.previews.push(resumed, allSame());
    stack.onUp = (s) => ({ ...s.outputsValue, targetVmId: NEW_VM, targetImage: NEW_IMAGE });
    await expect(driver.cross(prodPermit(), NOW)).resolves.toMatchObject({ image: NEW_IMAGE });
  });

  it('reports a failed up and stays armed so a second call can finish', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('clean-vm-replace'));
    stack.upResult = 'failed';
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('"failed"');
    expect(stack.config.has('rubicon:permit')).toBe(true);
  });
});

describe('PulumiAzureDriver: proving ground, freeze, rollback', () => {
  it('provisions through the config toggle, accepting only creates under the proving ground; idempotent per run', async () => {
    const { stack, machines, driver } = setup();
    stack.previews.push(fixture('provision-proving-ground'));
    stack.onUp = (s) => ({ ...s.outputsValue, provingGround: { vmId: '/vm/pg', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': NOW.toISOString() } } });
    const handle = await driver.provisionProvingGround('run-7');
    expect(handle.name).toBe('pg-prod');
    expect(handle.host!.kind).toBe('azure-run-command');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('true');
    expect(stack.config.get('rubicon:provingGround.runId')).toBe('run-7');
    expect(stack.config.get('rubicon:provingGround.createdAt')).toBe(NOW.toISOString());
    expect(stack.calls.find((c) => c.op === 'up')?.args).toEqual(['/var/lib/rubicon/plans/run-7.provision.plan.json']);
    expect(machines.log).toContain('waitForVmAgent /vm/pg');

    const before = stack.calls.length;
    const again = await driver.provisionProvingGround('run-7');
    expect(again.name).toBe('pg-prod');
    expect(stack.calls.slice(before).map((c) => c.op)).toEqual([]);

    const e = await refusalOf(driver.provisionProvingGround('run-8'));
    expect(e.message).toContain('already has a proving ground for run run-7');
  });

  it('refuses a provisioning plan that would touch the target, and switches the toggle back off', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('clean-vm-replace'));
    const e = await refusalOf(driver.provisionProvingGround('run-7'));
    expect(e.message).toContain('ehr-prd-01Vm');
    expect(stack.ops()).not.toContain('up');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('false');
  });

  it('destroys only its own run\'s proving ground, accepting only deletes under it', async () => {
    const { stack, driver } = setup({
      outputs: { targetVmId: OLD_VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg', tags: {} } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-7' },
    });
    await driver.destroyProvingGround('run-6');
    expect(stack.calls).toEqual([]);
    stack.previews.push(teardownEvents());
    stack.onUp = (s) => ({ ...s.outputsValue, provingGround: null });
    await driver.destroyProvingGround('run-7');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('false');
    expect(stack.ops()).toEqual(['setConfig', 'preview', 'up']);
    await driver.destroyProvingGround('run-7');
    expect(stack.ops()).toEqual(['setConfig', 'preview', 'up']);
  });

  it('freezes and thaws the application services through the target host, quoting names', async () => {
    const { machines, driver } = setup();
    await driver.freeze('run-7');
    await driver.thaw('run-7');
    const host = machines.hosts.get(OLD_VM)!;
    expect(host.runs.map((r) => r.args.at(-1))).toEqual([
      "$ErrorActionPreference='Stop'; Stop-Service -Name 'EHR App','EHR''s Queue' -Force",
      "$ErrorActionPreference='Stop'; Start-Service -Name 'EHR App','EHR''s Queue'",
    ]);
    host.exitCode = 1;
    await expect(driver.freeze('run-7')).rejects.toThrow(/Stop-Service on ehr-prd-01 failed \(exit 1\)/);
  });

  it('takes and releases a rollback point of every disk', async () => {
    const { machines, driver } = setup();
    const point = await driver.createRollbackPoint('run-7');
    expect(point).toEqual({
      id: 'rollback.run-7',
      kind: 'azure-disk-snapshot',
      location: '/snapshots/rubicon-run-7-os,/snapshots/rubicon-run-7-sqldata,/snapshots/rubicon-run-7-ehrfiles',
      createdAt: NOW.toISOString(),
    });
    await driver.releaseRollbackPoint(point);
    expect(machines.snapshots.size).toBe(0);
  });

  it('refuses a rollback point without an OS disk', async () => {
    const { machines, driver } = setup();
    machines.disks.splice(0, 1);
    await expect(driver.createRollbackPoint('run-7')).rejects.toThrow(/no OS disk/);
  });

  it('reports the current image from the stack outputs, and refuses when there are none', async () => {
    expect(await setup().driver.currentImage()).toBe(OLD_IMAGE);
    await expect(setup({ outputs: {} }).driver.currentImage()).rejects.toThrow(/no targetImage output/);
  });
});

describe('reap over driver stacks', () => {
  it('destroys the expired proving ground and keeps the young one', async () => {
    const old = setup({
      outputs: { targetVmId: OLD_VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': '2026-03-01T01:00:00Z' } } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-5' },
    });
    old.stack.previews.push(teardownEvents());
    old.stack.onUp = (s) => ({ ...s.outputsValue, provingGround: null });
    const young = setup({
      outputs: { targetVmId: OLD_VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg2', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': '2026-03-01T09:00:00Z' } } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-7' },
    });
    Object.defineProperty(young.stack, 'stackName', { value: 'staging' });
    const result = await reap(reapPortOver([old.driver, young.driver]), NOW);
    expect(result.destroyed).toEqual(['prod']);
    expect(result.kept.map((k) => k.name)).toEqual(['staging']);
    expect(result.failed).toEqual([]);
    expect(old.stack.config.get('rubicon:provingGround.enabled')).toBe('false');
    expect(young.stack.calls).toEqual([]);
  });
});

describe('helpers', () => {
  it('parseImageUrn and psQuote', () => {
    expect(parseImageUrn(NEW_IMAGE)).toEqual({ publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' });
    expect(parseImageUrn('a:b:c')).toBeUndefined();
    expect(parseImageUrn('a::c:d')).toBeUndefined();
    expect(psQuote("it's")).toBe("'it''s'");
    // The typographic single quotes PowerShell also accepts are doubled too (a service name is text from the runbook).
    expect(psQuote('a\u2019; Stop-Computer; \u2018')).toBe("'a\u2019\u2019; Stop-Computer; \u2018\u2018'");
  });
});
