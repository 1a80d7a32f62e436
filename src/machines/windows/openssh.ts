import { RubiconError } from '../../core/errors.ts';
import { STEP_TIMEOUT_EXIT, type Command, type ExecOptions, type ExecResult, type StepKey, type StepResult, type TransportKind } from '../machine.ts';
import { stepFolderName, stepLost } from '../posix.ts';
import { closeSsh, runSsh, sshControlPath, sshOptionArgs, type SshClientOptions } from '../ssh-client.ts';
import { decodeClixml } from './clixml.ts';
import { encodePowerShellCommand, windowsCommandLine } from './quote.ts';
import { stdinBootstrap as scriptBootstrap, type WindowsScriptName } from './scripts.ts';
import { checkFrames, entryText, isNoSpace, parseFrames, stateError, stdinBootstrap, wrapperText, type Frames, type Spec, type TransportEntry } from './transport.ts';
import { type WindowsMachine, windowsPath } from './windows-machine.ts';

/**
 * openssh-windows: a Windows Server reached with the system's OpenSSH
 * client, whose sshd hands every command to PowerShell (DefaultShell =
 * powershell.exe). Same ssh strictness as the Linux transport (one shared
 * module, src/machines/ssh-client.ts). Design note: docs/windows.md
 * "Transports".
 *
 * Every call is one ssh command `<powershell> -NoProfile -NonInteractive
 * -EncodedCommand <base64 of UTF-16LE text>`: sshd re-quotes a command for
 * its default shell, and a base64 word survives any re-quoting, under
 * PowerShell and under cmd alike. When the encoded text would make that
 * command longer than OPENSSH_COMMAND_LIMIT, or the call carries a payload
 * (a program's stdin, a file's bytes), a small fixed bootstrap is sent
 * instead and the text and payload follow on stdin, hash-checked.
 *
 * What comes back is never trusted by the process exit code (the login
 * shell flattens a child's exit code to 0/1): every text prints ASCII frame
 * lines (src/machines/windows/transport/lib.ps1) with the program's code,
 * its output in base64 and a SHA-256 of each stream. CLIXML on stderr is
 * decoded into plain messages.
 */

/**
 * The longest ssh command sent. A Windows command line holds 32,767
 * characters (CreateProcess), but one that passes through cmd.exe only
 * 8,191; sshd starts the default shell with our command inside its own
 * command line. 8,000 fits both with room for sshd's prefix (the shell's
 * path, its `-c`), so a server whose DefaultShell was left at cmd still
 * works. Longer texts cost nothing: they go over stdin in the same call.
 */
export const OPENSSH_COMMAND_LIMIT = 8_000;

/** Seconds the machine waits for a step within one call before answering "running" (Rubicon then asks again). */
const STEP_POLL_SECONDS = 20;
/** Seconds a launched step wrapper has to write its pid before it counts as dead. */
const LAUNCH_GRACE_SECONDS = 120;
/** PowerShell's own start (twice per call: the login shell and ours) on a slow or loaded server. */
const START_ALLOWANCE_MS = 90_000;
const DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024;
/** The largest file writeSmall sends and readSmall reads (base64 in one line). */
export const WINDOWS_SMALL_FILE_LIMIT = 16 * 1024 * 1024;

export interface OpenSshWindowsOptions extends SshClientOptions {
  name: string;
  /** Absolute folder on the machine for this run's step folders (`C:\ProgramData\Rubicon\steps\<run>`). */
  stepsRoot: string;
  /** The PowerShell program each command starts: `powershell` (Windows PowerShell 5.1, default) or `pwsh`, or a path. */
  powershell?: string;
  /** Default deadline of a short command. Default 120 s. */
  commandTimeoutSeconds?: number;
}

export interface PowerShellCall {
  /** Bytes the text finds in $RubiconPayload (sent on stdin). */
  payload?: Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  maxOutputBytes?: number;
}

export interface PowerShellResult {
  /** The ssh process's exit code: the login shell's, 0 or 1 (not the text's own). */
  exitCode: number;
  stdout: string;
  /** CLIXML decoded into plain messages. */
  stderr: string;
  durationMs: number;
}

export class OpenSshWindowsMachine implements WindowsMachine {
  readonly os = 'windows' as const;
  readonly transport: TransportKind = 'openssh-windows';
  readonly name: string;
  readonly address: string;
  readonly powershell: string;
  readonly stepsRoot: string;
  private readonly o: OpenSshWindowsOptions;
  private readonly controlPath: string;
  private readonly execTimeoutMs: number;

  constructor(o: OpenSshWindowsOptions) {
    this.o = o;
    this.name = o.name;
    this.address = `ssh ${o.user}@${o.host}:${o.port} (PowerShell)`;
    this.powershell = o.powershell ?? 'powershell';
    this.stepsRoot = o.stepsRoot;
    this.execTimeoutMs = (o.commandTimeoutSeconds ?? 120) * 1000;
    this.controlPath = sshControlPath(o);
  }

