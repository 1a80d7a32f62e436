/**
 * The runbook's JSON Schema (zod 4 `z.toJSONSchema` of RunbookSchema) and
 * the reference docs/runbook.md generated from it. Pure apart from reading
 * the schema sources (for the fields' doc comments) and the example runbooks
 * (for an example value per field). Called by scripts/schemas.ts.
 *
 * Field descriptions are the `/** ... *\/` comments written beside each
 * field in src/runbook/*.ts, matched to the JSON path by the longest chain of
 * enclosing field names; a field without one shows only its type, default
 * and constraints.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parse } from 'yaml';
import { z } from 'zod';
import { RunbookSchema } from '../src/runbook/schema.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const RUNBOOK_SCHEMA_ID = 'https://rubicon.invalid/schema/runbook.schema.json';

type Node = {
  type?: string | string[];
  properties?: Record<string, Node>;
  required?: string[];
  items?: Node;
  oneOf?: Node[];
  anyOf?: Node[];
  allOf?: Node[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
  description?: string;
  additionalProperties?: boolean | Node;
};

/** The runbook's JSON Schema (draft 7: what editors' YAML language servers read best). */
export function runbookJsonSchema(): Record<string, unknown> {
  const s = z.toJSONSchema(RunbookSchema, { io: 'input', unrepresentable: 'any', target: 'draft-7' }) as Record<string, unknown>;
  return { $id: RUNBOOK_SCHEMA_ID, title: 'Rubicon runbook (version 1)', description: 'Generated from src/runbook/schema.ts by scripts/schemas.ts; reference: docs/runbook.md', ...s };
}

/**
 * A field's doc comment: the chain of enclosing field names, and the `kind`
 * of the nearest enclosing object literal that declares `kind: z.literal(K)`
 * (a variant's own field), if any.
 */
type FieldDoc = { chain: string[]; text: string; file: string; kind?: string };

/** Field doc comments in the schema sources: chain of enclosing field names → text. */
function fieldDocs(): FieldDoc[] {
  const out: FieldDoc[] = [];
  for (const f of ['schema.ts', 'machines.ts', 'azure.ts', 'mssql.ts', 'schema-common.ts']) {
    const file = path.join(ROOT, 'src/runbook', f);
    const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const literalKind = (o: ts.ObjectLiteralExpression): string | undefined => {
      for (const m of o.properties) {
        if (!ts.isPropertyAssignment(m) || !ts.isIdentifier(m.name) || m.name.text !== 'kind') continue;
        const init = m.initializer;
        if (ts.isCallExpression(init) && init.expression.getText(src).endsWith('.literal') && init.arguments[0] && ts.isStringLiteral(init.arguments[0])) return init.arguments[0].text;
      }
      return undefined;
    };
    const visit = (n: ts.Node, chain: string[], kind: string | undefined) => {
      if (ts.isObjectLiteralExpression(n)) kind = literalKind(n) ?? kind;
      if (ts.isPropertyAssignment(n) && (ts.isIdentifier(n.name) || ts.isStringLiteral(n.name))) {
        const here = [...chain, n.name.text];
        const docs = ts.getJSDocCommentsAndTags(n).filter(ts.isJSDoc);
        const text = docs.map((d) => (typeof d.comment === 'string' ? d.comment : (d.comment ?? []).map((c) => c.text).join(''))).join(' ').replace(/\s+/g, ' ').trim();
        if (text) out.push({ chain: here, text, file: f, ...(kind !== undefined ? { kind } : {}) });
        ts.forEachChild(n, (c) => visit(c, here, kind));
        return;
      }
      ts.forEachChild(n, (c) => visit(c, chain, kind));
    };
    visit(src, [], undefined);
  }
  return out;
}

/** Which source file defines the fields under a path (the schema is split by topic). */
function sourceOf(p: string[]): string[] {
  const [top, second] = p;
  if (top === 'engines' || (top === 'methods' && p.includes('mssql'))) return ['mssql.ts'];
  if (top === 'infra') return p[0] === 'infra' && p.length > 1 && ['stack', 'pulumiRoot', 'signingKey', 'planDir', 'subscriptionIdEnv', 'freezeServices', 'agentTimeoutMinutes', 'workDir'].includes(second!) ? ['azure.ts', 'machines.ts'] : ['machines.ts', 'azure.ts'];
  if ((top === 'target' && second === 'transport') || top === 'provingGround' || top === 'vaults') return ['machines.ts', 'schema-common.ts'];
  return ['schema.ts', 'schema-common.ts'];
}

