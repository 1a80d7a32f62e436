/**
 * Generates the JSON Schemas and the runbook reference under docs/ from the
 * code, so they cannot drift from it:
 *
 *   docs/schema/events.schema.json   every --json line while running: journal
 *                                    records and progress events (RunEvent,
 *                                    src/core/events.ts), from the TypeScript types
 *   docs/schema/summary.schema.json  the last --json line (SummaryLine, src/core/summary.ts)
 *   docs/schema/runbook.schema.json  the runbook, from the zod schema (zod 4
 *                                    z.toJSONSchema), for editors (yaml-language-server)
 *   docs/runbook.md                  the runbook reference, from the same JSON Schema
 *
 * `node scripts/schemas.ts` writes them; `node scripts/schemas.ts --check`
 * exits 1 naming each stale file. test/docs/schemas.test.ts runs the check.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runbookJsonSchema, runbookReference } from './runbook-reference.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The TypeScript-derived schemas (slow: a TypeScript program over src/core). */
export async function typeSchemas(): Promise<Record<string, string>> {
  const { createGenerator } = await import('ts-json-schema-generator');
  const g = createGenerator({
    path: path.join(ROOT, 'src/core/{events,summary}.ts'),
    type: '*',
    skipTypeCheck: true,
    expose: 'export',
    topRef: true,
    jsDoc: 'extended',
    additionalProperties: false,
    sortProps: true,
  });
  const one = (type: string, id: string, title: string) =>
    JSON.stringify({ $id: id, title, ...g.createSchema(type) }, null, 2) + '\n';
  return {
    'docs/schema/events.schema.json': one('RunEvent', 'https://rubicon.invalid/schema/events.schema.json', 'Rubicon --json event line (a journal record or a progress event)'),
    'docs/schema/summary.schema.json': one('SummaryLine', 'https://rubicon.invalid/schema/summary.schema.json', 'Rubicon --json summary line (the last line of every run)'),
  };
}

export function runbookFiles(): Record<string, string> {
  return {
    'docs/schema/runbook.schema.json': JSON.stringify(runbookJsonSchema(), null, 2) + '\n',
    'docs/runbook.md': runbookReference(),
  };
}

/** The files whose committed text differs from what the code generates. */
export function stale(files: Record<string, string>): string[] {
  return Object.entries(files)
    .filter(([rel, text]) => {
      try {
        return readFileSync(path.join(ROOT, rel), 'utf8') !== text;
      } catch {
        return true;
      }
    })
    .map(([rel]) => rel);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const files = { ...runbookFiles(), ...(await typeSchemas()) };
  if (process.argv.includes('--check')) {
    const bad = stale(files);
    for (const f of bad) process.stderr.write(`${f} is stale: run \`node scripts/schemas.ts\`\n`);
    process.exitCode = bad.length ? 1 : 0;
  } else {
    for (const [rel, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(ROOT, rel)), { recursive: true });
      writeFileSync(path.join(ROOT, rel), text);
      process.stdout.write(`wrote ${rel}\n`);
    }
  }
}
