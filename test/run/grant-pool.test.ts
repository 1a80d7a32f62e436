import { describe, expect, it } from 'vitest';
import { RubiconError } from '../../src/core/errors.ts';
import type { JournalEvent, JournalRecord } from '../../src/core/events.ts';
import { reduce, type RunState } from '../../src/core/state.ts';
import type { Machine } from '../../src/machines/machine.ts';
import { GrantPool } from '../../src/run/grant-pool.ts';
import type { Grant, GrantOptions, ToolVault } from '../../src/vaults/vault.ts';

/**
 * The grant pool against vaults that record what they are asked (the real
 * vaults' grants are tested on real hosts in test/vaults/remote.test.ts):
 * one grant per (vault, machine, mode) per phase, journaled before its key
 * exists, revoked at release, and a killed process's grants revoked (or
 * their expiry noted) by the next process of the run.
 */
const HOUR = 3600_000;

function machine(name: string): Machine {
  return { name } as unknown as Machine;
}

interface FakeVault {
  vault: ToolVault;
  issued: Grant[];
  revoked: { id: string; on: string | undefined }[];
  failRevoke: boolean;
  failGrant: boolean;
}

let n = 0;

function fakeVault(name: string, log: string[], now: () => number): FakeVault {
  const f: FakeVault = { vault: undefined as unknown as ToolVault, issued: [], revoked: [], failRevoke: false, failGrant: false };
  f.vault = {
    info: { name },
    async grant(to: Machine, mode: 'read' | 'write', ttlMs: number, o: GrantOptions = {}): Promise<Grant> {
      const id = `run.${name}.${++n}`;
      const g: Grant = { id, vault: name, machine: to.name, mode, expiresAt: new Date(now() + ttlMs).toISOString(), dir: `/w/grants/${id}`, sshCommand: 'ssh', env: {}, location: 'x' };
      o.beforeKey?.({ id, dir: g.dir, expiresAt: g.expiresAt });
      if (f.failGrant) throw new RubiconError('GRANT_FAILED', 'authorized_keys not writable');
      log.push(`key ${id}`);
      f.issued.push(g);
      return g;
    },
    async revoke(g: Grant, on?: Machine): Promise<void> {
      if (f.failRevoke) throw new RubiconError('MACHINE_UNREACHABLE', 'vault host down');
      f.revoked.push({ id: g.id, on: on?.name });
      log.push(`revoke ${g.id}`);
    },
  } as unknown as ToolVault;
  return f;
}

function journal(log: string[]) {
  let seq = 1;
  let state: RunState = reduce(undefined, {
    seq: 1,
    at: new Date(0).toISOString(),
    prev: '',
    hash: 'h1',
    event: { type: 'run.started', runId: 'run', command: 'upgrade', target: 't', runbookPath: 'r', runbookHash: 'x', policy: {} as never, vaults: [], manualSteps: [], overrides: [], rubiconVersion: '0', host: 'h' },
  } as JournalRecord);
  const events: JournalEvent[] = [];
  return {
    events,
    state: () => state,
    record: (event: JournalEvent) => {
      events.push(event);
      log.push(event.type);
      state = reduce(state, { seq: ++seq, at: new Date(0).toISOString(), prev: '', hash: `h${seq}`, event });
    },
  };
}

function setup(o: { state?: () => RunState; record?: (e: JournalEvent) => void } = {}) {
  const log: string[] = [];
  let clock = Date.parse('2026-12-01T10:00:00Z');
  const j = journal(log);
  const nas = fakeVault('nas', log, () => clock);
  const offsite = fakeVault('offsite', log, () => clock);
  const target = machine('ehr-server');
  const pg = machine('proving-ground');
  const pool = new GrantPool({
    record: o.record ?? j.record,
    state: o.state ?? j.state,
    now: () => new Date(clock),
    vaults: () => [nas.vault, offsite.vault],
    machineNamed: (name) => ({ 'ehr-server': target, 'proving-ground': pg })[name],
  });
  return { log, j, nas, offsite, target, pg, pool, advance: (ms: number) => (clock += ms) };
}

