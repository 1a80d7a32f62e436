import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunbook } from '../../src/runbook/load.ts';
import { sandboxRunbook } from '../../src/sandbox/estate.ts';
import { acquireTargetLock, holderFor, machineLockDir, processStartTime, targetIdentity } from '../../src/run/target-lock.ts';
import { createHash } from 'node:crypto';

/**
 * Issue 9: the lock was per state directory: two state directories let two
 * upgrades of one target run at once, and two estates named alike in one
 * state directory were falsely locked. It is keyed by the target's identity
 * now, and a stale lock whose pid was reused is taken over.
 */
let dir: string;
const env = () => ({ RUBICON_LOCK_DIR: path.join(dir, 'locks') });
const rbAt = (estate: string) => parseRunbook(sandboxRunbook('truncate', new Date()), path.join(estate, 'runbook.yaml'));

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rubicon-lock-'));
});
afterAll(async () => {
  const { rm } = await import('node:fs/promises');
  await rm(dir, { recursive: true, force: true });
});

describe('the target lock', () => {
  it('one target: a second run is LOCK_HELD whatever its state directory; another estate of the same name is not', () => {
    const a = rbAt(path.join(dir, 'estate-a'));
    const b = rbAt(path.join(dir, 'estate-b'));
    expect(a.target.name).toBe(b.target.name);
    const release = acquireTargetLock(a, 'r-20261201-000000-0001', 'h', env());
    expect(() => acquireTargetLock(rbAt(path.join(dir, 'estate-a')), 'r-20261201-000000-0002', 'h', env())).toThrow(/locked by run r-20261201-000000-0001/);
    const other = acquireTargetLock(b, 'r-20261201-000000-0003', 'h', env());
    other();
    release();
    acquireTargetLock(a, 'r-20261201-000000-0004', 'h', env())();
  });

  it('a stale lock whose pid was reused by another process is taken over; a live one is not', async () => {
    const a = rbAt(path.join(dir, 'estate-c'));
    const file = path.join(machineLockDir(env()), `${createHash('sha256').update(targetIdentity(a)).digest('hex').slice(0, 32)}.lock`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.dirname(file), { recursive: true });
    // pid 1 is alive, but it is not the process that took the lock (another start time).
    await writeFile(file, JSON.stringify({ ...holderFor(a, 'r-20261201-000000-0005', 'h'), pid: 1, startTime: '999999999' }));
    const release = acquireTargetLock(a, 'r-20261201-000000-0006', 'h', env());
    release();
    // A live holder (this very process, with its real start time) is respected.
    await writeFile(file, JSON.stringify({ ...holderFor(a, 'r-20261201-000000-0007', 'h'), startTime: processStartTime(process.pid) }));
    expect(() => acquireTargetLock(a, 'r-20261201-000000-0008', 'h', env())).toThrow(/LOCK|locked by run r-20261201-000000-0007/);
    // Held from another host: never taken over automatically.
    await writeFile(file, JSON.stringify({ ...holderFor(a, 'r-20261201-000000-0009', 'elsewhere'), pid: 999999 }));
    expect(() => acquireTargetLock(a, 'r-20261201-000000-0010', 'h', env())).toThrow(/on elsewhere/);
  });
});
