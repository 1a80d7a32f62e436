import { hostname } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { RubiconError } from '../core/errors.ts';
import type { CommandResult, ExecOptions, Host } from './host.ts';

/**
 * LocalHost: a folder on this machine standing in for a server (the sandbox
 * target, the sandbox proving ground). Commands run without a shell, with
 * the folder as working directory.
 */
export class LocalHost implements Host {
  readonly kind = 'local' as const;
  readonly name: string;
  readonly root: string;

  constructor(name: string, root: string) {
    this.name = name;
    this.root = path.resolve(root);
  }

  /** Absolute path for `relative`; refuses absolute paths and paths that leave the root. */
  resolve(relative: string): string {
    if (path.isAbsolute(relative)) {
      throw new RubiconError('ARGUMENTS_INVALID', `path "${relative}" on host ${this.name} must be relative to the host root`, {
        hint: 'write paths in the runbook relative to the target root, e.g. "ehr/A"',
      });
    }
    const abs = path.resolve(this.root, relative);
    if (abs !== this.root && !abs.startsWith(this.root + path.sep)) {
      throw new RubiconError('ARGUMENTS_INVALID', `path "${relative}" leaves the root of host ${this.name}`, {
        hint: 'remove ".." from the path',
      });
    }
    return abs;
  }

  async exec(file: string, args: string[], options: ExecOptions = {}): Promise<CommandResult> {
    const started = performance.now();
    const result = await execa(file, args, {
      cwd: this.resolve(options.cwd ?? '.'),
      env: options.env,
      cancelSignal: options.signal,
      timeout: options.timeoutMs,
      reject: false,
      stdin: 'ignore',
      stripFinalNewline: false,
    });
    return {
      command: file,
      args,
      exitCode: result.exitCode ?? (result.timedOut ? 124 : 1),
      stdout: String(result.stdout ?? ''),
      stderr: String(result.stderr ?? '') + (result.failed && result.exitCode === undefined ? `\n${result.shortMessage}` : ''),
      durationMs: Math.round(performance.now() - started),
    };
  }
}

export function thisHostName(): string {
  return hostname();
}
