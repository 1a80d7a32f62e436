import { readdir, readFile, writeFile, appendFile, open } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/core/events.ts';
import type { Phase } from '../../src/core/types.ts';
import type { RunContext } from '../../src/run/context.ts';
import { startRun } from '../../src/run/run.ts';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { cli, diffTrees, journalOf, removeTempDirs, tempDir, treeState } from './helpers.ts';

afterEach(removeTempDirs); // the estates are tens of MiB each

/**
 * SCENARIO.md's variants. Each must end with nothing destroyed: exit 2 (or
 * 3), the target as it was (apart from what the vendor's own job wrote into
 * its output folder, which the runbook asked for), no crossing recorded.
 */

async function estate(): Promise<SandboxLayout> {
  return buildSandbox(path.join(await tempDir(), 'estate'), { patients: 300 });
}

async function upgrade(L: SandboxLayout, afterPhase?: (phase: Phase, ctx: RunContext) => Promise<void>) {
  const events: RunEvent[] = [];
  const summary = await startRun('upgrade', L.runbook, {
    stateDir: L.stateDir,
    onEvent: (e) => events.push(e),
    confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
    hooks: afterPhase ? { afterPhase } : undefined,
  });
  const journal = events.flatMap((e) => (e.kind === 'journal' ? [e.event] : []));
  return { summary, journal };
}

/** The target must be unchanged, except new files the vendor job wrote into mssql/backup. */
function onlyVendorOutput(changes: string[]): string[] {
  return changes.filter((c) => !/^added mssql\/backup\/ehr-.*\.bak$/.test(c));
}

/** Flips one bit in the middle of a file, in place (like restic's checker tests). */
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

/** The manifest of an artifact as the vault holds it (v1 JSON or v2 JSON Lines), read and hash-checked by Rubicon's own reader. */
async function manifestIn(vaultRoot: string, manifestHash: string) {
  const { readManifest } = await import('../../src/files/manifest.ts');
  const { FilesystemVault } = await import('../../src/vaults/filesystem.ts');
  return readManifest(new FilesystemVault({ name: 'v', kind: 'filesystem', location: vaultRoot, offTarget: true, immutable: false }), manifestHash);
}

async function objectFile(vaultRoot: string, sha256: string): Promise<string> {
  const p = path.join(vaultRoot, 'objects', sha256.slice(0, 2), sha256);
  await readFile(p); // must exist
  return p;
}

