import { describe, expect, it } from 'vitest';
import type { InventoryData } from '../../src/machines/windows/results.ts';
import type { Artifact } from '../../src/core/types.ts';
import { compareLanded, describeInventory, landedAclCheck, onWindowsTarget, parseMachineGuid, relativeToRoot, resticPathOf, scriptKey, windowsFolderItems } from '../../src/run/windows.ts';
import { grantSshArgv, isWindowsFolder } from '../../src/vaults/grants.ts';
import { targetPlanes } from '../../src/compose/root.ts';

/** The pure parts of the Windows target plane (src/run/windows.ts); the plane end to end: test/e2e/windows-story.test.ts. */

const section = <T>(items: T[]) => ({ status: 'ok' as const, items, error: null });

function inventory(referencedFolders: InventoryData['referencedFolders']): InventoryData {
  return {
    sections: {
      services: section([]),
      shares: { status: 'unavailable', items: [], error: { code: 'COMMAND_UNAVAILABLE', message: 'Get-SmbShare is not available' } },
      hostsFile: { status: 'failed', items: [], error: { code: 'UNEXPECTED', message: 'x' } },
    },
    referencedFolders,
  };
}

describe('Windows target plane: paths', () => {
  it('joins an item location under a Windows root with backslashes, and under a POSIX stand-in root with slashes', () => {
    expect(onWindowsTarget('D:\\', 'ehr/X')).toBe('D:\\ehr\\X');
    expect(onWindowsTarget('D:\\EHR', 'A/forms')).toBe('D:\\EHR\\A\\forms');
    expect(onWindowsTarget('D:\\', '.')).toBe('D:\\');
    expect(onWindowsTarget('/srv/estate', 'ehr/X')).toBe('/srv/estate/ehr/X');
  });

  it('finds a path under the root case-insensitively on Windows, with either slash, and refuses one outside', () => {
    expect(relativeToRoot('D:\\', 'd:\\EHR\\X')).toBe('EHR/X');
    expect(relativeToRoot('D:\\ehr', 'D:/ehr/X/')).toBe('X');
    expect(relativeToRoot('D:\\ehr', 'D:\\ehr')).toBe('.');
    expect(relativeToRoot('D:\\ehr', 'D:\\ehr2\\X')).toBeUndefined();
    expect(relativeToRoot('D:\\', 'C:\\Program Files\\Vendor')).toBeUndefined();
    expect(relativeToRoot('\\\\nas\\share', '\\\\NAS\\share\\scans')).toBe('scans');
    expect(relativeToRoot('/srv/e', '/srv/e/ehr/X')).toBe('ehr/X');
    expect(relativeToRoot('/srv/e', '/srv/ehr')).toBeUndefined();
  });
});

describe('Windows target plane: discovery from the inventory', () => {
  it('makes folder items of the declared folders and of the existing referenced folders under the root, an inner one held by the outer', () => {
    const inv = inventory([
      { path: 'D:\\EHR\\X', exists: true, references: [{ kind: 'service', name: 'EHRSync', via: 'binary' }] },
      { path: 'D:\\EHR\\X\\bin', exists: true, references: [{ kind: 'scheduledTask', name: '\\Vendor\\Nightly', via: 'action' }] },
      { path: 'D:\\Scans', exists: true, references: [{ kind: 'share', name: 'Scans', via: 'path' }] },
      { path: 'D:\\Gone', exists: false, references: [{ kind: 'share', name: 'Old', via: 'path' }] },
      { path: 'C:\\Program Files\\Vendor', exists: true, references: [{ kind: 'service', name: 'EHRSync', via: 'argument' }] },
      { path: 'D:\\Temp\\cache', exists: true, references: [{ kind: 'odbcDsn', name: 'EHR', via: 'Database' }] },
    ]);
    const items = windowsFolderItems('D:\\', ['EHR/A'], ['Temp'], inv);
    expect(items.map((i) => i.id)).toEqual(['folder:EHR/A', 'folder:EHR/X', 'folder:Scans']);
    const x = items.find((i) => i.id === 'folder:EHR/X')!;
    expect(x).toMatchObject({ kind: 'folder', declared: false, discovered: true, location: 'EHR/X', facts: { references: 2 }, methods: [] });
    expect(x.why).toEqual(['referenced by service EHRSync (binary)', 'referenced by scheduledTask \\Vendor\\Nightly (action)']);
    expect(items[0]).toMatchObject({ declared: true, why: ['declared in the runbook'] });
  });

  it('says which inventory sections answered, by name and count only', () => {
    expect(describeInventory('ehr-server', inventory([]))).toBe('inventory of ehr-server: ok: services (0); unavailable: shares (COMMAND_UNAVAILABLE); failed: hostsFile (UNEXPECTED); 0 referenced folder(s)');
  });

  it("reads the MachineGuid from reg.exe's output and nothing else", () => {
    // reg query's shape: learn.microsoft.com/windows-server/administration/windows-commands/reg-query
    const out = '\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    MachineGuid    REG_SZ    6F9619FF-8B86-D011-B42D-00C04FC964FF\r\n\r\n';
    expect(parseMachineGuid(out)).toBe('6f9619ff-8b86-d011-b42d-00c04fc964ff');
    expect(parseMachineGuid('ERROR: The system was unable to find the specified registry key or value.')).toBeNull();
    expect(parseMachineGuid('    MachineGuid    REG_DWORD    0x1')).toBeNull();
  });
});

