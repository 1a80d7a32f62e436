import * as pulumi from '@pulumi/pulumi';
import { MockMonitor } from '@pulumi/pulumi/runtime/mocks.js';
import { deleteVerdict, type GuardDecision } from './guard.ts';

/**
 * The engine-side stop: a `beforeDelete` resource hook on the target VM and
 * on every data disk. The engine runs it before any delete step of those
 * resources (a `delete`, or the `delete-replaced` of a replace), whatever
 * caused it: a rename, a path parameter, `pulumi up --ignore-protect` after
 * `pulumi state unprotect`. The hook refuses unless the guard found a valid
 * signed permit (./guard.ts `deleteVerdict`); a refused before-hook fails the
 * step before the provider is called.
 *
 * The hook is stored in the stack state by name. `pulumi destroy` without
 * `--run-program` does not run the program, so the hook is not registered and
 * the engine fails the delete ("hook … was not registered": pulumi/pulumi
 * pkg/resource/deploy/deployment.go, RunHooks); with `--run-program` the
 * program runs and the hook refuses. Behind both stands the ARM lock.
 */

export const DELETE_GUARD_HOOK = 'rubicon-target-delete-guard';

/** Pure: the hook's callback for this deployment's decision. Throws to refuse. */
export function deleteGuardCallback(decision: GuardDecision, target: string): (args: { type: string; name: string; urn: string }) => void {
  return (args) => {
    const v = deleteVerdict(decision, target, args);
    if (!v.ok) throw new Error(v.message);
  };
}

/**
 * Can hooks be registered here? Not under Pulumi's mock monitor (unit tests:
 * it cannot register hooks and the registration never settles). Under a real
 * engine always.
 */
export function hooksSupported(): boolean {
  return !(pulumi.runtime.getMonitor() instanceof MockMonitor);
}

/** The named hook for this deployment. Effect: registers a callback with the engine. */
export function createDeleteGuardHook(decision: GuardDecision, target: string): pulumi.ResourceHook {
  return new pulumi.ResourceHook(DELETE_GUARD_HOOK, deleteGuardCallback(decision, target));
}
