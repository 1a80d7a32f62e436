import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { hashFile } from '../../src/files/drift.ts';
import { walkAll } from '../../src/files/walk.ts';
import { stepFolderName } from '../../src/machines/posix.ts';
import { manifestEntriesFromOutput, type ManifestData } from '../../src/machines/windows/results.ts';
import { AzureRunCommandMachine, createAzureRunCommandMachine, MAX_RUN_COMMANDS, type AzureRunCommandMachineOptions } from '../../src/machines/windows/run-command.ts';
import { runWindowsScript } from '../../src/machines/windows/windows-machine.ts';
import { ArmStandIn } from '../infra/arm-stand-in.ts';
import { RunCommandStandIn, type StoredRunCommand } from '../infra/run-command-stand-in.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';

/**
 * azure-run-command against the local HTTPS ARM stand-in
 * (test/infra/run-command-stand-in.ts: the REST operations and shapes it
 * serves are cited there), through @azure/arm-compute's real HTTP pipeline.
 * The protocol cases (a platform stuck in Running, 409, the 25 limit) use a
 * canned agent and an injected clock; the output cases have the stand-in
 * REALLY run the script Rubicon sent with pwsh, as the VM agent runs it
 * with powershell.exe -File on Windows.
 */
const SUB = '0f1e2d3c-0000-4000-8000-000000000001';
const RG = 'rg-ehr';
const VM = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/ehr-prd-01`;
const TOKEN = 'stand-in-token-rc';
const pwsh = checkPwsh();

const arm = new ArmStandIn();
const stand = new RunCommandStandIn(arm, VM);
const scopes: string[] = [];
let base = '';

beforeAll(async () => {
  await arm.start();
  base = mkdtempSync(path.join(os.tmpdir(), 'rubicon-rc-vm-'));
});
afterAll(async () => {
  await stand.stop();
  await arm.stop();
  rmSync(base, { recursive: true, force: true });
});
afterEach(async () => {
  await stand.settle();
  expect(arm.unmatched.map((r) => `${r.method} ${r.path}`)).toEqual([]);
  arm.reset();
  stand.commands.clear();
  stand.preset.length = 0;
  stand.blobs.clear();
  stand.served.length = 0;
  stand.conflicts = 0;
  stand.provisioningIgnoresExitCode = false;
});

function machine(o: Partial<AzureRunCommandMachineOptions> & { outputContainer?: boolean; stepsRoot?: string } = {}): AzureRunCommandMachine {
  stand.install();
  const { outputContainer, ...rest } = o;
  return createAzureRunCommandMachine(
    {
      subscriptionId: SUB,
      resourceGroup: RG,
      vmName: 'ehr-prd-01',
      credential: {
        getToken: async (s: string | string[]) => {
          scopes.push(...(Array.isArray(s) ? s : [s]));
          return { token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 };
        },
      },
      endpoint: arm.baseUrl,
      clientOptions: { agent: arm.agent() },
      ...(outputContainer ? { outputContainer: `${arm.baseUrl}/rubicon-out`, blobAgent: arm.agent() } : {}),
    },
    { name: 'ehr-prd-01', stepsRoot: path.join(base, 'steps', 'r-1'), powershell: PWSH, pollIntervalMs: 100, maxPollIntervalMs: 500, graceMs: 60_000, ...rest },
  );
}

/** An injected clock: every sleep advances it at once (no wall-clock waits). */
function clock() {
  let t = Date.UTC(2026, 11, 1, 10);
  const sleeps: number[] = [];
  return { sleeps, now: () => t, sleep: async (ms: number) => void (sleeps.push(ms), (t += ms)) };
}

async function rejection(p: Promise<unknown>): Promise<RubiconError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RubiconError);
  return e as RubiconError;
}

/** The frames Rubicon's step script prints (transport/lib.ps1), for the canned agent. */
function frames(state: string, out = '', err = ''): string {
  const o = Buffer.from(out);
  const e = Buffer.from(err);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const lines = [...(e.length ? [`RUBICON-T1 err ${e.toString('base64')}`] : []), ...(o.length ? [`RUBICON-T1 out ${o.toString('base64')}`] : [])];
  lines.push(`RUBICON-T1 sum ${o.length} ${sha(o)} 0 ${e.length} ${sha(e)} 0`, `RUBICON-T1 state ${state}`, 'RUBICON-T1 end', '');
  return lines.join('\n');
}

const RC = /\/runCommands\/(rubicon-[0-9a-z-]+)$/;
const puts = () => arm.made('PUT', RC);
const deletes = () => arm.made('DELETE', RC).map((r) => RC.exec(r.path)![1]);

describe('azure-run-command: the ARM protocol (canned agent, injected clock)', () => {
  it('names a step from its id and PUTs the contract: async, treatFailureAsDeploymentFailure, a platform timeout past the script\u2019s, tags, the secret only as a protected parameter', async () => {
    stand.agent = () => ({ executionState: 'Succeeded', exitCode: 0, output: frames('done 0 fresh', 'ok\n'), error: '' });
    const m = machine();
    const r = await m.run({ id: 'r-1/capture/folder:X/restic', idempotent: true }, { argv: ['restic.exe', 'backup', 'D:\\ehr\\X'], input: 'repository-password' }, { timeoutMs: 600_000 });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'ok\n', reattached: false });
    const [put] = puts();
    const name = AzureRunCommandMachine.runCommandName('r-1/capture/folder:X/restic');
    expect(put?.path).toBe(`${VM}/runCommands/${name}`);
    expect(name).toMatch(/^rubicon-[0-9a-f]{32}$/);
    const body = put!.body as { location: string; tags: Record<string, string>; properties: Record<string, any> };
    expect(body.location).toBe('westeurope');
    expect(body.properties).toMatchObject({ asyncExecution: true, treatFailureAsDeploymentFailure: true, timeoutInSeconds: 600 + 120 });
    expect(body.tags).toMatchObject({ rubicon: 'step', 'rubicon-step': 'r-1/capture/folder:X/restic', 'rubicon-step-sha256': createHash('sha256').update('r-1/capture/folder:X/restic').digest('hex') });
    expect(body.properties.protectedParameters).toEqual([{ name: 'RubiconSecret', value: Buffer.from('repository-password').toString('base64') }]);
    expect(JSON.stringify(body.properties.source)).not.toContain('repository-password');
    expect(JSON.stringify(body.properties.source)).not.toContain(Buffer.from('repository-password').toString('base64'));
    expect(body.properties.parameters).toBeUndefined();
    expect(put!.headers['authorization']).toBe(`Bearer ${TOKEN}`);
    // A step's run command is kept (a resume re-attaches to it); nothing was deleted.
    expect(deletes()).toEqual([]);
  });

  it('stuck in Running past Rubicon\u2019s deadline: deleted, then STEP_LOST (not idempotent) or MACHINE_TIMEOUT (idempotent)', async () => {
    stand.agent = 'stuck';
    const c = clock();
    const lost = await rejection(machine({ now: c.now, sleep: c.sleep, pollIntervalMs: 5_000, maxPollIntervalMs: 30_000, graceMs: 30_000 }).run({ id: 'r-1/vendor-job', idempotent: false }, { argv: ['vendorbackup.exe'] }, { timeoutMs: 60_000 }));
    expect(lost.code).toBe('STEP_LOST');
    expect(lost.message).toMatch(/still Running past Rubicon's deadline \(90 s\)/);
    expect(deletes()).toEqual([AzureRunCommandMachine.runCommandName('r-1/vendor-job')]);
    // Polls with growing delays, never past the deadline.
    expect(c.sleeps.reduce((a, b) => a + b, 0)).toBe(90_000);
    expect(c.sleeps.slice(0, 4)).toEqual([5_000, 7_500, 11_250, 16_875]);

    arm.reset();
    stand.commands.clear();
    const c2 = clock();
    const timeout = await rejection(machine({ now: c2.now, sleep: c2.sleep, graceMs: 10_000 }).run({ id: 'r-1/manifest', idempotent: true }, { argv: ['x.exe'] }, { timeoutMs: 20_000 }));
    expect(timeout.code).toBe('MACHINE_TIMEOUT');
    expect(timeout.hint).toMatch(/resume the run to run the step again/);
    expect(deletes()).toEqual([AzureRunCommandMachine.runCommandName('r-1/manifest')]);
  });

  it('cancelled (SIGINT): the step’s run command is deleted, which ends its execution', async () => {
    stand.agent = 'stuck';
    const ac = new AbortController();
    const e = machine({ sleep: async () => ac.abort() }).run({ id: 'r-1/cancel-me', idempotent: true }, { argv: ['x.exe'] }, { signal: ac.signal });
    await expect(e).rejects.toThrow();
    for (let i = 0; i < 500 && deletes().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(deletes()).toEqual([AzureRunCommandMachine.runCommandName('r-1/cancel-me')]);
  });

  it('deleted by someone else while it ran: the outcome is unknown, STEP_LOST for a step that is not idempotent', async () => {
    stand.agent = 'stuck';
    const e = await rejection(machine({ sleep: async () => void stand.commands.clear() }).run({ id: 'r-1/vendor-job-2', idempotent: false }, { argv: ['vendorbackup.exe'] }));
    expect(e.code).toBe('STEP_LOST');
    expect(e.message).toMatch(/ended in execution state Canceled .*not safe to run it twice/);
  });

  it('409 "execution in progress": retried with growing delays until it is accepted; 409 until the deadline starts nothing', async () => {
    stand.agent = () => ({ executionState: 'Succeeded', exitCode: 0, output: frames('done 0 fresh', 'after the wait\n') });
    stand.conflicts = 2;
    const c = clock();
    const r = await machine({ now: c.now, sleep: c.sleep, pollIntervalMs: 2_000, maxPollIntervalMs: 30_000 }).run({ id: 'r-1/a', idempotent: false }, { argv: ['a.exe'] });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'after the wait\n' });
    expect(puts()).toHaveLength(3);
    expect(c.sleeps.slice(0, 2)).toEqual([2_000, 3_000]);

    arm.reset();
    stand.commands.clear();
    stand.conflicts = 1_000;
    const c2 = clock();
    const e = await rejection(machine({ now: c2.now, sleep: c2.sleep, graceMs: 5_000 }).run({ id: 'r-1/b', idempotent: false }, { argv: ['b.exe'] }, { timeoutMs: 10_000 }));
    expect(e.code).toBe('MACHINE_FAILED');
    expect(e.message).toMatch(/409 \(another Run Command execution is in progress\).*nothing was started/);
    expect(stand.commands.size).toBe(0);
  });

  it('at 25 run commands, deletes only Rubicon\u2019s finished ones, oldest first; a VM full of others\u2019 is refused before any PUT', async () => {
    const preset = (name: string, tags: Record<string, string>, executionState: string): StoredRunCommand => ({
      name,
      body: { location: 'westeurope', tags, properties: { source: { script: 'Write-Host x' } } },
      provisioningState: 'Succeeded',
      instanceView: { executionState, exitCode: 0 },
      runs: 1,
      done: executionState !== 'Running',
    });
    const order = [7, 3, 19, 0, 12, 5, 1, 16, 9, 14, 2, 18, 4, 11, 6, 17, 8, 13, 10, 15];
    stand.preset.push(
      preset('vendor-agent-check', {}, 'Succeeded'),
      preset('InstallMonitoring', { owner: 'ops' }, 'Succeeded'),
      preset('someone-else', {}, 'Failed'),
      preset('rubicon-running-1', { rubicon: 'step', 'rubicon-created': '2026-11-30T00:00:00.000Z' }, 'Running'),
      preset('rubicon-running-2', { rubicon: 'step', 'rubicon-created': '2026-11-29T00:00:00.000Z' }, 'Running'),
      ...order.map((i) => preset(`rubicon-old-${i}`, { rubicon: 'step', 'rubicon-created': new Date(Date.UTC(2026, 10, 1, i)).toISOString() }, i % 3 === 0 ? 'Failed' : 'Succeeded')),
    );
    expect(stand.all()).toHaveLength(MAX_RUN_COMMANDS);
    stand.agent = () => ({ executionState: 'Succeeded', exitCode: 0, output: frames('done 0 fresh') });
    await machine().run({ id: 'r-1/c', idempotent: true }, { argv: ['c.exe'] });
    expect(deletes()).toEqual(['rubicon-old-0', 'rubicon-old-1', 'rubicon-old-2', 'rubicon-old-3', 'rubicon-old-4']);
    const order2 = arm.requests.map((r) => r.method);
    expect(order2.lastIndexOf('DELETE')).toBeLessThan(order2.indexOf('PUT'));

    arm.reset();
    stand.commands.clear();
    stand.preset.length = 0;
    for (let i = 0; i < MAX_RUN_COMMANDS; i++) stand.preset.push(preset(`ops-${i}`, {}, 'Succeeded'));
    const e = await rejection(machine().run({ id: 'r-1/d', idempotent: true }, { argv: ['d.exe'] }));
    expect(e.code).toBe('MACHINE_FAILED');
    expect(e.message).toMatch(/holds 25 run commands.*only 0 are Rubicon's finished ones/);
    expect(puts()).toEqual([]);
    expect(deletes()).toEqual([]);
  });
});

describe.skipIf(!mustRun(pwsh))(`azure-run-command with the script really run by pwsh${pwsh.ok ? '' : ` (skipped: ${pwsh.reason})`}`, { timeout: 300_000 }, () => {
  beforeAll(() => {
    if (!pwsh.ok) throw new Error(pwsh.reason);
    stand.pwsh = PWSH;
    stand.agent = 'real';
  });

  it('exit code 1 with provisioningState Succeeded is exit code 1, not success; the one-shot run command is deleted', async () => {
    stand.agent = 'real';
    stand.provisioningIgnoresExitCode = true;
    const r = await machine().exec({ argv: ['sh', '-c', 'echo half done; echo "Stop-Service: no such service" >&2; exit 1'] });
    expect(r).toMatchObject({ exitCode: 1, stdout: 'half done\n', stderr: 'Stop-Service: no such service\n' });
    const seen = arm.made('GET', RC).filter((g) => g.query.get('$expand') === 'instanceView');
    expect(seen.length).toBeGreaterThan(0);
    const [name] = deletes();
    expect(name).toMatch(/^rubicon-x-/);
    // The platform said Succeeded for the provisioning; only the exit code tells.
    expect(stand.served.filter((x) => x.name === name).at(-1)).toEqual({ name, provisioningState: 'Succeeded', executionState: 'Failed', exitCode: 1 });
    expect(stand.commands.get(name!)).toBeUndefined();
  });

  it('output beyond 4 KB: cut with a marker from the instance view; whole from the append blob (read with a storage token), and a Windows script parsed from it', async () => {
    stand.agent = 'real';
    const big = ['sh', '-c', "head -c 20000 /dev/zero | tr '\\0' x; echo; echo END"];
    const cut = await machine().run({ id: 'r-1/big', idempotent: true }, { argv: big });
    expect(cut.exitCode).toBe(0);
    expect(cut.stdout).toMatch(/^\[rubicon: Run Command kept only the last 4 KB: \d+ of 20005 bytes of stdout arrived; set transport.outputContainer to keep all\]\nx+\nEND\n$/);

    arm.reset();
    stand.commands.clear();
    scopes.length = 0;
    const m = machine({ outputContainer: true, stepsRoot: path.join(base, 'steps', 'r-2') });
    const whole = await m.run({ id: 'r-2/big', idempotent: true }, { argv: big });
    expect(whole.stdout).toBe(`${'x'.repeat(20000)}\nEND\n`);
    const name = AzureRunCommandMachine.runCommandName('r-2/big');
    const put = puts()[0]!.body as { properties: Record<string, unknown> };
    expect(put.properties).toMatchObject({ outputBlobUri: `${arm.baseUrl}/rubicon-out/${name}.out`, errorBlobUri: `${arm.baseUrl}/rubicon-out/${name}.err`, outputBlobManagedIdentity: {} });
    const [blobGet] = arm.made('GET', /\/rubicon-out\//);
    expect(blobGet?.headers['authorization']).toBe(`Bearer ${TOKEN}`);
    expect(scopes).toContain('https://storage.azure.com/.default');

    const root = path.join(base, 'tree');
    for (const [rel, content] of Object.entries({ 'a.txt': 'alpha', 'sub dir/b \u00e9.txt': 'beta', 'empty': '' })) {
      mkdirSync(path.join(root, rel, '..'), { recursive: true });
      writeFileSync(path.join(root, rel), content);
    }
    const { output } = await runWindowsScript<ManifestData>(m, { id: 'r-2/manifest', idempotent: true }, 'manifest', { root });
    const { entries } = manifestEntriesFromOutput(output);
    const walked = await walkAll(root);
    expect(entries.map((e) => e.path)).toEqual(walked.files.map((f) => f.path));
    for (const e of entries) expect(e.sha256).toBe((await hashFile(path.join(root, e.path))).sha256);
  });

  it('a resumed run re-attaches to its run command by name (no second PUT); with the resource gone the machine returns the recorded result; a lost non-idempotent step is STEP_LOST', async () => {
    stand.agent = 'real';
    const marker = path.join(base, 'vendor-ran');
    writeFileSync(marker, '');
    const id = 'r-3/vendor-job';
    const argv = ['sh', '-c', `echo ran >> '${marker}'; sleep 2; echo backup written`];
    const stepsRoot = path.join(base, 'steps', 'r-3');
    // The first orchestrator dies (kill -9) while the step runs: it stops polling and never cleans up.
    let died!: () => void;
    const dead = new Promise<void>((resolve) => (died = resolve));
    void machine({ stepsRoot, sleep: () => (died(), new Promise<void>(() => {})) }).run({ id, idempotent: false }, { argv });
    await dead;
    const name = AzureRunCommandMachine.runCommandName(id);
    expect(puts()).toHaveLength(1);
    expect(stand.commands.get(name)?.done).toBe(false);

    const again = await machine({ stepsRoot }).run({ id, idempotent: false }, { argv });
    expect(again).toMatchObject({ exitCode: 0, stdout: 'backup written\n', reattached: true });
    expect(puts()).toHaveLength(1);
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');

    // The resource was deleted (a cleanup): the step folder on the machine still holds the result.
    stand.commands.delete(name);
    const recorded = await machine({ stepsRoot }).run({ id, idempotent: false }, { argv });
    expect(recorded).toMatchObject({ exitCode: 0, stdout: 'backup written\n', reattached: true });
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');

    // Lost: started, no result recorded, resource gone (a reboot mid-run): never run twice.
    const folder = path.join(stepsRoot, stepFolderName(id));
    rmSync(path.join(folder, 'rc'));
    expect(existsSync(path.join(folder, 'launched'))).toBe(true);
    stand.commands.delete(name);
    const e = await rejection(machine({ stepsRoot }).run({ id, idempotent: false }, { argv }));
    expect(e.code).toBe('STEP_LOST');
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');
  });
});
