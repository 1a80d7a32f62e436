import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { RubiconError, ToolFailure, isRubiconError, outOfSpace, stopsTheRun } from '../core/errors.ts';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { latestDrift, latestPreflight, type RunState } from '../core/state.ts';
import type { Artifact, Copy, DriftChange, GateFacts, Item, LandingPreflight, Proof, ProofCheck } from '../core/types.ts';
import type { DatabaseEngine, EngineContext } from '../engines/engine.ts';
import { compareFingerprints } from '../engines/fingerprint.ts';
import { captureFiles, captureTree } from '../files/capture.ts';
import { scanDrift } from '../files/drift.ts';
import { readManifest } from '../files/manifest.ts';
import { restoreTree, verifyTree } from '../files/restore.ts';
import { currentArtifacts } from '../gate/current.ts';
import { evaluateGate, reliedOnProofs } from '../gate/evaluate.ts';
import { checkPermit, issuePermit, proofSetHash } from '../gate/permit.ts';
import { signPermit, verifySignedPermit } from '../trust/permit.ts';
import { verifierFrom } from '../trust/keys.ts';
import { auditRecords } from './audit.ts';
import { headOf, storeHead, type HeadStage } from './heads.ts';
import type { ManualDriver } from '../infra/manual.ts';
import { buildChecklist } from '../inventory/checklist.ts';
import { captureEverything, captureEverythingDelta, discoverCoverage, landVolume, mapCoverage, scanVolume } from '../coverage/index.ts';
import { vendorBackups } from '../inventory/vendor-output.ts';
import { discoverFolders, folderExcludes } from '../inventory/folders.ts';
import { thisHostName, type LocalHost } from '../hosts/local.ts';
import type { Host } from '../hosts/host.ts';
import { knownHostKeys, osReleaseMatches } from '../machines/identity.ts';
import type { TransportSettings } from '../runbook/load.ts';
import { VAULT_PASSWORD_METHOD, captureDatabaseRemote, captureVaultSecretRemote, proveRemote, vaultSecretItems } from './remote.ts';
import { discoverNetworkEngines, engineHost, networkEngineOf, networkEngines, proveNetworkArtifacts, storeNetworkFiles } from './network-engines.ts';
import { writeReports, type ReportOptions } from '../report/index.ts';
import type { RunContext } from './context.ts';
import { signIndexEntry } from '../trust/index-entry.ts';
import type { ArtifactIndexEntry } from '../vaults/vault.ts';
import { proveIsolated } from './isolation.ts';
import { checkpoint } from './faults.ts';

/**
 * The phases. Each one is idempotent against the journal: it skips what the
 * state says is done and redoes what was started and not finished, so
 * resume after kill -9 is the normal path. Destructive steps: only
 * `crossing` (through InfraDriver.cross, behind a passing gate and a valid
 * permit) and `landing` (writes onto the rebuilt target).
 */

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const errCode = (e: unknown) => (isRubiconError(e) ? e.code : 'INTERNAL');

function engineFor(ctx: RunContext, item: Item): DatabaseEngine {
  const engine = item.engine ? ctx.engines[item.engine] : undefined;
  if (!engine) throw new RubiconError('ENGINE_FAILED', `no engine "${item.engine}" for ${item.id}`);
  return engine;
}

/** The target's files on this computer (local transport only). */
function lt(ctx: RunContext): LocalHost {
  if (!ctx.localTarget) throw new RubiconError('INTERNAL', 'a local-only phase step ran on a remote target');
  return ctx.localTarget;
}

function engineCtx(ctx: RunContext, host?: Host, sub = 'engine'): EngineContext {
  // A network engine on a remote target gets a host with no files (src/run/network-engines.ts).
  return { host: host ?? engineHost(ctx), workDir: path.join(ctx.paths.work, sub), signal: ctx.signal };
}

/** Files owned by database items, relative to the target root: never part of a folder capture. */
function ownedFiles(items: Item[]): string[] {
  return items
    // A database that lives in a server (SQL Server: `mssql://SERVER/db`) owns no file under the target root.
    .filter((i) => i.kind === 'database' && i.discovered && !/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(i.location))
    .flatMap((i) => [i.location, `${i.location}-wal`, `${i.location}-shm`, `${i.location}-journal`]);
}

function folderExcludeFor(ctx: RunContext, item: Item): string[] {
  const items = ctx.state().items;
  return folderExcludes(
    item.location,
    items.filter((i) => i.kind === 'folder').map((i) => i.location),
    ownedFiles(items),
    ctx.runbook.discovery.exclude,
  );
}

/**
 * A tool that failed may have printed patient data: its output is written to
 * a log file beside the run (mode 0600), and the journal keeps only the
 * file's path, SHA-256 and line count (src/run/steps.ts does the same for steps).
 */
function keepToolOutput(ctx: RunContext, artifactId: string, e: unknown): void {
  if (!(e instanceof ToolFailure)) return;
  const dir = path.join(ctx.paths.dir, 'logs');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${createHash('sha256').update(artifactId).digest('hex').slice(0, 16)}-tool.log`);
  const text = `# ${artifactId}\n# --- stdout\n${e.output.stdout}\n# --- stderr\n${e.output.stderr}\n`;
  writeFileSync(file, text, { mode: 0o600 });
  ctx.record({
    type: 'note',
    level: 'info',
    message: `the tool's output is kept in ${path.relative(ctx.paths.dir, file)} (SHA-256 ${createHash('sha256').update(text).digest('hex')}, ${text.split('\n').length - 1} lines): it is not copied into the journal or the reports`,
  });
}

// ------------------------------------------------------------- discover

/**
 * Asks every configured engine (sqlite always; mssql when the runbook has
 * its section) what it finds, each with the declared databases of its own
 * kind, and merges the items with the folders. Read-only. Instance-level
 * items (logins, jobs, certificates, …) keep the methods their engine gave
 * them; databases get the runbook's methods for their engine, the vendor's
 * job first when one is declared for them.
 */
export async function discover(ctx: RunContext): Promise<void> {
  if (ctx.remote) {
    await identifyTarget(ctx);
    await discoverOnRemote(ctx);
    return discoverCoverage(ctx); // coverage hook (src/coverage): the scope of destruction and its everything items
  }
  const rb = ctx.runbook;
  const ectx = engineCtx(ctx);
  await mkdir(ectx.workDir, { recursive: true });
  const found: Item[] = [];
  for (const [kind, engine] of Object.entries(ctx.engines)) {
    found.push(
      ...(await engine.discover(ectx, {
        roots: rb.discovery.roots,
        declared: rb.declared.databases.filter((d) => d.engine === kind).map((d) => ({ name: d.name, location: d.location })),
      })),
    );
  }
  const allDatabases = found.filter((i) => i.kind === 'database');
  const instanceItems = found.filter((i) => i.kind !== 'database');
  // Backups the vendor's job wrote earlier are files of its output folder, not live databases (the live one stays: src/inventory/vendor-output.ts).
  const databases = allDatabases.filter((d) => !vendorBackups(allDatabases, rb.vendorJobs).has(d.id));
  const folders = await discoverFolders({
    targetRoot: rb.target.root,
    roots: rb.discovery.roots,
    depth: rb.discovery.depth,
    exclude: rb.discovery.exclude,
    declared: rb.declared.folders,
    ownedFiles: ownedFiles(databases),
  });
  methodsFor(ctx, databases, folders, (db) => rb.methods.databases[db.engine ?? ''] ?? Object.keys(ctx.engines[db.engine ?? '']?.methods ?? {}));
  recordDiscovered(ctx, databases, instanceItems, folders);
  await discoverCoverage(ctx); // coverage hook (src/coverage): the scope of destruction and its everything items
}

