import type { RunEvent } from '../core/events.ts';
import type { Phase } from '../core/types.ts';

/**
 * Two renderers for the same event stream: JSON lines for pipelines (stdout,
 * one event per line; the first carries the run id) and a readable display
 * for people (stderr-free stdout text, a progress bar on a terminal only,
 * colours only on a terminal and never with NO_COLOR).
 */
export interface Renderer {
  onEvent: (e: RunEvent) => void;
  /** Prints a final line or block. */
  done: (summary: unknown, text: string) => void;
}

/** `now` is the clock the progress throttle reads (tests pass their own). */
export function jsonRenderer(out: NodeJS.WritableStream = process.stdout, now: () => number = Date.now): Renderer {
  let lastProgress = Number.NEGATIVE_INFINITY;
  return {
    onEvent: (e) => {
      if (e.kind === 'progress' && e.type === 'progress') {
        // Throttle progress lines (one per 500 ms, and the last); journal events are never dropped.
        const t = now();
        if (t - lastProgress < 500 && e.done < e.total) return;
        lastProgress = t;
      }
      out.write(JSON.stringify(e) + '\n');
    },
    done: (summary) => out.write(JSON.stringify({ kind: 'summary', ...(summary as object) }) + '\n'),
  };
}

export interface Style {
  bold: (s: string) => string;
  green: (s: string) => string;
  red: (s: string) => string;
  yellow: (s: string) => string;
  dim: (s: string) => string;
}

export function style(tty: boolean): Style {
  const on = tty && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
  const wrap = (code: number, reset: number) => (s: string) => (on ? `\x1b[${code}m${s}\x1b[${reset}m` : s);
  return { bold: wrap(1, 22), green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39), dim: wrap(2, 22) };
}

const PHASE_TITLES: Record<Phase, string> = {
  discover: 'Discover: what is on the target',
  capture: 'Capture: several independent ways, into every vault',
  prove: 'Prove: restore each artifact on the proving ground, from the vaults alone',
  freeze: 'Freeze: stop the target and look for drift',
  'final-capture': 'Final capture: only what changed, then prove it',
  gate: 'Gate: the written policy, right before the point of no return',
  crossing: 'Crossing: rebuild the target',
  landing: 'Landing: restore onto the rebuilt target and validate',
  report: 'Report: the evidence',
};

function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

