import { readCurrentTarget } from './current.ts';
import { createDeleteGuardHook, hooksSupported } from './hooks.ts';
import { readInfraConfig, readSecrets, rubiconInfra, type InfraOutputs } from './program.ts';

/**
 * Pulumi entry point (Pulumi.yaml `main`). Pulumi's Node.js language host
 * imports this ES module and runs its default export; the returned object
 * becomes the stack outputs. Importing it has no side effects.
 *
 * It exports its default and NOTHING else: the loader
 * (@pulumi/pulumi cmd/run/run.ts, `runProgram`) throws "expected entrypoint
 * module to have either a default export or named exports but not both".
 * test/infra/loader.test.ts loads it through that very loader.
 */
export default async function main(): Promise<InfraOutputs> {
  const cfg = readInfraConfig();
  return rubiconInfra(cfg, readSecrets(cfg), {
    currentTarget: readCurrentTarget,
    now: () => new Date(),
    ...(hooksSupported() ? { deleteGuard: createDeleteGuardHook } : {}),
  });
}