function methodsFor(ctx: RunContext, databases: Item[], folders: Item[], engineMethods: (db: Item) => string[]): void {
  const rb = ctx.runbook;
  const jobsOf = (db: Item) => rb.vendorJobs.filter((j) => j.database === db.name && j.engine === db.engine);
  for (const db of databases) {
    const jobs = jobsOf(db);
    // "Run our backup job first": the vendor's job goes before our own methods.
    db.methods = [...(jobs.length > 0 ? ['vendor-job'] : []), ...engineMethods(db).filter((m) => m !== 'vendor-job')];
    if (jobs.length > 0) db.why.push(`the vendor's backup job "${jobs[0]!.name}" backs it up`);
    if (db.facts.system !== true) db.why.push('the EHR database is the practice\'s business: captured by independent methods');
  }
  for (const f of folders) f.methods = f.facts.missing ? [] : [...rb.methods.folders];
  for (const j of rb.vendorJobs) {
    if (!databases.some((d) => d.name === j.database && d.engine === j.engine)) {
      ctx.record({ type: 'note', level: 'error', message: `vendor job "${j.name}" names ${j.engine} database "${j.database}", which discovery did not find` });
    }
  }
}

function recordDiscovered(ctx: RunContext, databases: Item[], instanceItems: Item[], folders: Item[]): void {
  const done = new Set(ctx.state().items.map((i) => i.id));
  for (const item of [...databases, ...instanceItems, ...folders]) {
    if (!done.has(item.id)) ctx.record({ type: 'item.discovered', item });
  }
}

/** Discovery on a remote target: the engines' CLIs and find run there (src/run/remote.ts). */
async function discoverOnRemote(ctx: RunContext): Promise<void> {
  const rb = ctx.runbook;
  const live = (dbs: Item[]) => dbs.filter((d) => !vendorBackups(dbs, rb.vendorJobs).has(d.id));
  const found = await ctx.remote!.plane.discover(ctx, (dbs) => ownedFiles(live(dbs)));
  // Engines that reach their own servers over the network (SQL Server) find their items there, whatever the target's OS.
  const served = await discoverNetworkEngines(ctx);
  const databases = live([...found.databases, ...served.filter((i) => i.kind === 'database')]);
  methodsFor(ctx, databases, found.folders, (db) => rb.methods.databases[db.engine ?? ''] ?? Object.keys((ctx.remote?.engines[db.engine ?? ''] ?? ctx.engines[db.engine ?? ''])?.methods ?? {}));
  // The password of each restic vault, as an item to capture (Linux targets: the same phases that prove from those vaults).
  recordDiscovered(ctx, databases, [...served.filter((i) => i.kind !== 'database'), ...(ctx.remote!.plane.os === 'linux' ? vaultSecretItems(ctx) : [])], found.folders);
}

/** Who the target is before the crossing (machine id, OS), so landing can refuse the old server. Once per run. */
async function identifyTarget(ctx: RunContext): Promise<void> {
  if (ctx.state().targetIdentity) return;
  const id = await ctx.remote!.plane.identify(ctx, ctx.target);
  const t = ctx.runbook.target.transport;
  const hostKeys = sshTransport(t) ? await knownHostKeys(t.knownHosts, t.host, t.port) : [];
  // A transport that reaches the machine through its platform (azure-run-command) also says which VM instance it reaches.
  const platform = ctx.target.platformIdentity ? await ctx.target.platformIdentity(ctx.signal) : undefined;
  ctx.record({ type: 'target.identified', machine: ctx.target.name, machineId: id.machineId, osRelease: id.osRelease, hostKeys, ...(platform ? { platform } : {}) });
}

/** The transports reached over OpenSSH, whose host key says which server answered. */
function sshTransport(t: TransportSettings): t is Extract<TransportSettings, { kind: 'ssh' | 'openssh-windows' }> {
  return t.kind === 'ssh' || t.kind === 'openssh-windows';
}

// ------------------------------------------------------------- capture

/** Deterministic, so a redo after a crash reuses it; a final capture after a second freeze gets its own. */
function artifactId(ctx: RunContext, phase: Artifact['phase'], item: Item, method: string): string {
  const round = phase === 'final-capture' ? ctx.state().freezeRound : 1;
  return `${ctx.runId}.${phase}${round > 1 ? `-${round}` : ''}.${item.id}.${method}`;
}

async function captureDatabase(ctx: RunContext, item: Item, method: string, phase: Artifact['phase']): Promise<void> {
  const id = artifactId(ctx, phase, item, method);
  const s = ctx.state();
  if (s.artifacts.some((a) => a.id === id) || s.captureFailures.some((f) => f.artifactId === id)) return;
  if (ctx.remote && !networkEngineOf(ctx, item)) {
    const info = ctx.remote.engines[item.engine ?? '']?.methods[method];
    const vendor = method === 'vendor-job';
    return captureDatabaseRemote(ctx, item, method, phase, id, { origin: vendor ? 'vendor' : (info?.origin ?? 'rubicon'), independenceGroup: vendor ? 'vendor' : (info?.independenceGroup ?? method) });
  }
  const engine = engineFor(ctx, item);
  const info = engine.methods[method];
  ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
  const startedAt = ctx.now().toISOString();
  const ectx = engineCtx(ctx, undefined, `capture/${encodeURIComponent(id)}`);
  try {
    await rm(ectx.workDir, { recursive: true, force: true });
    await mkdir(ectx.workDir, { recursive: true });
    // Fingerprints are per-table: only databases have them.
    const sourceFingerprint = item.kind === 'database' ? await engine.fingerprint(ectx, item) : undefined;
    const vendorJob = ctx.runbook.vendorJobs.find((j) => j.database === item.name && j.engine === item.engine);
    const captured = await engine.capture(ectx, item, method, { vendorJob });
    // An artifact the engine wrote straight into one vault (BACKUP TO URL) is stored, indexed and counted there only.
    const vaults = captured.vaults ? ctx.vaults.filter((v) => captured.vaults!.includes(v.info.name)) : ctx.vaults;
    if (captured.vaults && vaults.length !== captured.vaults.length) {
      throw new RubiconError('CAPTURE_FAILED', `${item.id} (${method}): the capture is in vault(s) ${captured.vaults.join(', ')}, which this run does not have`, { hint: 'name a vault of the runbook' });
    }
    // A network engine on a remote target: its few small files, made here, go into every vault as documents (tool vaults too).
    const store = ctx.remote ? storeNetworkFiles : captureFiles;
    const stored = await store({
      files: captured.files,
      vaults,
      artifactId: id,
      itemId: item.id,
      method,
      runId: ctx.runId,
      format: captured.format,
    });
    checkpoint(`capture.stored.${phase}`);
    const artifact: Artifact = {
      id,
      runId: ctx.runId,
      itemId: item.id,
      method,
      independenceGroup: info?.independenceGroup ?? method,
      phase,
      origin: info?.origin ?? 'rubicon',
      manifestHash: stored.manifestHash,
      fileCount: stored.fileCount,
      bytes: stored.bytes,
      ...(sourceFingerprint ? { sourceFingerprint } : {}),
      ...(captured.vaults ? { vaults: vaults.map((v) => v.info.name) } : {}),
      provenance: {
        method,
        tool: captured.tool,
        host: ctx.target.name,
        startedAt,
        finishedAt: ctx.now().toISOString(),
        position: captured.position,
        command: captured.command,
      },
    };
    await indexArtifact(ctx, artifact, vaults);
    ctx.record({ type: 'artifact.captured', artifact });
  } catch (e) {
    // A remote run's vaults are machines too: an unreachable vault host or a wrong restic password stops it, as in src/run/remote.ts.
    const full = ctx.remote ? stopsTheRun(e) : outOfSpace(e);
    if (full) throw full;
    if (ctx.remote && ctx.signal?.aborted) throw e;
    keepToolOutput(ctx, id, e);
    ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
  } finally {
    await rm(ectx.workDir, { recursive: true, force: true });
  }
}

