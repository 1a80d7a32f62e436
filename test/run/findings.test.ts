import { describe, expect, it } from 'vitest';
import type { RunState } from '../../src/core/state.ts';
import { asSentence, damagedSources } from '../../src/run/findings.ts';

const db = { id: 'database:sqlite:ehr', kind: 'database', name: 'ehr', location: 'mssql/data/ehr.db', declared: false, discovered: true, facts: {}, why: [], methods: [] };
const state = (over: Partial<RunState>): RunState => ({ items: [db], artifacts: [], captureFailures: [], proofs: [], ...over }) as unknown as RunState;
const fail = (method: string, message: string) => ({ itemId: db.id, method, artifactId: `a.${method}`, code: 'CAPTURE_FAILED', message });

describe('findings: a damaged production database, said plainly', () => {
  it('every capture failed on a damaged read: the source is damaged, nothing can be proven, fix the source', () => {
    const f = damagedSources(state({ captureFailures: [fail('sqlite-backup-api', 'cannot fingerprint database ehr at mssql/data/ehr.db: database disk image is malformed'), fail('sqlite-sql-dump', 'database disk image is malformed')] }));
    expect(f).toEqual([
      'The production database ehr (mssql/data/ehr.db) is itself damaged: every capture of it (sqlite-backup-api, sqlite-sql-dump) failed reading it (database disk image is malformed). Nothing can be proven. Fix the source before upgrading: check it with its engine (PRAGMA integrity_check for SQLite) and restore it from a good backup.',
    ]);
  });

  it('a capture that failed for another reason (a full disk) is not called damage', () => {
    expect(damagedSources(state({ captureFailures: [fail('sqlite-backup-api', 'ENOSPC: no space left on device')] }))).toEqual([]);
  });

  it('every copy Rubicon made failed its integrity check: damaged too; one passing copy: not', () => {
    const a = (m: string) => ({ id: `a.${m}`, itemId: db.id, method: m, origin: 'rubicon' });
    const p = (m: string, status: 'passed' | 'failed') => ({ id: `p.${m}`, artifactId: `a.${m}`, outcome: status, checks: [{ name: 'integrity', status, detail: '' }] });
    expect(damagedSources(state({ artifacts: [a('x'), a('y')] as never, proofs: [p('x', 'failed'), p('y', 'failed')] as never }))[0]).toMatch(/is itself damaged: the integrity check failed on every copy Rubicon made of it \(x, y\)/);
    expect(damagedSources(state({ artifacts: [a('x'), a('y')] as never, proofs: [p('x', 'failed'), p('y', 'passed')] as never }))).toEqual([]);
  });

  it('asSentence: each refusal a sentence of its own', () => {
    expect(asSentence('database ehr has 0 independent proven methods; the policy requires 2')).toBe('Database ehr has 0 independent proven methods; the policy requires 2.');
    expect(asSentence('done.')).toBe('Done.');
    expect(asSentence('(see the report)')).toBe('(see the report).');
  });
});
