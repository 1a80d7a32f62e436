import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import { describe, expect, it } from 'vitest';
import { classifyPlan, compareWithPreview, describePlanRefusal, replaceKeysOf, urnName, urnTypePath, urnsUnder, type PlanExpectation } from '../../src/infra/azure/classify.ts';
import { executed, fixture } from './fake-ports.ts';

const VM = 'urn:pulumi:prod::rubicon::rubicon:azure:TargetServer$azure-native:compute:VirtualMachine::targetVm';
const crossing: PlanExpectation = {
  mayReplace: [{ type: 'azure-native:compute:VirtualMachine', name: 'targetVm' }],
  requireReplace: true,
  allowCreate: true,
};

describe('classifyPlan on recorded-shape engine events', () => {
  it('accepts a clean VM replace', () => {
    const c = classifyPlan(fixture('clean-vm-replace'), crossing);
    expect(c.problems).toEqual([]);
    expect(c.unexpected).toEqual([]);
    expect(c.ok).toBe(true);
    // The engine's `keys` is empty for a nested replaceOnChanges path; the forcing path comes from detailedDiff.
    expect(c.replaces).toEqual([{ urn: VM, op: 'delete-replaced', type: 'azure-native:compute:VirtualMachine', keys: ['storageProfile.imageReference.sku'] }]);
    expect(c.summary).toEqual({ same: 13, replace: 1 });
  });

  it('refuses an unexpected disk replace, naming the disk', () => {
    const c = classifyPlan(fixture('unexpected-disk-replace'), crossing);
    expect(c.ok).toBe(false);
    const disk = 'urn:pulumi:prod::rubicon::rubicon:azure:TargetServer$azure-native:compute:Disk::targetDisk-sqldata';
    expect(c.unexpected).toEqual([
      { urn: disk, op: 'delete-replaced', type: 'azure-native:compute:Disk', reason: 'would delete a disk (data or rollback); a crossing never does' },
      { urn: disk, op: 'replace', type: 'azure-native:compute:Disk', reason: 'would replace a disk (data or rollback); a crossing never does' },
    ]);
    expect(c.replaces.map((r) => r.urn)).toEqual([disk, VM]);
    expect(c.problems).toEqual(['the plan\'s summary counts changes beyond the expected rebuild (replace: 2)']);
    expect(describePlanRefusal(c)).toContain('targetDisk-sqldata (azure-native:compute:Disk): delete-replaced');
  });

  it('refuses a delete of the vault, naming every vault resource', () => {
    const c = classifyPlan(fixture('vault-delete'), crossing);
    expect(c.ok).toBe(false);
    expect(c.unexpected.map((u) => [urnName(u.urn), u.op])).toEqual([
      ['vaultKeyVault', 'delete'],
      ['vaultWorm', 'delete'],
      ['vaultContainer', 'delete'],
      ['vaultBlobService', 'delete'],
      ['vaultAccount', 'delete'],
      ['vault', 'delete'],
    ]);
    expect(c.unexpected.find((u) => urnName(u.urn) === 'vaultContainer')?.reason).toBe('would delete the backup vault; a crossing never does');
    expect(c.unexpected.find((u) => urnName(u.urn) === 'vaultKeyVault')?.reason).toBe('would delete the Key Vault; a crossing never does');
    expect(c.problems).toEqual(['the plan\'s summary counts changes beyond the expected rebuild (delete: 6)']);
  });

  it('refuses an image change planned as an update of the VM', () => {
    const c = classifyPlan(fixture('vm-image-update'), crossing);
    expect(c.ok).toBe(false);
    expect(c.unexpected).toEqual([expect.objectContaining({ urn: VM, op: 'update', reason: expect.stringContaining('replaceOnChanges') })]);
    expect(c.problems).toContain('the plan does not rebuild azure-native:compute:VirtualMachine "targetVm": the image change is missing (is rubicon:target.image set to the permit\'s image?)');
  });

  it('refuses a plan that does not replace the expected VM', () => {
    const c = classifyPlan(fixture('clean-vm-replace'), { ...crossing, mayReplace: [{ type: 'azure-native:compute:VirtualMachine', name: 'other-01Vm' }] });
    expect(c.ok).toBe(false);
    expect(c.unexpected.map((u) => [u.urn, u.op])).toEqual([
      [VM, 'delete-replaced'],
      [VM, 'replace'],
    ]);
    expect(c.problems[0]).toContain('does not rebuild azure-native:compute:VirtualMachine "other-01Vm"');
  });

  it('trusts the summary over a stream that hides a step', () => {
    const events = fixture('clean-vm-replace').filter((e) => e.resourcePreEvent?.metadata.urn !== VM && e.resOutputsEvent?.metadata.urn !== VM);
    const c = classifyPlan(events, { mayReplace: [] });
    expect(c.ok).toBe(false);
    expect(c.problems).toEqual(['the plan\'s summary counts changes beyond the expected rebuild (replace: 1)']);
  });

  it('refuses a stream without a summary, and engine errors', () => {
    const noSummary = fixture('clean-vm-replace').filter((e) => !e.summaryEvent);
    expect(classifyPlan(noSummary, crossing).problems).toEqual(['the event stream has no summary: the preview did not finish']);
    const withError: EngineEvent[] = [
      ...fixture('clean-vm-replace'),
      { sequence: 99, timestamp: 1767261700, diagnosticEvent: { urn: VM, message: 'OperationNotAllowed: quota exceeded\n', color: 'never', severity: 'error' } },
    ];
    const c = classifyPlan(withError, crossing);
    expect(c.ok).toBe(false);
    expect(c.problems).toEqual([`the engine reported an error on ${VM}: OperationNotAllowed: quota exceeded`]);
  });

  it('accepts provisioning the proving ground only when creates under it are expected', () => {
    const events = fixture('provision-proving-ground');
    expect(classifyPlan(events, { mayCreateUnder: 'rubicon:azure:ProvingGround' }).ok).toBe(true);
    const strict = classifyPlan(events, {});
    expect(strict.ok).toBe(false);
    expect(strict.unexpected).toHaveLength(11);
    expect(classifyPlan(events, { mayCreateUnder: 'rubicon:azure:TargetServer' }).ok).toBe(false);
  });

  it('an all-same plan passes the empty expectation; the crossing expectation requires the replace', () => {
    const same = fixture('clean-vm-replace').filter((e) => !(e.resourcePreEvent?.metadata.urn === VM) && !e.summaryEvent);
    same.push({ sequence: 100, timestamp: 1767261700, summaryEvent: { maybeCorrupt: false, durationSeconds: 3, resourceChanges: { same: 14 }, policyPacks: {} } });
    expect(classifyPlan(same, {}).ok).toBe(true);
    expect(classifyPlan(same, crossing).ok).toBe(false);
  });

  it('reads URNs', () => {
    expect(urnName(VM)).toBe('targetVm');
    expect(urnTypePath(VM)).toEqual(['rubicon:azure:TargetServer', 'azure-native:compute:VirtualMachine']);
  });

  it('replaceKeysOf prefers the engine keys and falls back to update-replace paths', () => {
    expect(replaceKeysOf({ keys: ['diskName'] })).toEqual(['diskName']);
    expect(replaceKeysOf({ keys: [], detailedDiff: { 'a.b': { diffKind: 'update-replace' }, c: { diffKind: 'update' }, d: { diffKind: 'delete-replace' } } })).toEqual(['a.b', 'd']);
  });

  it('finds the proving ground\'s deletes for a targeted teardown, ignoring other pending changes', () => {
    const survey = fixture('teardown-with-pending-update');
    const urns = urnsUnder(survey, 'rubicon:azure:ProvingGround', ['delete']);
    expect(urns).toHaveLength(11);
    expect(urns.every((u) => u.includes('rubicon:azure:ProvingGround'))).toBe(true);
    // The untargeted plan is not a clean teardown (an NSG update is pending) ...
    expect(classifyPlan(survey, { mayDeleteUnder: 'rubicon:azure:ProvingGround' }).ok).toBe(false);
    // ... the targeted one is.
    expect(classifyPlan(fixture('teardown-targeted'), { mayDeleteUnder: 'rubicon:azure:ProvingGround' }).ok).toBe(true);
  });
});