describe('variants: each ends with nothing destroyed', () => {
  it('every database artifact is damaged → the gate refuses, exit 2, the target untouched', async () => {
    const L = await estate();
    const before = await treeState(L.target);
    const { summary, journal } = await upgrade(L, async (phase, ctx) => {
      if (phase !== 'capture') return;
      // Damage every copy of every database artifact in both vaults, after capture and before prove.
      for (const a of ctx.state().artifacts.filter((x) => x.itemId.startsWith('database:'))) {
        const manifest = await manifestIn(L.vaults[0]!, a.manifestHash);
        for (const v of L.vaults) for (const e of manifest.entries) await flipBit(await objectFile(v, e.sha256));
      }
    });
    expect(summary.outcome).toBe('refused');
    expect(summary.exitCode).toBe(2);
    expect(summary.gate?.passed).toBe(false);
    expect(summary.gate?.reasons.join(' ')).toMatch(/database:sqlite:ehr/);
    expect(journal.some((e) => e.type === 'crossing.started')).toBe(false);
    expect(journal.some((e) => e.type === 'permit.issued')).toBe(false);
    expect(onlyVendorOutput(diffTrees(before, await treeState(L.target)))).toEqual([]);
    // The damage is named per copy.
    const bad = journal.flatMap((e) => (e.type === 'copy.checked' && e.copy.status !== 'ok' ? [e.copy] : []));
    expect(bad.length).toBeGreaterThanOrEqual(4);
    // Objects are content-addressed: the vendor's .bak is also a file of the mssql/backup folder
    // artifact and of the everything capture (volume:.), so those copies are named damaged too. Nothing else is.
    expect(bad.every((c) => c.artifactId.includes('database:sqlite:ehr') || c.artifactId.includes('folder:mssql/backup') || c.artifactId.includes('volume:.'))).toBe(true);
    expect(bad.filter((c) => c.artifactId.includes('database:sqlite:ehr')).length).toBe(6);
  });

  it('a copy in a vault is altered after it was written → the damage is named (artifact, vault) and that copy does not count', async () => {
    const L = await estate();
    const before = await treeState(L.target);
    let victim = '';
    const { summary, journal } = await upgrade(L, async (phase, ctx) => {
      if (phase !== 'capture') return;
      const a = ctx.state().artifacts.find((x) => x.itemId === 'folder:ehr/X')!;
      victim = a.id;
      const manifest = await manifestIn(L.vaults[1]!, a.manifestHash);
      await flipBit(await objectFile(L.vaults[1]!, manifest.entries[7]!.sha256));
    });
    const bad = journal.flatMap((e) => (e.type === 'copy.checked' && e.copy.status !== 'ok' ? [e.copy] : []));
    // One damaged object: the copy of every artifact holding it in that vault (ehr/X and the everything capture), named.
    expect(bad.map((c) => c.artifactId).sort()).toEqual([victim, victim.replace('folder:ehr/X', 'volume:.')].sort());
    for (const c of bad) {
      expect(c).toMatchObject({ vault: 'offsite', status: 'checksum-mismatch' });
      expect(c.detail).toMatch(/scans\//); // names the file, not its content
    }
    // With two vaults required, one damaged copy leaves ehr/X short: refused, nothing destroyed.
    expect(summary.exitCode).toBe(2);
    expect(summary.gate?.reasons.join(' ')).toMatch(/offsite/);
    expect(summary.gate?.reasons.join(' ')).toMatch(/folder:ehr\/X|ehr\/X/);
    expect(journal.some((e) => e.type === 'crossing.started')).toBe(false);
    expect(onlyVendorOutput(diffTrees(before, await treeState(L.target)))).toEqual([]);
  });

  it('a file changes after the final capture → the gate refuses, exit 2', async () => {
    const L = await estate();
    const { summary, journal } = await upgrade(L, async (phase) => {
      if (phase === 'final-capture') await appendFile(path.join(L.target, 'ehr/Z/licence.lic'), 'EXTENDED=2027\n');
    });
    expect(summary.outcome).toBe('refused');
    expect(summary.exitCode).toBe(2);
    expect(summary.gate?.reasons.join(' ')).toMatch(/licence\.lic/);
    expect(journal.some((e) => e.type === 'crossing.started')).toBe(false);
    // The target still has the change: nothing was wiped.
    expect(await readFile(path.join(L.target, 'ehr/Z/licence.lic'), 'utf8')).toMatch(/EXTENDED=2027/);
    // The freeze was undone.
    expect(journal.at(-1)?.type).toBe('run.completed');
    expect(journal.some((e) => e.type === 'target.thawed')).toBe(true);
  });

  it('the technician changes files after the proofs → drift listed file by file, delta captured and proven, gate passes', async () => {
    const L = await estate();
    const { summary, journal } = await upgrade(L, async (phase) => {
      if (phase === 'prove') await writeFile(path.join(L.target, 'ehr/A/moved-in.txt'), 'moved here the morning after\n');
    });
    expect(summary.exitCode).toBe(0);
    const drift = journal.flatMap((e) => (e.type === 'drift.scanned' && e.drift.stage === 'freeze' && e.drift.changes.length ? [e.drift] : []));
    expect(drift.map((d) => d.changes.map((c) => `${c.kind} ${d.itemId}/${c.path}`)).flat()).toEqual(['added folder:ehr/A/moved-in.txt', 'added volume:./ehr/A/moved-in.txt']);
    expect(await readFile(path.join(L.target, 'ehr/A/moved-in.txt'), 'utf8')).toBe('moved here the morning after\n');
  });

  it('a database that changes after capture is captured again at the final capture', async () => {
    const L = await estate();
    const { DatabaseSync } = await import('node:sqlite');
    const { summary, journal } = await upgrade(L, async (phase) => {
      if (phase !== 'prove') return;
      const db = new DatabaseSync(path.join(L.target, 'mssql/data/ehr.db'));
      db.exec("UPDATE users SET username = username || '-x' WHERE rowid = 1");
      db.close();
    });
    const finals = journal.flatMap((e) => (e.type === 'artifact.captured' && e.artifact.phase === 'final-capture' ? [e.artifact] : []));
    expect(finals.map((a) => a.method).sort()).toEqual(['sqlite-backup-api', 'sqlite-sql-dump']);
    expect(summary.exitCode).toBe(0);
  });

  it('a landing that fails validation keeps the rollback point (exit 1); resume after the vault is repaired lands', async () => {
    const L = await estate();
    let damaged: string[] = [];
    const { summary, journal } = await upgrade(L, async (phase, ctx) => {
      if (phase !== 'crossing') return;
      // After the crossing: every copy of one file of ehr/Y is damaged, so landing cannot restore it.
      const a = ctx.state().artifacts.find((x) => x.itemId === 'folder:ehr/Y')!;
      const manifest = await manifestIn(L.vaults[0]!, a.manifestHash);
      damaged = await Promise.all(L.vaults.map((v) => objectFile(v, manifest.entries[3]!.sha256)));
      for (const f of damaged) await flipBit(f);
    });
    expect(summary.outcome).toBe('failed');
    expect(summary.exitCode).toBe(1);
    expect(summary.error?.code).toBe('LANDING_FAILED');
    expect(summary.error?.hint).toMatch(/rollback point is kept/);
    const failed = journal.flatMap((e) => (e.type === 'landing.validated' && e.outcome === 'failed' ? [e.itemId] : []));
    // The everything capture holds the same object: it cannot put that file back either, and says so.
    expect(failed).toEqual(['folder:ehr/Y', 'volume:.']);
    expect(journal.some((e) => e.type === 'rollback.released')).toBe(false);
    const rollback = journal.find((e) => e.type === 'rollback.created');
    expect(rollback && (await readdir((rollback as { rollbackPoint: { location: string } }).rollbackPoint.location))).toContain('ehr');

    for (const f of damaged) await flipBit(f); // repaired
    const { resumeRun } = await import('../../src/run/run.ts');
    const again = await resumeRun(summary.runId, {
      stateDir: L.stateDir,
      onEvent: () => {},
      confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
    });
    expect(again.outcome).toBe('landed');
    expect(again.exitCode).toBe(0);
  });

  it('rehearse never crosses a production target; on a staging target it rehearses the whole upgrade', async () => {
    const prod = await estate();
    const before = await treeState(prod.target);
    const p = await cli(['rehearse', '--runbook', prod.runbook, '--state-dir', prod.stateDir, '--yes', '--json']);
    expect(p.exitCode).toBe(0);
    expect(p.summary).toMatchObject({ outcome: 'rehearsed', crossed: false });
    expect(onlyVendorOutput(diffTrees(before, await treeState(prod.target)))).toEqual([]);

    const staging = await estate();
    await writeFile(staging.runbook, (await readFile(staging.runbook, 'utf8')).replace('  image: Windows Server 2025 Datacenter', '  image: Windows Server 2025 Datacenter\n  stage: staging'));
    const s = await cli(['rehearse', '--runbook', staging.runbook, '--state-dir', staging.stateDir, '--yes', '--json']);
    expect(s.exitCode, s.stderr).toBe(0);
    expect(s.summary).toMatchObject({ outcome: 'rehearsed', crossed: true, gate: { passed: true } });
    expect(await readFile(path.join(staging.target, 'os-release'), 'utf8')).toMatch(/2025/);
    // Without --yes and without a terminal, even a staging rehearsal does not cross: it refuses before anything runs
    // (test/e2e/pipelines.test.ts).
  });

  it('a crossing declined at the prompt → exit 2 `not-confirmed`, nothing destroyed', async () => {
    const L = await estate();
    const before = await treeState(L.target);
    const summary = await startRun('upgrade', L.runbook, {
      stateDir: L.stateDir,
      onEvent: () => undefined,
      confirm: async () => ({ confirmed: false, by: 'prompt', who: 'test', reason: 'the typed name did not match' }),
    });
    expect([summary.exitCode, summary.outcome]).toEqual([2, 'not-confirmed']);
    expect(onlyVendorOutput(diffTrees(before, await treeState(L.target)))).toEqual([]);
    expect(await readdir(L.target)).not.toContain('os-release');
  });

  it('a malformed runbook → exit 3 naming the field and the fix, nothing touched, no run created', async () => {
    const L = await estate();
    const before = await treeState(L.target);
    const text = await readFile(L.runbook, 'utf8');
    await writeFile(L.runbook, text.replace('kind: filesystem\n    path: ./vaults/offsite', 'kind: filesystm\n    path: ./vaults/offsite'));
    const r = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/vaults\[1\]\.kind/);
    expect(r.stderr).toMatch(/"filesystem"/);
    expect(r.stderr).toMatch(/fix:/);
    expect(diffTrees(before, await treeState(L.target))).toEqual([]);
    await expect(readdir(path.join(L.stateDir, 'runs'))).rejects.toThrow();
  });

  it('verify: a vault copy altered after a rehearsal is named by `rubicon verify`, exit 1', async () => {
    const L = await estate();
    const r1 = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
    expect(r1.exitCode).toBe(0);
    const runId = (r1.summary as { runId: string }).runId;
    const records = await journalOf(L.stateDir, runId);
    const a = records.flatMap((x) => (x.event.type === 'artifact.captured' && x.event.artifact.method === 'sqlite-backup-api' ? [x.event.artifact] : []))[0]!;
    const manifest = await manifestIn(L.vaults[0]!, a.manifestHash);
    await flipBit(await objectFile(L.vaults[0]!, manifest.entries[0]!.sha256));
    const r2 = await cli(['verify', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
    const copies = r2.events.flatMap((e) => {
      const ev = (e as { event?: { type: string; copy?: { artifactId: string; vault: string; status: string } } }).event;
      return ev?.type === 'copy.checked' && ev.copy && ev.copy.status !== 'ok' ? [ev.copy] : [];
    });
    expect(copies).toEqual([expect.objectContaining({ artifactId: a.id, vault: 'nas', status: 'checksum-mismatch' })]);
    // The other vault's copy still proves the artifact, so Rubicon's own artifacts still restore; the damaged copy is named.
    const proof = (r2.summary as { proofs: { artifactId: string; outcome: string; vault: string }[] }).proofs.find((p) => p.artifactId === a.id);
    expect(proof).toMatchObject({ outcome: 'passed', vault: 'offsite' });
    expect(r2.exitCode).toBe(1);
    expect((r2.summary as { outcome: string }).outcome).toBe('failed');
  });
});
