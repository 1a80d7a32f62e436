import { readFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { cli, diffTrees, journalOf, tempDir, treeHashes, treeState } from './helpers.ts';

/**
 * Issue 8, as a new user found it: three files nobody listed, in a sandbox
 * estate. Without the everything capture (turned off by an override) the
 * gate refuses under coverage.complete, exit 2, the target untouched; with
 * it (the default) the run lands and the three files are back.
 */

const STRAYS: Record<string, Buffer> = {
  'root-notes.txt': Buffer.from('door code changed; the printer in room 3 is on the guest network\n'),
  'practice-docs/letters.docx': Buffer.alloc(14 * 1024, 0x50),
  'ehr/README.txt': Buffer.from('EHR install notes, written by the first vendor technician\n'),
};

async function strayEstate(): Promise<SandboxLayout> {
  const L = await buildSandbox(path.join(await tempDir('rubicon-coverage-'), 'estate'), { patients: 50, vendorMode: 'good' });
  for (const [p, body] of Object.entries(STRAYS)) {
    await mkdir(path.dirname(path.join(L.target, p)), { recursive: true });
    await writeFile(path.join(L.target, p), body);
  }
  return L;
}

/** The vendor's job writes its backup into its output folder: that is the only change a refused run may leave. */
const notVendorOutput = (changes: string[]) => changes.filter((c) => !/^(added|changed) mssql\/backup\//.test(c));

describe('coverage: the three stray files of issue 8', () => {
  it('the everything capture off by an override: the gate refuses with coverage.complete, exit 2, the target untouched', async () => {
    const L = await strayEstate();
    await writeFile(
      L.runbook,
      `${await readFile(L.runbook, 'utf8')}overrides:\n  - { rule: coverage.everything, item: "volume:.", reason: "we capture the vendor's folders only", by: "J. Engineer" }\n`,
    );
    const before = await treeState(L.target);
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.exitCode).toBe(2);
    const summary = r.summary as { runId: string; outcome: string; gate: { passed: boolean; reasons: string[] }; reports: { kind: string; path: string }[] };
    expect(summary.outcome).toBe('refused');
    const journal = (await journalOf(L.stateDir, summary.runId)).map((x) => x.event);
    const gate = journal.filter((e) => e.type === 'gate.evaluated').at(-1) as { result: { results: { rule: string; status: string; reason: string }[] } };
    const failed = gate.result.results.filter((x) => x.status === 'fail');
    expect(failed.map((x) => x.rule)).toEqual(['coverage.complete']);
    const reason = failed[0]!.reason;
    expect(reason).toMatch(/3 files \(14\.1 KiB\) NOT covered/);
    for (const g of ['practice-docs/ 1 file, 14.0 KiB (practice-docs/letters.docx)', 'ehr/ 1 file', 'ehr/README.txt', './ 1 file', 'root-notes.txt']) expect(reason).toContain(g);
    // The override that turned the everything capture off is visible, with who and why.
    expect(gate.result.results.find((x) => x.rule === 'coverage.everything')).toMatchObject({ status: 'overridden' });
    expect(journal.some((e) => e.type === 'crossing.started' || e.type === 'permit.issued')).toBe(false);
    expect(notVendorOutput(diffTrees(before, await treeState(L.target)))).toEqual([]);
    // The checklist tells the engineer before the crossing, by folder with sizes.
    const md = await readFile(summary.reports.find((x) => x.kind === 'markdown')!.path, 'utf8');
    expect(md).toMatch(/✘ \*\*practice-docs\/\*\* 1 file\(s\), 14 KiB, not captured: practice-docs\/letters\.docx/);
  });

  it('the everything capture on (the default): the gate passes, and the three files are back after landing', async () => {
    const L = await strayEstate();
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.exitCode, JSON.stringify((r.summary as { gate?: unknown }).gate)).toBe(0);
    const summary = r.summary as { runId: string; outcome: string; reports: { kind: string; path: string }[] };
    expect(summary.outcome).toBe('landed');
    const got = await treeHashes(L.target);
    for (const [p, body] of Object.entries(STRAYS)) {
      const want = (await import('node:crypto')).createHash('sha256').update(body).digest('hex');
      expect(got.get(p), p).toBe(want);
    }
    const journal = (await journalOf(L.stateDir, summary.runId)).map((x) => x.event);
    // The volume item explained them at discovery: outside every known folder.
    const vol = journal.find((e) => e.type === 'item.discovered' && e.item.id === 'volume:.') as { item: { why: string[]; facts: Record<string, unknown> } };
    expect(vol.item.facts).toMatchObject({ outsideFiles: 3 });
    expect(vol.item.why.join(' ')).toMatch(/outside the folders: practice-docs\/ 1 file, 14\.0 KiB/);
    const report = JSON.parse(await readFile(summary.reports.find((x) => x.kind === 'json')!.path, 'utf8')) as {
      coverage: { complete: boolean; map: { stage: string; verdicts: { uncovered: { files: number }; onlyEverything: { files: number; bytes: number } }[] } };
    };
    expect(report.coverage.complete).toBe(true);
    expect(report.coverage.map.stage).toBe('final-capture');
    expect(report.coverage.map.verdicts[0]).toMatchObject({ uncovered: { files: 0 }, onlyEverything: { files: 3 } });
  });
});
