/**
 * The commands and options the CLI knows, with the text of
 * `rubicon <command> --help`. Pure data: main.ts parses and dispatches,
 * suggest.ts finds the closest name for a typo.
 */

/** Every option, as typed on the command line (without the leading dashes). */
export const OPTIONS = [
  'runbook',
  'json',
  'yes',
  'dir',
  'html',
  'state-dir',
  'state',
  'stack',
  'dry-run',
  'crossed',
  'by',
  'public-key',
  'journal-only',
  'junit-vendor-failures',
  'version',
  'help',
] as const;

const OPTION_TEXT: Record<(typeof OPTIONS)[number], string> = {
  runbook: '--runbook FILE    the runbook (YAML; docs/runbook.md)',
  json: '--json            JSON events on stdout, then a summary line (docs/events.md)',
  yes: '--yes             confirm the crossing without a prompt (pipelines: their own\n                    approval is the confirmation)',
  dir: '--dir DIR         where to build the sandbox (default: a new temp folder)',
  html: '--html FILE       also copy the HTML report to FILE',
  'state-dir': '--state-dir DIR   where runs are kept (default: $RUBICON_STATE_DIR, else\n                    ~/.local/state/rubicon)',
  state: '--state azblob://ACCOUNT/CONTAINER/PREFIX\n                    runs, locks and reports in Azure Blob, shared by pipeline\n                    agents (docs/state.md)',
  stack: '--stack NAME      a Pulumi stack to look at (repeatable)',
  'dry-run': '--dry-run         say what would be destroyed; destroy nothing',
  crossed: '--crossed         the manual crossing was done (the server was rebuilt)',
  by: '--by NAME         who confirms (recorded in the journal with the time)',
  'public-key': '--public-key FILE an auditor\'s copy of the run\'s public key (PEM)',
  'journal-only': '--journal-only    check the journal alone, not the journal heads the run\n                    left in its vaults',
  'junit-vendor-failures': '--junit-vendor-failures\n                    count a failed proof of the vendor\'s backup as a JUnit\n                    failure (default: a warning)',
  version: '--version         print the version',
  help: '-h, --help        this text',
};

export interface CommandSpec {
  usage: string;
  text: string;
  options: (typeof OPTIONS)[number][];
}

const RUN_OPTS = ['runbook', 'json', 'state-dir', 'state'] as const;

