import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * `npm test` runs every test file twice: against the embedded database (PGlite) and against real
 * PostgreSQL at TEST_DATABASE_URL. Without a reachable PostgreSQL the second project's tests are
 * reported as skipped (REQUIRE_POSTGRES=1, set by .ci/run, turns that into a failure).
 */
export default defineConfig({
  root,
  resolve: {
    // graphql ships both ESM (.mjs) and CJS builds; yoga and Pothos load the CJS one under Node, so
    // the tests must too, or GraphQLError instances from our code fail yoga's instanceof checks
    // and get masked.
    alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/bench/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: one worker per core.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: { name: 'embedded', env: { TEST_DB: 'embedded' }, globalSetup: ['test/helpers/global-setup.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'postgres',
          env: { TEST_DB: 'postgres' },
          globalSetup: ['test/helpers/global-setup.ts'],
          // test/unit touches no database, and the browser's view does not depend on which
          // database is underneath: once (in "embedded") is enough.
          exclude: ['test/bench/**', 'node_modules/**', 'test/unit/**', 'test/e2e/dashboard/**', 'test/e2e/bench-smoke.test.ts'],
        },
      },
    ],
  },
});
