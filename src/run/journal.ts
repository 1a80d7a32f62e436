import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, ftruncateSync, writeSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { RubiconError, outOfSpace } from '../core/errors.ts';
import type { JournalEvent, JournalRecord } from '../core/events.ts';
import { assertAlive } from './faults.ts';

/**
 * The run journal: append-only JSONL, one record per line, each record
 * hash-chained to the one before (hash = SHA-256(prev + canonical JSON of
 * {seq, at, event})) and fsync'd before append() returns.
 *
 * Guarantees:
 * - an event is durable once append() returned;
 * - a crash mid-write leaves at most one torn last line, which open()
 *   drops (the event it held was never acknowledged, so redoing it is safe);
 * - any other damage (an edited line, a broken chain) is JOURNAL_CORRUPT:
 *   we never resume from a history we cannot trust.
 */
export const GENESIS = '0'.repeat(64);

export function recordHash(prev: string, seq: number, at: string, event: JournalEvent): string {
  return createHash('sha256').update(prev).update(JSON.stringify({ seq, at, event })).digest('hex');
}

export class Journal {
  readonly file: string;
  private fd: number;
  private last: string;
  private seq: number;
  private readonly records: JournalRecord[];
  private readonly listeners: ((r: JournalRecord) => void)[] = [];
  private signer: ((seq: number, hash: string) => string) | undefined;
  /** Set once a write failed: the journal takes no more records in this process. */
  private broken: RubiconError | undefined;

  private constructor(file: string, fd: number, records: JournalRecord[]) {
    this.file = file;
    this.fd = fd;
    this.records = records;
    const tail = records.at(-1);
    this.last = tail?.hash ?? GENESIS;
    this.seq = tail?.seq ?? 0;
  }

  /** Creates a new journal; refuses to overwrite an existing one. */
  static create(file: string): Journal {
    mkdirSync(path.dirname(file), { recursive: true });
    const fd = openSync(file, 'wx');
    fsyncDir(path.dirname(file));
    return new Journal(file, fd, []);
  }

  /** Opens an existing journal for appending, verifying the whole chain. */
  static open(file: string): Journal {
    const records = readJournal(file, { repairTornTail: true });
    const fd = openSync(file, 'a');
    return new Journal(file, fd, records);
  }

  /** Every record appended from now on carries `sig` = signer(seq, hash) (src/run/audit.ts). */
  signWith(signer: (seq: number, hash: string) => string): void {
    this.signer = signer;
  }

  onAppend(listener: (r: JournalRecord) => void): void {
    this.listeners.push(listener);
  }

  all(): readonly JournalRecord[] {
    return this.records;
  }

