import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { RubiconError } from '../core/errors.ts';
import type { ManualStep, Override, Policy, VaultInfo } from '../core/types.ts';
import type { VendorJobSpec } from '../engines/engine.ts';
import { DEFAULT_POLICY, loosenings } from '../gate/policy.ts';
import { mssqlRules, normalizeMssql, type MssqlSettings } from './mssql.ts';
import { RunbookSchema, type ParsedRunbook } from './schema.ts';

/**
 * A runbook after parse → normalize → rules: every default filled, every
 * path absolute, the policy merged over the default. This is the only shape
 * the rest of Rubicon sees.
 */
export interface Runbook {
  file: string;
  /** SHA-256 of the file's bytes, recorded in the journal. */
  hash: string;
  name: string;
  target: { name: string; root: string; image: string; stage: 'production' | 'staging' };
  infra: { kind: 'sandbox'; provingGround: string; rollback: string; currentImage: string };
  declared: { folders: string[]; databases: { name: string; engine: 'sqlite' | 'mssql'; location?: string }[] };
  /** `command` is the program (sqlite) or `[agentJob]` (mssql, as the engine's vendor-job method takes it). */
  vendorJobs: (VendorJobSpec & { engine: 'sqlite' | 'mssql' })[];
  discovery: { roots: string[]; depth: number; exclude: string[] };
  methods: { folders: string[]; databases: Record<string, string[]> };
  vaults: (VaultInfo & { path: string })[];
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
  return {
    file,
    hash,
    name: raw.name,
    target: { name: raw.target.name, root: abs(raw.target.root), image: raw.target.image, stage: raw.target.stage },
    infra: {
      kind: raw.infra.kind,
      provingGround: abs(raw.infra.provingGround),
      rollback: abs(raw.infra.rollback),
      currentImage: raw.infra.currentImage,
    },
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
    methods: { folders: raw.methods.folders, databases: { sqlite: raw.methods.databases.sqlite, mssql: raw.methods.databases.mssql } },
    vaults: raw.vaults.map((v) => ({
      name: v.name,
      kind: v.kind,
      path: abs(v.path),
      location: abs(v.path),
      offTarget: v.offTarget,
      immutable: v.immutable,
    })),
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
  rb.vaults.forEach((v, i) => {
    if (seen.has(v.name)) problems.push({ path: `vaults[${i}].name`, message: `"${v.name}" is used twice: give each vault its own name` });
    seen.add(v.name);
    if (inside(v.path, rb.target.root) && v.offTarget) {
      problems.push({
        path: `vaults[${i}].path`,
        message: `${v.path} is inside the target root ${rb.target.root}, so the rebuild would wipe it: move the vault off the target (or set offTarget: false, which does not count as off-target)`,
      });
    }
    if (inside(rb.target.root, v.path)) {
      problems.push({ path: `vaults[${i}].path`, message: `the target root lies inside this vault: pick a vault folder outside ${rb.target.root}` });
    }
  });
  if (inside(rb.infra.provingGround, rb.target.root) || inside(rb.target.root, rb.infra.provingGround)) {
    problems.push({ path: 'infra.provingGround', message: 'the proving ground must not overlap the target: it sees the vaults and nothing else' });
  }
  if (inside(rb.infra.rollback, rb.target.root)) {
    problems.push({ path: 'infra.rollback', message: 'the rollback point must live outside the target root, or the crossing would wipe it' });
  }
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

export function vaultInfos(rb: Runbook): VaultInfo[] {
  return rb.vaults.map(({ name, kind, location, offTarget, immutable }) => ({ name, kind, location, offTarget, immutable }));
}
