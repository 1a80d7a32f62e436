import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { RubiconError } from '../core/errors.ts';
import type { ManualStep, Override, Policy } from '../core/types.ts';
import type { VendorJobSpec } from '../engines/engine.ts';
import { DEFAULT_POLICY, loosenings } from '../gate/policy.ts';
import { mssqlRules, normalizeMssql, type MssqlSettings } from './mssql.ts';
import { RunbookSchema, type ParsedRunbook } from './schema.ts';
import { azureSectionRules, normalizeAzureSection, type PulumiAzureSettings } from './azure.ts';

/**
 * A runbook after parse → normalize → rules: every default filled, every
 * path absolute, the policy merged over the default. This is the only shape
 * the rest of Rubicon sees.
 */
/** How Rubicon reaches a machine, with every path absolute. */
export type TransportSettings =
  | { kind: 'local' }
  | {
      kind: 'ssh';
      host: string;
      port: number;
      user: string;
      identityFile: string;
      knownHosts: string;
      connectTimeoutSeconds: number;
      commandTimeoutSeconds: number;
      proxyJump?: string;
    }
  | {
      kind: 'openssh-windows';
      host: string;
      port: number;
      user: string;
      identityFile: string;
      knownHosts: string;
      connectTimeoutSeconds: number;
      commandTimeoutSeconds: number;
      proxyJump?: string;
      /** The PowerShell each command starts. */
      powershell: 'powershell' | 'pwsh';
    }
  | {
      kind: 'azure-run-command';
      subscriptionIdEnv: string;
      resourceGroup: string;
      vmName: string;
      outputContainer?: string;
      outputIdentityClientId?: string;
      credential: 'default' | 'azure-pipelines';
      powershell: 'powershell' | 'pwsh';
      commandTimeoutSeconds: number;
    };

export type SshSettings = Extract<TransportSettings, { kind: 'ssh' }>;

/** The transports that reach a Windows machine (PowerShell, Windows paths). */
export function windowsTransport(t: TransportSettings): boolean {
  return t.kind === 'openssh-windows' || t.kind === 'azure-run-command';
}

/** A vault as the runbook describes it; what it can do (immutable, off the target, ...) is read from the vault itself. */
export type VaultSettings =
  | { name: string; kind: 'filesystem'; path: string }
  | { name: string; kind: 'sftp'; host: SshSettings & { authorizedKeysFile?: string }; path: string }
  | { name: string; kind: 'restic'; host: SshSettings & { authorizedKeysFile?: string }; path: string; password: { env: string } | { file: string } };

export type InfraSettings =
  | { kind: 'sandbox'; provingGround: string; rollback: string; currentImage: string }
  | {
      kind: 'manual';
      currentImage: string;
      instructions?: string;
      rebuilt: { osRelease: string; newMachineId: boolean; knownHosts: string };
      rollback?: { description: string };
    }
  | { kind: 'pulumi-azure'; currentImage: string; azure: PulumiAzureSettings };

export interface Runbook {
  file: string;
  /** SHA-256 of the file's bytes, recorded in the journal. */
  hash: string;
  name: string;
  target: {
    name: string;
    /** Absolute: a local folder (local transport) or a path on the server (ssh). */
    root: string;
    image: string;
    stage: 'production' | 'staging';
    transport: TransportSettings;
    /** Absolute on the target: step folders and grant files (remote targets). */
    workDir: string;
    /** systemd units the freeze stops. */
    services: string[];
  };
  /** The proving ground machine: local (the sandbox folder) or ssh. `root` is its scratch folder. */
  provingGround: { transport: TransportSettings; root: string; workDir: string };
  infra: InfraSettings;
  declared: { folders: string[]; databases: { name: string; engine: 'sqlite' | 'mssql'; location?: string }[] };
  /** `command` is the program (sqlite) or `[agentJob]` (mssql, as the engine's vendor-job method takes it). */
  vendorJobs: (VendorJobSpec & { engine: 'sqlite' | 'mssql' })[];
  discovery: { roots: string[]; depth: number; exclude: string[] };
  methods: { folders: string[]; databases: Record<string, string[]> };
  vaults: VaultSettings[];
  policy: Policy;
  overrides: Override[];
  manualSteps: ManualStep[];
  permit: { validForMinutes: number };
  /** Engines beyond the built-in sqlite, present only when the runbook has their section. */
  engines?: { mssql?: MssqlSettings };
  warnings: string[];
}

