import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/test/**/*.test.ts'],
    globalSetup: ['runtime/test/global-setup.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    // Builds of real Wasm components take seconds each.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
