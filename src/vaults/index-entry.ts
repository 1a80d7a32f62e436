import { z } from 'zod';

/** Schema of an artifact index document (ArtifactIndexEntry) as a FilesystemVault stores it. Loaded lazily by filesystem.ts. */
export const indexEntrySchema = z.object({
  artifactId: z.string().min(1),
  runId: z.string(),
  itemId: z.string(),
  method: z.string(),
  manifestHash: z.string().regex(/^[0-9a-f]{64}$/),
  capturedAt: z.string(),
  origin: z.enum(['rubicon', 'vendor']).optional(),
  independenceGroup: z.string().optional(),
  /** Kept as recorded (engine-neutral Fingerprint); `rubicon verify` compares restored copies with it. */
  sourceFingerprint: z
    .object({
      engine: z.string(),
      digest: z.string(),
      tables: z.array(z.object({ table: z.string(), rows: z.number(), hash: z.string(), unhashedColumns: z.array(z.string()).optional() })),
    })
    .optional(),
  /** Vault clock from which every object of the artifact was written or checked in this vault (see ArtifactIndexEntry). */
  objectsVerifiedSince: z.string().optional(),
});
