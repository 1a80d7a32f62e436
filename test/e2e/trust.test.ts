import { appendFile, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JournalEvent, JournalRecord } from '../../src/core/events.ts';
import { recordSigner } from '../../src/run/audit.ts';
import { recordHash } from '../../src/run/journal.ts';
import { buildSandbox } from '../../src/sandbox/estate.ts';
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
});
