/**
 * Speed bench of the file data plane against the raw tools, in one run, on
 * the same data (issue 15). Prints one table for both tree shapes and both
 * content variants, each target MET or MISSED with its ratio, peak RSS at
 * 20k and 200k files, and the outage end to end on the large tree.
 *
 *   node bench/capture.ts [--small] [--rounds N] [--dir /tmp] [--keep] [--no-outage] [--no-memory] [--outage] [--memory] [--only large/random,memory,outage,...]
 *
 * Shapes (full / --small):
 * - large: 10,000 files of 0-80 KB + 2 files of 200 MB (0.8 GB) / 1,000 files + 1 x 16 MB;
 * - small-file: 10,000 files of 0-8 KB / 1,000;
 * a full run generates each twice (random bytes, compressible text), --small the random one.
 * Memory: the small-file shape at 20,000 and 200,000 files / 1,000 and 10,000.
 * Memory and the outage: full runs only (--small with --memory, --outage).
 *
 * Contenders run in interleaved rounds (3, or --rounds), each round starting one contender later, every one writing
 * into a fresh folder that is deleted only after the shape is done (ext4
 * without a journal skips inodes deleted in the last 60 s when it allocates:
 * whoever runs right after an `rm -rf` pays). Page cache warm for everyone.
 * Rubicon's side runs in a fresh child process each time (bench/child.ts; its peak RSS is its
 * own), with Node's compile cache (what `module.enableCompileCache()` in
 * bin/rubicon.js gives); its times are measured inside the child around the
 * work ("in process") and, for the drift scan, also as the child's whole life
 * ("fresh process", the way a freeze would run it as its own command).
 * Only ratios within this run mean anything: the machine is shared.
 *
 * A script, not a test; CI runs `--small` and keeps its output (docs/files.md).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildJob, ChildResult } from './child.ts';

const args = process.argv.slice(2);
const repo = new URL('..', import.meta.url).pathname;

// ---------------------------------------------------------------- child side: bench/child.ts (its own file, so a
// child loads only what its step needs, not this script's imports)

const childScript = new URL('./child.ts', import.meta.url).pathname;

// ---------------------------------------------------------------- parent side

const small = args.includes('--small');
const keep = args.includes('--keep');
const opt = (name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const base = mkdtempSync(join(opt('--dir') ?? tmpdir(), 'rubicon-bench-'));
const cacheDir = join(base, 'compile-cache');
const roundsArg = Number(opt('--rounds'));

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

function sh(cmd: string, argv: string[], cwd?: string): void {
  const r = spawnSync(cmd, argv, { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}`);
}

const shq = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * Runs the commands in order (each must succeed) under sh and returns their wall time and CPU time
 * (user + system of the children, from the shell's `times`): CPU time does not grow with the load
 * of a shared machine the way wall time does.
 */
function timedTool(...cmds: string[][]): { ms: number; cpuMs: number } {
  const script = `${cmds.map((c) => c.map(shq).join(' ')).join(' && ')} && times`;
  const t = performance.now();
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`${script} exited ${r.status}`);
  // `times`: the shell's user and system time, then its children's ("0m0.010000s 0m0.300000s").
  const children = r.stdout.trim().split('\n').pop() as string;
  const secs = [...children.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  return { ms, cpuMs: 1000 * ((secs[0] ?? 0) + (secs[1] ?? 0)) };
}

function flush(): void {
  sh('sync', []); // untimed: dirty pages of one contender must not slow the next
}

function runChild(job: ChildJob, cache = true): ChildResult & { wallMs: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [childScript, JSON.stringify(job)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ...(cache ? { NODE_COMPILE_CACHE: cacheDir } : { NODE_COMPILE_CACHE: '', NODE_DISABLE_COMPILE_CACHE: '1' }) },
  });
  const wallMs = performance.now() - t;
  if (r.status !== 0) throw new Error(`bench child ${job.mode} exited ${r.status}`);
  return { ...(JSON.parse(r.stdout.trim().split('\n').pop() as string) as ChildResult), wallMs };
}

// ---------------------------------------------------------------- trees

interface Shape {
  name: 'large' | 'small-file';
  dirs: number;
  perDir: number;
  maxSmall: number;
  bigFiles: number;
  bigSize: number;
  rounds: number;
}

