import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SEED, SEED, assertProperty, seedFrom, seeded } from './seed.ts';

describe('the property-test seed', () => {
  it('comes from RUBICON_SEED, with a fixed default', () => {
    expect(seedFrom({})).toBe(DEFAULT_SEED);
    expect(seedFrom({ RUBICON_SEED: '' })).toBe(DEFAULT_SEED);
    expect(seedFrom({ RUBICON_SEED: '42' })).toBe(42);
    expect(seedFrom({ RUBICON_SEED: '-7' })).toBe(-7);
    expect(() => seedFrom({ RUBICON_SEED: 'soon' })).toThrow(/RUBICON_SEED must be an integer/);
    expect(seeded({ numRuns: 3, seed: 1 })).toEqual({ numRuns: 3, seed: SEED });
  });

  it('makes a property run the same cases every time', () => {
    const seen: number[][] = [[], []];
    for (const run of seen) assertProperty(fc.property(fc.integer(), (n) => void run.push(n)), { numRuns: 20 });
    expect(seen[0]).toEqual(seen[1]);
  });

  it('a failure names the seed that replays it (sync and async)', async () => {
    expect(() => assertProperty(fc.property(fc.nat(), (n) => n < 0))).toThrow(new RegExp(`replay with RUBICON_SEED=${SEED}`));
    await expect(assertProperty(fc.asyncProperty(fc.nat(), async (n) => n < 0))).rejects.toThrow(/replay with RUBICON_SEED=/);
  });
});
