/**
 * The sqlite3 command-line shell, driven on a machine: the SQL and the
 * POSIX sh scripts the remote SQLite engine (remote.ts) sends, and the
 * parsers for what comes back. Everything here is pure (text in, text out);
 * remote.ts runs it. Design note: docs/sqlite-remote.md.
 *
 * Conventions of every script here:
 * - Results come back on stdout as tagged lines `TAG|field|field…`; fields
 *   that could hold arbitrary text (table and column names) travel as hex.
 *   No row content ever travels: only counts, hashes and status lines.
 * - sqlite3's stderr never travels raw (a parse error quotes the SQL near
 *   it, and in a dump that is row data). The scripts keep only lines that
 *   start like sqlite3's own error messages, blank every quoted fragment,
 *   cut them to 240 bytes and send them as `<label>-X|…` lines, with the
 *   exit code as `<label>-RC|n`.
 * - A broken machine (no work folder, no temporary file) is an `ENV|…`
 *   line: the engine throws for it instead of grading a backup.
 * - sqlite3 always runs with -batch -bail (no prompts, stop at the first
 *   error) and a busy timeout, so a locked database waits a little, then fails.
 */
import { RubiconError } from '../../core/errors.ts';
import type { TableFingerprint } from '../../core/types.ts';
import { quoteIdent } from './sql-text.ts';

/** The oldest sqlite3 shell with every function the fingerprint needs (ieee754_to_blob/ieee754_from_blob came in 3.33.0). */
export const SQLITE3_MIN_VERSION = '3.33.0';

export const SQLITE_MAGIC = Buffer.from('SQLite format 3\u0000', 'latin1');

/** sha3('abc', 256), the FIPS 202 test vector: the probe checks the shell's sha3() is SHA3-256. */
const SHA3_ABC = '3A985DA74FE225B2045C172D6BD390BD855F086E3E9D525B46BFE24511431532';

// ------------------------------------------------------------- sh helpers

/**
 * Shared sh functions. `run LABEL ARGS…` runs "$SQ" ARGS… (stdin and stdout
 * as given), keeps its stderr in a temp file and reports on fd 3 (the
 * script's own stdout): sanitized error lines, then `LABEL-RC|exit code`;
 * it returns sqlite3's exit code.
 */
const PRELUDE = String.raw`
exec 3>&1
san() {
  grep -E '^(Error|Parse error|Runtime error)' "$2" | head -n 5 \
    | sed -e 's/"[^"]*"/@Q@…@Q@/g' -e 's/"[^"]*$/@Q@…/' -e "s/'[^']*'/@A@…@A@/g" -e "s/'[^']*$/@A@…/" -e 's/@Q@/"/g' -e "s/@A@/'/g" \
    | cut -c 1-240 | sed "s/^/$1-X|/" >&3
}
run() {
  l=$1; shift
  e=$(mktemp) || { echo "ENV|cannot create a temporary file (is ${'$'}{TMPDIR:-/tmp} full?)" >&3; echo "$l-RC|125" >&3; return 125; }
  "$SQ" -init /dev/null "$@" 2>"$e"; rc=$?
  san "$l" "$e"; rm -f -- "$e"
  echo "$l-RC|$rc" >&3
  return "$rc"
}
`;

/** Probes the shell: `$1` program. Prints `M|missing`, or `V|<--version>` and the function check. */
export const PROBE_SCRIPT = String.raw`
SQ=$1
command -v "$SQ" >/dev/null 2>&1 || { echo 'M|missing'; exit 0; }
echo "V|$("$SQ" --version 2>/dev/null | head -n 1)"
"$SQ" -init /dev/null -batch -bail -noheader -list -separator '|' :memory: "SELECT 'F', hex(ieee754_to_blob(1.5)), hex(ieee754_to_blob(ieee754_from_blob(X'3FF8000000000000'))), hex(sha3('abc', 256));" 2>&1 | head -n 2 | cut -c 1-240
exit 0
`;

/** Runs the SQL on stdin against "$2" opened read-only: `$1` program, `$2` database, `$3` work folder (the cwd). */
export const READ_SCRIPT =
  String.raw`
SQ=$1; db=$2; w=$3
` +
  PRELUDE +
  String.raw`
mkdir -p -- "$w" && cd -- "$w" || { echo "ENV|cannot create or enter the work folder $w"; echo 'Q-RC|125'; exit 0; }
run Q -batch -bail -readonly -noheader -list -separator '|' "$db"
exit 0
`;

