import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { packagePath } from '../package-path.js';
import type { Logger } from '../logger.js';
import { type Database, type DatabaseOptions, openDatabase } from './database.js';

/** The package's prisma/migrations, from the source or the build alike. */
export const MIGRATIONS_DIR = packagePath(path.join('prisma', 'migrations'));

/** The same key `prisma migrate deploy` locks, so our migrator and Prisma's never run at once. */
const PRISMA_MIGRATE_LOCK_KEY = 72707369;

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  /** Migrations recorded as applied whose file has changed since: worth a warning, never a silent rewrite. */
  modified: string[];
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const bytes = await fs.readFile(path.join(dir, name, 'migration.sql'));
      return { name, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') };
    }),
  );
}

/**
 * Applies pending migrations and records them in `_prisma_migrations` exactly as Prisma Migrate does,
 * so that `prisma migrate status` on a machine with Prisma's engine agrees with us. Written by hand
 * because Prisma's migrate commands need a schema-engine binary that cannot be downloaded on our
 * machines. Idempotent; concurrent starts serialize on Prisma's own advisory lock.
 */
export async function migrate(db: Database, dir = MIGRATIONS_DIR): Promise<MigrationResult> {
  const migrations = await readMigrations(dir);
  if (db.kind === 'postgres') await db.sql.exec(`CREATE SCHEMA IF NOT EXISTS "${db.schema}"`);
  // Unbounded: a migration of a large table may take far longer than a request's query timeout.
  return db.sql.transaction(
    async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
      await tx.exec(`CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0
    )`);
      const rows = await tx.query<{ migration_name: string; checksum: string }>(
        'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL AND finished_at IS NOT NULL',
      );
      const done = new Map(rows.map((r) => [r.migration_name, r.checksum]));
      const result: MigrationResult = { applied: [], modified: [] };
      for (const migration of migrations) {
        const recorded = done.get(migration.name);
        if (recorded !== undefined) {
          if (recorded !== migration.checksum) result.modified.push(migration.name);
          continue;
        }
        const startedAt = new Date();
        await tx.exec(migration.sql);
        await tx.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
         VALUES ($1, $2, $3, $4, now(), 1)`,
          [randomUUID(), migration.checksum, migration.name, startedAt],
        );
        result.applied.push(migration.name);
      }
      return result;
    },
    { unbounded: true },
  );
}

/** Opens the database and applies the migrations it lacks; closes it again if they fail. */
export async function openMigratedDatabase(options: DatabaseOptions, logger: Logger): Promise<Database> {
  const database = await openDatabase(options);
  try {
    const { applied, modified } = await migrate(database);
    if (applied.length > 0) logger.info({ applied }, 'applied database migrations');
    if (modified.length > 0) logger.warn({ modified }, 'migrations changed after they were applied');
    return database;
  } catch (error) {
    await database.close();
    throw error;
  }
}
