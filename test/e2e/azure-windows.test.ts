import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { generateKeyPair } from '../../src/trust/keys.ts';
import { CTL, createTestNet, requireTestNet, type TestNet } from '../hosts/index.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';
import type { HarnessConfig, HarnessResult } from './azure-windows-harness.ts';
import { ROOT, removeTempDirs, treeHashes } from './helpers.ts';
import { journalEvents } from './remote-estate.ts';

afterAll(removeTempDirs);

/**
 * `rubicon upgrade` of a Windows Server on Azure: `infra.kind: pulumi-azure`
 * and `target.transport.kind: azure-run-command`, through the composition
 * root and the Windows target plane (src/run/windows.ts), with only the
 * Pulumi driver's ports and ARM stood in:
 *
 * - ARM over HTTPS (test/infra/arm-stand-in.ts + run-command-stand-in.ts,
 *   the REST shapes cited there) through @azure/arm-compute's real
 *   pipeline; its VM agent REALLY runs every script Rubicon sends with
 *   pwsh 7, inside the namespaced host `win` (the VM: its own network and
 *   /etc/machine-id), with the stand-in service commands and `reg` of
 *   test/windows/stand-in on its paths (as the openssh-windows story);
 *   a run command cannot be deleted while the VM's ARM lock is on (409
 *   ScopeLocked), as ARM does;
 * - the Pulumi stack (engine-event fixtures) and the driver's ARM and
 *   machine ports in memory (test/infra/fake-ports.ts), as in
 *   azure-upgrade.test.ts.
 *
 * Real: the inventory, manifest, freeze and thaw scripts as sent, the Run
 * Command transport's step protocol, restic into a repository on the vault
 * host over ssh, the proof on the Linux proving ground (no route to `win`),
 * the gate, the signed permit, the driver's crossing (locks, arming,
 * preview → classify → up → compare → new vmId → VM agent → disarm, lock,
 * re-protect), the landing and its validation by the manifest script.
 *
 * The run sees the crossing twice: first the Run Command endpoint still
 * reaches the OLD VM (its vmId, its files): landing refuses (NOT_REBUILT)
 * and writes nothing; then it reaches the NEW VM (new vmId, fresh disk, new
 * MachineGuid): `resume` lands and validates there.
 *
 * One folder, few steps. The stand-in agent keeps one warm pwsh per VM and
 * runs each run command's script in a fresh runspace of it, where the real
 * agent starts a process per script (what differs: test/infra/warm-agent.ps1,
 * checked against `pwsh -File` by test/infra/warm-agent.test.ts); the
 * program a step runs (a Windows script: `pwsh -EncodedCommand`) is still a
 * process of its own. That saves one pwsh start per call (about 1.8 s of CPU
 * each); RUBICON_E2E_AGENT=per-script runs the agent the real way.
 * Outside CI, a missing pwsh or test-net support skips with the reason; in
 * CI it fails.
 */
const noNet = requireTestNet();
const pwsh = checkPwsh();
const skip = noNet ?? (mustRun(pwsh) ? undefined : pwsh.reason);
const STAND_IN = path.join(import.meta.dirname, '..', 'windows', 'stand-in');
const HARNESS = path.join(import.meta.dirname, 'azure-windows-harness.ts');

const IMAGE = 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest';
const OLD = 'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest';
const VM = '/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ehr/providers/Microsoft.Compute/virtualMachines/ehr-prd-01';
const OLD_VMID = '7d0e0c61-1c4b-4f7e-9a53-000000000001';
const NEW_VMID = '2b4f9e20-8d1a-4c55-b0e3-000000000002';

type WinNet = TestNet<'win' | 'vault' | 'pg' | 'ctl'>;

