import { describe, expect, it } from 'vitest';
import { expiryVerdicts, findExpired, parseTtl, reap, ttlTags, type ProvingGroundRecord, type ReapPort } from '../../src/infra/azure/reap.ts';

const NOW = new Date('2026-03-01T10:00:00Z');

describe('findExpired', () => {
  const pgs: ProvingGroundRecord[] = [
    { name: 'young', ttlTag: '8h', createdAt: '2026-03-01T05:00:00Z' },
    { name: 'exactly-due', ttlTag: '8h', createdAt: '2026-03-01T02:00:00Z' },
    { name: 'old', ttlTag: '2d', createdAt: '2026-02-26T10:00:00Z' },
    { name: 'bad-ttl', ttlTag: 'forever', createdAt: '2026-03-01T09:00:00Z' },
    { name: 'bad-created', ttlTag: '8h', createdAt: 'yesterday' },
    { name: 'minutes', ttlTag: '90m', createdAt: '2026-03-01T08:31:00Z' },
  ];

  it('returns the expired ones and the unreadable ones, in order', () => {
    expect(findExpired(pgs, NOW)).toEqual(['exactly-due', 'old', 'bad-ttl', 'bad-created']);
  });

  it('says why', () => {
    const v = expiryVerdicts(pgs, NOW);
    expect(v[0]).toEqual({ name: 'young', expired: false, reason: 'lives until 2026-03-01T13:00:00.000Z' });
    expect(v[3]!.reason).toContain('"forever" is not a duration');
  });

  it('parses TTLs and writes TTL tags', () => {
    expect([parseTtl('8h'), parseTtl('90m'), parseTtl('1w'), parseTtl('0h'), parseTtl('8 hours')]).toEqual([28_800_000, 5_400_000, 604_800_000, undefined, undefined]);
    expect(ttlTags({ runId: 'r', createdAt: '2026-03-01T08:00:00Z', ttlHours: 8 })).toEqual({
      'rubicon-ttl': '8h',
      'rubicon-run': 'r',
      'rubicon-created-at': '2026-03-01T08:00:00Z',
      'rubicon-expires-at': '2026-03-01T16:00:00.000Z',
    });
  });
});

describe('reap', () => {
  it('destroys each expired proving ground, carries on past a failure and reports it', async () => {
    const destroyed: string[] = [];
    const port: ReapPort = {
      listProvingGrounds: async () => [
        { name: 'a', ttlTag: '1h', createdAt: '2026-03-01T00:00:00Z' },
        { name: 'b', ttlTag: '1h', createdAt: '2026-03-01T00:00:00Z' },
        { name: 'c', ttlTag: '24h', createdAt: '2026-03-01T00:00:00Z' },
      ],
      destroyProvingGround: async (name) => {
        if (name === 'a') throw new Error('pulumi up failed');
        destroyed.push(name);
      },
    };
    const r = await reap(port, NOW);
    expect(destroyed).toEqual(['b']);
    expect(r.destroyed).toEqual(['b']);
    expect(r.failed).toEqual([{ name: 'a', message: 'pulumi up failed' }]);
    expect(r.kept.map((k) => k.name)).toEqual(['c']);
  });
});
