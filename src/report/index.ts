/**
 * Writes the four reports of a run into one folder.
 *
 * Contract: idempotent (the same state and checklist give byte-identical
 * files, so a resumed run simply rewrites them); each file is written to a
 * temporary name in the same folder, fsync'd, then renamed, so a reader (or
 * a crash) never sees a half-written report; it creates `dir` if needed and
 * touches nothing else in it. Not destructive beyond replacing its own four
 * files.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { RubiconError } from '../core/errors.ts';
import type { RunState } from '../core/state.ts';
import type { ChecklistRow } from '../core/types.ts';
import { renderHtml } from './html.ts';
import { renderJson } from './json.ts';
import { renderJunit, type JunitOptions } from './junit.ts';
import { renderMarkdown } from './markdown.ts';
import { buildReportModel, type ReportModel, type ReportOptions as ModelOptions } from './model.ts';

export type ReportKind = 'json' | 'markdown' | 'html' | 'junit';

/** How the reports are written: the model's options (the crossing's expected duration) and the JUnit file's treatment of the vendor's failed proof. */
export interface ReportOptions extends ModelOptions {
  junit?: JunitOptions;
}

export const REPORT_FILES: Record<ReportKind, { file: string; render: (m: ReportModel, o: ReportOptions) => string }> = {
  json: { file: 'report.json', render: renderJson },
  markdown: { file: 'checklist.md', render: renderMarkdown },
  html: { file: 'report.html', render: renderHtml },
  junit: { file: 'junit.xml', render: (m, o) => renderJunit(m, o.junit) },
};

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export async function writeReports(
  state: RunState,
  checklist: ChecklistRow[],
  dir: string,
  options: ReportOptions = {},
): Promise<{ kind: ReportKind; path: string }[]> {
  const model = buildReportModel(state, checklist, options);
  const written: { kind: ReportKind; path: string }[] = [];
  try {
    await mkdir(dir, { recursive: true });
    for (const kind of Object.keys(REPORT_FILES) as ReportKind[]) {
      const { file, render } = REPORT_FILES[kind];
      const path = join(dir, file);
      await writeAtomic(path, render(model, options));
      written.push({ kind, path });
    }
  } catch (e) {
    throw new RubiconError('INTERNAL', `Could not write the reports of run ${state.runId} into ${dir}: ${(e as Error).message}`, {
      hint: `Check that ${dir} is a writable folder with free space, then rerun: rubicon resume ${state.runId}`,
      cause: e,
      details: { dir, written: written.map((w) => w.path) },
    });
  }
  return written;
}

export { buildReportModel, describeWindow, maintenanceWindow } from './model.ts';
export type { CrossingExpectation, ReportModel, WindowEstimate } from './model.ts';
export { expectedCrossing } from './previous.ts';
export { renderHtml } from './html.ts';
export { renderJson } from './json.ts';
export { renderJunit, type JunitOptions } from './junit.ts';
export { renderMarkdown } from './markdown.ts';
export { redact } from './redact.ts';
