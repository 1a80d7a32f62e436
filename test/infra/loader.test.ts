import { existsSync, lstatSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as pulumi from '@pulumi/pulumi';
import { runInPulumiStack } from '@pulumi/pulumi/runtime/stack.js';
import { parse } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { invokeAnswers } from '../setup/pulumi-mocks.ts';

/**
 * Loads Pulumi.yaml's `main` the way the Node.js language host does, under
 * the mock monitor instead of the engine. The first version of main.ts
 * exported a helper beside its default and could not start under Pulumi.
 *
 * `pulumiLoad` follows `run()` / `runProgram` of pulumi/pulumi
 * sdk/nodejs/cmd/run/run.ts (shipped as @pulumi/pulumi/cmd/run/run.js; read
 * through the library search, commit 002d8492): the program path is made
 * absolute against the cwd; because package.json says "type": "module" it
 * is realpath'd (a folder → its index.js/.mjs/.ts/.mts), turned into a file
 * URL and dynamic-imported; "If there is a default export, use that instead
 * of the named exports (and error if there are both)" — `Object.keys(module)
 * .length !== 1` throws "expected entrypoint module to have either a default
 * export or named exports but not both"; an exported function is called and
 * awaited, inside `runInPulumiStack`, whose outputs become the stack's.
 * run.js itself cannot be imported in-process: it imports cmd/run/index.js,
 * which parses process.argv and exits without `--monitor`.
 */

const root = fileURLToPath(new URL('../..', import.meta.url));

function entryPoint(): string {
  return (parse(readFileSync(path.join(root, 'Pulumi.yaml'), 'utf8')) as { main: string }).main;
}

/** The part of runProgram that finds and checks the entry point's export. */
async function loadEntry(program: string): Promise<unknown> {
  const abs = path.isAbsolute(program) ? program : path.join(process.cwd(), program);
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { type?: string };
  expect(pkg.type).toBe('module'); // otherwise run.ts would require() it as CommonJS
  let mainPath = realpathSync(path.resolve(abs));
  if (lstatSync(mainPath).isDirectory()) {
    const index = ['index.js', 'index.mjs', 'index.ts', 'index.mts'].find((f) => existsSync(path.join(mainPath, f)));
    if (!index) throw new Error(`No entrypoint found in ${mainPath}`);
    mainPath = path.join(mainPath, index);
  }
  const programExport = (await import(pathToFileURL(mainPath).href)) as Record<string, unknown>;
  if (Object.getOwnPropertyDescriptor(programExport, 'default') !== undefined) {
    if (Object.keys(programExport).length !== 1) {
      throw new Error('expected entrypoint module to have either a default export or named exports but not both');
    }
    return programExport['default'];
  }
  return programExport;
}

/** run(): the entry point's export, called and awaited inside the root Stack resource; its result becomes the stack outputs. */
async function pulumiLoad(program: string): Promise<Record<string, unknown> | undefined> {
  const programExport = await loadEntry(program);
  return (await runInPulumiStack(async () => {
    const invokeResult = programExport instanceof Function ? (programExport as () => unknown)() : programExport;
    return await invokeResult;
  })) as Record<string, unknown> | undefined;
}

function stackConfig(stack: string): Record<string, string> {
  const cfg = (parse(readFileSync(path.join(root, `stacks/Pulumi.${stack}.yaml`), 'utf8')) as { config: Record<string, unknown> }).config;
  return Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

describe("the entry point under Pulumi's own loader (cmd/run)", () => {
  const argv = process.argv;
  const cwd = process.cwd();
  afterEach(() => {
    invokeAnswers.clear();
    process.argv = argv;
    process.chdir(cwd);
  });

  it('Pulumi.yaml names a module with only a default export, and the loader runs it into stack outputs', async () => {
    const main = entryPoint();
    expect(main).toBe('src/infra/azure/main.ts');
    const mod = (await import(path.join(root, main))) as Record<string, unknown>;
    expect(Object.keys(mod)).toEqual(['default']);

    pulumi.runtime.setAllConfig({ ...stackConfig('prod'), 'rubicon:targetAdminPassword': 'x' }, ['rubicon:targetAdminPassword']);
    invokeAnswers.set('azure-native:compute:getVirtualMachine', () => ({
      location: 'westeurope',
      vmId: 'a1b2c3d4-0000-4000-8000-000000000001',
      storageProfile: { imageReference: { publisher: 'MicrosoftWindowsServer', offer: 'WindowsServer', sku: '2025-datacenter-azure-edition', version: 'latest' } },
    }));
    process.chdir(root);
    const outputs = await pulumiLoad(main);
    expect(outputs?.['targetVmName']).toBe('ehr-prd-01');
    expect(outputs?.['targetProtected']).toBe(true);
    expect(String(outputs?.['targetVmId'])).toMatch(/\/ehr-prd-01$/);
    expect(outputs?.['targetVmUniqueId']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('the same loader refuses an entry point with a default and a named export (what main.ts was)', async () => {
    process.chdir(root);
    await expect(loadEntry('test/infra/fixtures/entry-both-exports.ts')).rejects.toThrow(
      'expected entrypoint module to have either a default export or named exports but not both',
    );
  });
});
