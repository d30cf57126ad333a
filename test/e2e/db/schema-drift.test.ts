import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeDb } from '../../helpers/databases.js';
import { startTestApp } from '../../helpers/test-app.js';
import { repoRoot } from '../../helpers/paths.js';

/**
 * The migrations are written by hand (Prisma's schema engine cannot run on our machines), so nothing
 * but this test keeps them and prisma/schema.prisma, which the client is generated from, in step.
 */
describeDb('schema drift', () => {
  it('the migrated database is exactly what prisma/schema.prisma describes: columns, types, nullability, the enum, the indexes', async () => {
    const t = await startTestApp();
    const { sql, schema } = t.app.database;
    const columns = await sql.query<{ table_name: string; column_name: string; data_type: string; udt_name: string; is_nullable: string }>(
      `SELECT table_name, column_name, data_type, udt_name, is_nullable FROM information_schema.columns
        WHERE table_schema = $1 AND table_name <> '_prisma_migrations'`,
      [schema],
    );
    const actual = new Map(columns.map((c) => [`${c.table_name}.${c.column_name}`, c]));
    const schemaText = await fs.readFile(path.join(repoRoot, 'prisma', 'schema.prisma'), 'utf8');
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
    expect(
      [...actual.keys()].filter((name) => !expected.has(name)),
      'columns the schema does not know',
    ).toEqual([]);

    const enumValues = await sql.query<{ value: string }>(
      `SELECT e.enumlabel AS value FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = 'JobStatus' AND n.nspname = $1 ORDER BY e.enumsortorder`,
      [schema],
    );
    expect(enumValues.map((v) => v.value)).toEqual([...schemaText.matchAll(/enum JobStatus \{([^}]*)\}/g)][0]![1]!.trim().split(/\s+/));

    const indexes = await sql.query<{ indexname: string }>('SELECT indexname FROM pg_indexes WHERE schemaname = $1', [schema]);
    const names = indexes.map((i) => i.indexname);
    // The list queries' indexes, named as Prisma names @@index entries.
    expect(names).toEqual(
      expect.arrayContaining([
        'Job_workspaceId_startedAt_id_idx',
        'Job_workspaceId_competitorId_startedAt_id_idx',
        'Job_changeXid_changeSeq_idx',
        'Job_workspaceId_changeXid_changeSeq_idx',
        'ApiKey_keyHash_key',
        'Workspace_slug_key',
        'WebhookEndpoint_workspaceId_idx',
        'WebhookDelivery_endpointId_id_idx',
      ]),
    );
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
