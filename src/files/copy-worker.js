// @ts-check
/**
 * Worker thread of the copy pool (copy-pool.ts, which also holds the message
 * types): copies files into one or more FilesystemVault folders, hashing them
 * on the way.
 *
 * Plain JavaScript on purpose: Node's TypeScript stripping costs about 50 ms
 * more per worker start (measured, docs/files.md), which is a tenth of a
 * small capture.
 *
 * Contract (the same as the main-thread path in capture.ts):
 * - Each attempt opens the file once, fstats it and reads it up to its size;
 *   the bytes hashed are exactly the bytes written to the vault temp files
 *   (same buffer, same pass). The object's name is therefore the hash of the
 *   bytes in the vault, whatever the source does meanwhile.
 * - fstat after the read: size, mtime and bytes read must agree with the
 *   fstat before, or the attempt is thrown away (temp files removed) and the
 *   file read again, up to `maxReads`; the last attempt is kept with
 *   `stable: false` and the mtime from before that read.
 * - Small files (up to one buffer) take one read and, only when the vault
 *   does not already have the object with this size, one write.
 * - A small file's object (hash known before the write) is created under its
 *   final name objects/<2 hex>/<sha> with O_EXCL and written in one call, no
 *   temp file and no rename (not in `fsyncEach` mode, where an object under
 *   its name must be complete: there, and for a large file, a temp file and
 *   a rename). A name already taken is checked as follows. An object
 *   already stored under the name is kept when its ctime is later than the
 *   target's fence (written or checked after the vault was opened; strictly
 *   later, because ctimes come from a coarse clock and a change in the
 *   fence's own tick must not pass for a check:
 *   'present'), or when it holds the same bytes ('verified': compared with
 *   the buffer for a small file, hashed for a large one; then its ctime is
 *   renewed with a chmod to its own mode). Otherwise it is damaged: replaced
 *   ('repaired', the temp file fsync'd before the rename so a good durable
 *   copy is never swapped for one that is not yet durable) where the target
 *   is replaceable, else left and reported ('unrepairable'). With
 *   `fsyncEach` every temp file is fsync'd before its rename ('commit'
 *   durability).
 * - Memory: one buffer of `chunk` bytes per worker, whatever the file size.
 * - Read-only on the source. Never throws out of the message handler: every
 *   failure is a reply naming where it happened (source, or vault index).
 * - Checks the shared abort flag before each file and between chunks.
 */
import { createHash, hash as hashOnce } from 'node:crypto';
import { chmodSync, closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join, sep } from 'node:path';
import { parentPort, threadId, workerData } from 'node:worker_threads';

class Failure extends Error {
  /** @param {'source' | number} where @param {string} op @param {unknown} e */
  constructor(where, op, e) {
    super(op);
    this.where = where;
    this.op = op;
    this.errno = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
  }
}

class Aborted extends Error {}

/** Large files are read in pieces of this size: 256 KiB stays in a core's L2 cache between the read, the hash and the write (1 MiB pieces cost 1.45x the CPU time per byte here, docs/files.md). */
const STRIDE = 256 * 1024;
/** @type {{ bigint: true }} */
const BIGINT = { bigint: true };

/** @template T @param {'source' | number} where @param {string} op @param {() => T} fn @returns {T} */
function attempt(where, op, fn) {
  try {
    return fn();
  } catch (e) {
    throw new Failure(where, op, e);
  }
}

/** @param {number} fd @param {Uint8Array} data */
function writeAll(fd, data) {
  let off = 0;
  while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
}

/** @param {import('node:fs').BigIntStats} before @param {import('node:fs').BigIntStats} after @param {number} size */
function isStable(before, after, size) {
  return after.size === before.size && after.mtimeNs === before.mtimeNs && after.ino === before.ino && size === Number(before.size);
}

/** @typedef {{ fd: number; path: string }} Temp */

