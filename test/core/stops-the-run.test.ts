import { describe, expect, it } from 'vitest';
import { RubiconError, stopsTheRun } from '../../src/core/errors.ts';

describe('stopsTheRun: faults of the environment stop a run instead of being counted', () => {
  it('machine, key, tool and password faults and out of space stop the run, also when wrapped', () => {
    for (const code of ['MACHINE_UNREACHABLE', 'MACHINE_HOST_KEY', 'MACHINE_AUTH', 'TOOL_MISSING', 'VAULT_PASSWORD'] as const) {
      const e = new RubiconError(code, `${code} on target`, { hint: 'the fix' });
      expect(stopsTheRun(e)).toBe(e);
      expect(stopsTheRun(new RubiconError('CAPTURE_FAILED', 'wrapped', { cause: e }))).toBe(e);
    }
    expect(stopsTheRun(new Error('write: No space left on device'))?.code).toBe('NO_SPACE');
  });

  it('a failure of the method itself is not one: it is recorded and counted', () => {
    expect(stopsTheRun(new RubiconError('CAPTURE_FAILED', 'restic said 3 files, the manifest 4'))).toBeUndefined();
    expect(stopsTheRun(new RubiconError('MACHINE_FAILED', 'sqlite3 exited 1'))).toBeUndefined();
    expect(stopsTheRun(new RubiconError('MACHINE_TIMEOUT', 'did not answer'))).toBeUndefined();
    expect(stopsTheRun(new Error('boom'))).toBeUndefined();
    expect(stopsTheRun(undefined)).toBeUndefined();
  });
});
