import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeArgs, parseScriptOutput, scriptData, scriptText } from '../../src/machines/windows/scripts.ts';
import type { CaptureData, LandingData } from '../../src/machines/windows/results.ts';
import { createTestNet, requireTestNet, type TestNet } from '../hosts/index.ts';
import { sambaMissing, startSamba, type SambaServer } from '../support/samba.ts';
import { checkPwsh, mustRun, PWSH } from './pwsh.ts';

/**
 * robocopy into an SMB share, for real on the wire: the REAL capture and
 * landing scripts (as sent), under pwsh 7 on a namespaced "Windows" host,
 * map the share with New-SmbMapping and run robocopy; robocopy is the
 * stand-in (test/windows/stand-in/bin/robocopy), which moves the bytes with
 * smbclient against a REAL smbd on the vault host, with a user and
 * password. The independent check of the bytes: sha256sum on the vault
 * host, against hashes made here of the source. Windows-shaped robocopy
 * output (exit bits, log lines) is Pester-tested against Microsoft's
 * documented shapes (capture.Tests.ps1).
 *
 * Outside CI a missing pwsh, Samba or test-net support skips with the
 * reason; in CI it fails.
 */
const noNet = requireTestNet();
const pwsh = checkPwsh();
const noSamba = process.env.CI ? undefined : sambaMissing();
const skip = noNet ?? noSamba ?? (mustRun(pwsh) ? undefined : pwsh.reason);
const STAND_IN = path.join(import.meta.dirname, 'stand-in');

