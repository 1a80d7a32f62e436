import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ManifestEntry } from '../../src/core/types.ts';
import type { Machine } from '../../src/machines/machine.ts';
import { encodeArgs } from '../../src/machines/windows/scripts.ts';
import type { RunContext } from '../../src/run/context.ts';
import { isSmbVault, robocopyCaptureArgs, robocopyLandingFolder, robocopyStepId, smbPasswordFile } from '../../src/run/windows.ts';
import type { SftpVaultSettings } from '../../src/vaults/sftp.ts';
import { SftpVault } from '../../src/vaults/sftp.ts';
import type { Grant } from '../../src/vaults/vault.ts';

/** The robocopy method's pure parts and its password handling (src/run/windows.ts); on the wire: test/windows/robocopy-smb.test.ts, the phases: test/e2e/windows-story.test.ts. */

const PASSWORD = 'N0t-on-any-command-line!';
const noHost = {} as Machine;

function vault(smb?: SftpVaultSettings['smb']): SftpVault {
  const settings: SftpVaultSettings = { name: 'nas', kind: 'sftp', host: { host: 'nas01', port: 22, user: 'rubicon', identityFile: '/k', knownHosts: '/kh', connectTimeoutSeconds: 5 } as SftpVaultSettings['host'], path: '/srv/rubicon', ...(smb ? { smb } : {}) };
  return new SftpVault(settings, { vaultHost: noHost, runId: 'r1', workDirOf: () => '/w' });
}

const entries = (n: number): ManifestEntry[] => Array.from({ length: n }, (_, i) => ({ path: `f${i}`, size: i, mtimeMs: 0, mode: 0o644, sha256: 'a'.repeat(64) }) as ManifestEntry);

/** A machine that records what it was asked: every exec argv, every small file written. */
function recorder(): Machine & { argv: string[][]; files: Map<string, string> } {
  const argv: string[][] = [];
  const files = new Map<string, string>();
  return {
    name: 'ehr-server',
    address: 'ehr01',
    argv,
    files,
    exec: async (c: { argv: string[] }) => {
      argv.push(c.argv);
      return { exitCode: 0, stdout: '', stderr: '' };
    },
    writeSmall: async (p: string, d: string | Uint8Array) => {
      files.set(p, typeof d === 'string' ? d : Buffer.from(d).toString('utf8'));
    },
  } as unknown as Machine & { argv: string[][]; files: Map<string, string> };
}

function ctxWith(steps: Record<string, { completedAt?: string }> = {}): RunContext {
  return { runId: 'r1', state: () => ({ steps }) } as unknown as RunContext;
}

const grant: Grant = { id: 'g1', vault: 'nas', machine: 'ehr-server', mode: 'write', expiresAt: '2030-01-01T00:00:00Z', dir: 'C:\\ProgramData\\Rubicon\\grants\\g1', sshCommand: 'ssh -i C:/x', env: {}, location: 'rubicon@nas01:/' };

