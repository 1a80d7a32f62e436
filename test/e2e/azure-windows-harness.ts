/**
 * The orchestrator side of test/e2e/azure-windows.test.ts, run by Node
 * inside the test net's `ctl` host (it must reach the vault host and the
 * proving ground over ssh, which only hosts of the net can): the HTTPS ARM
 * stand-in with its Run Command operations (test/infra/arm-stand-in.ts,
 * run-command-stand-in.ts) whose agent REALLY runs the scripts Rubicon sends
 * with pwsh 7, inside the `win` host (the VM), and the Pulumi driver's
 * stand-in ports (an in-memory stack answering with engine-event fixtures,
 * an in-memory ARM with locks, snapshots). Everything else is the real
 * composition root and the real phases through `startRun` / `resumeRun`.
 *
 * Two stages, one run:
 * 1. `rubicon upgrade`: the stand-in engine replaces the VM in ARM (a new
 *    vmId, a new OS disk), but the Run Command endpoint still reaches the
 *    OLD VM (its files, its MachineGuid, its vmId): landing must refuse it.
 * 2. The endpoint now reaches the new VM (new vmId; the OS disk wiped:
 *    the target folder and Rubicon's work folder gone; a new MachineGuid;
 *    no vendor service): `rubicon resume` lands there and validates.
 *
 * Argument: a JSON file (HarnessConfig). Writes HarnessResult as JSON to
 * `resultFile`. The test asserts; this file only plays the world.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { EngineEvent } from '@pulumi/pulumi/automation/index.js';
import { infraKinds, pulumiAzureInfraKind, transports } from '../../src/compose/root.ts';
import type { RunEvent } from '../../src/core/events.ts';
import { createAzureRunCommandMachine } from '../../src/machines/windows/run-command.ts';
import type { TransportSettings } from '../../src/runbook/load.ts';
import type { RunSummary } from '../../src/core/summary.ts';
import { resumeRun, startRun } from '../../src/run/run.ts';
import { ArmStandIn } from '../infra/arm-stand-in.ts';
import { FakeArm, FakeMachines, FakeStack, fixture } from '../infra/fake-ports.ts';
import { RunCommandStandIn } from '../infra/run-command-stand-in.ts';

export interface HarnessConfig {
  runbook: string;
  stateDir: string;
  /** The VM's test host: network namespace, host name, /etc folder (machine-id). */
  win: { netns: string; name: string; etcDir: string };
  pwsh: string;
  /** PATH and PSModulePath entries of the stand-in commands (test/windows/stand-in). */
  standInBin: string;
  standInModules: string;
  servicesFile: string;
  targetRoot: string;
  workDir: string;
  vm: string;
  oldVmId: string;
  newVmId: string;
  newMachineId: string;
  oldImage: string;
  newImage: string;
  publicKeyPem: string;
  resultFile: string;
}

export interface HarnessResult {
  first: Pick<RunSummary, 'outcome' | 'exitCode' | 'error'> & { runId: string };
  second: Pick<RunSummary, 'outcome' | 'exitCode' | 'error'>;
  /** What was locked while the crossing's up ran: [VM, data disk]. */
  lockedDuringCrossing: boolean[];
  locksAfter: { vm: boolean; osNew: boolean; data: boolean };
  /** The machine port's calls, in order (snapshots, the VM agent). */
  machineLog: string[];
  /** Run command DELETEs ARM refused with ScopeLocked (the VM was locked). */
  scopeLockedDeletes: number;
  /** Run commands the agent ran, per VM generation. */
  scriptsOnOld: number;
  scriptsOnNew: number;
  unmatched: string[];
  permitLeft: boolean;
  configSku: string | undefined;
}

const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as HarnessConfig;
const SUB = '00000000-0000-0000-0000-000000000001';
const RG = `/subscriptions/${SUB}/resourceGroups/rg-ehr/providers/Microsoft.Compute`;
const OS_OLD = `${RG}/disks/ehr-prd-01_OsDisk_1_old`;
const OS_NEW = `${RG}/disks/ehr-prd-01-os-new`;
const DATA = `${RG}/disks/ehr-prd-01-sqldata`;

