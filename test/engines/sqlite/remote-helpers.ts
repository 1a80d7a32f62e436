import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Artifact, Manifest } from '../../../src/core/types.ts';
import type { RemoteEngineContext } from '../../../src/engines/engine.ts';
import { LocalMachine } from '../../../src/machines/local.ts';
import type { Machine } from '../../../src/machines/machine.ts';
import { createStepRunner, type StepJournal } from '../../../src/run/steps.ts';
import { sha256File, tempDir } from './helpers.ts';

/**
 * Why the sqlite3 CLI tests cannot run here, or undefined when they can. In
 * CI (process.env.CI) always undefined: a missing sqlite3 makes them fail.
 */
export function noSqlite3(): string | undefined {
  if (process.env.CI) return undefined;
  const r = spawnSync('sqlite3', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : 'the sqlite3 command-line shell is not installed (Debian: apt-get install sqlite3)';
}

export type JournalEvent = Parameters<StepJournal['record']>[0];

/** A tiny in-memory StepJournal: what the run's journal keeps about steps. */
export function memoryJournal(): StepJournal & { events: JournalEvent[] } {
  const events: JournalEvent[] = [];
  const done = new Map<string, { exitCode: number }>();
  const started = new Set<string>();
  return {
    events,
    record(e) {
      events.push(e);
      if (e.type === 'step.started') started.add(e.stepId);
      else done.set(e.stepId, { exitCode: e.exitCode });
    },
    completed: (id) => done.get(id),
    started: (id) => started.has(id),
  };
}

/** Runs SQL with the real sqlite3 shell (test setup); throws with its stderr on failure. */
export function sqlite3(db: string, sql: string): string {
  const r = spawnSync('sqlite3', ['-init', '/dev/null', '-batch', '-bail', db], { input: sql, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`test setup: sqlite3 ${db} failed: ${r.stderr}`);
  return r.stdout;
}

export interface Estate {
  root: string;
  journal: ReturnType<typeof memoryJournal>;
  runDir: string;
  /** The target: its root folder, its machine, a context per step prefix. */
  targetRoot: string;
  target: LocalMachine;
  targetCtx(prefix: string): RemoteEngineContext;
  /** The proving ground: a separate machine and folder. */
  groundRoot: string;
  ground: LocalMachine;
  groundCtx(prefix: string): RemoteEngineContext;
}

/** A target and a proving ground as two local machines on separate folders, one run's steps journaled in memory. */
export function remoteEstate(): Estate {
  const root = tempDir('rubicon-sqlite3-');
  const targetRoot = join(root, 'target');
  const groundRoot = join(root, 'ground');
  const runDir = join(root, 'run');
  for (const d of [targetRoot, groundRoot, runDir]) mkdirSync(d, { recursive: true });
  const journal = memoryJournal();
  const steps = createStepRunner(journal, runDir, 'run1');
  const target = new LocalMachine({ name: 'target', root: targetRoot, stepsRoot: join(root, 'target-steps') });
  const ground = new LocalMachine({ name: 'proving-ground', root: groundRoot, stepsRoot: join(root, 'ground-steps') });
  const ctx = (machine: Machine, work: string) => (prefix: string): RemoteEngineContext => ({ machine, steps, stepPrefix: prefix, workDir: join(work, safe(prefix)) });
  return {
    root,
    journal,
    runDir,
    targetRoot,
    target,
    targetCtx: ctx(target, join(root, 'target-work')),
    groundRoot,
    ground,
    groundCtx: ctx(ground, join(groundRoot, 'scratch')),
  };
}

const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_') || 'x';

/**
 * What the orchestrator does between capture and prove: the captured file
 * goes to a vault and comes back to the proving ground as `filesDir/<name>`,
 * hash-checked. Here: a copy into the proving ground's own folder.
 */
export function deliver(e: Estate, itemId: string, method: string, captured: { files: { path: string; name: string }[]; format: string; tool: string }): { artifact: Artifact; manifest: Manifest; files: string[] } {
  const artifactId = `run1.capture.${itemId}.${method}`;
  const filesDir = join(e.groundRoot, 'files', safe(artifactId));
  mkdirSync(filesDir, { recursive: true });
  const entries = captured.files.map((f) => {
    const dest = join(filesDir, f.name);
    copyFileSync(f.path, dest);
    const st = statSync(dest);
    return { path: f.name, size: st.size, mtimeMs: st.mtimeMs, mode: st.mode, sha256: sha256File(dest) };
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
    origin: 'rubicon',
    manifestHash: 'm'.repeat(64),
    fileCount: entries.length,
    bytes: entries.reduce((s, x) => s + x.size, 0),
    provenance: { method, tool: captured.tool, host: 'target', startedAt: now, finishedAt: now },
  };
  return { artifact, manifest, files: entries.map((x) => join(filesDir, x.path)) };
}
