import { createHash } from 'node:crypto';
import path from 'node:path';
import { RubiconError, isRubiconError, stopsTheRun } from '../core/errors.ts';
import type { Artifact, Copy, DriftChange, Item, Manifest, Proof, ProofCheck } from '../core/types.ts';
import type { RemoteDatabaseEngine, RemoteEngineContext } from '../engines/engine.ts';
import { compareFingerprints } from '../engines/fingerprint.ts';
import { encodeManifest, parseManifest, readManifest } from '../files/manifest.ts';
import { currentArtifacts } from '../gate/current.ts';
import { discoverFoldersRemote } from '../inventory/folders-remote.ts';
import type { Machine } from '../machines/machine.ts';
import { shQuote } from '../machines/posix.ts';
import { buildTreeManifest, listTree, scanTreeDrift, verifyTreeOn } from '../machines/tree.ts';
import { isToolVault, type ArtifactIndexEntry, type Grant, type ToolVault } from '../vaults/vault.ts';
import type { RunContext } from './context.ts';
import { checkpoint } from './faults.ts';
import { signIndexEntry } from '../trust/index-entry.ts';

/**
 * The phases' work on a remote target: bytes move with real tools on the
 * machines where the data is (restic and rsync on the target writing into
 * their vaults through grants, sha256sum on the vault host, restic and the
 * database's CLI on the proving ground); this process decides, records and
 * checks, and only manifests, tool reports and results travel here.
 *
 * Every function is idempotent against the journal, like src/run/phases.ts:
 * it skips what the state says is done and redoes what was started and not
 * finished; long actions are journaled steps (src/run/steps.ts) that a
 * resumed run re-attaches to.
 */

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const errCode = (e: unknown) => (isRubiconError(e) ? e.code : 'INTERNAL');
const enc = (id: string) => createHash('sha256').update(id).digest('hex').slice(0, 16);

function remote(ctx: RunContext): NonNullable<RunContext['remote']> {
  if (!ctx.remote) throw new RubiconError('INTERNAL', 'remote phase on a local target');
  return ctx.remote;
}

function toolVaults(ctx: RunContext, kind?: string): ToolVault[] {
  return ctx.vaults.filter((v): v is ToolVault => isToolVault(v) && (kind === undefined || v.info.kind === kind));
}

function remoteEngine(ctx: RunContext, item: Item): RemoteDatabaseEngine {
  const e = item.engine ? remote(ctx).engines[item.engine] : undefined;
  if (!e) throw new RubiconError('ENGINE_FAILED', `no remote engine "${item.engine}" for ${item.id}`);
  return e;
}

const onTarget = (ctx: RunContext, rel: string) => path.posix.join(ctx.runbook.target.root, rel);