describe.skipIf(skip)(`robocopy into a real SMB share (Samba) from the capture and landing scripts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let net: TestNet<'win' | 'vault'>;
  let smb: SambaServer;
  let dir: string;
  let vaultDir: string;
  const password = randomBytes(12).toString('base64url');

  beforeAll(async () => {
    net = await createTestNet({ hosts: { win: {}, vault: {} }, segments: { a: ['win', 'vault'] } });
    vaultDir = path.join(net.hosts.vault.dataDir, 'sftp');
    // veto files: the share refuses files named *.vetoed (smb.conf(5)): robocopy's "some files could not be copied".
    smb = await startSamba(net, 'vault', { share: 'rubicon', path: vaultDir, user: 'rubicon', password, shareOptions: ['veto files = /*.vetoed/'] });
    dir = path.join(net.hosts.win.dataDir, 'w');
    mkdirSync(path.join(dir, 'scripts'), { recursive: true });
    for (const n of ['capture', 'landing'] as const) writeFileSync(path.join(dir, 'scripts', `${n}.ps1`), scriptText(n));
    writeFileSync(path.join(dir, 'services.json'), '[]');
  }, 120_000);
  afterAll(async () => {
    await net?.destroy();
  });

  async function runScript<T>(name: 'capture' | 'landing', args: Record<string, unknown>) {
    const enc = encodeArgs(args);
    const r = await net.exec('win', [PWSH, '-NoProfile', '-NonInteractive', '-File', path.join(dir, 'scripts', `${name}.ps1`), '-RubiconArgs', enc], {
      env: {
        PSModulePath: path.join(STAND_IN, 'modules'),
        PATH: `${path.join(STAND_IN, 'bin')}:${path.dirname(PWSH)}:${process.env.PATH ?? '/usr/bin:/bin'}`,
        RUBICON_STANDIN_SERVICES: path.join(dir, 'services.json'),
        RUBICON_STANDIN_SMB: path.join(dir, 'smb-session'),
      },
      reject: false,
      timeoutMs: 300_000,
    });
    return { out: parseScriptOutput<T>(r.stdout, { script: name, encodedArgs: enc, exitCode: r.exitCode }), stdout: r.stdout, stderr: r.stderr };
  }
  const pwFile = (n: string) => {
    const f = path.join(dir, `${n}.smb-password`);
    writeFileSync(f, `${password}\n`, { mode: 0o600 });
    return f;
  };
  const share = (passwordFile: string) => ({ root: smb.unc, user: smb.user, passwordFile });
  const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  /** Every file under the tree on the vault host, hashed THERE by sha256sum (the vault's own check). */
  async function vaultHashes(tree: string): Promise<Map<string, string>> {
    const r = await net.exec('vault', ['sh', '-c', 'cd "$1" && find . -type f -print0 | xargs -0 -r sha256sum', 'x', tree]);
    return new Map(r.stdout.trim().split('\n').filter(Boolean).map((l) => [l.slice(66).replace(/^\.\//, ''), l.slice(0, 64)] as const));
  }

  it('mirrors a folder from the shadow into the share (exit 1), every byte checked by sha256sum on the vault host, the mapping and the password file gone afterwards; a re-run after a deletion purges the extra (exit 2 bit)', { timeout: 300_000 }, async () => {
    const src = path.join(dir, 'EHR', 'X');
    mkdirSync(path.join(src, 'db', 'empty'), { recursive: true });
    writeFileSync(path.join(src, 'db', 'ehr.mdf'), randomBytes(300_000));
    writeFileSync(path.join(src, 'Überweisung 1.txt'), 'Herr Müller\n');
    writeFileSync(path.join(src, 'old.log'), 'to be deleted');
    const pf = pwFile('c1');
    const args = { key: 'c-test1', source: src, workDir: path.join(dir, 'work'), robocopy: { destination: `${smb.unc}\\trees\\t1.partial`, copy: 'DAT', share: share(pf) }, acl: { savePath: path.join(dir, 'work', 'c-test1.acl') } };
    const r = await runScript<CaptureData>('capture', args);
    expect(r.out.result.ok, r.stdout + r.stderr).toBe(true);
    const d = scriptData(r.out);
    expect(d.robocopy?.exitCode).toBe(1);
    expect(d.robocopy?.bits).toEqual(['copied']);
    expect(d.robocopy?.share).toEqual({ root: smb.unc, user: 'rubicon', disconnected: true });
    expect(existsSync(pf)).toBe(false);
    expect(readdirSync(path.join(dir, 'smb-session', smb.address))).toEqual([]);
    expect(r.stdout).not.toContain(password);
    const tree = path.join(vaultDir, 'trees', 't1.partial');
    const want = new Map(['db/ehr.mdf', 'Überweisung 1.txt', 'old.log'].map((f) => [f, sha(path.join(src, f))] as const));
    expect(await vaultHashes(tree)).toEqual(want);
    expect(existsSync(path.join(tree, 'db', 'empty'))).toBe(true);

    rmSync(path.join(src, 'old.log'));
    const again = await runScript<CaptureData>('capture', { ...args, robocopy: { ...args.robocopy, share: share(pwFile('c2')) } });
    const d2 = scriptData(again.out);
    expect(d2.robocopy?.bits).toEqual(['copied', 'extra']);
    want.delete('old.log');
    expect(await vaultHashes(tree)).toEqual(want);
  });

  it('fails with CAPTURE_INCOMPLETE (exit 9) naming the file the share refused, robocopy log parsed by the script', { timeout: 300_000 }, async () => {
    const src = path.join(dir, 'EHR', 'Y');
    mkdirSync(path.join(src, 'sub'), { recursive: true });
    writeFileSync(path.join(src, 'ok.txt'), 'fine');
    writeFileSync(path.join(src, 'sub', 'locked.vetoed'), 'the share refuses this name');
    const r = await runScript<CaptureData>('capture', { key: 'c-test2', source: src, workDir: path.join(dir, 'work'), robocopy: { destination: `${smb.unc}\\trees\\t2.partial`, copy: 'DAT', share: share(pwFile('c3')) } });
    expect(r.out.result.ok).toBe(false);
    if (r.out.result.ok) return;
    expect(r.out.result.error.code).toBe('CAPTURE_INCOMPLETE');
    const rc = (r.out.result.error.details as unknown as CaptureData).robocopy!;
    expect(rc.exitCode).toBe(9);
    expect(rc.bits).toEqual(['copied', 'failed']);
    expect(rc.errors.map((e) => e.relativePath)).toEqual(['sub/locked.vetoed']);
    expect(rc.errors[0]!.attempts).toBe(3);
    expect(rc.share?.disconnected).toBe(true);
  });

  it('a wrong password: the real smbd refuses the logon, robocopy exits 16 (fatal), nothing is copied', { timeout: 300_000 }, async () => {
    const src = path.join(dir, 'EHR', 'X');
    const f = path.join(dir, 'bad.smb-password');
    writeFileSync(f, 'not-the-password\n', { mode: 0o600 });
    const r = await runScript<CaptureData>('capture', { key: 'c-test3', source: src, workDir: path.join(dir, 'work'), robocopy: { destination: `${smb.unc}\\trees\\t3.partial`, copy: 'DAT', share: share(f) } });
    expect(r.out.result.ok).toBe(false);
    if (r.out.result.ok) return;
    const rc = (r.out.result.error.details as unknown as CaptureData).robocopy!;
    expect(rc.exitCode).toBe(16);
    expect(rc.errors[0]!.code).toBe(1326);
    expect(existsSync(path.join(vaultDir, 'trees', 't3.partial'))).toBe(false);
  });

  it('lands the tree from the share with the landing script (robocopy /E through the mapped share), every file back', { timeout: 300_000 }, async () => {
    const dest = path.join(dir, 'landed', 'X');
    const pf = pwFile('l1');
    const r = await runScript<LandingData>('landing', { workDir: path.join(dir, 'landing'), folders: [{ source: `${smb.unc}\\trees\\t1.partial`, destination: dest, exact: false, copy: 'DAT', share: share(pf) }] });
    expect(r.out.result.ok, r.stdout + r.stderr).toBe(true);
    const f = scriptData(r.out).folders[0]!;
    expect(f.robocopy?.failed).toBe(false);
    expect(existsSync(pf)).toBe(false);
    const src = path.join(dir, 'EHR', 'X');
    for (const rel of ['db/ehr.mdf', 'Überweisung 1.txt']) expect(sha(path.join(dest, rel))).toBe(sha(path.join(src, rel)));
    expect(existsSync(path.join(dest, 'old.log'))).toBe(false);
  });
});
