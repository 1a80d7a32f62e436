import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { RubiconError, isRubiconError, outOfSpace } from '../core/errors.ts';
import type { Artifact, DriftChange, Item, ManifestEntry } from '../core/types.ts';
import type { MachineIdentity } from '../machines/identity.ts';
import type { Machine, StepKey } from '../machines/machine.ts';
import { listWindowsVolume } from '../coverage/windows.ts';
import { manifestEntriesFromOutput, type CaptureData, type FreezeData, type InventoryData, type LandingData, type ManifestData, type ThawData } from '../machines/windows/results.ts';
import { parseScriptOutput, scriptData } from '../machines/windows/scripts.ts';
import type { ResticVault } from '../vaults/restic.ts';
import type { SftpVault } from '../vaults/sftp.ts';
import { windowsPath } from '../machines/windows/windows-machine.ts';
import { isToolVault, type Grant, type ToolVault } from '../vaults/vault.ts';
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
 * - capture: `manifest` builds the SHA-256 manifest on the server, then per
 *   restic vault the `capture` script (a VSS shadow, restic with its own VSS
 *   snapshot through the phase's write grant, whose repository and password
 *   are files on the server, and icacls /save); restic's summary is checked
 *   against the manifest and the ACL file is kept as a vault document whose
 *   hash the artifact records; method robocopy: per sftp vault with an smb
 *   section the same script mirrors the folder from its shadow into the
 *   vault's share (mapped with the password from the grant's folder), then
 *   the vault host hashes the tree against the manifest and renames it into
 *   place (robocopyInto);
 * - freeze / thaw: `freeze` and `thaw` (the state file on the server keeps
 *   each service's prior state and start mode; thaw restores exactly that);
 * - drift: `manifest` again, compared by path, size, mode and SHA-256;
 * - landing: the `landing` script restores the snapshot into the item's
 *   folder on the rebuilt server (restic through a read grant, or robocopy
 *   from the sftp vault's share for a robocopy artifact), its ACLs
 *   (icacls /restore of the saved file), the old server's shares and tasks
 *   that belong to the folder, and lists what needs a person (notes); then
 *   `manifest` there is checked against the proven manifest;
 * - identity: the scripts' host record (os) and the MachineGuid (`reg query`).
 *
 * - coverage: the scope from the inventory's volumes, each volume listed by
 *   `manifest` with hash: false (src/coverage/windows.ts).
 *
 * SQL Server is not the plane's: its engine reaches the server's SQL Server
 * over TDS, called by the phases beside the plane (src/run/network-engines.ts).
 *
 * Not here yet (docs/windows.md): SQL Server's BACKUP TO DISK through the
 * capture script, and the everything capture (coverage.everything refuses
 * unless overridden).
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
  // The scope and the map (the manifest script, stat only: src/coverage/windows.ts); the everything capture is not built here yet.
  coverage: true,
  everything: false,
  listVolume: listWindowsVolume,

  async scopeFacts(ctx) {
    const sec = inventoryOf(ctx)?.sections.volumes;
    if (sec?.status === 'ok') return { windowsVolumes: sec.items.map((v) => ({ driveLetter: v.driveLetter, driveType: v.driveType, fileSystem: v.fileSystem, label: v.label })) };
    noteOnce(ctx, 'warn', `coverage: the inventory of ${ctx.target.name} has no list of volumes (${sec ? `${sec.status}${sec.error ? `: ${sec.error.code}` : ''}` : 'not read'}), so the scope holds only what infra.destroys names, or else the target root`);
    return {};
  },

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
        if (m.name !== 'restic' && m.name !== 'robocopy') {
          throw new RubiconError('CAPTURE_FAILED', `${method} does not run on a Windows target: use restic and robocopy (docs/windows.md)`);
        }
        const vaults = m.name === 'robocopy' ? toolVaults(ctx, 'sftp').filter(isSmbVault) : toolVaults(ctx, m.vaultKind);
        if (vaults.length === 0) throw new RubiconError('CAPTURE_FAILED', m.name === 'robocopy' ? `${method} writes into sftp vaults with an smb section and the runbook lists none` : `${method} writes into ${m.vaultKind} vaults and the runbook lists none`);
        const base = baseOf(method);
        built ??= await windowsManifest(ctx, ctx.target, { id: `${id}/manifest`, idempotent: true }, dir, exclude, item);
        const entries = built;
        // restic records the folder as /D/EHR/X; a robocopy tree holds the folder's contents at its root, named by the folder itself.
        const srcDir = m.name === 'robocopy' ? dir : resticPathOf(dir);
        let acl: Artifact['acl'];
        await shipTree(ctx, {
          artifactId: id,
          itemId: item.id,
          method,
          independenceGroup: m.independenceGroup,
          phase,
          srcDir,
          entries,
          vaults,
          ...(base ? { base } : {}),
          startedAt,
          tool: `${method} on ${ctx.target.name} by Rubicon's capture script (VSS shadow, icacls /save; SHA-256 manifest by the manifest script there${m.name === 'robocopy' ? ', checked by sha256sum on the vault host' : ''})`,
          ingest: async (v, grant, b) => {
            const r =
              m.name === 'robocopy'
                ? await robocopyInto(ctx, v as SmbVault, grant, { artifactId: id, dir, entries })
                : await captureInto(ctx, v, grant, { artifactId: id, dir, srcDir, entries, exclude, ...(b ? { base: b } : {}) });
            if (acl && acl.sha256 !== r.acl.sha256) throw new RubiconError('CAPTURE_FAILED', `the ACLs of ${dir} on ${ctx.target.name} changed between two vaults' captures (icacls /save); capture the item again with the application frozen`);
            acl = r.acl;
            return { locator: r.locator };
          },
          acl: () => acl,
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
    if (!isScriptRestic(vault) && !isSmbVault(vault)) throw new RubiconError('LANDING_FAILED', `vault '${vault.info.name}' (${vault.info.kind}) cannot land onto a Windows target: only restic vaults and sftp vaults with an smb section restore through the landing script`);
    const manifest = await manifestOf(ctx, pick);
    const dest = onWindowsTarget(ctx.runbook.target.root, item.location);
    const workDir = ctx.runbook.target.workDir;
    const key = scriptKey('l', pick.id);
    const t0 = performance.now();
    // The saved ACLs: a document in the vaults (read() re-hashes it), written to the rebuilt server for icacls /restore.
    let aclFile: string | undefined;
    if (pick.acl) {
      const bytes = await readDocument(ctx, pick, pick.acl.sha256);
      aclFile = windowsPath(workDir, 'landing', `${key}.acl`);
      await target.writeSmall(aclFile, bytes);
    }
    const grant = await remote(ctx).grants.acquire(vault, target, 'read');
    const landStep = `${pick.id}/land/${vault.info.name}`;
    const inv = inventoryOf(ctx);
    const shares = (inv?.sections.shares?.items ?? []).filter((x) => x.path !== null && relativeToRoot(dest, x.path) !== undefined);
    const tasks = (inv?.sections.scheduledTasks?.items ?? []).filter((t) => t.actions.some((a) => [a.execute, a.workingDirectory].some((p) => p !== null && relativeToRoot(dest, p.replace(/^"|"$/g, '')) !== undefined)));
    const args = {
      workDir: windowsPath(workDir, 'landing'),
      folders: [
        isScriptRestic(vault)
          ? { key, destination: dest, restic: vault.scriptRestoreArgs(grant, target, { locator: pick.locators?.[vault.info.name] ?? '', srcDir: pick.sourceDir ?? resticPathOf(dest) }), ...(aclFile ? { aclFile } : {}) }
          : robocopyLandingFolder(vault, { locator: pick.locators?.[vault.info.name] ?? '', destination: dest, passwordFile: await smbPasswordFile(ctx, target, vault, grant, landStep), ...(aclFile ? { aclFile } : {}) }),
      ],
      shares: shares.map((x) => ({ name: x.name, path: x.path, ...(x.description ? { description: x.description } : {}), access: x.access })),
      scheduledTasks: tasks.map((t) => ({ path: t.path, name: t.name, xml: t.xml })),
      services: ctx.runbook.target.services.map((name) => ({ name })),
    };
    // Into the item's own folder, which must be new or empty on the rebuilt server (the script refuses otherwise, naming it).
    const r = await ctx.steps.runScript<LandingData>(target, { id: landStep, idempotent: true }, 'landing', args, `landing script on ${target.name} (${isScriptRestic(vault) ? 'restic restore from vault' : 'robocopy from the share of vault'} ${vault.info.name}, icacls /restore, shares, tasks)`, { allowError: true });
    const result = r.output.result;
    let data: LandingData;
    if (result.ok) data = result.data as LandingData;
    else if (result.error.code === 'LANDING_INCOMPLETE') data = result.error.details as unknown as LandingData;
    else if (result.error.code === 'DESTINATION_NOT_EMPTY') throw new RubiconError('PRECONDITION_FAILED', `cannot land ${pick.id} into ${dest} on ${target.name}: the folder is not empty`, { hint: 'land into a new or empty folder (the rebuilt server must not hold the application\'s data yet)' });
    else throw new RubiconError('LANDING_FAILED', `the landing script on ${target.name} failed for ${dest}: ${result.error.code}: ${result.error.message}`);
    const manual = surfaceManualSteps(ctx, item, target.name, data);
    const f = data.folders[0];
    if (f?.robocopy?.failed) {
      const named = f.robocopy.errors.slice(0, 5).map((e) => `${e.path ?? '?'} (Windows error ${e.code})`);
      throw new RubiconError('LANDING_FAILED', `robocopy of ${pick.id} from vault ${vault.info.name} onto ${target.name} failed (exit ${f.robocopy.exitCode}: ${f.robocopy.bits.join(', ')})${named.length ? `: ${named.join('; ')}` : ''}`, {
        hint: `read robocopy's log ${f.robocopy.logPath} on ${target.name}, fix the cause, then resume (rubicon confirm)`,
      });
    }
    if (!f || (f.restic && f.restic.failed)) {
      throw new RubiconError('LANDING_FAILED', `restic restore of ${pick.id} onto ${target.name} failed (exit ${f?.restic?.exitCode ?? '?'}${f?.restic?.errorLines ? `, ${f.restic.errorLines} file(s) not written` : ''}${f?.restic?.exitCode === 92 ? ': the snapshot has no such folder' : ''})`, { hint: `read the landing step's log on this machine, fix the cause, then resume (rubicon confirm)` });
    }
    ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: vault.info.name, bytes: pick.bytes, durationMs: Math.round(performance.now() - t0) });
    const landed = await windowsManifest(ctx, target, { id: `${pick.id}/land-verify-${ctx.state().resumes}`, idempotent: true }, dest, [], item);
    const problems = compareLanded(manifest.entries, landed);
    const aclCheck = landedAclCheck(pick, f);
    ctx.record({
      type: 'landing.validated',
      itemId: item.id,
      artifactId: pick.id,
      outcome: problems.length === 0 && aclCheck.status !== 'failed' ? 'passed' : 'failed',
      checks: [
        {
          name: 'files-hash',
          status: problems.length === 0 ? 'passed' : 'failed',
          detail: problems.length === 0 ? `${manifest.entries.length} files match the proven manifest (hashed on ${target.name} by the manifest script)` : problems.slice(0, 10).join('; '),
        },
        aclCheck,
        { name: 'manual-steps', status: manual === 0 ? 'passed' : 'skipped', detail: manual === 0 ? 'the landing script left nothing for a person' : `${manual} step(s) for a person before the application starts (see the notes)` },
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

/** A Windows folder as restic records it in a snapshot: D:\\EHR\\X is /D/EHR/X; a POSIX path (the stand-in) is itself. Pure. */
export function resticPathOf(dir: string): string {
  const m = /^([A-Za-z]):[\\/]*(.*)$/.exec(dir);
  if (!m) return dir.startsWith('\\\\') ? `/${dir.slice(2).replace(/\\/g, '/')}`.replace(/\/+$/, '') : dir;
  const rest = m[2]!.replace(/\\/g, '/').replace(/\/+$/, '');
  return rest === '' ? `/${m[1]!.toUpperCase()}` : `/${m[1]!.toUpperCase()}/${rest}`;
}

/** A script key ([A-Za-z0-9._-], at most 100) for an artifact: names the shadow link, ACL and done files on the server. Pure. */
export function scriptKey(prefix: string, ...parts: string[]): string {
  return `${prefix}-${createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 24)}`;
}

/** A restic vault that can hand its commands to the Windows scripts. */
type ScriptRestic = ToolVault & Pick<ResticVault, 'scriptBackupArgs' | 'scriptRestoreArgs' | 'adoptBackup'>;
function isScriptRestic(v: ToolVault): v is ScriptRestic {
  const r = v as Partial<ScriptRestic>;
  return typeof r.scriptBackupArgs === 'function' && typeof r.scriptRestoreArgs === 'function' && typeof r.adoptBackup === 'function';
}

/**
 * One vault's copy of a folder by the capture script on the target: a VSS
 * shadow of the volume (removed afterwards), restic backing up the folder
 * with its own VSS snapshot (--use-fs-snapshot) through the grant (the
 * repository and password are the grant's files on the server), and the
 * folder's ACLs saved with icacls /save. The script's result is checked
 * (sentinel by runScript), restic's summary against the manifest
 * (adoptBackup), and the ACL file read back, hashed, compared with the
 * script's own hash and stored as a document in the same vault.
 */
async function captureInto(
  ctx: RunContext,
  v: ToolVault,
  grant: Grant,
  o: { artifactId: string; dir: string; srcDir: string; entries: readonly ManifestEntry[]; exclude: readonly string[]; base?: { artifactId: string; locator: string } },
): Promise<{ locator: string; acl: NonNullable<Artifact['acl']> }> {
  if (!isScriptRestic(v)) throw new RubiconError('CAPTURE_FAILED', `vault '${v.info.name}' (${v.info.kind}) cannot take a copy from the Windows capture script: only restic vaults can`);
  const workDir = windowsPath(ctx.runbook.target.workDir, 'capture');
  const key = scriptKey('c', o.artifactId, v.info.name);
  const manifestKey = createHash('sha256').update(JSON.stringify(o.entries)).digest('hex').slice(0, 16);
  const args = {
    key,
    source: o.dir,
    workDir,
    restic: { ...v.scriptBackupArgs(grant, ctx.target, { artifactId: o.artifactId, srcDir: o.srcDir, ...(o.base ? { base: o.base } : {}) }), ...(o.exclude.length ? { exclude: [...o.exclude] } : {}) },
    acl: { savePath: windowsPath(workDir, `${key}.acl`) },
  };
  // Keyed by the manifest too (as the vaults' own ingest): a step is re-attached only for the very files it was given.
  const r = await ctx.steps.runScript<CaptureData>(ctx.target, { id: `${o.artifactId}/capture/${v.info.name}/${manifestKey}`, idempotent: true }, 'capture', args, `capture script on ${ctx.target.name} (VSS shadow, restic into vault ${v.info.name}, icacls /save)`, {
    allowError: true,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const result = r.output.result;
  let data: CaptureData;
  if (result.ok) data = result.data as CaptureData;
  else if (result.error.code === 'CAPTURE_INCOMPLETE') data = result.error.details as unknown as CaptureData;
  else {
    const d = result.error.details as { meaning?: string; retryable?: boolean } | null;
    throw new RubiconError('CAPTURE_FAILED', `the capture script on ${ctx.target.name} failed for ${o.dir}: ${result.error.code}${d?.meaning ? ` (${d.meaning})` : ''}: ${result.error.message}`, {
      hint: d?.retryable ? 'another shadow copy was being made: resume the run' : `fix the cause on ${ctx.target.name}, then resume the run`,
    });
  }
  if (data.cleanup && (!data.cleanup.shadowDeleted || !data.cleanup.linkRemoved)) {
    noteOnce(ctx, 'warn', `the capture script could not remove its shadow copy ${data.shadow.id} of ${data.volume} on ${ctx.target.name}; the next capture with the same key removes it`);
  }
  const rs = data.restic;
  if (!rs) throw new RubiconError('CAPTURE_FAILED', `the capture script on ${ctx.target.name} ran no restic backup for ${o.dir}`);
  const n = (k: string) => (rs.summary && typeof rs.summary[k] === 'number' ? rs.summary[k]! : null);
  const adopted = await v.adoptBackup(ctx.target, {
    artifactId: o.artifactId,
    srcDir: o.srcDir,
    entries: o.entries,
    backup: { exitCode: rs.exitCode, snapshotId: rs.snapshotId, files: n('total_files_processed'), bytes: n('total_bytes_processed'), errors: rs.errors.map((e) => e.item) },
  });
  return { locator: adopted.locator, acl: await keepAcl(ctx, v, o.dir, data.acl) };
}

/** The capture script's icacls /save file read back, its SHA-256 checked against the script's, stored as a document in the vault. */
async function keepAcl(ctx: RunContext, v: ToolVault, dir: string, a: CaptureData['acl']): Promise<NonNullable<Artifact['acl']>> {
  if (!a || a.failed || a.sha256 === null) {
    throw new RubiconError('CAPTURE_FAILED', `icacls /save of ${dir} on ${ctx.target.name} failed (exit ${a?.exitCode ?? '?'}, ${a?.failedCount ?? '?'} file(s) not processed): the folder's ACLs would not survive the rebuild`, {
      hint: `check that Rubicon's account on ${ctx.target.name} can read the folder's permissions (READ_CONTROL), then resume the run`,
    });
  }
  const bytes = await ctx.target.readSmall(a.savePath, ACL_FILE_MAX);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (sha256 !== a.sha256) throw new RubiconError('CAPTURE_FAILED', `the ACL file ${a.savePath} on ${ctx.target.name} changed after icacls wrote it (SHA-256 differs from the capture script's); capture again`);
  await v.putBytes(bytes);
  return { sha256, bytes: bytes.byteLength, entries: a.entries };
}

/** The landing script's folder for a robocopy tree: from `<unc>\\trees\\<name>` through the mapped share, /E (never deletes on the rebuilt server), /COPY:DAT (the ACL file restores security). Pure. */
export function robocopyLandingFolder(v: SmbVault, o: { locator: string; destination: string; passwordFile: string; aclFile?: string }): Record<string, unknown> {
  return {
    source: v.smbTreeOf(o.locator),
    destination: o.destination,
    exact: false,
    copy: 'DAT',
    share: { root: v.smbShareRoot(), user: v.smb!.user, passwordFile: o.passwordFile },
    ...(o.aclFile ? { aclFile: o.aclFile } : {}),
  };
}

/** An sftp vault whose folder the Windows server reaches as an SMB share (the runbook's smb section). Asked by ability, not by class. */
export type SmbVault = ToolVault & Pick<SftpVault, 'smb' | 'smbShareRoot' | 'smbPartialOf' | 'smbTreeOf' | 'smbPassword' | 'adoptTree'>;
export function isSmbVault(v: ToolVault): v is SmbVault {
  const s = v as Partial<SmbVault>;
  return typeof s.adoptTree === 'function' && typeof s.smbPartialOf === 'function' && s.smb !== undefined;
}

/**
 * The SMB password into the grant's folder on the machine (writeSmall:
 * temp file, owner-only, rename), for the script's New-SmbMapping; the
 * script deletes it once read and the grant's revoke removes the folder.
 * Never an argument, never in the script's arguments (only the file's
 * path), never in the journal. Not written when the step already
 * completed (a resumed run re-attaches to its recorded result).
 */
export async function smbPasswordFile(ctx: RunContext, machine: Machine, v: SmbVault, grant: Grant, stepId: string): Promise<string> {
  const file = windowsPath(grant.dir, 'smb-password');
  const done = ctx.state().steps[`${ctx.runId}/${stepId}`]?.completedAt !== undefined;
  if (!done) await machine.writeSmall(file, `${await v.smbPassword()}\n`, { mode: 0o600 });
  return file;
}

/**
 * The journal step of one robocopy copy: keyed by the artifact, the vault
 * and the manifest (as the vaults' own ingest), so a resumed run re-attaches
 * to the recorded step (the copy is not made again) and a step is reused
 * only for the very files it was given. Pure.
 */
export function robocopyStepId(artifactId: string, vault: string, entries: readonly ManifestEntry[]): string {
  return `${artifactId}/robocopy/${vault}/${createHash('sha256').update(JSON.stringify(entries)).digest('hex').slice(0, 16)}`;
}

/** The capture script's arguments for robocopy into a vault's share. Pure. */
export function robocopyCaptureArgs(o: { key: string; source: string; workDir: string; destination: string; shareRoot: string; user: string; passwordFile: string }): Record<string, unknown> {
  return {
    key: o.key,
    source: o.source,
    workDir: o.workDir,
    // DAT: a NAS share holds no Windows security; the ACLs travel in icacls' file (a vault document) and come back at landing.
    robocopy: { destination: o.destination, copy: 'DAT', share: { root: o.shareRoot, user: o.user, passwordFile: o.passwordFile } },
    acl: { savePath: windowsPath(o.workDir, `${o.key}.acl`) },
  };
}

/**
 * One vault's robocopy copy of a folder: the capture script mirrors the
 * folder from its VSS shadow (robocopy /MIR /COPY:DAT) into the vault's
 * share, `<unc>\trees\<name>.partial`, with the share mapped for that step
 * only (New-SmbMapping, the password from the grant's file), and saves the
 * ACLs (icacls /save). robocopy's exit bit mask and log are parsed there: an
 * exit of 8 or more fails the copy naming each file. Then the vault host
 * hashes every file of the partial tree against the manifest the manifest
 * script built (sha256sum over SSH) and only then renames it into place
 * (adoptTree): the same layout as rsync's trees, proven the same way.
 * Steps (idempotent, keyed by artifact, vault and manifest): the script's
 * `<artifact>/robocopy/<vault>/<manifest hash>` (a resumed run re-attaches
 * to it: the copy is not made twice) and the vault's `<...>/place/verify`.
 */
async function robocopyInto(ctx: RunContext, v: SmbVault, grant: Grant, o: { artifactId: string; dir: string; entries: readonly ManifestEntry[] }): Promise<{ locator: string; acl: NonNullable<Artifact['acl']> }> {
  const workDir = windowsPath(ctx.runbook.target.workDir, 'capture');
  const key = scriptKey('r', o.artifactId, v.info.name);
  const stepId = robocopyStepId(o.artifactId, v.info.name, o.entries);
  const passwordFile = await smbPasswordFile(ctx, ctx.target, v, grant, stepId);
  const destination = v.smbPartialOf(o.artifactId);
  const args = robocopyCaptureArgs({ key, source: o.dir, workDir, destination, shareRoot: v.smbShareRoot(), user: v.smb!.user, passwordFile });
  const r = await ctx.steps.runScript<CaptureData>(ctx.target, { id: stepId, idempotent: true }, 'capture', args, `capture script on ${ctx.target.name} (VSS shadow, robocopy into ${destination} of vault ${v.info.name}, icacls /save)`, {
    allowError: true,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  });
  const result = r.output.result;
  let data: CaptureData;
  if (result.ok) data = result.data as CaptureData;
  else if (result.error.code === 'CAPTURE_INCOMPLETE') data = result.error.details as unknown as CaptureData;
  else {
    const d = result.error.details as { meaning?: string; retryable?: boolean } | null;
    throw new RubiconError('CAPTURE_FAILED', `the capture script on ${ctx.target.name} failed for ${o.dir} (robocopy into vault ${v.info.name}): ${result.error.code}${d?.meaning ? ` (${d.meaning})` : ''}: ${result.error.message}`, {
      hint:
        result.error.code === 'SHARE_CONNECT_FAILED'
          ? `check vaults[].smb of vault ${v.info.name} (the UNC path, the account and its password) and that ${ctx.target.name} reaches the share, then resume the run`
          : d?.retryable
            ? 'another shadow copy was being made: resume the run'
            : `fix the cause on ${ctx.target.name}, then resume the run`,
    });
  }
  if (data.cleanup && (!data.cleanup.shadowDeleted || !data.cleanup.linkRemoved)) {
    noteOnce(ctx, 'warn', `the capture script could not remove its shadow copy ${data.shadow.id} of ${data.volume} on ${ctx.target.name}; the next capture with the same key removes it`);
  }
  const rc = data.robocopy;
  if (!rc) throw new RubiconError('CAPTURE_FAILED', `the capture script on ${ctx.target.name} ran no robocopy for ${o.dir}`);
  if (rc.share && !rc.share.disconnected) noteOnce(ctx, 'warn', `the capture script could not remove its mapping of ${rc.share.root} on ${ctx.target.name} (Remove-SmbMapping); it ends with the logon session`);
  if (rc.failed) {
    const named = rc.errors.slice(0, 5).map((e) => `${e.relativePath ?? e.path ?? '?'} (Windows error ${e.code}${e.message ? `: ${e.message}` : ''})`);
    throw new RubiconError('CAPTURE_FAILED', `robocopy of ${o.dir} on ${ctx.target.name} into vault ${v.info.name} failed (exit ${rc.exitCode}: ${rc.bits.join(', ')})${named.length ? `: ${rc.errors.length} file(s) not copied: ${named.join('; ')}` : ''}`, {
      hint: rc.bits.includes('fatal') ? `check that ${ctx.target.name} reaches ${v.smb!.unc} and may write there, then resume the run` : `read robocopy's log ${rc.logPath} on ${ctx.target.name}, fix the cause (a file the share refuses, a full disk), then resume the run`,
    });
  }
  // Hashed where the copy is, against the target's manifest, before the tree gets its name.
  const placed = await v.adoptTree((m, k, c, w, opt) => ctx.steps.run(m, k, c, w, opt), { artifactId: o.artifactId, stepId: `${stepId}/place`, entries: o.entries });
  return { locator: placed.locator, acl: await keepAcl(ctx, v, o.dir, data.acl) };
}

const ACL_FILE_MAX = 256 * 1024 * 1024;

/** A document of the artifact's vaults (read() re-hashes it: VAULT_CORRUPT on a mismatch). */
async function readDocument(ctx: RunContext, a: Artifact, sha256: string): Promise<Uint8Array> {
  let last: unknown;
  for (const v of ctx.vaults.filter((x) => (a.vaults ?? []).includes(x.info.name))) {
    try {
      const parts: Uint8Array[] = [];
      for await (const c of v.read(sha256)) parts.push(c);
      return Buffer.concat(parts);
    } catch (e) {
      last = e;
    }
  }
  throw last ?? new RubiconError('VAULT_MISSING_OBJECT', `no vault of ${a.id} holds its ACL file ${sha256.slice(0, 12)}…`);
}

/**
 * The old server's inventory, read back from the discover step's log (the
 * journal records the log chunk's SHA-256; the script's own sentinel is
 * checked again by parseScriptOutput), or undefined when there is none.
 */
export function inventoryOf(ctx: RunContext): InventoryData | undefined {
  const id = `${ctx.runId}/discover/inventory`;
  const step = ctx.state().steps[id];
  if (!step?.log) return undefined;
  let text: string;
  try {
    text = readFileSync(path.join(ctx.paths.dir, step.log.path), 'utf8');
  } catch {
    return undefined;
  }
  const at = text.lastIndexOf(`# step ${id} on `);
  if (at < 0) return undefined;
  const chunk = text.slice(at);
  if (createHash('sha256').update(chunk).digest('hex') !== step.log.sha256) return undefined;
  const out = chunk.indexOf('# --- stdout\n');
  const err = chunk.lastIndexOf('# --- stderr\n');
  if (out < 0 || err < out) return undefined;
  try {
    return scriptData(parseScriptOutput<InventoryData>(chunk.slice(out + '# --- stdout\n'.length, err), { script: 'inventory' }));
  } catch {
    return undefined;
  }
}

/** The landing script's manual steps as notes on the item (the report lists them); returns how many. */
function surfaceManualSteps(ctx: RunContext, item: Item, machine: string, data: LandingData): number {
  for (const m of data.manualSteps) noteOnce(ctx, 'warn', `after landing on ${machine}, a person must: ${m.detail} (${m.kind} ${m.name}: ${m.reason})`, item.id);
  return data.manualSteps.length;
}

/** The ACL check of a landed folder. Pure. */
export function landedAclCheck(pick: Artifact, f: LandingData['folders'][number]): { name: string; status: 'passed' | 'failed' | 'skipped'; detail: string } {
  if (!pick.acl) return { name: 'acls', status: 'skipped', detail: 'no ACL file was saved with this artifact' };
  if (!f.acl) return { name: 'acls', status: 'failed', detail: 'the landing script did not restore the ACL file' };
  if (f.acl.failed) return { name: 'acls', status: 'failed', detail: `icacls /restore failed (exit ${f.acl.exitCode ?? '?'}, ${f.acl.failedCount ?? '?'} file(s) not processed)` };
  return { name: 'acls', status: 'passed', detail: `${pick.acl.entries} ACL entries restored by icacls /restore${f.acl.unresolvedSids.length ? `; ${f.acl.unresolvedSids.length} account(s) do not resolve here (see the notes)` : ''}` };
}

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
