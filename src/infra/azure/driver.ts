import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { RubiconError } from '../../core/errors.ts';
import type { Permit, RollbackPoint } from '../../core/types.ts';
import { proofSetHash } from '../../gate/permit.ts';
import type { CommandResult, ExecOptions, Host } from '../../hosts/host.ts';
import type { Machine } from '../../machines/machine.ts';
import { verifierFrom, type Signer } from '../../trust/keys.ts';
import { signPermit, verifySignedPermit, type SignedPermit } from '../../trust/permit.ts';
import { fixedVolumes, windowsAzureScope } from '../../coverage/windows.ts';
import type { CrossingFacts, CrossingResult, DriverScope, InfraDriver, ProvingGroundHandle, ScopeFacts } from '../driver.ts';
import { classifyPlan, compareWithPreview, describePlanRefusal, urnsUnder, type PlanExpectation } from './classify.ts';
import { ArmedSchema, diskImageUrn, type ArmedRecord } from './config.ts';
import { PROVING_GROUND_TYPE, VM_TYPE, targetVmLogicalName } from './names.ts';
import type { ArmPort, MachinePort, OperationOptions, PreviewOutcome, StackPort, UpOutcome, VmState } from './ports.ts';
import { psLiteral } from './powershell.ts';
import { lockLiftingMachine } from './target-machine.ts';
import { CREATED_AT_TAG, RUN_TAG, TTL_TAG, type ProvingGroundRecord, type ReapPort } from './reap.ts';

/**
 * InfraDriver over Pulumi (Automation API, behind StackPort) and Azure
 * (behind MachinePort and ArmPort). Every change goes preview → classify →
 * `up` with the saved plan → compare what ran with what was previewed.
 *
 * Design note (the crossing; docs/infra.md and docs/crossing.md):
 * - Requirements: the only destructive step Rubicon ever takes is replacing
 *   the target VM; disks, the vault and the proving ground's neighbours are
 *   never deleted or replaced; the VM and its disks carry an ARM
 *   `CanNotDelete` lock at all times except while the crossing runs (the VM's
 *   lock only; the disks keep theirs); a crash anywhere leaves a state from
 *   which a second `cross` finishes the same rebuild.
 * - Order: recover (disarm whatever a crash left armed, lock again) → sign
 *   the permit and check the stack trusts this signer → rollback point
 *   (incremental snapshots) → locks in place → arm the stack config (image,
 *   fresh OS disk name, signed permit, proof-set hash, `rubicon:armed`) →
 *   preview with a saved plan → refuse unless the plan is exactly the VM
 *   replace → lift the VM's lock → `up` with that plan → the up did what the
 *   preview showed, and ARM shows a new VM (new unique id) running the
 *   permit's image → wait for the VM agent → on EVERY way out (success,
 *   refusal, failure, cancel): disarm and lock again; a failure to lock
 *   again is a failure of the crossing, never a warning → re-protect (an
 *   all-`same` up; mandatory) → tag the retired OS disk as a rollback asset.
 * - Assumptions: one driver per stack at a time (the run lock); stack
 *   outputs `targetImage`/`targetVmId`/`targetVmUniqueId` describe the last
 *   successful update.
 */

export interface PulumiAzureDriverOptions {
  stack: StackPort;
  machines: MachinePort;
  /**
   * Locks, VM and disk facts, rollback-asset tags. Required for everything
   * but reaping (`rubicon reap` tears proving grounds down only).
   */
  arm?: ArmPort;
  /** Rubicon's signing key: permits written to the stack are signed with it (src/trust). Required to cross. */
  signer?: Signer;
  /** Folder for saved update plans (`<runId>.<step>.plan.json`); created when missing. */
  planDir: string;
  /** The application's Windows services, stopped at freeze and started at thaw. Default none. */
  freezeServices?: string[];
  /** How long to wait for a VM agent. Default 20 minutes. */
  agentTimeoutMs?: number;
  now?: () => Date;
  /**
   * Progress lines for people and for the journal (the composition root
   * records them as `note` events): lock removed / restored, disarmed, and
   * why. Never secrets.
   */
  log?: (level: 'info' | 'warn', message: string) => void;
}

function infraError(message: string, hint: string, details?: Record<string, unknown>, cause?: unknown): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(details ? { details } : {}), ...(cause === undefined ? {} : { cause }) });
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

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '-');
}

