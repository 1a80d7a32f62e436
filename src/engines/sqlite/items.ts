import type { Item } from '../../core/types.ts';

/**
 * The item of a database the runbook declares and discovery did not find
 * (local and remote discovery alike): declared, not discovered, no method,
 * `facts.missing`, and why, naming where it was looked for. The gate refuses
 * it (item.captured) until it is found or taken out of the runbook. Pure.
 */
export function missingDeclaredDatabase(
  d: { name: string; location?: string },
  normalize: (location: string) => string,
  roots: readonly string[],
  machine?: string,
): Item {
  return {
    id: `database:sqlite:${d.name}`,
    kind: 'database',
    name: d.name,
    declared: true,
    discovered: false,
    engine: 'sqlite',
    location: d.location !== undefined ? normalize(d.location) : '',
    facts: { missing: true },
    why: [`declared in the runbook but no SQLite database ${d.location !== undefined ? `at ${d.location}` : `named ${d.name}`} was found${machine ? ` on ${machine}` : ''} under ${roots.join(', ') || '(no roots)'}`],
    methods: [],
  };
}
