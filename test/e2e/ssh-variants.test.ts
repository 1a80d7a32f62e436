import { existsSync, readdirSync, statSync } from 'node:fs';
import { appendFile, open, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNet, requireTestNet, storyNet } from '../hosts/index.ts';
import { BIN, diffTrees, removeTempDirs, treeState } from './helpers.ts';
import { buildRemoteEstate, ctlCli, filesHolding, journalEvents, parseCli, runIdOf, waitStopped, type RemoteEstate, type StoryNet } from './remote-estate.ts';

/**
 * SCENARIO.md's variants over ssh, on one set of the story's three hosts
 * (each case starts from a fresh estate, vaults and state; the hosts stay).
 * Each ends with nothing destroyed. The kill -9 variant is
 * test/e2e/ssh-crash.test.ts; the sandbox's own variants are
 * test/e2e/variants.test.ts.
 */
const noNet = requireTestNet();
type Cli = Awaited<ReturnType<typeof ctlCli>>;
let net: StoryNet;

beforeAll(async () => {
  if (noNet) return;
  net = await createTestNet(storyNet());
}, 120_000);
afterAll(async () => {
  await net?.destroy();
  await removeTempDirs();
});

/** A fresh estate on the same hosts: the earlier case's estate, work folders, vaults and state are removed first. */
async function freshEstate(): Promise<RemoteEstate> {
  for (const d of [
    path.join(net.hosts.target.dataDir, 'estate'),
    path.join(net.hosts.target.dataDir, 'rubicon'),
    net.hosts.vault.dataDir,
    net.hosts.pg.dataDir,
    path.join(net.dir, 'ctl-files'),
  ]) {
    if (d === net.hosts.vault.dataDir || d === net.hosts.pg.dataDir) {
      for (const f of existsSync(d) ? readdirSync(d) : []) await rm(path.join(d, f), { recursive: true, force: true });
    } else await rm(d, { recursive: true, force: true });
  }
  return buildRemoteEstate(net);
}

const why = (r: Cli) => `${JSON.stringify((r.summary as { error?: unknown })?.error)} ${JSON.stringify((r.summary as { gate?: { reasons?: unknown } })?.gate?.reasons)}\n${r.stderr.slice(-2500)}`;
/** The target must be unchanged, except new files the vendor job wrote into mssql/backup. */
const onlyVendorOutput = (changes: string[]) => changes.filter((c) => !/^added mssql\/backup\/ehr-.*\.bak$/.test(c));

/** Runs the upgrade in ctl, stopped (SIGSTOP) after the n-th completed phase so the test can act, then continued. */
async function upgradeActingAfterPhase(e: RemoteEstate, nth: number, act: () => Promise<void>): Promise<Cli> {
  const p = net.node('ctl', [BIN, 'upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes', '--json'], { env: { NO_COLOR: '1', RUBICON_FAULT: `stop@phase.completed#${nth}` } });
  await waitStopped(p.pid!);
  try {
    await act();
  } catch (err) {
    p.kill('SIGKILL'); // never leave the run (and its target lock) behind for the next case
    await p;
    throw err;
  }
  process.kill(p.pid!, 'SIGCONT');
  return parseCli(await p, p.pid);
}

async function flipBit(file: string): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const { size } = await fh.stat();
    const pos = Math.floor(size / 2);
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, pos);
    b[0] = b[0]! ^ 0x10;
    await fh.write(b, 0, 1, pos);
  } finally {
    await fh.close();
  }
}