describe('robocopy into an sftp vault\'s SMB share: the vault side', () => {
  const v = vault({ unc: '\\\\nas01\\rubicon\\vault', user: 'NAS01\\rubicon', password: { env: 'SMB_PW' } });

  it('names the share root, the partial tree robocopy mirrors into and the tree landing reads, in the sftp layout (trees/<name>)', () => {
    expect(v.smbShareRoot()).toBe('\\\\nas01\\rubicon');
    expect(v.smbPartialOf('r1/capture/folder:ehr/A/robocopy')).toMatch(/^\\\\nas01\\rubicon\\vault\\trees\\[A-Za-z0-9._%~-]+\.partial$/);
    expect(v.smbTreeOf('trees/abc')).toBe('\\\\nas01\\rubicon\\vault\\trees\\abc');
    expect(() => v.smbTreeOf('trees/abc.partial')).toThrow(/not a tree locator/);
    expect(isSmbVault(v)).toBe(true);
    expect(isSmbVault(vault())).toBe(false);
  });

  it('reads the password from the environment variable or the file the runbook names, refusing an empty or multi-line one by where it should be', async () => {
    expect(await v.smbPassword({ SMB_PW: PASSWORD })).toBe(PASSWORD);
    await expect(v.smbPassword({})).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', message: expect.stringMatching(/environment variable SMB_PW is empty or not set.*NAS01\\rubicon/) });
    await expect(v.smbPassword({ SMB_PW: 'a\nb' })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', message: expect.stringMatching(/more than one line/) });
    const dir = mkdtempSync(path.join(tmpdir(), 'rubicon-smb-'));
    const f = path.join(dir, 'smb.pass');
    writeFileSync(f, `${PASSWORD}\n`, { mode: 0o600 });
    expect(await vault({ unc: '\\\\nas01\\rubicon', user: 'rubicon', password: { file: f } }).smbPassword()).toBe(PASSWORD);
    await expect(vault({ unc: '\\\\nas01\\rubicon', user: 'rubicon', password: { file: path.join(dir, 'missing') } }).smbPassword()).rejects.toMatchObject({ message: expect.stringMatching(/cannot read the SMB password file .*missing: ENOENT/) });
  });
});

describe('robocopy: the password never on a command line, the step keyed for a resume', () => {
  const v = vault({ unc: '\\\\nas01\\rubicon', user: 'rubicon', password: { env: 'SMB_PW' } });

  it('writes the password only into the grant\'s folder (writeSmall, owner-only) and hands the script its path: no argv and no script argument holds it', async () => {
    const m = recorder();
    const prev = process.env.SMB_PW;
    process.env.SMB_PW = PASSWORD;
    try {
      const file = await smbPasswordFile(ctxWith(), m, v, grant, 'r1/a/robocopy/nas/0123');
      expect(file).toBe('C:\\ProgramData\\Rubicon\\grants\\g1\\smb-password');
      expect(m.files.get(file)).toBe(`${PASSWORD}\n`);
      expect(m.argv).toEqual([]);
      const args = robocopyCaptureArgs({ key: 'r-1', source: 'D:\\EHR\\A', workDir: 'C:\\ProgramData\\Rubicon\\capture', destination: v.smbPartialOf('a'), shareRoot: v.smbShareRoot(), user: 'rubicon', passwordFile: file });
      const encoded = encodeArgs(args);
      expect(JSON.stringify(args)).not.toContain(PASSWORD);
      expect(Buffer.from(encoded, 'base64').toString('utf8')).not.toContain(PASSWORD);
      expect(args).toMatchObject({ robocopy: { copy: 'DAT', share: { root: '\\\\nas01\\rubicon', user: 'rubicon', passwordFile: file } }, acl: { savePath: 'C:\\ProgramData\\Rubicon\\capture\\r-1.acl' } });
      const land = robocopyLandingFolder(v, { locator: 'trees/abc', destination: 'D:\\EHR\\A', passwordFile: file });
      expect(JSON.stringify(land)).not.toContain(PASSWORD);
      expect(land).toMatchObject({ source: '\\\\nas01\\rubicon\\trees\\abc', exact: false, copy: 'DAT' });
    } finally {
      if (prev === undefined) delete process.env.SMB_PW;
      else process.env.SMB_PW = prev;
    }
  });

  it('does not write the password again for a step the journal has completed (a resumed run re-attaches to it)', async () => {
    const m = recorder();
    const file = await smbPasswordFile(ctxWith({ 'r1/a/robocopy/nas/0123': { completedAt: '2026-12-02T06:00:00Z' } }), m, v, grant, 'a/robocopy/nas/0123');
    expect(file).toMatch(/smb-password$/);
    expect(m.files.size).toBe(0);
  });

  it('keys the copy by artifact, vault and manifest: the same inputs give the same step (re-attached, not copied twice), other files another', () => {
    expect(robocopyStepId('r1/capture/folder:A/robocopy', 'nas', entries(3))).toBe(robocopyStepId('r1/capture/folder:A/robocopy', 'nas', entries(3)));
    expect(robocopyStepId('r1/capture/folder:A/robocopy', 'nas', entries(3))).not.toBe(robocopyStepId('r1/capture/folder:A/robocopy', 'nas', entries(4)));
    expect(robocopyStepId('r1/capture/folder:A/robocopy', 'nas', entries(3))).not.toBe(robocopyStepId('r1/capture/folder:A/robocopy', 'nas2', entries(3)));
    expect(robocopyStepId('x', 'nas', [])).toMatch(/^x\/robocopy\/nas\/[0-9a-f]{16}$/);
  });
});

describe('robocopy: a copy robocopy could not make whole (exit 8 or more)', () => {
  it('records capture.failed for the robocopy method naming each file and its Windows error from the log; nothing is adopted into the vault', async () => {
    const v = vault({ unc: '\\\\nas01\\rubicon', user: 'rubicon', password: { env: 'SMB_PW_FAIL' } });
    process.env.SMB_PW_FAIL = PASSWORD;
    const events: Record<string, unknown>[] = [];
    const m = recorder();
    const scripts: { name: string; args: Record<string, unknown> }[] = [];
    const robocopy = { name: 'robocopy', origin: 'rubicon', independenceGroup: 'robocopy', runsOn: 'remote', vaultKind: 'sftp', description: '' };
    const captureData = {
      key: 'r-x', source: 'D:\\EHR\\A', volume: 'D:\\', shadow: { id: '{S}', deviceObject: '\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy3', link: 'C:\\w\\r-x.shadow', deleted: true },
      robocopy: {
        destination: '\\\\nas01\\rubicon\\trees\\x.partial', exitCode: 9, bits: ['copied', 'failed'], failed: true, logPath: 'C:\\ProgramData\\Rubicon\\capture\\r-x.robocopy.log', share: { root: '\\\\nas01\\rubicon', user: 'rubicon', disconnected: true },
        errors: [{ code: 32, path: 'D:\\EHR\\A\\db\\ehr.mdf', relativePath: 'db/ehr.mdf', message: 'The process cannot access the file because it is being used by another process.', attempts: 3 }],
      },
      restic: null, acl: null, staleShadowRemoved: null, cleanup: { linkRemoved: true, shadowDeleted: true, errors: [] },
    };
    const ctx = {
      runId: 'r1',
      runbook: { target: { root: 'D:\\', workDir: 'C:\\ProgramData\\Rubicon' } },
      vaults: [v],
      target: m,
      now: () => new Date('2026-12-02T06:00:00Z'),
      state: () => ({ artifacts: [], steps: {}, notes: [] }),
      record: (e: Record<string, unknown>) => events.push(e),
      remote: { folderMethods: { get: () => robocopy }, grants: { acquire: async () => grant } },
      steps: {
        runScript: async (_m: Machine, _k: unknown, name: string, args: Record<string, unknown>) => {
          scripts.push({ name, args });
          if (name === 'manifest') {
            return { output: { records: [{ kind: 'file', path: 'db/ehr.mdf', size: 5, mtimeMs: 1, mode: 0o644, sha256: 'b'.repeat(64), stable: true }], result: { ok: true, data: {} } }, data: {} };
          }
          return { output: { records: [], result: { ok: false, error: { code: 'CAPTURE_INCOMPLETE', message: 'capture of D:\\EHR\\A is incomplete: robocopy (exit 9, 1 file errors)', details: captureData } } }, data: undefined };
        },
        run: async () => {
          throw new Error('nothing may run on the vault host for a failed copy');
        },
      },
    } as unknown as RunContext;
    const { windowsPlane } = await import('../../src/run/windows.ts');
    const item = { id: 'folder:EHR/A', kind: 'folder', name: 'EHR/A', location: 'EHR/A', methods: ['robocopy'], declared: true, discovered: true, facts: {}, why: [] } as never;
    await windowsPlane.captureFolder(ctx, item, 'capture', [], (method: string) => `r1/capture/folder:EHR/A/${method}`, () => undefined);
    delete process.env.SMB_PW_FAIL;
    expect(scripts.map((s) => s.name)).toEqual(['manifest', 'capture']);
    expect(JSON.stringify(scripts)).not.toContain(PASSWORD);
    const failed = events.filter((e) => e.type === 'capture.failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ itemId: 'folder:EHR/A', method: 'robocopy', code: 'CAPTURE_FAILED' });
    expect(String(failed[0]!.message)).toMatch(/robocopy of D:\\EHR\\A on ehr-server into vault nas failed \(exit 9: copied, failed\): 1 file\(s\) not copied: db\/ehr\.mdf \(Windows error 32: The process cannot access the file/);
    expect(events.some((e) => e.type === 'artifact.captured')).toBe(false);
  });
});
