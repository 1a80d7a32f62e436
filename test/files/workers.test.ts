import { appendFileSync, utimesSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { captureFiles, captureTree, WORKERS_MIN_BYTES } from '../../src/files/capture.ts';
import { CopyPool, copyPoolTestHooks } from '../../src/files/copy-pool.ts';
import { Copier } from '../../src/files/copy-worker.js';
import { restoreTree } from '../../src/files/restore.ts';
import type { FilesystemVault } from '../../src/vaults/filesystem.ts';
import { ageObjects, listObjects, makeVault, pseudoRandomBytes, readTree, sha256, tempDir, writeTree, withManifest } from './helpers.ts';

/** The capture's copy workers (src/files/copy-pool.ts, copy-worker.js): same results as the main thread, and failures surface. */

const capT = (o: Parameters<typeof captureTree>[0]) => withManifest(captureTree(o), o.vaults);
const capF = (o: Parameters<typeof captureFiles>[0]) => withManifest(captureFiles(o), o.vaults);

let dir: string;
let cleanup: () => Promise<void>;
let src: string;
let nas: FilesystemVault;
let offsite: FilesystemVault;
let strict: FilesystemVault;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir('rubicon-workers-'));
  src = join(dir, 'src');
  nas = makeVault('nas', join(dir, 'vault-nas'));
  offsite = makeVault('offsite', join(dir, 'vault-offsite'), { durability: 'batch' });
  strict = makeVault('strict', join(dir, 'vault-strict'), { durability: 'commit' });
  const files: Record<string, { content: Buffer | string; mode?: number; mtime?: number }> = {
    'app.ini': { content: 'db=ehr\n', mode: 0o640, mtime: 1_700_000_000.123456 },
    'empty.txt': { content: '' },
    'docs/scan-big.pdf': { content: pseudoRandomBytes(3 * 1024 * 1024 + 17, 2), mtime: 1_700_000_300 }, // streamed: over one buffer
    'docs/exactly-one-buffer.bin': { content: pseudoRandomBytes(1024 * 1024, 3) },
    'docs/copy-of-small.bin': { content: pseudoRandomBytes(5000, 9) },
  };
  for (let i = 0; i < 70; i++) files[`many/f${String(i).padStart(3, '0')}.bin`] = { content: pseudoRandomBytes(i * 97, 100 + i), mode: i % 2 ? 0o600 : 0o644 };
  files['many/dup.bin'] = { content: pseudoRandomBytes(5000, 9) }; // same content as docs/copy-of-small.bin
  await writeTree(src, files);
});
afterEach(async () => {
  copyPoolTestHooks.onStart = undefined;
  await cleanup();
});

