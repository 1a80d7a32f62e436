import { describe, expect, it } from 'vitest';
import type { Permit } from '../../src/core/types.ts';
import { ManualDriver } from '../../src/infra/manual.ts';
import type { Machine } from '../../src/machines/machine.ts';
import type { Runbook } from '../../src/runbook/load.ts';

/** The manual crossing's instructions speak the target's OS (src/infra/manual.ts `instructions`). */

const permit: Permit = {
  id: 'permit.r-1.abc',
  runId: 'r-1',
  target: 'ehr-server',
  image: 'Windows Server 2025 Datacenter',
  proofIds: [],
  proofSetHash: '0'.repeat(64),
  issuedAt: '2026-12-02T10:00:00.000Z',
  expiresAt: '2026-12-02T12:00:00.000Z',
};

function driver(os: 'linux' | 'windows', transport: Record<string, unknown>, rebuilt = { osRelease: 'Microsoft Windows NT 10.0.26100.0', newMachineId: true, knownHosts: '/etc/rubicon/known_hosts.rebuilt' }): ManualDriver {
  const runbook = {
    target: { name: 'ehr-server', root: os === 'windows' ? 'D:\\' : '/srv', transport },
    provingGround: { root: '/srv/pg' },
    infra: { kind: 'manual', currentImage: 'old', rebuilt, rollback: { description: 'hypervisor checkpoint pre-upgrade' } },
  } as unknown as Runbook;
  const machine = (name: string, o: 'linux' | 'windows') => ({ name, os: o, transport: transport.kind, address: name }) as unknown as Machine;
  return new ManualDriver({ runbook, runId: 'r-1', target: machine('ehr-server', os), provingGround: machine('pg', 'linux') });
}

describe('ManualDriver.instructions', () => {
  it('a Windows Server over OpenSSH: a clean install with a new MachineGuid, the OS version as PowerShell reports it, OpenSSH Server with PowerShell as DefaultShell, the new host key into the runbook\'s file; no os-release, no Linux tools', () => {
    const text = driver('windows', { kind: 'openssh-windows', user: 'rubicon', identityFile: '/keys/rubicon_ed25519', powershell: 'powershell' }).instructions(permit, 'r-1', '--state-dir /state');
    expect(text).toContain('Reinstall ehr-server with Windows Server 2025 Datacenter: a clean install, not an in-place upgrade');
    expect(text).toContain('"Microsoft Windows NT 10.0.26100.0" (PowerShell there: [Environment]::OSVersion.VersionString)');
    expect(text).toContain('a new MachineGuid (HKLM\\SOFTWARE\\Microsoft\\Cryptography): Rubicon refuses the old one');
    expect(text).toContain('Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0');
    expect(text).toContain('DefaultShell to C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe');
    expect(text).toContain('C:\\ProgramData\\ssh\\administrators_authorized_keys');
    expect(text).toContain('Put its NEW host key into /etc/rubicon/known_hosts.rebuilt (the file the runbook names in infra.rebuilt.knownHosts)');
    expect(text).toContain('ssh-keygen -lf C:\\ProgramData\\ssh\\ssh_host_ed25519_key.pub');
    expect(text).not.toMatch(/os-release|\/etc\/ssh|rsync|sqlite3|coreutils/);
    expect(text).toContain('rubicon confirm r-1 --crossed --state-dir /state');
  });

  it('a Windows VM over Run Command: the VM agent instead of ssh, and no host key step', () => {
    const text = driver('windows', { kind: 'azure-run-command', vmName: 'ehr-prd-01', resourceGroup: 'rg-ehr' }, { osRelease: 'Microsoft Windows NT 10.0.26100.0', newMachineId: false, knownHosts: '/x' }).instructions(permit, 'r-1', '--state-dir /state');
    expect(text).toContain('Keep the Azure VM agent (WindowsAzureGuestAgent) installed and Ready on ehr-prd-01');
    expect(text).toContain('Rubicon records whether it changed');
    expect(text).not.toMatch(/host key|os-release/);
  });

  it('a Linux server over ssh keeps its os-release and OpenSSH steps', () => {
    const text = driver('linux', { kind: 'ssh', user: 'root', identityFile: '/keys/id' }, { osRelease: 'Debian GNU/Linux 13 (trixie)', newMachineId: true, knownHosts: '/kh' }).instructions({ ...permit, image: 'Debian 13' }, 'r-1', '--state-dir /state');
    expect(text).toContain('the runbook expects os-release "Debian GNU/Linux 13 (trixie)", and a new /etc/machine-id');
    expect(text).toContain('ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub');
    expect(text).not.toMatch(/MachineGuid|PowerShell/);
  });
});

describe('ManualDriver.scopeOfDestruction on a Windows target (docs/coverage.md, "Windows")', () => {
  it('the root and every local fixed volume of the inventory, keyed by drive; never /proc/self/mounts', async () => {
    const d = driver('windows', { kind: 'openssh-windows' });
    const scope = await d.scopeOfDestruction({ targetRoot: 'D:\\', windowsVolumes: [{ driveLetter: 'C', driveType: 'Fixed', fileSystem: 'NTFS' }, { driveLetter: 'D', driveType: 'Fixed', fileSystem: 'NTFS' }, { driveLetter: 'E', driveType: 'CD-ROM', fileSystem: 'UDF' }] });
    expect(scope.os).toBe('windows');
    expect(scope.volumes.map((v) => `${v.path}: ${v.label}`)).toEqual(['.: the volume of D:\\ on ehr-server', 'C:: the volume C:\\ on ehr-server']);
    // Without the inventory's volumes: the root alone.
    expect((await d.scopeOfDestruction({ targetRoot: 'D:\\' })).volumes.map((v) => v.path)).toEqual(['.']);
  });
});
