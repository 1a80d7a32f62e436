import { defineConfig } from 'vitest/config';

// Tests use real files, real processes and real servers: generous timeouts,
// and files run in forks so a test that kills a child cannot take vitest with it.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