/** Index entries are signed by the run's key, so a vault read without the journal can tell a forged entry. */
function signedEntry(ctx: RunContext, e: ArtifactIndexEntry): ArtifactIndexEntry {
  return ctx.signer ? signIndexEntry(e, ctx.signer) : e;
}

async function indexArtifact(ctx: RunContext, a: Artifact, vaults = ctx.vaults): Promise<void> {
  for (const v of vaults) {
    await v.putArtifactIndex(signedEntry(ctx, {
      artifactId: a.id,
      runId: a.runId,
      itemId: a.itemId,
      method: a.method,
      manifestHash: a.manifestHash,
      capturedAt: a.provenance.finishedAt,
      origin: a.origin,
      independenceGroup: a.independenceGroup,
      sourceFingerprint: a.sourceFingerprint,
    }));
  }
}

async function captureFolder(ctx: RunContext, item: Item, phase: Artifact['phase'], base?: Artifact): Promise<void> {
  if (ctx.remote) {
    const current = currentArtifacts(ctx.state().artifacts).filter((a) => a.itemId === item.id && a.phase !== phase);
    return ctx.remote.plane.captureFolder(
      ctx,
      item,
      phase,
      folderExcludeFor(ctx, item),
      (method) => artifactId(ctx, phase, item, method),
      (method) => (base ? current.filter((a) => a.method === method).at(-1) : undefined),
    );
  }
  const method = 'file-mirror';
  const id = artifactId(ctx, phase, item, method);
  if (ctx.state().artifacts.some((a) => a.id === id)) return;
  ctx.record({ type: 'capture.started', itemId: item.id, method, artifactId: id });
  const startedAt = ctx.now().toISOString();
  try {
    // The base manifest streams from the vault (never held whole in memory twice).
    const baseManifest = base ? { vault: ctx.vaults[0]!, manifestHash: base.manifestHash } : undefined;
    const result = await captureTree({
      sourceRoot: lt(ctx).resolve(item.location),
      vaults: ctx.vaults,
      artifactId: id,
      itemId: item.id,
      method,
      runId: ctx.runId,
      base: baseManifest,
      exclude: folderExcludeFor(ctx, item),
      signal: ctx.signal,
      onProgress: (done, total) => ctx.progress({ type: 'progress', step: `capture ${item.name}`, done, total, unit: 'bytes' }),
    });
    checkpoint(`capture.stored.${phase}`);
    // What the vaults said about the objects they already held: damage repaired, or not repairable (WORM).
    for (const r of result.repaired) ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `vault ${r.vault}: a damaged copy of an object of ${item.name} was replaced (${r.path})` });
    for (const r of result.unrepairable) ctx.record({ type: 'note', level: 'error', itemId: item.id, message: `vault ${r.vault}: a damaged copy of an object of ${item.name} cannot be replaced there (${r.path}): that vault's copy will not count` });
    if (result.skipped.length > 0) {
      ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `${item.name}: ${result.skipped.length} entries could not be captured (${result.skipped.slice(0, 5).map((x) => `${x.path}: ${x.kind}`).join(', ')})` });
    }
    const artifact: Artifact = {
      id,
      runId: ctx.runId,
      itemId: item.id,
      method,
      independenceGroup: method,
      phase,
      origin: 'rubicon',
      manifestHash: result.manifestHash,
      fileCount: result.fileCount,
      bytes: result.bytes,
      ...(base ? { baseArtifactId: base.id, changed: result.changed ?? [] } : {}),
      provenance: { method, tool: 'rubicon file-mirror (SHA-256 manifest)', host: ctx.target.name, startedAt, finishedAt: ctx.now().toISOString() },
    };
    await indexArtifact(ctx, artifact);
    ctx.record({ type: 'artifact.captured', artifact });
  } catch (e) {
    const full = outOfSpace(e);
    if (full) throw full;
    keepToolOutput(ctx, id, e);
    ctx.record({ type: 'capture.failed', itemId: item.id, method, artifactId: id, code: errCode(e), message: errText(e) });
  }
}

/** The secret items of vaults whose password Rubicon captures (src/run/remote.ts, VAULT_PASSWORD_METHOD). */
function vaultSecrets(ctx: RunContext, items: readonly Item[]): Item[] {
  return ctx.remote ? items.filter((i) => i.kind === 'secret' && i.discovered && i.methods.includes(VAULT_PASSWORD_METHOD)) : [];
}

export async function capture(ctx: RunContext): Promise<void> {
  await preflightBeforeCapture(ctx);
  const items = ctx.state().items;
  // Databases first: the vendor's job writes into a folder we capture next.
  for (const item of items.filter((i) => i.kind === 'database' && i.discovered)) {
    for (const method of item.methods) await captureDatabase(ctx, item, method, 'capture');
  }
  // Engine-level items (logins, jobs, certificates, ...): what rebuilds forget.
  for (const item of items.filter((i) => i.kind !== 'database' && i.kind !== 'folder' && i.engine && i.discovered)) {
    for (const method of item.methods) await captureDatabase(ctx, item, method, 'capture');
  }
  for (const item of items.filter((i) => i.kind === 'folder' && i.discovered)) {
    await captureFolder(ctx, item, 'capture');
  }
  for (const item of vaultSecrets(ctx, items)) await captureVaultSecretRemote(ctx, item, 'capture', artifactId(ctx, 'capture', item, VAULT_PASSWORD_METHOD));
  await captureEverything(ctx); // coverage hook: the everything capture of each volume, after the folders (their objects are reused)
  await mapCoverage(ctx, 'capture'); // coverage hook: every file in scope → artifacts / owner / exclusion
}

// ------------------------------------------------------------- landing preflight

/** Whether this run goes on to a crossing (an upgrade, or a rehearsal on a staging target). */
function willCross(ctx: RunContext): boolean {
  const command = ctx.state().command;
  return command === 'upgrade' || (command === 'rehearse' && ctx.runbook.target.stage === 'staging');
}

/**
 * Asks every engine with a landing preflight (DatabaseEngine.preflight,
 * optional) whether the server the target lands on can take that engine's
 * items, and journals each answer (`preflight.checked`). Read-only. An
 * engine whose preflight throws gets one failed check naming why (fail
 * closed: "could not check" is never "fine"). Engines without the hook and
 * engines with no discovered item are not asked. On a remote target only
 * the network engines (src/run/network-engines.ts) are asked: the remote
 * CLI engines (src/run/remote.ts) have no preflight.
 */
async function landingPreflight(ctx: RunContext, stage: LandingPreflight['stage']): Promise<LandingPreflight[]> {
  if (!ctx.remote && !ctx.localTarget) return [];
  const items = ctx.state().items.filter((i) => i.discovered);
  const out: LandingPreflight[] = [];
  // On a remote target only the network engines (their landing server is reached from here); remote CLI engines have no preflight.
  for (const [kind, engine] of ctx.remote ? networkEngines(ctx) : Object.entries(ctx.engines)) {
    if (!engine.preflight) continue;
    const mine = items.filter((i) => i.engine === kind);
    if (mine.length === 0) continue;
    const t0 = performance.now();
    let checks: ProofCheck[];
    try {
      const ectx = engineCtx(ctx, undefined, 'preflight');
      await mkdir(ectx.workDir, { recursive: true });
      checks = await engine.preflight(ectx, mine);
    } catch (e) {
      if (ctx.signal?.aborted) throw e;
      checks = [{ name: 'preflight', status: 'failed', detail: `the ${kind} engine could not check the server the target lands on: ${errText(e)}`, durationMs: Math.round(performance.now() - t0) }];
    }
    const preflight: LandingPreflight = { engine: kind, stage, checks, checkedAt: ctx.now().toISOString() };
    ctx.record({ type: 'preflight.checked', preflight });
    out.push(preflight);
  }
  return out;
}

