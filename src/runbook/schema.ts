import { z } from 'zod';

/**
 * The runbook: the declarative description of one upgrade. This module owns
 * raw input: parse (this schema) → normalize (src/runbook/normalize.ts,
 * every default filled) → rules (cross-field checks). Nothing outside
 * src/runbook sees the raw shape.
 *
 * Paths in a runbook are relative to the runbook file's folder (vault and
 * sandbox paths) or to the target root (declared items, discovery roots).
 */

const relPath = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => !p.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(p), {
    message: 'must be relative to the target root (no leading "/" or drive letter)',
  })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { message: 'must not contain ".."' });

const name = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may hold letters, digits, ".", "_" and "-" only, starting with a letter or digit');

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'must be an ISO 8601 date, e.g. 2026-11-28T09:00:00Z' });

export const FOLDER_METHODS = ['file-mirror'] as const;

export const VaultSchema = z
  .object({
    name,
    kind: z.enum(['filesystem']).describe('only "filesystem" is built in so far'),
    path: z.string().min(1, 'must not be empty'),
    offTarget: z.boolean().default(true),
    immutable: z.boolean().default(false),
  })
  .strict();

export const VendorJobSchema = z
  .object({
    name: z.string().min(1),
    database: z.string().min(1),
    command: z.array(z.string().min(1)).min(1, 'must name the program to run, e.g. ["node", "ehr/A/bin/sqlbackup.ts"]'),
    output: relPath,
    timeoutSeconds: z.number().int().positive().default(3600),
  })
  .strict();

export const ManualStepSchema = z
  .object({
    id: name,
    description: z.string().min(1),
    confirmedBy: z.string().min(1).optional(),
    confirmedAt: isoDate.optional(),
  })
  .strict();

export const OverrideSchema = z
  .object({
    rule: z.string().min(1),
    item: z.string().min(1).optional(),
    reason: z.string().trim().min(10, 'must explain why, in at least 10 characters'),
    by: z.string().min(1, 'must name who takes responsibility'),
  })
  .strict();

export const PolicySchema = z
  .object({
    minIndependentMethods: z.number().int().min(1).optional(),
    minVaults: z.number().int().min(1).optional(),
    minOffTargetVaults: z.number().int().min(0).optional(),
    maxProofAgeHours: z.number().positive().optional(),
    requireRollbackPoint: z.boolean().optional(),
    requireManualSteps: z.boolean().optional(),
    requireImmutableCopy: z.boolean().optional(),
  })
  .strict();

export const RunbookSchema = z
  .object({
    version: z.literal(1, { message: 'must be 1 (the only runbook version so far)' }),
    name,
    target: z
      .object({
        name,
        root: z.string().min(1, 'must be the folder standing in for the server, e.g. "./target"'),
        image: z.string().min(1, 'must name the image the rebuild installs, e.g. "Windows Server 2025 Datacenter"'),
      })
      .strict(),
    infra: z
      .object({
        kind: z.literal('sandbox', { message: 'must be "sandbox" (the Pulumi driver is configured through stacks/)' }),
        provingGround: z.string().min(1),
        rollback: z.string().min(1).default('./rollback'),
        currentImage: z.string().min(1).default('Windows Server 2016 Standard'),
      })
      .strict(),
    declared: z
      .object({
        folders: z.array(relPath).default([]),
        databases: z
          .array(z.object({ name: z.string().min(1), engine: z.enum(['sqlite']), location: relPath.optional() }).strict())
          .default([]),
      })
      .strict()
      .default({ folders: [], databases: [] }),
    vendorJobs: z.array(VendorJobSchema).default([]),
    discovery: z
      .object({
        roots: z.array(relPath).min(1, 'must list at least one folder to search, e.g. ["."]'),
        depth: z.number().int().min(1).max(4).default(1),
        exclude: z.array(relPath).default([]),
      })
      .strict(),
    methods: z
      .object({
        folders: z.array(z.enum(FOLDER_METHODS)).min(1).default(['file-mirror']),
        databases: z
          .object({ sqlite: z.array(z.enum(['sqlite-backup-api', 'sqlite-sql-dump'])).min(1).default(['sqlite-backup-api', 'sqlite-sql-dump']) })
          .strict()
          .default({ sqlite: ['sqlite-backup-api', 'sqlite-sql-dump'] }),
      })
      .strict()
      .default({ folders: ['file-mirror'], databases: { sqlite: ['sqlite-backup-api', 'sqlite-sql-dump'] } }),
    vaults: z.array(VaultSchema).min(1, 'must list at least one vault (the default policy needs two)'),
    policy: PolicySchema.default({}),
    overrides: z.array(OverrideSchema).default([]),
    manualSteps: z.array(ManualStepSchema).default([]),
    permit: z.object({ validForMinutes: z.number().int().positive().max(24 * 60).default(120) }).strict().default({ validForMinutes: 120 }),
  })
  .strict();

export type RawRunbook = z.input<typeof RunbookSchema>;
export type ParsedRunbook = z.output<typeof RunbookSchema>;
