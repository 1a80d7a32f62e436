import { describe, expect, it } from 'vitest';
import { candidatesOutside, describeCandidate } from '../../src/coverage/candidates.ts';
import { builtInExclusions, exclusionOf, walkExcludes } from '../../src/coverage/exclusions.ts';
import { buildCoverageMap, groupOf, MAX_FIRST } from '../../src/coverage/map.ts';
import { declareScope, everythingOverride, nestedVolumes } from '../../src/coverage/scope.ts';
import { planVolume, reroot } from '../../src/coverage/volume.ts';
import { parseMounts } from '../../src/infra/manual.ts';
import { parseRunbook } from '../../src/runbook/load.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';

describe('built-in exclusions', () => {
  it('Linux: the package manager\'s territory, but not /etc, /usr/local, /opt, /home or /srv', () => {
    const list = builtInExclusions('linux', '/');
    for (const p of ['usr/bin/ls', 'boot/vmlinuz', 'var/lib/dpkg/status', 'var/cache/apt/x.deb', 'tmp/x', 'swapfile']) expect(exclusionOf(list, p), p).toBeDefined();
    for (const p of ['etc/ssh/ssh_host_ed25519_key', 'usr/local/bin/ehr-agent', 'opt/ehr/app.ini', 'home/jane/notes.txt', 'srv/ehr/data.db', 'var/lib/ehr/queue', 'var/log/syslog', 'root/.bash_history', 'usrx/file'])
      expect(exclusionOf(list, p), p).toBeUndefined();
  });

  it('Linux: only the part inside the target root applies', () => {
    expect(builtInExclusions('linux', '/srv/estate')).toEqual([]);
    const list = builtInExclusions('linux', '/var');
    expect(list.map((e) => e.path).sort()).toEqual(['cache', 'lib/apt', 'lib/dnf', 'lib/dpkg', 'lib/rpm']);
  });

  it('Windows: the OS, the component store, paging and hibernation files, restore points, the recycle bin; without case', () => {
    const list = builtInExclusions('windows');
    for (const p of ['Windows/System32/kernel32.dll', 'WINDOWS/WinSxS/x', 'pagefile.sys', 'Hiberfil.sys', 'swapfile.sys', 'System Volume Information/x', '$Recycle.Bin/S-1/x'])
      expect(exclusionOf(list, p), p).toBeDefined();
    for (const p of ['Program Files/EHR/app.exe', 'ProgramData/EHR/db.mdf', 'Users/jane/Desktop/letters.docx', 'Windowsold/x']) expect(exclusionOf(list, p), p).toBeUndefined();
  });

  it('the sandbox: os-release only; walk excludes leave out what has exceptions or ignores case', () => {
    expect(builtInExclusions('sandbox').map((e) => e.path)).toEqual(['os-release']);
    expect(walkExcludes('.', builtInExclusions('linux', '/'))).not.toContain('usr');
    expect(walkExcludes('.', builtInExclusions('linux', '/'))).toContain('boot');
    expect(walkExcludes('var', builtInExclusions('linux', '/'))).toEqual(['lib/dpkg', 'lib/apt', 'lib/rpm', 'lib/dnf', 'cache']);
  });
});

describe('the coverage map', () => {
  it('groups by folder, two levels deep, and keeps at most a few first paths', () => {
    expect(groupOf('root-notes.txt')).toBe('./');
    expect(groupOf('practice-docs/letters.docx')).toBe('practice-docs/');
    expect(groupOf('ehr/X/scans/2023/doc.pdf')).toBe('ehr/X/');
    const files = Array.from({ length: 12 }, (_, i) => ({ path: `docs/f-${String(i).padStart(2, '0')}.txt`, size: 10, holders: [] }));
    const m = buildCoverageMap({ stage: 'capture', mappedAt: '2026-01-01T00:00:00Z', volumes: [{ path: '.', files, skipped: 2 }], hashed: 0 });
    expect(m).toMatchObject({ files: 12, bytes: 120, skipped: 2 });
    expect(m.classes).toHaveLength(1);
    expect(m.classes[0]!.groups[0]).toEqual({ folder: 'docs/', files: 12, bytes: 120, first: files.slice(0, MAX_FIRST).map((f) => f.path) });
  });

  it('one class per (holders, owner, exclusion): the order of holders does not matter', () => {
    const m = buildCoverageMap({
      stage: 'capture',
      mappedAt: '2026-01-01T00:00:00Z',
      volumes: [{ path: '.', skipped: 0, files: [{ path: 'a/1', size: 1, holders: ['x', 'y'] }, { path: 'a/2', size: 1, holders: ['y', 'x'] }, { path: 'b', size: 5, holders: ['y'] }] }],
      hashed: 0,
    });
    expect(m.classes.map((c) => [c.holders, c.files])).toEqual([[['y'], 1], [['x', 'y'], 2]]);
  });
});

