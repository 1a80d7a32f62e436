import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { progressLine } from '../../src/cli/render.ts';

/**
 * The progress display in a real terminal: tmux (an 80-column pane) runs the
 * text renderer; the pane shows rate and time left, and nothing wraps.
 * In CI a missing tmux fails this test (.ci/run installs it).
 */
const haveTmux = (await execa('tmux', ['-V'], { reject: false })).exitCode === 0;
if (!haveTmux && process.env.CI) throw new Error('tmux is missing: .ci/run installs it');

const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-tmux-'));
const session = `rubicon-progress-${process.pid}-${Date.now()}`;
afterAll(async () => {
  await execa('tmux', ['kill-session', '-t', session], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

describe('progress display', () => {
  it('progressLine: rate and time left after a second, never past columns - 1, the step shortened first', () => {
    const p = { step: 'capture folder:ehr/A by file-mirror', done: 512 * 1024 * 1024, total: 2048 * 1024 * 1024, unit: 'bytes' as const };
    expect(progressLine(p, 500, p.done, 80)).not.toMatch(/left/); // too early to say
    const line = progressLine(p, 4000, p.done, 80);
    expect(line).toMatch(/128\.0 MiB\/s  0:12 left$/);
    for (const cols of [40, 60, 80, 120]) expect(progressLine({ ...p, step: 'x'.repeat(300) }, 4000, p.done, cols).length).toBeLessThanOrEqual(cols - 1);
    expect(progressLine({ ...p, step: 'x'.repeat(300) }, 4000, p.done, 80)).toMatch(/x…/);
    expect(progressLine({ step: 'prove', done: 3, total: 7, unit: 'items' }, 2000, 3, 80)).toMatch(/3 \/ 7 items  1\.5 items\/s  0:03 left/);
  });

  it.skipIf(!haveTmux)('in an 80-column tmux pane: throttled, rate and time left shown, no line wraps', async () => {
    const ready = path.join(dir, 'ready');
    const driver = path.join(import.meta.dirname, 'fixtures/progress-driver.ts');
    await execa('tmux', ['new-session', '-d', '-x', '80', '-y', '10', '-s', session, `${process.execPath} ${driver} ${ready}`], { env: { ...process.env, NO_COLOR: '1', TERM: 'xterm-256color' } });
    await execa('tmux', ['resize-window', '-t', session, '-x', '80', '-y', '10'], { reject: false });
    // Wait for the driver to say it is done (an observable event, not a fixed sleep).
    for (let i = 0; i < 600 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(ready)).toBe(true);
    const draws = Number(readFileSync(ready, 'utf8'));
    expect(draws).toBeGreaterThan(150); // redrawn often enough to be alive ...
    expect(draws).toBeLessThan(260); // ... but throttled: 2000 events over 20 s, at most ten a second
    const width = (await execa('tmux', ['display', '-p', '-t', session, '#{pane_width}'])).stdout.trim();
    expect(width).toBe('80');
    const plain = (await execa('tmux', ['capture-pane', '-p', '-t', session])).stdout.split('\n');
    const joined = (await execa('tmux', ['capture-pane', '-p', '-J', '-t', session])).stdout.split('\n');
    // -J joins lines the terminal wrapped: the same count means nothing wrapped.
    expect(joined.length).toBe(plain.length);
    for (const l of plain) expect(l.length).toBeLessThanOrEqual(80);
    const bar = plain.find((l) => l.startsWith('  ['));
    expect(bar).toMatch(/1\.8 GiB \/ 3\.0 GiB  92\.\d MiB\/s  0:1\d left/);
    expect(bar).toMatch(/\] capture folder:e.*… 1\.8 GiB/); // the step shortened, the numbers kept
    expect(plain[0]).toMatch(/capturing folder:ehr\/A into every vault/);
  }, 60_000);
});
