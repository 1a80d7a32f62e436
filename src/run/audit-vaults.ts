import { createVaults } from '../compose/root.ts';
import type { JournalRecord } from '../core/events.ts';
import type { Runbook } from '../runbook/load.ts';
import type { Verifier } from '../trust/keys.ts';
import { compareHeads, type HeadCheck } from './heads.ts';

/**
 * `rubicon audit`'s second half: the journal heads the run left in its
 * vaults (src/run/heads.ts), read from the vaults the run's own runbook copy
 * names, compared with the journal. Reads only; opens no target, no proving
 * ground. A vault that cannot be read is a finding (`unreachable`): an
 * audit that could not look is not a pass.
 */
export interface VaultAudit extends HeadCheck {
  unreachable: { vault: string; reason: string }[];
}

export async function auditVaultHeads(o: {
  runId: string;
  records: readonly JournalRecord[];
  runbook: Runbook;
  verifier: Verifier | undefined;
  workDir: string;
}): Promise<VaultAudit> {
  const unreachable: VaultAudit['unreachable'] = [];
  const found: { vault: string; where: string; data: Uint8Array }[] = [];
  let vaults;
  try {
    vaults = await createVaults(o.runbook, { runId: o.runId, workDir: o.workDir });
  } catch (e) {
    return { agreed: [], findings: [], unreachable: [{ vault: '(all)', reason: firstLine(e) }] };
  }
  await Promise.all(
    vaults.map(async (v) => {
      if (!v.listRunDocuments) return;
      try {
        for (const d of await v.listRunDocuments(o.runId)) if (d.name.startsWith('head-')) found.push({ vault: v.info.name, where: d.where, data: d.data });
      } catch (e) {
        unreachable.push({ vault: v.info.name, reason: firstLine(e) });
      }
    }),
  );
  found.sort((a, b) => (a.vault !== b.vault ? (a.vault < b.vault ? -1 : 1) : a.where < b.where ? -1 : 1));
  const check = compareHeads(o.runId, o.records, found, o.verifier);
  // A vault we could not read cannot also be said to have lost its head.
  const findings = check.findings.filter((f) => !(f.problem === 'missing' && unreachable.some((u) => u.vault === f.vault)));
  return { agreed: check.agreed, findings, unreachable: unreachable.sort((a, b) => (a.vault < b.vault ? -1 : 1)) };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);
}
