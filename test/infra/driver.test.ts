import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import { afterAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { PulumiAzureDriver, crossingOsDiskName, parseImageUrn, psQuote, reapPortOver, samePublicKey } from '../../src/infra/azure/driver.ts';
import { reap } from '../../src/infra/azure/reap.ts';
import { verifierFrom } from '../../src/trust/keys.ts';
import { verifySignedPermit } from '../../src/trust/permit.ts';
import { FakeArm, FakeMachines, FakeStack, executed, fixture } from './fake-ports.ts';
import { FORGER_KEYS, KEYS, NEW_IMAGE, NOW, OLD_IMAGE, PROOF_SET_HASH, SIGNER, permit, signed } from './builders.ts';

const TARGET = 'ehr-prd-01';
const RG = '/subscriptions/s/resourceGroups/rg-ehr-prod/providers/Microsoft.Compute';
const VM = `${RG}/virtualMachines/ehr-prd-01`;
const OS_OLD = `${RG}/disks/ehr-prd-01_OsDisk_1_aaaa`;
const OS_NEW = `${RG}/disks/ehr-prd-01-os-run-7`;
const SQL = `${RG}/disks/ehr-prd-01-sqldata`;
const FILES = `${RG}/disks/ehr-prd-01-ehrfiles`;
const prodPermit = () => permit({ target: TARGET });

const tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-driver-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function allSame(): EngineEvent[] {
  return [{ sequence: 0, timestamp: 1767261600, summaryEvent: { maybeCorrupt: false, durationSeconds: 2, resourceChanges: { same: 14 }, policyPacks: {} } }];
}

function teardownEvents(): EngineEvent[] {
  return fixture('teardown-targeted');
}

let planDirs = 0;
function setup(opts: { outputs?: Record<string, unknown>; config?: Record<string, string>; vm?: 'old' | 'new' | 'none' } = {}) {
  const timeline: string[] = [];
  const stack = new FakeStack(
    'prod',
    opts.outputs ?? { targetVmId: VM, targetImage: OLD_IMAGE, targetVmUniqueId: 'uid-old', targetVmName: TARGET, dataDiskIds: [SQL, FILES], provingGround: null },
    {
      'rubicon:target.name': TARGET,
      'rubicon:resourceGroupName': 'rg-ehr-prod',
      'rubicon:target.image.publisher': 'MicrosoftWindowsServer',
      'rubicon:target.image.offer': 'WindowsServer',
      'rubicon:target.image.sku': '2022-datacenter-azure-edition',
      'rubicon:target.image.version': 'latest',
      'rubicon:permitPublicKey': KEYS.publicKeyPem,
      ...opts.config,
    },
  );
  stack.timeline = timeline;
  const machines = new FakeMachines(
    [
      { id: OS_OLD, role: 'os' },
      { id: SQL, role: 'sqldata' },
      { id: FILES, role: 'ehrfiles' },
    ],
    timeline,
  );
  const arm = new FakeArm(timeline);
  if ((opts.vm ?? 'old') === 'old') arm.vms.set(VM, { id: VM, uniqueId: 'uid-old', image: OLD_IMAGE, osDiskId: OS_OLD, dataDiskIds: [SQL, FILES] });
  if (opts.vm === 'new') arm.vms.set(VM, { id: VM, uniqueId: 'uid-new', image: NEW_IMAGE, osDiskId: OS_NEW, dataDiskIds: [SQL, FILES] });
  arm.disks.set(OS_OLD, { id: OS_OLD, attachedTo: VM, tags: {} });
  const logs: string[] = [];
  const planDir = path.join(tmp, `plans-${++planDirs}`, 'nested');
  const driver = new PulumiAzureDriver({
    stack,
    machines,
    arm,
    signer: SIGNER,
    planDir,
    freezeServices: ['EHR App', "EHR's Queue"],
    now: () => NOW,
    log: (level, message) => logs.push(`${level}: ${message}`),
  });
  /** What a real up of the crossing does in Azure: a new VM (same ARM id, new unique id) with the new image; the old OS disk detached. */
  const rebuild = () => {
    stack.onUp = (s) => {
      if (!s.config.has('rubicon:permit')) return s.outputsValue;
      arm.vms.set(VM, { id: VM, uniqueId: 'uid-new', image: NEW_IMAGE, osDiskId: OS_NEW, dataDiskIds: [SQL, FILES] });
      arm.disks.set(OS_OLD, { id: OS_OLD, tags: arm.disks.get(OS_OLD)?.tags ?? {} });
      return { ...s.outputsValue, targetVmId: VM, targetImage: NEW_IMAGE, targetVmUniqueId: 'uid-new' };
    };
  };
  return { stack, machines, arm, driver, timeline, logs, planDir, rebuild };
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

const disarmed = (stack: FakeStack) => {
  expect(stack.config.has('rubicon:permit')).toBe(false);
  expect(stack.config.has('rubicon:proofSetHash')).toBe(false);
  expect(stack.config.has('rubicon:armed')).toBe(false);
};

describe('PulumiAzureDriver.cross', () => {
  it('locks, snapshots, arms with a signed permit, previews, lifts only the VM lock, ups, confirms a new VM, disarms, locks, re-protects, tags the old OS disk', async () => {
    const { stack, machines, arm, driver, timeline, planDir, rebuild } = setup();
    rebuild();
    stack.previews.push(fixture('clean-vm-replace'), allSame());
    const seenDuringUp: { vmLocked: boolean; disksLocked: boolean; permitValid: boolean }[] = [];
    const onUp = stack.onUp;
    stack.onUp = (s) => {
      if (s.config.has('rubicon:permit')) {
        const sp = JSON.parse(s.config.get('rubicon:permit')!) as unknown;
        const check = verifySignedPermit(sp, verifierFrom(s.config.get('rubicon:permitPublicKey')!), { image: NEW_IMAGE, target: TARGET, now: NOW, proofSetHash: s.config.get('rubicon:proofSetHash')! });
        seenDuringUp.push({ vmLocked: arm.locks.has(VM), disksLocked: [OS_OLD, SQL, FILES].every((d) => arm.locks.has(d)), permitValid: check.valid });
      }
      return onUp(s);
    };
    const result = await driver.cross(prodPermit(), NOW);
    // The VM ARM confirmed, for the landing to check that the target's transport reaches it.
    expect(result).toEqual({ image: NEW_IMAGE, completedAt: NOW.toISOString(), machine: { resourceId: VM, uniqueId: 'uid-new' } });
    expect(timeline).toEqual([
      `lock ${VM}`,
      `lock ${OS_OLD}`,
      `lock ${SQL}`,
      `lock ${FILES}`,
      `disksOf ${VM}`,
      'snapshot rubicon-run-7-os',
      'snapshot rubicon-run-7-sqldata',
      'snapshot rubicon-run-7-ehrfiles',
      'setConfig rubicon:armed',
      'setConfig rubicon:target.image.publisher',
      'setConfig rubicon:target.image.offer',
      'setConfig rubicon:target.image.sku',
      'setConfig rubicon:target.image.version',
      'removeConfig rubicon:target.restoreFromDisk',
      'setConfig rubicon:target.osDiskName',
      'setConfig rubicon:permit',
      'setConfig rubicon:proofSetHash',
      'preview',
      `unlock ${VM}`,
      'up',
      `waitForVmAgent ${VM}`,
      'removeConfig rubicon:permit',
      'removeConfig rubicon:proofSetHash',
      'removeConfig rubicon:armed',
      `lock ${VM}`,
      `lock ${OS_NEW}`,
      'preview',
      'up',
      `tag ${OS_OLD}`,
    ]);
    // During the up: the permit in the stack config verified, the VM unlocked, every disk still locked.
    expect(seenDuringUp).toEqual([{ vmLocked: false, disksLocked: true, permitValid: true }]);
    expect(stack.calls.find((c) => c.op === 'preview')!.args).toEqual([path.join(planDir, 'run-7.crossing.plan.json')]);
    expect(stack.calls.filter((c) => c.op === 'up')[0]!.args).toEqual([path.join(planDir, 'run-7.crossing.plan.json')]);
    // The plan folder exists (pulumi writes the plan with os.Create, which creates no folders).
    expect(existsSync(planDir)).toBe(true);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2025-datacenter-azure-edition');
    expect(stack.config.get('rubicon:target.osDiskName')).toBe(crossingOsDiskName(TARGET, 'run-7'));
    disarmed(stack);
    expect([VM, OS_NEW, OS_OLD, SQL, FILES].every((id) => arm.locks.has(id))).toBe(true);
    expect(arm.disks.get(OS_OLD)?.tags).toMatchObject({ 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk', 'rubicon-retired-image': OLD_IMAGE });
    expect(machines.snapshots.get('rubicon-run-7-sqldata')?.tags).toMatchObject({ 'rubicon-run': 'run-7', 'rubicon-role': 'rollback' });
  });

  it('refuses an unexpected disk replace: no up, the VM never unlocked, the stack disarmed', async () => {
    const { stack, arm, driver, timeline } = setup();
    stack.previews.push(fixture('unexpected-disk-replace'));
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('targetDisk-sqldata');
    expect(e.message).toContain('a disk (data or rollback)');
    expect(e.hint).toContain('Nothing was changed');
    expect(stack.ops()).not.toContain('up');
    expect(timeline).not.toContain(`unlock ${VM}`);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2022-datacenter-azure-edition');
    expect(stack.config.has('rubicon:target.osDiskName')).toBe(false);
    disarmed(stack);
    expect(arm.locks.has(VM)).toBe(true);
  });

  it('refuses a plan that deletes the vault', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('vault-delete'));
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('vaultContainer');
    expect(e.message).toContain('the backup vault');
    expect(stack.ops()).not.toContain('up');
  });

  it('refuses an expired permit or one for another target before touching anything', async () => {
    for (const [p, text] of [
      [prodPermit(), 'expired'],
      [permit({ target: 'ehr-tst-01' }), 'is for target ehr-tst-01'],
    ] as const) {
      const { stack, machines, arm, driver } = setup();
      const e = await refusalOf(driver.cross(p, text === 'expired' ? new Date('2026-03-01T12:00:00Z') : NOW));
      expect(e.code).toBe('PERMIT_INVALID');
      expect(e.message).toContain(text);
      expect(stack.calls).toEqual([]);
      expect(machines.log).toEqual([]);
      expect(arm.log).toEqual([]);
    }
  });

  it('refuses to cross for a stack that trusts another key (or none): KEY_MISMATCH, exit 3, nothing touched', async () => {
    for (const key of [FORGER_KEYS.publicKeyPem, undefined]) {
      const { stack, arm, driver } = setup({ config: key ? { 'rubicon:permitPublicKey': key } : {} });
      if (!key) stack.config.delete('rubicon:permitPublicKey');
      const e = await refusalOf(driver.cross(prodPermit(), NOW));
      expect(e.code).toBe('KEY_MISMATCH');
      expect(e.exitCode).toBe(3);
      expect(stack.calls).toEqual([]);
      expect(arm.log).toEqual([]);
    }
    expect(samePublicKey(KEYS.publicKeyPem.replace(/\n/g, '\r\n'), KEYS.publicKeyPem)).toBe(true);
  });

  it('checks the permit against the proof-set hash the caller recomputed from the journal', async () => {
    const { stack, driver } = setup();
    const e = await refusalOf(driver.cross(prodPermit(), NOW, { proofSetHash: 'e'.repeat(64) }));
    expect(e.code).toBe('PERMIT_INVALID');
    expect(e.message).toContain('different set of proofs');
    expect(stack.calls).toEqual([]);
  });

  // Bypass 3: a failed `up` leaves nothing armed.
  it.each([
    ['an up that ends "failed"', (s: FakeStack) => (s.upResult = 'failed'), '"failed"'],
    ['an up that throws (CLI crash, cancel)', (s: FakeStack) => (s.upThrows = new Error('pulumi up was cancelled')), 'cancelled'],
  ])('disarms and locks again after %s', async (_label, breakIt, text) => {
    const { stack, arm, driver } = setup();
    stack.previews.push(fixture('clean-vm-replace'));
    breakIt(stack);
    const e = await driver.cross(prodPermit(), NOW).catch((x: unknown) => x as Error);
    expect(String((e as Error).message)).toContain(text);
    disarmed(stack);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2022-datacenter-azure-edition');
    expect(arm.locks.has(VM)).toBe(true);
  });

  it('a crossing whose up did not really replace the VM is a failure: a `same` in place of the replace', async () => {
    const { stack, arm, driver } = setup();
    stack.previews.push(fixture('clean-vm-replace'));
    stack.upEvents = executed(fixture('clean-vm-replace')).map((e) =>
      e.resourcePreEvent?.metadata.type === 'azure-native:compute:VirtualMachine' ? { ...e, resourcePreEvent: { ...e.resourcePreEvent, metadata: { ...e.resourcePreEvent.metadata, op: 'same' as const } } } : e,
    );
    stack.upSummary = { same: 14 };
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('did not do what the classified preview showed');
    expect(e.message).toContain('targetVm: the preview planned delete-replaced, replace, create-replacement');
    disarmed(stack);
    expect(arm.locks.has(VM)).toBe(true);
  });

  it('a crossing after which ARM still shows the old VM (same unique id) is a failure', async () => {
    const { stack, driver } = setup();
    stack.previews.push(fixture('clean-vm-replace'));
    stack.onUp = (s) => ({ ...s.outputsValue, targetImage: NEW_IMAGE });
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('the crossing did not really replace the VM');
    expect(e.message).toContain('ARM says the VM runs MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest');
    expect(e.message).toContain("unique id is still uid-old");
    disarmed(stack);
  });

  it('a failure to lock again after the crossing fails the crossing (never only a warning)', async () => {
    const { stack, arm, driver, rebuild } = setup();
    rebuild();
    stack.previews.push(fixture('clean-vm-replace'));
    arm.lockFails.add(OS_NEW);
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('the VM was rebuilt, but locking the target again failed');
    expect(e.hint).toContain('run the same Rubicon command again');
    disarmed(stack);
  });

  it('a failure to re-protect fails the crossing too', async () => {
    const { stack, driver, rebuild } = setup();
    rebuild();
    stack.previews.push(fixture('clean-vm-replace'), fixture('vm-image-update'));
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain("turning Pulumi's protect back on failed");
  });

  // Bypass 3, crash: "resume disarms first".
  it('a new driver over a stack left armed by a crash disarms it and locks again before anything else', async () => {
    const armed = { runId: 'run-7', at: NOW.toISOString(), previousImage: OLD_IMAGE, previousOsDiskId: OS_OLD, previousVmUniqueId: 'uid-old' };
    const { stack, arm, driver, timeline, logs } = setup({
      config: {
        'rubicon:armed': JSON.stringify(armed),
        'rubicon:permit': JSON.stringify(signed({ target: TARGET })),
        'rubicon:proofSetHash': PROOF_SET_HASH,
        'rubicon:target.image.sku': '2025-datacenter-azure-edition',
        'rubicon:target.osDiskName': crossingOsDiskName(TARGET, 'run-7'),
      },
    });
    expect(await driver.currentImage()).toBe(OLD_IMAGE);
    disarmed(stack);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2022-datacenter-azure-edition');
    expect(stack.config.has('rubicon:target.osDiskName')).toBe(false);
    expect(timeline.slice(0, 3)).toEqual(['removeConfig rubicon:permit', 'removeConfig rubicon:proofSetHash', 'setConfig rubicon:target.image.publisher']);
    expect(arm.locks.has(VM)).toBe(true);
    expect(logs.some((l) => l.includes('was left armed by run run-7'))).toBe(true);
  });

  it('resumes after a crash that deleted the old VM: disarms first, then a plain create of the VM is accepted', async () => {
    const armed = { runId: 'run-7', at: NOW.toISOString(), previousImage: OLD_IMAGE, previousOsDiskId: OS_OLD, previousVmUniqueId: 'uid-old' };
    const { stack, arm, driver, rebuild } = setup({ vm: 'none', config: { 'rubicon:armed': JSON.stringify(armed), 'rubicon:permit': '{}' } });
    const resumed = JSON.parse(
      JSON.stringify(fixture('clean-vm-replace').filter((e) => !['delete-replaced', 'replace'].includes(e.resourcePreEvent?.metadata.op ?? '')))
        .replaceAll('"op":"create-replacement"', '"op":"create"')
        .replace('"replace":1', '"create":1'),
    ) as EngineEvent[];
    rebuild();
    stack.previews.push(resumed, allSame());
    await expect(driver.cross(prodPermit(), NOW)).resolves.toMatchObject({ image: NEW_IMAGE });
    // The data disks stayed locked all along, from the stack outputs while the VM was gone.
    expect(arm.log.indexOf(`lock ${SQL}`)).toBeLessThan(arm.log.indexOf('up'));
    expect(arm.disks.get(OS_OLD)?.tags['rubicon-role']).toBe('rollback-os-disk');
    disarmed(stack);
  });

  it('refuses when the VM is gone and no interrupted crossing explains it', async () => {
    const { stack, driver } = setup({ vm: 'none' });
    const e = await refusalOf(driver.cross(prodPermit(), NOW));
    expect(e.message).toContain('does not exist in Azure');
    expect(stack.ops()).not.toContain('preview');
  });

  it('is idempotent: after a completed rebuild it confirms with ARM, waits, disarms, locks and re-protects', async () => {
    const { stack, driver, timeline } = setup({ vm: 'new', outputs: { targetVmId: VM, targetImage: NEW_IMAGE, targetVmUniqueId: 'uid-new', dataDiskIds: [SQL, FILES] } });
    stack.previews.push(allSame());
    await driver.cross(prodPermit(), NOW);
    expect(timeline).toContain(`waitForVmAgent ${VM}`);
    expect(timeline.slice(-2)).toEqual(['preview', 'up']);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2025-datacenter-azure-edition');
  });
});

describe('PulumiAzureDriver: proving ground, freeze, rollback', () => {
  it('locks the target, provisions through the config toggle accepting only creates under the proving ground; idempotent per run', async () => {
    const { stack, machines, arm, driver, planDir } = setup();
    stack.previews.push(fixture('provision-proving-ground'));
    stack.onUp = (s) => ({ ...s.outputsValue, provingGround: { vmId: '/vm/pg', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': NOW.toISOString() } } });
    const handle = await driver.provisionProvingGround('run-7');
    expect(arm.locks.has(VM) && arm.locks.has(SQL)).toBe(true);
    expect(handle.name).toBe('pg-prod');
    expect(handle.host!.kind).toBe('azure-run-command');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('true');
    expect(stack.config.get('rubicon:provingGround.runId')).toBe('run-7');
    expect(stack.config.get('rubicon:provingGround.createdAt')).toBe(NOW.toISOString());
    expect(stack.calls.find((c) => c.op === 'up')?.args).toEqual([path.join(planDir, 'run-7.provision.plan.json')]);
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
    expect(e.message).toContain('targetVm');
    expect(stack.ops()).not.toContain('up');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('false');
  });

  it("destroys only its own run's proving ground, with an up targeted at its resources", async () => {
    const { stack, driver } = setup({
      outputs: { targetVmId: VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg', tags: {} } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-7' },
    });
    await driver.destroyProvingGround('run-6');
    expect(stack.calls).toEqual([]);
    stack.previews.push(fixture('teardown-with-pending-update'), teardownEvents());
    stack.onUp = (s) => ({ ...s.outputsValue, provingGround: null });
    await driver.destroyProvingGround('run-7');
    expect(stack.config.get('rubicon:provingGround.enabled')).toBe('false');
    expect(stack.ops()).toEqual(['setConfig', 'preview', 'preview', 'up']);
    const [, targeted, up] = stack.calls.filter((c) => c.op !== 'setConfig');
    const urns = targeted!.args[1] as string[];
    expect(urns).toHaveLength(11);
    expect(urns.every((u) => u.includes('rubicon:azure:ProvingGround'))).toBe(true);
    expect(up!.args[1]).toEqual(urns);
    await driver.destroyProvingGround('run-7');
    expect(stack.ops()).toEqual(['setConfig', 'preview', 'preview', 'up']);
  });

  it('freezes and thaws through the target host, quoting names, lifting only the VM lock around each Run Command', async () => {
    const { machines, arm, driver } = setup();
    await driver.provisionProvingGround('run-7').catch(() => undefined); // places the locks
    arm.log.length = 0;
    await driver.freeze('run-7');
    await driver.thaw('run-7');
    const host = machines.hosts.get(VM)!;
    expect(host.runs.map((r) => r.args.at(-1))).toEqual([
      "$ErrorActionPreference='Stop'; Stop-Service -Name 'EHR App','EHR''s Queue' -Force",
      "$ErrorActionPreference='Stop'; Start-Service -Name 'EHR App','EHR''s Queue'",
    ]);
    expect(arm.log).toEqual([`unlock ${VM}`, `lock ${VM}`, `unlock ${VM}`, `lock ${VM}`]);
    expect(arm.locks.has(SQL) && arm.locks.has(VM)).toBe(true);
    host.exitCode = 1;
    await expect(driver.freeze('run-7')).rejects.toThrow(/Stop-Service on ehr-prd-01 failed \(exit 1\)/);
    expect(arm.locks.has(VM)).toBe(true);
  });

  it('takes a rollback point of every disk, and releases it with the retired OS disk (unlocked, detached only)', async () => {
    const { machines, arm, driver } = setup();
    const point = await driver.createRollbackPoint('run-7');
    expect(point).toEqual({ id: 'rollback.run-7', kind: 'azure-disk-snapshot', location: '/snapshots/rubicon-run-7-os,/snapshots/rubicon-run-7-sqldata,/snapshots/rubicon-run-7-ehrfiles', createdAt: NOW.toISOString() });
    const RETIRED = `${RG}/disks/retired`;
    const REUSED = `${RG}/disks/reused`;
    arm.disks.set(RETIRED, { id: RETIRED, tags: { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' } });
    arm.disks.set(REUSED, { id: REUSED, attachedTo: VM, tags: { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' } });
    await arm.lock(RETIRED, '');
    await arm.lock(REUSED, '');
    await driver.releaseRollbackPoint(point);
    expect(machines.snapshots.size).toBe(0);
    expect(arm.disks.has(RETIRED)).toBe(false);
    expect(arm.disks.has(REUSED)).toBe(true);
    expect(arm.locks.has(REUSED)).toBe(true);
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

describe('PulumiAzureDriver.rollback', () => {
  /** After run-7's crossing: the new VM runs NEW_IMAGE; the retired OS disk is detached, locked and tagged. */
  function crossed() {
    const t = setup({ vm: 'new', outputs: { targetVmId: VM, targetImage: NEW_IMAGE, targetVmUniqueId: 'uid-new', dataDiskIds: [SQL, FILES] } });
    t.arm.disks.set(OS_OLD, { id: OS_OLD, tags: { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' } });
    t.arm.locks.add(OS_OLD);
    t.stack.onUp = (s) => {
      if (!s.config.has('rubicon:permit')) return s.outputsValue;
      const disk = s.config.get('rubicon:target.restoreFromDisk')!;
      t.arm.vms.set(VM, { id: VM, uniqueId: 'uid-back', image: `disk:${disk.toLowerCase()}`, osDiskId: disk, dataDiskIds: [SQL, FILES] });
      return { ...s.outputsValue, targetImage: `disk:${disk.toLowerCase()}`, targetVmUniqueId: 'uid-back' };
    };
    return t;
  }

  it('rebuilds the VM through Pulumi from the OS disk the crossing retired, signed, then locks and re-protects', async () => {
    const { stack, arm, driver } = crossed();
    stack.previews.push(fixture('clean-vm-replace'), allSame());
    let permitDuringUp: unknown;
    const onUp = stack.onUp;
    stack.onUp = (s) => {
      if (s.config.has('rubicon:permit')) permitDuringUp = JSON.parse(s.config.get('rubicon:permit')!);
      return onUp(s);
    };
    const r = await driver.rollback('run-7', NOW);
    expect(r).toMatchObject({ runId: 'run-7', from: 'retired-os-disk', diskId: OS_OLD, image: `disk:${OS_OLD.toLowerCase()}` });
    expect(stack.config.get('rubicon:target.restoreFromDisk')).toBe(OS_OLD);
    const check = verifySignedPermit(permitDuringUp, verifierFrom(KEYS.publicKeyPem), { image: r.image, target: TARGET, now: NOW, proofSetHash: (permitDuringUp as { permit: { proofSetHash: string } }).permit.proofSetHash });
    expect(check.valid).toBe(true);
    disarmed(stack);
    expect(arm.locks.has(VM) && arm.locks.has(OS_OLD)).toBe(true);
    // The OS disk of the failed rebuild is kept too, as a rollback asset of the rollback.
    expect(arm.disks.get(OS_NEW)?.tags).toMatchObject({ 'rubicon-run': 'rollback-run-7', 'rubicon-role': 'rollback-os-disk' });
  });

  it('uses the OS-disk snapshot when the retired disk is gone', async () => {
    const { stack, arm, driver } = crossed();
    arm.disks.delete(OS_OLD);
    arm.snapshots.set(`${RG}/snapshots/rubicon-run-7-os`, { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback', 'rubicon-disk': 'os' });
    stack.previews.push(fixture('clean-vm-replace'), allSame());
    const r = await driver.rollback('run-7', NOW);
    expect(r.from).toBe('os-disk-snapshot');
    expect(r.diskId).toBe(`${RG}/disks/ehr-prd-01-os-rollback-run-7`);
    expect(arm.log).toContain(`createDiskFromSnapshot ${RG}/snapshots/rubicon-run-7-os`);
  });

  it('refuses when the run left no rollback point, naming the run, and changes nothing', async () => {
    const { stack, driver } = crossed();
    const e = await refusalOf(driver.rollback('run-9', NOW));
    expect(e.message).toContain('No rollback point of run run-9');
    expect(stack.calls).toEqual([]);
  });

  it('a refused rollback plan leaves the target as it was (disarmed, restoreFromDisk not set)', async () => {
    const { stack, driver } = crossed();
    stack.previews.push(fixture('unexpected-disk-replace'));
    await refusalOf(driver.rollback('run-7', NOW));
    disarmed(stack);
    expect(stack.config.has('rubicon:target.restoreFromDisk')).toBe(false);
  });
});

describe('reap over driver stacks', () => {
  it('destroys the expired proving ground even with other changes pending in its stack, and keeps the young one', async () => {
    const old = setup({
      outputs: { targetVmId: VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': '2026-03-01T01:00:00Z' } } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-5' },
    });
    old.stack.previews.push(fixture('teardown-with-pending-update'), teardownEvents());
    old.stack.onUp = (s) => ({ ...s.outputsValue, provingGround: null });
    const young = setup({
      outputs: { targetVmId: VM, targetImage: OLD_IMAGE, provingGround: { vmId: '/vm/pg2', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': '2026-03-01T09:00:00Z' } } },
      config: { 'rubicon:provingGround.enabled': 'true', 'rubicon:provingGround.runId': 'run-7' },
    });
    Object.defineProperty(young.stack, 'stackName', { value: 'staging' });
    const result = await reap(reapPortOver([old.driver, young.driver]), NOW);
    expect(result.destroyed).toEqual(['prod']);
    expect(result.kept.map((k) => k.name)).toEqual(['staging']);
    expect(result.failed).toEqual([]);
    expect(old.stack.config.get('rubicon:provingGround.enabled')).toBe('false');
    expect(old.logs.some((l) => l.includes('other pending changes; the teardown leaves them alone'))).toBe(true);
    expect(young.stack.calls).toEqual([]);
  });
});

describe('PulumiAzureDriver.scopeOfDestruction (docs/coverage.md)', () => {
  it('the OS disk is destroyed; the data disks from the stack outputs are kept, not mapped', async () => {
    const { driver } = setup();
    const scope = await driver.scopeOfDestruction();
    expect(scope.os).toBe('windows');
    expect(scope.volumes).toEqual([
      { path: '.', label: 'the OS disk', fate: 'destroyed', capture: true },
      { path: '', label: 'data disk ehr-prd-01-sqldata (detached and kept)', fate: 'kept', capture: false },
      { path: '', label: 'data disk ehr-prd-01-ehrfiles (detached and kept)', fate: 'kept', capture: false },
    ]);
  });

  it('with the inventory\'s volumes: the OS disk is C:, the data disks are named by drive letter (kept, not mapped)', async () => {
    const { driver } = setup();
    const vols = [{ driveLetter: 'C', driveType: 'Fixed', fileSystem: 'NTFS' }, { driveLetter: 'E', driveType: 'Fixed', fileSystem: 'NTFS' }, { driveLetter: 'F', driveType: 'Fixed', fileSystem: 'ReFS' }];
    const scope = await driver.scopeOfDestruction({ targetRoot: 'C:\\', windowsVolumes: vols });
    expect(scope.volumes).toEqual([
      { path: '.', label: 'the OS disk (C:)', fate: 'destroyed', capture: true },
      { path: 'E:', label: 'the data disk E:\\ (detached and kept)', fate: 'kept', capture: false },
      { path: 'F:', label: 'the data disk F:\\ (detached and kept)', fate: 'kept', capture: false },
    ]);
  });
});

describe('helpers', () => {
  it('parseImageUrn, psQuote, crossingOsDiskName', () => {
    expect(parseImageUrn(NEW_IMAGE)).toEqual({ publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' });
    expect(parseImageUrn('a:b:c')).toBeUndefined();
    expect(parseImageUrn('a::c:d')).toBeUndefined();
    expect(psQuote("it's")).toBe("'it''s'");
    // The typographic single quotes PowerShell also accepts are doubled too (a service name is text from the runbook).
    expect(psQuote('a\u2019; Stop-Computer; \u2018')).toBe("'a\u2019\u2019; Stop-Computer; \u2018\u2018'");
    expect(crossingOsDiskName('ehr-prd-01', 'run 7/x')).toBe('ehr-prd-01-os-run-7-x');
  });
});
