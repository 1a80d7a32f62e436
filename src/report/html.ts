/**
 * The HTML report: one self-contained file an auditor can archive or print
 * and an engineer can open at 2 a.m. Pure.
 *
 * Contract:
 * - Self-contained: inline CSS and one small inline script; no URL to
 *   anything outside the file (no fonts, images, CDN). A Content-Security-
 *   Policy meta tag forbids every fetch and every script except the one
 *   below (allowed by its SHA-256), so even a bug elsewhere cannot load or
 *   run anything.
 * - XSS-safe: every string from the run (item names and paths come from the
 *   target) goes through `esc()`; attribute values are always double-quoted;
 *   element ids are generated (`item-3`), never taken from the run.
 * - Works without the script: it only sets `data-js` and opens every
 *   <details> for printing so the printed page carries all the evidence.
 */
import { createHash } from 'node:crypto';
import {
  describeWindow,
  formatBytes,
  formatDuration,
  formatItemSize,
  formatTime,
  NOTHING_DESTROYED,
  type ArtifactReport,
  type ItemReport,
  type Mark,
  type ProofReport,
  type ReportModel,
  type RuleReport,
} from './model.ts';

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function esc(text: string | number | boolean | null | undefined): string {
  return String(text ?? '—')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** The page's only script. Changing it changes its hash; the CSP below follows automatically. */
export const PRINT_SCRIPT =
  "document.documentElement.setAttribute('data-js','on');" +
  "addEventListener('beforeprint',function(){document.querySelectorAll('details:not([open])').forEach(function(d){d.setAttribute('open','');d.setAttribute('data-print-opened','');});});" +
  "addEventListener('afterprint',function(){document.querySelectorAll('details[data-print-opened]').forEach(function(d){d.removeAttribute('open');d.removeAttribute('data-print-opened');});});";

const SCRIPT_HASH = createHash('sha256').update(PRINT_SCRIPT).digest('base64');

export const CONTENT_SECURITY_POLICY = `default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-${SCRIPT_HASH}'; base-uri 'none'; form-action 'none'`;

const CSS = `
:root{--ink:#1b1f24;--muted:#59636e;--line:#d5dae0;--bg:#f6f7f9;--card:#fff;--green:#1a7f37;--green-bg:#e6f4ea;--red:#c4281c;--red-bg:#fdecea;--amber:#9a6700;--amber-bg:#fff6dc;--accent:#0b5cad}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:26px;line-height:1.25;margin:2px 0 6px}
h2{font-size:19px;margin:0 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px;word-break:break-all}
code.rule{white-space:nowrap;word-break:normal}td.ev code{font-size:11.5px}
.trio{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:0 24px}
.artifact{border-left:3px solid var(--line);padding-left:12px;margin:14px 0}.artifact.bad{border-left-color:var(--red)}.artifact.ok{border-left-color:#8ccf9f}
.proof h4{font-size:13.5px;margin:12px 0 6px;font-weight:600}
.banner{display:flex;gap:18px;align-items:flex-start;padding:20px 24px;border-radius:10px;border:2px solid;margin-bottom:16px}
.banner .big{font-size:40px;line-height:1;font-weight:700;width:52px;height:52px;border-radius:50%;display:flex;align-items:center;justify-content:center;color:#fff;flex:none}
.banner p{margin:4px 0;font-size:15px}
.banner .eyebrow{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0}
.banner .safe{font-weight:600}
.tone-green{background:var(--green-bg);border-color:var(--green)}.tone-green .big{background:var(--green)}
.tone-red{background:var(--red-bg);border-color:var(--red)}.tone-red .big{background:var(--red)}
.tone-amber{background:var(--amber-bg);border-color:#d4a72c}.tone-amber .big{background:#bf8700}
nav{margin:0 0 16px;font-size:13px}nav a{color:var(--accent);text-decoration:none;margin-right:14px;white-space:nowrap}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:0 0 16px;break-inside:auto}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:4px 20px;margin:0}
.meta div{display:flex;gap:8px;min-width:0}.meta div.wide{grid-column:1/-1}.meta dt{color:var(--muted);flex:none}.meta dd{margin:0;min-width:0;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 14px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:#fbfcfd}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
.card.bad b{color:var(--red)}.card.warn b{color:var(--amber)}.card.good b{color:var(--green)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc}
tr.fnd td{background:#fffaf0}
.m{font-weight:700;width:22px;text-align:center}
.m-ok{color:var(--green)}.m-bad{color:var(--red)}.m-warn{color:var(--amber)}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:11.5px;font-weight:600;white-space:nowrap;border:1px solid}
.tag-fnd{background:#fff1c2;border-color:#d4a72c;color:#6b4700}
.tag-ok{background:var(--green-bg);border-color:#8ccf9f;color:var(--green)}
.tag-bad{background:var(--red-bg);border-color:#f0a39c;color:var(--red)}
.tag-warn{background:var(--amber-bg);border-color:#e7c66b;color:var(--amber)}
.tag-plain{background:#eef1f4;border-color:var(--line);color:var(--muted)}
.failures{background:var(--red-bg);border-color:#f0a39c}
.failures li{margin:4px 0}
.bar{display:flex;height:34px;border-radius:6px;overflow:hidden;border:1px solid var(--line);margin:4px 0 10px}
.seg{min-width:3px;display:flex;align-items:center;justify-content:center;color:#fff;font-size:11.5px;font-weight:600;overflow:hidden;white-space:nowrap;border-right:1px solid #fff}
.seg:last-child{border-right:0}
.seg.running{background-image:repeating-linear-gradient(45deg,rgba(255,255,255,.25) 0 6px,transparent 6px 12px)}
.ph-discover{background:#4c6ef5}.ph-capture{background:#1c7ed6}.ph-prove{background:#0ca678}.ph-freeze{background:#74b816}.ph-final-capture{background:#f59f00}.ph-gate{background:#e8590c}.ph-crossing{background:#c2255c}.ph-landing{background:#7048e8}.ph-report{background:#868e96}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
details{border:1px solid var(--line);border-radius:8px;margin:8px 0;background:#fff}
details>summary{cursor:pointer;padding:8px 12px;list-style-position:inside}
details[open]>summary{border-bottom:1px solid var(--line);background:#fafbfc}
details .body{padding:8px 14px 12px}
details.bad{border-color:#f0a39c}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0 8px}.kv dt{color:var(--muted)}.kv dd{margin:0;overflow-wrap:anywhere}
.plain{color:var(--red);font-weight:600}
.muted{color:var(--muted)}.nw{white-space:nowrap}
.estimate{font-size:28px;font-weight:700;margin:2px 0}
a.card{display:block;color:inherit;text-decoration:none}a.card:hover{border-color:var(--accent)}
tr.rule-fail td{background:var(--red-bg)}tr.rule-fail td:first-child{box-shadow:inset 4px 0 0 var(--red)}
tr.rule-warn td,tr.rule-overridden td{background:var(--amber-bg)}tr.rule-warn td:first-child,tr.rule-overridden td:first-child{box-shadow:inset 4px 0 0 #d4a72c}
tr.rule-warn td,tr.rule-overridden td{font-weight:600}.override{color:var(--amber);font-weight:600}
a.ev{text-decoration:none}a.ev code{color:var(--accent)}a.ev:hover code{text-decoration:underline}
:target{outline:3px solid var(--accent);outline-offset:2px;scroll-margin-top:12px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:18px}
@media print{body{background:#fff;font-size:11.5px}main{max-width:none;padding:0}nav{display:none}section,details,.banner{break-inside:avoid-page;border-radius:0}section{border:0;border-top:1px solid var(--line);padding:10px 0}details>summary{list-style:none}a{color:inherit;text-decoration:none}}
`;

const markClass = (m: Mark): string => (m === '✔' ? 'm-ok' : m === '✘' ? 'm-bad' : 'm-warn');
const markCell = (m: Mark): string => `<td class="m ${markClass(m)}">${m}</td>`;
const tag = (text: string, kind: 'fnd' | 'ok' | 'bad' | 'warn' | 'plain'): string => `<span class="tag tag-${kind}">${esc(text)}</span>`;
const agree = (v: boolean | null): string => (v === null ? tag('no peer', 'plain') : v ? tag('agrees', 'ok') : tag('DISAGREES', 'bad'));
const dur = (n: number | undefined | null): string => (n === undefined || n === null ? '—' : `<span class="nw">${esc(formatDuration(n))}</span>`);
const size = (n: number): string => `<span class="nw">${esc(formatBytes(n))}</span>`;
const kv = (pairs: [string, string][]): string =>
  `<dl class="kv">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;

function table(head: string[], rows: string[], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/**
 * Generated element ids for the evidence the gate names: artifacts, proofs
 * and copies (`artifactId@vault`). Ids are counters (`ev-3`), never text
 * from the run; an evidence string with no element here stays plain text.
 */
class Anchors {
  private readonly ids = new Map<string, string>();
  idFor(evidence: string): string {
    let id = this.ids.get(evidence);
    if (!id) {
      id = `ev-${this.ids.size + 1}`;
      this.ids.set(evidence, id);
    }
    return id;
  }
  has(evidence: string): boolean {
    return this.ids.has(evidence);
  }
  get(evidence: string): string | undefined {
    return this.ids.get(evidence);
  }
}

/** An evidence id as a link to the element that shows it, or as plain code when the report shows none. */
function evidenceLink(e: string, anchors: Anchors): string {
  const id = anchors.get(e);
  return id ? `<a class="ev" href="#${id}"><code>${esc(e)}</code></a>` : `<code>${esc(e)}</code>`;
}

function proofBlock(p: ProofReport, anchors: Anchors): string {
  const checks = table(
    ['', 'check', 'result', 'duration'],
    p.checks.map((c) => `<tr>${markCell(c.mark)}<td>${esc(c.name)}</td><td>${esc(c.detail)}</td><td>${dur(c.durationMs)}</td></tr>`),
  );
  const fp = p.fingerprint
    ? kv([
        ['fingerprint', `<code>${esc(p.fingerprint.digest)}</code>`],
        ['tables / rows', `${esc(p.fingerprint.tables)} / ${esc(p.fingerprint.rows)}`],
        ['vs. source at capture', agree(p.fingerprint.agreesWithSource)],
        ['vs. other proofs', agree(p.fingerprint.agreesWithPeers)],
        ...(p.fingerprint.unhashedColumns.length
          ? ([['columns not hashed', esc(p.fingerprint.unhashedColumns.join(', '))]] as [string, string][])
          : []),
      ])
    : '';
  return `<div class="proof" id="${anchors.idFor(p.id)}"><h4>${p.mark === '✔' ? tag('proof passed', 'ok') : tag('proof failed', 'bad')} restored from vault <b>${esc(p.vault)}</b> on ${esc(p.provingGround)} in ${dur(p.durationMs)} <span class="muted mono">${esc(p.id)}</span></h4>${p.plain ? `<p class="plain">${esc(p.plain)}</p>` : ''}${checks}${fp}</div>`;
}

function artifactBlock(a: ArtifactReport, anchors: Anchors): string {
  const state = a.proven === true ? tag('proven', 'ok') : a.proven === false ? tag('proof failed', 'bad') : tag('not proven', 'warn');
  const copies = a.copies.length
    ? a.copies
        .map(
          (c) =>
            `<span id="${anchors.idFor(`${a.id}@${c.vault}`)}">${c.mark === '✔' ? tag(`${c.vault}: ok`, 'ok') : tag(`${c.vault}: ${c.status}`, 'bad')}${c.detail ? ` <span class="muted">${esc(c.detail)}</span>` : ''}</span>`,
        )
        .join(' ')
    : '<span class="muted">no copy checked</span>';
  const changed = a.changed?.length
    ? `<p>Changed files taken by this delta:</p>${table(
        ['file', 'change', 'size'],
        a.changed.map((c) => `<tr><td><code>${esc(c.path)}</code></td><td>${esc(c.kind)}</td><td>${c.size === undefined ? '—' : size(c.size)}</td></tr>`),
      )}`
    : '';
  return `<div class="artifact ${a.proven === true ? 'ok' : a.proven === false ? 'bad' : ''}" id="${anchors.idFor(a.id)}"><h3>${esc(a.method)} ${a.phase === 'final-capture' ? tag('final delta', 'warn') : ''} ${a.origin === 'vendor' ? tag('vendor', 'plain') : tag('rubicon', 'plain')} ${state}</h3>${kv([
    ['artifact', `<code>${esc(a.id)}</code>`],
    ['captured', `${esc(formatTime(a.capturedAt))} in ${dur(a.captureMs)} by ${esc(a.tool)} on ${esc(a.host)}`],
    ['size', `${size(a.bytes)}, ${esc(a.fileCount)} file(s)`],
    ['manifest SHA-256', `<code>${esc(a.manifestHash)}</code>`],
    ...(a.position ? ([['position', esc(a.position)]] as [string, string][]) : []),
    ...(a.command ? ([['command', `<code>${esc(a.command)}</code>`]] as [string, string][]) : []),
    ['copies', copies],
  ])}${changed}${a.proofs.map((p) => proofBlock(p, anchors)).join('')}</div>`;
}

function itemDetails(i: ItemReport, n: number, anchors: Anchors): string {
  const bad = i.mark === '✘' || i.artifacts.some((a) => a.proofs.some((p) => p.outcome === 'failed'));
  const why = i.why.length ? `<p><b>Why it matters:</b></p><ul>${i.why.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>` : '';
  const failures = i.captureFailures.map((f) => `<p class="plain">${esc(f.plain)}</p>`).join('');
  const drift = i.drift
    .filter((d) => d.changes.length)
    .map(
      (d) =>
        `<p><b>Drift</b> (${esc(d.stage)} scan at ${esc(formatTime(d.scannedAt))}, against <code>${esc(d.artifactId)}</code>):</p>${table(
          ['file', 'change'],
          d.changes.map((c) => `<tr><td><code>${esc(c.path)}</code></td><td>${esc(c.kind)}</td></tr>`),
        )}`,
    )
    .join('');
  const landing = i.landing
    ? `<h3>Landing ${i.landing.outcome === 'passed' ? tag('validated', 'ok') : i.landing.outcome === 'failed' ? tag('validation failed', 'bad') : tag('restored, not validated', 'warn')}</h3>${table(
        ['', 'check', 'result'],
        i.landing.checks.map((c) => `<tr>${markCell(c.mark)}<td>${esc(c.name)}</td><td>${esc(c.detail)}</td></tr>`),
      )}`
    : '';
  return `<details id="item-${n}"${bad ? ' class="bad" open' : ''}><summary><span class="${markClass(i.mark)}"><b>${i.mark}</b></span> <b>${esc(i.name)}</b> <span class="muted">${esc(i.kind)}</span> ${i.foundNotDeclared ? tag('found, not declared', 'fnd') : ''} ${tag(i.statusLabel, i.mark === '✔' ? 'ok' : i.mark === '✘' ? 'bad' : 'warn')}</summary><div class="body">${kv([
    ['id', `<code>${esc(i.id)}</code>`],
    ['location', `<code>${esc(i.location)}</code>`],
    ['declared', i.declared ? 'yes' : 'no'],
    ['found on the target', i.discovered ? 'yes' : 'no'],
    ['methods', esc(i.methods.join(', ') || '—')],
    [
      'size',
      `<span class="nw">${esc(formatItemSize(i.size).size)}</span>, ${esc(formatItemSize(i.size).files)} file(s) <span class="muted">(${esc(i.size.source === 'capture' ? 'as captured' : i.size.source === 'discovery' ? 'as discovered' : 'unknown')})</span>${
        i.size.atDiscovery ? `<div class="muted">${esc(i.size.atDiscovery)}</div>` : ''
      }`,
    ],
    ...i.facts.map((f): [string, string] => [f.label, esc(f.value)]),
  ])}${why}${failures}${i.artifacts.map((a) => artifactBlock(a, anchors)).join('')}${drift}${landing}</div></details>`;
}

export function renderHtml(m: ReportModel): string {
  const h = m.headline;
  const c = m.counts;
  const s: string[] = [];
  // Every element the gate's evidence can name gets its id up front, so a link never depends on section order.
  const anchors = new Anchors();
  for (const i of m.items)
    for (const a of i.artifacts) {
      anchors.idFor(a.id);
      for (const cp of a.copies) anchors.idFor(`${a.id}@${cp.vault}`);
      for (const p of a.proofs) anchors.idFor(p.id);
    }

  s.push(
    `<header class="banner tone-${h.tone}" id="headline"><div class="big" aria-hidden="true">${h.tone === 'green' ? '✔' : h.tone === 'red' ? '✘' : '⚠'}</div><div><p class="eyebrow">Rubicon evidence report · ${esc(m.run.command)} · run ${esc(m.run.id)}</p><h1>${esc(h.title)}</h1><p>${esc(h.sentence)}</p>${
      h.nothingDestroyed ? `<p class="safe">${esc(NOTHING_DESTROYED)}</p>` : ''
    }</div></header>`,
  );
  s.push(
    `<nav>${[
      ['summary', 'Summary'],
      ['timeline', 'Timeline'],
      ['checklist', 'Checklist'],
      ['coverage', 'Coverage'],
      ['proofs', 'Proofs'],
      ['drift', 'Drift'],
      ['gate', 'Gate'],
      ['crossing', 'Crossing & landing'],
      ['estimate', 'Window estimate'],
      ['hipaa', 'HIPAA'],
    ]
      .map(([id, label]) => `<a href="#${id}">${label}</a>`)
      .join('')}</nav>`,
  );

  // What went wrong first: at 2 a.m. it is the first thing to read, in the first screen.
  if (m.plainFailures.length)
    s.push(`<section id="failures" class="failures"><h2>What went wrong, in plain words</h2><ul>${m.plainFailures.map((f) => `<li>${esc(f)}</li>`).join('')}</ul></section>`);

  // Summary.
  const card = (n: number | string, label: string, cls = '', href?: string) =>
    href
      ? `<a class="card ${cls}" href="#${href}"><b>${esc(n)}</b><span>${esc(label)}</span></a>`
      : `<div class="card ${cls}"><b>${esc(n)}</b><span>${esc(label)}</span></div>`;
  const uncovered = m.coverage?.map?.verdicts.reduce((n, v) => n + v.uncovered.files, 0);
  s.push(
    `<section id="summary"><h2>Summary</h2><div class="cards">${[
      card(c.items, 'items on the checklist', '', 'checklist'),
      card(c.foundNotDeclared, 'found, not declared', c.foundNotDeclared ? 'warn' : '', 'checklist'),
      card(c.artifacts, 'artifacts captured', '', 'proofs'),
      card(c.proofsPassed, 'proofs passed', 'good', 'proofs'),
      card(c.proofsFailed, 'proofs failed', c.proofsFailed ? 'bad' : '', 'proofs'),
      card(c.copiesBad, 'damaged copies', c.copiesBad ? 'bad' : '', 'proofs'),
      card(c.driftChanges, 'files changed after freeze', c.driftChanges ? 'warn' : '', 'drift'),
      card(
        m.coverage?.map ? (m.coverage.complete ? 'complete' : `${uncovered ?? 0} files`) : 'unknown',
        m.coverage?.map ? (m.coverage.complete ? 'coverage of what is destroyed' : 'not covered by any capture') : 'coverage',
        m.coverage?.map ? (m.coverage.complete ? 'good' : 'bad') : 'warn',
        'coverage',
      ),
      card(m.gate ? `${c.rulesPass}/${c.rulesWarn}/${c.rulesFail}` : '—', 'gate rules pass/warn/fail', c.rulesFail ? 'bad' : c.rulesWarn ? 'warn' : '', 'gate'),
      card(m.landing.items.length ? `${c.landingPassed}/${m.landing.items.length}` : '—', 'landed & validated', c.landingFailed ? 'bad' : '', 'crossing'),
    ].join('')}</div><dl class="meta">${[
      ['target', m.run.target],
      ['outcome', m.outcome],
      ['started', formatTime(m.run.startedAt)],
      ['finished', m.run.finishedAt ? formatTime(m.run.finishedAt) : 'not finished'],
      ['duration', formatDuration(m.run.durationMs)],
      ['exit code', m.run.exitCode ?? '—'],
      ['Rubicon', m.run.rubiconVersion],
      ['host', m.run.host],
      ['resumes', m.run.resumes],
      ['runbook', m.run.runbookPath],
      ['runbook SHA-256', m.run.runbookHash, 'wide'],
      ['journal head', `${m.run.journalHead} (record ${m.run.journalRecords}, hash-chained)`, 'wide'],
    ]
      .map(([k, v, cls]) => `<div${cls ? ` class="${cls}"` : ''}><dt>${esc(k)}</dt><dd>${esc(v)}</dd></div>`)
      .join('')}</dl></section>`,
  );


  // Timeline.
  s.push(
    `<section id="timeline"><h2>Timeline</h2><div class="bar" role="img" aria-label="phases proportional to their durations">${m.timeline.phases
      .map(
        (p) =>
          `<div class="seg ph-${esc(p.phase)}${p.completed ? '' : ' running'}" style="flex:${(p.fraction * 1000).toFixed(3)} 0 0" title="${esc(`${p.phase}: ${formatDuration(p.durationMs)}`)}">${p.fraction >= 0.07 ? esc(p.phase) : ''}</div>`,
      )
      .join('')}</div>${table(
      ['phase', 'started', 'duration', 'share'],
      m.timeline.phases.map(
        (p) =>
          `<tr><td><span class="sw ph-${esc(p.phase)}"></span>${esc(p.phase)}${p.completed ? '' : ` <span class="muted">(${p.stopped ? 'stopped here' : 'running'})</span>`}</td><td>${esc(formatTime(p.startedAt))}</td><td>${dur(p.durationMs)}</td><td>${Math.round(p.fraction * 100)}%</td></tr>`,
      ),
    )}</section>`,
  );

  // Checklist.
  s.push(
    `<section id="checklist"><h2>Checklist</h2><p class="muted">Declared in the runbook ∪ found on the target. ✔ proven · ✘ failed or missing · ⚠ needs a look. Click an item for its evidence.</p>${table(
      ['', 'item', 'kind', 'declared?', 'status', 'size', 'files', 'last change', 'notes'],
      m.items.map((i, n) => {
        const fact = (...keys: string[]) => `<span class="nw">${esc(i.facts.find((f) => keys.includes(f.key))?.value ?? '—')}</span>`;
        const sz = formatItemSize(i.size);
        const sizeTitle = i.size.atDiscovery ? ` title="${esc(i.size.atDiscovery)}"` : '';
        return `<tr class="${i.foundNotDeclared ? 'fnd' : ''}" data-item="${n}">${markCell(i.mark)}<td><a href="#item-${n}"><b>${esc(i.name)}</b></a></td><td>${esc(i.kind)}</td><td>${
          i.foundNotDeclared ? tag('found, not declared', 'fnd') : i.declared && !i.discovered ? tag('declared, not found', 'bad') : i.declared ? 'declared' : '—'
        }</td><td>${esc(i.statusLabel)}</td><td class="size"${sizeTitle}><span class="nw">${esc(sz.size)}</span></td><td class="files">${esc(sz.files)}</td><td>${fact('lastChange')}</td><td>${esc(
          i.notes.filter((x) => !/^found, not declared$/i.test(x)).join('; ') || '',
        )}${i.foundNotDeclared && i.why.length ? `<div class="muted">${esc(i.why.join('; '))}</div>` : ''}</td></tr>`;
      }),
      'checklist',
    )}<h3>Evidence per item</h3>${m.items.map((i, n) => itemDetails(i, n, anchors)).join('')}</section>`,
  );

  s.push(coverageHtml(m));

  // Vaults and proofs.
  s.push(
    `<section id="proofs"><h2>Vaults and proofs</h2>${table(
      ['vault', 'kind', 'where', 'off the target', 'immutable', 'encrypted at rest'],
      m.vaults.map(
        (v) => `<tr><td><b>${esc(v.name)}</b></td><td>${esc(v.kind)}</td><td><code>${esc(v.location)}</code></td><td>${v.offTarget ? 'yes' : 'no'}</td><td>${v.immutable ? 'yes' : 'no'}</td><td>${v.encrypted === true ? 'yes' : v.encrypted === false ? 'no' : 'not reported'}</td></tr>`,
      ),
    )}<h3>Proofs on the proving ground (restored from the vault alone)</h3>${
      m.proofs.length
        ? table(
            ['', 'item', 'method', 'origin', 'restored from', 'checks', 'duration', 'fingerprint'],
            m.proofs.map(
              (p) =>
                `<tr>${markCell(p.mark)}<td>${esc(p.itemName)}${p.phase === 'final-capture' ? ` ${tag('final delta', 'warn')}` : ''}</td><td>${esc(p.method)}</td><td>${esc(p.origin)}</td><td>${esc(p.vault)}</td><td>${p.checks
                  .map((ch) => `<span class="${markClass(ch.mark)}">${ch.mark}</span> ${esc(ch.name)} <span class="muted">${dur(ch.durationMs)}</span>`)
                  .join('<br>')}${p.plain ? `<div class="plain">${esc(p.plain)}</div>` : ''}</td><td>${dur(p.durationMs)}</td><td>${
                  p.fingerprint ? `source ${agree(p.fingerprint.agreesWithSource)}<br>peers ${agree(p.fingerprint.agreesWithPeers)}` : '—'
                }</td></tr>`,
            ),
          )
        : '<p class="muted">No proofs recorded.</p>'
    }</section>`,
  );

  // Drift.
  s.push(
    `<section id="drift"><h2>Drift after freeze</h2>${
      m.drift.afterFreeze.length
        ? table(
            ['item', 'file', 'change', 'size'],
            m.drift.afterFreeze.map(
              (d) => `<tr><td>${esc(d.itemName)}</td><td><code>${esc(d.path)}</code></td><td>${tag(d.kind, d.kind === 'deleted' ? 'bad' : 'warn')}</td><td>${d.size === undefined ? '—' : size(d.size)}</td></tr>`,
            ),
          )
        : '<p>No change found after freeze.</p>'
    }${m.drift.finalDelta
      .map(
        (a) =>
          `<p>Final delta of <b>${esc(m.items.find((i) => i.id === a.itemId)?.name ?? a.itemId)}</b>: ${esc(a.fileCount)} file(s), ${size(a.bytes)}, ${
            a.proven === true ? tag('proven', 'ok') : a.proven === false ? tag('proof failed', 'bad') : tag('not proven', 'warn')
          } <span class="muted mono">${esc(a.id)}</span></p>`,
      )
      .join('')}<p>Changes remaining right before the gate: <b>${m.drift.beforeGate.length}</b>${
      m.drift.beforeGate.length ? ` (${m.drift.beforeGate.map((d) => `<code>${esc(d.itemName)}/${esc(d.path)}</code>`).join(', ')})` : ''
    }</p></section>`,
  );

  // Gate: what stops or needs a look first, the passed rules folded.
  s.push(gateHtml(m, anchors));

  // Permit, rollback point, crossing, landing.
  const cr: string[] = [];
  if (m.permit)
    cr.push(
      `<div><h3>Permit</h3>${kv([
        ['id', `<code>${esc(m.permit.id)}</code>`],
        ['image', esc(m.permit.image)],
        ['issued', esc(formatTime(m.permit.issuedAt))],
        ['expires', esc(formatTime(m.permit.expiresAt))],
        ['proofs bound', esc(m.permit.proofCount)],
        ['proof set SHA-256', `<code>${esc(m.permit.proofSetHash)}</code>`],
      ])}</div>`,
    );
  if (m.rollbackPoint)
    cr.push(
      `<div><h3>Rollback point</h3>${kv([
        ['id', `<code>${esc(m.rollbackPoint.id)}</code>`],
        ['kind', esc(m.rollbackPoint.kind)],
        ['where', `<code>${esc(m.rollbackPoint.location)}</code>`],
        ['created', esc(formatTime(m.rollbackPoint.createdAt))],
        ['state', m.rollbackPoint.released ? 'released after landing validation' : 'kept'],
        ...(m.rollbackPoint.notKept?.length ? [['could not hold', esc(m.rollbackPoint.notKept.join(', '))] as [string, string]] : []),
      ])}</div>`,
    );
  if (m.crossing)
    cr.push(
      `<div><h3>Crossing</h3>${kv([
        ['image', esc(m.crossing.image)],
        ['confirmed by', esc(m.crossing.confirmedBy)],
        ['started', esc(formatTime(m.crossing.startedAt))],
        ['completed', esc(formatTime(m.crossing.completedAt))],
        ['duration', dur(m.crossing.durationMs)],
      ])}</div>`,
    );
  else cr.push(`<div><h3>Crossing</h3><p><b>No crossing in this run.</b> ${m.headline.nothingDestroyed ? esc(NOTHING_DESTROYED) : ''}</p></div>`);
  const landingHtml = !m.landing.items.length
    ? ''
    : 
      `<h3>Landing: ${m.landing.validated ? tag('validated', 'ok') : tag('not validated', 'bad')}</h3>${table(
        ['', 'item', 'from vault', 'size', 'restore', 'validation'],
        m.landing.items.map(
          (l) =>
            `<tr>${markCell(l.mark)}<td>${esc(l.itemName)}</td><td>${esc(l.vault)}</td><td>${l.bytes === undefined ? '—' : size(l.bytes)}</td><td>${dur(l.restoreMs)}</td><td>${
              l.checks.map((ch) => `<span class="${markClass(ch.mark)}">${ch.mark}</span> ${esc(ch.name)}: ${esc(ch.detail)}`).join('<br>') || '—'
            }</td></tr>`,
        ),
      )}`;
  const rollbackHtml = !m.rollbacks.length
    ? ''
    : `<h3 id="rollback">Rollback: ${
        m.rollbacks.at(-1)!.outcome === 'completed' ? tag('completed', 'ok') : tag(m.rollbacks.at(-1)!.outcome, 'bad')
      }</h3>${table(
        ['', 'started', 'confirmed by', 'outcome', 'ended', 'took', 'what happened'],
        m.rollbacks.map(
          (r) =>
            `<tr class="${r.outcome === 'completed' ? '' : 'rule-fail'}" data-rollback="${esc(r.outcome)}">${markCell(r.outcome === 'completed' ? '✔' : '✘')}<td>${esc(formatTime(r.startedAt))}</td><td>${esc(r.by)}</td><td>${
              r.outcome === 'completed' ? tag('completed', 'ok') : tag(r.outcome, 'bad')
            }</td><td>${r.endedAt ? esc(formatTime(r.endedAt)) : '—'}</td><td>${dur(r.durationMs)}</td><td>${esc(r.plain)}</td></tr>`,
        ),
      )}`;
  s.push(`<section id="crossing"><h2>Crossing and landing</h2><div class="trio">${cr.join('')}</div>${landingHtml}${rollbackHtml}</section>`);

  // Estimate.
  const e = m.estimate;
  s.push(
    `<section id="estimate"><h2>Maintenance window estimate</h2><p class="estimate">${dur(e.withMarginMs)}</p><p>${esc(describeWindow(e))}</p>${table(
      ['part', 'duration', 'from'],
      [
        `<tr><td>restores on the proving ground</td><td>${dur(e.restoreMs)}</td><td>measured: ${esc(e.lines.length)} item(s), the slowest passing proof of each</td></tr>`,
        `<tr><td>checks</td><td>${dur(e.checkMs)}</td><td>measured with the restores</td></tr>`,
        `<tr><td>final capture</td><td>${e.finalCaptureMs === null ? 'not measured' : dur(e.finalCaptureMs)}</td><td>${e.finalCaptureMs === null ? '—' : 'measured in this run'}</td></tr>`,
        `<tr class="${e.crossing.source === 'unknown' ? 'rule-warn' : ''}"><td>rebuild (crossing)</td><td>${e.crossing.ms === null ? 'not included' : dur(e.crossing.ms)}</td><td>${esc(e.crossing.text)}</td></tr>`,
        `<tr><td><b>total × ${esc(e.margin)}</b></td><td><b>${dur(e.withMarginMs)}</b></td><td>${dur(e.totalMs)} measured and expected, rounded up to the minute</td></tr>`,
      ],
    )}<h3>Restores per item</h3>${table(
      ['item', 'restore', 'checks', 'size', 'from proofs'],
      e.lines.map(
        (l) =>
          `<tr><td>${esc(l.itemName)}</td><td>${dur(l.restoreMs)}</td><td>${dur(l.checkMs)}</td><td>${size(l.bytes)}</td><td class="mono">${l.proofIds.map(esc).join('<br>')}</td></tr>`,
      ),
    )}${e.unknownItems.length ? `<p class="plain">Not included (no passing proof): ${esc(e.unknownItems.join(', '))}</p>` : ''}<ul class="muted">${e.assumptions
      .map((a) => `<li>${esc(a)}</li>`)
      .join('')}</ul></section>`,
  );

  // HIPAA.
  s.push(
    `<section id="hipaa"><h2>HIPAA Security Rule: where the evidence is</h2><p class="muted">What this run shows for each section; compliance is judged over the whole programme, not by one report.</p>${table(
      ['', 'section', 'asks', 'evidence in this report'],
      m.hipaa.map(
        (x) =>
          `<tr>${markCell(x.mark)}<td><b>${esc(x.section)}</b><br>${esc(x.title)}</td><td>${esc(x.asks)}</td><td><ul>${x.evidence.map((v) => `<li>${esc(v)}</li>`).join('')}</ul>${x.see
            .map((id) => `<a href="#${esc(id)}">${esc(id)}</a>`)
            .join(' · ')}</td></tr>`,
      ),
    )}</section>`,
  );

  if (m.notes.length)
    s.push(
      `<section id="notes"><h2>Notes</h2><ul>${m.notes.map((n) => `<li>${tag(n.level, n.level === 'error' ? 'bad' : n.level === 'warn' ? 'warn' : 'plain')} ${esc(formatTime(n.at))} ${esc(n.message)}</li>`).join('')}</ul></section>`,
    );

  s.push(
    `<footer>Generated from the journal of run ${esc(m.run.id)} at ${esc(formatTime(m.generatedAt))} by Rubicon ${esc(m.run.rubiconVersion)} · schema ${esc(m.schema)}</footer>`,
  );

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(`Rubicon: ${h.title} · ${m.run.target}`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${s.join('\n')}
</main>
<script>${PRINT_SCRIPT}</script>
</body>
</html>
`;
}

/**
 * The gate section: refusals, then warnings and overrides, each a row that
 * stands out; the passed rules folded in one <details>; every evidence id a
 * link to the artifact, proof or copy it names.
 */
function gateHtml(m: ReportModel, anchors: Anchors): string {
  if (!m.gate) return '<section id="gate"><h2>Gate</h2><p class="muted">The gate was not evaluated in this run.</p></section>';
  const g = m.gate;
  const row = (r: RuleReport) =>
    `<tr class="rule-${esc(r.status)}">${markCell(r.mark)}<td><code class="rule">${esc(r.rule)}</code></td><td>${esc(r.itemName ?? 'all')}</td><td>${esc(r.reason)}${
      r.override ? `<div class="override">override by ${esc(r.override.by)}: ${esc(r.override.reason)}</div>` : ''
    }</td><td class="ev">${r.evidence.map((e) => evidenceLink(e, anchors)).join('<br>') || '—'}</td></tr>`;
  const head = ['', 'rule', 'item', 'reason', 'evidence'];
  const refused = g.rules.filter((r) => r.status === 'fail');
  const warned = g.rules.filter((r) => r.status === 'warn' || r.status === 'overridden');
  const passed = g.rules.filter((r) => r.status === 'pass');
  const parts: string[] = [];
  parts.push(
    `<p>Evaluated at ${esc(formatTime(g.evaluatedAt))}: ${tag(`${refused.length} refused`, refused.length ? 'bad' : 'plain')} ${tag(`${warned.length} warning(s)`, warned.length ? 'warn' : 'plain')} ${tag(`${passed.length} passed`, 'ok')}</p>`,
  );
  if (refused.length) parts.push(`<h3 id="gate-refusals">Refusals: why the gate stopped the crossing</h3>${table(head, refused.map(row), 'gate refusals')}`);
  if (warned.length) parts.push(`<h3 id="gate-warnings">Warnings${warned.some((r) => r.status === 'overridden') ? ' and overrides' : ''}</h3>${table(head, warned.map(row), 'gate warnings')}`);
  if (passed.length)
    parts.push(`<details id="gate-passed"><summary><b>${esc(passed.length)} rule(s) passed</b> <span class="muted">(each with its evidence)</span></summary><div class="body">${table(head, passed.map(row), 'gate passed')}</div></details>`);
  return `<section id="gate"><h2>Gate: ${g.passed ? tag('passed', 'ok') : tag('refused', 'bad')}</h2>${parts.join('')}</section>`;
}

/** The coverage section (docs/coverage.md): what the crossing destroys, covered, excluded, uncovered by folder. */
function coverageHtml(m: ReportModel): string {
  const c = m.coverage;
  if (!c) return '<section id="coverage"><h2>Coverage</h2><p class="muted">No scope of destruction was recorded in this run: coverage is unknown.</p></section>';
  const t = (x: { files: number; bytes: number }) => `${esc(x.files)} files, ${esc(formatBytes(x.bytes))}`;
  const vols = (c.map?.verdicts ?? []).map((v) => {
    const un = v.uncovered.groups.map((g) => `<li class="bad">${esc(g.folder)} ${esc(g.files)} file(s), ${esc(formatBytes(g.bytes))}, not captured: ${esc(g.first.join(', '))}</li>`).join('');
    const only = v.onlyEverything.groups.map((g) => `<li>${esc(g.folder)} ${esc(g.files)} file(s), ${esc(formatBytes(g.bytes))}: ${esc(g.first.join(', '))}</li>`).join('');
    return `<h3>${esc(v.volume)}: ${v.uncovered.files === 0 ? tag('complete', 'ok') : tag(`${v.uncovered.files} files uncovered`, 'bad')}</h3><dl class="meta"><dt>in scope</dt><dd>${t(v)}</dd><dt>covered by proven artifacts</dt><dd>${t(v.covered)}</dd><dt>owned by databases</dt><dd>${t(v.owned)}</dd><dt>excluded</dt><dd>${t(v.excluded)}</dd><dt>uncovered</dt><dd>${t(v.uncovered)}</dd></dl>${un ? `<ul>${un}</ul>` : ''}${only ? `<p>Held by the everything capture alone (outside every folder item): ${t(v.onlyEverything)}</p><ul>${only}</ul>` : ''}`;
  });
  const ex = c.exclusions.map((e) => `<li>${esc(e.path)}${e.except?.length ? ` (except ${esc(e.except.join(', '))})` : ''}: ${esc(e.source)}${e.by ? `, decided by ${esc(e.by)}` : ''}: ${esc(e.reason)}</li>`).join('');
  return `<section id="coverage"><h2>Coverage: what the crossing destroys</h2><p>Scope (${esc(c.infra)}, ${esc(c.os)}): ${esc(c.volumes.map((v) => `${v.label} (${v.fate})`).join(', '))}.</p>${
    c.map ? vols.join('') : '<p class="muted">The coverage map was not recorded yet (it is made after the capture and after the final capture).</p>'
  }<h3>Exclusions in force</h3><ul>${ex || '<li>none</li>'}</ul></section>`;
}
