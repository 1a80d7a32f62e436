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
  formatBytes,
  formatDuration,
  formatTime,
  NOTHING_DESTROYED,
  type ArtifactReport,
  type ItemReport,
  type Mark,
  type ProofReport,
  type ReportModel,
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
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-top:14px}
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

function proofBlock(p: ProofReport): string {
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
  return `<div class="proof"><h4>${p.mark === '✔' ? tag('proof passed', 'ok') : tag('proof failed', 'bad')} restored from vault <b>${esc(p.vault)}</b> on ${esc(p.provingGround)} in ${dur(p.durationMs)} <span class="muted mono">${esc(p.id)}</span></h4>${p.plain ? `<p class="plain">${esc(p.plain)}</p>` : ''}${checks}${fp}</div>`;
}

function artifactBlock(a: ArtifactReport): string {
  const state = a.proven === true ? tag('proven', 'ok') : a.proven === false ? tag('proof failed', 'bad') : tag('not proven', 'warn');
  const copies = a.copies.length
    ? a.copies.map((c) => `${c.mark === '✔' ? tag(`${c.vault}: ok`, 'ok') : tag(`${c.vault}: ${c.status}`, 'bad')}${c.detail ? ` <span class="muted">${esc(c.detail)}</span>` : ''}`).join(' ')
    : '<span class="muted">no copy checked</span>';
  const changed = a.changed?.length
    ? `<p>Changed files taken by this delta:</p>${table(
        ['file', 'change', 'size'],
        a.changed.map((c) => `<tr><td><code>${esc(c.path)}</code></td><td>${esc(c.kind)}</td><td>${c.size === undefined ? '—' : size(c.size)}</td></tr>`),
      )}`
    : '';
  return `<div class="artifact ${a.proven === true ? 'ok' : a.proven === false ? 'bad' : ''}"><h3>${esc(a.method)} ${a.phase === 'final-capture' ? tag('final delta', 'warn') : ''} ${a.origin === 'vendor' ? tag('vendor', 'plain') : tag('rubicon', 'plain')} ${state}</h3>${kv([
    ['artifact', `<code>${esc(a.id)}</code>`],
    ['captured', `${esc(formatTime(a.capturedAt))} in ${dur(a.captureMs)} by ${esc(a.tool)} on ${esc(a.host)}`],
    ['size', `${size(a.bytes)}, ${esc(a.fileCount)} file(s)`],
    ['manifest SHA-256', `<code>${esc(a.manifestHash)}</code>`],
    ...(a.position ? ([['position', esc(a.position)]] as [string, string][]) : []),
    ...(a.command ? ([['command', `<code>${esc(a.command)}</code>`]] as [string, string][]) : []),
    ['copies', copies],
  ])}${changed}${a.proofs.map(proofBlock).join('')}</div>`;
}