/**
 * Capture with `.backup`: `$1` program, `$2` source, `$3` work folder, `$4`
 * output file name. The SQL on stdin writes rubicon-backup.part; only a
 * complete backup is renamed to its name. Prints `S|<bytes>`.
 */
export const BACKUP_SCRIPT =
  String.raw`
SQ=$1; src=$2; w=$3; out=$4
` +
  PRELUDE +
  String.raw`
mkdir -p -- "$w" && cd -- "$w" || { echo "ENV|cannot create or enter the work folder $w"; echo 'B-RC|125'; exit 0; }
p=rubicon-backup.part
rm -f -- "$p" "$p-journal" "$p-wal" "$p-shm" "$out"
run B -batch -bail -readonly -noheader -list -separator '|' "$src" || { rm -f -- "$p"; exit 0; }
[ -f "$p" ] || exit 0
rm -f -- "$p-journal" "$p-wal" "$p-shm"
mv -f -- "$p" "$out" && echo "S|$(stat -c %s -- "$out")"
exit 0
`;

/**
 * Capture with `.dump`: as BACKUP_SCRIPT, the SQL on stdin writes
 * rubicon-dump.part. Prints `END|COMMIT` when the dump ends with COMMIT
 * (the shell writes `ROLLBACK; -- due to errors` when it could not read
 * everything), then `S|<bytes>`; only a complete dump gets its name.
 */
export const DUMP_SCRIPT =
  String.raw`
SQ=$1; src=$2; w=$3; out=$4
` +
  PRELUDE +
  String.raw`
mkdir -p -- "$w" && cd -- "$w" || { echo "ENV|cannot create or enter the work folder $w"; echo 'D-RC|125'; exit 0; }
p=rubicon-dump.part
rm -f -- "$p" "$out"
run D -batch -bail -readonly -noheader -list -separator '|' "$src" || { rm -f -- "$p"; exit 0; }
[ -f "$p" ] || exit 0
if [ "$(tail -c 8 -- "$p")" = "COMMIT;" ]; then echo 'END|COMMIT'; else echo 'END|OTHER'; exit 0; fi
mv -f -- "$p" "$out" && echo "S|$(stat -c %s -- "$out")"
exit 0
`;

/**
 * Loads an artifact into a fresh database. Shell function `load FORMAT FILE
 * DEST LABEL`: sqlite-db is copied; sql-text is executed by sqlite3 into an
 * empty DEST followed by `BEGIN; COMMIT;`, which fails when the dump left
 * its transaction open (cut short). Prints `LABEL-NOCOMMIT|` when a dump
 * does not end with COMMIT, `LABEL-CP|rc` for a copy. Returns non-zero
 * when the database was not fully built (DEST may then hold a part).
 */
const LOAD_FUNCTION = String.raw`
load() {
  fmt=$1; f=$2; dst=$3; l=$4
  rm -f -- "$dst" "$dst-journal" "$dst-wal" "$dst-shm"
  case "$fmt" in
    sqlite-db) cp -- "$f" "$dst"; r=$?; echo "$l-CP|$r"; [ "$r" = 0 ] || return 1 ;;
    sql-text)
      nc=0
      [ "$(tail -c 8 -- "$f")" = "COMMIT;" ] || { echo "$l-NOCOMMIT|"; nc=1; }
      { cat -- "$f"; printf '\nBEGIN;\nCOMMIT;\n'; } | run "$l" -batch -bail "$dst" > /dev/null || return 1
      [ "$nc" = 0 ] || return 1 ;;
    *) echo "$l-X|unknown format"; echo "$l-RC|125"; return 1 ;;
  esac
  return 0
}
`;

/**
 * The proof's restore and integrity check: `$1` program, `$2` work folder,
 * `$3` format, `$4` artifact file. Builds rubicon-proof.db, opens it
 * (`O-…` lines: `O|<objects in sqlite_schema>`), runs PRAGMA
 * integrity_check(20) (`I|<line>` lines, cut to 240 bytes). `T|<ns>`
 * lines mark the start and the end of each part, for the checks' timings.
 */
export const PROVE_SCRIPT =
  String.raw`
SQ=$1; w=$2; fmt=$3; f=$4
` +
  PRELUDE +
  LOAD_FUNCTION +
  String.raw`
mkdir -p -- "$w" && cd -- "$w" || { echo "ENV|cannot create or enter the work folder $w"; echo 'L-RC|125'; exit 0; }
db=rubicon-proof.db
echo "T|$(date +%s%N)"
load "$fmt" "$f" "$db" L; ok=$?
echo "T|$(date +%s%N)"
[ "$ok" = 0 ] || exit 0
run O -batch -bail -readonly -noheader -list -separator '|' "$db" "SELECT 'O', count(*) FROM sqlite_schema;"
echo "T|$(date +%s%N)"
{ run I -batch -bail -readonly -noheader -list "$db" "PRAGMA integrity_check(20);"; } | head -n 20 | cut -c 1-240 | sed 's/^/I|/'
echo "T|$(date +%s%N)"
exit 0
`;

