/**
 * The EHR vendor's SQL backup job, as the sandbox plays it. A standalone
 * script (node builtins only):
 *
 *   node vendor-backup-job.ts <dbPath> <outputDir> [--mode truncate|damage-page|good]
 *
 * It writes `<outputDir>/ehr-<timestamp>.bak`, prints "Backup completed
 * successfully" and exits 0, whatever the mode, just like the job in the
 * story. Modes:
 * - truncate (default): only the first ~60% of a consistent copy is kept;
 * - damage-page: a consistent copy with bytes overwritten inside a b-tree
 *   page in the middle of the file (its header and cell pointers), so the
 *   file still opens but `PRAGMA integrity_check` fails;
 * - good: a correct copy (for tests that need a vendor job that works).
 * Exit codes: 0 "success", 1 the database cannot be read, 2 bad arguments.
 */
import { mkdirSync, openSync, closeSync, readSync, renameSync, statSync, truncateSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { backup, DatabaseSync } from 'node:sqlite';

type Mode = 'truncate' | 'damage-page' | 'good';
const MODES: readonly Mode[] = ['truncate', 'damage-page', 'good'];
const BTREE_PAGE_TYPES = new Set([0x02, 0x05, 0x0a, 0x0d]);

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: node vendor-backup-job.ts <dbPath> <outputDir> [--mode truncate|damage-page|good]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): { db: string; out: string; mode: Mode } {
  const positional: string[] = [];
  let mode: Mode = 'truncate';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--mode') {
      const m = argv[++i];
      if (m === undefined || !MODES.includes(m as Mode)) usage(`unknown --mode ${m ?? '(missing)'}`);
      mode = m as Mode;
    } else if (a.startsWith('--mode=')) {
      const m = a.slice('--mode='.length);
      if (!MODES.includes(m as Mode)) usage(`unknown --mode ${m}`);
      mode = m as Mode;
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== 2) usage('expected <dbPath> and <outputDir>');
  return { db: positional[0]!, out: positional[1]!, mode };
}

function timestamp(d: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}-${p(d.getUTCMilliseconds(), 3)}`;
}

/**
 * Overwrites the page header and cell-pointer array of a b-tree page near
 * the middle of the file with a fixed pattern. Returns the page number.
 */
function damageMiddlePage(path: string): number {
  const fd = openSync(path, 'r+');
  try {
    const head = Buffer.alloc(100);
    readSync(fd, head, 0, 100, 0);
    const raw = head.readUInt16BE(16);
    const pageSize = raw === 1 ? 65_536 : raw;
    const pages = Math.floor(statSync(path).size / pageSize);
    if (pages < 3) throw new Error('database too small to damage a page in the middle');
    const page = Buffer.alloc(pageSize);
    const middle = Math.floor(pages / 2);
    for (let offset = 0; offset < pages; offset++) {
      // Search outwards from the middle for a b-tree page (not page 1, not a freelist or overflow page).
      const candidates = [middle + offset, middle - offset];
      for (const n of candidates) {
        if (n < 2 || n > pages) continue;
        readSync(fd, page, 0, pageSize, (n - 1) * pageSize);
        if (!BTREE_PAGE_TYPES.has(page[0]!)) continue;
        const garbage = Buffer.alloc(Math.min(64, pageSize - 1));
        for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 37 + 0xa5) & 0xff;
        writeSync(fd, garbage, 0, garbage.length, (n - 1) * pageSize + 1);
        fsyncSync(fd);
        return n;
      }
    }
    throw new Error('no b-tree page found to damage');
  } finally {
    closeSync(fd);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.out, { recursive: true });
  const name = `ehr-${timestamp(new Date())}.bak`;
  const final = join(args.out, name);
  const tmp = final + '.partial';
  let source: DatabaseSync;
  try {
    source = new DatabaseSync(args.db, { readOnly: true });
    source.prepare('SELECT count(*) FROM sqlite_schema').get();
  } catch (e) {
    process.stderr.write(`Backup failed: cannot open database ${args.db}: ${(e as Error).message}\n`);
    process.exit(1);
  }
  try {
    await backup(source, tmp);
  } finally {
    source.close();
  }
  if (args.mode === 'truncate') {
    truncateSync(tmp, Math.floor(statSync(tmp).size * 0.6));
  } else if (args.mode === 'damage-page') {
    damageMiddlePage(tmp);
  }
  renameSync(tmp, final);
  process.stdout.write(`Backup completed successfully: ${name}\n`);
}

await main();