/**
 * The doc comment for a field: the longest matching chain of field names; a
 * comment written inside a variant (`kind: z.literal(K)`) only describes a
 * field whose nearest labelled variant is K, and beats an unlabelled one.
 */
function describeField(docs: FieldDoc[], p: string[], kind: string | undefined): string | undefined {
  let best: { n: number; text: string } | undefined;
  const files = sourceOf(p);
  for (const d of docs) {
    if (!files.includes(d.file)) continue;
    if (d.chain.length > p.length) continue;
    if (d.kind !== undefined && d.kind !== kind) continue;
    let n = 0;
    while (n < d.chain.length && d.chain[d.chain.length - 1 - n] === p[p.length - 1 - n]) n++;
    const score = n + (d.kind !== undefined ? 0.5 : 0);
    if (n === d.chain.length && (!best || score > best.n)) best = { n: score, text: d.text };
  }
  return best?.text;
}

/**
 * Example runbooks' values by JSON path (arrays flattened as `[]`). Each value
 * is keyed twice: with every object that has a string `kind` labelled the
 * way rows() labels a variant (`transport (kind: ssh)`), and bare. rows()
 * looks a field of a variant up by its labelled path only, so an ssh
 * transport's `kind` is never shown as the example of the local variant's.
 */
function exampleValues(): Map<string, { value: unknown; file: string }> {
  const out = new Map<string, { value: unknown; file: string }>();
  const dir = path.join(ROOT, 'examples/runbooks');
  const put = (key: string, value: unknown, file: string) => {
    if (!out.has(key)) out.set(key, { value, file });
  };
  const walk = (v: unknown, p: string, bare: string, file: string) => {
    if (p && v !== null && (typeof v !== 'object' || Array.isArray(v))) {
      put(p, v, file);
      put(`bare:${bare}`, v, file);
    }
    if (Array.isArray(v)) for (const x of v) walk(x, `${p}[]`, `${bare}[]`, file);
    else if (v && typeof v === 'object') {
      const kind = (v as Record<string, unknown>).kind;
      const here = typeof kind === 'string' && p ? `${p} (kind: ${kind})` : p;
      for (const [k, x] of Object.entries(v)) walk(x, here ? `${here}.${k}` : k, bare ? `${bare}.${k}` : k, file);
    }
  };
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml')).sort()) walk(parse(readFileSync(path.join(dir, f), 'utf8')), '', '', f);
  return out;
}

const code = (s: string) => `\`${s.replace(/`/g, "'").replace(/\|/g, '\\|')}\``;
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const short = (v: unknown) => {
  const t = JSON.stringify(v);
  return t.length > 60 ? `${t.slice(0, 57)}...` : t;
};

function typeOf(n: Node): string {
  if (n.const !== undefined) return code(JSON.stringify(n.const));
  if (n.enum) return n.enum.map((e) => code(JSON.stringify(e))).join(' \\| ');
  const variants = n.oneOf ?? n.anyOf;
  if (variants) return variants.map(typeOf).join(' or ');
  if (n.type === 'array') return `list of ${n.items ? typeOf(n.items) : 'any'}`;
  if (n.type === 'object') return 'object';
  return String(n.type ?? 'any');
}

function constraints(n: Node): string[] {
  const c: string[] = [];
  if (n.minimum !== undefined) c.push(`≥ ${n.minimum}`);
  if (n.exclusiveMinimum !== undefined) c.push(`> ${n.exclusiveMinimum}`);
  if (n.maximum !== undefined) c.push(`≤ ${n.maximum}`);
  if (n.minLength !== undefined && n.minLength > 1) c.push(`at least ${n.minLength} characters`);
  if (n.maxLength !== undefined) c.push(`at most ${n.maxLength} characters`);
  if (n.minItems !== undefined) c.push(`at least ${n.minItems}`);
  if (n.maxItems !== undefined) c.push(`at most ${n.maxItems}`);
  if (n.pattern) c.push(`matches ${code(n.pattern)}`);
  if (n.format) c.push(n.format);
  return c;
}

interface Row {
  path: string;
  type: string;
  presence: string;
  text: string;
}

