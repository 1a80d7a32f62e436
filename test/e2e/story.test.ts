import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import { buildSandbox, technicianChanges } from '../../src/sandbox/estate.ts';
import { cli, journalOf, removeTempDirs, tempDir, treeHashes } from './helpers.ts';

afterAll(removeTempDirs); // the estates are tens of MiB each

/**
 * SCENARIO.md, end to end, through the real CLI in a child process:
 * `rubicon demo --json` must tell the whole story and exit 0.
 */
describe('rubicon demo: the story of SCENARIO.md', () => {
  it('finds the forgotten folders, catches the broken vendor backup and the technician, lands, and reports', async () => {
    const dir = path.join(await tempDir(), 'estate');
    const r = await cli(['demo', '--dir', dir, '--json']);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.exitCode).toBe(0);

    // The first JSON line carries the run id.
    const first = r.events[0] as { event?: { type: string; runId: string } };
    expect(first.event?.type).toBe('run.started');
    const runId = first.event!.runId;
    const summary = r.summary as {
      runId: string;
      outcome: string;
      gate: { passed: boolean; reasons: string[] };
      checklist: { itemId: string; declared: boolean; discovered: boolean; notes: string[]; status: string }[];
      artifacts: { id: string; method: string; origin: string }[];
      proofs: { artifactId: string; outcome: string; failed: string[] }[];
      drift: { itemId: string; stage: string; changes: number; paths: string[] }[];
      reports: { kind: string; path: string }[];
    };
    expect(summary.runId).toBe(runId);
    expect(summary.outcome).toBe('landed');

    // 1. discover: X, Y, Z found, not declared; the database too.
    for (const f of ['ehr/X', 'ehr/Y', 'ehr/Z']) {
      const row = summary.checklist.find((c) => c.itemId === `folder:${f}`);
      expect(row, f).toBeDefined();
      expect(row!.declared).toBe(false);
      expect(row!.discovered).toBe(true);
      expect(row!.notes.join(' ')).toMatch(/found, not declared/);
    }
    expect(summary.checklist.find((c) => c.itemId === 'folder:ehr/A')!.declared).toBe(true);

    // 2./3. capture and prove: the vendor job's backup fails, ours pass.
    const dbArtifacts = summary.artifacts.filter((a) => a.id.includes('database:sqlite:ehr') && a.id.includes('.capture.'));
    expect(dbArtifacts.map((a) => a.method).sort()).toEqual(['sqlite-backup-api', 'sqlite-sql-dump', 'vendor-job']);
    const vendorProof = summary.proofs.find((p) => p.artifactId.endsWith('vendor-job'));
    expect(vendorProof?.outcome).toBe('failed');
    for (const m of ['sqlite-backup-api', 'sqlite-sql-dump']) {
      expect(summary.proofs.find((p) => p.artifactId.endsWith(`.capture.database:sqlite:ehr.${m}`))?.outcome, m).toBe('passed');
    }

    // 5. freeze: the technician's changes are found file by file; the final delta takes only them.
    const records = await journalOf(path.join(dir, 'state'), runId);
    const freezeDrift = records.flatMap((r) => (r.event.type === 'drift.scanned' && r.event.drift.stage === 'freeze' ? [r.event.drift] : []));
    const aDrift = freezeDrift.find((d) => d.itemId === 'folder:ehr/A');
    expect(aDrift?.changes.map((c) => `${c.kind} ${c.path}`).sort()).toEqual([
      'added forms/form-12.xml',
      'added interfaces/lab-map.xml',
      'modified app.ini',
    ]);
    // The everything capture of the target root sees the same three files (it holds everything).
    expect(freezeDrift.find((d) => d.itemId === 'volume:.')?.changes.map((c) => `${c.kind} ${c.path}`).sort()).toEqual([
      'added ehr/A/forms/form-12.xml',
      'added ehr/A/interfaces/lab-map.xml',
      'modified ehr/A/app.ini',
    ]);
    expect(freezeDrift.filter((d) => d.itemId !== 'folder:ehr/A' && d.itemId !== 'volume:.').every((d) => d.changes.length === 0)).toBe(true);
    const delta = records.flatMap((r) => (r.event.type === 'artifact.captured' && r.event.artifact.phase === 'final-capture' ? [r.event.artifact] : []));
    expect(delta.map((a) => a.itemId).sort()).toEqual(['folder:ehr/A', 'volume:.']);
    for (const d of delta) {
      expect(d.changed, d.itemId).toHaveLength(3);
      expect(summary.proofs.find((p) => p.artifactId === d.id)?.outcome, d.itemId).toBe('passed');
    }
    // The pre-gate scan is clean.
    const preGate = records.flatMap((r) => (r.event.type === 'drift.scanned' && r.event.drift.stage === 'pre-gate' ? [r.event.drift] : []));
    expect(preGate.length).toBeGreaterThanOrEqual(6);
    expect(preGate.every((d) => d.changes.length === 0)).toBe(true);

    // 6. gate: passes, with the vendor artifact as a warning.
    expect(summary.gate.passed).toBe(true);
    expect(summary.gate.reasons.join(' ')).toMatch(/vendor's backup job produces backups that cannot be restored/);
    const gateEvent = records.find((r) => r.event.type === 'gate.evaluated')!.event as { result: { results: { rule: string; status: string }[] } };
    expect(gateEvent.result.results.filter((x) => x.status === 'warn').map((x) => x.rule)).toContain('database.vendor-artifact');
    expect(gateEvent.result.results.some((x) => x.status === 'fail')).toBe(false);
    // The permit precedes the crossing, which precedes the landing.
    const order = records.map((r) => r.event.type);
    expect(order.indexOf('permit.issued')).toBeLessThan(order.indexOf('crossing.started'));
    expect(order.indexOf('gate.evaluated')).toBeLessThan(order.indexOf('crossing.started'));
    expect(order.indexOf('crossing.completed')).toBeLessThan(order.indexOf('landing.restored'));

    // 7./8. crossing and landing: a new OS, and every file and the database back, including the technician's files.
    const target = path.join(dir, 'target');
    expect(await readFile(path.join(target, 'os-release'), 'utf8')).toMatch(/Windows Server 2025 Datacenter/);
    const expected = path.join(await tempDir(), 'expected');
    const L = await buildSandbox(expected);
    await technicianChanges(L.target);
    const want = await treeHashes(L.target);
    const got = await treeHashes(target);
    for (const [p, h] of want) {
      if (p === 'mssql/data/ehr.db') continue; // compared by fingerprint below (page layout may differ)
      expect(got.get(p), p).toBe(h);
    }
    const fp = (root: string) =>
      sqliteEngine.fingerprint({ host: new LocalHost('t', root), workDir: root }, {
        id: 'database:sqlite:ehr', kind: 'database', name: 'ehr', declared: false, discovered: true, engine: 'sqlite',
        location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [],
      });
    expect((await fp(target)).digest).toBe((await fp(L.target)).digest);

    // The maintenance window is predicted from the measured restores.
    const window = (r.summary as { window: { totalMs: number; withMarginMs: number } | null }).window;
    expect(window?.totalMs).toBeGreaterThan(0);
    expect(window!.withMarginMs).toBeGreaterThanOrEqual(window!.totalMs);

    // 9. report: JSON, Markdown, HTML, telling the story in plain words.
    const kinds = summary.reports.map((x) => x.kind).sort();
    expect(kinds).toEqual(expect.arrayContaining(['html', 'json', 'markdown']));
    for (const rep of summary.reports) expect(existsSync(rep.path), rep.path).toBe(true);
    const html = await readFile(summary.reports.find((x) => x.kind === 'html')!.path, 'utf8');
    expect(html).toMatch(/vendor(&#39;|'|’)s backup job produces backups that cannot be restored/i);
    expect(html).toMatch(/ehr\/X/);
    const md = await readFile(summary.reports.find((x) => x.kind === 'markdown')!.path, 'utf8');
    // The report names the journal record it was built from; the hash chain lets an auditor check it.
    const head = /journal head ([0-9a-f]{64}) \(record (\d+)/.exec(md);
    expect(head).not.toBeNull();
    expect(records[Number(head![2]) - 1]!.hash).toBe(head![1]);
    expect(md).toMatch(/found, not declared/);
    // Coverage (issue 8): every file the crossing destroyed was held by a proven artifact, owned by the database, or excluded.
    const rep = JSON.parse(await readFile(summary.reports.find((x) => x.kind === 'json')!.path, 'utf8')) as {
      coverage: { complete: boolean; exclusions: { path: string; source: string }[]; map: { stage: string; verdicts: { files: number; bytes: number; covered: { files: number }; owned: { files: number }; excluded: { files: number }; uncovered: { files: number; bytes: number } }[] } };
    };
    expect(rep.coverage.complete).toBe(true);
    expect(rep.coverage.map.stage).toBe('final-capture');
    const cov = rep.coverage.map.verdicts[0]!;
    expect(cov.files).toBeGreaterThan(300);
    expect(cov.bytes).toBeGreaterThan(1 << 20);
    expect(cov.uncovered).toEqual(expect.objectContaining({ files: 0, bytes: 0 }));
    expect(cov.owned.files).toBe(1); // the live database file: held by its engine's proven backups
    expect(cov.covered.files + cov.owned.files + cov.excluded.files).toBe(cov.files);
    expect(rep.coverage.exclusions).toContainEqual(expect.objectContaining({ path: 'os-release', source: 'built-in' }));
    expect(md).toMatch(/## Coverage: what the crossing destroys/);
    expect(md).toMatch(/\| \. \| \d+ files, [\d.]+ MiB \| \d+ files, [\d.]+ MiB \| 1 files, [\d.]+ MiB \| 0 files, 0 B \| ✔ \*\*0\*\* files, 0 B \|/);
    expect(gateEvent.result.results.find((x) => x.rule === 'coverage.complete')).toMatchObject({ status: 'pass' });
    // No patient data in the journal, the event stream or the reports: values from the database never appear.
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(path.join(target, 'mssql/data/ehr.db'), { readOnly: true });
    const rows = db.prepare('SELECT mrn, family_name, given_name, phone, address FROM patients ORDER BY id LIMIT 25').all() as Record<string, string>[];
    db.close();
    const journalText = await readFile(path.join(dir, 'state', 'runs', runId, 'journal.jsonl'), 'utf8');
    const texts = { journal: journalText, stream: r.stdout, html, md, json: await readFile(summary.reports.find((x) => x.kind === 'json')!.path, 'utf8') };
    for (const row of rows) {
      for (const v of [row.mrn, `${row.given_name} ${row.family_name}`, row.phone, row.address]) {
        if (v === null || v === undefined || String(v).length < 6) continue; // NULL columns, too short to mean anything
        for (const [where, text] of Object.entries(texts)) expect(text.includes(String(v)), `${where} contains patient data`).toBe(false);
      }
    }
    expect(html).not.toMatch(/Synthetic\^Patient/);
  });
});
