import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ArmStandIn, RecordedRequest, Reply } from './arm-stand-in.ts';

/**
 * The managed Run Command operations of one VM, on top of the HTTPS ARM
 * stand-in (arm-stand-in.ts), with the shapes of the REST reference:
 *
 * - PUT …/virtualMachines/{vm}/runCommands/{name} (Create Or Update,
 *   learn.microsoft.com/rest/api/compute/virtual-machine-run-commands/create-or-update):
 *   201 with the resource (provisioningState "Creating") and an
 *   Azure-AsyncOperation header; 409 `{"error":{"code":"Conflict","message":
 *   "Run command extension execution is in progress. Please wait for
 *   completion before invoking a run command."}}` while another execution
 *   holds the agent (the body Azure/azure-cli#32305 shows).
 * - GET …/runCommands/{name}?$expand=instanceView (Get By Virtual Machine):
 *   the resource with properties.instanceView {executionState (Pending,
 *   Running, Succeeded, Failed, TimedOut, Canceled, Unknown: the SDK's
 *   KnownExecutionState), executionMessage, exitCode, output, error (each
 *   the LAST 4 KB, run-command-managed.md), startTime, endTime, statuses};
 *   404 ResourceNotFound when there is none.
 * - GET …/runCommands?$expand=instanceView (List By Virtual Machine):
 *   `{"value": [...]}`.
 * - DELETE …/runCommands/{name} (Delete): 200, or 204 when absent.
 * - GET <container>/<blob> (Get Blob, learn.microsoft.com/rest/api/storageservices/get-blob):
 *   the append blob's bytes with x-ms-blob-type: AppendBlob; 404 BlobNotFound.
 *
 * The VM agent is played per run command by `agent`:
 * - `real`: the script is REALLY run, as the agent does on Windows
 *   (`powershell -File script.ps1 -RubiconSecret <value>`, here pwsh on
 *   Linux): while it runs the execution state is Running; then Succeeded
 *   or Failed with its exit code, the last 4,096 characters of each stream
 *   in the instance view and the whole streams in the output blobs (which a
 *   rerun overwrites, as documented).
 * - `stuck`: Running forever (the platform hang of azure-cli#28172).
 * - a function: returns the instance view to serve (canned).
 */

export interface StoredRunCommand {
  name: string;
  body: { location: string; tags?: Record<string, string>; properties: Record<string, any> };
  provisioningState: string;
  instanceView: Record<string, unknown>;
  /** How many times the agent ran its script. */
  runs: number;
  done: boolean;
}

export type Agent = 'real' | 'stuck' | ((rc: StoredRunCommand) => Record<string, unknown>);

const TAIL = 4096;

export class RunCommandStandIn {
  readonly commands = new Map<string, StoredRunCommand>();
  readonly blobs = new Map<string, Buffer>();
  /** What each GET with the instance view answered, in order. */
  readonly served: { name: string; provisioningState: string; executionState: unknown; exitCode: unknown }[] = [];
  /** Run commands that exist but that Rubicon did not create (another tool's, or older ones). */
  readonly preset: StoredRunCommand[] = [];
  agent: Agent = 'real';
  /** Answer this many PUTs with 409 first. */
  conflicts = 0;
  /** provisioningState stays Succeeded when the script fails (treatFailureAsDeploymentFailure ignored, as before API 2023-03-01). */
  provisioningIgnoresExitCode = false;
  pwsh = '';
  /** ARM's `properties.vmId` of the VM (Virtual Machines - Get): a replaced VM gets a new one. */
  vmId = '2f0c7f5e-0000-4000-8000-0000000000a1';
  /**
   * While true, DELETE of a run command answers 409 ScopeLocked, as ARM does
   * under a `CanNotDelete` lock on the VM (a lock is inherited by child
   * resources; learn.microsoft.com/azure/azure-resource-manager/management/lock-resources).
   */
  locked: () => boolean = () => false;
  /**
   * How the agent starts pwsh: `[file, args]` from pwsh's own argv (default
   * as is). The e2e test starts it inside the VM's test host (its network
   * namespace and /etc files) with the stand-in commands on its paths.
   */
  launch: (argv: string[]) => [string, string[]] = (argv) => [argv[0]!, argv.slice(1)];
  readonly #dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-rc-agent-'));
  readonly #running = new Set<Promise<void>>();

  readonly arm: ArmStandIn;
  readonly vmPath: string;
  readonly blobContainer: string;

  constructor(arm: ArmStandIn, vmPath: string, blobContainer = '/rubicon-out') {
    this.arm = arm;
    this.vmPath = vmPath;
    this.blobContainer = blobContainer;
  }

