import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TokenCredential } from '@azure/core-auth';
import { BlobServiceClient, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { RubiconError } from '../core/errors.ts';
import type { JournalRecord } from '../core/events.ts';
import { Journal, readJournal, runPaths, type LockInfo, type RunPaths } from '../run/journal.ts';
import type { StateStore } from './store.ts';

/**
 * Run state in an Azure Blob container, shared by every pipeline agent that
 * names the same `azblob://account/container/prefix` (the design of Pulumi's
 * self-managed azblob backend, with a lease where Pulumi has none).
 *
 * Layout under the prefix:
 *   runs/<run id>/journal.jsonl   an append blob: one Append Block per record
 *   runs/<run id>/runbook.yaml    the runbook the run started with
 *   runs/<run id>/report/<file>   reports and evidence, uploaded at flush()
 *   locks/<target>.lock           a block blob holding LockInfo; the lock is its lease
 *
 * Guarantees:
 * - **No interleaving.** Every record is appended with the append-position
 *   condition (x-ms-blob-condition-appendpos = the length this writer last
 *   saw). A second writer that appended first makes the condition fail
 *   (412): this writer's record is refused whole and the run stops with
 *   JOURNAL_CONFLICT at its next record. An Append Block is atomic, so the
 *   blob is always a sequence of whole records; readJournal verifies the chain.
 * - **One run per target.** The lock is a lease on locks/<target>.lock of
 *   `leaseSeconds` (15–60, the service's range), renewed every third of it
 *   while the run lives. A holder that died (kill -9, a lost agent) stops
 *   renewing and the lease expires by itself: the next run takes over. No
 *   run breaks a live lease. A run whose renewal fails (it was away longer
 *   than the lease) stops with LOCK_LOST before its next record.
 * - **Local first.** Records are fsync'd to a local copy of the journal (the
 *   cache folder) before append() returns, and sent to the blob in order in
 *   the background; flush() waits for them. The shared journal may lag the
 *   local one by the records in flight; a run's last record and its files
 *   are in the store once the run returned (run.ts calls flush()).
 * - An append blob holds at most 50,000 blocks: a run of more than 50,000
 *   journal records cannot be kept here (runs have hundreds).
 */
export interface AzureStateOptions {
  /** https://<account>.blob.core.windows.net, or an emulator's http://127.0.0.1:<port>/<account>. */
  accountUrl: string;
  container: string;
  prefix: string;
  credential: StorageSharedKeyCredential | TokenCredential;
  /** Local folder for the runs' working files and the local journal copies. */
  cacheDir: string;
  /** The lease of the target lock, 15–60 s. Default 60. */
  leaseSeconds?: number;
  retry?: { maxTries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
}

function statusOf(e: unknown): number | undefined {
  return typeof e === 'object' && e !== null && 'statusCode' in e && typeof e.statusCode === 'number' ? e.statusCode : undefined;
}

/**
 * `azblob://account/container[/prefix]` → its parts. The endpoint is
 * https://<account>.blob.core.windows.net unless RUBICON_AZBLOB_ENDPOINT
 * names another (an emulator, a sovereign cloud). Throws ARGUMENTS_INVALID. Pure.
 */
export function parseAzblobUrl(url: string, env: NodeJS.ProcessEnv = process.env): { account: string; container: string; prefix: string; accountUrl: string } {
  const m = /^azblob:\/\/([a-z0-9]{3,24})\/([a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?)(?:\/(.*))?$/.exec(url);
  if (!m) {
    throw new RubiconError('ARGUMENTS_INVALID', `--state ${url} is not azblob://<account>/<container>[/<prefix>]`, {
      hint: 'e.g. --state azblob://contosobackup/rubicon-state/clinic-a (account and container in lower case)',
    });
  }
  const account = m[1]!;
  const prefix = (m[3] ?? '').replace(/^\/+|\/+$/g, '');
  const accountUrl = env.RUBICON_AZBLOB_ENDPOINT?.replace(/\/+$/, '') ?? `https://${account}.blob.core.windows.net`;
  return { account, container: m[2]!, prefix, accountUrl };
}

class Replicator {
  private queue: Buffer[] = [];
  private running: Promise<void> | undefined;
  failure: RubiconError | undefined;

  private readonly store: AzureStateStore;
  private readonly runId: string;
  private offset: number;

  constructor(store: AzureStateStore, runId: string, offset: number) {
    this.store = store;
    this.runId = runId;
    this.offset = offset;
  }

  push(record: JournalRecord): void {
    const lost = this.store.lostLock();
    if (lost) this.failure ??= lost;
    if (this.failure) throw this.failure;
    this.queue.push(Buffer.from(JSON.stringify(record) + '\n'));
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  private async drain(): Promise<void> {
    const blob = this.store.journalBlob(this.runId);
    while (this.queue.length > 0 && !this.failure) {
      const line = this.queue[0]!;
      try {
        await blob.appendBlock(line, line.length, { conditions: { appendPosition: this.offset } });
        this.offset += line.length;
        this.queue.shift();
      } catch (e) {
        this.queue = [];
        this.failure =
          statusOf(e) === 412
            ? new RubiconError('JOURNAL_CONFLICT', `run ${this.runId}: another process appended to the shared journal ${this.store.location}/runs/${this.runId}/journal.jsonl first; this process stops (nothing was interleaved)`, {
                hint: `only one agent may drive a run: see \`rubicon status ${this.runId} --state ${this.store.location}\``,
              })
            : this.store.ioError(`cannot append to the journal of run ${this.runId}`, e);
      }
    }
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
    if (this.failure) throw this.failure;
  }
}

export class AzureStateStore implements StateStore {
  readonly location: string;
  readonly container: ContainerClient;
  private readonly o: AzureStateOptions;
  private readonly leaseSeconds: number;
  private readonly replicators = new Map<string, Replicator>();
  private lost: RubiconError | undefined;
  private ready: Promise<unknown> | undefined;

  constructor(o: AzureStateOptions, location?: string) {
    this.o = o;
    this.leaseSeconds = Math.min(60, Math.max(15, o.leaseSeconds ?? 60));
    const svc = new BlobServiceClient(o.accountUrl, o.credential, o.retry ? { retryOptions: o.retry } : {});
    this.container = svc.getContainerClient(o.container);
    this.location = location ?? `azblob://${o.accountUrl.replace(/^https?:\/\//, '')}/${o.container}${o.prefix ? `/${o.prefix}` : ''}`;
  }

  private name(rel: string): string {
    return this.o.prefix ? `${this.o.prefix}/${rel}` : rel;
  }

  /** @internal */
  journalBlob(runId: string) {
    return this.container.getAppendBlobClient(this.name(`runs/${runId}/journal.jsonl`));
  }

  private init(): Promise<unknown> {
    this.ready ??= this.container.createIfNotExists().catch((e: unknown) => {
      this.ready = undefined;
      throw this.ioError('cannot reach the state container', e);
    });
    return this.ready;
  }

  paths(runId: string): RunPaths {
    return runPaths(this.o.cacheDir, runId);
  }

  async listRuns(): Promise<string[]> {
    await this.init();
    const out: string[] = [];
    try {
      for await (const b of this.container.listBlobsFlat({ prefix: this.name('runs/') })) {
        const m = /runs\/(r-[0-9]{8}-[0-9]{6}-[0-9a-f]{4})\/journal\.jsonl$/.exec(b.name);
        if (m) out.push(m[1]!);
      }
    } catch (e) {
      throw this.ioError('cannot list runs', e);
    }
    return out.sort();
  }

  /** Downloads and verifies the shared journal (into the local cache as well). */
  async readJournal(runId: string): Promise<JournalRecord[]> {
    return (await this.download(runId)).records;
  }

  private async download(runId: string): Promise<{ records: JournalRecord[]; length: number }> {
    await this.init();
    const p = this.paths(runId);
    let buf: Buffer;
    try {
      buf = await this.journalBlob(runId).downloadToBuffer();
    } catch (e) {
      if (statusOf(e) === 404) {
        throw new RubiconError('RUN_NOT_FOUND', `no run ${runId} in ${this.location}`, { hint: `list runs with \`rubicon status --state ${this.location}\`` });
      }
      throw this.ioError(`cannot read the journal of run ${runId}`, e);
    }
    mkdirSync(path.dirname(p.journal), { recursive: true });
    writeFileSync(p.journal, buf);
    // Append Block is atomic: the blob never ends in a torn record, so no repair.
    return { records: readJournal(p.journal), length: buf.length };
  }

  async createJournal(runId: string): Promise<Journal> {
    await this.init();
    try {
      await this.journalBlob(runId).create({ conditions: { ifNoneMatch: '*' }, blobHTTPHeaders: { blobContentType: 'application/x-ndjson' } });
    } catch (e) {
      throw this.ioError(`cannot create the journal of run ${runId}`, e);
    }
    const j = Journal.create(this.paths(runId).journal);
    this.attach(j, runId, 0);
    return j;
  }

  /** The shared journal, verified, continued from here (another agent's run included). */
  async openJournal(runId: string): Promise<Journal> {
    const { length } = await this.download(runId);
    const j = Journal.open(this.paths(runId).journal);
    this.attach(j, runId, length);
    return j;
  }

  private attach(j: Journal, runId: string, offset: number): void {
    const r = new Replicator(this, runId, offset);
    this.replicators.set(runId, r);
    j.onAppend((rec) => r.push(rec));
  }

  /** @internal The lock failure every replicator reports at its next record. */
  lostLock(): RubiconError | undefined {
    return this.lost;
  }

  async lock(target: string, runId: string, host: string): Promise<() => Promise<void>> {
    await this.init();
    const blob = this.container.getBlockBlobClient(this.name(`locks/${encodeURIComponent(target)}.lock`));
    try {
      await blob.upload('{}', 2, { conditions: { ifNoneMatch: '*' } });
    } catch (e) {
      if (statusOf(e) !== 409 && statusOf(e) !== 412) throw this.ioError(`cannot create the lock of target ${target}`, e);
    }
    const lease = blob.getBlobLeaseClient();
    try {
      await lease.acquireLease(this.leaseSeconds);
    } catch (e) {
      if (statusOf(e) !== 409) throw this.ioError(`cannot take the lock of target ${target}`, e);
      let held: LockInfo | undefined;
      try {
        held = JSON.parse((await blob.downloadToBuffer()).toString('utf8')) as LockInfo;
      } catch {
        // unreadable: the message says so
      }
      throw new RubiconError(
        'LOCK_HELD',
        held?.runId
          ? `target ${target} is locked in ${this.location} by run ${held.runId} (pid ${held.pid} on ${held.host}, since ${held.at})`
          : `target ${target} is locked in ${this.location}`,
        {
          hint: `wait for that run; if its agent died, its lease ends within ${this.leaseSeconds} s and \`rubicon resume ${held?.runId ?? 'RUN_ID'} --state ${this.location}\` takes over`,
        },
      );
    }
    const info: LockInfo = { pid: process.pid, runId, host, at: new Date().toISOString() };
    const body = JSON.stringify(info);
    try {
      await blob.upload(body, Buffer.byteLength(body), { conditions: { leaseId: lease.leaseId } });
    } catch (e) {
      await lease.releaseLease().catch(() => undefined);
      throw this.ioError(`cannot write the lock of target ${target}`, e);
    }
    this.lost = undefined;
    const timer = setInterval(() => {
      lease.renewLease().catch((e: unknown) => {
        this.lost ??= new RubiconError('LOCK_LOST', `run ${runId} lost its lock on target ${target} in ${this.location} (${statusOf(e) ? `HTTP ${statusOf(e)}` : 'no answer'}): it stops before doing more`, {
          hint: `see \`rubicon status --state ${this.location}\`; resume the run when no other agent drives it`,
        });
      });
    }, Math.floor((this.leaseSeconds * 1000) / 3));
    timer.unref();
    return async () => {
      clearInterval(timer);
      await lease.releaseLease().catch(() => undefined);
    };
  }

  async runbookCopy(runId: string): Promise<string | undefined> {
    const file = this.paths(runId).runbookCopy;
    try {
      const buf = await this.container.getBlobClient(this.name(`runs/${runId}/runbook.yaml`)).downloadToBuffer();
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, buf);
      return file;
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw this.ioError(`cannot read the runbook copy of run ${runId}`, e);
    }
  }

  /** Waits for the journal's records, then uploads the runbook copy and the report folder. */
  async flush(runId: string): Promise<void> {
    await this.replicators.get(runId)?.flush();
    const p = this.paths(runId);
    const uploads: [string, string][] = [];
    if (exists(p.runbookCopy)) uploads.push([p.runbookCopy, `runs/${runId}/runbook.yaml`]);
    for (const f of walk(p.reports)) uploads.push([f, `runs/${runId}/report/${path.relative(p.reports, f).split(path.sep).join('/')}`]);
    for (const [file, rel] of uploads) {
      try {
        const data = readFileSync(file);
        await this.container.getBlockBlobClient(this.name(rel)).upload(data, data.length);
      } catch (e) {
        throw this.ioError(`cannot upload ${rel}`, e);
      }
    }
  }

  /** @internal */
  ioError(what: string, e: unknown): RubiconError {
    if (e instanceof RubiconError) return e;
    const s = statusOf(e);
    return new RubiconError('VAULT_IO', `state ${this.location}: ${what}: ${s ? `HTTP ${s}` : e instanceof Error ? e.message.split('\n')[0] : String(e)}`, {
      cause: e,
      hint: s === 403 || s === 401 ? 'the credential was refused: AZURE_STORAGE_KEY, or an identity with "Storage Blob Data Contributor" on the container' : 'check the network and the storage account',
    });
  }
}

function exists(f: string): boolean {
  try {
    return statSync(f).isFile();
  } catch {
    return false;
  }
}

function walk(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/**
 * The store for `--state azblob://…`: the account key from AZURE_STORAGE_KEY
 * when set (as Pulumi's azblob backend reads it), DefaultAzureCredential
 * otherwise; local files under `<cacheRoot>/azblob/<account>/<container>/<prefix>`.
 */
export async function azblobStateStore(url: string, cacheRoot: string, env: NodeJS.ProcessEnv = process.env): Promise<AzureStateStore> {
  const p = parseAzblobUrl(url, env);
  const key = env.AZURE_STORAGE_KEY;
  const credential: StorageSharedKeyCredential | TokenCredential = key
    ? new StorageSharedKeyCredential(p.account, key)
    : new (await import('@azure/identity')).DefaultAzureCredential();
  const leaseSeconds = env.RUBICON_LEASE_SECONDS ? Number(env.RUBICON_LEASE_SECONDS) : undefined;
  return new AzureStateStore(
    {
      accountUrl: p.accountUrl,
      container: p.container,
      prefix: p.prefix,
      credential,
      cacheDir: path.join(cacheRoot, 'azblob', p.account, p.container, ...p.prefix.split('/').filter(Boolean)),
      ...(leaseSeconds ? { leaseSeconds } : {}),
    },
    url.replace(/\/+$/, ''),
  );
}

export const defaultCacheRoot = (): string => path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'rubicon');