/**
 * Before anything is captured: a run that will cross stops here, refused
 * (exit 2, nothing captured, nothing touched), when an engine says the
 * server the target lands on cannot take what it would capture (a SQL
 * Server older than the source's, a lower edition while features of the
 * higher one are in use, Express's 10 GB). Hours of capture and proof for
 * a crossing the gate must refuse are not spent. A rehearsal records the
 * same answer as an error note and goes on (it proves backups; the gate is
 * not its business). The gate asks again right before it decides.
 */
async function preflightBeforeCapture(ctx: RunContext): Promise<void> {
  const failed = (await landingPreflight(ctx, 'capture')).filter((p) => p.checks.some((c) => c.status !== 'passed'));
  if (failed.length === 0) return;
  const why = failed.map((p) => `${p.engine}: ${p.checks.filter((c) => c.status !== 'passed').map((c) => `${c.name}: ${c.detail}`).join('; ')}`).join('; ');
  if (!willCross(ctx)) {
    ctx.record({ type: 'note', level: 'error', message: `an upgrade of this target would be refused before capture: the server it lands on cannot take what it runs now (${why})` });
    return;
  }
  throw new RubiconError('PREFLIGHT_REFUSED', `refusing to capture for this upgrade: the server the target lands on cannot take what it runs now (${why}). Nothing was captured or changed`, {
    hint: 'fix the landing server (version, edition, collation), or the runbook\'s declaration of it (engines.mssql.landingServer), then start the upgrade again',
  });
}

// ------------------------------------------------------------- prove

/**
 * Proves artifacts on the proving ground (src/run/prover.ts), confined by
 * src/run/isolation.ts, and records each copy grade and proof as it comes.
 * Idempotent: artifacts already proven in this run are skipped.
 */
export async function proveArtifacts(ctx: RunContext, artifacts: Artifact[]): Promise<void> {
  const done = new Set(ctx.state().proofs.map((p) => p.id));
  const todo = artifacts.filter((a) => !done.has(`${a.id}.proof`));
  if (todo.length === 0) return;
  const pg = await ctx.infra.provisionProvingGround(ctx.runId);
  let n = 0;
  ctx.progress({ type: 'progress', step: 'prove', done: 0, total: todo.length, unit: 'items' });
  if (ctx.remote) {
    const recordOne = (copies: Copy[], proof: Proof) => {
      const s = ctx.state();
      for (const copy of copies) {
        if (!s.copies.some((c) => c.artifactId === copy.artifactId && c.vault === copy.vault)) ctx.record({ type: 'copy.checked', copy });
      }
      ctx.record({ type: 'proof.recorded', proof });
      ctx.progress({ type: 'progress', step: 'prove', done: ++n, total: todo.length, unit: 'items' });
    };
    // Artifacts of network engines (SQL Server) are proven from here against the proving ground's server; the rest on the proving ground machine.
    const items = ctx.state().items;
    const served = todo.filter((a) => networkEngineOf(ctx, items.find((i) => i.id === a.itemId)));
    const onMachine = todo.filter((a) => !served.includes(a));
    if (onMachine.length > 0) await proveRemote(ctx, onMachine, recordOne);
    await proveNetworkArtifacts(ctx, served, (out) => recordOne(out.copies, out.proof));
    await ctx.infra.destroyProvingGround(ctx.runId);
    return;
  }
  await proveIsolated(ctx, pg, todo, (out) => {
    const s = ctx.state();
    for (const copy of out.copies) {
      if (!s.copies.some((c) => c.artifactId === copy.artifactId && c.vault === copy.vault)) ctx.record({ type: 'copy.checked', copy });
    }
    ctx.record({ type: 'proof.recorded', proof: out.proof });
    ctx.progress({ type: 'progress', step: 'prove', done: ++n, total: todo.length, unit: 'items' });
  }, (denied) => {
    ctx.record({
      type: 'note',
      level: 'info',
      message: `proving ground isolation checked: the proving process (Node permission model) was refused reading ${denied.join(' and ')}`,
    });
  });
  await ctx.infra.destroyProvingGround(ctx.runId);
}

export async function prove(ctx: RunContext): Promise<void> {
  await proveArtifacts(ctx, currentArtifacts(ctx.state().artifacts));
}

// ------------------------------------------------------------- drift

/**
 * What changed since the artifact. `undefined` = this kind of item cannot be
 * scanned yet: no scan is recorded, so the gate sees "drift unknown" and
 * refuses rather than being told "no drift" by a scan that never looked.
 */
async function scanItem(ctx: RunContext, item: Item, artifact: Artifact, stage: string): Promise<DriftChange[] | undefined> {
  if (item.kind === 'volume') return scanVolume(ctx, item, artifact, stage); // coverage hook
  if (ctx.remote && !networkEngineOf(ctx, item)) return ctx.remote.plane.drift(ctx, item, artifact, folderExcludeFor(ctx, item), stage);
  if (item.kind === 'folder') {
    return scanDrift(lt(ctx).resolve(item.location), { vault: ctx.vaults[0]!, manifestHash: artifact.manifestHash }, { exclude: folderExcludeFor(ctx, item) });
  }
  if (item.kind === 'database') {
    const engine = engineFor(ctx, item);
    const now = await engine.fingerprint(engineCtx(ctx), item);
    const before = artifact.sourceFingerprint;
    if (before && compareFingerprints(before, now).equal) return [];
    return [{ path: item.location, kind: 'modified' }];
  }
  // Other items (instance-level objects): the engine's own drift check, when it has one.
  const engine = item.engine ? ctx.engines[item.engine] : undefined;
  if (!engine?.drift) return undefined;
  // The vaults that hold the artifact (all of them, unless it names its own).
  const holders = artifact.vaults ? ctx.vaults.filter((v) => artifact.vaults!.includes(v.info.name)) : ctx.vaults;
  const manifest = await readManifest(holders[0] ?? ctx.vaults[0]!, artifact.manifestHash);
  const scratch = path.join(ctx.paths.work, 'drift', encodeURIComponent(artifact.id));
  await rm(scratch, { recursive: true, force: true });
  try {
    await restoreTree({ vaults: holders, manifest, destRoot: scratch, exact: true });
    const files = manifest.entries.map((e) => path.join(scratch, e.path));
    return await engine.drift(engineCtx(ctx, undefined, path.join('drift', 'engine')), item, manifest, files);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function driftScan(ctx: RunContext, stage: 'freeze' | 'pre-gate'): Promise<void> {
  const s = ctx.state();
  const current = currentArtifacts(s.artifacts);
  // Freeze scans done before a crash are kept; the pre-gate scan is always
  // taken afresh right before the gate (it is read-only and cheap).
  const recorded = new Set(stage === 'freeze' ? latestDrift(s, 'freeze').map((d) => d.itemId) : []);
  for (const item of s.items.filter((i) => i.discovered)) {
    if (recorded.has(item.id)) continue;
    // Compare against the newest artifact of a method that succeeded (the vendor's counts too: it read the same source).
    const mine = current.filter((a) => a.itemId === item.id);
    const newest = mine.filter((a) => a.origin === 'rubicon').at(-1) ?? mine.at(-1);
    if (!newest) continue;
    const changes = await scanItem(ctx, item, newest, stage);
    if (changes === undefined) {
      if (stage === 'pre-gate') ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `drift of ${item.kind} items cannot be checked yet: ${item.id} has no drift scan, so the gate cannot pass it` });
      continue;
    }
    ctx.record({ type: 'drift.scanned', drift: { itemId: item.id, artifactId: newest.id, stage, changes, scannedAt: ctx.now().toISOString() } });
  }
}

