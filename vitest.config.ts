import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

const keyDir = process.env.RUBICON_KEY_DIR ?? path.join(mkdtempSync(path.join(os.tmpdir(), 'rubicon-test-keys-')), 'keys');
const lockDir = process.env.RUBICON_LOCK_DIR ?? mkdtempSync(path.join(os.tmpdir(), 'rubicon-test-locks-'));

// Tests use real files, real processes and real servers: generous timeouts,
// and files run in forks so a test that kills a child cannot take vitest with it.
//
// Two projects: `infra` (test/infra/**) runs with Pulumi's mock monitor
// installed by test/setup/pulumi-mocks.ts before any program module loads;
// `unit` is everything else, unchanged. Both inherit the root options.
//
// Files run in parallel, one fork per core: vitest's default (cores - 1) is
// a single fork on a 2-core machine, which ran the whole suite one file
// after another. Most test time is spent waiting on fsync, child processes
// and servers, so the cores stay busy; the slow suites are split into
// several files (test/e2e/crash-*.test.ts) so they spread over the forks.
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: Math.max(2, os.availableParallelism()),
    // Runs sign their journals with this user's key unless the runbook names one (src/trust/keyring.ts):
    // the tests keep theirs in a temp folder of this test run, never in ~/.config.
    // Every node the tests start (the CLI, the proving process, the vendor job) reuses the type-stripped,
    // compiled modules of the ones before: Node's module compile cache halves their start-up CPU.
    // The machine-wide target locks (src/run/target-lock.ts) of this test run's runs are in a folder of its own: two
    // test runs on one machine (a CI run beside an engineer's) do not lock each other's targets of the same name.
    env: { RUBICON_KEY_DIR: keyDir, RUBICON_LOCK_DIR: lockDir, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? path.join(os.tmpdir(), 'rubicon-node-compile-cache') },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
          exclude: ['test/infra/**', '**/node_modules/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'infra',
          include: ['test/infra/**/*.test.ts'],
          setupFiles: ['test/setup/pulumi-mocks.ts'],
        },
      },
    ],
  },
});
