/**
 * Every Pester test under test/windows, run in ONE pwsh process (pwsh and
 * Pester start-up cost seconds; the suites share it) and reported here one
 * vitest test per Pester test, so a failure names the Pester test. The
 * texts scripts.ts assembles are written first, for the 5.1 guard.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WINDOWS_SCRIPTS, scriptText } from '../../src/machines/windows/scripts.ts';
import { checkPester, mustRun, PESTER_MODULE, pwsh } from './pwsh.ts';

interface PesterTest {
  file: string;
  path: string;
  result: string;
  durationMs: number;
  error: string | null;
}
interface PesterRun {
  pester: string;
  powershell: string;
  result: string;
  tests: PesterTest[];
  containers: { file: string; result: string; error: string | null }[];
}

const here = fileURLToPath(new URL('.', import.meta.url));
const testFiles = readdirSync(here).filter((f) => f.endsWith('.Tests.ps1')).sort();
const check = checkPester();

async function runPester(): Promise<{ run?: PesterRun; failure?: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'rubicon-pester-'));
  try {
    const assembled = join(dir, 'assembled');
    mkdirSync(assembled);
    for (const name of WINDOWS_SCRIPTS) writeFileSync(join(assembled, `${name}.ps1`), scriptText(name));
    const resultPath = join(dir, 'pester.json');
    const r = await pwsh(['-File', join(here, 'run-pester.ps1'), '-PesterModule', PESTER_MODULE, '-ResultPath', resultPath, '-Path', here], {
      env: { RUBICON_ASSEMBLED_DIR: assembled },
      timeout: 900_000,
    });
    let text: string;
    try {
      text = readFileSync(resultPath, 'utf8');
    } catch {
      return { failure: `Pester wrote no results (pwsh exit ${r.exitCode}): ${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}` };
    }
    return { run: JSON.parse(text) as PesterRun };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!mustRun(check)) {
  describe.skip(`Pester suites (skipped: ${check.reason})`, () => {
    it('runs the Windows scripts under PowerShell 7 with Pester', () => undefined);
  });
} else if (!check.ok) {
  it('has PowerShell 7 and Pester (required in CI)', () => {
    throw new Error(check.reason);
  });
} else {
  const { run, failure } = await runPester();
  if (!run) {
    it('runs Pester', () => {
      throw new Error(failure);
    });
  } else {
    describe(`Pester ${run.pester} on PowerShell ${run.powershell}`, () => {
      it('ran every *.Tests.ps1 file, each loading cleanly and with tests', () => {
        expect(run.containers.map((c) => c.file).sort()).toEqual(testFiles);
        for (const c of run.containers) {
          // A file that fails to load (or whose top-level setup throws) reports its error here.
          expect(c.error, `${c.file} loads`).toBeNull();
          expect(run.tests.filter((t) => t.file === c.file).length, `${c.file} has tests`).toBeGreaterThan(0);
        }
      });
      for (const file of testFiles) {
        describe(file, () => {
          for (const t of run.tests.filter((x) => x.file === file)) {
            it(t.path, () => {
              if (t.result !== 'Passed') throw new Error(`Pester says ${t.result}${t.error ? `: ${t.error}` : ''}`);
            });
          }
        });
      }
    });
  }
}
