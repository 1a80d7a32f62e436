/**
 * The warm VM agent of the Run Command stand-in (warm-agent.ps1, WarmAgent in
 * run-command-stand-in.ts) against what it stands in for: the same scripts
 * run by `pwsh -NoProfile -NonInteractive -ExecutionPolicy Bypass -File`
 * (a process per script, as the real agent starts powershell.exe per run
 * command). Same exit code and the same bytes on stdout for each case,
 * Rubicon's own run-command entry included; the error's message on stderr;
 * nothing of one script left in the next one's runspace. The e2e test
 * test/e2e/azure-windows.test.ts relies on this to run its scripts warm.
 *
 * pwsh missing: skipped outside CI with the reason, a failure in CI.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { programSpec } from '../../src/machines/windows/openssh.ts';
import { runCommandText } from '../../src/machines/windows/transport.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';
import { WarmAgent } from './run-command-stand-in.ts';

const pwsh = checkPwsh();
const run = promisify(execFile);

/** `error`: words both must print on stderr (-File prints the formatted record, the warm agent the message); without, stderr is the same. */
const CASES: Record<string, { script: string; params?: string[]; error?: string }> = {
  'exit N, parameters, [Console] streams, Write-Host and pipeline output': {
    script: "param([string]$Name, [string]$RubiconSecret = '')\n[Console]::Out.Write(\"name=$Name secret=$RubiconSecret`n\")\n[Console]::Error.Write(\"to stderr`n\")\nWrite-Host 'from Write-Host'\n'from the pipeline'\nexit 7\n",
    params: ['-Name', 'a b "c"', '-RubiconSecret', 'c2VjcmV0Lys9'],
  },
  'the end of the script: 0': { script: "[Console]::Out.Write(\"done`n\")\n" },
  'a terminating error under ErrorActionPreference Stop: 1': { script: "$ErrorActionPreference = 'Stop'\n[Console]::Out.Write(\"before`n\")\nGet-Item -LiteralPath '/nonexistent/rubicon-warm-agent'\n[Console]::Out.Write(\"after`n\")\n", error: 'Cannot find path' },
  'throw: 1': { script: "throw 'boom in the script'\n", error: 'boom in the script' },
  'exit inside a function: the script ends with that code': { script: "function Stop-It { exit 3 }\n[Console]::Out.Write(\"a`n\")\nStop-It\n[Console]::Out.Write(\"b`n\")\n" },
  "Rubicon's run-command entry running a program (frames, exit code)": {
    script: runCommandText('run-command-step', { ...programSpec({ argv: ['sh', '-c', 'echo out line; echo err line >&2; exit 4'] }), dir: '', idem: '1', deadline: '60', max: '65536' }),
  },
};

describe.skipIf(!mustRun(pwsh))(`the warm agent runs a script as pwsh -File does${pwsh.ok ? '' : ` (skipped: ${pwsh.reason})`}`, { timeout: 180_000 }, () => {
  let dir: string;
  let agent: WarmAgent;
  beforeAll(() => {
    if (!pwsh.ok) throw new Error(pwsh.reason);
    dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-warm-agent-test-'));
    agent = new WarmAgent([PWSH, ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', path.join(import.meta.dirname, 'warm-agent.ps1')]]);
  });
  afterAll(async () => {
    await agent?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const file = (name: string, text: string) => {
    const f = path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.ps1`);
    writeFileSync(f, text);
    return f;
  };
  const cold = async (f: string, params: string[]) => {
    try {
      const r = await run(PWSH, ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', f, ...params], { encoding: 'buffer', env: { ...process.env, NO_COLOR: '1' } });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: Buffer; stderr: Buffer };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  };

  it.each(Object.keys(CASES))('%s', async (name) => {
    const c = CASES[name]!;
    const f = file(name, c.script);
    const [byProcess, warm] = await Promise.all([cold(f, c.params ?? []), agent.run(f, c.params ?? [], () => {})]);
    expect(warm.code, name).toBe(byProcess.code);
    expect(warm.out.toString('utf8'), name).toBe(byProcess.out.toString('utf8'));
    const plain = (b: Buffer) => b.toString('utf8').replace(/\x1b\[[0-9;]*m/g, '');
    if (c.error) {
      expect(plain(byProcess.err), name).toContain(c.error);
      expect(plain(warm.err), name).toContain(c.error);
    } else expect(plain(warm.err), name).toBe(plain(byProcess.err));
  });

  it('gives each script a fresh runspace: variables, functions and the location of one are gone in the next', async () => {
    const a = file('leave', "$global:RubiconLeft = 'x'\nfunction Get-RubiconLeft { 'f' }\nSet-Location -LiteralPath '/'\nexit 0\n");
    const b = file('look', "[Console]::Out.Write(\"var=$($null -eq (Get-Variable -Name RubiconLeft -Scope Global -ErrorAction SilentlyContinue)) fn=$($null -eq (Get-Command Get-RubiconLeft -ErrorAction SilentlyContinue))`n\")\n");
    expect((await agent.run(a, [], () => {})).code).toBe(0);
    const r = await agent.run(b, [], () => {});
    expect(r).toMatchObject({ code: 0 });
    expect(r.out.toString('utf8')).toBe('var=True fn=True\n');
  });

  it('runs one script at a time, in the order given, and answers each its own', async () => {
    const slow = file('slow', "param([string]$N)\nStart-Sleep -Milliseconds 300\n[Console]::Out.Write(\"$N`n\")\nexit ([int]$N)\n");
    const order: string[] = [];
    const runs = ['1', '2', '3'].map((n) => agent.run(slow, ['-N', n], () => order.push(n)));
    const done = await Promise.all(runs);
    expect(order).toEqual(['1', '2', '3']);
    expect(done.map((d) => `${d.code}:${d.out.toString('utf8')}`)).toEqual(['1:1\n', '2:2\n', '3:3\n']);
  });
});
