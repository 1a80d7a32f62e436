import { defineConfig } from 'vitest/config';

// Tests use real files, real processes and real servers: generous timeouts,
// and files run in forks so a test that kills a child cannot take vitest with it.
//
// Two projects: `infra` (test/infra/**) runs with Pulumi's mock monitor
// installed by test/setup/pulumi-mocks.ts before any program module loads;
// `unit` is everything else, unchanged. Both inherit the root options.
export default defineConfig({
  test: {
    pool: 'forks',
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
