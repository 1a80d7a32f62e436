import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { JournalRecord } from '../../src/core/events.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'rubicon.js');

const made: string[] = [];

/**
 * A new temporary folder. Every one is removed by removeTempDirs(), which
 * each e2e file calls in afterEach/afterAll: estates are tens of MiB each.
 */
export async function tempDir(prefix = 'rubicon-test-'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Removes every folder tempDir() made in this test file (so far). */
export async function removeTempDirs(): Promise<void> {
  for (const d of made.splice(0)) await rm(d, { recursive: true, force: true, maxRetries: 3 });
}

export interface CliResult {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  /** Parsed JSON lines of stdout (non-JSON lines dropped). */
  events: Record<string, unknown>[];
  summary: Record<string, unknown> | undefined;
}

/** Runs the real CLI in a child process (the same `node` that runs the tests). */
export async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    reject: false,
    env: { ...env, NO_COLOR: '1' },
    stdin: 'ignore',
    cwd: ROOT,
    timeout: 180_000,
  });
  const events: Record<string, unknown>[] = [];
  for (const line of String(r.stdout).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* not an event line */
    }
  }
  return {
    exitCode: r.exitCode,
    signal: r.signal ?? undefined,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    events,
    summary: events.find((e) => e.kind === 'summary'),
  };
}

/** path → sha256 of every regular file under root (content only). */
export async function treeHashes(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string, rel: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(abs, r);
      else if (e.isFile()) out.set(r, createHash('sha256').update(await readFile(abs)).digest('hex'));
    }
  }
  await walk(root, '');
  return out;
}

/** path → "size:mtime:sha256" — detects any change, including a touch. */
export async function treeState(root: string): Promise<Map<string, string>> {
  const hashes = await treeHashes(root);
  const out = new Map<string, string>();
  for (const [p, h] of hashes) {
    const st = await stat(path.join(root, p));
    out.set(p, `${st.size}:${st.mtimeMs}:${h}`);
  }
  return out;
}

export async function journalOf(stateDir: string, runId: string): Promise<JournalRecord[]> {
  const text = await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalRecord);
}

export function diffTrees(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, v] of before) if (after.get(p) !== v) out.push(after.has(p) ? `changed ${p}` : `deleted ${p}`);
  for (const p of after.keys()) if (!before.has(p)) out.push(`added ${p}`);
  return out.sort();
}
