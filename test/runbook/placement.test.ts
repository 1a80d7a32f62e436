import { existsSync } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { checkStateDir, parseRunbook } from '../../src/runbook/load.ts';
import { buildSandbox, sandboxRunbook } from '../../src/sandbox/estate.ts';
import { cli, tempDir, treeState } from '../e2e/helpers.ts';

/**
 * Nothing Rubicon needs lives in what the crossing destroys, and two vault
 * entries in one place are never two copies (issue 8, docs/coverage.md).
 * Every case is refused at load, exit 3, naming the field, with real
 * folders and symlinks on disk.
 */

const GOOD = sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z'));

async function estate(): Promise<string> {
  const dir = await tempDir('rubicon-placement-');
  for (const d of ['target/ehr', 'vaults/nas', 'vaults/offsite', 'proving-ground', 'elsewhere']) await mkdir(path.join(dir, d), { recursive: true });
  await symlink(path.join(dir, 'target'), path.join(dir, 'target-link'));
  await symlink(path.join(dir, 'vaults', 'nas'), path.join(dir, 'nas-link'));
  return dir;
}

function refusal(text: string, file: string): RubiconError {
  try {
    parseRunbook(text, file);
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected the runbook to be refused');
}

const vault = (name: string, p: string) => `  - name: ${name}\n    kind: filesystem\n    path: ${p}\n`;
const withVaults = (nas: string, offsite: string) => GOOD.replace(/vaults:\n(?: {2}- name: [\s\S]*?offTarget: true\n)+/, `vaults:\n${vault('nas', nas)}${vault('offsite', offsite)}`);

describe('placement: refused at load, exit 3, the field named', () => {
  const CASES: { name: string; text: (dir: string) => string; field: string; says: RegExp }[] = [
    { name: 'a vault inside the target', text: () => withVaults('./target/backups', './vaults/offsite'), field: 'vaults[0].path', says: /inside the target root.*wipe/ },
    { name: 'a vault inside the target through a symlink', text: () => withVaults('./target-link/backups', './vaults/offsite'), field: 'vaults[0].path', says: /really .*\/target\/backups, through a symlink\) is inside the target root/ },
    { name: 'a vault inside the target through ".."', text: () => withVaults('./vaults/../target/x', './vaults/offsite'), field: 'vaults[0].path', says: /inside the target root/ },
    { name: 'a vault at an absolute path inside the target', text: (d) => withVaults(path.join(d, 'target', 'ehr', ''), './vaults/offsite'), field: 'vaults[0].path', says: /inside the target root/ },
    { name: 'a vault that is the target root (trailing slash)', text: () => withVaults('./target/', './vaults/offsite'), field: 'vaults[0].path', says: /inside the target root/ },
    { name: 'a vault that contains the target', text: () => withVaults('.', './vaults/offsite'), field: 'vaults[0].path', says: /the target root lies inside this vault/ },
    { name: 'two vaults on one folder', text: () => withVaults('./vaults/nas', './vaults/nas/'), field: 'vaults[1].path', says: /is the same place as vaults\[0\] \("nas".*one place holds one copy, not two/ },
    { name: 'two vaults on one folder through a symlink', text: () => withVaults('./vaults/nas', './nas-link'), field: 'vaults[1].path', says: /really .*vaults\/nas, through a symlink\) is the same place as vaults\[0\]/ },
    { name: 'one vault inside another', text: () => withVaults('./vaults/nas', './vaults/nas/second-copy'), field: 'vaults[1].path', says: /lies inside vaults\[0\]/ },
    { name: 'one vault containing another', text: () => withVaults('./vaults/nas/inner', './vaults/nas'), field: 'vaults[1].path', says: /contains vaults\[0\]/ },
    { name: 'the proving ground inside the target', text: () => GOOD.replace('provingGround: ./proving-ground', 'provingGround: ./target/pg'), field: 'infra.provingGround', says: /must not overlap the target/ },
    { name: 'the proving ground inside the target through a symlink', text: () => GOOD.replace('provingGround: ./proving-ground', 'provingGround: ./target-link/pg'), field: 'infra.provingGround', says: /must not overlap the target \(really .*target\/pg, through a symlink\)/ },
    { name: 'the rollback point inside the target', text: () => GOOD.replace('rollback: ./rollback', 'rollback: ./target/rollback'), field: 'infra.rollback', says: /outside the target root.*wipe/ },
    { name: 'the rollback point inside the target through a symlink', text: () => GOOD.replace('rollback: ./rollback', 'rollback: ./target-link/../target-link/rb'), field: 'infra.rollback', says: /really .*target\/rb, through a symlink/ },
    { name: 'a coverage exclusion without a reason', text: () => `${GOOD}coverage:\n  exclude:\n    - { path: ehr/cache, reason: "", by: ops }\n`, field: 'coverage.exclude[0].reason', says: /explain why/ },
    { name: 'a coverage exclusion without who decided it', text: () => `${GOOD}coverage:\n  exclude:\n    - { path: ehr/cache, reason: "rebuilt by the application at start" }\n`, field: 'coverage.exclude[0].by', says: /required/ },
  ];

  for (const c of CASES) {
    it(c.name, async () => {
      const dir = await estate();
      const e = refusal(c.text(dir), path.join(dir, 'runbook.yaml'));
      expect(e.code).toBe('RUNBOOK_INVALID');
      expect(e.exitCode).toBe(3);
      const problems = (e.details as { problems: { path: string; message: string }[] }).problems;
      const hit = problems.find((p) => p.path === c.field);
      expect(hit, JSON.stringify(problems)).toBeDefined();
      expect(hit!.message).toMatch(c.says);
      expect(e.hint).toMatch(/nothing was touched/);
    });
  }

  it('accepts the sandbox runbook, and vaults that are merely neighbours', async () => {
    const dir = await estate();
    expect(() => parseRunbook(GOOD, path.join(dir, 'runbook.yaml'))).not.toThrow();
    expect(() => parseRunbook(withVaults('./vaults/nas', './vaults/nas-2'), path.join(dir, 'runbook.yaml'))).not.toThrow();
  });
});