/**
 * Landing: `$1` program, `$2` destination, `$3` format, `$4` artifact file,
 * `$5` 'wal' to put a dump-built database in WAL mode, `$6` owner
 * (user:group, '' = keep), `$7` mode (octal, '' = keep). Builds
 * DEST.rubicon-restore.tmp beside the destination, requires PRAGMA
 * quick_check to answer exactly ok (`Q|<line>` lines), gives it the old
 * file's owner and mode (or the recorded ones), syncs it, removes stale
 * sidecars at DEST (a stale -wal would be replayed onto the new file) and
 * renames it into place, then syncs the folder. Prints `DONE|` at the end;
 * anything short of that left DEST as it was.
 */
export const LAND_SCRIPT =
  String.raw`
SQ=$1; dest=$2; fmt=$3; f=$4; wal=$5; owner=$6; mode=$7
` +
  PRELUDE +
  LOAD_FUNCTION +
  String.raw`
d=$(dirname -- "$dest")
mkdir -p -- "$d" || { echo "ENV|cannot create the destination folder $d"; echo 'L-RC|125'; exit 0; }
t="$dest.rubicon-restore.tmp"
drop() { rm -f -- "$t" "$t-journal" "$t-wal" "$t-shm"; exit 0; }
load "$fmt" "$f" "$t" L || drop
if [ "$wal" = wal ] && [ "$fmt" = sql-text ]; then run W -batch -bail "$t" "PRAGMA journal_mode=WAL;" > /dev/null || drop; fi
q=$({ run Q -batch -bail -readonly -noheader -list "$t" "PRAGMA quick_check;"; } | head -n 5 | cut -c 1-240)
printf '%s\n' "$q" | sed 's/^/Q|/'
rm -f -- "$t-journal" "$t-wal" "$t-shm"
[ "$q" = ok ] || drop
if [ -e "$dest" ]; then
  chown --reference="$dest" -- "$t" 2>/dev/null; chmod --reference="$dest" -- "$t" 2>/dev/null
else
  if [ -n "$owner" ] && [ "$(stat -c %U:%G -- "$t")" != "$owner" ]; then chown -- "$owner" "$t" 2>/dev/null || { echo "OWN-X|chown $owner failed"; drop; }; fi
  if [ -n "$mode" ]; then chmod -- "$mode" "$t" 2>/dev/null || { echo "OWN-X|chmod $mode failed"; drop; }; fi
fi
sync -- "$t" || { echo 'MV-X|sync failed'; drop; }
rm -f -- "$dest-wal" "$dest-shm" "$dest-journal"
mv -f -- "$t" "$dest" || { echo 'MV-X|rename failed'; drop; }
sync -- "$d" 2>/dev/null || sync
echo 'DONE|'
exit 0
`;

/**
 * Discovery: `$1` the 16-byte magic file, `$2` a find -path pattern to
 * prune (the work folder), then the roots (absolute). For each regular file
 * of 100 bytes or more whose first 16 bytes are the SQLite header, one line
 * `DB|size|mtime (s)|owner:group|mode (octal)|<path as hex>`; for a root
 * that is not a folder `MISSING|<root as hex>`. Never follows symlinks nor
 * crosses into another filesystem. Output is NUL-free (a step's stdout must
 * be) and one line per database whatever its name holds.
 */
export const DISCOVER_SCRIPT = String.raw`
m=$1; x=$2; shift 2
hex() { printf %s "$1" | od -An -v -tx1 | tr -d ' \n'; }
for r in "$@"; do
  if [ ! -d "$r" ]; then printf 'MISSING|'; hex "$r"; echo; continue; fi
  find -P "$r" -xdev -path "$x" -prune -o -type f -size +99c -exec cmp -s -n 16 -- "$m" {} \; -printf '%s|%T@|%u:%g|%m|%p\0' \
    | xargs -0 -r sh -c 'for r; do printf "DB|%s|" "${'$'}{r%%|/*}"; printf %s "/${'$'}{r#*|/}" | od -An -v -tx1 | tr -d " \n"; echo; done' rubicon-discover
done
exit 0
`;

