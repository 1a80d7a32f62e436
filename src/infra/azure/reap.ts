/**
 * Proving grounds are disposable and hold restored copies of production data:
 * none may outlive its TTL. Pure TTL arithmetic plus `reap`, which the CLI's
 * `rubicon reap` calls with a port over the real stacks.
 */

/** Tag names on every proving-ground resource. */
export const TTL_TAG = 'rubicon-ttl';
export const CREATED_AT_TAG = 'rubicon-created-at';
export const EXPIRES_AT_TAG = 'rubicon-expires-at';
export const RUN_TAG = 'rubicon-run';

export interface ProvingGroundRecord {
  /** The name the port destroys it by (the stack or the proving ground's name). */
  name: string;
  /** The TTL tag's value: a duration (`8h`, `90m`, `2d`). */
  ttlTag: string;
  /** ISO time it was provisioned. */
  createdAt: string;
}

/** Pure: `8h` / `90m` / `2d` / `1w` → milliseconds; undefined when malformed. */
export function parseTtl(ttl: string): number | undefined {
  const m = /^\s*(\d+)\s*([mhdw])\s*$/.exec(ttl);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 'm' | 'h' | 'd' | 'w'];
  return n > 0 ? n * unit : undefined;
}

/** Pure: the tags that carry a proving ground's lifetime. */
export function ttlTags(p: { runId: string; createdAt: string; ttlHours: number }): Record<string, string> {
  const created = Date.parse(p.createdAt);
  const tags: Record<string, string> = { [TTL_TAG]: `${p.ttlHours}h`, [RUN_TAG]: p.runId, [CREATED_AT_TAG]: p.createdAt };
  if (!Number.isNaN(created)) tags[EXPIRES_AT_TAG] = new Date(created + p.ttlHours * 3_600_000).toISOString();
  return tags;
}

export interface ExpiryVerdict {
  name: string;
  expired: boolean;
  reason: string;
}

/**
 * Pure: why each proving ground is or is not past its TTL. A proving ground
 * whose TTL or creation time cannot be read counts as expired: it holds
 * copies of production data and nobody can say how long it should live.
 */
export function expiryVerdicts(provingGrounds: ProvingGroundRecord[], now: Date): ExpiryVerdict[] {
  return provingGrounds.map((p) => {
    const ttl = parseTtl(p.ttlTag);
    const created = Date.parse(p.createdAt);
    if (ttl === undefined) return { name: p.name, expired: true, reason: `TTL tag "${p.ttlTag}" is not a duration like 8h: reaped to be safe` };
    if (Number.isNaN(created)) return { name: p.name, expired: true, reason: `creation time "${p.createdAt}" is not an ISO time: reaped to be safe` };
    const expiresAt = created + ttl;
    return expiresAt <= now.getTime()
      ? { name: p.name, expired: true, reason: `expired at ${new Date(expiresAt).toISOString()}` }
      : { name: p.name, expired: false, reason: `lives until ${new Date(expiresAt).toISOString()}` };
  });
}

/** Pure: names of the proving grounds past their TTL (or with an unreadable TTL), in input order. */
export function findExpired(provingGrounds: ProvingGroundRecord[], now: Date): string[] {
  return expiryVerdicts(provingGrounds, now)
    .filter((v) => v.expired)
    .map((v) => v.name);
}

export interface ReapPort {
  /** Every live proving ground this operator can see. Read-only. */
  listProvingGrounds(): Promise<ProvingGroundRecord[]>;
  /** Destroys one proving ground. Destructive; idempotent (an absent one is a no-op). */
  destroyProvingGround(name: string): Promise<void>;
}

export interface ReapResult {
  destroyed: string[];
  kept: ExpiryVerdict[];
  failed: { name: string; message: string }[];
  verdicts: ExpiryVerdict[];
}

/**
 * Destroys every proving ground past its TTL. Destructive for those only;
 * idempotent. One failure does not stop the others: it is reported in
 * `failed` and the caller decides the exit code.
 */
export async function reap(port: ReapPort, now: Date): Promise<ReapResult> {
  const verdicts = expiryVerdicts(await port.listProvingGrounds(), now);
  const result: ReapResult = { destroyed: [], kept: verdicts.filter((v) => !v.expired), failed: [], verdicts };
  for (const v of verdicts.filter((x) => x.expired)) {
    try {
      await port.destroyProvingGround(v.name);
      result.destroyed.push(v.name);
    } catch (e) {
      result.failed.push({ name: v.name, message: e instanceof Error ? e.message : String(e) });
    }
  }
  return result;
}
