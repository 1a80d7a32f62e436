/**
 * msdb backup history carried over "where wanted" (runbook
 * engines.mssql.carryBackupHistory, default off), as its own item
 * `instance-object:mssql:backup-history:<server>`.
 *
 * Decision: the history is captured as EVIDENCE, never replayed into the
 * rebuilt msdb.
 * - Microsoft: "The system tables should not be changed directly by any
 *   user. For example, do not try to modify system tables with DELETE,
 *   UPDATE, or INSERT statements" (System Tables (Transact-SQL),
 *   learn.microsoft.com/sql/relational-databases/system-tables/system-tables-transact-sql);
 *   backupset, backupmediaset, backupmediafamily and backupfile are such
 *   tables, written by SQL Server itself at every BACKUP ("SQL Server
 *   automatically maintains a complete online backup-and-restore history
 *   within tables in msdb": msdb database page). There is no documented
 *   procedure that adds history rows; sp_delete_backuphistory only removes.
 * - The supported way to keep msdb's history is restoring msdb itself,
 *   which needs the very same build (Msg 3168) and would also replace the
 *   rebuilt instance's jobs; Rubicon carries msdb's contents by their own
 *   items instead (system databases are not landed: see prove.ts).
 * - dbatools reads history (Get-DbaDbBackupHistory: backupmediafamily ⋈
 *   backupmediaset ⋈ backupset on media_set_id) and restores from it
 *   (Restore-DbaDatabase); it has no command that writes history rows.
 * - Inserted rows would name files on the old server's disks and LSNs of
 *   backups taken before the rebuild; an SSMS restore plan or a log-backup
 *   tool reading them on the rebuilt instance would propose files that are
 *   not there.
 *
 * So: capture writes backup-history.json (the four tables' documented
 * columns for the databases that exist); the proof reads it back and checks
 * it is whole (counts, every set's media set and families, every file's
 * set, unique set GUIDs); landing keeps it in the vault and reports it;
 * drift compares the set GUIDs again. Pure: this module only builds and
 * judges the JSON.
 */
import type { Sidecar } from './artifact.ts';
import type { SqlRow } from './session.ts';

export const HISTORY_FILE = 'backup-history.json';

export interface BackupHistoryEvidence {
  version: 1;
  format: 'mssql-backup-history';
  source: Sidecar['source'];
  databases: string[];
  counts: { mediaSets: number; mediaFamilies: number; backupSets: number; backupFiles: number };
  backupmediaset: Record<string, unknown>[];
  backupmediafamily: Record<string, unknown>[];
  backupset: Record<string, unknown>[];
  backupfile: Record<string, unknown>[];
}

/** A driver value as JSON: bigint and Date as text, bytes as 0x hex. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return `0x${Buffer.from(v).toString('hex').toUpperCase()}`;
  return v ?? null;
}
const rows = (set: SqlRow[] | undefined): Record<string, unknown>[] => (set ?? []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)])));

/** The evidence file from backupHistoryEvidenceStatement's four result sets. Pure. */
export function backupHistoryEvidence(sets: SqlRow[][], source: BackupHistoryEvidence['source']): BackupHistoryEvidence {
  const [mediaSets, families, backupSets, files] = [rows(sets[0]), rows(sets[1]), rows(sets[2]), rows(sets[3])];
  return {
    version: 1,
    format: 'mssql-backup-history',
    source,
    databases: [...new Set(backupSets.map((b) => String(b.database_name)))].sort(),
    counts: { mediaSets: mediaSets.length, mediaFamilies: families.length, backupSets: backupSets.length, backupFiles: files.length },
    backupmediaset: mediaSets,
    backupmediafamily: families,
    backupset: backupSets,
    backupfile: files,
  };
}

export interface HistoryJudgement {
  ok: boolean;
  problems: string[];
  /** Plain words per database: sets by type, first and last backup. */
  summary: string;
  /** backup_set_uuid of every set, sorted (drift compares them). */
  setGuids: string[];
}

const TYPES: Record<string, string> = { D: 'full', I: 'differential', L: 'log', F: 'file', G: 'differential file', P: 'partial', Q: 'differential partial' };