  /** The ssh options every call uses (for tools that take an ssh command). */
  sshArgs(): string[] {
    return sshOptionArgs(this.o, this.controlPath);
  }

  /**
   * Runs PowerShell text on the machine: the primitive the rest is built
   * on. The text runs as a script block in a fresh `<powershell>
   * -NoProfile -NonInteractive`; its stdout comes back as text, its stderr
   * with CLIXML decoded. Throws only for the transport (ssh's typed errors,
   * MACHINE_TIMEOUT); the text's own failures are the caller's to read.
   */
  async invokePowerShell(text: string, c: PowerShellCall = {}): Promise<PowerShellResult> {
    const direct = `${this.powershell} -NoProfile -NonInteractive -EncodedCommand ${encodePowerShellCommand(text)}`;
    let command = direct;
    let input: string | undefined;
    if (c.payload !== undefined || direct.length > OPENSSH_COMMAND_LIMIT) {
      const boot = stdinBootstrap(text, c.payload);
      command = `${this.powershell} -NoProfile -NonInteractive -EncodedCommand ${boot.encodedCommand}`;
      input = boot.stdin;
    }
    const max = c.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const r = await runSsh(this.o, this.name, this.controlPath, command, {
      ...(input !== undefined ? { input } : {}),
      timeoutMs: c.timeoutMs ?? this.execTimeoutMs,
      ...(c.signal ? { signal: c.signal } : {}),
      // Frames carry base64 (4/3) of up to max bytes per stream.
      maxOutputBytes: Math.ceil(max * 3) + 1024 * 1024,
    }, `powershell ${text.split('\n').find((l) => l.startsWith('# ') && !l.startsWith('# Rubicon transport')) ?? ''}`);
    return { exitCode: r.exitCode, stdout: Buffer.from(r.stdout).toString('utf8'), stderr: decodeClixml(r.stderr).text, durationMs: r.durationMs };
  }

  /** One transport entry; its frames, or MACHINE_FAILED naming the machine when it did not finish. */
  private async call(entry: TransportEntry, spec: Spec, c: PowerShellCall & { what: string }): Promise<Frames> {
    const text = entryText(entry, spec, c.payload !== undefined ? { kind: 'preset' } : { kind: 'none' });
    const r = await this.invokePowerShell(text, c);
    const f = parseFrames(r.stdout);
    if (!f) {
      const why = r.stderr.trim().split('\n').slice(0, 3).join(' ').slice(0, 400);
      throw new RubiconError('MACHINE_FAILED', `${c.what} on ${this.name} (${this.address}) did not finish: ${why || `no answer (exit ${r.exitCode})`}`, {
        hint: `check that ${this.powershell} starts for ${this.o.user} on ${this.o.host} (ssh there and run: ${this.powershell} -NoProfile -Command "$PSVersionTable.PSVersion"), and that the OpenSSH DefaultShell is PowerShell`,
        details: { machine: this.name },
      });
    }
    checkFrames(f, `${c.what} on ${this.name}`);
    if (f.state[0] === 'error') {
      const e = stateError(f.state);
      const full = isNoSpace(e);
      throw new RubiconError(full ? 'NO_SPACE' : 'MACHINE_FAILED', `${c.what} on ${this.name} (${this.address}) failed: ${e.message}`, {
        hint: full ? `free space on ${this.name}, then resume the run` : `check the path and permissions on ${this.name}`,
        details: { machine: this.name, hresult: e.hresult },
      });
    }
    return f;
  }

