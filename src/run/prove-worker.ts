/**
 * The isolated proving process. Started by src/run/isolation.ts as
 *
 *   node --permission --allow-fs-read=<rubicon> --allow-fs-read=<vaults…>
 *        --allow-fs-read=<runbook> --allow-fs-read=<proving ground>
 *        --allow-fs-write=<proving ground> prove-worker.ts
 *
 * so the operating system's view of this process is the design's: it can
 * read the vaults and write its own scratch space, and nothing else — not
 * the target, not the state directory, no child processes.
 *
 * Protocol: one JSON job on stdin; JSON lines on stdout, one
 * `{kind:"result", copies, proof}` per artifact as soon as it is proven,
 * `{kind:"grant", event}` for a grant an engine issued or revoked here
 * (grant.issued / grant.revoked, journaled by the parent), then
 * `{kind:"done"}`; `{kind:"error", message}` and exit 1 on failure.
 * It exits by itself when its parent dies (its parent pid changes).
 */
import { readdirSync } from 'node:fs';
import { LocalHost } from '../hosts/local.ts';
import { loadRunbook } from '../runbook/load.ts';
import { AzureBlobVault } from '../vaults/azure-blob.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import { readVaultKey } from '../vaults/sealed.ts';
import { createEngines } from '../compose/root.ts';
import type { ProverJob } from './isolation.ts';
import { proveOne } from './prover.ts';

const parent = process.ppid;
const watch = setInterval(() => {
  if (process.ppid !== parent) process.exit(70);
}, 500);
watch.unref();

function send(line: unknown): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(JSON.stringify(line) + '\n', (e) => (e ? reject(e) : resolve())));
}

async function main(): Promise<void> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const job = JSON.parse(text) as ProverJob;
  // Check the confinement before touching anything: each forbidden path
  // (the target, the state directory) must really be unreadable.
  for (const p of job.forbidden) {
    let denied = false;
    try {
      readdirSync(p);
    } catch (e) {
      denied = (e as { code?: string }).code === 'ERR_ACCESS_DENIED';
    }
    if (!denied || process.permission?.has('fs.read', p) !== false) {
      throw new Error(`the proving process can read ${p}: refusing to prove without isolation`);
    }
  }
  await send({ kind: 'isolation', denied: job.forbidden });
  const runbook = await loadRunbook(job.runbookFile);
  const env = {
    // Each vault of its kind: folders by their path (readable under --allow-fs-read), Azure containers
    // from the runbook's settings (the network is not confined by Node's permission model).
    vaults: await Promise.all(
      job.vaults.map(async (v) => {
        if (v.kind !== 'azure-blob') {
          const fs = runbook.vaults.find((x) => x.name === v.name && x.kind === 'filesystem');
          const enc = fs?.kind === 'filesystem' && fs.encryption ? { encryption: { key: readVaultKey(fs.encryption, v.name) } } : {};
          return new FilesystemVault(v, enc);
        }
        const s = runbook.vaults.find((x) => x.name === v.name && x.kind === 'azure-blob');
        if (!s || s.kind !== 'azure-blob') throw new Error(`vault '${v.name}' is not an azure-blob vault of the runbook`);
        return new AzureBlobVault(s).open();
      }),
    ),
    pg: { name: job.pgName, host: new LocalHost(job.pgName, job.pgRoot) },
    // SQL Server's URL read grants go to the parent's journal (grant.issued / grant.revoked, never the SAS).
    engines: createEngines(runbook, { onGrant: (e) => void send({ kind: 'grant', event: e }).catch(() => undefined) }),
    knownCopies: job.knownCopies,
    scratchPrefix: `p${process.pid}`,
    now: () => new Date(),
  };
  for (const artifact of job.artifacts) {
    const item = job.items.find((i) => i.id === artifact.itemId);
    const out = await proveOne(env, artifact, item);
    env.knownCopies = [...env.knownCopies, ...out.copies];
    await send({ kind: 'result', ...out });
  }
  await send({ kind: 'done' });
}

main().catch(async (e: unknown) => {
  await send({ kind: 'error', message: e instanceof Error ? e.message : String(e), code: (e as { code?: string }).code }).catch(() => {});
  process.exitCode = 1;
});
