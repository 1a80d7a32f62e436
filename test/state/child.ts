/**
 * A separate process for the shared-state tests: `node child.ts <accountUrl>
 * <container> <prefix> <target> <runId> <mode>` with the key in AZ_TEST_KEY.
 * mode `try`: take the lock, print {"locked":true} or {"error":CODE}, and
 * (when locked) create the run's journal, append two records (run.started,
 * then a note: a journal begins with run.started), flush, print
 * {"ready":true} and wait to be killed.
 */
import { StorageSharedKeyCredential } from '@azure/storage-blob';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import { AzureStateStore } from '../../src/state/azblob.ts';

const [accountUrl, container, prefix, target, runId] = process.argv.slice(2) as [string, string, string, string, string];
const store = new AzureStateStore({
  accountUrl,
  container,
  prefix,
  credential: new StorageSharedKeyCredential('devstoreaccount1', process.env.AZ_TEST_KEY ?? ''),
  cacheDir: mkdtempSync(path.join(os.tmpdir(), 'rubicon-state-child-')),
  leaseSeconds: 15,
});
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
try {
  await store.lock(target, runId, os.hostname());
  say({ locked: true });
  const j = await store.createJournal(runId);
  j.append({
    type: 'run.started',
    runId,
    command: 'rehearse',
    target,
    runbookPath: '/nowhere/runbook.yaml',
    runbookHash: '0'.repeat(64),
    policy: DEFAULT_POLICY,
    vaults: [],
    manualSteps: [],
    overrides: [],
    rubiconVersion: '0.1.0',
    host: os.hostname(),
  });
  j.append({ type: 'note', level: 'info', message: `held by ${process.pid}` });
  await store.flush(runId);
  say({ ready: true });
  setInterval(() => {}, 1 << 30);
} catch (e) {
  say({ error: (e as { code?: string }).code ?? String(e) });
  process.exit(0);
}
