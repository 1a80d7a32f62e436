import { copyFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { EXIT, RubiconError, exitCodeOf, isRubiconError } from '../core/errors.ts';
import type { RunCommand } from '../core/events.ts';
import type { RollbackPoint } from '../core/types.ts';
import { deriveState, type RunState } from '../core/state.ts';
import { RULES } from '../gate/policy.ts';
import { buildChecklist } from '../inventory/checklist.ts';
import { expectedCrossing, writeReports } from '../report/index.ts';
import { checkBeforeStart, checkStateDir, loadRunbook } from '../runbook/load.ts';
import type { Confirmation, RunContext, RunHooks } from '../run/context.ts';
import { listRuns, readJournal, runPaths } from '../run/journal.ts';
import { RESUMABLE, RUBICON_VERSION, confirmCrossed, confirmManualStep, loadRunRunbook, resumeRun, signingKeyOf, startRun, type RunSummary, type SummaryLine } from '../run/run.ts';
import type { RunCommand as Cmd } from '../core/events.ts';
import type { Runbook } from '../runbook/load.ts';
import { COMMANDS, OPTIONS, commandHelp } from './commands.ts';
import { closest } from './suggest.ts';
import { asSentence } from '../run/findings.ts';
import { auditRecords } from '../run/audit.ts';
import { runSigner } from '../trust/keyring.ts';
import { verifierFrom } from '../trust/keys.ts';
import { buildSandbox, technicianHooks } from '../sandbox/estate.ts';
import { azblobStateStore, defaultCacheRoot } from '../state/azblob.ts';
import { LocalStateStore, type StateStore } from '../state/store.ts';
import { jsonRenderer, style, textRenderer, type Renderer } from './render.ts';

/**
 * The command line. Thin: parse arguments, pick a renderer, call the run
 * module, print, and map errors to exit codes here and only here.
 */
export const HELP = `rubicon — make the no-turning-back server rebuild safe

Usage:
  rubicon demo [--dir DIR] [--json]          build the sandbox estate and play the whole story
  rubicon sandbox DIR                        build the sandbox estate and its runbook, run nothing
  rubicon plan     --runbook FILE [--json]   discover and print the checklist, methods, policy; changes nothing
  rubicon rehearse --runbook FILE [--json] [--yes]
                                             discover, capture, prove; never touches a production target's
                                             point of no return (a staging target: the whole upgrade)
  rubicon upgrade  --runbook FILE [--json] [--yes]
                                             every phase; stops at the gate unless the policy holds;
                                             asks before the crossing unless --yes (refuses without a terminal)
  rubicon verify   --runbook FILE [--json]   prove the newest artifacts in the vaults again (scheduled form)
  rubicon resume RUN_ID [--yes] [--json]     continue a run from its journal after a crash, or after a manual
                                             crossing (a pipeline's own reinstall step)
  rubicon confirm RUN_ID --crossed [--by NAME]
                                             a person confirms the manual crossing was done; Rubicon checks
                                             the server really was rebuilt, then lands
  rubicon confirm RUN_ID STEP --by NAME      a person confirms a manual step (journaled with the time)
  rubicon check-runbook --runbook FILE       validate a runbook and print its warnings; runs nothing
  rubicon audit RUN_ID [--public-key FILE]   verify a run's journal: hash chain, every record's signature,
                [--journal-only]             and the journal heads the run left in its vaults;
                                             names the first record that fails
  rubicon status [RUN_ID] [--json]           list runs, or show one
  rubicon report RUN_ID [--html FILE]        write the reports again from the journal (--state: uploaded beside the run)
  rubicon reap --stack NAME... [--dry-run]   destroy Azure proving grounds past their TTL (needs the Pulumi CLI)
  rubicon rollback RUN_ID [--yes] [--json]   rebuild an Azure target from a run's rollback point (needs the Pulumi CLI)

Options:
  --state-dir DIR   where runs are kept (default $RUBICON_STATE_DIR or ~/.local/state/rubicon)
  --state azblob://ACCOUNT/CONTAINER/PREFIX
                    keep runs, locks and reports in Azure Blob, shared by every pipeline agent
                    (key from AZURE_STORAGE_KEY, else Entra ID; docs/state.md)
  --json            one JSON event per line on stdout, then a summary line
  --yes             confirm the crossing without a prompt (pipelines); without a terminal and
                    without --yes, upgrade refuses before anything runs (exit 3)
  --junit-vendor-failures
                    count a failed proof of the vendor's backup as a JUnit failure (default: a warning)
  --version         print the version
  -h, --help        this text; \`rubicon COMMAND --help\` for one command

Exit codes:
  0  success
  2  the gate refused, or the crossing was not confirmed: nothing was destroyed
  3  invalid input (runbook, arguments): nothing was touched
  4  waiting at a manual crossing: rebuild the server, then \`rubicon confirm RUN_ID --crossed\`
  130 interrupted (SIGINT/SIGTERM): the target was thawed; \`rubicon resume RUN_ID\` continues
  1  anything else (see the message and the report)
`;

interface Flags {
  runbook?: string;
  json: boolean;
  yes: boolean;
  dir?: string;
  html?: string;
  stateDir?: string;
  /** --state azblob://… (shared run state). */
  state?: string;
  stack: string[];
  dryRun: boolean;
  help: boolean;
  crossed: boolean;
  by?: string;
  publicKey?: string;
  /** audit: check the journal alone, not the heads in the vaults. */
  journalOnly?: boolean;
  junitVendorFailures: boolean;
  version: boolean;
}

function parse(argv: string[]): { command: string | undefined; positionals: string[]; flags: Flags } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        runbook: { type: 'string' },
        json: { type: 'boolean', default: false },
        yes: { type: 'boolean', default: false },
        dir: { type: 'string' },
        html: { type: 'string' },
        'state-dir': { type: 'string' },
        state: { type: 'string' },
        stack: { type: 'string', multiple: true },
        'dry-run': { type: 'boolean', default: false },
        crossed: { type: 'boolean', default: false },
        by: { type: 'string' },
        'public-key': { type: 'string' },
        'journal-only': { type: 'boolean', default: false },
        'junit-vendor-failures': { type: 'boolean', default: false },
        version: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = /Unknown option '(-{1,2})([^']+)'/.exec(msg);
    if (unknown) {
      const guess = closest(unknown[2]!, OPTIONS);
      throw new RubiconError('ARGUMENTS_INVALID', `unknown option ${unknown[1]}${unknown[2]}${guess ? `: did you mean --${guess}?` : ''}`, { hint: `see \`rubicon ${argv.find((a) => COMMANDS[a]) ?? ''}${argv.some((a) => COMMANDS[a]) ? ' ' : ''}--help\`` });
    }
    throw new RubiconError('ARGUMENTS_INVALID', msg.split('. To specify')[0]!, { hint: 'see `rubicon --help`' });
  }
  const v = parsed.values;
  const [command, ...positionals] = parsed.positionals;
  return {
    command,
    positionals,
    flags: { runbook: v.runbook, json: v.json ?? false, yes: v.yes ?? false, dir: v.dir, html: v.html, stateDir: v['state-dir'], ...(v.state ? { state: v.state } : {}), stack: v.stack ?? [], dryRun: v['dry-run'] ?? false, help: v.help ?? false, crossed: v.crossed ?? false, ...(v.by ? { by: v.by } : {}), ...(v['public-key'] ? { publicKey: v['public-key'] } : {}), junitVendorFailures: v['junit-vendor-failures'] ?? false, version: v.version ?? false, ...(v['journal-only'] ? { journalOnly: true } : {}) },
  };
}

