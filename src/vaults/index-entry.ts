import type { ArtifactIndexEntry } from './vault.ts';

/**
 * The artifact index document (ArtifactIndexEntry) as a FilesystemVault
 * stores it, checked by hand: a capture writes one per vault and a delta
 * reads one, and loading a schema library costs a fresh process more than
 * the whole check (docs/files.md). `safeParse`/`parse` keep the shape the
 * vault used with zod: issues carry the path of the field at fault.
 */
export interface IndexIssue {
  path: (string | number)[];
  message: string;
}

type Result = { success: true; data: ArtifactIndexEntry } | { success: false; error: { issues: IndexIssue[] } };

const HASH = /^[0-9a-f]{64}$/;

function check(v: unknown): Result {
  const issues: IndexIssue[] = [];
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObj(v)) return { success: false, error: { issues: [{ path: [], message: 'must be an object' }] } };
  const str = (k: string, min = 0): void => {
    if (typeof v[k] !== 'string' || (v[k] as string).length < min) issues.push({ path: [k], message: min > 0 ? 'must be a non-empty string' : 'must be a string' });
  };
  str('artifactId', 1);
  str('runId');
  str('itemId');
  str('method');
  str('capturedAt');
  if (typeof v.manifestHash !== 'string' || !HASH.test(v.manifestHash)) issues.push({ path: ['manifestHash'], message: 'must be a lower-case hex SHA-256' });
  if (v.origin !== undefined && v.origin !== 'rubicon' && v.origin !== 'vendor') issues.push({ path: ['origin'], message: "must be 'rubicon' or 'vendor'" });
  if (v.independenceGroup !== undefined && typeof v.independenceGroup !== 'string') issues.push({ path: ['independenceGroup'], message: 'must be a string' });
  if (v.objectsVerifiedSince !== undefined && (typeof v.objectsVerifiedSince !== 'string' || !Number.isFinite(Date.parse(v.objectsVerifiedSince)))) {
    issues.push({ path: ['objectsVerifiedSince'], message: 'must be an ISO date' });
  }
  const fp = v.sourceFingerprint;
  if (fp !== undefined) {
    if (!isObj(fp) || typeof fp.engine !== 'string' || typeof fp.digest !== 'string' || !Array.isArray(fp.tables)) {
      issues.push({ path: ['sourceFingerprint'], message: 'must be { engine, digest, tables }' });
    } else {
      fp.tables.forEach((t: unknown, i: number) => {
        const ok =
          isObj(t) &&
          typeof t.table === 'string' &&
          typeof t.rows === 'number' &&
          typeof t.hash === 'string' &&
          (t.unhashedColumns === undefined || (Array.isArray(t.unhashedColumns) && t.unhashedColumns.every((c) => typeof c === 'string')));
        if (!ok) issues.push({ path: ['sourceFingerprint', 'tables', i], message: 'must be { table, rows, hash, unhashedColumns? }' });
      });
    }
  }
  if (issues.length > 0) return { success: false, error: { issues } };
  // Unknown keys are dropped, as the schema did.
  const e: ArtifactIndexEntry = {
    artifactId: v.artifactId as string,
    runId: v.runId as string,
    itemId: v.itemId as string,
    method: v.method as string,
    manifestHash: v.manifestHash as string,
    capturedAt: v.capturedAt as string,
  };
  if (v.origin !== undefined) e.origin = v.origin as 'rubicon' | 'vendor';
  if (v.independenceGroup !== undefined) e.independenceGroup = v.independenceGroup as string;
  if (fp !== undefined) e.sourceFingerprint = fp as unknown as NonNullable<ArtifactIndexEntry['sourceFingerprint']>;
  if (v.objectsVerifiedSince !== undefined) e.objectsVerifiedSince = v.objectsVerifiedSince as string;
  if (typeof v.sig === 'string') e.sig = v.sig;
  if (typeof v.keyId === 'string') e.keyId = v.keyId;
  return { success: true, data: e };
}

export const indexEntrySchema = {
  safeParse: check,
  parse(v: unknown): ArtifactIndexEntry {
    const r = check(v);
    if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
    return r.data;
  },
};
