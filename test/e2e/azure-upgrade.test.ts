import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/core/events.ts';
import type { Host } from '../../src/hosts/host.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import { infraKinds, pulumiAzureInfraKind } from '../../src/compose/root.ts';
import { startRun } from '../../src/run/run.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { generateKeyPair } from '../../src/trust/keys.ts';
import { FakeArm, FakeMachines, FakeStack, fixture } from '../infra/fake-ports.ts';
import { ROOT, removeTempDirs, tempDir, treeHashes } from './helpers.ts';

afterAll(removeTempDirs); // the estates are tens of MiB each

/**
 * A whole `rubicon upgrade` of a runbook with `infra: {kind: pulumi-azure}`:
 * the composition root selects the Azure driver (src/compose/root.ts
 * `pulumiAzureInfraKind`) and only its ports are stand-ins (the registry
 * entry is overridden with the same factory over them): an in-memory Pulumi
 * stack answering with
 * engine-event fixtures, an in-memory ARM with locks, and machines whose
 * proving ground is a local folder (so the real prover runs). The sandbox
 * target folder stands for the server: the crossing's `up` wipes it, and
 * landing must restore it from the vaults.
 *
 * The driver's notes (locks lifted and restored, disarming) must reach the
 * journal as `note` events, with their level.
 */

const IMAGE = 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest';
const OLD = 'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest';
const RG = '/subscriptions/s/resourceGroups/rg-ehr/providers/Microsoft.Compute';
const VM = `${RG}/virtualMachines/ehr-prd-01`;
const OS_OLD = `${RG}/disks/ehr-prd-01_OsDisk_1_old`;
const OS_NEW = `${RG}/disks/ehr-prd-01-os-new`;
const DATA = `${RG}/disks/ehr-prd-01-sqldata`;

function allSame(): EngineEvent[] {
  return [{ sequence: 0, timestamp: 1767261600, summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: { same: 14 }, policyPacks: {} } }];
}

