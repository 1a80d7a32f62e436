import type { EngineEvent, PreviewOptions, Stack, UpOptions } from '@pulumi/pulumi/automation/index.js';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { AutomationStackPort, openStack } from '../../src/infra/azure/automation.ts';
import { fixture } from './fake-ports.ts';

/**
 * The Automation API adapter up to the CLI boundary: a stand-in Stack
 * records what the adapter asks of it (the real Stack would run `pulumi`).
 */
class RecordingStack {
  readonly name = 'prod';
  readonly calls: { op: string; args: unknown[] }[] = [];
  readonly config = new Map<string, string>([['rubicon:target.name', 'ehr-prd-01']]);
  async getConfig(key: string, path?: boolean) {
    this.calls.push({ op: 'getConfig', args: [key, path] });
    const value = this.config.get(key);
    if (value === undefined) throw new Error(`code: 255\n stderr: error: configuration key '${key}' not found for stack 'prod'`);
    return { value, secret: false };
  }
  async setConfig(key: string, value: { value: string; secret?: boolean }, path?: boolean) {
    this.calls.push({ op: 'setConfig', args: [key, value, path] });
    this.config.set(key, value.value);
  }
  async removeConfig(key: string, path?: boolean) {
    this.calls.push({ op: 'removeConfig', args: [key, path] });
    this.config.delete(key);
  }
  async preview(opts: PreviewOptions) {
    this.calls.push({ op: 'preview', args: [{ ...opts, onEvent: typeof opts.onEvent }] });
    for (const e of fixture('clean-vm-replace')) opts.onEvent?.(e);
    return { stdout: '', stderr: '', changeSummary: { same: 13, replace: 1 } };
  }
  async up(opts: UpOptions) {
    this.calls.push({ op: 'up', args: [{ ...opts, onEvent: typeof opts.onEvent }] });
    if (opts.plan === '/plans/bad.json') throw new Error('code: 255\n stderr: error: update plan does not permit this step: replace vaultAccount');
    return { stdout: '', stderr: '', outputs: { targetImage: { value: 'img', secret: false } }, summary: { result: 'succeeded', resourceChanges: { replace: 1 } } };
  }
  async outputs() {
    return { targetVmId: { value: '/vm/1', secret: false }, provingGround: { value: null, secret: false } };
  }
}

function port() {
  const stack = new RecordingStack();
  return { stack, port: new AutomationStackPort(stack as unknown as Stack) };
}

describe('AutomationStackPort', () => {
  it('goes through the CLI config commands, with --path when asked; a missing key reads as undefined', async () => {
    const { stack, port: p } = port();
    expect(await p.getConfig('rubicon:target.name', { path: true })).toBe('ehr-prd-01');
    expect(await p.getConfig('rubicon:permit')).toBeUndefined();
    await p.setConfig('rubicon:provingGround.enabled', 'true', { path: true });
    await p.setConfig('rubicon:targetAdminPassword', 'x', { secret: true });
    await p.removeConfig('rubicon:permit');
    expect(stack.calls.filter((c) => c.op !== 'getConfig')).toEqual([
      { op: 'setConfig', args: ['rubicon:provingGround.enabled', { value: 'true', secret: false }, true] },
      { op: 'setConfig', args: ['rubicon:targetAdminPassword', { value: 'x', secret: true }, undefined] },
    ]);
  });

  it('collects every engine event of a preview and saves the plan where asked', async () => {
    const { stack, port: p } = port();
    const seen: EngineEvent[] = [];
    const r = await p.preview({ planPath: '/plans/run-7.crossing.plan.json', onEvent: (e) => seen.push(e) });
    expect(r.events).toEqual(fixture('clean-vm-replace'));
    expect(seen).toHaveLength(r.events.length);
    expect(r.planPath).toBe('/plans/run-7.crossing.plan.json');
    expect(stack.calls.at(-1)).toEqual({ op: 'preview', args: [{ diff: true, color: 'never', onEvent: 'function', plan: '/plans/run-7.crossing.plan.json' }] });
  });

  it('passes --target URNs through to preview and up (the targeted teardown)', async () => {
    const { stack, port: p } = port();
    const urns = ['urn:pulumi:prod::rubicon::rubicon:azure:ProvingGround::pg-prod'];
    await p.preview({ planPath: '/plans/t.json', targets: urns });
    expect(stack.calls.at(-1)?.args[0]).toMatchObject({ plan: '/plans/t.json', target: urns });
    await p.up({ planPath: '/plans/ok.json', targets: urns });
    expect(stack.calls.at(-1)?.args[0]).toMatchObject({ plan: '/plans/ok.json', target: urns });
  });

  it('ups with the plan and unwraps outputs; a refused step becomes INFRA_FAILED with the CLI text', async () => {
    const { stack, port: p } = port();
    const r = await p.up({ planPath: '/plans/ok.json' });
    expect(r.outputs).toEqual({ targetImage: 'img' });
    expect(r.summary).toEqual({ result: 'succeeded', resourceChanges: { replace: 1 } });
    expect(stack.calls.at(-1)?.args[0]).toMatchObject({ plan: '/plans/ok.json' });
    expect(stack.calls.at(-1)?.args[0]).not.toHaveProperty('target');
    const e = await p.up({ planPath: '/plans/bad.json' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RubiconError);
    expect((e as RubiconError).code).toBe('INFRA_FAILED');
    expect((e as RubiconError).message).toContain('update plan does not permit this step');
    expect(await p.outputs()).toEqual({ targetVmId: '/vm/1', provingGround: null });
  });
});

describe('openStack', () => {
  it('fails with INFRA_FAILED and install instructions when the Pulumi CLI is absent (as on this machine)', async () => {
    const e = await openStack({ workDir: process.cwd(), stackName: 'staging', pulumiRoot: '/nonexistent/pulumi' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RubiconError);
    expect((e as RubiconError).code).toBe('INFRA_FAILED');
    expect((e as RubiconError).hint).toContain('Install the Pulumi CLI');
  });
});
