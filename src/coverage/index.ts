import type { Artifact, Item, ScopeOfDestruction, Volume } from '../core/types.ts';
import { latestDrift } from '../core/state.ts';
import { currentArtifacts } from '../gate/current.ts';
import type { RunContext } from '../run/context.ts';
import { candidatesOutside, describeCandidate } from './candidates.ts';
import { captureVolume } from './everything.ts';
import { formatBytes } from './judge.ts';
import { declareScope, everythingOverride, volumeItemId } from './scope.ts';
import { listLocal, listRemote, planVolume } from './volume.ts';

/**
 * The coverage hooks the phases call (src/run/phases.ts, one line each):
 * discoverCoverage at the end of discover, captureEverything at the end of
 * capture and captureEverythingDelta in the final capture, mapCoverage
 * (collect.ts) after both; scanVolume and landVolume (everything.ts) for
 * volume items. Each is idempotent against the journal.
 * Design note: docs/coverage.md.
 */

export { mapCoverage } from './collect.ts';
export { landVolume, scanVolume } from './everything.ts';

function within(rel: string, folder: string): boolean {
  return folder === '.' || rel === folder || rel.startsWith(`${folder}/`);
}

/** One line for the plan and the journal: what the crossing destroys and what is excluded. Pure. */
export function describeScope(scope: ScopeOfDestruction): string {
  const vols = scope.volumes.map((v) => `${v.label} (${v.fate}${v.capture ? '' : ', not mapped'})`).join(', ');
  const ex = scope.exclusions.map((e) => `${e.path}${e.except?.length ? ` except ${e.except.join(', ')}` : ''} (${e.source}${e.by ? `, ${e.by}` : ''}: ${e.reason})`);
  return `coverage: the crossing (${scope.infra}) destroys ${vols}; excluded: ${ex.length ? ex.join('; ') : 'nothing'}`;
}

/**
 * Records the scope of destruction (once per run) and discovers one
 * everything item per volume whose files must be covered, unless an
 * override with a reason turned it off. The item's facts and why explain
 * what it holds beyond the folder items (discovery that looks further).
 */
export async function discoverCoverage(ctx: RunContext): Promise<void> {
  if (ctx.remote && !ctx.remote.plane.coverage) {
    // No volume listing on this OS yet (docs/windows.md): no scope is recorded, so coverage.complete refuses unless overridden.
    note(ctx, 'warn', `coverage: the files of a ${ctx.remote.plane.os} target cannot be listed volume by volume yet, so coverage cannot be shown and the gate refuses (coverage.complete) unless an override with a reason is recorded`);
    return;
  }
  if (!ctx.state().scope) {
    const facts = ctx.remote?.plane.scopeFacts ? await ctx.remote.plane.scopeFacts(ctx) : {};
    const declared = ctx.infra.scopeOfDestruction ? await ctx.infra.scopeOfDestruction({ targetRoot: ctx.runbook.target.root, ...facts }) : undefined;
    if (!declared) {
      note(ctx, 'warn', `coverage: the ${ctx.infra.kind} driver does not say what its crossing destroys, so coverage cannot be shown and the gate refuses (coverage.complete)`);
      return;
    }
    for (const n of declared.notes ?? []) note(ctx, 'warn', `coverage: ${n}`);
    const scope = declareScope({ os: declared.os, volumes: declared.volumes }, ctx.runbook, ctx.infra.kind);
    ctx.record({ type: 'scope.declared', scope });
    note(ctx, 'info', describeScope(scope));
  }
  const scope = ctx.state().scope!;
  for (const v of scope.volumes.filter((x) => x.capture && x.path !== '')) {
    const id = volumeItemId(v.path);
    if (ctx.state().items.some((i) => i.id === id)) continue;
    const off = everythingOverride(ctx.runbook, v.path);
    if (off) {
      note(ctx, 'warn', `coverage: the everything capture of ${v.label} is off by an override of ${off.by} ("${off.reason.trim()}"): files outside the items are not captured, and coverage.complete decides`);
      continue;
    }
    if (ctx.remote && !ctx.remote.plane.everything) {
      // Never silently passed: the gate refuses under coverage.everything until an override with a reason is recorded.
      note(ctx, 'warn', `coverage: the everything capture does not run on a ${ctx.remote.plane.os} target yet (docs/coverage.md), so ${v.label} has none and the gate refuses (coverage.everything) unless an override {rule: coverage.everything, item: ${id}, reason, by} is recorded; coverage.complete still maps every file`);
      continue;
    }
    ctx.record({ type: 'item.discovered', item: await volumeItem(ctx, scope, v) });
  }
}

