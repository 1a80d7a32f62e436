import path from 'node:path';
import { RubiconError, isRubiconError, outOfSpace } from '../core/errors.ts';
import type { DriftChange, Item, ManifestEntry } from '../core/types.ts';
import type { MachineIdentity } from '../machines/identity.ts';
import type { Machine, StepKey } from '../machines/machine.ts';
import { manifestEntriesFromOutput, type FreezeData, type InventoryData, type ManifestData, type ThawData } from '../machines/windows/results.ts';
import { scriptData } from '../machines/windows/scripts.ts';
import { windowsPath } from '../machines/windows/windows-machine.ts';
import { isToolVault, type ToolVault } from '../vaults/vault.ts';
import type { RunContext } from './context.ts';
import type { TargetPlane } from './plane.ts';
import { diffEntries, manifestOf, shipTree } from './remote.ts';

/**
 * The target plane of a Windows Server (openssh-windows, azure-run-command):
 * everything Rubicon reads or changes on the server goes through its
 * PowerShell scripts (src/machines/windows/scripts/) as journaled steps
 * (StepRunner.runScript), and every script's output is checked (sentinel
 * SHA-256 and length, script name, argument digest, exit code) before a
 * byte of it is believed. Design note: docs/windows.md, "Wiring the phases".
 *
 * What runs where:
 * - discover: `inventory` (step `discover/inventory`); folders are the
 *   runbook's declared ones plus the folders the inventory found referenced
 *   by services, tasks, shares, IIS and ODBC, under target.root;
 * - capture: `manifest` builds the SHA-256 manifest on the server, then each
 *   method's vault tool writes exactly those files (the vault's own
 *   `ingest`, through the phase's write grant, as on Linux);
 * - freeze / thaw: `freeze` and `thaw` (the state file on the server keeps
 *   each service's prior state and start mode; thaw restores exactly that);
 * - drift: `manifest` again, compared by path, size, mode and SHA-256;
 * - landing: the vault restores into the item's folder on the rebuilt
 *   server, then `manifest` there is checked against the proven manifest;
 * - identity: the scripts' host record (os) and the MachineGuid (`reg query`).
 *
 * Not here yet (docs/windows.md): the `capture` script (VSS + robocopy into
 * an SMB share) and the `landing` script (shares, tasks, ACLs), databases
 * on Windows (SQL Server), and the coverage hooks (no volume listing).
 */

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const errCode = (e: unknown) => (isRubiconError(e) ? e.code : 'INTERNAL');

function remote(ctx: RunContext): NonNullable<RunContext['remote']> {
  if (!ctx.remote) throw new RubiconError('INTERNAL', 'a Windows phase step on a local target');
  return ctx.remote;
}

function toolVaults(ctx: RunContext, kind?: string): ToolVault[] {
  return ctx.vaults.filter((v): v is ToolVault => isToolVault(v) && (kind === undefined || v.info.kind === kind));
}

const WINDOWS_ROOT = /^([A-Za-z]:|\\\\)/;

/** An item's folder on the server: `rel` ('/'-separated, relative to the target root) under the root, in the root's own path style. Pure. */
export function onWindowsTarget(root: string, rel: string): string {
  if (rel === '.' || rel === '') return root;
  return windowsPath(root, ...rel.split('/'));
}

/**
 * `abs` relative to `root` ('/'-separated), or undefined when it lies
 * outside. Windows paths compare case-insensitively with either slash; a
 * POSIX root (the PowerShell stand-in on Linux) compares exactly. Pure.
 */
export function relativeToRoot(root: string, abs: string): string | undefined {
  if (WINDOWS_ROOT.test(root)) {
    const norm = (p: string) => p.replace(/\//g, '\\').replace(/\\+$/, '');
    const r = norm(root);
    const a = norm(abs);
    if (a.toLowerCase() === r.toLowerCase()) return '.';
    if (!a.toLowerCase().startsWith(`${r.toLowerCase()}\\`)) return undefined;
    return a.slice(r.length + 1).split('\\').filter(Boolean).join('/');
  }
  const rel = path.posix.relative(root, abs);
  if (rel === '') return '.';
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) return undefined;
  return rel;
}

const within = (child: string, parent: string) => parent === '.' || child === parent || child.startsWith(`${parent}/`);

function noteOnce(ctx: RunContext, level: 'info' | 'warn', message: string, itemId?: string): void {
  if (ctx.state().notes.some((n) => n.message === message)) return;
  ctx.record({ type: 'note', level, message, ...(itemId ? { itemId } : {}) });
}

