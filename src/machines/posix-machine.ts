import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import type { Command, ExecOptions, ExecResult, LocalFiles, Machine, MachineOs, StepKey, StepResult, TransportKind } from './machine.ts';
import {
  READ_SMALL_SCRIPT,
  STEP_CANCEL_SCRIPT,
  STEP_SCRIPT,
  WRITE_FILES_SCRIPT,
  WRITE_SMALL_SCRIPT,
  commandArgv,
  splitStepOutput,
  splitStepReply,
  stepFolderName,
  stepLost,
} from './posix.ts';

/** What a transport does: run argv on the machine (without a shell of ours), return raw bytes. */
export interface RawResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: string;
  durationMs: number;
}

export interface InvokeOptions {
  input?: string | Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  maxOutputBytes?: number;
}

export const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024;

/** One file for writeSmallFiles. */
export interface SmallFile {
  path: string;
  data: string | Uint8Array;
  /** Default 0o600. */
  mode?: number;
}

/**
 * A POSIX machine (Linux): the step protocol, small files and exec on top
 * of one primitive, `invoke(argv)`, which the transport implements (local:
 * execa; ssh: OpenSSH). Contracts are those of Machine (machine.ts).
 */
export abstract class PosixMachine implements Machine {
  readonly os: MachineOs = 'linux';
  abstract readonly name: string;
  abstract readonly transport: TransportKind;
  abstract readonly address: string;
  readonly local?: LocalFiles;
  /** Absolute folder on the machine under which step folders live. */
  protected abstract readonly stepsRoot: string;
  /** Default deadline of a short exec. */
  protected readonly execTimeoutMs: number = 120_000;

  protected abstract invoke(argv: readonly string[], o: InvokeOptions): Promise<RawResult>;

  abstract close(): Promise<void>;

  async exec(cmd: Command, o: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.invoke(commandArgv(cmd), {
      input: cmd.input,
      timeoutMs: o.timeoutMs ?? this.execTimeoutMs,
      signal: o.signal,
      maxOutputBytes: o.maxOutputBytes,
    });
    return { exitCode: r.exitCode, stdout: Buffer.from(r.stdout).toString('utf8'), stderr: r.stderr, durationMs: r.durationMs };
  }

  /** Folder of one step on the machine. */
  stepFolder(stepId: string): string {
    return path.posix.join(this.stepsRoot, stepFolderName(stepId));
  }

