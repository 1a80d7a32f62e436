// The pure parts of the tool vaults: reading rsync's and restic's own
// reports, grading, and the authorized_keys line of a grant. The tool
// outputs below were captured from rsync 3.5.0 and restic 0.14.0 (Debian 12)
// on this project's machines; the real tools run in ./remote.test.ts.
import { describe, expect, it } from 'vitest';
import { splitStepOutput } from '../../src/machines/posix.ts';
import { authorizedKeyLine, expiryTimespec, grantIdOf, parseExpiryTimespec, quoteOptionValue, toolArg } from '../../src/vaults/grants.ts';
import { compareListing, encodeTag, decodeTag, goModeToPosix, parseBackupJson, parseCheck, parseLsJson, rfc3339ToMs, skippedPaths, worst } from '../../src/vaults/restic.ts';
import { artifactName } from '../../src/vaults/remote-tools.ts';
import { gradeTree, parseRsyncStats } from '../../src/vaults/sftp.ts';

const RSYNC_STATS = `
Number of files: 3 (reg: 2, dir: 1)
Number of created files: 3 (reg: 2, dir: 1)
Number of deleted files: 0
Number of regular files transferred: 2
Total file size: 111 bytes
Total transferred file size: 111 bytes
Literal data: 111 bytes
Matched data: 0 bytes
File list size: 0
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 297
Total bytes received: 57

sent 297 bytes  received 57 bytes  708.00 bytes/sec
total size is 111  speedup is 0.31
`;

describe('rsync --stats', () => {
  it('reads regular files, transferred files and total size', () => {
    expect(parseRsyncStats(RSYNC_STATS)).toEqual({ files: 3, regularFiles: 2, transferred: 2, totalSize: 111 });
  });
  it('reads an empty transfer and digit grouping of human-readable output', () => {
    expect(parseRsyncStats('Number of files: 0\nNumber of regular files transferred: 0\nTotal file size: 0 bytes\n')).toEqual({ files: 0, regularFiles: 0, transferred: 0, totalSize: 0 });
    expect(parseRsyncStats('Number of files: 1,235 (reg: 1,234, dir: 1)\nNumber of regular files transferred: 7\nTotal file size: 20,971,526 bytes\n')?.totalSize).toBe(20971526);
  });
  it('is undefined when the report is missing or cut', () => {
    expect(parseRsyncStats('')).toBeUndefined();
    expect(parseRsyncStats('Number of files: 3 (reg: 2, dir: 1)\nTotal file size: 111 bytes\n')).toBeUndefined();
  });
});

describe('grading a tree against its manifest', () => {
  it('names the worst problem first and the first paths of each', () => {
    const g = gradeTree('nas', 'copy of A', [
      { path: 'a', problem: 'hash' },
      { path: 'b', problem: 'size' },
      { path: 'c', problem: 'missing' },
    ]);
    expect(g.status).toBe('missing');
    expect(g.detail).toContain('1 file(s) missing: c');
    expect(g.detail).toContain('wrong size: b');
    expect(g.detail).toContain('differs from the manifest: a');
    expect(gradeTree('nas', 'x', [{ path: 'a', problem: 'hash' }]).status).toBe('checksum-mismatch');
    expect(gradeTree('nas', 'x', [])).toEqual({ status: 'ok' });
    expect(gradeTree('nas', 'x', [{ path: 'z', problem: 'extra' }])).toMatchObject({ status: 'ok', detail: expect.stringContaining('not in the manifest: z') });
  });
});

describe('restic backup --json', () => {
  const out = [
    '{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":11}',
    '{"message_type":"error","error":{"Op":"open","Path":"x","Err":13},"during":"archival","item":"/srv/ehr/locked.db"}',
    '{"message_type":"summary","files_new":0,"files_changed":1,"files_unmodified":1,"dirs_new":0,"dirs_changed":3,"dirs_unmodified":1,"data_blobs":0,"tree_blobs":4,"data_added":1753,"total_files_processed":2,"total_bytes_processed":111,"total_duration":0.229946865,"snapshot_id":"c687341b"}',
  ].join('\n');
  it('reads the summary and the items restic could not read', () => {
    expect(parseBackupJson(out)).toEqual({
      summary: { snapshotId: 'c687341b', files: 2, bytes: 111, filesNew: 0, filesChanged: 1, filesUnmodified: 1 },
      errors: ['/srv/ehr/locked.db'],
    });
    expect(parseBackupJson('reading repository password from stdin\n').summary).toBeUndefined();
  });
  it('lists the files restic skipped because they were gone', () => {
    expect(skippedPaths('/tmp/rt/src/empty does not exist, skipping\nother\n')).toEqual(['/tmp/rt/src/empty']);
  });
});

