import type { JournalRecord } from '../core/events.ts';
import { signingBytes } from '../trust/canonical.ts';
import type { Signer, Verifier } from '../trust/keys.ts';

/**
 * Authenticated journals (issue: evidence that can be trusted). The hash
 * chain alone has no key: anyone who can write the state directory can
 * append a `gate.evaluated {passed: true}` and recompute every hash. So each
 * record also carries an Ed25519 signature, by the run's signing key (which
 * never lives in the state directory: src/trust/keyring.ts), over
 * `rubicon/journal/v1` + canonical JSON {seq, hash}. The hash covers the
 * previous hash, the time and the event, so one signature per record
 * authenticates the whole history up to it.
 *
 * Contract: pure; never throws for bad input; names the FIRST record that
 * fails (a missing or invalid signature, or a chain break reported by the
 * reader), so an auditor knows from where on the history cannot be trusted.
 */
export const JOURNAL_SIGNATURE_DOMAIN = 'rubicon/journal/v1';

export function journalSigningBytes(seq: number, hash: string): Buffer {
  return signingBytes(JOURNAL_SIGNATURE_DOMAIN, { seq, hash });
}

export function recordSigner(signer: Signer): (seq: number, hash: string) => string {
  return (seq, hash) => signer.sign(journalSigningBytes(seq, hash)).toString('base64');
}

export type AuditResult =
  | { ok: true; records: number; head: string; keyId: string }
  | { ok: false; records: number; firstBad: { seq: number; type: string; reason: string } };

export function auditRecords(records: readonly JournalRecord[], verifier: Verifier): AuditResult {
  for (const r of records) {
    const type = (r.event as { type?: string })?.type ?? '?';
    if (typeof r.sig !== 'string' || r.sig === '') return { ok: false, records: records.length, firstBad: { seq: r.seq, type, reason: 'it carries no signature' } };
    const sig = Buffer.from(r.sig, 'base64');
    if (sig.length !== 64 || !verifier.verify(journalSigningBytes(r.seq, r.hash), sig)) {
      return { ok: false, records: records.length, firstBad: { seq: r.seq, type, reason: `its signature is not one by key ${verifier.keyId}` } };
    }
  }
  return { ok: true, records: records.length, head: records.at(-1)?.hash ?? '', keyId: verifier.keyId };
}