function common(vaults: FilesystemVault[], artifactId = 'run1.capture.folder:ehr.file-mirror') {
  return { vaults, artifactId, itemId: 'folder:ehr', method: 'file-mirror', runId: 'run1' };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

async function tempLeftovers(vaultRoot: string): Promise<string[]> {
  const left = (await readdir(join(vaultRoot, 'tmp'))).map((n) => `tmp/${n}`);
  for (const shard of await readdir(join(vaultRoot, 'objects'))) {
    for (const n of await readdir(join(vaultRoot, 'objects', shard))) if (n.startsWith('.')) left.push(`objects/${shard}/${n}`);
  }
  return left;
}

describe('capture with copy workers', () => {
  it('gives the same manifest as the main thread, exact objects in every vault (all three durabilities), and no temp files left', async () => {
    const plain = await capT({ ...common([makeVault('plain', join(dir, 'vault-plain'))]), sourceRoot: src, workers: 0 });
    const r = await capT({ ...common([nas, offsite, strict]), sourceRoot: src, workers: 2 });
    expect(r.manifestHash).toBe(plain.manifestHash);
    expect(r.bytesRead).toBe(r.bytes);
    expect(r.unstable).toEqual([]);
    const source = await readTree(src);
    expect(r.fileCount).toBe(source.size);
    for (const e of r.manifest.entries) {
      expect(e.sha256).toBe(sha256((source.get(e.path) as { content: Buffer }).content));
      for (const v of [nas, offsite, strict]) expect(await v.check(e.sha256, e.size)).toEqual({ status: 'ok' });
    }
    for (const v of [nas, offsite, strict]) {
      expect(await tempLeftovers(v.root)).toEqual([]);
      expect((await v.listArtifacts()).map((a) => a.manifestHash)).toEqual([r.manifestHash]);
    }
    // one object per distinct content: the duplicate pair shares one
    expect((await listObjects(nas.root)).size).toBe(new Set(r.manifest.entries.map((e) => e.sha256)).size + 1); // + the manifest
    const out = join(dir, 'restored');
    await restoreTree({ vaults: [strict], manifest: r.manifest, destRoot: out, fsync: false });
    const back = await readTree(out);
    for (const [path, f] of source) {
      expect(back.get(path)?.content.equals(f.content)).toBe(true);
      expect(back.get(path)?.mode).toBe(f.mode);
      expect(back.get(path)?.mtimeMs).toBe(f.mtimeMs);
    }
  });

  it('below the thresholds the workers\' code runs on the main thread: same manifest, exact objects (all three durabilities), no temp files; a short object left under its name is replaced', async () => {
    let started = 0;
    copyPoolTestHooks.onStart = () => {
      started++;
    };
    const plain = await capT({ ...common([makeVault('plain', join(dir, 'vault-plain'))]), sourceRoot: src, workers: 0 });
    const r = await capT({ ...common([nas, offsite, strict]), sourceRoot: src }); // auto: 75 files, 4 MiB
    expect(started).toBe(0);
    expect(r.manifestHash).toBe(plain.manifestHash);
    expect(r.bytesRead).toBe(r.bytes);
    for (const e of r.manifest.entries) for (const v of [nas, offsite, strict]) expect(await v.check(e.sha256, e.size)).toEqual({ status: 'ok' });
    for (const v of [nas, offsite, strict]) expect(await tempLeftovers(v.root)).toEqual([]);
    // A crash while a small object was written under its final name (O_EXCL, no temp file) leaves it short: the next capture replaces it.
    const e = r.manifest.entries.find((x) => x.path === 'many/f050.bin') as { sha256: string; size: number };
    await truncate(nas.objectPath(e.sha256), e.size - 5);
    const again = await capT({ ...common([makeVault('nas', nas.root)], 'run1.again'), sourceRoot: src });
    expect(again.manifest.entries).toEqual(r.manifest.entries);
    expect(again.repaired.map((x) => x.path)).toEqual(['many/f050.bin']);
    expect(await nas.check(e.sha256, e.size)).toEqual({ status: 'ok' });
  });

  it('a re-capture rewrites nothing, and a delta reads only the changed files', async () => {
    const first = await capT({ ...common([nas]), sourceRoot: src, workers: 2 });
    await ageObjects(nas.root);
    const before = await listObjects(nas.root);
    const again = await capT({ ...common([nas]), sourceRoot: src, workers: 2 });
    expect(again.manifestHash).toBe(first.manifestHash);
    expect(await listObjects(nas.root)).toEqual(before); // same objects, same mtimes: nothing rewritten

    await writeFile(join(src, 'many', 'f005.bin'), 'changed');
    const d = await capT({ ...common([nas], 'run1.delta'), sourceRoot: src, base: first.manifest, workers: 2 });
    expect(d.bytesRead).toBe('changed'.length);
    expect(d.changed?.map((c) => `${c.kind} ${c.path}`)).toEqual(['modified many/f005.bin']);
    const e = d.manifest.entries.find((x) => x.path === 'many/f005.bin');
    expect(await nas.check(e?.sha256 as string, 7)).toEqual({ status: 'ok' });
  });

  it('captureFiles uses the workers too, and starts them by itself above the thresholds', async () => {
    let started = 0;
    copyPoolTestHooks.onStart = () => {
      started++;
    };
    const r = await capF({ ...common([nas]), files: [{ path: join(src, 'docs', 'scan-big.pdf'), name: 'backup.bak' }], format: 'sql-backup', workers: 1 });
    expect(started).toBe(1);
    expect(r.manifest.entries[0]?.sha256).toBe(sha256(await readFile(join(src, 'docs', 'scan-big.pdf'))));
    // auto: 72 small files and 4 MiB are below both thresholds, so no threads
    await capT({ ...common([offsite]), sourceRoot: src });
    expect(started).toBe(1);
    // auto: a file 1 MiB over the bytes threshold
    await writeFile(join(src, 'docs', 'nine.bin'), pseudoRandomBytes(WORKERS_MIN_BYTES + 1024 * 1024, 5));
    const auto = await capT({ ...common([offsite], 'run1.auto'), sourceRoot: src });
    expect(started).toBe(2);
    expect(auto.manifest.entries.find((x) => x.path === 'docs/nine.bin')?.sha256).toBe(sha256(await readFile(join(src, 'docs', 'nine.bin'))));
  });

  it('a vault write failure is VAULT_IO naming the vault, and nothing is indexed', async () => {
    // objects/<2 hex> of one file's object is a plain file: the worker cannot create the shard folder
    const hash = sha256(await readFile(join(src, 'app.ini')));
    await mkdir(join(offsite.root, 'objects'), { recursive: true });
    await writeFile(join(offsite.root, 'objects', hash.slice(0, 2)), 'not a folder');
    const e = await rejection(captureTree({ ...common([nas, offsite]), sourceRoot: src, workers: 2 }));
    expect(e).toBeInstanceOf(RubiconError);
    expect((e as RubiconError).code).toBe('VAULT_IO');
    expect((e as RubiconError).message).toContain("vault 'offsite'");
    expect((e as RubiconError).message).toContain(join(src, 'app.ini'));
    expect(await nas.listArtifacts()).toEqual([]);
    expect(await offsite.listArtifacts()).toEqual([]);
  });

  it('refuses a workers count that is not a whole number', async () => {
    for (const workers of [-1, 1.5]) {
      const e = await rejection(captureTree({ ...common([nas]), sourceRoot: src, workers }));
      expect((e as RubiconError).code).toBe('ARGUMENTS_INVALID');
      expect((e as RubiconError).message).toContain("'workers'");
    }
  });
});

describe('a copy worker that dies', () => {
  it('killed mid-capture: the capture fails with CAPTURE_FAILED instead of hanging, and nothing is indexed', async () => {
    copyPoolTestHooks.onStart = (pool) => {
      void pool.threads[0]?.terminate();
    };
    const e = await rejection(captureTree({ ...common([nas]), sourceRoot: src, workers: 1 }));
    expect(e).toBeInstanceOf(RubiconError);
    expect((e as RubiconError).code).toBe('CAPTURE_FAILED');
    expect((e as RubiconError).message).toMatch(/copy worker 1 .*stopped \(exit code \d+\)/);
    expect(await nas.listArtifacts()).toEqual([]);
  });

  it('crashed by an uncaught exception (a message it cannot handle): the capture fails naming the error', async () => {
    copyPoolTestHooks.onStart = (pool) => {
      pool.threads[1]?.postMessage(null); // runBatch(null) throws inside the worker
    };
    const e = await rejection(captureTree({ ...common([nas]), sourceRoot: src, workers: 2 }));
    expect((e as RubiconError).code).toBe('CAPTURE_FAILED');
    expect((e as RubiconError).message).toMatch(/copy worker 2 .*stopped \(error: .*\)/);
  });

  it('the pool rejects the jobs in flight and every later job, and close still settles', async () => {
    const big = join(dir, 'big.bin');
    const fh = await open(big, 'w');
    for (let i = 0; i < 32; i++) await fh.write(pseudoRandomBytes(1024 * 1024, i));
    await fh.close();
    const targets = [await nas.workerTarget()];
    const pool = new CopyPool(1, { chunk: 1024 * 1024, targets, maxReads: 3 });
    const inFlight = pool.run([big]);
    const queued = pool.run([join(src, 'app.ini')]);
    await pool.threads[0]?.terminate();
    for (const p of [inFlight, queued, pool.run([join(src, 'app.ini')])]) {
      const e = await rejection(p);
      expect((e as RubiconError).code).toBe('CAPTURE_FAILED');
    }
    await pool.close();
    await pool.close(); // idempotent
  });

  it('an abort stops the capture with the abort reason, and the workers are closed', async () => {
    const controller = new AbortController();
    let exited: Promise<unknown[]> = Promise.resolve([]);
    copyPoolTestHooks.onStart = (pool) => {
      exited = Promise.all(pool.threads.map((t) => new Promise((resolve) => t.once('exit', resolve))));
      controller.abort(new Error('operator pressed stop'));
    };
    const e = await rejection(captureTree({ ...common([nas]), sourceRoot: src, workers: 2, signal: controller.signal }));
    expect((e as Error).message).toBe('operator pressed stop');
    // Both workers end (observed as their 'exit' events; the test's timeout bounds the wait).
    expect(await exited).toHaveLength(2);
    expect(await nas.listArtifacts()).toEqual([]);
  });
});

describe('Copier (the worker body, run in this thread)', () => {
  interface Reply {
    kind: string;
    sha256?: string;
    size?: number;
    mtimeNs?: string;
    stable?: boolean;
    bytesRead?: number;
    placed?: boolean[];
    where?: string | number;
    code?: string;
  }
  async function copier(afterRead?: (abs: string, chunk: number) => void): Promise<{ run: (abs: string) => Reply }> {
    const targets = [await nas.workerTarget()];
    return new Copier({ chunk: 1024 * 1024, targets, maxReads: 3, abortFlag: new Int32Array(new SharedArrayBuffer(4)), afterRead }) as { run: (abs: string) => Reply };
  }

  it('re-reads a large file that changed during the read, and names the object by the bytes it wrote', async () => {
    const target = join(src, 'docs', 'scan-big.pdf');
    let changed = false;
    const c = await copier((abs, chunk) => {
      if (abs === target && chunk === 1 && !changed) {
        changed = true;
        appendFileSync(target, 'appended during the read');
      }
    });
    const r = c.run(target);
    expect(r.kind).toBe('done');
    expect(r.stable).toBe(true);
    const content = await readFile(target);
    expect(r.sha256).toBe(sha256(content));
    expect(r.size).toBe(content.length);
    expect(r.bytesRead).toBeGreaterThan(content.length); // the first read was thrown away
    expect(await nas.check(r.sha256 as string, content.length)).toEqual({ status: 'ok' });
    expect(await tempLeftovers(nas.root)).toEqual([]);
  });

  it('keeps the last read of a small file that never holds still, unstable, with the mtime from before that read', async () => {
    const target = join(src, 'app.ini');
    let n = 0;
    const c = await copier((abs) => {
      if (abs !== target) return;
      n++;
      appendFileSync(target, `change ${n}\n`);
      utimesSync(target, 1_750_000_000 + n, 1_750_000_000 + n);
    });
    const r = c.run(target);
    expect(n).toBe(3);
    expect(r.kind).toBe('done');
    expect(r.stable).toBe(false);
    expect(r.mtimeNs).toBe(String((1_750_000_000 + 2) * 1e9)); // set by the second change, seen before the third read
    // the object holds exactly the bytes read (and hashed) in the last attempt
    expect(await nas.check(r.sha256 as string, r.size)).toEqual({ status: 'ok' });
  });

  it('reports a vanished file, and a source it cannot read, without throwing', async () => {
    const c = await copier();
    expect(c.run(join(src, 'no-such-file')).kind).toBe('vanished');
    const r = c.run(join(src, 'docs')); // a folder: open works, read fails
    expect(r).toMatchObject({ kind: 'failed', where: 'source', code: 'EISDIR' });
    await rm(join(src, 'docs'), { recursive: true });
  });
});
