/**
 * Azure Blob vault benchmark: upload and verify of an artifact set into
 * Azurite, Rubicon's azure-blob vault against a plain @azure/storage-blob
 * uploadFile of the same files with the same block size and concurrency.
 *
 *   node bench/azure-blob.ts [--mib 1024] [--files 16] [--rounds 2] [--concurrency 8] [--block-mib 8] [--attribution]
 *
 * - vault:    AzureBlobVault.putFile (SHA-256 checked while reading, a
 *             transactional MD5 per block checked by the service, the block
 *             list committed only when the hash matched), then check()
 *             (download, SHA-256 against the name).
 * - baseline: BlockBlobClient.uploadFile(path, { blockSize, concurrency }),
 *             then download and SHA-256 against the hash computed beforehand:
 *             the same verification, none of the checks on the way up.
 * Azurite runs in memory (--inMemoryPersistence) so the disk does not
 * decide; each contender writes into a fresh container; rounds alternate
 * which contender goes first. Prints each contender's times and the ratios
 * (best and median). A script, not a test: numbers go into docs/azure-blob.md.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { AzureBlobVault } from '../src/vaults/azure-blob.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const MIB = opt('mib', 1024);
const FILES = opt('files', 16);
const ROUNDS = opt('rounds', 2);
const CONCURRENCY = opt('concurrency', 8);
const BLOCK_MIB = opt('block-mib', 8);
const ACCOUNT = 'devstoreaccount1';
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const MAIN = fileURLToPath(new URL('../node_modules/azurite/dist/src/blob/main.js', import.meta.url));

async function azurite(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [MAIN, '--blobHost', '127.0.0.1', '--blobPort', '0', '--disableTelemetry', '--skipApiVersionCheck', '--inMemoryPersistence', '--silent'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (c) => reject(new Error(`azurite exited ${c}`)));
  });
  return { url: `http://127.0.0.1:${port}/${ACCOUNT}`, stop: () => child.kill('SIGTERM') };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rubicon-bench-azblob-'));
  const files: { path: string; sha: string; size: number }[] = [];
  const size = Math.floor((MIB * 1024 * 1024) / FILES);
  for (let i = 0; i < FILES; i++) {
    const data = randomBytes(size);
    const path = join(dir, `f${i}.bin`);
    writeFileSync(path, data);
    files.push({ path, size, sha: createHash('sha256').update(data).digest('hex') });
  }
  const az = await azurite();
  const cred = new StorageSharedKeyCredential(ACCOUNT, KEY);
  const svc = new BlobServiceClient(az.url, cred);
  let n = 0;
  const times: Record<'vault' | 'baseline' | 'vault-no-sha', number[]> = { vault: [], baseline: [], 'vault-no-sha': [] };
  const contenders = {
    async vault() {
      const v = await new AzureBlobVault(
        { name: 'bench', kind: 'azure-blob', accountUrl: az.url, container: `bench-v${++n}`, prefix: 'rubicon', credential: { kind: 'shared-key', accountName: ACCOUNT, keyEnv: 'K' }, concurrency: CONCURRENCY, blockSizeMiB: BLOCK_MIB, retentionDays: 30 },
        { env: { K: KEY } },
      ).open();
      const t0 = performance.now();
      for (const f of files) await v.putFile(f.path, f.sha, f.size);
      for (const f of files) {
        const c = await v.check(f.sha, f.size);
        if (c.status !== 'ok') throw new Error(`vault check: ${c.detail}`);
      }
      return performance.now() - t0;
    },
    /** Attribution: the vault's upload without the SHA-256 on the way (MD5 per block only), then the same check(). */
    async 'vault-no-sha'() {
      const v = await new AzureBlobVault(
        { name: 'bench', kind: 'azure-blob', accountUrl: az.url, container: `bench-n${++n}`, prefix: 'rubicon', credential: { kind: 'shared-key', accountName: ACCOUNT, keyEnv: 'K' }, concurrency: CONCURRENCY, blockSizeMiB: BLOCK_MIB, retentionDays: 30 },
        { env: { K: KEY } },
      ).open();
      const t0 = performance.now();
      for (const f of files) await v.stageAndCommit(f.path, f.sha, f.size, false);
      for (const f of files) {
        const c = await v.check(f.sha, f.size);
        if (c.status !== 'ok') throw new Error(`vault check: ${c.detail}`);
      }
      return performance.now() - t0;
    },
    async baseline() {
      const c = svc.getContainerClient(`bench-b${++n}`);
      await c.createIfNotExists();
      const t0 = performance.now();
      for (const f of files) await c.getBlockBlobClient(`plain/${f.sha}`).uploadFile(f.path, { blockSize: BLOCK_MIB * 1024 * 1024, concurrency: CONCURRENCY });
      for (const f of files) {
        const r = await c.getBlobClient(`plain/${f.sha}`).download(0);
        const h = createHash('sha256');
        for await (const chunk of r.readableStreamBody as AsyncIterable<Buffer>) h.update(chunk);
        if (h.digest('hex') !== f.sha) throw new Error('baseline verify failed');
      }
      return performance.now() - t0;
    },
  };
  // Warm-up (JIT, sockets) on one small file, not counted.
  await readFile(files[0]!.path);
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const all: ('vault' | 'baseline' | 'vault-no-sha')[] = args.includes('--attribution') ? ['baseline', 'vault', 'vault-no-sha'] : ['baseline', 'vault'];
      const order = [...all.slice(r % all.length), ...all.slice(0, r % all.length)];
      for (const k of order) {
        const ms = await contenders[k]();
        times[k].push(ms);
        process.stdout.write(`round ${r + 1} ${k.padEnd(12)} ${(ms / 1000).toFixed(2)} s  ${((MIB / ms) * 1000).toFixed(0)} MiB/s\n`);
      }
    }
  } finally {
    az.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const best = (k: 'vault' | 'baseline' | 'vault-no-sha') => Math.min(...times[k]);
  process.stdout.write(`\n${MIB} MiB in ${FILES} files, block ${BLOCK_MIB} MiB, concurrency ${CONCURRENCY}, upload + verify\n`);
  process.stdout.write(`vault/baseline best:   ${(best('vault') / best('baseline')).toFixed(3)}\n`);
  process.stdout.write(`vault/baseline median: ${(median(times.vault) / median(times.baseline)).toFixed(3)}\n`);
  if (times['vault-no-sha'].length) process.stdout.write(`vault-no-sha/baseline best: ${(best('vault-no-sha') / best('baseline')).toFixed(3)}\n`);
}

await main();
