/**
 * Shared run state in Azure Blob (src/state/azblob.ts) against Azurite:
 * real leases, real append-position conditions, real processes racing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { AzureStateStore, parseAzblobUrl } from '../../src/state/azblob.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, startAzurite, type Azurite } from '../azure/azurite.ts';

const run = requireAzurite();
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/rubicon.js', import.meta.url));
let az: Azurite;
let tmp: string;
const runId = () => `r-20260101-0000${String(Math.floor(Math.random() * 60)).padStart(2, '0')}-${randomBytes(2).toString('hex')}`;

function store(container: string, prefix = 'fleet'): AzureStateStore {
  return new AzureStateStore({
    accountUrl: az.accountUrl,
    container,
    prefix,
    credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
    cacheDir: mkdtempSync(path.join(tmp, 'cache-')),
    leaseSeconds: 15,
  });
}

function child(container: string, target: string, id: string): { proc: ChildProcess; lines: AsyncIterator<string> } {
  const proc = spawn(process.execPath, [CHILD, az.accountUrl, container, 'fleet', target, id], { env: { ...process.env, AZ_TEST_KEY: AZURITE_KEY }, stdio: ['ignore', 'pipe', 'inherit'] });
  return { proc, lines: createInterface({ input: proc.stdout! })[Symbol.asyncIterator]() };
}
async function next(lines: AsyncIterator<string>): Promise<Record<string, unknown>> {
  const r = await lines.next();
  if (r.done) throw new Error('the child ended without a line');
  return JSON.parse(r.value) as Record<string, unknown>;
}
/** The CLI as an agent of the fleet runs it (the emulator's endpoint, the account key, its own cache folder). */
function rubicon(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, RUBICON_AZBLOB_ENDPOINT: az.accountUrl, AZURE_STORAGE_KEY: AZURITE_KEY, XDG_CACHE_HOME: mkdtempSync(path.join(tmp, 'agent-')) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}
const started = (id: string) => ({
  type: 'run.started' as const,
  runId: id,
  command: 'rehearse' as const,
  target: 'ehr-01',
  runbookPath: '/nowhere/runbook.yaml',
  runbookHash: '0'.repeat(64),
  policy: DEFAULT_POLICY,
  vaults: [],
  manualSteps: [],
  overrides: [],
  rubiconVersion: '0.1.0',
  host: 'agent-a',
});

describe('parseAzblobUrl', () => {
  it.each([
    ['azblob://contoso/state', {}, { account: 'contoso', container: 'state', prefix: '', accountUrl: 'https://contoso.blob.core.windows.net' }],
    ['azblob://contoso/state/clinic-a/prod/', {}, { account: 'contoso', container: 'state', prefix: 'clinic-a/prod', accountUrl: 'https://contoso.blob.core.windows.net' }],
    ['azblob://devstoreaccount1/c01/p', { RUBICON_AZBLOB_ENDPOINT: 'http://127.0.0.1:1/devstoreaccount1/' }, { account: 'devstoreaccount1', container: 'c01', prefix: 'p', accountUrl: 'http://127.0.0.1:1/devstoreaccount1' }],
  ])('%s', (url, env, want) => {
    expect(parseAzblobUrl(url, env)).toEqual(want);
  });
  it.each(['azblob://Contoso/state', 'azblob://contoso', 'azure://contoso/state', 'azblob://contoso/-bad'])('refuses %s', (url) => {
    expect(() => parseAzblobUrl(url, {})).toThrow(/azblob:\/\/<account>\/<container>/);
  });
});