async function sh(machine: Machine, script: string, ...args: string[]): Promise<void> {
  const r = await machine.exec({ argv: ['sh', '-c', script, 'rubicon', ...args] });
  if (r.exitCode !== 0) {
    const full = /No space left/i.test(r.stderr);
    throw new RubiconError(full ? 'NO_SPACE' : 'MACHINE_FAILED', `${machine.name}: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.exitCode}`}`, {
      hint: full ? `free space on ${machine.name}, then resume the run` : undefined,
    });
  }
}

// ------------------------------------------------------------- discover

export async function discoverRemote(ctx: RunContext, ownedOf: (dbs: Item[]) => string[]): Promise<{ databases: Item[]; folders: Item[] }> {
  const rb = ctx.runbook;
  const r = remote(ctx);
  const databases: Item[] = [];
  for (const [kind, engine] of Object.entries(r.engines)) {
    const ectx: RemoteEngineContext = { machine: ctx.target, steps: ctx.steps, stepPrefix: 'discover/', workDir: path.posix.join(rb.target.workDir, 'scratch', ctx.runId) };
    databases.push(
      ...(await engine.discover(ectx, {
        root: rb.target.root,
        roots: rb.discovery.roots.map((x) => onTarget(ctx, x)),
        declared: rb.declared.databases.filter((d) => d.engine === kind).map((d) => ({ name: d.name, location: d.location })),
      })),
    );
  }
  const folders = await discoverFoldersRemote({
    machine: ctx.target,
    root: rb.target.root,
    roots: rb.discovery.roots,
    depth: rb.discovery.depth,
    exclude: rb.discovery.exclude,
    declared: rb.declared.folders,
    ownedFiles: ownedOf(databases),
  });
  return { databases, folders };
}

// ------------------------------------------------------------- capture

interface Shipped {
  manifest: Manifest;
  manifestHash: string;
  vaults: string[];
  locators: Record<string, string>;
  bytes: number;
  finishedAt: string;
}

/** What the index entry says besides the manifest's hash and the capture time. */
type IndexFields = Omit<ArtifactIndexEntry, 'manifestHash' | 'capturedAt'>;

/**
 * Manifests this process wrote or read back and verified, by SHA-256 of
 * their bytes (content-addressed: a hit is the same bytes a vault read
 * would return, so it is never stale). Each holds the manifest decoded from
 * exactly those bytes.
 */
const manifests = new WeakMap<RunContext, Map<string, Manifest>>();

function rememberManifest(ctx: RunContext, hash: string, m: Manifest): void {
  let c = manifests.get(ctx);
  if (!c) manifests.set(ctx, (c = new Map()));
  c.set(hash, m);
}

/**
 * Puts a folder on the target into tool vaults: each vault's tool runs on the
 * target through the phase's write grant (the grant pool revokes it at the
 * end of the phase, or of the run, whatever happens), then the manifest and
 * the artifact's index entry are stored in each vault together (one call
 * per vault where it can: putArtifactDocuments). Exported for the everything
 * capture (src/coverage/everything.ts).
 */
export async function ship(
  ctx: RunContext,
  o: {
    artifactId: string;
    itemId: string;
    method: string;
    srcDir: string;
    manifest: Manifest;
    vaults: ToolVault[];
    base?: Artifact;
    index: IndexFields;
    /** Writes the copy into one vault through its write grant instead of the vault's own ingest (the Windows capture script); returns the locator. */
    ingest?: (v: ToolVault, grant: Grant, base: { artifactId: string; locator: string } | undefined) => Promise<{ locator: string }>;
  },
): Promise<Shipped> {
  const bytes = encodeManifest(o.manifest);
  const manifestHash = createHash('sha256').update(bytes).digest('hex');
  const locators: Record<string, string> = {};
  for (const v of o.vaults) {
    const grant = await remote(ctx).grants.acquire(v, ctx.target, 'write');
    const baseLocator = o.base?.locators?.[v.info.name];
    if (o.ingest) {
      locators[v.info.name] = (await o.ingest(v, grant, o.base && baseLocator ? { artifactId: o.base.id, locator: baseLocator } : undefined)).locator;
      continue;
    }
    const r = await v.ingest((m, k, c, w, opt) => ctx.steps.run(m, k, c, w, opt), ctx.target, grant, {
      artifactId: o.artifactId,
      // Keyed by the manifest too: a step may only be re-attached for the very files it was given. A redone
      // database capture writes its backup again (same size, new mtime); re-attaching the earlier attempt's
      // restic backup would record a snapshot of the earlier file, which the copy check then refuses.
      stepId: `${o.artifactId}/ingest/${v.info.name}/${manifestHash.slice(0, 16)}`,
      srcDir: o.srcDir,
      files: o.manifest.entries.map((e) => e.path),
      entries: o.manifest.entries,
      ...(o.base && baseLocator ? { base: { artifactId: o.base.id, locator: baseLocator } } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    });
    locators[v.info.name] = r.locator;
  }
  const finishedAt = ctx.now().toISOString();
  // Documents after every copy is in place: an index entry never names a copy that is not there yet.
  // Signed by the run's key, so a vault read without the journal can tell a forged entry.
  const unsigned: ArtifactIndexEntry = { ...o.index, manifestHash, capturedAt: finishedAt };
  const entry = ctx.signer ? signIndexEntry(unsigned, ctx.signer) : unsigned;
  // Each vault's documents are independent of the others': stored at the same time (one call each).
  const stored = await Promise.allSettled(
    o.vaults.map(async (v) => {
      if (v.putArtifactDocuments) await v.putArtifactDocuments(bytes, entry);
      else {
        await v.putBytes(bytes);
        await v.putArtifactIndex(entry);
      }
    }),
  );
  const failed = stored.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (failed) throw failed.reason;
  rememberManifest(ctx, manifestHash, parseManifest(bytes, `manifest of ${o.artifactId}`));
  return { manifest: o.manifest, manifestHash, vaults: o.vaults.map((v) => v.info.name), locators, bytes: o.manifest.entries.reduce((n, e) => n + e.size, 0), finishedAt };
}

/**
 * A tree captured where the data is, stored and recorded in one place (the
 * remote folder capture, the Windows plane, the whole-volume capture): the
 * copies and the manifest go into `vaults` (ship), the crash checkpoint
 * `capture.stored.<phase>` fires, what changed since `base` is computed
 * (`diff`, default by path, hash and mode), and `artifact.captured` is
 * journaled. Returns the artifact. Idempotent as ship is.
 */
export async function shipTree(
  ctx: RunContext,
  o: {
    artifactId: string;
    itemId: string;
    method: string;
    independenceGroup: string;
    phase: Artifact['phase'];
    srcDir: string;
    entries: Manifest['entries'];
    vaults: ToolVault[];
    base?: Artifact;
    startedAt: string;
    /** The provenance's tool text: what ran where. */
    tool: string;
    diff?: (base: Manifest, now: Manifest) => DriftChange[];
    /** See ship. */
    ingest?: (v: ToolVault, grant: Grant, base: { artifactId: string; locator: string } | undefined) => Promise<{ locator: string }>;
    /** Recorded with the artifact, asked after the copies are in place: the saved ACLs of a Windows folder (a document in the same vaults). */
    acl?: () => Artifact['acl'];
  },
): Promise<Artifact> {
  const manifest: Manifest = { version: 1, artifactId: o.artifactId, itemId: o.itemId, method: o.method, entries: o.entries };
  const shipped = await ship(ctx, {
    artifactId: o.artifactId,
    itemId: o.itemId,
    method: o.method,
    srcDir: o.srcDir,
    manifest,
    vaults: o.vaults,
    ...(o.base ? { base: o.base } : {}),
    ...(o.ingest ? { ingest: o.ingest } : {}),
    index: { artifactId: o.artifactId, runId: ctx.runId, itemId: o.itemId, method: o.method, origin: 'rubicon', independenceGroup: o.independenceGroup },
  });
  checkpoint(`capture.stored.${o.phase}`);
  const diff = o.diff ?? ((b: Manifest, n: Manifest) => diffEntries(b.entries, n.entries));
  const changed = o.base ? diff(await manifestOf(ctx, o.base), manifest) : undefined;
  const artifact: Artifact = {
    id: o.artifactId,
    runId: ctx.runId,
    itemId: o.itemId,
    method: o.method,
    independenceGroup: o.independenceGroup,
    phase: o.phase,
    origin: 'rubicon',
    manifestHash: shipped.manifestHash,
    fileCount: manifest.entries.length,
    bytes: shipped.bytes,
    ...(o.base ? { baseArtifactId: o.base.id, changed: changed ?? [] } : {}),
    provenance: { method: o.method, tool: o.tool, host: ctx.target.name, startedAt: o.startedAt, finishedAt: shipped.finishedAt },
    vaults: shipped.vaults,
    locators: shipped.locators,
    sourceDir: o.srcDir,
  };
  const acl = o.acl?.();
  if (acl) artifact.acl = acl;
  ctx.record({ type: 'artifact.captured', artifact });
  return artifact;
}

/** The artifact's manifest: remembered by its hash, else from a readable vault holding it (the first that reads it; read() verifies the hash). */
export async function manifestOf(ctx: RunContext, a: Artifact): Promise<Manifest> {
  const known = manifests.get(ctx)?.get(a.manifestHash);
  if (known) return known;
  const m = await readFromVaults(ctx, a);
  rememberManifest(ctx, a.manifestHash, m);
  return m;
}

async function readFromVaults(ctx: RunContext, a: Artifact): Promise<Manifest> {
  const holders = ctx.vaults.filter((v) => (a.vaults ?? ctx.vaults.map((x) => x.info.name)).includes(v.info.name));
  let last: unknown;
  for (const v of holders) {
    try {
      return await readManifest(v, a.manifestHash);
    } catch (e) {
      last = e;
    }
  }
  throw last ?? new RubiconError('VAULT_MISSING_OBJECT', `no vault holds the manifest of ${a.id}`);
}

/**
 * Captures a folder item on the target with each of its methods (restic,
 * rsync): one manifest built on the target (hashes only for files the base
 * manifest does not already vouch for), then each method's tool writes
 * exactly those files into its vaults.
 */
export async function captureFolderRemote(
  ctx: RunContext,
  item: Item,
  phase: Artifact['phase'],
  exclude: string[],
  artifactIdOf: (method: string) => string,
  baseOf: (method: string) => Artifact | undefined,
): Promise<void> {
  const dir = onTarget(ctx, item.location);
  let built: { entries: Manifest['entries']; base?: Artifact } | undefined;
  for (const method of item.methods) {
    const id = artifactIdOf(method);
    if (ctx.state().artifacts.some((a) => a.id === id)) continue;
    ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
    const startedAt = ctx.now().toISOString();
    try {
      const m = remote(ctx).folderMethods.get(method, `methods.folders`);
      const vaults = toolVaults(ctx, m.vaultKind);
      if (vaults.length === 0) throw new RubiconError('CAPTURE_FAILED', `${method} writes into ${m.vaultKind} vaults and the runbook lists none`);
      const base = baseOf(method);
      if (!built) {
        const baseManifest = base ? await manifestOf(ctx, base) : undefined;
        const r = await buildTreeManifest(ctx.steps.onMachine, ctx.target, { id: `${id}/manifest`, idempotent: true }, dir, {
          exclude,
          ...(baseManifest ? { base: baseManifest.entries } : {}),
        });
        if (r.missing) throw new RubiconError('CAPTURE_FAILED', `${dir} no longer exists on ${ctx.target.name}`);
        if (r.skipped.length > 0) {
          ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `${item.name}: ${r.skipped.length} entries are not regular files and were not captured (${r.skipped.slice(0, 5).map((s) => `${s.path}: ${s.kind}`).join(', ')})` });
        }
        built = { entries: r.entries };
      }
      await shipTree(ctx, {
        artifactId: id,
        itemId: item.id,
        method,
        independenceGroup: m.independenceGroup,
        phase,
        srcDir: dir,
        entries: built.entries,
        vaults,
        ...(base ? { base } : {}),
        startedAt,
        tool: `${method} on ${ctx.target.name} (SHA-256 manifest built there)`,
      });
    } catch (e) {
      if (ctx.signal?.aborted) throw e;
      const stop = stopsTheRun(e);
      if (stop) throw stop;
      ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
    }
  }
}

export function diffEntries(before: Manifest['entries'], after: Manifest['entries']): DriftChange[] {
  const b = new Map(before.map((e) => [e.path, e] as const));
  const out: DriftChange[] = [];
  for (const e of after) {
    const p = b.get(e.path);
    if (!p) out.push({ path: e.path, kind: 'added', size: e.size, mtimeMs: e.mtimeMs });
    else if (p.sha256 !== e.sha256 || p.mode !== e.mode) out.push({ path: e.path, kind: 'modified', size: e.size, mtimeMs: e.mtimeMs });
    b.delete(e.path);
  }
  for (const p of b.values()) out.push({ path: p.path, kind: 'deleted', size: p.size, mtimeMs: p.mtimeMs });
  return out;
}

// ------------------------------------------------------------- vault secrets

/**
 * The secret a vault needs to be read at all (restic: the repository
 * password), as a captured item (docs/vaults.md, "The restic password"): a
 * restore from the vaults alone must not depend on Rubicon's environment.
 * The method `vault-password` writes the password (read from the runbook's
 * passwordEnv / passwordFile, as the vault itself does) into a 0600 file in
 * a staging folder on the target, builds the manifest there and ships it
 * into every OTHER tool vault (a password kept only inside the repository
 * it opens could not open it). The proving ground gets it back through its
 * read grant of such a vault, restored and hash-checked there, and opens
 * the repository with it; its restic read grants carry no password of
 * their own. The password never goes into argv, an environment, the
 * journal, an event or a report; the journal records only the artifact
 * (one file named `password`, its size, the manifest's hash).
 */
export const VAULT_PASSWORD_METHOD = 'vault-password';

/** A tool vault whose own secret is captured as an item (restic). Asked by ability, not by class. */
interface KeyedVault extends ToolVault {
  /** Opens the repository with the password (VAULT_PASSWORD when it does not). */
  ensureInitialized(): Promise<string>;
  passwordFile(): Promise<Uint8Array>;
  readonly passwordOrigin: string;
  opens(on: Machine, grant: Grant): Promise<{ ok: true } | { ok: false; detail: string }>;
}

function keyed(v: ToolVault | undefined): v is KeyedVault {
  const k = v as Partial<KeyedVault> | undefined;
  return typeof k?.passwordFile === 'function' && typeof k.opens === 'function';
}

/** The secret items of this run's keyed vaults (one per restic vault). Pure over the context's vaults. */
export function vaultSecretItems(ctx: RunContext): Item[] {
  return toolVaults(ctx)
    .filter(keyed)
    .map((v) => ({
      id: `secret:restic-password:${v.info.name}`,
      kind: 'secret' as const,
      name: `password of restic vault ${v.info.name}`,
      declared: true,
      discovered: true,
      location: `vault:${v.info.name}`,
      facts: { vault: v.info.name, source: v.passwordOrigin },
      why: [`restic vault ${v.info.name} cannot be read without it: the proving ground and a restore from the vaults alone need it captured in another vault`],
      methods: [VAULT_PASSWORD_METHOD],
    }));
}

/** The keyed vault a secret item opens. */
function openedBy(ctx: RunContext, item: Item): KeyedVault | undefined {
  const v = toolVaults(ctx).find((x) => x.info.name === item.facts['vault']);
  return keyed(v) ? v : undefined;
}

/** The run's secret item for vault `name`, when its password is captured (then the proving ground's grants carry none). */
function secretItemOf(ctx: RunContext, name: string): Item | undefined {
  return ctx.state().items.find((i) => i.kind === 'secret' && i.facts['vault'] === name && i.methods.includes(VAULT_PASSWORD_METHOD));
}

/** Captures a vault's secret item (see VAULT_PASSWORD_METHOD). Records artifact.captured or capture.failed; idempotent against the journal. */
export async function captureVaultSecretRemote(ctx: RunContext, item: Item, phase: Artifact['phase'], id: string): Promise<void> {
  const s = ctx.state();
  if (s.artifacts.some((a) => a.id === id) || s.captureFailures.some((f) => f.artifactId === id)) return;
  const method = VAULT_PASSWORD_METHOD;
  ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
  const startedAt = ctx.now().toISOString();
  const staging = path.posix.join(ctx.runbook.target.workDir, 'staging', ctx.runId, enc(id));
  try {
    const opened = openedBy(ctx, item);
    if (!opened) throw new RubiconError('CAPTURE_FAILED', `${item.id}: the runbook has no restic vault named ${String(item.facts['vault'])}`);
    const holders = toolVaults(ctx).filter((v) => v !== opened);
    if (holders.length === 0) {
      throw new RubiconError('CAPTURE_FAILED', `the password of restic vault '${opened.info.name}' has no other vault to go into: kept only inside the repository it opens, it could not open it`, {
        hint: 'add a second vault (sftp, or another restic repository) to the runbook, then resume the run',
      });
    }
    // Only a password that opens the repository is captured (a wrong one stops the run: VAULT_PASSWORD).
    await opened.ensureInitialized();
    await sh(ctx.target, 'umask 077 && rm -rf -- "$1" && mkdir -p -- "$1"', staging);
    await ctx.target.writeSmall(path.posix.join(staging, 'password'), await opened.passwordFile(), { mode: 0o600 });
    const built = await buildTreeManifest(ctx.steps.onMachine, ctx.target, { id: `${id}/manifest/${Date.parse(startedAt)}`, idempotent: true }, staging);
    const entries = built.entries.filter((e) => e.path === 'password');
    if (entries.length !== 1) throw new RubiconError('CAPTURE_FAILED', `the password file of vault '${opened.info.name}' is not in ${staging} on ${ctx.target.name}`);
    await shipTree(ctx, {
      artifactId: id,
      itemId: item.id,
      method,
      independenceGroup: method,
      phase,
      srcDir: staging,
      entries,
      vaults: holders,
      startedAt,
      tool: `the password of vault ${opened.info.name} (from ${opened.passwordOrigin}), a 0600 file on ${ctx.target.name} copied by each vault's tool`,
    });
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    const stop = stopsTheRun(e);
    if (stop) throw stop;
    ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
  } finally {
    await sh(ctx.target, 'rm -rf -- "$1"', staging).catch(() => undefined);
  }
}

