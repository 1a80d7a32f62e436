/**
 * JUnit XML for pipelines: one <testcase> per gate rule result, per proof,
 * per landing validation and per rollback; failures as <failure>. Pure.
 *
 * Contract: the output is well-formed XML 1.0 whatever the run contains:
 * every string is escaped and characters XML 1.0 forbids (most control
 * characters, lone surrogates) are replaced by U+FFFD. A `warn` or
 * `overridden` rule passes (it is printed in <system-out>), exactly as the
 * gate treats it; a `fail` rule, a failed proof of Rubicon's own artifact,
 * a failed landing validation and a rollback that failed or has no recorded
 * end are failures. A failed proof of the vendor's artifact is a finding,
 * not a failure, by default (a successful
 * rebuild must not fail the pipeline over the vendor's job, which the gate
 * itself only warns about): it is written as <system-out> with a
 * "WARNING" line and counted nowhere; `vendorFailures: true`
 * (`--junit-vendor-failures`) makes it a <failure> again.
 */
import { formatDuration, type ReportModel } from './model.ts';

// XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
const INVALID_XML = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;

/** Escapes text for XML content and double-quoted attributes. */
export function xml(text: string | number | undefined): string {
  return String(text ?? '')
    .replace(INVALID_XML, '\ufffd')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

interface Case {
  classname: string;
  name: string;
  timeMs: number;
  failure?: { type: string; message: string; body: string };
  out?: string;
}

const seconds = (ms: number): string => (Math.max(0, ms) / 1000).toFixed(3);

function suite(name: string, timestamp: string, cases: Case[]): string {
  const failures = cases.filter((c) => c.failure).length;
  const time = cases.reduce((n, c) => n + c.timeMs, 0);
  const body = cases
    .map((c) => {
      const inner =
        (c.failure ? `\n      <failure type="${xml(c.failure.type)}" message="${xml(c.failure.message)}">${xml(c.failure.body)}</failure>` : '') +
        (c.out ? `\n      <system-out>${xml(c.out)}</system-out>` : '');
      return `    <testcase classname="${xml(c.classname)}" name="${xml(c.name)}" time="${seconds(c.timeMs)}"${inner ? `>${inner}\n    </testcase>` : ' />'}`;
    })
    .join('\n');
  return `  <testsuite name="${xml(name)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="0" time="${seconds(time)}" timestamp="${xml(timestamp)}">\n${body}${body ? '\n' : ''}  </testsuite>`;
}

export interface JunitOptions {
  /** Count a failed proof of the vendor's artifact as a failure (default: a warning). */
  vendorFailures?: boolean;
}

export function renderJunit(m: ReportModel, o: JunitOptions = {}): string {
  const gateCases: Case[] = (m.gate?.rules ?? []).map((r) => {
    const c: Case = { classname: `rubicon.gate.${r.rule}`, name: `${r.rule}${r.itemName ? ` [${r.itemName}]` : ''}`, timeMs: 0 };
    const lines = [`${r.status}: ${r.reason}`, ...(r.override ? [`override by ${r.override.by}: ${r.override.reason}`] : []), ...r.evidence.map((e) => `evidence: ${e}`)];
    if (r.status === 'fail') c.failure = { type: 'gate-rule-failed', message: r.reason, body: lines.join('\n') };
    else c.out = lines.join('\n');
    return c;
  });

  const proofCases: Case[] = m.proofs.map((p) => {
    const c: Case = {
      classname: `rubicon.proof.${p.method}`,
      name: `${p.itemName} via ${p.method} from vault ${p.vault}`,
      timeMs: p.durationMs,
    };
    const lines = p.checks.map((ch) => `${ch.status} ${ch.name} (${formatDuration(ch.durationMs)}): ${ch.detail}`);
    if (p.outcome === 'failed' && p.origin === 'vendor' && !o.vendorFailures) {
      const first = p.checks.find((ch) => ch.status !== 'passed');
      c.out = [`WARNING vendor-backup-not-restorable: ${p.plain ?? (first ? `${first.name}: ${first.detail}` : 'proof failed')} (a finding, not a failure: --junit-vendor-failures counts it)`, ...lines].join('\n');
    } else if (p.outcome === 'failed') {
      const first = p.checks.find((ch) => ch.status !== 'passed');
      c.failure = {
        type: p.origin === 'vendor' ? 'vendor-backup-not-restorable' : 'proof-failed',
        message: p.plain ?? (first ? `${first.name}: ${first.detail}` : 'proof failed'),
        body: lines.join('\n'),
      };
    } else c.out = lines.join('\n');
    return c;
  });

  const landingCases: Case[] = m.landing.items.map((l) => {
    const c: Case = { classname: 'rubicon.landing', name: l.itemName, timeMs: l.restoreMs ?? 0 };
    const lines = l.checks.map((ch) => `${ch.status} ${ch.name}: ${ch.detail}`);
    if (l.outcome !== 'passed') {
      const first = l.checks.find((ch) => ch.status !== 'passed');
      c.failure = {
        type: 'landing-validation-failed',
        message: first ? `${first.name}: ${first.detail}` : `landing of ${l.itemName} was not validated`,
        body: lines.join('\n'),
      };
    } else c.out = lines.join('\n');
    return c;
  });

  // A rollback that failed or has no recorded end leaves the target in an unknown state: a failure.
  const rollbackCases: Case[] = m.rollbacks.map((r) => {
    const c: Case = { classname: 'rubicon.rollback', name: `rollback started ${r.startedAt} by ${r.by}`, timeMs: r.durationMs ?? 0 };
    if (r.outcome === 'completed') c.out = r.plain;
    else c.failure = { type: `rollback-${r.outcome}`, message: r.error ? `${r.error.code}: ${r.error.message}` : 'no end of the rollback was recorded', body: r.plain };
    return c;
  });

  const suites = [suite('rubicon.gate', m.gate?.evaluatedAt ?? m.generatedAt, gateCases), suite('rubicon.proofs', m.generatedAt, proofCases)];
  if (landingCases.length) suites.push(suite('rubicon.landing', m.generatedAt, landingCases));
  if (rollbackCases.length) suites.push(suite('rubicon.rollback', m.rollbacks[0]!.startedAt, rollbackCases));
  const all = [...gateCases, ...proofCases, ...landingCases, ...rollbackCases];
  const failures = all.filter((c) => c.failure).length;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="${xml(`rubicon run ${m.run.id}`)}" tests="${all.length}" failures="${failures}" errors="0" time="${seconds(
    m.run.durationMs,
  )}">\n${suites.join('\n')}\n</testsuites>\n`;
}
