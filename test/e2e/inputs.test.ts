import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { SMALL } from './crash-harness.ts';
import { cli, removeTempDirs, tempDir } from './helpers.ts';

/**
 * Through the real CLI: inputs that used to crash (stack trace, exit 1) are
 * exit 3, naming the file and the field, before any run is created.
 * docs/inputs.md lists them; test/runbook/inputs.test.ts has the details.
 */
afterEach(removeTempDirs);

async function estate() {
  return buildSandbox(path.join(await tempDir(), 'estate'), SMALL);
}

async function refused(runbook: string, stateDir: string, field: RegExp, fix: RegExp, command = 'upgrade'): Promise<void> {
  const r = await cli([command, '--runbook', runbook, '--state-dir', stateDir, '--yes', '--json']);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  expect(r.exitCode, r.stderr).toBe(3);
  expect(r.events[0]).toMatchObject({ kind: 'error', code: 'RUNBOOK_INVALID' });
  expect(r.stderr).toContain(runbook);
  expect(r.stderr).toMatch(field);
  expect(r.stderr).toMatch(fix);
  expect(existsSync(path.join(stateDir, 'runs'))).toBe(false); // no run was created: nothing was touched
}

describe('inputs refused by the CLI with exit 3, before any run', () => {
  it('a "billion laughs" runbook', async () => {
    const L = await estate();
    const lol = ['lol: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 9; i++) lol.push(`l${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
    await writeFile(L.runbook, `${await readFile(L.runbook, 'utf8')}\n${lol.join('\n')}\n`);
    await refused(L.runbook, L.stateDir, /\(yaml\)/, /billion laughs/, 'plan');
  });

  it('a runbook with 100,000 declared folders', async () => {
    const L = await estate();
    const text = (await readFile(L.runbook, 'utf8')).replace('    - ehr/A\n', Array.from({ length: 100_000 }, (_, i) => `    - ehr/f${i}\n`).join(''));
    await writeFile(L.runbook, text);
    await refused(L.runbook, L.stateDir, /\(file\)/, /over the 131,072 a runbook may have/, 'plan');
  });

  it('a declared discovery root that does not exist on a local target', async () => {
    const L = await estate();
    await rm(path.join(L.target, 'mssql'), { recursive: true });
    await refused(L.runbook, L.stateDir, /discovery\.roots\[1\]: "mssql" \(.*\) does not exist on the target/, /remove it from discovery\.roots/);
  });

  it.each([
    ['Dec 1 2026', /manualSteps\[0\]\.confirmedAt: must be an ISO 8601 date and time with a zone/],
    ['2026-02-30T09:00:00Z', /manualSteps\[0\]\.confirmedAt: must be an ISO 8601/],
    ['1970-01-01T00:00:00Z', /manualSteps\[0\]\.confirmedAt: 1970-01-01T00:00:00Z is more than 72 h ago \(policy\.maxConfirmationAgeHours\)/],
    ['2999-01-01T00:00:00Z', /manualSteps\[0\]\.confirmedAt: 2999-01-01T00:00:00Z is in the future/],
  ])('a manual step confirmed at %s', async (at, message) => {
    const L = await estate();
    await writeFile(L.runbook, (await readFile(L.runbook, 'utf8')).replace(/confirmedAt: .*/, `confirmedAt: ${at}`));
    await refused(L.runbook, L.stateDir, message, /nothing was touched/);
  });

  it('an override without an item', async () => {
    const L = await estate();
    await writeFile(L.runbook, (await readFile(L.runbook, 'utf8')).replace('policy: {}', 'policy:\n  minVaults: 1\noverrides:\n  - {rule: policy.not-looser, reason: "single NAS until the off-site store is ready", by: ops}'));
    await refused(L.runbook, L.stateDir, /overrides\[0\]\.item: is required: an override names exactly one item/, /policy field \(e\.g\. minVaults\)/);
  });
});
