import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { mapListing, type Entry } from '../../src/coverage/collect.ts';
import { builtInExclusions, exclusionOf } from '../../src/coverage/exclusions.ts';
import { judgeCoverage, type JudgeView } from '../../src/coverage/judge.ts';
import { buildCoverageMap } from '../../src/coverage/map.ts';
import { declareScope } from '../../src/coverage/scope.ts';
import { fixedVolumes, isAzureTemporaryDisk, listingOf, windowsAzureScope, windowsManualScope, windowsPrune, windowsVolumeKey, windowsVolumePath, type InventoryVolume } from '../../src/coverage/windows.ts';
import type { ScopeOfDestruction } from '../../src/core/types.ts';
import type { ManifestData } from '../../src/machines/windows/results.ts';
import { encodeArgs, parseScriptOutput, scriptText, type ScriptOutput } from '../../src/machines/windows/scripts.ts';
import type { Runbook } from '../../src/runbook/load.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';

/**
 * Coverage on a Windows target (src/coverage/windows.ts): the scope from
 * the inventory's volumes and infra.destroys, the listing from the manifest
 * script's records (hash: false), and the same pure map and judge as on
 * Linux. The whole story: test/e2e/windows-story.test.ts.
 *
 * Shapes: the inventory's `volumes` items are what inventory.ps1 writes from
 * Get-Volume (MSFT_Volume: DriveType "Fixed" as the Storage module shows it,
 * or its code 3; learn.microsoft.com/previous-versions/windows/desktop/stormgmt/msft-volume);
 * the manifest records are the script's contract (manifest.ps1 header), and
 * one test takes them from the real script under PowerShell 7.
 */

const vol = (driveLetter: string, driveType: string | null, fileSystem: string | null): InventoryVolume => ({ driveLetter, driveType, fileSystem });
/** A server: system C:, data D: and E: (DriveType by its code 3), a DVD drive, a USB stick, a RAM disk (code 6). */
const SERVER = [vol('C', 'Fixed', 'NTFS'), vol('D', 'Fixed', 'NTFS'), vol('e', '3', 'ReFS'), vol('F', 'CD-ROM', 'UDF'), vol('G', 'Removable', 'FAT32'), vol('R', '6', 'NTFS')];

function output(records: unknown[]): ScriptOutput<ManifestData> {
  const data: ManifestData = { root: 'x', files: 0, bytes: 0, reparse: 0, special: 0, unreadable: 0, dirUnreadable: 0, unstable: 0, complete: true };
  return { script: 'manifest', scriptVersion: 1, argsSha256: '0'.repeat(64), records, result: { ok: true, script: 'manifest', scriptVersion: 1, host: {}, records: records.length, data } as never, noiseLines: 0, bytes: 0, sha256: '0'.repeat(64) };
}
const file = (path: string, size = 10, mtimeMs = 1_700_000_000_000) => ({ kind: 'file', path, size, mtimeMs, mode: 0o666, sha256: null, stable: true });

function runbook(o: { root: string; exclude?: Runbook['coverage']['exclude']; alsoCapture?: string[]; workDir?: string }): Runbook {
  return {
    target: { root: o.root, workDir: o.workDir ?? 'C:\\ProgramData\\Rubicon', transport: { kind: 'openssh-windows' } },
    coverage: { exclude: o.exclude ?? [], alsoCapture: o.alsoCapture ?? [] },
  } as unknown as Runbook;
}

