/**
 * Names shared by the Pulumi program and the driver that reads its plans.
 * Pure and dependency-free, so the driver need not load azure-native.
 */

export const TARGET_SERVER_TYPE = 'rubicon:azure:TargetServer';
export const PROVING_GROUND_TYPE = 'rubicon:azure:ProvingGround';
export const VAULT_TYPE = 'rubicon:azure:Vault';
export const VM_TYPE = 'azure-native:compute:VirtualMachine';

/**
 * Logical (URN) name of the TargetServer component. Stable: it does not
 * follow rubicon:target.name, so renaming the target changes no URN (the
 * rename is then a replace of the VM, which the guard refuses) and Pulumi
 * never plans a second VM beside the first. Stacks deployed when URNs
 * followed the target's name are moved over by aliases (components/target-server.ts).
 */
export const TARGET_COMPONENT_NAME = 'target';

/** Logical name of a child of the target component: `targetVm`, `targetNic`, `targetDisk-sqldata`. */
export function targetChildName(component: string, suffix: string): string {
  return `${component}${suffix}`;
}

/** Logical name of the target's VM resource. */
export function targetVmLogicalName(_targetName?: string): string {
  return targetChildName(TARGET_COMPONENT_NAME, 'Vm');
}

/** Name of the proving-ground component in a stack (one proving ground per stack). */
export function provingGroundName(stack: string): string {
  return `pg-${stack}`;
}
