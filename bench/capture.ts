/**
 * Capture benchmark: file-mirror capture (copy + SHA-256 + manifest, synced)
 * against cp -a, cp -a && sync, rsync -a + sha256sum; the drift scan of an
 * unchanged tree against rsync -an; a 1 % delta against the full capture;
 * peak RSS of the capture at two tree sizes.
 *
 *   node bench/capture.ts [--small] [--keep] [--dir /path/for/temp] [--rounds N]
 *
 * ~2 GB by default, ~200 MB with --small. Needs cp, sync, rsync, sha256sum,
 * find, xargs. A script, not a test: numbers go into docs/files.md.
 * Page cache is warm for every tool (the tree was just written): this
 * measures the copy/hash/metadata work, not the source disk.
 *
 * Protocol (this VM is noisy: 2 shared cores, and ext4 without a journal
 * scans recently deleted inodes when it allocates new ones, so whoever
 * creates files right after an `rm -rf` pays for it):
 * - every contender writes into a fresh folder, and nothing is deleted while
 *   contenders run: with --small all outputs stay until the end (~5 GB);
 *   on the full tree a round's outputs (~10 GB) are deleted after it, and
 *   the next round waits `--settle` seconds (default 65: ext4 skips inodes
 *   deleted in the last 60 s) so that no contender pays for the deletion;
 * - contenders run in interleaved rounds; each round starts one contender
 *   later than the one before, so none always goes first;
 * - each contender's best and median are reported, and ratios of both.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureTree } from '../src/files/capture.ts';
import { scanDrift } from '../src/files/drift.ts';
import { readManifest } from '../src/files/manifest.ts';
import { FilesystemVault } from '../src/vaults/filesystem.ts';

const args = process.argv.slice(2);

if (args[0] === '--child') {
  await child(args.slice(1));
  process.exit(0);
}

const small = args.includes('--small');
const keep = args.includes('--keep');
const dirArg = args[args.indexOf('--dir') + 1];
const base = mkdtempSync(join(args.includes('--dir') && dirArg ? dirArg : tmpdir(), 'rubicon-bench-'));
const src = join(base, 'src');

const shape = small
  ? { dirs: 40, perDir: 100, avgSmall: 25 * 1024, bigFiles: 2, bigSize: 50 * 1024 * 1024 }
  : { dirs: 200, perDir: 100, avgSmall: 50 * 1024, bigFiles: 4, bigSize: 256 * 1024 * 1024 };

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

function sh(cmd: string, argv: string[], cwd?: string): void {
  const r = spawnSync(cmd, argv, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}`);
}

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/** Best of `n` runs (the machine is shared; the minimum is the least disturbed). `before` runs untimed. */
function best(n: number, fn: () => void, before: () => void = () => undefined): number {
  let min = Infinity;
  for (let i = 0; i < n; i++) {
    before();
    min = Math.min(min, timed(fn));
  }
  return min;
}

function flush(): void {
  sh('sync', []); // untimed: dirty pages of the previous step must not slow the next one
}

interface ChildResult {
  ms: number;
  maxRssKiB: number;
  fileCount: number;
  bytes: number;
  bytesRead: number;
  manifestHash: string;
  changed?: number;
}

function runChild(childArgs: string[]): ChildResult {
  const out = execFileSync(process.execPath, [new URL(import.meta.url).pathname, '--child', ...childArgs], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(out.trim().split('\n').pop() as string) as ChildResult;
}

/**
 * Peak resident memory of this process image, from VmHWM. (getrusage's
 * maxRSS is not used: Linux carries it over execve, so a child spawned by a
 * big parent reports at least the parent's size.)
 */
function peakRssKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
}

/** Child: one capture (or delta, or drift scan) in a fresh process so its peak RSS is its own. */
async function child(a: string[]): Promise<void> {
  const [mode, source, vaultDir, artifactId, durability, baseHash, excludeJson, workersArg] = a as [
    string,
    string,
    string,
    string,
    string,
    string | undefined,
    string | undefined,
    string | undefined,
  ];
  const vault = new FilesystemVault(
    { name: 'bench', kind: 'filesystem', location: vaultDir, offTarget: true, immutable: false },
    { durability: durability === 'none' ? 'syncfs' : (durability as 'commit' | 'batch' | 'syncfs') },
  );
  if (durability === 'none') {
    // Bench only: skip the durability barrier, to compare like with like against plain `cp -a`.
    vault.sync = async () => undefined;
  }
  const baseManifest = baseHash ? await readManifest(vault, baseHash) : undefined;
  const exclude = excludeJson ? (JSON.parse(excludeJson) as string[]) : undefined;
  const t = performance.now();
  if (mode === 'drift') {
    const changes = await scanDrift(source, baseManifest as NonNullable<typeof baseManifest>);
    const ms = performance.now() - t;
    process.stdout.write(`${JSON.stringify({ ms, maxRssKiB: peakRssKiB(), fileCount: 0, bytes: 0, bytesRead: 0, manifestHash: '', changed: changes.length })}\n`);
    return;
  }
  const workers = workersArg ? Number(workersArg) : undefined;
  const r = await captureTree({
    sourceRoot: source,
    vaults: [vault],
    artifactId,
    itemId: 'folder:bench',
    method: 'file-mirror',
    runId: 'bench',
    base: baseManifest,
    exclude,
    ...(workers !== undefined ? { workers } : {}),
  });
  const ms = performance.now() - t;
  const res: ChildResult = {
    ms,
    maxRssKiB: peakRssKiB(),
    fileCount: r.fileCount,
    bytes: r.bytes,
    bytesRead: r.bytesRead,
    manifestHash: r.manifestHash,
    ...(r.changed ? { changed: r.changed.length } : {}),
  };
  process.stdout.write(`${JSON.stringify(res)}\n`);
}

