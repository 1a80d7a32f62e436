import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { parseRunbook } from '../../src/runbook/load.ts';

/** vaults[].smb of an sftp vault and the method robocopy: parse, normalize, rules (docs/vaults.md, "SMB"). */
const FILE = '/estate/runbook.yaml';
const ENV = { RESTIC_PW: 'x', SMB_PW: 'y' };
const WINDOWS = '{ kind: openssh-windows, host: ehr01, user: rubicon, identityFile: ./keys/id, knownHosts: ./known_hosts }';
const LINUX = '{ kind: ssh, host: ehr01, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }';

function runbook(o: { smb?: string; methods?: string; transport?: string; root?: string } = {}): string {
  return `version: 1
name: ehr-upgrade-windows
target:
  name: ehr-server
  root: '${o.root ?? 'D:\\'}'
  image: Windows Server 2025 Datacenter
  transport: ${o.transport ?? WINDOWS}
provingGround:
  transport: { kind: ssh, host: pg, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }
  root: /srv/proving
infra:
  kind: manual
  currentImage: Windows Server 2016 Standard
  rebuilt: { osRelease: Windows Server 2025 Datacenter, knownHosts: ./known_hosts.rebuilt }
declared:
  folders: [EHR/A]
discovery:
  roots: [EHR]
methods:
  folders: ${o.methods ?? '[restic, robocopy]'}
vaults:
  - name: nas
    kind: sftp
    host: { host: nas01, user: rubicon, identityFile: ./keys/id, knownHosts: ./known_hosts }
    path: /volume1/rubicon
${o.smb === undefined ? "    smb: { unc: '\\\\nas01\\rubicon\\', user: 'NAS01\\rubicon', passwordEnv: SMB_PW }" : o.smb ? `    smb: ${o.smb}` : ''}
  - { name: offsite, kind: restic, host: { host: vault, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }, path: /srv/restic, passwordEnv: RESTIC_PW }
`;
}

function problems(text: string): { path: string; message: string }[] {
  try {
    parseRunbook(text, FILE, ENV);
  } catch (e) {
    if (e instanceof RubiconError) return (e.details as { problems: { path: string; message: string }[] }).problems;
    throw e;
  }
  throw new Error('expected the runbook to be refused');
}

describe('runbook: an sftp vault as an SMB share, and the robocopy method', () => {
  it('keeps the UNC path (without a trailing backslash), the account and where the password is; resolves a password file against the runbook folder', () => {
    const rb = parseRunbook(runbook(), FILE, ENV);
    expect(rb.methods.folders).toEqual(['restic', 'robocopy']);
    expect(rb.vaults[0]).toMatchObject({ kind: 'sftp', smb: { unc: '\\\\nas01\\rubicon', user: 'NAS01\\rubicon', password: { env: 'SMB_PW' } } });
    const f = parseRunbook(runbook({ smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon, passwordFile: ./smb.pass }" }), FILE, ENV);
    expect(f.vaults[0]).toMatchObject({ smb: { password: { file: '/estate/smb.pass' } } });
  });

  const CASES: { name: string; o: Parameters<typeof runbook>[0]; path: string; fix: RegExp }[] = [
    { name: 'a password written into the runbook', o: { smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon, password: hunter2 }" }, path: 'vaults[0].smb.password', fix: /never write the SMB password into the runbook/ },
    { name: 'no password source', o: { smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon }" }, path: 'vaults[0].smb', fix: /exactly one of passwordEnv .* or passwordFile/ },
    { name: 'two password sources', o: { smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon, passwordEnv: SMB_PW, passwordFile: ./p }" }, path: 'vaults[0].smb', fix: /exactly one of passwordEnv/ },
    { name: 'a password variable that is a value, not a name', o: { smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon, passwordEnv: 'hunter 2!' }" }, path: 'vaults[0].smb.passwordEnv', fix: /NAME of an environment variable/ },
    { name: 'a drive letter instead of a UNC path', o: { smb: "{ unc: 'Z:\\rubicon', user: rubicon, passwordEnv: SMB_PW }" }, path: 'vaults[0].smb.unc', fix: /UNC path of the vault folder/ },
    { name: 'a UNC path with forward slashes', o: { smb: "{ unc: '//nas01/rubicon', user: rubicon, passwordEnv: SMB_PW }" }, path: 'vaults[0].smb.unc', fix: /no forward slashes/ },
    { name: 'a server without a share', o: { smb: "{ unc: '\\\\nas01', user: rubicon, passwordEnv: SMB_PW }" }, path: 'vaults[0].smb.unc', fix: /server, share/ },
    { name: 'an unknown field', o: { smb: "{ unc: '\\\\nas01\\rubicon', user: rubicon, passwordEnv: SMB_PW, domain: X }" }, path: 'vaults[0].smb', fix: /domain|unrecognized/i },
    { name: 'robocopy without any sftp vault that has an smb section', o: { smb: '' }, path: 'methods.folders[1]', fix: /no sftp vault has an smb section: add smb: \{ unc, user, passwordEnv \}/ },
    { name: 'robocopy on a Linux target', o: { transport: LINUX, root: '/', methods: '[rsync, robocopy]' }, path: 'methods.folders[1]', fix: /robocopy runs on a Windows target.*a Linux target uses rsync/ },
  ];
  for (const c of CASES) {
    it(`refuses ${c.name}, naming the field`, () => {
      const ps = problems(runbook(c.o));
      const hit = ps.find((p) => p.path === c.path);
      expect(hit, JSON.stringify(ps)).toBeDefined();
      expect(hit!.message).toMatch(c.fix);
    });
  }
});