describe('Windows coverage: volume keys', () => {
  it('keys the root ".", folders under it relative, another drive "X:", without case and with either slash, through \\\\?\\', () => {
    expect(windowsVolumeKey('D:\\', 'd:\\')).toBe('.');
    expect(windowsVolumeKey('D:\\', 'D:/EHR/X/')).toBe('EHR/X');
    expect(windowsVolumeKey('D:\\', 'c:\\')).toBe('C:');
    expect(windowsVolumeKey('D:\\', '\\\\?\\E:\\Scans')).toBe('E:/Scans');
    expect(windowsVolumeKey('\\\\?\\D:\\EHR', 'D:\\ehr\\A')).toBe('A');
    // The root's own drive outside the root is not the target's.
    expect(windowsVolumeKey('D:\\EHR', 'D:\\')).toBeUndefined();
    expect(windowsVolumeKey('D:\\EHR', 'D:\\Other')).toBeUndefined();
    // The PowerShell stand-in on Linux: POSIX, exact.
    expect(windowsVolumeKey('/srv/estate', '/srv/estate')).toBe('.');
    expect(windowsVolumeKey('/srv/estate', '/srv/estate/ehr')).toBe('ehr');
    expect(windowsVolumeKey('/srv/estate', '/srv/Estate')).toBeUndefined();
    expect(windowsVolumePath('D:\\', 'C:')).toBe('C:\\');
    expect(windowsVolumePath('D:\\', 'E:/Scans')).toBe('E:\\Scans');
    expect(windowsVolumePath('D:\\', '.')).toBe('D:\\');
    expect(windowsVolumePath('D:\\', 'EHR/X')).toBe('D:\\EHR\\X');
    expect(windowsVolumePath('/srv/estate', 'ehr')).toBe('/srv/estate/ehr');
  });

  it('takes the local fixed data volumes of the inventory: not CD-ROMs, removable media or network drives', () => {
    expect(fixedVolumes(SERVER)).toEqual(['C:\\', 'D:\\', 'E:\\']);
    expect(fixedVolumes([vol('Z', 'Remote', 'NTFS'), vol('Q', 'Fixed', 'CDFS'), vol('', 'Fixed', 'NTFS'), vol('H', 'Fixed', null)])).toEqual([]);
    expect(fixedVolumes(undefined)).toEqual([]);
  });
});

