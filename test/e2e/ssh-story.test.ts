import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sqliteEngine } from '../../src/engines/sqlite/index.ts';
import { LocalHost } from '../../src/hosts/local.ts';
import { buildSandbox, technicianChanges } from '../../src/sandbox/estate.ts';
import { createTestNet, requireTestNet, storyNet } from '../hosts/index.ts';
import { BIN, removeTempDirs, tempDir, treeHashes } from './helpers.ts';
import { buildRemoteEstate, ctlCli, engineerRebuilds, filesHolding, journalEvents, parseCli, runIdOf, technician, type StoryNet } from './remote-estate.ts';

afterAll(removeTempDirs); // the estates are tens of MiB each

/**
 * SCENARIO.md over ssh: the target, a vault host and the proving ground are
 * namespaced hosts with their own sshd; Rubicon runs in the controller
 * namespace; bytes move with restic, rsync, sqlite3 and sha256sum on the
 * hosts; the crossing is manual and the test plays the engineer.
 */
const noNet = requireTestNet();

async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (/\) T /.test(stat)) return;
    if (stat === '') throw new Error('the run ended before it reached the checkpoint');
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the run never stopped at the checkpoint');
}

const dbItem = {
  id: 'database:sqlite:ehr', kind: 'database' as const, name: 'ehr', declared: false, discovered: true, engine: 'sqlite',
  location: 'mssql/data/ehr.db', facts: {}, why: [], methods: [],
};
const localFingerprint = (root: string) => sqliteEngine.fingerprint({ host: new LocalHost('t', root), workDir: root }, dbItem);

