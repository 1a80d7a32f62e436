import path from 'node:path';
import { EXIT, RubiconError } from '../core/errors.ts';
import type { Host } from '../hosts/host.ts';
import { openStack } from '../infra/azure/automation.ts';
import { PulumiAzureDriver, reapPortOver } from '../infra/azure/driver.ts';
import type { MachinePort } from '../infra/azure/ports.ts';
import { expiryVerdicts, reap } from '../infra/azure/reap.ts';

/**
 * `rubicon reap --stack NAME [--stack NAME ...] [--dry-run]`: destroys the
 * proving grounds of those stacks that are past their TTL. Reaping reads
 * stack outputs and runs `pulumi up` with the proving ground disabled; it
 * needs the Pulumi CLI, never the machine operations below.
 */
const noMachines: MachinePort = {
  disksOf: () => unavailable(),
  snapshotDisk: () => unavailable(),
  deleteSnapshot: () => unavailable(),
  waitForVmAgent: () => unavailable(),
  hostFor: (): Host => {
    throw notImplemented();
  },
};

function notImplemented(): RubiconError {
  return new RubiconError('INFRA_FAILED', 'Azure machine operations (snapshots, VM agent, Run Command) are not implemented yet', {
    hint: 'rubicon reap does not need them; the crossing on Azure does (see docs/infra.md)',
  });
}
async function unavailable(): Promise<never> {
  throw notImplemented();
}

export async function reapCommand(stacks: string[], options: { dryRun: boolean; json: boolean; workDir: string }): Promise<number> {
  if (stacks.length === 0) {
    throw new RubiconError('ARGUMENTS_INVALID', 'rubicon reap needs at least one --stack NAME', { hint: 'e.g. rubicon reap --stack staging --stack prod' });
  }
  const drivers: PulumiAzureDriver[] = [];
  for (const stackName of stacks) {
    const stack = await openStack({ workDir: options.workDir, stackName });
    drivers.push(new PulumiAzureDriver({ stack, machines: noMachines, planDir: path.join(options.workDir, '.rubicon', 'plans') }));
  }
  const port = reapPortOver(drivers);
  const now = new Date();
  if (options.dryRun) {
    const verdicts = expiryVerdicts(await port.listProvingGrounds(), now);
    process.stdout.write(options.json ? JSON.stringify({ verdicts }) + '\n' : verdicts.map((v) => `${v.expired ? 'expired' : 'kept   '} ${v.name}`).join('\n') + '\n');
    return EXIT.ok;
  }
  const result = await reap(port, now);
  if (options.json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    for (const d of result.destroyed) process.stdout.write(`destroyed ${d}\n`);
    for (const k of result.kept) process.stdout.write(`kept      ${k.name}\n`);
    for (const f of result.failed) process.stdout.write(`FAILED    ${f.name}: ${f.message}\n`);
  }
  return result.failed.length > 0 ? EXIT.failure : EXIT.ok;
}
