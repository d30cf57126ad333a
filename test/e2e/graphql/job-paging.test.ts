import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, JobsPageDocument, type JobsPageQuery, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { LIST_LIMIT } from '../../../src/limits/fixed.js';
import { describeDb, describePostgres } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';

const HISTORY = 5_000;

/**
 * 5,000 jobs in one workspace, three to a startedAt (the id breaks the tie), older than anything
 * the test creates: the history a dashboard pages through.
 */
async function seedHistory(t: TestApp, workspaceId: string, competitors = 0): Promise<Set<string>> {
  const rows = await t.app.database.sql.query<{ id: string }>(
    `INSERT INTO "Job" (id, "workspaceId", type, "displayTitle", "competitorId", "startedAt")
     SELECT gen_random_uuid(), $1::uuid, 'collect', 'Job ' || n, CASE WHEN $2::int = 0 THEN NULL ELSE 'competitor-' || (n % $2::int) END,
       now() - interval '1 hour' - (n / 3) * interval '1 second'
     FROM generate_series(1, ${HISTORY}) AS n RETURNING id`,
    [workspaceId, competitors],
  );
  return new Set(rows.map((row) => row.id));
}

describeDb('paging through the job list (jobsConnection, GET /api/jobs?cursor=)', () => {
  let t: TestApp;
  let key: string;
  let history: Set<string>;

  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('paging', ['jobs:read', 'jobs:write']);
    history = await seedHistory(t, await workspaceIdOf(t.app.apiKeys, key));
  }, 60_000);
  afterAll(() => t.close());

  it('returns every job that existed at the start exactly once, newest first, while 10 writers add and change jobs', { timeout: 120_000 }, async () => {
    let writing = true;
    const historyIds = [...history];
    const writers = Array.from({ length: 10 }, async (_, writer) => {
      for (let n = 0; writing; n++) {
        if (n % 2 === 0) await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: `new ${writer}-${n}` }) }, key);
        else await graphql(t.url, UpdateJobProgressDocument, { input: { id: historyIds[(writer * 7919 + n) % HISTORY]!, progress: n % 100 } }, key);
      }
    });
    const seen: Array<{ id: string; startedAt: string }> = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const { jobsConnection: page }: JobsPageQuery = await graphqlOk(t.url, JobsPageDocument, { first: LIST_LIMIT.max, after }, key);
      seen.push(...page.edges.map((edge) => edge.node));
      pages++;
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor!;
      expect(page.edges.at(-1)!.cursor).toBe(after);
    }
    writing = false;
    await Promise.all(writers);

    const ids = seen.map((job) => job.id);
    expect(new Set(ids).size, 'no job twice').toBe(ids.length);
    expect(ids.filter((id) => history.has(id)).length, 'every job of the history').toBe(HISTORY);
    // Newest first throughout, the id breaking ties, as the list orders them.
    for (let i = 1; i < seen.length; i++) {
      const [newer, older] = [seen[i - 1]!, seen[i]!];
      expect(newer.startedAt > older.startedAt || (newer.startedAt === older.startedAt && newer.id > older.id), `${i}`).toBe(true);
    }
    expect(pages).toBeGreaterThanOrEqual(Math.ceil(HISTORY / LIST_LIMIT.max));
  });

  it('pages backwards with last and before to the same jobs, and through REST with cursor and nextCursor', async () => {
    const first = (await graphqlOk(t.url, JobsPageDocument, { first: 6 }, key)).jobsConnection;
    const second = (await graphqlOk(t.url, JobsPageDocument, { first: 6, after: first.pageInfo.endCursor }, key)).jobsConnection;
    expect(second.pageInfo.hasPreviousPage).toBe(true);
    const back = (await graphqlOk(t.url, JobsPageDocument, { last: 6, before: second.edges[0]!.cursor }, key)).jobsConnection;
    expect(back.edges.map((edge) => edge.node.id)).toEqual(first.edges.map((edge) => edge.node.id));

    const restFirst = await rest(t.url, 'GET', '/api/jobs?limit=6', key);
    const firstBody = restFirst.body as { jobs: Array<{ id: string }>; nextCursor: string | null };
    expect(firstBody.nextCursor).toEqual(expect.any(String));
    const restSecond = (await rest(t.url, 'GET', `/api/jobs?limit=6&cursor=${firstBody.nextCursor}`, key)).body as { jobs: Array<{ id: string }> };
    const graphqlTwelve = (await graphqlOk(t.url, JobsPageDocument, { first: 12 }, key)).jobsConnection.edges.map((edge) => edge.node.id);
    expect([...firstBody.jobs, ...restSecond.jobs].map((job) => job.id)).toEqual(graphqlTwelve);
  });

  it('ends with hasNextPage false and nextCursor null on the last page, and keeps the filters across pages', async () => {
    const other = await t.createKey('paging-small', ['jobs:read', 'jobs:write']);
    for (const competitorId of ['a', 'b', 'a', 'a', 'b']) await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId }) }, other);
    const one = (await graphqlOk(t.url, JobsPageDocument, { competitorId: 'a', first: 2 }, other)).jobsConnection;
    expect(one.pageInfo.hasNextPage).toBe(true);
    const two = (await graphqlOk(t.url, JobsPageDocument, { competitorId: 'a', first: 2, after: one.pageInfo.endCursor }, other)).jobsConnection;
    expect(two.edges).toHaveLength(1);
    expect(two.pageInfo.hasNextPage).toBe(false);
    const restLast = (await rest(t.url, 'GET', `/api/jobs?competitorId=b&limit=2`, other)).body as { jobs: unknown[]; nextCursor: string | null };
    expect(restLast).toMatchObject({ nextCursor: null });
    expect(restLast.jobs).toHaveLength(2);
  });

  it('refuses a cursor it did not give and a page size out of range with BAD_USER_INPUT, on GraphQL and REST (property)', async () => {
    const [edge] = (await graphqlOk(t.url, JobsPageDocument, { first: 1 }, key)).jobsConnection.edges;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.base64String({ maxLength: 120 }),
          // A real cursor, altered by one character.
          fc
            .nat({ max: edge!.cursor.length - 1 })
            .chain((at) => fc.string({ minLength: 1, maxLength: 1 }).map((c) => edge!.cursor.slice(0, at) + c + edge!.cursor.slice(at + 1))),
          fc
            .tuple(fc.date(), fc.uuid())
            .map(([date, id]) => Buffer.from(`j1:${Number.isNaN(date.getTime()) ? 'x' : date.toISOString()},${id}x`).toString('base64url')),
        ),
        fc.integer({ min: -1_000, max: 1_000 }),
        async (cursor, size) => {
          const result = await graphql(t.url, JobsPageDocument, { first: size, after: cursor }, key);
          const sizeOk = size >= 1 && size <= LIST_LIMIT.max;
          if (codesOf(result).length === 0) expect(sizeOk, `${size} ${cursor}`).toBe(true);
          else expect(codesOf(result), `${size} ${JSON.stringify(cursor)}`).toEqual(['BAD_USER_INPUT']);
          const answer = await rest(t.url, 'GET', `/api/jobs?limit=${size}&cursor=${encodeURIComponent(cursor)}`, key);
          expect([200, 400], `${size} ${JSON.stringify(cursor)}`).toContain(answer.status);
          if (answer.status === 400) expect(answer.body).toMatchObject({ error: { code: 'BAD_USER_INPUT' } });
        },
      ),
      { numRuns: 60 },
    );
    // An empty cursor parameter is no cursor (as empty filters are no filter).
    expect((await rest(t.url, 'GET', '/api/jobs?cursor=', key)).status).toBe(200);
    expect(codesOf(await graphql(t.url, JobsPageDocument, { first: 1, after: edge!.cursor.slice(0, -2) }, key))).toEqual(['BAD_USER_INPUT']);
  });
});