describe.skipIf(skip)(`rubicon upgrade: pulumi-azure crossing, the target reached over azure-run-command (ARM stand-in, PowerShell 7)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('captures through Run Command, crosses (VM replaced, new vmId, VM agent), refuses the old VM, then lands on the new one and validates', { timeout: 1_200_000 }, async () => {
    const net: WinNet = await createTestNet({ hosts: { win: { sshd: false }, vault: {}, pg: {} }, segments: { a: [CTL, 'win', 'vault'], b: [CTL, 'pg', 'vault'] } });
    try {
      const w = net.hosts.win;
      const estate = path.join(w.dataDir, 'estate');
      await buildSandbox(estate, { patients: 20 });
      const targetRoot = path.join(estate, 'target');
      const workDir = path.join(w.dataDir, 'rubicon');
      const ctlDir = path.join(net.dir, 'ctl-files');
      mkdirSync(ctlDir, { recursive: true });
      const servicesFile = path.join(ctlDir, 'services.json');
      writeFileSync(
        servicesFile,
        JSON.stringify([{ Name: 'EHRSync', DisplayName: 'EHR sync', State: 'Running', StartMode: 'Manual', PathName: `"${targetRoot}/ehr/A/sync.exe" --serve`, StartName: 'LocalSystem', DependentServices: [] }]),
      );
      const passwordFile = path.join(ctlDir, 'restic.pass');
      writeFileSync(passwordFile, `${randomBytes(18).toString('base64')}\n`, { mode: 0o600 });
      const knownHosts = path.join(ctlDir, 'known_hosts');
      await copyFile(net.knownHostsPath, knownHosts);
      const ssh = (host: string) => `host: ${host}, user: root, identityFile: ${net.clientKey.privateKeyPath}, knownHosts: ${knownHosts}, connectTimeoutSeconds: 5`;
      const now = new Date().toISOString();
      const runbook = path.join(ctlDir, 'runbook.yaml');
      writeFileSync(
        runbook,
        `version: 1
name: ehr-upgrade-azure-windows
target:
  name: ehr-prd-01
  root: ${targetRoot}
  image: ${IMAGE}
  transport: { kind: azure-run-command, resourceGroup: rg-ehr, vmName: ehr-prd-01, powershell: pwsh, outputContainer: 'https://rubiconout.blob.core.windows.net/run-output' }
  workDir: ${workDir}
  services: [EHRSync]
provingGround:
  transport: { kind: ssh, ${ssh('pg')} }
  root: ${path.join(net.hosts.pg.dataDir, 'proving')}
  workDir: ${path.join(net.hosts.pg.dataDir, 'rubicon')}
infra:
  kind: pulumi-azure
  stack: prod
  workDir: ${JSON.stringify(path.relative(ctlDir, ROOT))}
  signingKey: { env: RUBICON_SIGNING_KEY }
  planDir: ./plans
declared:
  folders: [ehr/A]
discovery:
  roots: [ehr]
methods:
  folders: [restic]
vaults:
  - { name: offsite, kind: restic, host: { ${ssh('vault')}, authorizedKeysFile: ${net.hosts.vault.authorizedKeysPath} }, path: ${path.join(net.hosts.vault.dataDir, 'restic')}, passwordFile: ${passwordFile} }
policy: { minIndependentMethods: 1, minVaults: 1 }
overrides:
  - { rule: policy.not-looser, item: minIndependentMethods, reason: "one folder method (restic) is wired on Windows so far", by: test }
  - { rule: policy.not-looser, item: minVaults, reason: "one restic vault in this test", by: test }
  - { rule: coverage.everything, item: "volume:.", reason: "the everything capture is not built on a Windows target yet", by: test }
  - { rule: coverage.complete, item: "volume:.", reason: "one folder item in this test: ehr/X, Y, Z and mssql are not captured (the Windows story covers coverage)", by: test }
manualSteps:
  - { id: vendor-window, description: The vendor confirmed the maintenance window, confirmedBy: vendor technician, confirmedAt: "${now}" }
`,
      );
      const stateDir = path.join(ctlDir, 'state');
      const keys = generateKeyPair();
      const resultFile = path.join(ctlDir, 'result.json');
      const expectedA = await treeHashes(path.join(targetRoot, 'ehr/A'));
      const cfg: HarnessConfig = {
        runbook,
        stateDir,
        win: { netns: w.netns, name: w.name, etcDir: w.etcDir },
        pwsh: PWSH,
        standInBin: path.join(STAND_IN, 'bin'),
        standInModules: path.join(STAND_IN, 'modules'),
        servicesFile,
        targetRoot,
        workDir,
        vm: VM,
        oldVmId: OLD_VMID,
        newVmId: NEW_VMID,
        newMachineId: randomBytes(16).toString('hex'),
        oldImage: OLD,
        newImage: IMAGE,
        publicKeyPem: keys.publicKeyPem,
        resultFile,
      };
      const cfgFile = path.join(ctlDir, 'harness.json');
      writeFileSync(cfgFile, JSON.stringify(cfg));
      const oldGuid = w.machineId;

      const p = await net.node('ctl', [HARNESS, cfgFile], {
        env: { NO_COLOR: '1', RUBICON_WINDOWS_STAND_IN: '1', RUBICON_SIGNING_KEY: keys.privateKeyPem, AZURE_SUBSCRIPTION_ID: '00000000-0000-0000-0000-000000000001' },
      });
      expect(p.exitCode, `${String(p.stderr).slice(-4000)}`).toBe(0);
      const r = JSON.parse(readFileSync(resultFile, 'utf8')) as HarnessResult;
      const runId = r.first.runId;
      const ev = journalEvents(stateDir, runId);
      const errorsOf = () => JSON.stringify(ev.filter((x) => x.type === 'capture.failed' || (x.type === 'note' && x.level !== 'info')).slice(0, 20));

      // Stage 1: crossed, then refused to land on the old VM; nothing restored.
      expect(r.first.error?.code, errorsOf() + JSON.stringify(r.first)).toBe('NOT_REBUILT');
      expect(r.first.error?.message).toContain(`still reaches the old VM (${VM}, vmId ${OLD_VMID})`);
      const refusedAt = ev.findIndex((x) => x.type === 'run.completed');
      const firstRun = ev.slice(0, refusedAt);
      expect(firstRun.filter((x) => x.type === 'landing.restored')).toEqual([]);
      expect(firstRun.some((x) => x.type === 'rebuild.verified')).toBe(false);

      // Stage 2: landed on the new VM.
      expect(r.second.error, JSON.stringify(r.second)).toBeUndefined();
      expect(r.second).toMatchObject({ outcome: 'landed', exitCode: 0 });

      // Everything on the server went through Run Command as Rubicon's scripts.
      const steps = ev.filter((x) => x.type === 'step.started').map((x) => ({ id: String(x.stepId), what: String(x.what), machine: String(x.machine) }));
      expect(steps.find((s) => s.id.endsWith('/discover/inventory'))?.what).toBe('inventory of ehr-prd-01');
      expect(steps.filter((s) => s.what.startsWith('manifest script on ehr-prd-01')).length).toBeGreaterThanOrEqual(4);
      expect(steps.find((s) => s.id.includes('/freeze-'))?.what).toBe('freeze of EHRSync on ehr-prd-01 (freeze script)');
      expect(r.scriptsOnOld).toBeGreaterThan(5);
      expect(r.scriptsOnNew).toBeGreaterThan(2);
      expect(r.unmatched).toEqual([]);
      // Identity before the crossing: the MachineGuid through reg, and the VM ARM says Run Command reaches.
      expect(ev.find((x) => x.type === 'target.identified')).toMatchObject({ machine: 'ehr-prd-01', machineId: guid(oldGuid), platform: { resourceId: VM, uniqueId: OLD_VMID } });
      const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { outcome: string } }).proof);
      expect(proofs.length).toBeGreaterThanOrEqual(1); // nothing changed after the freeze: the final capture has nothing new to prove
      for (const pr of proofs) expect(pr.outcome).toBe('passed');
      expect(ev.find((x) => x.type === 'services.stopped')).toMatchObject({ services: [{ name: 'EHRSync', active: 'Running', enabled: 'Manual' }] });
      const gate = ev.filter((x) => x.type === 'gate.evaluated').at(-1) as { result: { passed: boolean } } | undefined;
      expect(gate?.result.passed).toBe(true);

      // The crossing: the driver replaced the VM under its locks, ARM showed the new vmId, then the VM agent was awaited.
      expect(ev.find((x) => x.type === 'crossing.completed')).toMatchObject({ image: IMAGE, machine: { resourceId: VM, uniqueId: NEW_VMID } });
      expect(ev.find((x) => x.type === 'rollback.created')).toMatchObject({ rollbackPoint: { kind: 'azure-disk-snapshot' } });
      expect(r.lockedDuringCrossing).toEqual([false, true]);
      const up = r.machineLog.indexOf('up: VM replaced');
      expect(up).toBeGreaterThan(0);
      expect(r.machineLog.slice(up)).toContain(`waitForVmAgent ${VM}`);
      expect(r.permitLeft).toBe(false);
      expect(r.configSku).toBe('2025-datacenter-azure-edition');
      // Run commands were deleted only with the VM's lock lifted (the wrapper of target-machine.ts): ARM refused none.
      expect(r.scopeLockedDeletes).toBe(0);
      expect(r.locksAfter).toEqual({ vm: true, osNew: true, data: true });
      const notes = ev.flatMap((x) => (x.type === 'note' ? [String(x.message)] : []));
      expect(notes.some((n) => n.includes(`deletion lock on VM ${VM} removed while Run Command runs on it`))).toBe(true);

      // Landing: on the VM the crossing made, checked first.
      expect(ev.find((x) => x.type === 'rebuild.verified')).toMatchObject({ machine: 'ehr-prd-01', machineIdChanged: true, platform: { resourceId: VM, uniqueId: NEW_VMID, changed: true } });
      const validated = ev.filter((x) => x.type === 'landing.validated') as unknown as { itemId: string; outcome: string; checks: { detail: string }[] }[];
      expect(validated.map((v) => `${v.itemId} ${v.outcome}`)).toEqual(['folder:ehr/A passed']);
      expect(validated[0]!.checks[0]!.detail).toMatch(/by the manifest script/);
      expect(ev.some((x) => x.type === 'rollback.released')).toBe(true);
      expect(await treeHashes(path.join(targetRoot, 'ehr/A'))).toEqual(expectedA);
      expect(existsSync(path.join(ctlDir, 'plans'))).toBe(true);
    } finally {
      await net.destroy();
    }
  });
});

/** /etc/machine-id (32 hex digits) as the reg stand-in prints it: a GUID. */
function guid(id: string): string {
  return id.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
}
