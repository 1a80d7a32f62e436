import { existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashFile } from '../../src/files/drift.ts';
import { walkAll } from '../../src/files/walk.ts';
import { stepFolderName } from '../../src/machines/posix.ts';
import type { OpenSshWindowsOptions } from '../../src/machines/windows/openssh.ts';
import { manifestEntriesFromOutput, type ManifestData } from '../../src/machines/windows/results.ts';
import { parseScriptOutput } from '../../src/machines/windows/scripts.ts';
import { requireTestNet } from '../hosts/index.ts';
import { useTestNet } from '../hosts/vitest.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';

/**
 * openssh-windows against a real sshd on a namespaced test host whose
 * login shell is PowerShell 7 (as a Windows Server whose OpenSSH
 * DefaultShell is powershell.exe): the driver (fixtures/windows-driver.ts)
 * runs OpenSshWindowsMachine in the controller namespace, as the
 * orchestrator would; the tests read the host's files directly (test hosts
 * share the filesystem). Every call starts PowerShell twice (the login
 * shell and the transport's own), seconds each on a loaded machine, so the
 * cases are batched into few calls.
 *
 * Outside CI, a missing pwsh or test-net support skips with the reason; in
 * CI the tests run and fail.
 */
const DRIVER = path.join(import.meta.dirname, 'fixtures', 'windows-driver.ts');
const noNet = requireTestNet();
const pwsh = checkPwsh();
const skip = noNet ?? (mustRun(pwsh) ? undefined : pwsh.reason);
const SEED = Number(process.env.RUBICON_SEED ?? 20261201);

type Result = { ok: true; value: any } | { ok: false; code: string; message: string; hint?: string; details?: any };