describe('compareWithPreview: up did what the preview showed', () => {
  const preview = fixture('clean-vm-replace');
  const summary = { same: 13, replace: 1 };

  it('accepts an up that executed the previewed steps', () => {
    expect(compareWithPreview(preview, executed(preview), summary)).toEqual({ ok: true, problems: [] });
  });

  it('refuses an up where a `same` stood in for the planned replace (up --plan allows it)', () => {
    const sameInstead = executed(preview).map((e) =>
      e.resourcePreEvent?.metadata.urn === VM ? { ...e, resourcePreEvent: { ...e.resourcePreEvent, metadata: { ...e.resourcePreEvent.metadata, op: 'same' as const } } } : e,
    );
    const c = compareWithPreview(preview, sameInstead, { same: 14 });
    expect(c.ok).toBe(false);
    expect(c.problems).toContain('targetVm: the preview planned delete-replaced, replace, create-replacement, but the up did nothing (same)');
    expect(c.problems).toContain('summary: the preview counted replace: 1, the up replace: 0');
  });

  it('refuses an up that did more than the preview, or reported no summary', () => {
    const extra: EngineEvent[] = [
      ...executed(preview),
      { sequence: 200, timestamp: 1767261800, resourcePreEvent: { metadata: { op: 'update', urn: 'urn:pulumi:prod::rubicon::rubicon:azure:TargetServer$azure-native:network:NetworkInterface::targetNic', type: 'azure-native:network:NetworkInterface', provider: '' } } },
    ];
    expect(compareWithPreview(preview, extra, { ...summary, update: 1 }).problems).toEqual([
      'targetNic: the up did update, which the preview did not plan',
      'summary: the preview counted update: 0, the up update: 1',
    ]);
    expect(compareWithPreview(preview, executed(preview), undefined).problems).toContain('the up reported no resource changes summary');
  });
});
