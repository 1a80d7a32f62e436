/**
 * The manual crossing's instructions name where the run is kept the way
 * the commands that continue it must be told: `--state azblob://…` for a
 * shared store, `--state-dir DIR` for the local folder.
 */
import { describe, expect, it } from 'vitest';
import type { Machine } from '../../src/machines/machine.ts';
import { ManualDriver } from '../../src/infra/manual.ts';
import type { Runbook } from '../../src/runbook/load.ts';

const runbook = {
  target: { name: 'ehr-01', transport: { kind: 'local' } },
  infra: { kind: 'manual', currentImage: 'old', rebuilt: { osRelease: 'Debian 13', knownHosts: '/k' } },
} as unknown as Runbook;
const driver = new ManualDriver({ runbook, runId: 'r-20260101-000000-abcd', target: {} as Machine, provingGround: {} as Machine });
const permit = { id: 'p1', image: 'Debian 13', expiresAt: '2026-01-01T01:00:00Z' } as Parameters<ManualDriver['instructions']>[0];

describe('manual crossing instructions', () => {
  it.each([['--state azblob://contoso/state/clinic-a'], ['--state-dir /var/lib/rubicon']])('%s', (where) => {
    const text = driver.instructions(permit, 'r-20260101-000000-abcd', where);
    expect(text).toContain(`rubicon confirm r-20260101-000000-abcd --crossed ${where} `);
    expect(text).toContain(`rubicon resume r-20260101-000000-abcd --yes ${where} `);
  });
});
