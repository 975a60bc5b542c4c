import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/test/**/*.test.ts'],
    globalSetup: ['runtime/test/global-setup.ts'],
    // create-filter/templates hold the tests a new filter package starts with (run by create-filter's own test).
    exclude: ['**/node_modules/**', '**/dist/**', 'create-filter/templates/**', '**/.scratch/**'],
    // Builds of real Wasm components take seconds each.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
