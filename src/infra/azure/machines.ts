import { randomBytes } from 'node:crypto';
import { ComputeManagementClient, type ComputeManagementClientOptionalParams } from '@azure/arm-compute';
import type { VirtualMachineRunCommand } from '@azure/arm-compute';
import { DefaultAzureCredential } from '@azure/identity';
import { RubiconError } from '../../core/errors.ts';
import type { CommandResult, ExecOptions, Host } from '../../hosts/host.ts';
import type { DiskRef, MachinePort } from './ports.ts';
import { psLiteral } from './powershell.ts';

/**
 * MachinePort over the Azure Resource Manager (Compute) API, through
 * @azure/arm-compute's ComputeManagementClient.
 *
 * Design note:
 * - Every method is one short conversation with ARM; nothing is cached
 *   between calls except a VM's location inside one Host.
 * - Snapshots are incremental copies in the source disk's resource group and
 *   region. `snapshotDisk` is idempotent by name: GET first; a snapshot of
 *   that name and source is returned as is (an unfinished one is PUT again,
 *   which ARM treats as the same request); a same-named snapshot of another
 *   disk is refused, never overwritten.
 * - Run Command (managed, v2) hosts: one run-command resource per `exec`,
 *   synchronous (`asyncExecution: false`), read back with its instance view
 *   and always deleted afterwards (a VM holds at most 25). A non-zero exit is
 *   a result, never an error; anything else (the platform failed, timed out,
 *   or our own deadline passed) is INFRA_FAILED and says the command's
 *   outcome is unknown, because the script may have run.
 * - Secrets: environment values travel as `protectedParameters` (base64),
 *   never in the script text; no error message contains an argument or an
 *   environment value.
 * - Assumptions: one subscription per port (ids of other subscriptions are
 *   refused); the credential may read VMs and disks, write snapshots and
 *   `Microsoft.Compute/virtualMachines/runCommands`.
 */

export type AzureTokenCredential = ConstructorParameters<typeof ComputeManagementClient>[0];

