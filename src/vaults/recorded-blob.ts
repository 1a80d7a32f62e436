/**
 * Blobs an artifact keeps in an azure-blob vault's container outside the
 * object store (SQL Server's URL stripes), as recorded at capture, and the
 * rule that grades one against what the service says now. Pure, and free of
 * the Azure SDK (the SQL Server engine and the prover import it without
 * loading it).
 */
/** A blob of the container as recorded at capture (SQL Server's stripe): its size, the service's ETag and Content-MD5 (base64). */
export interface RecordedBlob {
  blob: string;
  bytes: number;
  etag?: string;
  contentMd5?: string;
}

/**
 * A recorded blob against what the service says now; undefined when it is
 * as recorded. Pure. The MD5 is the content check (the service's stored
 * Content-MD5; a rewrite by Put Blob gets a new one, by Put Block List none);
 * the ETag catches any rewrite, of the data or the properties.
 */
export function gradeRecordedBlob(rec: Omit<RecordedBlob, 'blob'>, now: { bytes: number; etag?: string; contentMd5?: string }): { status: 'size-invalid' | 'checksum-mismatch'; detail: string } | undefined {
  if (now.bytes !== rec.bytes) return { status: 'size-invalid', detail: `${now.bytes} bytes, ${rec.bytes} at capture` };
  if (rec.contentMd5 && now.contentMd5 !== rec.contentMd5) {
    return { status: 'checksum-mismatch', detail: `was altered after upload: the service reports Content-MD5 ${now.contentMd5 ?? '(none)'}, ${rec.contentMd5} at capture` };
  }
  if (rec.etag && now.etag !== rec.etag) return { status: 'checksum-mismatch', detail: `was rewritten after capture (ETag ${now.etag ?? '(none)'}, ${rec.etag} at capture)` };
  return undefined;
}

