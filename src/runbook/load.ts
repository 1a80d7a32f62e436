import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Lexer, parseDocument } from 'yaml';
import type { z } from 'zod';
import { RubiconError, isRubiconError } from '../core/errors.ts';
import type { ManualStep, Override, Policy } from '../core/types.ts';
import type { VendorJobSpec } from '../engines/engine.ts';
import { parseIsoTime } from '../gate/current.ts';
import { DEFAULT_POLICY, loosenings } from '../gate/policy.ts';
import { mssqlRules, normalizeMssql, type MssqlSettings } from './mssql.ts';
import { RUNBOOK_LIMITS, RunbookSchema, type ParsedRunbook } from './schema.ts';
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

/**
 * Set to 1, a Windows transport's target.root may be a POSIX path: the
 * target is PowerShell 7 on Linux standing in for a Windows Server (the
 * end-to-end test, test/e2e/windows-story.test.ts). Never for a real server.
 */
export const WINDOWS_STAND_IN_ENV = 'RUBICON_WINDOWS_STAND_IN';

/** The transports that reach a Windows machine (PowerShell, Windows paths). */
export function windowsTransport(t: TransportSettings): boolean {
  return t.kind === 'openssh-windows' || t.kind === 'azure-run-command';
}

/** An sftp vault's folder as an SMB share (docs/vaults.md, "SMB"): the UNC path without a trailing backslash, the account, where the password is. */
export interface SmbShareSettings {
  unc: string;
  user: string;
  password: { env: string } | { file: string };
}

/** A vault as the runbook describes it; what it can do (immutable, off the target, ...) is read from the vault itself. */
export type VaultSettings =
  | { name: string; kind: 'filesystem'; path: string; encryption?: { env: string } | { file: string } }
  | { name: string; kind: 'sftp'; host: SshSettings & { authorizedKeysFile?: string }; path: string; smb?: SmbShareSettings }
  | { name: string; kind: 'restic'; host: SshSettings & { authorizedKeysFile?: string }; path: string; password: { env: string } | { file: string } }
  | import('../vaults/azure-blob.ts').AzureBlobSettings;

export type InfraSettings =
  | { kind: 'sandbox'; provingGround: string; rollback: string; currentImage: string }
  | {
      kind: 'manual';
      currentImage: string;
      instructions?: string;
      rebuilt: { osRelease: string; newMachineId: boolean; knownHosts: string };
      rollback?: { description: string };
      /** Mount points on the target the reinstall wipes; absent: every local volume under target.root (docs/coverage.md). */
      destroys?: string[];
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
    /** The crossing's expected duration, for the window estimate (target.expectedCrossingMinutes). */
    expectedCrossingMinutes?: number;
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
  /** Where the run's signing key is (absent: this user's own key, src/trust/keyring.ts). */
  trust?: { signingKey: { env: string } | { file: string } };
  /** What need not be captured although the crossing destroys it (with why and who), and kept volumes to capture all the same. */
  coverage: { exclude: { path: string; reason: string; by: string }[]; alsoCapture: string[] };
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
 * The deepest nesting of YAML flow collections in `text`, from the `yaml`
 * package's own lexer (linear; it does not recurse), so quotes, comments and
 * block scalars are read the way the parser reads them. Skipped when the
 * text has too few brackets to nest that deep.
 */
function flowDepth(text: string): number {
  let brackets = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) brackets++;
  }
  if (brackets <= RUNBOOK_LIMITS.yamlFlowDepth) return brackets;
  let depth = 0;
  let max = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') max = Math.max(max, ++depth);
    else if (token === ']' || token === '}') depth = Math.max(0, depth - 1);
    if (max > RUNBOOK_LIMITS.yamlFlowDepth) break; // deep enough to refuse: stop reading
  }
  return max;
}

function tooBig(file: string, bytes: number): RubiconError {
  return invalid(file, [
    {
      path: '(file)',
      message: `is ${bytes.toLocaleString('en-US')} bytes, over the ${RUNBOOK_LIMITS.fileBytes.toLocaleString('en-US')} a runbook may have: a runbook describes one server's upgrade; list fewer items (see docs/inputs.md)`,
    },
  ]);
}

/**
 * Parses and validates runbook text. Pure apart from path resolution against
 * `file`'s folder and, when the runbook has an engines.mssql section, the
 * presence (never the value) of the environment variables it names in `env`.
 */