/** The inventory's sections in one line: names and counts only, never values. Pure. */
export function describeInventory(machine: string, inv: InventoryData): string {
  const by: Record<'ok' | 'unavailable' | 'failed', string[]> = { ok: [], unavailable: [], failed: [] };
  for (const [name, sec] of Object.entries(inv.sections)) {
    if (!sec) continue;
    by[sec.status].push(sec.status === 'ok' ? `${name} (${sec.items.length})` : `${name}${sec.error ? ` (${sec.error.code})` : ''}`);
  }
  const parts = [`ok: ${by.ok.join(', ') || 'none'}`];
  if (by.unavailable.length) parts.push(`unavailable: ${by.unavailable.join(', ')}`);
  if (by.failed.length) parts.push(`failed: ${by.failed.join(', ')}`);
  return `inventory of ${machine}: ${parts.join('; ')}; ${inv.referencedFolders.length} referenced folder(s)`;
}

/**
 * Folder items from the runbook's declared folders and the inventory's
 * referenced folders under the root (a folder inside another candidate is
 * held by the outer one). Pure.
 */
export function windowsFolderItems(root: string, declared: readonly string[], exclude: readonly string[], inv: InventoryData): Item[] {
  const refs = new Map<string, { kind: string; name: string; via: string }[]>();
  for (const f of inv.referencedFolders) {
    if (!f.exists) continue;
    const rel = relativeToRoot(root, f.path);
    if (rel === undefined || rel === '.' || exclude.some((x) => within(rel, x))) continue;
    refs.set(rel, [...(refs.get(rel) ?? []), ...f.references]);
  }
  const all = [...new Set([...declared, ...refs.keys()])].sort();
  const outer = all.filter((c) => !all.some((o) => o !== c && within(c, o)));
  return outer.map((folder): Item => {
    const isDeclared = declared.includes(folder);
    const held = [...refs.entries()].filter(([rel]) => within(rel, folder)).flatMap(([, r]) => r);
    const why = [
      ...(isDeclared ? ['declared in the runbook'] : []),
      ...held.slice(0, 5).map((r) => `referenced by ${r.kind} ${r.name} (${r.via})`),
      ...(held.length > 5 ? [`and ${held.length - 5} more references`] : []),
    ];
    return { id: `folder:${folder}`, kind: 'folder', name: folder, declared: isDeclared, discovered: true, location: folder, facts: { references: held.length }, why, methods: [] };
  });
}

/** MachineGuid from `reg query` output (REG_SZ line), lower case, or null. Pure. */
export function parseMachineGuid(stdout: string): string | null {
  const m = /MachineGuid\s+REG_SZ\s+([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})/.exec(stdout);
  return m?.[1]?.toLowerCase() ?? null;
}

/**
 * The manifest of a folder on the server, by the manifest script. Reparse
 * points and special files are named in a note (never followed, never
 * captured, as non-regular files on Linux); an unreadable, locked or
 * changing file fails: a manifest that silently skipped one would prove an
 * incomplete copy.
 */
async function windowsManifest(ctx: RunContext, machine: Machine, key: StepKey, dir: string, exclude: readonly string[], item: Item): Promise<ManifestEntry[]> {
  const r = await ctx.steps.runScript<ManifestData>(machine, key, 'manifest', { root: dir, ...(exclude.length ? { exclude: [...exclude] } : {}) }, `manifest script on ${machine.name}`);
  const { entries, problems } = manifestEntriesFromOutput(r.output);
  const skipped = problems.filter((p) => p.kind === 'reparse' || p.kind === 'special');
  const bad = problems.filter((p) => !(p.kind === 'reparse' || p.kind === 'special'));
  if (skipped.length > 0) {
    noteOnce(ctx, 'warn', `${item.name}: ${skipped.length} entries are reparse points or special files and were not captured (${skipped.slice(0, 5).map((s) => `${s.path}: ${s.kind}`).join(', ')})`, item.id);
  }
  if (bad.length > 0) {
    const what = (p: (typeof bad)[number]) => `${p.path}: ${'problem' in p ? p.problem : p.kind === 'unreadable' ? p.code : p.kind}`;
    throw new RubiconError('CAPTURE_FAILED', `${bad.length} file(s) under ${dir} on ${machine.name} could not be read whole (${bad.slice(0, 5).map(what).join(', ')})`, {
      hint: `freeze the service that holds them (target.services), check that Rubicon's account on ${machine.name} can read them, then resume the run`,
    });
  }
  return entries;
}

