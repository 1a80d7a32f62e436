import path from 'node:path';
import { RubiconError } from '../../core/errors.ts';
import type { Permit, RollbackPoint } from '../../core/types.ts';
import { checkPermit } from '../../gate/permit.ts';
import type { CrossingResult, InfraDriver, ProvingGroundHandle } from '../driver.ts';
import { classifyPlan, describePlanRefusal, type PlanExpectation } from './classify.ts';
import { PROVING_GROUND_TYPE, VM_TYPE, targetVmLogicalName } from './names.ts';
import type { MachinePort, OperationOptions, StackPort } from './ports.ts';
import { psLiteral } from './powershell.ts';
import { CREATED_AT_TAG, RUN_TAG, TTL_TAG, type ProvingGroundRecord, type ReapPort } from './reap.ts';

/**
 * InfraDriver over Pulumi (Automation API, behind StackPort) and Azure
 * (behind MachinePort). Every change goes preview → classify → `up` with the
 * saved plan, so `up` can do nothing the classified preview did not show.
 *
 * Design note (the crossing):
 * - Requirements: the only destructive step Rubicon ever takes is replacing
 *   the target VM; disks, the vault and the proving ground's neighbours are
 *   never deleted or replaced; a crash anywhere leaves a state from which a
 *   second `cross` finishes the same rebuild.
 * - Order: check the permit → rollback point (incremental snapshots of the
 *   OS and data disks; idempotent per run) → arm the stack config (new image,
 *   permit, proof-set hash) → preview with a saved plan → refuse and disarm
 *   unless the plan is exactly the VM replace → `up` with that plan → wait
 *   for the VM agent → disarm (remove the permit) and re-protect.
 * - Assumptions: one driver per stack at a time (the run lock); stack
 *   outputs `targetImage`/`targetVmId` describe the last successful update.
 */

export interface PulumiAzureDriverOptions {
  stack: StackPort;
  machines: MachinePort;
  /** Folder for saved update plans (`<runId>.<step>.plan.json`). */
  planDir: string;
  /** The application's Windows services, stopped at freeze and started at thaw. Default none. */
  freezeServices?: string[];
  /** How long to wait for a VM agent. Default 20 minutes. */
  agentTimeoutMs?: number;
  now?: () => Date;
  /** Progress lines for people; never secrets. */
  log?: (level: 'info' | 'warn', message: string) => void;
}

function infraError(message: string, hint: string, details?: Record<string, unknown>): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(details ? { details } : {}) });
}

/** Pure: `publisher:offer:sku:version` → its parts; undefined when malformed. */
export function parseImageUrn(urn: string): { publisher: string; offer: string; sku: string; version: string } | undefined {
  const parts = urn.split(':');
  if (parts.length !== 4 || parts.some((p) => p.trim() === '')) return undefined;
  const [publisher, offer, sku, version] = parts as [string, string, string, string];
  return { publisher, offer, sku, version };
}

/** Pure: a single-quoted PowerShell string literal (src/infra/azure/powershell.ts). */
export const psQuote = psLiteral;