/** Puts a password file restored on `pg` where `grant` names it (RESTIC_PASSWORD_FILE), 0600, by rename. */
async function installPassword(pg: Machine, from: string, grant: Grant): Promise<void> {
  const to = grant.env['RESTIC_PASSWORD_FILE'] ?? path.posix.join(grant.dir, 'password');
  await sh(pg, 'umask 077 && cp -- "$1" "$2.tmp" && mv -f -- "$2.tmp" "$2"', from, to);
}

/** Grants of this process whose password file holds the captured password already (by grant id). */
const unlocked = new WeakMap<RunContext, Map<string, Promise<void>>>();

function unlockedOf(ctx: RunContext): Map<string, Promise<void>> {
  let m = unlocked.get(ctx);
  if (!m) unlocked.set(ctx, (m = new Map()));
  return m;
}

/**
 * Gives a proving-ground read grant of a keyed vault (which carries no
 * password) the password captured as `secret`: its newest current artifact
 * with a passed proof is restored onto the proving ground from a vault
 * holding an intact copy, hash-checked there against its manifest, and
 * installed in the grant folder. Once per grant in this process.
 * VAULT_MISSING_OBJECT (a failed proof, not a stop) when there is none:
 * the proving ground never falls back to Rubicon's own password.
 */
function unlock(ctx: RunContext, vault: ToolVault, grant: Grant, secret: Item, pgRoot: string): Promise<void> {
  const memo = unlockedOf(ctx);
  const have = memo.get(grant.id);
  if (have) return have;
  const pg = remote(ctx).provingGround;
  const p = (async () => {
    const s = ctx.state();
    const passed = (a: Artifact) => s.proofs.some((x) => x.artifactId === a.id && x.outcome === 'passed');
    const proven = currentArtifacts(s.artifacts).filter((a) => a.itemId === secret.id && passed(a)).at(-1);
    const holder = proven ? toolVaults(ctx).find((v) => (proven.vaults ?? []).includes(v.info.name) && s.copies.some((c) => c.artifactId === proven.id && c.vault === v.info.name && c.status === 'ok')) : undefined;
    if (!proven || !holder) {
      throw new RubiconError('VAULT_MISSING_OBJECT', `the proving ground has no password for restic vault '${vault.info.name}': its captured secret item ${secret.id} has ${proven ? 'no intact copy' : 'no passed proof'}, and the proving ground never gets the password from Rubicon's own environment (a restore from the vaults alone needs it)`, {
        hint: `read the proof of ${secret.id}; capture it again into a vault that keeps it intact (resume the run)`,
        details: { vault: vault.info.name, item: secret.id },
      });
    }
    const manifest = await manifestOf(ctx, proven);
    const dir = path.posix.join(pgRoot, 'secrets', enc(`${proven.id}/${grant.id}`));
    await sh(pg, 'umask 077 && rm -rf -- "$1" && mkdir -p -- "$1/files"', dir);
    try {
      const g = await remote(ctx).grants.acquire(holder, pg, 'read');
      await holder.restoreTo((m, k, c, w, o) => ctx.steps.run(m, k, c, w, o), pg, g, {
        artifactId: proven.id,
        locator: proven.locators?.[holder.info.name] ?? '',
        dest: `${dir}/files`,
        stepId: `${proven.id}/unlock/${holder.info.name}/${grant.id}`,
        srcDir: proven.sourceDir ?? '',
      });
      const v = await verifyTreeOn(ctx.steps.onMachine, pg, { id: `${proven.id}/unlock-verify/${grant.id}`, idempotent: true }, `${dir}/files`, manifest.entries);
      if (!v.ok) throw new RubiconError('VAULT_CORRUPT', `the captured password of vault '${vault.info.name}' restored from vault ${holder.info.name} onto ${pg.name} does not match its manifest`, { details: { vault: holder.info.name } });
      await installPassword(pg, `${dir}/files/password`, grant);
    } finally {
      await sh(pg, 'rm -rf -- "$1"', dir).catch(() => undefined);
    }
  })();
  memo.set(grant.id, p);
  p.catch(() => memo.delete(grant.id));
  return p;
}