describe.skipIf(!run)(`shared state on Azurite${run ? '' : ` (skipped: ${azuriteMissing()})`}`, () => {
  beforeAll(async () => {
    az = await startAzurite();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rubicon-state-'));
  }, 60_000);
  afterAll(async () => {
    await az?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('two processes race for one target: one holds the lease, the other is LOCK_HELD; the holder SIGKILLed, its lease expires and the next run takes over and resumes its journal', async () => {
    const container = `race-${randomBytes(3).toString('hex')}`;
    const [idA, idB] = [runId(), runId()];
    const a = child(container, 'ehr-01', idA);
    const b = child(container, 'ehr-01', idB);
    try {
      const [ra, rb] = await Promise.all([next(a.lines), next(b.lines)]);
      const results = [ra, rb];
      expect(results.filter((r) => r.locked === true)).toHaveLength(1);
      expect(results.filter((r) => r.error === 'LOCK_HELD')).toHaveLength(1);
      const [winner, winnerId] = ra.locked ? [a, idA] : [b, idB];
      expect(await next(winner.lines)).toEqual({ ready: true });

      const s = store(container);
      await expect(s.lock('ehr-01', 'r-20260101-000000-ffff', 'agent-b')).rejects.toMatchObject({ code: 'LOCK_HELD', message: expect.stringContaining(winnerId) });

      const gone = new Promise((resolve) => winner.proc.once('exit', resolve));
      winner.proc.kill('SIGKILL');
      await gone;
      // Nobody breaks the lease: it ends by itself (15 s) because nobody renews it.
      const t0 = Date.now();
      let release: (() => Promise<void>) | undefined;
      while (!release) {
        try {
          release = await s.lock('ehr-01', winnerId, 'agent-b');
        } catch (e) {
          expect((e as { code?: string }).code).toBe('LOCK_HELD');
          if (Date.now() - t0 > 45_000) throw e;
          await new Promise((r) => setTimeout(r, 500)); // polling the service for the lease's end
        }
      }
      // The next agent continues the dead agent's run from the shared journal.
      const j = await s.openJournal(winnerId);
      expect(j.all()).toHaveLength(2);
      j.append({ type: 'run.resumed', pid: process.pid });
      await s.flush(winnerId);
      j.close();
      const records = await store(container).readJournal(winnerId);
      expect(records.map((r) => r.event.type)).toEqual(['run.started', 'note', 'run.resumed']);
      await release();
    } finally {
      a.proc.kill('SIGKILL');
      b.proc.kill('SIGKILL');
    }
  }, 90_000);

  it('a journal append racing another: the loser is refused, nothing interleaves', async () => {
    const container = `journal-${randomBytes(3).toString('hex')}`;
    const id = runId();
    const first = store(container);
    const j0 = await first.createJournal(id);
    j0.append(started(id));
    await first.flush(id);
    j0.close();

    const [s1, s2] = [store(container), store(container)];
    const [j1, j2] = [await s1.openJournal(id), await s2.openJournal(id)];
    j1.append({ type: 'note', level: 'info', message: 'from agent one' });
    j2.append({ type: 'note', level: 'info', message: 'from agent two' });
    const outcomes = await Promise.allSettled([s1.flush(id), s2.flush(id)]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const lost = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ code: 'JOURNAL_CONFLICT' });
    const loser = outcomes[0]!.status === 'rejected' ? j1 : j2;
    // The loser stops at its next record.
    expect(() => loser.append({ type: 'note', level: 'info', message: 'more' })).toThrow(/another process appended/);
    const records = await store(container).readJournal(id); // verifies the hash chain
    expect(records).toHaveLength(2);
    expect(['from agent one', 'from agent two']).toContain((records[1]!.event as { message: string }).message);
    j1.close();
    j2.close();
  }, 60_000);

  it('rubicon status --state azblob://… lists the fleet\'s runs', async () => {
    const container = `status-${randomBytes(3).toString('hex')}`;
    const ids = [runId(), runId()].sort();
    for (const id of ids) {
      const s = store(container, 'clinic-a');
      const j = await s.createJournal(id);
      j.append(started(id));
      await s.flush(id);
      j.close();
    }
    const r = await rubicon(['status', '--json', '--state', `azblob://${AZURITE_ACCOUNT}/${container}/clinic-a`]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const out = r.out;
    const runs = JSON.parse(out) as { runId: string; target: string; host: string }[];
    expect(runs.map((r) => r.runId)).toEqual(ids);
    expect(runs[0]).toMatchObject({ target: 'ehr-01', host: 'agent-a' });
  }, 60_000);

  it('rubicon report RUN_ID --state azblob://… writes the reports from the shared journal and uploads them beside the run', async () => {
    const container = `report-${randomBytes(3).toString('hex')}`;
    const state = `azblob://${AZURITE_ACCOUNT}/${container}/clinic-a`;
    const id = runId();
    const s = store(container, 'clinic-a');
    const j = await s.createJournal(id);
    j.append(started(id));
    j.append({ type: 'note', level: 'info', message: 'written by another agent' });
    await s.flush(id);
    j.close();

    const r = await rubicon(['report', id, '--state', state]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`uploaded to ${state}, run ${id}, report/`);
    const names: string[] = [];
    for await (const b of s.container.listBlobsFlat({ prefix: `clinic-a/runs/${id}/report/` })) names.push(b.name.slice(`clinic-a/runs/${id}/report/`.length));
    expect(names).toEqual(expect.arrayContaining(['report.json', 'report.html', 'checklist.md', 'junit.xml']));
    const json = JSON.parse((await s.container.getBlobClient(`clinic-a/runs/${id}/report/report.json`).downloadToBuffer()).toString()) as { runId?: string };
    expect(JSON.stringify(json)).toContain(id);

    // A run that is not in the store: named with where it was looked for.
    const missing = await rubicon(['report', 'r-20260101-000000-ffff', '--state', state]);
    expect(missing.code).toBe(3);
    expect(missing.err).toContain(`no run r-20260101-000000-ffff in ${state}`);
    // A command that keeps nothing in a shared store refuses --state instead of silently using the local folder.
    const wrong = await rubicon(['check-runbook', '--runbook', 'x.yaml', '--state', state]);
    expect(wrong.code).toBe(3);
    expect(wrong.err).toContain('rubicon check-runbook does not take --state');
  }, 60_000);
});
