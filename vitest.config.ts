import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

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
    maxWorkers: Math.max(2, availableParallelism()),
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