describe('Windows coverage: the scope of destruction', () => {
  it('manual, by default: the root and every local fixed volume; the volume holding the root is the root', () => {
    const s = windowsManualScope({ root: 'D:\\', target: 'ehr01', volumes: SERVER });
    expect(s.os).toBe('windows');
    expect(s.volumes.map((v) => `${v.path} ${v.fate} ${v.capture}`)).toEqual(['. destroyed true', 'C: destroyed true', 'E: destroyed true']);
    expect(s.volumes[1]!.label).toBe('the volume C:\\ on ehr01');
    expect(s.notes).toEqual([]);
    // A root inside a volume: the rest of that volume is said not to be mapped.
    const inner = windowsManualScope({ root: 'D:\\EHR', target: 'ehr01', volumes: [vol('C', 'Fixed', 'NTFS'), vol('D', 'Fixed', 'NTFS')] });
    expect(inner.volumes.map((v) => v.path)).toEqual(['.', 'C:']);
    expect(inner.notes).toEqual(['the reinstall wipes D:\\; only the target root D:\\EHR on it is mapped (set target.root to D:\\ to map the whole volume)']);
  });

  it('manual with infra.destroys: exactly the named drives and folders', () => {
    const s = windowsManualScope({ root: 'D:\\', target: 'ehr01', destroys: ['C:\\', 'd:\\', 'D:\\Scratch'], volumes: SERVER });
    expect(s.volumes.map((v) => v.path)).toEqual(['C:', '.', 'Scratch']);
    const outside = windowsManualScope({ root: 'D:\\EHR', target: 'ehr01', destroys: ['D:\\Other'] });
    expect(outside.volumes).toEqual([]);
    expect(outside.notes[0]).toMatch(/^D:\\Other lies outside the target root D:\\EHR/);
  });

  it('pulumi-azure: the OS disk is C:, the other fixed volumes are data disks, kept and not mapped', () => {
    const declared = { os: 'windows' as const, volumes: [{ path: '.', label: 'the OS disk', fate: 'destroyed' as const, capture: true }] };
    const s = windowsAzureScope('D:\\', declared, [vol('C', 'Fixed', 'NTFS'), vol('D', 'Fixed', 'NTFS'), vol('F', 'Fixed', 'NTFS')]);
    // The root on a data disk: the root itself is kept (it survives the crossing).
    expect(s.volumes).toEqual([
      { path: 'C:', label: 'the OS disk (C:)', fate: 'destroyed', capture: true },
      { path: '.', label: 'the data disk D:\\ (detached and kept)', fate: 'kept', capture: false },
      { path: 'F:', label: 'the data disk F:\\ (detached and kept)', fate: 'kept', capture: false },
    ]);
    // The root on the OS disk: C: is the root.
    expect(windowsAzureScope('C:\\', declared, [vol('C', 'Fixed', 'NTFS'), vol('D', 'Fixed', 'NTFS')]).volumes.map((v) => `${v.path} ${v.fate}`)).toEqual(['. destroyed', 'D: kept']);
    // No inventory: the driver's own list stands.
    expect(windowsAzureScope('D:\\', declared, undefined)).toBe(declared);
  });

  it('pulumi-azure: the temporary disk (label "Temporary Storage") is wiped with the VM: mapped and destroyed, not a kept data disk', () => {
    const declared = { os: 'windows' as const, volumes: [] };
    const temp = { ...vol('D', 'Fixed', 'NTFS'), label: 'Temporary Storage' };
    const data = { ...vol('F', 'Fixed', 'NTFS'), label: 'EHR Data' };
    expect(windowsAzureScope('C:\\', declared, [{ ...vol('C', 'Fixed', 'NTFS'), label: 'Windows' }, temp, data]).volumes).toEqual([
      { path: '.', label: 'the OS disk (C:)', fate: 'destroyed', capture: true },
      { path: 'D:', label: 'the Azure temporary disk D:\\ (wiped: the new VM gets an empty one)', fate: 'destroyed', capture: true },
      { path: 'F:', label: 'the data disk F:\\ (detached and kept)', fate: 'kept', capture: false },
    ]);
    // Told by the label only, without case; another label (or none) is a data disk.
    expect(isAzureTemporaryDisk({ label: 'temporary storage ' })).toBe(true);
    expect(isAzureTemporaryDisk({ label: 'Temporary' })).toBe(false);
    expect(isAzureTemporaryDisk({})).toBe(false);
    // Azure's own warning file on it is left out by the built-in list at every drive.
    const listed = builtInExclusions('windows').map((e) => e.path);
    expect(listed).toContain('DATALOSS_WARNING_README.txt');
  });

  it('records exclusions without case and with "/", the built-in list at every drive, a kept disk captured by its drive letter', () => {
    const driver = { os: 'windows' as const, volumes: [{ path: '.', label: 'the OS disk (C:)', fate: 'destroyed' as const, capture: true }, { path: 'E:', label: 'data disk E:', fate: 'kept' as const, capture: false }] };
    const scope = declareScope(driver, runbook({ root: 'C:\\', alsoCapture: ['e:'], exclude: [{ path: 'Vendor\\Cache', reason: 'rebuilt by the vendor at first start', by: 'J. Engineer' }] }), 'pulumi-azure');
    expect(scope.volumes.find((v) => v.path === 'E:')?.capture).toBe(true);
    expect(exclusionOf(scope.exclusions, 'WINDOWS/System32/ntdll.dll')?.source).toBe('built-in');
    expect(exclusionOf(scope.exclusions, 'E:/$RECYCLE.BIN/S-1-5-21/x')?.source).toBe('built-in');
    expect(exclusionOf(scope.exclusions, 'vendor/cache/blob.bin')).toMatchObject({ source: 'runbook', by: 'J. Engineer' });
    // Rubicon's work folder under the root.
    expect(exclusionOf(scope.exclusions, 'ProgramData/Rubicon/capture/c-1.acl')?.source).toBe('rubicon');
    expect(exclusionOf(scope.exclusions, 'Program Files/Vendor/ehr.exe')).toBeUndefined();
    expect(exclusionOf(scope.exclusions, 'Users/jane/Desktop/letters.docx')).toBeUndefined();
    // The script prunes the built-in list as written (other spellings are listed and excluded per file);
    // the runbook's and Rubicon's exclusions are listed, so the map counts what they leave out.
    expect(windowsPrune('.', scope)).toEqual(expect.arrayContaining(['Windows', 'pagefile.sys', '$Recycle.Bin']));
    expect(windowsPrune('.', scope)).not.toContain('Vendor/Cache');
    expect(windowsPrune('.', scope)).not.toContain('ProgramData/Rubicon');
    expect(windowsPrune('.', scope).some((p) => p.startsWith('E:'))).toBe(false);
    expect(windowsPrune('E:', scope)).toEqual(expect.arrayContaining(['Windows', '$Recycle.Bin', 'System Volume Information']));
  });
});

