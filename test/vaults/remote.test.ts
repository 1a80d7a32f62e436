// The sftp (rsync) and restic vaults with real tools on real machines: a
// test net (test/hosts) with a target, a vault host, a proving ground and a
// "bare" machine without restic and rsync, each with its own sshd. The
// orchestrator runs inside the controller host (./remote-driver.ts), the only
// place the hosts route from; the test reads and damages the hosts' files
// directly (every namespace shares the filesystem).
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestEntry } from '../../src/core/types.ts';
import type { Grant } from '../../src/vaults/vault.ts';
import { CTL, createTestNet, requireTestNet, type HostProcess, type TestNet } from '../hosts/index.ts';

const DRIVER = fileURLToPath(new URL('./remote-driver.ts', import.meta.url));
const noNet = requireTestNet();

/**
 * A login shell for the "bare" host: PATH is a folder of links to every
 * program of this machine except restic and rsync (the hosts share one
 * filesystem, so a missing tool has to be missing from PATH).
 */
function makeBareShell(): { shell: string; dir: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-bare-'));
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  for (const src of ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin']) {
    if (!existsSync(src)) continue;
    for (const name of readdirSync(src)) {
      if (name === 'restic' || name === 'rsync' || name === 'rrsync' || existsSync(path.join(bin, name))) continue;
      symlinkSync(path.join(src, name), path.join(bin, name));
    }
  }
  const shell = path.join(dir, 'shell');
  writeFileSync(shell, `#!/bin/sh\nPATH=${bin}\nexport PATH\nexec /bin/sh "$@"\n`);
  chmodSync(shell, 0o755);
  chmodSync(dir, 0o755);
  return { shell, dir };
}

interface Answer {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { code: string; message: string; hint?: string };
}

class DriverError extends Error {
  readonly code: string;
  readonly hint?: string;
  constructor(code: string, message: string, hint?: string) {
    super(`${code}: ${message}`);
    this.code = code;
    this.hint = hint;
  }
}

/** The JSON-lines client of remote-driver.ts. */
class Driver {
  private next = 1;
  private readonly waiting = new Map<number, (a: Answer) => void>();
  private buf = '';
  private readonly child: HostProcess;
  constructor(child: HostProcess) {
    this.child = child;
    child.stdout.on('data', (d: Buffer | string) => {
      this.buf += String(d);
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const a = JSON.parse(line) as Answer;
        this.waiting.get(a.id)?.(a);
        this.waiting.delete(a.id);
      }
    });
    void child.then((r) => {
      for (const w of this.waiting.values()) w({ id: 0, ok: false, error: { code: 'DRIVER_EXITED', message: `driver exited (${r.exitCode ?? r.signal}): ${r.stderr.slice(-3000)}` } });
    });
  }
  answer(op: string, args: unknown): Promise<Answer> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.stdin.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }
  async call<T = unknown>(op: string, args: unknown): Promise<T> {
    const a = await this.answer(op, args);
    if (!a.ok) throw new DriverError(a.error!.code, a.error!.message, a.error!.hint);
    return a.value as T;
  }
  async fail(op: string, args: unknown): Promise<DriverError> {
    const a = await this.answer(op, args);
    if (a.ok) throw new Error(`${op} was expected to fail, but it answered ${JSON.stringify(a.value).slice(0, 300)}`);
    return new DriverError(a.error!.code, a.error!.message, a.error!.hint);
  }
  async close(): Promise<void> {
    this.child.stdin.end();
    await this.child;
  }
}

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

function flipByte(file: string, at?: number): void {
  const b = readFileSync(file);
  const i = at ?? Math.floor(b.length / 2);
  b[i] = b[i]! ^ 0x01;
  writeFileSync(file, b);
}

/** The files of a tree as path → sha256 (regular files only), read by the test itself. */
function treeHashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const d of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(r);
      else if (d.isFile()) out.set(r, sha(readFileSync(path.join(dir, r))));
    }
  };
  walk('');
  return out;
}

function expectTreeMatches(dir: string, entries: readonly ManifestEntry[]): void {
  const got = treeHashes(dir);
  expect([...got.keys()].sort()).toEqual(entries.map((e) => e.path).sort());
  for (const e of entries) expect(got.get(e.path), e.path).toBe(e.sha256);
}

const ODD = ['odd names/it\'s "quoted".txt', 'odd names/-rf', 'odd names/back\\slash', 'odd names/new\nline', 'ünïcødé/naïve café.txt'];