describe.skipIf(noNet)(`variants over ssh: each ends with nothing destroyed${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  it('a malformed runbook (an unknown transport kind) → exit 3 naming the field and the fix, nothing touched, no run created', { timeout: 600_000 }, async () => {
    const e = await freshEstate();
    const before = await treeState(e.targetRoot);
    const text = await readFile(e.runbook, 'utf8');
    await writeFile(e.runbook, text.replace('  transport: { kind: ssh, host: target', '  transport: { kind: shh, host: target'));
    const r = await ctlCli(net, ['upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes']);
    expect(r.exitCode, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/target\.transport/);
    expect(r.stderr).toMatch(/ssh/);
    expect(r.stderr).toMatch(/fix:/);
    expect(diffTrees(before, await treeState(e.targetRoot))).toEqual([]);
    expect(existsSync(path.join(e.stateDir, 'runs'))).toBe(false);
    expect(existsSync(path.join(net.hosts.target.dataDir, 'rubicon'))).toBe(false);
  });

  it('a copy in the sftp vault altered after it was written → the damage is named (artifact, vault), that copy does not count, the gate refuses (exit 2)', { timeout: 600_000 }, async () => {
    const e = await freshEstate();
    const before = await treeState(e.targetRoot);
    let victim = '';
    const r = await upgradeActingAfterPhase(e, 2, async () => {
      // After the capture, before the proofs: one file of ehr/X's mirror on the vault host.
      const trees = path.join(e.vaultPaths.nas, 'trees');
      const name = readdirSync(trees).find((n) => decodeURIComponent(n).includes('.capture.folder:ehr/X.rsync') && !n.endsWith('.partial'))!;
      expect(name, readdirSync(trees).join(', ')).toBeTruthy();
      const tree = path.join(trees, name);
      const files = readdirSync(tree, { recursive: true }).map(String).filter((f) => f.includes('scans/') && statSync(path.join(tree, f)).isFile()).sort();
      expect(files.length, readdirSync(tree, { recursive: true }).join(', ')).toBeGreaterThan(3);
      victim = path.basename(files[3]!);
      await flipBit(path.join(tree, files[3]!));
    });
    const runId = runIdOf(r);
    const ev = journalEvents(e.stateDir, runId);
    const bad = ev.filter((x) => x.type === 'copy.checked').map((x) => (x as unknown as { copy: { artifactId: string; vault: string; status: string; detail?: string } }).copy).filter((c) => c.status !== 'ok');
    expect(bad.length).toBeGreaterThanOrEqual(1);
    for (const c of bad) {
      expect(c.vault).toBe('nas');
      expect(c.artifactId).toMatch(/folder:ehr\/X|volume:\./);
      expect(c.detail ?? '').toContain(victim); // names the file, not its content
    }
    expect(bad.some((c) => c.artifactId.includes('folder:ehr/X'))).toBe(true);
    expect(r.exitCode, why(r)).toBe(2);
    expect((r.summary as { gate?: { reasons: string[] } }).gate?.reasons.join(' ')).toMatch(/ehr\/X/);
    expect(ev.some((x) => x.type === 'crossing.started')).toBe(false);
    expect(onlyVendorOutput(diffTrees(before, await treeState(e.targetRoot)))).toEqual([]);
  });

  it('every database artifact damaged (in the sftp vault and in the restic repository) → no database proof passes, the damage is named, the gate refuses (exit 2), nothing crossed', { timeout: 600_000 }, async () => {
    const e = await freshEstate();
    const before = await treeState(e.targetRoot);
    // The databases are captured first (the vendor's job, .backup, .dump): stopped after the third artifact, every
    // data file of the restic repository and every file of the databases' trees in the sftp vault holds only them.
    const p = net.node('ctl', [BIN, 'upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes', '--json'], { env: { NO_COLOR: '1', RUBICON_FAULT: 'stop@artifact.captured#3' } });
    await waitStopped(p.pid!);
    let damagedTrees = 0;
    try {
      const runs = readdirSync(path.join(e.stateDir, 'runs'));
      const sofar = journalEvents(e.stateDir, runs[0]!).filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { itemId: string } }).artifact.itemId);
      expect(sofar).toEqual(['database:sqlite:ehr', 'database:sqlite:ehr', 'database:sqlite:ehr']);
      const trees = path.join(e.vaultPaths.nas, 'trees');
      for (const name of readdirSync(trees).filter((n) => decodeURIComponent(n).includes('database:sqlite:ehr') && !n.endsWith('.partial'))) {
        const tree = path.join(trees, name);
        for (const f of readdirSync(tree, { recursive: true }).map(String).filter((x) => statSync(path.join(tree, x)).isFile())) await flipBit(path.join(tree, f));
        damagedTrees++;
      }
      const data = path.join(e.vaultPaths.restic, 'data');
      const packs = readdirSync(data, { recursive: true }).map(String).filter((x) => statSync(path.join(data, x)).isFile());
      expect(packs.length).toBeGreaterThan(0);
      for (const f of packs) await flipBit(path.join(data, f));
    } catch (err) {
      p.kill('SIGKILL');
      await p;
      throw err;
    }
    expect(damagedTrees).toBe(3);
    process.kill(p.pid!, 'SIGCONT');
    const r = parseCli(await p, p.pid);
    expect(r.exitCode, why(r)).toBe(2);
    expect(r.summary).toMatchObject({ outcome: 'refused' });
    expect((r.summary as { gate?: { reasons: string[] } }).gate?.reasons.join(' ')).toMatch(/database:sqlite:ehr/);
    const ev = journalEvents(e.stateDir, runIdOf(r));
    const copies = ev.filter((x) => x.type === 'copy.checked').map((x) => (x as unknown as { copy: { artifactId: string; vault: string; status: string; detail?: string } }).copy);
    const dbCopies = copies.filter((c) => c.artifactId.includes('database:sqlite:ehr'));
    expect(dbCopies.map((c) => `${c.vault} ${c.status === 'ok' ? 'ok' : 'damaged'}`).sort()).toEqual(['nas damaged', 'nas damaged', 'nas damaged', 'offsite damaged', 'offsite damaged', 'offsite damaged']);
    expect(dbCopies.find((c) => c.vault === 'offsite')?.detail).toMatch(/damaged pack file/);
    const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { itemId: string; outcome: string } }).proof);
    expect(proofs.filter((pr) => pr.itemId === 'database:sqlite:ehr').map((pr) => pr.outcome)).toEqual(['failed', 'failed', 'failed']);
    expect(ev.some((x) => x.type === 'permit.issued')).toBe(false);
    expect(ev.some((x) => x.type === 'crossing.started')).toBe(false);
    expect(onlyVendorOutput(diffTrees(before, await treeState(e.targetRoot)))).toEqual([]);
  });

  it("the restic password's captured copy gone from the sftp vault → the proving ground cannot open the repository (it never gets Rubicon's own password), the restic proofs fail saying so, the gate refuses (exit 2); the password shows nowhere", { timeout: 600_000 }, async () => {
    const e = await freshEstate();
    const password = (await readFile(path.join(path.dirname(e.runbook), 'restic.pass'), 'utf8')).trim();
    const r = await upgradeActingAfterPhase(e, 2, async () => {
      const trees = path.join(e.vaultPaths.nas, 'trees');
      const names = readdirSync(trees).filter((n) => decodeURIComponent(n).includes('secret:restic-password:offsite'));
      expect(names, readdirSync(trees).join(', ')).toHaveLength(1);
      await rm(path.join(trees, names[0]!), { recursive: true });
    });
    expect(r.exitCode, why(r)).toBe(2);
    const ev = journalEvents(e.stateDir, runIdOf(r));
    const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { artifactId: string; itemId: string; outcome: string; checks: { name: string; status: string; detail: string }[] } }).proof);
    expect(proofs.find((pr) => pr.itemId === 'secret:restic-password:offsite')?.outcome).toBe('failed');
    // The repository itself is intact (Rubicon's own check opens it with the runbook's password): only the proving ground lacks the key.
    expect(ev.filter((x) => x.type === 'copy.checked').map((x) => (x as unknown as { copy: { vault: string; status: string } }).copy).filter((c) => c.vault === 'offsite' && c.status !== 'ok')).toEqual([]);
    const restic = proofs.filter((pr) => pr.artifactId.endsWith('.restic'));
    expect(restic.length).toBeGreaterThan(3);
    for (const pr of restic) {
      expect(pr.outcome, pr.artifactId).toBe('failed');
      expect(pr.checks.map((c) => c.detail).join(' ')).toMatch(/no password for restic vault 'offsite'.*secret:restic-password:offsite/);
    }
    const gate = ev.filter((x) => x.type === 'gate.evaluated').at(-1) as { result: { results: { rule: string; status: string; itemId?: string }[] } } | undefined;
    expect(gate?.result.results.find((x) => x.rule === 'secrets.captured' && x.itemId === 'secret:restic-password:offsite')?.status).toBe('fail');
    expect(ev.some((x) => x.type === 'crossing.started')).toBe(false);
    expect(await filesHolding(e.stateDir, password)).toEqual([]);
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('a file changes after the final capture → the gate refuses (exit 2), the target keeps the change, the freeze is undone', { timeout: 600_000 }, async () => {
    const e = await freshEstate();
    // Phases: discover, capture, prove, freeze, final-capture (the 5th completed).
    const r = await upgradeActingAfterPhase(e, 5, () => appendFile(path.join(e.targetRoot, 'ehr/Z/licence.lic'), 'EXTENDED=2027\n'));
    expect(r.exitCode, why(r)).toBe(2);
    expect(r.summary).toMatchObject({ outcome: 'refused' });
    expect((r.summary as { gate?: { reasons: string[] } }).gate?.reasons.join(' ')).toMatch(/licence\.lic/);
    const ev = journalEvents(e.stateDir, runIdOf(r));
    expect(ev.some((x) => x.type === 'crossing.started')).toBe(false);
    expect(ev.some((x) => x.type === 'target.thawed')).toBe(true);
    expect(await readFile(path.join(e.targetRoot, 'ehr/Z/licence.lic'), 'utf8')).toMatch(/EXTENDED=2027/);
  });
});
