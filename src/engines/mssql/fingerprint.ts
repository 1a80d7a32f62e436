/**
 * SQL Server fingerprints, computed by the server so a fingerprint of a
 * 500 GB database moves a few bytes per table.
 *
 * Per user table: `COUNT_BIG(*)` and the sums of five slices of each row's
 * `HASHBYTES('SHA2_256', <serialisation>)` (sql.ts tableHashStatement). The
 * serialisation covers every stored column in column order, each as a NULL
 * marker or 0x01 + an 8-byte length + its bytes (sql.ts rowSerialisation).
 * Types come through TYPE_NAME(system_type_id), so alias types over ntext
 * or xml are read as their base type; text/ntext/xml through (n)varchar(max),
 * sql_variant with its base type, CLR types (hierarchyid, geometry,
 * geography, user CLR types) through their binary form. Nothing is limited
 * to 255 characters or 8000 bytes (HASHBYTES has no input limit from SQL
 * Server 2016 on; older servers are refused, see sql.ts).
 *
 * The table hash is SHA-256 over `mssql:sha256-slices:v2`, the column list
 * (names and base types, so a schema change shows) and the count and five
 * sums: a hex digest like every engine's. A sum is order-independent and,
 * unlike CHECKSUM_AGG's XOR, a duplicated row pair changes it.
 *
 * What it cannot see, listed per table in `unhashedColumns` (and so named
 * in the proof): computed columns and sparse column sets (derived from
 * other columns, not stored data of their own). Outside tables: views,
 * code, users and permissions (the restore and CHECKDB cover those, not the
 * fingerprint). xml is compared as SQL Server re-serialises it (the same
 * stored value gives the same text; insignificant whitespace the server
 * dropped on insert is gone on both sides).
 *
 * Read-only.
 */
import { createHash } from 'node:crypto';
import { RubiconError } from '../../core/errors.ts';
import type { Fingerprint, TableFingerprint } from '../../core/types.ts';
import { makeFingerprint } from '../fingerprint.ts';
import { parseVersion } from './parse.ts';
import type { MssqlSession, SqlRow } from './session.ts';
import { HASH_SLICES, tableColumnsStatement, tableHashStatement, versionStatement, type FingerprintColumn } from './sql.ts';

export interface TableColumns {
  schema: string;
  table: string;
  /** Hashed columns, in column order. */
  hashed: FingerprintColumn[];
  /** Columns the hash does not cover, with the reason: `name (computed)`. */
  unhashed: string[];
}

/** Groups sys.columns rows (tableColumnsStatement) by table and decides per column. Pure. */
export function tablesOf(rows: SqlRow[]): TableColumns[] {
  const tables = new Map<string, TableColumns>();
  for (const c of rows) {
    const schema = String(c.schema_name);
    const table = String(c.table_name);
    const key = `${schema}.${table}`;
    const t = tables.get(key) ?? { schema, table, hashed: [], unhashed: [] };
    const name = String(c.column_name);
    const isClr = c.is_assembly_type === 1 || c.is_assembly_type === true;
    const base = isClr ? 'clr' : String(c.base_type ?? c.declared_type ?? '').toLowerCase();
    if (c.is_column_set === 1 || c.is_column_set === true) t.unhashed.push(`${name} (sparse column set: derived from the sparse columns, which are hashed)`);
    else if (c.is_computed === 1 || c.is_computed === true) t.unhashed.push(`${name} (computed: derived from other columns)`);
    else t.hashed.push({ name, baseType: base });
    tables.set(key, t);
  }
  return [...tables.values()];
}

/** SHA-256 over the column list, the row count and the slice sums. Pure. */
export function tableHash(columns: FingerprintColumn[], row: SqlRow): string {
  const sums = HASH_SLICES.map((_, i) => {
    const v = row[`s${i + 1}`];
    return v === null || v === undefined ? '0' : String(v);
  });
  const cols = columns.map((c) => `${c.name}:${c.baseType}`).join(',');
  return createHash('sha256').update(`mssql:sha256-slices:v2\n${cols}\n${String(row.row_count ?? 0)}\n${sums.join(':')}`).digest('hex');
}

/** HASHBYTES has an 8000-byte input limit before SQL Server 2016 (13.x): refuse rather than fingerprint part of a row. */
export const MIN_FINGERPRINT_MAJOR = 13;

export async function fingerprintDatabase(session: MssqlSession, database: string, signal?: AbortSignal): Promise<Fingerprint> {
  const v = parseVersion(String((await session.query(versionStatement(), 'reading the server version', signal))[0]?.product_version ?? ''));
  if (!v || v.major < MIN_FINGERPRINT_MAJOR) {
    throw new RubiconError('ENGINE_FAILED', `mssql: fingerprints of ${database} need SQL Server 2016 or later (this server reports ${v ? `${v.major}.${v.minor}` : 'no version'}): before 2016 HASHBYTES reads at most 8000 bytes of a row`, {
      hint: 'Upgrade the server to SQL Server 2016 or later, or prove this database without a fingerprint comparison.',
    });
  }
  const tables = tablesOf(await session.query(tableColumnsStatement(database), `listing the tables of ${database}`, signal));
  const out: TableFingerprint[] = [];
  for (const t of tables) {
    const key = `${t.schema}.${t.table}`;
    const rows = await session.query(tableHashStatement(database, t.schema, t.table, t.hashed), `fingerprinting table ${key} of ${database}`, signal);
    const r = rows[0] ?? {};
    const fp: TableFingerprint = { table: key, rows: Number(r.row_count ?? 0), hash: tableHash(t.hashed, r) };
    if (t.unhashed.length > 0) fp.unhashedColumns = t.unhashed;
    out.push(fp);
  }
  return makeFingerprint('mssql', out);
}
