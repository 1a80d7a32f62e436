import { parseArgs } from 'node:util';
import { EXIT, RubiconError, exitCodeOf, isRubiconError } from '../core/errors.ts';
import type { SummaryLine } from '../core/summary.ts';
import { COMMANDS, OPTIONS, commandHelp } from './commands.ts';
import type { Flags } from './common.ts';
import { closest } from './suggest.ts';
import { RUBICON_VERSION } from '../core/version.ts';

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

async function sandbox(positionals: string[]): Promise<number> {
  const dir = positionals[0];
  if (!dir) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon sandbox needs a folder', { hint: 'e.g. rubicon sandbox ./estate' });
  const { buildSandbox } = await import('../sandbox/estate.ts');
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
  // Each command loads its own modules here, at dispatch: the version, the
  // help and a mistyped name above load nothing but this file, the command
  // table and the error codes (docs/files.md, "Start-up of the CLI").
  switch (command) {
    case 'demo':
      return (await import('./run-commands.ts')).demo(flags);
    case 'sandbox':
      return sandbox(positionals);
    case 'plan':
    case 'rehearse':
    case 'upgrade':
    case 'verify':
      return (await import('./run-commands.ts')).runCommand(command, flags);
    case 'resume':
      return (await import('./run-commands.ts')).resume(positionals, flags);
    case 'confirm':
      return (await import('./run-commands.ts')).confirm(positionals, flags);
    case 'status':
      return (await import('./inspect.ts')).status(positionals, flags);
    case 'report':
      return (await import('./inspect.ts')).report(positionals, flags);
    case 'reap': {
      // Loaded on demand: the Pulumi SDK is large and only reap needs it.
      const { reapCommand } = await import('./reap.ts');
      return reapCommand(flags.stack, { dryRun: flags.dryRun, json: flags.json, workDir: process.cwd() });
    }
    case 'rollback': {
      // Loaded on demand, like reap: the Pulumi SDK is large.
      const { rollbackCommand } = await import('./rollback.ts');
      const { defaultStateDir, explainMissingRun, sharedState } = await import('./common.ts');
      const shared = await sharedState(flags);
      let stateDir = defaultStateDir(flags);
      if (shared && positionals[0]) {
        // The run's journal and runbook copy, fetched from the store into this agent's cache for it; rollback reads them there.
        const runId = positionals[0];
        await shared.readJournal(runId).catch((e: unknown) => explainMissingRun(e, runId, flags, shared));
        await shared.runbookCopy(runId);
        const path = await import('node:path');
        stateDir = path.dirname(path.dirname(shared.paths(runId).dir));
      }
      const { rewriteReports } = await import('./inspect.ts');
      return rollbackCommand(positionals[0], {
        stateDir,
        yes: flags.yes,
        json: flags.json,
        ...(shared ? { state: shared } : {}),
        rewriteReports: (id) => rewriteReports(id, flags, shared),
      });
    }
    case 'audit':
      return (await import('./inspect.ts')).audit(positionals, flags);
    case 'check-runbook':
      return (await import('./run-commands.ts')).checkRunbook(flags);
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
