import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSandbox, type SandboxLayout } from '../../src/sandbox/estate.ts';
import { cli, tempDir } from './helpers.ts';

/**
 * `rubicon verify` reads the vaults without the journal, so the vaults'
 * artifact indexes are evidence too: each entry is signed by the run's key
 * (src/trust/index-entry.ts). A forged, unsigned, unreadable or disagreeing
 * entry is named (vault and artifact) and fails verify (exit 1); the rest
 * is still proven.
 */

async function rehearsed(): Promise<SandboxLayout> {
  const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 50 });
  const r = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
  expect(r.exitCode).toBe(0);
  return L;
}

async function indexFiles(vaultRoot: string): Promise<string[]> {
  const dir = path.join(vaultRoot, 'index');
  return (await readdir(dir)).filter((n) => n.endsWith('.json')).sort().map((n) => path.join(dir, n));
}

async function verify(L: SandboxLayout) {
  const r = await cli(['verify', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
  const notes = r.events.flatMap((e) => {
    const ev = (e as { event?: { type: string; level?: string; message?: string } }).event;
    return ev?.type === 'note' && ev.level === 'error' && ev.message?.startsWith('verify: ') ? [ev.message] : [];
  });
  return { ...r, notes };
}

describe('verify trusts only signed, agreeing index entries', () => {
  it('an untouched estate verifies (exit 0, no index findings), and every entry carries a signature', async () => {
    const L = await rehearsed();
    for (const f of await indexFiles(L.vaults[0]!)) expect(JSON.parse(await readFile(f, 'utf8'))).toHaveProperty('sig');
    const r = await verify(L);
    expect(r.notes).toEqual([]);
    expect(r.exitCode).toBe(0);
  });

  it('an entry whose manifest was rewritten (signature kept) is named as not signed; the vaults disagreeing is not needed to see it', async () => {
    const L = await rehearsed();
    const [f] = await indexFiles(L.vaults[0]!);
    const e = JSON.parse(await readFile(f!, 'utf8'));
    e.manifestHash = 'f'.repeat(64);
    await writeFile(f!, JSON.stringify(e));
    const r = await verify(L);
    expect(r.notes).toEqual([expect.stringMatching(new RegExp(`vault nas: the index entry of ${e.artifactId} is not signed .*does not match`))]);
    expect(r.exitCode).toBe(1);
  });

  it('an entry with its signature removed is named; an unreadable index file is named and the others still proven', async () => {
    const L = await rehearsed();
    const [a, b] = await indexFiles(L.vaults[1]!);
    const e = JSON.parse(await readFile(a!, 'utf8'));
    delete e.sig;
    await writeFile(a!, JSON.stringify(e));
    await writeFile(b!, '{"not": "an index entry"');
    const r = await verify(L);
    expect(r.notes).toEqual(expect.arrayContaining([
      expect.stringMatching(/vault offsite: the index entry of .* carries no signature/),
      expect.stringMatching(new RegExp(`vault offsite: index file .*${path.basename(b!).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be read`)),
    ]));
    expect(r.notes).toHaveLength(2);
    expect(r.exitCode).toBe(1);
    // The other vault still holds good entries: the artifacts are proven from there.
    const proofs = (r.summary as { proofs: { artifactId: string; outcome: string }[] }).proofs;
    // (The vendor job's backup is the story's unrestorable one: its proof fails by design, and is reported, not fatal.)
    const ours = proofs.filter((p) => !p.artifactId.endsWith('.vendor-job'));
    expect(ours.length).toBeGreaterThanOrEqual(6);
    expect(ours.filter((p) => p.outcome !== 'passed')).toEqual([]);
  });

  it('two vaults naming different manifests for one artifact, each signed, are named as disagreeing', async () => {
    const L = await rehearsed();
    const files0 = await indexFiles(L.vaults[0]!);
    const files1 = await indexFiles(L.vaults[1]!);
    const x = JSON.parse(await readFile(files0[0]!, 'utf8'));
    const y = JSON.parse(await readFile(files1[0]!, 'utf8'));
    expect(x.artifactId).toBe(y.artifactId);
    // Only the key can make a signed entry naming another manifest: a vault restored from an older, diverged copy, simulated by signing with the key.
    const { runSigner } = await import('../../src/trust/keyring.ts');
    const { signIndexEntry } = await import('../../src/trust/index-entry.ts');
    const { signer } = runSigner({ stateDir: L.stateDir });
    const forged = signIndexEntry({ ...y, manifestHash: 'e'.repeat(64), sig: undefined, keyId: undefined }, signer);
    await writeFile(files1[0]!, JSON.stringify(forged));
    const r = await verify(L);
    expect(r.notes).toEqual([expect.stringMatching(new RegExp(`the vaults disagree about ${x.artifactId}: nas names manifest .*, offsite names manifest eeeeeeeeeeee`))]);
    expect(r.exitCode).toBe(1);
  });
});

function copiesOf(events: Record<string, unknown>[], artifactId: string): string[] {
  return events
    .flatMap((e) => {
      const ev = (e as { event?: { type: string; copy?: { artifactId: string; vault: string; status: string } } }).event;
      return ev?.type === 'copy.checked' && ev.copy?.artifactId === artifactId ? [`${ev.copy.vault}:${ev.copy.status}`] : [];
    })
    .sort();
}

describe('verify grades a copy only in the vaults whose index records it', () => {
  /** Removes artifact `id` from a filesystem vault as if it had never been stored there: its index entry and its manifest object. */
  async function forget(vaultRoot: string, file: string, manifestHash: string): Promise<void> {
    const { rm } = await import('node:fs/promises');
    await rm(file);
    await rm(path.join(vaultRoot, 'objects', manifestHash.slice(0, 2), manifestHash));
  }

  it('an artifact kept in one vault only (like a BACKUP TO URL artifact in its azure-blob vault) is not "missing" in the other', async () => {
    const L = await rehearsed();
    const [f] = await indexFiles(L.vaults[1]!);
    const e = JSON.parse(await readFile(f!, 'utf8'));
    await forget(L.vaults[1]!, f!, e.manifestHash);
    const r = await verify(L);
    expect(r.notes).toEqual([]);
    // Graded in nas (where its index entry is), not in offsite (where it never was).
    expect(copiesOf(r.events, e.artifactId)).toEqual(['nas:ok']);
    expect(r.exitCode).toBe(0);
  });

  it('a copy its vault\'s index records but whose objects are gone is still graded missing there, and fails verify', async () => {
    const L = await rehearsed();
    const [f] = await indexFiles(L.vaults[1]!);
    const e = JSON.parse(await readFile(f!, 'utf8'));
    const { rm } = await import('node:fs/promises');
    await rm(path.join(L.vaults[1]!, 'objects', e.manifestHash.slice(0, 2), e.manifestHash));
    const r = await verify(L);
    expect(copiesOf(r.events, e.artifactId)).toEqual(['nas:ok', 'offsite:missing']);
    expect(r.exitCode).toBe(1);
  });
});
