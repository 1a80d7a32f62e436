import { LocalWorkspace, PulumiCommand, type EngineEvent, type Stack } from '@pulumi/pulumi/automation/index.js';
import { RubiconError } from '../../core/errors.ts';
import type { ConfigOptions, OperationOptions, PreviewOutcome, StackPort, UpOutcome } from './ports.ts';

/**
 * The real StackPort: Pulumi's Automation API driving the `pulumi` CLI on
 * this project (workDir = the folder holding Pulumi.yaml; the program is
 * Pulumi.yaml's `main`).
 *
 * Config goes through `stack.setConfig/getConfig/removeConfig`, which run
 * `pulumi config set|get|rm --stack …` and so honour `stackConfigDir:
 * stacks`; LocalWorkspace.stackSettings()/saveStackSettings() would not
 * (pulumi/pulumi#10305) and are never used.
 *
 * Never run here: the Pulumi CLI and the azure-native plugin cannot be
 * installed on the build machines (docs/infra.md). Every failure becomes a
 * RubiconError(INFRA_FAILED) that keeps the CLI's error as `cause`.
 */

export interface OpenStackOptions {
  /** Folder holding Pulumi.yaml. */
  workDir: string;
  stackName: string;
  /** Folder whose `bin/pulumi` to run; default: `pulumi` on PATH. Never downloads the CLI. */
  pulumiRoot?: string;
  /** Extra environment for every CLI call (e.g. PULUMI_CONFIG_PASSPHRASE_FILE, ARM_USE_MSI). */
  envVars?: Record<string, string>;
  /** Create the stack when it does not exist. Default false (select only). */
  create?: boolean;
}

function wrap(what: string, stackName: string, e: unknown): RubiconError {
  const text = e instanceof Error ? e.message : String(e);
  return new RubiconError('INFRA_FAILED', `pulumi ${what} on stack ${stackName} failed: ${text.split('\n').slice(-8).join('\n').trim()}`, {
    hint: `Run \`pulumi ${what} --stack ${stackName}\` by hand to see the whole output.`,
    cause: e,
  });
}

export class AutomationStackPort implements StackPort {
  readonly stackName: string;
  readonly #stack: Stack;

  constructor(stack: Stack) {
    this.#stack = stack;
    this.stackName = stack.name;
  }

  async getConfig(key: string, options: ConfigOptions = {}): Promise<string | undefined> {
    try {
      return (await this.#stack.getConfig(key, options.path)).value;
    } catch (e) {
      if (/not found|configuration key .* not/i.test(e instanceof Error ? e.message : String(e))) return undefined;
      throw wrap(`config get ${key}`, this.stackName, e);
    }
  }

  async setConfig(key: string, value: string, options: ConfigOptions = {}): Promise<void> {
    try {
      await this.#stack.setConfig(key, { value, secret: options.secret ?? false }, options.path);
    } catch (e) {
      throw wrap(`config set ${key}`, this.stackName, e);
    }
  }

  async removeConfig(key: string, options: ConfigOptions = {}): Promise<void> {
    if ((await this.getConfig(key, options)) === undefined) return;
    try {
      await this.#stack.removeConfig(key, options.path);
    } catch (e) {
      throw wrap(`config rm ${key}`, this.stackName, e);
    }
  }

  async preview(options: OperationOptions = {}): Promise<PreviewOutcome> {
    const events: EngineEvent[] = [];
    try {
      const r = await this.#stack.preview({
        diff: true,
        color: 'never',
        onEvent: (e) => {
          events.push(e);
          options.onEvent?.(e);
        },
        ...(options.planPath ? { plan: options.planPath } : {}),
        ...(options.targets ? { target: options.targets } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return { events, changeSummary: r.changeSummary, ...(options.planPath ? { planPath: options.planPath } : {}) };
    } catch (e) {
      throw wrap('preview', this.stackName, e);
    }
  }

  async up(options: OperationOptions = {}): Promise<UpOutcome> {
    const events: EngineEvent[] = [];
    try {
      const r = await this.#stack.up({
        color: 'never',
        onEvent: (e) => {
          events.push(e);
          options.onEvent?.(e);
        },
        ...(options.planPath ? { plan: options.planPath } : {}),
        ...(options.targets ? { target: options.targets } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return {
        events,
        outputs: Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.value])),
        summary: { result: r.summary.result, ...(r.summary.resourceChanges ? { resourceChanges: r.summary.resourceChanges } : {}) },
      };
    } catch (e) {
      throw wrap('up', this.stackName, e);
    }
  }

  async outputs(): Promise<Record<string, unknown>> {
    try {
      const o = await this.#stack.outputs();
      return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v.value]));
    } catch (e) {
      throw wrap('stack output', this.stackName, e);
    }
  }
}

/** Opens (selects, or creates when asked) a stack of this project. Effect: runs the Pulumi CLI. */
export async function openStack(options: OpenStackOptions): Promise<AutomationStackPort> {
  try {
    const pulumiCommand = await PulumiCommand.get({ ...(options.pulumiRoot ? { root: options.pulumiRoot } : {}), skipVersionCheck: false });
    const wsOpts = { pulumiCommand, ...(options.envVars ? { envVars: options.envVars } : {}) };
    const args = { workDir: options.workDir, stackName: options.stackName };
    const stack = options.create ? await LocalWorkspace.createOrSelectStack(args, wsOpts) : await LocalWorkspace.selectStack(args, wsOpts);
    return new AutomationStackPort(stack);
  } catch (e) {
    throw new RubiconError('INFRA_FAILED', `Cannot open Pulumi stack ${options.stackName} in ${options.workDir}: ${e instanceof Error ? e.message : String(e)}`, {
      hint: 'Install the Pulumi CLI (https://www.pulumi.com/docs/install/) and log in (`pulumi login`), then retry.',
      cause: e,
    });
  }
}