describe.skipIf(noNet)(`the story over ssh on three namespaced hosts${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  it('captures with restic, rsync and sqlite3 where the data is, proves on the isolated proving ground, waits at the manual crossing, refuses the old server, lands on the rebuilt one', { timeout: 600_000 }, async () => {
    const net: StoryNet = await createTestNet(storyNet());
    try {
      const e = await buildRemoteEstate(net);
      // The technician acts after the proofs: the run stops there (SIGSTOP), the test changes files, SIGCONT.
      const p = net.node('ctl', [BIN, 'upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes', '--json'], {
        env: { NO_COLOR: '1', RUBICON_FAULT: 'stop@phase.completed#3' },
      });
      await waitStopped(p.pid!);
      const touched = await technician(e);
      process.kill(p.pid!, 'SIGCONT');
      const up = parseCli(await p, p.pid);
      expect(up.stderr).not.toMatch(/internal error/);
      const runId = runIdOf(up);
      expect(up.exitCode, JSON.stringify((up.summary as { error?: unknown })?.error) + up.stderr.slice(-3000) + JSON.stringify((up.summary as { gate?: unknown })?.gate)).toBe(4);
      expect(up.summary).toMatchObject({ outcome: 'waiting' });
      expect(String((up.summary as { crossingInstructions?: string }).crossingInstructions)).toContain(`rubicon confirm ${runId} --crossed`);

      const ev = journalEvents(e.stateDir, runId);
      const items = ev.filter((x) => x.type === 'item.discovered').map((x) => (x as unknown as { item: { id: string; declared: boolean } }).item);
      for (const f of ['ehr/X', 'ehr/Y', 'ehr/Z']) expect(items.find((i) => i.id === `folder:${f}`)?.declared, f).toBe(false);
      const artifacts = ev.filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { method: string; itemId: string; phase: string } }).artifact);
      const methods = new Set(artifacts.map((a) => a.method));
      for (const m of ['restic', 'rsync', 'sqlite3-backup', 'sqlite3-dump', 'vendor-job']) expect(methods.has(m), m).toBe(true);
      const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { artifactId: string; outcome: string; provingGround: string } }).proof);
      const vendor = proofs.find((pr) => pr.artifactId.includes('vendor-job'));
      expect(vendor?.outcome).toBe('failed');
      for (const pr of proofs.filter((x) => !x.artifactId.includes('vendor-job'))) expect(pr.outcome, pr.artifactId).toBe('passed');
      expect(proofs[0]?.provingGround).toContain('ssh root@pg');
      // The restic password is a captured secret item (into the sftp vault, not the repository it opens); its proof
      // opens the repository on the proving ground with the copy restored there, before any restic copy is proven.
      const secret = items.find((i) => i.id === 'secret:restic-password:offsite');
      expect(secret, items.map((i) => i.id).join(', ')).toBeTruthy();
      const secretArtifact = ev.filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { id: string; itemId: string; vaults: string[]; method: string } }).artifact).find((a) => a.itemId === secret!.id);
      expect(secretArtifact).toMatchObject({ method: 'vault-password', vaults: ['nas'] });
      const secretProof = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { itemId: string; outcome: string; checks: { name: string; status: string }[] } }).proof).find((pr) => pr.itemId === secret!.id);
      expect(secretProof?.outcome).toBe('passed');
      expect(secretProof?.checks.find((c) => c.name === 'opens-repository')?.status).toBe('passed');
      const order = proofs.map((pr) => pr.artifactId);
      expect(order.findIndex((x) => x.includes('secret:restic-password'))).toBeLessThan(order.findIndex((x) => x.endsWith('.restic')));
      expect(ev.some((x) => x.type === 'note' && String(x.message).startsWith('proving ground isolation checked: a connection from the proving ground to the target'))).toBe(true);
      const freezeDrift = ev.filter((x) => x.type === 'drift.scanned' && (x as unknown as { drift: { stage: string } }).drift.stage === 'freeze').flatMap((x) => (x as unknown as { drift: { changes: { path: string }[] } }).drift.changes.map((c) => c.path));
      for (const t of touched) expect(freezeDrift, t).toContain(t.slice('ehr/A/'.length));
      expect(artifacts.filter((a) => a.phase === 'final-capture' && a.itemId === 'folder:ehr/A').map((a) => a.method).sort()).toEqual(['restic', 'rsync']);
      const gate = ev.filter((x) => x.type === 'gate.evaluated').at(-1) as { result: { passed: boolean; results: { rule: string; status: string; reason: string }[] } } | undefined;
      expect(gate?.result.passed).toBe(true);
      // Coverage (issue 8): what the manual crossing destroys is the target's volume; every file on it is held by a
      // proven artifact (restic and rsync, the everything capture too), owned by the database, or excluded.
      expect(ev.find((x) => x.type === 'scope.declared')).toMatchObject({ scope: { infra: 'manual', os: 'linux', volumes: [{ path: '.', fate: 'destroyed', capture: true }] } });
      expect(artifacts.filter((a) => a.itemId === 'volume:.').map((a) => `${a.phase} ${a.method}`).sort()).toEqual(['capture restic', 'capture rsync', 'final-capture restic', 'final-capture rsync']);
      const maps = ev.filter((x) => x.type === 'coverage.mapped').map((x) => (x as unknown as { map: { stage: string; files: number; classes: { holders: string[]; owner?: string; exclusion?: unknown; files: number }[] } }).map);
      expect(maps.map((m) => m.stage)).toEqual(['capture', 'final-capture']);
      expect(maps[1]!.files).toBeGreaterThan(300);
      expect(maps[1]!.classes.filter((c) => c.holders.length === 0 && !c.owner && !c.exclusion)).toEqual([]);
      const complete = gate!.result.results.filter((r) => r.rule === 'coverage.complete');
      expect(complete.map((r) => r.status)).toEqual(['pass']);
      expect(complete[0]!.reason).toMatch(/uncovered: 0/);
      expect(gate!.result.results.find((r) => r.rule === 'secrets.captured' && r.reason.includes('offsite'))?.status).toBe('pass');

      // The engineer confirms too early: the server still answers with its old key, machine id and OS.
      await copyFile(path.join(path.dirname(e.runbook), 'known_hosts'), e.rebuiltKnownHosts);
      const early = await ctlCli(net, ['confirm', runId, '--crossed', '--by', 'Jane Engineer', '--state-dir', e.stateDir, '--json']);
      expect(early.exitCode, early.stderr.slice(-2000)).toBe(1);
      expect((early.summary as { error?: { code: string } }).error?.code).toBe('NOT_REBUILT');
      expect((await treeHashes(e.targetRoot)).size).toBeGreaterThan(300);

      // The engineer really rebuilds it, then confirms.
      await engineerRebuilds(net, e);
      const landed = await ctlCli(net, ['confirm', runId, '--crossed', '--by', 'Jane Engineer', '--state-dir', e.stateDir, '--json']);
      expect(landed.exitCode, landed.stderr.slice(-3000)).toBe(0);
      expect(landed.summary).toMatchObject({ outcome: 'landed' });
      const after = journalEvents(e.stateDir, runId);
      expect(after.find((x) => x.type === 'crossing.confirmed')).toMatchObject({ by: 'command', who: 'Jane Engineer' });
      expect(after.find((x) => x.type === 'rebuild.verified')).toMatchObject({ machineIdChanged: true, hostKeyChanged: true });

      // Everything is back, the technician's files included.
      const expected = await buildSandbox(path.join(await tempDir(), 'expected'), { patients: 300 });
      await technicianChanges(expected.target);
      const want = await treeHashes(expected.target);
      const got = await treeHashes(e.targetRoot);
      for (const [f, h] of want) if (f !== 'mssql/data/ehr.db' && !f.startsWith('mssql/backup/')) expect(got.get(f), f).toBe(h);
      expect((await localFingerprint(e.targetRoot)).digest).toBe((await localFingerprint(expected.target)).digest);

      // Grants are per phase, journaled, and every one is revoked: no key of the run is left on the vault host.
      const issued = after.filter((x) => x.type === 'grant.issued').map((x) => (x as unknown as { grant: { id: string; machine: string } }).grant);
      const revoked = new Set(after.filter((x) => x.type === 'grant.revoked').flatMap((x) => (x as unknown as { grantIds: string[] }).grantIds));
      expect(issued.length).toBeGreaterThanOrEqual(4);
      // At most one per vault and machine in each phase that moves bytes (capture, prove, final capture and its proofs, landing).
      expect(issued.length).toBeLessThanOrEqual(10);
      expect(issued.filter((g) => !revoked.has(g.id))).toEqual([]);
      expect((await readFile(net.hosts.vault.authorizedKeysPath, 'utf8')).split('\n').filter((l) => l.includes('rubicon-grant:'))).toEqual([]);

      // The password never shows: not in the terminal, the event stream, the journal, the logs or the reports.
      const password = (await readFile(path.join(path.dirname(e.runbook), 'restic.pass'), 'utf8')).trim();
      expect(await filesHolding(e.stateDir, password)).toEqual([]);
      for (const out of [up, early, landed]) expect(out.stdout + out.stderr).not.toContain(password);
    } finally {
      await net.destroy();
    }
  });
});