function itemDetails(i: ItemReport, n: number): string {
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
    ...i.facts.map((f): [string, string] => [f.label, esc(f.value)]),
  ])}${why}${failures}${i.artifacts.map(artifactBlock).join('')}${drift}${landing}</div></details>`;
}

export function renderHtml(m: ReportModel): string {
  const h = m.headline;
  const c = m.counts;
  const s: string[] = [];

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

  // Summary.
  const card = (n: number | string, label: string, cls = '') => `<div class="card ${cls}"><b>${esc(n)}</b><span>${esc(label)}</span></div>`;
  s.push(
    `<section id="summary"><h2>Summary</h2><dl class="meta">${[
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
      .join('')}</dl><div class="cards">${[
      card(c.items, 'items on the checklist'),
      card(c.foundNotDeclared, 'found, not declared', c.foundNotDeclared ? 'warn' : ''),
      card(c.artifacts, 'artifacts captured'),
      card(c.proofsPassed, 'proofs passed', 'good'),
      card(c.proofsFailed, 'proofs failed', c.proofsFailed ? 'bad' : ''),
      card(c.copiesBad, 'damaged copies', c.copiesBad ? 'bad' : ''),
      card(c.driftChanges, 'files changed after freeze', c.driftChanges ? 'warn' : ''),
      card(m.gate ? `${c.rulesPass}/${c.rulesWarn}/${c.rulesFail}` : '—', 'gate rules pass/warn/fail', c.rulesFail ? 'bad' : c.rulesWarn ? 'warn' : ''),
      card(m.landing.items.length ? `${c.landingPassed}/${m.landing.items.length}` : '—', 'landed & validated', c.landingFailed ? 'bad' : ''),
    ].join('')}</div></section>`,
  );

  if (m.plainFailures.length)
    s.push(`<section id="failures" class="failures"><h2>What went wrong, in plain words</h2><ul>${m.plainFailures.map((f) => `<li>${esc(f)}</li>`).join('')}</ul></section>`);

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
          `<tr><td><span class="sw ph-${esc(p.phase)}"></span>${esc(p.phase)}${p.completed ? '' : ' <span class="muted">(not finished)</span>'}</td><td>${esc(formatTime(p.startedAt))}</td><td>${dur(p.durationMs)}</td><td>${Math.round(p.fraction * 100)}%</td></tr>`,
      ),
    )}</section>`,
  );

  // Checklist.
  s.push(
    `<section id="checklist"><h2>Checklist</h2><p class="muted">Declared in the runbook ∪ found on the target. ✔ proven · ✘ failed or missing · ⚠ needs a look. Click an item for its evidence.</p>${table(
      ['', 'item', 'kind', 'declared?', 'status', 'size', 'files', 'last change', 'notes'],
      m.items.map((i, n) => {
        const fact = (...keys: string[]) => `<span class="nw">${esc(i.facts.find((f) => keys.includes(f.key))?.value ?? '—')}</span>`;
        return `<tr class="${i.foundNotDeclared ? 'fnd' : ''}" data-item="${n}">${markCell(i.mark)}<td><a href="#item-${n}"><b>${esc(i.name)}</b></a></td><td>${esc(i.kind)}</td><td>${
          i.foundNotDeclared ? tag('found, not declared', 'fnd') : i.declared && !i.discovered ? tag('declared, not found', 'bad') : i.declared ? 'declared' : '—'
        }</td><td>${esc(i.statusLabel)}</td><td>${fact('bytes')}</td><td>${fact('files', 'fileCount')}</td><td>${fact('lastChange')}</td><td>${esc(
          i.notes.filter((x) => !/^found, not declared$/i.test(x)).join('; ') || '',
        )}${i.foundNotDeclared && i.why.length ? `<div class="muted">${esc(i.why.join('; '))}</div>` : ''}</td></tr>`;
      }),
      'checklist',
    )}<h3>Evidence per item</h3>${m.items.map(itemDetails).join('')}</section>`,
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

  // Gate.
  s.push(
    m.gate
      ? `<section id="gate"><h2>Gate: ${m.gate.passed ? tag('passed', 'ok') : tag('refused', 'bad')}</h2><p>Evaluated at ${esc(formatTime(m.gate.evaluatedAt))}. Every rule with its evidence:</p>${table(
          ['', 'rule', 'item', 'status', 'reason', 'evidence'],
          m.gate.rules.map(
            (r) =>
              `<tr>${markCell(r.mark)}<td><code class="rule">${esc(r.rule)}</code></td><td>${esc(r.itemName ?? 'all')}</td><td>${esc(r.status)}</td><td>${esc(r.reason)}${
                r.override ? `<div class="muted">override by ${esc(r.override.by)}: ${esc(r.override.reason)}</div>` : ''
              }</td><td class="ev">${r.evidence.map((e) => `<code>${esc(e)}</code>`).join('<br>') || '—'}</td></tr>`,
          ),
        )}</section>`
      : '<section id="gate"><h2>Gate</h2><p class="muted">The gate was not evaluated in this run.</p></section>',
  );

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
  s.push(`<section id="crossing"><h2>Crossing and landing</h2><div class="trio">${cr.join('')}</div>${landingHtml}</section>`);

  // Estimate.
  const e = m.estimate;
  s.push(
    `<section id="estimate"><h2>Maintenance window estimate</h2><p class="estimate">${dur(e.withMarginMs)}</p><p>measured ${dur(e.totalMs)} × ${esc(e.margin)}: restores ${dur(e.restoreMs)}, checks ${dur(e.checkMs)}, final capture ${
      e.finalCaptureMs === null ? 'not measured' : dur(e.finalCaptureMs)
    }, rebuild ${e.crossingMs === null ? 'not measured' : dur(e.crossingMs)}${e.landingActualMs === null ? '' : `; this run's landing actually took ${dur(e.landingActualMs)}`}.</p>${table(
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
