import type { ReportModel } from './model.ts';

/**
 * The machine-readable report: the whole model, pretty-printed, with a
 * trailing newline. Pure. The model's `schema` field versions the format.
 */
export function renderJson(model: ReportModel): string {
  return `${JSON.stringify(model, null, 2)}\n`;
}
