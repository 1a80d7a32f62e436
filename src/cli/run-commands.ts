import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { RubiconError } from '../core/errors.ts';
import type { RunCommand } from '../core/events.ts';
import type { RunCommand as Cmd } from '../core/events.ts';
import { deriveState } from '../core/state.ts';
import { RULES } from '../gate/policy.ts';
import { checkBeforeStart, checkStateDir, loadRunbook, type Runbook } from '../runbook/load.ts';
import type { Confirmation, RunContext, RunHooks } from '../run/context.ts';
import { asSentence } from '../run/findings.ts';
import { RESUMABLE, confirmCrossed, confirmManualStep, loadRunRunbook, resumeRun, startRun, type RunSummary } from '../run/run.ts';
import { buildSandbox, technicianHooks } from '../sandbox/estate.ts';
import { LocalStateStore, type StateStore } from '../state/store.ts';
import { EXIT } from '../core/errors.ts';
import { defaultStateDir, explainMissingRun, reportOptions, sharedState, type Flags } from './common.ts';
import { jsonRenderer, style, textRenderer, type Renderer } from './render.ts';

/**
 * The commands that run phases (plan, rehearse, upgrade, verify, demo,
 * resume, confirm) and check-runbook. Loaded by main.ts only when one of
 * them runs: they need the run module and everything it composes.
 */