/**
 * Captures a database on the target with one method: the engine's CLI (or
 * the vendor's job) writes the backup into a staging folder on the target,
 * a manifest is built there, and every tool vault takes a copy.
 */
export async function captureDatabaseRemote(ctx: RunContext, item: Item, method: string, phase: Artifact['phase'], id: string, info: { origin: 'rubicon' | 'vendor'; independenceGroup: string }): Promise<void> {
  const s = ctx.state();
  if (s.artifacts.some((a) => a.id === id) || s.captureFailures.some((f) => f.artifactId === id)) return;
  const engine = remoteEngine(ctx, item);
  ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
  const startedAt = ctx.now().toISOString();
  const staging = path.posix.join(ctx.runbook.target.workDir, 'staging', ctx.runId, enc(id));
  const ectx: RemoteEngineContext = { machine: ctx.target, steps: ctx.steps, stepPrefix: `${id}/`, workDir: staging, ...(ctx.signal ? { signal: ctx.signal } : {}) };
  try {
    await sh(ctx.target, 'rm -rf -- "$1" && mkdir -p -- "$1"', staging);
    const dbPath = onTarget(ctx, item.location);
    let captured: { files: { path: string; name: string }[]; format: string; tool: string; position?: string; sourceFingerprint?: import('../core/types.ts').Fingerprint };
    let before: import('../core/types.ts').Fingerprint | undefined;
    if (method === 'vendor-job') {
      before = await engine.fingerprint(ectx, dbPath);
      captured = await runVendorJobRemote(ctx, item, id, staging);
    } else captured = await engine.capture(ectx, item, method, dbPath);
    // The engine's own snapshot fingerprint (taken in the capture's read transaction) when it has one:
    // a separate read could see a later state of a live database.
    const sourceFingerprint = captured.sourceFingerprint ?? before ?? (await engine.fingerprint(ectx, dbPath));
    // Everything the artifact holds is under staging with its artifact name.
    for (const f of captured.files) {
      const want = path.posix.join(staging, f.name);
      if (f.path !== want) await sh(ctx.target, 'mkdir -p -- "$(dirname -- "$2")" && cp -p -- "$1" "$2"', f.path, want);
    }
    // Keyed by this attempt: the staging folder is made anew by each attempt (its files get new mtimes), so a
    // manifest step recorded by an earlier, cut-off attempt describes files that are gone and is never re-attached.
    const built = await buildTreeManifest(ctx.steps.onMachine, ctx.target, { id: `${id}/manifest/${Date.parse(startedAt)}`, idempotent: true }, staging);
    const names = new Set(captured.files.map((f) => f.name));
    const manifest: Manifest = { version: 1, artifactId: id, itemId: item.id, method, format: captured.format, entries: built.entries.filter((e) => names.has(e.path)) };
    if (manifest.entries.length !== names.size) throw new RubiconError('CAPTURE_FAILED', `${method} did not produce every file it named on ${ctx.target.name}`);
    const shipped = await ship(ctx, {
      artifactId: id,
      itemId: item.id,
      method,
      srcDir: staging,
      manifest,
      vaults: toolVaults(ctx),
      index: { artifactId: id, runId: ctx.runId, itemId: item.id, method, origin: info.origin, independenceGroup: info.independenceGroup, ...(sourceFingerprint ? { sourceFingerprint } : {}) },
    });
    checkpoint(`capture.stored.${phase}`);
    const artifact: Artifact = {
      id,
      runId: ctx.runId,
      itemId: item.id,
      method,
      independenceGroup: info.independenceGroup,
      phase,
      origin: info.origin,
      manifestHash: shipped.manifestHash,
      fileCount: manifest.entries.length,
      bytes: shipped.bytes,
      sourceFingerprint,
      provenance: { method, tool: captured.tool, host: ctx.target.name, startedAt, finishedAt: shipped.finishedAt, ...(captured.position ? { position: captured.position } : {}) },
      vaults: shipped.vaults,
      locators: shipped.locators,
      sourceDir: staging,
    };
    ctx.record({ type: 'artifact.captured', artifact });
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    const stop = stopsTheRun(e);
    if (stop) throw stop;
    ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
  } finally {
    await sh(ctx.target, 'rm -rf -- "$1"', staging).catch(() => undefined);
  }
}

