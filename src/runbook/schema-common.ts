import { z } from 'zod';

/** Field schemas shared by the runbook's sections (kept apart so the sections can import them without a cycle). */

export const relPath = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => !p.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(p), {
    message: 'must be relative to the target root (no leading "/" or drive letter)',
  })
  .refine((p) => !p.split(/[\\/]/).includes('..'), { message: 'must not contain ".."' });

/** The NAME of an environment variable (never its value). */
export const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be the NAME of an environment variable (letters, digits, "_"), e.g. RUBICON_MSSQL_PASSWORD: the secret itself never goes into the runbook');

