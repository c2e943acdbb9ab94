import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    allowOnly: false,
    // Unhandled rejections fail the run (vitest's default); stated here so nobody turns it off.
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
