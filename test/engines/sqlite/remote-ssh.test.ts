/**
 * The remote SQLite engine over ssh, on test hosts (test/hosts/): a target
 * and a proving ground, each a network namespace with its own sshd, and the
 * orchestrator in the controller host. The proving ground has no route to
 * the target; the test plays the vault (it copies the captured file from the
 * target's disk to the proving ground's, as a vault would carry it).
 * Outside CI a machine that cannot make test nets or lacks sqlite3 skips
 * with the reason; in CI it fails.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Artifact, Fingerprint, Item, Manifest, ProofCheck } from '../../../src/core/types.ts';
import { compareFingerprints } from '../../../src/engines/fingerprint.ts';
import { createSyntheticEhr } from '../../../src/sandbox/synthetic-ehr.ts';
import { requireTestNet } from '../../hosts/index.ts';
import { useTestNet } from '../../hosts/vitest.ts';
import { sha256File } from './helpers.ts';
import { noSqlite3 } from './remote-helpers.ts';

const ORCHESTRATOR = fileURLToPath(new URL('./fixtures/ssh-orchestrator.ts', import.meta.url));
const skip = requireTestNet() ?? noSqlite3();

interface Captured {
  method: string;
  files: { path: string; name: string }[];
  format: string;
  tool: string;
  position?: string;
  sourceFingerprint?: Fingerprint;
}

describe.skipIf(skip)(`remote SQLite engine over ssh on test hosts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const net = useTestNet({ hosts: { target: {}, pg: {} }, segments: { a: ['ctl', 'target'], b: ['ctl', 'pg'] } });

  async function orchestrate(job: Record<string, unknown>): Promise<any> {
    const n = net();
    const host = (name: 'target' | 'pg') => ({ address: n.reachableAddress('ctl', name)!, dataDir: n.host(name).dataDir });
    const full = { identityFile: n.clientKey.privateKeyPath, knownHostsFile: n.knownHostsPath, runDir: path.join(n.dir, 'run'), target: host('target'), pg: host('pg'), ...job };
    const r = await n.node('ctl', [ORCHESTRATOR, JSON.stringify(full)], { timeoutMs: 120_000 });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    if (r.exitCode !== 0 || !line.startsWith('{')) throw new Error(`orchestrator in ctl exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
    const out = JSON.parse(line);
    if (!out.ok) throw new Error(`orchestrator in ctl failed: ${out.error.code} ${out.error.message}`);
    return out;
  }

  it('discovers, fingerprints and captures with both methods on the target, proves both on the proving ground, lands on the target: fingerprints equal', async () => {
    const n = net();
    expect(n.reachableAddress('pg', 'target')).toBeUndefined();
    const targetDir = n.host('target').dataDir;
    const db = path.join(targetDir, 'ehr', 'data', 'ehr.db');
    createSyntheticEhr(db, { patients: 200, wal: true });
    const before = sha256File(db);

    // 1. On the target, over ssh.
    const cap = await orchestrate({ phase: 'capture', db });
    const item = cap.result.items.find((i: Item) => i.name === 'ehr') as Item;
    expect(item).toMatchObject({ discovered: true, declared: true, location: 'ehr/data/ehr.db', facts: { tables: 6, journalMode: 'wal' } });
    const source = cap.result.source as Fingerprint;
    expect(source.engine).toBe('sqlite3-cli');
    const targetAddress = n.reachableAddress('ctl', 'target');
    expect(cap.result.missing).toMatchObject({ code: 'TOOL_MISSING', message: expect.stringContaining(`target (ssh root@${targetAddress}:22)`) });
    const stepIds = (cap.events as { type: string; stepId: string; machine: string }[]).filter((e) => e.type === 'step.started');
    expect(stepIds.map((e) => e.stepId)).toEqual(expect.arrayContaining(['ssh1/sqlite3-backup/sqlite3/sqlite3-backup', 'ssh1/sqlite3-dump/sqlite3/sqlite3-dump']));
    expect(new Set(stepIds.map((e) => e.machine))).toEqual(new Set(['target']));

    // 2. The vault: the files travel from the target's disk to the proving ground's.
    const pgDir = n.host('pg').dataDir;
    const artifacts = (cap.result.captures as Captured[]).map((c) => {
      expect(c.files[0]!.path.startsWith(path.join(targetDir, 'rubicon-work'))).toBe(true);
      const artifactId = `ssh1.capture.${item.id}.${c.method}`;
      const dir = path.join(pgDir, 'files', c.method);
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, c.files[0]!.name);
      copyFileSync(c.files[0]!.path, file);
      const st = statSync(file);
      const manifest: Manifest = { version: 1, artifactId, itemId: item.id, method: c.method, format: c.format, entries: [{ path: c.files[0]!.name, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode, sha256: sha256File(file) }] };
      const now = new Date().toISOString();
      const artifact: Artifact = {
        id: artifactId,
        runId: 'ssh1',
        itemId: item.id,
        method: c.method,
        independenceGroup: c.method,
        phase: 'capture',
        origin: 'rubicon',
        manifestHash: 'm'.repeat(64),
        fileCount: 1,
        bytes: st.size,
        sourceFingerprint: source,
        provenance: { method: c.method, tool: c.tool, host: 'target', startedAt: now, finishedAt: now, ...(c.position ? { position: c.position } : {}) },
      };
      return { artifact, manifest, files: [file] };
    });

    // 3. On the proving ground, over ssh: it has no route to the target.
    const pr = await orchestrate({ phase: 'prove', artifacts });
    const proofs = pr.result.proofs as { checks: ProofCheck[]; fingerprint: Fingerprint }[];
    for (const [i, p] of proofs.entries()) {
      expect(Object.fromEntries(p.checks.map((c) => [c.name, c.status]))).toEqual({ restore: 'passed', integrity: 'passed', fingerprint: 'passed' });
      expect(compareFingerprints(source, p.fingerprint)).toEqual({ equal: true, differences: [] });
      expect(compareFingerprints((cap.result.captures as Captured[])[i]!.sourceFingerprint!, p.fingerprint).equal).toBe(true);
    }
    expect(new Set((pr.events as { type: string; machine?: string }[]).filter((e) => e.type === 'step.started').map((e) => e.machine))).toEqual(new Set(['proving-ground']));
    expect(readdirSync(path.join(pgDir, 'rubicon-work')).length).toBe(2); // the scratch databases were built on the proving ground

    // 4. Landing on the target from each artifact's file on the target's side.
    for (const [i, c] of (cap.result.captures as Captured[]).entries()) {
      const dest = path.join(targetDir, 'rebuilt', c.method, 'ehr.db');
      const land = await orchestrate({ phase: 'land', item, manifest: artifacts[i]!.manifest, file: c.files[0]!.path, dest });
      expect(compareFingerprints(proofs[i]!.fingerprint, land.result.landed).equal).toBe(true);
      expect(existsSync(`${dest}.rubicon-restore.tmp`)).toBe(false);
    }
    expect(sha256File(db)).toBe(before);
  });
});
