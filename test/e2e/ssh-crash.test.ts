import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import { buildSandbox, technicianChanges } from '../../src/sandbox/estate.ts';
import { createTestNet, requireTestNet, storyNet } from '../hosts/index.ts';
import { BIN, removeTempDirs, tempDir, treeHashes } from './helpers.ts';
import { buildRemoteEstate, ctlCli, engineerRebuilds, journalEvents, parseCli, runIdOf, technician, waitStopped, type RemoteEstate, type StoryNet } from './remote-estate.ts';

/**
 * kill -9 over ssh (issue 7): one run of SCENARIO.md's upgrade on the
 * story's three namespaced hosts, its orchestrator SIGKILLed (a real death:
 * RUBICON_FAULT=kill@…, or the test's own SIGKILL) in each phase that
 * touches the machines — while a step runs on the target in the capture,
 * with a capture stored in both vaults but not yet journaled, in the middle
 * of the proofs, right after the freeze, in the final capture of the
 * technician's change, right after the gate, right after the manual
 * crossing started, in the middle of the landing — each followed by
 * `rubicon resume`. Discover is not killed here: it only reads the target,
 * and its journal records are the sandbox crash tests' business. The run must end landed,
 * with nothing captured twice, nothing lost, every grant revoked. The other
 * checkpoints die in-process on the sandbox (crash-early/-middle/-late):
 * the phases and the journal are the same code on both transports.
 */
const noNet = requireTestNet();

type Cli = Awaited<ReturnType<typeof ctlCli>>;
let net: StoryNet;
let e: RemoteEstate;
let runId = '';

beforeAll(async () => {
  if (noNet) return;
  net = await createTestNet(storyNet());
  e = await buildRemoteEstate(net);
}, 120_000);
afterAll(async () => {
  await net?.destroy();
  await removeTempDirs();
});

const why = (r: Cli) => `${r.signal ?? ''} ${JSON.stringify((r.summary as { error?: unknown })?.error)} ${JSON.stringify((r.summary as { gate?: { reasons?: unknown } })?.gate?.reasons)}\n${r.stderr.slice(-2500)}`;
const events = () => journalEvents(e.stateDir, runId);
const resume = (env: Record<string, string> = {}) => ctlCli(net, ['resume', runId, '--state-dir', e.stateDir, '--yes', '--json'], env);

/** Died where asked: killed by SIGKILL, the run not completed, one more resume recorded than before. */
function expectKilled(r: Cli, resumes: number): void {
  expect(r.signal, why(r)).toBe('SIGKILL');
  const ev = events();
  expect(ev.filter((x) => x.type === 'run.resumed')).toHaveLength(resumes);
  const last = ev.slice(ev.findLastIndex((x) => x.type === 'run.started' || x.type === 'run.resumed'));
  expect(last.some((x) => x.type === 'run.completed')).toBe(false);
}

/** Nothing captured twice: one artifact per id, one per (phase, item, method). */
function expectCapturedOnce(): void {
  const artifacts = events().filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { id: string; phase: string; itemId: string; method: string } }).artifact);
  expect(new Set(artifacts.map((a) => a.id)).size).toBe(artifacts.length);
  const keys = artifacts.map((a) => `${a.phase}|${a.itemId}|${a.method}`);
  expect(new Set(keys).size).toBe(keys.length);
}

const dbItem = {
  id: 'database:sqlite:ehr', kind: 'database' as const, name: 'ehr', declared: false, discovered: true, engine: 'sqlite',
  location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [],
};
const fingerprint = (root: string) => sqliteEngine.fingerprint({ host: new LocalHost('t', root), workDir: root }, dbItem);