describe('rubicon upgrade with the pulumi-azure driver (stand-in ports)', () => {
  it('provisions and tears down the proving ground, snapshots, signs the permit, crosses under the locks, lands, releases', async () => {
    const L = await buildSandbox(path.join(await tempDir('rubicon-azure-e2e-'), 'estate'), { patients: 150, vendorMode: 'good' });
    const sandboxInfra = /^infra:\n(?: {2}.*\n)+/m;
    const original = await readFile(L.runbook, 'utf8');
    expect(original).toMatch(sandboxInfra);
    const azureInfra = [
      'infra:',
      '  kind: pulumi-azure',
      '  stack: prod',
      `  workDir: ${JSON.stringify(path.relative(path.dirname(L.runbook), ROOT))}`,
      '  signingKey: { env: RUBICON_SIGNING_KEY }',
      '  planDir: ./plans',
      '  freezeServices: [EHRApp]',
      '',
    ].join('\n');
    const text = original.replace('name: ehr-server', 'name: ehr-prd-01').replace('image: Windows Server 2025 Datacenter', `image: ${IMAGE}`).replace(sandboxInfra, azureInfra);
    await writeFile(L.runbook, text);
    const keys = generateKeyPair();
    const env = { RUBICON_SIGNING_KEY: keys.privateKeyPem, AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001' };
    // The runbook's rules and the journal's signing key read the process environment.
    const savedEnv = { ...process.env };
    Object.assign(process.env, env);

    const stack = new FakeStack(
      'prod',
      { targetVmId: VM, targetImage: OLD, targetVmUniqueId: 'uid-old', dataDiskIds: [DATA], provingGround: null },
      {
        'rubicon:target.name': 'ehr-prd-01',
        'rubicon:resourceGroupName': 'rg-ehr',
        'rubicon:target.image.publisher': 'MicrosoftWindowsServer',
        'rubicon:target.image.offer': 'WindowsServer',
        'rubicon:target.image.sku': '2022-datacenter-azure-edition',
        'rubicon:target.image.version': 'latest',
        'rubicon:permitPublicKey': keys.publicKeyPem,
      },
    );
    const arm = new FakeArm();
    arm.vms.set(VM, { id: VM, uniqueId: 'uid-old', image: OLD, osDiskId: OS_OLD, dataDiskIds: [DATA] });
    arm.disks.set(OS_OLD, { id: OS_OLD, attachedTo: VM, tags: {} });
    const pgRoot = path.join(L.provingGround, 'azure');
    class Machines extends FakeMachines {
      override hostFor(vmId: string, name: string): Host {
        if (vmId !== '/pg/vm') return super.hostFor(vmId, name);
        mkdirSync(pgRoot, { recursive: true });
        return new LocalHost(name, pgRoot);
      }
    }
    const machines = new Machines([
      { id: OS_OLD, role: 'os' },
      { id: DATA, role: 'sqldata' },
    ]);
    const pgOn = (s: FakeStack) => s.config.get('rubicon:provingGround.enabled') === 'true';
    const pgUp = (s: FakeStack) => Boolean(s.outputsValue['provingGround']);
    stack.previewFor = (s, o) => {
      if (s.config.has('rubicon:permit')) return fixture('clean-vm-replace');
      if (pgOn(s) && !pgUp(s)) return fixture('provision-proving-ground');
      if (!pgOn(s) && pgUp(s)) return o.targets ? fixture('teardown-targeted') : fixture('teardown-with-pending-update');
      return allSame();
    };
    const vmLockedDuringCrossing: boolean[] = [];
    stack.onUp = (s) => {
      if (s.config.has('rubicon:permit')) {
        vmLockedDuringCrossing.push(arm.locks.has(VM), arm.locks.has(DATA));
        // The rebuild: a new VM with the permit's image; the server's old content is gone.
        for (const entry of readdirSync(L.target)) rmSync(path.join(L.target, entry), { recursive: true, force: true });
        arm.vms.set(VM, { id: VM, uniqueId: 'uid-new', image: IMAGE, osDiskId: OS_NEW, dataDiskIds: [DATA] });
        arm.disks.set(OS_OLD, { id: OS_OLD, tags: {} });
        return { ...s.outputsValue, targetImage: IMAGE, targetVmUniqueId: 'uid-new' };
      }
      if (pgOn(s)) return { ...s.outputsValue, provingGround: { vmId: '/pg/vm', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': new Date().toISOString() } } };
      return { ...s.outputsValue, provingGround: null };
    };
    const restoreKind = infraKinds.override('pulumi-azure', pulumiAzureInfraKind({ env, stack, machines, arm }));

    let beforeCrossing = new Map<string, string>();
    const events: RunEvent[] = [];
    const summary = await startRun('upgrade', L.runbook, {
      stateDir: L.stateDir,
      onEvent: (e) => events.push(e),
      confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
      hooks: {
        afterPhase: async (phase, ctx) => {
          if (phase === 'discover') expect(ctx.infra.kind).toBe('pulumi-azure');
          if (phase === 'gate') beforeCrossing = await treeHashes(L.target);
        },
      },
    }).finally(() => {
      restoreKind();
      process.env = savedEnv;
    });
    const journal = events.flatMap((e) => (e.kind === 'journal' ? [e.event] : []));
    expect(summary.error).toBeUndefined();
    expect(summary.outcome).toBe('landed');
    expect(summary.exitCode).toBe(0);
    expect(journal.find((e) => e.type === 'crossing.completed')).toEqual({ type: 'crossing.completed', image: IMAGE, machine: { resourceId: VM, uniqueId: 'uid-new' } });
    expect(journal.find((e) => e.type === 'rollback.created')).toMatchObject({ rollbackPoint: { kind: 'azure-disk-snapshot' } });
    expect(journal.some((e) => e.type === 'rollback.released')).toBe(true);

    // The crossing ran with the VM unlocked and the data disk locked; afterwards everything is locked and nothing armed.
    expect(vmLockedDuringCrossing).toEqual([false, true]);
    expect(arm.locks.has(VM) && arm.locks.has(OS_NEW) && arm.locks.has(DATA)).toBe(true);
    expect(stack.config.has('rubicon:permit')).toBe(false);
    expect(stack.config.get('rubicon:target.image.sku')).toBe('2025-datacenter-azure-edition');
    // Landing passed, so the rollback point was released: snapshots and the retired OS disk.
    expect(machines.snapshots.size).toBe(0);
    expect(arm.disks.has(OS_OLD)).toBe(false);
    // The proving ground was created and torn down (twice: prove, then the final capture's proof), through targeted ups.
    expect(stack.calls.filter((c) => c.op === 'up' && Array.isArray(c.args[1])).length).toBeGreaterThanOrEqual(1);
    expect(stack.outputsValue['provingGround']).toBeNull();
    // The application was stopped through the target's Run Command host.
    expect(machines.hosts.get(VM)?.runs[0]?.args.at(-1)).toContain("Stop-Service -Name 'EHRApp'");
    // Plans were saved where the section says; the folder was created.
    expect(existsSync(path.join(path.dirname(L.runbook), 'plans'))).toBe(true);
    // The journal names every lock lifted and restored (the driver's notes, through the composition root's log, with their level).
    const notes = journal.flatMap((e) => (e.type === 'note' ? [`${e.level}: ${e.message}`] : []));
    expect(notes.some((n) => n.startsWith('warn: ') && n.includes(`deletion lock on VM ${VM} removed for the crossing`))).toBe(true);
    expect(notes.some((n) => n.startsWith('info: ') && n.includes('deletion lock on') && n.includes('after the crossing of run'))).toBe(true);
    // The wiped target was landed from the vaults: every file of the application folders is back, byte for byte.
    const after = await treeHashes(L.target);
    const ehr = [...beforeCrossing.entries()].filter(([p]) => p.startsWith('ehr/'));
    expect(ehr.length).toBeGreaterThan(5);
    for (const [p, h] of ehr) expect(after.get(p), p).toBe(h);
  });
});