/** m:ss or h:mm:ss. */
function fmtClock(seconds: number): string {
  const t = Math.max(0, Math.round(seconds));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/**
 * One progress line, at most `columns - 1` characters (a line that fills
 * the last column makes some terminals wrap): the bar, the step (shortened
 * with "…" when it must be), done / total, and once the step has run for a
 * second the rate and the time left. Pure.
 */
export function progressLine(p: { step: string; done: number; total: number; unit: 'bytes' | 'files' | 'items' }, elapsedMs: number, doneSinceStart: number, columns: number): string {
  const width = columns >= 100 ? 28 : 16;
  const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const filled = Math.round(frac * width);
  const amount = p.unit === 'bytes' ? `${fmtBytes(p.done)} / ${fmtBytes(p.total)}` : `${p.done} / ${p.total} ${p.unit}`;
  let tail = amount;
  if (elapsedMs >= 1000 && doneSinceStart > 0 && p.done < p.total) {
    const perSecond = doneSinceStart / (elapsedMs / 1000);
    const rate = p.unit === 'bytes' ? `${fmtBytes(perSecond)}/s` : `${perSecond.toFixed(perSecond < 10 ? 1 : 0)} ${p.unit}/s`;
    tail += `  ${rate}  ${fmtClock((p.total - p.done) / perSecond)} left`;
  }
  const head = `  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] `;
  const room = Math.max(0, columns - 1 - head.length - tail.length - 1);
  const step = p.step.length <= room ? p.step : room > 1 ? `${p.step.slice(0, room - 1)}…` : '';
  return `${head}${step}${step ? ' ' : ''}${tail}`.slice(0, Math.max(0, columns - 1));
}

/** `now`: the clock of the progress throttle and rate (tests pass their own). */
export function textRenderer(out: NodeJS.WriteStream = process.stdout, now: () => number = Date.now): Renderer {
  const tty = Boolean(out.isTTY);
  const s = style(tty);
  let barShown = false;
  // Per step: when it started and how far it was, for the rate; when the bar was last drawn, for the throttle.
  const started = new Map<string, { t: number; done: number }>();
  let lastDraw = Number.NEGATIVE_INFINITY;
  const clearBar = () => {
    if (barShown) {
      out.write('\r\x1b[2K');
      barShown = false;
    }
  };
  const line = (t: string) => {
    clearBar();
    out.write(t + '\n');
  };
  return {
    onEvent: (e) => {
      if (e.kind === 'progress') {
        if (e.type === 'log') return line(`  ${e.level === 'warn' ? s.yellow('!') : e.level === 'error' ? s.red('✘') : '·'} ${e.message}`);
        if (!tty) return;
        const t = now();
        const first = started.get(e.step) ?? { t, done: e.done };
        if (!started.has(e.step)) started.set(e.step, first);
        // At most ten redraws a second (and always the last): a fast copy must not flood the terminal.
        if (t - lastDraw < 100 && e.done < e.total) return;
        lastDraw = t;
        out.write(`\r\x1b[2K${progressLine(e, t - first.t, e.done - first.done, out.columns || 80)}`);
        barShown = true;
        return;
      }
      const ev = e.event;
      switch (ev.type) {
        case 'run.started':
          return line(`${s.bold('Rubicon')} ${ev.command} run ${s.bold(ev.runId)} on target ${ev.target}`);
        case 'run.resumed':
          return line(s.yellow(`Resuming from the journal (pid ${ev.pid})`));
        case 'phase.started':
          return line(`\n${s.bold(PHASE_TITLES[ev.phase])}`);
        case 'item.discovered': {
          const it = ev.item;
          // `rubicon verify` knows items from the vaults' index, not from the target: say so, not "found, not declared".
          const fromVaults = it.facts?.source === 'vault index';
          const tag = fromVaults ? 'in the vaults' : it.kind === 'volume' ? 'everything capture' : it.declared ? (it.discovered ? 'declared' : s.red('declared, NOT FOUND')) : s.yellow('found, not declared');
          return line(`  ${it.kind.padEnd(8)} ${it.name.padEnd(22)} ${tag}  ${s.dim(it.why.join('; '))}`);
        }
        case 'artifact.captured': {
          const a = ev.artifact;
          // An artifact read back from a vault index has no file counts here (the proof below says what it holds).
          if (a.provenance.tool === 'from vault index') return line(`      ${s.dim(`by ${a.method}`)}`);
          const delta = a.changed ? ` (delta: ${a.changed.length} changed)` : '';
          return line(`  ${s.green('✔')} ${a.itemId} by ${a.method}: ${a.fileCount} files, ${fmtBytes(a.bytes)}${delta}`);
        }
        case 'capture.failed':
          return line(`  ${s.red('✘')} ${ev.itemId} by ${ev.method}: ${ev.message}`);
        case 'copy.checked':
          if (ev.copy.status === 'ok') return;
          return line(`  ${s.red('✘')} copy of ${ev.copy.artifactId} in vault ${ev.copy.vault}: ${ev.copy.status}${ev.copy.detail ? ` (${ev.copy.detail})` : ''}`);
        case 'proof.recorded': {
          const p = ev.proof;
          if (p.outcome === 'passed') return line(`  ${s.green('✔')} proven: ${p.artifactId} (from vault ${p.vault}, ${p.durationMs} ms)`);
          const failed = p.checks.filter((c) => c.status !== 'passed').map((c) => `${c.name} ${c.status}: ${c.detail}`);
          return line(`  ${s.red('✘')} NOT restorable: ${p.artifactId}\n      ${failed.join('\n      ')}`);
        }
        case 'drift.scanned':
          if (ev.drift.changes.length === 0) return;
          return line(
            `  ${s.yellow('!')} drift in ${ev.drift.itemId} (${ev.drift.stage}): ${ev.drift.changes.length} change(s)\n${ev.drift.changes
              .slice(0, 20)
              .map((c) => `      ${c.kind.padEnd(8)} ${c.path}`)
              .join('\n')}`,
          );
        case 'preflight.checked': {
          const bad = ev.preflight.checks.filter((c) => c.status === 'failed');
          const mark = bad.length ? s.red('✘') : s.green('✔');
          return line(`  ${mark} ${ev.preflight.engine}: the server the target lands on (${ev.preflight.stage}): ${(bad.length ? bad : ev.preflight.checks).map((c) => c.detail).join('; ')}`);
        }
        case 'rollback.created':
          return line(`  rollback point ${ev.rollbackPoint.id} at ${ev.rollbackPoint.location}`);
        case 'gate.evaluated': {
          const g = ev.result;
          for (const r of g.results) {
            const mark = r.status === 'pass' ? s.green('✔') : r.status === 'fail' ? s.red('✘') : r.status === 'warn' ? s.yellow('!') : s.yellow('~');
            if (r.status !== 'pass' || !r.itemId) line(`  ${mark} ${r.rule}${r.itemId ? ` [${r.itemId}]` : ''}: ${r.reason}`);
          }
          const passCount = g.results.filter((r) => r.status === 'pass').length;
          line(`  ${s.dim(`${passCount} checks passed`)}`);
          return line(g.passed ? s.green(s.bold('  GATE PASSED')) : s.red(s.bold('  GATE REFUSED: nothing was destroyed')));
        }
        case 'permit.issued':
          return line(`  permit ${ev.permit.id} for image "${ev.permit.image}", valid until ${ev.permit.expiresAt}`);
        case 'crossing.started':
          return line(s.bold(`  crossing: rebuilding the target with ${ev.image}`));
        case 'crossing.completed':
          return line(`  ${s.green('✔')} target rebuilt: ${ev.image}`);
        case 'landing.validated':
          return line(
            `  ${ev.outcome === 'passed' ? s.green('✔') : s.red('✘')} ${ev.itemId}: ${ev.checks.map((c) => c.detail).join('; ')}`,
          );
        case 'note':
          return line(`  ${ev.level === 'info' ? '·' : ev.level === 'warn' ? s.yellow('!') : s.red('✘')} ${ev.message}`);
        case 'coverage.mapped': {
          const m = ev.map;
          const groups = m.classes.filter((c) => c.holders.length === 0 && !c.owner && !c.exclusion);
          const un = groups.reduce((n, c) => n + c.files, 0);
          return line(`  coverage (${m.stage}): ${m.files} files, ${fmtBytes(m.bytes)} in scope; ${un ? s.yellow(`${un} held by no artifact and not excluded`) : 'every file held by an artifact, owned by a database or excluded'} ${s.dim('(the gate judges the proofs)')}`);
        }
        case 'report.written':
          return line(ev.files.map((f) => `  ${f.kind.padEnd(8)} ${f.path}`).join('\n'));
        default:
          return;
      }
    },
    done: (_summary, text) => {
      clearBar();
      out.write(text + '\n');
    },
  };
}
