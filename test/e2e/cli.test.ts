import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { BIN, cli, removeTempDirs, tempDir } from './helpers.ts';

afterEach(removeTempDirs); // the estates are tens of MiB each

describe('cli', () => {
  it('--help lists every command and the exit codes; no command is invalid input', async () => {
    const h = await cli(['--help']);
    expect(h.exitCode).toBe(0);
    for (const c of ['demo', 'sandbox', 'plan', 'rehearse', 'upgrade', 'verify', 'resume', 'status', 'report']) expect(h.stdout).toContain(`rubicon ${c}`);
    expect(h.stdout).toMatch(/2 {2}the gate refused/);
    expect((await cli([])).exitCode).toBe(3);
  });

  it('a reader that goes away does not crash it (rubicon ... | true)', async () => {
    const { execa } = await import('execa');
    const r = await execa('bash', ['-c', `"${process.execPath}" "${BIN}" --help | true; echo "rc=\${PIPESTATUS[0]}"`], { reject: false });
    expect(r.stdout.trim()).toBe('rc=0');
    expect(r.stderr).not.toMatch(/EPIPE/);
  });

  it('unknown commands and flags, and missing arguments, are exit 3 with a fix', async () => {
    const u = await cli(['upgrayde']);
    expect(u.exitCode).toBe(3);
    expect(u.stderr).toMatch(/unknown command "upgrayde"/);
    const f = await cli(['plan', '--runbok', 'x']);
    expect(f.exitCode).toBe(3);
    expect(f.stderr).toMatch(/runbok/);
    const m = await cli(['upgrade']);
    expect(m.exitCode).toBe(3);
    expect(m.stderr).toMatch(/needs --runbook FILE/);
    const r = await cli(['resume', '../../etc/passwd']);
    expect(r.exitCode).toBe(3);
    const n = await cli(['plan', '--runbook', '/nonexistent/runbook.yaml', '--json']);
    expect(n.exitCode).toBe(3);
    expect(n.events[0]).toMatchObject({ kind: 'error', code: 'RUNBOOK_NOT_FOUND' });
  });

  it('sandbox refuses a folder that is not empty; plan changes nothing; status and report read the journal', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const L = await buildSandbox(dir, { patients: 200 });
    const again = await cli(['sandbox', dir]);
    expect(again.exitCode).toBe(3);
    expect(again.stderr).toMatch(/not empty/);

    const plan = await cli(['plan', '--runbook', L.runbook, '--state-dir', L.stateDir]);
    expect(plan.exitCode).toBe(0);
    expect(plan.stdout).toMatch(/PLANNED: nothing was changed/);
    expect(plan.stdout).toMatch(/folder:ehr\/X +file-mirror/);
    expect(plan.stdout).toMatch(/database:sqlite:ehr +vendor-job, sqlite-backup-api, sqlite-sql-dump/);
    expect(existsSync(path.join(L.target, 'mssql/backup')) && (await import('node:fs')).readdirSync(path.join(L.target, 'mssql/backup'))).toEqual([]);

    const list = await cli(['status', '--state-dir', L.stateDir, '--json']);
    const runs = JSON.parse(list.stdout) as { runId: string; outcome: string }[];
    expect(runs).toHaveLength(1);
    expect(runs[0]!.outcome).toBe('planned');
    const one = await cli(['status', runs[0]!.runId, '--state-dir', L.stateDir]);
    expect(one.stdout).toMatch(/found-not-declared|proven|pending|captured/);
    const out = path.join(dir, 'copy.html');
    const rep = await cli(['report', runs[0]!.runId, '--state-dir', L.stateDir, '--html', out]);
    expect(rep.exitCode).toBe(0);
    expect(existsSync(out)).toBe(true);
  });

  it('reap without the Pulumi CLI says what is missing and how to fix it (exit 1); without --stack it is exit 3', async () => {
    // The Pulumi CLI cannot be installed on these machines: this is the real boundary.
    const r = await cli(['reap', '--stack', 'staging'], { PATH: path.dirname(process.execPath) });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/Cannot open Pulumi stack staging/);
    expect(r.stderr).toMatch(/Install the Pulumi CLI/);
    expect((await cli(['reap'])).exitCode).toBe(3);
  });

  it('two runs against the same target: the second is refused while the first holds the lock, whatever its state directory', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const L = await buildSandbox(dir, { patients: 200 });
    const { acquireTargetLock } = await import('../../src/run/target-lock.ts');
    const { loadRunbook } = await import('../../src/runbook/load.ts');
    // A live holder: this test process, as a run with another state directory would.
    const release = acquireTargetLock(await loadRunbook(L.runbook), 'r-20261128-000000-abcd', (await import('node:os')).hostname());
    try {
      const r = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', path.join(dir, 'another-state-dir')]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/locked by run r-20261128-000000-abcd/);
    } finally {
      release();
    }
  });
});