export const windowsPlane: TargetPlane = {
  os: 'windows',
  coverage: false,

  async identify(ctx: RunContext, machine: Machine): Promise<MachineIdentity> {
    // A fresh id per call: read-only and cheap, and a recorded answer of the old server must never stand for the rebuilt one.
    const key = { id: `identify/${machine.name}/${ctx.now().getTime()}`, idempotent: true };
    const r = await ctx.steps.runScript<InventoryData>(machine, key, 'inventory', { sections: ['hostsFile'] }, `identity of ${machine.name} (inventory script)`);
    const os = r.output.result.host?.os;
    const reg = await machine.exec({ argv: ['reg', 'query', 'HKLM\\SOFTWARE\\Microsoft\\Cryptography', '/v', 'MachineGuid'] });
    return { machineId: reg.exitCode === 0 ? parseMachineGuid(reg.stdout) : null, osRelease: typeof os === 'string' && os !== '' ? os : null };
  },

  async discover(ctx: RunContext): Promise<{ databases: Item[]; folders: Item[] }> {
    const rb = ctx.runbook;
    const r = await ctx.steps.runScript<InventoryData>(ctx.target, { id: 'discover/inventory', idempotent: true }, 'inventory', {}, `inventory of ${ctx.target.name}`);
    const inv = r.data!;
    noteOnce(ctx, 'info', describeInventory(ctx.target.name, inv));
    const person = Object.entries(inv.sections).flatMap(([name, sec]) =>
      (sec?.items ?? []).filter((i) => (i as { needsPerson?: boolean }).needsPerson === true).map((i) => `${name}: ${String((i as { name?: unknown; subject?: unknown }).name ?? (i as { subject?: unknown }).subject ?? '?')}`),
    );
    if (person.length > 0) {
      noteOnce(ctx, 'warn', `${person.length} thing(s) on ${ctx.target.name} do not survive a rebuild and need a person (non-exportable keys, stored passwords, local-account ACLs): ${person.slice(0, 10).join('; ')}`);
    }
    return { databases: [], folders: windowsFolderItems(rb.target.root, rb.declared.folders, rb.discovery.exclude, inv) };
  },

  async captureFolder(ctx, item, phase, exclude, artifactIdOf, baseOf): Promise<void> {
    const dir = onWindowsTarget(ctx.runbook.target.root, item.location);
    let built: ManifestEntry[] | undefined;
    for (const method of item.methods) {
      const id = artifactIdOf(method);
      if (ctx.state().artifacts.some((a) => a.id === id)) continue;
      ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
      const startedAt = ctx.now().toISOString();
      try {
        const m = remote(ctx).folderMethods.get(method, 'methods.folders');
        if (m.name !== 'restic') {
          throw new RubiconError('CAPTURE_FAILED', `${method} does not run on a Windows target: use restic (robocopy into an SMB share, the capture script's second method, is not wired yet: docs/windows.md)`);
        }
        const vaults = toolVaults(ctx, m.vaultKind);
        if (vaults.length === 0) throw new RubiconError('CAPTURE_FAILED', `${method} writes into ${m.vaultKind} vaults and the runbook lists none`);
        const base = baseOf(method);
        built ??= await windowsManifest(ctx, ctx.target, { id: `${id}/manifest`, idempotent: true }, dir, exclude, item);
        await shipTree(ctx, {
          artifactId: id,
          itemId: item.id,
          method,
          independenceGroup: m.independenceGroup,
          phase,
          srcDir: dir,
          entries: built,
          vaults,
          ...(base ? { base } : {}),
          startedAt,
          tool: `${method} on ${ctx.target.name} (SHA-256 manifest by Rubicon's manifest script there)`,
        });
      } catch (e) {
        if (ctx.signal?.aborted) throw e;
        const full = outOfSpace(e);
        if (full) throw full;
        ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
      }
    }
  },

  async drift(ctx, item, artifact, exclude, stage): Promise<DriftChange[] | undefined> {
    if (item.kind !== 'folder') return undefined;
    const before = await manifestOf(ctx, artifact);
    const dir = onWindowsTarget(ctx.runbook.target.root, item.location);
    const now = await windowsManifest(ctx, ctx.target, { id: `${artifact.id}/drift-${stage}-${ctx.state().resumes}`, idempotent: true }, dir, exclude, item);
    return diffEntries(before.entries, now);
  },

  async landItem(ctx, item, pick): Promise<void> {
    if (item.kind !== 'folder') throw new RubiconError('LANDING_FAILED', `landing ${item.kind} items on a Windows target is not built yet`);
    const target = remote(ctx).rebuiltTarget;
    const s = ctx.state();
    const okVaults = s.copies.filter((c) => c.artifactId === pick.id && c.status === 'ok').map((c) => c.vault);
    const vaults = toolVaults(ctx).filter((v) => (pick.vaults ?? []).includes(v.info.name));
    const vault = [...vaults.filter((v) => okVaults.includes(v.info.name)), ...vaults.filter((v) => !okVaults.includes(v.info.name))][0];
    if (!vault) throw new RubiconError('LANDING_FAILED', `no vault holds ${pick.id}`);
    const manifest = await manifestOf(ctx, pick);
    const dest = onWindowsTarget(ctx.runbook.target.root, item.location);
    const t0 = performance.now();
    const grant = await remote(ctx).grants.acquire(vault, target, 'read');
    // Into the item's own folder, which must be new or empty on the rebuilt server (the vault refuses otherwise, naming it).
    await vault.restoreTo((m, k, c, w, o) => ctx.steps.run(m, k, c, w, o), target, grant, {
      artifactId: pick.id,
      locator: pick.locators?.[vault.info.name] ?? '',
      dest,
      stepId: `${pick.id}/land/${vault.info.name}`,
      srcDir: pick.sourceDir ?? dest,
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: vault.info.name, bytes: pick.bytes, durationMs: Math.round(performance.now() - t0) });
    const landed = await windowsManifest(ctx, target, { id: `${pick.id}/land-verify-${ctx.state().resumes}`, idempotent: true }, dest, [], item);
    const problems = compareLanded(manifest.entries, landed);
    ctx.record({
      type: 'landing.validated',
      itemId: item.id,
      artifactId: pick.id,
      outcome: problems.length === 0 ? 'passed' : 'failed',
      checks: [
        {
          name: 'files-hash',
          status: problems.length === 0 ? 'passed' : 'failed',
          detail: problems.length === 0 ? `${manifest.entries.length} files match the proven manifest (hashed on ${target.name} by the manifest script)` : problems.slice(0, 10).join('; '),
        },
      ],
    });
  },

  async freeze(ctx, services): Promise<void> {
    const statePath = freezeStatePath(ctx);
    // The script writes its state file (each service's prior state and start mode) before it touches one; a re-run reads it back.
    const r = await ctx.steps.runScript<FreezeData>(
      ctx.target,
      { id: `freeze-${ctx.state().resumes}`, idempotent: true },
      'freeze',
      { services: [...services], statePath, disable: true },
      `freeze of ${services.join(', ')} on ${ctx.target.name} (freeze script)`,
    );
    if (!ctx.state().stoppedServices) {
      ctx.record({ type: 'services.stopped', services: r.data!.services.map((x) => ({ name: x.name, active: x.priorState, enabled: x.priorStartMode })) });
    }
  },

  async thaw(ctx): Promise<void> {
    const r = await ctx.steps.runScript<ThawData>(ctx.target, { id: `thaw-${ctx.state().resumes}`, idempotent: true }, 'thaw', { statePath: freezeStatePath(ctx) }, `thaw on ${ctx.target.name} (thaw script)`, { allowError: true });
    const result = r.output.result;
    // Nothing was frozen (the run stopped before the freeze wrote its state): nothing to restore.
    if (!result.ok && result.error.code === 'STATE_NOT_FOUND') return;
    scriptData(r.output);
  },
};

function freezeStatePath(ctx: RunContext): string {
  return windowsPath(ctx.runbook.target.workDir, `freeze-${ctx.runId}.json`);
}

/** Every proven entry present on the rebuilt server with its size and SHA-256 (extra files are the new OS's). Pure. */
export function compareLanded(proven: readonly ManifestEntry[], landed: readonly ManifestEntry[]): string[] {
  const have = new Map(landed.map((e) => [e.path, e] as const));
  const out: string[] = [];
  for (const e of proven) {
    const f = have.get(e.path);
    if (!f) out.push(`${e.path}: missing`);
    else if (f.size !== e.size) out.push(`${e.path}: size`);
    else if (f.sha256 !== e.sha256) out.push(`${e.path}: hash`);
  }
  return out;
}
