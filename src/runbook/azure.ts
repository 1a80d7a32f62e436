import { statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { RubiconError } from '../core/errors.ts';
import type { KeySource } from '../trust/keys.ts';

/**
 * The runbook's `infra` section for `kind: pulumi-azure`: parse (zod) →
 * normalize (every default filled, paths absolute) → rules (the environment
 * variables and key file it names exist). The composition root selects it
 * by `infra.kind` and hands the normalized settings to
 * `createPulumiAzureInfra` (src/infra/azure/factory.ts).
 *
 * The signing key is NAMED here (an environment variable or a file), never
 * given: a runbook with a PEM in it is refused. Azure's settings (VM size,
 * image, network) live in the Pulumi stack config (stacks/), not here; the
 * image the crossing installs is the runbook's `target.image`
 * (`publisher:offer:sku:version`) and must match the stack's after the
 * crossing.
 *
 * Example:
 *
 * ```yaml
 * infra:
 *   kind: pulumi-azure
 *   stack: prod                      # stacks/Pulumi.prod.yaml
 *   workDir: ..                      # the folder holding Pulumi.yaml (default: the runbook's folder)
 *   signingKey: { env: RUBICON_SIGNING_KEY }   # or { file: /etc/rubicon/signing.pem } (mode 600)
 *   freezeServices: [EHRAppServer, EHRQueue]
 * ```
 */

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the NAME of an environment variable (letters, digits, "_"), e.g. RUBICON_SIGNING_KEY');

const noKeyMaterial = (s: string) => !/-----BEGIN [A-Z ]*KEY-----/.test(s);

export const SigningKeySchema = z.union(
  [
    z.strictObject({ env: envName }),
    z.strictObject({
      file: z
        .string()
        .min(1, 'must be the path of the PEM file')
        .refine(noKeyMaterial, { message: 'holds a key: name the FILE that holds it, never write a key into the runbook' }),
    }),
  ],
  { message: 'must be { env: VARIABLE } or { file: PATH }, naming where the Ed25519 private key is (docs/trust.md); never the key itself' },
);

export const PulumiAzureSectionSchema = z.strictObject({
  kind: z.literal('pulumi-azure'),
  /** The Pulumi stack (stacks/Pulumi.<stack>.yaml). */
  stack: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be a stack name such as prod or staging (stacks/Pulumi.<stack>.yaml)'),
  /** Folder holding Pulumi.yaml, relative to the runbook. Default: the runbook's folder. */
  workDir: z.string().min(1).default('.'),
  /** Folder whose bin/pulumi to run. Default: `pulumi` on PATH (never downloaded). */
  pulumiRoot: z.string().min(1).optional(),
  /** Where the Ed25519 private key that signs permits is. Required: without it nothing can cross. */
  signingKey: SigningKeySchema,
  /** Folder for saved update plans, relative to the runbook. Default `<workDir>/.rubicon/plans`. */
  planDir: z.string().min(1).optional(),
  /** NAME of the variable with the Azure subscription id. Default AZURE_SUBSCRIPTION_ID. */
  subscriptionIdEnv: envName.default('AZURE_SUBSCRIPTION_ID'),
  /** The application's Windows services, stopped at freeze (Run Command). Default none. */
  freezeServices: z.array(z.string().min(1).max(256)).default([]),
  /** How long to wait for a VM agent after provisioning or the crossing. Default 20. */
  agentTimeoutMinutes: z.number().positive().max(24 * 60).default(20),
});

export type RawPulumiAzureSection = z.input<typeof PulumiAzureSectionSchema>;

/** The section after normalize: what the factory gets. */
export interface PulumiAzureSettings {
  kind: 'pulumi-azure';
  stack: string;
  /** Absolute. */
  workDir: string;
  pulumiRoot?: string;
  signingKey: KeySource;
  /** Absolute. */
  planDir: string;
  subscriptionIdEnv: string;
  freezeServices: string[];
  agentTimeoutMs: number;
}

export interface AzureSectionProblem {
  path: string;
  message: string;
}

/** Fills every default; resolves paths against the runbook's folder. Pure. */
export function normalizeAzureSection(raw: z.output<typeof PulumiAzureSectionSchema>, runbookFile: string): PulumiAzureSettings {
  const base = path.dirname(path.resolve(runbookFile));
  const workDir = path.resolve(base, raw.workDir);
  return {
    kind: 'pulumi-azure',
    stack: raw.stack,
    workDir,
    ...(raw.pulumiRoot ? { pulumiRoot: path.resolve(base, raw.pulumiRoot) } : {}),
    signingKey: 'env' in raw.signingKey ? { env: raw.signingKey.env } : { file: path.resolve(base, raw.signingKey.file) },
    planDir: raw.planDir ? path.resolve(base, raw.planDir) : path.join(workDir, '.rubicon', 'plans'),
    subscriptionIdEnv: raw.subscriptionIdEnv,
    freezeServices: [...raw.freezeServices],
    agentTimeoutMs: Math.round(raw.agentTimeoutMinutes * 60_000),
  };
}

/**
 * Cross-field rules. Reads the environment for presence only (never copies
 * a value) and stats the key file (never reads it): a missing variable, a
 * missing key file, a key file others may read, a workDir without
 * Pulumi.yaml are problems naming the field.
 */
export function azureSectionRules(s: PulumiAzureSettings, env: NodeJS.ProcessEnv, exists: (p: string) => { mode: number; isFile: boolean } | undefined = statOf): AzureSectionProblem[] {
  const problems: AzureSectionProblem[] = [];
  if ('env' in s.signingKey) {
    if (!env[s.signingKey.env]) {
      problems.push({ path: 'infra.signingKey.env', message: `environment variable ${s.signingKey.env} is not set: export it with the PKCS#8 PEM private key that signs permits (docs/trust.md)` });
    }
  } else {
    const st = exists(s.signingKey.file);
    if (!st || !st.isFile) problems.push({ path: 'infra.signingKey.file', message: `${s.signingKey.file} does not exist or is not a file` });
    else if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      problems.push({ path: 'infra.signingKey.file', message: `${s.signingKey.file} is readable by others: chmod 600 ${s.signingKey.file}` });
    }
  }
  if (!env[s.subscriptionIdEnv]) {
    problems.push({ path: 'infra.subscriptionIdEnv', message: `environment variable ${s.subscriptionIdEnv} is not set: export the Azure subscription id of the target` });
  }
  const pulumiYaml = exists(path.join(s.workDir, 'Pulumi.yaml'));
  if (!pulumiYaml?.isFile) problems.push({ path: 'infra.workDir', message: `${s.workDir} has no Pulumi.yaml: point it at the folder of Rubicon's Pulumi project` });
  return problems;
}