const armHttp = new ArmStandIn();
await armHttp.start();
const stand = new RunCommandStandIn(armHttp, cfg.vm).install();
stand.pwsh = cfg.pwsh;
stand.vmId = cfg.oldVmId;
// One warm pwsh per VM runs every script in a fresh runspace (run-command-stand-in.ts, warm-agent.ps1: what differs
// from the real agent's process per script is said there); the programs the scripts start are processes of their own.
// RUBICON_E2E_AGENT=per-script runs a new pwsh per script instead, as the real agent does (slower: to compare).
stand.agentProcess = process.env.RUBICON_E2E_AGENT === 'per-script' ? 'per-script' : 'warm';
// The VM agent: the scripts run inside the `win` host, with the stand-in commands (services, reg) on its paths.
stand.launch = ([file, ...args]) => [
  'ip',
  [
    'netns', 'exec', cfg.win.netns, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"', cfg.win.name,
    'env', `PATH=${cfg.standInBin}:${path.dirname(cfg.pwsh)}:${process.env.PATH ?? '/usr/bin:/bin'}`, `PSModulePath=${cfg.standInModules}`, `RUBICON_STANDIN_SERVICES=${cfg.servicesFile}`, `HOME=${process.env.HOME ?? '/root'}`,
    file!, ...args,
  ],
];
let scopeLockedDeletes = 0;
const arm = new FakeArm();
stand.locked = () => {
  const locked = arm.locks.has(cfg.vm);
  if (locked) scopeLockedDeletes++;
  return locked;
};

// The azure-run-command transport as the composition root builds it, pointed at the stand-in (endpoint, TLS trust,
// a token credential, short polls); everything else as in src/machines/windows/factories.ts.
const restoreTransport = transports.override('azure-run-command', (s) => {
  const t = s.transport as Extract<TransportSettings, { kind: 'azure-run-command' }>;
  return createAzureRunCommandMachine(
    {
      subscriptionId: SUB,
      resourceGroup: t.resourceGroup,
      vmName: t.vmName,
      credential: { getToken: async () => ({ token: 'stand-in-token', expiresOnTimestamp: Date.now() + 3_600_000 }) },
      endpoint: armHttp.baseUrl,
      clientOptions: { agent: armHttp.agent() },
      // The runbook's output container, served by the stand-in (the VM's append blobs: the instance view keeps 4 KB).
      ...(t.outputContainer ? { outputContainer: `${armHttp.baseUrl}${stand.blobContainer}`, blobAgent: armHttp.agent() } : {}),
    },
    { name: s.name, stepsRoot: s.stepsRoot, powershell: t.powershell, defaultCommandTimeoutMs: t.commandTimeoutSeconds * 1000, pollIntervalMs: 40, maxPollIntervalMs: 200, graceMs: 60_000 },
  );
});