/** Asks before the crossing. Without a terminal and without --yes it refuses: a pipeline must say --yes. */
function confirmer(flags: Flags): (ctx: RunContext) => Promise<Confirmation> {
  return async (ctx) => {
    const who = process.env.RUBICON_OPERATOR ?? process.env.USER ?? os.userInfo().username;
    if (flags.yes) return { confirmed: true, by: 'flag', who };
    if (!process.stdin.isTTY || flags.json) {
      return { confirmed: false, by: 'prompt', who, reason: 'no terminal to ask and no --yes: a pipeline must pass --yes to cross' };
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    try {
      const answer = await rl.question(
        `\nThe gate passed. Type the target name "${ctx.runbook.target.name}" to wipe it and install ${ctx.runbook.target.image}: `,
      );
      return answer.trim() === ctx.runbook.target.name
        ? { confirmed: true, by: 'prompt', who }
        : { confirmed: false, by: 'prompt', who, reason: 'the typed name did not match' };
    } finally {
      rl.close();
    }
  };
}

/** True when the crossing's confirmation can be had: --yes, or a terminal to ask on (and no --json on stdout). */
function canConfirm(flags: Flags): boolean {
  return flags.yes || (Boolean(process.stdin.isTTY) && !flags.json);
}

/** Would this command, on this runbook, reach a crossing that must be confirmed here (not a manual one)? */
function crossesHere(command: Cmd, rb: Runbook): boolean {
  if (rb.infra.kind === 'manual') return false; // a person confirms with `rubicon confirm`, and the run waits (exit 4)
  return command === 'upgrade' || (command === 'rehearse' && rb.target.stage === 'staging');
}

/**
 * Refuses, before anything runs, a command that would reach the crossing
 * with no way to confirm it: otherwise it would do all the work, freeze the
 * server, and only then stop at the crossing, having stopped the application
 * for nothing.
 */
function requireConfirmation(command: Cmd, rb: Runbook, flags: Flags, what = `rubicon ${command}`): void {
  if (!crossesHere(command, rb) || canConfirm(flags)) return;
  const why = flags.json && process.stdin.isTTY ? 'with --json it does not prompt' : 'there is no terminal to ask on';
  throw new RubiconError('CONFIRMATION_UNAVAILABLE', `${what} would reach the crossing of ${rb.target.name} with no way to confirm it: ${why}, and --yes was not given. Nothing was run.`, {
    hint: 'in a pipeline pass --yes, and let the pipeline\'s own approval (an environment with required reviewers) be the confirmation; examples/pipelines/ shows how. In a terminal, run it without --json to be asked.',
  });
}

function renderer(flags: Flags): Renderer {
  return flags.json ? jsonRenderer() : textRenderer();
}

/** `where`: the --state-dir folder, or a shared store (its --state URL is what another agent passes). */
function closing(summary: RunSummary, stateDir: string, shared?: StateStore): string {
  const s = style(Boolean(process.stdout.isTTY));
  const lines: string[] = [''];
  const head: Record<string, string> = {
    landed: s.green(s.bold('LANDED: the target was rebuilt, restored and validated against the proofs.')),
    rehearsed: s.green(s.bold('REHEARSED: captured and proven; the target was not touched.')),
    planned: s.bold('PLANNED: nothing was changed.'),
    verified: s.green(s.bold('VERIFIED: the newest artifacts in the vaults were restored and checked again.')),
    refused: s.red(s.bold('REFUSED by the gate: nothing was destroyed.')),
    'not-confirmed': s.yellow(s.bold('NOT CROSSED: the gate passed but the crossing was not confirmed; nothing was destroyed.')),
    waiting: s.yellow(s.bold('WAITING at the manual crossing: the gate passed; Rubicon has touched nothing. Rebuild the server as below.')),
    interrupted: s.yellow(s.bold('INTERRUPTED: the run stopped where it was; the target was thawed unless the crossing had begun.')),
    failed: s.red(s.bold('FAILED.')),
  };
  if (summary.outcome === 'rehearsed' && summary.crossed) {
    head.rehearsed = s.green(s.bold('REHEARSED on staging: the target was rebuilt, restored and validated against the proofs.'));
  }
  lines.push(head[summary.outcome] ?? summary.outcome);
  if (summary.outcome === 'planned') {
    lines.push('', s.bold('Methods'));
    for (const m of summary.plan.methods) lines.push(`  ${m.itemId.padEnd(28)} ${m.methods.join(', ') || '(none: not found)'}`);
    lines.push('', s.bold('Vaults'), ...summary.plan.vaults.map((v) => `  ${v}`), `  3-2-1-1-0 for an item in every vault: ${summary.plan.rule32110.text}`);
    lines.push('', s.bold('Policy (the gate refuses the crossing unless every rule holds)'));
    for (const [k, v] of Object.entries(summary.plan.policy)) lines.push(`  ${k.padEnd(24)} ${JSON.stringify(v)}`);
    for (const [id, text] of Object.entries(RULES)) lines.push(`  ${s.dim(`${id}: ${text}`)}`);
  }
  for (const f of summary.findings) lines.push(`  ${s.red(f)}`);
  // Each refusal a sentence of its own.
  if (summary.gate && !summary.gate.passed) for (const r of summary.gate.refusals) lines.push(`  - ${asSentence(r)}`);
  if (summary.gate && !summary.gate.passed && summary.gate.refusals.some((r) => r.startsWith('manual step '))) {
    lines.push(`  to confirm a manual step: rubicon confirm ${summary.runId} STEP --by "NAME", then rubicon resume ${summary.runId} --yes ${shared ? `--state ${shared.location}` : `--state-dir ${stateDir}`}`);
  }
  if (summary.error) {
    lines.push(`  ${summary.error.code}: ${summary.error.message}`);
    if (summary.error.hint) lines.push(`  next: ${summary.error.hint}`);
  }
  if (summary.window && (summary.outcome === 'rehearsed' || summary.outcome === 'landed')) {
    // The report's own sentence (src/report/model.ts describeWindow): the terminal and the report say the same.
    lines.push(
      `  maintenance window: ${summary.window.text}` +
        (summary.window.unknownItems.length ? ` Unknown for ${summary.window.unknownItems.length} unproven item(s).` : ''),
    );
  }
  const html = summary.reports.find((r) => r.kind === 'html');
  if (html) lines.push(`  report: ${html.path}`);
  if (summary.outcome === 'waiting' && summary.crossingInstructions) lines.push('', ...summary.crossingInstructions.split('\n').map((l) => `  ${l}`));
  if (summary.outcome === 'failed' || summary.outcome === 'interrupted') lines.push(`  resume: rubicon resume ${summary.runId} ${shared ? `--state ${shared.location}` : `--state-dir ${stateDir}`}`);
  if (summary.outcome === 'not-confirmed') {
    // The target was thawed: resume freezes it again, scans and captures the drift and evaluates the gate again before it crosses.
    lines.push(`  to cross: rubicon resume ${summary.runId} --yes ${shared ? `--state ${shared.location}` : `--state-dir ${stateDir}`}`);
    lines.push('    (it freezes the target again, captures what drifted and evaluates the gate again; nothing proven is redone)');
  }
  return lines.join('\n');
}

/**
 * SIGINT / SIGTERM abort the run through its AbortSignal: the phases stop,
 * the target is thawed, `run.interrupted` is journaled, the summary printed,
 * exit 130. A second signal exits at once (the journal stays resumable).
 */
function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const on = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(`\nrubicon: ${sig}: stopping the run (thawing the target); press Ctrl-C again to quit at once\n`);
    ac.abort(sig);
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    },
  };
}

