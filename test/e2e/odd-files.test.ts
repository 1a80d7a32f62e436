import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, readdir, readFile, readlink, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Permit } from '../../src/core/types.ts';
import { copyTree, displayPath, SandboxDriver } from '../../src/infra/sandbox.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { SMALL } from './crash-harness.ts';
import { cli, journalOf, removeTempDirs, tempDir } from './helpers.ts';

/**
 * A target with a FIFO, a socket and file names that are not UTF-8 (a
 * Latin-1 name from an old Windows share, say). The sandbox's rollback
 * point used fs.cp, which fails on both (INTERNAL at the gate); it now
 * copies names as bytes and lists what a copy cannot hold.
 */
afterAll(removeTempDirs);

const latin1 = (dir: string, bytes: number[]) => Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(bytes)]);
const NAME = [0x64, 0x6f, 0x63, 0xe9, 0x2e, 0x70, 0x64, 0x66]; // "doc\xe9.pdf": é in Latin-1, invalid UTF-8
const DIR_NAME = [0x72, 0xe9, 0x73, 0x75, 0x6c, 0x74, 0x61, 0x74, 0x73]; // "r\xe9sultats"

function mkfifo(p: string): void {
  execFileSync('mkfifo', [p]);
}

async function listen(socketPath: string): Promise<() => Promise<void>> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('the sandbox rollback point and crossing with odd files', () => {
  it('copies names as bytes, modes, times and symlinks; lists FIFOs and sockets it cannot hold', async () => {
    const root = await tempDir();
    const src = path.join(root, 'target');
    await mkdir(path.join(src, 'ehr', 'X'), { recursive: true });
    await writeFile(latin1(path.join(src, 'ehr', 'X'), NAME), 'a scan under a Latin-1 name');
    await mkdir(latin1(path.join(src, 'ehr'), DIR_NAME));
    await writeFile(Buffer.concat([latin1(path.join(src, 'ehr'), DIR_NAME), Buffer.from('/inner.txt')]), 'inside a Latin-1 folder');
    mkfifo(path.join(src, 'ehr', 'X', 'pipe'));
    const close = await listen(path.join(src, 'ehr', 'sock'));
    await symlink('../X/pipe', path.join(src, 'ehr', 'link-to-pipe'));
    await mkdir(path.join(src, 'private'));
    await writeFile(path.join(src, 'private', 'key'), 'k');
    await chmod(path.join(src, 'private', 'key'), 0o600);
    await chmod(path.join(src, 'private'), 0o700);
    await mkdir(path.join(src, 'shared'));
    await chmod(path.join(src, 'shared'), 0o1777);
    const t = new Date('2024-02-29T12:34:56.789Z');
    await utimes(path.join(src, 'private', 'key'), t, t);

    const notKept = await copyTree(src, path.join(root, 'copy'));
    await close();
    expect(notKept.sort()).toEqual(['ehr/X/pipe (FIFO)', 'ehr/sock (socket)']);
    const copy = path.join(root, 'copy');
    expect(await readFile(latin1(path.join(copy, 'ehr', 'X'), NAME), 'utf8')).toBe('a scan under a Latin-1 name');
    expect(await readFile(Buffer.concat([latin1(path.join(copy, 'ehr'), DIR_NAME), Buffer.from('/inner.txt')]), 'utf8')).toBe('inside a Latin-1 folder');
    expect(await readlink(path.join(copy, 'ehr', 'link-to-pipe'))).toBe('../X/pipe');
    expect((await lstat(path.join(copy, 'ehr', 'link-to-pipe'))).isSymbolicLink()).toBe(true);
    expect((await stat(path.join(copy, 'private'))).mode & 0o7777).toBe(0o700);
    expect((await stat(path.join(copy, 'private', 'key'))).mode & 0o7777).toBe(0o600);
    expect((await stat(path.join(copy, 'shared'))).mode & 0o7777).toBe(0o1777);
    expect((await stat(path.join(copy, 'private', 'key'))).mtime.toISOString()).toBe(t.toISOString());
    expect(displayPath(Buffer.from(NAME))).toBe('doc\\xe9.pdf');
    expect(displayPath(Buffer.from('ünïcødé'))).toBe('ünïcødé');
  });

  it('createRollbackPoint records what it could not hold; the crossing wipes names that are not UTF-8 too', async () => {
    const root = await tempDir();
    const targetRoot = path.join(root, 'target');
    await mkdir(path.join(targetRoot, 'ehr'), { recursive: true });
    await writeFile(latin1(targetRoot, NAME), 'top level, Latin-1');
    mkfifo(path.join(targetRoot, 'ehr', 'pipe'));
    const driver = new SandboxDriver({ targetRoot, targetName: 't', provingGroundRoot: path.join(root, 'pg'), rollbackRoot: path.join(root, 'rollback'), currentImage: 'old', plannedImage: 'new' });
    const point = await driver.createRollbackPoint('r-20261128-090000-abcd');
    expect(point.notKept).toEqual(['ehr/pipe (FIFO)']);
    expect(await readFile(latin1(point.location, NAME), 'utf8')).toBe('top level, Latin-1');
    expect(await driver.createRollbackPoint('r-20261128-090000-abcd')).toEqual(point); // idempotent
    const now = new Date();
    const permit: Permit = { id: 'p', runId: 'r-20261128-090000-abcd', target: 't', image: 'new', issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 60_000).toISOString(), proofIds: [], proofSetHash: '' };
    await driver.cross(permit, now);
    expect(await readdir(targetRoot)).toEqual(['os-release']);
    await driver.releaseRollbackPoint(point);
    expect(await readdir(path.join(root, 'rollback'))).not.toContain('r-20261128-090000-abcd');
  });
});

describe('an upgrade of a target with a FIFO and a non-UTF-8 file name in an undeclared folder', () => {
  it('ends cleanly (not INTERNAL), with the FIFO named in the rollback point', async () => {
    const L = await buildSandbox(path.join(await tempDir(), 'estate'), SMALL);
    const x = path.join(L.target, 'ehr', 'X', 'scans'); // found by discovery, never declared by the vendor
    mkfifo(path.join(x, 'pipe'));
    await writeFile(latin1(x, NAME), 'a scan under a Latin-1 name');
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.events.filter((e) => e.kind === 'error')).toEqual([]);
    const summary = r.summary as { runId: string; outcome: string; error?: { code: string } };
    expect(summary.error?.code).not.toBe('INTERNAL');
    // Landed, or refused by the gate with nothing destroyed; which one is the file capture's business
    // (src/files: whether it captures the non-UTF-8 name), not the rollback copy's.
    expect([0, 2], `${summary.outcome}: ${r.stderr}`).toContain(r.exitCode);
    const records = await journalOf(L.stateDir, summary.runId);
    const rollback = records.find((rec) => rec.event.type === 'rollback.created')?.event as { rollbackPoint: { notKept?: string[] } } | undefined;
    expect(rollback?.rollbackPoint.notKept).toEqual(['ehr/X/scans/pipe (FIFO)']);
  });
});
