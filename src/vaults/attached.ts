import { SIDECAR_NAME } from '../engines/mssql/artifact.ts';
import type { Manifest } from '../core/types.ts';
import type { RecordedBlob } from './recorded-blob.ts';
import type { VaultReader } from './vault.ts';

/**
 * The blobs an artifact keeps in vault `v` outside its object store, as its
 * own documents record them: today SQL Server's URL stripes (method
 * mssql-native-url), which the sidecar (`rubicon-mssql.json`, an object of
 * the artifact in this vault) lists under `url.stripes` when `url.vault` is
 * this vault. [] for every other artifact. Reads the sidecar through the
 * vault (its SHA-256 checked by `read`); throws what `read` throws (the
 * copy grading turns that into the copy's status). Read-only.
 */
export async function attachedBlobsOf(v: VaultReader, manifest: Manifest): Promise<RecordedBlob[]> {
  if (manifest.format !== 'mssql-bak') return [];
  const entry = manifest.entries.find((e) => e.path === SIDECAR_NAME);
  if (!entry) return [];
  const chunks: Uint8Array[] = [];
  for await (const c of v.read(entry.sha256)) chunks.push(c);
  const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { url?: { vault?: unknown; stripes?: unknown } };
  if (!doc.url || doc.url.vault !== v.info.name || !Array.isArray(doc.url.stripes)) return [];
  return doc.url.stripes.flatMap((x: unknown) => {
    const s = x as Partial<RecordedBlob>;
    if (typeof s.blob !== 'string' || typeof s.bytes !== 'number') return [];
    return [{ blob: s.blob, bytes: s.bytes, ...(typeof s.etag === 'string' ? { etag: s.etag } : {}), ...(typeof s.contentMd5 === 'string' ? { contentMd5: s.contentMd5 } : {}) }];
  });
}