describe.skipIf(noNet)(`sftp and restic vaults on test hosts${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  let net: TestNet<'target' | 'vault' | 'pg' | 'bare' | 'ctl'>;
  let d: Driver;
  let bare: { shell: string; dir: string };
  let local: string;
  let src: string;
  let sftpRoot: string;
  let resticRoot: string;
  let pwFile: string;
  const password = randomBytes(18).toString('base64');
  const workDir = (host: string) => path.join(net.dir, host, 'rubicon');

  beforeAll(async () => {
    bare = makeBareShell();
    net = await createTestNet({
      hosts: { target: {}, vault: { diskMb: 96 }, pg: {}, bare: { shell: bare.shell } },
      segments: { a: [CTL, 'target', 'vault', 'bare'], b: [CTL, 'pg', 'vault'] },
    });
    local = mkdtempSync(path.join(os.tmpdir(), 'rubicon-vaults-'));
    pwFile = path.join(local, 'restic-password');
    writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    writeFileSync(path.join(local, 'wrong-password'), 'not-the-password\n', { mode: 0o600 });
    src = path.join(net.hosts.target.dataDir, 'ehr', 'X');
    const files: Record<string, string | Buffer> = {
      'plain.txt': 'hello\n',
      'empty.bin': '',
      'deep/a/b/c/d.txt': 'deep\n',
      'big/20mb.bin': randomBytes(20 * 1024 * 1024),
      ...Object.fromEntries(ODD.map((p) => [p, `content of ${p}\n`])),
    };
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
      writeFileSync(path.join(src, rel), content);
    }
    mkdirSync(path.join(src, 'empty-folder'));
    sftpRoot = path.join(net.hosts.vault.dataDir, 'sftp');
    resticRoot = path.join(net.hosts.vault.dataDir, 'restic');
    const config = {
      net: net.info(),
      runId: 'r-20261201-101500-test',
      runDir: path.join(local, 'run'),
      workDirs: Object.fromEntries(['target', 'vault', 'pg', 'bare'].map((h) => [h, workDir(h)])),
    };
    d = new Driver(net.node('ctl', [DRIVER, JSON.stringify(config)], { keepStdinOpen: true }));
    await d.call('newVault', { key: 'sftp', kind: 'sftp', name: 'nas', host: 'vault', path: sftpRoot });
    await d.call('newVault', { key: 'restic', kind: 'restic', name: 'offsite', host: 'vault', path: resticRoot, passwordFile: pwFile });
  });

  afterAll(async () => {
    await d?.close();
    await net?.destroy();
    if (local) rmSync(local, { recursive: true, force: true });
    if (bare) rmSync(bare.dir, { recursive: true, force: true });
  });

  // ---- state shared by the tests below, in order ----
  let entries: ManifestEntry[];
  let sftpFull: { locator: string };
  let sftpDelta: { locator: string };
  let deltaEntries: ManifestEntry[];
  const grantLine = (g: Grant) => net.hosts.vault.authorizedKeys().find((l) => l.endsWith(` rubicon-grant:${g.id}`));

  it('sftp: a write grant is an expiring, restricted key confined to rrsync in the vault, with 0600 files on the machine', async () => {
    const t0 = Date.now();
    const g = await d.call<Grant>('grant', { vault: 'sftp', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    const line = grantLine(g);
    expect(line).toMatch(new RegExp(`^expiry-time="\\d{14}Z",restrict,command="/usr/bin/rrsync -wo -no-lock -no-del ${sftpRoot}/trees" ssh-ed25519 \\S+ rubicon-grant:${g.id.replace(/\./g, '\\.')}$`));
    const spec = /expiry-time="(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z"/.exec(line!)!;
    const exp = Date.UTC(+spec[1]!, +spec[2]! - 1, +spec[3]!, +spec[4]!, +spec[5]!, +spec[6]!);
    expect(exp).toBeGreaterThanOrEqual(t0 + 10 * 60_000 - 1000);
    expect(exp).toBeLessThanOrEqual(Date.now() + 10 * 60_000 + 1000);
    expect(g.dir).toBe(`${workDir('target')}/grants/${g.id}`);
    expect(statSync(g.dir).mode & 0o777).toBe(0o700);
    for (const f of ['id_ed25519', 'known_hosts']) expect(statSync(path.join(g.dir, f)).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(g.dir, 'known_hosts'), 'utf8')).toBe(readFileSync(net.knownHostsPath, 'utf8'));
    expect(g.location).toBe('root@vault:/');
    expect(g.sshCommand).toContain(`IdentityFile=${g.dir}/id_ed25519`);
    expect(g.sshCommand).not.toMatch(/PRIVATE KEY/);
    // Rubicon's own key line is still there, byte for byte.
    expect(net.hosts.vault.authorizedKeys()[0]).toBe(net.clientKey.publicKey.trim());
    await d.call('revoke', { vault: 'sftp', grant: g });
  });

  it('sftp: ingest mirrors a tree with odd names, empty files and 20 MB with rsync; every SHA-256 is checked on the vault host', async () => {
    const m = await d.call<{ entries: ManifestEntry[]; skipped: unknown[] }>('manifest', { machine: 'target', dir: src, stepId: 'capture/folder:X/manifest' });
    entries = m.entries;
    expect(entries.map((e) => e.path)).toEqual(expect.arrayContaining(['empty.bin', 'big/20mb.bin', ...ODD]));
    const g = await d.call<Grant>('grant', { vault: 'sftp', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    const r = await d.call<{ locator: string; tool: string; report: { files: number; bytes: number } }>('ingest', {
      vault: 'sftp', machine: 'target', grant: g, artifactId: 'r1.capture.folder:ehr/X.rsync', stepId: 'capture/folder:X/rsync', srcDir: src, entries,
    });
    sftpFull = r;
    expect(r.locator).toBe('trees/r1.capture.folder%3Aehr%2FX.rsync');
    expect(r.tool).toMatch(/^rsync \d+\.\d+/);
    expect(r.report).toEqual({ files: entries.length, bytes: entries.reduce((n, e) => n + e.size, 0) });
    expectTreeMatches(path.join(sftpRoot, r.locator), entries);
    expect(readdirSync(path.join(sftpRoot, 'trees')).filter((n) => n.endsWith('.partial'))).toEqual([]);
    const c = await d.call('checkCopy', { vault: 'sftp', artifactId: 'r1.capture.folder:ehr/X.rsync', locator: r.locator, entries, stepId: 'prove/X/check' });
    expect(c).toEqual({ status: 'ok' });
    // A redo of the same ingest (after a crash) finishes with the same copy.
    const again = await d.call<{ locator: string }>('ingest', {
      vault: 'sftp', machine: 'target', grant: g, artifactId: 'r1.capture.folder:ehr/X.rsync', stepId: 'capture/folder:X/rsync', srcDir: src, entries,
    });
    expect(again.locator).toBe(r.locator);
    expectTreeMatches(path.join(sftpRoot, r.locator), entries);
    await d.call('revoke', { vault: 'sftp', grant: g });
  });

  it('sftp: a delta hard-links unchanged files to the base copy and copies what changed', async () => {
    writeFileSync(path.join(src, 'plain.txt'), 'hello again, changed by the technician\n');
    writeFileSync(path.join(src, 'new.txt'), 'moved in after the backup\n');
    const m = await d.call<{ entries: ManifestEntry[] }>('manifest', { machine: 'target', dir: src, stepId: 'final/X/manifest', base: entries });
    deltaEntries = m.entries;
    const g = await d.call<Grant>('grant', { vault: 'sftp', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    sftpDelta = await d.call<{ locator: string }>('ingest', {
      vault: 'sftp', machine: 'target', grant: g, artifactId: 'r1.final-capture.folder:ehr/X.rsync', stepId: 'final/X/rsync', srcDir: src, entries: deltaEntries,
      base: { artifactId: 'r1.capture.folder:ehr/X.rsync', locator: sftpFull.locator },
    });
    expectTreeMatches(path.join(sftpRoot, sftpDelta.locator), deltaEntries);
    const ino = (loc: string, p: string) => statSync(path.join(sftpRoot, loc, p)).ino;
    expect(ino(sftpDelta.locator, 'big/20mb.bin')).toBe(ino(sftpFull.locator, 'big/20mb.bin'));
    expect(ino(sftpDelta.locator, 'plain.txt')).not.toBe(ino(sftpFull.locator, 'plain.txt'));
    await d.call('revoke', { vault: 'sftp', grant: g });
  });

  it('sftp: checkCopy finds a flipped bit, a short file and a missing file in the vault, naming them', async () => {
    const copy = path.join(sftpRoot, sftpDelta.locator);
    const check = () => d.call<{ status: string; detail?: string }>('checkCopy', { vault: 'sftp', artifactId: 'delta', locator: sftpDelta.locator, entries: deltaEntries, stepId: 'prove/X/check-delta' });
    expect(await check()).toEqual({ status: 'ok' });
    flipByte(path.join(copy, 'plain.txt'));
    let c = await check();
    expect(c.status).toBe('checksum-mismatch');
    expect(c.detail).toContain('plain.txt');
    expect(c.detail).toContain("vault 'nas'");
    truncateSync(path.join(copy, 'new.txt'), 3);
    c = await check();
    expect(c.status).toBe('size-invalid');
    expect(c.detail).toContain('new.txt');
    unlinkSync(path.join(copy, 'deep/a/b/c/d.txt'));
    c = await check();
    expect(c.status).toBe('missing');
    expect(c.detail).toContain('deep/a/b/c/d.txt');
    // The base copy shares only unchanged files: it is still whole.
    expect(await d.call('checkCopy', { vault: 'sftp', artifactId: 'full', locator: sftpFull.locator, entries, stepId: 'prove/X/check-full' })).toEqual({ status: 'ok' });
  });

  it('sftp: restoreTo pulls the tree onto the proving ground through a read-only grant', async () => {
    const g = await d.call<Grant>('grant', { vault: 'sftp', machine: 'pg', mode: 'read', ttlMs: 10 * 60_000 });
    expect(grantLine(g)).toContain(`command="/usr/bin/rrsync -ro ${sftpRoot}/trees"`);
    const dest = path.join(net.hosts.pg.dataDir, 'restore', 'sftp');
    await d.call('restoreTo', { vault: 'sftp', machine: 'pg', grant: g, artifactId: 'full', locator: sftpFull.locator, dest, stepId: 'prove/X/restore', srcDir: src });
    expectTreeMatches(dest, entries);
    // The read grant cannot write into the vault: rrsync refuses the direction.
    const push = await net.exec('pg', ['sh', '-c', `rsync -a -e "$1" /etc/hostname root@vault:/intruder/`, 'x', g.sshCommand], { reject: false });
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toMatch(/read-only/);
    expect(existsSync(path.join(sftpRoot, 'trees', 'intruder'))).toBe(false);
    await d.call('revoke', { vault: 'sftp', grant: g });
  });

  it('sftp: documents are content-addressed, hash-checked on read, and the index lists artifacts', async () => {
    const doc = Buffer.from(JSON.stringify({ version: 1, entries }));
    const id = await d.call<string>('putBytes', { vault: 'sftp', base64: doc.toString('base64') });
    expect(id).toBe(sha(doc));
    expect(await d.call('putBytes', { vault: 'sftp', base64: doc.toString('base64') })).toBe(id);
    expect(await d.call('has', { vault: 'sftp', sha256: id })).toBe(true);
    expect(Buffer.from(await d.call<string>('read', { vault: 'sftp', sha256: id }), 'base64').equals(doc)).toBe(true);
    expect(await d.call('check', { vault: 'sftp', sha256: id, size: doc.length })).toEqual({ status: 'ok' });
    const entry = { artifactId: 'r1.capture.folder:ehr/X.rsync', runId: 'r1', itemId: 'folder:ehr/X', method: 'rsync', manifestHash: id, capturedAt: '2026-12-01T10:00:00.000Z' };
    await d.call('putArtifactIndex', { vault: 'sftp', entry });
    await d.call('putArtifactIndex', { vault: 'sftp', entry: { ...entry, origin: 'rubicon', independenceGroup: 'rsync' } });
    expect(await d.call('listArtifacts', { vault: 'sftp' })).toEqual([{ ...entry, origin: 'rubicon', independenceGroup: 'rsync' }]);
    expect(readdirSync(path.join(sftpRoot, 'index'))).toEqual(['r1.capture.folder%3Aehr%2FX.rsync.json']);
    await d.call('sync', { vault: 'sftp' });
    flipByte(path.join(sftpRoot, 'docs', id));
    expect((await d.fail('read', { vault: 'sftp', sha256: id })).code).toBe('VAULT_CORRUPT');
    expect(await d.call('check', { vault: 'sftp', sha256: id })).toMatchObject({ status: 'checksum-mismatch' });
    const absent = sha('absent');
    expect(await d.call('has', { vault: 'sftp', sha256: absent })).toBe(false);
    expect((await d.fail('read', { vault: 'sftp', sha256: absent })).code).toBe('VAULT_MISSING_OBJECT');
    expect(await d.call('check', { vault: 'sftp', sha256: absent })).toMatchObject({ status: 'missing' });
    const w = await d.fail('createWriter', { vault: 'sftp' });
    expect(w.message).toMatch(/does not stream objects through Rubicon/);
  });

  it('grants: sshd itself refuses an expired grant; revoke removes the key line and the grant folder', async () => {
    // A vault whose clock is two hours slow issues a grant that sshd (on the real clock) sees as expired.
    await d.call('newVault', { key: 'sftp-slow', kind: 'sftp', name: 'nas', host: 'vault', path: sftpRoot, nowOffsetMs: -2 * 3600_000 });
    const expired = await d.call<Grant>('grant', { vault: 'sftp-slow', machine: 'target', mode: 'write', ttlMs: 60_000 });
    const live = await d.call<Grant>('grant', { vault: 'sftp', machine: 'target', mode: 'write', ttlMs: 60_000 });
    const viaGrant = (g: Grant) => net.exec('target', ['sh', '-c', `${g.sshCommand} root@vault true`], { reject: false });
    const ok = await viaGrant(live);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const refused = await viaGrant(expired);
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/Permission denied/);
    await d.call('revoke', { vault: 'sftp', grant: live });
    expect(grantLine(live)).toBeUndefined();
    expect(existsSync(live.dir)).toBe(false);
    const after = await viaGrant({ ...live });
    expect(after.exitCode).toBe(255);
    await d.call('revoke', { vault: 'sftp', grant: live }); // idempotent
    await d.call('revoke', { vault: 'sftp-slow', grant: expired });
    expect(grantLine(expired)).toBeUndefined();
    expect(net.hosts.vault.authorizedKeys().filter((l) => l.includes('rubicon-grant:'))).toEqual([]);
  });

  // ---- restic ----
  let resticFull: { locator: string };
  let resticDelta: { locator: string };

  it('restic: initialized on first use; a wrong password is refused with VAULT_PASSWORD naming the vault and its host', async () => {
    const v = await d.call<string>('ensureInitialized', { vault: 'restic' });
    expect(v).toMatch(/^restic 0\.\d+\.\d+/);
    expect(existsSync(path.join(resticRoot, 'config'))).toBe(true);
    expect(await d.call('ensureInitialized', { vault: 'restic' })).toBe(v);
    await d.call('newVault', { key: 'restic-wrong', kind: 'restic', name: 'offsite', host: 'vault', path: resticRoot, passwordFile: path.join(local, 'wrong-password') });
    const e = await d.fail('ensureInitialized', { vault: 'restic-wrong' });
    expect(e.code).toBe('VAULT_PASSWORD');
    expect(e.message).toContain("vault 'offsite'");
    expect(e.message).toContain('vault (ssh root@vault:22)');
    expect(e.message).toContain(path.join(local, 'wrong-password'));
    expect(e.message).not.toContain('not-the-password');
    expect((await d.fail('grant', { vault: 'restic-wrong', machine: 'target', mode: 'write', ttlMs: 60_000 })).code).toBe('VAULT_PASSWORD');
  });

  it('restic: ingest backs the tree up from the target over sftp; the JSON summary matches the manifest; a delta uses --parent', async () => {
    writeFileSync(path.join(src, 'plain.txt'), 'hello\n');
    rmSync(path.join(src, 'new.txt'));
    const m = await d.call<{ entries: ManifestEntry[] }>('manifest', { machine: 'target', dir: src, stepId: 'capture/X/manifest-restic' });
    entries = m.entries;
    const g = await d.call<Grant>('grant', { vault: 'restic', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    expect(grantLine(g)).toMatch(/,restrict,command="internal-sftp" ssh-ed25519 /);
    expect(g.env).toEqual({ RESTIC_REPOSITORY: `sftp:root@vault:${resticRoot}`, RESTIC_PASSWORD_FILE: `${g.dir}/password` });
    expect(readFileSync(g.env.RESTIC_PASSWORD_FILE!, 'utf8')).toBe(`${password}\n`);
    expect(statSync(g.env.RESTIC_PASSWORD_FILE!).mode & 0o777).toBe(0o600);
    expect(g.sshCommand).not.toContain(password);
    resticFull = await d.call<{ locator: string; tool: string; report: { files: number; bytes: number } }>('ingest', {
      vault: 'restic', machine: 'target', grant: g, artifactId: 'r1.capture.folder:ehr/X.restic', stepId: 'capture/X/restic', srcDir: src, entries,
    });
    expect(resticFull.locator).toMatch(/^[0-9a-f]{64}$/);
    expect(await d.call('checkCopy', { vault: 'restic', artifactId: 'full', locator: resticFull.locator, entries, stepId: 'prove/X/restic-check' })).toEqual({ status: 'ok' });
    writeFileSync(path.join(src, 'plain.txt'), 'changed for the restic delta\n');
    const m2 = await d.call<{ entries: ManifestEntry[] }>('manifest', { machine: 'target', dir: src, stepId: 'final/X/manifest-restic', base: entries });
    deltaEntries = m2.entries;
    resticDelta = await d.call<{ locator: string }>('ingest', {
      vault: 'restic', machine: 'target', grant: g, artifactId: 'r1.final-capture.folder:ehr/X.restic', stepId: 'final/X/restic', srcDir: src, entries: deltaEntries,
      base: { artifactId: 'r1.capture.folder:ehr/X.restic', locator: resticFull.locator },
    });
    // What restic itself recorded, read with restic on the repository folder.
    const snaps = JSON.parse((await execa('restic', ['-r', resticRoot, '--no-cache', '--password-file', pwFile, 'snapshots', '--json', '--tag', 'rubicon'])).stdout) as { id: string; parent?: string; tags: string[]; hostname: string }[];
    const delta = snaps.find((s) => s.id === resticDelta.locator)!;
    expect(delta.parent).toBe(resticFull.locator);
    expect(delta.hostname).toBe('target');
    expect(delta.tags).toEqual(expect.arrayContaining(['rubicon', 'artifact:r1.final-capture.folder%3Aehr%2FX.restic', `source:${src.replace(/[^A-Za-z0-9._/~-]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`]));
    expect(await d.call('checkCopy', { vault: 'restic', artifactId: 'delta', locator: resticDelta.locator, entries: deltaEntries, stepId: 'prove/X/restic-check-delta' })).toEqual({ status: 'ok' });
    // The snapshot of the full copy is not the delta's manifest: ls names the file whose size differs.
    const wrong = await d.call<{ status: string; detail: string }>('checkCopy', { vault: 'restic', artifactId: 'full', locator: resticFull.locator, entries: deltaEntries, stepId: 'prove/X/restic-check-wrong' });
    expect(wrong.status).toBe('size-invalid');
    expect(wrong.detail).toContain('plain.txt');
    await d.call('revoke', { vault: 'restic', grant: g });
    expect(existsSync(g.dir)).toBe(false);
  });

  it('restic: a vanished file is caught by comparing restic\'s summary with the manifest', async () => {
    const g = await d.call<Grant>('grant', { vault: 'restic', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    const ghost: ManifestEntry = { path: 'ghost.txt', size: 5, mtimeMs: 0, mode: 0o644, sha256: sha('ghost') };
    const e = await d.fail('ingest', {
      vault: 'restic', machine: 'target', grant: g, artifactId: 'r1.capture.ghost.restic', stepId: 'capture/ghost/restic', srcDir: src, entries: [...entries, ghost].sort((a, b) => (a.path < b.path ? -1 : 1)),
    });
    expect(e.code).toBe('CAPTURE_FAILED');
    expect(e.message).toContain('ghost.txt');
    expect(e.message).toMatch(/manifest has \d+ file/);
    await d.call('revoke', { vault: 'restic', grant: g });
  });

  it('restic: restoreTo puts the files exactly under dest on the proving ground through a read-only grant', async () => {
    const g = await d.call<Grant>('grant', { vault: 'restic', machine: 'pg', mode: 'read', ttlMs: 10 * 60_000 });
    expect(grantLine(g)).toContain('command="internal-sftp -R"');
    const dest = path.join(net.hosts.pg.dataDir, 'restore', 'restic');
    await d.call('restoreTo', { vault: 'restic', machine: 'pg', grant: g, artifactId: 'full', locator: resticFull.locator, dest, stepId: 'prove/X/restic-restore', srcDir: src });
    expectTreeMatches(dest, entries);
    expect(existsSync(`${dest}.rubicon-staging`)).toBe(false);
    // A read grant cannot change the repository: sshd serves its sftp server read-only for that key.
    const sftp = ['sftp', '-b', '-', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${g.dir}/known_hosts`, '-o', 'IdentitiesOnly=yes', '-o', `IdentityFile=${g.dir}/id_ed25519`, 'root@vault'];
    const put = await net.exec('pg', sftp, { input: `put /etc/hostname ${resticRoot}/intruder\n`, reject: false });
    expect(put.exitCode).not.toBe(0);
    expect(put.stderr).toMatch(/Permission denied|read-only|Failure/i);
    expect(existsSync(path.join(resticRoot, 'intruder'))).toBe(false);
    const list = await net.exec('pg', sftp, { input: `ls ${resticRoot}\n`, reject: false });
    expect(list.stdout).toContain('config');
    await d.call('revoke', { vault: 'restic', grant: g });
  });

  it('restic: a read grant without its secret gives the machine no password; it opens the repository only with a password file put where the grant names it', async () => {
    const g = await d.call<Grant>('grant', { vault: 'restic', machine: 'pg', mode: 'read', ttlMs: 10 * 60_000, withoutSecret: true });
    expect(grantLine(g)).toContain('command="internal-sftp -R"');
    // The key files and the repository's location (for --repository-file, not a secret); no password.
    expect(readdirSync(g.dir).sort()).toEqual(['id_ed25519', 'known_hosts', 'repository']);
    expect(g.env['RESTIC_PASSWORD_FILE']).toBe(`${g.dir}/password`);
    expect(await d.call('opens', { machine: 'pg', grant: g })).toEqual({ ok: false, detail: expect.stringMatching(/pg has no password file for vault 'offsite'/) });
    writeFileSync(`${g.dir}/password`, 'not-the-password\n', { mode: 0o600 });
    expect(await d.call('opens', { machine: 'pg', grant: g })).toEqual({ ok: false, detail: expect.stringMatching(/does not open/) });
    writeFileSync(`${g.dir}/password`, `${password}\n`, { mode: 0o600 });
    expect(await d.call('opens', { machine: 'pg', grant: g })).toEqual({ ok: true });
    await d.call('revoke', { vault: 'restic', grant: g });
    expect(existsSync(g.dir)).toBe(false);
  });

  it('restic: documents and index entries live in the repository itself', async () => {
    const doc = Buffer.from(JSON.stringify({ version: 1, entries, note: 'ü' }));
    const id = await d.call<string>('putBytes', { vault: 'restic', base64: doc.toString('base64') });
    expect(id).toBe(sha(doc));
    expect(await d.call('putBytes', { vault: 'restic', base64: doc.toString('base64') })).toBe(id);
    const entry = { artifactId: 'r1.capture.folder:ehr/X.restic', runId: 'r1', itemId: 'folder:ehr/X', method: 'restic', manifestHash: id, capturedAt: '2026-12-01T10:00:00.000Z' };
    await d.call('putArtifactIndex', { vault: 'restic', entry });
    await d.call('putArtifactIndex', { vault: 'restic', entry });
    // A new vault object (another process: rubicon verify, the proving ground) finds them in the repository.
    await d.call('newVault', { key: 'restic-2', kind: 'restic', name: 'offsite', host: 'vault', path: resticRoot, passwordFile: pwFile });
    expect(await d.call('has', { vault: 'restic-2', sha256: id })).toBe(true);
    expect(Buffer.from(await d.call<string>('read', { vault: 'restic-2', sha256: id }), 'base64').equals(doc)).toBe(true);
    expect(await d.call('check', { vault: 'restic-2', sha256: id, size: doc.length })).toEqual({ status: 'ok' });
    expect(await d.call('listArtifacts', { vault: 'restic-2' })).toEqual([entry]);
    expect(await d.call('has', { vault: 'restic-2', sha256: sha('absent') })).toBe(false);
    expect((await d.fail('read', { vault: 'restic-2', sha256: sha('absent') })).code).toBe('VAULT_MISSING_OBJECT');
    const docSnaps = JSON.parse((await execa('restic', ['-r', resticRoot, '--no-cache', '--password-file', pwFile, 'snapshots', '--json', '--tag', 'rubicon-doc'])).stdout) as unknown[];
    expect(docSnaps).toHaveLength(1);
  });

  it('run documents (journal heads) are write-once, apart from the artifact index, and read back by a fresh vault object, in both vaults', async () => {
    for (const [key, fresh] of [['sftp', { key: 'sftp-docs', kind: 'sftp', name: 'nas', host: 'vault', path: sftpRoot }], ['restic', { key: 'restic-docs', kind: 'restic', name: 'offsite', host: 'vault', path: resticRoot, passwordFile: pwFile }]] as const) {
      const before = await d.call<unknown[]>('listArtifacts', { vault: key });
      const one = Buffer.from('{"head":1}\n');
      await d.call('putRunDocument', { vault: key, runId: 'r-20261202-010000-abcd', name: 'head-gate-41', base64: one.toString('base64') });
      // Write-once: a second write under the same name keeps the first.
      await d.call('putRunDocument', { vault: key, runId: 'r-20261202-010000-abcd', name: 'head-gate-41', base64: Buffer.from('{"head":2}\n').toString('base64') });
      await d.call('putRunDocument', { vault: key, runId: 'r-20261202-010000-abcd', name: 'head-landed-80', base64: Buffer.from('{"head":3}\n').toString('base64') });
      await d.call('newVault', fresh);
      const docs = await d.call<{ name: string; where: string; text: string }[]>('listRunDocuments', { vault: fresh.key, runId: 'r-20261202-010000-abcd' });
      expect(docs.map((x) => [x.name, x.text])).toEqual([['head-gate-41', '{"head":1}\n'], ['head-landed-80', '{"head":3}\n']]);
      expect(docs[0]!.where).toMatch(key === 'sftp' ? /vault:.*runs\/r-20261202-010000-abcd\/head-gate-41\.json$/ : /\/runs\/r-20261202-010000-abcd\/head-gate-41\.json in snapshot [0-9a-f]{8}$/);
      expect(await d.call('listRunDocuments', { vault: fresh.key, runId: 'r-20261202-020000-ffff' })).toEqual([]);
      // Never read as artifacts.
      expect(await d.call('listArtifacts', { vault: fresh.key })).toEqual(before);
    }
  });

  it('an empty folder is an artifact too, in both vaults', async () => {
    const emptySrc = path.join(net.hosts.target.dataDir, 'ehr', 'empty');
    mkdirSync(emptySrc, { recursive: true });
    for (const vault of ['sftp', 'restic']) {
      const g = await d.call<Grant>('grant', { vault, machine: 'target', mode: 'write', ttlMs: 60_000 });
      const r = await d.call<{ locator: string; report: { files: number; bytes: number } }>('ingest', {
        vault, machine: 'target', grant: g, artifactId: `r1.capture.empty.${vault}`, stepId: `capture/empty/${vault}`, srcDir: emptySrc, entries: [],
      });
      expect(r.report).toEqual({ files: 0, bytes: 0 });
      expect(await d.call('checkCopy', { vault, artifactId: 'empty', locator: r.locator, entries: [], stepId: `prove/empty/${vault}` })).toMatchObject({ status: 'ok' });
      await d.call('revoke', { vault, grant: g });
      const rg = await d.call<Grant>('grant', { vault, machine: 'pg', mode: 'read', ttlMs: 60_000 });
      const dest = path.join(net.hosts.pg.dataDir, 'restore', `empty-${vault}`);
      await d.call('restoreTo', { vault, machine: 'pg', grant: rg, artifactId: 'empty', locator: r.locator, dest, stepId: `prove/empty/${vault}/restore`, srcDir: emptySrc });
      expect(readdirSync(dest)).toEqual([]);
      await d.call('revoke', { vault, grant: rg });
    }
  });

  it('the vault host running out of space gives NO_SPACE naming it; after space is freed the redo succeeds', async () => {
    const filler = path.join(net.hosts.vault.dataDir, 'filler');
    const df = await execa('df', ['-Pk', net.hosts.vault.dataDir]);
    const availKb = Number(df.stdout.trim().split('\n').at(-1)!.trim().split(/\s+/)[3]);
    await execa('fallocate', ['-l', `${Math.max(availKb - 4 * 1024, 1)}K`, filler]);
    const now = await d.call<{ entries: ManifestEntry[] }>('manifest', { machine: 'target', dir: src, stepId: 'r2/capture/X/manifest' });
    const g = await d.call<Grant>('grant', { vault: 'sftp', machine: 'target', mode: 'write', ttlMs: 10 * 60_000 });
    const args = { vault: 'sftp', machine: 'target', grant: g, artifactId: 'r2.capture.folder:ehr/X.rsync', stepId: 'r2/capture/X/rsync', srcDir: src, entries: now.entries };
    const e = await d.fail('ingest', args);
    expect(e.code).toBe('NO_SPACE');
    expect(e.message).toContain("vault 'nas'");
    expect(e.message).toContain('vault (ssh root@vault:22)');
    expect(e.hint).toMatch(/free space on vault/);
    rmSync(filler);
    const r = await d.call<{ locator: string }>('ingest', args);
    expectTreeMatches(path.join(sftpRoot, r.locator), now.entries);
    await d.call('revoke', { vault: 'sftp', grant: g });
  });

  it('restic or rsync missing on the machine gives TOOL_MISSING naming the machine', async () => {
    const bareSrc = path.join(net.hosts.bare.dataDir, 'data');
    mkdirSync(bareSrc, { recursive: true });
    writeFileSync(path.join(bareSrc, 'a.txt'), 'a\n');
    const one: ManifestEntry[] = [{ path: 'a.txt', size: 2, mtimeMs: statSync(path.join(bareSrc, 'a.txt')).mtimeMs, mode: 0o644, sha256: sha('a\n') }];
    for (const [vault, tool] of [['restic', 'restic'], ['sftp', 'rsync']] as const) {
      const g = await d.call<Grant>('grant', { vault, machine: 'bare', mode: 'write', ttlMs: 60_000 });
      const e = await d.fail('ingest', { vault, machine: 'bare', grant: g, artifactId: `bare.${tool}`, stepId: `bare/${tool}`, srcDir: bareSrc, entries: one });
      expect(e.code).toBe('TOOL_MISSING');
      expect(e.message).toContain(`${tool} is not installed on bare`);
      await d.call('revoke', { vault, grant: g });
    }
  });

  it('an artifact\'s manifest and index entry go in together (restic: one snapshot); checkCopy checks the manifest where it is stored', async () => {
    const manifest = Buffer.from(JSON.stringify({ version: 1, artifactId: 'r2.capture.folder:ehr/X', entries }));
    const msha = sha(manifest);
    for (const vault of ['sftp', 'restic']) {
      const entry = { artifactId: `r2.capture.folder:ehr/X.${vault}`, runId: 'r2', itemId: 'folder:ehr/X', method: vault, manifestHash: msha, capturedAt: '2026-12-02T10:00:00.000Z', origin: 'rubicon', independenceGroup: vault };
      expect(await d.call('putArtifactDocuments', { vault, base64: manifest.toString('base64'), entry })).toBe(msha);
      // Again (a redo): nothing new is stored.
      expect(await d.call('putArtifactDocuments', { vault, base64: manifest.toString('base64'), entry })).toBe(msha);
      // Another process finds both from the vault alone.
      await d.call('newVault', { key: `${vault}-docs`, kind: vault, name: vault === 'sftp' ? 'nas' : 'offsite', host: 'vault', path: vault === 'sftp' ? sftpRoot : resticRoot, passwordFile: pwFile });
      expect(Buffer.from(await d.call<string>('read', { vault: `${vault}-docs`, sha256: msha }), 'base64').equals(manifest)).toBe(true);
      expect(await d.call<unknown[]>('listArtifacts', { vault: `${vault}-docs` })).toContainEqual(entry);
    }
    const restic = (...args: string[]) => execa('restic', ['-r', resticRoot, '--no-cache', '--password-file', pwFile, ...args]);
    const snaps = JSON.parse((await restic('snapshots', '--json', '--tag', `rubicon-doc:${msha}`)).stdout) as { id: string; tags: string[] }[];
    expect(snaps).toHaveLength(1);
    expect(snaps[0]!.tags).toContain('rubicon-index:r2.capture.folder%3Aehr%2FX.restic');
    const ls = (await restic('ls', snaps[0]!.id)).stdout;
    expect(ls).toContain(`/docs/${msha}`);
    expect(ls).toContain('/index/r2.capture.folder%3Aehr%2FX.restic.json');

    const sftpCheck = () => d.call<{ status: string; detail?: string }>('checkCopy', { vault: 'sftp', artifactId: 'full', locator: sftpFull.locator, entries, stepId: 'prove/X/check-doc', manifestHash: msha });
    expect(await sftpCheck()).toEqual({ status: 'ok' });
    flipByte(path.join(sftpRoot, 'docs', msha));
    expect(await sftpCheck()).toMatchObject({ status: 'checksum-mismatch', detail: expect.stringContaining('manifest document') });
    unlinkSync(path.join(sftpRoot, 'docs', msha));
    expect(await sftpCheck()).toMatchObject({ status: 'missing', detail: expect.stringContaining('manifest document') });
    const resticCheck = (hash: string) => d.call<{ status: string; detail?: string }>('checkCopy', { vault: 'restic-docs', artifactId: 'full', locator: resticFull.locator, entries, stepId: 'prove/X/restic-doc', manifestHash: hash });
    expect(await resticCheck(msha)).toEqual({ status: 'ok' });
    expect(await resticCheck(sha('no such manifest'))).toMatchObject({ status: 'missing', detail: expect.stringContaining('manifest document') });
  });

  it('restic: checkCopy finds a damaged pack (check --read-data on the vault host) and names its file', async () => {
    const packs: { file: string; size: number }[] = [];
    for (const sub of readdirSync(path.join(resticRoot, 'data'))) {
      for (const f of readdirSync(path.join(resticRoot, 'data', sub))) packs.push({ file: path.join(resticRoot, 'data', sub, f), size: statSync(path.join(resticRoot, 'data', sub, f)).size });
    }
    const biggest = packs.sort((a, b) => b.size - a.size)[0]!;
    chmodSync(biggest.file, 0o600);
    flipByte(biggest.file, 1000);
    // A new vault object: the repository-wide check is remembered per object, so the old one would not read again.
    await d.call('newVault', { key: 'restic-3', kind: 'restic', name: 'offsite', host: 'vault', path: resticRoot, passwordFile: pwFile });
    const c = await d.call<{ status: string; detail: string }>('checkCopy', { vault: 'restic-3', artifactId: 'full', locator: resticFull.locator, entries, stepId: 'prove/X/restic-damaged' });
    expect(c.status).toBe('checksum-mismatch');
    expect(c.detail).toContain(`data/${path.basename(path.dirname(biggest.file))}/${path.basename(biggest.file)}`);
    // The object that checked before the damage keeps its (memoized) repository verdict until a new object is made.
    expect((await d.call<{ status: string }>('checkCopy', { vault: 'restic', artifactId: 'full', locator: resticFull.locator, entries, stepId: 'prove/X/restic-memo' })).status).toBe('ok');
    // ... but not for a snapshot that came after its check (a final capture proven by the same object): that reads the repository again.
    const later = path.join(net.hosts.target.dataDir, 'ehr', 'later');
    mkdirSync(later, { recursive: true });
    writeFileSync(path.join(later, 'late.txt'), 'moved in after the proofs\n');
    const m = await d.call<{ entries: ManifestEntry[] }>('manifest', { machine: 'target', dir: later, stepId: 'final/later/manifest' });
    const g = await d.call<Grant>('grant', { vault: 'restic', machine: 'target', mode: 'write', ttlMs: 60_000 });
    const r = await d.call<{ locator: string }>('ingest', { vault: 'restic', machine: 'target', grant: g, artifactId: 'r1.final-capture.later.restic', stepId: 'final/later/restic', srcDir: later, entries: m.entries });
    await d.call('revoke', { vault: 'restic', grant: g });
    const again = await d.call<{ status: string; detail: string }>('checkCopy', { vault: 'restic', artifactId: 'later', locator: r.locator, entries: m.entries, stepId: 'prove/later/restic' });
    expect(again.status).toBe('checksum-mismatch');
    expect(again.detail).toContain(path.basename(biggest.file));
  });
});