describe('placement on remote machines: the same host and port, POSIX paths', () => {
  const ssh = (host: string) => `{ host: ${host}, user: root, identityFile: ./id, knownHosts: ./kh }`;
  const remote = (vaults: string, extra = '') => `version: 1
name: remote
target:
  name: ehr-server
  root: /srv/estate
  image: Debian GNU/Linux 13
  transport: { kind: ssh, host: ehr01, user: root, identityFile: ./id, knownHosts: ./kh }
provingGround:
  transport: { kind: ssh, host: pg01, user: root, identityFile: ./id, knownHosts: ./kh }
  root: /srv/proving
infra:
  kind: manual
  rebuilt: { osRelease: Debian GNU/Linux 13, knownHosts: ./kh2 }
${extra}discovery:
  roots: [ehr]
methods: { folders: [rsync] }
vaults:
${vaults}`;
  const sftp = (name: string, host: string, p: string) => `  - { name: ${name}, kind: sftp, host: ${ssh(host)}, path: ${p} }\n`;

  it('refuses a vault on the target inside its root, and two vaults in one folder of one host', () => {
    const e = refusal(remote(sftp('nas', 'ehr01', '/srv/estate/backup') + sftp('offsite', 'vault01', '/data/a') + sftp('third', 'VAULT01', '/data/a/b')), '/x/runbook.yaml');
    const problems = (e.details as { problems: { path: string; message: string }[] }).problems;
    expect(problems.find((p) => p.path === 'vaults[0].path')?.message).toMatch(/ehr01:\/srv\/estate\/backup is inside the target root \/srv\/estate/);
    expect(problems.find((p) => p.path === 'vaults[2].path')?.message).toMatch(/lies inside vaults\[1\] \("offsite"/);
  });

  it('accepts vaults on another host, or on the target outside its root', () => {
    expect(() => parseRunbook(remote(sftp('nas', 'ehr01', '/srv/backups') + sftp('offsite', 'vault01', '/data/a')), '/x/runbook.yaml')).not.toThrow();
  });

  it('refuses a proving ground on the target host inside its root, and infra.destroys outside it', () => {
    const text = remote(sftp('nas', 'vault01', '/data/a'))
      .replace('transport: { kind: ssh, host: pg01', 'transport: { kind: ssh, host: ehr01')
      .replace('root: /srv/proving', 'root: /srv/estate/pg')
      .replace('rebuilt: { osRelease: Debian GNU/Linux 13, knownHosts: ./kh2 }', 'rebuilt: { osRelease: Debian GNU/Linux 13, knownHosts: ./kh2 }\n  destroys: [/srv/estate, /mnt/other]');
    const problems = (refusal(text, '/x/runbook.yaml').details as { problems: { path: string; message: string }[] }).problems;
    expect(problems.find((p) => p.path === 'provingGround.root')?.message).toMatch(/overlaps the target root/);
    expect(problems.find((p) => p.path === 'infra.destroys[1]')?.message).toMatch(/not under the target root/);
  });
});

describe('--state-dir inside the target: refused before anything runs', () => {
  it('checkStateDir: directly, through a symlink, and a state dir that contains the target', async () => {
    const dir = await estate();
    const rb = parseRunbook(GOOD, path.join(dir, 'runbook.yaml'));
    expect(() => checkStateDir(rb, path.join(dir, 'state'))).not.toThrow();
    for (const [p, says] of [
      [path.join(dir, 'target', 'state'), /is inside the target root/],
      [path.join(dir, 'target-link', 'state'), /\(really .*target\/state\) is inside/],
      [dir, /contains the target root/],
    ] as const) {
      let err: unknown;
      try {
        checkStateDir(rb, p);
      } catch (e) {
        err = e;
      }
      expect(err, p).toBeInstanceOf(RubiconError);
      expect((err as RubiconError).exitCode).toBe(3);
      expect((err as RubiconError).message).toMatch(says);
      expect((err as RubiconError).message).toContain('--state-dir');
    }
  });

  it('the CLI: exit 3 naming --state-dir, the target untouched, no journal written', async () => {
    const L = await buildSandbox(path.join(await tempDir('rubicon-statedir-'), 'estate'), { patients: 50 });
    const before = await treeState(L.target);
    const state = path.join(L.target, 'rubicon-state');
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', state, '--yes', '--json']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/--state-dir .*rubicon-state is inside the target root/);
    expect(r.events.find((e) => e.kind === 'error')).toMatchObject({ code: 'ARGUMENTS_INVALID' });
    expect(existsSync(state)).toBe(false);
    expect(await treeState(L.target)).toEqual(before);
  });
});