// ---------------------------------------------------------------- tree

function generate(): { files: number; bytes: number; smallPaths: string[] } {
  const pool = randomBytes(64 * 1024 * 1024);
  let files = 0;
  let bytes = 0;
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const smallPaths: string[] = [];
  for (let d = 0; d < shape.dirs; d++) {
    const dirRel = `d${String(Math.floor(d / 20)).padStart(2, '0')}/d${String(d).padStart(3, '0')}`;
    mkdirSync(join(src, dirRel), { recursive: true });
    for (let f = 0; f < shape.perDir; f++) {
      const size = f % 50 === 0 ? 0 : rnd(2 * shape.avgSmall);
      const off = rnd(pool.length - size - 16);
      const header = Buffer.from(`${d}:${f}:`);
      const rel = `${dirRel}/f${String(f).padStart(3, '0')}.bin`;
      const content = size === 0 ? Buffer.alloc(0) : Buffer.concat([header, pool.subarray(off, off + Math.max(0, size - header.length))]);
      writeFileSync(join(src, rel), content);
      smallPaths.push(rel);
      files++;
      bytes += content.length;
    }
  }
  mkdirSync(join(src, 'big'), { recursive: true });
  for (let b = 0; b < shape.bigFiles; b++) {
    const chunks: Buffer[] = [];
    let left = shape.bigSize;
    while (left > 0) {
      const n = Math.min(left, 8 * 1024 * 1024);
      const off = rnd(pool.length - n);
      chunks.push(pool.subarray(off, off + n));
      left -= n;
    }
    chunks.unshift(Buffer.from(`big ${b}\n`));
    const content = Buffer.concat(chunks);
    writeFileSync(join(src, 'big', `backup-${b}.bak`), content);
    files++;
    bytes += content.length;
  }
  return { files, bytes, smallPaths };
}