export function parseRunbook(text: string, file: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): Runbook {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > RUNBOOK_LIMITS.fileBytes) throw tooBig(file, bytes);
  const depth = flowDepth(text);
  if (depth > RUNBOOK_LIMITS.yamlFlowDepth) {
    throw invalid(file, [{ path: '(yaml)', message: `nests [ ] or { } more than ${RUNBOOK_LIMITS.yamlFlowDepth} deep, the most a runbook may: write nested lists and maps in block style, or check for unbalanced brackets` }]);
  }
  let raw: unknown;
  try {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
      const shown = doc.errors.slice(0, 10).map((e) => ({
        path: e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(yaml)',
        message: `${e.message.split('\n')[0]} (YAML syntax)`,
      }));
      if (doc.errors.length > shown.length) shown.push({ path: '(yaml)', message: `and ${doc.errors.length - shown.length} more YAML errors: fix the first ones, then read again` });
      throw invalid(file, shown);
    }
    // maxAliasCount stops "billion laughs": aliases that expand into an exponentially large document.
    raw = doc.toJS({ maxAliasCount: RUNBOOK_LIMITS.yamlAliases });
  } catch (e) {
    if (isRubiconError(e)) throw e;
    const message = e instanceof Error ? e.message : String(e);
    throw invalid(file, [
      /alias/i.test(message)
        ? { path: '(yaml)', message: `expands YAML aliases (*name) more than ${RUNBOOK_LIMITS.yamlAliases} times, which is how a "billion laughs" document exhausts memory: write the values out instead of aliasing them` }
        : { path: '(yaml)', message: `cannot be read as YAML (${message.split('\n')[0]}): check the file's structure (nesting, quotes)` },
    ]);
  }
  const parsed = RunbookSchema.safeParse(raw);
  if (!parsed.success) {
    throw invalid(
      file,
      parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: issueMessage(i) })),
    );
  }
  const runbook = normalize(parsed.data, file, createHash('sha256').update(text).digest('hex'), options.resolveFrom);
  const problems = rules(runbook, env);
  if (problems.length > 0) throw invalid(file, problems);
  return runbook;
}

export interface LoadOptions {
  /**
   * The folder the runbook's relative paths resolve against (default: the
   * file's own folder). A run's copy of its runbook (state/runs/RUN/runbook.yaml)
   * is loaded with the original's folder, so `./vaults/nas` still means what
   * it meant when the run started.
   */
  resolveFrom?: string;
}

