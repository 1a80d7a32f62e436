/**
 * Names shared by the Pulumi program and the driver that reads its plans.
 * Pure and dependency-free, so the driver need not load azure-native.
 */

export const TARGET_SERVER_TYPE = 'rubicon:azure:TargetServer';
export const PROVING_GROUND_TYPE = 'rubicon:azure:ProvingGround';
export const VAULT_TYPE = 'rubicon:azure:Vault';
export const VM_TYPE = 'azure-native:compute:VirtualMachine';

/** Logical name of the target's VM resource (children are named from the parent). */
export function targetVmLogicalName(targetName: string): string {
  return `${targetName}Vm`;
}

/** Name of the proving-ground component in a stack (one proving ground per stack). */
export function provingGroundName(stack: string): string {
  return `pg-${stack}`;
}