async function volumeItem(ctx: RunContext, scope: ScopeOfDestruction, v: Volume): Promise<Item> {
  const items = ctx.state().items;
  const plan = planVolume(v.path, scope, items);
  const listing = ctx.remote?.plane.listVolume ? await ctx.remote.plane.listVolume(ctx, v.path, scope, 'discover') : ctx.remote ? await listRemote(ctx.target, ctx.runbook.target.root, v.path, scope) : await listLocal(ctx.localTarget!.resolve('.'), v.path, scope);
  const inScope = listing.files.filter((f) => !plan.leftOut(f.path));
  const folders = items.filter((i) => i.kind === 'folder' && i.discovered).map((i) => i.location);
  const known = (rel: string) => folders.some((f) => within(rel, f));
  const outside = inScope.filter((f) => !known(f.path));
  const cands = candidatesOutside(inScope, known, ctx.now().getTime());
  const bytes = inScope.reduce((n, f) => n + f.size, 0);
  const outBytes = outside.reduce((n, f) => n + f.size, 0);
  const last = inScope.reduce((n, f) => Math.max(n, f.mtimeMs), 0);
  const why = [
    `${inScope.length} files, ${formatBytes(bytes)} on ${v.label} (what the crossing ${v.fate === 'destroyed' ? 'destroys' : 'keeps'}), ${listing.files.length - inScope.length} more left out: excluded, or a database's live files`,
    outside.length
      ? `${outside.length} file(s), ${formatBytes(outBytes)} outside every known folder: held by this capture alone`
      : 'every file lies in a known folder: this capture holds them a second time (stored once)',
    ...cands.slice(0, 5).map((c) => `outside the folders: ${describeCandidate(c)}`),
    'the everything capture: the default for every volume the crossing destroys (off only by an override with a reason)',
  ];
  return {
    id: volumeItemId(v.path),
    kind: 'volume',
    name: v.path === '.' ? `everything under the target root` : `everything on ${v.path}`,
    declared: false,
    discovered: true,
    location: v.path,
    facts: { files: inScope.length, bytes, outsideFiles: outside.length, outsideBytes: outBytes, lastChange: last ? new Date(last).toISOString() : null },
    why,
    methods: ctx.remote ? [...ctx.runbook.methods.folders] : ['file-mirror'],
  };
}

/** The everything capture of every volume item, after the folder captures (so their objects and hashes are reused). */
export async function captureEverything(ctx: RunContext): Promise<void> {
  for (const item of ctx.state().items.filter((i) => i.kind === 'volume' && i.discovered && i.methods.length > 0)) {
    await captureVolume(ctx, item, 'capture');
  }
}

/** After freeze: a delta of every volume item that drifted (only what changed is read and moved). */
export async function captureEverythingDelta(ctx: RunContext): Promise<void> {
  const s = ctx.state();
  const drifted = new Set(latestDrift(s, 'freeze').filter((d) => d.changes.length > 0).map((d) => d.itemId));
  for (const item of s.items.filter((i) => i.kind === 'volume' && drifted.has(i.id))) {
    const current = currentArtifacts(ctx.state().artifacts).filter((a) => a.itemId === item.id && a.phase === 'capture');
    await captureVolume(ctx, item, 'final-capture', (method): Artifact | undefined => current.filter((a) => a.method === method).at(-1));
  }
}

function note(ctx: RunContext, level: 'info' | 'warn', message: string): void {
  if (ctx.state().notes.some((n) => n.message === message)) return;
  ctx.record({ type: 'note', level, message });
}
