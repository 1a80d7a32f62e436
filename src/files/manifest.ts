import { createHash } from 'node:crypto';
import { z } from 'zod';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, relativePathProblem } from '../core/paths.ts';
import type { Manifest, ManifestEntry } from '../core/types.ts';
import type { VaultReader } from '../vaults/vault.ts';

/**
 * Manifests: the content-hash list of an artifact, stored in every vault as
 * a content-addressed JSON object.
 *
 * Contract: encodeManifest is deterministic — the same logical manifest
 * always gives the same bytes and so the same hash (fixed key order, entries
 * sorted by path, no timestamps other than the files' own mtimes). That is
 * what makes a redo of a capture after a crash produce the same manifest hash.
 */

const entrySchema = z
  .object({
    path: z.string().min(1),
    size: z.number().int().nonnegative(),
    mtimeMs: z.number().finite(),
    mode: z.number().int().min(0).max(0o7777),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256'),
  })
  .strict();

export const manifestSchema = z
  .object({
    version: z.literal(1),
    artifactId: z.string().min(1),
    itemId: z.string().min(1),
    method: z.string().min(1),
    entries: z.array(entrySchema),
    format: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    let prev: string | undefined;
    m.entries.forEach((e, i) => {
      const problem = relativePathProblem(e.path);
      if (problem) ctx.addIssue({ code: 'custom', path: ['entries', i, 'path'], message: `'${e.path}' ${problem}` });
      if (prev !== undefined && comparePaths(prev, e.path) >= 0) {
        ctx.addIssue({ code: 'custom', path: ['entries', i, 'path'], message: `'${e.path}' is out of order or duplicated (after '${prev}')` });
      }
      prev = e.path;
    });
  });

/** Sorts entries by path (comparePaths); throws INTERNAL on a duplicate path. Pure. */
export function sortEntries(entries: readonly ManifestEntry[]): ManifestEntry[] {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] as ManifestEntry).path === (sorted[i - 1] as ManifestEntry).path) {
      throw new RubiconError('INTERNAL', `manifest has the path '${(sorted[i] as ManifestEntry).path}' twice`);
    }
  }
  return sorted;
}

/** Deterministic bytes of a manifest: fixed key order, entries sorted by path, compact JSON + newline. */
export function encodeManifest(m: Manifest): Uint8Array {
  const doc: Record<string, unknown> = {
    version: 1,
    artifactId: m.artifactId,
    itemId: m.itemId,
    method: m.method,
  };
  if (m.format !== undefined) doc.format = m.format;
  doc.entries = sortEntries(m.entries).map((e) => ({ path: e.path, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, sha256: e.sha256 }));
  return new TextEncoder().encode(`${JSON.stringify(doc)}\n`);
}

export function manifestHashOf(m: Manifest): string {
  return createHash('sha256').update(encodeManifest(m)).digest('hex');
}

/** Parses and schema-checks manifest bytes; `where` names the source in the error (vault and object). */
export function parseManifest(bytes: Uint8Array, where: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new RubiconError('VAULT_CORRUPT', `${where} is not a JSON manifest; capture the artifact again`, { cause: e });
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new RubiconError('VAULT_CORRUPT', `${where} is not a valid Rubicon manifest (${first}); capture the artifact again`, {
      details: { issues: parsed.error.issues.length },
    });
  }
  const m = parsed.data;
  return {
    version: 1,
    artifactId: m.artifactId,
    itemId: m.itemId,
    method: m.method,
    entries: m.entries,
    ...(m.format !== undefined ? { format: m.format } : {}),
  };
}

/**
 * Reads a manifest object from a vault: hash-checked by the vault's read
 * (VAULT_CORRUPT / VAULT_MISSING_OBJECT), then schema-checked (VAULT_CORRUPT
 * naming the field). Read-only.
 */
export async function readManifest(vault: VaultReader, manifestHash: string): Promise<Manifest> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of vault.read(manifestHash)) {
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  const bytes = Buffer.concat(chunks, size);
  return parseManifest(bytes, `manifest ${manifestHash} in vault '${vault.info.name}'`);
}