// Sizes chosen so a full run stays under 10 minutes on these machines (2 cores, shared, a disk mounted
// with 'discard' where deleting a shape's outputs is most of its cost) and --small under a minute (CI).
const SHAPES: Shape[] = small
  ? [
      { name: 'large', dirs: 10, perDir: 100, maxSmall: 80 * 1024, bigFiles: 1, bigSize: 16 * 1024 * 1024, rounds: 3 },
      { name: 'small-file', dirs: 10, perDir: 100, maxSmall: 8 * 1024, bigFiles: 0, bigSize: 0, rounds: 3 },
    ]
  : [
      { name: 'large', dirs: 100, perDir: 100, maxSmall: 80 * 1024, bigFiles: 2, bigSize: 200 * 1024 * 1024, rounds: 3 },
      { name: 'small-file', dirs: 100, perDir: 100, maxSmall: 8 * 1024, bigFiles: 0, bigSize: 0, rounds: 3 },
    ];
/** --small (CI) measures the random variant only; a full run both. */
const VARIANTS: ('random' | 'compressible')[] = small ? ['random'] : ['random', 'compressible'];

type Variant = 'random' | 'compressible';

/** A deterministic tree; returns the file count, bytes and the small files' paths (to change 1 % of them later). */
function generate(root: string, shape: Pick<Shape, 'dirs' | 'perDir' | 'maxSmall' | 'bigFiles' | 'bigSize'>, variant: Variant): { files: number; bytes: number; smallPaths: string[] } {
  const pool =
    variant === 'random'
      ? randomBytes(32 * 1024 * 1024)
      : Buffer.from(
          Array.from({ length: 400_000 }, (_, i) => `${String(i).padStart(8, '0')} patient-visit;lab=CBC;result=normal;ward=${i % 17};note=follow up in 2 weeks\n`).join(''),
        );
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return n <= 0 ? 0 : seed % n;
  };
  let files = 0;
  let bytes = 0;
  const smallPaths: string[] = [];
  for (let d = 0; d < shape.dirs; d++) {
    const dirRel = `d${String(Math.floor(d / 20)).padStart(2, '0')}/d${String(d).padStart(3, '0')}`;
    mkdirSync(join(root, dirRel), { recursive: true });
    for (let f = 0; f < shape.perDir; f++) {
      const size = f % 50 === 0 ? 0 : rnd(shape.maxSmall);
      const off = rnd(pool.length - size - 16);
      const header = Buffer.from(`${d}:${f}:`);
      const content = size === 0 ? Buffer.alloc(0) : Buffer.concat([header, pool.subarray(off, off + Math.max(0, size - header.length))]);
      const rel = `${dirRel}/f${String(f).padStart(3, '0')}.bin`;
      writeFileSync(join(root, rel), content);
      smallPaths.push(rel);
      files++;
      bytes += content.length;
    }
  }
  if (shape.bigFiles > 0) mkdirSync(join(root, 'big'), { recursive: true });
  for (let b = 0; b < shape.bigFiles; b++) {
    const parts: Buffer[] = [Buffer.from(`big ${b}\n`)];
    let left = shape.bigSize;
    while (left > 0) {
      const n = Math.min(left, 8 * 1024 * 1024);
      const off = rnd(pool.length - n);
      parts.push(pool.subarray(off, off + n));
      left -= n;
    }
    const content = Buffer.concat(parts);
    writeFileSync(join(root, 'big', `backup-${b}.bak`), content);
    files++;
    bytes += content.length;
  }
  return { files, bytes, smallPaths };
}

// ---------------------------------------------------------------- stats

interface Stat {
  min: number;
  median: number;
  max: number;
  n: number;
}
function stat(xs: number[]): Stat {
  const ys = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(ys.length / 2);
  return { min: ys[0] as number, median: ys.length % 2 ? (ys[mid] as number) : ((ys[mid - 1] as number) + (ys[mid] as number)) / 2, max: ys.at(-1) as number, n: ys.length };
}
const sec = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)}` : ms >= 1000 ? `${(ms / 1000).toFixed(2)}` : `${(ms / 1000).toFixed(3)}`);
const fmt = (s: Stat): string => `${sec(s.min)} / ${sec(s.median)} / ${sec(s.max)} s`;
const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(0)} MB`;

interface TargetLine {
  what: string;
  ratio: number;
  limit: number;
  how: string;
}
const targets: TargetLine[] = [];
const rows: string[][] = [];
/**
 * The shell's `times` counts CPU in clock ticks (10 ms at USER_HZ 100): a
 * yardstick below one tick reads 0, and a ratio to it would be Infinity or
 * NaN. Below that floor the ratio is not given, and the text says why.
 */
