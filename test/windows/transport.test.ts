import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeClixml, decodePsrpString } from '../../src/machines/windows/clixml.ts';
import { OPENSSH_COMMAND_LIMIT, programSpec } from '../../src/machines/windows/openssh.ts';
import { encodePowerShellCommand } from '../../src/machines/windows/quote.ts';
import { checkFrames, entryText, parseFrames, runCommandText, stdinBootstrap, TRANSPORT_ENTRIES, transportSourceFiles, wrapperText } from '../../src/machines/windows/transport.ts';
import { windowsPath } from '../../src/machines/windows/windows-machine.ts';
import { checkPwsh, mustRun, pwsh } from './pwsh.ts';

/**
 * The transport library (src/machines/windows/transport/): its frames, the
 * CLIXML decoder, and — under real PowerShell 7 — the Windows PowerShell
 * 5.1 guard over every text the transports send, real CLIXML as pwsh
 * writes it, and the exec entry's own deadline and refusals.
 */
const check = checkPwsh();
const GUARD = join(import.meta.dirname, 'ps51-guard.ps1');

function frames(state: string, out: Buffer, err = Buffer.alloc(0)): string {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const chunks = (k: string, b: Buffer) => Array.from({ length: Math.ceil(b.length / 768) }, (_, i) => `RUBICON-T1 ${k} ${b.subarray(i * 768, (i + 1) * 768).toString('base64')}`);
  return [...chunks('err', err), ...chunks('out', out), `RUBICON-T1 sum ${out.length} ${sha(out)} 0 ${err.length} ${sha(err)} 0`, `RUBICON-T1 state ${state}`, 'RUBICON-T1 end', ''].join('\n');
}