export async function loadRunbook(file: string, env: NodeJS.ProcessEnv = process.env, options: LoadOptions = {}): Promise<Runbook> {
  const abs = path.resolve(file);
  let text: string;
  try {
    // Refused before reading: a huge file is not read into memory to be refused afterwards.
    const st = await stat(abs);
    if (!st.isFile()) {
      throw new RubiconError('RUNBOOK_NOT_FOUND', `runbook ${abs} is not a regular file`, { hint: 'pass the runbook file itself with --runbook FILE' });
    }
    if (st.size > RUNBOOK_LIMITS.fileBytes) throw tooBig(abs, st.size);
    text = await readFile(abs, 'utf8');
  } catch (e) {
    if (isRubiconError(e)) throw e;
    throw new RubiconError('RUNBOOK_NOT_FOUND', `cannot read runbook ${abs}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
      hint: 'pass an existing file with --runbook FILE (rubicon sandbox DIR writes an example)',
      cause: e,
    });
  }
  return parseRunbook(text, abs, env, options);
}

/** Fills every default and resolves paths. Pure. */
export function normalize(raw: ParsedRunbook, file: string, hash: string, resolveFrom?: string): Runbook {
  const base = resolveFrom ? path.resolve(resolveFrom) : path.dirname(path.resolve(file));
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
        ? { kind: 'pulumi-azure', currentImage: 'read from the stack', azure: normalizeAzureSection(raw.infra, path.join(base, path.basename(file))) }
        : {
          kind: 'manual',
          currentImage: raw.infra.currentImage,
          ...(raw.infra.instructions ? { instructions: raw.infra.instructions } : {}),
          rebuilt: { osRelease: raw.infra.rebuilt.osRelease, newMachineId: raw.infra.rebuilt.newMachineId, knownHosts: abs(raw.infra.rebuilt.knownHosts) },
          ...(raw.infra.rollback ? { rollback: raw.infra.rollback } : {}),
          ...(raw.infra.destroys ? { destroys: raw.infra.destroys.map((d) => (d.startsWith('/') ? path.posix.resolve(d) : d)) } : {}),
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
      ...(raw.target.expectedCrossingMinutes !== undefined ? { expectedCrossingMinutes: raw.target.expectedCrossingMinutes } : {}),
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
      if (v.kind === 'filesystem') {
        const enc = v.encryption ? { encryption: v.encryption.keyEnv !== undefined ? { env: v.encryption.keyEnv } : { file: abs(v.encryption.keyFile ?? '') } } : {};
        return { name: v.name, kind: 'filesystem', path: abs(v.path), ...enc };
      }
      if (v.kind === 'sftp') {
        const smb = v.smb ? { smb: { unc: v.smb.unc.replace(/\\+$/, ''), user: v.smb.user, password: v.smb.passwordEnv !== undefined ? { env: v.smb.passwordEnv } : { file: abs(v.smb.passwordFile ?? '') } } } : {};
        return { name: v.name, kind: 'sftp', host: vaultHost(v.host), path: v.path, ...smb };
      }
      if (v.kind === 'azure-blob') {
        return {
          name: v.name,
          kind: 'azure-blob',
          accountUrl: v.accountUrl.replace(/\/+$/, ''),
          container: v.container,
          prefix: v.prefix,
          credential: v.credential,
          concurrency: v.concurrency,
          blockSizeMiB: v.blockSizeMiB,
          retentionDays: v.retentionDays,
          ...(v.keySource ? { keySource: v.keySource } : {}),
        };
      }
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
    ...(raw.trust ? { trust: { signingKey: 'env' in raw.trust.signingKey ? { env: raw.trust.signingKey.env } : { file: abs(raw.trust.signingKey.file) } } } : {}),
    coverage: {
      exclude: raw.coverage.exclude.map((e) => ({ path: posix(e.path).replace(/^(\.\/)+/, ''), reason: e.reason, by: e.by })),
      alsoCapture: raw.coverage.alsoCapture.map(posix),
    },
    ...(raw.engines.mssql ? { engines: { mssql: normalizeMssql(raw.engines.mssql) } } : {}),
    warnings: [],
  };
}

/**
 * What can only be checked when a run starts, not whenever the runbook is
 * read (a resume reads it again hours later, after the crossing wiped the
 * target): the local target's root and discovery roots exist, and every
 * manual step's confirmation is neither in the future nor older than
 * policy.maxConfirmationAgeHours. A target reached over ssh is not looked
 * at here: its folders are on the server, and discovery reports them.
 * Throws RUNBOOK_INVALID (exit 3) naming each field; touches nothing.
 */
export async function checkBeforeStart(rb: Runbook, now: Date = new Date()): Promise<void> {
  const problems: RunbookProblem[] = [];
  if (rb.target.transport.kind === 'local') {
    const kindOf = async (p: string): Promise<'folder' | 'missing' | 'other'> => {
      try {
        return (await stat(p)).isDirectory() ? 'folder' : 'other';
      } catch {
        return 'missing';
      }
    };
    const root = await kindOf(rb.target.root);
    if (root !== 'folder') {
      problems.push({
        path: 'target.root',
        message: `${rb.target.root} ${root === 'missing' ? 'does not exist' : 'is not a folder'}: point target.root at the folder that stands in for the server`,
      });
    } else {
      for (const [i, r] of rb.discovery.roots.entries()) {
        const abs = path.resolve(rb.target.root, r);
        const k = await kindOf(abs);
        if (k !== 'folder') {
          problems.push({
            path: `discovery.roots[${i}]`,
            message: `"${r}" (${abs}) ${k === 'missing' ? 'does not exist on the target' : 'is not a folder'}: fix the spelling, or remove it from discovery.roots (discovery searches folders that exist)`,
          });
        }
      }
    }
  }
  const hours = rb.policy.maxConfirmationAgeHours;
  rb.manualSteps.forEach((s, i) => {
    if (s.confirmedAt === undefined) return;
    const at = parseIsoTime(s.confirmedAt);
    if (at > now.getTime()) {
      problems.push({
        path: `manualSteps[${i}].confirmedAt`,
        message: `${s.confirmedAt} is in the future (it is ${now.toISOString()} now): a step is confirmed once it was done; fix the time and its zone`,
      });
    } else if (now.getTime() - at > hours * 3_600_000) {
      problems.push({
        path: `manualSteps[${i}].confirmedAt`,
        message: `${s.confirmedAt} is more than ${hours} h ago (policy.maxConfirmationAgeHours): confirm step ${s.id} again for this maintenance window and write the new time`,
      });
    }
  });
  if (problems.length > 0) throw invalid(rb.file, problems);
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The path as the filesystem will resolve it: symlinks in its longest
 * existing prefix followed (realpath), the rest appended. Paths reach here
 * already absolute and normalized (relative vs absolute, trailing slashes,
 * `..` resolved by normalize, exactly as Rubicon will use them).
 */
export function realPath(p: string): string {
  let head = path.resolve(p);
  const tail: string[] = [];
  for (;;) {
    // Throws ERR_ACCESS_DENIED in a process confined by Node's permission model (the prover): see placementRules.
    const exists = existsSync(head);
    if (exists) {
      try {
        return path.join(realpathSync.native(head), ...tail);
      } catch {
        return path.join(head, ...tail);
      }
    }
    const parent = path.dirname(head);
    if (parent === head) return path.join(head, ...tail);
    tail.unshift(path.basename(head));
    head = parent;
  }
}

const posixInside = (child: string, parent: string) => {
  const rel = path.posix.relative(path.posix.resolve(parent), path.posix.resolve(child));
  return rel === '' || (!rel.startsWith('..') && !path.posix.isAbsolute(rel));
};

/**
 * Nothing Rubicon needs lives in what the crossing destroys, and two vault
 * entries in one place are never two copies (docs/coverage.md). Local paths
 * are compared as real paths (symlinks resolved); paths on other machines
 * as normalized POSIX paths on the same host and port. Reads the filesystem
 * (realpath) and nothing else.
 */
function placementRules(rb: Runbook): RunbookProblem[] {
  try {
    return placementRulesWith(rb, realPath);
  } catch (e) {
    // The confined prover may not look at the target: it compares the paths as written (its parent checked the real ones).
    if ((e as { code?: string }).code === 'ERR_ACCESS_DENIED') return placementRulesWith(rb, (p) => path.resolve(p));
    throw e;
  }
}

function placementRulesWith(rb: Runbook, realPath: (p: string) => string): RunbookProblem[] {
  const problems: RunbookProblem[] = [];
  const local = rb.target.transport.kind === 'local';
  const where = (t: TransportSettings) => (t.kind === 'ssh' ? `${t.host.toLowerCase()}:${t.port}` : 'this machine');
  const targetAt = where(rb.target.transport);
  const root = local ? realPath(rb.target.root) : rb.target.root;
  const via = (p: string, real: string) => (real === path.resolve(p) ? '' : ` (really ${real}, through a symlink)`);
  const places = rb.vaults.map((v) =>
    v.kind === 'filesystem'
      ? { at: 'this machine', path: realPath(v.path), shown: v.path, inside, via: via(v.path, realPath(v.path)) }
      : v.kind === 'azure-blob'
        ? // Never on the target; two vaults in one container overlap like two folders do.
          { at: `azure-blob ${v.accountUrl.replace(/\/+$/, '').toLowerCase()}/${v.container}`, path: `/${v.prefix}`, shown: `${v.accountUrl}/${v.container}${v.prefix ? `/${v.prefix}` : ''}`, inside: posixInside, via: '' }
        : { at: where({ ...v.host, kind: 'ssh' }), path: v.path, shown: `${v.host.host}:${v.path}`, inside: posixInside, via: '' },
  );
  rb.vaults.forEach((v, i) => {
    const p = places[i]!;
    if (p.at === targetAt) {
      if (p.inside(p.path, root)) {
        problems.push({
          path: `vaults[${i}].path`,
          message: `${p.shown}${p.via} is inside the target root ${rb.target.root}, so the rebuild would wipe it: move the vault off the target`,
        });
      } else if (p.inside(root, p.path)) {
        problems.push({ path: `vaults[${i}].path`, message: `the target root lies inside this vault${p.via}: pick a vault folder outside ${rb.target.root}` });
      }
    }
    for (let j = 0; j < i; j++) {
      const q = places[j]!;
      if (q.at !== p.at || !(p.inside(p.path, q.path) || p.inside(q.path, p.path))) continue;
      const same = p.path === q.path ? 'is the same place as' : p.inside(p.path, q.path) ? 'lies inside' : 'contains';
      problems.push({
        path: `vaults[${i}].path`,
        message: `${p.shown}${p.via} ${same} vaults[${j}] ("${rb.vaults[j]!.name}", ${q.shown}): one place holds one copy, not two; give each vault its own folder (another disk or host for the second copy)`,
      });
    }
  });
  const pg = rb.provingGround;
  if (local && pg.transport.kind === 'local') {
    const pgReal = realPath(pg.root);
    if (inside(pgReal, root) || inside(root, pgReal)) {
      problems.push({ path: rb.infra.kind === 'sandbox' ? 'infra.provingGround' : 'provingGround.root', message: `the proving ground must not overlap the target${via(pg.root, pgReal)}: it sees the vaults and nothing else, and the crossing would wipe it` });
    }
  } else if (where(pg.transport) === targetAt && (posixInside(pg.root, root) || posixInside(root, pg.root))) {
    problems.push({ path: 'provingGround.root', message: `${pg.root} on ${targetAt} overlaps the target root ${rb.target.root}: the proving ground must not see the target, and the crossing would wipe it` });
  }
  if (rb.infra.kind === 'sandbox' && local) {
    const rollback = realPath(rb.infra.rollback);
    if (inside(rollback, root)) {
      problems.push({ path: 'infra.rollback', message: `the rollback point must live outside the target root${via(rb.infra.rollback, rollback)}, or the crossing would wipe it` });
    }
  }
  if (rb.infra.kind === 'manual') {
    (rb.infra.destroys ?? []).forEach((d, i) => {
      // A Windows drive or folder (C:\, D:\data) may lie outside the root: it is a volume of its own (src/coverage/windows.ts).
      if (!d.startsWith('/')) {
        if (!windowsTransport(rb.target.transport)) problems.push({ path: `infra.destroys[${i}]`, message: `${d} is a Windows path and the target is not a Windows server: name its mount points (e.g. "/")` });
      } else if (!posixInside(d, rb.target.root)) problems.push({ path: `infra.destroys[${i}]`, message: `${d} is not under the target root ${rb.target.root}: name the mount points of the volumes the reinstall wipes` });
    });
  }
  return problems;
}

/**
 * `--state-dir` holds the journal and the evidence: it must not lie in what
 * the crossing destroys. Checked by the CLI before a run starts (exit 3,
 * nothing touched). Only a local target shares this machine's filesystem.
 */
export function checkStateDir(rb: Runbook, stateDir: string): void {
  if (rb.target.transport.kind !== 'local') return;
  const real = realPath(stateDir);
  const root = realPath(rb.target.root);
  if (inside(real, root) || inside(root, real)) {
    throw new RubiconError('ARGUMENTS_INVALID', `--state-dir ${stateDir}${real === path.resolve(stateDir) ? '' : ` (really ${real})`} ${inside(real, root) ? 'is inside' : 'contains'} the target root ${rb.target.root} of ${rb.file}: the crossing would wipe the journal and the evidence`, {
      hint: 'pass --state-dir (or RUBICON_STATE_DIR) a folder outside the target; nothing was touched',
      details: { field: '--state-dir', stateDir, targetRoot: rb.target.root },
    });
  }
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
    if (v.kind === 'filesystem' && rb.provingGround.transport.kind !== 'local') {
      problems.push({
        path: `vaults[${i}].kind`,
        message: 'a filesystem vault is a folder on this machine, which a remote proving ground cannot read without streaming every byte through Rubicon: use an sftp or restic vault on a vault host',
      });
    }
    if (v.kind !== 'filesystem' && v.kind !== 'azure-blob' && local && rb.infra.kind === 'sandbox') {
      problems.push({ path: `vaults[${i}].kind`, message: `a ${v.kind} vault needs a target reached over ssh (the sandbox's methods write filesystem vaults): use kind: filesystem` });
    }
  });
  problems.push(...placementRules(rb));
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
    if (rb.target.root.startsWith('/') && env[WINDOWS_STAND_IN_ENV] === '1') {
      // Only PowerShell on Linux has such paths: the stand-in Rubicon's own end-to-end tests use for a Windows Server (docs/windows.md).
      rb.warnings.push(`target.root ${rb.target.root} is a POSIX path on a ${rb.target.transport.kind} target: only a PowerShell host on Linux (a test stand-in) has those; a Windows Server needs a path like "D:\\"`);
    } else if (!/^([A-Za-z]:[\\/]|\\\\)/.test(rb.target.root)) problems.push({ path: 'target.root', message: 'must be an absolute path on the Windows server, e.g. "D:\\" or "C:\\"' });
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
    const kind = m === 'restic' ? 'restic' : m === 'rsync' || m === 'robocopy' ? 'sftp' : 'filesystem';
    if (m === 'robocopy') {
      if (!windowsTransport(rb.target.transport)) {
        problems.push({ path: `methods.folders[${i}]`, message: 'robocopy runs on a Windows target (target.transport.kind openssh-windows or azure-run-command); a Linux target uses rsync' });
      } else if (!rb.vaults.some((v) => v.kind === 'sftp' && v.smb)) {
        problems.push({ path: `methods.folders[${i}]`, message: 'robocopy writes into sftp vaults that the Windows server reaches as an SMB share, and no sftp vault has an smb section: add smb: { unc, user, passwordEnv } to one (docs/vaults.md, "SMB"), or drop the method' });
      }
    } else if (!rb.vaults.some((v) => v.kind === kind)) {
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
  if (rb.engines?.mssql) {
    problems.push(...mssqlRules(rb.engines.mssql, env, rb.warnings));
    // The SQL Server's backup folder as this machine sees it: a mount on a local target; nothing on a remote one (docs/mssql.md, "Remote targets").
    const onHost = rb.engines.mssql.backupDirectoryOnHost;
    if (rb.target.transport.kind === 'local' && onHost === undefined) {
      problems.push({ path: 'engines.mssql.backupDirectoryOnHost', message: 'is required on a local target: name the folder, relative to target.root, where this machine sees engines.mssql.backupDirectory (an SMB or NFS mount of it)' });
    } else if (rb.target.transport.kind !== 'local' && onHost !== undefined) {
      problems.push({ path: 'engines.mssql.backupDirectoryOnHost', message: `is a folder on this machine, which a ${rb.target.transport.kind} target does not have: remove it (SQL Server on a remote target writes its backups straight into a vault: engines.mssql.backupToUrl, docs/mssql.md)` });
    }
  }
  const toUrl = rb.engines?.mssql?.backupToUrl;
  if (toUrl !== undefined) {
    const v = rb.vaults.find((x) => x.name === toUrl);
    if (!v || v.kind !== 'azure-blob') {
      problems.push({ path: 'engines.mssql.backupToUrl', message: `names ${v ? `vault '${toUrl}', which is ${v.kind}` : `no vault of the runbook ('${toUrl}')`}: SQL Server backs up to URL only into an azure-blob vault; name one of ${rb.vaults.filter((x) => x.kind === 'azure-blob').map((x) => `'${x.name}'`).join(', ') || 'the runbook\'s vaults after adding one of kind azure-blob'}` });
    }
  }
  if ((rb.methods.databases.mssql ?? []).includes('mssql-native-url') && toUrl === undefined) {
    problems.push({ path: 'methods.databases.mssql', message: 'lists mssql-native-url, which needs engines.mssql.backupToUrl: the name of the azure-blob vault SQL Server backs up into' });
  }
  rb.overrides.forEach((o, i) => {
    if (o.rule === 'policy.not-looser' && o.itemId !== undefined && !Object.hasOwn(DEFAULT_POLICY, o.itemId)) {
      problems.push({
        path: `overrides[${i}].item`,
        message: `"${o.itemId}" is not a policy field: an override of policy.not-looser names the field it loosens, one of ${Object.keys(DEFAULT_POLICY).join(', ')}`,
      });
    }
  });
  // The policy can only be made stricter, unless an override with a reason is recorded.
  for (const l of loosenings(rb.policy)) {
    // The gate re-checks this under rule `policy.not-looser` (item = the field name).
    const overridden = rb.overrides.some((o) => o.rule === 'policy.not-looser' && o.itemId === String(l.field));
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


