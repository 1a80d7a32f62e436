/**
 * The Markdown checklist: what an engineer pastes into a ticket and an
 * auditor reads in a repository. Pure.
 *
 * Contract: every string from the run (item names, paths, engine messages)
 * goes through `md()`, which neutralises table pipes, line breaks, Markdown
 * emphasis/link/code syntax and raw HTML (every use is mid-line, so line-start
 * syntax such as `#` or `-` needs no escape), so a hostile file name cannot break the
 * table or inject markup into a rendered page.
 */
import { describeWindow, formatBytes, formatDuration, formatItemSize, formatTime, NOTHING_DESTROYED, type ReportModel, type RollbackReport } from './model.ts';

/** Escapes text for an inline Markdown context (paragraph, list item or table cell). */
export function md(text: string | number | boolean | null | undefined): string {
  return String(text ?? '—')
    .replace(/\r\n|\r|\n/g, ' ')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/([\\`*_[\]|~])/g, '\\$1');
}

const table = (head: string[], rows: string[][]): string =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

const TONE_MARK = { green: '✔', red: '✘', amber: '⚠' } as const;

export function renderMarkdown(m: ReportModel): string {
  const out: string[] = [];
  const push = (...lines: string[]) => out.push(...lines);

  push(`# Rubicon report: ${md(m.run.target)}`, '');
  push(`> ${TONE_MARK[m.headline.tone]} **${md(m.headline.title)}**`, '>', `> ${md(m.headline.sentence)}`);
  if (m.headline.nothingDestroyed) push('>', `> **${md(NOTHING_DESTROYED)}**`);
  push('');
  push(
    table(
      ['run', 'command', 'outcome', 'started', 'duration', 'exit code'],
      [[md(m.run.id), md(m.run.command), `**${md(m.outcome)}**`, md(formatTime(m.run.startedAt)), md(formatDuration(m.run.durationMs)), md(m.run.exitCode ?? '—')]],
    ),
    '',
  );

  if (m.plainFailures.length) {
    push('## What went wrong, in plain words', '');
    for (const f of m.plainFailures) push(`- ✘ ${md(f)}`);
    push('');
  }

  // Checklist.
  push('## Checklist', '');
  push('✔ proven · ✘ failed or missing · ⚠ needs a look (not proven, changed after capture, pending)', '');
  push(
    table(
      ['', 'item', 'kind', 'declared?', 'status', 'size', 'files', 'last change', 'artifacts', 'notes'],
      m.items.map((i) => {
        const fact = (k: string) => i.facts.find((f) => f.key === k)?.value ?? '—';
        const arts = i.artifacts
          .map((a) => `${a.proven === true ? '✔' : a.proven === false ? '✘' : '⚠'} ${md(a.method)}${a.phase === 'final-capture' ? ' (delta)' : ''}`)
          .join('<br>');
        return [
          i.mark,
          `**${md(i.name)}**`,
          md(i.kind),
          i.foundNotDeclared ? '**found, not declared**' : i.declared ? (i.discovered ? 'declared' : 'declared, **not found**') : '—',
          md(i.statusLabel),
          md(formatItemSize(i.size).size),
          md(formatItemSize(i.size).files),
          md(fact('lastChange')),
          arts || '—',
          i.notes.filter((n) => !(i.foundNotDeclared && /^found, not declared$/i.test(n))).map(md).join('; ') || '—',
        ];
      }),
    ),
    '',
  );
  const fnd = m.items.filter((i) => i.foundNotDeclared);
  if (fnd.length) {
    push('### Found, not declared: why each one matters', '');
    for (const i of fnd) push(`- **${md(i.name)}** (${md(i.kind)}): ${i.why.length ? i.why.map(md).join('; ') : 'found on the target by discovery'}`);
    push('');
  }

  // Vaults and proofs.
  renderCoverage(m, push);

  push('## Vaults', '');
  push(
    table(
      ['vault', 'kind', 'where', 'off the target', 'immutable', 'encrypted at rest'],
      m.vaults.map((v) => [md(v.name), md(v.kind), md(v.location), v.offTarget ? 'yes' : 'no', v.immutable ? 'yes' : 'no', v.encrypted === true ? 'yes' : v.encrypted === false ? 'no' : 'not reported']),
    ),
    '',
  );
  push('### 3-2-1-1-0 per item', '');
  for (const i of m.items.filter((x) => x.discovered)) push(`- ${i.rule32110.holds ? '✔' : '✘'} **${md(i.name)}**: ${md(i.rule32110.text)}`);
  push('');
  push('## Proofs', '');
  if (m.proofs.length) {
    push(
      table(
        ['', 'item', 'method', 'origin', 'restored from', 'duration', 'checks', 'fingerprint'],
        m.proofs.map((p) => [
          p.mark,
          md(p.itemName),
          md(p.method),
          md(p.origin),
          md(p.vault),
          md(formatDuration(p.durationMs)),
          p.checks.map((c) => `${c.mark} ${md(c.name)} ${md(formatDuration(c.durationMs))}`).join('<br>'),
          p.fingerprint
            ? `${md(p.fingerprint.digest.slice(0, 12))}… source ${agree(p.fingerprint.agreesWithSource)}, peers ${agree(p.fingerprint.agreesWithPeers)}`
            : '—',
        ]),
      ),
      '',
    );
  } else push('No proofs recorded.', '');

  // Drift.
  push('## Drift after freeze', '');
  if (m.drift.afterFreeze.length) {
    push(
      table(
        ['item', 'file', 'change', 'size'],
        m.drift.afterFreeze.map((d) => [md(d.itemName), md(d.path), md(d.kind), md(d.size === undefined ? '—' : formatBytes(d.size))]),
      ),
      '',
    );
  } else push('No change found after freeze.', '');
  for (const a of m.drift.finalDelta)
    push(
      `- Final delta of **${md(m.items.find((i) => i.id === a.itemId)?.name ?? a.itemId)}**: ${a.fileCount} file(s), ${md(formatBytes(a.bytes))}, ${a.proven === true ? '✔ proven' : a.proven === false ? '✘ proof failed' : '⚠ not proven'} (${md(a.id)})`,
    );
  push(`- Changes remaining right before the gate: **${m.drift.beforeGate.length}**`, '');

  // Gate.
  if (m.gate) {
    push(`## Gate: ${m.gate.passed ? 'passed' : 'refused'}`, '');
    push(`Evaluated at ${md(formatTime(m.gate.evaluatedAt))}.`, '');
    push(
      table(
        ['', 'rule', 'item', 'status', 'reason', 'evidence'],
        m.gate.rules.map((r) => [
          r.mark,
          md(r.rule),
          md(r.itemName ?? 'all'),
          md(r.status),
          md(r.reason) + (r.override ? ` (override by ${md(r.override.by)}: ${md(r.override.reason)})` : ''),
          r.evidence.map(md).join('<br>') || '—',
        ]),
      ),
      '',
    );
  } else push('## Gate', '', 'The gate was not evaluated in this run.', '');

  if (m.permit)
    push(
      '## Permit',
      '',
      `Permit ${md(m.permit.id)} for image ${md(m.permit.image)}, issued ${md(formatTime(m.permit.issuedAt))}, expires ${md(formatTime(m.permit.expiresAt))}, ${m.permit.proofCount} proof(s), proof set SHA-256 ${md(m.permit.proofSetHash)}.`,
      '',
    );
  if (m.rollbackPoint)
    push(
      `Rollback point ${md(m.rollbackPoint.id)} (${md(m.rollbackPoint.kind)}) at ${md(m.rollbackPoint.location)}, created ${md(formatTime(m.rollbackPoint.createdAt))}${m.rollbackPoint.released ? ', released after landing validation' : ', kept'}.${m.rollbackPoint.notKept?.length ? ` It could not hold: ${m.rollbackPoint.notKept.map(md).join(', ')}.` : ''}`,
      '',
    );
  if (m.crossing)
    push(
      '## Crossing',
      '',
      `Image ${md(m.crossing.image)}; confirmed by ${md(m.crossing.confirmedBy)}; started ${md(formatTime(m.crossing.startedAt))}; completed ${md(formatTime(m.crossing.completedAt))}; took ${md(m.crossing.durationMs === undefined ? '—' : formatDuration(m.crossing.durationMs))}.`,
      '',
    );
  if (m.landing.items.length) {
    push(`## Landing: ${m.landing.validated ? 'validated' : 'NOT validated'}`, '');
    push(
      table(
        ['', 'item', 'from vault', 'restore', 'checks'],
        m.landing.items.map((l) => [
          l.mark,
          md(l.itemName),
          md(l.vault),
          md(l.restoreMs === undefined ? '—' : formatDuration(l.restoreMs)),
          l.checks.map((c) => `${c.mark} ${md(c.name)}: ${md(c.detail)}`).join('<br>') || '—',
        ]),
      ),
      '',
    );
  }

  if (m.rollbacks.length) {
    const mark = (o: RollbackReport['outcome']): string => (o === 'completed' ? '✔' : '✘');
    push('## Rollback', '');
    push(
      table(
        ['', 'started', 'confirmed by', 'outcome', 'ended', 'took', 'what happened'],
        m.rollbacks.map((r) => [
          mark(r.outcome),
          md(formatTime(r.startedAt)),
          md(r.by),
          r.outcome === 'completed' ? 'completed' : `**${r.outcome}**`,
          md(r.endedAt ? formatTime(r.endedAt) : '—'),
          md(r.durationMs === undefined ? '—' : formatDuration(r.durationMs)),
          md(r.plain),
        ]),
      ),
      '',
    );
  }

  // Timeline and estimate.
  push('## Timeline', '');
  push(
    table(
      ['phase', 'started', 'duration', 'share'],
      m.timeline.phases.map((p) => [
        md(p.phase) + (p.completed ? '' : p.stopped ? ' (stopped here)' : ' (running)'),
        md(formatTime(p.startedAt)),
        md(formatDuration(p.durationMs)),
        `${Math.round(p.fraction * 100)}%`,
      ]),
    ),
    '',
  );
  const e = m.estimate;
  push('## Maintenance window estimate', '');
  push(`**${md(describeWindow(e))}**`, '');
  if (e.unknownItems.length) push(`Not included (no passing proof): ${e.unknownItems.map(md).join(', ')}.`, '');
  for (const a of e.assumptions) push(`- ${md(a)}`);
  push('');

  push('## HIPAA Security Rule: where the evidence is', '');
  push(
    table(
      ['', 'section', 'asks', 'evidence in this report'],
      m.hipaa.map((h) => [h.mark, `**${md(h.section)}** ${md(h.title)}`, md(h.asks), h.evidence.map(md).join('<br>')]),
    ),
    '',
  );
  push(`Generated from the journal of run ${md(m.run.id)} at ${md(formatTime(m.generatedAt))} by Rubicon ${md(m.run.rubiconVersion)}; runbook ${md(m.run.runbookPath)} SHA-256 ${md(m.run.runbookHash)}; journal head ${md(m.run.journalHead)} (record ${m.run.journalRecords}, hash-chained).`, '');
  return out.join('\n');
}

function agree(v: boolean | null): string {
  return v === null ? '—' : v ? 'agrees' : '**DISAGREES**';
}

/** The coverage section (docs/coverage.md): counts, exclusions, and every uncovered folder. */
function renderCoverage(m: ReportModel, push: (...lines: string[]) => void): void {
  const c = m.coverage;
  push('## Coverage: what the crossing destroys', '');
  if (!c) {
    push('No scope of destruction was recorded in this run: coverage is unknown.', '');
    return;
  }
  push(`Scope (${md(c.infra)}, ${md(c.os)}): ${c.volumes.map((v) => `${md(v.label)} (${md(v.fate)})`).join(', ')}.`, '');
  if (!c.map) push('The coverage map was not recorded yet (it is made after the capture and after the final capture).', '');
  for (const v of c.map?.verdicts ?? []) {
    const t = (x: { files: number; bytes: number }) => `${x.files} files, ${md(formatBytes(x.bytes))}`;
    push(
      table(
        ['volume', 'in scope', 'covered by proven artifacts', 'owned by databases', 'excluded', 'uncovered'],
        [[md(v.volume), t(v), t(v.covered), t(v.owned), t(v.excluded), `${v.uncovered.files === 0 ? '✔' : '✘'} **${v.uncovered.files}** files, ${md(formatBytes(v.uncovered.bytes))}`]],
      ),
      '',
    );
    for (const g of v.uncovered.groups) push(`- ✘ **${md(g.folder)}** ${g.files} file(s), ${md(formatBytes(g.bytes))}, not captured: ${g.first.map(md).join(', ')}`);
    if (v.uncovered.groups.length) push('');
    if (v.onlyEverything.files) {
      push(`Held by the everything capture alone (outside every folder item): ${t(v.onlyEverything)}`, '');
      for (const g of v.onlyEverything.groups) push(`- ${md(g.folder)} ${g.files} file(s), ${md(formatBytes(g.bytes))}: ${g.first.map(md).join(', ')}`);
      push('');
    }
  }
  push(`Exclusions in force (${md(c.os)} built-in list, Rubicon's own, the runbook's):`, '');
  for (const e of c.exclusions) push(`- ${md(e.path)}${e.except?.length ? ` (except ${e.except.map(md).join(', ')})` : ''}: ${md(e.source)}${e.by ? `, decided by ${md(e.by)}` : ''}: ${md(e.reason)}`);
  if (!c.exclusions.length) push('- none');
  push('');
}