export class Copier {
  /**
   * `afterRead` is for tests in the same thread only (a function cannot reach
   * a worker): called after each read of a source chunk, so a test can change
   * the file while it is being read.
   * @param {{ chunk: number; targets: { objectsDir: string; tmpDir: string; fsyncEach: boolean; fenceMs: number; replaceable: boolean }[]; maxReads: number; abortFlag: Int32Array; afterRead?: (abs: string, chunkIndex: number) => void }} data
   */
  constructor(data) {
    this.afterRead = data.afterRead;
    this.buf = Buffer.allocUnsafeSlow(data.chunk);
    /** @type {Buffer | undefined} second buffer, to compare a small file with an object already stored */
    this.cmp = undefined;
    this.abortFlag = data.abortFlag;
    this.targets = data.targets;
    this.maxReads = data.maxReads;
    /** @type {Set<string>} */
    this.knownShards = new Set();
    /** Per target: the 256 shard paths objects/<2 hex> (built once), and which this copier has made sure exist. */
    this.shardDirs = this.targets.map((t) => Array.from({ length: 256 }, (_, i) => `${t.objectsDir}${sep}${i.toString(16).padStart(2, '0')}`));
    this.shardReady = this.targets.map(() => new Uint8Array(256));
    this.tempSeq = 0;
  }

  /** Copies the files of a batch in order; after a failure or an abort the rest are not started (reported aborted). */
  runBatch(/** @type {{ id: number; files: string[] }} */ job) {
    /** @type {object[]} */
    const results = [];
    let stop = false;
    for (const abs of job.files) {
      if (stop || Atomics.load(this.abortFlag, 0) !== 0) {
        results.push({ kind: 'aborted' });
        continue;
      }
      const r = this.run(abs);
      if (r.kind === 'failed') stop = true;
      results.push(r);
    }
    return { id: job.id, results };
  }

  /** @param {string} abs */
  run(abs) {
    let bytesRead = 0;
    /** @param {number} n */
    const onRead = (n) => {
      bytesRead += n;
    };
    try {
      for (let n = 1; ; n++) {
        const got = this.attemptOnce(abs, n < this.maxReads, onRead);
        if (got === 'vanished') return { kind: 'vanished', bytesRead };
        if (got !== 'retry') {
          got.bytesRead = bytesRead;
          return got;
        }
      }
    } catch (e) {
      if (e instanceof Aborted) return { kind: 'aborted' };
      if (e instanceof Failure) return { kind: 'failed', where: e.where, code: e.errno, op: e.op, bytesRead };
      return { kind: 'failed', where: 'source', code: String(e), op: 'copy', bytesRead };
    }
  }

