import { describe, expect, it } from 'vitest';
import { transports } from '../../src/compose/root.ts';
import { RubiconError } from '../../src/core/errors.ts';
import { isWindowsMachine } from '../../src/machines/windows/windows-machine.ts';
import { parseRunbook, type TransportSettings } from '../../src/runbook/load.ts';

/** target.transport kinds openssh-windows and azure-run-command: parse, normalize, rules, and the registry that builds them. */
const FILE = '/estate/runbook.yaml';

function runbook(transport: string, root = 'D:\\'): string {
  return `version: 1
name: ehr-upgrade-windows
target:
  name: ehr-server
  root: '${root}'
  image: Windows Server 2025 Datacenter
  transport: ${transport}
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
vaults:
  - { name: nas, kind: sftp, host: { host: vault, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }, path: /srv/nas }
  - { name: offsite, kind: restic, host: { host: vault, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }, path: /srv/restic, passwordEnv: RESTIC_PW }
policy: {}
`;
}

function problems(text: string): { path: string; message: string }[] {
  try {
    parseRunbook(text, FILE);
  } catch (e) {
    if (e instanceof RubiconError) return (e.details as { problems: { path: string; message: string }[] }).problems;
    throw e;
  }
  throw new Error('expected the runbook to be refused');
}

describe('runbook: Windows transports', () => {
  it('openssh-windows: the ssh settings with paths resolved, powershell by default, a Windows work folder', () => {
    const rb = parseRunbook(runbook('{ kind: openssh-windows, host: ehr01.example.org, user: rubicon, identityFile: ./keys/id, knownHosts: ./known_hosts }'), FILE);
    expect(rb.target.transport).toEqual({
      kind: 'openssh-windows',
      host: 'ehr01.example.org',
      port: 22,
      user: 'rubicon',
      identityFile: '/estate/keys/id',
      knownHosts: '/estate/known_hosts',
      connectTimeoutSeconds: 10,
      commandTimeoutSeconds: 120,
      powershell: 'powershell',
    } satisfies TransportSettings);
    expect(rb.target.root).toBe('D:\\');
    expect(rb.target.workDir).toBe('C:\\ProgramData\\Rubicon');
    const pwsh = parseRunbook(runbook('{ kind: openssh-windows, host: h, user: u, identityFile: ./k, knownHosts: ./kh, powershell: pwsh }'), FILE);
    expect(pwsh.target.transport).toMatchObject({ kind: 'openssh-windows', powershell: 'pwsh' });
  });

  it('azure-run-command: defaults filled, output container kept without a trailing slash', () => {
    const rb = parseRunbook(runbook('{ kind: azure-run-command, resourceGroup: rg-ehr, vmName: ehr-prd-01, outputContainer: "https://rubiconout.blob.core.windows.net/run-output/" }'), FILE);
    expect(rb.target.transport).toEqual({
      kind: 'azure-run-command',
      subscriptionIdEnv: 'AZURE_SUBSCRIPTION_ID',
      resourceGroup: 'rg-ehr',
      vmName: 'ehr-prd-01',
      outputContainer: 'https://rubiconout.blob.core.windows.net/run-output',
      credential: 'default',
      powershell: 'powershell',
      commandTimeoutSeconds: 1800,
    } satisfies TransportSettings);
  });

  const CASES: { name: string; transport: string; root?: string; path: string; fix: RegExp }[] = [
    { name: 'a POSIX root on a Windows target', transport: '{ kind: openssh-windows, host: h, user: u, identityFile: ./k, knownHosts: ./kh }', root: '/srv', path: 'target.root', fix: /absolute path on the Windows server/ },
    { name: 'an unknown PowerShell', transport: '{ kind: openssh-windows, host: h, user: u, identityFile: ./k, knownHosts: ./kh, powershell: powershell7 }', path: 'target.transport.powershell', fix: /"powershell".*"pwsh"/ },
    { name: 'a SAS token in the output container', transport: '{ kind: azure-run-command, resourceGroup: rg, vmName: vm, outputContainer: "https://a.blob.core.windows.net/c?sv=2024&sig=abc" }', path: 'target.transport.outputContainer', fix: /without a SAS token/ },
    { name: 'a VM without a name', transport: '{ kind: azure-run-command, resourceGroup: rg }', path: 'target.transport.vmName', fix: /required|name the VM/ },
    { name: 'an unknown transport', transport: '{ kind: winrm, host: h }', path: 'target.transport.kind', fix: /"openssh-windows".*"azure-run-command"/ },
  ];
  for (const c of CASES) {
    it(`refuses ${c.name}, naming the field`, () => {
      const ps = problems(runbook(c.transport, c.root));
      const hit = ps.find((p) => p.path === c.path);
      expect(hit, JSON.stringify(ps)).toBeDefined();
      expect(hit!.message).toMatch(c.fix);
    });
  }

  it('a POSIX root on a Windows transport is taken only for the PowerShell-on-Linux stand-in (RUBICON_WINDOWS_STAND_IN=1), with a warning', () => {
    const text = runbook('{ kind: openssh-windows, host: h, user: u, identityFile: ./k, knownHosts: ./kh }', '/srv/estate');
    const rb = parseRunbook(text, FILE, { RESTIC_PW: 'x', RUBICON_WINDOWS_STAND_IN: '1' });
    expect(rb.target.root).toBe('/srv/estate');
    expect(rb.warnings.join('\n')).toMatch(/target.root \/srv\/estate is a POSIX path on a openssh-windows target: only a PowerShell host on Linux/);
    expect(() => parseRunbook(text, FILE, { RESTIC_PW: 'x', RUBICON_WINDOWS_STAND_IN: 'yes' })).toThrow(/absolute path on the Windows server/);
  });

  it('the composition root builds both as Windows machines; azure-run-command names a missing subscription variable and loads the Azure SDK only when used', () => {
    const ssh = transports.get('openssh-windows', 'target.transport.kind')({
      name: 'ehr-server',
      transport: { kind: 'openssh-windows', host: 'ehr01', port: 22, user: 'rubicon', identityFile: '/k', knownHosts: '/kh', connectTimeoutSeconds: 5, commandTimeoutSeconds: 60, powershell: 'powershell' },
      localRoot: '',
      stepsRoot: 'C:\\ProgramData\\Rubicon/steps/r-1',
    });
    expect(ssh).toMatchObject({ os: 'windows', transport: 'openssh-windows', address: 'ssh rubicon@ehr01:22 (PowerShell)' });
    expect(isWindowsMachine(ssh)).toBe(true);

    const settings: TransportSettings = { kind: 'azure-run-command', subscriptionIdEnv: 'RUBICON_TEST_SUB_UNSET', resourceGroup: 'rg-ehr', vmName: 'ehr-prd-01', credential: 'default', powershell: 'powershell', commandTimeoutSeconds: 60 };
    const factory = transports.get('azure-run-command', 'target.transport.kind');
    expect(() => factory({ name: 'ehr-server', transport: settings, localRoot: '', stepsRoot: 'C:\\x' })).toThrow(/RUBICON_TEST_SUB_UNSET is not set/);
    process.env.RUBICON_TEST_SUB_SET = '0f1e2d3c-0000-4000-8000-000000000001';
    try {
      const m = factory({ name: 'ehr-server', transport: { ...settings, subscriptionIdEnv: 'RUBICON_TEST_SUB_SET' }, localRoot: '', stepsRoot: 'C:\\x' });
      expect(m).toMatchObject({ os: 'windows', transport: 'azure-run-command', address: 'Run Command on VM ehr-prd-01 (resource group rg-ehr)' });
      expect(isWindowsMachine(m)).toBe(true);
    } finally {
      delete process.env.RUBICON_TEST_SUB_SET;
    }
  });
});

