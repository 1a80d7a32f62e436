import { readFileSync } from 'node:fs';
import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import type { CommandResult, ExecOptions, Host } from '../../src/hosts/host.ts';
import type {
  ArmPort,
  ConfigOptions,
  DiskFacts,
  DiskRef,
  MachinePort,
  OperationOptions,
  PreviewOutcome,
  RollbackAsset,
  StackPort,
  UpOutcome,
  VmState,
} from '../../src/infra/azure/ports.ts';

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
  /** When set and `previews` is empty: the preview for the stack's current config (a whole run's worth of previews). */
  previewFor: ((stack: FakeStack, options: OperationOptions) => EngineEvent[]) | undefined;
  outputsValue: Record<string, unknown>;
  /** What `up` turns the outputs into. */
  onUp: (stack: FakeStack) => Record<string, unknown> = (s) => s.outputsValue;
  upResult = 'succeeded';
  /**
   * The events the next `up` streams. Default: what the last preview showed,
   * executed (the engine's real up replays the planned steps), with the
   * preview's summary. Set to simulate an up that did something else.
   */
  upEvents: EngineEvent[] | undefined;
  upSummary: Partial<Record<string, number>> | undefined;
  lastPreview: EngineEvent[] = [];
  /** Throws instead of returning, when set (a crash or a failed CLI call). */
  upThrows: Error | undefined;

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
    this.calls.push({ op: 'preview', args: [options.planPath, ...(options.targets ? [options.targets] : [])] });
    this.timeline.push('preview');
    const events = this.previews.shift() ?? this.previewFor?.(this, options);
    if (!events) throw new Error('FakeStack: no scripted preview left');
    this.lastPreview = events;
    return { events, changeSummary: {}, ...(options.planPath ? { planPath: options.planPath } : {}) };
  }
  async up(options: OperationOptions = {}): Promise<UpOutcome> {
    this.calls.push({ op: 'up', args: [options.planPath, ...(options.targets ? [options.targets] : [])] });
    this.timeline.push('up');
    if (this.upThrows) throw this.upThrows;
    this.outputsValue = this.onUp(this);
    const events = this.upEvents ?? executed(this.lastPreview);
    const summary = this.upSummary ?? events.find((e) => e.summaryEvent)?.summaryEvent?.resourceChanges;
    this.upEvents = undefined;
    this.upSummary = undefined;
    return { events, outputs: this.outputsValue, summary: { result: this.upResult, ...(summary ? { resourceChanges: summary } : {}) } };
  }
  async outputs(): Promise<Record<string, unknown>> {
    return this.outputsValue;
  }
  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
}

/** The events an up streams for a previewed plan: the same steps, not `planning`. */
export function executed(preview: EngineEvent[]): EngineEvent[] {
  return preview.map((e) => {
    if (e.resourcePreEvent) return { ...e, resourcePreEvent: { ...e.resourcePreEvent, planning: false } };
    if (e.resOutputsEvent) return { ...e, resOutputsEvent: { ...e.resOutputsEvent, planning: false } };
    return e;
  });
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

/**
 * An in-memory ARM for the driver: VMs by id, disks, the `rubicon-guard`
 * locks, tags. It refuses what ARM refuses: deleting a locked disk.
 */
export class FakeArm implements ArmPort {
  readonly vms = new Map<string, VmState>();
  readonly disks = new Map<string, DiskFacts>();
  readonly locks = new Set<string>();
  readonly log: string[];
  /** Ids whose lock cannot be placed (simulates a missing permission). */
  readonly lockFails = new Set<string>();
  constructor(log: string[] = []) {
    this.log = log;
  }
  async describeVm(vmId: string): Promise<VmState | undefined> {
    return this.vms.get(vmId);
  }
  async describeDisk(diskId: string): Promise<DiskFacts | undefined> {
    return this.disks.get(diskId);
  }
  async lock(resourceId: string, _notes: string): Promise<void> {
    if (this.lockFails.has(resourceId)) throw new Error(`AuthorizationFailed: no Microsoft.Authorization/locks/write on ${resourceId}`);
    if (!this.locks.has(resourceId)) this.log.push(`lock ${resourceId}`);
    this.locks.add(resourceId);
  }
  async unlock(resourceId: string): Promise<void> {
    if (this.locks.delete(resourceId)) this.log.push(`unlock ${resourceId}`);
  }
  async isLocked(resourceId: string): Promise<boolean> {
    return this.locks.has(resourceId);
  }
  async tagDisk(diskId: string, tags: Record<string, string>): Promise<void> {
    this.log.push(`tag ${diskId}`);
    const d = this.disks.get(diskId) ?? { id: diskId, tags: {} };
    this.disks.set(diskId, { ...d, tags: { ...d.tags, ...tags } });
  }
  async deleteDisk(diskId: string): Promise<void> {
    if (this.locks.has(diskId)) throw new Error(`ScopeLocked: ${diskId} is locked`);
    this.log.push(`deleteDisk ${diskId}`);
    this.disks.delete(diskId);
  }
  /** Snapshots ARM holds (id → tags), for listRollbackAssets. */
  readonly snapshots = new Map<string, Record<string, string>>();
  async createDiskFromSnapshot(snapshotId: string, name: string, tags: Record<string, string>): Promise<string> {
    const id = `${snapshotId.replace(/\/snapshots\/.*$/, '')}/disks/${name}`;
    this.log.push(`createDiskFromSnapshot ${snapshotId}`);
    if (!this.disks.has(id)) this.disks.set(id, { id, tags });
    return id;
  }
  async listRollbackAssets(_resourceGroup: string): Promise<RollbackAsset[]> {
    return [
      ...[...this.snapshots.entries()].map(([id, tags]) => ({ id, kind: 'snapshot' as const, runId: tags['rubicon-run'] ?? '', role: tags['rubicon-role'] ?? '', ...(tags['rubicon-disk'] ? { disk: tags['rubicon-disk'] } : {}) })),
      ...[...this.disks.values()]
        .filter((d) => d.tags['rubicon-role']?.startsWith('rollback'))
        .map((d) => ({ id: d.id, kind: 'disk' as const, runId: d.tags['rubicon-run'] ?? '', role: d.tags['rubicon-role']!, ...(d.attachedTo ? { attachedTo: d.attachedTo } : {}) })),
    ];
  }
}