function snapshotName(runId: string, role: string): string {
  return `rubicon-${runId}-${role}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 80);
}

/** Pure: the OS disk name a crossing gives the new VM's OS disk (the retired one keeps its own). */
export function crossingOsDiskName(target: string, runId: string): string {
  return `${target}-os-${safeName(runId)}`.slice(0, 80).replace(/[.-]+$/, '');
}

/** Pure: the same public key, ignoring PEM line breaks and whitespace. */
export function samePublicKey(a: string | undefined, b: string): boolean {
  return a !== undefined && a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
}

/** What `rollback` did. */
export interface RollbackResult {
  runId: string;
  /** Where the OS disk came from. */
  from: 'retired-os-disk' | 'os-disk-snapshot';
  diskId: string;
  /** `disk:<id>`: what the stack now says the target runs. */
  image: string;
  completedAt: string;
}

/** The crossing result's `machine`: the VM ARM confirmed, when it has a unique id. Pure. */
function machineOf(vm: VmState): Pick<CrossingResult, 'machine'> {
  return vm.uniqueId ? { machine: { resourceId: vm.id, uniqueId: vm.uniqueId } } : {};
}

function sameId(a: string, b: string): boolean {
  return a.trim().replace(/\/+$/, '').toLowerCase() === b.trim().replace(/\/+$/, '').toLowerCase();
}

const CROSSING_EXPECTATION = (): PlanExpectation => ({
  mayReplace: [{ type: VM_TYPE, name: targetVmLogicalName() }],
  requireReplace: true,
  allowCreate: true,
});

export class PulumiAzureDriver implements InfraDriver {
  readonly kind = 'pulumi-azure' as const;
  readonly #stack: StackPort;
  readonly #machines: MachinePort;
  readonly #armPort: ArmPort | undefined;
  readonly #signerKey: Signer | undefined;
  readonly #planDir: string;
  readonly #services: string[];
  readonly #agentTimeoutMs: number;
  readonly #now: () => Date;
  readonly #log: (level: 'info' | 'warn', message: string) => void;
  #recovery: Promise<ArmedRecord | undefined> | undefined;

  constructor(options: PulumiAzureDriverOptions) {
    this.#stack = options.stack;
    this.#machines = options.machines;
    this.#armPort = options.arm;
    this.#signerKey = options.signer;
    this.#planDir = options.planDir;
    this.#services = options.freezeServices ?? [];
    this.#agentTimeoutMs = options.agentTimeoutMs ?? 20 * 60_000;
    this.#now = options.now ?? (() => new Date());
    this.#log = options.log ?? (() => {});
  }

  get #arm(): ArmPort {
    if (!this.#armPort) {
      throw infraError(`The Azure driver of stack ${this.#stack.stackName} was built without an ARM port: it cannot lock the target.`, 'Build it with createPulumiAzureInfra (src/infra/azure/factory.ts).');
    }
    return this.#armPort;
  }

  get #signer(): Signer {
    if (!this.#signerKey) {
      throw new RubiconError('KEY_INVALID', `The Azure driver of stack ${this.#stack.stackName} has no signing key: it cannot write a permit.`, {
        hint: 'Name the key in the runbook: infra.signingKey: { env: RUBICON_SIGNING_KEY } or { file: /path/key.pem } (docs/trust.md).',
      });
    }
    return this.#signerKey;
  }

  get stackName(): string {
    return this.#stack.stackName;
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
        `Stack ${this.#stack.stackName} has no targetVmId output: the target was never deployed (or imported) by this project.`,
        `Deploy or adopt the target first (docs/infra.md, "Adopting an existing server"), then \`pulumi up --stack ${this.#stack.stackName}\`.`,
      );
    }
    return id;
  }

  /** Read-only: the image of the last successful update (stack output `targetImage`). */
  async currentImage(): Promise<string> {
    await this.#recover();
    return this.#outputImage();
  }

  async #outputImage(): Promise<string> {
    const image = (await this.#outputs())['targetImage'];
    if (typeof image !== 'string' || image === '') {
      throw infraError(`Stack ${this.#stack.stackName} has no targetImage output.`, `Run \`pulumi up --stack ${this.#stack.stackName}\` once so the stack records the target.`);
    }
    return image;
  }

  // ------------------------------------------------------------ arming

  async #armedRecord(): Promise<ArmedRecord | undefined> {
    const text = await this.#stack.getConfig('rubicon:armed');
    if (!text) return undefined;
    try {
      return ArmedSchema.parse(JSON.parse(text));
    } catch {
      this.#log('warn', `Stack ${this.#stack.stackName}: rubicon:armed is unreadable; treating the stack as armed and disarming it.`);
      return undefined;
    }
  }

  /**
   * Disarms whatever an interrupted crossing left in the stack config (a
   * crash, a kill): permit, proof-set hash, `rubicon:armed`; puts the image
   * (and OS disk name) back to what the stack really runs; locks again.
   * Runs once per driver, before anything else the driver does ("resume
   * disarms first"). Idempotent. Returns the record it cleared.
   */
  #recover(): Promise<ArmedRecord | undefined> {
    this.#recovery ??= (async () => {
      const armed = await this.#armedRecord();
      const permit = await this.#stack.getConfig('rubicon:permit');
      if (!armed && permit === undefined) return undefined;
      this.#log('warn', `Stack ${this.#stack.stackName} was left armed${armed ? ` by run ${armed.runId} (since ${armed.at})` : ''}: disarming before anything else.`);
      await this.#disarm(armed);
      await this.#lockTarget(`re-locked after an interrupted crossing${armed ? ` of run ${armed.runId}` : ''}`);
      return armed;
    })();
    return this.#recovery;
  }

  async #setImage(urn: string): Promise<void> {
    const image = parseImageUrn(urn)!;
    for (const k of ['publisher', 'offer', 'sku', 'version'] as const) {
      await this.#stack.setConfig(`rubicon:target.image.${k}`, image[k], { path: true });
    }
  }

  async #configImage(): Promise<string | undefined> {
    const parts = await Promise.all(['publisher', 'offer', 'sku', 'version'].map((k) => this.#stack.getConfig(`rubicon:target.image.${k}`, { path: true })));
    return parts.every((p) => p) ? parts.join(':') : undefined;
  }

  /**
   * Removes the permit, the proof-set hash and `rubicon:armed`; sets the image
   * config to the image the stack really runs (its last successful update),
   * and the OS disk name back when the VM was not replaced. Idempotent.
   */
  async #disarm(armed: ArmedRecord | undefined): Promise<void> {
    await this.#stack.removeConfig('rubicon:permit');
    await this.#stack.removeConfig('rubicon:proofSetHash');
    let runs: string | undefined;
    try {
      runs = await this.#outputImage();
    } catch {
      runs = armed?.previousImage;
    }
    if (runs && parseImageUrn(runs) && (await this.#configImage()) !== runs) await this.#setImage(runs);
    if (armed && runs === armed.previousImage) {
      // The VM was not replaced: the config describes the old one again.
      if (armed.previousOsDiskName) await this.#stack.setConfig('rubicon:target.osDiskName', armed.previousOsDiskName, { path: true });
      else await this.#stack.removeConfig('rubicon:target.osDiskName', { path: true });
      if (armed.previousRestoreFromDisk) await this.#stack.setConfig('rubicon:target.restoreFromDisk', armed.previousRestoreFromDisk, { path: true });
      else await this.#stack.removeConfig('rubicon:target.restoreFromDisk', { path: true });
    }
    await this.#stack.removeConfig('rubicon:armed');
    this.#log('info', `Stack ${this.#stack.stackName} disarmed: no permit in its config, image ${runs ?? '(unknown)'}.`);
  }

  // ------------------------------------------------------------ locks

  /** Every resource of the target that carries the lock: the VM and its disks, as ARM reports them now. */
  async #lockables(): Promise<{ vm?: VmState; ids: string[] }> {
    const outputs = await this.#outputs();
    const vmId = outputs['targetVmId'];
    // The data disks as the stack knows them: locked even while the VM is gone mid-crossing.
    const fromStack = Array.isArray(outputs['dataDiskIds']) ? (outputs['dataDiskIds'] as unknown[]).filter((x): x is string => typeof x === 'string' && x !== '') : [];
    const vm = typeof vmId === 'string' && vmId !== '' ? await this.#arm.describeVm(vmId) : undefined;
    const ids = vm ? [vm.id, ...(vm.osDiskId ? [vm.osDiskId] : []), ...vm.dataDiskIds] : [];
    for (const id of fromStack) if (!ids.some((x) => x.toLowerCase() === id.toLowerCase())) ids.push(id);
    return { ...(vm ? { vm } : {}), ids };
  }

  /** Idempotent: the `CanNotDelete` lock on the VM and every disk it has now. Throws when any lock cannot be placed. */
  async #lockTarget(why: string): Promise<VmState | undefined> {
    const { vm, ids } = await this.#lockables();
    const target = await this.#targetName().catch(() => this.#stack.stackName);
    for (const id of ids) await this.#arm.lock(id, `Rubicon: ${target} may not be deleted; only Rubicon lifts this, for a permitted crossing. ${why}`.slice(0, 500));
    if (ids.length > 0) this.#log('info', `Target ${target}: deletion lock on ${ids.length} resources (${why}).`);
    return vm;
  }

  /** Places the hard stop on the target now (idempotent). Also run by every entry point of the driver. */
  async ensureTargetLocks(): Promise<void> {
    await this.#recover();
    await this.#lockTarget('ensured');
  }

  /**
   * A Host on the target whose every exec lifts the VM's lock for its
   * duration and puts it back (a Run Command resource inherits the VM's lock
   * and could not be deleted otherwise). The disks keep their locks.
   */
  #targetHost(vmId: string, name: string): Host {
    const inner = this.#machines.hostFor(vmId, name);
    const arm = this.#arm;
    const log = this.#log;
    return {
      name: inner.name,
      kind: inner.kind,
      resolve: (relative: string) => inner.resolve(relative),
      exec: async (file: string, args: string[], options?: ExecOptions): Promise<CommandResult> => {
        await arm.unlock(vmId);
        try {
          return await inner.exec(file, args, options);
        } finally {
          await arm.lock(vmId, `Rubicon: ${name} may not be deleted; only Rubicon lifts this, for a permitted crossing.`);
          log('info', `Target ${name}: VM lock lifted for a Run Command and restored.`);
        }
      },
    };
  }

  // ------------------------------------------------------------ plans

  async #preview(step: string, runId: string, targets?: string[]): Promise<PreviewOutcome & { planPath: string }> {
    await mkdir(this.#planDir, { recursive: true });
    const planPath = path.join(this.#planDir, `${safeName(runId)}.${step}.plan.json`);
    const preview = await this.#stack.preview({ planPath, ...(targets ? { targets } : {}) });
    return { ...preview, planPath: preview.planPath ?? planPath };
  }

  #refuse(step: string, verdict: ReturnType<typeof classifyPlan>): never {
    throw infraError(
      `Stack ${this.#stack.stackName}, ${step}: ${describePlanRefusal(verdict)}`,
      `Nothing was changed. Inspect with \`pulumi preview --diff --stack ${this.#stack.stackName}\` and fix the program or the stack before retrying.`,
      { step, unexpected: verdict.unexpected, problems: verdict.problems },
    );
  }

  async #upChecked(step: string, preview: PreviewOutcome & { planPath: string }, targets?: string[]): Promise<UpOutcome> {
    const opts: OperationOptions = { planPath: preview.planPath, ...(targets ? { targets } : {}) };
    const up = await this.#stack.up(opts);
    if (up.summary.result !== 'succeeded') {
      throw infraError(`Stack ${this.#stack.stackName}, ${step}: pulumi up ended with "${up.summary.result}".`, 'Read the engine diagnostics above; running the same Rubicon command again resumes from here.', { step });
    }
    const cmp = compareWithPreview(preview.events, up.events, up.summary.resourceChanges);
    if (!cmp.ok) {
      throw infraError(
        `Stack ${this.#stack.stackName}, ${step}: pulumi up did not do what the classified preview showed:\n${cmp.problems.map((p) => `- ${p}`).join('\n')}`,
        `Check the stack with \`pulumi preview --diff --stack ${this.#stack.stackName}\` and the Azure portal before retrying.`,
        { step, problems: cmp.problems },
      );
    }
    return up;
  }

  /** Preview with a saved plan, classify, refuse or `up` with that plan, compare. Returns the up's outputs. */
  async #planAndApply(step: string, runId: string, expect: PlanExpectation, targets?: string[]): Promise<Record<string, unknown>> {
    const preview = await this.#preview(step, runId, targets);
    const verdict = classifyPlan(preview.events, expect);
    if (!verdict.ok) this.#refuse(step, verdict);
    return (await this.#upChecked(step, preview, targets)).outputs;
  }

  // ------------------------------------------------------------ proving ground

  async #provingGroundOutput(): Promise<{ vmId: string; tags: Record<string, string> } | undefined> {
    const pg = (await this.#outputs())['provingGround'];
    if (!pg || typeof pg !== 'object') return undefined;
    const { vmId, tags } = pg as { vmId?: unknown; tags?: unknown };
    if (typeof vmId !== 'string') return undefined;
    return { vmId, tags: (tags && typeof tags === 'object' ? tags : {}) as Record<string, string> };
  }

  /** Idempotent: returns this run's proving ground if it exists. Refuses when another run's one is up. Locks the target first. */
  async provisionProvingGround(runId: string): Promise<ProvingGroundHandle> {
    await this.#recover();
    await this.#lockTarget(`run ${runId}`);
    const existing = await this.#provingGroundOutput();
    const enabled = (await this.#stack.getConfig('rubicon:provingGround.enabled', { path: true })) === 'true';
    const ownerRun = await this.#stack.getConfig('rubicon:provingGround.runId', { path: true });
    if ((existing || enabled) && ownerRun && ownerRun !== runId) {
      throw infraError(`Stack ${this.#stack.stackName} already has a proving ground for run ${ownerRun}.`, 'Wait for that run to finish, or destroy it with `rubicon reap` once its TTL has passed.');
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
    let outputs: Record<string, unknown>;
    try {
      outputs = await this.#planAndApply('provision', runId, { mayCreateUnder: PROVING_GROUND_TYPE });
    } catch (e) {
      if (!(await this.#provingGroundOutput())) await this.#stack.setConfig('rubicon:provingGround.enabled', 'false', { path: true });
      throw e;
    }
    const pg = outputs['provingGround'] as { vmId?: unknown } | null | undefined;
    if (!pg || typeof pg.vmId !== 'string') {
      throw infraError(`Stack ${this.#stack.stackName}: pulumi up succeeded but output provingGround.vmId is missing.`, 'Check that rubicon:provingGround.enabled is true in the stack config.');
    }
    await this.#machines.waitForVmAgent(pg.vmId, this.#agentTimeoutMs);
    return { name, host: this.#machines.hostFor(pg.vmId, name) };
  }

  /** Destroys this run's proving ground. Idempotent; a proving ground of another run is left alone. */
  async destroyProvingGround(runId: string): Promise<void> {
    await this.#recover();
    const ownerRun = await this.#stack.getConfig('rubicon:provingGround.runId', { path: true });
    if (ownerRun && ownerRun !== runId) {
      this.#log('warn', `Proving ground of stack ${this.#stack.stackName} belongs to run ${ownerRun}, not ${runId}: left alone.`);
      return;
    }
    await this.teardownProvingGround(runId);
  }

  /**
   * Destructive for the proving ground only. Targeted (`--target` its URNs):
   * other pending changes in the stack (a drifted tag, an unrelated update)
   * neither block nor ride along; the targeted plan must still be deletes
   * under the proving ground and nothing else. Idempotent.
   */
  async teardownProvingGround(label: string): Promise<void> {
    const enabled = (await this.#stack.getConfig('rubicon:provingGround.enabled', { path: true })) === 'true';
    if (!enabled && !(await this.#provingGroundOutput())) return;
    this.#log('info', `Destroying proving ground of stack ${this.#stack.stackName}`);
    await this.#stack.setConfig('rubicon:provingGround.enabled', 'false', { path: true });
    await mkdir(this.#planDir, { recursive: true });
    const survey = await this.#stack.preview({});
    const urns = urnsUnder(survey.events, PROVING_GROUND_TYPE, ['delete']);
    if (urns.length === 0) {
      this.#log('info', `Stack ${this.#stack.stackName}: nothing of the proving ground left to delete.`);
      return;
    }
    const others = classifyPlan(survey.events, { mayDeleteUnder: PROVING_GROUND_TYPE });
    if (!others.ok) this.#log('warn', `Stack ${this.#stack.stackName} has other pending changes; the teardown leaves them alone:\n${describePlanRefusal(others)}`);
    await this.#planAndApply('teardown', label, { mayDeleteUnder: PROVING_GROUND_TYPE }, urns);
  }

  // ------------------------------------------------------------ freeze

  async #runOnTarget(verb: 'Stop' | 'Start'): Promise<void> {
    if (this.#services.length === 0) return;
    const vmId = await this.#targetVmId();
    const host = this.#targetHost(vmId, await this.#targetName());
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
    await this.#recover();
    await this.#runOnTarget('Stop');
  }

  /** Starts them again. Idempotent. */
  async thaw(_runId: string): Promise<void> {
    await this.#recover();
    await this.#runOnTarget('Start');
  }

  /** The target as a machine (Run Command), with the VM's lock lifted only while a command runs. */
  async targetHost(): Promise<Host> {
    await this.#recover();
    return this.#targetHost(await this.#targetVmId(), await this.#targetName());
  }

  /**
   * The composition root's target machine (the runbook's
   * `target.transport`), for the phases and the landing: an
   * azure-run-command machine is wrapped so its run commands (children of
   * the VM, which inherit the VM's lock) can be deleted; the VM's lock is
   * lifted only while one of its operations runs, and each lift and restore
   * is logged (the journal). Any other machine is returned as it is
   * (./target-machine.ts).
   */
  targetMachine<M extends Machine>(machine: M): M {
    let vmId: string | undefined;
    return lockLiftingMachine(machine, {
      lift: async () => {
        await this.#recover();
        vmId = await this.#targetVmId();
        await this.#arm.unlock(vmId);
        this.#log('warn', `Target ${machine.name}: deletion lock on VM ${vmId} removed while Run Command runs on it.`);
      },
      restore: async () => {
        const id = vmId ?? (await this.#targetVmId());
        await this.#arm.lock(id, `Rubicon: ${machine.name} may not be deleted; only Rubicon lifts this, for a permitted crossing.`);
        this.#log('info', `Target ${machine.name}: deletion lock on VM ${id} restored after Run Command.`);
      },
    });
  }

  // ------------------------------------------------------------ rollback point

  /** Incremental snapshots of the target's OS and data disks. Idempotent per run id. */
  async createRollbackPoint(runId: string): Promise<RollbackPoint> {
    await this.#recover();
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

  /**
   * Releases a rollback point: deletes its snapshots, and the OS disk the
   * crossing of that run retired (tagged `rubicon-run` = the run), after
   * removing its lock, only when it is detached. Destructive; idempotent.
   */
  async releaseRollbackPoint(point: RollbackPoint): Promise<void> {
    for (const id of point.location.split(',').filter((s) => s !== '')) await this.#machines.deleteSnapshot(id);
    const runId = point.id.replace(/^rollback\./, '');
    const resourceGroup = await this.#stack.getConfig('rubicon:resourceGroupName');
    if (!resourceGroup) return;
    for (const asset of await this.#arm.listRollbackAssets(resourceGroup)) {
      if (asset.kind !== 'disk' || asset.runId !== runId || asset.role !== 'rollback-os-disk') continue;
      const facts = await this.#arm.describeDisk(asset.id);
      if (!facts) continue;
      if (facts.attachedTo) {
        this.#log('warn', `Retired OS disk ${asset.id} is attached to ${facts.attachedTo} again: kept (a rollback used it).`);
        continue;
      }
      await this.#arm.unlock(asset.id);
      await this.#arm.deleteDisk(asset.id);
      this.#log('info', `Released retired OS disk ${asset.id} of run ${runId}.`);
    }
  }

  // ------------------------------------------------------------ the crossing

  /** Signs the permit; refuses (KEY_MISMATCH, nothing touched) when the stack does not trust this signer. */
  /**
   * The crossing replaces the VM and its OS disk; data disks are detached
   * and re-attached (kept). Their contents are captured only when the
   * runbook lists their drive letters in coverage.alsoCapture (`D:`: the
   * Windows inventory supplies them; docs/coverage.md). Read-only.
   */
  async scopeOfDestruction(facts?: ScopeFacts): Promise<DriverScope> {
    const outputs = await this.#outputs().catch(() => ({}) as Record<string, unknown>);
    const data = Array.isArray(outputs['dataDiskIds']) ? (outputs['dataDiskIds'] as unknown[]).filter((x): x is string => typeof x === 'string' && x !== '') : [];
    // With the inventory's volumes: the OS disk is C:, the data disks are named by drive letter (src/coverage/windows.ts).
    if (facts?.windowsVolumes && fixedVolumes(facts.windowsVolumes).length > 0) return windowsAzureScope(facts.targetRoot, { os: 'windows', volumes: [] }, facts.windowsVolumes);
    return {
      os: 'windows',
      volumes: [
        { path: '.', label: 'the OS disk', fate: 'destroyed', capture: true },
        ...data.map((id) => ({ path: '', label: `data disk ${id.split('/').at(-1) ?? id} (detached and kept)`, fate: 'kept' as const, capture: false })),
      ],
    };
  }

  async #signFor(permit: Permit): Promise<SignedPermit> {
    const trusted = await this.#stack.getConfig('rubicon:permitPublicKey');
    if (!samePublicKey(trusted, this.#signer.publicKeyPem)) {
      throw new RubiconError(
        'KEY_MISMATCH',
        trusted === undefined
          ? `Stack ${this.#stack.stackName} trusts no signing key (rubicon:permitPublicKey is not set), so its program would refuse any permit.`
          : `Stack ${this.#stack.stackName} trusts another signing key than Rubicon's (key ${this.#signer.keyId}): rubicon:permitPublicKey was changed, or the runbook names the wrong key.`,
        {
          hint: `Put Rubicon's public key in stacks/Pulumi.${this.#stack.stackName}.yaml as rubicon:permitPublicKey (docs/trust.md) after checking who changed it; nothing was touched.`,
          details: { keyId: this.#signer.keyId },
        },
      );
    }
    return signPermit(permit, this.#signer);
  }

  /**
   * THE CROSSING: replaces the target VM with `permit.image`. Destructive
   * for the VM only. Idempotent: when the stack already runs the permit's
   * image it confirms, disarms, locks and re-protects; after a crash
   * mid-`up`, the next call disarms first, then plans the remaining create
   * and finishes it.
   */
  async cross(permit: Permit, now: Date, facts?: CrossingFacts): Promise<CrossingResult> {
    const recovered = await this.#recover();
    const target = await this.#targetName();
    if (!permit || !parseImageUrn(permit.image ?? '')) {
      throw new RubiconError('PERMIT_INVALID', `No crossing for target ${target}: the permit names no image of the form publisher:offer:sku:version.`, {
        hint: "Fix the runbook's target image and run `rubicon upgrade` again.",
      });
    }
    const signed = await this.#signFor(permit);
    const check = verifySignedPermit(signed, verifierFrom(this.#signer.publicKeyPem), {
      image: permit.image,
      target,
      now,
      proofSetHash: facts?.proofSetHash ?? permit.proofSetHash,
    });
    if (!check.valid) throw new RubiconError('PERMIT_INVALID', `No crossing for target ${target}: ${check.reason}.`, { hint: check.fix });

    const vmId = await this.#targetVmId();
    const before = await this.#outputImage();
    const resumed = recovered?.runId === permit.runId ? recovered : undefined;
    if (before === permit.image) return this.#finishDone(permit, target, vmId, resumed);

    const beforeVm = await this.#lockTarget(`before the crossing of run ${permit.runId}`);
    if (beforeVm) {
      await this.createRollbackPoint(permit.runId);
    } else if (resumed) {
      // A crash after the up deleted the old VM (deleteBeforeReplace): its rollback point was taken before arming.
      this.#log('warn', `Target ${target}: VM ${vmId} is gone; resuming the crossing of run ${permit.runId}, whose delete already ran.`);
    } else {
      throw infraError(
        `Target VM ${vmId} does not exist in Azure, but the stack says it runs ${before}, and no interrupted crossing of run ${permit.runId} explains it.`,
        `Nothing was changed. Run \`pulumi refresh --stack ${this.#stack.stackName}\` and check the portal before retrying.`,
      );
    }

    const vm = await this.#replaceVm({
      step: 'crossing',
      runId: permit.runId,
      target,
      before,
      image: permit.image,
      signed,
      proofSetHash: facts?.proofSetHash ?? permit.proofSetHash,
      beforeVm,
      resumed,
      arm: async () => {
        await this.#setImage(permit.image);
        await this.#stack.removeConfig('rubicon:target.restoreFromDisk', { path: true });
        await this.#stack.setConfig('rubicon:target.osDiskName', crossingOsDiskName(target, permit.runId), { path: true });
      },
    });
    return { image: permit.image, completedAt: this.#now().toISOString(), ...machineOf(vm) };
  }

  /**
   * Arms the stack, previews, lifts the VM's lock, ups, confirms the new VM,
   * and on every way out disarms and locks again; then re-protects and tags
   * the retired OS disk. Shared by the crossing and the rollback.
   */
  async #replaceVm(o: {
    step: 'crossing' | 'rollback';
    runId: string;
    target: string;
    before: string;
    image: string;
    signed: SignedPermit;
    proofSetHash: string;
    beforeVm: VmState | undefined;
    resumed: ArmedRecord | undefined;
    /** Sets the config that describes the new VM (image or disk, OS disk name). */
    arm: () => Promise<void>;
    /** Extra check of the new VM. */
    confirm?: (vm: VmState) => string | undefined;
  }): Promise<VmState> {
    const osDiskName = (await this.#stack.getConfig('rubicon:target.osDiskName', { path: true })) ?? o.resumed?.previousOsDiskName;
    const restoreFromDisk = (await this.#stack.getConfig('rubicon:target.restoreFromDisk', { path: true })) ?? o.resumed?.previousRestoreFromDisk;
    const previousOsDiskId = o.beforeVm?.osDiskId ?? o.resumed?.previousOsDiskId;
    const previousVmUniqueId = o.beforeVm?.uniqueId ?? o.resumed?.previousVmUniqueId;
    const armed: ArmedRecord = {
      runId: o.runId,
      at: this.#now().toISOString(),
      previousImage: o.before,
      ...(osDiskName ? { previousOsDiskName: osDiskName } : {}),
      ...(restoreFromDisk ? { previousRestoreFromDisk: restoreFromDisk } : {}),
      ...(previousOsDiskId ? { previousOsDiskId } : {}),
      ...(previousVmUniqueId !== undefined ? { previousVmUniqueId } : {}),
    };
    this.#log('info', `Arming stack ${this.#stack.stackName} for the ${o.step} of run ${o.runId}: ${o.before} → ${o.image}`);
    await this.#stack.setConfig('rubicon:armed', JSON.stringify(armed));
    await o.arm();
    await this.#stack.setConfig('rubicon:permit', JSON.stringify(o.signed));
    await this.#stack.setConfig('rubicon:proofSetHash', o.proofSetHash);

    let failure: unknown;
    let newVm: VmState | undefined;
    try {
      const preview = await this.#preview(o.step, o.runId);
      const verdict = classifyPlan(preview.events, CROSSING_EXPECTATION());
      if (!verdict.ok) this.#refuse(o.step, verdict);
      if (o.beforeVm) {
        await this.#arm.unlock(o.beforeVm.id);
        this.#log('warn', `Target ${o.target}: deletion lock on VM ${o.beforeVm.id} removed for the ${o.step} of run ${o.runId}.`);
      }
      const up = await this.#upChecked(o.step, preview);
      newVm = await this.#confirmRebuilt(o.target, up.outputs, armed.previousVmUniqueId, o.image, o.step);
      const extra = o.confirm?.(newVm);
      if (extra) throw infraError(`Target ${o.target}: the ${o.step} did not really replace the VM: ${extra}.`, 'Check the VM in the portal before retrying.');
      await this.#machines.waitForVmAgent(newVm.id, this.#agentTimeoutMs);
    } catch (e) {
      failure = e;
    }
    await this.#afterCrossing(armed, o.target, o.runId, failure);
    if (failure) throw failure;

    await this.#reprotect(o.runId);
    await this.#retireOsDisk(armed, o.target);
    return newVm!;
  }

  /**
   * ROLLBACK: rebuilds the target from the rollback point of run `runId`,
   * through Pulumi: the OS disk that run's crossing retired (or, when it is
   * gone, a disk made from that run's OS-disk snapshot) becomes the VM's OS
   * disk again (`rubicon:target.restoreFromDisk`); the data disks stay
   * attached as they are. Destructive for the current VM only (its OS disk
   * is detached and kept, tagged as a rollback asset of `rollback-<runId>`).
   * Signed like a crossing (a permit for image `disk:<id>`, valid 60
   * minutes, bound to no proofs: a rollback restores what was there).
   * Idempotent: when the VM already boots from that disk it only finishes.
   */
  async rollback(runId: string, now: Date): Promise<RollbackResult> {
    await this.#recover();
    const target = await this.#targetName();
    const resourceGroup = await this.#stack.getConfig('rubicon:resourceGroupName');
    if (!resourceGroup) throw infraError(`Stack ${this.#stack.stackName} has no rubicon:resourceGroupName.`, `Set it in stacks/Pulumi.${this.#stack.stackName}.yaml.`);
    const assets = (await this.#arm.listRollbackAssets(resourceGroup)).filter((a) => a.runId === runId);
    let diskId = assets.find((a) => a.kind === 'disk' && a.role === 'rollback-os-disk')?.id;
    let from: RollbackResult['from'] = 'retired-os-disk';
    if (!diskId) {
      const snap = assets.find((a) => a.kind === 'snapshot' && a.disk === 'os');
      if (!snap) {
        throw infraError(
          `No rollback point of run ${runId} in resource group ${resourceGroup}: no retired OS disk and no OS-disk snapshot tagged rubicon-run=${runId}.`,
          `List what is kept with \`rubicon status\` (rollback assets); nothing was changed.`,
          { runId, found: assets.map((a) => a.id) },
        );
      }
      diskId = await this.#arm.createDiskFromSnapshot(snap.id, `${target}-os-rollback-${safeName(runId)}`.slice(0, 80), { [RUN_TAG]: runId, 'rubicon-role': 'rollback-restored-os-disk' });
      from = 'os-disk-snapshot';
    }
    const image = diskImageUrn(diskId);
    const vmId = await this.#targetVmId();
    const before = await this.#outputImage();
    const facts = await this.#arm.describeDisk(diskId);
    if (facts?.attachedTo && !sameId(facts.attachedTo, vmId)) {
      throw infraError(`Disk ${diskId} is attached to ${facts.attachedTo}, not to the target: refusing to take it.`, 'Detach it first (or check the run id); nothing was changed.');
    }
    const permit: Permit = {
      id: `permit.rollback.${runId}.${createHash('sha256').update(`${runId}\n${target}\n${image}\n${now.toISOString()}`).digest('hex').slice(0, 16)}`,
      runId: `rollback-${runId}`,
      target,
      image,
      proofIds: [],
      proofSetHash: proofSetHash([]),
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + 60 * 60_000).toISOString(),
    };
    if (before === image) {
      await this.#finishDone(permit, target, vmId, undefined);
      return { runId, from, diskId, image, completedAt: this.#now().toISOString() };
    }
    const signed = await this.#signFor(permit);
    const beforeVm = await this.#lockTarget(`before the rollback of run ${runId}`);
    if (!beforeVm) throw infraError(`Target VM ${vmId} does not exist in Azure.`, `Run \`pulumi refresh --stack ${this.#stack.stackName}\` and check the portal; nothing was changed.`);
    await this.#replaceVm({
      step: 'rollback',
      runId: permit.runId,
      target,
      before,
      image,
      signed,
      proofSetHash: permit.proofSetHash,
      beforeVm,
      resumed: undefined,
      arm: async () => {
        await this.#stack.setConfig('rubicon:target.restoreFromDisk', diskId!, { path: true });
      },
      confirm: (vm) => (vm.osDiskId && sameId(vm.osDiskId, diskId!) ? undefined : `ARM says the VM boots from ${vm.osDiskId ?? 'no managed disk'}, not ${diskId}`),
    });
    return { runId, from, diskId, image, completedAt: this.#now().toISOString() };
  }

  /** Every way out of an armed crossing: disarm, lock again. A failure here is a failure of the crossing. */
  async #afterCrossing(armed: ArmedRecord, target: string, runId: string, failure: unknown): Promise<void> {
    const problems: string[] = [];
    try {
      await this.#disarm(armed);
    } catch (e) {
      problems.push(`disarming the stack failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    try {
      await this.#lockTarget(failure ? `after the failed crossing of run ${runId}` : `after the crossing of run ${runId}`);
    } catch (e) {
      problems.push(`locking the target again failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (problems.length > 0) {
      throw infraError(
        `Target ${target}: ${failure ? 'the crossing failed, and then ' : 'the VM was rebuilt, but '}${problems.join('; ')}.`,
        `The stack may still be armed or the VM unlocked: run the same Rubicon command again (it disarms and locks first), or remove rubicon:permit from stack ${this.#stack.stackName} by hand.`,
        { runId, problems },
        failure,
      );
    }
  }

  /** ARM must show a NEW VM (another unique id) running the permit's image, and the stack outputs must agree. */
  async #confirmRebuilt(target: string, outputs: Record<string, unknown>, previousUniqueId: string | undefined, image: string, step = 'crossing'): Promise<VmState> {
    const vmId = outputs['targetVmId'];
    const uniqueId = outputs['targetVmUniqueId'];
    if (typeof vmId !== 'string') throw infraError(`Stack ${this.#stack.stackName}: the crossing's up has no targetVmId output.`, 'Check the program outputs.');
    const vm = await this.#arm.describeVm(vmId);
    const problems: string[] = [];
    if (!vm) problems.push(`ARM has no VM ${vmId}`);
    else {
      if (vm.image !== image) problems.push(`ARM says the VM runs ${vm.image ?? 'an unknown image'}, not ${image}`);
      if (previousUniqueId !== undefined && vm.uniqueId === previousUniqueId) problems.push(`the VM's unique id is still ${vm.uniqueId}: it was not recreated`);
      if (typeof uniqueId === 'string' && uniqueId !== '' && vm.uniqueId !== uniqueId) problems.push(`the stack output targetVmUniqueId (${uniqueId}) is not ARM's (${vm.uniqueId})`);
      if (outputs['targetImage'] !== image) problems.push(`the stack output targetImage is ${String(outputs['targetImage'])}, not ${image}`);
    }
    if (problems.length > 0 || !vm) {
      throw infraError(
        `Target ${target}: the ${step} did not really replace the VM: ${problems.join('; ')}.`,
        'This is a failure, not a success: check the VM in the portal; the rollback point (snapshots, the old OS disk) is kept.',
        { problems },
      );
    }
    return vm;
  }

  /** Turns protect back on: an up that must be all-`same` apart from the protect flag. Mandatory. */
  async #reprotect(runId: string): Promise<void> {
    try {
      await this.#planAndApply('reprotect', runId, {});
    } catch (e) {
      throw infraError(
        `The target is rebuilt, but turning Pulumi's protect back on failed: ${e instanceof Error ? e.message : String(e)}`,
        'The ARM locks are in place. Run the same Rubicon command again (it only re-protects now), or `pulumi up` once the plan is clean.',
        undefined,
        e,
      );
    }
  }

  /** Tags the OS disk the crossing retired as a rollback asset of the run; its lock stays. */
  async #retireOsDisk(armed: ArmedRecord, target: string): Promise<void> {
    if (!armed.previousOsDiskId) return;
    await this.#arm.tagDisk(armed.previousOsDiskId, {
      [RUN_TAG]: armed.runId,
      'rubicon-role': 'rollback-os-disk',
      'rubicon-retired-from': target,
      'rubicon-retired-image': armed.previousImage,
    });
    this.#log('info', `Old OS disk ${armed.previousOsDiskId} of ${target} kept and tagged as rollback asset of run ${armed.runId}.`);
  }

  /** The stack already runs the permit's image (a crash after the up): confirm, disarm, lock, re-protect, tag. */
  async #finishDone(permit: Permit, target: string, vmId: string, recovered: ArmedRecord | undefined): Promise<CrossingResult> {
    this.#log('info', `Target ${target} already runs ${permit.image}: confirming and finishing.`);
    const vm = await this.#confirmRebuilt(target, { targetVmId: vmId, ...(await this.#outputs()) }, recovered?.previousVmUniqueId, permit.image);
    if ((await this.#configImage()) !== permit.image) await this.#setImage(permit.image);
    await this.#machines.waitForVmAgent(vm.id, this.#agentTimeoutMs);
    await this.#disarm(undefined);
    await this.#lockTarget(`after the crossing of run ${permit.runId}`);
    await this.#reprotect(permit.runId);
    if (recovered) await this.#retireOsDisk(recovered, target);
    return { image: permit.image, completedAt: this.#now().toISOString(), ...machineOf(vm) };
  }

  /** Read-only: the rollback assets (snapshots, retired OS disks) kept in the target's resource group, for `rubicon status`. */
  async rollbackAssets(): Promise<import('./ports.ts').RollbackAsset[]> {
    const resourceGroup = await this.#stack.getConfig('rubicon:resourceGroupName');
    return resourceGroup ? this.#arm.listRollbackAssets(resourceGroup) : [];
  }

  // ------------------------------------------------------------ reap

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
