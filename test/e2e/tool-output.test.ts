import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSandbox } from '../../src/sandbox/estate.ts';
import { cli, tempDir } from './helpers.ts';

/**
 * Issue 9: a vendor job that prints rows on stderr put them into the
 * journal, the --json stream and every report. A tool's output is kept in a
 * log file beside the run; the journal has its hash and line count; people
 * and pipelines see only error codes.
 */
const ROW = 'Jane Synthetic-Doe|1970-01-01|MRN-000123';

async function allText(dir: string): Promise<string> {
  let out = '';
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out += await readFile(path.join(e.parentPath, e.name), 'utf8').catch(() => '');
  }
  return out;
}

describe('a tool that prints patient data', () => {
  it('its rows reach the log beside the run, never the journal, the event stream or a report', async () => {
    const L = await buildSandbox(path.join(await tempDir(), 'estate'), { patients: 150 });
    const text = await readFile(L.runbook, 'utf8');
    await writeFile(L.runbook, text.replace(/command: \[node, ehr\/A\/bin\/sqlbackup\.ts[^\]]*\]/, `command: [sh, -c, "echo '${ROW}' >&2; echo 'SQLITE_CORRUPT: database disk image is malformed' >&2; exit 3"]`));
    const r = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('Jane Synthetic-Doe');
    expect(r.stderr).not.toContain('Jane Synthetic-Doe');
    const runId = (r.events[0] as { event: { runId: string } }).event.runId;
    const runDir = path.join(L.stateDir, 'runs', runId);
    const journal = await readFile(path.join(runDir, 'journal.jsonl'), 'utf8');
    expect(journal).not.toContain('Jane Synthetic-Doe');
    expect(journal).toContain('exited with code 3 (SQLITE_CORRUPT)');
    expect(await allText(path.join(runDir, 'report'))).not.toContain('Jane Synthetic-Doe');
    const logs = await readdir(path.join(runDir, 'logs'));
    const log = await readFile(path.join(runDir, 'logs', logs.find((f) => f.endsWith('-tool.log'))!), 'utf8');
    expect(log).toContain(ROW);
    expect(journal).toMatch(/output is kept in logs\/[0-9a-f]{16}-tool\.log \(SHA-256 [0-9a-f]{64}, \d+ lines\)/);
  });
});
