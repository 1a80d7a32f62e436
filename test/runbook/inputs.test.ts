import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import { checkBeforeStart, loadRunbook, parseRunbook, type Runbook } from '../../src/runbook/load.ts';
import { RUNBOOK_LIMITS } from '../../src/runbook/schema.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';

/**
 * Inputs that used to crash (a stack trace, exit 1) or take minutes instead
 * of being refused: each is RUNBOOK_INVALID, exit 3, naming the file, the
 * field and the fix.
 */
const FILE = '/estate/runbook.yaml';
const NOW = new Date('2026-11-28T09:00:00Z');
const GOOD = sandboxRunbook('truncate', new Date('2026-11-28T06:00:00Z'));

function refusal(f: () => unknown): RubiconError {
  try {
    f();
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

async function asyncRefusal(p: Promise<unknown>): Promise<RubiconError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RubiconError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

function problems(e: RubiconError): { path: string; message: string }[] {
  return (e.details as { problems: { path: string; message: string }[] }).problems;
}

function expectInvalid(e: RubiconError, field: string | RegExp, fix: RegExp, file = FILE): void {
  expect(e.code).toBe('RUNBOOK_INVALID');
  expect(e.exitCode).toBe(3);
  expect(e.message).toContain(file);
  expect(e.hint).toMatch(/nothing was touched/);
  const hit = problems(e).find((p) => (typeof field === 'string' ? p.path === field : field.test(p.path)));
  expect(hit, JSON.stringify(problems(e))).toBeDefined();
  expect(hit!.message).toMatch(fix);
}

const withPolicy = (yaml: string) => GOOD.replace('policy: {}', yaml);
const list = (n: number, f: (i: number) => string) => `[${Array.from({ length: n }, (_, i) => f(i)).join(', ')}]`;

describe('hostile and oversized runbooks are refused, not crashed on', () => {
  it('a "billion laughs" document (aliases of aliases) is refused before it expands', () => {
    const lol = ['lol: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 9; i++) lol.push(`l${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
    expectInvalid(refusal(() => parseRunbook(`${GOOD}\n${lol.join('\n')}\n`, FILE)), '(yaml)', /aliases.*more than 100 times.*billion laughs.*write the values out/);
  });

  it('a few aliases are fine (the limit counts expansions)', () => {
    const text = GOOD.replace('discovery:\n  roots: [ehr, mssql]', 'discovery:\n  roots: &roots [ehr, mssql]\n  exclude: *roots');
    expect(parseRunbook(text, FILE).discovery.exclude).toEqual(['ehr', 'mssql']);
  });

  it('brackets nested deeper than the limit are refused without parsing (the parser recurses)', () => {
    expectInvalid(refusal(() => parseRunbook(`name: ${'['.repeat(50_000)}`, FILE)), '(yaml)', /nests \[ \] or \{ \} more than 32 deep/);
    // Brackets in comments and quoted strings are not nesting.
    expect(parseRunbook(GOOD.replace('name: ehr-upgrade', `name: ehr-upgrade\n# ${'['.repeat(100)}`), FILE).name).toBe('ehr-upgrade');
  });

  it('100,000 declared folders are refused at once (the file is too big to be a runbook)', async () => {
    const text = GOOD.replace('    - ehr/A\n', `${Array.from({ length: 100_000 }, (_, i) => `    - ehr/f${i}\n`).join('')}`);
    expectInvalid(refusal(() => parseRunbook(text, FILE)), '(file)', /bytes, over the 131,072 a runbook may have/);
    // From disk it is refused on its size, before it is read.
    const dir = await tmp();
    await writeFile(path.join(dir, 'big.yaml'), text);
    expectInvalid(await asyncRefusal(loadRunbook(path.join(dir, 'big.yaml'))), '(file)', /over the 131,072/, path.join(dir, 'big.yaml'));
  });

  it.each([
    { field: 'declared.folders', limit: RUNBOOK_LIMITS.declaredFolders, edit: (n: number) => GOOD.replace('  folders:\n    - ehr/A\n    - mssql/backup', `  folders: ${list(n, (i) => `f${i}`)}`) },
    { field: 'declared.databases', limit: RUNBOOK_LIMITS.declaredDatabases, edit: (n: number) => GOOD.replace('    - mssql/backup\n', `    - mssql/backup\n  databases: ${list(n, (i) => `{name: d${i}, engine: sqlite}`)}\n`) },
    { field: 'discovery.roots', limit: RUNBOOK_LIMITS.discoveryRoots, edit: (n: number) => GOOD.replace('roots: [ehr, mssql]', `roots: ${list(n, (i) => `r${i}`)}`) },
    { field: 'discovery.exclude', limit: RUNBOOK_LIMITS.discoveryExcludes, edit: (n: number) => GOOD.replace('roots: [ehr, mssql]', `roots: [ehr, mssql]\n  exclude: ${list(n, (i) => `x${i}`)}`) },
    { field: 'vaults', limit: RUNBOOK_LIMITS.vaults, edit: (n: number) => GOOD.replace(/vaults:\n[\s\S]*?\n\n/, `vaults:\n${Array.from({ length: n }, (_, i) => `  - {name: v${i}, kind: filesystem, path: ./vaults/v${i}}\n`).join('')}\n`) },
    { field: 'overrides', limit: RUNBOOK_LIMITS.overrides, edit: (n: number) => withPolicy(`policy: {}\noverrides: ${list(n, (i) => `{rule: drift.none, item: "folder:ehr/X${i}", reason: "checked by hand on the console", by: ops}`)}`) },
    { field: 'manualSteps', limit: RUNBOOK_LIMITS.manualSteps, edit: (n: number) => GOOD.replace(/manualSteps:[\s\S]*$/, `manualSteps: ${list(n, (i) => `{id: s${i}, description: step ${i}}`)}\n`) },
  ])('$field: at most $limit; one more is refused naming the field', ({ field, limit, edit }) => {
    expect(() => parseRunbook(edit(limit), FILE)).not.toThrow(new RegExp(`${field.replace('.', '\\.')}: lists more than`));
    expectInvalid(refusal(() => parseRunbook(edit(limit + 1), FILE)), field, new RegExp(`lists more than ${limit.toLocaleString('en-US')} .*the most a runbook may hold`));
  });
});

describe('overrides name exactly one rule and one item', () => {
  it('an override without item is refused, saying to name the item (or the policy field)', () => {
    const e = refusal(() => parseRunbook(withPolicy('policy: {}\noverrides:\n  - {rule: drift.none, reason: "scanner cannot read X; checked by hand", by: ops}'), FILE));
    expectInvalid(e, 'overrides[0].item', /required: an override names exactly one item.*folder:ehr\/X.*policy field.*one override per item/);
    const empty = refusal(() => parseRunbook(withPolicy('policy: {}\noverrides:\n  - {rule: drift.none, item: "", reason: "scanner cannot read X; checked by hand", by: ops}'), FILE));
    expectInvalid(empty, 'overrides[0].item', /names exactly one item/);
  });

  it('a loosened policy with an override that names no field is refused (it used to loosen every field at once)', () => {
    const text = withPolicy('policy:\n  minVaults: 1\n  maxProofAgeHours: 200\noverrides:\n  - {rule: policy.not-looser, reason: "single NAS until the off-site store is ready", by: "J. Engineer"}');
    const e = refusal(() => parseRunbook(text, FILE));
    expectInvalid(e, 'overrides[0].item', /names exactly one item/);
  });

  it('each loosened field needs its own override; one naming minVaults does not loosen maxProofAgeHours', () => {
    const text = withPolicy('policy:\n  minVaults: 1\n  maxProofAgeHours: 200\noverrides:\n  - {rule: policy.not-looser, item: minVaults, reason: "single NAS until the off-site store is ready", by: "J. Engineer"}');
    const e = refusal(() => parseRunbook(text, FILE));
    expectInvalid(e, 'policy.maxProofAgeHours', /looser than the default 24.*item: maxProofAgeHours/);
    expect(problems(e).map((p) => p.path)).not.toContain('policy.minVaults');
  });

  it('an override of policy.not-looser must name a policy field', () => {
    const e = refusal(() => parseRunbook(withPolicy('policy:\n  minVaults: 1\noverrides:\n  - {rule: policy.not-looser, item: minVault, reason: "single NAS until the off-site store is ready", by: ops}'), FILE));
    expectInvalid(e, 'overrides[0].item', /"minVault" is not a policy field.*minVaults/);
  });
});

describe('manual steps: confirmedAt is an ISO 8601 instant, not in the future, not older than the policy allows', () => {
  const confirmedAt = (v: string) => GOOD.replace(/confirmedAt: .*/, `confirmedAt: ${v}`);

  it.each(['"1"', '1', 'Dec 1 2026', '2026-02-30T09:00:00Z', '2026-11-28', '2026-11-28T09:00:00', '2026-11-28 09:00:00Z', '2026-13-01T00:00:00Z', 'yesterday'])(
    'refuses %s at load, naming the field',
    (v) => expectInvalid(refusal(() => parseRunbook(confirmedAt(v), FILE)), 'manualSteps[0].confirmedAt', /ISO 8601 date and time with a zone, e\.g\. 2026-11-28T09:00:00Z/),
  );

  it.each(['2026-11-28T06:00:00Z', '2026-11-28T07:00:00+01:00', '2026-11-28T06:00:00.123Z'])('accepts %s', (v) => {
    expect(parseRunbook(confirmedAt(v), FILE).manualSteps[0]!.confirmedAt).toBe(v);
  });

  const rb = (text: string) => ({ ...parseRunbook(text, FILE), target: { ...parseRunbook(text, FILE).target, transport: { kind: 'ssh' } } }) as Runbook;

  it.each([
    { at: '2026-11-28T09:00:01Z', policy: 'policy: {}', fix: /in the future \(it is 2026-11-28T09:00:00\.000Z now\)/ },
    { at: '1970-01-01T00:00:00Z', policy: 'policy: {}', fix: /more than 72 h ago \(policy\.maxConfirmationAgeHours\): confirm step vendor-window again/ },
    { at: '2026-11-25T08:59:59Z', policy: 'policy: {}', fix: /more than 72 h ago/ },
    { at: '2026-11-28T02:59:59Z', policy: 'policy:\n  maxConfirmationAgeHours: 6', fix: /more than 6 h ago/ },
  ])('when a run starts, refuses a confirmation at $at ($policy)', async ({ at, policy, fix }) => {
    const e = await asyncRefusal(checkBeforeStart(rb(withPolicy(policy).replace(/confirmedAt: .*/, `confirmedAt: ${at}`)), NOW));
    expectInvalid(e, 'manualSteps[0].confirmedAt', fix);
  });

  it('accepts a confirmation within the policy, and exactly at its edge', async () => {
    await expect(checkBeforeStart(rb(confirmedAt('2026-11-28T06:00:00Z')), NOW)).resolves.toBeUndefined();
    await expect(checkBeforeStart(rb(confirmedAt('2026-11-25T09:00:00Z')), NOW)).resolves.toBeUndefined();
    await expect(checkBeforeStart(rb(confirmedAt('2026-11-28T09:00:00Z')), NOW)).resolves.toBeUndefined();
  });

  it('maxConfirmationAgeHours may only be made stricter (lower) unless an override names it', () => {
    expectInvalid(refusal(() => parseRunbook(withPolicy('policy:\n  maxConfirmationAgeHours: 200'), FILE)), 'policy.maxConfirmationAgeHours', /looser than the default 72/);
    expect(parseRunbook(withPolicy('policy:\n  maxConfirmationAgeHours: 12'), FILE).policy.maxConfirmationAgeHours).toBe(12);
    expect(parseRunbook(GOOD, FILE).policy.maxConfirmationAgeHours).toBe(72);
  });
});

describe('discovery roots that do not exist', () => {
  it('a local target: refused when the run starts, naming each missing root and the fix', async () => {
    const dir = await tmp();
    await mkdir(path.join(dir, 'target', 'ehr'), { recursive: true });
    await writeFile(path.join(dir, 'target', 'notes'), 'a file, not a folder');
    const file = path.join(dir, 'runbook.yaml');
    await writeFile(file, sandboxRunbook('truncate', new Date()).replace('roots: [ehr, mssql]', 'roots: [ehr, mssql, notes]'));
    const rb = await loadRunbook(file); // reading the runbook does not look at the target (a resume reads it after the wipe)
    const e = await asyncRefusal(checkBeforeStart(rb));
    expectInvalid(e, 'discovery.roots[1]', /"mssql" \(.*target\/mssql\) does not exist on the target: fix the spelling, or remove it from discovery\.roots/, file);
    expectInvalid(e, 'discovery.roots[2]', /"notes" .* is not a folder/, file);
    expect(problems(e).map((p) => p.path)).not.toContain('discovery.roots[0]');
  });

  it('a local target root that does not exist is named', async () => {
    const dir = await tmp();
    const file = path.join(dir, 'runbook.yaml');
    await writeFile(file, sandboxRunbook('truncate', new Date()));
    expectInvalid(await asyncRefusal(checkBeforeStart(await loadRunbook(file))), 'target.root', /does not exist: point target\.root at the folder/, file);
  });

  it('a target reached over ssh is not looked at here (its folders are on the server)', async () => {
    const local = parseRunbook(sandboxRunbook('truncate', NOW), '/nonexistent/estate/runbook.yaml');
    const remote = { ...local, target: { ...local.target, transport: { kind: 'ssh' } } } as Runbook;
    await expect(checkBeforeStart(remote, NOW)).resolves.toBeUndefined();
    await expect(checkBeforeStart(local, NOW)).rejects.toMatchObject({ code: 'RUNBOOK_INVALID' });
  });
});

const made: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rubicon-rb-'));
  made.push(d);
  return d;
}
afterAll(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});
