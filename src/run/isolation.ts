import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Artifact, Copy, Item, VaultInfo } from '../core/types.ts';
import type { JournalEvent } from '../core/events.ts';
import type { ProvingGroundHandle } from '../infra/driver.ts';
import type { RunContext } from './context.ts';
import { proveOne, proverFailed, type ProveOutput } from './prover.ts';

/**
 * Proving on a local proving ground runs in a separate Node process under
 * Node's permission model: it may read Rubicon's own code, the runbook and
 * the vaults, and read and write the proving ground's folder. Reading the
 * target, the state directory or anything else is refused by Node itself,
 * and it cannot start processes. That makes "restore from the vault alone"
 * a property the tests can check, not a promise.
 *
 * Known gap (documented in the README): node:sqlite opens database files
 * without consulting the permission model, so a SQLite engine that tried to
 * open a path on the target would not be stopped. The sqlite engine only
 * opens files under its workDir.
 *
 * Non-local proving grounds (an Azure VM) are isolated by the network
 * instead (src/infra/azure/components/proving-ground.ts); there the prover
 * runs in-process.
 */
export interface ProverJob {
  runbookFile: string;
  pgName: string;
  pgRoot: string;
  vaults: VaultInfo[];
  items: Item[];
  artifacts: Artifact[];
  knownCopies: Copy[];
  /** Paths the prover must not be able to read; it checks before proving and refuses otherwise. */
  forbidden: string[];
  /** Key files of encrypting vaults (read by the prover, nothing else of their folders). */
  keyFiles?: string[];
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER = fileURLToPath(new URL('./prove-worker.ts', import.meta.url));

/**
 * The lines of a crashed prover's stderr that say what happened (the
 * error's first line, its code and the resource Node's permission model
 * denied), not the stack trace or Node's version banner. Pure.
 */
export function proverStderrSummary(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const telling = lines.filter((l) => /^(?:[A-Z]\w*Error\b|Error\b|code:|resource:|permission:)/.test(l));
  return (telling.length > 0 ? telling : lines.slice(-3)).join(' ').slice(0, 500);
}

/**
 * Where the prover's code and dependencies really are: the repository, and
 * node_modules through its real path when it is a link (a worktree sharing
 * another checkout's node_modules, a pnpm store); the permission model
 * checks real paths.
 */
function codeRoots(): string[] {
  const roots = [ROOT];
  try {
    const real = realpathSync(path.join(ROOT, 'node_modules'));
    if (!real.startsWith(ROOT)) roots.push(real);
  } catch {
    // no node_modules beside the sources: nothing else to allow
  }
  return roots;
}

/** The Node flags that confine the prover. Exported for the isolation test. */
export function permissionFlags(job: Pick<ProverJob, 'runbookFile' | 'pgRoot' | 'vaults'> & { keyFiles?: string[] }): string[] {
  return [
    '--permission',
    ...codeRoots().map((r) => `--allow-fs-read=${r}`),
    `--allow-fs-read=${job.runbookFile}`,
    ...job.vaults.map((v) => `--allow-fs-read=${v.location}`),
    ...(job.keyFiles ?? []).map((f) => `--allow-fs-read=${f}`),
    `--allow-fs-read=${job.pgRoot}`,
    `--allow-fs-write=${job.pgRoot}`,
  ];
}

export async function proveIsolated(
  ctx: RunContext,
  pg: ProvingGroundHandle,
  artifacts: Artifact[],
  onResult: (out: ProveOutput) => void,
  onIsolation: (denied: string[]) => void = () => {},
): Promise<void> {
  const s = ctx.state();
  const job: ProverJob = {
    runbookFile: ctx.runbook.file,
    pgName: pg.name,
    pgRoot: pg.host?.resolve('.') ?? '',
    vaults: ctx.vaults.map((v) => v.info),
    items: s.items,
    artifacts,
    knownCopies: s.copies,
    forbidden: [ctx.runbook.target.root, ctx.paths.dir],
    keyFiles: ctx.runbook.vaults.flatMap((v) => (v.kind === 'filesystem' && v.encryption && 'file' in v.encryption ? [v.encryption.file] : [])),
  };
  if (!pg.host || pg.host.kind !== 'local') {
    // A remote proving ground is its own machine; prove from here.
    let known = s.copies;
    for (const a of artifacts) {
      const out = await proveOne(
        { vaults: ctx.vaults, pg, engines: ctx.engines, knownCopies: known, scratchPrefix: `p${process.pid}`, now: ctx.now, signal: ctx.signal },
        a,
        s.items.find((i) => i.id === a.itemId),
      );
      known = [...known, ...out.copies];
      onResult(out);
    }
    return;
  }
  const child = spawn(process.execPath, [...permissionFlags(job), WORKER], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: process.env,
    signal: ctx.signal,
  });
  // An abort (the run's signal) kills the prover and emits 'error': handled here, rethrown below as the abort.
  let spawnError: Error | undefined;
  child.on('error', (e) => {
    spawnError = e;
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.stdin.end(JSON.stringify(job));
  let done = false;
  let error: string | undefined;
  const lines = createInterface({ input: child.stdout });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  for await (const line of lines) {
    if (!line.startsWith('{')) continue;
    const msg = JSON.parse(line) as { kind: string } & Partial<ProveOutput> & { message?: string; denied?: string[] };
    if (msg.kind === 'isolation') onIsolation(msg.denied ?? []);
    else if (msg.kind === 'result' && msg.proof) onResult({ copies: msg.copies ?? [], proof: msg.proof });
    else if (msg.kind === 'grant') {
      // Only the two grant events cross from the confined process into the journal, and only in their own shape.
      const g = grantEventFrom((msg as { event?: unknown }).event);
      if (g) ctx.record(g);
    } else if (msg.kind === 'done') done = true;
    else if (msg.kind === 'error') error = msg.message;
  }
  const code = await exited;
  ctx.signal?.throwIfAborted();
  if (spawnError && !done) throw proverFailed(`the prover could not run: ${spawnError.message}`);
  if (!done || code !== 0) {
    throw proverFailed(error ?? (proverStderrSummary(stderr) || `exit code ${code}`));
  }
}

/** A grant event from the prover's stdout, re-built field by field (nothing else it sent reaches the journal); undefined when it is not one. */
export function grantEventFrom(v: unknown): Extract<JournalEvent, { type: 'grant.issued' | 'grant.revoked' }> | undefined {
  const o = v as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') return undefined;
  if (o.type === 'grant.revoked' && Array.isArray(o.grantIds) && o.grantIds.every((x) => typeof x === 'string')) return { type: 'grant.revoked', grantIds: [...(o.grantIds as string[])] };
  const g = o.grant as Record<string, unknown> | undefined;
  if (o.type !== 'grant.issued' || !g || typeof g !== 'object') return undefined;
  const str = (k: string): string | undefined => (typeof g[k] === 'string' ? (g[k] as string) : undefined);
  const [id, vault, machine, expiresAt, dir] = ['id', 'vault', 'machine', 'expiresAt', 'dir'].map(str);
  if (!id || !vault || !machine || !expiresAt || dir === undefined || (g.mode !== 'read' && g.mode !== 'write')) return undefined;
  return { type: 'grant.issued', grant: { id, vault, machine, mode: g.mode, expiresAt, dir, ...(g.holder === 'sql-server-credential' ? { holder: 'sql-server-credential' as const } : {}) } };
}
