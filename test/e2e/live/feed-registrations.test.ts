import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { workspaceKey } from '../../../src/jobs/workspace-key.js';
import { describeDb, describePostgres } from '../../helpers/databases.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';

// How a transaction that writes jobs registers with the change feed (the migration
// 20261205000000_job_feed_registrations): what the feed reads must mean what the code thinks.

describeDb('workspace keys', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });

  it('are the same in JavaScript as job_workspace_key() in the database, for any uuid (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uuid({ version: [1, 2, 3, 4, 5, 7, 8] }), async (id) => {
        const [row] = await t.app.database.sql.query<{ key: number }>('SELECT job_workspace_key($1::uuid) AS key', [id]);
        expect(workspaceKey(id)).toBe(row!.key);
      }),
      { numRuns: 200 },
    );
  });
});

describePostgres('registrations', () => {
  let t: TestApp;
  let client: pg.Client;
  beforeAll(async () => {
    t = await startTestApp();
    client = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${t.app.database.schema}"` });
    await client.connect();
  });
  afterAll(() => client.end());

  const registrations = async () =>
    (await t.app.changes.horizon()).registrations.filter((r) => r.pid === (client as unknown as { processID: number }).processID);

  it('one per workspace a transaction writes, with a ticket below every position it draws; a bulk update of thousands of jobs holds a handful of locks', async () => {
    const [a, b] = [await t.createKey('registers-a'), await t.createKey('registers-b')];
    const [wa, wb] = [await workspaceIdOf(t.app.apiKeys, a), await workspaceIdOf(t.app.apiKeys, b)];
    await t.app.database.sql.query(
      `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") SELECT gen_random_uuid(), $1, 'bulk', 'Job ' || g FROM generate_series(1, 5000) g`,
      [wa],
    );
    const [jobB] = await t.app.database.sql.query<{ id: string }>(
      `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") VALUES (gen_random_uuid(), $1, 'one', 'B') RETURNING id`,
      [wb],
    );

    await client.query('BEGIN');
    await client.query(`UPDATE "Job" SET progress = 1 WHERE "workspaceId" = $1`, [wa]);
    const held = await registrations();
    expect(new Set(held.map((r) => r.key))).toEqual(new Set([workspaceKey(wa)]));
    // 5,000 positions drawn, about 10,000 sequence numbers: 3 or 4 tickets of 4,096.
    expect(held.length).toBeLessThanOrEqual(4);
    await client.query(`UPDATE "Job" SET progress = 2 WHERE id = $1`, [jobB!.id]);
    const both = await registrations();
    expect(new Set(both.map((r) => r.key))).toEqual(new Set([workspaceKey(wa), workspaceKey(wb)]));
    const { rows } = await client.query<{ seq: string }>('SELECT min("changeSeq")::text AS seq FROM "Job" WHERE "workspaceId" = ANY($1::uuid[])', [[wa, wb]]);
    const lowestTicket = both.reduce((min, r) => (r.ticket < min ? r.ticket : min), both[0]!.ticket);
    expect(lowestTicket).toBeLessThan(BigInt(rows[0]!.seq));
    await client.query('COMMIT');
    expect(await registrations()).toEqual([]);
  });

  it('are released by a rollback to a savepoint that took them, kept by one that did not', async () => {
    const key = await t.createKey('registers-savepoint');
    const ws = await workspaceIdOf(t.app.apiKeys, key);
    const [job] = await t.app.database.sql.query<{ id: string }>(
      `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") VALUES (gen_random_uuid(), $1, 'one', 'S') RETURNING id`,
      [ws],
    );
    await client.query('BEGIN');
    await client.query('SAVEPOINT s');
    await client.query('UPDATE "Job" SET progress = 3 WHERE id = $1', [job!.id]);
    expect(await registrations()).toHaveLength(1);
    await client.query('ROLLBACK TO SAVEPOINT s');
    expect(await registrations()).toEqual([]);
    await client.query('UPDATE "Job" SET progress = 4 WHERE id = $1', [job!.id]);
    await client.query('SAVEPOINT t');
    await client.query('ROLLBACK TO SAVEPOINT t');
    expect(await registrations()).toHaveLength(1);
    await client.query('COMMIT');
  });
});