const CPU_TICK_MS = 10;
function cpuRatio(a: number, b: number): string {
  return b < CPU_TICK_MS ? `n/a (the raw tool's CPU time, ${b.toFixed(0)} ms, is below the ${CPU_TICK_MS} ms the shell's times resolves)` : `${(a / b).toFixed(2)}x`;
}

function target(what: string, a: Stat, b: Stat, limit: number, cpu?: [Stat, Stat]): void {
  const cpuText = cpu ? `; CPU time ${cpuRatio(cpu[0].median, cpu[1].median)}` : '';
  targets.push({ what, ratio: a.median / b.median, limit, how: `median/median; best/best ${(a.min / b.min).toFixed(2)}x${cpuText}` });
}

// ---------------------------------------------------------------- one shape, one variant

function benchShape(shape: Shape, variant: Variant): void {
  const label = `${shape.name}/${variant}`;
  const dir = join(base, `${shape.name}-${variant}`);
  const src = join(dir, 'src');
  log(`[${label}] generating ...`);
  const tree = generate(src, shape, variant);
  flush();
  log(`[${label}] ${tree.files} files, ${mb(tree.bytes)}`);
  const rounds = Number.isInteger(roundsArg) && roundsArg > 0 ? roundsArg : shape.rounds;

  // Fixed inputs for landing, drift and delta: one vault and one cp copy made before the rounds.
  const vault0 = join(dir, 'vault0');
  const first = runChild({ mode: 'capture', src, vault: vault0, artifactId: 'bench.full', sync: true });
  if (first.fileCount !== tree.files || first.bytes !== tree.bytes) throw new Error(`capture saw ${first.fileCount} files / ${first.bytes} B; the tree has ${tree.files} / ${tree.bytes}`);
  const sample = tree.smallPaths[7] as string;
  const expected = execFileSync('sha256sum', [sample], { cwd: src, encoding: 'utf8' }).split(' ')[0];
  const line = readFileSync(join(vault0, 'objects', (first.manifestHash as string).slice(0, 2), first.manifestHash as string), 'utf8')
    .split('\n')
    .find((l) => l.includes(`"path":"${sample}"`));
  if (!line?.includes(expected as string)) throw new Error(`manifest hash of ${sample} differs from sha256sum`);
  const copy0 = join(dir, 'copy0');
  sh('cp', ['-a', src, copy0]);
  flush();

  const t = { cp: [] as number[], cpSync: [] as number[], cap: [] as number[], capNoSync: [] as number[], land: [] as number[], landNoSync: [] as number[] };
  /** CPU time of each contender's process(es), same rounds. */
  const cpu = { cp: [] as number[], cpSync: [] as number[], cap: [] as number[], capNoSync: [] as number[], land: [] as number[], landNoSync: [] as number[] };
  const tool = (k: 'cp' | 'cpSync', r: { ms: number; cpuMs: number }): void => {
    t[k].push(r.ms);
    cpu[k].push(r.cpuMs);
  };
  const mine = (k: 'cap' | 'capNoSync' | 'land' | 'landNoSync', r: ChildResult): void => {
    t[k].push(r.ms);
    cpu[k].push(r.cpuMs);
  };
  for (let r = 1; r <= rounds; r++) {
    log(`[${label}] round ${r}/${rounds}`);
    const out = join(dir, `round-${r}`);
    mkdirSync(out);
    const contenders: (() => void)[] = [
      () => tool('cp', timedTool(['cp', '-a', src, join(out, 'cp')])),
      () => tool('cpSync', timedTool(['cp', '-a', src, join(out, 'cp-sync')], ['sync'])),
      () => mine('cap', runChild({ mode: 'capture', src, vault: join(out, 'vault'), artifactId: 'bench.round', sync: true })),
      () => mine('capNoSync', runChild({ mode: 'capture', src, vault: join(out, 'vault-nosync'), artifactId: 'bench.round', sync: false })),
      () => {
        const res = runChild({ mode: 'land', vault: vault0, manifestHash: first.manifestHash as string, dest: join(out, 'land'), sync: true });
        if (res.validated !== tree.files) throw new Error(`landing validated ${res.validated} of ${tree.files} files`);
        mine('land', res);
      },
      () => mine('landNoSync', runChild({ mode: 'land', vault: vault0, manifestHash: first.manifestHash as string, dest: join(out, 'land-nosync'), sync: false })),
    ];
    for (let k = 0; k < contenders.length; k++) {
      flush();
      (contenders[(k + r - 1) % contenders.length] as () => void)();
    }
  }

  log(`[${label}] drift scan vs rsync -an ...`);
  const drift: number[] = [];
  const driftIn: number[] = [];
  const driftCpu: number[] = [];
  const rsync: number[] = [];
  const rsyncCpu: number[] = [];
  let driftNoCache = 0;
  for (let r = 0; r < Math.max(3, rounds); r++) {
    const d = () => {
      const res = runChild({ mode: 'drift', src, vault: vault0, manifestHash: first.manifestHash as string });
      if (res.changes !== 0) throw new Error(`drift on an unchanged tree: ${res.changes} changes`);
      drift.push(res.wallMs);
      driftIn.push(res.ms);
      driftCpu.push(res.cpuMs);
    };
    const y = () => {
      const res = timedTool(['rsync', '-an', `${src}/`, `${copy0}/`]);
      rsync.push(res.ms);
      rsyncCpu.push(res.cpuMs);
    };
    if (r % 2) {
      d();
      y();
    } else {
      y();
      d();
    }
  }
  driftNoCache = runChild({ mode: 'drift', src, vault: vault0, manifestHash: first.manifestHash as string }, false).wallMs;

  log(`[${label}] deltas after changing 1 % of the files ...`);
  const deltas: number[] = [];
  const deltaWall: number[] = [];
  let prev = first.manifestHash as string;
  let deltaRead = 0;
  const changeCount = Math.max(1, Math.round(tree.files / 100));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < changeCount; i++) {
      const rel = tree.smallPaths[(i * 97 + r * 31) % tree.smallPaths.length] as string;
      writeFileSync(join(src, rel), randomBytes(Math.max(1, (i * 131) % shape.maxSmall)));
    }
    flush();
    const res = runChild({ mode: 'capture', src, vault: vault0, artifactId: `bench.delta-${r}`, baseHash: prev, sync: true });
    if ((res.changes ?? 0) < changeCount) throw new Error(`delta listed ${res.changes} changes, expected ${changeCount}`);
    deltas.push(res.ms);
    deltaWall.push(res.wallMs);
    deltaRead = res.bytesRead as number;
    prev = res.manifestHash as string;
  }

  const S = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, stat(v)])) as Record<keyof typeof t, Stat>;
  const C = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, stat(v)])) as Record<keyof typeof cpu, Stat>;
  const driftC = stat(driftCpu);
  const rsyncC = stat(rsyncCpu);
  /** CPU time, median, and its ratio to a yardstick's. */
  const cpuOf = (a: Stat, b?: Stat): string => `; CPU ${sec(a.median)} s${b ? ` (${cpuRatio(a.median, b.median)})` : ''}`;
  const driftS = stat(drift);
  const rsyncS = stat(rsync);
  const deltaS = stat(deltas);
  rows.push(
    [`${label}: ${tree.files} files, ${mb(tree.bytes)}`, '', ''],
    ['  cp -a', fmt(S.cp), cpuOf(C.cp).slice(2)],
    ['  cp -a && sync', fmt(S.cpSync), cpuOf(C.cpSync).slice(2)],
    ['  capture (durable, syncfs)', fmt(S.cap), `${(S.cap.median / S.cpSync.median).toFixed(2)}x cp -a && sync${cpuOf(C.cap, C.cpSync)}`],
    ['  capture without the barrier', fmt(S.capNoSync), `${(S.capNoSync.median / S.cp.median).toFixed(2)}x cp -a${cpuOf(C.capNoSync, C.cp)}`],
    ['  landing, validated, durable', fmt(S.land), `${(S.land.median / S.cpSync.median).toFixed(2)}x cp -a && sync, ${(S.land.median / S.cp.median).toFixed(2)}x cp -a${cpuOf(C.land, C.cpSync)}`],
    ['  landing, validated, no barrier', fmt(S.landNoSync), `${(S.landNoSync.median / S.cp.median).toFixed(2)}x cp -a${cpuOf(C.landNoSync, C.cp)}`],
    [`  delta, ${changeCount} files changed (in process)`, fmt(deltaS), `${(deltaS.median / S.cap.median).toFixed(3)}x capture; read ${mb(deltaRead)}; fresh process ${fmt(stat(deltaWall))}`],
    ['  drift scan, fresh process', fmt(driftS), `${(driftS.median / rsyncS.median).toFixed(2)}x rsync -an; in process ${fmt(stat(driftIn))}; without compile cache ${sec(driftNoCache)} s${cpuOf(driftC, rsyncC)}`],
    ['  rsync -an', fmt(rsyncS), cpuOf(rsyncC).slice(2)],
  );
  if (shape.name === 'large') {
    target(`landing <= 1.2x cp -a && sync (${label}; both durable)`, S.land, S.cpSync, 1.2, [C.land, C.cpSync]);
    target(`landing <= 1.2x cp -a (${label}; no barrier either side)`, S.landNoSync, S.cp, 1.2, [C.landNoSync, C.cp]);
  } else {
    target(`small-file capture <= 1.15x cp -a && sync (${label})`, S.cap, S.cpSync, 1.15, [C.cap, C.cpSync]);
  }
  target(`delta <= 0.1x full capture (${label}, in process)`, deltaS, S.cap, 0.1);
  target(`drift scan <= 1.0x rsync -an (${label}, fresh process)`, driftS, rsyncS, 1.0, [driftC, rsyncC]);
  // The rows so far, at once (a run that is stopped later still leaves these).
  log(rows.slice(-10).map((r) => r.join('  ')).join('\n'));
  for (const x of targets.slice(-4)) log(`  ${x.ratio <= x.limit ? 'MET' : 'MISSED'} ${x.ratio.toFixed(3)}x (limit ${x.limit}x) ${x.what}`);
  log(`[${label}] removing its folders (with 'discard' mounts this takes minutes) ...`);
  if (!keep) rmSync(dir, { recursive: true, force: true });
  return;
}

