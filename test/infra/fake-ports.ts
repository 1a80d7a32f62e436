import { readFileSync } from 'node:fs';
import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import type { CommandResult, ExecOptions, Host } from '../../src/hosts/host.ts';
import type { ConfigOptions, DiskRef, MachinePort, OperationOptions, PreviewOutcome, StackPort, UpOutcome } from '../../src/infra/azure/ports.ts';

/** Test doubles for the driver's ports: in-memory stack config, scripted previews from fixtures, recorded calls. */

export function fixture(name: string): EngineEvent[] {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')) as EngineEvent[];
}

export type Call = { op: string; args: unknown[] };

export class FakeStack implements StackPort {
  readonly stackName: string;
  readonly config = new Map<string, string>();
  readonly calls: Call[] = [];
  /** Shared with FakeMachines to see the order of calls across both. */
  timeline: string[] = [];
  /** Events the next previews return, in order. */
  readonly previews: EngineEvent[][] = [];
  outputsValue: Record<string, unknown>;
  /** What `up` turns the outputs into. */
  onUp: (stack: FakeStack) => Record<string, unknown> = (s) => s.outputsValue;
  upResult = 'succeeded';

  constructor(stackName: string, outputs: Record<string, unknown>, config: Record<string, string> = {}) {
    this.stackName = stackName;
    this.outputsValue = outputs;
    for (const [k, v] of Object.entries(config)) this.config.set(k, v);
  }

  async getConfig(key: string, _options?: ConfigOptions): Promise<string | undefined> {
    return this.config.get(key);
  }
  async setConfig(key: string, value: string, options?: ConfigOptions): Promise<void> {
    this.calls.push({ op: 'setConfig', args: [key, value, options ?? {}] });
    this.timeline.push(`setConfig ${key}`);
    this.config.set(key, value);
  }
  async removeConfig(key: string, options?: ConfigOptions): Promise<void> {
    this.calls.push({ op: 'removeConfig', args: [key, options ?? {}] });
    this.timeline.push(`removeConfig ${key}`);
    this.config.delete(key);
  }
  async preview(options: OperationOptions = {}): Promise<PreviewOutcome> {
    this.calls.push({ op: 'preview', args: [options.planPath] });
    this.timeline.push('preview');
    const events = this.previews.shift();
    if (!events) throw new Error('FakeStack: no scripted preview left');
    return { events, changeSummary: {}, ...(options.planPath ? { planPath: options.planPath } : {}) };
  }
  async up(options: OperationOptions = {}): Promise<UpOutcome> {
    this.calls.push({ op: 'up', args: [options.planPath] });
    this.timeline.push('up');
    this.outputsValue = this.onUp(this);
    return { events: [], outputs: this.outputsValue, summary: { result: this.upResult } };
  }
  async outputs(): Promise<Record<string, unknown>> {
    return this.outputsValue;
  }
  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
}

export class FakeHost implements Host {
  readonly name: string;
  readonly kind = 'azure-run-command' as const;
  readonly runs: { file: string; args: string[] }[] = [];
  exitCode = 0;
  constructor(name: string) {
    this.name = name;
  }
  resolve(): string {
    throw new Error('not a local host');
  }
  async exec(file: string, args: string[], _options?: ExecOptions): Promise<CommandResult> {
    this.runs.push({ file, args });
    return { command: file, args, exitCode: this.exitCode, stdout: '', stderr: this.exitCode ? 'Cannot find any service' : '', durationMs: 1 };
  }
}

export class FakeMachines implements MachinePort {
  readonly log: string[];
  readonly disks: DiskRef[];
  readonly snapshots = new Map<string, { disk: DiskRef; tags: Record<string, string> }>();
  readonly hosts = new Map<string, FakeHost>();
  /** `log` may be shared with a FakeStack's `timeline` to check the order of calls across both. */
  constructor(disks: DiskRef[], log: string[] = []) {
    this.disks = disks;
    this.log = log;
  }
  async disksOf(vmId: string): Promise<DiskRef[]> {
    this.log.push(`disksOf ${vmId}`);
    return this.disks;
  }
  async snapshotDisk(disk: DiskRef, name: string, tags: Record<string, string>): Promise<{ id: string }> {
    this.log.push(`snapshot ${name}`);
    this.snapshots.set(name, { disk, tags });
    return { id: `/snapshots/${name}` };
  }
  async deleteSnapshot(id: string): Promise<void> {
    this.log.push(`deleteSnapshot ${id}`);
    this.snapshots.delete(id.replace('/snapshots/', ''));
  }
  async waitForVmAgent(vmId: string, _timeoutMs: number): Promise<void> {
    this.log.push(`waitForVmAgent ${vmId}`);
  }
  hostFor(vmId: string, name: string): Host {
    const h = this.hosts.get(vmId) ?? new FakeHost(name);
    this.hosts.set(vmId, h);
    return h;
  }
}