  append(event: JournalEvent, now: Date = new Date()): JournalRecord {
    assertAlive(); // a (simulated) dead process writes nothing more: src/run/faults.ts
    const seq = this.seq + 1;
    const at = now.toISOString();
    const hash = recordHash(this.last, seq, at, event);
    const record: JournalRecord = { seq, at, event, prev: this.last, hash, ...(this.signer ? { sig: this.signer(seq, hash) } : {}) };
    const line = Buffer.from(JSON.stringify(record) + '\n');
    if (this.broken) throw this.broken;
    const size = this.size();
    try {
      let off = 0;
      while (off < line.length) off += writeSync(this.fd, line, off, line.length - off);
      fsyncSync(this.fd);
    } catch (e) {
      // Never leave a torn line behind: cut back to the last whole record, so
      // that `resume` reads a whole journal once the space is freed. The
      // journal takes no more records in this process.
      if (size !== undefined) {
        try {
          ftruncateSync(this.fd, size);
          fsyncSync(this.fd);
        } catch {
          // the torn tail is repaired by Journal.open on resume
        }
      }
      const full = outOfSpace(e);
      this.broken = full
        ? new RubiconError('NO_SPACE', `out of space in the state directory (run folder ${path.dirname(this.file)}): journal record ${seq} (${event.type}) could not be written`, {
            hint: `free space there, then \`rubicon resume\` the run: the journal ends at its last whole record and nothing already captured is lost`,
            cause: e,
          })
        : new RubiconError('JOURNAL_CORRUPT', `cannot write the journal ${this.file}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      throw this.broken;
    }
    this.seq = seq;
    this.last = hash;
    this.records.push(record);
    for (const l of this.listeners) l(record);
    return record;
  }

  /** The journal file's size now (undefined when it cannot be read). */
  private size(): number | undefined {
    try {
      return fstatSync(this.fd).size;
    } catch {
      return undefined;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems do not support fsync on directories; the file itself is fsync'd.
  }
}

/**
 * Reads and verifies a journal. With repairTornTail, a last line without its
 * newline or that does not parse is cut off (the crash happened while it was
 * being written); without it, that is corruption.
 */
export function readJournal(file: string, options: { repairTornTail?: boolean } = {}): JournalRecord[] {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new RubiconError('RUN_NOT_FOUND', `no journal at ${file}`, { cause: e, hint: 'check the run id with `rubicon status`' });
  }
  const text = buf.toString('utf8');
  const lines = text.split('\n');
  // The element after the last newline is '' for a clean file, or the torn
  // fragment of a record whose write a crash interrupted.
  const fragment = lines.pop() ?? '';
  if (fragment !== '' && !options.repairTornTail) {
    throw new RubiconError('JOURNAL_CORRUPT', `journal ${file} ends with an incomplete record`, {
      hint: 'run `rubicon resume` to repair it, or start a new run',
    });
  }
  const records: JournalRecord[] = [];
  let prev = GENESIS;
  let goodBytes = 0;
  lines.forEach((line, i) => {
    let rec: JournalRecord;
    try {
      rec = JSON.parse(line) as JournalRecord;
    } catch {
      throw new RubiconError('JOURNAL_CORRUPT', `journal ${file} line ${i + 1} is not valid JSON`, {
        hint: 'the journal was edited or damaged; start a new run (the vaults keep every artifact)',
      });
    }
    if (typeof rec !== 'object' || rec === null || rec.seq !== records.length + 1 || rec.prev !== prev || recordHash(prev, rec.seq, rec.at, rec.event) !== rec.hash) {
      throw new RubiconError('JOURNAL_CORRUPT', `journal ${file} line ${i + 1} breaks the hash chain (seq ${String((rec as { seq?: unknown } | null)?.seq)})`, {
        hint: 'the journal was edited or damaged; start a new run (the vaults keep every artifact)',
      });
    }
    records.push(rec);
    prev = rec.hash;
    goodBytes += Buffer.byteLength(line, 'utf8') + 1;
  });
  // A run records run.started before it touches anything: a journal without it is no run's history.
  if (records.length === 0) {
    throw new RubiconError('JOURNAL_CORRUPT', `journal ${file} is empty: the run recorded nothing (it died before it started, or the file was truncated)`, {
      hint: `nothing of this run can be resumed; start a new run (if it was truncated, restore the journal from a backup first); remove ${path.dirname(file)} to drop it from \`rubicon status\``,
    });
  }
  const first = (records[0]!.event as { type?: unknown } | null)?.type;
  if (first !== 'run.started') {
    throw new RubiconError('JOURNAL_CORRUPT', `journal ${file} does not begin with run.started (line 1 is ${JSON.stringify(first) ?? 'no event'})`, {
      hint: 'the journal was edited or damaged; start a new run (the vaults keep every artifact)',
    });
  }
  if (options.repairTornTail && goodBytes < buf.length) {
    const fd = openSync(file, 'r+');
    try {
      ftruncateSync(fd, goodBytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  return records;
}

/** Run ids sort by time: r-YYYYMMDD-HHMMSS-xxxx. */
export function newRunId(now: Date = new Date()): string {
  const iso = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `r-${iso}-${randomBytes(2).toString('hex')}`;
}

export interface RunPaths {
  dir: string;
  journal: string;
  runbookCopy: string;
  work: string;
  reports: string;
}

export function runPaths(stateDir: string, runId: string): RunPaths {
  if (!/^r-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$/.test(runId)) {
    throw new RubiconError('ARGUMENTS_INVALID', `"${runId}" is not a run id (they look like r-20261128-093000-1a2b)`, {
      hint: 'list runs with `rubicon status`',
    });
  }
  const dir = path.join(stateDir, 'runs', runId);
  return {
    dir,
    journal: path.join(dir, 'journal.jsonl'),
    runbookCopy: path.join(dir, 'runbook.yaml'),
    work: path.join(dir, 'work'),
    reports: path.join(dir, 'report'),
  };
}

export function listRuns(stateDir: string): string[] {
  const dir = path.join(stateDir, 'runs');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => existsSync(path.join(dir, d, 'journal.jsonl')))
    .sort();
}

// ---------------------------------------------------------------- the lock

export interface LockInfo {
  pid: number;
  runId: string;
  host: string;
  at: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One run per target at a time. The lock file is created exclusively; a
 * lock left by a dead process on this host is taken over (that is the
 * resume path after kill -9). Returns a release function.
 */
export function acquireLock(stateDir: string, target: string, runId: string, host: string): () => void {
  const dir = path.join(stateDir, 'locks');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${target}.lock`);
  const info: LockInfo = { pid: process.pid, runId, host, at: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, JSON.stringify(info));
      fsyncSync(fd);
      closeSync(fd);
      return () => {
        try {
          const held = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
          if (held.pid === process.pid && held.runId === runId) {
            // Remove only our own lock.
            removeLockFile(file);
          }
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let held: LockInfo | undefined;
      try {
        held = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
      } catch {
        // A lock file torn by a crash between create and write: stale if older than a minute.
        const age = Date.now() - statSync(file).mtimeMs;
        if (age > 60_000) {
          removeLockFile(file);
          continue;
        }
      }
      if (held && held.host === host && !alive(held.pid)) {
        removeLockFile(file);
        continue;
      }
      throw new RubiconError(
        'LOCK_HELD',
        held
          ? `target ${target} is locked by run ${held.runId} (pid ${held.pid} on ${held.host}, since ${held.at})`
          : `target ${target} is locked (${file})`,
        {
          hint: held
            ? `wait for that run, or if it died on another machine: rubicon resume ${held.runId}; remove ${file} only if you are sure no run is active`
            : `remove ${file} only if you are sure no run is active`,
        },
      );
    }
  }
  throw new RubiconError('LOCK_HELD', `could not take the lock ${file}`, { hint: 'try again' });
}

function removeLockFile(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    /* gone already */
  }
}
