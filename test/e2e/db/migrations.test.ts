import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { migrate, MIGRATIONS_DIR, readMigrations } from '../../../src/db/migrate.js';
import { CreateJobDocument, JobDocument } from '../../../src/graphql/operations.generated.js';
import { adminQuery, describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { ensureTestDatabase, postgresUrl } from '../../helpers/postgres.js';
import { startTestApp } from '../../helpers/test-app.js';

describeDb('migrations', () => {
  it('are applied once, recorded as Prisma Migrate records them, and a restart applies nothing', async () => {
    const database = await freshDatabase();
    try {
      const first = await startTestApp({ database });
      const files = await readMigrations();
      expect(files.length).toBeGreaterThan(0);
      const records = await first.app.database.sql.query<{
        migration_name: string;
        checksum: string;
        finished_at: Date | null;
        applied_steps_count: number;
        rolled_back_at: Date | null;
      }>('SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name');
      expect(records.map((r) => [r.migration_name, r.checksum])).toEqual(files.map((f) => [f.name, f.checksum]));
      for (const record of records) {
        expect(record.finished_at).not.toBeNull();
        expect(record.rolled_back_at).toBeNull();
        expect(record.applied_steps_count).toBe(1);
      }
      // The checksum is sha256 of the file's bytes, which is what `prisma migrate status` compares.
      const { createHash } = await import('node:crypto');
      const bytes = await fs.readFile(path.join(MIGRATIONS_DIR, files[0]!.name, 'migration.sql'));
      expect(records[0]!.checksum).toBe(createHash('sha256').update(bytes).digest('hex'));

      expect(await migrate(first.app.database)).toEqual({ applied: [], modified: [] });
      await first.close();

      const second = await startTestApp({ database });
      const again = await second.app.database.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM "_prisma_migrations"');
      expect(again[0]!.n).toBe(files.length);
      await second.close();
    } finally {
      await database.drop();
    }
  });

  it('keep data across a restart of the gateway', async () => {
    const database = await freshDatabase();
    try {
      const first = await startTestApp({ database });
      const key = await first.createKey('persist');
      const { createJob } = await graphqlOk(
        first.url,
        CreateJobDocument,
        { input: { type: 'collect', displayTitle: 'Survives', steps: [{ id: 's', name: 'Step' }], metadata: { n: 1 } } },
        key,
      );
      await first.close();

      const second = await startTestApp({ database });
      const { job } = await graphqlOk(second.url, JobDocument, { id: createJob.id }, key);
      // Every field as it was; the cursor may read larger now that nothing older can still commit.
      const { changeCursor, ...rest } = job!;
      const { changeCursor: before, ...created } = createJob;
      expect(rest).toEqual(created);
      expect(BigInt(changeCursor)).toBeGreaterThanOrEqual(BigInt(before));
      await second.close();
    } finally {
      await database.drop();
    }
  });
});

describePostgres('the test database', () => {
  it('is created by the suite when the server answers but the database is missing', async () => {
    const url = new URL(postgresUrl());
    const name = `jobs_gateway_created_${Date.now()}`;
    url.pathname = `/${name}`;
    try {
      expect(await ensureTestDatabase(url.toString())).toBe('created');
      expect(await ensureTestDatabase(url.toString())).toBe('ready');
      const unreachable = new URL(url);
      unreachable.port = '1';
      expect(await ensureTestDatabase(unreachable.toString())).toBe('unreachable');
    } finally {
      await adminQuery(`DROP DATABASE IF EXISTS "${name}"`);
    }
  });
});
