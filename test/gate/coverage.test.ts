import { describe, expect, it } from 'vitest';
import type { CoverageClass, GateFacts, GateResult } from '../../src/core/types.ts';
import { judgeCoverage } from '../../src/coverage/judge.ts';
import { evaluateGate } from '../../src/gate/evaluate.ts';
import {
  A_BASE,
  DB,
  VOLUME,
  VOLUME_DELTA,
  baselineFacts,
  checks,
  coverageClass,
  coverageMap,
  deepFreeze,
  folderArtifact,
} from './builders.ts';

/**
 * Gate rule coverage.complete (and coverage.everything), as a table: one
 * volume (the sandbox's whole target folder) whose map holds the baseline's
 * classes plus the class under test. Design note: docs/coverage.md.
 */

function withClass(c: CoverageClass, edit: (f: GateFacts) => void = () => {}): GateFacts {
  const f = baselineFacts();
  f.coverage!.classes.push(c);
  f.coverage = coverageMap(f.coverage!.classes);
  edit(f);
  return f;
}

function failing(r: GateResult): string[] {
  return [...new Set(r.results.filter((x) => x.status === 'fail').map((x) => x.rule))].sort();
}

function coverageResult(r: GateResult) {
  const [x] = r.results.filter((y) => y.rule === 'coverage.complete');
  return x!;
}

function failProof(f: GateFacts, artifactId: string): void {
  const p = f.proofs.find((x) => x.artifactId === artifactId)!;
  p.outcome = 'failed';
  p.checks = checks('failed');
}

const letters = (holders: string[]) => coverageClass({ folder: 'practice-docs', holders }, 1, 14_336);