describe('Windows coverage: listing and judging', () => {
  const scope: ScopeOfDestruction = declareScope(
    { os: 'windows', volumes: [{ path: '.', label: 'the volume of D:\\', fate: 'destroyed', capture: true }, { path: 'C:', label: 'the volume C:\\', fate: 'destroyed', capture: true }] },
    runbook({ root: 'D:\\', workDir: 'C:\\ProgramData\\Rubicon' }),
    'manual',
  );
  const long = `${'Deep'.repeat(20)}/${'Folder'.repeat(20)}/${'Name'.repeat(20)}/report.pdf`;
  const d = listingOf(
    '.',
    output([
      file('EHR/A/app.ini', 120),
      file('EHR/A/forms/form-01.xml', 40),
      file('root-notes.txt', 14),
      { kind: 'reparse', path: 'Scans-link', linkType: 'Junction', target: '\\\\?\\E:\\Scans' },
      { kind: 'unreadable', path: 'EHR/A/locked.db', code: 'LOCKED', message: 'The process cannot access the file', size: 4096, mtimeMs: 1_700_000_000_000 },
      { kind: 'dir-unreadable', path: 'Users/old/AppData', code: 'ACCESS_DENIED', message: 'Access to the path is denied.' },
      file(long, 99),
    ]),
  );
  const c = listingOf('C:', output([file('WINDOWS/explorer.exe', 5000), file('pagefile.sys', 1 << 20), file('Program Files/Vendor/ehr.exe', 777), file('ProgramData/Rubicon/freeze-1.json', 9)]));

  it('turns the records into files relative to the root, and names what is not a file the map can hold', () => {
    expect(d.files.map((f) => f.path)).toEqual([long, 'EHR/A/app.ini', 'EHR/A/forms/form-01.xml', 'EHR/A/locked.db', 'Users/old/AppData/', 'root-notes.txt'].sort());
    expect(d.unheld).toEqual(['EHR/A/locked.db', 'Users/old/AppData/']);
    expect(d.notListed).toEqual([
      { path: 'Scans-link', why: 'a reparse point (Junction), not followed' },
      { path: 'Users/old/AppData/', why: 'cannot be listed (ACCESS_DENIED)' },
    ]);
    expect(d.skipped).toBe(1);
    expect(c.files.map((f) => f.path)).toEqual(['C:/Program Files/Vendor/ehr.exe', 'C:/ProgramData/Rubicon/freeze-1.json', 'C:/WINDOWS/explorer.exe', 'C:/pagefile.sys']);
  });

  it('the same judge as on Linux: held by path and size+mtime, excluded without case, an unreadable file and an unlistable folder never covered', () => {
    const art = 'run.capture.folder:EHR/A.restic';
    const held = (path: string, size: number, mtimeMs = 1_700_000_000_000): [string, Entry[]] => [path, [{ artifactId: art, size, mtimeMs, sha256: 'a'.repeat(64) }]];
    // The folder artifact holds every file of EHR/A, the locked one included: its listing still says it cannot be read now.
    const index = new Map<string, Entry[]>([held('EHR/A/app.ini', 120), held('EHR/A/forms/form-01.xml', 40), held('EHR/A/locked.db', 4096), held(long, 99)]);
    const volumes = [d, c].map((l, i) => ({ path: i === 0 ? '.' : 'C:', files: mapListing(l, index, new Map(), scope.exclusions).files, skipped: l.skipped }));
    const map = buildCoverageMap({ stage: 'final-capture', mappedAt: '2026-12-02T07:00:00.000Z', volumes, hashed: 0 });
    const view: JudgeView = { holderProblem: (id) => (id === art ? undefined : `${id} unknown`), ownerProblem: () => 'none', isEverything: () => false };
    const [root, sys] = judgeCoverage(map, view);
    expect(root!.volume).toBe('.');
    expect(root!.covered.files).toBe(3);
    expect(root!.uncovered.files).toBe(3);
    const first = root!.uncovered.groups.flatMap((g) => g.first).sort();
    expect(first).toEqual(['EHR/A/locked.db', 'Users/old/AppData/', 'root-notes.txt']);
    expect(sys!.volume).toBe('C:');
    expect(sys!.excluded.files).toBe(3);
    expect(sys!.excluded.bySource['built-in'].files).toBe(2);
    expect(sys!.excluded.bySource.rubicon.files).toBe(1);
    expect(sys!.uncovered.groups.flatMap((g) => g.first)).toEqual(['C:/Program Files/Vendor/ehr.exe']);
    // A size+mtime that moved is not trusted without a hash.
    const moved = mapListing(listingOf('.', output([file('EHR/A/app.ini', 120, 1_800_000_000_000)])), index, new Map(), scope.exclusions);
    expect(moved.files[0]!.holders).toEqual([]);
    expect(moved.toHash.length).toBe(1);
  });
});