function defaultStateDir(flags: Flags): string {
  if (flags.stateDir) return path.resolve(flags.stateDir);
  if (process.env.RUBICON_STATE_DIR) return path.resolve(process.env.RUBICON_STATE_DIR);
  const base = process.env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'rubicon');
}

/** The shared store of --state, or undefined (the local state directory). */
async function sharedState(flags: Flags): Promise<StateStore | undefined> {
  if (!flags.state) return undefined;
  if (!flags.state.startsWith('azblob://')) {
    throw new RubiconError('ARGUMENTS_INVALID', `--state ${flags.state}: only azblob://ACCOUNT/CONTAINER/PREFIX is supported`, { hint: 'use --state-dir DIR for a local folder' });
  }
  return azblobStateStore(flags.state, defaultCacheRoot());
}

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

/**
 * A run id that names no run: say where runs were looked for and how to look
 * elsewhere. Other errors pass unchanged.
 */
function explainMissingRun(e: unknown, runId: string, flags: Flags, shared?: StateStore): never {
  if (isRubiconError(e) && e.code === 'RUN_NOT_FOUND') {
    const where = shared ? shared.location : defaultStateDir(flags);
    const from = shared ? '--state' : flags.stateDir ? '--state-dir' : process.env.RUBICON_STATE_DIR ? '$RUBICON_STATE_DIR' : 'the default';
    throw new RubiconError('RUN_NOT_FOUND', `no run ${runId} in ${where} (runs are kept there, from ${from})`, {
      hint: `\`rubicon status${shared ? ` --state ${shared.location}` : flags.stateDir ? ` --state-dir ${where}` : ''}\` lists the runs kept there; a run kept elsewhere needs --state-dir DIR (the demo keeps its runs in DIR/state and prints the --state-dir at its end)`,
      cause: e,
    });
  }
  throw e;
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

async function runCommand(command: RunCommand, flags: Flags, hooks?: RunHooks, after?: (s: RunSummary) => string[]): Promise<number> {
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

function reportOptions(flags: Flags): { junit: { vendorFailures: boolean } } {
  return { junit: { vendorFailures: flags.junitVendorFailures } };
}

async function demo(flags: Flags): Promise<number> {
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

async function sandbox(positionals: string[]): Promise<number> {
  const dir = positionals[0];
  if (!dir) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon sandbox needs a folder', { hint: 'e.g. rubicon sandbox ./estate' });
  const L = await buildSandbox(dir);
  process.stdout.write(
    [
      `Sandbox estate written to ${L.dir}:`,
      `  runbook.yaml        the runbook, as the vendor wrote it (edit it)`,
      `  target/             the server: ehr/A, ehr/X, ehr/Y, ehr/Z, mssql/backup, mssql/data/ehr.db`,
      `  proving-ground/     the restore-test machine (empty)`,
      `  vaults/nas, vaults/offsite`,
      ``,
      `Next:`,
      `  rubicon plan    --runbook ${L.runbook} --state-dir ${L.stateDir}`,
      `  rubicon upgrade --runbook ${L.runbook} --state-dir ${L.stateDir} --yes`,
      '',
    ].join('\n'),
  );
  return EXIT.ok;
}

async function resume(positionals: string[], flags: Flags): Promise<number> {
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

async function confirm(positionals: string[], flags: Flags): Promise<number> {
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

async function status(positionals: string[], flags: Flags): Promise<number> {
  const stateDir = defaultStateDir(flags);
  const runId = positionals[0];
  const shared = await sharedState(flags);
  if (!runId) {
    // One damaged journal must not hide the others: it is listed as damaged, and the exit code says so.
    const where = shared?.location ?? stateDir;
    const ids = shared ? await shared.listRuns() : listRuns(stateDir);
    const runs = [];
    for (const id of ids) {
      try {
        const st = deriveState(shared ? await shared.readJournal(id) : readJournal(runPaths(stateDir, id).journal, { repairTornTail: false }).slice());
        runs.push({
          runId: id,
          command: st.command,
          target: st.target,
          outcome: st.outcome ?? 'in progress (or killed: resume it)',
          startedAt: st.startedAt,
          host: st.host,
          rollbackKept: st.rollbackPoint && !st.rollbackReleased ? st.rollbackPoint : undefined,
          rollbacks: st.rollbacks,
          damaged: undefined,
        });
      } catch (e) {
        const code = isRubiconError(e) ? e.code : 'JOURNAL_CORRUPT';
        runs.push({ runId: id, command: '?', target: '?', outcome: 'damaged', damaged: { code, message: e instanceof Error ? e.message : String(e) } });
      }
    }
    if (flags.json) process.stdout.write(JSON.stringify(runs) + '\n');
    else if (runs.length === 0) process.stdout.write(`no runs in ${where}\n`);
    else {
      for (const r of runs) process.stdout.write(`${r.runId}  ${r.command.padEnd(8)} ${r.target.padEnd(16)} ${r.damaged ? `DAMAGED ${r.damaged.code}: ${r.damaged.message}` : r.outcome}\n`);
      // Rollback assets cost money and hold patient data: listed until the run releases them (landing passed).
      const kept = runs.filter((r) => r.rollbackKept);
      if (kept.length > 0) process.stdout.write(`rollback points kept (released when landing passes; \`rubicon rollback RUN_ID\` on Azure):\n${kept.map((r) => `  ${r.runId}  ${rollbackKeptLine(r.rollbackKept!)}\n`).join('')}`);
      const rolled = runs.filter((r) => r.rollbacks && r.rollbacks.length > 0);
      if (rolled.length > 0) process.stdout.write(`rollbacks (\`rubicon rollback\`, from the run's journal):\n${rolled.flatMap((r) => r.rollbacks!.map((x) => `  ${r.runId}  ${rollbackDoneLine(x)}\n`)).join('')}`);
    }
    const damaged = runs.filter((r) => r.damaged);
    if (damaged.length > 0) {
      const statusHint = shared ? `\`rubicon status RUN_ID --state ${shared.location}\`` : '`rubicon status RUN_ID`';
      process.stderr.write(`rubicon: ${damaged.length} journal(s) in ${where} are damaged (${damaged.map((r) => r.runId).join(', ')}): ${statusHint} says what is wrong; the other runs are listed above\n`);
      return EXIT.failure;
    }
    return EXIT.ok;
  }
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(runPaths(stateDir, runId).journal);
  } catch (e) {
    explainMissingRun(e, runId, flags, shared);
  }
  const st = deriveState(records);
  const checklist = buildChecklist({ items: st.items, artifacts: st.artifacts, copies: st.copies, proofs: st.proofs, driftScans: st.driftScans, captureFailures: st.captureFailures });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ runId, outcome: st.outcome ?? null, phases: st.phases, checklist, gate: st.gate ?? null, rollbackKept: st.rollbackPoint && !st.rollbackReleased ? st.rollbackPoint : null, rollbacks: st.rollbacks }) + '\n');
  } else {
    process.stdout.write(`${runId}: ${st.command} on ${st.target}, ${st.outcome ?? 'not finished'}\n`);
    process.stdout.write(`  journal verified: ${st.journalRecords} records, hash chain intact, head ${st.journalHead}\n`);
    for (const p of st.phases) process.stdout.write(`  ${p.phase.padEnd(14)} ${p.completedAt ? `${p.durationMs} ms` : 'started, not finished'}\n`);
    for (const row of checklist) process.stdout.write(`  ${row.status.padEnd(18)} ${row.name}  ${row.notes.join('; ')}\n`);
    if (st.rollbackPoint && !st.rollbackReleased) process.stdout.write(`  rollback point kept: ${rollbackKeptLine(st.rollbackPoint)}\n`);
    for (const x of st.rollbacks) process.stdout.write(`  rollback: ${rollbackDoneLine(x)}\n`);
  }
  return EXIT.ok;
}

