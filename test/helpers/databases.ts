import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { describe, inject } from 'vitest';
import type { Database } from '../../src/db/database.js';
import { postgresUrl } from './postgres.js';

/** Which database this project's run uses (see test/vitest.config.ts). */
export const dbKind: 'embedded' | 'postgres' = process.env.TEST_DB === 'postgres' ? 'postgres' : 'embedded';

/**
 * `describe` for suites that need the project's database: on the postgres project without a
 * reachable PostgreSQL its tests are reported as skipped, never silently passed.
 */
export const describeDb = describe.skipIf(dbKind === 'postgres' && !inject('postgresAvailable'));

/** `describe` for what only exists with real PostgreSQL (several processes, server-side connections). */
export const describePostgres = describe.skipIf(dbKind !== 'postgres' || !inject('postgresAvailable'));

/** A database of its own for one test app: the environment that points the gateway at it. */
export interface FreshDatabase {
  /** DATA_DIR or DATABASE_URL, as a server or the CLI reads them. */
  env: { DATA_DIR?: string; DATABASE_URL?: string };
  drop(): Promise<void>;
}

/**
 * Embedded: a copy of the migrated template data dir (initdb in WASM takes seconds; a copy does not).
 * PostgreSQL: a new schema in the test database, dropped afterwards.
 */
export async function freshDatabase(): Promise<FreshDatabase> {
  if (dbKind === 'postgres') {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const url = new URL(postgresUrl());
    url.searchParams.set('schema', schema);
    return {
      env: { DATABASE_URL: url.toString() },
      drop: async () => void (await adminQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)),
    };
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-test-'));
  await fs.cp(inject('embeddedTemplateDir'), dir, { recursive: true });
  return {
    env: { DATA_DIR: dir },
    drop: () => fs.rm(dir, { recursive: true, force: true }),
  };
}

/** One statement on the test PostgreSQL outside any gateway (as a SQL console would). */
export async function adminQuery(sql: string, params: unknown[] = [], schema?: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: postgresUrl(), options: schema ? `-c search_path="${schema}"` : undefined });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/**
 * One statement as another program would send it, beside the gateway: on PostgreSQL over a
 * connection of its own (like a SQL console); the embedded database has no other connection to
 * write through, so there it goes through the gateway's.
 */
export async function sqlAsAnotherProgram(database: Database, text: string, params: unknown[] = []): Promise<void> {
  if (database.kind === 'postgres') await adminQuery(text, params, database.schema);
  else await database.sql.query(text, params);
}
