/**
 * A whole run on shared state: `rubicon rehearse --state azblob://…` on the
 * sandbox estate, SIGKILLed during capture; another agent (its own cache
 * folder) is refused while the dead run's lease lives, then takes over with
 * `rubicon resume RUN_ID --state azblob://…` and finishes; the journal,
 * runbook copy and reports are in the container.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { AzureStateStore } from '../../src/state/azblob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

const run = requireAzurite();
const BIN = fileURLToPath(new URL('../../bin/rubicon.js', import.meta.url));
let az: Azurite;
let tmp: string;
let L: SandboxLayout;

function agent(cache: string, over: NodeJS.ProcessEnv = {}) {
  return { ...process.env, RUBICON_AZBLOB_ENDPOINT: az.accountUrl, AZURE_STORAGE_KEY: AZURITE_KEY, RUBICON_LEASE_SECONDS: '15', XDG_CACHE_HOME: cache, ...over };
}

/** Runs the CLI to its end: exit code and everything it printed. */
function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => resolve({ code, out }));
  });
}
const lastSummary = (out: string) => JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { kind: string; outcome: string; runId: string | null; error?: { code: string; message: string } };

describe.skipIf(!run)(`a run on shared state${run ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  beforeAll(async () => {
    az = await startAzurite();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-runaz-'));
    L = await buildSandbox(path.join(tmp, 'estate'), { patients: 200 });
  }, 120_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('killed on one agent during capture, resumed to the end by another', async () => {
    const container = `fleet-${randomBytes(3).toString('hex')}`;
    const state = `azblob://${AZURITE_ACCOUNT}/${container}/clinic-a`;
    // Agent A: killed as soon as the capture phase starts.
    const a = spawn(process.execPath, [BIN, 'rehearse', '--runbook', L.runbook, '--state', state, '--json'], { env: agent(path.join(tmp, 'agent-a')), stdio: ['ignore', 'pipe', 'inherit'] });
    let runId = '';
    for await (const line of createInterface({ input: a.stdout! })) {
      const e = JSON.parse(line) as { kind: string; event?: { type: string; runId?: string; phase?: string } };
      if (e.event?.type === 'run.started') runId = e.event.runId!;
      if (e.event?.type === 'phase.started' && e.event.phase === 'capture') {
        a.kill('SIGKILL');
        break;
      }
    }
    await new Promise((r) => a.once('exit', r));
    expect(runId).toMatch(/^r-/);

    // An agent without the run's signing key (its own default key): told so plainly, before anything is touched.
    // (Checked once B was refused: run first, it could outlast A's 15 s lease on a loaded machine.)
    let strangerChecked = false;
    const strangerChecks = async () => {
      const stranger = agent(path.join(tmp, 'agent-k'), { RUBICON_KEY_DIR: path.join(tmp, 'keys-of-k') });
      const [k, kAudit] = await Promise.all([cli(['resume', runId, '--state', state, '--json'], stranger), cli(['audit', runId, '--state', state], stranger)]);
      expect(k.code).toBe(3);
      const refusedKey = lastSummary(k.out);
      expect(refusedKey.error).toMatchObject({ code: 'KEY_MISMATCH' });
      expect(refusedKey.error!.message).toMatch(new RegExp(`run ${runId} was started on .+ and its journal names key [0-9a-f]{16} as its signing key; this agent signs with key [0-9a-f]{16} \\(file .+signing\\.pem, this user's own key: the runbook names none\\)`));
      expect(k.out).toContain('trust.signingKey');
      expect(k.out).not.toMatch(/EVIDENCE_INVALID|signature is not one by/);
      expect(kAudit.code).toBe(1);
      expect(kAudit.out).toMatch(/NOT VERIFIED: the run \(started on .+\) names signing key [0-9a-f]{16}, and this machine's key is [0-9a-f]{16}; audit it with --public-key FILE/);
      expect(kAudit.out).not.toContain('NOT INTACT');
      strangerChecked = true;
    };

    // Agent B: refused while A's lease lives (LOCK_HELD, exit 1), then takes over.
    const resume = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const b = spawn(process.execPath, [BIN, 'resume', runId, '--state', state, '--json'], { env: agent(path.join(tmp, 'agent-b')), stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        b.stdout.on('data', (d: Buffer) => (out += d.toString()));
        b.stderr.on('data', (d: Buffer) => (out += d.toString()));
        b.on('exit', (code) => resolve({ code, out }));
      });
    let r = await resume();
    const t0 = Date.now();
    let refusals = 0;
    while (r.out.includes('LOCK_HELD')) {
      refusals++;
      if (refusals === 1) await strangerChecks();
      if (Date.now() - t0 > 60_000) break;
      await new Promise((res) => setTimeout(res, 1000)); // polling for the dead agent's lease to end
      r = await resume();
    }
    expect(refusals).toBeGreaterThan(0);
    expect(strangerChecked).toBe(true);
    const summary = JSON.parse(r.out.trim().split('\n').filter((l) => l.startsWith('{')).at(-1)!) as { kind: string; outcome: string; runId: string };
    expect(summary).toMatchObject({ kind: 'summary', runId, outcome: 'rehearsed' });
    expect(r.code).toBe(0);

    // Everything is in the container: the journal (chain verified), the runbook copy, the reports.
    const store = new AzureStateStore({ accountUrl: az.accountUrl, container, prefix: 'clinic-a', credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), cacheDir: path.join(tmp, 'auditor') });
    const types = (await store.readJournal(runId)).map((x) => x.event.type);
    expect(types.filter((t) => t === 'run.resumed').length).toBeGreaterThanOrEqual(1);
    expect(types.at(-1)).toBe('run.completed');
    const names: string[] = [];
    for await (const b of store.container.listBlobsFlat({ prefix: `clinic-a/runs/${runId}/` })) names.push(b.name.slice(`clinic-a/runs/${runId}/`.length));
    expect(names).toContain('runbook.yaml');
    expect(names.some((n) => n.startsWith('report/'))).toBe(true);
    // Both agents signed what they appended to the shared journal, and an auditor checks it from the store.
    expect((await store.readJournal(runId)).filter((x) => typeof x.sig !== 'string').map((x) => x.seq)).toEqual([]);
    const audit = spawnSync(process.execPath, [BIN, 'audit', runId, '--state', state], { env: agent(path.join(tmp, 'agent-c')), encoding: 'utf8' });
    expect(audit.stdout).toMatch(/intact: \d+ records, hash chain and every signature verified/);
    expect(audit.status).toBe(0);
  }, 300_000);

  it('two pipelines on one target through the same --state: the second, a new run of its own, is refused LOCK_HELD by the lease while the first runs, and starts once it has ended', async () => {
    const container = `pair-${randomBytes(3).toString('hex')}`;
    const state = `azblob://${AZURITE_ACCOUNT}/${container}/clinic-a`;
    // Two agents: their own cache folders and their own machine-wide lock folders (as on two machines),
    // so only the shared lease can keep them apart. A 60 s lease: agent A is paused below.
    const envA = agent(path.join(tmp, 'pair-a'), { RUBICON_LEASE_SECONDS: '60', RUBICON_LOCK_DIR: path.join(tmp, 'locks-a') });
    const envB = agent(path.join(tmp, 'pair-b'), { RUBICON_LEASE_SECONDS: '60', RUBICON_LOCK_DIR: path.join(tmp, 'locks-b') });
    const a = spawn(process.execPath, [BIN, 'rehearse', '--runbook', L.runbook, '--state', state, '--json'], { env: envA, stdio: ['ignore', 'pipe', 'inherit'] });
    const exitedA = new Promise<number | null>((r) => a.once('exit', r));
    let runA = '';
    let linesA = '';
    const reader = createInterface({ input: a.stdout! });
    const capturing = new Promise<void>((resolve) => {
      reader.on('line', (line) => {
        linesA += `${line}\n`;
        const e = JSON.parse(line) as { event?: { type: string; runId?: string; phase?: string } };
        if (e.event?.type === 'run.started') runA = e.event.runId!;
        if (e.event?.type === 'phase.started' && e.event.phase === 'capture') resolve();
      });
    });
    try {
      await capturing;
      // A holds the lease; it is paused so that it cannot end before B tries (its lease outlives the pause).
      a.kill('SIGSTOP');
      const b = await cli(['rehearse', '--runbook', L.runbook, '--state', state, '--json'], envB);
      a.kill('SIGCONT');
      expect(b.code).toBe(1);
      const refused = lastSummary(b.out);
      expect(refused).toMatchObject({ kind: 'summary', runId: null, outcome: 'failed', error: { code: 'LOCK_HELD' } });
      // Refused by the shared lease (naming the holder's run), not by a lock on this machine.
      expect(refused.error!.message).toContain(`locked in ${state} by run ${runA}`);

      expect(await exitedA).toBe(0);
      expect(lastSummary(linesA)).toMatchObject({ runId: runA, outcome: 'rehearsed' });
      // A released its lease on the way out: B's new run takes it at once.
      const again = await cli(['rehearse', '--runbook', L.runbook, '--state', state, '--json'], envB);
      const done = lastSummary(again.out);
      expect(done).toMatchObject({ kind: 'summary', outcome: 'rehearsed' });
      expect(done.runId).not.toBe(runA);
      expect(again.code).toBe(0);
      // Only the two runs that held the lease are in the store; the refused attempt left nothing.
      const store = new AzureStateStore({ accountUrl: az.accountUrl, container, prefix: 'clinic-a', credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), cacheDir: path.join(tmp, 'pair-auditor') });
      expect(await store.listRuns()).toEqual([runA, done.runId].sort());
    } finally {
      a.kill('SIGCONT');
      a.kill('SIGKILL');
    }
  }, 300_000);
});