/**
 * Is the evidence whole? Format and version, counts equal to the rows, every
 * backup set's media set present with at least one media family, every
 * backed-up file's set present, every set with a unique backup_set_uuid and
 * of a listed database. Pure; never throws (a file that is not JSON is a
 * problem, named).
 */
export function judgeBackupHistory(text: string): HistoryJudgement {
  const problems: string[] = [];
  let e: Partial<BackupHistoryEvidence>;
  try {
    e = JSON.parse(text) as Partial<BackupHistoryEvidence>;
  } catch (err) {
    return { ok: false, problems: [`${HISTORY_FILE} is not JSON: ${(err as Error).message}`], summary: '', setGuids: [] };
  }
  if (e.format !== 'mssql-backup-history' || e.version !== 1) return { ok: false, problems: [`${HISTORY_FILE} is not a Rubicon backup-history file (format ${String(e.format)}, version ${String(e.version)})`], summary: '', setGuids: [] };
  const ms = Array.isArray(e.backupmediaset) ? e.backupmediaset : [];
  const mf = Array.isArray(e.backupmediafamily) ? e.backupmediafamily : [];
  const bs = Array.isArray(e.backupset) ? e.backupset : [];
  const bf = Array.isArray(e.backupfile) ? e.backupfile : [];
  const c = e.counts;
  if (!c || c.mediaSets !== ms.length || c.mediaFamilies !== mf.length || c.backupSets !== bs.length || c.backupFiles !== bf.length) {
    problems.push(`row counts do not match the recorded counts (media sets ${ms.length}/${c?.mediaSets}, media families ${mf.length}/${c?.mediaFamilies}, backup sets ${bs.length}/${c?.backupSets}, files ${bf.length}/${c?.backupFiles}): the file is truncated or was edited`);
  }
  const mediaIds = new Set(ms.map((m) => String(m.media_set_id)));
  const familyIds = new Set(mf.map((f) => String(f.media_set_id)));
  const setIds = new Set(bs.map((b) => String(b.backup_set_id)));
  const dbs = new Set(e.databases ?? []);
  const guids = new Map<string, number>();
  for (const b of bs) {
    const id = String(b.backup_set_id);
    const g = typeof b.backup_set_uuid === 'string' ? b.backup_set_uuid.toUpperCase() : '';
    if (!g) problems.push(`backup set ${id} has no backup_set_uuid`);
    else guids.set(g, (guids.get(g) ?? 0) + 1);
    if (!mediaIds.has(String(b.media_set_id))) problems.push(`backup set ${id} names media set ${String(b.media_set_id)}, which is not in the file`);
    else if (!familyIds.has(String(b.media_set_id))) problems.push(`media set ${String(b.media_set_id)} of backup set ${id} has no media family (no file name)`);
    if (!dbs.has(String(b.database_name))) problems.push(`backup set ${id} is of database ${String(b.database_name)}, which the file does not list`);
  }
  for (const [g, n] of guids) if (n > 1) problems.push(`backup_set_uuid ${g} appears ${n} times`);
  const orphanFiles = bf.filter((f) => !setIds.has(String(f.backup_set_id))).length;
  if (orphanFiles > 0) problems.push(`${orphanFiles} backed-up file row(s) name a backup set that is not in the file`);
  const summary = [...dbs]
    .sort()
    .map((db) => {
      const mine = bs.filter((b) => String(b.database_name) === db);
      const byType = new Map<string, number>();
      for (const b of mine) byType.set(TYPES[String(b.type)] ?? String(b.type), (byType.get(TYPES[String(b.type)] ?? String(b.type)) ?? 0) + 1);
      const dates = mine.map((b) => String(b.backup_finish_date ?? '')).filter(Boolean).sort();
      return `${db}: ${mine.length} backup set(s) (${[...byType].map(([t, n]) => `${n} ${t}`).join(', ')})${dates.length ? ` from ${dates[0]} to ${dates.at(-1)}` : ''}`;
    })
    .join('; ');
  return { ok: problems.length === 0, problems, summary: summary || 'no backup history of any user database', setGuids: [...guids.keys()].sort() };
}
