import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, esc, renderHtml } from '../../src/report/html.ts';
import { renderJson } from '../../src/report/json.ts';
import { renderJunit } from '../../src/report/junit.ts';
import { md, renderMarkdown } from '../../src/report/markdown.ts';
import { buildReportModel, REPORT_SCHEMA, REPORT_SECTIONS, type ReportModel } from '../../src/report/model.ts';
import { landedStory, refusedStory, rehearsalStory, ROLLBACK_FAILURE, VENDOR_ENGINE_MESSAGE } from './builders.ts';
import { externalReferences, xmllint } from './tools.ts';

const VENDOR = "The vendor's backup job produces backups that cannot be restored.";
const HOSTILE = `<script>alert(1)</script>"><img src=x onerror=alert(2)>|**bold**`;

const model = (s: { state: Parameters<typeof buildReportModel>[0]; checklist: Parameters<typeof buildReportModel>[1] }): ReportModel =>
  buildReportModel(s.state, s.checklist);

const landed = model(landedStory());
const refused = model(refusedStory());
const rehearsal = model(rehearsalStory());
const hostile = model(landedStory({ hostileName: HOSTILE }));

describe('renderJson', () => {
  it('round-trips the whole model with its schema', () => {
    const text = renderJson(landed);
    expect(text.endsWith('\n')).toBe(true);
    const back = JSON.parse(text) as ReportModel;
    expect(back).toEqual(JSON.parse(JSON.stringify(landed)));
    expect(back.schema).toBe(REPORT_SCHEMA);
  });
});

