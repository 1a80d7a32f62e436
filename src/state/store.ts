import type { JournalRecord } from '../core/events.ts';
import { Journal, listRuns, readJournal, runPaths, type RunPaths } from '../run/journal.ts';

/**
 * Where runs are kept: journals, the one-run-per-target lock, the runbook
 * copy, reports and evidence. The default is a local folder (the state
 * directory); `--state azblob://account/container/prefix` keeps them in an
 * Azure Blob container that a fleet of pipeline agents shares
 * (src/state/azblob.ts).
 *
 * Contracts (every implementation):
 * - paths(runId) are local folders for the run's working files (work/,
 *   report/, the runbook copy, and the local journal file the Journal class
 *   writes with fsync). A shared store mirrors the journal and the run's
 *   files from there.
 * - lock() gives one run at a time per target across every machine that
 *   uses the same store; a lock whose holder is gone is taken over (azblob:
 *   its lease expired). LOCK_HELD otherwise, naming the holder. On this
 *   machine, run.ts always takes the machine-wide lock on the target's
 *   identity first (src/run/target-lock.ts), whatever the store: that is
 *   the whole lock of the local store.
 * - createJournal/openJournal return a Journal whose append() is durable
 *   locally on return; flush() resolves once every appended record is in
 *   the store too. A shared store refuses (JOURNAL_CONFLICT) a record that
 *   another writer got in before it: two writers never interleave.
 * - readJournal verifies the hash chain (JOURNAL_CORRUPT otherwise).
 */
export interface StateStore {
  /** For messages and `resume` hints: a folder, or `azblob://account/container/prefix`. */
  readonly location: string;
  paths(runId: string): RunPaths;
  listRuns(): Promise<string[]>;
  readJournal(runId: string): Promise<JournalRecord[]>;
  createJournal(runId: string): Promise<Journal>;
  openJournal(runId: string): Promise<Journal>;
  /** Returns the release function. */
  lock(target: string, runId: string, host: string): Promise<() => Promise<void>>;
  /**
   * The runbook a resumed run starts from when `recordedPath` is not on this
   * machine (another agent): the store's copy, or undefined (local store).
   */
  runbookCopy(runId: string): Promise<string | undefined>;
  /** Every record appended so far is in the store; the run's files (runbook copy, reports) too. */
  flush(runId: string): Promise<void>;
}

/** The state directory on this machine: exactly what src/run/journal.ts does (the lock is the machine-wide one of src/run/target-lock.ts). */
export class LocalStateStore implements StateStore {
  readonly location: string;
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    this.location = dir;
  }
  paths(runId: string): RunPaths {
    return runPaths(this.dir, runId);
  }
  async listRuns(): Promise<string[]> {
    return listRuns(this.dir);
  }
  async readJournal(runId: string): Promise<JournalRecord[]> {
    return readJournal(this.paths(runId).journal, { repairTornTail: true });
  }
  async createJournal(runId: string): Promise<Journal> {
    return Journal.create(this.paths(runId).journal);
  }
  async openJournal(runId: string): Promise<Journal> {
    return Journal.open(this.paths(runId).journal);
  }
  /** Nothing more to take: the machine-wide target lock run.ts holds already excludes every run on this machine. */
  async lock(): Promise<() => Promise<void>> {
    return async () => undefined;
  }
  async runbookCopy(): Promise<string | undefined> {
    return undefined;
  }
  async flush(): Promise<void> {
    // append() fsyncs every record; the files are already here.
  }
}