// ---------------------------------------------------------------- memory

function benchMemory(): void {
  const sizes = small ? [1_000, 10_000] : [20_000, 200_000];
  const peaks: { files: number; capture: number; drift: number; land: number }[] = [];
  for (const files of sizes) {
    const dir = join(base, `mem-${files}`);
    const src = join(dir, 'src');
    log(`[memory] ${files} files ...`);
    generate(src, { dirs: files / 100, perDir: 100, maxSmall: 4 * 1024, bigFiles: 0, bigSize: 0 }, 'random');
    flush();
    const c = runChild({ mode: 'capture', src, vault: join(dir, 'vault'), artifactId: 'bench.mem', sync: false });
    const d = runChild({ mode: 'drift', src, vault: join(dir, 'vault'), manifestHash: c.manifestHash as string });
    const l = runChild({ mode: 'land', vault: join(dir, 'vault'), manifestHash: c.manifestHash as string, dest: join(dir, 'land'), sync: false });
    peaks.push({ files, capture: c.maxRssKiB, drift: d.maxRssKiB, land: l.maxRssKiB });
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
  const [a, b] = peaks as [(typeof peaks)[number], (typeof peaks)[number]];
  const mib = (k: number): string => `${(k / 1024).toFixed(0)} MiB`;
  rows.push(
    [`peak RSS (VmHWM, Node itself included): ${a.files} -> ${b.files} files of 0-4 KB`, '', ''],
    ['  capture', `${mib(a.capture)} -> ${mib(b.capture)}`, `${(b.capture / a.capture).toFixed(2)}x`],
    ['  drift scan (streamed manifest)', `${mib(a.drift)} -> ${mib(b.drift)}`, `${(b.drift / a.drift).toFixed(2)}x`],
    ['  landing (holds the manifest once)', `${mib(a.land)} -> ${mib(b.land)}`, `${(b.land / a.land).toFixed(2)}x`],
  );
  targets.push({ what: `peak RSS of the capture at ${b.files} files <= 1.5x at ${a.files}`, ratio: b.capture / a.capture, limit: 1.5, how: `${mib(b.capture)} / ${mib(a.capture)}` });
  targets.push({ what: `peak RSS of the drift scan at ${b.files} files <= 1.5x at ${a.files}`, ratio: b.drift / a.drift, limit: 1.5, how: `${mib(b.drift)} / ${mib(a.drift)}` });
}

// ---------------------------------------------------------------- outage

/** freeze -> final capture -> gate -> crossing (sandbox) -> landing validated, through the CLI, on the large random tree. */
async function benchOutage(): Promise<void> {
  const estate = join(base, 'estate');
  const cli = join(repo, 'bin', 'rubicon.js');
  log('[outage] sandbox estate with the large tree in ehr/A/bulk ...');
  sh(process.execPath, [cli, 'sandbox', estate]);
  const shape = SHAPES[0] as Shape;
  const tree = generate(join(estate, 'target', 'ehr', 'A', 'bulk'), shape, 'random');
  flush();
  log(`[outage] rubicon upgrade (${tree.files} more files, ${mb(tree.bytes)}) ...`);
  const stateDir = join(estate, 'state');
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, 'upgrade', '--runbook', join(estate, 'runbook.yaml'), '--state-dir', stateDir, '--yes', '--json'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, NODE_COMPILE_CACHE: cacheDir },
  });
  const totalMs = performance.now() - t0;
  const { listRuns, readJournal, runPaths } = await import('../src/run/journal.ts');
  const runId = listRuns(stateDir)[0];
  if (!runId) throw new Error(`rubicon upgrade left no run (exit ${r.status}): ${r.stderr.slice(-500)}`);
  const records = readJournal(runPaths(stateDir, runId).journal);
  const completed = records.flatMap((x) => (x.event.type === 'phase.completed' ? [{ phase: x.event.phase, ms: x.event.durationMs }] : []));
  const outcome = records.flatMap((x) => (x.event.type === 'run.completed' ? [x.event.outcome] : []))[0];
  const outagePhases = ['freeze', 'final-capture', 'gate', 'crossing', 'landing'];
  const outage = completed.filter((p) => outagePhases.includes(p.phase));
  const outageMs = outage.reduce((n, p) => n + p.ms, 0);
  const landingRestore = records.flatMap((x) => (x.event.type === 'landing.restored' && x.event.itemId === 'folder:ehr/A' ? [x.event.durationMs] : []))[0];
  rows.push([`outage end to end (rubicon upgrade, sandbox, large tree in ehr/A; run ${outcome}, exit ${r.status})`, `${sec(outageMs)} s`, `whole run ${sec(totalMs)} s`]);
  for (const p of completed) {
    const inside = outagePhases.includes(p.phase);
    rows.push([`  ${inside ? '*' : ' '} ${p.phase}`, `${sec(p.ms)} s`, inside ? `${((100 * p.ms) / outageMs).toFixed(0)} % of the outage` : 'before the freeze']);
  }
  if (landingRestore !== undefined) rows.push(['      of which restore of ehr/A (validated as written, no second read)', `${sec(landingRestore)} s`, '']);
  if (!keep) rmSync(estate, { recursive: true, force: true });
}