export async function freeze(ctx: RunContext): Promise<void> {
  const s0 = ctx.state();
  const newRound = s0.reopenedAt !== undefined && (s0.frozenAt === undefined || Date.parse(s0.reopenedAt) >= Date.parse(s0.frozenAt));
  if (s0.frozen && newRound) {
    // Still frozen (the run died after its gate): a new round of drift scans from now on.
    ctx.record({ type: 'target.frozen' });
  } else if (!s0.frozen) {
    await ctx.infra.freeze(ctx.runId);
    const units = ctx.runbook.target.services;
    if (units.length > 0 && ctx.remote) await ctx.remote.plane.freeze(ctx, units);
    ctx.record({ type: 'target.frozen' });
  }
  await driftScan(ctx, 'freeze');
}

/** Undoes freeze: the infra's own, then the services exactly as they were found. Idempotent. */
export async function thaw(ctx: RunContext): Promise<void> {
  await ctx.infra.thaw(ctx.runId);
  if (ctx.remote && ctx.runbook.target.services.length > 0) await ctx.remote.plane.thaw(ctx, ctx.runbook.target.services);
  ctx.record({ type: 'target.thawed' });
}

// ------------------------------------------------------------- final capture

/** Captures again what drifted after freeze (only what changed, for folders) and proves it. */
export async function finalCapture(ctx: RunContext): Promise<void> {
  const s = ctx.state();
  const drifted = latestDrift(s, 'freeze').filter((d) => d.changes.length > 0);
  for (const d of drifted) {
    const item = s.items.find((i) => i.id === d.itemId)!;
    if (item.kind === 'folder') {
      const base = s.artifacts.find((a) => a.id === d.artifactId)!;
      await captureFolder(ctx, item, 'final-capture', base);
    } else if (item.kind === 'database') {
      for (const method of item.methods.filter((m) => m !== 'vendor-job')) await captureDatabase(ctx, item, method, 'final-capture');
    } else if (vaultSecrets(ctx, [item]).length > 0) {
      // The vault's password changed since it was captured: the new one is captured (and proven) again.
      await captureVaultSecretRemote(ctx, item, 'final-capture', artifactId(ctx, 'final-capture', item, VAULT_PASSWORD_METHOD));
    }
  }
  await captureEverythingDelta(ctx); // coverage hook: a delta of each everything capture that drifted
  const finals = ctx.state().artifacts.filter((a) => a.phase === 'final-capture');
  await proveArtifacts(ctx, finals);
  await mapCoverage(ctx, 'final-capture'); // coverage hook: the map the gate reads
}

// ------------------------------------------------------------- gate

/** The gate's facts: from the journal's state and nothing else. */
export function gateFacts(s: RunState, now: Date): GateFacts {
  return {
    now: now.toISOString(),
    policy: s.policy,
    items: s.items,
    artifacts: s.artifacts,
    copies: s.copies,
    proofs: s.proofs,
    drift: latestDrift(s, 'pre-gate'),
    vaults: s.vaults,
    manualSteps: s.manualSteps,
    overrides: s.overrides,
    rollbackPoint: s.rollbackPoint,
    // coverage (docs/coverage.md): what the crossing destroys and the newest map
    ...(s.scope ? { scope: s.scope } : {}),
    ...(s.coverageMaps?.length ? { coverage: s.coverageMaps.at(-1)! } : {}),
    // landing preflight: the newest per engine (the gate refuses one not taken right before it)
    ...(s.preflights?.length ? { preflight: latestPreflight(s) } : {}),
  };
}

export interface GateOutcome {
  passed: boolean;
}

/** Rollback point, a last drift scan, the gate, the permit. Never destructive. */
export async function gate(ctx: RunContext): Promise<GateOutcome> {
  const rb = ctx.runbook;
  // A manual crossing has a rollback point only when the runbook describes the engineer's own (the gate says so otherwise).
  const canRollback = !(rb.infra.kind === 'manual' && !rb.infra.rollback);
  if (!ctx.state().rollbackPoint && rb.policy.requireRollbackPoint && canRollback) {
    const point = await ctx.infra.createRollbackPoint(ctx.runId);
    ctx.record({ type: 'rollback.created', rollbackPoint: point });
  }
  // Always afresh: this phase runs only when it is not done, and a resume
  // that reaches it (after a crash, after a thaw and a new freeze) must see
  // the drift and proofs as they are now, never a recorded verdict.
  await driftScan(ctx, 'pre-gate');
  // The server the target lands on, asked again right before the verdict (landing.preflight).
  await landingPreflight(ctx, 'pre-gate');
  let s = ctx.state();
  const facts = gateFacts(s, ctx.now());
  const result = evaluateGate(facts);
  ctx.record({ type: 'gate.evaluated', result });
  s = ctx.state();
  gatedHere.add(ctx);
  if (!result.passed) return { passed: false };
  const stale = s.permit && (s.permit.proofSetHash !== proofSetHash(reliedOnProofs(facts)) || !checkPermit(s.permit, { image: rb.target.image, now: ctx.now(), target: rb.target.name }).valid);
  if (!s.permit || stale) {
    const permit = issuePermit({
      runId: ctx.runId,
      target: rb.target.name,
      image: rb.target.image,
      gate: s.gate!,
      proofs: reliedOnProofs(gateFacts(s, ctx.now())),
      now: ctx.now(),
      validForMinutes: rb.permit.validForMinutes,
      maxProofAgeHours: s.policy.maxProofAgeHours,
    });
    const signed = ctx.signer ? signPermit(permit, ctx.signer) : undefined;
    ctx.record({ type: 'permit.issued', permit, ...(signed ? { keyId: signed.keyId, signature: signed.signature } : {}) });
  }
  await storeJournalHead(ctx, 'gate');
  return { passed: true };
}

/**
 * Writes the journal's head into every vault that keeps run documents
 * (src/run/heads.ts) and records where. A vault that cannot take it is
 * named in a warning, never fatal: the head is evidence for `rubicon
 * audit`, and the copies the landing needs were checked by the gate.
 */
async function storeJournalHead(ctx: RunContext, stage: HeadStage): Promise<void> {
  const last = ctx.journal.all().at(-1);
  if (!last) return;
  const head = headOf(ctx.runId, stage, last);
  const r = await storeHead(ctx.vaults, head);
  if (r.stored.length === 0 && r.failed.length === 0) return;
  ctx.record({ type: 'journal.head.stored', stage, seq: head.seq, hash: head.hash, vaults: r.stored, failed: r.failed });
  for (const f of r.failed) ctx.record({ type: 'note', level: 'warn', message: `the journal head after the ${stage === 'gate' ? 'gate' : 'landing'} could not be written to vault '${f.vault}' (${f.reason}); \`rubicon audit\` cannot compare the journal with that vault` });
}

// ------------------------------------------------------------- crossing

/** Contexts whose gate was evaluated by this process right before the crossing (no resume in between). */
const gatedHere = new WeakSet<RunContext>();

