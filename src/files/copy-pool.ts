import { Worker } from 'node:worker_threads';
import { RubiconError } from '../core/errors.ts';

// ---- messages between the pool and copy-worker.js (which has no types of its own) ----

export interface CopyTarget {
  objectsDir: string;
  tmpDir: string;
  fsyncEach: boolean;
  /** Vault clock when the vault was opened: an existing object with a later ctime was written or checked since, and is not checked again. */
  fenceMs: number;
  /** A damaged existing object may be replaced. */
  replaceable: boolean;
}

/** A batch of files, copied in order; one reply per file, in one message. */
export interface CopyJob {
  id: number;
  /** Absolute source paths. */
  files: string[];
}

export interface CopyBatchReply {
  id: number;
  results: CopyReply[];
}

export type CopyReply =
  | {
      kind: 'done';
      sha256: string;
      size: number;
      /** Of the fstat before the kept read: exact mtime (nanoseconds, decimal), mode & 0o7777, owner, inode (NaN when not a safe integer). */
      mtimeNs: string;
      mode: number;
      uid: number;
      gid: number;
      ino: number;
      stable: boolean;
      bytesRead: number;
      /** Per target, what the commit found (ObjectPut). */
      puts: ('written' | 'present' | 'verified' | 'repaired' | 'unrepairable')[];
      /** Per target: the shard folder objects/<2 hex> was created by this job. */
      shardCreated: boolean[];
    }
  | { kind: 'vanished'; bytesRead: number }
  | { kind: 'aborted' }
  | { kind: 'failed'; where: 'source' | number; code: string; op: string; bytesRead: number };

export interface CopyWorkerData {
  chunk: number;
  targets: CopyTarget[];
  maxReads: number;
  /** Int32Array over a SharedArrayBuffer: non-zero means stop. */
  abortFlag: Int32Array;
}

/** @internal Test hook: called with each new pool (tests kill a worker through it). */
export const copyPoolTestHooks: { onStart?: (pool: CopyPool) => void } = {};

/**
 * A fixed pool of worker threads that copy files into FilesystemVault folders
 * (copy-worker.js), so reading, hashing and writing run on every core instead
 * of one.
 *
 * Contracts:
 * - `run` resolves with the worker's reply. It rejects (CAPTURE_FAILED, naming
 *   the file and the worker) when the worker died or failed to start while
 *   the job was queued or in flight: a dead worker never leaves a promise
 *   hanging. After one worker died the pool is broken: every later `run`
 *   rejects at once, and `close` still settles.
 * - Jobs go to the worker with the fewest jobs queued; each worker works its
 *   queue in order, one file at a time.
 * - `abort()` raises a shared flag: a worker stops a large file between
 *   chunks and replies `aborted`.
 * - `close()` terminates the workers; idempotent. Memory: one buffer of
 *   `chunk` bytes per worker.
 */
export class WorkerPool<F, R> {
  readonly size: number;
  private readonly workers: { worker: Worker; load: number; pending: Map<number, { job: { id: number; files: F[] }; weight: number; resolve: (r: R[]) => void; reject: (e: unknown) => void }> }[] = [];
  private readonly abortFlag = new Int32Array(new SharedArrayBuffer(4));
  private nextId = 1;
  private broken: RubiconError | undefined;
  private closed = false;

  /** `script`: the worker (plain JS); `data`: its workerData (the shared abort flag is added as `abortFlag`); `what`: the error wording ('copy', 'restore'). */
  constructor(size: number, script: URL, data: Record<string, unknown>, what: { code: 'CAPTURE_FAILED' | 'LANDING_FAILED'; noun: string; describe: (files: F[]) => string }) {
    this.size = Math.max(1, Math.floor(size));
    const workerData = { ...data, abortFlag: this.abortFlag };
    const describeFiles = what.describe;
    for (let i = 0; i < this.size; i++) {
      const worker = new Worker(script, { workerData });
      const slot = { worker, load: 0, pending: new Map() };
      this.workers.push(slot);
      worker.on('message', (reply: { id: number; results: R[] }) => {
        const p = slot.pending.get(reply.id);
        if (!p) return;
        slot.pending.delete(reply.id);
        slot.load -= p.weight;
        p.resolve(reply.results);
      });
      const die = (why: string, cause?: unknown): void => {
        if (this.closed && slot.pending.size === 0) return;
        const err = new RubiconError(
          what.code,
          `${what.noun} worker ${i + 1} of ${this.size} stopped (${why}); the ${what.noun === 'copy' ? 'capture did not complete and nothing was recorded as captured' : 'restore did not complete'}: run it again`,
          cause === undefined ? undefined : { cause },
        );
        this.broken ??= err;
        for (const [, p] of slot.pending) {
          p.reject(
            new RubiconError(what.code, `${what.noun} worker ${i + 1} stopped (${why}) while ${what.noun === 'copy' ? 'copying' : 'restoring'} ${describeFiles(p.job.files)}; run it again`, cause === undefined ? undefined : { cause }),
          );
        }
        slot.pending.clear();
      };
      worker.on('error', (e) => die(`error: ${e instanceof Error ? e.message : String(e)}`, e));
      worker.on('messageerror', (e) => die(`message error: ${e.message}`, e));
      worker.on('exit', (code) => die(`exit code ${code}`));
    }
  }

  /** @internal For tests: the worker threads (to kill one). */
  get threads(): readonly Worker[] {
    return this.workers.map((w) => w.worker);
  }

  /**
   * Runs `files` in order on one worker; one reply per file. The job goes to
   * the worker with the least work queued (`weight`: e.g. bytes plus a cost
   * per file; default one per job).
   */
  run(files: F[], weight = 1): Promise<R[]> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new RubiconError('INTERNAL', `worker pool used after close (${files.length} files)`));
    let slot = this.workers[0] as (typeof this.workers)[number];
    for (const w of this.workers) if (w.load < slot.load) slot = w;
    const full = { files, id: this.nextId++ };
    slot.load += weight;
    return new Promise<R[]>((resolve, reject) => {
      slot.pending.set(full.id, { job: full, weight, resolve, reject });
      slot.worker.postMessage(full);
    });
  }

  abort(): void {
    Atomics.store(this.abortFlag, 0, 1);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate().catch(() => undefined)));
  }
}

/** The capture's pool: copy-worker.js, files given as absolute source paths. */
export class CopyPool extends WorkerPool<string, CopyReply> {
  /** `targets`: the vault folders every file goes to (FilesystemVault.workerTarget()); `maxReads`: reads of a file that keeps changing. */
  constructor(size: number, options: { chunk: number; targets: CopyTarget[]; maxReads: number }) {
    super(size, new URL('./copy-worker.js', import.meta.url), { role: 'rubicon-copy-worker', chunk: options.chunk, targets: options.targets, maxReads: options.maxReads }, {
      code: 'CAPTURE_FAILED',
      noun: 'copy',
      describe: describeFiles,
    });
    copyPoolTestHooks.onStart?.(this);
  }
}

function describeFiles(files: string[]): string {
  return files.length <= 3 ? files.join(', ') : `${files.slice(0, 3).join(', ')} and ${files.length - 3} more files`;
}
