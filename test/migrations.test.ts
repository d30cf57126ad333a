import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { migrate, MIGRATIONS_DIR, readMigrations } from '../src/db/migrate.js';
import { CreateJobDocument, JobDocument } from '../src/graphql/operations.generated.js';
import { adminQuery, describeDb, describePostgres, freshDatabase } from './helpers/databases.js';
import { graphqlOk } from './helpers/http.js';
import { ensureTestDatabase, postgresUrl } from './helpers/postgres.js';
import { startTestApp } from './helpers/test-app.js';

describeDb('migrations', () => {
  it('are applied once, recorded as Prisma Migrate records them, and a restart applies nothing', async () => {
    const database = await freshDatabase();
    try {
      const first = await startTestApp({ database });
      const files = await readMigrations();
      expect(files.length).toBeGreaterThan(0);
      const records = await first.app.database.sql.query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number; rolled_back_at: Date | null }>(
        'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM "_prisma_migrations" ORDER BY migration_name',
      );
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

  it('leave the database exactly as prisma/schema.prisma describes it', async () => {
    const t = await startTestApp();
    const { sql, schema } = t.app.database;
    const columns = await sql.query<{ table_name: string; column_name: string; data_type: string; udt_name: string; is_nullable: string }>(
      `SELECT table_name, column_name, data_type, udt_name, is_nullable FROM information_schema.columns
        WHERE table_schema = $1 AND table_name <> '_prisma_migrations'`,
      [schema],
    );
    const actual = new Map(columns.map((c) => [`${c.table_name}.${c.column_name}`, c]));
    const schemaText = await fs.readFile(new URL('../prisma/schema.prisma', import.meta.url), 'utf8');
    const expected = new Set<string>();

    for (const [model, fields] of modelsOf(schemaText)) {
      for (const field of fields) {
        if (field.kind === 'object') continue;
        const name = `${model}.${field.name}`;
        expected.add(name);
        const column = actual.get(name);
        expect(column, `${name} is missing from the database`).toBeDefined();
        // Prisma Migrate creates scalar-list columns nullable, whatever the field says.
        expect(column!.is_nullable, `${name} nullability`).toBe(field.isRequired && !field.isList ? 'NO' : 'YES');
        const nativeType = new RegExp(`^\\s*${field.name}\\s+\\S+.*@db\\.(\\w+)`, 'm');
        const modelBlock = schemaText.slice(schemaText.indexOf(`model ${model} {`)).split('\n}')[0]!;
        const native = nativeType.exec(modelBlock)?.[1];
        expect(column!.udt_name, `${name} type`).toBe(expectedUdt(field.type, field.kind, field.isList, native));
      }
    }
    expect([...actual.keys()].filter((name) => !expected.has(name)), 'columns the schema does not know').toEqual([]);

    const enumValues = await sql.query<{ value: string }>(
      `SELECT e.enumlabel AS value FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = 'JobStatus' AND n.nspname = $1 ORDER BY e.enumsortorder`,
      [schema],
    );
    expect(enumValues.map((v) => v.value)).toEqual([...schemaText.matchAll(/enum JobStatus \{([^}]*)\}/g)][0]![1]!.trim().split(/\s+/));

    const indexes = await sql.query<{ indexname: string }>('SELECT indexname FROM pg_indexes WHERE schemaname = $1', [schema]);
    const names = indexes.map((i) => i.indexname);
    // The list queries' indexes, named as Prisma names @@index entries.
    expect(names).toEqual(expect.arrayContaining([
      'Job_workspaceId_startedAt_id_idx',
      'Job_workspaceId_competitorId_startedAt_id_idx',
      'Job_changeXid_changeSeq_idx',
      'Job_workspaceId_changeXid_changeSeq_idx',
      'ApiKey_keyHash_key',
      'Workspace_slug_key',
    ]));
  });
});

function expectedUdt(type: string, kind: string, isList: boolean, native: string | undefined): string {
  const base =
    kind === 'enum'
      ? type
      : native === 'Uuid'
        ? 'uuid'
        : ({ String: 'text', Int: 'int4', BigInt: 'int8', Boolean: 'bool', DateTime: 'timestamptz', Json: 'jsonb' } as Record<string, string>)[type];
  if (!base) throw new Error(`No mapping for Prisma type ${type}`);
  return isList ? `_${base}` : base;
}

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

interface SchemaField {
  name: string;
  type: string;
  kind: 'scalar' | 'enum' | 'object';
  isRequired: boolean;
  isList: boolean;
}

/**
 * The fields of each model of prisma/schema.prisma, read from its text: `name Type`, `Type?` or
 * `Type[]` at the start of a line of a model block. (This schema's lines are that simple; Prisma's
 * own reader of it ships inside its CLI, not as a library.)
 */
function modelsOf(schemaText: string): Map<string, SchemaField[]> {
  const blocks = [...schemaText.matchAll(/^(model|enum) (\w+) \{\n([\s\S]*?)^\}/gm)];
  const enums = new Set(blocks.filter(([, kind]) => kind === 'enum').map(([, , name]) => name!));
  const models = new Map(blocks.filter(([, kind]) => kind === 'model').map(([, , name, body]) => [name!, body!] as const));
  const result = new Map<string, SchemaField[]>();
  for (const [model, body] of models) {
    const fields: SchemaField[] = [];
    for (const [, name, type, modifier] of body.matchAll(/^\s+(\w+)\s+(\w+)(\?|\[\])?/gm)) {
      fields.push({
        name: name!,
        type: type!,
        kind: models.has(type!) ? 'object' : enums.has(type!) ? 'enum' : 'scalar',
        isRequired: modifier !== '?',
        isList: modifier === '[]',
      });
    }
    result.set(model, fields);
  }
  return result;
}