/**
 * The crossing never trusts a recorded `gate.evaluated` or `permit.issued`:
 * right before it starts it evaluates the gate itself from the recorded
 * facts (proofs, copies, drift, ...), after a fresh drift scan whenever the
 * run was resumed since the gate (a file changed after the permit is
 * found), and checks the permit against the proof set it recomputes.
 * Returns false when the gate now refuses (the caller ends the run refused).
 */
export async function recheckBeforeCrossing(ctx: RunContext): Promise<boolean> {
  if (!gatedHere.has(ctx)) {
    await driftScan(ctx, 'pre-gate');
    await landingPreflight(ctx, 'pre-gate');
  }
  const s = ctx.state();
  const facts = gateFacts(s, ctx.now());
  const result = evaluateGate(facts);
  if (!gatedHere.has(ctx) || result.passed !== s.gate?.passed) ctx.record({ type: 'gate.evaluated', result });
  if (!result.passed) return false;
  verifyEvidence(ctx, proofSetHash(reliedOnProofs(facts)));
  return true;
}

/**
 * The journal and the permit must be signed by this run's key (which never
 * lives in the state directory): a journal rewritten with a recomputed hash
 * chain, or a hand-written permit, stops here. Throws EVIDENCE_INVALID or
 * PERMIT_INVALID; nothing is crossed.
 */
export function verifyEvidence(ctx: RunContext, expectedProofSetHash: string): void {
  const s = ctx.state();
  if (!ctx.signer) throw new RubiconError('EVIDENCE_INVALID', 'refusing to cross: this run has no signing key to check its evidence with', { hint: 'start the run with `rubicon upgrade` (it signs its journal and permit)' });
  const verifier = verifierFrom(ctx.signer.publicKeyPem);
  const audit = auditRecords(ctx.journal.all(), verifier);
  if (!audit.ok) {
    throw new RubiconError('EVIDENCE_INVALID', `refusing to cross: journal record ${audit.firstBad.seq} (${audit.firstBad.type}) ${audit.firstBad.reason}: the evidence was altered`, {
      hint: `see \`rubicon audit ${ctx.runId}\`; start a new run`,
    });
  }
  const check = s.permitSignature
    ? verifySignedPermit({ permit: s.permit, keyId: s.permitSignature.keyId, signature: s.permitSignature.signature }, verifier, {
        image: ctx.runbook.target.image,
        target: ctx.runbook.target.name,
        now: s.crossing?.startedAt ? new Date(s.crossing.startedAt) : ctx.now(),
        proofSetHash: expectedProofSetHash,
      })
    : ({ valid: false, reason: 'the permit carries no signature', fix: 'run `rubicon upgrade` again: it issues a signed permit' } as const);
  if (!check.valid) throw new RubiconError('PERMIT_INVALID', `refusing to cross: ${check.reason}`, { hint: check.fix });
}

/**
 * THE POINT OF NO RETURN. Requires: a recorded passing gate, a permit valid
 * now (or when the crossing started, on resume), and a recorded
 * confirmation. Anything else throws before a byte is touched.
 */
export async function crossing(ctx: RunContext): Promise<'crossed' | 'not-confirmed' | 'waiting' | 'refused'> {
  let s = ctx.state();
  if (s.crossing?.completedAt) return 'crossed';
  if (!s.crossing?.startedAt && !(await recheckBeforeCrossing(ctx))) return 'refused';
  s = ctx.state();
  if (ctx.infra.kind === 'manual') return manualCrossing(ctx);
  if (!s.gate?.passed || !s.permit) {
    throw new RubiconError('GATE_REFUSED', 'refusing to cross: no passing gate and permit recorded for this run', { hint: 'run `rubicon upgrade` again' });
  }
  if (!s.crossing?.confirmedBy) {
    const c = await ctx.confirm(ctx);
    if (!c.confirmed) {
      ctx.record({ type: 'note', level: 'warn', message: `crossing not confirmed: ${c.reason ?? 'declined'}` });
      return 'not-confirmed';
    }
    ctx.record({ type: 'crossing.confirmed', by: c.by, who: c.who });
    s = ctx.state();
  }
  const permit = s.permit!;
  const at = s.crossing?.startedAt ? new Date(s.crossing.startedAt) : ctx.now();
  const check = checkPermit(permit, { image: ctx.runbook.target.image, now: at, target: ctx.runbook.target.name });
  if (!check.valid) throw new RubiconError('PERMIT_INVALID', `refusing to cross: ${check.reason}`, { hint: check.fix });
  if (!s.crossing?.startedAt) ctx.record({ type: 'crossing.started', permitId: permit.id, image: permit.image });
  // The driver checks the permit again against the proof set recomputed from the journal (signed permits on Azure).
  const result = await ctx.infra.cross(permit, at, { proofSetHash: proofSetHash(reliedOnProofs(gateFacts(ctx.state(), at))) });
  ctx.record({ type: 'crossing.completed', image: result.image, ...(result.machine ? { machine: result.machine } : {}) });
  return 'crossed';
}

/**
 * The manual crossing (infra.kind: manual). First call: checks the permit,
 * journals and returns what the engineer must do, and the run stops
 * ('waiting'), still frozen. A later call (confirm or resume --yes) asks
 * for the confirmation, checks the machine really was rebuilt, and only
 * then records the crossing as done.
 */
async function manualCrossing(ctx: RunContext): Promise<'crossed' | 'not-confirmed' | 'waiting'> {
  let s = ctx.state();
  if (!s.gate?.passed || !s.permit) {
    throw new RubiconError('GATE_REFUSED', 'refusing to cross: no passing gate and permit recorded for this run', { hint: 'run `rubicon upgrade` again' });
  }
  const permit = s.permit;
  if (!s.crossing?.startedAt) {
    const check = checkPermit(permit, { image: ctx.runbook.target.image, now: ctx.now(), target: ctx.runbook.target.name });
    if (!check.valid) throw new RubiconError('PERMIT_INVALID', `refusing to cross: ${check.reason}`, { hint: check.fix });
    const where = ctx.stateFlag ?? `--state-dir ${path.dirname(path.dirname(ctx.paths.dir))}`;
    const text = (ctx.infra as ManualDriver).instructions(permit, ctx.runId, where);
    ctx.record({ type: 'crossing.instructions', text });
    ctx.record({ type: 'crossing.started', permitId: permit.id, image: permit.image });
    return 'waiting';
  }
  if (!s.crossing.confirmedBy) {
    const c = await ctx.confirm(ctx);
    if (!c.confirmed) return 'waiting';
    ctx.record({ type: 'crossing.confirmed', by: c.by, who: c.who });
    s = ctx.state();
  }
  await verifyRebuilt(ctx);
  ctx.record({ type: 'crossing.completed', image: permit.image });
  return 'crossed';
}

/**
 * Whether a landing must first check that the machine it lands on is the
 * rebuilt one: after a manual crossing always; after a driver's crossing
 * (pulumi-azure) when the target is a remote machine (the sandbox's target
 * is a folder the driver itself rebuilt).
 */
function mustVerifyRebuilt(ctx: RunContext): boolean {
  return ctx.infra.kind === 'manual' || (ctx.infra.kind !== 'sandbox' && ctx.remote !== undefined);
}

/**
 * What says that the machine the target's transport reaches now is NOT the
 * one a driver's crossing made (pulumi-azure), or still the old one. Pure.
 *
 * - `platform` (what the transport's platform says now, e.g. ARM's `vmId`
 *   of the VM Run Command runs on) must be the crossing's new machine, and
 *   must not be the one identified before the crossing.
 * - Without a platform identity (a transport that cannot tell: ssh,
 *   openssh-windows), the machine id (MachineGuid, /etc/machine-id) must
 *   not be the old one. With one, an unchanged machine id is only noted:
 *   Sysprep keeps a Windows image's MachineGuid, so two VMs made from one
 *   image can share it (the platform id cannot).
 */
