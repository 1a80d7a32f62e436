import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isRubiconError, RubiconError } from '../core/errors.ts';
import type { Artifact, Copy, Item, Manifest, Proof, ProofCheck } from '../core/types.ts';
import type { DatabaseEngine } from '../engines/engine.ts';
import { compareFingerprints } from '../engines/fingerprint.ts';
import { checkCopy } from '../files/copies.ts';
import { readManifest } from '../files/manifest.ts';
import { restoreTree, verifyTree } from '../files/restore.ts';
import type { ProvingGroundHandle } from '../infra/driver.ts';
import { attachedBlobsOf } from '../vaults/attached.ts';
import type { VaultReader } from '../vaults/vault.ts';

/**
 * Proving one artifact: grade its copy in every vault, restore it from an
 * intact copy into the proving ground's scratch space, check every file's
 * hash, and for a database let the engine restore it, check its integrity
 * and fingerprint it, then compare with the source's fingerprint taken at
 * capture.
 *
 * Contract: reads the vaults and writes only under the proving ground's
 * root. It has no handle on the target: nothing here can reach it. Returns
 * graded results; throws only for a broken environment. A proof passes only
 * when it has checks and every one of them passed (a skipped check is never
 * a success).
 */
export interface ProverEnv {
  vaults: VaultReader[];
  pg: ProvingGroundHandle;
  engines: Record<string, DatabaseEngine>;
  /** Copies already graded in this run: not checked again. */
  knownCopies: Copy[];
  /** A folder name unique to this prover process, so two provers never share scratch space. */
  scratchPrefix: string;
  now: () => Date;
  signal?: AbortSignal;
}

export interface ProveOutput {
  /** Copies graded now (not the known ones). */
  copies: Copy[];
  proof: Proof;
}

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Exported for the tests (the copy grading of one artifact in each of its vaults). */
export async function gradeCopies(env: ProverEnv, artifact: Artifact): Promise<{ good: VaultReader[]; graded: Copy[] }> {
  const good: VaultReader[] = [];
  const graded: Copy[] = [];
  // An artifact recorded in some vaults only (Artifact.vaults: BACKUP TO URL into one azure-blob vault) is graded there only.
  for (const v of env.vaults.filter((x) => !artifact.vaults || artifact.vaults.includes(x.info.name))) {
    const known = env.knownCopies.find((c) => c.artifactId === artifact.id && c.vault === v.info.name);
    if (known) {
      if (known.status === 'ok') good.push(v);
      continue;
    }
    let status: { status: Copy['status']; detail?: string };
    try {
      const manifest = await readManifest(v, artifact.manifestHash);
      status = await checkCopy(v, manifest, artifact.manifestHash);
      // Blobs the artifact keeps in this vault beside its objects (SQL Server's URL stripes): graded too, each named.
      if (status.status === 'ok' && v.checkBlobs) {
        const blobs = await attachedBlobsOf(v, manifest);
        const b = blobs.length > 0 ? await v.checkBlobs(blobs) : { status: 'ok' as const };
        if (b.status !== 'ok') status = { status: b.status, detail: `'${artifact.id}': ${b.detail ?? b.status}` };
      }
    } catch (e) {
      const code = isRubiconError(e) ? e.code : '';
      status = { status: code === 'VAULT_MISSING_OBJECT' ? 'missing' : code === 'VAULT_CORRUPT' ? 'checksum-mismatch' : 'error', detail: errText(e) };
    }
    graded.push({ artifactId: artifact.id, vault: v.info.name, status: status.status, detail: status.detail, checkedAt: env.now().toISOString() });
    if (status.status === 'ok') good.push(v);
  }
  return { good, graded };
}

