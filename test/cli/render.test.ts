import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunEvent } from '../../src/core/events.ts';
import { jsonRenderer, textRenderer } from '../../src/cli/render.ts';

function sink(tty: boolean): NodeJS.WriteStream & { text: () => string } {
  let out = '';
  const w = new Writable({
    write(chunk, _enc, cb) {
      out += String(chunk);
      cb();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  (w as { isTTY: boolean }).isTTY = tty;
  w.text = () => out;
  return w;
}

const rec = (seq: number, event: Extract<RunEvent, { kind: 'journal' }>['event']): RunEvent => ({ kind: 'journal', seq, at: '2026-11-28T00:00:00.000Z', prev: '', hash: '', event });
const progress: RunEvent = { kind: 'progress', type: 'progress', step: 'capture ehr/X', done: 512, total: 1024, unit: 'bytes' };
const refused = rec(2, {
  type: 'gate.evaluated',
  result: { passed: false, evaluatedAt: '', reasons: ['drift'], results: [{ rule: 'drift.none', status: 'fail', reason: 'ehr/Z changed', evidence: [] }] },
});

describe('renderers', () => {
  const saved = process.env.NO_COLOR;
  afterEach(() => {
    if (saved === undefined) delete process.env.NO_COLOR;
    else process.env.NO_COLOR = saved;
  });

  it('text on a terminal: a progress bar and colours', () => {
    delete process.env.NO_COLOR;
    const out = sink(true);
    const r = textRenderer(out);
    r.onEvent(progress);
    r.onEvent(refused);
    expect(out.text()).toMatch(/\[#{8}\.{8}\] capture ehr\/X 512 B \/ 1.0 KiB/); // 80 columns: a 16-wide bar
    expect(out.text()).toContain('\x1b[31m');
    expect(out.text()).toMatch(/GATE REFUSED: nothing was destroyed/);
  });

  it('text with NO_COLOR or without a terminal: no escape codes, no progress bar', () => {
    process.env.NO_COLOR = '1';
    const tty = sink(true);
    textRenderer(tty).onEvent(refused);
    expect(tty.text()).not.toContain('\x1b[');
    delete process.env.NO_COLOR;
    const pipe = sink(false);
    const r = textRenderer(pipe);
    r.onEvent(progress);
    r.onEvent(refused);
    expect(pipe.text()).not.toContain('\x1b[');
    expect(pipe.text()).not.toContain('capture ehr/X');
  });

  it('json: one parseable event per line, journal events never dropped, summary last', () => {
    const out = sink(false);
    let t = 1_000_000;
    const r = jsonRenderer(out, () => t);
    for (let i = 0; i < 50; i++) r.onEvent(progress); // at one instant: the first is printed, the rest are throttled
    t += 499;
    r.onEvent(progress);
    t += 1;
    r.onEvent(progress); // 500 ms after the first: printed
    r.onEvent({ ...progress, done: 1024 } as RunEvent); // the last step is always printed
    r.onEvent(refused);
    r.done({ runId: 'r-1', outcome: 'refused' }, '');
    const lines = out.text().trim().split('\n').map((l) => JSON.parse(l) as { kind: string; done?: number });
    expect(lines.filter((l) => l.kind === 'progress').map((l) => l.done)).toEqual([512, 512, 1024]);
    expect(lines.filter((l) => l.kind === 'journal')).toHaveLength(1);
    expect(lines.at(-1)).toMatchObject({ kind: 'summary', runId: 'r-1', outcome: 'refused' });
  });
});

describe('verify: items as the vaults know them', () => {
  it('says "in the vaults" (not "found, not declared") and prints no "0 files, 0 B" for artifacts read from a vault index', () => {
    process.env.NO_COLOR = '1';
    const out = sink(false);
    const r = textRenderer(out);
    const item = { id: 'volume:.', kind: 'volume' as const, name: '.', declared: false, discovered: true, location: '.', facts: { source: 'vault index' }, why: ['last captured 2026-12-01T10:00:00Z by run r-20261201-100000-ab12'], methods: [] };
    r.onEvent(rec(1, { type: 'item.discovered', item }));
    r.onEvent(rec(2, {
      type: 'artifact.captured',
      artifact: { id: 'a1', runId: 'r', itemId: 'volume:.', method: 'file-mirror', independenceGroup: 'file-mirror', phase: 'capture', origin: 'rubicon', manifestHash: 'h', fileCount: 0, bytes: 0, provenance: { method: 'file-mirror', tool: 'from vault index', host: '', startedAt: '', finishedAt: '' } },
    }));
    expect(out.text()).toMatch(/volume +\. +in the vaults +last captured 2026-12-01T10:00:00Z/);
    expect(out.text()).not.toMatch(/found, not declared|0 files, 0 B/);
    expect(out.text()).toMatch(/by file-mirror/);
  });
});