export function driverRebuildProblems(o: {
  before: { machineId: string | null; platform?: { resourceId: string; uniqueId: string } } | undefined;
  made: { resourceId: string; uniqueId: string } | undefined;
  now: { machineId: string | null; platform?: { resourceId: string; uniqueId: string } };
}): string[] {
  const problems: string[] = [];
  const p = o.now.platform;
  if (p) {
    if (o.before?.platform && o.before.platform.uniqueId.toLowerCase() === p.uniqueId.toLowerCase()) {
      problems.push(`its transport still reaches the old VM (${p.resourceId}, vmId ${p.uniqueId})`);
    } else if (o.made && o.made.uniqueId.toLowerCase() !== p.uniqueId.toLowerCase()) {
      problems.push(`its transport reaches ${p.resourceId} (vmId ${p.uniqueId}), not the VM the crossing made (${o.made.resourceId}, vmId ${o.made.uniqueId})`);
    }
  } else if (o.before?.machineId && o.now.machineId && o.before.machineId === o.now.machineId) {
    problems.push('its machine id is the old server\'s');
  }
  return problems;
}

/**
 * Refuses to land on the old server. After a manual crossing: the rebuilt
 * target must answer with the host key the engineer put into
 * infra.rebuilt.knownHosts (different from the old one), the OS release the
 * runbook names, and a new machine id. After a driver's crossing on a remote
 * target: driverRebuildProblems.
 */
export async function verifyRebuilt(ctx: RunContext): Promise<void> {
  const rb = ctx.runbook;
  if (rb.infra.kind !== 'manual') {
    if (!mustVerifyRebuilt(ctx)) return;
    const tgt = ctx.remote!.rebuiltTarget;
    const before = ctx.state().targetIdentity;
    const id = await ctx.remote!.plane.identify(ctx, tgt);
    const platform = tgt.platformIdentity ? await tgt.platformIdentity(ctx.signal) : undefined;
    const made = ctx.state().crossing?.machine;
    const problems = driverRebuildProblems({ before, made, now: { machineId: id.machineId, ...(platform ? { platform } : {}) } });
    if (problems.length > 0) {
      throw new RubiconError('NOT_REBUILT', `${rb.target.name} (${tgt.address}) is not the machine the crossing made: ${problems.join('; ')}. Refusing to land on the old server`, {
        hint: `check that target.transport names the VM of the stack's target and that ARM shows the new VM, then run \`rubicon resume ${ctx.runId}\``,
      });
    }
    const machineIdChanged = before?.machineId && id.machineId ? before.machineId !== id.machineId : null;
    if (machineIdChanged === false) ctx.record({ type: 'note', level: 'warn', message: `${rb.target.name}: the rebuilt VM has the old server's ${ctx.remote!.plane.os === 'windows' ? 'MachineGuid' : 'machine id'} (an image that keeps it); its platform id is new` });
    ctx.record({
      type: 'rebuild.verified',
      machine: tgt.name,
      osRelease: id.osRelease ?? '',
      machineIdChanged,
      hostKeyChanged: null,
      ...(platform ? { platform: { ...platform, changed: before?.platform ? before.platform.uniqueId.toLowerCase() !== platform.uniqueId.toLowerCase() : null } } : {}),
    });
    return;
  }
  const tgt = ctx.remote?.rebuiltTarget ?? ctx.target;
  const before = ctx.state().targetIdentity;
  const id = ctx.remote ? await ctx.remote.plane.identify(ctx, tgt) : { machineId: null, osRelease: null };
  const problems: string[] = [];
  if (!osReleaseMatches(id.osRelease, rb.infra.rebuilt.osRelease)) {
    problems.push(`its os-release says "${id.osRelease ?? 'nothing'}", the runbook expects "${rb.infra.rebuilt.osRelease}"`);
  }
  let machineIdChanged: boolean | null = null;
  if (before?.machineId && id.machineId) machineIdChanged = before.machineId !== id.machineId;
  if (rb.infra.rebuilt.newMachineId && machineIdChanged === false) problems.push(`its machine id (${ctx.remote?.plane.os === 'windows' ? 'MachineGuid' : '/etc/machine-id'}) is the old server's`);
  let hostKeyChanged: boolean | null = null;
  const t = rb.target.transport;
  if (sshTransport(t)) {
    const now = await knownHostKeys(rb.infra.rebuilt.knownHosts, t.host, t.port);
    hostKeyChanged = now.length > 0 && !now.some((k) => (before?.hostKeys ?? []).includes(k));
    if (!hostKeyChanged) problems.push(`${rb.infra.rebuilt.knownHosts} holds the old server's host key (or none for ${t.host})`);
  }
  if (problems.length > 0) {
    throw new RubiconError('NOT_REBUILT', `${rb.target.name} (${tgt.address}) does not look rebuilt: ${problems.join('; ')}. Refusing to land on the old server`, {
      hint: `finish the reinstall as the crossing instructions say, then run \`rubicon resume ${ctx.runId} --yes\``,
    });
  }
  ctx.record({ type: 'rebuild.verified', machine: tgt.name, osRelease: id.osRelease ?? '', machineIdChanged, hostKeyChanged });
}

// ------------------------------------------------------------- landing

/**
 * The order items land in: discovery order, then each engine's own
 * landingOrder (optional, pure) over it, which moves only that engine's
 * items (SQL Server: keys, then logins, then databases, then Agent jobs).
 */
export function landingSequence(engines: Record<string, DatabaseEngine>, items: Item[]): Item[] {
  let order = items;
  for (const engine of Object.values(engines)) {
    if (!engine.landingOrder) continue;
    const next = engine.landingOrder(order);
    // The hook must return the same items (a reordering), never drop or add one.
    if (next.length !== order.length || new Set(next).size !== next.length || next.some((i) => !order.includes(i))) {
      throw new RubiconError('INTERNAL', `the ${engine.kind} engine's landingOrder did not return a reordering of the items`);
    }
    order = next;
  }
  return order;
}