/** Size and mtime of "$1-wal", when it exists: `WAL|<bytes>|<mtime s>`. */
export const WAL_STAT_SCRIPT = String.raw`
[ -f "$1-wal" ] && find -P "$1-wal" -maxdepth 0 -type f -printf 'WAL|%s|%T@\n'
exit 0
`;

// ---------------------------------------------------------------- parsing

/** Tagged lines (`TAG|a|b`) of a script's stdout. */
export function tagged(stdout: string): { tag: string; fields: string[] }[] {
  const out: { tag: string; fields: string[] }[] = [];
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const parts = line.split('|');
    out.push({ tag: parts[0]!, fields: parts.slice(1) });
  }
  return out;
}

export interface RunStatus {
  exitCode: number | undefined;
  /** sqlite3's own error lines, quoted fragments blanked (no row data). */
  errors: string[];
}

/** The `LABEL-RC` and `LABEL-X` lines of one `run` in a script's output. */
export function runStatus(stdout: string, label: string): RunStatus {
  let exitCode: number | undefined;
  const errors: string[] = [];
  for (const { tag, fields } of tagged(stdout)) {
    if (tag === `${label}-RC`) exitCode = Number(fields[0]);
    else if (tag === `${label}-X`) errors.push(sanitizeLine(fields.join('|')));
  }
  return { exitCode, errors };
}

/**
 * One line of tool output made safe to show and journal: quoted fragments
 * blanked (they may quote row data), control characters dropped, cut to
 * 240 characters. The scripts do the same on the machine; this repeats it.
 */
