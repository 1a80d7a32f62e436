import { appendFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JournalEvent, JournalRecord } from '../../src/core/events.ts';
import { recordSigner } from '../../src/run/audit.ts';
import { recordHash } from '../../src/run/journal.ts';
import { buildSandbox, sandboxLayout } from '../../src/sandbox/estate.ts';
import { defaultKeyDir } from '../../src/trust/keyring.ts';
import { loadSigner } from '../../src/trust/keys.ts';
import { cli, diffTrees, journalOf, tempDir, treeState } from './helpers.ts';

/**
 * The point of no return must not trust what a file says: a refused run
 * whose journal is extended by hand with a passing gate and a permit (a
 * hash chain recomputed, as anyone with write access to the state
 * directory can) must not cross, and `rubicon audit` must name the first
 * forged record.
 */

async function refusedRun() {
  const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 200 });
  // Damage the live database: every database artifact fails its proof, the gate refuses.
  const fh = await open(path.join(L.target, 'mssql/data/ehr.db'), 'r+');
  await fh.write(Buffer.alloc(8192, 0x5a), 0, 8192, 20 * 4096);
  await fh.close();
  const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json']);
  expect(r.exitCode, r.stderr).toBe(2);
  const runId = (r.events[0] as { event: { runId: string } }).event.runId;
  return { L, runId, journalFile: path.join(L.stateDir, 'runs', runId, 'journal.jsonl') };
}

/** Appends events with a correct hash chain, as an attacker with write access would; `sign` also signs them (an attacker who stole the key). */
async function forge(file: string, events: JournalEvent[], sign?: (seq: number, hash: string) => string): Promise<void> {
  const records = (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
  let prev = records.at(-1)!.hash;
  let seq = records.at(-1)!.seq;
  let text = '';
  for (const event of events) {
    seq += 1;
    const at = new Date().toISOString();
    const hash = recordHash(prev, seq, at, event);
    text += JSON.stringify({ seq, at, event, prev, hash, ...(sign ? { sig: sign(seq, hash) } : {}) }) + '\n';
    prev = hash;
  }
  await appendFile(file, text);
}

function forgedPass(records: JournalRecord[]): JournalEvent[] {
  const started = records[0]!.event as Extract<JournalEvent, { type: 'run.started' }>;
  const proofs = records.flatMap((r) => (r.event.type === 'proof.recorded' ? [r.event.proof] : []));
  const now = new Date();
  return [
    { type: 'run.completed', outcome: 'failed', exitCode: 1 },
    { type: 'run.resumed', pid: 1 },
    { type: 'gate.evaluated', result: { passed: true, evaluatedAt: now.toISOString(), results: [{ rule: 'inventory.empty', status: 'pass', reason: 'forged', evidence: [] }], reasons: [] } },
    {
      type: 'permit.issued',
      permit: {
        id: 'permit-forged',
        runId: started.runId,
        target: started.target,
        image: 'Windows Server 2025 Datacenter',
        proofIds: proofs.map((p) => p.id),
        proofSetHash: 'f'.repeat(64),
        issuedAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + 3600_000).toISOString(),
      },
    },
  ];
}

