import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runbookFiles, stale, typeSchemas } from '../../scripts/schemas.ts';

/**
 * docs/runbook.md and the JSON Schemas under docs/schema/ are generated from
 * the code (scripts/schemas.ts): this fails when a committed file differs
 * from what the code generates now. The fix: `node scripts/schemas.ts`.
 */
const ROOT = path.join(import.meta.dirname, '../..');

describe('generated docs are not stale', () => {
  it('docs/runbook.md and docs/schema/runbook.schema.json match the zod schema', () => {
    const files = runbookFiles();
    expect(stale(files), 'run `node scripts/schemas.ts`').toEqual([]);
    // Every top-level field of the runbook has its section in the reference.
    const schema = JSON.parse(files['docs/schema/runbook.schema.json']!) as { properties: Record<string, unknown> };
    for (const k of Object.keys(schema.properties)) expect(files['docs/runbook.md']).toContain(`## ${k}\n`);
    // A change to the schema is noticed: the check is not vacuous.
    expect(stale({ 'docs/runbook.md': files['docs/runbook.md']! + ' ' })).toEqual(['docs/runbook.md']);
  });

  it("a variant's example value comes from an example of that variant", () => {
    // `target.transport (kind: local).kind` once showed e.g. "ssh": examples were matched by bare path.
    const md = runbookFiles()['docs/runbook.md']!;
    const kindRows = [...md.matchAll(/^\| `[^`]* \(kind: ([^)]+)\)\.kind` \|[^\n]*$/gm)];
    expect(kindRows.length).toBeGreaterThan(10);
    let withExample = 0;
    for (const [row, kind] of kindRows) {
      const ex = /e\.g\. `"([^"]*)"`/.exec(row);
      if (!ex) continue;
      withExample++;
      expect(ex[1], row).toBe(kind);
    }
    expect(withExample).toBeGreaterThan(3);
  });

  it('docs/schema/events.schema.json and summary.schema.json match the TypeScript types', async () => {
    const files = await typeSchemas();
    expect(stale(files), 'run `node scripts/schemas.ts`').toEqual([]);
    const events = JSON.parse(files['docs/schema/events.schema.json']!) as { definitions: Record<string, unknown> };
    const text = JSON.stringify(events);
    // Every journal event type of src/core/events.ts is in the schema.
    const src = readFileSync(path.join(ROOT, 'src/core/events.ts'), 'utf8');
    const types = [...src.matchAll(/type: '([a-z-]+\.[a-z-.]+|note)'/g)].map((m) => m[1]!);
    expect(types.length).toBeGreaterThan(30);
    for (const t of types) expect(text, t).toContain(`"const":"${t}"`);
    const summary = JSON.parse(files['docs/schema/summary.schema.json']!) as Record<string, unknown>;
    expect(JSON.stringify(summary)).toContain('"invalid-input"');
    expect(JSON.stringify(summary)).toContain('"refusals"');
  }, 180_000);
});