export async function runCommand(command: RunCommand, flags: Flags, hooks?: RunHooks, after?: (s: RunSummary) => string[]): Promise<number> {
  if (!flags.runbook) throw new RubiconError('ARGUMENTS_INVALID', `rubicon ${command} needs --runbook FILE`, { hint: `e.g. rubicon ${command} --runbook runbook.yaml` });
  const stateDir = defaultStateDir(flags);
  const rb = await loadRunbook(flags.runbook);
  checkStateDir(rb, stateDir); // the journal must not live in what the crossing destroys (docs/coverage.md)
  requireConfirmation(command, rb, flags);
  const r = renderer(flags);
  const sig = interruptSignal();
  const state = await sharedState(flags);
  const summary = await startRun(command, flags.runbook, { stateDir, ...(state ? { state } : {}), onEvent: r.onEvent, confirm: confirmer(flags), hooks, signal: sig.signal, report: reportOptions(flags) }).finally(sig.dispose);
  r.done(summary, [closing(summary, stateDir, state), ...(after?.(summary) ?? [])].join('\n'));
  return summary.exitCode;
}

export async function demo(flags: Flags): Promise<number> {
  const dir = flags.dir ? path.resolve(flags.dir) : await mkdtemp(path.join(os.tmpdir(), 'rubicon-demo-'));
  const layout = await buildSandbox(dir);
  const out = flags.json ? process.stderr : process.stdout;
  out.write(`Sandbox estate in ${layout.dir}\n  target ${layout.target}\n  runbook ${layout.runbook}\n`);
  const stateDir = path.resolve(flags.stateDir ?? layout.stateDir);
  return runCommand('upgrade', { ...flags, runbook: layout.runbook, yes: true, stateDir }, technicianHooks(layout.target), (s) => [
    '',
    `  This demo's runs are kept in ${stateDir}: pass --state-dir ${stateDir} to look at them, e.g.`,
    `    rubicon status ${s.runId} --state-dir ${stateDir}`,
    `    rubicon audit  ${s.runId} --state-dir ${stateDir}`,
  ]);
}

export async function resume(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  if (!runId) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon resume needs a run id', { hint: 'list runs with `rubicon status`' });
  const stateDir = defaultStateDir(flags);
  const state = await sharedState(flags);
  await requireConfirmationToResume(runId, flags, stateDir, state);
  const r = renderer(flags);
  const sig = interruptSignal();
  const summary = await resumeRun(runId, { stateDir, ...(state ? { state } : {}), onEvent: r.onEvent, confirm: confirmer(flags), signal: sig.signal, report: reportOptions(flags) })
    .catch((e: unknown) => explainMissingRun(e, runId, flags, state))
    .finally(sig.dispose);
  r.done(summary, closing(summary, stateDir, state));
  return summary.exitCode;
}

