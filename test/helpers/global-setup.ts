import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openDatabase } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { postgresUrl } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated embedded data dir that each test copies (initdb in WASM takes seconds). */
    embeddedTemplateDir: string;
    /** Whether PostgreSQL at TEST_DATABASE_URL answered. */
    postgresAvailable: boolean;
  }
}

export default async function setup(project: TestProject) {
  if (project.config.env?.TEST_DB === 'postgres') {
    const available = await postgresAnswers();
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

async function postgresAnswers(): Promise<boolean> {
  const client = new pg.Client({ connectionString: postgresUrl(), connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}