describe.skipIf(noNet)(`kill -9 over ssh in each phase, then resume${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  it('killed while a step runs on the target during the capture: the resume re-attaches to it or runs it again, never twice', { timeout: 600_000 }, async () => {
    // Stop right after the journal records the third step's start, let it start on the target, then SIGKILL the orchestrator.
    const p = net.node('ctl', [BIN, 'upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes', '--json'], { env: { NO_COLOR: '1', RUBICON_FAULT: 'stop@step.started#3' } });
    await waitStopped(p.pid!);
    const stepsRoot = path.join(net.hosts.target.dataDir, 'rubicon', 'steps');
    const pids = () => (existsSync(stepsRoot) ? readdirSync(stepsRoot, { recursive: true }).map(String).filter((f) => f.endsWith('/pid') || f === 'pid') : []);
    const seen = pids().length;
    process.kill(p.pid!, 'SIGCONT');
    // The step's pid file on the target is the observable sign that it started there.
    for (let i = 0; i < 600 && pids().length === seen; i++) await new Promise((r) => setTimeout(r, 20));
    process.kill(p.pid!, 'SIGKILL');
    const r = parseCli(await p, p.pid);
    runId = runIdOf(r);
    expectKilled(r, 0);
    expect(events().filter((x) => x.type === 'step.started').length).toBeGreaterThanOrEqual(3);
  });

  it('killed with a capture stored in both vaults but not yet journaled, during the resume: the next resume does not count it twice', { timeout: 600_000 }, async () => {
    const r = await resume({ RUBICON_FAULT: 'kill@capture.stored.capture#2' });
    expectKilled(r, 1);
    expectCapturedOnce();
  });

  it('killed in the middle of the proofs on the proving ground: the resume proves only what has no proof yet', { timeout: 600_000 }, async () => {
    const r = await resume({ RUBICON_FAULT: 'kill@proof.recorded#2' });
    expectKilled(r, 2);
    expect(events().filter((x) => x.type === 'proof.recorded').length).toBeGreaterThanOrEqual(2);
  });

  it('killed right after the freeze (the technician then changes files), in the final capture of that change, right after the gate, right after the manual crossing started; a resume before the rebuild refuses the old server (NOT_REBUILT), nothing written', { timeout: 600_000 }, async () => {
    const r1 = await resume({ RUBICON_FAULT: 'kill@target.frozen' });
    expectKilled(r1, 3);
    expect(events().filter((x) => x.type === 'target.frozen').length).toBeGreaterThanOrEqual(1);
    // The freeze's drift scan comes after target.frozen: the resume finds the technician's change and captures it as a delta.
    await technician(e);
    const rf = await resume({ RUBICON_FAULT: 'kill@capture.stored.final-capture' });
    expectKilled(rf, 4);
    const rg = await resume({ RUBICON_FAULT: 'kill@gate.evaluated' });
    expectKilled(rg, 5);
    expect(events().filter((x) => x.type === 'artifact.captured' && (x as unknown as { artifact: { phase: string } }).artifact.phase === 'final-capture').length).toBeGreaterThanOrEqual(2);
    const r2 = await resume({ RUBICON_FAULT: 'kill@crossing.started' });
    expectKilled(r2, 6);
    // The crossing had started (its instructions printed): a pipeline's `resume --yes` means "crossed", but the
    // server was not rebuilt, so nothing lands on the old one.
    const before = await treeHashes(e.targetRoot);
    const r3 = await resume();
    expect(r3.exitCode, why(r3)).toBe(1);
    expect((r3.summary as { error?: { code: string } }).error?.code).toBe('NOT_REBUILT');
    expect(await treeHashes(e.targetRoot)).toEqual(before);
    expectCapturedOnce();
    const ev = events();
    expect(ev.filter((x) => x.type === 'capture.failed')).toEqual([]);
    const gate = ev.filter((x) => x.type === 'gate.evaluated').at(-1) as { result: { passed: boolean } } | undefined;
    expect(gate?.result.passed).toBe(true);
  });

  it('killed in the middle of the landing on the rebuilt server; the resume lands everything, validated, every grant revoked', { timeout: 600_000 }, async () => {
    await engineerRebuilds(net, e);
    const k = await ctlCli(net, ['confirm', runId, '--crossed', '--by', 'Jane Engineer', '--state-dir', e.stateDir, '--json'], { RUBICON_FAULT: 'kill@landing.validated#2' });
    expectKilled(k, 8);
    const r = await resume();
    expect(r.exitCode, why(r)).toBe(0);
    expect(r.summary).toMatchObject({ outcome: 'landed' });
    const ev = events();
    expectCapturedOnce();
    expect(ev.filter((x) => x.type === 'crossing.confirmed')).toHaveLength(1);
    const items = ev.filter((x) => x.type === 'item.discovered').map((x) => (x as unknown as { item: { id: string } }).item.id);
    const validated = new Map(ev.filter((x) => x.type === 'landing.validated').map((x) => [(x as unknown as { itemId: string }).itemId, (x as unknown as { outcome: string }).outcome]));
    for (const id of items) expect(validated.get(id), id).toBe('passed');
    // The files and the database really are back.
    const expected = await buildSandbox(path.join(await tempDir(), 'expected'), { patients: 300 });
    await technicianChanges(expected.target);
    const want = await treeHashes(expected.target);
    const got = await treeHashes(e.targetRoot);
    for (const [f, h] of want) if (f !== 'mssql/data/ehr.db' && !f.startsWith('mssql/backup/')) expect(got.get(f), f).toBe(h);
    expect((await fingerprint(e.targetRoot)).digest).toBe((await fingerprint(expected.target)).digest);
    // Grants: every one issued by any of the processes is revoked, none left on the vault host.
    const issued = ev.filter((x) => x.type === 'grant.issued').map((x) => (x as unknown as { grant: { id: string } }).grant.id);
    const revoked = new Set(ev.filter((x) => x.type === 'grant.revoked').flatMap((x) => (x as unknown as { grantIds: string[] }).grantIds));
    expect(issued.filter((g) => !revoked.has(g)), 'grants issued by a killed process are revoked by a later one').toEqual([]);
    expect((await readFile(net.hosts.vault.authorizedKeysPath, 'utf8')).split('\n').filter((l) => l.includes('rubicon-grant:'))).toEqual([]);
  });
});
