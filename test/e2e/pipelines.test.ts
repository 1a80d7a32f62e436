import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { startRun } from '../../src/run/run.ts';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { BIN, ROOT, cli, journalOf, removeTempDirs, tempDir } from './helpers.ts';

afterEach(removeTempDirs);

/**
 * Rubicon as a CI pipeline meets it: a process with no terminal (stdin
 * ignored), --json on stdout, exit codes, a summary as the last line.
 */

async function estate(): Promise<SandboxLayout> {
  return buildSandbox(path.join(await tempDir(), 'estate'), { patients: 200 });
}

const lastLine = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;

describe('pipelines: no terminal', () => {
  it('upgrade without --yes refuses before anything runs: exit 3, the fix, a summary line, no run, the vendor job never ran', async () => {
    const L = await estate();
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/no terminal to ask on, and --yes was not given\. Nothing was run\./);
    expect(r.stderr).toMatch(/fix: in a pipeline pass --yes/);
    expect(lastLine(r.stdout)).toMatchObject({ kind: 'summary', runId: null, outcome: 'invalid-input', exitCode: 3, error: { code: 'CONFIRMATION_UNAVAILABLE' } });
    await expect(readdir(path.join(L.stateDir, 'runs'))).rejects.toThrow(); // no run was created
    expect(await readdir(path.join(L.target, 'mssql/backup'))).toEqual([]); // the application was never stopped, the vendor job never ran
    // A staging rehearsal crosses too: the same refusal. A production rehearsal does not cross: no refusal needed.
    await writeFile(L.runbook, (await readFile(L.runbook, 'utf8')).replace('  image: Windows Server 2025 Datacenter', '  image: Windows Server 2025 Datacenter\n  stage: staging'));
    const s = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir]);
    expect(s.exitCode).toBe(3);
    expect(s.stderr).toMatch(/rubicon rehearse would reach the crossing/);
  });

  it('an invalid-input run ends with a summary line carrying the error', async () => {
    const r = await cli(['plan', '--runbook', '/nonexistent/runbook.yaml', '--json']);
    expect(r.exitCode).toBe(3);
    expect(lastLine(r.stdout)).toMatchObject({ kind: 'summary', runId: null, outcome: 'invalid-input', exitCode: 3, error: { code: 'RUNBOOK_NOT_FOUND' } });
    const a = await cli(['upgrade', '--runbok', 'x.yaml', '--json']);
    expect(lastLine(a.stdout)).toMatchObject({ outcome: 'invalid-input', error: { code: 'ARGUMENTS_INVALID', message: 'unknown option --runbok: did you mean --runbook?' } });
  });

  it('a crossing nobody confirmed goes on with `resume --yes`: frozen again, drift scanned and captured, the gate again, then crossed and landed', async () => {
    const L = await estate();
    const first = await startRun('upgrade', L.runbook, {
      stateDir: L.stateDir,
      onEvent: () => undefined,
      confirm: async () => ({ confirmed: false, by: 'prompt', who: 'test', reason: 'the typed name did not match' }),
    });
    expect(first).toMatchObject({ outcome: 'not-confirmed', exitCode: 2, crossed: false });
    // The application ran on after the thaw: a file changed.
    await writeFile(path.join(L.target, 'ehr/A/after-the-thaw.txt'), 'written while nobody confirmed\n');
    const before = await journalOf(L.stateDir, first.runId);

    // Without --yes and without a terminal, resume refuses before anything runs.
    const no = await cli(['resume', first.runId, '--state-dir', L.stateDir, '--json']);
    expect(no.exitCode).toBe(3);
    expect(lastLine(no.stdout)).toMatchObject({ outcome: 'invalid-input', error: { code: 'CONFIRMATION_UNAVAILABLE' } });
    expect(await journalOf(L.stateDir, first.runId)).toHaveLength(before.length);

    const r = await cli(['resume', first.runId, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ outcome: 'landed', crossed: true });
    const after = (await journalOf(L.stateDir, first.runId)).slice(before.length).map((x) => x.event);
    const types = after.map((e) => e.type);
    expect(after.find((e) => e.type === 'phases.reopened')).toMatchObject({ phases: ['freeze', 'final-capture', 'gate', 'crossing'] });
    expect(types.indexOf('target.frozen')).toBeGreaterThan(types.indexOf('phases.reopened'));
    expect(types.indexOf('gate.evaluated')).toBeGreaterThan(types.indexOf('target.frozen'));
    expect(types.indexOf('crossing.started')).toBeGreaterThan(types.indexOf('gate.evaluated'));
    // The drift of the thaw was found and captured, and it landed.
    const drift = (r.summary as { drift: { itemId: string; stage: string; paths: string[] }[] }).drift;
    expect(drift).toContainEqual(expect.objectContaining({ itemId: 'folder:ehr/A', stage: 'freeze', paths: ['added after-the-thaw.txt'] }));
    expect(await readFile(path.join(L.target, 'ehr/A/after-the-thaw.txt'), 'utf8')).toBe('written while nobody confirmed\n');
    // Nothing proven before was captured again: the vendor job ran once.
    expect(after.filter((e) => e.type === 'capture.started' && e.method === 'vendor-job')).toEqual([]);
  });

  it('SIGTERM after the freeze: exit 130, a summary line `interrupted`, the target thawed; `resume --yes` lands', async () => {
    const L = await estate();
    const child = execa(process.execPath, [BIN, 'upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], { reject: false, stdin: 'ignore', cwd: ROOT, env: { NO_COLOR: '1' }, timeout: 180_000 });
    let sent = false;
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (!sent && buf.includes('"type":"target.frozen"')) {
        sent = true;
        child.kill('SIGTERM');
      }
    });
    const r = await child;
    expect(sent).toBe(true);
    expect(r.exitCode).toBe(130);
    const summary = lastLine(String(r.stdout));
    expect(summary).toMatchObject({ kind: 'summary', outcome: 'interrupted', exitCode: 130, error: { code: 'INTERRUPTED' } });
    const runId = summary.runId as string;
    const types = (await journalOf(L.stateDir, runId)).map((x) => x.event.type);
    expect(types).toContain('run.interrupted');
    expect(types.lastIndexOf('target.thawed')).toBeGreaterThan(types.lastIndexOf('target.frozen'));
    expect(types).not.toContain('crossing.started');

    const again = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.summary).toMatchObject({ outcome: 'landed', crossed: true });
  });

  it('SIGINT during the capture: exit 130 and `interrupted`', async () => {
    const L = await estate();
    const child = execa(process.execPath, [BIN, 'rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json'], { reject: false, stdin: 'ignore', cwd: ROOT, env: { NO_COLOR: '1' }, timeout: 180_000 });
    let buf = '';
    let sent = false;
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (!sent && buf.includes('"type":"capture.started"')) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const r = await child;
    expect(r.exitCode).toBe(130);
    expect(lastLine(String(r.stdout))).toMatchObject({ outcome: 'interrupted', exitCode: 130 });
  });
});

