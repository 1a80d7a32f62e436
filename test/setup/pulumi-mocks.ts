import { createHash } from 'node:crypto';
import * as pulumi from '@pulumi/pulumi';

/**
 * Vitest setup file for test/infra/**: installs Pulumi's mock monitor
 * before any test module (and so any program module) loads. Programs must
 * be free of import-time side effects; tests construct components or call
 * `rubiconInfra` themselves.
 *
 * The mocks act like a tiny Azure: every resource gets an ARM-shaped id, its
 * inputs come back as its state, and `name` is the Azure name the program
 * asked for. Every registration is recorded in `registered` so tests can ask
 * "is there any PublicIPAddress at all?".
 */

export const SUBSCRIPTION = '3c5a1d7e-2b9f-4e61-8d0a-5b7c9e1f2a34';

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  id: string;
}

export const registered: Registered[] = [];

/** Answers for invokes (data-source reads) by token; unanswered invokes echo their inputs. */
export const invokeAnswers = new Map<string, (inputs: Record<string, unknown>) => Record<string, unknown>>();

const NAME_KEYS = [
  'vmName',
  'accountName',
  'containerName',
  'diskName',
  'networkInterfaceName',
  'networkSecurityGroupName',
  'virtualNetworkName',
  'subnetName',
  'vaultName',
  'resourceName',
  'immutabilityPolicyName',
  'blobServicesName',
];

function azureName(type: string, name: string, inputs: Record<string, unknown>): string {
  if (type === 'azure-native:resources:ResourceGroup') return String(inputs['resourceGroupName'] ?? name);
  if (type === 'azure-native:network:Subnet') return String(inputs['subnetName'] ?? name);
  if (type === 'azure-native:storage:BlobContainer') return String(inputs['containerName'] ?? name);
  for (const k of NAME_KEYS) if (typeof inputs[k] === 'string') return inputs[k] as string;
  if (typeof inputs['name'] === 'string') return inputs['name'] as string;
  return name;
}

function armId(type: string, name: string, inputs: Record<string, unknown>): string {
  const [, module = 'x', kind = 'x'] = type.split(':');
  const rg = typeof inputs['resourceGroupName'] === 'string' ? inputs['resourceGroupName'] : 'rg-test';
  if (type === 'azure-native:storage:BlobContainer') {
    return `/subscriptions/${SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.Storage/storageAccounts/${String(inputs['accountName'])}/blobServices/default/containers/${azureName(type, name, inputs)}`;
  }
  return `/subscriptions/${SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.${module}/${kind}/${azureName(type, name, inputs)}`;
}

function mockGuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

await pulumi.runtime.setMocks(
  {
    newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
      const inputs = args.inputs as Record<string, unknown>;
      const id = args.id || armId(args.type, args.name, inputs);
      registered.push({ type: args.type, name: args.name, inputs, id });
      const state: Record<string, unknown> = { ...inputs, name: azureName(args.type, args.name, inputs) };
      if (args.type === 'azure-native:managedidentity:UserAssignedIdentity') state['principalId'] = `principal-of-${args.name}`;
      // ARM's properties.vmId: a GUID per VM created (derived from the name here, so tests are stable).
      if (args.type === 'azure-native:compute:VirtualMachine') state['vmId'] = mockGuid(`${args.name}:${JSON.stringify(inputs['storageProfile'] ?? {})}`);
      if (args.type === 'azure-native:storage:StorageAccount') state['primaryEndpoints'] = { blob: `https://${String(inputs['accountName'])}.blob.core.windows.net/` };
      if (args.type === 'azure-native:keyvault:Vault') {
        state['properties'] = { ...(inputs['properties'] as object), vaultUri: `https://${String(inputs['vaultName'])}.vault.azure.net/` };
      }
      return { id, state };
    },
    call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
      const answer = invokeAnswers.get(args.token);
      return answer ? answer(args.inputs as Record<string, unknown>) : (args.inputs as Record<string, unknown>);
    },
  },
  'rubicon',
  'test',
  false,
);

/** Resolves an Output's value (mocks run with preview=false, so every output resolves). */
export function promiseOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** Waits until every resource is registered, i.e. the mocks saw all of them. */
export async function settled(resources: pulumi.Resource[]): Promise<void> {
  await Promise.all(resources.map((r) => promiseOf(r.urn)));
}

/** Records every resource's options as given to its constructor (legacy transformations run in-process). */
export function optionsRecorder(): {
  transformation: pulumi.ResourceTransformation;
  options: Map<string, pulumi.ResourceOptions & { type: string }>;
} {
  const options = new Map<string, pulumi.ResourceOptions & { type: string }>();
  return {
    options,
    transformation: (a) => {
      options.set(a.name, { ...a.opts, type: a.type });
      return undefined;
    },
  };
}