export interface RunbookProblem {
  /** Dotted path of the field, e.g. `vaults[1].kind`. */
  path: string;
  message: string;
}

function formatPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out || '(top level)';
}

function issueMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'} or check the spelling`;
    case 'invalid_type': {
      // A schema-provided message (e.g. "never write the password into the runbook…") wins over the generic one.
      if (!issue.message.startsWith('Invalid')) return issue.message;
      // zod does not keep the input by default; its message says what it received.
      const received = /received (\w+)/.exec(issue.message)?.[1];
      if (received === undefined || received === 'undefined') return `is required (expected ${issue.expected === 'array' ? 'a list' : `a ${issue.expected}`})`;
      return `must be ${issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}, got ${received === 'array' ? 'a list' : `a ${received}`}`;
    }
    case 'invalid_value':
      // A schema-provided message (e.g. "must be 1 (the only runbook version so far)") wins over the generic one.
      if (!issue.message.startsWith('Invalid')) return issue.message;
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return issue.message;
  }
}

function invalid(file: string, problems: RunbookProblem[]): RubiconError {
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
  return new RubiconError('RUNBOOK_INVALID', `runbook ${file} is not valid:\n${lines}`, {
    hint: `fix the field${problems.length > 1 ? 's' : ''} above in ${file}, then run the command again; nothing was touched`,
    details: { file, problems },
  });
}

/**
 * Parses and validates runbook text. Pure apart from path resolution against
 * `file`'s folder and, when the runbook has an engines.mssql section, the
 * presence (never the value) of the environment variables it names in `env`.
 */
export function parseRunbook(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Runbook {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw invalid(
      file,
      doc.errors.map((e) => ({
        path: e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(yaml)',
        message: `${e.message.split('\n')[0]} (YAML syntax)`,
      })),
    );
  }
  const parsed = RunbookSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    throw invalid(
      file,
      parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: issueMessage(i) })),
    );
  }
  const runbook = normalize(parsed.data, file, createHash('sha256').update(text).digest('hex'));
  const problems = rules(runbook, env);
  if (problems.length > 0) throw invalid(file, problems);
  return runbook;
}

