import { describe, expect, it } from 'vitest';
import { driverRebuildProblems } from '../../src/run/phases.ts';

/**
 * After a driver's crossing (pulumi-azure), landing first checks that the
 * target's transport reaches the machine the crossing made (src/run/phases.ts
 * verifyRebuilt). The pure rule, as a table; the end-to-end case (Run
 * Command still reaching the old VM) is test/e2e/azure-windows.test.ts.
 */

const VM = '/subscriptions/s/resourceGroups/rg-ehr/providers/Microsoft.Compute/virtualMachines/ehr-prd-01';
const OLD = { resourceId: VM, uniqueId: '7D0E0C61-1C4B-4F7E-9A53-000000000001' };
const NEW = { resourceId: VM, uniqueId: '2b4f9e20-8d1a-4c55-b0e3-000000000002' };
const OTHER = { resourceId: VM.replace('ehr-prd-01', 'ehr-prd-02'), uniqueId: '11111111-2222-4333-8444-555555555555' };

describe('driverRebuildProblems: is the machine the transport reaches the one the crossing made?', () => {
  const cases: { name: string; before: Parameters<typeof driverRebuildProblems>[0]['before']; made: typeof NEW | undefined; now: Parameters<typeof driverRebuildProblems>[0]['now']; refused: RegExp | null }[] = [
    { name: 'the new VM: lands', before: { machineId: 'g1', platform: OLD }, made: NEW, now: { machineId: 'g2', platform: NEW }, refused: null },
    { name: 'the new VM with the old MachineGuid (Sysprep keeps it): lands, the platform id decides', before: { machineId: 'g1', platform: OLD }, made: NEW, now: { machineId: 'g1', platform: NEW }, refused: null },
    { name: 'still the old VM (vmId compared without case)', before: { machineId: 'g1', platform: OLD }, made: NEW, now: { machineId: 'g2', platform: { ...OLD, uniqueId: OLD.uniqueId.toLowerCase() } }, refused: /still reaches the old VM/ },
    { name: 'another VM than the one the crossing made', before: { machineId: 'g1', platform: OLD }, made: NEW, now: { machineId: 'g3', platform: OTHER }, refused: /not the VM the crossing made/ },
    { name: 'no platform identity, the machine id changed: lands', before: { machineId: 'g1' }, made: undefined, now: { machineId: 'g2' }, refused: null },
    { name: 'no platform identity, the old machine id', before: { machineId: 'g1' }, made: undefined, now: { machineId: 'g1' }, refused: /machine id is the old server's/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problems = driverRebuildProblems({ before: c.before, made: c.made, now: c.now });
      if (c.refused) expect(problems.join('; ')).toMatch(c.refused);
      else expect(problems).toEqual([]);
    });
  }
});
