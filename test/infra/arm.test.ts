import { ComputeManagementClient } from '@azure/arm-compute';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { AzureArmPort, LOCK_NAME, azureArmPortFromEnv } from '../../src/infra/azure/arm.ts';
import { ArmStandIn, notFound, type RecordedRequest, type Reply } from './arm-stand-in.ts';

/**
 * The ARM port over HTTPS against the stand-in, through the real SDK
 * pipelines (@azure/arm-locks and @azure/arm-compute). The stand-in enforces
 * management locks the way ARM documents them: a DELETE of a resource, or of
 * anything under it (a child such as a run command), is refused with
 * 409 ScopeLocked while a CanNotDelete lock exists at that scope
 * (https://learn.microsoft.com/azure/azure-resource-manager/management/lock-resources,
 * "Lock inheritance"). Response bodies are hand-written in ARM's documented
 * shapes (Microsoft.Authorization/locks 2020-05-01, Microsoft.Compute).
 */

const SUB = '0f1e2d3c-0000-4000-8000-000000000002';
const RG = 'rg-ehr';
const PREFIX = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Compute`;
const VM_ID = `${PREFIX}/virtualMachines/ehr-prd-01`;
const OS_DISK = `${PREFIX}/disks/ehr-prd-01_OsDisk_1_aaaa`;
const DATA_DISK = `${PREFIX}/disks/ehr-prd-01-sqldata`;
const TOKEN = 'stand-in-token-locks';

const arm = new ArmStandIn();
/** Lock scopes (lower-case resource ids) the stand-in holds. */
const locks = new Map<string, { level: string; notes: string }>();

beforeAll(async () => {
  await arm.start();
});
afterAll(async () => {
  await arm.stop();
});
afterEach(() => {
  expect(arm.unmatched.map((r) => `${r.method} ${r.path}`)).toEqual([]);
  arm.reset();
  locks.clear();
});

const credential = { getToken: async () => ({ token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 }) };

function port(): AzureArmPort {
  return new AzureArmPort({ subscriptionId: SUB, credential, endpoint: arm.baseUrl, clientOptions: { agent: arm.agent() }, pollIntervalMs: 5 });
}

const LOCK_PATH = /^(.*)\/providers\/Microsoft\.Authorization\/locks\/([^/]+)$/;

function scopeLocked(path: string): Reply | undefined {
  const p = path.toLowerCase();
  for (const scope of locks.keys()) {
    if (p === scope || p.startsWith(`${scope}/`)) {
      return {
        status: 409,
        body: { error: { code: 'ScopeLocked', message: `The scope '${path}' cannot perform delete operation because following scope(s) are locked: '${scope}'. Please remove the lock and try again.` } },
      };
    }
  }
  return undefined;
}

/** The locks API and lock enforcement, as ARM does them. */
function lockRoutes(): void {
  arm.on('PUT', LOCK_PATH, (req) => {
    const [, scope, name] = LOCK_PATH.exec(req.path)!;
    const body = req.body as { properties: { level: string; notes: string } };
    locks.set(scope!.toLowerCase(), body.properties);
    return { status: 200, body: { id: req.path, type: 'Microsoft.Authorization/locks', name, properties: body.properties } };
  });
  arm.on('GET', LOCK_PATH, (req) => {
    const [, scope, name] = LOCK_PATH.exec(req.path)!;
    const l = locks.get(scope!.toLowerCase());
    return l ? { status: 200, body: { id: req.path, name, properties: l } } : { status: 404, body: { error: { code: 'LockNotFound', message: `The lock '${name}' could not be found.` } } };
  });
  arm.on('DELETE', LOCK_PATH, (req) => {
    const [, scope] = LOCK_PATH.exec(req.path)!;
    return locks.delete(scope!.toLowerCase()) ? { status: 200 } : { status: 204 };
  });
}

const vm = (osDisk: unknown, extra: Record<string, unknown> = {}): Reply => ({
  status: 200,
  body: {
    id: VM_ID,
    name: 'ehr-prd-01',
    location: 'westeurope',
    properties: {
      vmId: '6f2c1a9e-8a51-4f0b-9c55-5b8a1d0e7c3a',
      provisioningState: 'Succeeded',
      storageProfile: { osDisk, dataDisks: [{ lun: 0, name: 'ehr-prd-01-sqldata', createOption: 'Attach', managedDisk: { id: DATA_DISK } }], ...extra },
    },
  },
});

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('AzureArmPort locks (HTTP)', () => {
  it('PUTs a CanNotDelete lock named rubicon-guard at the resource scope, reads it back, and removes it', async () => {
    lockRoutes();
    await port().lock(VM_ID, 'Rubicon: ehr-prd-01 may not be deleted');
    const [put] = arm.made('PUT', LOCK_PATH);
    expect(put?.path).toBe(`${VM_ID}/providers/Microsoft.Authorization/locks/${LOCK_NAME}`);
    expect(put?.query.get('api-version')).toBe('2020-05-01');
    expect(put?.headers['authorization']).toBe(`Bearer ${TOKEN}`);
    expect(put?.body).toEqual({ properties: { level: 'CanNotDelete', notes: 'Rubicon: ehr-prd-01 may not be deleted' } });
    expect(await port().isLocked(VM_ID)).toBe(true);
    await port().unlock(VM_ID);
    expect(await port().isLocked(VM_ID)).toBe(false);
    await port().unlock(VM_ID); // idempotent
  });

  // Bypass 2: `pulumi destroy --ignore-protect` does not run the program; the lock is what ARM enforces.
  it('a locked VM cannot be deleted by anyone else (what a plain pulumi destroy/--ignore-protect would do), nor its run commands; unlocked it can', async () => {
    lockRoutes();
    let deleted = 0;
    arm.on('DELETE', /virtualMachines\/ehr-prd-01(\/runCommands\/[^/]+)?$/, (req: RecordedRequest) => scopeLocked(req.path) ?? (deleted++, { status: 200 }));
    await port().lock(VM_ID, 'x');
    // The engineer's tooling: the same SDK any provider uses, with its own credential.
    const engineer = new ComputeManagementClient(credential, SUB, { endpoint: arm.baseUrl, agent: arm.agent(), retryOptions: { maxRetries: 0 } });
    const refused = await engineer.virtualMachines
      .delete(RG, 'ehr-prd-01', { updateIntervalInMs: 5 })
      .pollUntilDone()
      .then(
        () => undefined,
        (e: unknown) => e as { statusCode?: number; code?: string },
      );
    expect(refused?.statusCode).toBe(409);
    expect(refused?.code).toBe('ScopeLocked');
    const child = await engineer.virtualMachineRunCommands
      .delete(RG, 'ehr-prd-01', 'rubicon-x', { updateIntervalInMs: 5 })
      .pollUntilDone()
      .then(
        () => 'deleted',
        (e: unknown) => (e as { code?: string }).code,
      );
    expect(child).toBe('ScopeLocked');
    expect(deleted).toBe(0);
    await port().unlock(VM_ID);
    await engineer.virtualMachines.delete(RG, 'ehr-prd-01', { updateIntervalInMs: 5 }).pollUntilDone();
    expect(deleted).toBe(1);
  });

  it('a lock that cannot be placed is INFRA_FAILED naming the resource and the permission', async () => {
    arm.on('PUT', LOCK_PATH, () => ({ status: 403, body: { error: { code: 'AuthorizationFailed', message: "The client does not have authorization to perform action 'Microsoft.Authorization/locks/write'." } } }));
    const e = (await port().lock(VM_ID, 'x').then(() => undefined, (x: unknown) => x)) as RubiconError;
    expect(e).toBeInstanceOf(RubiconError);
    expect(e.code).toBe('INFRA_FAILED');
    expect(e.message).toContain(VM_ID);
    expect(e.hint).toContain('Microsoft.Authorization/locks/write');
  });
});

describe('AzureArmPort VM and disk facts (HTTP)', () => {
  it('describes a VM: unique id, image, OS and data disks; undefined when absent', async () => {
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () =>
      vm({ createOption: 'FromImage', managedDisk: { id: OS_DISK } }, { imageReference: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest', exactVersion: '26100.1' } }),
    );
    expect(await port().describeVm(VM_ID)).toEqual({
      id: VM_ID,
      uniqueId: '6f2c1a9e-8a51-4f0b-9c55-5b8a1d0e7c3a',
      image: 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest',
      osDiskId: OS_DISK,
      dataDiskIds: [DATA_DISK],
    });
    arm.reset();
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () => vm({ createOption: 'Attach', osType: 'Windows', managedDisk: { id: OS_DISK } }));
    expect((await port().describeVm(VM_ID))?.image).toBe(`disk:${OS_DISK.toLowerCase()}`);
    arm.reset();
    arm.on('GET', new RegExp(`${esc(VM_ID)}$`), () => notFound('Microsoft.Compute/virtualMachines/ehr-prd-01'));
    expect(await port().describeVm(VM_ID)).toBeUndefined();
  });

  it('tags a disk by merging (GET then PATCH), and deletes one; a locked disk is refused with ScopeLocked named', async () => {
    lockRoutes();
    let tags: Record<string, string> = { keep: 'me' };
    arm.on('GET', new RegExp(`${esc(OS_DISK)}$`), () => ({ status: 200, body: { id: OS_DISK, name: 'ehr-prd-01_OsDisk_1_aaaa', location: 'westeurope', tags, properties: { diskState: 'Unattached' } } }));
    arm.on('PATCH', new RegExp(`${esc(OS_DISK)}$`), (req) => {
      tags = (req.body as { tags: Record<string, string> }).tags;
      return { status: 200, body: { id: OS_DISK, location: 'westeurope', tags, properties: {} } };
    });
    arm.on('DELETE', new RegExp(`${esc(OS_DISK)}$`), (req) => scopeLocked(req.path) ?? { status: 200 });
    await port().tagDisk(OS_DISK, { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' });
    expect(tags).toEqual({ keep: 'me', 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' });
    expect(await port().describeDisk(OS_DISK)).toEqual({ id: OS_DISK, tags });
    await port().lock(OS_DISK, 'x');
    const e = (await port().deleteDisk(OS_DISK).then(() => undefined, (x: unknown) => x)) as RubiconError;
    expect(e.message).toContain('ScopeLocked');
    await port().unlock(OS_DISK);
    await port().deleteDisk(OS_DISK);
  });

  it('lists the rollback assets Rubicon tagged, and makes a disk from a snapshot (idempotent by name)', async () => {
    const SNAP = `${PREFIX}/snapshots/rubicon-run-7-os`;
    arm.on('GET', new RegExp(`/resourceGroups/${RG}/providers/Microsoft\\.Compute/snapshots$`), () => ({
      status: 200,
      body: {
        value: [
          { id: SNAP, name: 'rubicon-run-7-os', location: 'westeurope', tags: { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback', 'rubicon-disk': 'os' }, properties: { timeCreated: '2026-03-01T09:00:00Z' } },
          { id: `${PREFIX}/snapshots/other`, name: 'other', location: 'westeurope', tags: {}, properties: {} },
        ],
      },
    }));
    arm.on('GET', new RegExp(`/resourceGroups/${RG}/providers/Microsoft\\.Compute/disks$`), () => ({
      status: 200,
      body: { value: [{ id: OS_DISK, name: 'x', location: 'westeurope', tags: { 'rubicon-run': 'run-7', 'rubicon-role': 'rollback-os-disk' }, properties: {} }] },
    }));
    expect(await port().listRollbackAssets(RG)).toEqual([
      { id: SNAP, kind: 'snapshot', runId: 'run-7', role: 'rollback', disk: 'os', createdAt: '2026-03-01T09:00:00.000Z' },
      { id: OS_DISK, kind: 'disk', runId: 'run-7', role: 'rollback-os-disk' },
    ]);
    arm.reset();
    const NEW = `${PREFIX}/disks/ehr-prd-01-os-rollback-run-7`;
    let made = false;
    arm.on('GET', new RegExp(`${esc(NEW)}$`), () => (made ? { status: 200, body: { id: NEW, location: 'westeurope', properties: { creationData: { createOption: 'Copy', sourceResourceId: SNAP } } } } : notFound('disk')));
    arm.on('GET', new RegExp(`${esc(SNAP)}$`), () => ({ status: 200, body: { id: SNAP, location: 'westeurope', properties: {} } }));
    arm.on('PUT', new RegExp(`${esc(NEW)}$`), (req) => {
      made = true;
      expect(req.body).toMatchObject({ location: 'westeurope', tags: { 'rubicon-run': 'run-7' }, properties: { creationData: { createOption: 'Copy', sourceResourceId: SNAP } } });
      return { status: 200, body: { id: NEW, location: 'westeurope', properties: { provisioningState: 'Succeeded' } } };
    });
    expect(await port().createDiskFromSnapshot(SNAP, 'ehr-prd-01-os-rollback-run-7', { 'rubicon-run': 'run-7' })).toBe(NEW);
    expect(await port().createDiskFromSnapshot(SNAP, 'ehr-prd-01-os-rollback-run-7', { 'rubicon-run': 'run-7' })).toBe(NEW);
    expect(arm.made('PUT', /disks\//)).toHaveLength(1);
  });

  it('azureArmPortFromEnv names the missing subscription variable', () => {
    expect(() => azureArmPortFromEnv({})).toThrow(/AZURE_SUBSCRIPTION_ID is not set/);
  });
});