// ---------------------------------------------------------------- run

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(0)} MB`;
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

try {
  log(`generating ${small ? '~200 MB' : '~2 GB'} tree in ${src} ...`);
  const tree = generate();
  flush();
  log(`tree: ${tree.files} files, ${mb(tree.bytes)}`);

  const cpDst = join(base, 'cp');
  const rm = (p: string) => () => {
    rmSync(p, { recursive: true, force: true });
    flush();
  };

  // Interleaved rounds; every contender writes into a fresh folder, deleted only after the round.
  const roundsArg = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : NaN;
  const reps = Number.isInteger(roundsArg) && roundsArg > 0 ? roundsArg : small ? 5 : 3;
  type Mode = 'commit' | 'batch' | 'syncfs' | 'none' | 'none-w0';
  const times: Record<'cp' | 'cpSync' | Mode, number[]> = { cp: [], cpSync: [], commit: [], batch: [], syncfs: [], none: [], 'none-w0': [] };
  const cap: Partial<Record<Mode, ChildResult>> = {};
  let rsyncShaMs = Infinity;
  const runCapture = (d: Mode, dir: string): void => {
    const r = runChild(['capture', src, dir, 'bench-full', d === 'none-w0' ? 'none' : d, '', '', d === 'none-w0' ? '0' : '']);
    times[d].push(r.ms);
    if (!cap[d] || r.ms < (cap[d] as ChildResult).ms) cap[d] = r;
  };
  const vaultCommit = join(base, 'vault-syncfs');
  const settleArg = args.includes('--settle') ? Number(args[args.indexOf('--settle') + 1]) : NaN;
  const settleS = Number.isFinite(settleArg) && settleArg >= 0 ? settleArg : 65;
  const settle = (): void => {
    log(`  waiting ${settleS} s after the deletion ...`);
    sh('sleep', [String(settleS)]);
  };
  if (!small) settle(); // whatever was deleted before the bench started
  for (let rep = 1; rep <= reps; rep++) {
    log(`round ${rep}/${reps}: cp -a, capture (no barrier), capture main thread only, cp -a && sync, capture syncfs (rotated) ...`);
    const round = join(base, `round-${rep}`);
    mkdirSync(round);
    const contenders: (() => void)[] = [
      () => times.cp.push(timed(() => sh('cp', ['-a', src, join(round, 'cp')]))),
      () => runCapture('none', join(round, 'vault-none')),
      () => runCapture('none-w0', join(round, 'vault-none-w0')),
      () =>
        times.cpSync.push(
          timed(() => {
            sh('cp', ['-a', src, join(round, 'cp-sync')]);
            sh('sync', []);
          }),
        ),
      () => runCapture('syncfs', rep === reps ? vaultCommit : join(round, 'vault-syncfs')),
    ];
    // Each round starts one contender later, so no one always goes first.
    for (let k = 0; k < contenders.length; k++) {
      flush();
      (contenders[(k + rep - 1) % contenders.length] as () => void)();
    }
    if (!small) {
      rm(round)();
      settle();
    }
  }
  log('once: capture with durability commit and batch, rsync -a + sha256sum ...');
  {
    const round = join(base, 'round-once');
    mkdirSync(round);
    flush();
    runCapture('commit', join(round, 'vault-commit'));
    flush();
    runCapture('batch', join(round, 'vault-batch'));
    flush();
    rsyncShaMs = timed(() => {
      sh('rsync', ['-a', `${src}/`, `${join(round, 'rsync')}/`]);
      sh('sh', ['-c', 'find . -type f -print0 | xargs -0 sha256sum > /dev/null'], src);
    });
    if (!small) {
      rm(round)();
      settle();
    }
  }
  const median = (xs: number[]): number => {
    const ys = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(ys.length / 2);
    return ys.length % 2 ? (ys[mid] as number) : ((ys[mid - 1] as number) + (ys[mid] as number)) / 2;
  };
  const cpMs = Math.min(...times.cp);
  const cpSyncMs = Math.min(...times.cpSync);
  const capCommit = cap.syncfs;
  const capBatch = cap.batch;
  const capSyncfs = cap.syncfs;
  const capStrict = cap.commit;
  const capNone = cap.none;
  const capNoneW0 = cap['none-w0'];
  if (!capCommit || !capBatch || !capSyncfs || !capNone || !capStrict || !capNoneW0) throw new Error('capture did not run');
  if (capCommit.fileCount !== tree.files || capCommit.bytes !== tree.bytes) throw new Error(`capture saw ${capCommit.fileCount} files / ${capCommit.bytes} B, tree has ${tree.files} / ${tree.bytes}`);
  for (const other of [capBatch, capStrict, capNone, capNoneW0]) {
    if (other.manifestHash !== capSyncfs.manifestHash) throw new Error('the captures disagree on the manifest');
  }
  // cross-check one file against sha256sum
  const sample = tree.smallPaths[7] as string;
  const expected = execFileSync('sha256sum', [sample], { cwd: src, encoding: 'utf8' }).split(' ')[0];
  const m = await readManifest(new FilesystemVault({ name: 'bench', kind: 'filesystem', location: vaultCommit, offTarget: true, immutable: false }), capCommit.manifestHash);
  if (m.entries.find((e) => e.path === sample)?.sha256 !== expected) throw new Error(`manifest hash of ${sample} differs from sha256sum`);

  log('drift scan vs rsync -an ...');
  let driftRes: ChildResult | undefined;
  best(3, () => {
    driftRes = runChild(['drift', src, vaultCommit, '-', 'commit', capCommit?.manifestHash as string]);
  });
  const driftInProcess: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const changes = await scanDrift(src, m);
    driftInProcess.push(performance.now() - t);
    if (changes.length !== 0) throw new Error(`drift on an unchanged tree: ${changes.length} changes`);
  }
  const driftMs = Math.min(...driftInProcess);
  sh('cp', ['-a', src, cpDst]);
  flush();
  const rsyncDryMs = best(3, () => sh('rsync', ['-an', `${src}/`, `${cpDst}/`]));
  if (!driftRes || driftRes.changed !== 0) throw new Error('drift child reported changes on an unchanged tree');

  log('delta after changing 1 % of the files ...');
  const changedCount = Math.max(1, Math.round(tree.files / 100));
  for (let i = 0; i < changedCount; i++) {
    const rel = tree.smallPaths[(i * 97) % tree.smallPaths.length] as string;
    writeFileSync(join(src, rel), randomBytes(shape.avgSmall));
  }
  flush();
  const delta = runChild(['capture', src, vaultCommit, 'bench-delta', 'syncfs', capCommit.manifestHash]);
  const deltaMs = delta.ms;

  log('peak RSS at a quarter of the tree ...');
  const dirsTop = readdirSync(src).filter((n) => n.startsWith('d')).sort();
  const quarterExclude = [...dirsTop.slice(Math.ceil(dirsTop.length / 4)), ...Array.from({ length: shape.bigFiles }, (_, b) => `big/backup-${b}.bak`).slice(Math.max(1, shape.bigFiles / 4))];
  const vaultQuarter = join(base, 'vault-quarter');
  const quarter = runChild(['capture', src, vaultQuarter, 'bench-quarter', 'syncfs', '', JSON.stringify(quarterExclude)]);

  const vs = (ms: number): string => `${(ms / cpSyncMs).toFixed(2)}x cp -a&&sync, ${(ms / cpMs).toFixed(2)}x cp -a`;
  const spread = (xs: number[]): string => `best ${s(Math.min(...xs))}, median ${s(median(xs))}, worst ${s(Math.max(...xs))} (n=${xs.length})`;
  const rows: [string, string, string][] = [
    ['cp -a', s(cpMs), spread(times.cp)],
    ['cp -a && sync', s(cpSyncMs), spread(times.cpSync)],
    ['rsync -a + sha256sum (all files, once)', s(rsyncShaMs), ''],
    ['capture, durability=commit (fsync per object, once)', s(capStrict.ms), vs(capStrict.ms)],
    ['capture, durability=batch (fsync each at sync(), once)', s(capBatch.ms), vs(capBatch.ms)],
    ['capture, durability=syncfs (default)', s(capSyncfs.ms), `${vs(capSyncfs.ms)}; ${spread(times.syncfs)}`],
    ['capture without the sync() barrier (not durable)', s(capNone.ms), `${(capNone.ms / cpMs).toFixed(2)}x cp -a; ${spread(times.none)}`],
    ['  same, main thread only (workers: 0)', s(capNoneW0.ms), `${(capNoneW0.ms / cpMs).toFixed(2)}x cp -a; ${spread(times['none-w0'])}`],
    ['drift scan, unchanged tree (in process)', s(driftMs), `${(driftMs / rsyncDryMs).toFixed(2)}x rsync -an`],
    ['drift scan in a fresh child (scan only)', s(driftRes.ms), `${(driftRes.ms / rsyncDryMs).toFixed(2)}x rsync -an`],
    ['rsync -an (dry run vs the cp copy)', s(rsyncDryMs), ''],
    [`delta capture (${changedCount} files changed)`, s(deltaMs), `${(deltaMs / capSyncfs.ms).toFixed(3)}x full capture; read ${mb(delta.bytesRead)}; ${delta.changed} changes`],
  ];
  const ratio = (a: number[], b: number[]): string => `best/best ${(Math.min(...a) / Math.min(...b)).toFixed(2)}x, median/median ${(median(a) / median(b)).toFixed(2)}x`;
  const w = Math.max(...rows.map((r) => r[0].length));
  const lines = [
    `tree: ${tree.files} files, ${mb(tree.bytes)} (${shape.dirs * shape.perDir} small, ${shape.bigFiles} x ${mb(shape.bigSize)}); page cache warm; ${reps} interleaved rounds (drift: best of 3)`,
    ...rows.map((r) => `${r[0].padEnd(w)}  ${r[1].padStart(8)}  ${r[2]}`),
    '',
    'targets:',
    `  capture <= 1.15x cp -a (neither flushes):        ${ratio(times.none, times.cp)}  ${capNone.ms / cpMs <= 1.15 ? 'MET' : 'MISSED'} (best/best)`,
    `  capture <= 1.15x cp -a && sync (both durable):  ${ratio(times.syncfs, times.cpSync)}  ${capSyncfs.ms / cpSyncMs <= 1.15 ? 'MET' : 'MISSED'} (best/best)`,
    `  copy workers vs main thread only (no barrier):  ${ratio(times.none, times['none-w0'])}`,
    `  drift scan <= 1.0x rsync -an: ${(driftMs / rsyncDryMs).toFixed(2)}x  ${driftMs / rsyncDryMs <= 1.0 ? 'MET' : 'MISSED'}`,
    `  delta <= 0.1x full capture: ${(deltaMs / capSyncfs.ms).toFixed(3)}x  ${deltaMs / capSyncfs.ms <= 0.1 ? 'MET' : 'MISSED'}`,
    '',
    'peak RSS of the capture process (VmHWM, includes ~90 MiB of Node + loaded modules):',
    `  quarter tree: ${quarter.fileCount} files, ${mb(quarter.bytes)} -> ${(quarter.maxRssKiB / 1024).toFixed(0)} MiB`,
    `  full tree:    ${capSyncfs.fileCount} files, ${mb(capSyncfs.bytes)} -> ${(capSyncfs.maxRssKiB / 1024).toFixed(0)} MiB`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  if (!keep) rmSync(base, { recursive: true, force: true });
  else log(`kept ${base}`);
}