function snapshotName(runId: string, role: string): string {
  return `rubicon-${runId}-${role}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80);
}

export class PulumiAzureDriver implements InfraDriver {
  readonly kind = 'pulumi-azure' as const;
  readonly #stack: StackPort;
  readonly #machines: MachinePort;
  readonly #planDir: string;
  readonly #services: string[];
  readonly #agentTimeoutMs: number;
  readonly #now: () => Date;
  readonly #log: (level: 'info' | 'warn', message: string) => void;

  constructor(options: PulumiAzureDriverOptions) {
    this.#stack = options.stack;
    this.#machines = options.machines;
    this.#planDir = options.planDir;
    this.#services = options.freezeServices ?? [];
    this.#agentTimeoutMs = options.agentTimeoutMs ?? 20 * 60_000;
    this.#now = options.now ?? (() => new Date());
    this.#log = options.log ?? (() => {});
  }

  async #outputs(): Promise<Record<string, unknown>> {
    return this.#stack.outputs();
  }

  async #targetName(): Promise<string> {
    const name = await this.#stack.getConfig('rubicon:target.name', { path: true });
    if (!name) {
      throw infraError(`Stack ${this.#stack.stackName} has no rubicon:target.name.`, `Set it in stacks/Pulumi.${this.#stack.stackName}.yaml (docs/infra.md).`);
    }
    return name;
  }

  async #targetVmId(): Promise<string> {
    const id = (await this.#outputs())['targetVmId'];
    if (typeof id !== 'string' || id === '') {
      throw infraError(
        `Stack ${this.#stack.stackName} has no targetVmId output: the target was never deployed by this project.`,
        `Deploy (or \`pulumi import\`) the target first: \`pulumi up --stack ${this.#stack.stackName}\`.`,
      );
    }
    return id;
  }

  /** Read-only: the image of the last successful update (stack output `targetImage`). */
  async currentImage(): Promise<string> {
    const image = (await this.#outputs())['targetImage'];
    if (typeof image !== 'string' || image === '') {
      throw infraError(
        `Stack ${this.#stack.stackName} has no targetImage output.`,
        `Run \`pulumi up --stack ${this.#stack.stackName}\` once so the stack records the target.`,
      );
    }
    return image;
  }

  /** Preview with a saved plan, classify, refuse or `up` with that plan. Returns the up's outputs. */
  async #planAndApply(step: string, runId: string, expect: PlanExpectation, onRefuse?: () => Promise<void>): Promise<Record<string, unknown>> {
    const planPath = path.join(this.#planDir, `${runId}.${step}.plan.json`);
    const preview = await this.#stack.preview({ planPath });
    const verdict = classifyPlan(preview.events, expect);
    if (!verdict.ok) {
      if (onRefuse) await onRefuse();
      throw infraError(
        `Stack ${this.#stack.stackName}, ${step}: ${describePlanRefusal(verdict)}`,
        `Nothing was changed. Inspect with \`pulumi preview --diff --stack ${this.#stack.stackName}\` and fix the program or the stack before retrying.`,
        { step, unexpected: verdict.unexpected, problems: verdict.problems },
      );
    }
    const opts: OperationOptions = { planPath: preview.planPath ?? planPath };
    const up = await this.#stack.up(opts);
    if (up.summary.result !== 'succeeded') {
      throw infraError(
        `Stack ${this.#stack.stackName}, ${step}: pulumi up ended with "${up.summary.result}".`,
        'Read the engine diagnostics above; running the same Rubicon command again resumes from here.',
        { step },
      );
    }
    return up.outputs;
  }

  async #provingGroundOutput(): Promise<{ vmId: string; tags: Record<string, string> } | undefined> {
    const pg = (await this.#outputs())['provingGround'];
    if (!pg || typeof pg !== 'object') return undefined;
    const { vmId, tags } = pg as { vmId?: unknown; tags?: unknown };
    if (typeof vmId !== 'string') return undefined;
    return { vmId, tags: (tags && typeof tags === 'object' ? tags : {}) as Record<string, string> };
  }

  /** Idempotent: returns this run's proving ground if it exists. Refuses when another run's one is up. */
  async provisionProvingGround(runId: string): Promise<ProvingGroundHandle> {
    const existing = await this.#provingGroundOutput();
    const enabled = (await this.#stack.getConfig('rubicon:provingGround.enabled', { path: true })) === 'true';
    const ownerRun = await this.#stack.getConfig('rubicon:provingGround.runId', { path: true });
    if ((existing || enabled) && ownerRun && ownerRun !== runId) {
      throw infraError(
        `Stack ${this.#stack.stackName} already has a proving ground for run ${ownerRun}.`,
        'Wait for that run to finish, or destroy it with `rubicon reap` once its TTL has passed.',
      );
    }
    const name = `pg-${this.#stack.stackName}`;
    if (existing && enabled && ownerRun === runId) {
      await this.#machines.waitForVmAgent(existing.vmId, this.#agentTimeoutMs);
      return { name, host: this.#machines.hostFor(existing.vmId, name) };
    }
    this.#log('info', `Provisioning proving ground ${name} for run ${runId}`);
    await this.#stack.setConfig('rubicon:provingGround.runId', runId, { path: true });
    if (!enabled) await this.#stack.setConfig('rubicon:provingGround.createdAt', this.#now().toISOString(), { path: true });
    await this.#stack.setConfig('rubicon:provingGround.enabled', 'true', { path: true });
    const outputs = await this.#planAndApply('provision', runId, { mayCreateUnder: PROVING_GROUND_TYPE }, async () => {
      await this.#stack.setConfig('rubicon:provingGround.enabled', 'false', { path: true });
    });
    const pg = outputs['provingGround'] as { vmId?: unknown } | null | undefined;
    if (!pg || typeof pg.vmId !== 'string') {
      throw infraError(`Stack ${this.#stack.stackName}: pulumi up succeeded but output provingGround.vmId is missing.`, 'Check that rubicon:provingGround.enabled is true in the stack config.');
    }
    await this.#machines.waitForVmAgent(pg.vmId, this.#agentTimeoutMs);
    return { name, host: this.#machines.hostFor(pg.vmId, name) };
  }

  /** Destroys this run's proving ground. Idempotent; a proving ground of another run is left alone. */
  async destroyProvingGround(runId: string): Promise<void> {
    const ownerRun = await this.#stack.getConfig('rubicon:provingGround.runId', { path: true });
    if (ownerRun && ownerRun !== runId) {
      this.#log('warn', `Proving ground of stack ${this.#stack.stackName} belongs to run ${ownerRun}, not ${runId}: left alone.`);
      return;
    }
    await this.teardownProvingGround(runId);
  }

  /** Destructive for the proving ground only (the plan is refused otherwise). Idempotent. */
  async teardownProvingGround(label: string): Promise<void> {
    const enabled = (await this.#stack.getConfig('rubicon:provingGround.enabled', { path: true })) === 'true';
    if (!enabled && !(await this.#provingGroundOutput())) return;
    this.#log('info', `Destroying proving ground of stack ${this.#stack.stackName}`);
    await this.#stack.setConfig('rubicon:provingGround.enabled', 'false', { path: true });
    await this.#planAndApply('teardown', label, { mayDeleteUnder: PROVING_GROUND_TYPE });
  }

  async #runOnTarget(verb: 'Stop' | 'Start'): Promise<void> {
    if (this.#services.length === 0) return;
    const vmId = await this.#targetVmId();
    const host = this.#machines.hostFor(vmId, await this.#targetName());
    const names = this.#services.map(psQuote).join(',');
    const script = `$ErrorActionPreference='Stop'; ${verb}-Service -Name ${names}${verb === 'Stop' ? ' -Force' : ''}`;
    const r = await host.exec('powershell.exe', ['-NoProfile', '-NonInteractive', '-Command', script]);
    if (r.exitCode !== 0) {
      throw new RubiconError('COMMAND_FAILED', `${verb}-Service on ${host.name} failed (exit ${r.exitCode}): ${r.stderr.trim().slice(0, 500)}`, {
        hint: `Check the service names (${this.#services.join(', ')}) on the target.`,
      });
    }
  }

  /** Stops the application's services. Idempotent. */
  async freeze(_runId: string): Promise<void> {
    await this.#runOnTarget('Stop');
  }

  /** Starts them again. Idempotent. */
  async thaw(_runId: string): Promise<void> {
    await this.#runOnTarget('Start');
  }

  /** Incremental snapshots of the target's OS and data disks. Idempotent per run id. */
  async createRollbackPoint(runId: string): Promise<RollbackPoint> {
    const vmId = await this.#targetVmId();
    const disks = await this.#machines.disksOf(vmId);
    if (!disks.some((d) => d.role === 'os')) {
      throw infraError(`Target ${vmId} reports no OS disk: no rollback point can be taken.`, 'Check the VM in the Azure portal; the crossing will not start without a rollback point.');
    }
    const ids: string[] = [];
    for (const d of disks) {
      const snap = await this.#machines.snapshotDisk(d, snapshotName(runId, d.role), { [RUN_TAG]: runId, 'rubicon-role': 'rollback', 'rubicon-disk': d.role });
      ids.push(snap.id);
    }
    return { id: `rollback.${runId}`, kind: 'azure-disk-snapshot', location: ids.join(','), createdAt: this.#now().toISOString() };
  }

  /** Deletes the rollback snapshots. Destructive; idempotent. */
  async releaseRollbackPoint(point: RollbackPoint): Promise<void> {
    for (const id of point.location.split(',').filter((s) => s !== '')) await this.#machines.deleteSnapshot(id);
  }

  async #disarm(): Promise<void> {
    await this.#stack.removeConfig('rubicon:permit');
    await this.#stack.removeConfig('rubicon:proofSetHash');
  }

  async #setImage(urn: string): Promise<void> {
    const image = parseImageUrn(urn)!;
    for (const k of ['publisher', 'offer', 'sku', 'version'] as const) {
      await this.#stack.setConfig(`rubicon:target.image.${k}`, image[k], { path: true });
    }
  }

  /**
   * THE CROSSING: replaces the target VM with `permit.image`. Destructive
   * for the VM only. Idempotent: when the stack already runs the permit's
   * image it only waits for the agent; after a crash mid-`up`, the next call
   * plans the remaining create and finishes it.
   */
  async cross(permit: Permit, now: Date): Promise<CrossingResult> {
    const target = await this.#targetName();
    const check = checkPermit(permit, { image: permit?.image ?? '', now, target });
    if (!check.valid) throw new RubiconError('PERMIT_INVALID', `No crossing for target ${target}: ${check.reason}.`, { hint: check.fix });
    if (!parseImageUrn(permit.image)) {
      throw new RubiconError('PERMIT_INVALID', `Permit ${permit.id} names image "${permit.image}", which is not publisher:offer:sku:version.`, {
        hint: 'Fix the runbook\'s target image and run `rubicon upgrade` again.',
      });
    }
    const before = await this.currentImage();
    if (before === permit.image) {
      this.#log('info', `Target ${target} already runs ${permit.image}: waiting for its VM agent.`);
      await this.#machines.waitForVmAgent(await this.#targetVmId(), this.#agentTimeoutMs);
      await this.#disarm();
      return { image: permit.image, completedAt: this.#now().toISOString() };
    }

    await this.createRollbackPoint(permit.runId);

    this.#log('info', `Arming stack ${this.#stack.stackName}: image ${before} → ${permit.image}`);
    await this.#setImage(permit.image);
    await this.#stack.setConfig('rubicon:permit', JSON.stringify(permit));
    await this.#stack.setConfig('rubicon:proofSetHash', permit.proofSetHash);

    const outputs = await this.#planAndApply(
      'crossing',
      permit.runId,
      { mayReplace: [{ type: VM_TYPE, name: targetVmLogicalName(target) }], requireReplace: true, allowCreate: true },
      async () => {
        await this.#setImage(before);
        await this.#disarm();
      },
    );
    const vmId = outputs['targetVmId'];
    if (typeof vmId !== 'string') throw infraError(`Stack ${this.#stack.stackName}: the crossing's up has no targetVmId output.`, 'Check the program outputs.');
    await this.#machines.waitForVmAgent(vmId, this.#agentTimeoutMs);

    await this.#disarm();
    try {
      await this.#planAndApply('reprotect', permit.runId, {});
    } catch (e) {
      this.#log('warn', `Target ${target} is rebuilt, but turning protect back on failed (${e instanceof Error ? e.message : String(e)}); the next \`pulumi up\` does it.`);
    }
    return { image: permit.image, completedAt: this.#now().toISOString() };
  }

  /** The port `reap()` needs, over this stack. */
  reapPort(): ReapPort {
    return {
      listProvingGrounds: async (): Promise<ProvingGroundRecord[]> => {
        const pg = await this.#provingGroundOutput();
        if (!pg) return [];
        return [{ name: this.#stack.stackName, ttlTag: pg.tags[TTL_TAG] ?? '', createdAt: pg.tags[CREATED_AT_TAG] ?? '' }];
      },
      destroyProvingGround: async (name: string): Promise<void> => {
        if (name !== this.#stack.stackName) throw infraError(`No proving ground named ${name} in stack ${this.#stack.stackName}.`, 'List them again with `rubicon reap --dry-run`.');
        await this.teardownProvingGround(`reap-${this.#now().toISOString().replace(/[:.]/g, '-')}`);
      },
    };
  }
}

/** A ReapPort over several stacks (one driver per stack). */
export function reapPortOver(drivers: PulumiAzureDriver[]): ReapPort {
  const ports = drivers.map((d) => d.reapPort());
  return {
    listProvingGrounds: async () => (await Promise.all(ports.map((p) => p.listProvingGrounds()))).flat(),
    destroyProvingGround: async (name) => {
      const all = await Promise.all(ports.map(async (p) => ({ p, names: (await p.listProvingGrounds()).map((r) => r.name) })));
      const owner = all.find((x) => x.names.includes(name));
      if (!owner) throw infraError(`No proving ground named ${name}.`, 'It may already be gone; list them again.');
      await owner.p.destroyProvingGround(name);
    },
  };
}
