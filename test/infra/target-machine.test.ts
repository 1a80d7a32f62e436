import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PulumiAzureDriver } from '../../src/infra/azure/driver.ts';
import { lockLiftingMachine } from '../../src/infra/azure/target-machine.ts';
import type { Command, ExecOptions, ExecResult, Machine, StepKey, StepResult, TransportKind } from '../../src/machines/machine.ts';
import { FakeArm, FakeMachines, FakeStack } from './fake-ports.ts';

/**
 * The composition root's target machine under the VM's ARM lock. A stand-in
 * for the azure-run-command transport: each operation creates a run command
 * under the VM and deletes it afterwards, and the DELETE is refused while
 * the VM carries a CanNotDelete lock (a lock is inherited by child
 * resources: 409 ScopeLocked, as ARM answers; the ARM stand-in in
 * arm-stand-in.ts models the same rule at the HTTP level).
 */

const RG = '/subscriptions/s/resourceGroups/rg-ehr/providers/Microsoft.Compute';
const VM = `${RG}/virtualMachines/ehr-prd-01`;

class RunCommandMachine implements Machine {
  readonly name = 'ehr-prd-01';
  readonly os = 'windows' as const;
  readonly transport: TransportKind;
  readonly address = `Run Command on VM ehr-prd-01`;
  readonly seen: boolean[] = [];
  readonly #arm: FakeArm;
  #gate: Promise<void> | undefined;
  release: () => void = () => {};
  constructor(arm: FakeArm, transport: TransportKind = 'azure-run-command') {
    this.#arm = arm;
    this.transport = transport;
  }
  /** The next operations wait until `release()` (to overlap two of them). */
  hold(): void {
    this.#gate = new Promise((r) => (this.release = r));
  }
  async #runCommand(): Promise<void> {
    this.seen.push(this.#arm.locks.has(VM));
    if (this.#gate) await this.#gate;
    if (this.#arm.locks.has(VM)) throw new Error(`ScopeLocked: the scope '${VM}/runCommands/rubicon-1' cannot perform delete operation because following scope(s) are locked: '${VM}'`);
  }
  async exec(cmd: Command, _o?: ExecOptions): Promise<ExecResult> {
    await this.#runCommand();
    if (cmd.argv[0] === 'fail') throw new Error('the step failed');
    return { exitCode: 0, stdout: 'ok', stderr: '', durationMs: 1 };
  }
  async run(step: StepKey, _cmd: Command, _o?: ExecOptions): Promise<StepResult> {
    await this.#runCommand();
    return { exitCode: 0, stdout: '', stderr: '', durationMs: 1, reattached: false, ...({ id: step.id } as object) } as StepResult;
  }
  async readSmall(_p: string, _max: number): Promise<Uint8Array> {
    await this.#runCommand();
    return new Uint8Array([1]);
  }
  async writeSmall(_p: string, _d: string | Uint8Array): Promise<void> {
    await this.#runCommand();
  }
  async close(): Promise<void> {}
  /** Reads a private field, as the real transports do: called on the proxy it would throw. */
  #vmId = 'uid-old';
  async platformIdentity(): Promise<{ resourceId: string; uniqueId: string }> {
    return { resourceId: VM, uniqueId: this.#vmId };
  }
}

function setup(): { arm: FakeArm; driver: PulumiAzureDriver; notes: string[] } {
  const arm = new FakeArm();
  arm.vms.set(VM, { id: VM, uniqueId: 'uid-old', image: 'a:b:c:d', osDiskId: `${RG}/disks/os`, dataDiskIds: [] });
  arm.locks.add(VM);
  const stack = new FakeStack('prod', { targetVmId: VM, targetImage: 'a:b:c:d', dataDiskIds: [] }, { 'rubicon:target.name': 'ehr-prd-01' });
  const notes: string[] = [];
  const driver = new PulumiAzureDriver({ stack, machines: new FakeMachines([]), arm, planDir: path.join(os.tmpdir(), 'rubicon-tm-plans'), log: (l, m) => notes.push(`${l}: ${m}`) });
  return { arm, driver, notes };
}

const cmd: Command = { argv: ['powershell.exe', '-Command', 'Get-Date'] };

describe('the target machine under the VM lock (pulumi-azure)', () => {
  it('a Run Command machine used as it is fails under the lock: the run command cannot be deleted', async () => {
    const { arm } = setup();
    await expect(new RunCommandMachine(arm).exec(cmd)).rejects.toThrow(/ScopeLocked/);
  });

  it('through the driver, each operation lifts the VM lock, runs, and puts it back; each lift and restore is a note', async () => {
    const { arm, driver, notes } = setup();
    const raw = new RunCommandMachine(arm);
    const m = driver.targetMachine(raw);
    expect(m).not.toBe(raw);
    expect(m).toBeInstanceOf(RunCommandMachine);
    expect(m.transport).toBe('azure-run-command');
    expect((await m.exec(cmd)).stdout).toBe('ok');
    expect(arm.locks.has(VM)).toBe(true);
    await m.readSmall('C:\\x', 10);
    await m.writeSmall('C:\\x', 'y');
    await m.run({ id: 'capture/1', idempotent: true }, cmd);
    expect(raw.seen).toEqual([false, false, false, false]);
    expect(arm.locks.has(VM)).toBe(true);
    expect(arm.log).toEqual(['unlock ' + VM, 'lock ' + VM, 'unlock ' + VM, 'lock ' + VM, 'unlock ' + VM, 'lock ' + VM, 'unlock ' + VM, 'lock ' + VM]);
    expect(notes.filter((n) => n.startsWith('warn: ') && n.includes(`deletion lock on VM ${VM} removed while Run Command runs`))).toHaveLength(4);
    expect(notes.filter((n) => n.startsWith('info: ') && n.includes(`deletion lock on VM ${VM} restored`))).toHaveLength(4);
  });

  it('overlapping operations share one lift; the lock is back only when the last one ends', async () => {
    const { arm, driver } = setup();
    const raw = new RunCommandMachine(arm);
    const m = driver.targetMachine(raw);
    raw.hold();
    const a = m.exec(cmd);
    const b = m.exec(cmd);
    await expect.poll(() => raw.seen.length).toBe(2);
    expect(arm.locks.has(VM)).toBe(false);
    raw.release();
    await Promise.all([a, b]);
    expect(arm.locks.has(VM)).toBe(true);
    expect(arm.log).toEqual(['unlock ' + VM, 'lock ' + VM]);
  });

  it('platformIdentity (a GET of the VM) and close neither lift the lock nor lose the machine\'s private state', async () => {
    const { arm, driver } = setup();
    const m = driver.targetMachine(new RunCommandMachine(arm));
    expect(await m.platformIdentity()).toEqual({ resourceId: VM, uniqueId: 'uid-old' });
    await m.close();
    expect(arm.log).toEqual([]);
  });

  it('a failing operation still puts the lock back and its error reaches the caller', async () => {
    const { arm, driver } = setup();
    const m = driver.targetMachine(new RunCommandMachine(arm));
    await expect(m.exec({ argv: ['fail'] })).rejects.toThrow('the step failed');
    expect(arm.locks.has(VM)).toBe(true);
  });

  it('a lock that cannot be restored fails the operation (never only a warning)', async () => {
    const { arm, driver } = setup();
    const m = driver.targetMachine(new RunCommandMachine(arm));
    arm.lockFails.add(VM);
    await expect(m.exec(cmd)).rejects.toThrow(/AuthorizationFailed/);
  });

  it('any other transport is returned as it is (no child resources, no lift)', async () => {
    const { arm, driver } = setup();
    for (const t of ['openssh-windows', 'ssh', 'local'] as TransportKind[]) {
      const raw = new RunCommandMachine(arm, t);
      expect(driver.targetMachine(raw)).toBe(raw);
      expect(lockLiftingMachine(raw, { lift: async () => {}, restore: async () => {} })).toBe(raw);
    }
    expect(arm.log).toEqual([]);
  });
});

describe('composition root: the driver adapts the target machine the phases and the landing use', () => {
  it('createAdapters hands out what infra.targetMachine returned, for the target and the rebuilt target', async () => {
    const { createAdapters, infraKinds } = await import('../../src/compose/root.ts');
    const { LocalMachine } = await import('../../src/machines/local.ts');
    const given: Machine[] = [];
    const adapted = { name: 'adapted' } as unknown as Machine;
    const restore = infraKinds.override('pulumi-azure', () => ({
      kind: 'pulumi-azure',
      targetMachine: <M extends Machine>(m: M): M => {
        given.push(m);
        return adapted as M;
      },
    }) as unknown as import('../../src/infra/driver.ts').InfraDriver);
    try {
      const rb = {
        target: { name: 'ehr-prd-01', transport: { kind: 'local' }, root: os.tmpdir(), workDir: os.tmpdir() },
        provingGround: { transport: { kind: 'local' }, root: path.join(os.tmpdir(), 'pg'), workDir: '' },
        vaults: [],
        methods: { folders: [], databases: {} },
        infra: { kind: 'pulumi-azure' },
      } as unknown as import('../../src/runbook/load.ts').Runbook;
      const a = await createAdapters(rb, { runId: 'r-1', workDir: os.tmpdir() });
      expect(given).toHaveLength(1);
      expect(given[0]).toBeInstanceOf(LocalMachine);
      expect(given[0]!.name).toBe('ehr-prd-01');
      expect(a.target).toBe(adapted);
      expect(a.rebuiltTarget).toBe(adapted);
    } finally {
      restore();
    }
  });
});