/**
 * The vendor's own backup job, run on the target as a NON-idempotent step
 * (never twice: a resumed run re-attaches to it or fails STEP_LOST). Its
 * output is the newest file in its output folder. Its exit code alone is
 * never trusted: only the proof says whether the backup restores.
 */
async function runVendorJobRemote(ctx: RunContext, item: Item, id: string, staging: string): Promise<{ files: { path: string; name: string }[]; format: string; tool: string }> {
  const job = ctx.runbook.vendorJobs.find((j) => j.database === item.name && j.engine === item.engine);
  if (!job) throw new RubiconError('CAPTURE_FAILED', `no vendor job is declared for ${item.id}`);
  const r = await ctx.steps.run(ctx.target, { id: `${id}/vendor-job`, idempotent: false }, { argv: job.command, cwd: ctx.runbook.target.root }, `the vendor's job "${job.name}"`, {
    timeoutMs: job.timeoutMs,
  });
  if (r.exitCode !== 0) throw new RubiconError('CAPTURE_FAILED', `the vendor's job "${job.name}" exited ${r.exitCode} on ${ctx.target.name} (its output is in the run's log folder)`);
  const out = await listTree(ctx.target, onTarget(ctx, job.output), { maxDepth: 1 });
  const newest = [...out.files].sort((a, b) => b.mtimeMs - a.mtimeMs)[0];
  if (!newest) throw new RubiconError('CAPTURE_FAILED', `the vendor's job "${job.name}" exited 0 but wrote nothing into ${job.output}`);
  void staging;
  return { files: [{ path: path.posix.join(onTarget(ctx, job.output), newest.path), name: path.posix.basename(newest.path) }], format: 'vendor-backup', tool: `vendor job "${job.name}"` };
}

// ------------------------------------------------------------- prove

/**
 * The proving ground must not reach the target: checked from the proving
 * ground itself, by trying to open the target's ssh port. "No route",
 * "unreachable" or a timeout is isolation; anything that talks back (even a
 * refusal) is not, and proving stops.
 */