describe('runbook: infra.destroys on a Windows target (docs/coverage.md, "Windows")', () => {
  const ssh = '{ kind: openssh-windows, host: ehr01.example.org, user: rubicon, identityFile: ./keys/id, knownHosts: ./known_hosts }';
  const withDestroys = (text: string, list: string) => text.replace('knownHosts: ./known_hosts.rebuilt }', `knownHosts: ./known_hosts.rebuilt }\n  destroys: ${list}`);

  it('takes drive letters and folders, as written, other drives than the root included', () => {
    const rb = parseRunbook(withDestroys(runbook(ssh), `['C:\\', 'D:\\', 'e:/Scans']`), FILE);
    expect(rb.infra.kind === 'manual' && rb.infra.destroys).toEqual(['C:\\', 'D:\\', 'e:/Scans']);
  });

  it('refuses a Windows path on a Linux target and a relative one anywhere, naming the entry', () => {
    const linux = runbook('{ kind: ssh, host: ehr01, user: root, identityFile: ./keys/id, knownHosts: ./known_hosts }', '/srv/estate');
    expect(problems(withDestroys(linux, `['/srv/estate', 'D:\\']`)).find((p) => p.path === 'infra.destroys[1]')?.message).toMatch(/a Windows path and the target is not a Windows server/);
    expect(problems(withDestroys(runbook(ssh), `['Data']`)).some((p) => p.path.startsWith('infra.destroys'))).toBe(true);
  });
});