describe('Windows target plane: landing check and the registry', () => {
  it('passes a landed folder only when every proven file is there with its size and SHA-256 (extra files are the new OS)', () => {
    const e = (p: string, size: number, sha: string) => ({ path: p, size, mtimeMs: 1, mode: 0o644, sha256: sha.repeat(64) });
    const proven = [e('a', 1, 'a'), e('b', 2, 'b'), e('c', 3, 'c')];
    expect(compareLanded(proven, [...proven, e('new', 1, 'd')])).toEqual([]);
    expect(compareLanded(proven, [e('a', 1, 'a'), e('b', 3, 'b'), e('c', 3, 'f')])).toEqual(['b: size', 'c: hash']);
    expect(compareLanded(proven, [e('a', 1, 'a')])).toEqual(['b: missing', 'c: missing']);
  });

  it('the composition root chooses the plane by the target OS', () => {
    expect(targetPlanes.kinds().sort()).toEqual(['linux', 'windows']);
    expect(targetPlanes.get('windows', 'x').os).toBe('windows');
    // Windows: the scope and the map (manifest script, stat only), not yet the everything capture.
    expect(targetPlanes.get('windows', 'x').coverage).toBe(true);
    expect(targetPlanes.get('windows', 'x').everything).toBe(false);
    expect(targetPlanes.get('linux', 'x').coverage).toBe(true);
    expect(targetPlanes.get('linux', 'x').everything).toBe(true);
  });
});

describe('Windows target plane: the capture and landing scripts\' arguments', () => {
  it('names a folder as restic records it: a drive letter becomes the first path element, a POSIX stand-in path stays', () => {
    // restic on Windows keeps D:\EHR\X as /D/EHR/X in a snapshot's tree (what checkCopy and the proving ground's restore read).
    expect(resticPathOf('D:\\EHR\\X')).toBe('/D/EHR/X');
    expect(resticPathOf('d:/EHR/X/')).toBe('/D/EHR/X');
    expect(resticPathOf('D:\\')).toBe('/D');
    expect(resticPathOf('/srv/estate/ehr/A')).toBe('/srv/estate/ehr/A');
  });

  it('derives a script key of the characters the scripts accept, stable per artifact and vault, different across them', () => {
    const k = scriptKey('c', 'r-20261202-033000-abcd.capture.folder:ehr/A.restic', 'offsite');
    expect(k).toMatch(/^c-[0-9a-f]{24}$/);
    expect(scriptKey('c', 'r-20261202-033000-abcd.capture.folder:ehr/A.restic', 'offsite')).toBe(k);
    expect(scriptKey('c', 'r-20261202-033000-abcd.capture.folder:ehr/A.restic', 'second')).not.toBe(k);
  });

  it('grades the landed ACLs: skipped without a saved file, failed when icacls /restore failed or did not run, passed otherwise', () => {
    const pick = { acl: { sha256: 'a'.repeat(64), bytes: 10, entries: 4 } } as Artifact;
    const folder = (acl: unknown) => ({ source: 's', destination: 'd', exact: true, robocopy: null, restic: null, acl }) as never;
    expect(landedAclCheck({} as Artifact, folder(null)).status).toBe('skipped');
    expect(landedAclCheck(pick, folder(null)).status).toBe('failed');
    expect(landedAclCheck(pick, folder({ exitCode: 2, failed: true, processed: 3, failedCount: 1, unresolvedSids: [] })).detail).toMatch(/exit 2, 1 file/);
    expect(landedAclCheck(pick, folder({ exitCode: 0, failed: false, processed: 4, failedCount: 0, unresolvedSids: ['S-1-5-21-1-2-3-1000'] }))).toMatchObject({ status: 'passed', detail: expect.stringMatching(/4 ACL entries.*1 account/) });
  });

  it('gives a Windows machine its grant\'s ssh command in Windows form: forward slashes, no /dev/null', () => {
    expect(isWindowsFolder('C:\\ProgramData\\Rubicon')).toBe(true);
    expect(isWindowsFolder('/var/lib/rubicon')).toBe(false);
    const argv = grantSshArgv('C:\\ProgramData\\Rubicon\\grants\\r-1.ab', 22, 10, true);
    expect(argv).toContain('IdentityFile=C:/ProgramData/Rubicon/grants/r-1.ab/id_ed25519');
    expect(argv).toContain('UserKnownHostsFile=C:/ProgramData/Rubicon/grants/r-1.ab/known_hosts');
    expect(argv.slice(1, 3)).toEqual(['-F', 'none']);
    expect(argv).toContain('GlobalKnownHostsFile=none');
    expect(argv.join(' ')).not.toMatch(/\\|\/dev\/null/);
    expect(grantSshArgv('/w/grants/g', 22, 10)).toContain('GlobalKnownHostsFile=/dev/null');
  });
});