export async function checkIsolation(ctx: RunContext): Promise<string> {
  const t = ctx.runbook.target.transport;
  if (t.kind !== 'ssh' && t.kind !== 'openssh-windows') return 'the target is not a network host';
  const pg = remote(ctx).provingGround;
  // Wrapped so the probe's own exit code (ssh's 255) never looks like a failure of our connection to the proving ground.
  const probe = ['ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-p', String(t.port), `rubicon-isolation-probe@${t.host}`, 'true'];
  const out = await pg.exec({ argv: ['sh', '-c', '"$@" 2>&1; echo "RUBICON-PROBE $?"', 'rubicon', ...probe] }, { timeoutMs: 30_000 });
  const m = /RUBICON-PROBE (\d+)\s*$/.exec(out.stdout);
  if (!m) {
    throw new RubiconError('PRECONDITION_FAILED', `cannot tell whether the proving ground can reach the target: ${out.stderr.trim().split('\n')[0] ?? `exit ${out.exitCode}`}`, {
      hint: 'check that the proving ground has a POSIX sh and the OpenSSH client',
    });
  }
  const r = { exitCode: Number(m[1]), stderr: out.stdout.slice(0, m.index) };
  const text = r.stderr;
  if (r.exitCode === 0 || /Permission denied|Host key|Connection refused|closed by remote host|Connection reset/i.test(text)) {
    throw new RubiconError('PRECONDITION_FAILED', `the proving ground ${pg.address} can reach the target ${t.host}:${t.port} (${text.trim().split('\n')[0] ?? 'connected'}): proving must happen from the vaults alone`, {
      hint: 'put the proving ground on a network with no route to the target (a separate VLAN or VNet), then resume the run',
    });
  }
  if (!/No route to host|Network is unreachable|timed out|Could not resolve/i.test(text)) {
    throw new RubiconError('PRECONDITION_FAILED', `cannot tell whether the proving ground can reach the target: ${text.trim().split('\n')[0] ?? `exit ${r.exitCode}`}`, {
      hint: 'check that the OpenSSH client is installed on the proving ground',
    });
  }
  return `a connection from the proving ground to the target ${t.host}:${t.port} failed (${text.trim().split('\n').at(-1)?.replace(/^ssh: /, '')})`;
}

/**
 * Proves artifacts on the remote proving ground: grades each copy where it
 * is stored, restores from an intact copy onto the proving ground through a
 * read grant, checks every file's SHA-256 there, and lets the engine's CLI
 * restore, check and fingerprint a database there.
 */
export async function proveRemote(ctx: RunContext, artifacts: Artifact[], onResult: (copies: Copy[], proof: Proof) => void): Promise<void> {
  const pg = remote(ctx).provingGround;
  if (!ctx.state().notes.some((n) => n.message.startsWith('proving ground isolation checked'))) {
    const how = await checkIsolation(ctx);
    ctx.record({ type: 'note', level: 'info', message: `proving ground isolation checked: ${how}` });
  }
  const pgRoot = path.posix.join(ctx.runbook.provingGround.root, ctx.runId);
  // The previous proof's scratch folder, removed together with the next one's setup (one call, not two) and at the end.
  let leftover: string | undefined;
  try {
    // A vault's captured secret first: the proofs of that vault's copies open the repository with it.
    const secret = (a: Artifact) => a.method === VAULT_PASSWORD_METHOD;
    for (const a of [...artifacts.filter(secret), ...artifacts.filter((x) => !secret(x))]) {
      leftover = await proveOne(ctx, a, pgRoot, leftover, onResult);
    }
  } finally {
    if (leftover) await sh(pg, 'rm -rf -- "$1"', leftover).catch(() => undefined);
  }
}