const stack = new FakeStack(
  'prod',
  { targetVmId: cfg.vm, targetImage: cfg.oldImage, targetVmUniqueId: cfg.oldVmId, dataDiskIds: [DATA], provingGround: null },
  {
    'rubicon:target.name': 'ehr-prd-01',
    'rubicon:resourceGroupName': 'rg-ehr',
    'rubicon:target.image.publisher': 'MicrosoftWindowsServer',
    'rubicon:target.image.offer': 'WindowsServer',
    'rubicon:target.image.sku': '2022-datacenter-azure-edition',
    'rubicon:target.image.version': 'latest',
    'rubicon:permitPublicKey': cfg.publicKeyPem,
  },
);
arm.vms.set(cfg.vm, { id: cfg.vm, uniqueId: cfg.oldVmId, image: cfg.oldImage, osDiskId: OS_OLD, dataDiskIds: [DATA] });
arm.disks.set(OS_OLD, { id: OS_OLD, attachedTo: cfg.vm, tags: {} });
const machines = new FakeMachines([
  { id: OS_OLD, role: 'os' },
  { id: DATA, role: 'sqldata' },
]);
const allSame = (): EngineEvent[] => [{ sequence: 0, timestamp: 1767261600, summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: { same: 14 }, policyPacks: {} } }];
const pgOn = (s: FakeStack) => s.config.get('rubicon:provingGround.enabled') === 'true';
const pgUp = (s: FakeStack) => Boolean(s.outputsValue['provingGround']);
stack.previewFor = (s, o) => {
  if (s.config.has('rubicon:permit')) return fixture('clean-vm-replace');
  if (pgOn(s) && !pgUp(s)) return fixture('provision-proving-ground');
  if (!pgOn(s) && pgUp(s)) return o.targets ? fixture('teardown-targeted') : fixture('teardown-with-pending-update');
  return allSame();
};
const lockedDuringCrossing: boolean[] = [];
stack.onUp = (s) => {
  if (s.config.has('rubicon:permit')) {
    lockedDuringCrossing.push(arm.locks.has(cfg.vm), arm.locks.has(DATA));
    // The stand-in engine replaces the VM in ARM: same name, a new vmId, a new OS disk; the old one detached and kept.
    arm.vms.set(cfg.vm, { id: cfg.vm, uniqueId: cfg.newVmId, image: cfg.newImage, osDiskId: OS_NEW, dataDiskIds: [DATA] });
    arm.disks.set(OS_OLD, { id: OS_OLD, tags: {} });
    machines.log.push('up: VM replaced');
    // Stage 1: the Run Command endpoint still reaches the old VM (nothing else changes there).
    return { ...s.outputsValue, targetImage: cfg.newImage, targetVmUniqueId: cfg.newVmId };
  }
  if (pgOn(s)) return { ...s.outputsValue, provingGround: { vmId: '/pg/vm', tags: { 'rubicon-ttl': '8h', 'rubicon-created-at': new Date().toISOString() } } };
  return { ...s.outputsValue, provingGround: null };
};
const restoreKind = infraKinds.override('pulumi-azure', pulumiAzureInfraKind({ stack, machines, arm }));

const pick = (s: RunSummary) => ({ outcome: s.outcome, exitCode: s.exitCode, ...(s.error ? { error: s.error } : {}) });
try {
  let runId = '';
  const first = await startRun('upgrade', cfg.runbook, {
    stateDir: cfg.stateDir,
    onEvent: (e: RunEvent) => {
      if (e.kind === 'journal' && e.event.type === 'run.started') runId = e.event.runId;
    },
    confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
  });
  await stand.settle();

  // Stage 2: Run Command now reaches the VM the crossing made: a fresh OS disk (no data, no Rubicon folder, no
  // vendor service, no run commands), a new MachineGuid, a new vmId.
  const scriptsOnOld = stand.timings.length;
  await stand.restartAgent(); // the new VM's agent is a process of its own
  stand.vmId = cfg.newVmId;
  stand.commands.clear();
  stand.blobs.clear();
  rmSync(cfg.targetRoot, { recursive: true, force: true });
  rmSync(cfg.workDir, { recursive: true, force: true });
  writeFileSync(cfg.servicesFile, '[]');
  writeFileSync(path.join(cfg.win.etcDir, 'machine-id'), `${cfg.newMachineId}\n`);
  const second = await resumeRun(runId, { stateDir: cfg.stateDir, onEvent: () => {}, confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }) });
  await stand.settle();

  const result: HarnessResult = {
    first: { ...pick(first), runId },
    second: pick(second),
    lockedDuringCrossing,
    locksAfter: { vm: arm.locks.has(cfg.vm), osNew: arm.locks.has(OS_NEW), data: arm.locks.has(DATA) },
    machineLog: machines.log,
    scopeLockedDeletes,
    scriptsOnOld,
    scriptsOnNew: stand.timings.length - scriptsOnOld,
    unmatched: armHttp.unmatched.map((r) => `${r.method} ${r.path}`),
    permitLeft: stack.config.has('rubicon:permit'),
    configSku: stack.config.get('rubicon:target.image.sku'),
  };
  writeFileSync(cfg.resultFile, JSON.stringify(result, null, 2));
  if (process.env.RUBICON_E2E_TIMINGS) writeFileSync(process.env.RUBICON_E2E_TIMINGS, JSON.stringify({ scripts: stand.timings, totalMs: Math.round(performance.now()) }, null, 2));
} finally {
  restoreKind();
  restoreTransport();
  await stand.stop();
  await armHttp.stop();
}