export async function loadRunbook(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Runbook> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (e) {
    throw new RubiconError('RUNBOOK_NOT_FOUND', `cannot read runbook ${abs}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
      hint: 'pass an existing file with --runbook FILE (rubicon sandbox DIR writes an example)',
      cause: e,
    });
  }
  return parseRunbook(text, abs, env);
}

/** Fills every default and resolves paths. Pure. */
export function normalize(raw: ParsedRunbook, file: string, hash: string): Runbook {
  const base = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(base, p);
  const policy: Policy = { ...DEFAULT_POLICY, ...Object.fromEntries(Object.entries(raw.policy).filter(([, v]) => v !== undefined)) };
  const posix = (p: string) => p.replace(/\\/g, '/').replace(/\/+$/, '');
  const transport = (t: ParsedRunbook['target']['transport']): TransportSettings => {
    if (t.kind === 'local') return { kind: 'local' };
    if (t.kind === 'azure-run-command') return { ...t, ...(t.outputContainer ? { outputContainer: t.outputContainer.replace(/\/+$/, '') } : {}) };
    const ssh = {
      host: t.host,
      port: t.port,
      user: t.user,
      identityFile: abs(t.identityFile),
      knownHosts: abs(t.knownHosts),
      connectTimeoutSeconds: t.connectTimeoutSeconds,
      commandTimeoutSeconds: t.commandTimeoutSeconds,
      ...(t.proxyJump ? { proxyJump: t.proxyJump } : {}),
    };
    return t.kind === 'ssh' ? { kind: 'ssh', ...ssh } : { kind: 'openssh-windows', ...ssh, powershell: t.powershell };
  };
  const targetTransport = transport(raw.target.transport);
  const remote = targetTransport.kind !== 'local';
  const infra: InfraSettings =
    raw.infra.kind === 'sandbox'
      ? { kind: 'sandbox', provingGround: abs(raw.infra.provingGround), rollback: abs(raw.infra.rollback), currentImage: raw.infra.currentImage }
      : raw.infra.kind === 'pulumi-azure'
        ? { kind: 'pulumi-azure', currentImage: 'read from the stack', azure: normalizeAzureSection(raw.infra, file) }
        : {
          kind: 'manual',
          currentImage: raw.infra.currentImage,
          ...(raw.infra.instructions ? { instructions: raw.infra.instructions } : {}),
          rebuilt: { osRelease: raw.infra.rebuilt.osRelease, newMachineId: raw.infra.rebuilt.newMachineId, knownHosts: abs(raw.infra.rebuilt.knownHosts) },
          ...(raw.infra.rollback ? { rollback: raw.infra.rollback } : {}),
        };
  const provingGround = raw.provingGround
    ? { transport: transport(raw.provingGround.transport), root: raw.provingGround.root, workDir: raw.provingGround.workDir }
    : { transport: { kind: 'local' } as TransportSettings, root: infra.kind === 'sandbox' ? infra.provingGround : abs('./proving-ground'), workDir: '' };
  const vaultHost = (h: Extract<ParsedRunbook['vaults'][number], { kind: 'sftp' }>['host']) => ({
    ...(transport({ ...h, kind: 'ssh' }) as SshSettings),
    ...(h.authorizedKeysFile ? { authorizedKeysFile: h.authorizedKeysFile } : {}),
  });
  return {
    file,
    hash,
    name: raw.name,
    target: {
      name: raw.target.name,
      root: remote ? raw.target.root : abs(raw.target.root),
      image: raw.target.image,
      stage: raw.target.stage,
      transport: targetTransport,
      // A Windows target left at the schema's POSIX default works in ProgramData.
      workDir: windowsTransport(targetTransport) && raw.target.workDir === '/var/tmp/rubicon' ? 'C:\\ProgramData\\Rubicon' : raw.target.workDir,
      services: raw.target.services,
    },
    provingGround,
    infra,
    declared: {
      folders: raw.declared.folders.map(posix),
      databases: raw.declared.databases.map((d) => ({ ...d, location: d.location ? posix(d.location) : undefined })),
    },
    vendorJobs: raw.vendorJobs.map((j) => ({
      name: j.name,
      database: j.database,
      engine: j.engine,
      // The schema guarantees command (sqlite) or agentJob (mssql).
      command: j.engine === 'mssql' ? [j.agentJob ?? ''] : (j.command ?? []),
      output: posix(j.output),
      timeoutMs: j.timeoutSeconds * 1000,
    })),
    discovery: { roots: raw.discovery.roots.map(posix), depth: raw.discovery.depth, exclude: raw.discovery.exclude.map(posix) },
    methods: {
      folders: raw.methods.folders ?? (remote ? ['restic', 'rsync'] : ['file-mirror']),
      databases: {
        sqlite: raw.methods.databases.sqlite ?? (remote ? ['sqlite3-backup', 'sqlite3-dump'] : ['sqlite-backup-api', 'sqlite-sql-dump']),
        mssql: raw.methods.databases.mssql,
      },
    },
    vaults: raw.vaults.map((v): VaultSettings => {
      if (v.kind === 'filesystem') return { name: v.name, kind: 'filesystem', path: abs(v.path) };
      if (v.kind === 'sftp') return { name: v.name, kind: 'sftp', host: vaultHost(v.host), path: v.path };
      return {
        name: v.name,
        kind: 'restic',
        host: vaultHost(v.host),
        path: v.path,
        password: v.passwordEnv !== undefined ? { env: v.passwordEnv } : { file: abs(v.passwordFile ?? '') },
      };
    }),
    policy,
    overrides: raw.overrides.map((o) => ({ rule: o.rule, itemId: o.item, reason: o.reason, by: o.by })),
    manualSteps: raw.manualSteps,
    permit: raw.permit,
    ...(raw.engines.mssql ? { engines: { mssql: normalizeMssql(raw.engines.mssql) } } : {}),
    warnings: [],
  };
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Cross-field rules. Returns problems; adds warnings to the runbook. `env` is
 * read only for the presence of the variables an engines.mssql section names.
 */
export function rules(rb: Runbook, env: NodeJS.ProcessEnv = process.env): RunbookProblem[] {
  const problems: RunbookProblem[] = [];
  const seen = new Set<string>();
  const local = rb.target.transport.kind === 'local';
  rb.vaults.forEach((v, i) => {
    if (seen.has(v.name)) problems.push({ path: `vaults[${i}].name`, message: `"${v.name}" is used twice: give each vault its own name` });
    seen.add(v.name);
    if (v.kind === 'filesystem' && local) {
      if (inside(v.path, rb.target.root)) {
        problems.push({
          path: `vaults[${i}].path`,
          message: `${v.path} is inside the target root ${rb.target.root}, so the rebuild would wipe it: move the vault off the target`,
        });
      }
      if (inside(rb.target.root, v.path)) {
        problems.push({ path: `vaults[${i}].path`, message: `the target root lies inside this vault: pick a vault folder outside ${rb.target.root}` });
      }
    }
    if (v.kind === 'filesystem' && rb.provingGround.transport.kind !== 'local') {
      problems.push({
        path: `vaults[${i}].kind`,
        message: 'a filesystem vault is a folder on this machine, which a remote proving ground cannot read without streaming every byte through Rubicon: use an sftp or restic vault on a vault host',
      });
    }
    if (v.kind !== 'filesystem' && local && rb.infra.kind === 'sandbox') {
      problems.push({ path: `vaults[${i}].kind`, message: `a ${v.kind} vault needs a target reached over ssh (the sandbox's methods write filesystem vaults): use kind: filesystem` });
    }
  });
  if (local && rb.provingGround.transport.kind === 'local') {
    if (inside(rb.provingGround.root, rb.target.root) || inside(rb.target.root, rb.provingGround.root)) {
      problems.push({ path: 'infra.provingGround', message: 'the proving ground must not overlap the target: it sees the vaults and nothing else' });
    }
  }
  if (rb.infra.kind === 'sandbox' && local && inside(rb.infra.rollback, rb.target.root)) {
    problems.push({ path: 'infra.rollback', message: 'the rollback point must live outside the target root, or the crossing would wipe it' });
  }
  if (rb.infra.kind === 'sandbox' && !local) {
    problems.push({ path: 'infra.kind', message: 'the sandbox driver rebuilds a local folder: a target reached over ssh needs infra.kind: manual (or pulumi-azure)' });
  }
  if (rb.infra.kind === 'pulumi-azure') {
    for (const p of azureSectionRules(rb.infra.azure, env)) problems.push({ path: p.path.startsWith('infra') ? p.path : `infra.${p.path}`, message: p.message });
  }
  if (rb.infra.kind === 'manual' && rb.provingGround.transport.kind === 'local' && local) {
    problems.push({ path: 'provingGround', message: 'a manual crossing rebuilds a real server: describe the proving ground machine (provingGround.transport, provingGround.root)' });
  }
  if (windowsTransport(rb.target.transport)) {
    if (!/^([A-Za-z]:[\\/]|\\\\)/.test(rb.target.root)) problems.push({ path: 'target.root', message: 'must be an absolute path on the Windows server, e.g. "D:\\" or "C:\\"' });
  } else if (!local && !rb.target.root.startsWith('/')) {
    problems.push({ path: 'target.root', message: 'must be an absolute path on the server (usually "/") when the target is reached over ssh' });
  }
  const folderMethodsLocal = new Set(['file-mirror']);
  rb.methods.folders.forEach((m, i) => {
    if (local !== folderMethodsLocal.has(m)) {
      problems.push({
        path: `methods.folders[${i}]`,
        message: local
          ? `${m} runs on a Linux target reached over ssh; a local target uses file-mirror`
          : `${m} reads the target's files in this process, which a remote target cannot do: use restic and/or rsync`,
      });
    }
    const kind = m === 'restic' ? 'restic' : m === 'rsync' ? 'sftp' : 'filesystem';
    if (!rb.vaults.some((v) => v.kind === kind)) {
      problems.push({ path: `methods.folders[${i}]`, message: `${m} writes into ${kind} vaults, and the runbook lists none: add a vault with kind: ${kind}, or drop the method` });
    }
  });
  (rb.methods.databases.sqlite ?? []).forEach((m, i) => {
    const cli = m.startsWith('sqlite3-');
    if (local === cli) {
      problems.push({
        path: `methods.databases.sqlite[${i}]`,
        message: local ? `${m} runs the sqlite3 CLI on a remote target; a local target uses sqlite-backup-api and sqlite-sql-dump` : `${m} opens the database in this process; a remote target uses sqlite3-backup and sqlite3-dump`,
      });
    }
  });
  const needsMssql = 'needs an engines.mssql section (the target\'s and the proving ground\'s SQL Server): add one, see docs/mssql.md';
  rb.declared.databases.forEach((d, i) => {
    if (d.engine === 'mssql' && !rb.engines?.mssql) problems.push({ path: `declared.databases[${i}].engine`, message: needsMssql });
  });
  rb.vendorJobs.forEach((j, i) => {
    if (j.engine === 'sqlite' && !/^[A-Za-z0-9._-]+$/.test(j.database)) {
      problems.push({ path: `vendorJobs[${i}].database`, message: 'must be the database name as discovery reports it (file name without extension)' });
    }
    if (j.engine === 'mssql' && !rb.engines?.mssql) problems.push({ path: `vendorJobs[${i}].engine`, message: needsMssql });
    // Capture finds a database's vendor job by database name alone.
    const other = rb.vendorJobs.findIndex((k, n) => n < i && k.database === j.database && k.engine !== j.engine);
    if (other >= 0) {
      problems.push({
        path: `vendorJobs[${i}].database`,
        message: `vendorJobs[${other}] (engine ${rb.vendorJobs[other]!.engine}) names a database "${j.database}" too: vendor jobs of two engines for databases of the same name are not supported yet; keep one of them`,
      });
    }
  });
  if (rb.engines?.mssql) problems.push(...mssqlRules(rb.engines.mssql, env, rb.warnings));
  // The policy can only be made stricter, unless an override with a reason is recorded.
  for (const l of loosenings(rb.policy)) {
    // The gate re-checks this under rule `policy.not-looser` (item = the field name).
    const overridden = rb.overrides.some((o) => o.rule === 'policy.not-looser' && (o.itemId === undefined || o.itemId === String(l.field)));
    if (!overridden) {
      problems.push({
        path: `policy.${String(l.field)}`,
        message: `${JSON.stringify(l.value)} is looser than the default ${JSON.stringify(l.default)}: use the default, or add an override {rule: policy.not-looser, item: ${String(l.field)}, reason: "...", by: "..."} to record why`,
      });
    } else {
      rb.warnings.push(`policy.${String(l.field)} loosened to ${JSON.stringify(l.value)} by a recorded override`);
    }
  }
  if (rb.vaults.length < rb.policy.minVaults) {
    rb.warnings.push(`the policy asks for copies in ${rb.policy.minVaults} vaults but the runbook lists ${rb.vaults.length}: the gate will refuse`);
  }
  return problems;
}


