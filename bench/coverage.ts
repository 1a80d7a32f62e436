/**
 * Coverage benchmark: the everything capture of the sandbox root after the
 * folder artifacts (issue 8). It must store only what the folder artifacts
 * do not already hold (the bytes written into the vault are printed), and
 * cost at most 1.15x `cp -a` of the files it adds (the stray files outside
 * every folder item), made durable like the capture is (`cp -a && sync`).
 *
 *   node bench/coverage.ts [--small] [--rounds N] [--dir /path/for/temp] [--keep]
 *
 * The estate: `rubicon sandbox`'s target (the EHR folders and database)
 * plus stray data outside every folder item (default 256 MiB in 64 files
 * and 2000 small ones; --small: 32 MiB). Each round: fresh vaults, the
 * folder captures (untimed), then, interleaved, the everything capture and
 * `cp -a` + `sync` of exactly the files it adds into a fresh folder. Page
 * cache is warm for both. A script, not a test: numbers go into
 * docs/coverage.md.
 */
import { readManifest } from '../src/files/manifest.ts';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Manifest, ManifestEntry } from '../src/core/types.ts';
import { reroot } from '../src/coverage/volume.ts';
import { captureTree } from '../src/files/capture.ts';
import { comparePaths } from '../src/core/paths.ts';
import { walkAll } from '../src/files/walk.ts';
import { buildSandbox } from '../src/sandbox/estate.ts';
import { FilesystemVault } from '../src/vaults/filesystem.ts';

const args = process.argv.slice(2);
const small = args.includes('--small');
const keep = args.includes('--keep');
const rounds = Number(args[args.indexOf('--rounds') + 1]) || 5;
const dirArg = args.includes('--dir') ? args[args.indexOf('--dir') + 1] : undefined;
const base = mkdtempSync(join(dirArg ?? tmpdir(), 'rubicon-bench-coverage-'));
const log = (s: string) => process.stderr.write(`${s}\n`);

function du(dir: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) n += statSync(p).size;
    }
  };
  try {
    walk(dir);
  } catch {
    /* missing: 0 */
  }
  return n;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const L = await buildSandbox(join(base, 'estate'));
const root = L.target;
// Stray data outside every folder item: what only the everything capture holds.
const big = small ? { files: 16, size: 2 << 20, smallFiles: 500 } : { files: 64, size: 4 << 20, smallFiles: 2000 };
for (let i = 0; i < big.files; i++) {
  mkdirSync(join(root, 'practice-docs', `year-${i % 4}`), { recursive: true });
  writeFileSync(join(root, 'practice-docs', `year-${i % 4}`, `scan-${i}.pdf`), randomBytes(big.size));
}
for (let i = 0; i < big.smallFiles; i++) {
  mkdirSync(join(root, 'home-share', `u${i % 20}`), { recursive: true });
  writeFileSync(join(root, 'home-share', `u${i % 20}`, `note-${i}.txt`), randomBytes(1024 + (i % 7) * 512));
}
writeFileSync(join(root, 'root-notes.txt'), 'door code changed\n');

const folders = ['ehr/A', 'ehr/X', 'ehr/Y', 'ehr/Z', 'mssql/backup'];
const owned = ['mssql/data/ehr.db', 'mssql/data/ehr.db-wal', 'mssql/data/ehr.db-shm', 'mssql/data/ehr.db-journal'];
const inFolder = (p: string) => folders.some((f) => p === f || p.startsWith(`${f}/`));
const all = (await walkAll(root)).files;
const added = all.filter((f) => !inFolder(f.path) && !owned.includes(f.path) && f.path !== 'os-release');
const addedBytes = added.reduce((n, f) => n + f.size, 0);
const folderBytes = all.filter((f) => inFolder(f.path)).reduce((n, f) => n + f.size, 0);
log(`estate: ${all.length} files, ${mib(all.reduce((n, f) => n + f.size, 0))}; in folder items ${mib(folderBytes)}; outside them (what the everything capture adds) ${added.length} files, ${mib(addedBytes)}`);
const listFile = join(base, 'added.list');
writeFileSync(listFile, added.map((f) => f.path).join('\0') + '\0');
// The same added files on their own, to tell the everything capture's own cost from the file-mirror's.
const alone = join(base, 'added-alone');
mkdirSync(alone);
spawnSync('sh', ['-c', 'cd "$1" && xargs -0 cp -a --parents -t "$2" -- < "$3"', 'bench', root, alone, listFile]);

