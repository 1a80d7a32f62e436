import type { JournalRecord } from '../core/events.ts';
import type { Verifier } from '../trust/keys.ts';
import type { Vault } from '../vaults/vault.ts';
import { journalSigningBytes } from './audit.ts';

/**
 * Journal heads in the vaults (issue: evidence that can be trusted, point 4).
 *
 * The journal is signed record by record, but whoever holds the signing key
 * (a pipeline's secret, an engineer's file) can still rewrite the local
 * journal and sign it again. So at the two moments that matter (the gate
 * passed, the landing finished) the head of the journal (its last record's
 * seq, hash and signature) is also written into every vault that keeps run
 * documents. The vaults are off the orchestrator (and WORM where the vault
 * kind allows it), so a journal rewritten afterwards disagrees with them,
 * and `rubicon audit` says where.
 *
 * A head carries the record's own signature: it needs no key of its own, and
 * a head planted in a vault by someone without the key is told apart from a
 * rewritten journal.
 */
export type HeadStage = 'gate' | 'landed';

export interface JournalHead {
  kind: 'rubicon-journal-head';
  v: 1;
  runId: string;
  stage: HeadStage;
  seq: number;
  hash: string;
  /** The journal record's own signature (base64), '' when the run was unsigned. */
  sig: string;
  at: string;
}

const HASH = /^[0-9a-f]{64}$/;

/** The document name of a head inside a run's documents (one per stage and record: a resumed run may pass its gate again). */
export function headName(h: Pick<JournalHead, 'stage' | 'seq'>): string {
  return `head-${h.stage}-${h.seq}`;
}

export function headOf(runId: string, stage: HeadStage, last: JournalRecord): JournalHead {
  return { kind: 'rubicon-journal-head', v: 1, runId, stage, seq: last.seq, hash: last.hash, sig: last.sig ?? '', at: last.at };
}

export function encodeHead(h: JournalHead): Uint8Array {
  return Buffer.from(`${JSON.stringify(h)}\n`);
}

/** Parses a stored head; undefined when it is not one (the caller names the file). Never throws. */
export function parseHead(data: Uint8Array): JournalHead | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.kind !== 'rubicon-journal-head' || o.v !== 1) return undefined;
  if (typeof o.runId !== 'string' || (o.stage !== 'gate' && o.stage !== 'landed')) return undefined;
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 0) return undefined;
  if (typeof o.hash !== 'string' || !HASH.test(o.hash) || typeof o.sig !== 'string' || typeof o.at !== 'string') return undefined;
  return { kind: 'rubicon-journal-head', v: 1, runId: o.runId, stage: o.stage, seq: o.seq, hash: o.hash, sig: o.sig, at: o.at };
}

export interface StoredHeads {
  stored: string[];
  failed: { vault: string; reason: string }[];
}

/**
 * Writes the head into every vault that keeps run documents. Never throws
 * for one vault: what failed is returned (the caller decides whether the
 * crossing can go on without it). Idempotent (a vault keeps one document
 * per name).
 */
export async function storeHead(vaults: readonly Vault[], head: JournalHead): Promise<StoredHeads> {
  const out: StoredHeads = { stored: [], failed: [] };
  const data = encodeHead(head);
  await Promise.all(
    vaults.map(async (v) => {
      if (!v.putRunDocument) return;
      try {
        await v.putRunDocument(head.runId, headName(head), data);
        await v.sync();
        out.stored.push(v.info.name);
      } catch (e) {
        out.failed.push({ vault: v.info.name, reason: (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300) });
      }
    }),
  );
  out.stored.sort();
  out.failed.sort((a, b) => (a.vault < b.vault ? -1 : 1));
  return out;
}

/** What `rubicon audit` found comparing the journal with the heads the vaults hold. */
export interface HeadFinding {
  vault: string;
  /** Where the document is (file, blob, snapshot), for the auditor. */
  where: string;
  problem: 'unreadable' | 'forged' | 'other-run' | 'truncated' | 'rewritten' | 'missing';
  message: string;
}

export interface HeadCheck {
  /** Heads that agree with the journal, per vault. */
  agreed: { vault: string; stage: HeadStage; seq: number }[];
  findings: HeadFinding[];
}

/**
 * Compares the journal with the heads found in the vaults. Pure; never
 * throws. A head must be signed by the run's key (else it was planted:
 * `forged`), name this run, and equal the journal's record at its seq
 * (else the journal was cut, `truncated`, or rewritten, `rewritten`).
 * Every `journal.head.stored` the journal itself records must be found in
 * the vaults it names (else `missing`: a vault lost it, or the journal
 * claims what never happened).
 */
export function compareHeads(
  runId: string,
  records: readonly JournalRecord[],
  found: readonly { vault: string; where: string; data: Uint8Array }[],
  verifier: Verifier | undefined,
): HeadCheck {
  const bySeq = new Map(records.map((r) => [r.seq, r]));
  const last = records.at(-1)?.seq ?? -1;
  const agreed: HeadCheck['agreed'] = [];
  const findings: HeadFinding[] = [];
  const seen = new Set<string>();
  for (const f of found) {
    const h = parseHead(f.data);
    if (h) seen.add(`${f.vault}\0${h.seq}`);
    if (!h) {
      findings.push({ vault: f.vault, where: f.where, problem: 'unreadable', message: `vault '${f.vault}': ${f.where} is not a journal head` });
      continue;
    }
    if (h.runId !== runId) {
      findings.push({ vault: f.vault, where: f.where, problem: 'other-run', message: `vault '${f.vault}': ${f.where} names run ${h.runId}, not ${runId}` });
      continue;
    }
    if (verifier) {
      let ok = false;
      try {
        const sig = Buffer.from(h.sig, 'base64');
        ok = sig.length === 64 && verifier.verify(journalSigningBytes(h.seq, h.hash), sig);
      } catch {
        ok = false;
      }
      if (!ok) {
        findings.push({ vault: f.vault, where: f.where, problem: 'forged', message: `vault '${f.vault}': the head at ${f.where} (record ${h.seq}) is not signed by key ${verifier.keyId}: it was not written by this run` });
        continue;
      }
    }
    const r = bySeq.get(h.seq);
    if (!r) {
      findings.push({
        vault: f.vault,
        where: f.where,
        problem: 'truncated',
        message: `vault '${f.vault}' holds the journal head after the ${h.stage === 'gate' ? 'gate' : 'landing'} at record ${h.seq}, but this journal ends at record ${last}: records were removed`,
      });
      continue;
    }
    if (r.hash !== h.hash) {
      findings.push({
        vault: f.vault,
        where: f.where,
        problem: 'rewritten',
        message: `record ${h.seq} (${(r.event as { type?: string }).type ?? '?'}) differs from the journal head vault '${f.vault}' kept after the ${h.stage === 'gate' ? 'gate' : 'landing'} (${h.hash.slice(0, 12)}…, here ${r.hash.slice(0, 12)}…): the journal was rewritten`,
      });
      continue;
    }
    agreed.push({ vault: f.vault, stage: h.stage, seq: h.seq });
  }
  for (const r of records) {
    const e = r.event;
    if (e.type !== 'journal.head.stored') continue;
    for (const v of e.vaults) {
      if (!seen.has(`${v}\0${e.seq}`)) {
        findings.push({
          vault: v,
          where: headName(e),
          problem: 'missing',
          message: `record ${r.seq} says vault '${v}' keeps the journal head at record ${e.seq}, but the vault does not hold it (removed from the vault, or the record is not true)`,
        });
      }
    }
  }
  return { agreed, findings };
}