const pwsh = checkPwsh();
describe.skipIf(!mustRun(pwsh))(`Windows coverage: the real manifest script with hash: false${mustRun(pwsh) ? '' : ` (skipped: ${pwsh.reason})`}`, () => {
  const base = mkdtempSync(join(tmpdir(), 'rubicon-wincov-'));
  afterAll(() => {
    try {
      chmodSync(join(base, 'root/Users/old'), 0o755);
    } catch {
      // already gone
    }
    rmSync(base, { recursive: true, force: true });
  });

  it('lists stat only, prunes what it is told, names a reparse point and an unlistable folder; the listing feeds the map', async () => {
    const root = join(base, 'root');
    for (const [rel, body] of Object.entries({ 'WINDOWS/explorer.exe': 'x'.repeat(50), 'Windows/System32/ntdll.dll': 'y', 'EHR/A/app.ini': 'ini', 'root-notes.txt': 'a note', 'Users/old/secret.txt': 's', 'private.key': 'k' })) {
      mkdirSync(join(root, rel, '..'), { recursive: true });
      writeFileSync(join(root, rel), body);
    }
    mkdirSync(join(base, 'elsewhere'));
    symlinkSync(join(base, 'elsewhere'), join(root, 'Scans-link'));
    chmodSync(join(root, 'Users/old'), 0o000);
    chmodSync(join(root, 'private.key'), 0o000);
    const s = declareScope({ os: 'windows', volumes: [{ path: '.', label: 'the root', fate: 'destroyed', capture: true }] }, runbook({ root, workDir: join(base, 'work') }), 'manual');
    const exclude = windowsPrune('.', s);
    expect(exclude).toContain('Windows');
    const file = join(base, 'manifest.ps1');
    writeFileSync(file, scriptText('manifest'));
    const a = encodeArgs({ root, hash: false, exclude });
    // Without DAC override, as a Windows account without the right to read every folder.
    const r = await execa('setpriv', ['--bounding-set=-dac_override,-dac_read_search', PWSH, '-NoProfile', '-NonInteractive', '-File', file, '-RubiconArgs', a], { reject: false, stdin: 'ignore', stripFinalNewline: false, timeout: 300_000 });
    const out = parseScriptOutput<ManifestData>(String(r.stdout), { script: 'manifest', encodedArgs: a, exitCode: r.exitCode ?? -1 });
    const l = listingOf('.', out);
    // Windows/ was pruned by the script; WINDOWS/ (another spelling: a case-sensitive file system) is listed and excluded per file.
    expect(l.files.map((f) => f.path)).toEqual(['EHR/A/app.ini', 'Users/old/', 'WINDOWS/explorer.exe', 'private.key', 'root-notes.txt']);
    expect(l.notListed.map((n) => n.path)).toEqual(['Scans-link', 'Users/old/']);
    // Stat only: a mode-000 file is listed (its size and mtime), not opened.
    expect(l.files.find((f) => f.path === 'private.key')?.size).toBe(1);
    const m = mapListing(l, new Map(), new Map(), s.exclusions);
    expect(m.files.filter((f) => f.exclusion).map((f) => f.path)).toEqual(['WINDOWS/explorer.exe']);
  });
});
