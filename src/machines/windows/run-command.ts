import { createHash, randomBytes } from 'node:crypto';
import type { Agent } from 'node:https';
import { ComputeManagementClient, type ComputeManagementClientOptionalParams, type VirtualMachineRunCommand } from '@azure/arm-compute';
import { bearerTokenAuthenticationPolicy, createDefaultHttpClient, createEmptyPipeline, createHttpHeaders, createPipelineRequest } from '@azure/core-rest-pipeline';
import { RubiconError } from '../../core/errors.ts';
import type { CommandResult, ExecOptions as HostExecOptions, Host } from '../../hosts/host.ts';
import { STEP_TIMEOUT_EXIT, type Command, type ExecOptions, type ExecResult, type PlatformIdentity, type StepKey, type StepResult, type TransportKind } from '../machine.ts';
import { stepFolderName, stepLost } from '../posix.ts';
import { decodeClixml } from './clixml.ts';
import { psLiteral, windowsCommandLine } from './quote.ts';
import { stdinBootstrap as scriptBootstrap, type WindowsScriptName } from './scripts.ts';
import { checkFrames, isNoSpace, parseFrames, runCommandText, stateError, type Frames, type Spec } from './transport.ts';
import { programSpec, toBytes, withCut } from './openssh.ts';
import { type WindowsMachine, windowsPath } from './windows-machine.ts';

/**
 * Managed Run Command (v2) through @azure/arm-compute: the azure-run-command
 * transport (a Machine) and the older one-shot Host the Azure infra driver
 * uses (AzureRunCommandHost). Design note: docs/windows.md "Transports".
 *
 * The REST operations, and the shapes the tests' stand-in serves (cited
 * there): Virtual Machine Run Commands - Create Or Update (PUT
 * …/virtualMachines/{vm}/runCommands/{name}), Get By Virtual Machine (GET,
 * `$expand=instanceView`), List By Virtual Machine (GET …/runCommands),
 * Delete; learn.microsoft.com/rest/api/compute/virtual-machine-run-commands.
 *
 * Contracts of AzureRunCommandMachine:
 * - A step's run command is named from its journal step id
 *   (`rubicon-<sha256(id)[0..32]>`), so a resumed run finds it: GET by name
 *   first, re-attach to a running or finished one, never PUT it again (an
 *   unchanged re-PUT does not re-run anyway, azure-sdk-for-net#47307).
 * - The script is Rubicon's step script (transport/run-command-step.ps1)
 *   with a step folder on the machine: rc/out/err kept there, a non-
 *   idempotent step that started and left no rc is refused on the machine
 *   itself ("lost"), even after its run command resource was deleted.
 * - Rubicon's own deadline: the platform can hang in Running (azure-cli
 *   #28172). Past timeout + grace the run command is deleted (which ends
 *   the execution) and the outcome is unknown: MACHINE_TIMEOUT for an
 *   idempotent step (a resume runs it again), STEP_LOST otherwise.
 * - Exit codes come from the script's own frames (checked SHA-256 and byte
 *   counts), never from provisioningState: a script that exits 1 has
 *   provisioningState Succeeded unless treatFailureAsDeploymentFailure
 *   (API ≥ 2023-03-01; the SDK here speaks 2026-04-01) is set, which it is.
 * - The instance view keeps the last 4 KB of output. With an output
 *   container, output and error go to append blobs named after the run
 *   command and are read back whole; without one, a longer output comes
 *   back cut with a marker line, and a Windows script's output is refused.
 * - 409 "Run command extension execution is in progress" (Azure/azure-cli
 *   #32305): retried with backoff until the deadline; nothing ran.
 * - At most 25 run commands per VM: before creating one, if the VM is
 *   full, Rubicon deletes its own finished ones, oldest first, never
 *   another's and never a running one.
 * - Secrets (a step's stdin, writeSmall's bytes) travel only as the
 *   protected parameter RubiconSecret, never in the script text (readable
 *   by anyone who may read the VM's run commands) or an argument.
 */

// ------------------------------------------------------------ shared ARM helpers