// ---------------------------------------------------------------- main

try {
  mkdirSync(cacheDir, { recursive: true });
  const started = performance.now();
  // --only a,b: just these parts (e.g. large/random, small-file/compressible, memory, outage).
  const only = opt('--only')?.split(',');
  const wanted = (part: string): boolean => only === undefined || only.includes(part);
  for (const shape of SHAPES) for (const variant of VARIANTS) if (wanted(`${shape.name}/${variant}`)) benchShape(shape, variant);
  // Memory needs trees of 10,000+ files: not in --small unless asked (--memory).
  if (only ? wanted('memory') : small ? args.includes('--memory') : !args.includes('--no-memory')) benchMemory();
  // The outage builds a sandbox estate and runs a whole upgrade (about 40 s): not in --small unless asked.
  if (only ? wanted('outage') : small ? args.includes('--outage') : !args.includes('--no-outage')) await benchOutage();
  const w = Math.max(...rows.map((r) => (r[0] as string).length));
  const w2 = Math.max(...rows.map((r) => (r[1] as string).length));
  const lines = [
    `Rubicon file data plane vs raw tools, ${new Date().toISOString()}, node ${process.version}, ${small ? '--small' : 'full'}; times min / median / max`,
    ...rows.map((r) => `${(r[0] as string).padEnd(w)}  ${(r[1] as string).padEnd(w2)}  ${r[2]}`),
    '',
    'targets (same run, same data):',
    ...targets.map((x) => `  ${x.ratio <= x.limit ? 'MET   ' : 'MISSED'} ${x.ratio.toFixed(3)}x (limit ${x.limit}x)  ${x.what}  [${x.how}]`),
    '',
    `bench took ${sec(performance.now() - started)} s`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  if (!keep) rmSync(base, { recursive: true, force: true });
  else log(`kept ${base}`);
  void existsSync;
}