describe('scope and volumes', () => {
  const rb = parseRunbook(sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z')), '/estate/runbook.yaml');

  it('declareScope adds the runbook\'s exclusions with who, and kept volumes it asks to capture', () => {
    const r = { ...rb, coverage: { exclude: [{ path: 'cache', reason: 'rebuilt at start', by: 'ops' }], alsoCapture: ['data'] } };
    const s = declareScope({ os: 'sandbox', volumes: [{ path: '.', label: 'root', fate: 'destroyed', capture: true }] }, r, 'sandbox');
    expect(s.exclusions).toEqual([expect.objectContaining({ path: 'os-release', source: 'built-in' }), { path: 'cache', source: 'runbook', reason: 'rebuilt at start', by: 'ops' }]);
    expect(s.volumes.map((v) => [v.path, v.fate, v.capture])).toEqual([['.', 'destroyed', true], ['data', 'kept', true]]);
    expect(nestedVolumes('.', s.volumes)).toEqual(['data']);
  });

  it('the everything capture is off only by an override with who and why', () => {
    expect(everythingOverride(rb, '.')).toBeUndefined();
    const off = { ...rb, overrides: [{ rule: 'coverage.everything', itemId: 'volume:.', reason: 'folders only', by: 'ops' }] };
    expect(everythingOverride(off, '.')).toMatchObject({ by: 'ops' });
    expect(everythingOverride(off, 'data')).toBeUndefined();
  });

  it('planVolume leaves out exclusions, nested volumes and the databases\' live files', () => {
    const s = declareScope({ os: 'sandbox', volumes: [{ path: '.', label: 'root', fate: 'destroyed', capture: true }, { path: 'srv', label: 'srv', fate: 'destroyed', capture: true }] }, rb, 'sandbox');
    const p = planVolume('.', s, [{ id: 'database:sqlite:ehr', kind: 'database', name: 'ehr', declared: false, discovered: true, location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [] }]);
    expect(p.prune).toEqual(['mssql/data/ehr.db', 'mssql/data/ehr.db-journal', 'mssql/data/ehr.db-shm', 'mssql/data/ehr.db-wal', 'os-release', 'srv']);
    expect(p.leftOut('srv/x')).toBe(true);
    expect(p.leftOut('ehr/A/app.ini')).toBe(false);
    expect(reroot('.', 'ehr/A', [{ path: 'app.ini', size: 1, mtimeMs: 1, mode: 0o644, sha256: 'a'.repeat(64) }])[0]!.path).toBe('ehr/A/app.ini');
    expect(reroot('srv', 'ehr/A', [{ path: 'app.ini', size: 1, mtimeMs: 1, mode: 0o644, sha256: 'a'.repeat(64) }])).toEqual([]);
  });

  it('parseMounts: data filesystems only, octal escapes decoded', () => {
    const text = [
      '/dev/sda1 / ext4 rw,relatime 0 0',
      'proc /proc proc rw 0 0',
      'tmpfs /run tmpfs rw 0 0',
      '/dev/sdb1 /srv/ehr\\040data xfs rw 0 0',
      'nas:/export /mnt/nas nfs4 rw 0 0',
      'overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0',
    ].join('\n');
    expect(parseMounts(text)).toEqual(['/', '/srv/ehr data']);
  });
});

describe('discovery that looks further', () => {
  it('lists what lies outside every known folder, large and recent first, with the references that point at it', () => {
    const now = Date.parse('2026-12-01T00:00:00Z');
    const files = [
      { path: 'ehr/A/app.ini', size: 10, mtimeMs: now, mode: 0o644 },
      { path: 'practice-docs/letters.docx', size: 14_336, mtimeMs: now - 86_400_000, mode: 0o644 },
      { path: 'old/archive.zip', size: 5 << 20, mtimeMs: now - 400 * 86_400_000, mode: 0o644 },
      { path: 'root-notes.txt', size: 65, mtimeMs: now - 2 * 86_400_000, mode: 0o644 },
      { path: 'inetpub/wwwroot/index.html', size: 100, mtimeMs: now - 900 * 86_400_000, mode: 0o644 },
    ];
    const c = candidatesOutside(files, (p) => p.startsWith('ehr/A/'), now, [{ path: 'inetpub/wwwroot', why: 'IIS site "Default Web Site" serves it' }]);
    expect(c.map((x) => x.folder)).toEqual(['inetpub/wwwroot/', 'old/', 'practice-docs/', './']);
    expect(describeCandidate(c[0]!)).toMatch(/IIS site/);
    expect(describeCandidate(c[1]!)).toMatch(/old\/ 1 file, 5\.0 MiB, changed 2025-.*\(large\)/);
    expect(describeCandidate(c[2]!)).toMatch(/recently changed/);
  });
});
