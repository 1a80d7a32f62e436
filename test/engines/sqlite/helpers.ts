import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Artifact, Manifest } from '../../../src/core/types.ts';
import type { CapturedFiles, EngineContext } from '../../../src/engines/engine.ts';
import { LocalHost } from '../../../src/hosts/local.ts';

const made: string[] = [];
afterEach(() => {
  while (made.length > 0) rmSync(made.pop()!, { recursive: true, force: true });
});

/** A fresh temporary folder, removed after the test. */
export function tempDir(prefix = 'rubicon-sqlite-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

/** A sandbox estate: a target root (LocalHost), a vault folder and a proving-ground folder, all separate. */
export function estate(): { target: LocalHost; targetCtx: EngineContext; vault: string; groundCtx: EngineContext; root: string } {
  const root = tempDir();
  for (const d of ['target', 'vault', 'ground', 'work']) mkdirSync(join(root, d));
  const target = new LocalHost('target', join(root, 'target'));
  const ground = new LocalHost('proving-ground', join(root, 'ground'));
  return {
    root,
    target,
    targetCtx: { host: target, workDir: join(root, 'work') },
    vault: join(root, 'vault'),
    groundCtx: { host: ground, workDir: join(root, 'ground', 'scratch') },
  };
}

export const sha256File = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

/**
 * Stores a capture's files in the vault folder (content-addressed by
 * SHA-256, as the vaults do) and returns the artifact, the manifest and the
 * fetched paths the proving ground gets: none of them is on the target.
 */
export function storeInVault(
  vault: string,
  itemId: string,
  method: string,
  captured: CapturedFiles,
): { artifact: Artifact; manifest: Manifest; files: string[] } {
  const artifactId = `run1.capture.${itemId}.${method}`;
  const entries = captured.files.map((f) => {
    const st = statSync(f.path);
    const sha = sha256File(f.path);
    copyFileSync(f.path, join(vault, sha));
    return { path: f.name, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode, sha256: sha };
  });
  const manifest: Manifest = { version: 1, artifactId, itemId, method, entries, format: captured.format };
  const now = new Date().toISOString();
  const artifact: Artifact = {
    id: artifactId,
    runId: 'run1',
    itemId,
    method,
    independenceGroup: method,
    phase: 'capture',
    origin: method === 'vendor-job' ? 'vendor' : 'rubicon',
    manifestHash: 'm'.repeat(64),
    fileCount: entries.length,
    bytes: entries.reduce((s, e) => s + e.size, 0),
    provenance: { method, tool: captured.tool, host: 'target', startedAt: now, finishedAt: now },
  };
  return { artifact, manifest, files: entries.map((e) => join(vault, e.sha256)) };
}
