import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { RubiconError } from '../core/errors.ts';
import { comparePaths } from '../core/paths.ts';
import type { Artifact, Item, Manifest, ManifestEntry } from '../core/types.ts';
import type { DatabaseEngine } from '../engines/engine.ts';
import { encodeManifest } from '../files/manifest.ts';
import type { Host } from '../hosts/host.ts';
import { LocalHost } from '../hosts/local.ts';
import { RemoteFilesHost } from '../hosts/remote.ts';
import type { Vault } from '../vaults/vault.ts';
import type { RunContext } from './context.ts';
import { proveOne, type ProveOutput } from './prover.ts';

/**
 * Network engines on a remote target (DatabaseEngine.overNetwork: SQL
 * Server over TDS). The target is a machine Rubicon reaches over ssh,
 * openssh-windows or azure-run-command, but the engine talks to its
 * database servers from this process, so the phases call it the way the
 * local path does (src/run/phases.ts), with three differences kept here:
 *
 * - its host is a RemoteFilesHost (no files on this computer): a method
 *   that would read the server's backup files here fails, typed;
 * - the files a method makes on this computer (SQL Server's sidecar that
 *   describes BACKUP TO URL stripes, instance-object scripts) are small and
 *   are stored in each vault as content-addressed documents (putBytes), so
 *   a tool vault (restic, sftp), which takes no stream from Rubicon for a
 *   tree, holds them too; the database bytes never come here (BACKUP TO
 *   URL: SQL Server writes them into the azure-blob vault itself);
 * - proofs run in this process (the prover of the local path), with a
 *   scratch folder under the run's work folder: the engine's prove connects
 *   only to the proving ground's server (its contract), and the files it
 *   reads are fetched from the vaults and hash-checked first.
 *
 * The phases never name an engine: they ask networkEngineOf(ctx, item).
 */

/** The network engine of an item on a remote target, or undefined (a local target, or an engine that reads files). */
export function networkEngineOf(ctx: RunContext, item: Item | undefined): DatabaseEngine | undefined {
  if (!ctx.remote || !item?.engine || ctx.remote.engines[item.engine]) return undefined;
  const e = ctx.engines[item.engine];
  return e?.overNetwork ? e : undefined;
}

/** The network engines of a remote run (none on a local one), by kind. */
export function networkEngines(ctx: RunContext): [string, DatabaseEngine][] {
  if (!ctx.remote) return [];
  return Object.entries(ctx.engines).filter(([kind, e]) => e.overNetwork === true && !ctx.remote!.engines[kind]);
}

/** The host an engine gets: the local target's folder, or a RemoteFilesHost naming the remote target. */
export function engineHost(ctx: RunContext): Host {
  return ctx.localTarget ?? new RemoteFilesHost(ctx.target.name);
}

/** The items the network engines find on their servers (databases and instance-level items). Read-only. */
export async function discoverNetworkEngines(ctx: RunContext): Promise<Item[]> {
  const out: Item[] = [];
  for (const [kind, engine] of networkEngines(ctx)) {
    const workDir = path.join(ctx.paths.work, 'engine');
    await mkdir(workDir, { recursive: true });
    out.push(
      ...(await engine.discover(
        { host: engineHost(ctx), workDir, ...(ctx.signal ? { signal: ctx.signal } : {}) },
        // The engine's server has no folders under the target root: only the declared databases of its kind.
        { roots: [], declared: ctx.runbook.declared.databases.filter((d) => d.engine === kind).map((d) => ({ name: d.name, ...(d.location ? { location: d.location } : {}) })) },
      )),
    );
  }
  return out;
}

/** Largest file a network engine may leave on this computer for the vaults: descriptions and scripts, never a database's bytes. */
export const NETWORK_FILE_MAX = 64 * 1024 * 1024;

/**
 * Stores the files a method made on this computer into `vaults` as
 * documents (putBytes: content-addressed, idempotent), then the manifest
 * (format `format`) as a document of each. Refuses a file over
 * NETWORK_FILE_MAX: such a method must write into a vault from the server.
 * Returns what captureFiles returns for the local path.
 */
