// @ts-check
/**
 * Worker thread of the restore pool (restore.ts holds the message types):
 * lands files from FilesystemVault objects, hashing them on the way.
 *
 * Plain JavaScript for the same reason as copy-worker.js (a .ts worker
 * costs ~50 ms more to start).
 *
 * Contract, per file (one reply per file, in order):
 * - Vaults are tried in the given order. An object that is missing, has the
 *   wrong size or does not hash to its name is never left at the
 *   destination: the attempt is thrown away and the next vault tried; each
 *   failure is reported (vault index, code, message).
 * - The bytes hashed are exactly the bytes written (same buffer, same pass):
 *   a reply `done` means the destination holds the manifest's content. An
 *   object smaller than the buffer is read whole, and its size and hash are
 *   checked before the destination is created (a bad copy then costs no
 *   create and no removal). That
 *   is the landing's validation; nothing reads the files back.
 * - A destination that does not exist is created in place (O_EXCL); one that
 *   exists is replaced through a temp file in its folder and a rename, so it
 *   is either the old file or the complete new one.
 * - Owner (when asked), then mode (after chown, which clears setuid bits),
 *   then mtime, all through the open file. A chown that is not permitted is
 *   reported (`ownerDenied`), not an error.
 * - No fsync: the caller makes the landing durable with one barrier.
 * - Never throws out of the message handler: every failure is a reply.
 */
import { createHash, hash as hashOnce } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, futimesSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parentPort, threadId, workerData } from 'node:worker_threads';

/** @param {unknown} e */
function codeOf(e) {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : String(e);
}

/** @param {number} fd @param {Uint8Array} data */
function writeAll(fd, data) {
  let off = 0;
  while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off);
}

class DestError extends Error {
  /** @param {string} op @param {unknown} e */
  constructor(op, e) {
    super(op);
    this.op = op;
    this.errno = codeOf(e);
  }
}

export class Lander {
  /** @param {{ chunk: number; abortFlag: Int32Array }} data */
  constructor(data) {
    this.buf = Buffer.allocUnsafeSlow(data.chunk);
    this.abortFlag = data.abortFlag;
    this.seq = 0;
  }

  /** @param {{ id: number; files: { dest: string; size: number; sha256: string; mode: number; uid?: number; gid?: number; mtime: number; objects: string[] }[] }} job */
  runBatch(job) {
    /** @type {object[]} */
    const results = [];
    let stop = false;
    for (const f of job.files) {
      if (stop || Atomics.load(this.abortFlag, 0) !== 0) {
        results.push({ kind: 'aborted' });
        continue;
      }
      const r = this.land(f);
      if (r.kind === 'dest-failed') stop = true;
      results.push(r);
    }
    return { id: job.id, results };
  }

  /** A temp name in the folder of `dest` (renamed over it when complete). @param {string} dest */
  tempBeside(dest) {
    return join(dirname(dest), `.rubicon-${process.pid}-${threadId}-${++this.seq}.tmp`);
  }

