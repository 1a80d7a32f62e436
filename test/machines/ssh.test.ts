import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stepFolderName } from '../../src/machines/posix.ts';
import type { SshMachineOptions } from '../../src/machines/ssh.ts';
import { requireTestNet, storyNet } from '../hosts/index.ts';
import { useTestNet } from '../hosts/vitest.ts';

/**
 * The ssh transport against real sshd on namespaced test hosts: the driver
 * (fixtures/machine-driver.ts) runs SshMachine inside the controller
 * namespace, as the orchestrator would, and the tests read the target's
 * files directly (test hosts share the filesystem).
 */
const DRIVER = path.join(import.meta.dirname, 'fixtures', 'machine-driver.ts');
const noNet = requireTestNet();

type Result = { ok: true; value: any } | { ok: false; code: string; message: string; hint?: string; details?: any };

describe.skipIf(noNet)(`ssh transport on real sshd${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  const net = useTestNet(storyNet({ vault: { diskMb: 2 } }));

  function options(over: Partial<SshMachineOptions> = {}): SshMachineOptions {
    const n = net();
    return {
      name: 'target',
      host: 'target',
      port: 22,
      user: 'root',
      identityFile: n.clientKey.privateKeyPath,
      knownHostsFile: n.knownHostsPath,
      connectTimeoutSeconds: 3,
      stepsRoot: path.join(n.hosts.target.dataDir, '.rubicon', 'steps'),
      ...over,
    };
  }

  async function drive(ops: unknown[], over: Partial<SshMachineOptions> = {}): Promise<Result[]> {
    const arg = Buffer.from(JSON.stringify({ machine: options(over), ops })).toString('base64');
    const p = net().node('ctl', [DRIVER, arg]);
    const r = await p;
    return String(r.stdout)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Result);
  }

  it('runs a program with arguments that arrive byte for byte, and returns its exit code and output', async () => {
    const odd = ["it's", 'two  spaces', '$HOME', '`id`', 'a"b', 'new\nline', 'ünïcødé', '*', ''];
    const [r] = await drive([{ op: 'exec', argv: ['printf', '%s\\0', ...odd] }]);
    expect(r?.ok).toBe(true);
    if (!r?.ok) return;
    expect(r.value.exitCode).toBe(0);
    expect(r.value.stdout.split('\0').slice(0, -1)).toEqual(odd);
    const [f] = await drive([{ op: 'exec', argv: ['sh', '-c', 'echo out; echo err >&2; exit 7'] }]);
    expect(f?.ok && f.value).toMatchObject({ exitCode: 7, stdout: 'out\n', stderr: expect.stringContaining('err') });
  });

  it('any argument string survives the trip (property, seeded)', async () => {
    const seed = Number(process.env.RUBICON_SEED ?? Date.now() % 100000);
    const samples = fc.sample(fc.array(fc.string({ unit: 'binary' }).map((s) => s.replace(/\0/g, '')), { minLength: 1, maxLength: 6 }), { numRuns: 25, seed });
    const ops = samples.map((argv) => ({ op: 'exec', argv: ['printf', '%s\\0', ...argv] }));
    const results = await drive(ops);
    results.forEach((r, i) => {
      expect(r.ok, `seed ${seed}`).toBe(true);
      if (r.ok) expect(r.value.stdout.split('\0').slice(0, -1), `seed ${seed} case ${i}`).toEqual(samples[i]);
    });
  });

  it('writes and reads small files atomically, with their mode, and names a missing or too large file', async () => {
    const file = path.join(net().hosts.target.dataDir, 'small', 'f.json');
    const [w, r, miss, big] = await drive([
      { op: 'writeSmall', path: file, data: '{"a":1}\n', mode: 0o640 },
      { op: 'readSmall', path: file, max: 100 },
      { op: 'readSmall', path: `${file}.nope`, max: 100 },
      { op: 'readSmall', path: file, max: 3 },
    ]);
    expect(w?.ok).toBe(true);
    expect(r?.ok && Buffer.from(r.value, 'base64').toString()).toBe('{"a":1}\n');
    expect(readFileSync(file, 'utf8')).toBe('{"a":1}\n');
    expect(miss).toMatchObject({ ok: false, code: 'MACHINE_FILE_MISSING' });
    expect(big).toMatchObject({ ok: false, code: 'MACHINE_FILE_TOO_LARGE' });
  });

  it('a full disk is NO_SPACE naming the machine', async () => {
    const [r] = await drive([{ op: 'writeSmall', path: path.join(net().hosts.vault.dataDir, 'big'), data: 'x'.repeat(1024), repeat: 3 * 1024 }], { name: 'vault', host: 'vault' });
    expect(r).toMatchObject({ ok: false, code: 'NO_SPACE' });
    expect(r?.ok === false && r.message).toContain('vault');
  });

  it('a step killed with its orchestrator re-attaches; an idempotent lost step runs again; a non-idempotent one is STEP_LOST', async () => {
    const n = net();
    const o = options();
    const marker = path.join(n.hosts.target.dataDir, 'step-ran');
    writeFileSync(marker, '');
    const id = 'r-1/capture/long';
    const folder = path.join(o.stepsRoot, stepFolderName(id));
    const arg = Buffer.from(JSON.stringify({ machine: o, ops: [{ op: 'run', id, idempotent: false, argv: ['sh', '-c', `echo ran >> ${marker}; sleep 2; echo done`] }] })).toString('base64');
    const p = n.node('ctl', [DRIVER, arg]);
    // Kill the orchestrator as soon as the step runs on the target.
    for (let i = 0; i < 200 && !existsSync(path.join(folder, 'pid')); i++) await new Promise((r) => setTimeout(r, 25));
    expect(existsSync(path.join(folder, 'pid'))).toBe(true);
    p.kill('SIGKILL');
    await p;
    // The step goes on without its orchestrator; a new one re-attaches and gets its result.
    const [again] = await drive([{ op: 'run', id, idempotent: false, argv: ['sh', '-c', `echo ran >> ${marker}; echo done`] }]);
    expect(again?.ok && again.value).toMatchObject({ exitCode: 0, reattached: true, stdout: 'done\n' });
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');

    // Lost: the process died without a result (a reboot). Simulate by removing rc and leaving a dead pid.
    const lost = 'r-1/capture/lost';
    const lf = path.join(o.stepsRoot, stepFolderName(lost));
    const [first] = await drive([{ op: 'run', id: lost, idempotent: false, argv: ['true'] }]);
    expect(first?.ok).toBe(true);
    writeFileSync(path.join(lf, 'pid'), '999999 1\n');
    await import('node:fs/promises').then((f) => f.rm(path.join(lf, 'rc')));
    const [refused] = await drive([{ op: 'run', id: lost, idempotent: false, argv: ['true'] }]);
    expect(refused).toMatchObject({ ok: false, code: 'STEP_LOST' });
    const [rerun] = await drive([{ op: 'run', id: lost, idempotent: true, argv: ['echo', 'again'] }]);
    expect(rerun?.ok && rerun.value).toMatchObject({ exitCode: 0, reattached: false, stdout: 'again\n' });
  });

  it('the machine enforces a step deadline itself', async () => {
    const [r] = await drive([{ op: 'run', id: 'r-1/slow', idempotent: true, argv: ['sleep', '30'], timeoutMs: 1000 }]);
    expect(r?.ok && r.value.exitCode).toBe(124);
  });

  it('an unknown host key is refused with the fix', async () => {
    const n = net();
    const kh = path.join(n.dir, 'kh-without-target');
    writeFileSync(kh, n.knownHostsText(['vault', 'pg']));
    const [r] = await drive([{ op: 'exec', argv: ['true'] }], { knownHostsFile: kh });
    expect(r).toMatchObject({ ok: false, code: 'MACHINE_HOST_KEY', details: { reason: 'unknown' } });
    expect(r?.ok === false && r.hint).toMatch(/ssh-keyscan/);
  });

  it('a wrong key is MACHINE_AUTH; an unreachable host is MACHINE_UNREACHABLE, quickly', async () => {
    const n = net();
    const other = await n.makeClientKey('stranger');
    const [auth] = await drive([{ op: 'exec', argv: ['true'] }], { identityFile: other.privateKeyPath });
    expect(auth).toMatchObject({ ok: false, code: 'MACHINE_AUTH' });
    const t0 = Date.now();
    const [gone] = await drive([{ op: 'exec', argv: ['true'] }], { host: n.unusedAddress('a') });
    expect(gone).toMatchObject({ ok: false, code: 'MACHINE_UNREACHABLE' });
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('a changed host key (the server was rebuilt, or someone is in between) is refused', async () => {
    const n = net();
    await n.hosts.pg.sshd.regenerateHostKey();
    const [r] = await drive([{ op: 'exec', argv: ['true'] }], { name: 'pg', host: 'pg' });
    expect(r).toMatchObject({ ok: false, code: 'MACHINE_HOST_KEY', details: { reason: 'changed' } });
    await n.updateKnownHosts();
    const [ok] = await drive([{ op: 'exec', argv: ['true'] }], { name: 'pg', host: 'pg' });
    expect(ok?.ok).toBe(true);
  });

  it('sshd killed mid-step: the step fails with MACHINE_UNREACHABLE, and after sshd is back an idempotent step runs again', async () => {
    const n = net();
    const arg = Buffer.from(JSON.stringify({ machine: options({ name: 'vault', host: 'vault', stepsRoot: path.join(n.hosts.vault.dataDir, '..', 'steps') }), ops: [{ op: 'run', id: 'r-1/k', idempotent: true, argv: ['sleep', '5'] }] })).toString('base64');
    const p = n.node('ctl', [DRIVER, arg]);
    await new Promise((r) => setTimeout(r, 800));
    await n.hosts.vault.sshd.kill();
    const out = String((await p).stdout);
    const r = JSON.parse(out.split('\n').find((l) => l.startsWith('{')) ?? '{}') as Result;
    expect(r).toMatchObject({ ok: false });
    expect(['MACHINE_UNREACHABLE', 'MACHINE_FAILED']).toContain(r.ok === false ? r.code : '');
    await n.hosts.vault.sshd.start();
    const [again] = await drive([{ op: 'run', id: 'r-1/k', idempotent: true, argv: ['echo', 'back'] }], { name: 'vault', host: 'vault', stepsRoot: path.join(n.hosts.vault.dataDir, '..', 'steps') });
    expect(again?.ok && again.value).toMatchObject({ exitCode: 0 });
  });
});
