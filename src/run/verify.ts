import type { Artifact, Item } from '../core/types.ts';
import type { ArtifactIndexEntry } from '../vaults/vault.ts';
import type { RunContext } from './context.ts';
import { proveArtifacts } from './phases.ts';
import { indexEntrySigned } from '../trust/index-entry.ts';
import { verifierFrom } from '../trust/keys.ts';

/**
 * `rubicon verify`: the scheduled, monitored form. Reads the vaults' own
 * artifact indexes (not the journal of the run that made them), takes the
 * newest artifact per (item, method) and proves each again on a fresh
 * proving ground. Read-only towards the target: it is never touched.
 */
export async function proveVaultArtifacts(ctx: RunContext): Promise<void> {
  // An index is evidence too: every entry must be signed by this Rubicon's key
  // and agree with the other vaults; a bad one is named (vault and file) and
  // left out, and verify goes on with the rest.
  const verifier = ctx.signer ? verifierFrom(ctx.signer.publicKeyPem) : undefined;
  const problems: string[] = [];
  const byArtifact = new Map<string, { entry: ArtifactIndexEntry; vault: string }[]>();
  for (const v of ctx.vaults) {
    let entries: ArtifactIndexEntry[];
    try {
      entries = await v.listArtifacts({ onBad: (file, reason) => problems.push(`vault ${v.info.name}: index file ${file} cannot be read (${reason})`) });
    } catch (e) {
      problems.push(`vault ${v.info.name}: its index cannot be listed (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    for (const e of entries) {
      if (verifier && !indexEntrySigned(e, verifier)) {
        problems.push(`vault ${v.info.name}: the index entry of ${e.artifactId} is not signed by this Rubicon's key (${e.sig ? 'its signature does not match its content' : 'it carries no signature'}): not trusted`);
        continue;
      }
      byArtifact.set(e.artifactId, [...(byArtifact.get(e.artifactId) ?? []), { entry: e, vault: v.info.name }]);
    }
  }
  const newest = new Map<string, ArtifactIndexEntry>();
  // Where each artifact is recorded: the vaults whose index holds a trusted
  // entry for it. Its copy is graded there only (Artifact.vaults): a copy
  // never meant for a vault (a BACKUP TO URL artifact lives in its
  // azure-blob vault alone) is not "missing" elsewhere, while a copy an
  // index records and whose objects are gone still is. (A vault that lost
  // the index entry too is not seen from the vaults alone; the run's
  // journal and report name where each copy was made.)
  const recordedIn = new Map<string, string[]>();
  for (const [id, list] of byArtifact) {
    const hashes = new Set(list.map((x) => x.entry.manifestHash));
    if (hashes.size > 1) {
      problems.push(`the vaults disagree about ${id}: ${list.map((x) => `${x.vault} names manifest ${x.entry.manifestHash.slice(0, 12)}`).join(', ')}`);
      continue;
    }
    const e = list[0]!.entry;
    recordedIn.set(id, [...new Set(list.map((x) => x.vault))]);
    const key = `${e.itemId}\u0000${e.method}`;
    const have = newest.get(key);
    if (!have || have.capturedAt < e.capturedAt) newest.set(key, e);
  }
  for (const p of problems) ctx.record({ type: 'note', level: 'error', message: `verify: ${p}` });
  const known = new Set(ctx.state().items.map((i) => i.id));
  const artifacts: Artifact[] = [];
  for (const e of [...newest.values()].sort((a, b) => a.itemId.localeCompare(b.itemId) || a.method.localeCompare(b.method))) {
    const [kind, ...rest] = e.itemId.split(':');
    const engine = kind === 'database' ? rest[0] : undefined;
    if (!known.has(e.itemId)) {
      const item: Item = {
        id: e.itemId,
        // The item as the vault index names it (`volume:.` is the everything capture, not a folder).
        kind: kind === 'database' ? 'database' : kind === 'volume' ? 'volume' : 'folder',
        name: kind === 'database' ? rest.slice(1).join(':') : rest.join(':'),
        declared: false,
        discovered: true,
        engine,
        location: kind === 'database' ? '' : rest.join(':'),
        facts: { source: 'vault index' },
        why: [`last captured ${e.capturedAt} by run ${e.runId}`],
        methods: [],
      };
      ctx.record({ type: 'item.discovered', item });
      known.add(e.itemId);
    }
    const artifact: Artifact = {
      id: e.artifactId,
      runId: e.runId,
      itemId: e.itemId,
      method: e.method,
      independenceGroup: e.independenceGroup ?? e.method,
      phase: 'capture',
      origin: e.origin ?? 'rubicon',
      manifestHash: e.manifestHash,
      fileCount: 0,
      bytes: 0,
      ...(e.sourceFingerprint ? { sourceFingerprint: e.sourceFingerprint } : {}),
      vaults: recordedIn.get(e.artifactId) ?? [],
      provenance: { method: e.method, tool: 'from vault index', host: '', startedAt: e.capturedAt, finishedAt: e.capturedAt },
    };
    if (!ctx.state().artifacts.some((a) => a.id === artifact.id)) ctx.record({ type: 'artifact.captured', artifact });
    artifacts.push(artifact);
  }
  await proveArtifacts(ctx, artifacts);
}