/** Pure: one line for a `rubicon rollback` of a run, as its journal records it. */
export function rollbackDoneLine(x: RunState['rollbacks'][number]): string {
  const by = `started ${x.startedAt} by ${x.by}`;
  if (x.outcome === 'completed') return `${by}, completed ${x.at}: the target boots from ${x.diskId} (${x.from === 'retired-os-disk' ? 'the OS disk the crossing retired' : 'a disk made from its snapshot'})`;
  if (x.outcome === 'failed') return `${by}, FAILED ${x.at}: ${x.error?.code ?? '?'}: ${x.error?.message ?? ''}`;
  return `${by}, not finished (interrupted?): run \`rubicon rollback\` again`;
}

/** Pure: one line naming a rollback point that is still kept, and for Azure the retired OS disk beside its snapshots. */
export function rollbackKeptLine(p: RollbackPoint): string {
  if (p.kind === 'azure-disk-snapshot') {
    const names = p.location.split(',').filter((x) => x !== '').map((id) => id.split('/').at(-1) ?? id);
    return `Azure snapshots ${names.join(', ')} and the OS disk the crossing retired (tag rubicon-role=rollback-os-disk), since ${p.createdAt}`;
  }
  return `${p.kind} at ${p.location}, since ${p.createdAt}`;
}