describe('evidence that can be trusted', () => {
  it('a forged gate and permit appended with a recomputed hash chain: audit names the first forged record, resume refuses, nothing is wiped', async () => {
    const { L, runId, journalFile } = await refusedRun();
    const ok = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/intact: \d+ records, hash chain and every signature verified/);

    const before = await treeState(L.target);
    const records = await journalOf(L.stateDir, runId);
    await forge(journalFile, forgedPass(records));
    const bad = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain(`record ${records.length + 1} (run.completed) it carries no signature`);

    const r = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr + r.stdout).toMatch(/EVIDENCE_INVALID|cannot be trusted/);
    expect(diffTrees(before, await treeState(L.target))).toEqual([]);
    const after = await journalOf(L.stateDir, runId);
    expect(after.some((x) => x.event.type === 'crossing.started')).toBe(false);
  });

  it('even signed with the stolen key, a forged passing gate does not cross: the crossing evaluates the gate itself from the facts', async () => {
    const { L, runId, journalFile } = await refusedRun();
    const before = await treeState(L.target);
    const signer = loadSigner({ file: path.join(defaultKeyDir(), 'signing.pem') });
    await forge(journalFile, forgedPass(await journalOf(L.stateDir, runId)), recordSigner(signer));
    const r = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    // The forged permit carries no valid signature either, but the crossing's own gate refuses first.
    expect(r.exitCode, r.stderr).toBe(2);
    expect((r.summary as { outcome: string }).outcome).toBe('refused');
    const after = await journalOf(L.stateDir, runId);
    expect(after.some((x) => x.event.type === 'crossing.started')).toBe(false);
    // The crossing's own evaluation is recorded, and it refuses.
    const lastGate = after.filter((x) => x.event.type === 'gate.evaluated').at(-1)?.event as Extract<JournalEvent, { type: 'gate.evaluated' }>;
    expect(lastGate.result.passed).toBe(false);
    expect(after.at(-1)?.event).toMatchObject({ type: 'run.completed', outcome: 'refused', exitCode: 2 });
    expect(diffTrees(before, await treeState(L.target))).toEqual([]);
  });

  it('a record edited in place (chain recomputed from there) is named by audit', async () => {
    const { L, runId, journalFile } = await refusedRun();
    const records = (await readFile(journalFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
    // Rewrite history from record 5 on: change a note, recompute every hash after it, keep the old signatures.
    const i = records.findIndex((x) => x.seq >= 5);
    const edited = records.slice(0, i);
    let prev = edited.at(-1)!.hash;
    for (const r of records.slice(i)) {
      const event = r.seq === records[i]!.seq ? ({ type: 'note', level: 'info', message: 'nothing to see' } as JournalEvent) : r.event;
      const hash = recordHash(prev, r.seq, r.at, event);
      edited.push({ ...r, event, prev, hash });
      prev = hash;
    }
    const { writeFile } = await import('node:fs/promises');
    await writeFile(journalFile, edited.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const bad = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain(`record ${records[i]!.seq} (note) its signature is not one by key`);
  });

  it('the journal heads in the vaults: audit finds a journal rewritten and re-signed with the stolen key, a journal cut short, and a planted head', async () => {
    const L = sandboxLayout(path.join(await tempDir(), 'estate'));
    const r = await cli(['demo', '--dir', L.dir, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const runId = (r.events[0] as { event: { runId: string } }).event.runId;
    const journalFile = path.join(L.stateDir, 'runs', runId, 'journal.jsonl');
    const original = await readFile(journalFile, 'utf8');
    const records = original.split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
    const stored = records.filter((x) => x.event.type === 'journal.head.stored').map((x) => x.event as Extract<JournalEvent, { type: 'journal.head.stored' }>);
    expect(stored.map((e) => [e.stage, e.vaults])).toEqual([['gate', ['nas', 'offsite']], ['landed', ['nas', 'offsite']]]);
    const [gateHead, landedHead] = stored as [(typeof stored)[0], (typeof stored)[0]];
    // The gate's head is the record right after the permit; the landing's is after the last landing record.
    expect(records.find((x) => x.seq === gateHead.seq)!.event.type).toBe('permit.issued');

    const ok = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`journal heads in the vaults agree: nas (gate at record ${gateHead.seq}), nas (landed at record ${landedHead.seq}), offsite (gate at record ${gateHead.seq}), offsite (landed at record ${landedHead.seq})`);

    // 1. Rewritten before the gate and signed again with the run's own key (stolen): every signature verifies, the vaults disagree.
    const signer = loadSigner({ file: path.join(defaultKeyDir(), 'signing.pem') });
    const sign = recordSigner(signer);
    const i = records.findIndex((x) => x.event.type === 'proof.recorded');
    const rewritten: JournalRecord[] = records.slice(0, i);
    let prev = rewritten.at(-1)!.hash;
    for (const x of records.slice(i)) {
      const event = x.seq === records[i]!.seq ? ({ type: 'note', level: 'info', message: 'a proof that never was' } as JournalEvent) : x.event;
      const hash = recordHash(prev, x.seq, x.at, event);
      rewritten.push({ ...x, event, prev, hash, sig: sign(x.seq, hash) });
      prev = hash;
    }
    await writeFile(journalFile, rewritten.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const bad = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(bad.exitCode, bad.stdout).toBe(1);
    expect(bad.stdout).toMatch(/journal signed: \d+ records, hash chain and every signature verified/);
    expect(bad.stdout).toContain(`NOT INTACT: record ${gateHead.seq} (permit.issued) differs from the journal head vault 'nas' kept after the gate`);
    expect(bad.stdout).toContain("vault 'offsite' kept after the landing");
    expect(bad.stdout).toMatch(/the journal was rewritten/);
    // The journal alone cannot tell.
    const alone = await cli(['audit', runId, '--state-dir', L.stateDir, '--journal-only']);
    expect(alone.exitCode, alone.stdout).toBe(0);

    // 2. Cut short after the gate (the landing's records removed): no signature is wrong, the vaults know there was more.
    const cut = records.filter((x) => x.seq <= gateHead.seq + 5);
    await writeFile(journalFile, cut.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const short = await cli(['audit', runId, '--state-dir', L.stateDir, '--json']);
    expect(short.exitCode).toBe(1);
    const j = JSON.parse(short.stdout) as { ok: boolean; vaults: { findings: { vault: string; problem: string }[] } };
    expect(j.ok).toBe(true);
    expect(j.vaults.findings.map((f) => `${f.vault}:${f.problem}`).sort()).toEqual(['nas:truncated', 'offsite:truncated']);

    // 3. The journal as it was, and a head planted in one vault by someone without the key.
    await writeFile(journalFile, original);
    const planted = path.join(L.vaults[0]!, 'runs', runId, 'head-gate-3.json');
    await mkdir(path.dirname(planted), { recursive: true });
    await writeFile(planted, JSON.stringify({ kind: 'rubicon-journal-head', v: 1, runId, stage: 'gate', seq: 3, hash: 'a'.repeat(64), sig: Buffer.alloc(64).toString('base64'), at: new Date().toISOString() }));
    const forged = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(forged.exitCode).toBe(1);
    expect(forged.stdout).toContain(`vault 'nas': the head at ${planted} (record 3) is not signed by key`);

    // 4. The runbook moved away: audit reads the run's copy as if it were where it was (its ./vaults paths resolve there, not in the state directory).
    await rm(planted);
    await rename(L.runbook, `${L.runbook}.moved`);
    const fromCopy = await cli(['audit', runId, '--state-dir', L.stateDir]);
    expect(fromCopy.exitCode, fromCopy.stdout).toBe(0);
    expect(fromCopy.stdout).toContain(`journal heads in the vaults agree: nas (gate at record ${gateHead.seq})`);
  }, 300_000);
});