describe('grant pool', () => {
  it('gives one grant per (vault, machine, mode), journaled before its key exists', async () => {
    const t = setup();
    const a = await t.pool.acquire(t.nas.vault, t.target, 'write');
    expect(await t.pool.acquire(t.nas.vault, t.target, 'write')).toBe(a);
    const b = await t.pool.acquire(t.offsite.vault, t.target, 'write');
    const c = await t.pool.acquire(t.nas.vault, t.pg, 'read');
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
    expect(t.nas.issued).toHaveLength(2);
    expect(t.log.slice(0, 2)).toEqual(['grant.issued', `key ${a.id}`]);
    expect(Object.keys(t.j.state().grants ?? {})).toEqual([a.id, b.id, c.id]);
  });

  it('renews a grant with less than five of its six hours left; release revokes every one of the phase, the renewed one too', async () => {
    const t = setup();
    const a = await t.pool.acquire(t.nas.vault, t.target, 'write');
    t.advance(HOUR + 1000);
    const b = await t.pool.acquire(t.nas.vault, t.target, 'write');
    expect(b.id).not.toBe(a.id);
    t.pool.release();
    await t.pool.close();
    expect(t.nas.revoked.map((r) => r.id).sort()).toEqual([a.id, b.id].sort());
    expect(t.nas.revoked.every((r) => r.on === 'ehr-server')).toBe(true);
    const s = t.j.state().grants!;
    expect(s[a.id]?.revoked && s[b.id]?.revoked).toBe(true);
    // After the phase the pool issues afresh.
    const c = await t.pool.acquire(t.nas.vault, t.target, 'write');
    expect([a.id, b.id]).not.toContain(c.id);
  });

  it('a revoke that fails is noted with the time the key expires by itself, and the grant is not handed out again', async () => {
    const t = setup();
    const a = await t.pool.acquire(t.offsite.vault, t.pg, 'read');
    t.offsite.failRevoke = true;
    t.pool.release();
    await t.pool.close();
    const note = t.j.events.find((e) => e.type === 'note') as { message: string } | undefined;
    expect(note?.message).toContain(a.id);
    expect(note?.message).toContain(`expires by itself at ${a.expiresAt}`);
    expect(t.j.state().grants![a.id]?.revoked).toBeUndefined();
    t.offsite.failRevoke = false;
    expect((await t.pool.acquire(t.offsite.vault, t.pg, 'read')).id).not.toBe(a.id);
  });

  it('a grant whose key could not be added is journaled as gone', async () => {
    const t = setup();
    t.nas.failGrant = true;
    await expect(t.pool.acquire(t.nas.vault, t.target, 'write')).rejects.toMatchObject({ code: 'GRANT_FAILED' });
    const [g] = Object.values(t.j.state().grants ?? {});
    expect(g?.revoked).toBe(true);
  });

  it('the next process of a run revokes what a killed one left, or notes when its key expires', async () => {
    const first = setup();
    const left = await first.pool.acquire(first.nas.vault, first.target, 'write');
    const stuck = await first.pool.acquire(first.offsite.vault, first.pg, 'read');
    // kill -9: no release, no close. A new process reads the same journal.
    const events = first.j.events.slice();
    const second = setup();
    for (const e of events) second.j.record(e);
    second.offsite.failRevoke = true;
    await second.pool.acquire(second.nas.vault, second.pg, 'read');
    expect(second.nas.revoked).toEqual([{ id: left.id, on: 'ehr-server' }]);
    const s = second.j.state().grants!;
    expect(s[left.id]?.revoked).toBe(true);
    expect(s[stuck.id]?.revoked).toBeUndefined();
    const note = second.j.events.filter((e) => e.type === 'note').map((e) => (e as { message: string }).message);
    expect(note.join('\n')).toContain(`grant ${stuck.id} of vault offsite for proving-ground, left by an earlier process of this run, could not be revoked (MACHINE_UNREACHABLE); its key expires by itself at ${stuck.expiresAt}`);
    // Leftovers are looked at once per process.
    await second.pool.acquire(second.nas.vault, second.target, 'write');
    expect(second.nas.revoked).toHaveLength(1);
  });

  it('a SQL Server credential grant left by a killed process is not revoked through a tool vault: the note says which credential to drop and when its SAS lapses', async () => {
    const t = setup();
    const id = 'mssql-url-0123456789abcdef';
    t.j.record({ type: 'grant.issued', grant: { id, vault: 'sqlbak', machine: 'SQL Server SQL01', mode: 'write', expiresAt: '2026-12-01T16:00:00.000Z', dir: 'https://acct.blob.core.windows.net/sql', holder: 'sql-server-credential' } });
    await t.pool.acquire(t.nas.vault, t.target, 'write');
    expect(t.nas.revoked).toEqual([]);
    expect(t.j.state().grants![id]?.revoked).toBeUndefined();
    const notes = t.j.events.filter((e) => e.type === 'note').map((e) => (e as { message: string }).message);
    expect(notes).toEqual([`grant ${id} of vault sqlbak (a SAS held by SQL Server SQL01 as credential https://acct.blob.core.windows.net/sql), left by an earlier process of this run: drop that credential by hand if it is still there (DROP CREDENTIAL); its SAS lapses by itself at 2026-12-01T16:00:00.000Z`]);
  });
});