/**
 * `rubicon report RUN_ID`: the reports written again from the journal. With
 * --state the journal and the runbook copy come from the shared store, the
 * files are written in this agent's cache folder for the store and
 * uploaded beside the run (`runs/<id>/report/`), replacing the earlier ones.
 */
async function report(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  if (!runId) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon report needs a run id', { hint: 'list runs with `rubicon status`' });
  const stateDir = defaultStateDir(flags);
  const shared = await sharedState(flags);
  const store = shared ?? new LocalStateStore(stateDir);
  const paths = store.paths(runId);
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(paths.journal);
  } catch (e) {
    explainMissingRun(e, runId, flags, shared);
  }
  const st = deriveState(records);
  const checklist = buildChecklist({ items: st.items, artifacts: st.artifacts, copies: st.copies, proofs: st.proofs, driftScans: st.driftScans, captureFailures: st.captureFailures });
  // The same window estimate as the run's own report: an earlier run's crossing of this target, else the runbook's figure.
  const rb = await loadRunRunbook(st.runbookPath, (shared ? await shared.runbookCopy(runId) : undefined) ?? paths.runbookCopy).catch(() => undefined);
  const crossing = await expectedCrossing(
    shared ?? { listRuns: async () => listRuns(stateDir), readJournal: async (id) => readJournal(runPaths(stateDir, id).journal) },
    { target: st.target, runId, runbookMinutes: rb?.target.expectedCrossingMinutes },
  );
  const files = await writeReports(st, checklist, paths.reports, { ...reportOptions(flags), ...(crossing ? { expectedCrossing: crossing } : {}) });
  if (shared) await shared.flush(runId);
  if (flags.html) {
    const html = files.find((f) => f.kind === 'html');
    if (html) await copyFile(html.path, path.resolve(flags.html));
  }
  for (const f of files) process.stdout.write(`${f.kind.padEnd(8)} ${f.path}\n`);
  if (flags.html) process.stdout.write(`html     ${path.resolve(flags.html)}\n`);
  if (shared) process.stdout.write(`uploaded to ${shared.location}, run ${runId}, report/\n`);
  return EXIT.ok;
}