export function sanitizeLine(line: string): string {
  const s = line
    .replace(/"[^"]*("|$)/g, (_m, end: string) => (end ? '"…"' : '"…'))
    .replace(/'[^']*('|$)/g, (_m, end: string) => (end ? "'…'" : "'…"))
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .trim();
  return s.length > 240 ? `${s.slice(0, 240)}…` : s;
}

/** The `ENV|` lines of a script: the machine itself failed (work folder, temporary files), not the database. */
export function envFailures(stdout: string): string[] {
  return tagged(stdout)
    .filter((l) => l.tag === 'ENV')
    .map((l) => l.fields.join('|'));
}

/** What a failed sqlite3 run said, for a message: its error lines or its exit code. */
export function describeFailure(s: RunStatus): string {
  if (s.errors.length > 0) return s.errors.slice(0, 3).join('; ');
  if (s.exitCode === undefined) return 'sqlite3 did not report (the machine may have run out of space or killed it)';
  return `sqlite3 exited with code ${s.exitCode}`;
}

export interface Sqlite3Version {
  /** `3.40.1` */
  version: string;
  /** `2022-12-28` when the shell says it. */
  date?: string;
  /** Provenance: `sqlite3 3.40.1 (2022-12-28)`. */
  tool: string;
}

/** Compares dotted versions numerically. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Reads PROBE_SCRIPT's output. Throws TOOL_MISSING naming the machine and
 * the fix when sqlite3 is absent, too old, or lacks the shell's built-in
 * sha3/ieee754 functions.
 */
export function parseProbe(stdout: string, machine: string, program: string): Sqlite3Version {
  const fix = `install the sqlite3 command-line shell ${SQLITE3_MIN_VERSION} or newer on ${machine} (Debian/Ubuntu: apt-get install sqlite3; RHEL/Fedora: dnf install sqlite), then resume the run`;
  const lines = tagged(stdout);
  if (lines.some((l) => l.tag === 'M')) {
    throw new RubiconError('TOOL_MISSING', `${program} is not installed on ${machine} (the sqlite3 methods run it there)`, { hint: fix, details: { machine, tool: program } });
  }
  const v = lines.find((l) => l.tag === 'V')?.fields.join('|') ?? '';
  const m = /^(\d+\.\d+\.\d+)(?:\s+(\d{4}-\d{2}-\d{2}))?/.exec(v.trim());
  if (!m) {
    throw new RubiconError('TOOL_MISSING', `${program} on ${machine} did not report a version (${sanitizeLine(v) || 'no output'}): it may not be the sqlite3 shell`, { hint: fix, details: { machine, tool: program } });
  }
  const version = m[1]!;
  const tool = `sqlite3 ${version}${m[2] ? ` (${m[2]})` : ''}`;
  const f = lines.find((l) => l.tag === 'F');
  const ok = f !== undefined && f.fields[0] === '3FF8000000000000' && f.fields[1] === '3FF8000000000000' && f.fields[2] === SHA3_ABC;
  if (compareVersions(version, SQLITE3_MIN_VERSION) < 0 || !ok) {
    throw new RubiconError('TOOL_MISSING', `${program} on ${machine} is ${version}, which lacks the shell functions the fingerprint needs (ieee754_to_blob, ieee754_from_blob, sha3; sqlite3 ${SQLITE3_MIN_VERSION} or newer)`, {
      hint: fix,
      details: { machine, tool: program, version },
    });
  }
  return { version, ...(m[2] ? { date: m[2] } : {}), tool };
}

// ---------------------------------------------------------------- listing

export type TableKind = 'rowid' | 'without-rowid' | 'virtual';

export interface TableSpec {
  name: string;
  kind: TableKind;
  /** Columns in declaration order with PRAGMA table_xinfo's `hidden` (0 stored, 2/3 generated). */
  columns: { name: string; hidden: number }[];
}

export interface Listing {
  encoding: string;
  journalMode: string;
  pageSize: number;
  pageCount: number;
  /** User tables (not sqlite_*), shadow tables of virtual tables included, sorted by name (binary). */
  tables: TableSpec[];
  /** sqlite_sequence exists (AUTOINCREMENT). */
  hasSequence: boolean;
  /** The lines the listing printed: compared again inside the fingerprint's read transaction. */
  raw: string;
}

const NOT_INTERNAL = "s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";
const IS_VIRTUAL = "s.sql LIKE 'CREATE VIRTUAL TABLE%'";

/**
 * The schema listing: encoding, journal mode, page size and count, user
 * tables with their kind (a WITHOUT ROWID table's primary-key index has no
 * rowid column, cid -1, in PRAGMA index_xinfo: exact on every version the
 * engine supports), their columns (not for virtual tables, whose module may
 * be missing here), and whether sqlite_sequence exists. Read-only.
 */
export const LISTING_SQL = [
  "SELECT 'E', encoding FROM pragma_encoding;",
  "SELECT 'J', journal_mode FROM pragma_journal_mode;",
  "SELECT 'P', (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count);",
  `SELECT 'T', hex(s.name), CASE WHEN ${IS_VIRTUAL} THEN 'virtual' WHEN EXISTS (SELECT 1 FROM pragma_index_list(s.name) il WHERE il.origin = 'pk' AND NOT EXISTS (SELECT 1 FROM pragma_index_xinfo(il.name) WHERE cid = -1)) THEN 'without-rowid' ELSE 'rowid' END FROM sqlite_schema s WHERE s.type = 'table' AND ${NOT_INTERNAL} ORDER BY s.name;`,
  `SELECT 'C', hex(s.name), x.cid, hex(x.name), x.hidden FROM sqlite_schema s JOIN pragma_table_xinfo(s.name) x WHERE s.type = 'table' AND ${NOT_INTERNAL} AND NOT (${IS_VIRTUAL}) ORDER BY s.name, x.cid;`,
  "SELECT 'Q', count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence';",
].join('\n');

/** Decodes hex(text) from a database in `encoding` (UTF-8, UTF-16le, UTF-16be). */
export function decodeHexText(hex: string, encoding: string): string {
  const b = Buffer.from(hex, 'hex');
  const enc = encoding.toUpperCase();
  if (enc === 'UTF-16LE') return b.toString('utf16le');
  if (enc === 'UTF-16BE') {
    const sw = Buffer.from(b);
    sw.swap16();
    return sw.toString('utf16le');
  }
  return b.toString('utf8');
}

/** Parses the listing's lines. Throws on output that is not the listing's (a broken shell). */
export function parseListing(stdout: string): Listing {
  const lines = tagged(stdout).filter((l) => ['E', 'J', 'P', 'T', 'C', 'Q'].includes(l.tag));
  const get = (tag: string) => lines.find((l) => l.tag === tag)?.fields;
  const encoding = get('E')?.[0];
  const journal = get('J')?.[0];
  const p = get('P');
  const q = get('Q');
  if (encoding === undefined || journal === undefined || p === undefined || q === undefined) {
    throw new RubiconError('ENGINE_FAILED', 'the sqlite3 schema listing came back incomplete');
  }
  const tables = new Map<string, TableSpec>();
  for (const l of lines) {
    if (l.tag !== 'T') continue;
    const kind = l.fields[1] as TableKind;
    tables.set(l.fields[0]!, { name: decodeHexText(l.fields[0]!, encoding), kind, columns: [] });
  }
  for (const l of lines) {
    if (l.tag !== 'C') continue;
    const t = tables.get(l.fields[0]!);
    if (t) t.columns.push({ name: decodeHexText(l.fields[2]!, encoding), hidden: Number(l.fields[3]) });
  }
  const raw = lines.map((l) => [l.tag, ...l.fields].join('|')).join('\n');
  return {
    encoding,
    journalMode: journal.toLowerCase(),
    pageSize: Number(p[0]),
    pageCount: Number(p[1]),
    tables: [...tables.values()],
    hasSequence: Number(q[0]) > 0,
    raw,
  };
}

// ------------------------------------------------------------ fingerprint

/**
 * The exact serialisation of one value, in SQL (see docs/sqlite-remote.md):
 * NULL `N`; INTEGER `I` + decimal; REAL `R` + the 16 hex digits of its
 * IEEE-754 binary64 bits (ieee754_to_blob: exact on every version, unlike
 * quote() or printf), negative zero as zero; TEXT `T` + hex of its bytes
 * in the database encoding (embedded NULs and invalid UTF-8 included);
 * BLOB `B` + hex of its bytes. Tags and hex never contain the separator.
 */
export function valueSql(expr: string): string {
  return (
    `CASE typeof(${expr}) WHEN 'integer' THEN 'I'||${expr} ` +
    `WHEN 'real' THEN 'R'||CASE WHEN ${expr}=0 THEN '0000000000000000' ELSE hex(ieee754_to_blob(${expr})) END ` +
    `WHEN 'text' THEN 'T'||hex(${expr}) WHEN 'blob' THEN 'B'||hex(${expr}) ELSE 'N' END`
  );
}

/**
 * `a||','||b||…` as a balanced tree, so a table with hundreds of columns
 * stays far below SQLite's expression depth limit (1000).
 */
export function concatSql(parts: string[]): string {
  if (parts.length === 0) return "''";
  if (parts.length === 1) return parts[0]!;
  const mid = Math.ceil(parts.length / 2);
  return `(${concatSql(parts.slice(0, mid))})||','||(${concatSql(parts.slice(mid))})`;
}

const CHUNKS = 8;
const TWO52 = '4503599627370496';

/**
 * The per-table aggregate: row count and, per 32-bit chunk of each row's
 * SHA3-256, the sum over all rows. A chunk is read as an integer exactly by
 * putting its 4 bytes under the exponent of 2^52 (X'43300000' || chunk is
 * the binary64 2^52 + chunk), so SQLite's 64-bit sum() adds exact integers;
 * it cannot overflow below 2^31 rows, and beyond that sum() fails loudly
 * ("integer overflow"), never silently. The subquery's LIMIT keeps SQLite
 * from inlining it, so each row is hashed once.
 */
export function tableHashSql(index: number, from: string, rowExprs: string[], where = ''): string {
  const sums: string[] = [];
  for (let k = 0; k < CHUNKS; k++) {
    sums.push(`coalesce(sum(CAST(ieee754_from_blob(CAST(X'43300000'||substr(h, ${k * 4 + 1}, 4) AS BLOB)) AS INTEGER) - ${TWO52}), 0)`);
  }
  return `SELECT 'F', ${index}, count(*), ${sums.join(', ')} FROM (SELECT sha3(${concatSql(rowExprs)}, 256) AS h FROM ${from}${where} LIMIT -1);`;
}

/** Combines the chunk sums into the table hash: Σ rows SHA3-256(row) mod 2^256, as 64 hex digits. */
export function combineChunks(sums: readonly bigint[]): string {
  let total = 0n;
  for (let k = 0; k < sums.length; k++) total += sums[k]! << BigInt(32 * (CHUNKS - 1 - k));
  return (total & ((1n << 256n) - 1n)).toString(16).padStart(64, '0');
}

export interface FingerprintPlan {
  tables: { name: string; sql: string; unhashedColumns: string[] }[];
}

/** A name by which a rowid table's rowid can be selected, when no column shadows all three. */
export function rowidName(t: TableSpec): string | undefined {
  const taken = new Set(t.columns.map((c) => c.name.toLowerCase()));
  return ['rowid', '_rowid_', 'oid'].find((n) => !taken.has(n));
}

/**
 * What the fingerprint hashes, table by table (pure):
 * - every ordinary table of the main schema, shadow tables of virtual
 *   tables included (that is where an FTS or R-tree index keeps its data);
 *   virtual tables themselves are not read (their module may be missing on
 *   the proving ground, and their content is in the shadow tables);
 * - each row: its rowid first (rowid tables: .backup and
 *   `.dump --preserve-rowids` both keep it, an application may rely on it),
 *   then every stored column in declaration order. Generated columns are
 *   not read: they are computed from those columns by the schema, which is
 *   hashed too, and the shell may lack a function the application defined
 *   for them. A rowid that every alias (rowid, _rowid_, oid) shadows cannot
 *   be selected: listed as unhashed `rowid`;
 * - `sqlite_schema` (type, name, tbl_name, sql of every table, index, view
 *   and trigger, not rootpage, not the sqlite_stat* tables), so a lost index
 *   or trigger shows;
 * - `sqlite_sequence` (name, seq) when it exists: AUTOINCREMENT counters.
 * - not hashed: sqlite_stat* (planner statistics; ANALYZE rebuilds them).
 */
export function planFingerprint(l: Listing): FingerprintPlan {
  const tables: FingerprintPlan['tables'] = [];
  const push = (name: string, build: (i: number) => string, unhashedColumns: string[] = []) => {
    tables.push({ name, sql: build(tables.length), unhashedColumns });
  };
  for (const t of l.tables) {
    if (t.kind === 'virtual') continue;
    const exprs: string[] = [];
    const unhashed: string[] = [];
    if (t.kind === 'rowid') {
      const r = rowidName(t);
      if (r !== undefined) exprs.push(valueSql(r));
      else unhashed.push('rowid');
    }
    for (const c of t.columns) if (c.hidden === 0) exprs.push(valueSql(quoteIdent(c.name)));
    push(t.name, (i) => tableHashSql(i, quoteIdent(t.name), exprs), unhashed);
  }
  push('sqlite_schema', (i) =>
    tableHashSql(i, 'sqlite_schema', ['type', 'name', 'tbl_name', 'sql'].map(valueSql), " WHERE name NOT LIKE 'sqlite\\_stat%' ESCAPE '\\'"),
  );
  if (l.hasSequence) push('sqlite_sequence', (i) => tableHashSql(i, 'sqlite_sequence', ['name', 'seq'].map(valueSql)));
  return { tables };
}

/**
 * The fingerprint's SQL: one read transaction (one snapshot for every
 * table), the listing again (the caller checks the schema did not change
 * since the plan was made), then one aggregate per table.
 */
export function fingerprintSql(plan: FingerprintPlan): string {
  return ['.timeout 10000', 'BEGIN;', LISTING_SQL, ...plan.tables.map((t) => t.sql), 'COMMIT;', "SELECT 'DONE';"].join('\n') + '\n';
}

/**
 * Reads the fingerprint's output into table fingerprints (in plan order).
 * Returns undefined when the schema changed between the plan and the read
 * (the caller plans again). Throws ENGINE_FAILED for an incomplete output.
 */
export function parseFingerprint(stdout: string, plan: FingerprintPlan, listingRaw: string): TableFingerprint[] | undefined {
  const lines = tagged(stdout);
  if (!lines.some((l) => l.tag === 'DONE')) throw new RubiconError('ENGINE_FAILED', 'the sqlite3 fingerprint did not finish');
  const raw = lines
    .filter((l) => ['E', 'J', 'P', 'T', 'C', 'Q'].includes(l.tag))
    .map((l) => [l.tag, ...l.fields].join('|'))
    .join('\n');
  // Page count moves with every write that grows the file; only the schema lines must match.
  const schema = (s: string) => s.split('\n').filter((x) => !x.startsWith('P|')).join('\n');
  if (schema(raw) !== schema(listingRaw)) return undefined;
  const out: TableFingerprint[] = [];
  for (const l of lines) {
    if (l.tag !== 'F') continue;
    const i = Number(l.fields[0]);
    const t = plan.tables[i];
    if (!t || l.fields.length !== 2 + CHUNKS) throw new RubiconError('ENGINE_FAILED', 'the sqlite3 fingerprint output is malformed');
    const sums = l.fields.slice(2).map((s) => BigInt(s));
    const fp: TableFingerprint = { table: t.name, rows: Number(l.fields[1]), hash: combineChunks(sums) };
    if (t.unhashedColumns.length > 0) fp.unhashedColumns = [...t.unhashedColumns];
    out[i] = fp;
  }
  if (out.length !== plan.tables.length || out.some((t) => t === undefined)) {
    throw new RubiconError('ENGINE_FAILED', 'the sqlite3 fingerprint output misses tables');
  }
  return out;
}

/**
 * Discovery's count of user tables and rows (virtual tables are counted as
 * tables, their rows are not read). Runs in one read transaction.
 */
export function countSql(l: Listing): string {
  const parts = ['.timeout 10000', 'BEGIN;'];
  for (const t of l.tables) if (t.kind !== 'virtual') parts.push(`SELECT 'N', count(*) FROM ${quoteIdent(t.name)};`);
  parts.push('COMMIT;', "SELECT 'DONE';");
  return parts.join('\n') + '\n';
}

// ---------------------------------------------------------------- capture

/** Provenance of a capture, read inside its own read transaction: `P|journal|page_size|page_count|schema_version|encoding`. */
const POSITION_SQL =
  "SELECT 'P', (SELECT journal_mode FROM pragma_journal_mode), (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count), (SELECT schema_version FROM pragma_schema_version), (SELECT encoding FROM pragma_encoding);";

/**
 * The source's fingerprint inside the capture's own read transaction: the
 * listing again (checked against the plan) and one aggregate per table, so
 * the fingerprint describes exactly the snapshot the artifact holds.
 */
function snapshotFingerprintSql(plan: FingerprintPlan): string[] {
  return [LISTING_SQL, ...plan.tables.map((t) => t.sql)];
}

/**
 * `.backup` inside one read transaction: the backup API then copies one
 * snapshot and never restarts (it would restart on every write otherwise,
 * and a busy database could keep it from finishing). In WAL mode the
 * snapshot includes committed frames still in the -wal file. With a plan,
 * the same transaction fingerprints the source first.
 */
export function backupSql(plan?: FingerprintPlan): string {
  return ['.timeout 10000', 'BEGIN;', ...(plan ? snapshotFingerprintSql(plan) : []), POSITION_SQL, '.backup rubicon-backup.part', 'COMMIT;', "SELECT 'DONE';"].join('\n') + '\n';
}

/**
 * `.dump --preserve-rowids` into rubicon-dump.part, in one read transaction
 * that (with a plan) fingerprints the source first. For a UTF-16 database the dump starts
 * with `PRAGMA encoding` so it loads back into the same encoding (the shell
 * writes UTF-8 text and no encoding line).
 */
export function dumpSql(encoding: string, plan?: FingerprintPlan): string {
  const lines = ['.timeout 10000', 'BEGIN;', ...(plan ? snapshotFingerprintSql(plan) : []), POSITION_SQL, '.output rubicon-dump.part'];
  if (encoding.toUpperCase() !== 'UTF-8') {
    if (!/^UTF-16(le|be)$/i.test(encoding)) throw new RubiconError('ENGINE_FAILED', `unknown SQLite text encoding ${encoding}`);
    lines.push(`.print "PRAGMA encoding='${encoding}';"`);
  }
  lines.push('.dump --preserve-rowids', '.output stdout', 'COMMIT;', "SELECT 'DONE';");
  return lines.join('\n') + '\n';
}

export interface Position {
  journalMode: string;
  pageSize: number;
  pageCount: number;
  schemaVersion: number;
  encoding: string;
}

export function parsePosition(stdout: string): Position | undefined {
  const p = tagged(stdout).find((l) => l.tag === 'P' && l.fields.length === 5);
  if (!p) return undefined;
  return { journalMode: p.fields[0]!.toLowerCase(), pageSize: Number(p.fields[1]), pageCount: Number(p.fields[2]), schemaVersion: Number(p.fields[3]), encoding: p.fields[4]! };
}

export function positionText(p: Position): string {
  return `journal_mode=${p.journalMode}; page_size=${p.pageSize}; page_count=${p.pageCount}; schema_version=${p.schemaVersion}; encoding=${p.encoding}`;
}

// -------------------------------------------------------------- discovery

export interface FoundFile {
  path: string;
  size: number;
  mtimeMs: number;
  owner: string;
  mode: string;
}

/** Parses DISCOVER_SCRIPT's lines. */
export function parseDiscover(stdout: string): { files: FoundFile[]; missingRoots: string[] } {
  const files: FoundFile[] = [];
  const missingRoots: string[] = [];
  for (const { tag, fields } of tagged(stdout)) {
    if (tag === 'DB' && fields.length === 5 && /^[0-9a-f]*$/.test(fields[4]!)) {
      const [size, mtime, owner, mode, hex] = fields as [string, string, string, string, string];
      files.push({ path: Buffer.from(hex, 'hex').toString('utf8'), size: Number(size), mtimeMs: Math.round(Number(mtime) * 1000), owner, mode });
    } else if (tag === 'MISSING' && fields.length === 1) {
      missingRoots.push(Buffer.from(fields[0]!, 'hex').toString('utf8'));
    }
  }
  return { files, missingRoots };
}

/** A glob-escaped path for find's -path (which takes patterns). */
export function findPattern(p: string): string {
  return p.replace(/[\\*?[\]]/g, '\\$&');
}