export async function proveOne(env: ProverEnv, artifact: Artifact, item: Item | undefined): Promise<ProveOutput> {
  const started = env.now();
  const t0 = performance.now();
  const checks: ProofCheck[] = [];
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T | undefined> => {
    const t = performance.now();
    try {
      const v = await f();
      checks.push({ name, status: 'passed', detail: '', durationMs: Math.round(performance.now() - t) });
      return v;
    } catch (e) {
      checks.push({ name, status: 'failed', detail: errText(e), durationMs: Math.round(performance.now() - t) });
      return undefined;
    }
  };
  const { good, graded } = await gradeCopies(env, artifact);
  const vault = good[0];
  let fingerprint: Proof['fingerprint'];
  const scratch = localHost(env).resolve(path.join(env.scratchPrefix, encodeURIComponent(artifact.id)));
  await rm(scratch, { recursive: true, force: true });
  let bytes = 0;
  if (!vault) {
    checks.push({ name: 'copy-read', status: 'failed', detail: 'no vault holds an intact copy', durationMs: 0 });
  } else {
    const manifest = await timed('copy-read', () => readManifest(vault, artifact.manifestHash));
    const filesDir = path.join(scratch, 'files');
    const restored = manifest && (await timed('restore-files', () => restoreTree({ vaults: good, manifest, destRoot: filesDir, exact: true, fsync: false })));
    if (manifest && restored) {
      bytes = restored.bytes;
      checks.at(-1)!.detail = `${restored.fileCount} files, ${restored.bytes} bytes from vault ${vault.info.name}`;
      const t = performance.now();
      const verified = await verifyTree(filesDir, manifest);
      checks.push({
        name: 'files-hash',
        status: verified.ok ? 'passed' : 'failed',
        detail: verified.ok ? 'every file matches its SHA-256 in the manifest' : verified.mismatches.slice(0, 10).map((m) => `${m.path}: ${m.problem}`).join('; '),
        durationMs: Math.round(performance.now() - t),
      });
      // Databases and engine-level items (scripts, certificates) are proven by their engine.
      if (item && item.kind !== 'folder' && item.engine) fingerprint = await proveDatabase(env, item, artifact, manifest, filesDir, scratch, checks);
    } else {
      checks.push({ name: 'files-hash', status: 'skipped', detail: 'nothing restored', durationMs: 0 });
    }
  }
  await rm(scratch, { recursive: true, force: true });
  const proof: Proof = {
    id: `${artifact.id}.proof`,
    artifactId: artifact.id,
    itemId: artifact.itemId,
    vault: vault?.info.name ?? '',
    provingGround: env.pg.name,
    outcome: checks.length > 0 && checks.every((c) => c.status === 'passed') ? 'passed' : 'failed',
    checks,
    fingerprint,
    startedAt: started.toISOString(),
    finishedAt: env.now().toISOString(),
    durationMs: Math.round(performance.now() - t0),
    bytes,
  };
  return { copies: graded, proof };
}

async function proveDatabase(
  env: ProverEnv,
  item: Item,
  artifact: Artifact,
  manifest: Manifest,
  filesDir: string,
  scratch: string,
  checks: ProofCheck[],
): Promise<Proof['fingerprint']> {
  const engine = item.engine ? env.engines[item.engine] : undefined;
  if (!engine) {
    checks.push({ name: 'restore', status: 'failed', detail: `no engine "${item.engine}" on this proving ground`, durationMs: 0 });
    return undefined;
  }
  const files = manifest.entries.map((e) => path.join(filesDir, e.path));
  const workDir = path.join(scratch, 'db');
  await mkdir(workDir, { recursive: true });
  let result;
  try {
    result = await engine.prove({ host: localHost(env), workDir, signal: env.signal }, artifact, manifest, files);
  } catch (e) {
    checks.push({ name: 'restore', status: 'failed', detail: errText(e), durationMs: 0 });
    return undefined;
  }
  checks.push(...result.checks);
  if (item.kind !== 'database') return result.fingerprint;
  if (!result.fingerprint || !artifact.sourceFingerprint) {
    checks.push({ name: 'fingerprint-source', status: 'skipped', detail: 'no fingerprint to compare', durationMs: 0 });
    return result.fingerprint;
  }
  const cmp = compareFingerprints(artifact.sourceFingerprint, result.fingerprint);
  checks.push({
    name: 'fingerprint-source',
    status: cmp.equal ? 'passed' : 'failed',
    detail: cmp.equal
      ? `${result.fingerprint.tables.length} tables, ${result.fingerprint.tables.reduce((n, t) => n + t.rows, 0)} rows: row counts and content hashes equal the source at capture`
      : cmp.differences.slice(0, 10).join('; '),
    durationMs: 0,
  });
  return result.fingerprint;
}

function localHost(env: ProverEnv): import('../hosts/host.ts').Host {
  if (!env.pg.host) throw new RubiconError('INTERNAL', 'the local prover needs a local proving ground');
  return env.pg.host;
}

export function proverFailed(message: string): RubiconError {
  return new RubiconError('ENGINE_FAILED', `the proving process failed: ${message}`, {
    hint: 'run `rubicon resume` to prove the remaining artifacts again; proofs already recorded are kept',
  });
}