/**
 * `rubicon audit RUN_ID`: the hash chain (readJournal) and every record's
 * signature, checked against the run's own key as this machine knows it
 * (the runbook's trust.signingKey, or this user's key) or an auditor's
 * `--public-key FILE`, never a key the journal names. Exit 0 when intact,
 * 1 naming the first record that fails.
 */
async function audit(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  if (!runId) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon audit needs a run id', { hint: 'list runs with `rubicon status`' });
  const stateDir = defaultStateDir(flags);
  const shared = await sharedState(flags);
  const paths = shared ? shared.paths(runId) : runPaths(stateDir, runId);
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(paths.journal);
  } catch (e) {
    if (isRubiconError(e) && e.code === 'JOURNAL_CORRUPT') {
      process.stdout.write(flags.json ? JSON.stringify({ runId, ok: false, reason: e.message }) + '\n' : `${runId}: NOT INTACT: ${e.message}\n`);
      return EXIT.failure;
    }
    explainMissingRun(e, runId, flags, shared);
  }
  const st = deriveState(records);
  // The runbook as resume finds it: the file the run started with where it still is, else the run's copy read as if it were there.
  const rb = await loadRunRunbook(st.runbookPath, (shared ? await shared.runbookCopy(runId) : undefined) ?? paths.runbookCopy).catch(() => undefined);
  let verifier;
  if (flags.publicKey) {
    const { readFileSync } = await import('node:fs');
    verifier = verifierFrom(readFileSync(path.resolve(flags.publicKey), 'utf8'));
  } else {
    const src = rb ? signingKeyOf(rb) : undefined;
    verifier = verifierFrom(runSigner({ ...(src ? { source: src } : {}), stateDir }).signer.publicKeyPem);
    if (st.signingKeyId && st.signingKeyId !== verifier.keyId) {
      // Another agent's key (shared state): not a bad signature, a key this machine does not have. Said so, not "NOT INTACT".
      const why = `the run (started on ${st.host}) names signing key ${st.signingKeyId}, and this machine's key is ${verifier.keyId}`;
      const fix = `audit it with --public-key FILE (the public key of ${st.signingKeyId}), or on an agent that has the run's key (the runbook's trust.signingKey)`;
      process.stdout.write(flags.json ? JSON.stringify({ runId, ok: false, reason: `not verified: ${why}`, hint: fix }) + '\n' : `${runId}: NOT VERIFIED: ${why}; ${fix}\n`);
      return EXIT.failure;
    }
  }
  const r = auditRecords(records, verifier);
  const recorded = st.signingKeyId ? ` (the run names key ${st.signingKeyId})` : '';
  // The journal heads the run left in its vaults (src/run/heads.ts): a journal rewritten even with the key disagrees with them.
  let vaults: import('../run/audit-vaults.ts').VaultAudit | undefined;
  if (!flags.journalOnly) {
    if (!rb) vaults = { agreed: [], findings: [], unreachable: [{ vault: '(all)', reason: `the run's runbook copy ${paths.runbookCopy} cannot be read, so its vaults are unknown` }] };
    else vaults = await (await import('../run/audit-vaults.ts')).auditVaultHeads({ runId, records, runbook: rb, verifier, workDir: paths.work });
  }
  const vaultsOk = !vaults || (vaults.findings.length === 0 && vaults.unreachable.length === 0);
  if (flags.json) process.stdout.write(JSON.stringify({ runId, ...r, ...(vaults ? { vaults } : {}) }) + '\n');
  else {
    if (r.ok) process.stdout.write(`${runId}: ${vaultsOk ? 'intact' : 'journal signed'}: ${r.records} records, hash chain and every signature verified with key ${r.keyId}${recorded}; head ${r.head}\n`);
    else process.stdout.write(`${runId}: NOT INTACT: record ${r.firstBad.seq} (${r.firstBad.type}) ${r.firstBad.reason}${recorded}; nothing from it on can be trusted\n`);
    if (vaults) {
      const agreed = [...new Set(vaults.agreed.map((a) => `${a.vault} (${a.stage} at record ${a.seq})`))];
      if (agreed.length > 0) process.stdout.write(`  journal heads in the vaults agree: ${agreed.join(', ')}\n`);
      else if (vaultsOk) process.stdout.write('  no journal head in the vaults (the run did not reach the gate, or its vaults keep no run documents)\n');
      for (const f of vaults.findings) process.stdout.write(`  NOT INTACT: ${f.message}\n`);
      for (const u of vaults.unreachable) process.stdout.write(`  NOT CHECKED: vault ${u.vault}: ${u.reason} (use --journal-only to check the journal alone)\n`);
    }
  }
  return r.ok && vaultsOk ? EXIT.ok : EXIT.failure;
}

