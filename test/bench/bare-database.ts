import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { MIGRATIONS_DIR } from '../../src/db/migrate.js';

/** The bare servers' database: every migration applied, one workspace, nothing of the gateway. */
export interface BareDatabase {
  query: (text: string, params?: unknown[]) => Promise<{ rows: unknown[] }>;
  /** The id of the one workspace it holds. */
  workspaceId: string;
  close: () => Promise<void>;
}

/**
 * The same Job table as the gateway's (same migrations, same indexes), for the bare ceiling servers:
 * PostgreSQL (BARE_DATABASE_URL, in a schema BARE_SCHEMA of its own, dropped at close) through pg's
 * pool, or PGlite, in memory or in a data directory of its own. `setup` runs after the migrations.
 */
export async function openBareDatabase(options: { setup?: string; pgliteInDataDir?: boolean; poolSize?: number } = {}): Promise<BareDatabase> {
  const migrations = (await fs.readdir(MIGRATIONS_DIR)).filter((name) => /^\d/.test(name)).sort();
  let setup = '';
  for (const name of migrations) setup += `${await fs.readFile(path.join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8')};\n`;
  setup += `${options.setup ?? ''}; INSERT INTO "Workspace"(id, slug) VALUES (gen_random_uuid(), 'bare');`;

  let query: BareDatabase['query'];
  let close: () => Promise<void>;
  const url = process.env.BARE_DATABASE_URL;
  if (url) {
    const schema = process.env.BARE_SCHEMA!;
    const admin = async (sql: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(sql);
      await client.end();
    };
    await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE; CREATE SCHEMA "${schema}"; SET search_path = "${schema}"; ${setup}`);
    const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, options: `-c search_path="${schema}"` });
    query = (text, params) => pool.query(text, params);
    close = async () => {
      await pool.end();
      await admin(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    };
  } else {
    const dir = options.pgliteInDataDir ? await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-bare-')) : undefined;
    const db = await PGlite.create(dir);
    await db.exec(setup);
    query = (text, params) => db.query(text, params);
    close = async () => {
      await db.close();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    };
  }
  const { rows } = await query(`SELECT id FROM "Workspace"`);
  return { query, workspaceId: (rows[0] as { id: string }).id, close };
}
