import { describe, expect, it } from 'vitest';
import type { JournalEvent, JournalRecord } from '../../src/core/events.ts';
import { recordSigner } from '../../src/run/audit.ts';
import { compareHeads, encodeHead, headOf, parseHead } from '../../src/run/heads.ts';
import { recordHash } from '../../src/run/journal.ts';
import { generateKeyPair, loadSigner, verifierFrom } from '../../src/trust/keys.ts';

/** compareHeads is pure: every way a journal and the heads in the vaults can disagree, named. */
const RUN = 'r-20261202-010000-abcd';
const generateSigner = () => loadSigner({ env: 'K' }, { K: generateKeyPair().privateKeyPem });
const signer = generateSigner();
const other = generateSigner();
const verifier = verifierFrom(signer.publicKeyPem);

function journal(events: JournalEvent[], sign = recordSigner(signer)): JournalRecord[] {
  let prev = '0'.repeat(64);
  return events.map((event, seq) => {
    const at = new Date(Date.UTC(2026, 11, 2, 1, 0, seq)).toISOString();
    const hash = recordHash(prev, seq, at, event);
    const r = { seq, at, event, prev, hash, sig: sign(seq, hash) };
    prev = hash;
    return r;
  });
}
const note = (m: string): JournalEvent => ({ type: 'note', level: 'info', message: m });
const base = journal([note('a'), note('b'), note('c'), note('d')]);
const at = (records: JournalRecord[], seq: number, stage: 'gate' | 'landed' = 'gate', vault = 'nas') => ({ vault, where: `${vault}:${stage}-${seq}`, data: encodeHead(headOf(RUN, stage, records[seq]!)) });

describe('journal heads against the journal', () => {
  it('heads equal to the journal agree', () => {
    const r = compareHeads(RUN, base, [at(base, 1), at(base, 3, 'landed'), at(base, 1, 'gate', 'offsite')], verifier);
    expect(r.findings).toEqual([]);
    expect(r.agreed).toEqual([
      { vault: 'nas', stage: 'gate', seq: 1 },
      { vault: 'nas', stage: 'landed', seq: 3 },
      { vault: 'offsite', stage: 'gate', seq: 1 },
    ]);
  });

  it('a journal rewritten before a head (and signed again) disagrees with it; one rewritten only after it does not', () => {
    const early = journal([note('a'), note('B'), note('c'), note('d')]);
    expect(compareHeads(RUN, early, [at(base, 1)], verifier).findings.map((f) => f.problem)).toEqual(['rewritten']);
    const late = journal([note('a'), note('b'), note('C'), note('d')]);
    expect(compareHeads(RUN, late, [at(base, 1)], verifier).findings).toEqual([]);
    expect(compareHeads(RUN, late, [at(base, 3, 'landed')], verifier).findings[0]).toMatchObject({ problem: 'rewritten', vault: 'nas' });
  });

  it('a journal cut short is named, with the record the vault knows of', () => {
    const f = compareHeads(RUN, base.slice(0, 2), [at(base, 3, 'landed')], verifier).findings;
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ problem: 'truncated' });
    expect(f[0]!.message).toContain('at record 3, but this journal ends at record 1');
  });

  it('a head signed by another key, or for another run, or not a head at all, is named and not counted as agreeing', () => {
    const planted = journal([note('a'), note('b')], recordSigner(other));
    const forged = compareHeads(RUN, base, [at(planted, 1)], verifier);
    expect(forged.findings.map((x) => x.problem)).toEqual(['forged']);
    expect(forged.agreed).toEqual([]);
    const foreign = { vault: 'nas', where: 'x', data: encodeHead({ ...headOf('r-20261202-020000-ffff', 'gate', base[1]!) }) };
    expect(compareHeads(RUN, base, [foreign], verifier).findings.map((x) => x.problem)).toEqual(['other-run']);
    expect(compareHeads(RUN, base, [{ vault: 'nas', where: 'y', data: Buffer.from('{"kind":"x"}') }], verifier).findings.map((x) => x.problem)).toEqual(['unreadable']);
  });

  it('a head the journal says was stored and the vault no longer holds is missing', () => {
    const events: JournalEvent[] = [note('a'), note('b'), { type: 'journal.head.stored', stage: 'gate', seq: 1, hash: 'x', vaults: ['nas', 'offsite'], failed: [] }];
    const j = journal(events);
    const r = compareHeads(RUN, j, [at(j, 1)], verifier);
    expect(r.findings.map((x) => `${x.vault}:${x.problem}`)).toEqual(['offsite:missing']);
  });

  it('parseHead refuses what is not a head', () => {
    expect(parseHead(encodeHead(headOf(RUN, 'gate', base[1]!)))).toMatchObject({ runId: RUN, seq: 1, stage: 'gate' });
    for (const bad of ['', 'null', '[]', '{"kind":"rubicon-journal-head","v":2}', JSON.stringify({ ...headOf(RUN, 'gate', base[1]!), seq: -1 }), JSON.stringify({ ...headOf(RUN, 'gate', base[1]!), hash: 'ABC' })]) {
      expect(parseHead(Buffer.from(bad))).toBeUndefined();
    }
  });
});