  /** Registers the routes (call after every arm.reset()). */
  install(): this {
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const vm = esc(this.vmPath);
    const one = new RegExp(`^${vm}/runCommands/([^/]+)$`);
    this.arm.on('GET', new RegExp(`^${vm}$`), () => ({ status: 200, body: { id: this.vmPath, name: this.vmPath.split('/').pop(), type: 'Microsoft.Compute/virtualMachines', location: 'westeurope', properties: { vmId: this.vmId, provisioningState: 'Succeeded' } } }));
    this.arm.on('PUT', one, (req) => this.#put(req, one.exec(req.path)![1]!));
    this.arm.on('GET', one, (req) => {
      const rc = this.commands.get(one.exec(req.path)![1]!);
      if (!rc) return { status: 404, body: { error: { code: 'ResourceNotFound', message: `The Resource 'Microsoft.Compute/virtualMachines/runCommands/${one.exec(req.path)![1]}' was not found.` } } };
      const expand = req.query.get('$expand') === 'instanceView';
      if (expand) this.served.push({ name: rc.name, provisioningState: rc.provisioningState, executionState: rc.instanceView.executionState, exitCode: rc.instanceView.exitCode });
      return { status: 200, body: this.resource(rc, expand) };
    });
    this.arm.on('GET', new RegExp(`^${vm}/runCommands$`), (req) => ({ status: 200, body: { value: this.all().map((rc) => this.resource(rc, req.query.get('$expand') === 'instanceView')) } }));
    this.arm.on('DELETE', one, (req) => {
      const name = one.exec(req.path)![1]!;
      if (this.locked()) {
        return { status: 409, body: { error: { code: 'ScopeLocked', message: `The scope '${req.path}' cannot perform delete operation because following scope(s) are locked: '${this.vmPath}'. Please remove the lock and try again.` } } };
      }
      const had = this.commands.delete(name);
      const i = this.preset.findIndex((p) => p.name === name);
      if (i >= 0) this.preset.splice(i, 1);
      return { status: had || i >= 0 ? 200 : 204 };
    });
    this.arm.on('GET', new RegExp(`^${esc(this.blobContainer)}/([^/]+)$`), (req) => {
      const blob = this.blobs.get(req.path);
      if (!blob) return { status: 404, headers: { 'x-ms-error-code': 'BlobNotFound' } };
      return { status: 200, headers: { 'x-ms-blob-type': 'AppendBlob', 'content-type': 'application/octet-stream' }, raw: blob } as Reply;
    });
    return this;
  }

  all(): StoredRunCommand[] {
    return [...this.preset, ...this.commands.values()];
  }

  resource(rc: StoredRunCommand, expand: boolean): unknown {
    const { protectedParameters: _secret, ...props } = rc.body.properties;
    return {
      id: `${this.vmPath}/runCommands/${rc.name}`,
      name: rc.name,
      type: 'Microsoft.Compute/virtualMachines/runCommands',
      location: rc.body.location,
      ...(rc.body.tags ? { tags: rc.body.tags } : {}),
      properties: { ...props, provisioningState: rc.provisioningState, ...(expand ? { instanceView: rc.instanceView } : {}) },
    };
  }

  #put(req: RecordedRequest, name: string): Reply {
    if (this.conflicts > 0) {
      this.conflicts--;
      return { status: 409, body: { error: { code: 'Conflict', message: 'Run command extension execution is in progress. Please wait for completion before invoking a run command.' } } };
    }
    const body = req.body as StoredRunCommand['body'];
    const existing = this.commands.get(name);
    if (existing && JSON.stringify(existing.body) === JSON.stringify(body)) {
      // An unchanged re-PUT does not run the script again (azure-sdk-for-net#47307).
      return { status: 200, body: this.resource(existing, false) };
    }
    const rc: StoredRunCommand = { name, body, provisioningState: 'Creating', instanceView: { executionState: 'Pending', exitCode: 0, output: '', error: '', statuses: null }, runs: 0, done: false };
    this.commands.set(name, rc);
    this.#start(rc);
    return {
      status: 201,
      headers: { 'azure-asyncoperation': `${this.arm.baseUrl}/subscriptions/x/providers/Microsoft.Compute/locations/westeurope/operations/${name}?api-version=2026-04-01` },
      body: this.resource(rc, false),
    };
  }

  #start(rc: StoredRunCommand): void {
    const agent = this.agent;
    if (agent === 'stuck') {
      rc.provisioningState = 'Succeeded';
      rc.instanceView = { executionState: 'Running', exitCode: 0, output: '', error: '', startTime: new Date().toISOString(), statuses: null };
      return;
    }
    if (typeof agent === 'function') {
      rc.provisioningState = 'Succeeded';
      rc.instanceView = agent(rc);
      rc.done = true;
      return;
    }
    const p = this.#runReal(rc);
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
  }

  async #runReal(rc: StoredRunCommand): Promise<void> {
    const props = rc.body.properties;
    const file = path.join(this.#dir, `${rc.name}-${rc.runs}.ps1`);
    writeFileSync(file, String(props.source?.script ?? ''));
    const params = [...(props.parameters ?? []), ...(props.protectedParameters ?? [])].flatMap((p: { name: string; value: string }) => [`-${p.name}`, p.value]);
    const startTime = new Date().toISOString();
    rc.runs++;
    rc.provisioningState = 'Succeeded';
    rc.instanceView = { executionState: 'Running', exitCode: 0, output: '', error: '', startTime, statuses: null };
    const [cmd, argv] = this.launch([this.pwsh, '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', file, ...params]);
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
    const o = Buffer.concat(out);
    const e = Buffer.concat(err);
    const blobPath = (uri: unknown) => (typeof uri === 'string' ? new URL(uri).pathname : undefined);
    const ob = blobPath(props.outputBlobUri);
    const eb = blobPath(props.errorBlobUri);
    if (ob) this.blobs.set(ob, o);
    if (eb) this.blobs.set(eb, e);
    const tail = (b: Buffer) => b.toString('utf8').slice(-TAIL);
    rc.instanceView = {
      executionState: code === 0 ? 'Succeeded' : 'Failed',
      executionMessage: code === 0 ? 'Execution completed' : `Execution completed with exit code ${code}`,
      exitCode: code,
      output: tail(o),
      error: tail(e),
      startTime,
      endTime: new Date().toISOString(),
      statuses: null,
    };
    rc.provisioningState = code !== 0 && props.treatFailureAsDeploymentFailure === true && !this.provisioningIgnoresExitCode ? 'Failed' : 'Succeeded';
    rc.done = true;
  }

  /** Waits for the scripts still running (tests end cleanly). */
  async settle(): Promise<void> {
    await Promise.all([...this.#running]);
  }

  async stop(): Promise<void> {
    await this.settle();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
