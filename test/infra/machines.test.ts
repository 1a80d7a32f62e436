import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import {
  AzureMachinePort,
  azureMachinePortFromEnv,
  envParameterName,
  normalizeArmId,
  parseComputeId,
  psLiteral,
  quoteWindowsArg,
  runCommandScript,
  sameArmId,
  windowsCommandLine,
  type AzureMachinePortOptions,
} from '../../src/infra/azure/machines.ts';
import { ArmStandIn, notFound, type Reply } from './arm-stand-in.ts';
import { assertProperty } from '../support/seed.ts';

const SUB = '0f1e2d3c-0000-4000-8000-000000000001';
const RG = 'rg-ehr';
const PREFIX = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute`;
const VM_ID = `${PREFIX}/virtualMachines/ehr-prd-01`;
const OS_DISK = `${PREFIX}/disks/ehr-prd-01-os`;
const DATA_DISK = `${PREFIX}/disks/ehr-data`;
const TOKEN = 'stand-in-token-1234';

const arm = new ArmStandIn();

beforeAll(async () => {
  await arm.start();
});
afterAll(async () => {
  await arm.stop();
});
afterEach(() => {
  expect(arm.unmatched.map((r) => `${r.method} ${r.path}`)).toEqual([]);
  arm.reset();
});

function port(extra: Partial<AzureMachinePortOptions> = {}): AzureMachinePort {
  return new AzureMachinePort({
    subscriptionId: SUB,
    credential: { getToken: async () => ({ token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 }) },
    endpoint: arm.baseUrl,
    clientOptions: { agent: arm.agent() },
    pollIntervalMs: 5,
    ...extra,
  });
}

async function rejection(p: Promise<unknown>): Promise<RubiconError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RubiconError);
  return e as RubiconError;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const apiVersionOk = (q: URLSearchParams) => /^\d{4}-\d{2}-\d{2}(-preview)?$/.test(q.get('api-version') ?? '');

/** A long-running operation: `Azure-AsyncOperation` status polls, InProgress `pending` times, then `final`. */
function asyncOp(id: string, pending: number, final: { status: string; error?: unknown }): void {
  let polls = 0;
  arm.on('GET', new RegExp(`/operations/${id}$`), () => {
    polls++;
    return { status: 200, body: polls <= pending ? { name: id, status: 'InProgress' } : { name: id, ...final } };
  });
}
function opUrl(id: string): string {
  return `${arm.baseUrl}/subscriptions/${SUB}/providers/Microsoft.Compute/locations/westeurope/operations/${id}?api-version=2026-03-02`;
}

function vmBody(storageProfile: unknown): Reply {
  return { status: 200, body: { id: VM_ID, name: 'ehr-prd-01', type: 'Microsoft.Compute/virtualMachines', location: 'westeurope', properties: { provisioningState: 'Succeeded', storageProfile } } };
}

describe('AzureMachinePort.disksOf (HTTP)', () => {
  it('GETs the VM with a bearer token and returns OS and data disks with normalised ids', async () => {
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () =>
      vmBody({
        // ARM returns disk ids with the resource group in upper case.
        osDisk: { osType: 'Windows', name: 'ehr-prd-01-os', createOption: 'FromImage', managedDisk: { id: `/subscriptions/${SUB.toUpperCase()}/resourceGroups/RG-EHR/providers/Microsoft.Compute/disks/ehr-prd-01-os` } },
        dataDisks: [{ lun: 0, name: 'ehr-data', createOption: 'Attach', managedDisk: { id: `/subscriptions/${SUB}/resourcegroups/rg-ehr/providers/microsoft.compute/disks/ehr-data/` } }],
      }),
    );
    const disks = await port().disksOf(VM_ID);
    expect(disks).toEqual([
      { id: `${PREFIX.replace(RG, 'RG-EHR')}/disks/ehr-prd-01-os`, role: 'os' },
      { id: DATA_DISK, role: 'ehr-data' },
    ]);
    const [get] = arm.made('GET', /virtualMachines\/ehr-prd-01$/);
    expect(get?.path).toBe(VM_ID);
    expect(apiVersionOk(get!.query)).toBe(true);
    expect(get?.headers['authorization']).toBe(`Bearer ${TOKEN}`);
  });

  it('refuses a VM with an unmanaged data disk, naming the disk', async () => {
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () =>
      vmBody({ osDisk: { createOption: 'FromImage', managedDisk: { id: OS_DISK } }, dataDisks: [{ lun: 2, name: 'legacy-vhd', createOption: 'Attach', vhd: { uri: 'https://x.blob.core.windows.net/vhds/a.vhd' } }] }),
    );
    const e = await rejection(port().disksOf(VM_ID));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('legacy-vhd');
  });

  it('refuses a VM id of another subscription before calling ARM', async () => {
    const e = await rejection(port().disksOf(VM_ID.replace(SUB, '11111111-2222-3333-4444-555555555555')));
    expect(e.code).toBe('ARGUMENTS_INVALID');
    expect(arm.requests).toEqual([]);
  });
});

describe('AzureMachinePort snapshots (HTTP)', () => {
  const SNAP = 'rubicon-run1-os';
  const SNAP_PATH = `${PREFIX}/snapshots/${SNAP}`;
  const snapshotResource = (source: string, provisioningState = 'Succeeded') => ({
    id: SNAP_PATH,
    name: SNAP,
    type: 'Microsoft.Compute/snapshots',
    location: 'westeurope',
    tags: { 'rubicon-run': 'run1' },
    properties: { incremental: true, provisioningState, creationData: { createOption: 'Copy', sourceResourceId: source } },
  });

  it('creates an incremental Copy snapshot through the long-running PUT when none exists', async () => {
    let created = false;
    arm.on('GET', new RegExp(`${esc(SNAP_PATH)}$`), () => (created ? { status: 200, body: snapshotResource(OS_DISK) } : notFound(`Microsoft.Compute/snapshots/${SNAP}`)));
    arm.on('GET', new RegExp(`${esc(OS_DISK)}$`), () => ({ status: 200, body: { id: OS_DISK, name: 'ehr-prd-01-os', location: 'westeurope', properties: { diskSizeGB: 128 } } }));
    arm.on('PUT', new RegExp(`${esc(SNAP_PATH)}$`), () => {
      created = true;
      return { status: 201, headers: { 'azure-asyncoperation': opUrl('snap-op-1') }, body: snapshotResource(OS_DISK, 'Updating') };
    });
    asyncOp('snap-op-1', 2, { status: 'Succeeded' });

    const out = await port().snapshotDisk({ id: OS_DISK, role: 'os' }, SNAP, { 'rubicon-run': 'run1', 'rubicon-role': 'rollback' });
    expect(out).toEqual({ id: SNAP_PATH });

    const puts = arm.made('PUT', /snapshots\//);
    expect(puts).toHaveLength(1);
    const put = puts[0]!;
    expect(put.path).toBe(SNAP_PATH);
    expect(apiVersionOk(put.query)).toBe(true);
    expect(put.body).toMatchObject({
      location: 'westeurope',
      tags: { 'rubicon-run': 'run1', 'rubicon-role': 'rollback' },
      properties: { incremental: true, creationData: { createOption: 'Copy', sourceResourceId: OS_DISK } },
    });
    // The poller really followed the operation: 3 status polls (2 InProgress, then Succeeded).
    expect(arm.made('GET', /operations\/snap-op-1$/)).toHaveLength(3);
    // GET snapshot (404) came before the PUT.
    const order = arm.requests.map((r) => `${r.method} ${r.path.split('/').slice(-2).join('/')}`);
    expect(order.indexOf(`GET snapshots/${SNAP}`)).toBeLessThan(order.indexOf(`PUT snapshots/${SNAP}`));
  });

  it('is idempotent: a finished snapshot of the same source (any id casing) is returned without a PUT', async () => {
    arm.on('GET', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 200, body: snapshotResource(OS_DISK.toUpperCase()) }));
    const out = await port().snapshotDisk({ id: OS_DISK, role: 'os' }, SNAP, {});
    expect(out).toEqual({ id: SNAP_PATH });
    expect(arm.made('PUT', /./)).toEqual([]);
    expect(arm.requests).toHaveLength(1);
  });

  it('PUTs again (same body) when the existing snapshot of that source is unfinished', async () => {
    let state = 'Creating';
    arm.on('GET', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 200, body: snapshotResource(OS_DISK, state) }));
    arm.on('PUT', new RegExp(`${esc(SNAP_PATH)}$`), () => {
      state = 'Succeeded';
      return { status: 200, body: snapshotResource(OS_DISK) };
    });
    const out = await port().snapshotDisk({ id: OS_DISK, role: 'os' }, SNAP, {});
    expect(out).toEqual({ id: SNAP_PATH });
    expect(arm.made('PUT', /./)).toHaveLength(1);
    expect(arm.made('GET', /\/disks\//)).toEqual([]); // location came from the existing snapshot
  });

  it('refuses a same-named snapshot of a different disk, naming both sources, and changes nothing', async () => {
    arm.on('GET', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 200, body: snapshotResource(DATA_DISK) }));
    const e = await rejection(port().snapshotDisk({ id: OS_DISK, role: 'os' }, SNAP, {}));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain(DATA_DISK);
    expect(e.message).toContain(OS_DISK);
    expect(e.message).toContain(SNAP);
    expect(arm.made('PUT', /./)).toEqual([]);
  });

  it('turns a failed snapshot operation into INFRA_FAILED naming the snapshot', async () => {
    arm.on('GET', new RegExp(`${esc(SNAP_PATH)}$`), () => notFound(SNAP));
    arm.on('GET', new RegExp(`${esc(OS_DISK)}$`), () => ({ status: 200, body: { id: OS_DISK, location: 'westeurope', properties: {} } }));
    arm.on('PUT', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 201, headers: { 'azure-asyncoperation': opUrl('snap-op-2') }, body: snapshotResource(OS_DISK, 'Updating') }));
    asyncOp('snap-op-2', 0, { status: 'Failed', error: { code: 'OperationNotAllowed', message: 'Quota exceeded for snapshots.' } });
    const e = await rejection(port().snapshotDisk({ id: OS_DISK, role: 'os' }, SNAP, {}));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain(`Snapshot ${SNAP}`);
  });

  it('deleteSnapshot DELETEs and follows the operation; a 404 is fine; a 409 is INFRA_FAILED', async () => {
    arm.on('DELETE', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 202, headers: { location: `${arm.baseUrl}${PREFIX}/locations/westeurope/operationResults/del-1?api-version=2026-03-02` } }));
    let polls = 0;
    arm.on('GET', /operationResults\/del-1$/, () => (++polls < 2 ? { status: 202, headers: { location: `${arm.baseUrl}${PREFIX}/locations/westeurope/operationResults/del-1?api-version=2026-03-02` } } : { status: 200 }));
    await port().deleteSnapshot(SNAP_PATH);
    const [del] = arm.made('DELETE', /./);
    expect(del?.path).toBe(SNAP_PATH);
    expect(apiVersionOk(del!.query)).toBe(true);
    expect(polls).toBe(2);

    arm.reset();
    arm.on('DELETE', new RegExp(`${esc(SNAP_PATH)}$`), () => notFound(SNAP));
    await expect(port().deleteSnapshot(SNAP_PATH)).resolves.toBeUndefined();
    expect(arm.made('DELETE', /./)).toHaveLength(1);

    arm.reset();
    arm.on('DELETE', new RegExp(`${esc(SNAP_PATH)}$`), () => ({ status: 409, body: { error: { code: 'ScopeLocked', message: 'The scope is locked.' } } }));
    const e = await rejection(port().deleteSnapshot(SNAP_PATH));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain(SNAP);
    expect(e.message).toContain('ScopeLocked');
  });
});

describe('AzureMachinePort.waitForVmAgent (HTTP, injected clock)', () => {
  const notReady = { code: 'ProvisioningState/Unavailable', level: 'Warning', displayStatus: 'Not Ready', message: 'VM Agent is unresponsive.' };
  const ready = { code: 'ProvisioningState/succeeded', level: 'Info', displayStatus: 'Ready', message: 'GuestAgent is running and processing the extensions.' };
  const view = (statuses: unknown[]) => ({ status: 200, body: { computerName: 'ehr-prd-01', vmAgent: { vmAgentVersion: '2.7.41491.1102', statuses }, statuses: [{ code: 'PowerState/running' }] } });

  function clock() {
    let t = 1_000_000;
    const sleeps: number[] = [];
    return { sleeps, now: () => t, sleep: async (ms: number) => void (sleeps.push(ms), (t += ms)) };
  }

  it('polls instanceView until the agent is Ready, with growing delays', async () => {
    let n = 0;
    arm.on('GET', new RegExp(`${esc(VM_ID)}/instanceView$`), () => (++n < 3 ? view(n === 1 ? [] : [notReady]) : view([ready])));
    const c = clock();
    await port({ pollIntervalMs: 1000, now: c.now, sleep: c.sleep }).waitForVmAgent(VM_ID, 60_000);
    expect(n).toBe(3);
    expect(c.sleeps).toEqual([1000, 1500]);
    const gets = arm.made('GET', /instanceView$/);
    expect(gets.every((g) => apiVersionOk(g.query))).toBe(true);
  });

  it('gives up after timeoutMs naming the VM and the last status, never sleeping past the deadline', async () => {
    arm.on('GET', new RegExp(`${esc(VM_ID)}/instanceView$`), () => view([notReady]));
    const c = clock();
    const e = await rejection(port({ pollIntervalMs: 2000, maxPollIntervalMs: 4000, now: c.now, sleep: c.sleep }).waitForVmAgent(VM_ID, 10_000));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('ehr-prd-01');
    expect(e.message).toContain('ProvisioningState/Unavailable (Not Ready): VM Agent is unresponsive.');
    expect(c.sleeps).toEqual([2000, 3000, 4000, 1000]);
    expect(arm.made('GET', /instanceView$/)).toHaveLength(5);
  });

  it('fails at once when the VM does not exist', async () => {
    arm.on('GET', new RegExp(`${esc(VM_ID)}/instanceView$`), () => notFound('Microsoft.Compute/virtualMachines/ehr-prd-01'));
    const c = clock();
    const e = await rejection(port({ now: c.now, sleep: c.sleep }).waitForVmAgent(VM_ID, 60_000));
    expect(e.message).toContain('does not exist');
    expect(c.sleeps).toEqual([]);
  });
});

describe('AzureMachinePort.hostFor: managed Run Command (HTTP)', () => {
  const RC = new RegExp(`^${esc(VM_ID)}/runCommands/(rubicon-[a-z0-9]+-[0-9a-f]{8})$`);

  /** Serves the VM, a run-command PUT (LRO ending `opFinal`), its GET and its DELETE. */
  function runCommandArm(opts: { instanceView?: unknown; opFinal?: { status: string; error?: unknown }; opPending?: number }) {
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () => vmBody({}));
    let putBody: Record<string, unknown> | undefined;
    arm.on('PUT', RC, (req) => {
      putBody = (req.body as { properties: Record<string, unknown> }).properties;
      return { status: 201, headers: { 'azure-asyncoperation': opUrl('rc-op') }, body: { id: req.path, name: req.path.split('/').pop(), location: 'westeurope', properties: { ...putBody, provisioningState: 'Creating' } } };
    });
    asyncOp('rc-op', opts.opPending ?? 1, opts.opFinal ?? { status: 'Succeeded' });
    arm.on('GET', RC, (req) => ({
      status: 200,
      body: { id: req.path, location: 'westeurope', properties: { ...putBody, provisioningState: 'Succeeded', ...(req.query.get('$expand') === 'instanceView' ? { instanceView: opts.instanceView } : {}) } },
    }));
    arm.on('DELETE', RC, () => ({ status: 200 }));
    return { put: () => putBody };
  }

  it('returns a non-zero exit as a CommandResult (not thrown), then deletes the run command', async () => {
    const served = runCommandArm({ instanceView: { executionState: 'Failed', exitCode: 3, output: 'half done\n', error: 'Stop-Service: no such service\n', executionMessage: '' } });
    const host = port().hostFor(VM_ID, 'ehr-prd-01');
    expect(host.kind).toBe('azure-run-command');
    const r = await host.exec('powershell.exe', ['-NoProfile', '-Command', "Stop-Service -Name 'EHR App'"], { env: { SQL_PASSWORD: 'Pa$$w0rd-not-in-script' }, timeoutMs: 120_000 });
    expect(r).toMatchObject({ command: 'powershell.exe', exitCode: 3, stdout: 'half done\n', stderr: 'Stop-Service: no such service\n' });

    const [put] = arm.made('PUT', RC);
    const name = RC.exec(put!.path)![1];
    expect(apiVersionOk(put!.query)).toBe(true);
    const body = served.put()!;
    expect(body).toMatchObject({ asyncExecution: false, timeoutInSeconds: 120, treatFailureAsDeploymentFailure: false });
    expect((put!.body as { location: string }).location).toBe('westeurope');
    const script = (body['source'] as { script: string }).script;
    expect(script).toBe(runCommandScript('powershell.exe', ['-NoProfile', '-Command', "Stop-Service -Name 'EHR App'"], { envNames: ['SQL_PASSWORD'] }));
    // The secret travels only as a protected parameter, base64.
    expect(JSON.stringify(body['source'])).not.toContain('Pa$$w0rd');
    expect(body['protectedParameters']).toEqual([{ name: envParameterName(0), value: Buffer.from('Pa$$w0rd-not-in-script').toString('base64') }]);
    expect(body['parameters']).toBeUndefined();

    const [get] = arm.made('GET', RC).filter((g) => g.query.get('$expand') === 'instanceView');
    expect(get?.path).toBe(put!.path);
    const dels = arm.made('DELETE', RC);
    expect(dels.map((d) => d.path)).toEqual([`${VM_ID}/runCommands/${name}`]);
  });

  it('returns exit 0 with output on success', async () => {
    runCommandArm({ instanceView: { executionState: 'Succeeded', exitCode: 0, output: 'ok\r\n', error: '' } });
    const r = await port().hostFor(VM_ID, 'pg').exec('robocopy.exe', ['D:\\ehr', '\\\\vault\\share\\ehr', '/MIR']);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'ok\r\n', stderr: '' });
    expect(arm.made('DELETE', RC)).toHaveLength(1);
  });

  it('throws INFRA_FAILED "outcome unknown" when the platform fails the run, and still deletes it', async () => {
    runCommandArm({ opFinal: { status: 'Failed', error: { code: 'VMAgentStatusCommunicationError', message: 'VM has reported a failure when processing extension.' } } });
    const e = await rejection(port().hostFor(VM_ID, 'pg').exec('cmd.exe', ['/c', 'exit 0'], { env: { TOKEN: 'sekret-value' } }));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('ehr-prd-01');
    expect(e.hint).toContain('outcome is unknown');
    expect(`${e.message} ${e.hint}`).not.toContain('sekret-value');
    expect(arm.made('DELETE', RC)).toHaveLength(1);
  });

  it('throws INFRA_FAILED when the execution state is TimedOut (no exit code to trust)', async () => {
    runCommandArm({ instanceView: { executionState: 'TimedOut', executionMessage: 'Execution timed out after 60 seconds.', output: '' } });
    const e = await rejection(port().hostFor(VM_ID, 'pg').exec('sqlcmd.exe', ['-Q', 'BACKUP ...'], { timeoutMs: 60_000 }));
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain('TimedOut');
    expect(e.hint).toContain('outcome is unknown');
    expect(arm.made('DELETE', RC)).toHaveLength(1);
  });

  it('stops waiting at its own deadline (timeout + grace) when ARM never finishes', async () => {
    runCommandArm({ opPending: Number.POSITIVE_INFINITY });
    const e = await rejection(port({ runCommandGraceMs: 300, pollIntervalMs: 50 }).hostFor(VM_ID, 'pg').exec('powershell.exe', ['-Command', 'Start-Sleep 9999'], { timeoutMs: 700 }));
    // The message says the port's own deadline ended the wait (a wait that never ended would hit the test's timeout).
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toMatch(/did not finish within 1 s/);
    expect(arm.made('DELETE', RC)).toHaveLength(1);
  });

  it('resolve() refuses: an Azure VM has no local files', () => {
    expect(() => port().hostFor(VM_ID, 'pg').resolve('ehr/A')).toThrow(/no local files/);
  });
});

describe('azureMachinePortFromEnv', () => {
  it('names the missing AZURE_SUBSCRIPTION_ID', () => {
    let err: unknown;
    try {
      azureMachinePortFromEnv({});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RubiconError);
    expect((err as RubiconError).code).toBe('INFRA_FAILED');
    expect((err as RubiconError).message).toContain('AZURE_SUBSCRIPTION_ID');
  });

  it('builds a port when it is set (no network until used)', () => {
    expect(azureMachinePortFromEnv({ AZURE_SUBSCRIPTION_ID: SUB })).toBeInstanceOf(AzureMachinePort);
  });
});

/**
 * An independent implementation of the documented Windows argv parsing
 * (CommandLineToArgvW / MSVCRT, "Parsing C++ command-line arguments"), used to
 * check that quoteWindowsArg round-trips every string.
 */
function parseWindowsArgs(cmd: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < cmd.length) {
    while (cmd[i] === ' ' || cmd[i] === '\t') i++;
    if (i >= cmd.length) break;
    let cur = '';
    let inQuotes = false;
    while (i < cmd.length && (inQuotes || (cmd[i] !== ' ' && cmd[i] !== '\t'))) {
      let bs = 0;
      while (cmd[i] === '\\') {
        bs++;
        i++;
      }
      if (cmd[i] === '"') {
        cur += '\\'.repeat(Math.floor(bs / 2));
        if (bs % 2 === 1) {
          cur += '"';
        } else if (inQuotes && cmd[i + 1] === '"') {
          cur += '"';
          i++;
        } else {
          inQuotes = !inQuotes;
        }
        i++;
      } else {
        cur += '\\'.repeat(bs);
        if (i < cmd.length && (inQuotes || (cmd[i] !== ' ' && cmd[i] !== '\t'))) cur += cmd[i++];
      }
    }
    args.push(cur);
  }
  return args;
}

describe('pure helpers', () => {
  it('quoteWindowsArg: table', () => {
    expect(quoteWindowsArg('plain')).toBe('plain');
    expect(quoteWindowsArg('')).toBe('""');
    expect(quoteWindowsArg('a b')).toBe('"a b"');
    expect(quoteWindowsArg('say "hi"')).toBe('"say \\"hi\\""');
    expect(quoteWindowsArg('C:\\dir with space\\')).toBe('"C:\\dir with space\\\\"');
    expect(quoteWindowsArg('C:\\no\\space\\')).toBe('C:\\no\\space\\');
    expect(windowsCommandLine(['-Command', "Stop-Service -Name 'EHR App'"])).toBe("-Command \"Stop-Service -Name 'EHR App'\"");
  });

  it('quoteWindowsArg round-trips any arguments through the Windows parsing rules', () => {
    const arg = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', '\t', '"', '\\', "'", 'é', '/', '&') });
    assertProperty(fc.property(fc.array(arg, { maxLength: 6 }), (args) => {
      expect(parseWindowsArgs(windowsCommandLine(args))).toEqual(args);
    }), { numRuns: 500 });
  });

  it('psLiteral doubles ASCII and typographic single quotes', () => {
    expect(psLiteral("it's")).toBe("'it''s'");
    expect(psLiteral('a\u2019b')).toBe("'a\u2019\u2019b'");
    expect(psLiteral('$(rm -r C:\\)')).toBe("'$(rm -r C:\\)'");
  });

  it('runCommandScript: ASCII, values only as base64 literals, exit code passed through', () => {
    const s = runCommandScript('C:\\Program Files\\x.exe', ["it's", 'ünï', '$(evil)'], { cwd: 'D:\\ehr', envNames: ['A_B'] });
    expect(/^[\x20-\x7e\r\n]*$/.test(s)).toBe(true);
    expect(s).not.toContain('evil');
    expect(s).toContain(Buffer.from(windowsCommandLine(["it's", 'ünï', '$(evil)'])).toString('base64'));
    expect(s.startsWith(`param([string]$${envParameterName(0)})`)).toBe(true);
    expect(s).toContain('exit $p.ExitCode');
    expect(runCommandScript('x.exe', [])).not.toContain('param(');
  });

  it('ARM ids: parse, normalise, compare case-insensitively', () => {
    expect(parseComputeId(`/SUBSCRIPTIONS/${SUB}/RESOURCEGROUPS/RG-EHR/PROVIDERS/MICROSOFT.COMPUTE/DISKS/d1`)).toEqual({ subscriptionId: SUB, resourceGroup: 'RG-EHR', type: 'disks', name: 'd1' });
    expect(parseComputeId(`/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/n`)).toBeUndefined();
    expect(normalizeArmId(`/subscriptions/${SUB.toUpperCase()}/resourcegroups/rg-ehr/providers/microsoft.compute/virtualmachines/ehr-prd-01/`)).toBe(VM_ID);
    expect(sameArmId(OS_DISK, OS_DISK.toUpperCase())).toBe(true);
    expect(sameArmId(OS_DISK, DATA_DISK)).toBe(false);
  });
});