export interface AzureMachinePortOptions {
  subscriptionId: string;
  credential: AzureTokenCredential;
  /** ARM base URL. Default `https://management.azure.com` (the SDK's). Tests point it at a local stand-in. */
  endpoint?: string;
  /** Passed to the ComputeManagementClient (e.g. `agent`, `retryOptions`, `proxyOptions`). */
  clientOptions?: Omit<ComputeManagementClientOptionalParams, 'endpoint'>;
  /** First delay between polls (VM agent, long-running ARM operations). Default 5 s. */
  pollIntervalMs?: number;
  /** Longest delay between VM-agent polls (the delay grows by half each poll). Default 30 s. */
  maxPollIntervalMs?: number;
  /** Run Command timeout when `exec` is given none. Default 30 minutes. */
  defaultCommandTimeoutMs?: number;
  /** How long past a command's own timeout we wait for ARM before giving up. Default 5 minutes. */
  runCommandGraceMs?: number;
  /** Clock for the VM-agent deadline (ms since epoch). Default Date.now. */
  now?: () => number;
  /** Delay between VM-agent polls. Default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
  /** Progress and cleanup warnings for people; never secrets. */
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** The parts of an ARM resource id this port uses. */
export interface ArmId {
  subscriptionId: string;
  resourceGroup: string;
  /** e.g. `virtualMachines`, `disks`, `snapshots`. */
  type: string;
  name: string;
}

const TYPES: Record<string, string> = { virtualmachines: 'virtualMachines', disks: 'disks', snapshots: 'snapshots' };

/**
 * Pure: parses `/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/T/N`
 * (keywords case-insensitive, as ARM returns them in varying case); undefined
 * when it is not a Compute VM, disk or snapshot id.
 */
export function parseComputeId(id: string): ArmId | undefined {
  const m = /^\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/providers\/microsoft\.compute\/([^/]+)\/([^/]+)\/?$/i.exec(id.trim());
  if (!m) return undefined;
  const type = TYPES[m[3]!.toLowerCase()];
  if (!type) return undefined;
  return { subscriptionId: m[1]!.toLowerCase(), resourceGroup: m[2]!, type, name: m[4]! };
}

/**
 * Pure: one spelling per resource: keywords in ARM's canonical case, the
 * subscription id lower-case, resource group and name as given, no trailing
 * slash. Ids that are not Compute VM/disk/snapshot ids come back trimmed only.
 * Compare normalised ids with `sameArmId` (resource group and name are
 * case-insensitive in ARM).
 */
export function normalizeArmId(id: string): string {
  const p = parseComputeId(id);
  if (!p) return id.trim();
  return `/subscriptions/${p.subscriptionId}/resourceGroups/${p.resourceGroup}/providers/Microsoft.Compute/${p.type}/${p.name}`;
}

/** Pure: ARM ids are case-insensitive. */
export function sameArmId(a: string, b: string): boolean {
  return normalizeArmId(a).toLowerCase() === normalizeArmId(b).toLowerCase();
}

export { psLiteral } from './powershell.ts';

/**
 * Pure: one argument quoted for a Windows command line as the Microsoft C
 * runtime / CommandLineToArgvW parse it (what powershell.exe and most
 * programs use; cmd.exe has its own rules and is not supported).
 */
export function quoteWindowsArg(arg: string): string {
  if (arg !== '' && !/[ \t\n\v"]/.test(arg)) return arg;
  let out = '"';
  let backslashes = 0;
  for (const ch of arg) {
    if (ch === '\\') {
      backslashes++;
    } else if (ch === '"') {
      out += '\\'.repeat(backslashes * 2 + 1) + '"';
      backslashes = 0;
    } else {
      out += '\\'.repeat(backslashes) + ch;
      backslashes = 0;
    }
  }
  return out + '\\'.repeat(backslashes * 2) + '"';
}

/** Pure: the Windows command-line tail (without the program) for `args`. */
export function windowsCommandLine(args: string[]): string {
  return args.map(quoteWindowsArg).join(' ');
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** Name of the protected parameter carrying environment variable number `i`. */
export function envParameterName(i: number): string {
  return `RubiconEnv${i}`;
}

/**
 * Pure: the PowerShell 5.1 script a Run Command executes for
 * `exec(file, args, {cwd, env})`. The program is started without a shell
 * through System.Diagnostics.Process with the exact Windows command line;
 * its stdout and stderr are copied to the script's, its exit code becomes
 * the script's. Every value (program, arguments, directory, variable names)
 * is embedded as base64 inside a PowerShell single-quoted literal, so no
 * value can change the script and the script stays ASCII; variable VALUES
 * are not in the script at all: they arrive as protected parameters
 * (`envParameterName(i)`, base64 of UTF-8).
 */
export function runCommandScript(file: string, args: string[], options: { cwd?: string; envNames?: string[] } = {}): string {
  const names = options.envNames ?? [];
  const dec = (s: string) => `[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String(${psLiteral(b64(s))}))`;
  const lines: string[] = [];
  if (names.length > 0) lines.push(`param(${names.map((_, i) => `[string]$${envParameterName(i)}`).join(', ')})`);
  lines.push(
    "$ErrorActionPreference = 'Stop'",
    "$ProgressPreference = 'SilentlyContinue'",
    '[Console]::OutputEncoding = [Text.Encoding]::UTF8',
    '$psi = New-Object System.Diagnostics.ProcessStartInfo',
    `$psi.FileName = ${dec(file)}`,
    `$psi.Arguments = ${dec(windowsCommandLine(args))}`,
    '$psi.UseShellExecute = $false',
    '$psi.RedirectStandardOutput = $true',
    '$psi.RedirectStandardError = $true',
    '$psi.StandardOutputEncoding = [Text.Encoding]::UTF8',
    '$psi.StandardErrorEncoding = [Text.Encoding]::UTF8',
  );
  if (options.cwd !== undefined) lines.push(`$psi.WorkingDirectory = ${dec(options.cwd)}`);
  names.forEach((name, i) => {
    lines.push(`$psi.EnvironmentVariables[${dec(name)}] = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($${envParameterName(i)}))`);
  });
  lines.push(
    'try { $p = [System.Diagnostics.Process]::Start($psi) }',
    "catch { [Console]::Error.WriteLine('rubicon: cannot start ' + $psi.FileName + ': ' + $_.Exception.Message); exit 1 }",
    '$out = $p.StandardOutput.ReadToEndAsync()',
    '$err = $p.StandardError.ReadToEndAsync()',
    '$p.WaitForExit()',
    '[Console]::Out.Write($out.Result)',
    '[Console]::Error.Write($err.Result)',
    'exit $p.ExitCode',
  );
  return lines.join('\r\n') + '\r\n';
}

/** The vmAgent status that means Ready. */
function agentReady(statuses: { code?: string; displayStatus?: string }[] | undefined): boolean {
  return (statuses ?? []).some((s) => s.code?.toLowerCase() === 'provisioningstate/succeeded' && s.displayStatus === 'Ready');
}

function describeStatuses(statuses: { code?: string; displayStatus?: string; message?: string }[] | undefined): string {
  if (!statuses || statuses.length === 0) return 'no vmAgent status reported';
  return statuses.map((s) => `${s.code ?? '?'} (${s.displayStatus ?? '?'})${s.message ? `: ${s.message}` : ''}`).join('; ').slice(0, 400);
}

function statusOf(e: unknown): number | undefined {
  const s = (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** A short, secret-free description of an ARM/SDK failure. */
function describeArmError(e: unknown): string {
  const status = statusOf(e);
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return `${status !== undefined ? `HTTP ${status}` : 'error'}${typeof code === 'string' ? ` ${code}` : ''}: ${message.replace(/\s+/g, ' ').slice(0, 300)}`;
}

function infraError(message: string, hint: string, cause?: unknown, details?: Record<string, unknown>): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(cause === undefined ? {} : { cause }), ...(details ? { details } : {}) });
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class AzureMachinePort implements MachinePort {
  readonly #client: ComputeManagementClient;
  readonly #subscriptionId: string;
  readonly #pollMs: number;
  readonly #maxPollMs: number;
  readonly #defaultCommandTimeoutMs: number;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #log: (level: 'info' | 'warn', message: string) => void;

  constructor(options: AzureMachinePortOptions) {
    if (!options.subscriptionId) throw new RubiconError('ARGUMENTS_INVALID', 'AzureMachinePort needs a subscriptionId', { hint: 'Set AZURE_SUBSCRIPTION_ID.' });
    this.#subscriptionId = options.subscriptionId.toLowerCase();
    this.#client = new ComputeManagementClient(options.credential, options.subscriptionId, {
      ...options.clientOptions,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    });
    this.#pollMs = options.pollIntervalMs ?? 5_000;
    this.#maxPollMs = options.maxPollIntervalMs ?? 30_000;
    this.#defaultCommandTimeoutMs = options.defaultCommandTimeoutMs ?? 30 * 60_000;
    this.#graceMs = options.runCommandGraceMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#log = options.log ?? (() => {});
  }

  #parse(id: string, type: string, what: string): ArmId {
    const p = parseComputeId(id);
    if (!p || p.type !== type) {
      throw new RubiconError('ARGUMENTS_INVALID', `${what} "${id}" is not an Azure ${type} resource id`, {
        hint: `Expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/${type}/<name>.`,
      });
    }
    if (p.subscriptionId !== this.#subscriptionId) {
      throw new RubiconError('ARGUMENTS_INVALID', `${what} "${id}" is in subscription ${p.subscriptionId}, but this port works in ${this.#subscriptionId}`, {
        hint: 'Set AZURE_SUBSCRIPTION_ID to the subscription of the target.',
      });
    }
    return p;
  }

  /** Read-only. The OS disk (role `os`) and every data disk (role = its name), ids normalised. */
  async disksOf(vmId: string): Promise<DiskRef[]> {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    let got;
    try {
      got = await this.#client.virtualMachines.get(vm.resourceGroup, vm.name);
    } catch (e) {
      throw infraError(`Reading VM ${vm.name} (resource group ${vm.resourceGroup}) failed: ${describeArmError(e)}`, 'Check that the VM exists and the credential may read it (Reader on the resource group).', e);
    }
    const sp = got.storageProfile;
    const osId = sp?.osDisk?.managedDisk?.id;
    if (!osId) {
      throw infraError(`VM ${vm.name} has no managed OS disk in its storageProfile.`, 'Rubicon snapshots managed disks only; convert unmanaged disks to managed disks first.');
    }
    const disks: DiskRef[] = [{ id: normalizeArmId(osId), role: 'os' }];
    for (const d of sp?.dataDisks ?? []) {
      const id = d.managedDisk?.id;
      if (!id) {
        throw infraError(`Data disk ${d.name ?? `at LUN ${d.lun}`} of VM ${vm.name} is not a managed disk.`, 'Rubicon snapshots managed disks only; convert it to a managed disk first.');
      }
      disks.push({ id: normalizeArmId(id), role: d.name ?? parseComputeId(id)?.name ?? `lun${d.lun}` });
    }
    return disks;
  }

  /**
   * Incremental snapshot `name` of `disk` in the disk's resource group and
   * region, tagged. Idempotent: an existing snapshot of that name and source
   * is returned as is (PUT again if it is not finished). A same-named
   * snapshot of another source is refused. Creates a resource (costs money
   * until deleted); never deletes or overwrites one.
   */
  async snapshotDisk(disk: DiskRef, name: string, tags: Record<string, string>): Promise<{ id: string }> {
    const src = this.#parse(disk.id, 'disks', `Disk ${disk.role}`);
    const rg = src.resourceGroup;
    let existing;
    try {
      existing = await this.#client.snapshots.get(rg, name);
    } catch (e) {
      if (statusOf(e) !== 404) throw infraError(`Reading snapshot ${name} in resource group ${rg} failed: ${describeArmError(e)}`, 'Check the credential may read snapshots there and retry.', e);
    }
    if (existing) {
      const existingSource = existing.creationData?.sourceResourceId ?? '';
      if (!sameArmId(existingSource, disk.id)) {
        throw infraError(
          `Snapshot ${name} in resource group ${rg} already exists but is a copy of ${existingSource || '(unknown source)'}, not of ${normalizeArmId(disk.id)} (disk ${disk.role}).`,
          'Nothing was changed. Delete or rename that snapshot if it is stale, or use another run id.',
          undefined,
          { snapshot: name, existingSource, wantedSource: disk.id },
        );
      }
      if (existing.provisioningState === undefined || existing.provisioningState === 'Succeeded') {
        return { id: normalizeArmId(existing.id ?? '') };
      }
      this.#log('info', `Snapshot ${name} exists in state ${existing.provisioningState}: asking ARM again and waiting.`);
    }
    let location = existing?.location;
    if (!location) {
      try {
        location = (await this.#client.disks.get(rg, src.name)).location;
      } catch (e) {
        throw infraError(`Reading disk ${src.name} (${disk.role}) in resource group ${rg} failed: ${describeArmError(e)}`, 'Check that the disk exists and the credential may read it.', e);
      }
    }
    try {
      const snap = await this.#client.snapshots
        .createOrUpdate(
          rg,
          name,
          { location, tags, incremental: true, creationData: { createOption: 'Copy', sourceResourceId: normalizeArmId(disk.id) } },
          { updateIntervalInMs: this.#pollMs },
        )
        .pollUntilDone();
      if (!snap.id) throw new Error('ARM returned no id');
      return { id: normalizeArmId(snap.id) };
    } catch (e) {
      throw infraError(
        `Snapshot ${name} of disk ${src.name} (${disk.role}) failed: ${describeArmError(e)}`,
        'Retry: snapshotting is idempotent by name. If it keeps failing, check quota and that the disk is not being detached.',
        e,
      );
    }
  }

  /** Deletes a snapshot. Destructive. Idempotent: an absent snapshot is fine. */
  async deleteSnapshot(id: string): Promise<void> {
    const snap = this.#parse(id, 'snapshots', 'Snapshot id');
    try {
      await this.#client.snapshots.delete(snap.resourceGroup, snap.name, { updateIntervalInMs: this.#pollMs }).pollUntilDone();
    } catch (e) {
      if (statusOf(e) === 404) return;
      throw infraError(`Deleting snapshot ${snap.name} in resource group ${snap.resourceGroup} failed: ${describeArmError(e)}`, 'Retry; deleting is idempotent. Check for a lock on the resource group.', e);
    }
  }

  /**
   * Read-only. Polls the VM's instance view (delays growing by half, capped)
   * until the VM agent reports ProvisioningState/succeeded + Ready; rejects
   * after `timeoutMs` naming the last status seen. A missing VM (404) fails
   * at once; other read errors count as "not ready yet".
   */
  async waitForVmAgent(vmId: string, timeoutMs: number): Promise<void> {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    const deadline = this.#now() + timeoutMs;
    let delay = this.#pollMs;
    let last = 'no answer yet';
    let polls = 0;
    for (;;) {
      polls++;
      try {
        const view = await this.#client.virtualMachines.instanceView(vm.resourceGroup, vm.name);
        if (agentReady(view.vmAgent?.statuses)) return;
        last = describeStatuses(view.vmAgent?.statuses);
      } catch (e) {
        if (statusOf(e) === 404) {
          throw infraError(`VM ${vm.name} (resource group ${vm.resourceGroup}) does not exist: its VM agent cannot become ready.`, 'Check the stack output targetVmId / provingGround.vmId against the portal.', e);
        }
        last = `instanceView failed: ${describeArmError(e)}`;
      }
      const left = deadline - this.#now();
      if (left <= 0) {
        throw infraError(
          `VM agent of ${vm.name} (resource group ${vm.resourceGroup}) not Ready after ${Math.round(timeoutMs / 1000)} s (${polls} polls); last status: ${last}`,
          'Open the VM in the portal (boot diagnostics, Run Command availability). Running the same Rubicon command again waits again.',
          undefined,
          { vm: vm.name, lastStatus: last, polls },
        );
      }
      await this.#sleep(Math.min(delay, left));
      delay = Math.min(Math.ceil(delay * 1.5), this.#maxPollMs);
    }
  }

  /** A Host whose `exec` runs on the VM through managed Run Command (see AzureRunCommandHost). */
  hostFor(vmId: string, name: string): Host {
    const vm = this.#parse(vmId, 'virtualMachines', 'VM id');
    return new AzureRunCommandHost(this.#client, vm, name, {
      pollMs: this.#pollMs,
      defaultTimeoutMs: this.#defaultCommandTimeoutMs,
      graceMs: this.#graceMs,
      log: this.#log,
    });
  }
}

interface HostSettings {
  pollMs: number;
  defaultTimeoutMs: number;
  graceMs: number;
  log: (level: 'info' | 'warn', message: string) => void;
}

/**
 * Host over managed Run Command. `exec` is NOT idempotent (it runs the
 * program each call). Output is what Run Command keeps: the last 4 KB of
 * stdout and of stderr. `cwd` is a path on the VM (there is no host root).
 * Pass secrets in `env`, never in `args` (arguments are in the script text,
 * readable by anyone who may read the VM's run commands while it exists).
 */
export class AzureRunCommandHost implements Host {
  readonly name: string;
  readonly kind = 'azure-run-command' as const;
  readonly #client: ComputeManagementClient;
  readonly #vm: ArmId;
  readonly #s: HostSettings;
  #location: string | undefined;

  constructor(client: ComputeManagementClient, vm: ArmId, name: string, settings: HostSettings) {
    this.#client = client;
    this.#vm = vm;
    this.name = name;
    this.#s = settings;
  }

  resolve(relative: string): string {
    throw new RubiconError('ARGUMENTS_INVALID', `Host ${this.name} (Azure Run Command) has no local files: cannot resolve "${relative}"`, {
      hint: 'Use exec on this host; files of an Azure VM are reached through commands or a vault, not local paths.',
    });
  }

  async #vmLocation(): Promise<string> {
    if (this.#location) return this.#location;
    try {
      this.#location = (await this.#client.virtualMachines.get(this.#vm.resourceGroup, this.#vm.name)).location;
    } catch (e) {
      throw infraError(`Reading VM ${this.#vm.name} for Run Command failed: ${describeArmError(e)}`, 'Check that the VM exists and the credential may read it.', e);
    }
    return this.#location;
  }

  /**
   * Runs `file args` on the VM. Never throws for a non-zero exit. Throws
   * INFRA_FAILED when the platform fails or times out: the outcome is then
   * unknown (the program may have run, fully or partly).
   */
  async exec(file: string, args: string[], options: ExecOptions = {}): Promise<CommandResult> {
    const started = Date.now();
    const timeoutMs = options.timeoutMs ?? this.#s.defaultTimeoutMs;
    const envEntries = Object.entries(options.env ?? {});
    const script = runCommandScript(file, args, { ...(options.cwd !== undefined ? { cwd: options.cwd } : {}), envNames: envEntries.map(([k]) => k) });
    const runName = `rubicon-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const { resourceGroup: rg, name: vmName } = this.#vm;
    const what = `Run Command ${runName} on VM ${vmName} (host ${this.name}, program ${file})`;
    const unknown = 'The outcome is unknown: the program may have run. Check the VM before retrying; the run command was deleted (or will be by the next cleanup).';
    const location = await this.#vmLocation();

    const body: VirtualMachineRunCommand = {
      location,
      source: { script },
      timeoutInSeconds: Math.max(1, Math.ceil(timeoutMs / 1000)),
      asyncExecution: false,
      treatFailureAsDeploymentFailure: false,
      ...(envEntries.length > 0 ? { protectedParameters: envEntries.map(([, v], i) => ({ name: envParameterName(i), value: b64(v) })) } : {}),
    };

    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs + this.#s.graceMs);
    const onAbort = () => deadline.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      try {
        await this.#client.virtualMachineRunCommands
          .createOrUpdate(rg, vmName, runName, body, { updateIntervalInMs: this.#s.pollMs, abortSignal: deadline.signal })
          .pollUntilDone({ abortSignal: deadline.signal });
      } catch (e) {
        const why = deadline.signal.aborted
          ? options.signal?.aborted
            ? 'was cancelled by the caller'
            : `did not finish within ${Math.round((timeoutMs + this.#s.graceMs) / 1000)} s`
          : `failed: ${describeArmError(e)}`;
        throw infraError(`${what} ${why}.`, unknown, e, { runCommand: runName, vm: vmName });
      }
      let rc;
      try {
        rc = await this.#client.virtualMachineRunCommands.getByVirtualMachine(rg, vmName, runName, { expand: 'instanceView', abortSignal: deadline.signal });
      } catch (e) {
        throw infraError(`${what}: reading its result failed: ${describeArmError(e)}.`, unknown, e, { runCommand: runName, vm: vmName });
      }
      const iv = rc.instanceView;
      const state = iv?.executionState ?? 'Unknown';
      const result = (exitCode: number): CommandResult => ({
        command: file,
        args,
        exitCode,
        stdout: iv?.output ?? '',
        stderr: iv?.error ?? '',
        durationMs: Date.now() - started,
      });
      if (state === 'Succeeded' && (iv?.exitCode ?? 0) === 0) return result(0);
      if (state === 'Failed' && typeof iv?.exitCode === 'number' && iv.exitCode !== 0) return result(iv.exitCode);
      const message = iv?.executionMessage ? `; platform message: ${iv.executionMessage.replace(/\s+/g, ' ').slice(0, 300)}` : '';
      throw infraError(
        `${what} ended in execution state ${state}${typeof iv?.exitCode === 'number' ? ` (exit code ${iv.exitCode})` : ''}${message}.`,
        state === 'TimedOut' ? `${unknown} Raise the timeout (now ${Math.round(timeoutMs / 1000)} s) if the program needs longer.` : unknown,
        undefined,
        { runCommand: runName, vm: vmName, executionState: state },
      );
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      await this.#deleteRun(runName);
    }
  }

  /** Deletes the run command (cancels it if still running). Best effort: a failure is logged, not thrown. */
  async #deleteRun(runName: string): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.#s.graceMs);
    try {
      await this.#client.virtualMachineRunCommands
        .delete(this.#vm.resourceGroup, this.#vm.name, runName, { updateIntervalInMs: this.#s.pollMs, abortSignal: abort.signal })
        .pollUntilDone({ abortSignal: abort.signal });
    } catch (e) {
      if (statusOf(e) !== 404) {
        this.#s.log('warn', `Could not delete run command ${runName} on VM ${this.#vm.name} (${describeArmError(e)}); delete it by hand: a VM holds at most 25.`);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The production MachinePort: DefaultAzureCredential (environment, workload
 * identity, managed identity, Azure CLI, ...) and AZURE_SUBSCRIPTION_ID.
 * Public Azure cloud (for another cloud pass `endpoint` and matching
 * `clientOptions.credentials.scopes`).
 */
export function azureMachinePortFromEnv(
  env: Record<string, string | undefined> = process.env,
  options: Omit<AzureMachinePortOptions, 'subscriptionId' | 'credential'> = {},
): AzureMachinePort {
  const subscriptionId = env['AZURE_SUBSCRIPTION_ID']?.trim();
  if (!subscriptionId) {
    throw new RubiconError('INFRA_FAILED', 'Environment variable AZURE_SUBSCRIPTION_ID is not set: Rubicon cannot reach the Azure machines (snapshots, VM agent, Run Command).', {
      hint: 'export AZURE_SUBSCRIPTION_ID=<subscription id of the target>; sign in with `az login` or set AZURE_TENANT_ID/AZURE_CLIENT_ID (DefaultAzureCredential).',
    });
  }
  return new AzureMachinePort({ ...options, subscriptionId, credential: new DefaultAzureCredential() });
}
