import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { loadRunbook, parseRunbook } from '../../src/runbook/load.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';

const FILE = '/estate/runbook.yaml';
const GOOD = sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z'));

function problem(text: string): RubiconError {
  try {
    parseRunbook(text, FILE);
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected the runbook to be refused');
}

describe('runbook: parse → normalize → rules', () => {
  it('accepts the sandbox runbook and fills every default', () => {
    const rb = parseRunbook(GOOD, FILE);
    expect(rb.target.root).toBe('/estate/target');
    expect(rb.vaults.map((v) => ('path' in v ? v.path : undefined))).toEqual(['/estate/vaults/nas', '/estate/vaults/offsite']);
    expect(rb.policy).toMatchObject({ minIndependentMethods: 2, minVaults: 2, minOffTargetVaults: 1 });
    expect(rb.methods.databases.sqlite).toEqual(['sqlite-backup-api', 'sqlite-sql-dump']);
    expect(rb.vendorJobs[0]!.timeoutMs).toBe(600_000);
    expect(rb.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rb.warnings).toEqual([]);
  });

  // Each kind of mistake: the field it names, words of the fix, always exit code 3.
  const CASES: { name: string; edit: (t: string) => string; path: string | RegExp; fix: RegExp }[] = [
    { name: 'YAML syntax', edit: (t) => t.replace('name: ehr-upgrade', 'name: [ehr-upgrade'), path: /line \d+, column \d+/, fix: /YAML syntax/ },
    { name: 'unknown field (typo)', edit: (t) => t.replace('discovery:', 'discovry:\n  roots: [ehr]\ndiscovery:'), path: '(top level)', fix: /unknown field "discovry".*spelling/ },
    { name: 'wrong vault kind', edit: (t) => t.replace('kind: filesystem', 'kind: filesystm'), path: 'vaults[0].kind', fix: /must have kind "filesystem"/ },
    { name: 'missing target image', edit: (t) => t.replace(/ {2}image: .*\n/, ''), path: 'target.image', fix: /required/ },
    { name: 'absolute declared folder', edit: (t) => t.replace('    - ehr/A', '    - /ehr/A'), path: 'declared.folders[0]', fix: /relative to the target root/ },
    { name: '".." in a path', edit: (t) => t.replace('    - ehr/A', '    - ehr/../../etc'), path: 'declared.folders[0]', fix: /must not contain "\.\."/ },
    { name: 'vault inside the target', edit: (t) => t.replace('path: ./vaults/nas', 'path: ./target/backups'), path: 'vaults[0].path', fix: /inside the target root.*wipe/ },
    { name: 'duplicate vault name', edit: (t) => t.replace('name: offsite', 'name: nas'), path: 'vaults[1].name', fix: /used twice/ },
    { name: 'looser policy without override', edit: (t) => t.replace('policy: {}', 'policy:\n  minVaults: 1'), path: 'policy.minVaults', fix: /looser than the default 2.*override/ },
    { name: 'override without a real reason', edit: (t) => t.replace('policy: {}', 'policy: {}\noverrides:\n  - {rule: drift.none, reason: "ok", by: me}'), path: 'overrides[0].reason', fix: /explain why/ },
    { name: 'proving ground overlaps the target', edit: (t) => t.replace('provingGround: ./proving-ground', 'provingGround: ./target/pg'), path: 'infra.provingGround', fix: /must not overlap the target/ },
    { name: 'confirmation date not a date', edit: (t) => t.replace(/confirmedAt: .*/, 'confirmedAt: yesterday'), path: 'manualSteps[0].confirmedAt', fix: /ISO 8601/ },
    { name: 'unsupported version', edit: (t) => t.replace('version: 1', 'version: 2'), path: 'version', fix: /must be 1/ },
    { name: 'vendor job without a command', edit: (t) => t.replace(/command: \[.*\]/, 'command: []'), path: 'vendorJobs[0].command', fix: /name the program/ },
    { name: 'a string where a list belongs', edit: (t) => t.replace('roots: [ehr, mssql]', 'roots: ehr'), path: 'discovery.roots', fix: /must be a list/ },
  ];

  for (const c of CASES) {
    it(`refuses: ${c.name}`, () => {
      const e = problem(c.edit(GOOD));
      expect(e.code).toBe('RUNBOOK_INVALID');
      expect(e.exitCode).toBe(3);
      const problems = (e.details as { problems: { path: string; message: string }[] }).problems;
      const hit = problems.find((p) => (typeof c.path === 'string' ? p.path === c.path : c.path.test(p.path)));
      expect(hit, JSON.stringify(problems)).toBeDefined();
      expect(hit!.message).toMatch(c.fix);
      // The message a person reads names the file, the field, and says nothing was touched.
      expect(e.message).toContain(FILE);
      expect(e.hint).toMatch(/nothing was touched/);
    });
  }

  it('accepts a looser policy with a recorded override, and warns', () => {
    const rb = parseRunbook(
      GOOD.replace('policy: {}', 'policy:\n  minVaults: 1\noverrides:\n  - {rule: policy.not-looser, item: minVaults, reason: "single NAS until the off-site store is ready", by: "J. Engineer"}'),
      FILE,
    );
    expect(rb.policy.minVaults).toBe(1);
    expect(rb.warnings.join(' ')).toMatch(/minVaults loosened/);
  });

  it('a stricter policy needs no override', () => {
    const rb = parseRunbook(GOOD.replace('policy: {}', 'policy:\n  minIndependentMethods: 3\n  maxProofAgeHours: 4'), FILE);
    expect(rb.policy.minIndependentMethods).toBe(3);
    expect(rb.policy.maxProofAgeHours).toBe(4);
  });

  it('a missing runbook file is invalid input (exit 3) with a hint', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rb-'));
    await expect(loadRunbook(path.join(dir, 'nope.yaml'))).rejects.toMatchObject({ code: 'RUNBOOK_NOT_FOUND', exitCode: 3 });
    await writeFile(path.join(dir, 'ok.yaml'), GOOD);
    await expect(loadRunbook(path.join(dir, 'ok.yaml'))).resolves.toMatchObject({ name: 'ehr-upgrade' });
  });

  it('a run\'s copy of its runbook resolves relative paths against the folder given (the original\'s), not its own', () => {
    const relative = GOOD.replace(/\/estate\/vaults\//g, './vaults/');
    expect(relative).toContain('./vaults/nas');
    const own = parseRunbook(relative, '/state/runs/r-1/runbook.yaml');
    expect(own.vaults.map((v) => ('path' in v ? v.path : undefined))).toEqual(['/state/runs/r-1/vaults/nas', '/state/runs/r-1/vaults/offsite']);
    const asThere = parseRunbook(relative, '/state/runs/r-1/runbook.yaml', {}, { resolveFrom: '/estate' });
    expect(asThere.vaults.map((v) => ('path' in v ? v.path : undefined))).toEqual(['/estate/vaults/nas', '/estate/vaults/offsite']);
    expect(asThere.file).toBe('/state/runs/r-1/runbook.yaml');
  });
});