  /** @param {{ dest: string; size: number; sha256: string; mode: number; uid?: number; gid?: number; mtime: number; objects: string[] }} f */
  land(f) {
    /** @type {{ vault: number; code: string; message: string }[]} */
    const failed = [];
    // Not stat'ed first: the create (O_EXCL) says whether something is there, one syscall fewer per file.
    /** @type {import('node:fs').Stats | undefined} */
    let existing;
    for (let k = 0; k < f.objects.length; k++) {
      const obj = /** @type {string} */ (f.objects[k]);
      let src;
      try {
        src = openSync(obj, constants.O_RDONLY);
      } catch (e) {
        failed.push({ vault: k, code: codeOf(e) === 'ENOENT' ? 'VAULT_MISSING_OBJECT' : 'VAULT_IO', message: `object ${f.sha256}: ${codeOf(e)}` });
        continue;
      }
      let out = -1;
      let outPath = '';
      /** outPath was created by this attempt (only then is it removed when the attempt fails). */
      let created = false;
      let placed = false;
      try {
        // A small object (below the buffer) is read whole and checked before anything is created: one read
        // (one more byte than the manifest says, so a longer object shows), a one-shot hash, one write, no fstat.
        const whole = f.size < this.buf.length;
        let held = -1;
        if (whole) {
          try {
            held = 0;
            for (;;) {
              const r = readSync(src, this.buf, held, this.buf.length - held, null);
              if (r === 0) break;
              held += r;
              if (held > f.size) break;
            }
          } catch (e) {
            failed.push({ vault: k, code: 'VAULT_IO', message: `object ${f.sha256}: read: ${codeOf(e)}` });
            continue;
          }
          if (held !== f.size) {
            failed.push({ vault: k, code: 'VAULT_CORRUPT', message: held > f.size ? `object ${f.sha256} is longer than the ${f.size} bytes the manifest records` : `object ${f.sha256} has ${held} bytes, the manifest records ${f.size}` });
            continue;
          }
          const actual = hashOnce('sha256', this.buf.subarray(0, held), 'hex');
          if (actual !== f.sha256) {
            failed.push({ vault: k, code: 'VAULT_CORRUPT', message: `object ${f.sha256} is corrupt (its content hashes to ${actual})` });
            continue;
          }
        } else {
          const size = fstatSync(src).size;
          if (size !== f.size) {
            failed.push({ vault: k, code: 'VAULT_CORRUPT', message: `object ${f.sha256} has ${size} bytes, the manifest records ${f.size}` });
            continue;
          }
        }
        outPath = existing ? this.tempBeside(f.dest) : f.dest;
        try {
          out = openSync(outPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
        } catch (e) {
          if (existing || codeOf(e) !== 'EEXIST') throw new DestError(`create ${outPath}`, e);
          // Something is there: a folder is the caller's to handle; anything else is replaced through a temp file and a rename.
          try {
            existing = lstatSync(f.dest, { throwIfNoEntry: false });
          } catch (e2) {
            throw new DestError(`lstat ${f.dest}`, e2);
          }
          if (existing?.isDirectory()) return { kind: 'dir-in-way' };
          outPath = this.tempBeside(f.dest);
          try {
            out = openSync(outPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
          } catch (e2) {
            throw new DestError(`create ${outPath}`, e2);
          }
        }
        created = true;
        if (whole) {
          try {
            if (held > 0) writeAll(out, this.buf.subarray(0, held));
          } catch (e) {
            throw new DestError(`write ${outPath}`, e);
          }
        }
        const hash = whole ? undefined : createHash('sha256');
        let n = whole ? held : 0;
        while (!whole && n < f.size) {
          if (Atomics.load(this.abortFlag, 0) !== 0) return { kind: 'aborted' };
          let r;
          try {
            r = readSync(src, this.buf, 0, Math.min(this.buf.length, f.size - n), null);
          } catch (e) {
            failed.push({ vault: k, code: 'VAULT_IO', message: `object ${f.sha256}: read: ${codeOf(e)}` });
            break;
          }
          if (r === 0) break;
          const chunk = this.buf.subarray(0, r);
          /** @type {import('node:crypto').Hash} */ (hash).update(chunk);
          try {
            writeAll(out, chunk);
          } catch (e) {
            throw new DestError(`write ${outPath}`, e);
          }
          n += r;
        }
        if (failed.length > 0 && failed[failed.length - 1]?.vault === k) continue;
        if (hash) {
          const actual = hash.digest('hex');
          if (n !== f.size || actual !== f.sha256) {
            failed.push({ vault: k, code: 'VAULT_CORRUPT', message: `object ${f.sha256} is corrupt (its content hashes to ${actual})` });
            continue;
          }
        }
        let ownerDenied = false;
        if (f.uid !== undefined && f.gid !== undefined) {
          try {
            fchownSync(out, f.uid, f.gid);
          } catch (e) {
            if (codeOf(e) !== 'EPERM') throw new DestError(`chown ${outPath}`, e);
            ownerDenied = true;
          }
        }
        try {
          fchmodSync(out, f.mode);
          futimesSync(out, f.mtime, f.mtime);
        } catch (e) {
          throw new DestError(`chmod/utimes ${outPath}`, e);
        }
        closeSync(out);
        out = -1;
        if (outPath !== f.dest) {
          try {
            renameSync(outPath, f.dest);
          } catch (e) {
            throw new DestError(`rename to ${f.dest}`, e);
          }
        }
        placed = true;
        return { kind: 'done', vault: k, failed, ownerDenied };
      } catch (e) {
        if (e instanceof DestError) return { kind: 'dest-failed', op: e.op, code: e.errno };
        return { kind: 'dest-failed', op: 'restore', code: codeOf(e) };
      } finally {
        closeSync(src);
        if (out >= 0) closeSync(out);
        if (created && !placed) {
          try {
            unlinkSync(outPath);
          } catch {
            // not created
          }
        }
      }
    }
    return { kind: 'no-good-copy', failed };
  }
}

if (parentPort && workerData?.role === 'rubicon-restore-worker') {
  const port = parentPort;
  const lander = new Lander(workerData);
  port.on('message', (job) => {
    port.postMessage(lander.runBatch(job));
  });
}