/** Every field of the schema, depth first, with object variants (a `kind`) labelled. */
function rows(root: Node): Row[] {
  const docs = fieldDocs();
  const examples = exampleValues();
  const out: Row[] = [];
  const bare = (seg: string) => seg.replace(/ \(kind: [^)]*\)$/, '');
  const field = (name: string, n: Node, parent: Node, p0: string[]) => {
    const p = [...p0, name];
    const flat = p.join('.').replace(/\.\[\]/g, '[]');
    const labelled = p.some((seg) => seg !== bare(seg));
    const ex = labelled
      ? examples.get(p.join('.').replace(/\.\[\]/g, '[]'))
      : examples.get(`bare:${p.join('.').replace(/\.\[\]/g, '[]')}`);
    const presence = n.default !== undefined ? `default ${code(short(n.default))}` : parent.required?.includes(name) ? '**required**' : 'optional';
    const innermost = [...p].reverse().map((seg) => / \(kind: ([^)]*)\)$/.exec(seg)?.[1]).find((k) => k !== undefined);
    const desc = n.description ?? describeField(docs, p.map(bare).filter((x) => x !== '[]'), innermost);
    const extra = constraints(n);
    out.push({
      path: flat,
      type: typeOf(n) + (extra.length ? `; ${extra.join(', ')}` : ''),
      presence,
      text: [desc, ex ? `e.g. ${code(short(ex.value))} (${ex.file})` : undefined].filter(Boolean).join(' '),
    });
    node(n, p);
  };
  const node = (n: Node, p: string[]) => {
    const variants = n.oneOf ?? n.anyOf;
    if (variants) {
      for (const v of variants) {
        const kind = v.properties?.kind?.const;
        node(v, kind !== undefined && variants.length > 1 && p.length ? [...p.slice(0, -1), `${p.at(-1)} (kind: ${String(kind)})`] : p);
      }
    }
    if (n.type === 'array' && n.items) node(n.items, [...p, '[]']);
    if (n.properties) for (const [k, v] of Object.entries(n.properties)) field(k, v, n, p);
  };
  node(root, []);
  return out;
}

/** docs/runbook.md */
export function runbookReference(): string {
  const schema = runbookJsonSchema() as Node;
  const all = rows(schema);
  const sections = new Map<string, Row[]>();
  for (const r of all) {
    const top = r.path.split(/[.[ ]/)[0]!;
    sections.set(top, [...(sections.get(top) ?? []), r]);
  }
  const lines = [
    '# Runbook reference',
    '',
    '<!-- Generated by `node scripts/schemas.ts` from the zod schema in src/runbook/ (zod 4 z.toJSONSchema) and the',
    '     example runbooks in examples/runbooks/. Do not edit by hand: test/docs/schemas.test.ts fails when it is stale. -->',
    '',
    'A runbook is one YAML file describing one upgrade. Paths in it are relative to the runbook\'s folder',
    '(vaults, keys, known_hosts, the sandbox) or to the target root (declared items, discovery roots).',
    '`rubicon check-runbook --runbook FILE` validates one and names the field at fault and the fix (exit 3).',
    '',
    'Editors: [docs/schema/runbook.schema.json](schema/runbook.schema.json) is the JSON Schema of this file;',
    'with the YAML language server (VS Code\'s YAML extension and others) put this on the first line:',
    '',
    '```yaml',
    '# yaml-language-server: $schema=https://rubicon.invalid/schema/runbook.schema.json',
    '```',
    '',
    'using the path of the schema file on your machine (`rubicon sandbox` writes that line with it).',
    'The JSON Schema checks the shape; Rubicon checks more when it loads a runbook (cross-field rules,',
    'files that must exist, keys that must be private, a policy that may only be made stricter).',
    '',
    'Complete examples, each loaded by a test through the real loader (test/docs/examples.test.ts):',
    '',
    ...readdirSync(path.join(ROOT, 'examples/runbooks'))
      .filter((n) => n.endsWith('.yaml'))
      .sort()
      .map((n) => `- [examples/runbooks/${n}](../examples/runbooks/${n}): ${String(readFileSync(path.join(ROOT, 'examples/runbooks', n), 'utf8').split('\n').find((l) => l.startsWith('# ') && !l.includes('yaml-language-server'))?.slice(2) ?? '')}`),
    '',
  ];
  for (const [top, rs] of sections) {
    lines.push(`## ${top}`, '', '| field | type | required / default | what it is |', '| --- | --- | --- | --- |');
    for (const r of rs) lines.push(`| ${code(r.path)} | ${cell(r.type)} | ${r.presence} | ${cell(r.text)} |`);
    lines.push('');
  }
  return lines.join('\n');
}