export async function main(argv: string[]): Promise<number> {
  const { command, positionals, flags } = parse(argv);
  if (flags.version || command === 'version') {
    process.stdout.write(`rubicon ${RUBICON_VERSION}\n`);
    return EXIT.ok;
  }
  if (command === 'help' && positionals[0] && COMMANDS[positionals[0]]) {
    process.stdout.write(commandHelp(positionals[0]));
    return EXIT.ok;
  }
  if (flags.help && command && COMMANDS[command]) {
    process.stdout.write(commandHelp(command));
    return EXIT.ok;
  }
  if (command && !COMMANDS[command] && command !== 'help') {
    const guess = closest(command, Object.keys(COMMANDS));
    throw new RubiconError('ARGUMENTS_INVALID', `unknown command "${command}"${guess ? `: did you mean \`rubicon ${guess}\`?` : ''}`, { hint: 'see `rubicon --help`' });
  }
  if (flags.help || !command || command === 'help') {
    process.stdout.write(HELP);
    return command || flags.help ? EXIT.ok : EXIT.invalidInput;
  }
  if (flags.state !== undefined && !COMMANDS[command]!.options.includes('state')) {
    // Ignoring it would read or write the local state directory while the user means the fleet's.
    throw new RubiconError('ARGUMENTS_INVALID', `rubicon ${command} does not take --state (it keeps nothing in a shared store)`, {
      hint: `drop --state; the commands that read or write runs in a shared store are: ${Object.entries(COMMANDS).filter(([, c]) => c.options.includes('state')).map(([n]) => n).join(', ')}`,
    });
  }
  switch (command) {
    case 'demo':
      return demo(flags);
    case 'sandbox':
      return sandbox(positionals);
    case 'plan':
    case 'rehearse':
    case 'upgrade':
    case 'verify':
      return runCommand(command, flags);
    case 'resume':
      return resume(positionals, flags);
    case 'confirm':
      return confirm(positionals, flags);
    case 'status':
      return status(positionals, flags);
    case 'report':
      return report(positionals, flags);
    case 'reap': {
      // Loaded on demand: the Pulumi SDK is large and only reap needs it.
      const { reapCommand } = await import('./reap.ts');
      return reapCommand(flags.stack, { dryRun: flags.dryRun, json: flags.json, workDir: process.cwd() });
    }
    case 'rollback': {
      // Loaded on demand, like reap: the Pulumi SDK is large.
      const { rollbackCommand } = await import('./rollback.ts');
      const shared = await sharedState(flags);
      let stateDir = defaultStateDir(flags);
      if (shared && positionals[0]) {
        // The run's journal and runbook copy, fetched from the store into this agent's cache for it; rollback reads them there.
        const runId = positionals[0];
        await shared.readJournal(runId).catch((e: unknown) => explainMissingRun(e, runId, flags, shared));
        await shared.runbookCopy(runId);
        stateDir = path.dirname(path.dirname(shared.paths(runId).dir));
      }
      return rollbackCommand(positionals[0], { stateDir, yes: flags.yes, json: flags.json });
    }
    case 'audit':
      return audit(positionals, flags);
    case 'check-runbook': {
      if (!flags.runbook) throw new RubiconError('ARGUMENTS_INVALID', 'check-runbook needs --runbook FILE');
      const rb = await loadRunbook(flags.runbook);
      await checkBeforeStart(rb);
      process.stdout.write(`runbook ${rb.file} is valid\n${rb.warnings.map((w) => `  warning: ${w}\n`).join('')}`);
      return EXIT.ok;
    }
    default:
      throw new RubiconError('ARGUMENTS_INVALID', `unknown command "${command}"`, { hint: 'see `rubicon --help`' });
  }
}

// The only place that exits the process.
const isMain = process.argv[1] !== undefined && (process.argv[1].endsWith('rubicon.js') || process.argv[1].endsWith('main.ts') || process.argv[1].endsWith('rubicon'));
if (isMain) {
  // A reader that went away (`rubicon status | head`, a dead pipeline log
  // collector) must not crash a run: the journal, not stdout, is the record.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') throw e;
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const json = process.argv.includes('--json');
      if (isRubiconError(e)) {
        if (json) {
          process.stdout.write(JSON.stringify({ kind: 'error', code: e.code, message: e.message, hint: e.hint, details: e.details }) + '\n');
          // Every --json run ends with a summary line, a run that never began included (docs/events.md).
          const line: SummaryLine = {
            kind: 'summary',
            runId: null,
            outcome: e.exitCode === EXIT.invalidInput ? 'invalid-input' : 'failed',
            exitCode: e.exitCode,
            error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
          };
          process.stdout.write(JSON.stringify(line) + '\n');
        }
        process.stderr.write(`rubicon: ${e.message}\n${e.hint ? `  fix: ${e.hint}\n` : ''}`);
      } else {
        process.stderr.write(`rubicon: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
        if (json) {
          const line: SummaryLine = { kind: 'summary', runId: null, outcome: 'failed', exitCode: EXIT.failure, error: { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) } };
          process.stdout.write(JSON.stringify(line) + '\n');
        }
      }
      process.exitCode = exitCodeOf(e);
    },
  );
}