/**
 * `resume` of a run that would still reach an unconfirmed crossing (one
 * nobody confirmed, or one stopped before it) with no way to confirm it:
 * refused before anything runs, as `upgrade` is.
 */
async function requireConfirmationToResume(runId: string, flags: Flags, stateDir: string, shared?: StateStore): Promise<void> {
  if (canConfirm(flags)) return;
  const store = shared ?? new LocalStateStore(stateDir);
  const st = deriveState(await store.readJournal(runId).catch((e: unknown) => explainMissingRun(e, runId, flags, shared)));
  if (st.outcome && !RESUMABLE.has(st.outcome)) return; // nothing to continue: resume prints its summary
  if (st.crossing?.confirmedBy || st.crossing?.startedAt) return;
  const copy = (shared ? await shared.runbookCopy(runId) : undefined) ?? store.paths(runId).runbookCopy;
  const rb = await loadRunRunbook(st.runbookPath, copy).catch(() => undefined);
  if (rb) requireConfirmation(st.command, rb, flags, `rubicon resume ${runId}`);
}

export async function confirm(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  const stepId = positionals[1];
  if (runId && stepId && !flags.crossed) {
    // A manual step of the runbook, confirmed by a named person (journaled with the time).
    if (!flags.by?.trim()) throw new RubiconError('ARGUMENTS_INVALID', `rubicon confirm ${runId} ${stepId} needs --by NAME: who confirms the step`, { hint: `e.g. rubicon confirm ${runId} ${stepId} --by "Jane Doe"` });
    const stateDir = defaultStateDir(flags);
    const state = await sharedState(flags);
    const r = await confirmManualStep(runId, stepId, flags.by.trim(), { stateDir, ...(state ? { state } : {}) }).catch((e: unknown) => explainMissingRun(e, runId, flags, state));
    const where = state ? `--state ${state.location}` : `--state-dir ${stateDir}`;
    if (flags.json) process.stdout.write(JSON.stringify({ kind: 'manual-step.confirmed', runId, ...r }) + '\n');
    else {
      process.stdout.write(`manual step ${stepId} of run ${runId} confirmed by ${r.by} at ${r.at} (recorded in the journal)\n`);
      if (r.outcome === 'refused') process.stdout.write(`  the gate refused this run: \`rubicon resume ${runId} --yes ${where}\` evaluates it again (after a new freeze and drift scan)\n`);
    }
    return EXIT.ok;
  }
  if (!runId || !flags.crossed) {
    throw new RubiconError('ARGUMENTS_INVALID', 'rubicon confirm needs a run id and --crossed (the manual crossing), or a run id and a manual step id (with --by NAME)', {
      hint: 'e.g. rubicon confirm r-20261201-101500-ab12 --crossed --by "Jane Doe", or rubicon confirm r-20261201-101500-ab12 rollback-snapshot --by "Jane Doe"',
    });
  }
  const who = flags.by ?? process.env.RUBICON_OPERATOR ?? process.env.USER ?? os.userInfo().username;
  const stateDir = defaultStateDir(flags);
  const r = renderer(flags);
  const sig = interruptSignal();
  const state = await sharedState(flags);
  const summary = await confirmCrossed(runId, who, { stateDir, ...(state ? { state } : {}), onEvent: r.onEvent, confirm: confirmer(flags), signal: sig.signal, report: reportOptions(flags) })
    .catch((e: unknown) => explainMissingRun(e, runId, flags, state))
    .finally(sig.dispose);
  r.done(summary, closing(summary, stateDir, state));
  return summary.exitCode;
}

/** `rubicon check-runbook --runbook FILE`. */
export async function checkRunbook(flags: Flags): Promise<number> {
  if (!flags.runbook) throw new RubiconError('ARGUMENTS_INVALID', 'check-runbook needs --runbook FILE');
  const rb = await loadRunbook(flags.runbook);
  await checkBeforeStart(rb);
  process.stdout.write(`runbook ${rb.file} is valid\n${rb.warnings.map((w) => `  warning: ${w}\n`).join('')}`);
  return EXIT.ok;
}