describe('restic ls --json', () => {
  const out = [
    '{"time":"2026-12-01T18:39:42.3110347Z","tree":"825f","paths":["/tmp/rt/src/a.txt"],"hostname":"tgt","username":"root","tags":["rubicon","source:/tmp/rt/src"],"id":"4b39198c46358b0a26db9d9dfce71ba2f3c08975f5ef0881bdc406cb44e3b465","short_id":"4b39198c","struct_type":"snapshot"}',
    '{"name":"src","type":"dir","path":"/tmp/rt/src","uid":0,"gid":0,"mode":2147484141,"permissions":"drwxr-xr-x","mtime":"2026-12-01T18:39:40.129379485Z","struct_type":"node"}',
    '{"name":"a.txt","type":"file","path":"/tmp/rt/src/a.txt","uid":0,"gid":0,"size":6,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-01T18:39:40.129379485Z","struct_type":"node"}',
    '{"name":"b","type":"file","path":"/tmp/rt/src/sub/b","uid":0,"gid":0,"size":100,"mode":8389101,"permissions":"-rwsr-xr-x","mtime":"2026-12-01T19:39:40.5+01:00","struct_type":"node"}',
  ].join('\n');
  const base = Date.UTC(2026, 11, 1, 18, 39, 40);
  it('reads the snapshot and its file nodes (mtime to the nanosecond, Go modes as POSIX bits)', () => {
    const { snapshot, nodes } = parseLsJson(out);
    expect(snapshot?.tags).toContain('source:/tmp/rt/src');
    expect(nodes.filter((n) => n.type === 'file').map((n) => [n.path, n.size, n.mode])).toEqual([
      ['/tmp/rt/src/a.txt', 6, 0o644],
      ['/tmp/rt/src/sub/b', 100, 0o4755],
    ]);
    expect(rfc3339ToMs('2026-12-01T18:39:40.129379485Z')).toBeCloseTo(base + 129.379485, 6);
    expect(rfc3339ToMs('2026-12-01T19:39:40.5+01:00')).toBe(base + 500);
    expect(goModeToPosix(2 ** 22 | 2 ** 20 | 0o755)).toBe(0o3755);
  });
  it('compares a snapshot with the manifest: missing, size, mtime/mode, extra', () => {
    const { nodes } = parseLsJson(out);
    const a = { path: 'a.txt', size: 6, mtimeMs: base + 129.379485, mode: 0o644, sha256: '0'.repeat(64) };
    const b = { path: 'sub/b', size: 100, mtimeMs: base + 500, mode: 0o4755, sha256: '1'.repeat(64) };
    expect(compareListing('offsite', 'A', '/tmp/rt/src', nodes, [a, b])).toEqual({ status: 'ok' });
    expect(compareListing('offsite', 'A', '/tmp/rt/src/', nodes, [a, b])).toEqual({ status: 'ok' });
    expect(compareListing('offsite', 'A', '/tmp/rt/src', nodes, [a, b, { ...a, path: 'c' }]).status).toBe('missing');
    expect(compareListing('offsite', 'A', '/tmp/rt/src', nodes, [{ ...a, size: 7 }, b])).toMatchObject({ status: 'size-invalid', detail: expect.stringContaining('a.txt') });
    expect(compareListing('offsite', 'A', '/tmp/rt/src', nodes, [{ ...a, mtimeMs: a.mtimeMs + 1 }, b]).status).toBe('error');
    expect(compareListing('offsite', 'A', '/tmp/rt/src', nodes, [a])).toMatchObject({ status: 'ok', detail: expect.stringContaining('sub/b') });
    expect(compareListing('offsite', 'A', '/tmp/other', nodes, [a]).status).toBe('missing');
  });
});

