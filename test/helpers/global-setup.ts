import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { repoRoot } from './paths.js';
import { ensureTestDatabase, postgresUrl } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated embedded data dir that each test copies (initdb in WASM takes seconds). */
    embeddedTemplateDir: string;
    /** Whether PostgreSQL at TEST_DATABASE_URL answered. */
    postgresAvailable: boolean;
  }
}

export default async function setup(project: TestProject) {
  // Process tests run the build (dist/), as `npm start` does: build the sources as they are now.
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: repoRoot, stdio: 'inherit' });
  if (project.config.env?.TEST_DB === 'postgres') {
    const state = await ensureTestDatabase();
    const available = state !== 'unreachable';
    if (state === 'created') console.warn(`\n--- Created the database of ${postgresUrl()} for the "postgres" project.\n`);
    if (!available) {
      const message = `PostgreSQL at ${postgresUrl()} is not reachable: the "postgres" project's tests are SKIPPED.`;
      if (process.env.REQUIRE_POSTGRES === '1') throw new Error(`${message} (REQUIRE_POSTGRES=1)`);
      console.warn(`\n!!! ${message}\n`);
    }
    project.provide('postgresAvailable', available);
    project.provide('embeddedTemplateDir', '');
    return;
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-template-'));
  const db = await openDatabase({ dataDir: dir });
  await migrate(db);
  await db.close();
  project.provide('embeddedTemplateDir', dir);
  project.provide('postgresAvailable', false);
  return async () => {
    await fs.rm(dir, { recursive: true, force: true });
  };
}
