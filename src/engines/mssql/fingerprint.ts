/**
 * SQL Server fingerprints: per user table `COUNT_BIG(*)` and
 * `CHECKSUM_AGG(BINARY_CHECKSUM(*))`, computed by the server, so a
 * fingerprint of a 500 GB database moves a few bytes per table.
 *
 * Trade-off (docs/mssql.md): the checksum is 32 bits and CHECKSUM_AGG
 * combines rows in an XOR-like way, so two identical rows cancel out and
 * some changes go unseen. The row count catches the duplicated-row case; a
 * per-row HASHBYTES('SHA2_256', …) streamed to Rubicon would be stronger
 * but reads every row over the network. BINARY_CHECKSUM(*) ignores columns
 * of noncomparable types (text, ntext, image, xml, cursor, noncomparable CLR
 * types such as geometry and geography, per the BINARY_CHECKSUM docs):
 * those columns are listed in `unhashedColumns`, never silently skipped.
 *
 * Read-only. The TableFingerprint hash is SHA-256 of
 * `mssql:checksum_agg:<value>` so it is a hex digest like every engine's.
 */
import { createHash } from 'node:crypto';
import type { Fingerprint, TableFingerprint } from '../../core/types.ts';
import { makeFingerprint } from '../fingerprint.ts';
import type { MssqlSession } from './session.ts';
import { tableChecksumStatement, tableColumnsStatement } from './sql.ts';

/** Type names BINARY_CHECKSUM ignores (lower case, as in sys.types.name). */
export const UNHASHED_TYPES = new Set(['text', 'ntext', 'image', 'xml', 'geometry', 'geography']);

/** CLR types that are comparable and so hashed. */
const COMPARABLE_CLR = new Set(['hierarchyid']);

export function isUnhashed(typeName: string, isAssemblyType: boolean): boolean {
  const t = typeName.toLowerCase();
  return UNHASHED_TYPES.has(t) || (isAssemblyType && !COMPARABLE_CLR.has(t));
}

export function tableHash(checksum: unknown): string {
  const v = checksum === null || checksum === undefined ? 'NULL' : String(checksum);
  return createHash('sha256').update(`mssql:checksum_agg:${v}`).digest('hex');
}

export async function fingerprintDatabase(session: MssqlSession, database: string, signal?: AbortSignal): Promise<Fingerprint> {
  const cols = await session.query(tableColumnsStatement(database), `listing the tables of ${database}`, signal);
  const tables = new Map<string, { schema: string; table: string; unhashed: string[] }>();
  for (const c of cols) {
    const schema = String(c.schema_name);
    const table = String(c.table_name);
    const key = `${schema}.${table}`;
    const t = tables.get(key) ?? { schema, table, unhashed: [] };
    if (isUnhashed(String(c.type_name), c.is_assembly_type === 1 || c.is_assembly_type === true)) {
      t.unhashed.push(`${String(c.column_name)} (${String(c.type_name)})`);
    }
    tables.set(key, t);
  }
  const out: TableFingerprint[] = [];
  for (const [key, t] of tables) {
    const rows = await session.query(tableChecksumStatement(database, t.schema, t.table), `fingerprinting table ${key} of ${database}`, signal);
    const r = rows[0] ?? {};
    const fp: TableFingerprint = { table: key, rows: Number(r.row_count ?? 0), hash: tableHash(r.content_checksum) };
    if (t.unhashed.length > 0) fp.unhashedColumns = t.unhashed;
    out.push(fp);
  }
  return makeFingerprint('mssql', out);
}
