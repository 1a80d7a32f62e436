import { mkdirSync } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile, chmod, rm } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { RubiconError } from '../core/errors.ts';
import { LocalHost } from '../hosts/local.ts';
import type { LocalFiles, TransportKind } from './machine.ts';
import { DEFAULT_MAX_OUTPUT, PosixMachine, type InvokeOptions, type RawResult, type SmallFile } from './posix-machine.ts';

export interface LocalMachineOptions {
  name: string;
  /** The machine's root on this computer (the sandbox folder, or `/`). */
  root: string;
  /** Absolute folder for this run's step folders (under the run's work folder). */
  stepsRoot: string;
}

/**
 * The local transport: the sandbox's folders, or Rubicon running on the
 * server itself. Programs run without a shell through execa; small files go
 * through node:fs; long steps use the same on-machine step protocol as ssh
 * (src/machines/posix.ts), so a step survives a kill -9 of the orchestrator
 * here too.
 */
export class LocalMachine extends PosixMachine {
  readonly name: string;
  readonly transport: TransportKind = 'local';
  readonly address = 'local';
  override readonly local: LocalFiles;
  protected readonly stepsRoot: string;
  /** The same folder as the engines' Host (src/hosts/local.ts). */
  readonly host: LocalHost;

  constructor(o: LocalMachineOptions) {
    super();
    this.name = o.name;
    this.local = { root: path.resolve(o.root) };
    this.stepsRoot = path.resolve(o.stepsRoot);
    this.host = new LocalHost(o.name, o.root);
  }

  protected async invoke(argv: readonly string[], o: InvokeOptions): Promise<RawResult> {
    const [file, ...args] = argv;
    if (!file) throw new RubiconError('ARGUMENTS_INVALID', 'empty command');
    mkdirSync(this.stepsRoot, { recursive: true });
    const t0 = performance.now();
    const r = await execa(file, args, {
      reject: false,
      encoding: 'buffer',
      input: o.input === undefined ? undefined : typeof o.input === 'string' ? Buffer.from(o.input) : o.input,
      stdin: o.input === undefined ? 'ignore' : undefined,
      timeout: o.timeoutMs,
      cancelSignal: o.signal,
      maxBuffer: o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT,
      stripFinalNewline: false,
    });
    const stderr = Buffer.from(r.stderr ?? new Uint8Array()).toString('utf8');
    if (r.exitCode === undefined && !r.timedOut && !r.isCanceled && !r.isMaxBuffer) {
      // The program could not be started at all (not installed).
      const missing = (r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
      throw new RubiconError(missing ? 'TOOL_MISSING' : 'MACHINE_FAILED', missing ? `${file} is not installed on ${this.name} (this machine)` : `cannot start ${file} on ${this.name}: ${r.shortMessage}`, {
        hint: missing ? `install ${file} on this machine, then resume the run` : undefined,
      });
    }
    if (r.timedOut) throw new RubiconError('MACHINE_TIMEOUT', `${file} on ${this.name} did not finish within ${Math.round((o.timeoutMs ?? 0) / 1000)} s`);
    return { exitCode: r.exitCode ?? 1, stdout: r.stdout ?? new Uint8Array(), stderr, durationMs: Math.round(performance.now() - t0) };
  }

  /** Small files through node:fs (same contract as the remote scripts). */
  override async readSmall(file: string, maxBytes: number): Promise<Uint8Array> {
    let st;
    try {
      st = await stat(file);
    } catch {
      throw new RubiconError('MACHINE_FILE_MISSING', `${file} does not exist on ${this.name}`);
    }
    if (st.size > maxBytes) throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} on ${this.name} is ${st.size} bytes, more than the ${maxBytes} Rubicon reads as a small file`);
    return readFile(file);
  }

  override async writeSmall(file: string, data: string | Uint8Array, o: { mode?: number } = {}): Promise<void> {
    const tmp = `${file}.rubicon-tmp.${process.pid}`;
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(tmp, data, { mode: o.mode ?? 0o600 });
      await chmod(tmp, o.mode ?? 0o600);
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      const code = (e as NodeJS.ErrnoException).code;
      throw new RubiconError(code === 'ENOSPC' ? 'NO_SPACE' : 'MACHINE_FAILED', `cannot write ${file} on ${this.name}: ${code ?? String(e)}`, {
        hint: code === 'ENOSPC' ? `free space where ${file} lives, then resume the run` : undefined,
      });
    }
  }

  /** Local files are cheap to write one by one (node:fs). */
  override async writeSmallFiles(files: readonly SmallFile[]): Promise<void> {
    for (const f of files) await this.writeSmall(f.path, f.data, { mode: f.mode ?? 0o600 });
  }

  async close(): Promise<void> {}
}