export function statusOf(e: unknown): number | undefined {
  const s = (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** A short, secret-free description of an ARM/SDK failure. */
export function describeArmError(e: unknown): string {
  const status = statusOf(e);
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return `${status !== undefined ? `HTTP ${status}` : 'error'}${typeof code === 'string' ? ` ${code}` : ''}: ${message.replace(/\s+/g, ' ').slice(0, 300)}`;
}

function infraError(message: string, hint: string, cause?: unknown, details?: Record<string, unknown>): RubiconError {
  return new RubiconError('INFRA_FAILED', message, { hint, ...(cause === undefined ? {} : { cause }), ...(details ? { details } : {}) });
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------ the one-shot Host (moved from src/infra/azure/machines.ts)

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

/** The parts of an ARM VM id the Host uses. */
export interface RunCommandVm {
  resourceGroup: string;
  name: string;
}

export interface RunCommandHostSettings {
  pollMs: number;
  defaultTimeoutMs: number;
  graceMs: number;
  log: (level: 'info' | 'warn', message: string) => void;
}

/**
 * Host over managed Run Command, for the Azure infra driver (one command,
 * one resource). `exec` is NOT idempotent (it runs the program each call).
 * Output is what Run Command keeps: the last 4 KB of stdout and of stderr.
 * `cwd` is a path on the VM (there is no host root). Pass secrets in `env`,
 * never in `args` (arguments are in the script text, readable by anyone who
 * may read the VM's run commands while it exists). Synchronous
 * (`asyncExecution: false`), always deleted afterwards (a VM holds at most
 * 25). A non-zero exit is a result, never an error; anything else (the
 * platform failed, timed out, or our own deadline passed) is INFRA_FAILED
 * and says the command's outcome is unknown, because the script may have run.
 */
export class AzureRunCommandHost implements Host {
  readonly name: string;
  readonly kind = 'azure-run-command' as const;
  readonly #client: ComputeManagementClient;
  readonly #vm: RunCommandVm;
  readonly #s: RunCommandHostSettings;
  #location: string | undefined;

  constructor(client: ComputeManagementClient, vm: RunCommandVm, name: string, settings: RunCommandHostSettings) {
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
  async exec(file: string, args: string[], options: HostExecOptions = {}): Promise<CommandResult> {
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

// ------------------------------------------------------------ the seam: where run commands live

/** A run command as Rubicon reads it back (VM or Arc machine: the same properties). */
export interface RunCommandResource {
  name: string;
  tags: Record<string, string>;
  provisioningState?: string;
  instanceView?: {
    executionState?: string;
    executionMessage?: string;
    exitCode?: number;
    output?: string;
    error?: string;
    startTime?: string;
    endTime?: string;
  };
}

export interface RunCommandBody {
  script: string;
  /** Protected parameters (not returned by GET), e.g. RubiconSecret. */
  protectedParameters: { name: string; value: string }[];
  timeoutInSeconds: number;
  tags: Record<string, string>;
  outputBlobUri?: string;
  errorBlobUri?: string;
  /** The VM's identity that writes the blobs: {} system-assigned, or a user-assigned client id. */
  blobIdentity?: { clientId?: string };
}

/**
 * Where run commands live: a VM (Microsoft.Compute, below) or an
 * Arc-enabled server (Microsoft.HybridCompute machines/{m}/runCommands, the
 * same properties). The Arc adapter is NOT built: the npm registry reachable
 * here serves @azure/arm-hybridcompute 3.0.0 only, which has no
 * machineRunCommands. A newer version (or the REST API directly) implements
 * this interface and nothing else changes.
 */
export interface RunCommandTarget {
  /** `VM ehr-prd-01 (resource group rg-ehr)`, for messages. */
  readonly description: string;
  /** With its instance view; undefined when there is none (404). */
  get(name: string, signal?: AbortSignal): Promise<RunCommandResource | undefined>;
  /** Sends the PUT and returns once ARM accepted it (the script runs asynchronously). Throws the SDK's RestError (409 while another execution runs). */
  create(name: string, body: RunCommandBody, signal?: AbortSignal): Promise<void>;
  /** Deletes it and waits until ARM has (which ends a running execution). A missing one is fine. */
  delete(name: string, signal?: AbortSignal): Promise<void>;
  /** Every run command of the machine, with instance views. */
  list(signal?: AbortSignal): Promise<RunCommandResource[]>;
  /** The machine itself as ARM reports it now (its resource id and unique id). Optional: an adapter that cannot tell leaves it out. */
  identity?(signal?: AbortSignal): Promise<PlatformIdentity>;
}

export type AzureTokenCredential = ConstructorParameters<typeof ComputeManagementClient>[0];

/** Run commands of an Azure VM through @azure/arm-compute. */
export class ComputeVmRunCommands implements RunCommandTarget {
  readonly description: string;
  readonly #client: ComputeManagementClient;
  readonly #rg: string;
  readonly #vm: string;
  readonly #pollMs: number;
  #location: string | undefined;

  constructor(client: ComputeManagementClient, resourceGroup: string, vmName: string, pollMs: number) {
    this.#client = client;
    this.#rg = resourceGroup;
    this.#vm = vmName;
    this.#pollMs = pollMs;
    this.description = `VM ${vmName} (resource group ${resourceGroup})`;
  }

  async #locationOf(signal?: AbortSignal): Promise<string> {
    if (!this.#location) this.#location = (await this.#client.virtualMachines.get(this.#rg, this.#vm, signal ? { abortSignal: signal } : {})).location;
    return this.#location;
  }

  /**
   * GET the VM (Virtual Machines - Get): `id` and `properties.vmId`, the
   * GUID ARM gives each VM instance (a VM deleted and created again under
   * the same name gets a new one). Never cached: the answer must describe
   * the VM as it is now, after a crossing replaced it.
   */
  async identity(signal?: AbortSignal): Promise<PlatformIdentity> {
    const vm = await this.#client.virtualMachines.get(this.#rg, this.#vm, signal ? { abortSignal: signal } : {});
    if (!vm.id || !vm.vmId) {
      throw new RubiconError('MACHINE_FAILED', `ARM's answer for ${this.description} has no ${vm.id ? 'properties.vmId' : 'id'}`, { hint: 'check the VM in the portal; Rubicon cannot tell which VM its Run Command reaches' });
    }
    return { resourceId: vm.id, uniqueId: vm.vmId };
  }

  async get(name: string, signal?: AbortSignal): Promise<RunCommandResource | undefined> {
    try {
      return toResource(await this.#client.virtualMachineRunCommands.getByVirtualMachine(this.#rg, this.#vm, name, { expand: 'instanceView', ...(signal ? { abortSignal: signal } : {}) }));
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  async create(name: string, b: RunCommandBody, signal?: AbortSignal): Promise<void> {
    const body: VirtualMachineRunCommand = {
      location: await this.#locationOf(signal),
      tags: b.tags,
      source: { script: b.script },
      ...(b.protectedParameters.length > 0 ? { protectedParameters: b.protectedParameters } : {}),
      timeoutInSeconds: b.timeoutInSeconds,
      asyncExecution: true,
      treatFailureAsDeploymentFailure: true,
      ...(b.outputBlobUri ? { outputBlobUri: b.outputBlobUri, outputBlobManagedIdentity: b.blobIdentity ?? {} } : {}),
      ...(b.errorBlobUri ? { errorBlobUri: b.errorBlobUri, errorBlobManagedIdentity: b.blobIdentity ?? {} } : {}),
    };
    // Only the PUT: Rubicon follows the execution through the instance view, not the LRO (which can hang).
    await this.#client.virtualMachineRunCommands.createOrUpdate(this.#rg, this.#vm, name, body, { updateIntervalInMs: this.#pollMs, ...(signal ? { abortSignal: signal } : {}) }).submitted();
  }

  async delete(name: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#client.virtualMachineRunCommands.delete(this.#rg, this.#vm, name, { updateIntervalInMs: this.#pollMs, ...(signal ? { abortSignal: signal } : {}) }).pollUntilDone(signal ? { abortSignal: signal } : {});
    } catch (e) {
      if (statusOf(e) !== 404) throw e;
    }
  }

  async list(signal?: AbortSignal): Promise<RunCommandResource[]> {
    const out: RunCommandResource[] = [];
    for await (const rc of this.#client.virtualMachineRunCommands.listByVirtualMachine(this.#rg, this.#vm, { expand: 'instanceView', ...(signal ? { abortSignal: signal } : {}) })) out.push(toResource(rc));
    return out;
  }
}

function toResource(rc: VirtualMachineRunCommand): RunCommandResource {
  const iv = rc.instanceView;
  const time = (t: unknown) => (t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : undefined);
  return {
    name: rc.name ?? '',
    tags: { ...(rc.tags ?? {}) },
    ...(rc.provisioningState ? { provisioningState: rc.provisioningState } : {}),
    ...(iv
      ? {
          instanceView: {
            ...(iv.executionState ? { executionState: iv.executionState } : {}),
            ...(iv.executionMessage ? { executionMessage: iv.executionMessage } : {}),
            ...(typeof iv.exitCode === 'number' ? { exitCode: iv.exitCode } : {}),
            ...(iv.output !== undefined ? { output: iv.output } : {}),
            ...(iv.error !== undefined ? { error: iv.error } : {}),
            ...(time(iv.startTime) ? { startTime: time(iv.startTime) } : {}),
            ...(time(iv.endTime) ? { endTime: time(iv.endTime) } : {}),
          },
        }
      : {}),
  };
}

// ------------------------------------------------------------ output blobs

/** Where a run command's output and error go, and how Rubicon reads them back. */
export interface RunCommandOutputStore {
  uris(runCommandName: string): { outputBlobUri: string; errorBlobUri: string };
  /** The blob's text; undefined when it does not exist (yet). */
  read(uri: string, signal?: AbortSignal): Promise<string | undefined>;
  /** The VM identity that writes: {} system-assigned, or a user-assigned client id. */
  readonly identity: { clientId?: string };
}

/**
 * Append blobs in one container (`https://<account>.blob.core.windows.net/<container>`):
 * the VM writes them with its managed identity (Storage Blob Data
 * Contributor on the container), Rubicon reads them with its own credential
 * (Storage Blob Data Reader) through Get Blob
 * (learn.microsoft.com/rest/api/storageservices/get-blob).
 */
export class BlobOutputStore implements RunCommandOutputStore {
  readonly identity: { clientId?: string };
  readonly #container: string;
  readonly #credential: AzureTokenCredential;
  readonly #agent: Agent | undefined;

  constructor(o: { containerUrl: string; credential: AzureTokenCredential; managedIdentityClientId?: string; agent?: Agent }) {
    const u = new URL(o.containerUrl);
    if (u.protocol !== 'https:' || u.search !== '' || u.pathname.split('/').filter(Boolean).length !== 1) {
      throw new RubiconError('RUNBOOK_INVALID', `outputContainer "${o.containerUrl}" is not a blob container URL`, {
        hint: 'use https://<account>.blob.core.windows.net/<container>, without a SAS token (the VM writes with its managed identity)',
      });
    }
    this.#container = o.containerUrl.replace(/\/+$/, '');
    this.#credential = o.credential;
    this.#agent = o.agent;
    this.identity = o.managedIdentityClientId ? { clientId: o.managedIdentityClientId } : {};
  }

  uris(name: string): { outputBlobUri: string; errorBlobUri: string } {
    return { outputBlobUri: `${this.#container}/${name}.out`, errorBlobUri: `${this.#container}/${name}.err` };
  }

  async read(uri: string, signal?: AbortSignal): Promise<string | undefined> {
    const pipeline = createEmptyPipeline();
    pipeline.addPolicy(bearerTokenAuthenticationPolicy({ credential: this.#credential, scopes: 'https://storage.azure.com/.default' }));
    const req = createPipelineRequest({ url: uri, method: 'GET', headers: createHttpHeaders({ 'x-ms-version': '2021-12-02' }), ...(signal ? { abortSignal: signal } : {}) });
    if (this.#agent) req.agent = this.#agent;
    const res = await pipeline.sendRequest(createDefaultHttpClient(), req);
    if (res.status === 404) return undefined;
    if (res.status !== 200) {
      throw new RubiconError('MACHINE_FAILED', `reading the Run Command output blob ${uri} failed: HTTP ${res.status}`, {
        hint: 'give Rubicon\u2019s identity Storage Blob Data Reader on the output container',
      });
    }
    return res.bodyAsText ?? '';
  }
}

// ------------------------------------------------------------ the machine

/** A VM holds at most 25 run commands (docs: run-command-managed "Limitations"). */
export const MAX_RUN_COMMANDS = 25;
/** After cleanup at least this many places are free. */
const CLEANUP_FREE = 5;
type OneShotEntry = 'read-small' | 'write-small' | 'remove-tree' | 'run-command-step';
const TERMINAL = new Set(['Succeeded', 'Failed', 'TimedOut', 'Canceled']);
/** Parameters go on the script's command line on Windows (32,767 characters): the protected payload is kept well below. */
export const RUN_COMMAND_PAYLOAD_LIMIT = 16 * 1024;

export interface AzureRunCommandMachineOptions {
  name: string;
  target: RunCommandTarget;
  /** Absolute folder on the VM for this run's step folders (`C:\ProgramData\Rubicon\steps\<run>`). */
  stepsRoot: string;
  /** Append blobs for output and error; without, only the instance view's last 4 KB. */
  output?: RunCommandOutputStore;
  /** The PowerShell that runs a Windows script as a step's program. Default powershell. */
  powershell?: string;
  /** First delay between polls. Default 5 s. */
  pollIntervalMs?: number;
  /** Longest delay between polls (the delay grows by half each poll). Default 30 s. */
  maxPollIntervalMs?: number;
  /** Deadline of exec and of a step given none. Default 30 minutes / 6 hours. */
  defaultCommandTimeoutMs?: number;
  defaultStepTimeoutMs?: number;
  /** How long past a command's own deadline Rubicon waits for the platform before giving up. Default 5 minutes. */
  graceMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  log?: (level: 'info' | 'warn', message: string) => void;
}

export class AzureRunCommandMachine implements WindowsMachine {
  readonly os = 'windows' as const;
  readonly transport: TransportKind = 'azure-run-command';
  readonly name: string;
  readonly address: string;
  readonly stepsRoot: string;
  readonly powershell: string;
  readonly #t: RunCommandTarget;
  readonly #out: RunCommandOutputStore | undefined;
  readonly #pollMs: number;
  readonly #maxPollMs: number;
  readonly #execTimeoutMs: number;
  readonly #stepTimeoutMs: number;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #log: (level: 'info' | 'warn', message: string) => void;
  readonly #runTag: string;

  constructor(o: AzureRunCommandMachineOptions) {
    this.name = o.name;
    this.#t = o.target;
    this.address = `Run Command on ${o.target.description}`;
    this.stepsRoot = o.stepsRoot;
    this.powershell = o.powershell ?? 'powershell';
    this.#out = o.output;
    this.#pollMs = o.pollIntervalMs ?? 5_000;
    this.#maxPollMs = o.maxPollIntervalMs ?? 30_000;
    this.#execTimeoutMs = o.defaultCommandTimeoutMs ?? 30 * 60_000;
    this.#stepTimeoutMs = o.defaultStepTimeoutMs ?? 6 * 3600_000;
    this.#graceMs = o.graceMs ?? 5 * 60_000;
    this.#now = o.now ?? Date.now;
    this.#sleep = o.sleep ?? defaultSleep;
    this.#log = o.log ?? (() => {});
    this.#runTag = sha(o.stepsRoot).slice(0, 16);
  }

  /** The run command name of a step: stable across resume, ARM-safe. */
  static runCommandName(stepId: string): string {
    return `rubicon-${sha(stepId).slice(0, 32)}`;
  }

  stepFolder(stepId: string): string {
    return windowsPath(this.stepsRoot, stepFolderName(stepId));
  }

  async exec(cmd: Command, o: ExecOptions = {}): Promise<ExecResult> {
    const t0 = this.#now();
    const timeoutMs = o.timeoutMs ?? this.#execTimeoutMs;
    const max = o.maxOutputBytes ?? 8 * 1024 * 1024;
    const f = await this.#oneShot('exec', `${cmd.argv[0] ?? 'a command'}`, { ...programSpec(cmd), dir: '', idem: '0', deadline: String(Math.ceil(timeoutMs / 1000)), max: String(max) }, cmd.input !== undefined ? toBytes(cmd.input) : undefined, timeoutMs, o.signal);
    const code = f.frames.state[1];
    if (f.frames.state[0] !== 'done' || code === undefined) throw this.#unexpected(`${cmd.argv[0]}`, f.frames);
    return { exitCode: Number(code), stdout: this.#text(f.frames, 'out'), stderr: decodeClixml(this.#text(f.frames, 'err')).text, durationMs: this.#now() - t0 };
  }

  async readSmall(file: string, maxBytes: number): Promise<Uint8Array> {
    const f = await this.#oneShot('file', `reading ${file}`, { path: file, max: String(maxBytes) }, undefined, this.#execTimeoutMs, undefined, 'read-small');
    const s = f.frames.state;
    if (s[0] === 'missing') throw new RubiconError('MACHINE_FILE_MISSING', `${file} does not exist on ${this.name} (${this.address})`);
    if (s[0] === 'toolarge') throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} on ${this.name} is ${s[1]} bytes, more than the ${maxBytes} Rubicon reads as a small file`);
    if (s[0] !== 'ok') throw this.#unexpected(`reading ${file}`, f.frames);
    if (f.frames.partial) {
      throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} on ${this.name} is ${f.frames.sum?.outBytes} bytes: without an output container Run Command returns only the last 4 KB of output`, {
        hint: 'set transport.outputContainer in the runbook so Rubicon reads output from append blobs',
      });
    }
    return new Uint8Array(f.frames.out);
  }

  async writeSmall(file: string, data: string | Uint8Array, o: { mode?: number } = {}): Promise<void> {
    const bytes = toBytes(data);
    if (bytes.length > RUN_COMMAND_PAYLOAD_LIMIT) {
      throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} would be ${bytes.length} bytes, more than the ${RUN_COMMAND_PAYLOAD_LIMIT} Rubicon writes through a Run Command parameter on ${this.name}`, {
        hint: 'large files go through a vault, not through the transport',
      });
    }
    const f = await this.#oneShot('file', `writing ${file}`, { path: file, mode: String(o.mode ?? 0o600) }, bytes, this.#execTimeoutMs, undefined, 'write-small');
    if (f.frames.state[0] !== 'ok') throw this.#unexpected(`writing ${file}`, f.frames);
  }

  async run(step: StepKey, cmd: Command, o: ExecOptions = {}): Promise<StepResult> {
    return this.#step(step, programSpec(cmd), cmd.input !== undefined ? toBytes(cmd.input) : undefined, undefined, o);
  }

  /**
   * A Windows script as a step: the script text is a non-secret input
   * embedded in the run command's script (too long for a parameter), fed to
   * `<powershell> -EncodedCommand <bootstrap>` on stdin. Its output must
   * arrive whole (an output container, or under 4 KB).
   */
  async runScript(step: StepKey, name: WindowsScriptName, encodedArgs: string, o: ExecOptions = {}): Promise<StepResult> {
    const boot = scriptBootstrap(name, encodedArgs);
    const r = await this.#step(step, programSpec({ argv: [this.powershell, '-NoProfile', '-NonInteractive', '-EncodedCommand', boot.encodedCommand] }), undefined, boot.stdin, o);
    if (r.stdout.includes('[rubicon: Run Command kept only')) {
      throw new RubiconError('MACHINE_FAILED', `the output of the ${name} script on ${this.name} was longer than the 4 KB Run Command keeps`, {
        hint: 'set transport.outputContainer in the runbook so Rubicon reads output from append blobs, then resume the run',
      });
    }
    return r;
  }

  /** Deletes this run's finished run commands and its step folders on the VM (their output was read and journaled). Destructive; idempotent. */
  async forgetSteps(): Promise<void> {
    for (const rc of await this.#t.list()) {
      if (rc.tags['rubicon-run-folder'] === this.#runTag && TERMINAL.has(rc.instanceView?.executionState ?? '')) await this.#delete(rc.name);
    }
    const f = await this.#oneShot('file', `removing ${this.stepsRoot}`, { path: this.stepsRoot }, undefined, this.#execTimeoutMs, undefined, 'remove-tree');
    if (f.frames.state[0] !== 'ok') throw this.#unexpected(`removing ${this.stepsRoot}`, f.frames);
  }

  async close(): Promise<void> {}

  /** The VM this machine's run commands run on, as ARM says now (no cache). MACHINE_FAILED when the target cannot tell. */
  async platformIdentity(signal?: AbortSignal): Promise<PlatformIdentity> {
    if (!this.#t.identity) throw new RubiconError('MACHINE_FAILED', `${this.#t.description} cannot report its platform identity`, { hint: 'this is a gap in the Run Command adapter' });
    return this.#arm(() => this.#t.identity!(signal), 'reading the VM');
  }

  // ---- internals

  async #step(step: StepKey, program: Spec, secret: Uint8Array | undefined, inlineInput: string | undefined, o: ExecOptions): Promise<StepResult> {
    const t0 = this.#now();
    const name = AzureRunCommandMachine.runCommandName(step.id);
    const timeoutMs = o.timeoutMs ?? this.#stepTimeoutMs;
    const deadlineSeconds = Math.ceil(timeoutMs / 1000);
    const max = o.maxOutputBytes ?? 8 * 1024 * 1024;
    const spec: Spec = { ...program, dir: this.stepFolder(step.id), idem: step.idempotent ? '1' : '0', deadline: String(deadlineSeconds), max: String(max) };
    const where = `step ${step.id} on ${this.name} (${this.address}, run command ${name})`;
    let existing = await this.#arm(() => this.#t.get(name, o.signal), `reading run command ${name}`);
    if (existing && existing.tags['rubicon-step-sha256'] !== sha(step.id)) {
      throw new RubiconError('MACHINE_FAILED', `${this.#t.description} has a run command named ${name} that is not step ${step.id}'s`, {
        hint: `delete run command ${name} on ${this.#t.description} (it is not Rubicon's), then resume the run`,
      });
    }
    const reattached = existing !== undefined;
    const kind = 'step';
    let reread = false;
    // Cancelled (SIGINT): deleting the run command ends its execution, as the POSIX step is killed.
    // Its result is then lost: a resume re-runs an idempotent step and refuses another (STEP_LOST).
    const onAbort = () => void this.#delete(name).catch(() => undefined);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        if (!existing) {
          await this.#create(name, this.#body(name, kind, step.id, spec, secret, inlineInput, deadlineSeconds), timeoutMs, o.signal, where);
        }
        const done = await this.#waitTerminal(name, timeoutMs, o.signal, existing);
        if (done.kind === 'deadline') {
          await this.#delete(name);
          if (step.idempotent) {
            throw new RubiconError('MACHINE_TIMEOUT', `${where} was still ${done.state} past Rubicon's deadline (${Math.round((timeoutMs + this.#graceMs) / 1000)} s); the run command was deleted and the step's outcome is unknown`, {
              hint: 'resume the run to run the step again (it is idempotent); if the VM agent keeps hanging, restart the VM agent service (WindowsAzureGuestAgent)',
              details: { runCommand: name, executionState: done.state },
            });
          }
          throw new RubiconError('STEP_LOST', `${where} was still ${done.state} past Rubicon's deadline (${Math.round((timeoutMs + this.#graceMs) / 1000)} s); the run command was deleted and the step's outcome is unknown: it is not safe to run it twice`, {
            hint: `check on ${this.name} whether it finished (its folder ${spec.dir} keeps its output), then start a new run`,
            details: { runCommand: name, executionState: done.state },
          });
        }
        const rc = done.resource;
        const frames = await this.#frames(name, rc, o.signal);
        const state = rc.instanceView?.executionState ?? 'Unknown';
        if (frames?.state[0] === 'lost') throw stepLost(`${this.name} (${this.address})`, step.id);
        if (frames?.state[0] === 'done' && frames.state[1] !== undefined && /^-?\d+$/.test(frames.state[1])) {
          return {
            exitCode: Number(frames.state[1]),
            stdout: this.#text(frames, 'out'),
            stderr: decodeClixml(this.#text(frames, 'err')).text,
            durationMs: this.#now() - t0,
            reattached: reattached || frames.state[2] === 'reattached',
          };
        }
        if (state === 'TimedOut') {
          // The platform's own timeout (set past the script's): the machine enforced the deadline.
          return { exitCode: STEP_TIMEOUT_EXIT, stdout: '', stderr: decodeClixml(rc.instanceView?.error ?? '').text, durationMs: this.#now() - t0, reattached };
        }
        if (!reread && (state === 'Succeeded' || (state === 'Failed' && typeof rc.instanceView?.exitCode === 'number'))) {
          // The script ended but its answer did not arrive whole: ask the machine again. The step folder
          // holds the recorded result, so the script reports it without running the program again.
          reread = true;
          this.#log('info', `${where}: its output did not arrive whole; asking the machine for the recorded result`);
          await this.#delete(name);
          existing = undefined;
          continue;
        }
        await this.#delete(name);
        const message = rc.instanceView?.executionMessage ? `; platform message: ${rc.instanceView.executionMessage.replace(/\s+/g, ' ').slice(0, 300)}` : '';
        const text = `${where} ended in execution state ${state} (provisioning ${rc.provisioningState ?? 'unknown'}) without a result${message}`;
        if (!step.idempotent) throw new RubiconError('STEP_LOST', `${text}: the outcome is unknown and it is not safe to run it twice`, { hint: `check on ${this.name} whether it finished (its folder ${spec.dir}), then start a new run`, details: { runCommand: name, executionState: state } });
        throw new RubiconError('MACHINE_FAILED', `${text}: the outcome is unknown`, { hint: 'resume the run to run the step again (it is idempotent)', details: { runCommand: name, executionState: state } });
      }
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** A short command (exec, a small file): its own run command, deleted afterwards. Not idempotent; no step folder. */
  async #oneShot(kind: 'exec' | 'file', what: string, spec: Spec, secret: Uint8Array | undefined, timeoutMs: number, signal?: AbortSignal, entry: OneShotEntry = 'run-command-step'): Promise<{ frames: Frames }> {
    const name = `rubicon-x-${this.#now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const where = `${what} on ${this.name} (${this.address}, run command ${name})`;
    const deadlineSeconds = Math.ceil(timeoutMs / 1000);
    try {
      await this.#create(name, this.#body(name, kind, undefined, spec, secret, undefined, deadlineSeconds, entry), timeoutMs, signal, where);
      const done = await this.#waitTerminal(name, timeoutMs, signal, undefined);
      if (done.kind === 'deadline') {
        throw new RubiconError('MACHINE_TIMEOUT', `${where} was still ${done.state} past Rubicon's deadline; it was deleted and its outcome is unknown`, { hint: 'check the VM agent (WindowsAzureGuestAgent), then resume the run' });
      }
      const frames = await this.#frames(name, done.resource, signal);
      if (!frames) {
        const iv = done.resource.instanceView;
        throw new RubiconError('MACHINE_FAILED', `${where} ended in execution state ${iv?.executionState ?? 'Unknown'} without a result: ${decodeClixml(iv?.error ?? '').text.trim().slice(0, 300) || iv?.executionMessage || 'no output'}`, {
          hint: 'the outcome is unknown; check the VM agent and resume the run',
        });
      }
      if (frames.state[0] === 'error') {
        const e = stateError(frames.state);
        const full = isNoSpace(e);
        throw new RubiconError(full ? 'NO_SPACE' : 'MACHINE_FAILED', `${where} failed: ${e.message}`, { hint: full ? `free space on ${this.name}, then resume the run` : `check the path and permissions on ${this.name}` });
      }
      return { frames };
    } finally {
      await this.#delete(name).catch((e: unknown) => this.#log('warn', `could not delete run command ${name} on ${this.#t.description} (${describeArmError(e)}); Rubicon deletes its finished ones when the VM is full`));
    }
  }

  #body(name: string, kind: string, stepId: string | undefined, spec: Spec, secret: Uint8Array | undefined, inlineInput: string | undefined, deadlineSeconds: number, entry: OneShotEntry = 'run-command-step'): RunCommandBody {
    if (secret && secret.length > RUN_COMMAND_PAYLOAD_LIMIT) {
      throw new RubiconError('ARGUMENTS_INVALID', `a step's stdin of ${secret.length} bytes is more than the ${RUN_COMMAND_PAYLOAD_LIMIT} a Run Command parameter carries`, { hint: 'pass large inputs as a file through a vault' });
    }
    const script = runCommandText(entry, spec, inlineInput);
    const uris = this.#out?.uris(name);
    return {
      script,
      protectedParameters: secret && secret.length > 0 ? [{ name: 'RubiconSecret', value: Buffer.from(secret).toString('base64') }] : [],
      // The platform's timeout comes after the script's own deadline, so the script reports 124 itself.
      timeoutInSeconds: deadlineSeconds + 120,
      tags: {
        rubicon: kind,
        'rubicon-created': new Date(this.#now()).toISOString(),
        'rubicon-run-folder': this.#runTag,
        ...(stepId ? { 'rubicon-step': stepId.slice(0, 256), 'rubicon-step-sha256': sha(stepId) } : {}),
      },
      ...(uris ? { ...uris, blobIdentity: this.#out!.identity } : {}),
    };
  }

  /** Creates a run command: room first, then the PUT, retried while another execution holds the agent (409). */
  async #create(name: string, body: RunCommandBody, timeoutMs: number, signal: AbortSignal | undefined, where: string): Promise<void> {
    await this.#makeRoom(signal);
    const until = this.#now() + timeoutMs + this.#graceMs;
    let delay = this.#pollMs;
    for (;;) {
      signal?.throwIfAborted();
      try {
        await this.#t.create(name, body, signal);
        return;
      } catch (e) {
        if (statusOf(e) !== 409) throw this.#armError(e, `creating run command for ${where}`);
        const left = until - this.#now();
        if (left <= 0) {
          throw new RubiconError('MACHINE_FAILED', `${where}: ${this.#t.description} kept answering 409 (another Run Command execution is in progress) for ${Math.round((timeoutMs + this.#graceMs) / 1000)} s; nothing was started`, {
            hint: 'a hung Run Command holds the VM agent: wait for it or delete it (az vm run-command list/delete), or restart the VM agent, then resume the run',
            details: { status: 409 },
          });
        }
        this.#log('info', `${where}: another Run Command execution is in progress (409); trying again`);
        await this.#sleep(Math.min(delay, left));
        delay = Math.min(Math.ceil(delay * 1.5), this.#maxPollMs);
      }
    }
  }

  /** Polls the instance view until the execution is terminal, or Rubicon's deadline passes. */
  async #waitTerminal(name: string, timeoutMs: number, signal: AbortSignal | undefined, first: RunCommandResource | undefined): Promise<{ kind: 'done'; resource: RunCommandResource } | { kind: 'deadline'; state: string }> {
    const until = this.#now() + timeoutMs + this.#graceMs;
    let delay = this.#pollMs;
    let rc = first;
    let seen = first !== undefined;
    for (;;) {
      if (rc && TERMINAL.has(rc.instanceView?.executionState ?? '')) return { kind: 'done', resource: rc };
      const left = until - this.#now();
      if (left <= 0) return { kind: 'deadline', state: rc?.instanceView?.executionState ?? rc?.provisioningState ?? 'Pending' };
      if (rc) {
        signal?.throwIfAborted();
        await this.#sleep(Math.min(delay, left));
        delay = Math.min(Math.ceil(delay * 1.5), this.#maxPollMs);
      }
      signal?.throwIfAborted();
      const got = await this.#arm(() => this.#t.get(name, signal), `reading run command ${name}`);
      // Gone after it was seen: someone deleted it, which ended its execution.
      rc = got ?? (seen ? { name, tags: {}, instanceView: { executionState: 'Canceled', executionMessage: 'the run command was deleted while it ran' } } : { name, tags: {}, provisioningState: 'Creating' });
      seen ||= got !== undefined;
    }
  }

  /** The script's frames: from the output blob when there is one (whole), else from the instance view (its last 4 KB). */
  async #frames(name: string, rc: RunCommandResource, signal?: AbortSignal): Promise<Frames | undefined> {
    let text = rc.instanceView?.output ?? '';
    if (this.#out) {
      const blob = await this.#out.read(this.#out.uris(name).outputBlobUri, signal);
      if (blob !== undefined) text = blob;
    }
    const f = parseFrames(text);
    if (f) checkFrames(f, `run command ${name} on ${this.#t.description}`);
    return f;
  }

  /** Room for one more: when the VM is full, delete Rubicon's finished run commands, oldest first. */
  async #makeRoom(signal?: AbortSignal): Promise<void> {
    const all = await this.#arm(() => this.#t.list(signal), 'listing run commands');
    if (all.length < MAX_RUN_COMMANDS) return;
    const ours = all
      .filter((rc) => rc.tags['rubicon'] !== undefined && TERMINAL.has(rc.instanceView?.executionState ?? ''))
      .sort((a, b) => (a.tags['rubicon-created'] ?? '').localeCompare(b.tags['rubicon-created'] ?? ''));
    const need = all.length - (MAX_RUN_COMMANDS - CLEANUP_FREE);
    const victims = ours.slice(0, need);
    for (const rc of victims) await this.#delete(rc.name);
    if (all.length - victims.length >= MAX_RUN_COMMANDS) {
      throw new RubiconError('MACHINE_FAILED', `${this.#t.description} holds ${all.length} run commands, the most a VM can hold, and only ${victims.length} are Rubicon's finished ones`, {
        hint: `delete run commands that are not needed any more (az vm run-command list / delete on ${this.#t.description}), then resume the run`,
        details: { count: all.length },
      });
    }
    if (victims.length > 0) this.#log('info', `${this.#t.description} held ${all.length} run commands: deleted ${victims.length} finished ones of Rubicon's`);
  }

  async #delete(name: string): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.#graceMs);
    try {
      await this.#t.delete(name, abort.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  async #arm<T>(f: () => Promise<T>, what: string): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw this.#armError(e, what);
    }
  }

  #armError(e: unknown, what: string): RubiconError {
    if (e instanceof RubiconError) return e;
    const status = statusOf(e);
    if (status === 401 || status === 403) {
      return new RubiconError('MACHINE_AUTH', `${what} on ${this.#t.description} was refused: ${describeArmError(e)}`, {
        hint: 'give Rubicon\u2019s identity Microsoft.Compute/virtualMachines/runCommand/write (Virtual Machine Contributor) on the VM',
        cause: e,
      });
    }
    if (status === 404) {
      return new RubiconError('MACHINE_UNREACHABLE', `${what}: ${this.#t.description} was not found: ${describeArmError(e)}`, { hint: 'check subscription, resource group and VM name in the runbook', cause: e });
    }
    return new RubiconError('MACHINE_FAILED', `${what} on ${this.#t.description} failed: ${describeArmError(e)}`, { hint: 'check the VM and its agent in the portal, then resume the run', cause: e });
  }

  #text(f: Frames, stream: 'out' | 'err'): string {
    const bytes = stream === 'out' ? f.out : f.err;
    const sent = f.sum ? (stream === 'out' ? f.sum.outBytes : f.sum.errBytes) : bytes.length;
    const cut = f.sum ? (stream === 'out' ? f.sum.outCut : f.sum.errCut) : false;
    if (bytes.length < sent) {
      return `[rubicon: Run Command kept only the last 4 KB: ${bytes.length} of ${sent} bytes of ${stream === 'out' ? 'stdout' : 'stderr'} arrived; set transport.outputContainer to keep all]\n${bytes.toString('utf8')}`;
    }
    return withCut(bytes, cut);
  }

  #unexpected(what: string, f: Frames): RubiconError {
    return new RubiconError('MACHINE_FAILED', `${what} on ${this.name}: unexpected answer "${f.state.join(' ').slice(0, 80)}"`, { hint: 'this is a bug in Rubicon or an altered transport script' });
  }
}

function sha(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

// ------------------------------------------------------------ construction

export interface AzureRunCommandSettings {
  subscriptionId: string;
  resourceGroup: string;
  vmName: string;
  credential: AzureTokenCredential;
  /** Container URL for output append blobs. */
  outputContainer?: string;
  outputIdentityClientId?: string;
  /** ARM base URL (tests point it at a stand-in). */
  endpoint?: string;
  clientOptions?: Omit<ComputeManagementClientOptionalParams, 'endpoint'>;
  /** TLS agent for the blob reads (tests: trust the stand-in). */
  blobAgent?: Agent;
}

/** The machine for a runbook's azure-run-command transport (one VM through @azure/arm-compute). */
export function createAzureRunCommandMachine(s: AzureRunCommandSettings, o: Omit<AzureRunCommandMachineOptions, 'target' | 'output'>): AzureRunCommandMachine {
  const client = new ComputeManagementClient(s.credential, s.subscriptionId, { ...s.clientOptions, ...(s.endpoint ? { endpoint: s.endpoint } : {}) });
  const output = s.outputContainer
    ? new BlobOutputStore({ containerUrl: s.outputContainer, credential: s.credential, ...(s.outputIdentityClientId ? { managedIdentityClientId: s.outputIdentityClientId } : {}), ...(s.blobAgent ? { agent: s.blobAgent } : {}) })
    : undefined;
  return new AzureRunCommandMachine({ ...o, target: new ComputeVmRunCommands(client, s.resourceGroup, s.vmName, o.pollIntervalMs ?? 5_000), ...(output ? { output } : {}) });
}