describe('the command line a new user meets', () => {
  it('--version is the package version', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    expect([r.exitCode, r.stdout]).toEqual([0, `rubicon ${pkg.version}`]);
  });

  it('`rubicon <command> --help` is about that command, names its options, and fits 80 columns', async () => {
    const { COMMANDS, commandHelp } = await import('../../src/cli/commands.ts');
    for (const name of Object.keys(COMMANDS)) {
      const text = commandHelp(name);
      expect(text.startsWith(`Usage: rubicon ${name}`), name).toBe(true);
      if (name !== 'demo') expect(text).not.toContain('rubicon demo [--dir'); // not the whole list
      for (const l of text.split('\n')) expect(l.length, `${name}: ${l}`).toBeLessThanOrEqual(80);
    }
    expect(commandHelp('upgrade')).toMatch(/--yes/);
    expect(commandHelp('status')).not.toMatch(/--yes/);
    // Through the real CLI: `rubicon upgrade --help` and `rubicon help resume`.
    const u = await cli(['upgrade', '--help']);
    expect([u.exitCode, u.stdout]).toEqual([0, commandHelp('upgrade').trimEnd()]);
    expect((await cli(['help', 'resume'])).stdout).toMatch(/^Usage: rubicon resume RUN_ID/);
  });

  it('a mistyped command or option says what was meant', async () => {
    const c = await cli(['upgarde']);
    expect(c.exitCode).toBe(3);
    expect(c.stderr).toMatch(/unknown command "upgarde": did you mean `rubicon upgrade`\?/);
    const f = await cli(['status', '--stat-dir', '/tmp']);
    expect(f.stderr).toMatch(/unknown option --stat-dir: did you mean --state-dir\?/);
    const far = await cli(['frobnicate']);
    expect(far.stderr).toMatch(/unknown command "frobnicate"\n/);
  });

  it('a run id that is not there says where runs are kept and how to look elsewhere (--state-dir)', async () => {
    const dir = await tempDir();
    for (const cmd of ['status', 'resume', 'report', 'audit']) {
      const r = await cli([cmd, 'r-20261201-101500-ab12', '--state-dir', dir]);
      expect(r.exitCode, cmd).toBe(3);
      expect(r.stderr).toContain(`no run r-20261201-101500-ab12 in ${dir}`);
      expect(r.stderr).toMatch(/--state-dir DIR/);
    }
    const env = await cli(['status', 'r-20261201-101500-ab12'], { RUBICON_STATE_DIR: dir });
    expect(env.stderr).toMatch(/from \$RUBICON_STATE_DIR/);
  });
});

describe('manual steps confirmed by a person', () => {
  it('the gate refuses an unconfirmed step; `rubicon confirm RUN STEP --by NAME` records who and when; `resume --yes` evaluates the gate again and lands', async () => {
    const L = await estate();
    const text = await readFile(L.runbook, 'utf8');
    await writeFile(L.runbook, text.replace(/    confirmedBy: .*\n    confirmedAt: .*\n/, ''));
    const first = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes']);
    expect(first.exitCode, first.stderr).toBe(2);
    expect(first.stdout).toMatch(/- Manual step vendor-window .* is not confirmed/);
    const runId = /run (r-\d{8}-\d{6}-[0-9a-f]{4})/.exec(first.stdout)![1]!;
    expect(first.stdout).toContain(`rubicon confirm ${runId} STEP --by "NAME"`);

    expect((await cli(['confirm', runId, 'vendor-window', '--state-dir', L.stateDir])).exitCode).toBe(3); // --by is required
    const wrong = await cli(['confirm', runId, 'no-such-step', '--by', 'Jane Doe', '--state-dir', L.stateDir]);
    expect([wrong.exitCode, /declares vendor-window/.test(wrong.stderr)]).toEqual([3, true]);
    const c = await cli(['confirm', runId, 'vendor-window', '--by', 'Jane Doe', '--state-dir', L.stateDir]);
    expect(c.exitCode, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/manual step vendor-window of run .* confirmed by Jane Doe at 20\d\d-/);
    const rec = (await journalOf(L.stateDir, runId)).find((r) => r.event.type === 'manual-step.confirmed')!;
    expect(rec.event).toEqual({ type: 'manual-step.confirmed', stepId: 'vendor-window', by: 'Jane Doe' });
    expect(typeof rec.sig).toBe('string'); // signed like every record

    const r = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ outcome: 'landed', gate: { passed: true } });
    const audit = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(audit.exitCode, audit.stdout).toBe(0);
  });
});
