/**
 * One Rubicon step of the bench (bench/capture.ts), in its own fresh process:
 *
 *   node bench/child.ts '{"mode":"drift",...}'
 *
 * Its own file with no imports of its own but node:fs, so a child loads only
 * the modules its step needs (what a command of its own would load), not the
 * bench script's. Prints one JSON line: the work's time in process, the time
 * since the process started, the peak RSS (VmHWM) and the process's CPU time.
 */
import { readFileSync } from 'node:fs';

export type ChildJob =
  | { mode: 'capture'; src: string; vault: string; artifactId: string; baseHash?: string; sync: boolean }
  | { mode: 'land'; vault: string; manifestHash: string; dest: string; sync: boolean }
  | { mode: 'drift'; src: string; vault: string; manifestHash: string };

export interface ChildResult {
  /** The work alone, in process. */
  ms: number;
  /** From process start to the end of the work (module loading included). */
  sinceStartMs: number;
  maxRssKiB: number;
  /** CPU time (user + system, every thread) of the whole process, start included. */
  cpuMs: number;
  manifestHash?: string;
  fileCount?: number;
  bytes?: number;
  bytesRead?: number;
  changes?: number;
  validated?: number;
}

/** Peak resident memory of this process (VmHWM; getrusage's maxRSS carries over execve). */
function peakRssKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
}

async function child(job: ChildJob): Promise<void> {
  const { FilesystemVault } = await import('../src/vaults/filesystem.ts');
  const vault = new FilesystemVault({ name: 'bench', kind: 'filesystem', location: job.vault, offTarget: true, immutable: false });
  let out: Omit<ChildResult, 'sinceStartMs' | 'maxRssKiB' | 'cpuMs'>;
  if (job.mode === 'capture') {
    const { captureTree } = await import('../src/files/capture.ts');
    if (!job.sync) vault.sync = async () => undefined; // bench only: to compare with plain cp -a
    const t = performance.now();
    const r = await captureTree({
      sourceRoot: job.src,
      vaults: [vault],
      artifactId: job.artifactId,
      itemId: 'folder:bench',
      method: 'file-mirror',
      runId: 'bench',
      ...(job.baseHash ? { base: { vault, manifestHash: job.baseHash } } : {}),
    });
    out = { ms: performance.now() - t, manifestHash: r.manifestHash, fileCount: r.fileCount, bytes: r.bytes, bytesRead: r.bytesRead, changes: r.changed?.length };
  } else if (job.mode === 'land') {
    const { readManifest } = await import('../src/files/manifest.ts');
    const { restoreTree } = await import('../src/files/restore.ts');
    const t = performance.now();
    const manifest = await readManifest(vault, job.manifestHash);
    const r = await restoreTree({ vaults: [vault], manifest, destRoot: job.dest, fsync: job.sync });
    out = { ms: performance.now() - t, fileCount: r.fileCount, bytes: r.bytes, validated: r.validated.files };
  } else {
    const { scanDrift } = await import('../src/files/drift.ts');
    const t = performance.now();
    const changes = await scanDrift(job.src, { vault, manifestHash: job.manifestHash });
    out = { ms: performance.now() - t, changes: changes.length };
  }
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ ...out, sinceStartMs: performance.now(), maxRssKiB: peakRssKiB(), cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
}

if (process.argv[2] === undefined) {
  process.stderr.write("usage: node bench/child.ts '<job as JSON>' (bench/capture.ts runs it)\n");
  process.exit(3);
}
await child(JSON.parse(process.argv[2]) as ChildJob);
