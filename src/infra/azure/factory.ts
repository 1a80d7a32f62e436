import type { PulumiAzureSettings } from '../../runbook/azure.ts';
import { loadSigner, type Signer } from '../../trust/keys.ts';
import { azureArmPortFromEnv } from './arm.ts';
import { openStack } from './automation.ts';
import { PulumiAzureDriver } from './driver.ts';
import { azureMachinePortFromEnv } from './machines.ts';
import type { ArmPort, MachinePort, StackPort } from './ports.ts';

/**
 * The factory the composition root registers under `infra.kind:
 * pulumi-azure`: the runbook's section (src/runbook/azure.ts) → a
 * PulumiAzureDriver over the real Automation API stack, the Azure machine
 * port (snapshots, VM agent, Run Command) and the ARM port (locks, VM facts).
 *
 * Every port can be given instead (tests, a composition root with its own
 * transports). The signing key is loaded here, once, from where the runbook
 * names it (KEY_INVALID / KEY_INSECURE, exit 3, before anything is touched).
 *
 * Effects: opens the Pulumi stack (runs the CLI) unless `stack` is given.
 */
export interface PulumiAzureInfraDeps {
  env?: NodeJS.ProcessEnv;
  /** Plain-words lines for the journal (the composition root records them as `note` events). */
  log?: (level: 'info' | 'warn', message: string) => void;
  now?: () => Date;
  stack?: StackPort;
  machines?: MachinePort;
  arm?: ArmPort;
  signer?: Signer;
}

export async function createPulumiAzureInfra(section: PulumiAzureSettings, deps: PulumiAzureInfraDeps = {}): Promise<PulumiAzureDriver> {
  const env = deps.env ?? process.env;
  const signer = deps.signer ?? loadSigner(section.signingKey, env);
  const azureEnv = { ...env, AZURE_SUBSCRIPTION_ID: env[section.subscriptionIdEnv] };
  const machines = deps.machines ?? azureMachinePortFromEnv(azureEnv, deps.log ? { log: deps.log } : {});
  const arm = deps.arm ?? azureArmPortFromEnv(azureEnv);
  const stack =
    deps.stack ??
    (await openStack({ workDir: section.workDir, stackName: section.stack, ...(section.pulumiRoot ? { pulumiRoot: section.pulumiRoot } : {}) }));
  return new PulumiAzureDriver({
    stack,
    machines,
    arm,
    signer,
    planDir: section.planDir,
    freezeServices: section.freezeServices,
    agentTimeoutMs: section.agentTimeoutMs,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.log ? { log: deps.log } : {}),
  });
}
