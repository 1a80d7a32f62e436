import type { Artifact, Item } from '../core/types.ts';
import type { ArtifactIndexEntry } from '../vaults/vault.ts';
import type { RunContext } from './context.ts';
import { proveArtifacts } from './phases.ts';

/**
 * `rubicon verify`: the scheduled, monitored form. Reads the vaults' own
 * artifact indexes (not the journal of the run that made them), takes the
 * newest artifact per (item, method) and proves each again on a fresh
 * proving ground. Read-only towards the target: it is never touched.
 */
export async function proveVaultArtifacts(ctx: RunContext): Promise<void> {
  const newest = new Map<string, ArtifactIndexEntry>();
  for (const v of ctx.vaults) {
    for (const e of await v.listArtifacts()) {
      const key = `${e.itemId}\u0000${e.method}`;
      const have = newest.get(key);
      if (!have || have.capturedAt < e.capturedAt) newest.set(key, e);
    }
  }
  const known = new Set(ctx.state().items.map((i) => i.id));
  const artifacts: Artifact[] = [];
  for (const e of [...newest.values()].sort((a, b) => a.itemId.localeCompare(b.itemId) || a.method.localeCompare(b.method))) {
    const [kind, ...rest] = e.itemId.split(':');
    const engine = kind === 'database' ? rest[0] : undefined;
    if (!known.has(e.itemId)) {
      const item: Item = {
        id: e.itemId,
        kind: kind === 'database' ? 'database' : 'folder',
        name: kind === 'database' ? rest.slice(1).join(':') : rest.join(':'),
        declared: false,
        discovered: true,
        engine,
        location: kind === 'database' ? '' : rest.join(':'),
        facts: { source: 'vault index' },
        why: ['found in the vaults by `rubicon verify`'],
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
      provenance: { method: e.method, tool: 'from vault index', host: '', startedAt: e.capturedAt, finishedAt: e.capturedAt },
    };
    if (!ctx.state().artifacts.some((a) => a.id === artifact.id)) ctx.record({ type: 'artifact.captured', artifact });
    artifacts.push(artifact);
  }
  await proveArtifacts(ctx, artifacts);
}
