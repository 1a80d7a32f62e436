import { RubiconError } from '../../core/errors.ts';
import type { TransportSettings } from '../../runbook/load.ts';
import type { Command, ExecOptions, ExecResult, PlatformIdentity, StepKey, StepResult, TransportKind } from '../machine.ts';
import { OpenSshWindowsMachine } from './openssh.ts';
import type { AzureRunCommandMachine, AzureTokenCredential } from './run-command.ts';
import type { WindowsScriptName } from './scripts.ts';
import type { WindowsMachine } from './windows-machine.ts';

/**
 * The runbook's Windows transports → machines, for the composition root's
 * transport registry (src/compose/root.ts). Reads the environment only for
 * what the runbook names by variable (the subscription id, the pipeline's
 * service connection); no secret is ever in the runbook.
 */

export function openSshWindowsFromSettings(name: string, t: TransportSettings, stepsRoot: string): OpenSshWindowsMachine {
  if (t.kind !== 'openssh-windows') throw new RubiconError('INTERNAL', `transport ${t.kind} is not openssh-windows`);
  return new OpenSshWindowsMachine({
    name,
    host: t.host,
    port: t.port,
    user: t.user,
    identityFile: t.identityFile,
    knownHostsFile: t.knownHosts,
    connectTimeoutSeconds: t.connectTimeoutSeconds,
    commandTimeoutSeconds: t.commandTimeoutSeconds,
    stepsRoot,
    powershell: t.powershell,
    ...(t.proxyJump ? { proxyJump: t.proxyJump } : {}),
  });
}

/**
 * Azure Pipelines (AzureCLI@2 / AzurePowerShell tasks with a workload
 * identity service connection) exposes the connection as these variables;
 * the pipeline must map System.AccessToken into SYSTEM_ACCESSTOKEN.
 */
export const AZURE_PIPELINES_ENV = {
  tenantId: 'AZURESUBSCRIPTION_TENANT_ID',
  clientId: 'AZURESUBSCRIPTION_CLIENT_ID',
  serviceConnectionId: 'AZURESUBSCRIPTION_SERVICE_CONNECTION_ID',
  systemAccessToken: 'SYSTEM_ACCESSTOKEN',
} as const;

export async function azureCredential(kind: 'default' | 'azure-pipelines', env: NodeJS.ProcessEnv = process.env): Promise<AzureTokenCredential> {
  const { AzurePipelinesCredential, DefaultAzureCredential } = await import('@azure/identity');
  if (kind === 'default') return new DefaultAzureCredential();
  const missing = Object.values(AZURE_PIPELINES_ENV).filter((v) => !env[v]);
  if (missing.length > 0) {
    throw new RubiconError('RUNBOOK_INVALID', `target.transport.credential is azure-pipelines, but ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set`, {
      hint: 'run Rubicon in an AzureCLI@2 task with a workload identity service connection, and map $(System.AccessToken) to SYSTEM_ACCESSTOKEN',
    });
  }
  const v = (k: keyof typeof AZURE_PIPELINES_ENV) => env[AZURE_PIPELINES_ENV[k]] as string;
  return new AzurePipelinesCredential(v('tenantId'), v('clientId'), v('serviceConnectionId'), v('systemAccessToken'));
}

/**
 * The azure-run-command machine, built on first use: the Azure SDK takes
 * seconds to load and a runbook without this transport never pays for it.
 * Settings and the subscription variable are checked at once.
 */
export function azureRunCommandFromSettings(name: string, t: TransportSettings, stepsRoot: string, env: NodeJS.ProcessEnv = process.env): WindowsMachine & { forgetSteps(): Promise<void> } {
  if (t.kind !== 'azure-run-command') throw new RubiconError('INTERNAL', `transport ${t.kind} is not azure-run-command`);
  const subscriptionId = env[t.subscriptionIdEnv]?.trim();
  if (!subscriptionId) {
    throw new RubiconError('RUNBOOK_INVALID', `target.transport.subscriptionIdEnv: environment variable ${t.subscriptionIdEnv} is not set, so Rubicon cannot reach VM ${t.vmName} through Run Command`, {
      hint: `export ${t.subscriptionIdEnv}=<subscription id of the VM>`,
    });
  }
  return new LazyWindowsMachine(name, 'azure-run-command', `Run Command on VM ${t.vmName} (resource group ${t.resourceGroup})`, async () => {
    const { createAzureRunCommandMachine } = await import('./run-command.ts');
    return createAzureRunCommandMachine(
      {
        subscriptionId,
        resourceGroup: t.resourceGroup,
        vmName: t.vmName,
        credential: await azureCredential(t.credential, env),
        ...(t.outputContainer ? { outputContainer: t.outputContainer } : {}),
        ...(t.outputIdentityClientId ? { outputIdentityClientId: t.outputIdentityClientId } : {}),
      },
      { name, stepsRoot, powershell: t.powershell, defaultCommandTimeoutMs: t.commandTimeoutSeconds * 1000 },
    );
  });
}

/** A Windows machine whose adapter is loaded on first use (same contract; errors of the load surface on that call). */
class LazyWindowsMachine implements WindowsMachine {
  readonly os = 'windows' as const;
  readonly name: string;
  readonly transport: TransportKind;
  readonly address: string;
  readonly #load: () => Promise<AzureRunCommandMachine>;
  #real: Promise<AzureRunCommandMachine> | undefined;

  constructor(name: string, transport: TransportKind, address: string, load: () => Promise<AzureRunCommandMachine>) {
    this.name = name;
    this.transport = transport;
    this.address = address;
    this.#load = load;
  }

  #m(): Promise<AzureRunCommandMachine> {
    this.#real ??= this.#load();
    return this.#real;
  }

  async exec(cmd: Command, o?: ExecOptions): Promise<ExecResult> {
    return (await this.#m()).exec(cmd, o);
  }
  async run(step: StepKey, cmd: Command, o?: ExecOptions): Promise<StepResult> {
    return (await this.#m()).run(step, cmd, o);
  }
  async runScript(step: StepKey, name: WindowsScriptName, encodedArgs: string, o?: ExecOptions): Promise<StepResult> {
    return (await this.#m()).runScript(step, name, encodedArgs, o);
  }
  async readSmall(path: string, maxBytes: number): Promise<Uint8Array> {
    return (await this.#m()).readSmall(path, maxBytes);
  }
  async writeSmall(path: string, data: string | Uint8Array, o?: { mode?: number }): Promise<void> {
    return (await this.#m()).writeSmall(path, data, o);
  }
  async forgetSteps(): Promise<void> {
    return (await this.#m()).forgetSteps();
  }
  async platformIdentity(signal?: AbortSignal): Promise<PlatformIdentity> {
    return (await this.#m()).platformIdentity(signal);
  }
  async close(): Promise<void> {
    if (this.#real) await (await this.#real).close();
  }
}
