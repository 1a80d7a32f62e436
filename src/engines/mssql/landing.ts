/**
 * Landing for SQL Server: the order items land in, the landing server
 * checked before the gate, and the checks after a database landed.
 *
 * Contract for the orchestrator (src/run/phases.ts):
 * 1. Before the gate: `engine.preflight(ctx, items)` → ProofCheck[]; any
 *    failed check must refuse the gate (the rebuilt server could not take
 *    what the proofs restored). Read-only: the target (still there) and the
 *    landing server when it is reachable, else the runbook's declared
 *    landing server.
 * 2. Landing: items in `engine.landingOrder(items)` order — keys first
 *    (service master key, master's DMK, certificates), then server
 *    configuration, logins (with their SIDs) and the other instance scripts
 *    that need no database, then databases, then SQL Agent (jobs, alerts,
 *    proxies), which name databases and operators; each through
 *    `engine.restore(ctx, item, manifest, files)` (throws LANDING_FAILED).
 *    Jobs after databases: sp_add_jobstep's @database_name is "the database
 *    in which to execute a Transact-SQL step" and SMO's JobStep.DatabaseName
 *    "specifies the name of an existing database" (learn.microsoft.com);
 *    dbatools' Copy-DbaAgentJob skips a job whose step databases, owner
 *    login, proxies or operators the destination lacks (docs/mssql.md).
 * 3. Validation: `engine.validateLanding(ctx, item)` → ProofCheck[] for a
 *    landed database (CHECKDB already ran in restore): settings against the
 *    source (compatibility level, collation, owner, TRUSTWORTHY), no
 *    orphaned user, the runbook's smoke queries; then the orchestrator
 *    compares engine.fingerprint with the proof's fingerprint. For landed
 *    instance scripts: logins and jobs read back property by property
 *    (readBackLanded, instance-proof.ts).
 */
import type { Item, ProofCheck } from '../../core/types.ts';
import { canRestoreOnto, editionRank, EXPRESS_DATA_LIMIT_BYTES, formatVersion, parseVersion, productName, type SqlVersion } from './parse.ts';

/** Landing rank of an item: lower lands first. Pure. */
export function landingRank(item: Item): number {
  const kind = /^instance-object:mssql:([a-z-]+):/.exec(item.id)?.[1];
  if (kind === 'service-master-key') return 0;
  if (kind === 'master-key') return 1;
  if (item.kind === 'certificate') return 2;
  if (kind === 'configuration') return 3;
  if (kind === 'login') return 4;
  if (kind === 'credential' || kind === 'linked-server' || kind === 'endpoint' || kind === 'operator' || kind === 'mail-profile') return 5;
  if (item.kind === 'database') return 6;
  if (kind === 'proxy') return 7;
  if (kind === 'job') return 8;
  if (kind === 'alert') return 9;
  // The whole-instance artifact holds every script (jobs.sql names databases: sp_add_jobstep @database_name),
  // so it lands after the databases and Agent items; its logins and jobs are guarded (IF … IS NULL / IF NOT EXISTS), a no-op by then.
  if (kind === 'instance') return 9.5;
  if (kind === 'startup-procedure' || kind === 'trace-flags') return 10;
  if (kind === 'system-database') return 11;
  // backup-history (evidence only, nothing is sent) falls through to the end.
  return 12;
}

/**
 * Items in landing order (stable within a rank). Pure. Only SQL Server's
 * items move, among the positions they held: items of other engines (a
 * folder, a SQLite database) stay exactly where they were, as the
 * DatabaseEngine.landingOrder contract says.
 */
export function landingOrder(items: Item[]): Item[] {
  const mine = (item: Item) => item.engine === 'mssql';
  const sorted = items.map((item, i) => ({ item, i })).filter((x) => mine(x.item)).sort((a, b) => landingRank(a.item) - landingRank(b.item) || a.i - b.i).map((x) => x.item);
  let next = 0;
  return items.map((item) => (mine(item) ? sorted[next++]! : item));
}

export interface SourceServerFacts {
  productVersion: string;
  edition: string;
  engineEdition: number;
  collation: string;
  integratedSecurityOnly: boolean | null;
  databases: { name: string; dataBytes: number; skuFeatures: string[]; filestream: boolean; clrAssemblies: number }[];
}

export interface LandingServerFacts {
  productVersion: string;
  edition: string;
  engineEdition: number;
  collation?: string;
  /** Known only when the landing server is reachable. */
  filestreamLevel?: number;
  clrEnabled?: boolean;
  /** Where the facts come from: `live` (connected) or `declared` (the runbook). */
  basis: 'live' | 'declared';
}

/**
 * Can the landing server take what the source has? Version (same or newer
 * major.minor), edition (not a lower edition when a database uses
 * edition-specific features; Express's 10 GB of data per database),
 * collation, and, when the landing server is reachable, FILESTREAM and CLR.
 * Pure.
 */
export function judgeLandingServer(source: SourceServerFacts, landing: LandingServerFacts): ProofCheck {
  const problems: string[] = [];
  const notes: string[] = [];
  const sv: SqlVersion | null = parseVersion(source.productVersion);
  const lv: SqlVersion | null = parseVersion(landing.productVersion);
  if (!sv || !lv) problems.push(`cannot compare versions: source ${source.productVersion || 'unknown'}, landing ${landing.productVersion || 'unknown'}`);
  else if (!canRestoreOnto(sv, lv)) problems.push(`the landing server runs ${productName(lv.major)} (${formatVersion(lv)}), older than the source's ${productName(sv.major)} (${formatVersion(sv)}): its backups cannot be restored there`);
  else notes.push(`landing ${formatVersion(lv)} (${landing.edition}) >= source ${formatVersion(sv)} (${source.edition})`);
  const withFeatures = source.databases.filter((d) => d.skuFeatures.length > 0);
  if (withFeatures.length > 0 && editionRank(landing.engineEdition) < editionRank(source.engineEdition)) {
    problems.push(`the landing edition ${landing.edition} is below the source's ${source.edition} and these databases use edition-specific features: ${withFeatures.map((d) => `${d.name} (${d.skuFeatures.join(', ')})`).join('; ')}`);
  }
  if (landing.engineEdition === 4) {
    const big = source.databases.filter((d) => d.dataBytes > EXPRESS_DATA_LIMIT_BYTES);
    if (big.length > 0) problems.push(`the landing server is Express (at most 10 GB of data per database) and these databases are larger: ${big.map((d) => `${d.name} ${(d.dataBytes / 1024 ** 3).toFixed(1)} GB`).join(', ')}`);
  }
  if (landing.collation && source.collation && landing.collation !== source.collation) problems.push(`the landing instance's collation ${landing.collation} is not the source's ${source.collation}`);
  if (landing.filestreamLevel !== undefined) {
    const fs = source.databases.filter((d) => d.filestream);
    if (fs.length > 0 && landing.filestreamLevel < 1) problems.push(`FILESTREAM is disabled on the landing server and ${fs.map((d) => d.name).join(', ')} use it`);
  }
  if (landing.clrEnabled === false) {
    const clr = source.databases.filter((d) => d.clrAssemblies > 0);
    if (clr.length > 0) notes.push(`'clr enabled' is off on the landing server and ${clr.map((d) => d.name).join(', ')} have user CLR assemblies: the configuration item turns it on at landing`);
  }
  if (landing.basis === 'declared') notes.push('landing server facts as the runbook declares them (engines.mssql.landingServer): confirmed again when it is reachable');
  return {
    name: 'landing-server',
    status: problems.length ? 'failed' : 'passed',
    detail: [...problems, ...notes].join('; '),
    durationMs: 0,
  };
}