/** Restores every item onto the rebuilt target from the vaults and validates it against the proofs. */
export async function landing(ctx: RunContext): Promise<boolean> {
  if (mustVerifyRebuilt(ctx) && !ctx.state().rebuildVerified) await verifyRebuilt(ctx);
  const s = ctx.state();
  const current = currentArtifacts(s.artifacts);
  const passed = (a: Artifact) => s.proofs.some((p) => p.artifactId === a.id && p.outcome === 'passed');
  for (const item of landingSequence(ctx.engines, s.items.filter((i) => i.discovered))) {
    // Landed and validated items are done; a failed one is tried again on resume.
    if (s.landing.some((l) => l.itemId === item.id && l.outcome === 'passed')) continue;
    const candidates = current.filter((a) => a.itemId === item.id && passed(a));
    // Prefer our own methods, in the item's method order: the vendor's backup is never preferred.
    let pick =
      item.kind === 'database'
        ? candidates.filter((a) => a.origin === 'rubicon').sort((a, b) => item.methods.indexOf(a.method) - item.methods.indexOf(b.method))[0] ??
          candidates[0]
        : candidates.at(-1);
    // An instance-level item whose proof cannot pass by design (SQL Server's configuration, service master key, …: applied
    // at landing only) lands from its newest artifact only when the gate that allowed the crossing recorded an override of
    // exactly that (item.proven or secrets.captured for this item, with who and why). Never a database.
    const consent = item.kind === 'database' || item.kind === 'folder' ? undefined : s.gate?.results.find((r) => r.status === 'overridden' && r.itemId === item.id && (r.rule === 'item.proven' || r.rule === 'secrets.captured'));
    if (!pick && consent) {
      pick = current.filter((a) => a.itemId === item.id).at(-1);
      if (pick) ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `${item.id} lands from ${pick.id}, which has no passed proof: the gate's ${consent.rule} for it was overridden by ${consent.override?.by ?? 'an override'} ("${consent.override?.reason ?? ''}")` });
    }
    if (!pick) {
      ctx.record({
        type: 'landing.validated',
        itemId: item.id,
        artifactId: '',
        outcome: 'failed',
        checks: [{ name: 'artifact', status: 'failed', detail: 'no proven artifact to restore' }],
      });
      continue;
    }
    const good = ctx.vaults.filter((v) => s.copies.some((c) => c.artifactId === pick.id && c.vault === v.info.name && c.status === 'ok'));
    const vaults = good.length > 0 ? good : ctx.vaults;
    const t0 = performance.now();
    try {
      const manifest = await readManifest(vaults[0]!, pick.manifestHash);
      if (item.kind === 'volume') {
        await landVolume(ctx, item, pick, vaults); // coverage hook: only what no item restored and the new OS did not lay down
      } else if (ctx.remote && !networkEngineOf(ctx, item)) {
        await ctx.remote.plane.landItem(ctx, item, pick);
      } else if (item.kind === 'folder') {
        const dest = lt(ctx).resolve(item.location);
        // One pass: every byte written is hashed as it is written against the proven manifest (no second read).
        const r = await restoreTree({ vaults, manifest, destRoot: dest, exact: false });
        ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: Object.keys(r.vaultUsed)[0] ?? vaults[0]!.info.name, bytes: r.bytes, durationMs: Math.round(performance.now() - t0) });
        const complete = r.validated.files === r.fileCount && r.fileCount === manifest.entries.length;
        const kept = r.notKept.filter((n) => n.what !== 'mtime-ns');
        ctx.record({
          type: 'landing.validated',
          itemId: item.id,
          artifactId: pick.id,
          outcome: complete ? 'passed' : 'failed',
          checks: [
            {
              name: 'files-hash',
              status: complete ? 'passed' : 'failed',
              detail: complete
                ? `${r.validated.files} files (${r.validated.bytes} bytes) written and hashed against the proven manifest`
                : `${r.validated.files} of ${manifest.entries.length} files validated`,
            },
          ],
        });
        // What the filesystem here could not take (owners when not root, FIFOs where mkfifo is refused): named, never dropped silently.
        for (const n of kept) ctx.record({ type: 'note', level: 'warn', itemId: item.id, message: `landing ${item.name}: ${n.what} of ${n.count} entries not kept (${n.reason}; e.g. ${n.examples.slice(0, 2).join(', ')})` });
      } else if (item.engine) {
        await landEngineItem(ctx, item, pick, vaults, manifest, t0);
      } else {
        throw new RubiconError('LANDING_FAILED', `${item.id}: no way to land a ${item.kind} item that belongs to no engine`);
      }
    } catch (e) {
      ctx.record({
        type: 'landing.validated',
        itemId: item.id,
        artifactId: pick.id,
        outcome: 'failed',
        checks: [{ name: 'restore', status: 'failed', detail: errText(e) }],
      });
    }
  }
  const after = ctx.state();
  const ok = after.items.filter((i) => i.discovered).every((i) => after.landing.some((l) => l.itemId === i.id && l.outcome === 'passed'));
  if (ok && after.rollbackPoint && !after.rollbackReleased) {
    await ctx.infra.releaseRollbackPoint(after.rollbackPoint);
    ctx.record({ type: 'rollback.released', rollbackPointId: after.rollbackPoint.id });
  }
  await storeJournalHead(ctx, 'landed');
  return ok;
}

/**
 * One engine item (a database, or an instance-level item such as a login,
 * a key, a certificate or an Agent job): the artifact's files fetched from
 * the vault into a staging folder (hash-checked), `engine.restore` on the
 * rebuilt target, then the engine's own validation (`validateLanding`,
 * optional: settings against the source, orphaned users, smoke queries) and,
 * for a database, its fingerprint against the proof's. Every check must
 * pass. The engine calls carry `landing: true` (an engine with its own
 * landing server connects there). The target root gets no folder for an
 * item's location: the engine writes where its items live.
 */
async function landEngineItem(ctx: RunContext, item: Item, pick: Artifact, vaults: RunContext['vaults'], manifest: Awaited<ReturnType<typeof readManifest>>, t0: number): Promise<void> {
  const engine = engineFor(ctx, item);
  const staging = path.join(ctx.paths.work, 'landing', encodeURIComponent(pick.id));
  await rm(staging, { recursive: true, force: true });
  try {
    const r = await restoreTree({ vaults, manifest, destRoot: staging, exact: true });
    const files = manifest.entries.map((e) => path.join(staging, e.path));
    const ectx: EngineContext = { host: engineHost(ctx), workDir: staging, signal: ctx.signal, landing: true };
    await engine.restore(ectx, item, manifest, files);
    ctx.record({ type: 'landing.restored', itemId: item.id, artifactId: pick.id, vault: Object.keys(r.vaultUsed)[0] ?? vaults[0]!.info.name, bytes: r.bytes, durationMs: Math.round(performance.now() - t0) });
    const checks: { name: string; status: ProofCheck['status']; detail: string }[] = [];
    if (engine.validateLanding) {
      for (const c of await engine.validateLanding(ectx, item, manifest, files)) checks.push({ name: c.name, status: c.status, detail: c.detail });
    }
    if (item.kind === 'database') {
      const proof = ctx.state().proofs.find((p) => p.artifactId === pick.id && p.outcome === 'passed');
      const fp = await engine.fingerprint({ ...engineCtx(ctx), landing: true }, item);
      const cmp = proof?.fingerprint ? compareFingerprints(proof.fingerprint, fp) : { equal: false, differences: ['no proof fingerprint'] };
      checks.push({
        name: 'fingerprint-proof',
        status: cmp.equal ? 'passed' : 'failed',
        detail: cmp.equal ? `fingerprint on the rebuilt target equals the proof (${fp.tables.length} tables)` : cmp.differences.slice(0, 10).join('; '),
      });
    } else if (checks.length === 0) {
      checks.push({ name: 'restore', status: 'passed', detail: `restored onto the rebuilt target by the ${engine.kind} engine (it has no further check for a ${item.kind} item)` });
    }
    // Fail closed: a skipped validation is not a landed item.
    const ok = checks.every((c) => c.status === 'passed');
    ctx.record({ type: 'landing.validated', itemId: item.id, artifactId: pick.id, outcome: ok ? 'passed' : 'failed', checks });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------- report

/**
 * Writes the reports. `ending` is the outcome the run is about to record:
 * the reports are written before run.completed (so a crash in between
 * leaves a resumable run) and must already show how it ended.
 */
export async function report(ctx: RunContext, ending: Pick<RunState, 'outcome' | 'exitCode' | 'error'>, options: ReportOptions = {}): Promise<void> {
  const s = { ...ctx.state(), ...ending, finishedAt: ctx.now().toISOString() };
  const checklist = buildChecklist({
    items: s.items,
    artifacts: s.artifacts,
    copies: s.copies,
    proofs: s.proofs,
    driftScans: s.driftScans,
    captureFailures: s.captureFailures,
  });
  const files = await writeReports(s, checklist, ctx.paths.reports, options);
  ctx.record({ type: 'report.written', files });
}

export function hostName(): string {
  return thisHostName();
}