  /**
   * Runs a program with its arguments, no shell: each argument is quoted
   * for the Windows command line (quoteWindowsArg, the rules the program's
   * C runtime splits by) and handed to .NET's Process inside PowerShell.
   * Never throws for the program's exit code; a program that cannot be
   * started is exit 127 with the reason on stderr (as a POSIX shell says).
   * MACHINE_TIMEOUT when the deadline killed it on the machine.
   */
  async exec(cmd: Command, o: ExecOptions = {}): Promise<ExecResult> {
    const t0 = performance.now();
    const timeoutMs = o.timeoutMs ?? this.execTimeoutMs;
    const f = await this.call('exec', { ...programSpec(cmd), deadline: String(Math.ceil(timeoutMs / 1000)), max: String(o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT) }, {
      what: `${cmd.argv[0] ?? 'a command'}`,
      ...(cmd.input !== undefined ? { payload: toBytes(cmd.input) } : {}),
      timeoutMs: timeoutMs + START_ALLOWANCE_MS,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.maxOutputBytes !== undefined ? { maxOutputBytes: o.maxOutputBytes } : {}),
    });
    const [state, code, timedOut] = f.state;
    if (state !== 'done' || code === undefined || !/^-?\d+$/.test(code)) throw this.unexpected('exec', f);
    if (timedOut === '1') {
      throw new RubiconError('MACHINE_TIMEOUT', `${cmd.argv[0]} on ${this.name} did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped there`, {
        hint: `check what ${cmd.argv[0]} waits for on ${this.name}, then resume the run`,
      });
    }
    return { exitCode: Number(code), stdout: withCut(f.out, f.sum?.outCut), stderr: decodeClixml(withCut(f.err, f.sum?.errCut)).text, durationMs: Math.round(performance.now() - t0) };
  }

  /** Reads a whole small file. MACHINE_FILE_MISSING, MACHINE_FILE_TOO_LARGE over maxBytes (or WINDOWS_SMALL_FILE_LIMIT). Read-only. */
  async readSmall(file: string, maxBytes: number): Promise<Uint8Array> {
    const max = Math.min(maxBytes, WINDOWS_SMALL_FILE_LIMIT);
    const f = await this.call('read-small', { path: file, max: String(max) }, { what: `reading ${file}`, maxOutputBytes: max + 1024 });
    if (f.state[0] === 'missing') throw new RubiconError('MACHINE_FILE_MISSING', `${file} does not exist on ${this.name} (${this.address})`);
    if (f.state[0] === 'toolarge') {
      throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} on ${this.name} is ${f.state[1]} bytes, more than the ${max} Rubicon reads as a small file`);
    }
    if (f.state[0] !== 'ok' || f.partial) throw this.unexpected(`reading ${file}`, f);
    return new Uint8Array(f.out);
  }

  /**
   * Writes a small file atomically (temp file, then Move-Item -Force),
   * creating its folder. Mode 0600 (the default) means owner-only: on
   * Windows a protected ACL for the account, SYSTEM and Administrators.
   * The bytes travel on stdin, never on a command line. Idempotent.
   */
  async writeSmall(file: string, data: string | Uint8Array, o: { mode?: number } = {}): Promise<void> {
    const bytes = toBytes(data);
    if (bytes.length > WINDOWS_SMALL_FILE_LIMIT) {
      throw new RubiconError('MACHINE_FILE_TOO_LARGE', `${file} would be ${bytes.length} bytes, more than the ${WINDOWS_SMALL_FILE_LIMIT} Rubicon writes as a small file on ${this.name}`, {
        hint: 'large files go through a vault, not through the transport',
      });
    }
    const f = await this.call('write-small', { path: file, mode: String(o.mode ?? 0o600) }, { what: `writing ${file}`, payload: bytes });
    if (f.state[0] !== 'ok') throw this.unexpected(`writing ${file}`, f);
  }

  /** Folder of one step on the machine. */
  stepFolder(stepId: string): string {
    return windowsPath(this.stepsRoot, stepFolderName(stepId));
  }

  /**
   * A long step keyed by the journal (contract in machine.ts), with a
   * Windows step protocol: a folder per step with in, spec, launched, pid
   * ("pid start-ticks"), out, err and rc. The program runs under a detached
   * PowerShell wrapper that survives the ssh session (Win32_Process.Create
   * on Windows, setsid on the Linux test host), enforces the deadline
   * itself (exit 124) and writes rc last. Rubicon polls with short calls
   * that each wait up to 20 s on the machine.
   */
  async run(step: StepKey, cmd: Command, o: ExecOptions = {}): Promise<StepResult> {
    const t0 = performance.now();
    const dir = this.stepFolder(step.id);
    const max = String(o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT);
    const deadlineSeconds = o.timeoutMs ? Math.ceil(o.timeoutMs / 1000) : 0;
    const common = { dir, wait: String(STEP_POLL_SECONDS), grace: String(LAUNCH_GRACE_SECONDS), max };
    const ourDeadline = o.timeoutMs ? Date.now() + o.timeoutMs + START_ALLOWANCE_MS + STEP_POLL_SECONDS * 1000 : Number.POSITIVE_INFINITY;
    const callTimeout = STEP_POLL_SECONDS * 1000 + START_ALLOWANCE_MS;
    const onAbort = () => {
      void this.call('step-cancel', { dir }, { what: `cancelling step ${step.id}`, timeoutMs: START_ALLOWANCE_MS }).catch(() => undefined);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const programSpecText = Object.entries({ ...programSpec(cmd), deadline: String(deadlineSeconds) })
        .map(([k, v]) => `${k} ${Buffer.from(v, 'utf8').toString('base64')}\n`)
        .join('');
      let f = await this.call(
        'step-start',
        { ...common, idem: step.idempotent ? '1' : '0', deadline: String(deadlineSeconds), exe: this.powershell, wrapper: wrapperText(), spec: Buffer.from(programSpecText, 'utf8').toString('base64') },
        { what: `step ${step.id}`, ...(cmd.input !== undefined ? { payload: toBytes(cmd.input) } : {}), timeoutMs: callTimeout, ...(o.signal ? { signal: o.signal } : {}), maxOutputBytes: Number(max) },
      );
      if (f.state[0] === 'lost') throw stepLost(`${this.name} (${this.address})`, step.id);
      if (f.state[0] === 'noexe') {
        throw new RubiconError('TOOL_MISSING', `${this.powershell} is not on the PATH of ${this.o.user} on ${this.name}: the step wrapper cannot start`, {
          hint: `set transport.powershell to the PowerShell installed on ${this.name} (powershell or pwsh)`,
        });
      }
      const reattached = f.state[1] === 'reattached' || f.state[2] === 'reattached';
      while (f.state[0] === 'running') {
        o.signal?.throwIfAborted();
        if (Date.now() > ourDeadline) {
          throw new RubiconError('MACHINE_TIMEOUT', `step ${step.id} on ${this.name} is still running past its deadline: the machine did not stop it`, {
            hint: `check the step's folder ${dir} on ${this.name}; resume the run to attach to it again`,
          });
        }
        f = await this.call('step-wait', common, { what: `step ${step.id}`, timeoutMs: callTimeout, ...(o.signal ? { signal: o.signal } : {}), maxOutputBytes: Number(max) });
      }
      if (f.state[0] === 'killed') {
        throw new RubiconError('MACHINE_FAILED', `step ${step.id} on ${this.name} was killed before it finished`, { hint: 'resume the run to start it again (an idempotent step) or to see it refused (STEP_LOST)' });
      }
      const code = f.state[1];
      if (f.state[0] !== 'done' || code === undefined || !/^-?\d+$/.test(code)) throw this.unexpected(`step ${step.id}`, f);
      return {
        exitCode: Number(code),
        stdout: withCut(f.out, f.sum?.outCut),
        stderr: decodeClixml(withCut(f.err, f.sum?.errCut)).text,
        durationMs: Math.round(performance.now() - t0),
        reattached,
      };
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Runs one of the Windows scripts (scripts.ts) as a keyed step: the
   * stdin bootstrap of scripts.ts as the program (`<powershell>
   * -EncodedCommand <bootstrap>`, the script text on its stdin, checked by
   * SHA-256), so the exit code is the script's own, exactly.
   */
  runScript(step: StepKey, name: WindowsScriptName, encodedArgs: string, o: ExecOptions = {}): Promise<StepResult> {
    const boot = scriptBootstrap(name, encodedArgs);
    return this.run(step, { argv: [this.powershell, '-NoProfile', '-NonInteractive', '-EncodedCommand', boot.encodedCommand], input: boot.stdin }, o);
  }

  /** Removes this run's step folders (their output was read and journaled). Destructive; idempotent. */
  async forgetSteps(): Promise<void> {
    await this.call('remove-tree', { path: this.stepsRoot }, { what: `removing ${this.stepsRoot}` });
  }

  /** Ends the shared connection. Idempotent. */
  async close(): Promise<void> {
    await closeSsh(this.o, this.controlPath);
  }

  private unexpected(what: string, f: Frames): RubiconError {
    return new RubiconError('MACHINE_FAILED', `${what} on ${this.name}: unexpected answer "${f.state.join(' ').slice(0, 80)}"${f.partial ? ' (output incomplete)' : ''}`, { hint: 'this is a bug in Rubicon or an altered transport script' });
  }
}

/** The program part of a spec: file, its arguments as one Windows command line, cwd, env.NAME. */
export function programSpec(cmd: Command): Spec {
  const [file, ...args] = cmd.argv;
  if (!file) throw new RubiconError('ARGUMENTS_INVALID', 'empty command');
  for (const a of cmd.argv) {
    if (a.includes('\0')) throw new RubiconError('ARGUMENTS_INVALID', 'a command argument contains a NUL byte, which no Windows command line can pass');
  }
  const spec: Spec = { file, args: windowsCommandLine(args), cwd: cmd.cwd ?? '' };
  for (const [k, v] of Object.entries(cmd.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new RubiconError('ARGUMENTS_INVALID', `environment variable name "${k}" is not valid`);
    spec[`env.${k}`] = v;
  }
  return spec;
}

export function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** Output as text, with the marker line ExecOptions promises when it was cut. */
export function withCut(bytes: Buffer, cut: boolean | undefined): string {
  const text = bytes.toString('utf8');
  return cut ? `${text}${text.endsWith('\n') || text === '' ? '' : '\n'}[rubicon: output cut at ${bytes.length} bytes]\n` : text;
}

export { STEP_TIMEOUT_EXIT };
