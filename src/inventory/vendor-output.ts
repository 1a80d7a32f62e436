import type { Item } from '../core/types.ts';

/**
 * Databases found inside a vendor job's output folder are, as a rule, the
 * job's earlier backups (the sandbox vendor writes `ehr-<time>.bak` files
 * with a SQLite header), not live databases. But an output folder may
 * contain the live database too (`output: mssql` with the database in
 * mssql/data): that one must stay on the checklist. A database in an
 * output folder is kept when it is declared, when the job backs it up by
 * name, or when a job's command names its location. Pure.
 *
 * Returns the ids of the databases that are vendor backups (to leave out).
 */
export function vendorBackups(databases: readonly Item[], jobs: readonly { database: string; engine: string; output: string; command: string[] }[]): Set<string> {
  const out = new Set<string>();
  for (const d of databases) {
    const inOutput = jobs.filter((j) => d.location === j.output || d.location.startsWith(`${j.output}/`));
    if (inOutput.length === 0) continue;
    if (d.declared) continue;
    const named = jobs.some((j) => j.engine === d.engine && (j.database === d.name || j.command.some((a) => a === d.location || a.endsWith(`/${d.location}`))));
    if (named) continue;
    out.add(d.id);
  }
  return out;
}
