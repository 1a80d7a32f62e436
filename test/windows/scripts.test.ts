/**
 * src/machines/windows/scripts.ts: assembly, the argument encoding, the
 * sentinel check (every way it can fail), and the scripts run for real
 * under PowerShell 7 the way a transport runs them (-File with
 * -RubiconArgs, the stdin bootstrap, -EncodedCommand). The manifest of a
 * real tree is compared with Rubicon's own walk and hashes of the same tree.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { hashFile } from '../../src/files/drift.ts';
import { comparePaths } from '../../src/core/paths.ts';
import { walkAll } from '../../src/files/walk.ts';
import { manifestEntriesFromOutput, type ManifestData } from '../../src/machines/windows/results.ts';
import {
  argsDigest,
  commandText,
  encodeArgs,
  encodedCommand,
  parseScriptOutput,
  scriptData,
  ScriptOutputError,
  scriptText,
  stdinBootstrap,
  WINDOWS_SCRIPTS,
  windowsScript,
  type ScriptOutputProblem,
} from '../../src/machines/windows/scripts.ts';
import { checkPwsh, mustRun, pwsh } from './pwsh.ts';
import { assertProperty } from '../support/seed.ts';

// ------------------------------------------------------------ a TS writer of the protocol, for the parser's tests

function sha(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

function protocolOutput(opts: { script?: string; encodedArgs?: string; records?: unknown[]; result?: unknown; newline?: string } = {}): string {
  const nl = opts.newline ?? '\n';
  const result = opts.result ?? { ok: true, script: opts.script ?? 'manifest', scriptVersion: 1, host: { computerName: 'SRV-EHR01' }, records: 0, data: { n: 1 } };
  const payload = [...(opts.records ?? []), result].map((r) => JSON.stringify(r));
  const body = payload.map((l) => `${l}\n`).join('');
  return [
    `RUBICON-BEGIN v1 ${opts.script ?? 'manifest'} 1 ${sha(opts.encodedArgs ?? '')}`,
    ...payload,
    `RUBICON-RESULT v1 ${sha(body)} ${Buffer.byteLength(body)}`,
    '',
  ].join(nl);
}

function problemOf(f: () => unknown): ScriptOutputProblem | 'none' {
  try {
    f();
    return 'none';
  } catch (e) {
    if (e instanceof ScriptOutputError) return e.problem;
    throw e;
  }
}

describe('assembly', () => {
  it('assembles every script: param block, prelude, its libraries, the script, the entry line', () => {
    for (const name of WINDOWS_SCRIPTS) {
      const t = scriptText(name);
      const lines = t.split('\n');
      // capture and landing v2: restic through a grant's files; v3: robocopy into / from an SMB share mapped by New-SmbMapping.
      const v = name === 'capture' || name === 'landing' ? 3 : 1;
      expect(lines[0]).toMatch(new RegExp(`^# Rubicon ${name} v${v} \\(prelude v1\\)`));
      expect(lines[1]).toBe("param([string]$RubiconArgs = '')");
      expect(t).toContain('function Invoke-RubiconEntry');
      expect(lines.at(-2)).toBe(`exit (Invoke-RubiconEntry -Script '${name}' -Version ${v} -EncodedArgs $RubiconArgs -Body 'Invoke-Rubicon${name[0]!.toUpperCase()}${name.slice(1)}')`);
      expect(t).toMatch(/^[\x00-\x7F]*$/);
      expect(windowsScript(name).sha256).toBe(sha(t));
    }
    expect(scriptText('capture')).toContain('function Invoke-RubiconRobocopy');
    expect(scriptText('manifest')).not.toContain('function Invoke-RubiconRobocopy');
    expect(scriptText('freeze')).toContain('function Get-RubiconServiceRecord');
  });
  it('refuses an unknown script name', () => {
    expect(() => windowsScript('format-c' as never)).toThrow(/unknown Windows script 'format-c'/);
  });
  it('embeds the argument of -EncodedCommand text as a single-quoted literal', () => {
    const a = encodeArgs({ root: "D:\\it's" });
    expect(commandText('manifest', a).split('\n')[1]).toBe(`$RubiconArgs = '${a}'`);
    expect(Buffer.from(encodedCommand('manifest', a), 'base64').toString('utf16le')).toBe(commandText('manifest', a));
  });
});

describe('encodeArgs', () => {
  it('is base64 of the UTF-8 JSON', () => {
    const a = { root: 'D:\\EHR\\X', exclude: ['tmp'], n: 3, deep: { ok: true, none: null } };
    expect(JSON.parse(Buffer.from(encodeArgs(a), 'base64').toString('utf8'))).toEqual(a);
    expect(argsDigest(encodeArgs(a))).toBe(sha(encodeArgs(a)));
  });
  it('refuses what JSON cannot carry faithfully', () => {
    expect(() => encodeArgs({ n: Number.NaN })).toThrow(/args\.n is NaN/);
    expect(() => encodeArgs({ x: undefined })).toThrow(/args\.x is undefined/);
    expect(() => encodeArgs({ d: new Date() })).toThrow(/args\.d is a object/);
    expect(() => encodeArgs({ list: [1, () => 1] })).toThrow(/args\.list\[1\]/);
  });
});

describe('parseScriptOutput', () => {
  const a = encodeArgs({ root: '/x' });

  it('returns the records, the result and the verified digest', () => {
    const out = parseScriptOutput(protocolOutput({ encodedArgs: a, records: [{ kind: 'file', n: 1 }, { kind: 'file', n: 2 }] }), { script: 'manifest', encodedArgs: a, exitCode: 0 });
    expect(out.records).toEqual([{ kind: 'file', n: 1 }, { kind: 'file', n: 2 }]);
    expect(out.result.ok).toBe(true);
    expect(out.noiseLines).toBe(0);
    expect(scriptData(out)).toEqual({ n: 1 });
  });
  it('ignores text before BEGIN, counts noise lines inside without copying them, and accepts CRLF', () => {
    const clean = protocolOutput({ encodedArgs: a, records: [{ n: 1 }] });
    const lines = clean.split('\n');
    const noisy = ['Windows PowerShell banner', ...lines.slice(0, 2), 'WARNING: Waiting for service to stop...', ...lines.slice(2)].join('\r\n');
    const out = parseScriptOutput(noisy, { encodedArgs: a });
    expect(out.noiseLines).toBe(1);
    expect(out.records).toEqual([{ n: 1 }]);
  });
  it('uses the last run when a re-run was appended to the same output', () => {
    const first = protocolOutput({ encodedArgs: a, result: { ok: false, script: 'manifest', scriptVersion: 1, host: {}, records: 0, error: { code: 'X', message: 'm', details: null, where: null } } });
    const out = parseScriptOutput(first + protocolOutput({ encodedArgs: a }), { exitCode: 0 });
    expect(out.result.ok).toBe(true);
  });
  it.each<[ScriptOutputProblem, () => unknown]>([
    ['no-sentinel', () => parseScriptOutput(protocolOutput().split('\n').slice(0, -2).join('\n'))],
    ['no-begin', () => parseScriptOutput(protocolOutput().split('\n').slice(1).join('\n'))],
    ['length-mismatch', () => parseScriptOutput(protocolOutput({ records: [{ n: 1 }] }).split('\n').filter((l, i) => i !== 1).join('\n'))],
    ['hash-mismatch', () => parseScriptOutput(protocolOutput({ records: [{ n: 1 }] }).replace('{"n":1}', '{"n":2}'))],
    ['bad-json', () => {
      const body = '{not json\n{"ok":true,"data":1}\n';
      return parseScriptOutput(`RUBICON-BEGIN v1 manifest 1 ${sha('')}\n${body}RUBICON-RESULT v1 ${sha(body)} ${Buffer.byteLength(body)}\n`);
    }],
    ['no-result', () => parseScriptOutput(protocolOutput({ result: { kind: 'file' } }))],
    ['wrong-script', () => parseScriptOutput(protocolOutput({ script: 'capture' }), { script: 'manifest' })],
    ['wrong-args', () => parseScriptOutput(protocolOutput({ encodedArgs: a }), { encodedArgs: encodeArgs({ root: '/y' }) })],
    ['exit-code-mismatch', () => parseScriptOutput(protocolOutput(), { exitCode: 1 })],
  ])('refuses output with %s', (problem, f) => {
    expect(problemOf(f)).toBe(problem);
  });
  it('notices any single changed character in the payload (property)', () => {
    const text = protocolOutput({ encodedArgs: a, records: [{ kind: 'file', path: 'caf\u00e9/x', size: 12 }, { kind: 'file', path: 'b', size: 0 }] });
    const start = text.indexOf('\n') + 1;
    const end = text.lastIndexOf('RUBICON-RESULT');
    assertProperty(
      fc.property(fc.integer({ min: start, max: end - 2 }), fc.integer({ min: 0x21, max: 0x7e }), (pos, code) => {
        fc.pre(text.charCodeAt(pos) !== code && text[pos] !== '\n' && text[pos - 1] !== '\n');
        const changed = text.slice(0, pos) + String.fromCharCode(code) + text.slice(pos + 1);
        expect(problemOf(() => parseScriptOutput(changed))).not.toBe('none');
      }),
      { numRuns: 300 },
    );
  });
  it('makes an error result a SCRIPT_FAILED RubiconError carrying the script code', () => {
    const out = parseScriptOutput(protocolOutput({ result: { ok: false, script: 'capture', scriptVersion: 1, host: { computerName: 'SRV-EHR01' }, records: 0, error: { code: 'VSS_CREATE_FAILED', message: 'returned 9', details: { returnValue: 9 }, where: 'line 3' } }, script: 'capture' }), { exitCode: 1 });
    try {
      scriptData(out);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(RubiconError);
      const r = e as RubiconError;
      expect(r.code).toBe('SCRIPT_FAILED');
      expect(r.exitCode).toBe(1);
      expect(r.message).toBe('script capture on SRV-EHR01 failed: VSS_CREATE_FAILED: returned 9');
      expect(r.details).toMatchObject({ script: 'capture', scriptCode: 'VSS_CREATE_FAILED', scriptDetails: { returnValue: 9 } });
      expect(r.hint).toMatch(/code 9/);
    }
  });
});

describe('manifestEntriesFromOutput', () => {
  const records = [
    { kind: 'file', path: 'a/b.txt', size: 3, mtimeMs: 1.5, mode: 420, sha256: 'a'.repeat(64), stable: true },
    { kind: 'file', path: 'c', size: 3, mtimeMs: 1.5, mode: 420, sha256: 'b'.repeat(64), stable: false },
    { kind: 'reparse', path: 'link', linkType: 'SymbolicLink', target: '/x' },
    { kind: 'unreadable', path: 'locked.db', code: 'LOCKED', message: 'in use', size: 1, mtimeMs: 2 },
  ];
  const output = (recs: unknown[]) => parseScriptOutput<ManifestData>(protocolOutput({ records: recs }));
  it('gives Rubicon manifest entries and names everything that is not one', () => {
    const { entries, problems } = manifestEntriesFromOutput(output(records));
    expect(entries).toEqual([{ path: 'a/b.txt', size: 3, mtimeMs: 1.5, mode: 420, sha256: 'a'.repeat(64) }]);
    expect(problems.map((p) => `${p.kind}:${p.path}${'problem' in p ? `:${p.problem}` : ''}`)).toEqual(['file:c:unstable', 'reparse:link', 'unreadable:locked.db']);
  });
  it('refuses a record with an unsafe path or a wrong shape', () => {
    expect(() => manifestEntriesFromOutput(output([{ ...records[0], path: '../etc/passwd' }]))).toThrow(/has a "\.\." segment/);
    expect(() => manifestEntriesFromOutput(output([{ ...records[0], sha256: 'XYZ' }]))).toThrow(/record 1 is malformed/);
  });
});

// ------------------------------------------------------------ real PowerShell

const check = checkPwsh();

describe.skipIf(!mustRun(check))(`the scripts under real PowerShell 7${check.ok ? '' : ` (${check.reason})`}`, () => {
  let base: string;
  let root: string;
  const names = {
    nfc: 'caf\u00e9',
    nfd: 'cafe\u0301',
    astral: 'emoji-\u{1F600}.txt',
    odd: `we"ird $name \`tick [1] {2} 'q' \u2019typo\u2019.txt`,
    newline: 'line\nbreak.txt',
    long: Array.from({ length: 6 }, (_, i) => `segment-${i}-${'l'.repeat(40)}`).join('/'),
  };

  beforeAll(() => {
    if (!check.ok) throw new Error(check.reason);
    base = mkdtempSync(join(tmpdir(), 'rubicon-win-scripts-'));
    root = join(base, 'tree');
    const files: Record<string, string> = {
      'plain.txt': 'hello',
      'empty.bin': '',
      [`${names.nfc}/r\u00e9sum\u00e9.txt`]: 'nfc',
      [`${names.nfd}/x.txt`]: 'nfd',
      [names.astral]: 'astral',
      'emoji-\uFFFD.txt': 'bmp',
      [names.odd]: 'odd',
      [names.newline]: 'nl',
      'a/b': 'ab',
      'a-b': 'a-b',
      [`${names.long}/deep.txt`]: 'deep',
      'secret/locked-away.db': 'unreadable without DAC override',
      'private.key': 'mode 000',
    };
    for (const [rel, content] of Object.entries(files)) {
      mkdirSync(join(root, rel, '..'), { recursive: true });
      writeFileSync(join(root, rel), content);
    }
    chmodSync(join(root, 'private.key'), 0o000);
    chmodSync(join(root, 'secret'), 0o000);
    mkdirSync(join(base, 'elsewhere'));
    writeFileSync(join(base, 'elsewhere/outside.txt'), 'not in the tree');
    symlinkSync(join(base, 'elsewhere'), join(root, 'link-to-dir'));
  });
  afterAll(() => {
    if (!base) return;
    try {
      chmodSync(join(root, 'secret'), 0o755);
    } catch {
      // already gone
    }
    rmSync(base, { recursive: true, force: true });
  });

  it('manifest through the stdin bootstrap equals Rubicon\u2019s own walk and hashes of the tree', async () => {
    const a = encodeArgs({ root });
    const boot = stdinBootstrap('manifest', a);
    const r = await pwsh(['-EncodedCommand', boot.encodedCommand], { input: boot.stdin });
    const out = parseScriptOutput<ManifestData>(r.stdout, { script: 'manifest', encodedArgs: a, exitCode: r.exitCode });
    expect(r.exitCode).toBe(0);
    const { entries, problems } = manifestEntriesFromOutput(out);
    expect(problems.map((p) => `${p.kind}:${p.path}`)).toEqual(['reparse:link-to-dir']);
    const node = await walkAll(root);
    expect(node.skipped.map((s) => `${s.kind}:${s.path}`)).toEqual(['symlink:link-to-dir']);
    expect(entries.map((e) => e.path)).toEqual(node.files.map((f) => f.path));
    expect(entries.map((e) => e.path)).toEqual([...entries.map((e) => e.path)].sort(comparePaths));
    for (const [i, f] of node.files.entries()) {
      const e = entries[i]!;
      expect({ path: e.path, size: e.size, mode: e.mode }).toEqual({ path: f.path, size: f.size, mode: f.mode });
      expect(Math.abs(e.mtimeMs - f.mtimeMs), e.path).toBeLessThan(0.001);
      expect(e.sha256, e.path).toBe((await hashFile(join(root, f.path))).sha256);
    }
    expect(entries.map((e) => e.path)).toEqual(expect.arrayContaining([names.astral, names.odd, names.newline, `${names.long}/deep.txt`, `${names.nfd}/x.txt`]));
  });

  it('manifest with -File and -RubiconArgs reports, never skips, what it cannot read (run without DAC override)', async () => {
    const file = join(base, 'manifest.ps1');
    writeFileSync(file, scriptText('manifest'));
    const a = encodeArgs({ root });
    const r = await execWithoutDacOverride(['-File', file, '-RubiconArgs', a]);
    const out = parseScriptOutput<ManifestData>(r.stdout, { script: 'manifest', encodedArgs: a, exitCode: r.exitCode });
    const { problems } = manifestEntriesFromOutput(out);
    expect(problems.map((p) => `${p.kind}:${p.path}${'code' in p ? `:${p.code}` : ''}`)).toEqual(['reparse:link-to-dir', 'unreadable:private.key:ACCESS_DENIED', 'dir-unreadable:secret:ACCESS_DENIED']);
    expect(scriptData(out).complete).toBe(false);
    // Cut or altered in transit: the sentinel says so.
    expect(problemOf(() => parseScriptOutput(r.stdout.slice(0, r.stdout.length - 80)))).toBe('no-sentinel');
    expect(problemOf(() => parseScriptOutput(r.stdout.replace('"kind":"file"', '"kind":"fil\\u0065"')))).toBe('length-mismatch');
    expect(problemOf(() => parseScriptOutput(r.stdout.replace('"size":5', '"size":6')))).toBe('hash-mismatch');
  });

  it('an error result over -EncodedCommand: exit 1, a valid sentinel, SCRIPT_FAILED with the script\u2019s code', async () => {
    const a = encodeArgs({ statePath: join(base, 'never-frozen.json') });
    const r = await pwsh(['-EncodedCommand', encodedCommand('thaw', a)]);
    expect(r.exitCode).toBe(1);
    const out = parseScriptOutput(r.stdout, { script: 'thaw', encodedArgs: a, exitCode: r.exitCode });
    expect(out.result.ok).toBe(false);
    expect(() => scriptData(out)).toThrow(expect.objectContaining({ code: 'SCRIPT_FAILED', details: expect.objectContaining({ scriptCode: 'STATE_NOT_FOUND' }) }));
  });

  it('the stdin bootstrap refuses a script text altered on the way (no sentinel, exit 1)', async () => {
    const a = encodeArgs({ root });
    const boot = stdinBootstrap('manifest', a);
    const r = await pwsh(['-EncodedCommand', boot.encodedCommand], { input: boot.stdin.replace('Set-StrictMode', 'Set-StrictMod') });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/arrived altered on stdin/);
    expect(problemOf(() => parseScriptOutput(r.stdout, { exitCode: r.exitCode }))).toBe('no-sentinel');
  });
});

/** pwsh as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so mode-000 files are really unreadable. */
async function execWithoutDacOverride(args: string[]) {
  const { execa } = await import('execa');
  const { PWSH } = await import('./pwsh.ts');
  const r = await execa('setpriv', ['--bounding-set=-dac_override,-dac_read_search', PWSH, '-NoProfile', '-NonInteractive', ...args], { reject: false, stdin: 'ignore', stripFinalNewline: false, timeout: 300_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