/** One artifact's proof (proveRemote). Returns its scratch folder on the proving ground, still to be removed. */
async function proveOne(ctx: RunContext, a: Artifact, pgRoot: string, leftover: string | undefined, onResult: (copies: Copy[], proof: Proof) => void): Promise<string | undefined> {
  const pg = remote(ctx).provingGround;
  const started = ctx.now();
  const t0 = performance.now();
  const item = ctx.state().items.find((i) => i.id === a.itemId);
  const checks: ProofCheck[] = [];
  const copies: Copy[] = [];
  const holders = toolVaults(ctx).filter((v) => (a.vaults ?? []).includes(v.info.name));
  let manifest: Manifest | undefined;
  try {
    manifest = await manifestOf(ctx, a);
  } catch (e) {
    const stop = stopsTheRun(e);
    if (stop) throw stop;
    checks.push({ name: 'copy-read', status: 'failed', detail: errText(e), durationMs: 0 });
  }
  const good: ToolVault[] = [];
  if (manifest) {
    for (const v of holders) {
      const known = ctx.state().copies.find((c) => c.artifactId === a.id && c.vault === v.info.name);
      if (known) {
        if (known.status === 'ok') good.push(v);
        continue;
      }
      const g = await v
        // The manifest document is checked in every vault that holds the copy (the proof may use a remembered manifest).
        .checkCopy((m, k, c, w, o) => ctx.steps.run(m, k, c, w, o), { artifactId: a.id, locator: a.locators?.[v.info.name] ?? '', entries: manifest.entries, stepId: `${a.id}/check/${v.info.name}`, manifestHash: a.manifestHash })
        .catch((e: unknown) => {
          // An unreachable vault host or a wrong password says nothing about the copy: stop, fix, resume.
          const stop = stopsTheRun(e);
          if (stop) throw stop;
          return { status: 'error' as const, detail: errText(e) };
        });
      copies.push({ artifactId: a.id, vault: v.info.name, status: g.status, ...(g.detail ? { detail: g.detail } : {}), checkedAt: ctx.now().toISOString() });
      if (g.status === 'ok') good.push(v);
    }
  }
  const vault = good[0];
  let fingerprint: Proof['fingerprint'];
  let bytes = 0;
  const scratch = path.posix.join(pgRoot, enc(a.id));
  if (manifest && vault) {
    const files = path.posix.join(scratch, 'files');
    const t = performance.now();
    try {
      await sh(pg, 'rm -rf -- "$1" "$2" && mkdir -p -- "$2"', leftover ?? files, files);
      leftover = undefined;
      // The phase's read grant for the proving ground (revoked by the pool at the end of the phase or the run).
      // A vault whose secret is a captured item gives it no password: the captured one is put there (unlock).
      const secretItem = secretItemOf(ctx, vault.info.name);
      const grant = await remote(ctx).grants.acquire(vault, pg, 'read', secretItem ? { withoutSecret: true } : {});
      if (secretItem) await unlock(ctx, vault, grant, secretItem, pgRoot);
      await vault.restoreTo((m, k, c, w, o) => ctx.steps.run(m, k, c, w, o), pg, grant, { artifactId: a.id, locator: a.locators?.[vault.info.name] ?? '', dest: files, stepId: `${a.id}/restore/${vault.info.name}`, srcDir: a.sourceDir ?? '', ...(ctx.signal ? { signal: ctx.signal } : {}) });
      bytes = manifest.entries.reduce((n, e) => n + e.size, 0);
      checks.push({ name: 'restore-files', status: 'passed', detail: `${manifest.entries.length} files, ${bytes} bytes from vault ${vault.info.name} onto ${pg.name}`, durationMs: Math.round(performance.now() - t) });
      const tv = performance.now();
      const v = await verifyTreeOn(ctx.steps.onMachine, pg, { id: `${a.id}/verify`, idempotent: true }, files, manifest.entries);
      checks.push({
        name: 'files-hash',
        status: v.ok ? 'passed' : 'failed',
        detail: v.ok ? `every file matches its SHA-256 in the manifest (hashed on ${pg.name})` : v.mismatches.filter((m) => m.problem !== 'extra').slice(0, 10).map((m) => `${m.path}: ${m.problem}`).join('; '),
        durationMs: Math.round(performance.now() - tv),
      });
      const opened = v.ok && item?.kind === 'secret' && a.method === VAULT_PASSWORD_METHOD ? openedBy(ctx, item) : undefined;
      if (opened) {
        // The captured password, as restored here, must open its repository from the proving ground.
        const to = performance.now();
        const tg = await remote(ctx).grants.acquire(opened, pg, 'read', { withoutSecret: true });
        await installPassword(pg, path.posix.join(files, 'password'), tg);
        const r = await opened.opens(pg, tg);
        if (r.ok) unlockedOf(ctx).set(tg.id, Promise.resolve());
        checks.push({
          name: 'opens-repository',
          status: r.ok ? 'passed' : 'failed',
          detail: r.ok ? `the captured password opens restic vault '${opened.info.name}' on ${pg.name} (restic cat config through a read grant that carried no password of its own)` : r.detail,
          durationMs: Math.round(performance.now() - to),
        });
      }
      if (v.ok && item && item.kind === 'database' && item.engine) {
        const engine = remoteEngine(ctx, item);
        const r = await engine.prove(
          { machine: pg, steps: ctx.steps, stepPrefix: `${a.id}/prove/`, workDir: path.posix.join(scratch, 'db'), ...(ctx.signal ? { signal: ctx.signal } : {}) },
          a,
          manifest,
          manifest.entries.map((e) => path.posix.join(files, e.path)),
        );
        checks.push(...r.checks);
        fingerprint = r.fingerprint;
        if (r.fingerprint && a.sourceFingerprint) {
          const cmp = compareFingerprints(a.sourceFingerprint, r.fingerprint);
          checks.push({
            name: 'fingerprint-source',
            status: cmp.equal ? 'passed' : 'failed',
            detail: cmp.equal ? `${r.fingerprint.tables.length} tables: row counts and content hashes equal the source at capture` : cmp.differences.slice(0, 10).join('; '),
            durationMs: 0,
          });
        } else {
          checks.push({ name: 'fingerprint-source', status: 'skipped', detail: 'no fingerprint to compare', durationMs: 0 });
        }
      }
    } catch (e) {
      if (ctx.signal?.aborted) throw e;
      // A full or unreachable proving ground, or a missing tool there, says nothing about the artifact: stop, fix, resume.
      const stop = stopsTheRun(e);
      if (stop) throw stop;
      checks.push({ name: 'restore-files', status: 'failed', detail: errText(e), durationMs: Math.round(performance.now() - t) });
    } finally {
      leftover = scratch;
    }
  } else if (manifest) {
    checks.push({ name: 'copy-read', status: 'failed', detail: 'no vault holds an intact copy', durationMs: 0 });
  }
  const proof: Proof = {
    id: `${a.id}.proof`,
    artifactId: a.id,
    itemId: a.itemId,
    vault: vault?.info.name ?? '',
    provingGround: `${pg.name} (${pg.address})`,
    outcome: checks.length > 0 && checks.every((c) => c.status === 'passed') ? 'passed' : 'failed',
    checks,
    ...(fingerprint ? { fingerprint } : {}),
    startedAt: started.toISOString(),
    finishedAt: ctx.now().toISOString(),
    durationMs: Math.round(performance.now() - t0),
    bytes,
  };
  onResult(copies, proof);
  return leftover;
}

// ------------------------------------------------------------- drift

export async function driftRemote(ctx: RunContext, item: Item, artifact: Artifact, exclude: string[], stage: string): Promise<DriftChange[] | undefined> {
  if (item.kind === 'secret' && item.methods.includes(VAULT_PASSWORD_METHOD)) {
    // The password Rubicon reads now against the captured one (by their SHA-256, on this machine): a changed password is drift.
    const opened = openedBy(ctx, item);
    if (!opened) return undefined;
    const manifest = await manifestOf(ctx, artifact);
    const now = createHash('sha256').update(await opened.passwordFile()).digest('hex');
    return manifest.entries.some((e) => e.path === 'password' && e.sha256 === now) ? [] : [{ path: 'password', kind: 'modified' }];
  }
  if (item.kind === 'folder') {
    const manifest = await manifestOf(ctx, artifact);
    return scanTreeDrift(ctx.steps.onMachine, ctx.target, { id: `${artifact.id}/drift-${stage}-${ctx.state().resumes}`, idempotent: true }, onTarget(ctx, item.location), manifest.entries, { exclude });
  }
  if (item.kind === 'database') {
    const engine = remoteEngine(ctx, item);
    const now = await engine.fingerprint(
      { machine: ctx.target, steps: ctx.steps, stepPrefix: `${artifact.id}/drift-${stage}-${ctx.state().resumes}/`, workDir: path.posix.join(ctx.runbook.target.workDir, 'scratch', ctx.runId) },
      onTarget(ctx, item.location),
    );
    if (artifact.sourceFingerprint && compareFingerprints(artifact.sourceFingerprint, now).equal) return [];
    return [{ path: item.location, kind: 'modified' }];
  }
  return undefined;
}

// ------------------------------------------------------------- landing

/**
 * Restores one item onto the rebuilt target from a vault holding an intact
 * copy, then validates it there against the proven manifest (files) or the
 * proof's fingerprint (databases). Destructive at the item's location only.
 */