describe('frames', () => {
  it('reads the last complete answer; a missing end line means the entry did not finish', () => {
    const text = `banner\r\n${frames('done 3 fresh', Buffer.from('out\n'), Buffer.from('err\n')).replace(/\n/g, '\r\n')}`;
    const f = parseFrames(text)!;
    expect(f).toMatchObject({ state: ['done', '3', 'fresh'], partial: false });
    expect(f.out.toString()).toBe('out\n');
    expect(f.err.toString()).toBe('err\n');
    checkFrames(f, 'x');
    expect(parseFrames(text.replace('RUBICON-T1 end', ''))).toBeUndefined();
  });

  it('a 4 KB tail (Run Command\u2019s instance view) keeps whole chunks and says it is partial', () => {
    const out = Buffer.from(Array.from({ length: 20_000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join(''));
    const tail = frames('done 0 fresh', out).slice(-4096);
    const f = parseFrames(tail)!;
    expect(f.partial).toBe(true);
    expect(f.out.length % 768 === 20_000 % 768 || f.out.length % 768 === 0).toBe(true);
    expect(out.subarray(out.length - f.out.length).equals(f.out)).toBe(true);
    expect(f.sum?.outBytes).toBe(20_000);
    checkFrames(f, 'x');
  });

  it('altered bytes fail the SHA-256 check; more bytes than sent fail the count', () => {
    const good = frames('ok', Buffer.from('the file content'));
    const f = parseFrames(good.replace(Buffer.from('the file content').toString('base64'), Buffer.from('the file c0ntent').toString('base64')))!;
    expect(() => checkFrames(f, 'reading x on win')).toThrow(/does not match the SHA-256/);
    const doubled = parseFrames(good.replace(/(RUBICON-T1 out \S+)/, '$1\n$1'))!;
    expect(() => checkFrames(doubled, 'reading x on win')).toThrow(/more stdout arrived/);
  });

  it('programSpec: argv as one Windows command line; NUL and bad variable names refused', () => {
    expect(programSpec({ argv: ['robocopy', 'D:\\ehr X', '\\\\vault\\share\\', '/MIR'], cwd: 'C:\\', env: { A_B: '1' } })).toEqual({ file: 'robocopy', args: '"D:\\ehr X" \\\\vault\\share\\ /MIR', cwd: 'C:\\', 'env.A_B': '1' });
    expect(() => programSpec({ argv: ['x', 'a\0b'] })).toThrow(/NUL/);
    expect(() => programSpec({ argv: ['x'], env: { 'A-B': '1' } })).toThrow(/not valid/);
    expect(windowsPath('C:\\ProgramData\\Rubicon/steps/r-1', 'abc')).toBe('C:\\ProgramData\\Rubicon\\steps\\r-1\\abc');
    expect(windowsPath('\\\\vault\\share\\', 'x')).toBe('\\\\vault\\share\\x');
    expect(windowsPath('/tmp/x/', 'abc')).toBe('/tmp/x/abc');
  });

  it('every transport text goes over stdin (longer than the command line limit); the bootstrap itself fits', () => {
    const t = entryText('exec', programSpec({ argv: ['x'] }), { kind: 'none' });
    expect(`powershell -NoProfile -NonInteractive -EncodedCommand ${encodePowerShellCommand(t)}`.length).toBeGreaterThan(OPENSSH_COMMAND_LIMIT);
    const boot = stdinBootstrap(t, Buffer.from('secret'));
    expect(`powershell -NoProfile -NonInteractive -EncodedCommand ${boot.encodedCommand}`.length).toBeLessThan(OPENSSH_COMMAND_LIMIT);
    expect(boot.encodedCommand).not.toContain(Buffer.from('secret').toString('base64'));
    expect(boot.stdin.split('\n')[1]).toBe(Buffer.from('secret').toString('base64'));
  });
});

describe('CLIXML decoding', () => {
  it('decodes the Windows PowerShell 5.1 shape (one string per line of a record, CRLF as _x000D__x000A_) and keeps plain stderr as is', () => {
    // The shape of MS-PSRP 2.2.5.1.1 (String, <S>) with 2.2.5.3.2's _xHHHH_ encoding, as powershell.exe 5.1 writes an error record.
    const v51 = [
      '#< CLIXML',
      '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>' +
        "<S S=\"Error\">Stop-Service : Cannot find any service with service name 'EHR &amp; Co'._x000D__x000A_</S><S S=\"Error\">At line:1 char:1_x000D__x000A_</S><S S=\"Error\">+ Stop-Service -Name 'EHR &amp; Co'_x000D__x000A_</S><S S=\"warning\">disk &lt;10% free_x000D__x000A_</S><S S=\"verbose\">file_x005F_x1234_ kept</S></Objs>",
    ].join('\r\n');
    const d = decodeClixml(v51);
    expect(d.clixml).toBe(true);
    expect(d.progress).toBe(1);
    expect(d.text).toBe("Stop-Service : Cannot find any service with service name 'EHR & Co'.\nAt line:1 char:1\n+ Stop-Service -Name 'EHR & Co'\nWARNING: disk <10% free\nVERBOSE: file_x1234_ kept\n");
    expect(decodeClixml('robocopy: ERROR 5 (0x00000005) Access is denied.\n').text).toBe('robocopy: ERROR 5 (0x00000005) Access is denied.\n');
    expect(decodePsrpString('_xD83D__xDE00_')).toBe('\u{1F600}');
  });

  it.skipIf(!mustRun(check))(`decodes what real pwsh writes: progress dropped, warning, verbose and error as plain lines, no ANSI${check.ok ? '' : ` (skipped: ${check.reason})`}`, async () => {
    const text = "$ProgressPreference = 'Continue'; $VerbosePreference = 'Continue'; Write-Progress -Activity 'copying' -Status 'half'; Write-Warning 'low <space> & more'; Write-Verbose 'step 2'; Write-Error 'bad thing: \u00e9 \u{1F600}'; exit 3";
    const r = await pwsh(['-EncodedCommand', encodePowerShellCommand(text)]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/^#< CLIXML\r?\n<Objs /);
    const d = decodeClixml(r.stderr);
    expect(d.progress).toBeGreaterThan(0);
    expect(d.text).toContain('WARNING: low <space> & more\n');
    expect(d.text).toContain('VERBOSE: step 2\n');
    expect(d.text).toMatch(/bad thing: \u00e9 \u{1F600}/u);
    expect(d.text).not.toMatch(/\x1b|_x[0-9A-F]{4}_|<S /);
  });
});

describe.skipIf(!mustRun(check))(`the transport texts under real PowerShell 7${check.ok ? '' : ` (skipped: ${check.reason})`}`, () => {
  let dir: string;
  beforeAll(() => {
    if (!check.ok) throw new Error(check.reason);
    dir = mkdtempSync(join(tmpdir(), 'rubicon-transport-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes the Windows PowerShell 5.1 guard: every source file and every text as sent', async () => {
    const texts: Record<string, string> = {
      wrapper: wrapperText(),
      'run-command-exec': runCommandText('run-command-step', programSpec({ argv: ['x'] })),
      'run-command-inline': runCommandText('run-command-step', programSpec({ argv: ['x'] }), 'Write-Output 1\n'),
      bootstrap: Buffer.from(stdinBootstrap('x', undefined).encodedCommand, 'base64').toString('utf16le'),
    };
    for (const e of TRANSPORT_ENTRIES) texts[e] = entryText(e, { a: 'b' }, { kind: 'none' });
    const files = [...transportSourceFiles()];
    for (const [k, t] of Object.entries(texts)) {
      const f = join(dir, `${k}.ps1`);
      writeFileSync(f, t);
      files.push(f);
    }
    const script = `. '${GUARD}'; foreach ($f in @(${files.map((f) => `'${f}'`).join(', ')})) { $found = Get-Ps51Finding -Path $f; foreach ($x in $found) { [Console]::Out.WriteLine($f + ': ' + $x.rule + ' line ' + $x.line + ': ' + $x.text) } }; [Console]::Out.WriteLine('GUARD-DONE ' + ${files.length})`;
    const r = await pwsh(['-Command', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual([`GUARD-DONE ${files.length}`]);
  });

  it('exec: its own deadline kills the program (124, timed out); a missing working folder is 125', async () => {
    const run = async (spec: Record<string, string>) => {
      const t = entryText('exec', { ...spec, max: '100000' }, { kind: 'preset' });
      const b = stdinBootstrap(t, undefined);
      const r = await pwsh(['-EncodedCommand', b.encodedCommand], { input: b.stdin });
      return parseFrames(r.stdout)!;
    };
    const [slow, nowhere] = await Promise.all([
      run({ ...programSpec({ argv: ['sh', '-c', 'echo started; sleep 60'] }), deadline: '1' }),
      run({ ...programSpec({ argv: ['true'], cwd: join(dir, 'no such folder') }), deadline: '0' }),
    ]);
    expect(slow.state).toEqual(['done', '124', '1']);
    expect(slow.out.toString()).toBe('started\n');
    expect(nowhere.state).toEqual(['done', '125', '0']);
    expect(nowhere.err.toString()).toMatch(/the working folder .* does not exist/);
  });
});