  /** @param {string} abs @param {boolean} mayRetry @param {(n: number) => void} onRead */
  attemptOnce(abs, mayRetry, onRead) {
    const targets = this.targets;
    let fd;
    try {
      fd = openSync(abs, constants.O_RDONLY);
    } catch (e) {
      if (e instanceof Error && 'code' in e && e.code === 'ENOENT') return 'vanished';
      throw new Failure('source', 'open', e);
    }
    /** @type {(Temp | undefined)[]} */
    const temps = [];
    let fdOpen = true;
    try {
      // Inline try/catch rather than attempt() on this path: no closure and no op string per call (per-file cost, docs/files.md).
      let before;
      try {
        before = fstatSync(fd, BIGINT);
      } catch (e) {
        throw new Failure('source', 'fstat', e);
      }
      const want = Number(before.size);
      const small = want <= this.buf.length;
      /** @type {import('node:crypto').Hash | undefined} */
      let hash;
      /** @type {string | undefined} */
      let smallSha;
      let size = 0;
      if (small) {
        const buf = this.buf;
        try {
          while (size < want) {
            const n = readSync(fd, buf, size, buf.length - size, null);
            if (n === 0) break;
            size += n;
          }
        } catch (e) {
          throw new Failure('source', 'read', e);
        }
        this.afterRead?.(abs, 0);
      } else {
        hash = createHash('sha256');
        for (let t = 0; t < targets.length; t++) temps.push(this.createTemp(t));
        let chunkIndex = 0;
        // A file read up to its size needs no extra read to see EOF: growth shows in the fstat after.
        while (size < want) {
          if (Atomics.load(this.abortFlag, 0) !== 0) throw new Aborted();
          const n = attempt('source', 'read', () => readSync(fd, this.buf, 0, Math.min(STRIDE, this.buf.length), null));
          if (n === 0) break;
          this.afterRead?.(abs, chunkIndex++);
          const chunk = this.buf.subarray(0, n);
          hash.update(chunk);
          for (let t = 0; t < temps.length; t++) {
            const temp = /** @type {Temp} */ (temps[t]);
            attempt(t, `write ${temp.path}`, () => writeAll(temp.fd, chunk));
          }
          size += n;
          onRead(n);
        }
      }
      let after;
      try {
        after = fstatSync(fd, BIGINT);
      } catch (e) {
        throw new Failure('source', 'fstat', e);
      }
      fdOpen = false;
      closeSync(fd);
      if (small) onRead(size);
      const stable = isStable(before, after, size);
      if (!stable && mayRetry) return 'retry';
      // One-shot hash of a small file: no Hash object (half the cost for a few KB).
      if (small) smallSha = hashOnce('sha256', this.buf.subarray(0, size), 'hex');
      const sha256 = smallSha ?? /** @type {import('node:crypto').Hash} */ (hash).digest('hex');
      /** @type {string[]} */
      const puts = [];
      /** @type {boolean[]} */
      const shardCreated = [];
      for (let t = 0; t < targets.length; t++) {
        const target = targets[t];
        if (!target) continue;
        const prefix = parseInt(sha256.slice(0, 2), 16);
        const shard = /** @type {string[]} */ (this.shardDirs[t])[prefix] ?? `${target.objectsDir}${sep}${sha256.slice(0, 2)}`;
        const finalPath = `${shard}${sep}${sha256}`;
        if (small && !target.fsyncEach) {
          // The hash is known before the write: create the object under its final name, exclusively.
          this.ensureShard(t, shard, shardCreated);
          if (this.createFinal(t, finalPath, size)) {
            puts.push('written');
            continue;
          }
          // EEXIST: something is stored under the name; check it as below.
        }
        const existing = attempt(t, `stat ${finalPath}`, () => statSync(finalPath, { throwIfNoEntry: false }));
        let put = 'written';
        if (existing?.isFile()) {
          if (existing.size === size && existing.ctimeMs > target.fenceMs) put = 'present';
          else if (existing.size === size && this.sameAsStored(t, finalPath, size, small, sha256)) {
            attempt(t, `chmod ${finalPath}`, () => chmodSync(finalPath, existing.mode & 0o7777)); // renews its ctime: checked now
            put = 'verified';
          } else put = target.replaceable ? 'repaired' : 'unrepairable';
          if (put !== 'repaired') {
            puts.push(put);
            shardCreated[t] = false;
            continue; // a large file's temp is dropped in finally
          }
        }
        let temp = temps[t];
        if (!temp) {
          this.ensureShard(t, shard, shardCreated);
          temp = this.createTemp(t, shard);
          temps[t] = temp;
          const data = this.buf.subarray(0, size);
          const tf = temp;
          attempt(t, `write ${tf.path}`, () => writeAll(tf.fd, data));
        }
        const tf = temp;
        if (target.fsyncEach || put === 'repaired') attempt(t, `fsync ${tf.path}`, () => fsyncSync(tf.fd));
        const fdToClose = tf.fd;
        tf.fd = -1;
        closeSync(fdToClose);
        this.ensureShard(t, shard, shardCreated);
        attempt(t, `rename into ${finalPath}`, () => renameSync(tf.path, finalPath));
        temps[t] = undefined;
        puts.push(put);
      }
      for (let t = 0; t < targets.length; t++) shardCreated[t] = shardCreated[t] === true;
      const ino = Number(before.ino);
      return {
        kind: 'done',
        sha256,
        size,
        mtimeNs: before.mtimeNs.toString(),
        mode: Number(before.mode) & 0o7777,
        uid: Number(before.uid),
        gid: Number(before.gid),
        ino: Number.isSafeInteger(ino) ? ino : Number.NaN,
        stable,
        puts,
        shardCreated,
        bytesRead: 0,
      };
    } finally {
      if (fdOpen) closeSync(fd);
      dropTemps(temps);
    }
  }