describe('restic check --read-data', () => {
  it('is ok only with restic saying so', () => {
    expect(parseCheck('offsite', 0, 'load indexes\ncheck all packs\nread all data\nno errors were found\n')).toEqual({ status: 'ok', final: true });
    expect(parseCheck('offsite', 0, 'load indexes\n').status).toBe('error');
  });
  it('names the damaged pack file', () => {
    const out = 'read all data\nPack ID does not match, want a34dca4e95db3be6aa7b818255860de298f53d203c4c864b3b6419744d9a5259, got 63c56aff34580736c82c5f150c0f0866c0bb69d7b091b7a97f67904a65afe031\nFatal: repository contains errors\n';
    const c = parseCheck('offsite', 1, out);
    expect(c.status).toBe('checksum-mismatch');
    expect(c.detail).toContain('data/a3/a34dca4e95db3be6aa7b818255860de298f53d203c4c864b3b6419744d9a5259');
    expect(c.final).toBe(true);
    const tree = parseCheck('offsite', 1, 'error for tree 2572a12f:\n  decrypting blob 2572a12f185499910242320b9b47b4d3c99aaa8200ddbc8ed0d330f2194b36c2 failed: ciphertext verification failed\nFatal: repository contains errors\n');
    expect(tree).toMatchObject({ status: 'checksum-mismatch', detail: expect.stringContaining('2572a12f') });
  });
  it('does not remember a verdict that says nothing about the data', () => {
    expect(parseCheck('offsite', 1, 'Fatal: unable to create lock in backend: repository is already locked exclusively by PID 1\n')).toMatchObject({ status: 'error', final: false });
    expect(parseCheck('offsite', 1, 'Fatal: wrong password or no key found\n')).toMatchObject({ status: 'error', final: false });
  });
  it('combines two grades by the worse one', () => {
    expect(worst({ status: 'ok' }, { status: 'size-invalid', detail: 'x' })).toEqual({ status: 'size-invalid', detail: 'x' });
    expect(worst({ status: 'checksum-mismatch', detail: 'p' }, { status: 'missing', detail: 'm' })).toEqual({ status: 'missing', detail: 'p; m' });
  });
});

describe('grant lines', () => {
  it('uses sshd(8) expiry-time in UTC with a Z, restrict, the forced command and the grant comment', () => {
    const at = new Date(Date.UTC(2026, 11, 1, 18, 45, 7));
    expect(expiryTimespec(at)).toBe('20261201184507Z');
    expect(parseExpiryTimespec('20261201184507Z')?.getTime()).toBe(at.getTime());
    expect(parseExpiryTimespec('20261201Z')?.getTime()).toBe(Date.UTC(2026, 11, 1));
    expect(parseExpiryTimespec('2026-12-01')).toBeUndefined();
    const line = authorizedKeyLine({ publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB rubicon-grant:x\n', id: 'r1.00ff', expiresAt: at, forcedCommand: `/usr/bin/rrsync -wo '/srv/my "vault"/trees'` });
    expect(line).toBe(`expiry-time="20261201184507Z",restrict,command="/usr/bin/rrsync -wo '/srv/my \\"vault\\"/trees'" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB rubicon-grant:r1.00ff`);
    expect(grantIdOf(line)).toBe('r1.00ff');
    expect(grantIdOf('ssh-ed25519 AAAA root@host')).toBeUndefined();
    expect(() => quoteOptionValue('a\nb')).toThrow();
  });
  it('quotes ssh arguments the way rsync -e and restic sftp.command split them, or refuses', () => {
    expect(toolArg('UserKnownHostsFile=/var/tmp/rubicon/grants/r1.ab/known_hosts')).toBe('UserKnownHostsFile=/var/tmp/rubicon/grants/r1.ab/known_hosts');
    expect(toolArg('/var/tmp/my work/key')).toBe("'/var/tmp/my work/key'");
    expect(() => toolArg("/var/tmp/it's")).toThrow(/cannot be passed/);
    expect(() => toolArg('a\\b')).toThrow();
  });
});

describe('names on the vault host', () => {
  it('encodes artifact ids like the filesystem vault index and tags so restic keeps them whole', () => {
    expect(artifactName('r1.capture.folder:ehr/X.rsync')).toBe('r1.capture.folder%3Aehr%2FX.rsync');
    expect(encodeTag('/srv/a,b ü')).toBe('/srv/a%2Cb%20%C3%BC');
    expect(decodeTag(encodeTag('/srv/a,b ü'))).toBe('/srv/a,b ü');
  });
});

describe('step output framing', () => {
  it('keeps NUL bytes of stdout (sha256sum -z) apart from stderr', () => {
    const out = Buffer.concat([Buffer.from('9\n'), Buffer.from('ab\0cd\0ef\0'), Buffer.from('warning\n')]);
    expect(splitStepOutput(out)).toEqual({ stdout: 'ab\0cd\0ef\0', stderr: 'warning\n' });
    expect(splitStepOutput(Buffer.from('0\nonly err'))).toEqual({ stdout: '', stderr: 'only err' });
  });
});