describe.skipIf(skip)(`openssh-windows on real sshd with a PowerShell login shell${skip ? ` (skipped: ${skip})` : ''}`, { timeout: 600_000 }, () => {
  const net = useTestNet({ hosts: { win: { shell: PWSH } }, segments: { a: ['ctl', 'win'] } });

  function options(over: Partial<OpenSshWindowsOptions> = {}): OpenSshWindowsOptions {
    const n = net();
    return {
      name: 'win',
      host: 'win',
      port: 22,
      user: 'root',
      identityFile: n.clientKey.privateKeyPath,
      knownHostsFile: n.knownHostsPath,
      connectTimeoutSeconds: 5,
      stepsRoot: path.join(n.hosts.win.dataDir, 'rubicon', 'steps', 'r-1'),
      // sshd's PATH does not hold the dotnet tools folder: name the program by its path.
      powershell: PWSH,
      commandTimeoutSeconds: 300,
      ...over,
    };
  }

  function driverArg(ops: unknown[], over: Partial<OpenSshWindowsOptions> = {}): string {
    return Buffer.from(JSON.stringify({ machine: options(over), ops })).toString('base64');
  }

  async function drive(ops: unknown[], over: Partial<OpenSshWindowsOptions> = {}): Promise<Result[]> {
    const r = await net().node('ctl', [DRIVER, driverArg(ops, over)], { timeoutMs: 590_000 });
    const lines = String(r.stdout)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Result);
    expect(lines, String(r.stderr)).toHaveLength(ops.length);
    return lines;
  }

  it('exec: any argument arrives byte for byte (seeded property, one call), with stdin, cwd, env, exit code and stderr', async () => {
    const n = net();
    // Any code points (fast-check's binary unit: no lone surrogates) without NUL, which no command line can carry.
    const samples = fc.sample(fc.array(fc.string({ unit: 'binary', maxLength: 12 }).map((s) => s.replace(/\0/g, '')), { minLength: 1, maxLength: 5 }), { numRuns: 30, seed: SEED });
    const odd = ["it's", 'two  spaces', '$HOME', '`id`', 'a"b', '\\"', 'tail\\', 'new\nline', 'tab\tx', 'ünïcødé \u{1F600}', '*', '', '%PATH%', '^&|<>'];
    const cases = [odd, ...samples];
    const flat = cases.flatMap((c) => [...c, '--rubicon-case--']);
    const cwd = path.join(n.hosts.win.dataDir, 'work dir');
    mkdirSync(cwd, { recursive: true });
    const [args, full, missing] = await drive([
      { op: 'exec', argv: ['printf', '%s\\0', ...flat] },
      { op: 'exec', argv: ['sh', '-c', 'cat; printf "|%s|%s|" "$(pwd)" "$RUBICON_T"; echo to-stderr >&2; exit 7'], input: 'from stdin\n', cwd, env: { RUBICON_T: "v a l'ue" } },
      { op: 'exec', argv: ['no-such-program-rubicon'] },
    ]);
    expect(args?.ok, JSON.stringify(args)).toBe(true);
    if (!args?.ok) return;
    expect(args.value.exitCode).toBe(0);
    const got = (args.value.stdout as string).split('\0').slice(0, -1);
    const back: string[][] = [[]];
    for (const a of got) {
      if (a === '--rubicon-case--') back.push([]);
      else back.at(-1)!.push(a);
    }
    back.pop();
    cases.forEach((c, i) => expect(back[i], `seed ${SEED} case ${i}`).toEqual(c));
    expect(full?.ok && full.value).toMatchObject({ exitCode: 7, stdout: `from stdin\n|${cwd}|v a l'ue|`, stderr: 'to-stderr\n' });
    expect(missing?.ok && missing.value.exitCode).toBe(127);
    expect(missing?.ok && missing.value.stderr).toMatch(/no-such-program-rubicon: not found/);
  });

  it('writes and reads small files atomically (owner-only by default), and names a missing or too large file', async () => {
    const file = path.join(net().hosts.win.dataDir, 'small', 'grant.json');
    const data = '{"password":"p\u00e4ss \u2019 $x"}\n';
    const [w, r, miss, big] = await drive([
      { op: 'writeSmall', path: file, data },
      { op: 'readSmall', path: file, max: 100 },
      { op: 'readSmall', path: `${file}.nope`, max: 100 },
      { op: 'readSmall', path: file, max: 3 },
    ]);
    expect(w?.ok, JSON.stringify(w)).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(data);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(r?.ok && Buffer.from(r.value, 'base64').toString()).toBe(data);
    expect(miss).toMatchObject({ ok: false, code: 'MACHINE_FILE_MISSING' });
    expect(big).toMatchObject({ ok: false, code: 'MACHINE_FILE_TOO_LARGE' });
    expect(existsSync(path.join(path.dirname(file)))).toBe(true);
  });

  it('a step killed with its orchestrator goes on and is re-attached; a lost one is STEP_LOST or, idempotent, runs again', async () => {
    const n = net();
    const o = options();
    const marker = path.join(n.hosts.win.dataDir, 'step-ran');
    writeFileSync(marker, '');
    const id = 'r-1/capture/long';
    const folder = path.join(o.stepsRoot, stepFolderName(id));
    const argv = ['sh', '-c', `echo ran >> '${marker}'; sleep 4; echo done`];
    const p = n.node('ctl', [DRIVER, driverArg([{ op: 'run', id, idempotent: false, argv, input: 'in' }])], { timeoutMs: 590_000 });
    // Kill the orchestrator as soon as the step's wrapper runs on the machine (its pid file).
    for (let i = 0; i < 2400 && !existsSync(path.join(folder, 'pid')); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(path.join(folder, 'pid'))).toBe(true);
    p.kill('SIGKILL');
    await p;
    const [again] = await drive([{ op: 'run', id, idempotent: false, argv }]);
    expect(again?.ok && again.value, JSON.stringify(again)).toMatchObject({ exitCode: 0, reattached: true, stdout: 'done\n' });
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');
    expect(statSync(folder).mode & 0o777).toBe(0o700);

    // Lost: the wrapper died without a result (a reboot): a dead pid and no rc.
    rmSync(path.join(folder, 'rc'));
    writeFileSync(path.join(folder, 'pid'), '999999 1\n');
    const [refused, rerun] = await drive([
      { op: 'run', id, idempotent: false, argv },
      { op: 'run', id, idempotent: true, argv: ['sh', '-c', 'echo again'] },
    ]);
    expect(refused).toMatchObject({ ok: false, code: 'STEP_LOST' });
    expect(rerun?.ok && rerun.value, JSON.stringify(rerun)).toMatchObject({ exitCode: 0, reattached: false, stdout: 'again\n' });
    expect(readFileSync(marker, 'utf8')).toBe('ran\n');
  });

  it('the machine enforces a step deadline itself (124); CLIXML on stderr arrives as plain messages', async () => {
    const [slow, clixml] = await drive([
      { op: 'run', id: 'r-1/slow', idempotent: true, argv: ['sleep', '120'], timeoutMs: 3000 },
      { op: 'powershell', text: "$ProgressPreference = 'Continue'; Write-Progress -Activity 'copying' -Status 'half'; Write-Warning 'low <space> & more'; Write-Error 'bad thing: \u00e9'; [Console]::Out.WriteLine('still here')" },
    ]);
    expect(slow?.ok && slow.value.exitCode, JSON.stringify(slow)).toBe(124);
    expect(clixml?.ok, JSON.stringify(clixml)).toBe(true);
    if (!clixml?.ok) return;
    expect(clixml.value.stdout).toContain('still here');
    expect(clixml.value.stderr).not.toContain('CLIXML');
    expect(clixml.value.stderr).not.toContain('<Objs');
    expect(clixml.value.stderr).toContain('WARNING: low <space> & more');
    expect(clixml.value.stderr).toMatch(/bad thing: \u00e9/);
    expect(clixml.value.stderr).not.toContain('\x1b');
  });

  it('an unknown host key is refused with the fix, before any PowerShell runs', async () => {
    const n = net();
    const kh = path.join(n.dir, 'kh-empty');
    writeFileSync(kh, '');
    const [r] = await drive([{ op: 'exec', argv: ['true'] }], { knownHostsFile: kh });
    expect(r).toMatchObject({ ok: false, code: 'MACHINE_HOST_KEY', details: { reason: 'unknown' } });
    expect(r?.ok === false && r.hint).toMatch(/ssh-keyscan/);
  });

  it('the manifest script run through the transport equals Rubicon\u2019s own walk and hashes of the same tree', async () => {
    const n = net();
    const root = path.join(n.hosts.win.dataDir, 'tree');
    const names = {
      nfd: 'cafe\u0301',
      astral: 'emoji-\u{1F600}.txt',
      odd: `we"ird $name \`tick [1] 'q' \u2019typo\u2019.txt`,
      newline: 'line\nbreak.txt',
      long: Array.from({ length: 6 }, (_, i) => `segment-${i}-${'l'.repeat(40)}`).join('/'),
    };
    const files: Record<string, string> = { 'plain.txt': 'hello', 'empty.bin': '', [`${names.nfd}/x.txt`]: 'nfd', [names.astral]: 'a', [names.odd]: 'odd', [names.newline]: 'nl', [`${names.long}/deep.txt`]: 'deep' };
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(path.join(root, rel, '..'), { recursive: true });
      writeFileSync(path.join(root, rel), content);
    }
    symlinkSync(n.hosts.win.dataDir, path.join(root, 'link-to-dir'));
    const [r] = await drive([{ op: 'runScript', id: 'r-1/capture/manifest', name: 'manifest', args: { root } }]);
    expect(r?.ok, JSON.stringify(r)).toBe(true);
    if (!r?.ok) return;
    const out = parseScriptOutput<ManifestData>(r.value.result.stdout, { script: 'manifest', encodedArgs: r.value.encodedArgs, exitCode: r.value.result.exitCode });
    expect(r.value.result.exitCode).toBe(0);
    const { entries, problems } = manifestEntriesFromOutput(out);
    expect(problems.map((p) => `${p.kind}:${p.path}`)).toEqual(['reparse:link-to-dir']);
    const node = await walkAll(root);
    expect(entries.map((e) => e.path)).toEqual(node.files.map((f) => f.path));
    for (const [i, f] of node.files.entries()) {
      const e = entries[i]!;
      expect({ path: e.path, size: e.size, mode: e.mode }).toEqual({ path: f.path, size: f.size, mode: f.mode });
      expect(Math.abs(e.mtimeMs - f.mtimeMs), e.path).toBeLessThan(0.001);
      expect(e.sha256, e.path).toBe((await hashFile(path.join(root, f.path))).sha256);
    }
    expect(entries.map((e) => e.path)).toEqual(expect.arrayContaining([names.astral, names.odd, names.newline, `${names.long}/deep.txt`, `${names.nfd}/x.txt`]));
  });
});