  /**
   * Writes the first `size` bytes of the read buffer as a new object at
   * `finalPath` (O_EXCL: never replaces or follows anything). False when the
   * name is taken (the caller checks what is there). On a failed write the
   * partial object this call created is removed. No temp file and no rename:
   * the name is the hash of the buffer. A crash mid-write can leave a short
   * object under its name, as an OS crash before the barrier can with a
   * rename (docs/files.md "Durability decision"): every read re-hashes it,
   * and the next capture, which has not verified it since its vault was
   * opened, compares it with the source's bytes and replaces it.
   * @param {number} t @param {string} finalPath @param {number} size @returns {boolean}
   */
  createFinal(t, finalPath, size) {
    let fd;
    try {
      fd = openSync(finalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (e) {
      if (e instanceof Error && 'code' in e && e.code === 'EEXIST') return false;
      throw new Failure(t, `create ${finalPath}`, e);
    }
    try {
      if (size > 0) writeAll(fd, this.buf.subarray(0, size));
      const f = fd;
      fd = -1;
      closeSync(f);
    } catch (e) {
      if (fd >= 0) {
        try {
          closeSync(fd);
        } catch {
          // the write failure is what is reported
        }
      }
      try {
        unlinkSync(finalPath);
      } catch {
        // gone already: nothing partial is left under the name
      }
      throw new Failure(t, `write ${finalPath}`, e);
    }
    return true;
  }

  /**
   * Whether the object stored at `path` holds the bytes just read: a small
   * file is compared with the buffer, a large one is hashed (its data went to
   * temp files; the read buffer is free again).
   * @param {number} t @param {string} path @param {number} size @param {boolean} small @param {string} sha256
   */
  sameAsStored(t, path, size, small, sha256) {
    const fd = attempt(t, `open ${path}`, () => openSync(path, 'r'));
    try {
      if (small) {
        this.cmp ??= Buffer.allocUnsafeSlow(this.buf.length);
        const cmp = this.cmp;
        let n = 0;
        while (n < size) {
          const r = attempt(t, `read ${path}`, () => readSync(fd, cmp, n, size - n, null));
          if (r === 0) return false;
          n += r;
        }
        return cmp.subarray(0, size).equals(this.buf.subarray(0, size));
      }
      const hash = createHash('sha256');
      for (;;) {
        const r = attempt(t, `read ${path}`, () => readSync(fd, this.buf, 0, Math.min(STRIDE, this.buf.length), null));
        if (r === 0) break;
        hash.update(this.buf.subarray(0, r));
      }
      return hash.digest('hex') === sha256;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Creates objects/<2 hex> once per worker; records in `created[index]`
   * whether this call made it.
   * @param {number} index @param {string} shard @param {boolean[]} created
   */
  ensureShard(index, shard, created) {
    if (created[index] !== undefined) return;
    created[index] = false;
    const ready = this.shardReady[index];
    const prefix = parseInt(shard.slice(-2), 16);
    if (ready?.[prefix] === 1) return;
    if (this.knownShards.has(shard)) return;
    created[index] = attempt(index, `mkdir ${shard}`, () => mkdirSync(shard, { recursive: true })) !== undefined;
    this.knownShards.add(shard);
    if (ready && prefix >= 0 && prefix < 256) ready[prefix] = 1;
  }

  /**
   * An exclusive temp file: in the vault's tmp/ for a large file (its hash is
   * not known yet), or in the object's own shard folder when the hash is
   * known, so that the rename stays inside one folder. A rename across
   * folders takes the filesystem-wide rename lock on Linux, and two workers
   * spent 15 % of their time waiting for it (perf, docs/files.md). Temp
   * names start with '.', which no object name does; removeStaleTemp()
   * clears both places.
   * @param {number} index @param {string} [dir] @returns {Temp}
   */
  createTemp(index, dir) {
    const target = this.targets[index];
    if (!target) throw new Failure(index, 'create a temp file', 'no such vault');
    const where = dir ?? target.tmpDir;
    const path = join(where, `.w${process.pid}-${threadId}-${++this.tempSeq}.tmp`);
    const fd = attempt(index, `create a temp file in ${where}`, () =>
      openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600),
    );
    return { fd, path };
  }
}

/** Closes and removes temp files that were not renamed into place. @param {(Temp | undefined)[]} temps */
function dropTemps(temps) {
  for (const temp of temps) {
    if (!temp) continue;
    try {
      if (temp.fd >= 0) closeSync(temp.fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(temp.path);
    } catch {
      // already moved or gone
    }
  }
}

if (parentPort && workerData?.role === 'rubicon-copy-worker') {
  const port = parentPort;
  const copier = new Copier(workerData);
  port.on('message', (job) => {
    port.postMessage(copier.runBatch(job));
  });
}