const ours: number[] = [];
const cps: number[] = [];
const mirrors: number[] = [];
let written = 0;
let read = 0;
for (let r = 0; r < rounds; r++) {
  const vaultDir = join(base, `vault-${r}`);
  const vault = new FilesystemVault({ name: 'nas', kind: 'filesystem', location: vaultDir, offTarget: true, immutable: false });
  const reuse: ManifestEntry[] = [];
  for (const f of folders) {
    const res = await captureTree({ sourceRoot: join(root, f), vaults: [vault], artifactId: `bench.${r}.folder:${f}`, itemId: `folder:${f}`, method: 'file-mirror', runId: 'bench' });
    reuse.push(...reroot('.', f, (await readManifest(vault, res.manifestHash)).entries));
  }
  spawnSync('sync');
  const before = du(join(vaultDir, 'objects'));
  const baseManifest: Manifest = { version: 1, artifactId: 'folders', itemId: 'volume:.', method: 'file-mirror', entries: reuse.sort((a, b) => comparePaths(a.path, b.path)) };
  const runOurs = async () => {
    const t = performance.now();
    const res = await captureTree({ sourceRoot: root, vaults: [vault], artifactId: `bench.${r}.volume:.`, itemId: 'volume:.', method: 'file-mirror', runId: 'bench', base: baseManifest, exclude: [...owned, 'os-release'], ...(process.env.BENCH_WORKERS ? { workers: Number(process.env.BENCH_WORKERS) } : {}) });
    ours.push(performance.now() - t);
    written = du(join(vaultDir, 'objects')) - before;
    read = res.bytesRead;
  };
  const runCp = () => {
    const dest = join(base, `cp-${r}`);
    mkdirSync(dest);
    const t = performance.now();
    const c = spawnSync('sh', ['-c', 'cd "$1" && xargs -0 cp -a --parents -t "$2" -- < "$3" && sync', 'bench', root, dest, listFile], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (c.status !== 0) throw new Error(`cp -a exited ${c.status}`);
    cps.push(performance.now() - t);
  };
  const runMirror = async () => {
    const v2 = new FilesystemVault({ name: 'nas', kind: 'filesystem', location: join(base, `mirror-${r}`), offTarget: true, immutable: false });
    const t = performance.now();
    await captureTree({ sourceRoot: alone, vaults: [v2], artifactId: `bench.${r}.alone`, itemId: 'folder:alone', method: 'file-mirror', runId: 'bench', ...(process.env.BENCH_WORKERS ? { workers: Number(process.env.BENCH_WORKERS) } : {}) });
    mirrors.push(performance.now() - t);
  };
  // Rotate who goes first.
  const order = [runOurs, async () => runCp(), runMirror];
  for (let k = 0; k < order.length; k++) await order[(k + r) % order.length]!();
  log(`round ${r + 1}: everything capture ${ours.at(-1)!.toFixed(0)} ms, file-mirror of the added files alone ${mirrors.at(-1)!.toFixed(0)} ms, cp -a + sync ${cps.at(-1)!.toFixed(0)} ms`);
}
const ratioBest = Math.min(...ours) / Math.min(...cps);
const ratioMedian = median(ours) / median(cps);
process.stdout.write(
  [
    `everything capture after the folder artifacts: read ${mib(read)}, wrote ${mib(written)} into the vault (the files outside the folder items: ${mib(addedBytes)}; the folder items' ${mib(folderBytes)} were not stored again)`,
    `time: best ${Math.min(...ours).toFixed(0)} ms, median ${median(ours).toFixed(0)} ms; cp -a + sync of the ${added.length} added files: best ${Math.min(...cps).toFixed(0)} ms, median ${median(cps).toFixed(0)} ms`,
    `ratio to cp -a + sync: best ${ratioBest.toFixed(2)}x, median ${ratioMedian.toFixed(2)}x (budget 1.15x) ${ratioBest <= 1.15 ? 'OK' : 'OVER BUDGET'}`,
    `ratio to the file-mirror of the added files alone (the everything capture's own overhead: walking and vouching for the folder items' files): best ${(Math.min(...ours) / Math.min(...mirrors)).toFixed(2)}x, median ${(median(ours) / median(mirrors)).toFixed(2)}x; file-mirror alone / cp -a + sync: best ${(Math.min(...mirrors) / Math.min(...cps)).toFixed(2)}x`,
    '',
  ].join('\n'),
);
if (!keep) rmSync(base, { recursive: true, force: true });
if (written > addedBytes * 1.01 + (1 << 20)) {
  process.stderr.write(`the everything capture stored ${mib(written)}, more than the ${mib(addedBytes)} the folder artifacts do not hold\n`);
  process.exitCode = 1;
}