describePostgres('a page of the job list on PostgreSQL', () => {
  it('costs one index walk that starts at the cursor, however deep the page', async () => {
    const t = await startTestApp();
    try {
      const key = await t.createKey('paging-plan', ['jobs:read']);
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      await seedHistory(t, workspaceId, 50);
      await t.app.database.sql.query('ANALYZE "Job"');
      const explain = async (filter: string) =>
        (
          await t.app.database.sql.query<{ 'QUERY PLAN': string }>(
            `EXPLAIN SELECT * FROM "Job" WHERE "workspaceId" = $1::uuid ${filter}
               AND ("startedAt", id) < (now() - interval '1 hour' - interval '1000 seconds', 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
             ORDER BY "startedAt" DESC, id DESC LIMIT 201`,
            [workspaceId],
          )
        )
          .map((line) => line['QUERY PLAN'])
          .join('\n');
      const plain = await explain('');
      expect(plain).toMatch(/Index Scan using "Job_workspaceId_startedAt_id_idx"/);
      expect(plain).toMatch(/Index Cond: .*ROW\("startedAt", id\) < ROW/);
      expect(plain).not.toMatch(/Sort|Seq Scan/);
      const byCompetitor = await explain(`AND "competitorId" = 'competitor-1'`);
      expect(byCompetitor).toMatch(/Index Scan using "Job_workspaceId_competitorId_startedAt_id_idx"/);
      expect(byCompetitor).not.toMatch(/Sort|Seq Scan/);
    } finally {
      await t.close();
    }
  });
});