const CASES: { name: string; facts: () => GateFacts; passes: boolean; fails?: string[]; says?: RegExp }[] = [
  { name: 'covered by a folder artifact', facts: () => withClass(coverageClass({ folder: 'ehr/X/scans', holders: [folderArtifact('ehr/X')] })), passes: true, says: /uncovered: 0/ },
  { name: 'covered by the everything capture', facts: () => withClass(letters([VOLUME_DELTA])), passes: true, says: /uncovered: 0/ },
  {
    name: 'excluded by the built-in list',
    facts: () => withClass(coverageClass({ folder: '.', exclusion: { path: 'os-release', source: 'built-in', reason: 'the sandbox crossing writes it' } }, 1, 80)),
    passes: true,
    says: /1 excluded \(1 by the built-in sandbox list, 0 by the runbook/,
  },
  {
    name: 'excluded by the runbook with a reason and who',
    facts: () => withClass(coverageClass({ folder: 'cache', exclusion: { path: 'cache', source: 'runbook', reason: 'rebuilt by the application at start', by: 'J. Engineer' } }, 40, 1 << 20)),
    passes: true,
    says: /40 excluded \(0 by the built-in sandbox list, 40 by the runbook/,
  },
  {
    name: 'excluded without a reason',
    facts: () => withClass(coverageClass({ folder: 'cache', exclusion: { path: 'cache', source: 'runbook', reason: '', by: 'J. Engineer' } }, 40, 1 << 20)),
    passes: false,
    fails: ['coverage.complete'],
    says: /40 files \(1\.0 MiB\) NOT covered.*cache\/ 40 files.*gives no reason/,
  },
  {
    name: 'excluded by the runbook without who decided it',
    facts: () => withClass(coverageClass({ folder: 'cache', exclusion: { path: 'cache', source: 'runbook', reason: 'rebuilt by the application at start' } }, 2, 10)),
    passes: false,
    fails: ['coverage.complete'],
    says: /does not say who decided it/,
  },
  {
    name: 'held only by an artifact that failed its proof',
    facts: () => withClass(coverageClass({ folder: 'ehr/Y/outbound', holders: [folderArtifact('ehr/Y')] }), (f) => failProof(f, folderArtifact('ehr/Y'))),
    passes: false,
    fails: ['coverage.complete', 'folder.proven'],
    says: /3 files \(4\.0 KiB\) NOT covered.*ehr\/Y\/outbound\/.*failed its proof/,
  },
  {
    name: 'held by a failed folder artifact and the proven everything capture',
    facts: () => withClass(coverageClass({ folder: 'ehr/Y/outbound', holders: [folderArtifact('ehr/Y'), VOLUME_DELTA] }), (f) => failProof(f, folderArtifact('ehr/Y'))),
    passes: false,
    fails: ['folder.proven'],
    says: /uncovered: 0/,
  },
  {
    name: 'the everything capture failed its proof: the stray file is uncovered',
    facts: () => {
      const f = baselineFacts();
      failProof(f, VOLUME_DELTA);
      return f;
    },
    passes: false,
    fails: ['coverage.complete', 'item.proven'],
    says: /notes\/ 1 file, 700 B \(notes\/file-0\.txt\).*failed its proof/,
  },
  {
    name: 'held only by a superseded artifact',
    facts: () => withClass(coverageClass({ folder: 'ehr/A/forms', holders: [A_BASE] })),
    passes: false,
    fails: ['coverage.complete'],
    says: /is not a current artifact/,
  },
  {
    name: 'held by a proven artifact with no verified copy',
    facts: () =>
      withClass(letters([folderArtifact('ehr/Z')]), (f) => {
        for (const c of f.copies.filter((x) => x.artifactId === folderArtifact('ehr/Z'))) c.status = 'missing';
      }),
    passes: false,
    fails: ['copies.vaults', 'coverage.complete'],
    says: /has no verified copy in any declared vault/,
  },
  {
    name: 'owned by a database nothing captured',
    facts: () =>
      withClass(coverageClass({ folder: 'mssql/data', owner: 'database:sqlite:other' }, 1, 9000), (f) => {
        f.items.push({ id: 'database:sqlite:other', kind: 'database', name: 'other', declared: false, discovered: true, engine: 'sqlite', location: 'mssql/data/other.db', facts: {}, why: [], methods: [] });
      }),
    passes: false,
    fails: ['coverage.complete', 'database.independent-methods', 'item.captured'],
    says: /owner database other was captured by nothing/,
  },
];

describe('coverage.complete: the table', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const r = evaluateGate(deepFreeze(c.facts()));
    expect(r.passed, JSON.stringify(r.reasons)).toBe(c.passes);
    if (c.fails) expect(failing(r)).toEqual([...c.fails].sort());
    if (c.says) expect(coverageResult(r).reason).toMatch(c.says);
  });

  it('names the count, the bytes and the first paths grouped by folder, and the fix', () => {
    const f = withClass(coverageClass({ folder: 'practice-docs', holders: [] }, 7, 7 * 14_336));
    const x = coverageResult(evaluateGate(f));
    expect(x.status).toBe('fail');
    expect(x.reason).toContain('7 files (98.0 KiB) NOT covered, the crossing would destroy them: practice-docs/ 7 files, 98.0 KiB (practice-docs/file-0.txt, practice-docs/file-1.txt, practice-docs/file-2.txt, …)');
    expect(x.reason).toMatch(/no artifact holds them and no exclusion names them/);
    expect(x.reason).toMatch(/coverage\.exclude with reason and by/);
    expect(x.evidence[0]).toMatch(/^coverage:final-capture@/);
  });

  it('an override of coverage.complete with a reason passes, visibly', () => {
    const f = withClass(letters([]));
    f.overrides = [{ rule: 'coverage.complete', itemId: VOLUME, reason: 'the letters are printed and filed', by: 'practice manager' }];
    const r = evaluateGate(f);
    expect(r.passed).toBe(true);
    expect(coverageResult(r)).toMatchObject({ status: 'overridden', override: { by: 'practice manager' } });
  });

  it('a kept volume is not judged; a kept one the runbook asks for is', () => {
    const kept = baselineFacts();
    kept.scope!.volumes.push({ path: 'data', label: 'data disk', fate: 'kept', capture: false });
    expect(evaluateGate(kept).passed).toBe(true);
    const asked = baselineFacts();
    asked.scope!.volumes.push({ path: 'data', label: 'data disk', fate: 'kept', capture: true });
    const r = evaluateGate(asked);
    expect(failing(r)).toEqual(['coverage.complete', 'coverage.everything']);
    expect(r.results.find((x) => x.rule === 'coverage.complete' && x.itemId === 'volume:data')?.reason).toMatch(/does not include data disk/);
  });

  it('the everything capture turned off by an override: visible, and the stray file then refuses under coverage.complete', () => {
    const f = baselineFacts();
    f.items = f.items.filter((i) => i.id !== VOLUME);
    f.artifacts = f.artifacts.filter((a) => a.itemId !== VOLUME);
    f.overrides = [{ rule: 'coverage.everything', itemId: VOLUME, reason: 'folders only, by decision of the practice', by: 'J. Engineer' }];
    const r = evaluateGate(f);
    expect(r.results.find((x) => x.rule === 'coverage.everything')).toMatchObject({ status: 'overridden' });
    expect(failing(r)).toEqual(['coverage.complete']);
    expect(coverageResult(r).reason).toMatch(/notes\/ 1 file/);
  });
});

describe('judgeCoverage', () => {
  it('adds up what the everything capture holds alone, and owned database files', () => {
    const f = baselineFacts();
    const [v] = judgeCoverage(f.coverage!, {
      holderProblem: () => undefined,
      ownerProblem: (id) => (id === DB ? undefined : 'no'),
      isEverything: (id) => id === VOLUME_DELTA,
    });
    expect(v).toMatchObject({ volume: '.', files: 17, covered: { files: 16 }, owned: { files: 1 }, uncovered: { files: 0 }, onlyEverything: { files: 1, bytes: 700 } });
    expect(v!.onlyEverything.groups.map((g) => g.folder)).toEqual(['notes/']);
  });
});