export const COMMANDS: Record<string, CommandSpec> = {
  demo: {
    usage: 'rubicon demo [--dir DIR] [--json]',
    text: 'Builds the sandbox estate (docs/scenario.md) and plays the whole story: discover, capture, prove, the technician\'s drift, freeze, final capture, gate, crossing, landing, report. Needs nothing but Node. Its last lines print the --state-dir to use with `rubicon status`, `report` and `audit`.',
    options: ['dir', 'json', 'state-dir', 'junit-vendor-failures'],
  },
  sandbox: {
    usage: 'rubicon sandbox DIR',
    text: 'Builds the sandbox estate and its runbook in DIR (which must be empty or absent) and runs nothing.',
    options: [],
  },
  plan: {
    usage: 'rubicon plan --runbook FILE [--json]',
    text: 'Discovers what is on the target and prints the checklist, the methods per item, the vaults and the policy. Changes nothing.',
    options: [...RUN_OPTS],
  },
  rehearse: {
    usage: 'rubicon rehearse --runbook FILE [--json] [--yes]',
    text: 'Discovers, captures into every vault and proves every artifact on the proving ground. Never touches a production target\'s point of no return; on a target with `stage: staging` it rehearses the whole upgrade, crossing included (and then needs --yes without a terminal).',
    options: [...RUN_OPTS, 'yes', 'junit-vendor-failures'],
  },
  upgrade: {
    usage: 'rubicon upgrade --runbook FILE [--json] [--yes]',
    text: 'Every phase: discover, capture, prove, freeze, final capture, gate, crossing, landing, report. Stops at the gate unless the policy holds. Asks before the crossing; without a terminal (or with --json) it needs --yes, and refuses before anything runs without it (exit 3). With `infra.kind: manual` it stops at the crossing (exit 4) and prints what to rebuild.',
    options: [...RUN_OPTS, 'yes', 'junit-vendor-failures'],
  },
  verify: {
    usage: 'rubicon verify --runbook FILE [--json]',
    text: 'Proves the newest artifacts in the vaults again, from the vaults alone (the scheduled form). Exit 1 naming the damaged copy (artifact, vault).',
    options: [...RUN_OPTS, 'junit-vendor-failures'],
  },
  resume: {
    usage: 'rubicon resume RUN_ID [--yes] [--json]',
    text: 'Continues a run from its journal: after a crash, an interrupt, a manual crossing, or a crossing nobody confirmed (the target is frozen again, its drift scanned and captured, the gate evaluated again, then it crosses).',
    options: ['json', 'yes', 'state-dir', 'state', 'junit-vendor-failures'],
  },
  confirm: {
    usage: 'rubicon confirm RUN_ID --crossed|STEP [--by NAME]',
    text: 'With --crossed: a person confirms the manual crossing was done; Rubicon checks the server really was rebuilt (a new OS, a new machine id or host key), then lands. With a STEP: a person confirms a manual step of the runbook; who and when are recorded in the journal, and the gate reads them (a run it refused for want of it goes on with `rubicon resume RUN_ID --yes`).',
    options: ['crossed', 'by', 'json', 'state-dir', 'state'],
  },
  'check-runbook': {
    usage: 'rubicon check-runbook --runbook FILE',
    text: 'Validates a runbook and prints its warnings; runs nothing. Exit 3 naming the field and the fix.',
    options: ['runbook'],
  },
  audit: {
    usage: 'rubicon audit RUN_ID [--public-key FILE] [--journal-only]',
    text: 'Verifies a run\'s journal: the hash chain and every record\'s signature, then compares it with the journal heads the run left in its vaults after the gate and after the landing (docs/trust.md). Names the first record that fails, and any vault that disagrees (exit 1).',
    options: ['public-key', 'journal-only', 'json', 'state-dir', 'state'],
  },
  status: {
    usage: 'rubicon status [RUN_ID] [--json]',
    text: 'Lists the runs in the state directory (a damaged journal is listed as such, exit 1), or shows one run.',
    options: ['json', 'state-dir', 'state'],
  },
  report: {
    usage: 'rubicon report RUN_ID [--html FILE]',
    text: 'Writes the reports of a run again from its journal (report.json, checklist.md, report.html, junit.xml). With --state, from the shared store, and uploaded beside the run there.',
    options: ['html', 'state-dir', 'state', 'junit-vendor-failures'],
  },
  reap: {
    usage: 'rubicon reap --stack NAME... [--dry-run]',
    text: 'Destroys Azure proving grounds past their TTL (needs the Pulumi CLI).',
    options: ['stack', 'dry-run', 'json'],
  },
  rollback: {
    usage: 'rubicon rollback RUN_ID [--yes] [--json]',
    text: 'Rebuilds an Azure target from a run\'s rollback point (the retained old OS disk or the snapshots) through Pulumi (needs the Pulumi CLI; docs/infra.md, "Rollback").',
    options: ['yes', 'json', 'state-dir', 'state'],
  },
};

/** The text of `rubicon <command> --help`. */
export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const words = c.text.split(' ');
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur && cur.length + 1 + w.length > 76) {
      lines.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) lines.push(cur);
  const opts = [...c.options, 'help' as const].map((o) => `  ${OPTION_TEXT[o]}`);
  return `Usage: ${c.usage}\n\n${lines.map((l) => `  ${l}`).join('\n')}\n\nOptions:\n${opts.join('\n')}\n\nExit codes: 0 ok; 2 refused or not confirmed (nothing destroyed);\n  3 invalid input (nothing touched); 4 waiting at a manual crossing;\n  130 interrupted (resumable); 1 anything else.  All commands: rubicon --help\n`;
}