export async function storeNetworkFiles(o: {
  files: { path: string; name: string }[];
  vaults: Vault[];
  artifactId: string;
  itemId: string;
  method: string;
  format?: string;
}): Promise<{ manifestHash: string; fileCount: number; bytes: number }> {
  if (o.vaults.length === 0) throw new RubiconError('CAPTURE_FAILED', `${o.itemId} (${o.method}): no vault to store the capture in; name at least one vault in the runbook`);
  const entries: ManifestEntry[] = [];
  const bodies: Uint8Array[] = [];
  for (const f of o.files) {
    const st = await stat(f.path).catch((e: unknown) => {
      throw new RubiconError('CAPTURE_FAILED', `${o.itemId} (${o.method}): ${f.name} was not made (${(e as { code?: string }).code ?? String(e)})`);
    });
    if (!st.isFile()) throw new RubiconError('CAPTURE_FAILED', `${o.itemId} (${o.method}): ${f.name} is not a regular file`);
    if (st.size > NETWORK_FILE_MAX) {
      throw new RubiconError('CAPTURE_FAILED', `${o.itemId} (${o.method}): ${f.name} is ${st.size} bytes, more than a remote target's capture carries through this computer (${NETWORK_FILE_MAX})`, {
        hint: 'use a method that writes the backup straight into a vault from the server (BACKUP TO URL)',
      });
    }
    const data = await readFile(f.path);
    entries.push({ path: f.name, size: data.byteLength, mtimeMs: Math.trunc(st.mtimeMs), mode: st.mode & 0o7777, sha256: createHash('sha256').update(data).digest('hex') });
    bodies.push(data);
  }
  const order = entries.map((_, i) => i).sort((a, b) => comparePaths(entries[a]!.path, entries[b]!.path));
  const manifest: Manifest = { version: 1, artifactId: o.artifactId, itemId: o.itemId, method: o.method, ...(o.format ? { format: o.format } : {}), entries: order.map((i) => entries[i]!) };
  const bytes = encodeManifest(manifest);
  const manifestHash = createHash('sha256').update(bytes).digest('hex');
  for (const v of o.vaults) {
    for (const i of order) {
      const got = await v.putBytes(bodies[i]!);
      if (got !== entries[i]!.sha256) throw new RubiconError('VAULT_IO', `vault '${v.info.name}' stored ${entries[i]!.path} of ${o.artifactId} under ${got}, not its SHA-256`);
    }
    await v.putBytes(bytes);
  }
  return { manifestHash, fileCount: entries.length, bytes: entries.reduce((n, e) => n + e.size, 0) };
}

/**
 * Proves artifacts of network engines' items in this process (see above):
 * each copy graded where it is stored, the files fetched from an intact one
 * into scratch space under the run's work folder and hash-checked, then
 * the engine's prove (the proving ground's server only) and the
 * fingerprint comparison. Records nothing itself: `onResult` does, per
 * artifact, as the remote and local provers do.
 */
export async function proveNetworkArtifacts(ctx: RunContext, artifacts: Artifact[], onResult: (out: ProveOutput) => void): Promise<void> {
  if (artifacts.length === 0) return;
  const root = path.join(ctx.paths.work, 'prove-network');
  await mkdir(root, { recursive: true });
  const s = ctx.state();
  let known = s.copies;
  try {
    for (const a of artifacts) {
      const out = await proveOne(
        { vaults: ctx.vaults, pg: { name: "the engines' proving ground servers", host: new LocalHost('proving-ground', root) }, engines: ctx.engines, knownCopies: known, scratchPrefix: `n${process.pid}`, now: ctx.now, ...(ctx.signal ? { signal: ctx.signal } : {}) },
        a,
        s.items.find((i) => i.id === a.itemId),
      );
      known = [...known, ...out.copies];
      onResult(out);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