describe('renderMarkdown', () => {
  const text = renderMarkdown(landed);

  it('tells the story: headline, vendor sentence, checklist with marks and found-not-declared', () => {
    expect(text).toContain('**Landed: rebuilt, restored and validated**');
    expect(text).toContain(md(VENDOR));
    expect(text).toContain(md(VENDOR_ENGINE_MESSAGE));
    for (const name of ['ehr/X', 'ehr/Y', 'ehr/Z']) {
      const row = text.split('\n').find((l) => l.startsWith(`| ✔ | **${name}**`));
      expect(row, name).toBeDefined();
      expect(row).toContain('**found, not declared**');
    }
    expect(text).toContain('### Found, not declared: why each one matters');
    expect(text).toMatch(/\| ✔ \| \*\*ehr\*\* \| database \| declared \| proven .*✘ vendor-job/);
  });

  it('lists drift file by file, every gate rule, the timeline and the estimate', () => {
    for (const f of ['| ehr/A | app.ini | modified |', '| ehr/A | forms/intake.xml | modified |', '| ehr/A | import/batch-0042.hl7 | added |']) expect(text).toContain(f);
    for (const r of landed.gate!.rules) expect(text).toContain(`| ${r.mark} | ${md(r.rule)} |`);
    expect(text).toContain('## Gate: passed');
    expect(text).toMatch(/\| crossing \| 2025-03-08 01:01:\d\d UTC \| 1 min 35 s \| \d+% \|/);
    expect(text).toMatch(/\*\*Book \d+ min: measured .* rebuild 1 min 35 s \(measured in this run\)\. This run's landing actually took \d+ s\.\*\*/);
  });

  it('says refused, why, and nothing destroyed at the top', () => {
    const r = renderMarkdown(refused);
    const top = r.split('\n').slice(0, 8).join('\n');
    expect(top).toContain('✘ **Refused: the gate stopped the rebuild**');
    expect(top).toContain('0 of 2 required independent methods proven');
    expect(top).toContain('**Nothing was destroyed: the target was not touched.**');
    expect(r).toContain('## Gate: refused');
  });

  it('neutralises a hostile item name: no raw HTML, no broken table', () => {
    const h = renderMarkdown(hostile);
    expect(h).not.toContain('<script>');
    expect(h).not.toContain('<img');
    const row = h.split('\n').find((l) => l.includes('alert(1)') && l.startsWith('| ✔ |'))!;
    expect(row).toContain('&lt;script&gt;');
    // the pipe in the name is escaped, so the row still has exactly 10 cells
    expect(row.split(/(?<!\\)\|/).length - 2).toBe(10);
  });
});

describe('renderHtml (static checks; the browser checks are in chromium.test.ts)', () => {
  const html = renderHtml(landed);

  it('is self-contained: no reference that would fetch anything', () => {
    for (const m of [landed, refused, rehearsal, hostile]) expect(externalReferences(renderHtml(m))).toEqual([]);
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">`);
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
  });

  it('the self-containment check itself catches every kind of external reference', () => {
    const bad = [
      '<img src="https://x.invalid/a.png">',
      '<link rel="stylesheet" href="//cdn.invalid/a.css">',
      '<a href="http://x.invalid/">x</a>',
      '<div style="background:url(https://x.invalid/b.png)"></div>',
      '<style>@font-face{src:url("https://fonts.invalid/f.woff2")}</style>',
      '<style>@import "x.css";</style>',
      '<script src=https://cdn.invalid/x.js></script>',
      '<meta http-equiv="refresh" content="0;url=https://x.invalid">',
    ];
    for (const b of bad) expect(externalReferences(`<html><body>${b}</body></html>`), b).not.toEqual([]);
    expect(externalReferences('<p>&lt;img src=x&gt; https://text.only</p><a href="#top">top</a><style>a{background:url(data:image/png;base64,AA==)}</style>')).toEqual([]);
  });

  it('escapes a hostile item name everywhere', () => {
    const h = renderHtml(hostile);
    expect(h.match(/<script/g)).toHaveLength(1); // the page's own, allowed by its hash
    expect(h).not.toMatch(/<img/);
    expect(h).not.toMatch(/<[^>]*\sonerror=/);
    expect(h).toContain(esc(HOSTILE));
    expect(esc(`"'<>&`)).toBe('&quot;&#39;&lt;&gt;&amp;');
  });

  it('has a banner per outcome, the vendor sentence, details per item, and working anchors', () => {
    expect(html).toContain('class="banner tone-green"');
    expect(renderHtml(refused)).toContain('class="banner tone-red"');
    expect(renderHtml(refused)).toContain('<p class="safe">Nothing was destroyed: the target was not touched.</p>');
    expect(renderHtml(rehearsal)).toContain('class="banner tone-amber"');
    expect(html).toContain(esc(VENDOR));
    expect(html.match(/<details id="item-\d+"/g)).toHaveLength(landed.items.length);
    const ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
    for (const s of REPORT_SECTIONS) expect(ids, s).toContain(s);
    for (const [, target] of html.matchAll(/href="#([^"]*)"/g)) expect(ids, target).toContain(target);
  });

  it('the gate: refusals, then warnings, then the passed rules folded; every evidence id the report shows is a link to it', () => {
    for (const [m, name] of [[landed, 'landed'], [refused, 'refused']] as const) {
      const h = renderHtml(m);
      const gate = /<section id="gate">[\s\S]*?<\/section>/.exec(h)![0];
      const at = (re: RegExp) => gate.search(re);
      const fails = m.gate!.rules.filter((r) => r.status === 'fail').length;
      const warns = m.gate!.rules.filter((r) => r.status === 'warn' || r.status === 'overridden').length;
      expect(gate.match(/<tr class="rule-fail">/g)?.length ?? 0, name).toBe(fails);
      expect(gate.match(/<tr class="rule-(warn|overridden)">/g)?.length ?? 0, name).toBe(warns);
      if (fails) expect(at(/id="gate-refusals"/), name).toBeLessThan(at(/<details id="gate-passed">/));
      if (warns) expect(at(/id="gate-warnings"/), name).toBeLessThan(at(/<details id="gate-passed">/));
      if (fails && warns) expect(at(/id="gate-refusals"/)).toBeLessThan(at(/id="gate-warnings"/));
      // The passed rules are folded: the only <details> of the section, closed.
      expect(gate.match(/<details[^>]*>/g), name).toEqual(['<details id="gate-passed">']);
      expect(gate.match(/<tr class="rule-pass">/g)?.length, name).toBe(m.gate!.rules.filter((r) => r.status === 'pass').length);
      // Evidence: artifact, proof and copy ids the report shows are links to the element that shows them.
      const shown = new Set(m.items.flatMap((i) => i.artifacts.flatMap((a) => [a.id, ...a.proofs.map((p) => p.id), ...a.copies.map((c) => `${a.id}@${c.vault}`)])));
      const ids = new Set([...h.matchAll(/\sid="([^"]+)"/g)].map((x) => x[1]));
      let linked = 0;
      for (const r of m.gate!.rules)
        for (const e of r.evidence) {
          const link = new RegExp(`<a class="ev" href="#(ev-\\d+)"><code>${esc(e).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}</code></a>`).exec(gate);
          if (shown.has(e)) {
            expect(link, `${name}: ${e}`).not.toBeNull();
            expect(ids).toContain(link![1]);
            linked += 1;
          } else expect(link, `${name}: ${e} is shown nowhere, so it is not a link`).toBeNull();
        }
      expect(linked, name).toBeGreaterThan(0);
    }
  });

  it('draws the timeline with segment sizes proportional to the phase durations', () => {
    const segs = [...html.matchAll(/<div class="seg ph-([a-z-]+)[^"]*" style="flex:([\d.]+) 0 0"/g)];
    expect(segs.map((s) => s[1])).toEqual(landed.timeline.phases.map((p) => p.phase));
    const total = segs.reduce((n, s) => n + Number(s[2]), 0);
    landed.timeline.phases.forEach((p, i) => expect(Number(segs[i]![2]) / total).toBeCloseTo(p.durationMs / landed.timeline.totalMs, 4));
  });
});

describe('renderJunit (checked by xmllint)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rubicon-junit-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function check(name: string, m: ReportModel, o: { vendorFailures?: boolean } = {}) {
    const path = join(dir, `${name}.xml`);
    await writeFile(path, renderJunit(m, o));
    const lint = await xmllint(['--noout', path]);
    expect(lint.stderr, `${name} is not well-formed`).toBe('');
    expect(lint.exitCode).toBe(0);
    const count = async (xpath: string) => Number((await xmllint(['--xpath', xpath, path])).stdout.trim());
    return {
      testcases: await count('count(//testcase)'),
      failures: await count('count(//failure)'),
      declared: await count('number(/testsuites/@failures)'),
      declaredTests: await count('number(/testsuites/@tests)'),
      suiteFailures: await count('sum(//testsuite/@failures)'),
      vendorFailures: await count("count(//failure[@type='vendor-backup-not-restorable'])"),
      vendorWarnings: await count("count(//testcase[starts-with(@classname, 'rubicon.proof.')]/system-out[starts-with(., 'WARNING vendor-backup-not-restorable')])"),
      gateFailures: await count("count(//testsuite[@name='rubicon.gate']/testcase/failure)"),
    };
  }

  it('landed: one testcase per rule, proof and landing; the vendor proof is a warning, not a failure, so the pipeline stays green', async () => {
    const c = await check('landed', landed);
    expect(c.testcases).toBe(landed.gate!.rules.length + landed.proofs.length + landed.landing.items.length);
    expect(c).toMatchObject({ failures: 0, declared: 0, suiteFailures: 0, vendorFailures: 0, vendorWarnings: 1, gateFailures: 0 });
    expect(c.declaredTests).toBe(c.testcases);
  });

  it('landed with --junit-vendor-failures: the vendor proof is the one failure', async () => {
    const c = await check('landed-vendor', landed, { vendorFailures: true });
    expect(c).toMatchObject({ failures: 1, declared: 1, suiteFailures: 1, vendorFailures: 1, vendorWarnings: 0, gateFailures: 0 });
  });

  it('refused: every failed proof of Rubicon\'s own artifacts and the failed rule are failures; the vendor proof a warning', async () => {
    const c = await check('refused', refused);
    expect(c).toMatchObject({ failures: 3, declared: 3, suiteFailures: 3, vendorFailures: 0, vendorWarnings: 1, gateFailures: 1 });
    expect(await check('refused-vendor', refused, { vendorFailures: true })).toMatchObject({ failures: 4, vendorFailures: 1 });
  });

  it('stays well-formed with markup, entities and control characters in names', async () => {
    const nasty = model(landedStory({ hostileName: `a]]><x y="&amp;'\u0001\u001b[31m\ud800 <![CDATA[` }));
    const c = await check('nasty', nasty);
    expect(c.testcases).toBe(nasty.gate!.rules.length + nasty.proofs.length + nasty.landing.items.length);
  });
});

describe('rollbacks after the run (rubicon rollback, journaled by appendToRun)', () => {
  const twice = model(landedStory({ rollbacks: ['failed', 'completed'] }));
  const failedLast = model(landedStory({ rollbacks: ['completed', 'failed'] }));
  const unfinished = model(landedStory({ rollbacks: ['unfinished'] }));

  it('the model: every rollback with when, who, how it ended; a failed or unfinished one in plain words and the banner red', () => {
    expect(landed.rollbacks).toEqual([]);
    expect(twice.rollbacks.map((r) => r.outcome)).toEqual(['failed', 'completed']);
    const [f, c] = twice.rollbacks;
    expect(f).toMatchObject({ by: 'a.auditor (flag)', error: { code: 'INFRA_FAILED' }, durationMs: 180_000 });
    expect(c).toMatchObject({ by: 'a.auditor (flag)', from: 'retired-os-disk', image: 'disk:ehr-srv01-osdisk-retired', durationMs: 300_000 });
    expect(Date.parse(c!.startedAt)).toBeGreaterThan(Date.parse(twice.run.finishedAt!));
    expect(c!.plain).toMatch(/^A rollback of the target .* was started 2025-03-08 \d\d:\d\d:\d\d UTC, confirmed by a\.auditor \(flag\); it completed .*the OS disk the crossing retired/);
    // The failed one stays in plain words though a later one completed; the banner tells the newest.
    expect(twice.plainFailures).toContain(f!.plain);
    expect(twice.plainFailures).not.toContain(c!.plain);
    expect(twice.headline).toMatchObject({ tone: 'green' });
    expect(twice.headline.sentence).toContain(`Afterwards: ${c!.plain}`);
    expect(failedLast.headline.tone).toBe('red');
    expect(failedLast.headline.sentence).toContain('Afterwards: A rollback');
    expect(failedLast.headline.sentence).toContain(ROLLBACK_FAILURE.slice('INFRA_FAILED: '.length));
    expect(unfinished.rollbacks).toEqual([expect.objectContaining({ outcome: 'unfinished' })]);
    expect(unfinished.rollbacks[0]).not.toHaveProperty('endedAt');
    expect(unfinished.plainFailures.at(-1)).toContain('no end was recorded');
    expect(JSON.parse(renderJson(twice)).rollbacks).toEqual(JSON.parse(JSON.stringify(twice.rollbacks)));
  });

  it('Markdown: a Rollback section, one row per rollback, failed ones marked', () => {
    expect(renderMarkdown(landed)).not.toContain('## Rollback\n');
    const text = renderMarkdown(twice);
    const at = text.indexOf('## Rollback\n');
    expect(at).toBeGreaterThan(text.indexOf('## Landing'));
    const section = text.slice(at, text.indexOf('\n## ', at + 1));
    const rows = section.split('\n').filter((l) => l.startsWith('| ✔ |') || l.startsWith('| ✘ |'));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatch(/^\| ✘ \| 2025-03-08 \d\d:\d\d:\d\d UTC \| a\.auditor \(flag\) \| \*\*failed\*\* \| 2025-03-08 .* \| 3 min \|/);
    expect(rows[0]).toContain(md(ROLLBACK_FAILURE));
    expect(rows[1]).toMatch(/^\| ✔ \| .* \| a\.auditor \(flag\) \| completed \| .* \| 5 min \|/);
    expect(text).toContain(`- ✘ ${md(twice.rollbacks[0]!.plain)}`);
    expect(renderMarkdown(unfinished)).toMatch(/\| ✘ \| .* \| \*\*unfinished\*\* \| — \| — \|/);
  });

  it('HTML: a Rollback table in the crossing section, the failed row coloured like a refused rule', () => {
    expect(renderHtml(landed)).not.toContain('id="rollback"');
    const h = renderHtml(twice);
    const crossing = /<section id="crossing">[\s\S]*?<\/section>/.exec(h)![0];
    expect(crossing).toContain('<h3 id="rollback">Rollback: <span class="tag tag-ok">completed</span></h3>');
    expect(crossing.match(/<tr class="rule-fail" data-rollback="failed">/g)).toHaveLength(1);
    expect(crossing.match(/<tr class="" data-rollback="completed">/g)).toHaveLength(1);
    expect(crossing).toContain(esc(twice.rollbacks[0]!.plain));
    expect(renderHtml(failedLast)).toContain('<h3 id="rollback">Rollback: <span class="tag tag-bad">failed</span></h3>');
    expect(renderHtml(failedLast)).toContain('class="banner tone-red"');
  });

  it('JUnit: one testcase per rollback; a failed or unfinished one is a failure', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rubicon-junit-rollback-'));
    try {
      for (const [name, m, failures] of [['twice', twice, 1], ['unfinished', unfinished, 1]] as const) {
        const path = join(dir, `${name}.xml`);
        await writeFile(path, renderJunit(m));
        const lint = await xmllint(['--noout', path]);
        expect(lint.stderr, name).toBe('');
        const count = async (xpath: string) => Number((await xmllint(['--xpath', xpath, path])).stdout.trim());
        expect(await count("count(//testsuite[@name='rubicon.rollback']/testcase)"), name).toBe(m.rollbacks.length);
        expect(await count("count(//testsuite[@name='rubicon.rollback']/testcase/failure)"), name).toBe(failures);
        expect(await count('number(/testsuites/@failures)'), name).toBe(failures);
      }
      expect((await xmllint(['--xpath', "string(//failure[@type='rollback-failed']/@message)", join(dir, 'twice.xml')])).stdout).toBe(ROLLBACK_FAILURE);
      expect((await xmllint(['--xpath', "count(//failure[@type='rollback-unfinished'])", join(dir, 'unfinished.xml')])).stdout.trim()).toBe('1');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
