/**
 * report.html in a real browser: Debian's Chromium, headless. These tests
 * FAIL (never skip) when Chromium is missing: `apt-get install -y chromium`.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeReports } from '../../src/report/index.ts';
import { landedStory, refusedStory } from './builders.ts';
import { CHROMIUM, chromium, pageRequests, requireTool } from './tools.ts';

const HOSTILE = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`;

describe('report.html in headless Chromium', () => {
  let dir: string;
  let landedHtml: string;
  let refusedHtml: string;
  let rolledBackHtml: string;

  // No requireTool here: a throwing beforeAll would mark the tests "skipped".
  // Each test calls chromium(), which fails that test when the binary is missing.
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rubicon-report-chromium-'));
    const l = landedStory({ hostileName: HOSTILE });
    landedHtml = (await writeReports(l.state, l.checklist, join(dir, 'landed'))).find((f) => f.kind === 'html')!.path;
    const r = refusedStory();
    refusedHtml = (await writeReports(r.state, r.checklist, join(dir, 'refused'))).find((f) => f.kind === 'html')!.path;
    const rb = landedStory({ rollbacks: ['completed', 'failed'] });
    rolledBackHtml = (await writeReports(rb.state, rb.checklist, join(dir, 'rolled-back'))).find((f) => f.kind === 'html')!.path;
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`finds Chromium at ${CHROMIUM}`, () => {
    expect(() => requireTool(CHROMIUM, 'chromium')).not.toThrow();
  });

  it('renders the headline and every checklist row; no injected markup becomes an element', async () => {
    const { stdout: dom } = await chromium(['--dump-dom', `file://${landedHtml}`]);
    expect(dom).toMatch(/<header class="banner tone-green" id="headline">/);
    expect(dom).toContain('<h1>Landed: rebuilt, restored and validated</h1>');
    const rows = [...dom.matchAll(/<tr class="(fnd)?" data-item="\d+">([\s\S]*?)<\/tr>/g)];
    expect(rows).toHaveLength(8);
    const names = rows.map((r) => /<a href="#item-\d+"><b>([\s\S]*?)<\/b><\/a>/.exec(r[2]!)?.[1]);
    // The real checklist's order: databases first, then folders by path (the hostile name sorts first).
    const hostile = '&lt;script&gt;alert(1)&lt;/script&gt;"&gt;&lt;img src=x onerror=alert(2)&gt;';
    expect(names).toEqual(['ehr', hostile, 'ehr/A', 'ehr/X', 'ehr/Y', 'ehr/Z', 'ehr/config', 'mssql/backup']);
    expect(rows.filter((r) => r[1] === 'fnd')).toHaveLength(4);
    // The hostile name is text in the DOM, never an element.
    expect(names[1]).toBe(hostile);
    expect(dom.match(/<script/g)).toHaveLength(1);
    expect(dom).not.toMatch(/<img/);
    // Our one inline script ran: the CSP hash matches it.
    expect(dom).toMatch(/<html lang="en" data-js="on">/);
    expect(dom).toContain("The vendor's backup job produces backups that cannot be restored.");
  });

  it('shows the refusal at the top with nothing destroyed', async () => {
    const { stdout: dom } = await chromium(['--dump-dom', `file://${refusedHtml}`]);
    const header = /<header[\s\S]*?<\/header>/.exec(dom)![0];
    expect(header).toContain('tone-red');
    expect(header).toContain('Refused: the gate stopped the rebuild');
    expect(header).toContain('0 of 2 required independent methods proven');
    expect(header).toContain('Nothing was destroyed: the target was not touched.');
  });

  it('shows every rollback after the run: the newest in the banner, one row each in the crossing section', async () => {
    const { stdout: dom } = await chromium(['--dump-dom', `file://${rolledBackHtml}`]);
    const header = /<header[\s\S]*?<\/header>/.exec(dom)![0];
    expect(header).toContain('tone-red');
    expect(header).toMatch(/Afterwards: A rollback of the target .* confirmed by a\.auditor \(flag\); it failed .* with INFRA_FAILED: /);
    const crossing = /<section id="crossing">[\s\S]*?<\/section>/.exec(dom)![0];
    expect(crossing).toContain('<h3 id="rollback">Rollback: <span class="tag tag-bad">failed</span></h3>');
    const rows = [...crossing.matchAll(/<tr class="[^"]*" data-rollback="([a-z]+)">([\s\S]*?)<\/tr>/g)];
    expect(rows.map((r) => r[1])).toEqual(['completed', 'failed']);
    expect(rows[0]![2]).toContain('<td>a.auditor (flag)</td>');
    expect(rows[0]![2]).toContain('the OS disk the crossing retired');
    expect(rows[1]![2]).toContain('Pulumi up of stack prod failed');
    // The failed rollback is in the plain-words list at the top as well.
    expect(/<section id="failures"[\s\S]*?<\/section>/.exec(dom)![0]).toContain('it failed');
  });

  it('takes a 1280×2000 screenshot', async () => {
    const png = join(dir, 'landed.png');
    await chromium([`--screenshot=${png}`, '--window-size=1280,2000', `file://${landedHtml}`]);
    const bytes = await readFile(png);
    expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(bytes.readUInt32BE(16)).toBe(1280);
    expect(bytes.readUInt32BE(20)).toBe(2000);
    expect(bytes.length).toBeGreaterThan(50_000); // a blank page compresses to a few KiB
  });

  it('prints with every evidence panel opened', async () => {
    const html = await readFile(landedHtml, 'utf8');
    const variants = {
      asIs: html,
      allOpen: html.replace(/<details id="(item-\d+)">/g, '<details id="$1" open>'),
      noScript: html.replace(/<script>[\s\S]*?<\/script>/, ''),
    };
    expect(variants.allOpen).not.toBe(html);
    const size: Record<string, number> = {};
    for (const [name, text] of Object.entries(variants)) {
      const file = join(dir, `print-${name}.html`);
      await writeFile(file, text);
      await chromium(['--no-pdf-header-footer', `--print-to-pdf=${file}.pdf`, `file://${file}`]);
      size[name] = (await readFile(`${file}.pdf`)).length;
    }
    // As printed, the page carries as much as with every panel open by hand, and
    // clearly more than it would without the print script.
    expect(Math.abs(size.asIs! - size.allOpen!) / size.allOpen!).toBeLessThan(0.02);
    expect(size.noScript!).toBeLessThan(size.asIs! * 0.9);
  });

  it('makes no network request of its own (net log), where a page with external references does', async () => {
    const run = async (file: string) => {
      const netLog = join(dir, `${Math.random().toString(36).slice(2)}.netlog.json`);
      await chromium(['--host-resolver-rules=MAP * ~NOTFOUND', `--log-net-log=${netLog}`, '--dump-dom', `file://${file}`]);
      return pageRequests(netLog);
    };
    expect(await run(landedHtml)).toEqual([]);
    // Control: the same check sees a page that does load things.
    const control = join(dir, 'control.html');
    await writeFile(control, '<html><body><img src="http://example.invalid/x.png"><link rel="stylesheet" href="https://cdn.example.invalid/a.css"></body></html>');
    expect((await run(control)).sort()).toEqual(['http://example.invalid/x.png', 'https://cdn.example.invalid/a.css']);
  });
});