export async function landItemRemote(ctx: RunContext, item: Item, pick: Artifact): Promise<void> {
  if (item.kind === 'secret' && pick.method === VAULT_PASSWORD_METHOD) {
    // Not a file of the server: nothing goes onto the rebuilt target; the proven copy stays where it is.
    ctx.record({
      type: 'landing.validated',
      itemId: item.id,
      artifactId: pick.id,
      outcome: 'passed',
      checks: [{ name: 'not-on-target', status: 'passed', detail: `the password of vault ${String(item.facts['vault'])} is not restored onto the server; its proven copy stays in vault(s) ${(pick.vaults ?? []).join(', ')}` }],
    });
    return;
  }
  const target = remote(ctx).rebuiltTarget;
  const s = ctx.state();
  const okVaults = s.copies.filter((c) => c.artifactId === pick.id && c.status === 'ok').map((c) => c.vault);
  const vaults = toolVaults(ctx).filter((v) => (pick.vaults ?? []).includes(v.info.name));
  const ordered = [...vaults.filter((v) => okVaults.includes(v.info.name)), ...vaults.filter((v) => !okVaults.includes(v.info.name))];
  const vault = ordered[0];
  if (!vault) throw new RubiconError('LANDING_FAILED', `no vault holds ${pick.id}`);
  const manifest = await manifestOf(ctx, pick);
  const t0 = performance.now();
  const run = (m: Machine, k: { id: string; idempotent: boolean }, c: Parameters<typeof ctx.steps.run>[2], w: string, o?: Parameters<typeof ctx.steps.run>[4]) => ctx.steps.run(m, k, c, w, o);
  if (item.kind === 'folder') {
    const dest = onTarget(ctx, item.location);
    const staging = path.posix.join(ctx.runbook.target.workDir, 'landing', ctx.runId, enc(pick.id));
    await sh(target, 'rm -rf -- "$1" && mkdir -p -- "$1"', staging);
    const grant = await remote(ctx).grants.acquire(vault, target, 'read');
    await vault.restoreTo(run, target, grant, { artifactId: pick.id, locator: pick.locators?.[vault.info.name] ?? '', dest: staging, stepId: `${pick.id}/land/${vault.info.name}`, srcDir: pick.sourceDir ?? dest });
    // Into place: files of the artifact over whatever the new OS put there (never deleting what it laid down).
    await sh(target, 'mkdir -p -- "$2" && cp -a -- "$1"/. "$2"/ && rm -rf -- "$1"', staging, dest);
    ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: vault.info.name, bytes: pick.bytes, durationMs: Math.round(performance.now() - t0) });
    const v = await verifyTreeOn(ctx.steps.onMachine, target, { id: `${pick.id}/land-verify-${ctx.state().resumes}`, idempotent: true }, dest, manifest.entries);
    const problems = v.mismatches.filter((m) => m.problem !== 'extra');
    ctx.record({
      type: 'landing.validated',
      itemId: item.id,
      artifactId: pick.id,
      outcome: problems.length === 0 ? 'passed' : 'failed',
      checks: [
        {
          name: 'files-hash',
          status: problems.length === 0 ? 'passed' : 'failed',
          detail: problems.length === 0 ? `${manifest.entries.length} files match the proven manifest (hashed on ${target.name})` : problems.slice(0, 10).map((m) => `${m.path}: ${m.problem}`).join('; '),
        },
      ],
    });
    return;
  }
  if (item.kind === 'database') {
    const engine = remoteEngine(ctx, item);
    const staging = path.posix.join(ctx.runbook.target.workDir, 'landing', ctx.runId, enc(pick.id));
    await sh(target, 'rm -rf -- "$1" && mkdir -p -- "$1/files"', staging);
    const grant = await remote(ctx).grants.acquire(vault, target, 'read');
    await vault.restoreTo(run, target, grant, { artifactId: pick.id, locator: pick.locators?.[vault.info.name] ?? '', dest: `${staging}/files`, stepId: `${pick.id}/land/${vault.info.name}`, srcDir: pick.sourceDir ?? '' });
    const v = await verifyTreeOn(ctx.steps.onMachine, target, { id: `${pick.id}/land-files-${ctx.state().resumes}`, idempotent: true }, `${staging}/files`, manifest.entries);
    if (!v.ok) throw new RubiconError('LANDING_FAILED', `the copy of ${pick.id} from vault ${vault.info.name} does not match its manifest on ${target.name}`);
    const ectx: RemoteEngineContext = { machine: target, steps: ctx.steps, stepPrefix: `${pick.id}/land/`, workDir: `${staging}/db` };
    const destPath = onTarget(ctx, item.location);
    await sh(target, 'mkdir -p -- "$(dirname -- "$1")"', destPath);
    await engine.restore(ectx, item, manifest, manifest.entries.map((e) => path.posix.join(`${staging}/files`, e.path)), destPath);
    ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: vault.info.name, bytes: pick.bytes, durationMs: Math.round(performance.now() - t0) });
    const proof = s.proofs.find((p) => p.artifactId === pick.id && p.outcome === 'passed');
    const fp = await engine.fingerprint(ectx, destPath);
    const cmp = proof?.fingerprint ? compareFingerprints(proof.fingerprint, fp) : { equal: false, differences: ['no proof fingerprint'] };
    await sh(target, 'rm -rf -- "$1"', staging).catch(() => undefined);
    ctx.record({
      type: 'landing.validated',
      itemId: item.id,
      artifactId: pick.id,
      outcome: cmp.equal ? 'passed' : 'failed',
      checks: [{ name: 'fingerprint-proof', status: cmp.equal ? 'passed' : 'failed', detail: cmp.equal ? `fingerprint on the rebuilt target equals the proof (${fp.tables.length} tables)` : cmp.differences.slice(0, 10).join('; ') }],
    });
    return;
  }
  throw new RubiconError('LANDING_FAILED', `landing ${item.kind} items on a remote target is not built yet`);
}

/** The artifact to land for an item: Rubicon's own proven current artifacts first, in the item's method order. */
export function pickArtifact(ctx: RunContext, item: Item): Artifact | undefined {
  const s = ctx.state();
  const passed = (a: Artifact) => s.proofs.some((p) => p.artifactId === a.id && p.outcome === 'passed');
  const candidates = currentArtifacts(s.artifacts).filter((a) => a.itemId === item.id && passed(a));
  const own = candidates.filter((a) => a.origin === 'rubicon').sort((a, b) => item.methods.indexOf(a.method) - item.methods.indexOf(b.method));
  return own[0] ?? candidates[0];
}

export { shQuote };