  /**
   * One call to the machine per step (STEP_SCRIPT): input, start or
   * re-attach, wait, and the bounded output, in one round trip.
   */
  async run(step: StepKey, cmd: Command, o: ExecOptions = {}): Promise<StepResult> {
    const t0 = performance.now();
    const dir = this.stepFolder(step.id);
    const deadline = o.timeoutMs ? Math.ceil(o.timeoutMs / 1000) : 0;
    const argv = commandArgv({ argv: cmd.argv, env: cmd.env });
    const max = o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const onAbort = () => {
      void this.invoke(['sh', '-c', STEP_CANCEL_SCRIPT, 'rubicon', dir], { timeoutMs: 30_000 }).catch(() => undefined);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    let reply;
    let r;
    try {
      // The wrapper waits on the machine; our own deadline only guards a hung transport.
      r = await this.invoke(
        ['sh', '-c', STEP_SCRIPT, 'rubicon', dir, step.idempotent ? '1' : '0', String(deadline), cmd.cwd ?? '', cmd.input !== undefined ? '1' : '0', String(max), ...argv],
        {
          ...(cmd.input !== undefined ? { input: cmd.input } : {}),
          timeoutMs: o.timeoutMs ? o.timeoutMs + 60_000 : undefined,
          signal: o.signal,
          maxOutputBytes: 2 * max + 4096,
        },
      );
      o.signal?.throwIfAborted();
      reply = splitStepReply(r.stdout);
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
    const status = reply.status;
    if (!status) {
      throw new RubiconError('MACHINE_FAILED', `step ${step.id} on ${this.name} (${this.address}): the step wrapper did not report (exit ${r.exitCode}: ${r.stderr.trim().split('\n').slice(-2).join(' ')})`, {
        hint: `check that ${this.name} has a POSIX sh, setsid and coreutils, and free space in ${this.stepsRoot}`,
      });
    }
    if (status.state === 'lost') throw stepLost(`${this.name} (${this.address})`, step.id);
    if (status.state === 'error') {
      throw new RubiconError('MACHINE_FAILED', `step ${step.id} on ${this.name}: ${status.detail}`, { hint: `check free space and permissions of ${this.stepsRoot} on ${this.name}` });
    }
    if (status.state === 'killed') {
      throw new RubiconError('MACHINE_FAILED', `step ${step.id} on ${this.name} was killed before it finished`, { hint: 'resume the run to start it again' });
    }
    const { stdout, stderr } = splitStepOutput(reply.rest);
    return { exitCode: status.exitCode, stdout, stderr, durationMs: Math.round(performance.now() - t0), reattached: status.reattached };
  }

  /** Removes the step folders of a run on this machine (its output was read and journaled). Idempotent. */
  async forgetSteps(): Promise<void> {
    await this.invoke(['rm', '-rf', '--', this.stepsRoot], { timeoutMs: 60_000 });
  }

  async readSmall(file: string, maxBytes: number): Promise<Uint8Array> {
    const r = await this.invoke(['sh', '-c', READ_SMALL_SCRIPT, 'rubicon', file, String(maxBytes)], { timeoutMs: this.execTimeoutMs, maxOutputBytes: maxBytes + 1 });
    if (r.exitCode === 44) throw new RubiconError('MACHINE_FILE_MISSING', `${file} does not exist on ${this.name} (${this.address})`);
    if (r.exitCode === 45) {
      throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} on ${this.name} is ${r.stderr.trim()} bytes, more than the ${maxBytes} Rubicon reads as a small file`);
    }
    if (r.exitCode !== 0) throw new RubiconError('MACHINE_FAILED', `cannot read ${file} on ${this.name}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return r.stdout;
  }

  /**
   * Several small files in one call (WRITE_FILES_SCRIPT), each with
   * writeSmall's guarantees (temp file + rename, full length checked, mode
   * set before the rename). Not part of the Machine interface: use
   * writeSmallFiles() in machine-files.ts, which falls back to writeSmall.
   */
  async writeSmallFiles(files: readonly SmallFile[]): Promise<void> {
    if (files.length === 0) return;
    const datas = files.map((f) => (typeof f.data === 'string' ? Buffer.from(f.data) : Buffer.from(f.data)));
    const args = files.flatMap((f, i) => [f.path, (f.mode ?? 0o600).toString(8), String(datas[i]!.byteLength)]);
    const r = await this.invoke(['sh', '-c', WRITE_FILES_SCRIPT, 'rubicon', ...args], { input: Buffer.concat(datas), timeoutMs: this.execTimeoutMs });
    if (r.exitCode !== 0) {
      const full = /No space left/i.test(r.stderr);
      const names = files.map((f) => f.path).join(', ');
      throw new RubiconError(full ? 'NO_SPACE' : 'MACHINE_FAILED', `cannot write ${names} on ${this.name} (${this.address}): ${r.stderr.trim() || `exit ${r.exitCode}`}`, {
        hint: full ? `free space on ${this.name} where ${files[0]!.path} lives, then resume the run` : `check that the folders of ${names} on ${this.name} are writable`,
      });
    }
  }

  async writeSmall(file: string, data: string | Uint8Array, o: { mode?: number } = {}): Promise<void> {
    const mode = (o.mode ?? 0o600).toString(8);
    const r = await this.invoke(['sh', '-c', WRITE_SMALL_SCRIPT, 'rubicon', file, mode], { input: data, timeoutMs: this.execTimeoutMs });
    if (r.exitCode !== 0) {
      const full = /No space left/i.test(r.stderr);
      throw new RubiconError(full ? 'NO_SPACE' : 'MACHINE_FAILED', `cannot write ${file} on ${this.name} (${this.address}): ${r.stderr.trim() || `exit ${r.exitCode}`}`, {
        hint: full ? `free space on ${this.name} where ${file} lives, then resume the run` : `check that the folder of ${file} on ${this.name} is writable`,
      });
    }
  }
}

/**
 * Writes several small files on a machine: in one call where the machine
 * can (PosixMachine.writeSmallFiles, asked for, not assumed), else one
 * writeSmall per file. Same guarantees as writeSmall for each file.
 */
export async function writeSmallFiles(m: Machine, files: readonly SmallFile[]): Promise<void> {
  const many = (m as Partial<Pick<PosixMachine, 'writeSmallFiles'>>).writeSmallFiles;
  if (typeof many === 'function') return many.call(m, files);
  for (const f of files) await m.writeSmall(f.path, f.data, { mode: f.mode ?? 0o600 });
}
