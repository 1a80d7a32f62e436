import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
 *   With `agentProcess: 'warm'` the scripts run one at a time in ONE warm
 *   pwsh (warm-agent.ps1), each in a fresh runspace, instead of a new
 *   process each: the script, its parameters, streams and exit code are
 *   the same for Rubicon's transport entries (what differs is listed in
 *   warm-agent.ps1 and checked against `-File` in
 *   test/infra/warm-agent.test.ts); a program the script starts is still a
 *   process of its own. A second script waits (Pending) until the first
 *   ends, as the real agent runs one execution at a time.
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
  /** Per script the agent really ran: the run command, its step (tag rubicon-step, else its kind), how long it waited for the agent, how long it ran (ms). */
  readonly timings: { name: string; step: string; waitMs: number; runMs: number }[] = [];
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
  /** `per-script`: a new pwsh per script, as the real agent (default); `warm`: one pwsh, a fresh runspace per script (faster, see above). */
  agentProcess: 'per-script' | 'warm' = 'per-script';
  #warm: WarmAgent | undefined;
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
    const queued = performance.now();
    rc.runs++;
    rc.provisioningState = 'Succeeded';
    let startTime = new Date().toISOString();
    rc.instanceView = { executionState: this.agentProcess === 'warm' ? 'Pending' : 'Running', exitCode: 0, output: '', error: '', statuses: null };
    let o: Buffer;
    let e: Buffer;
    let code: number;
    let started = queued;
    if (this.agentProcess === 'warm') {
      this.#warm ??= new WarmAgent(this.launch([this.pwsh, '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', WARM_AGENT_SCRIPT]));
      const r = await this.#warm.run(file, params, () => {
        started = performance.now();
        startTime = new Date().toISOString();
        rc.instanceView = { executionState: 'Running', exitCode: 0, output: '', error: '', startTime, statuses: null };
      });
      ({ code, out: o, err: e } = r);
    } else {
      rc.instanceView = { ...rc.instanceView, startTime };
      const [cmd, argv] = this.launch([this.pwsh, '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', file, ...params]);
      const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
      o = Buffer.concat(out);
      e = Buffer.concat(err);
    }
    this.timings.push({ name: rc.name, step: rc.body.tags?.['rubicon-step'] ?? rc.body.tags?.['rubicon'] ?? '', waitMs: Math.round(started - queued), runMs: Math.round(performance.now() - started) });
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

  /** Ends the warm agent (the next script starts a new one, with `launch` as it is then): a new VM has an agent of its own. */
  async restartAgent(): Promise<void> {
    await this.settle();
    const w = this.#warm;
    this.#warm = undefined;
    await w?.stop();
  }

  async stop(): Promise<void> {
    await this.restartAgent();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

export const WARM_AGENT_SCRIPT = path.join(import.meta.dirname, 'warm-agent.ps1');

/**
 * One warm pwsh running warm-agent.ps1: scripts one at a time (a queue),
 * each answered by its own nonce. When the process dies, every script
 * waiting on it fails with exit code 1 and its stderr says why.
 */
export class WarmAgent {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-warm-agent-'));
  readonly #waiting = new Map<string, (code: number) => void>();
  #queue: Promise<unknown> = Promise.resolve();
  #buffer = '';
  #stderr = '';
  #exited = false;
  #n = 0;

  constructor([cmd, argv]: [string, string[]]) {
    this.#child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stdout.setEncoding('utf8').on('data', (d: string) => {
      this.#buffer += d;
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const m = /^RUBICON-WARM-AGENT (\S+) rc (-?\d+)$/.exec(this.#buffer.slice(0, nl).trim());
        this.#buffer = this.#buffer.slice(nl + 1);
        if (m) this.#waiting.get(m[1]!)?.(Number(m[2]));
      }
    });
    this.#child.stderr.setEncoding('utf8').on('data', (d: string) => (this.#stderr = (this.#stderr + d).slice(-4096)));
    this.#child.on('close', () => {
      this.#exited = true;
      for (const done of this.#waiting.values()) done(-1);
    });
  }

  /** Runs `file` with `params` (`-Name value` pairs) once the scripts before it ended; `onStart` when it starts. */
  run(file: string, params: string[], onStart: () => void): Promise<{ code: number; out: Buffer; err: Buffer }> {
    const next = this.#queue.then(() => this.#one(file, params, onStart));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #one(file: string, params: string[], onStart: () => void): Promise<{ code: number; out: Buffer; err: Buffer }> {
    onStart();
    const id = `${randomBytes(8).toString('hex')}-${this.#n++}`;
    const out = path.join(this.#dir, `${id}.out`);
    const err = path.join(this.#dir, `${id}.err`);
    const pairs: [string, string][] = [];
    for (let i = 0; i + 1 < params.length; i += 2) pairs.push([params[i]!.replace(/^-/, ''), params[i + 1]!]);
    const code = this.#exited
      ? -1
      : await new Promise<number>((resolve) => {
          this.#waiting.set(id, resolve);
          this.#child.stdin.write(`${Buffer.from(JSON.stringify({ id, file, params: pairs, out, err })).toString('base64')}\n`);
        });
    this.#waiting.delete(id);
    if (code === -1) return { code: 1, out: Buffer.alloc(0), err: Buffer.from(`the warm agent (pwsh) ended: ${this.#stderr}`) };
    const read = (f: string) => {
      try {
        return readFileSync(f);
      } catch {
        return Buffer.alloc(0);
      }
    };
    const r = { code, out: read(out), err: read(err) };
    rmSync(out, { force: true });
    rmSync(err, { force: true });
    return r;
  }

  async stop(): Promise<void> {
    await this.#queue;
    if (this.#exited) return;
    const closed = new Promise<void>((resolve) => this.#child.on('close', () => resolve()));
    this.#child.stdin.end();
    await closed;
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