function statOf(p: string): { mode: number; isFile: boolean } | undefined {
  try {
    const st = statSync(p);
    return { mode: st.mode, isFile: st.isFile() };
  } catch {
    return undefined;
  }
}

function describeIssue(i: z.core.$ZodIssue): string {
  if (i.code === 'unrecognized_keys') return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}: remove or check the spelling`;
  if (i.code === 'invalid_type' && i.input === undefined) return 'is required';
  return i.message;
}

/**
 * parse → normalize → rules for one `infra` object. Throws
 * RubiconError(RUNBOOK_INVALID, exit 3) listing every problem with its path
 * (`infra.signingKey.env`) and the fix; nothing was touched.
 */
export function parseAzureSection(raw: unknown, runbookFile: string, env: NodeJS.ProcessEnv = process.env): PulumiAzureSettings {
  const parsed = PulumiAzureSectionSchema.safeParse(raw);
  const fail = (problems: AzureSectionProblem[]): never => {
    throw new RubiconError('RUNBOOK_INVALID', `runbook ${runbookFile} is not valid:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`, {
      hint: `fix the field${problems.length > 1 ? 's' : ''} above in ${runbookFile}, then run the command again; nothing was touched`,
      details: { file: runbookFile, problems },
    });
  };
  if (!parsed.success) {
    fail(parsed.error.issues.map((i) => ({ path: ['infra', ...i.path.map(String)].join('.'), message: describeIssue(i) })));
  }
  const settings = normalizeAzureSection(parsed.data!, runbookFile);
  const problems = azureSectionRules(settings, env);
  if (problems.length > 0) fail(problems);
  return settings;
}
