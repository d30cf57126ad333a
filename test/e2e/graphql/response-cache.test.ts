import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, JobDocument, JobsDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import type { JobRow } from '../../../src/jobs/model.js';
import pg from 'pg';
import { dbKind, describeDb, describePostgres } from '../../helpers/databases.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { settleFeed } from '../../helpers/feed.js';
import { graphql, graphqlOk, rest } from '../../helpers/http.js';
import { scrape } from '../../helpers/metrics.js';
import { type TestApp, NO_BACKGROUND_READS, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const input = (i: number) => ({
  type: 'collect',
  displayTitle: `Job ${i}`,
  competitorId: `competitor-${i % 3}`,
  steps: [
    { id: 'collect', name: 'Collecting Intel' },
    { id: 'ingest', name: 'Processing Intel' },
  ],
  metadata: { i },
});

/** What the database holds for a workspace's jobs, newest first, as the list orders them. */
async function jobsInDatabase(t: TestApp, workspaceId: string): Promise<JobRow[]> {
  return t.app.database.sql.query<JobRow>(`SELECT * FROM "Job" WHERE "workspaceId" = $1::uuid ORDER BY "startedAt" DESC, id DESC`, [workspaceId]);
}

/** The fields both transports answer, from a database row, a REST job or a GraphQL job alike. */
const essence = (job: { id: string; workspaceId: string; status: string; progress: number; metadata: unknown; currentStep?: string | null }) => ({
  id: job.id,
  workspaceId: job.workspaceId,
  status: job.status.toUpperCase(),
  progress: job.progress,
  metadata: job.metadata,
  currentStep: job.currentStep ?? null,
});

const queriesOf = (t: TestApp) => t.app.database.queries.count;

describeDb('response cache: polling served from memory, never stale, never another workspace', () => {
  let t: TestApp;
  let key: string;
  let jobId: string;

  beforeAll(async () => {
    // No catch-up reads, and a key looked up once however slowly the reads run (the key cache's
    // 2 s lapses on a loaded machine): every statement counted below is one a read caused.
    t = await startTestApp({ env: { ...NO_BACKGROUND_READS, AUTH_CACHE_TTL_MS: '600000' } });
    key = await t.createKey('cache');
    for (let i = 0; i < 3; i++) jobId = (await graphqlOk(t.url, CreateJobDocument, { input: input(i) }, key)).createJob.id;
    await settleFeed(t.app.feed);
  });
  afterAll(() => t.close());

  it('answers a repeated read of every route without a database query, with the same body', async () => {
    const reads: Array<[string, () => Promise<unknown>]> = [
      ['GET /api/jobs', async () => (await rest(t.url, 'GET', '/api/jobs?limit=50', key)).body],
      ['GET /api/jobs/{id}', async () => (await rest(t.url, 'GET', `/api/jobs/${jobId}`, key)).body],
      ['jobs', async () => graphqlOk(t.url, JobsDocument, { limit: 50 }, key)],
      ['job', async () => graphqlOk(t.url, JobDocument, { id: jobId }, key)],
    ];
    for (const [route, read] of reads) {
      const first = await read();
      let queries = 0;
      for (let attempt = 0; attempt < 4; attempt++) {
        const feedReads = t.app.feed.reads;
        const before = queriesOf(t);
        for (let i = 0; i < 5; i++) expect(await read(), route).toEqual(first);
        queries = queriesOf(t) - before;
        // The feed reading on its own meanwhile (on PostgreSQL, the announcement of beforeAll's
        // writes coming back late on a loaded machine) is no read of these requests: measure again.
        if (t.app.feed.reads === feedReads) break;
      }
      expect(queries, `${route}: database queries for five repeated reads`).toBe(0);
    }
  });

  it('answers a write of this instance in the very next read, before the change feed has run', async () => {
    // A feed that waits 10 s between dispatches: the write below reaches readers only through the
    // invalidation that the write itself does.
    const slow = await startTestApp({ env: { FEED_COALESCE_MS: '10000' } });
    const writer = await slow.createKey('read-your-writes');
    const { id } = (await graphqlOk(slow.url, CreateJobDocument, { input: input(0) }, writer)).createJob;
    await settleFeed(slow.app.feed);
    const dispatched = slow.app.feed.dispatched;
    await rest(slow.url, 'GET', '/api/jobs?limit=50', writer);
    await graphqlOk(slow.url, JobDocument, { id }, writer);
    const updated = (await graphqlOk(slow.url, UpdateJobProgressDocument, { input: { id, metadata: { written: 'now' } } }, writer)).updateJobProgress;
    const listed = (await rest(slow.url, 'GET', '/api/jobs?limit=50', writer)).body as { jobs: Array<{ id: string; metadata: unknown }> };
    expect(listed.jobs.find((job) => job.id === id)!.metadata).toEqual(updated.metadata);
    expect((await graphqlOk(slow.url, JobDocument, { id }, writer)).job!.metadata).toEqual(updated.metadata);
    expect(slow.app.feed.dispatched, 'the feed has not dispatched the write yet').toBe(dispatched);
    await slow.close();
  });

  it('answers a change written by SQL once the change feed has dispatched it', async () => {
    const before = (await graphqlOk(t.url, JobDocument, { id: jobId }, key)).job!;
    await t.app.database.sql.query(`UPDATE "Job" SET metadata = metadata || '{"bySql": true}' WHERE id = $1::uuid`, [jobId]);
    await settleFeed(t.app.feed);
    const after = (await graphqlOk(t.url, JobDocument, { id: jobId }, key)).job!;
    expect(after.metadata).toEqual({ ...(before.metadata as object), bySql: true });
  });

  it('never serves a result to a key whose scopes differ, nor without a key', async () => {
    await graphqlOk(t.url, JobsDocument, { limit: 50 }, key);
    const writer = await t.createKey('cache', ['jobs:write']);
    const refused = await graphql(t.url, JobsDocument, { limit: 50 }, writer);
    expect(refused.errors?.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect((await graphql(t.url, JobsDocument, { limit: 50 })).status).toBe(401);
    expect((await rest(t.url, 'GET', '/api/jobs?limit=50')).status).toBe(401);
    // A key of the same workspace that may also run it, with other scopes: an entry of its own
    // (first read a miss, the next a hit), never the one read for the first key.
    const reader = await t.createKey('cache', ['jobs:read']);
    const cache = t.app.responses!;
    const before = { hits: cache.hits, misses: cache.misses };
    await graphqlOk(t.url, JobsDocument, { limit: 50 }, reader);
    await graphqlOk(t.url, JobsDocument, { limit: 50 }, reader);
    expect({ hits: cache.hits - before.hits, misses: cache.misses - before.misses }).toEqual({ hits: 1, misses: 1 });
  });

  it('counts hits and misses in /metrics', async () => {
    const read = () => graphqlOk(t.url, JobsDocument, { limit: 7 }, key);
    const metrics = async () => {
      const { value } = await scrape(t.url);
      return {
        hits: value('jobs_gateway_response_cache_requests_total{result="hit"}'),
        misses: value('jobs_gateway_response_cache_requests_total{result="miss"}'),
      };
    };
    const before = await metrics();
    await read();
    await read();
    await read();
    const after = await metrics();
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(2);
  });

  it('serializes a cached result once, in pieces: its hits answer the same body without serializing anything', async () => {
    const heavy = await startTestApp();
    const stringify = JSON.stringify;
    try {
      const key = await heavy.createKey('heavy-results');
      const workspaceId = (await heavy.app.apiKeys.authenticate(key))!.workspaceId;
      for (let i = 0; i < 5; i++) await heavy.app.jobs.create(workspaceId, { ...input(i), metadata: { report: 'x'.repeat(60_000) } });
      await settleFeed(heavy.app.feed);
      const ask = async () => {
        const response = await fetch(`${heavy.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': key },
          body: '{"query":"{ jobs(limit: 200) { id metadata } }"}',
        });
        return response.text();
      };
      // Every serialization of a job's size or more, wherever it happens in the process.
      let largest = 0;
      let stringified = 0;
      JSON.stringify = ((value: unknown, ...rest: never[]) => {
        const text = stringify(value, ...rest);
        if (text !== undefined && text.length > 10_000) {
          stringified += text.length;
          largest = Math.max(largest, text.length);
        }
        return text;
      }) as typeof JSON.stringify;
      const first = await ask();
      expect(JSON.parse(first).data.jobs).toHaveLength(5);
      // One job at a time (the result is about 300 KB), each serialized once: the size check, the
      // cache's size and the response shared the one body.
      expect(largest).toBeLessThan(70_000);
      expect(stringified).toBeGreaterThan(first.length * 0.95);
      expect(stringified).toBeLessThanOrEqual(first.length);
      const hits = heavy.app.responses!.hits;
      const before = stringified;
      for (let i = 0; i < 3; i++) expect(await ask()).toBe(first);
      expect(heavy.app.responses!.hits - hits).toBe(3);
      expect(stringified).toBe(before);
    } finally {
      JSON.stringify = stringify;
      await heavy.close();
    }
  });
});

describeDb('polling a job that a worker moves', () => {
  it("costs one statement per progress report, the feed's read of it, and nothing per poll", async () => {
    // No catch-up read during the test: every statement counted is one the requests caused.
    const t = await startTestApp({ env: NO_BACKGROUND_READS });
    const key = await t.createKey('polled');
    const { id } = (await graphqlOk(t.url, CreateJobDocument, { input: input(0) }, key)).createJob;
    await settleFeed(t.app.feed);
    await rest(t.url, 'GET', `/api/jobs/${id}`, key);
    const before = { queries: queriesOf(t), reads: t.app.feed.reads, announcements: t.app.feed.stats().announcements };
    for (let progress = 1; progress <= 5; progress++) {
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id, progress } }, key);
      await settleFeed(t.app.feed);
      for (let poll = 0; poll < 3; poll++) {
        const { body } = await rest(t.url, 'GET', `/api/jobs/${id}`, key);
        expect((body as { job: { progress: number } }).job.progress).toBe(progress);
      }
    }
    // Each report: its UPDATE, the feed's read (or reads: one may start before the write commits;
    // each read is two statements, the horizon and the changes), and on PostgreSQL its announcement to other instances (one NOTIFY, or none when it joins the
    // previous report's, still on its way under a loaded machine). The fifteen polls: none.
    const reads = t.app.feed.reads - before.reads;
    const announcements = t.app.feed.stats().announcements - before.announcements;
    if (dbKind === 'postgres') expect(announcements).toBeGreaterThanOrEqual(1);
    expect(announcements).toBeLessThanOrEqual(dbKind === 'postgres' ? 5 : 0);
    expect(queriesOf(t) - before.queries).toBe(5 + 2 * reads + announcements);
    await t.close();
  });
});

describeDb('response cache: limits and settings', () => {
  it('stays within RESPONSE_CACHE_MAX_BYTES whatever reads arrive (property)', { timeout: 120_000 }, async () => {
    const maxBytes = 64 * 1024;
    const t = await startTestApp({ env: { RESPONSE_CACHE_MAX_BYTES: String(maxBytes) } });
    const key = await t.createKey('bounded');
    for (let i = 0; i < 20; i++) await graphqlOk(t.url, CreateJobDocument, { input: input(i) }, key);
    const cache = t.app.responses!;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ limit: fc.integer({ min: 1, max: 200 }), competitorId: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }) }), {
          minLength: 1,
          maxLength: 30,
        }),
        async (reads) => {
          for (const variables of reads) {
            const response = await graphql(t.url, JobsDocument, variables, key);
            expect(response.status).toBe(200);
          }
          expect(cache.bytes).toBeLessThanOrEqual(maxBytes);
        },
      ),
      { numRuns: 15 },
    );
    expect(cache.entries).toBeGreaterThan(0);
    await t.close();
  });

  it('with RESPONSE_CACHE=false, reads every time', async () => {
    const t = await startTestApp({ env: { ...NO_BACKGROUND_READS, RESPONSE_CACHE: 'false' } });
    const key = await t.createKey('uncached');
    await graphqlOk(t.url, CreateJobDocument, { input: input(0) }, key);
    expect(t.app.responses).toBeUndefined();
    await graphqlOk(t.url, JobsDocument, { limit: 50 }, key);
    // The feed's reads (of the job created, or a catch-up) are not the reads of the queries.
    await settleFeed(t.app.feed);
    const before = queriesOf(t);
    const feedReads = t.app.feed.reads;
    for (let i = 0; i < 3; i++) await rest(t.url, 'GET', '/api/jobs?limit=50', key);
    expect(queriesOf(t) - before - (t.app.feed.reads - feedReads)).toBe(3);
    await t.close();
  });

  it('serves no result longer than RESPONSE_CACHE_TTL_MS, even when the feed sees no change (a row deleted by SQL)', async () => {
    const t = await startTestApp({ env: { RESPONSE_CACHE_TTL_MS: '300' } });
    const key = await t.createKey('ttl');
    const { id } = (await graphqlOk(t.url, CreateJobDocument, { input: input(0) }, key)).createJob;
    await settleFeed(t.app.feed);
    expect((await rest(t.url, 'GET', `/api/jobs/${id}`, key)).status).toBe(200);
    await t.app.database.sql.query(`DELETE FROM "Job" WHERE id = $1::uuid`, [id]);
    await expect.poll(async () => (await rest(t.url, 'GET', `/api/jobs/${id}`, key)).status, { timeout: 5_000 }).toBe(404);
    await t.close();
  });
});

describeDb('response cache: random interleavings of writes, reads and subscriptions (property)', () => {
  it('every read answers what the database holds as of the last dispatched change, and only its own workspace', { timeout: 240_000 }, async () => {
    const t = await startTestApp();
    type Who = 0 | 1;
    type Route = 'restList' | 'restOne' | 'jobs' | 'job';
    type Command =
      | { kind: 'gatewayWrite'; who: Who; pick: number; value: number }
      | { kind: 'sqlWrite'; who: Who; pick: number; value: number }
      | { kind: 'create'; who: Who }
      | { kind: 'read'; who: Who; route: Route; pick: number; settle: boolean };
    const who = fc.constantFrom<Who>(0, 1);
    const pick = fc.nat({ max: 20 });
    const value = fc.integer({ min: 0, max: 1_000_000 });
    const command: fc.Arbitrary<Command> = fc.oneof(
      fc.record({ kind: fc.constant('gatewayWrite' as const), who, pick, value }),
      fc.record({ kind: fc.constant('sqlWrite' as const), who, pick, value }),
      fc.record({ kind: fc.constant('create' as const), who }),
      fc.record({ kind: fc.constant('read' as const), who, route: fc.constantFrom<Route>('restList', 'restOne', 'jobs', 'job'), pick, settle: fc.boolean() }),
      fc.record({ kind: fc.constant('read' as const), who, route: fc.constantFrom<Route>('restList', 'restOne', 'jobs', 'job'), pick, settle: fc.boolean() }),
    );
    let run = 0;

    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 25 }), async (commands) => {
        run++;
        const keys = [await t.createKey(`interleave-${run}-a`), await t.createKey(`interleave-${run}-b`)] as const;
        const ids: [string[], string[]] = [[], []];
        const workspaces: string[] = [];
        for (const w of [0, 1] as const) {
          const job = (await graphqlOk(t.url, CreateJobDocument, { input: input(w) }, keys[w])).createJob;
          ids[w].push(job.id);
          workspaces[w] = job.workspaceId;
        }
        // From the first position on: every job's every state, replayed and then live.
        const sockets = await Promise.all(keys.map((apiKey) => TestSocket.open(t.url, { apiKey })));
        sockets.forEach((socket) =>
          socket.subscribe('live', 'subscription { jobUpdated(after: "0") { id workspaceId status progress metadata currentStep } }'),
        );

        /** What the database holds now for the read, in the read's own shape. */
        const expected = async (w: Who, route: Route, id: string) => {
          const rows = (await jobsInDatabase(t, workspaces[w]!)).map(essence);
          return route === 'restList' || route === 'jobs' ? rows.slice(0, 50) : (rows.find((row) => row.id === id) ?? null);
        };
        const read = async (w: Who, route: Route, id: string) => {
          if (route === 'restList') return ((await rest(t.url, 'GET', '/api/jobs?limit=50', keys[w])).body as { jobs: JobRow[] }).jobs.map(essence);
          if (route === 'restOne') {
            const body = (await rest(t.url, 'GET', `/api/jobs/${id}`, keys[w])).body as { job?: JobRow };
            return body.job ? essence(body.job) : null;
          }
          if (route === 'jobs') return (await graphqlOk(t.url, JobsDocument, { limit: 50 }, keys[w])).jobs.map(essence);
          const { job } = await graphqlOk(t.url, JobDocument, { id }, keys[w]);
          return job ? essence(job) : null;
        };
        const onlyOwn = (w: Who, answer: unknown) => {
          for (const job of [answer].flat()) if (job) expect((job as { workspaceId: string }).workspaceId).toBe(workspaces[w]);
        };

        for (const c of commands) {
          // Any job of either workspace: reading or writing another workspace's job must find nothing.
          const all = [...ids[0], ...ids[1]];
          const id = all[c.kind === 'create' ? 0 : c.pick % all.length]!;
          if (c.kind === 'create') {
            ids[c.who].push((await graphqlOk(t.url, CreateJobDocument, { input: input(ids[c.who].length) }, keys[c.who])).createJob.id);
          } else if (c.kind === 'gatewayWrite') {
            const result = await graphql(t.url, UpdateJobProgressDocument, { input: { id, metadata: { value: c.value } } }, keys[c.who]);
            if (!ids[c.who].includes(id)) {
              expect(result.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
              continue;
            }
            expect(result.errors).toBeUndefined();
            // Read-your-writes through this instance: no waiting for the feed.
            for (const route of ['restOne', 'job', 'restList', 'jobs'] as const)
              expect(await read(c.who, route, id), route).toEqual(await expected(c.who, route, id));
          } else if (c.kind === 'sqlWrite') {
            await t.app.database.sql.query(`UPDATE "Job" SET progress = $2, metadata = metadata || jsonb_build_object('sql', $3::int) WHERE id = $1::uuid`, [
              id,
              c.value % 101,
              c.value,
            ]);
          } else {
            if (c.settle) await settleFeed(t.app.feed);
            const answer = await read(c.who, c.route, id);
            onlyOwn(c.who, answer);
            // With every change dispatched, the answer is exactly what the database holds.
            if (c.settle) expect(answer, `${c.route} after the feed settled`).toEqual(await expected(c.who, c.route, id));
          }
        }

        // Subscribers: only their own workspace's jobs, and each job's last state is the database's.
        await settleFeed(t.app.feed);
        for (const w of [0, 1] as const) {
          const rows = (await jobsInDatabase(t, workspaces[w]!)).map(essence);
          const received = () => {
            const last = new Map<string, unknown>();
            for (const m of sockets[w]!.messages) if (m.type === 'next') last.set(...lastState(m.payload));
            return rows.map((row) => last.get(row.id) ?? null);
          };
          await expect.poll(received, { timeout: 15_000 }).toEqual(rows);
          for (const m of sockets[w]!.messages) if (m.type === 'next') expect(lastState(m.payload)[1].workspaceId).toBe(workspaces[w]);
        }
        for (const socket of sockets) socket.close();
        // And a settled read of every route, once more.
        for (const w of [0, 1] as const)
          for (const route of ['restList', 'jobs'] as const) expect(await read(w, route, ids[w][0]!)).toEqual(await expected(w, route, ids[w][0]!));
      }),
      { numRuns: 12 },
    );
    await t.close();
  });
});

function lastState(payload: unknown): [string, ReturnType<typeof essence>] {
  const job = (payload as { data: { jobUpdated: JobRow } }).data.jobUpdated;
  return [job.id, essence(job)];
}

describePostgres('identical queries in flight at once', () => {
  it('execute once and share the answer; other variables, scopes and workspaces read their own', async () => {
    const t = await startTestApp({ env: NO_BACKGROUND_READS });
    try {
      const key = await t.createKey('herd');
      const reader = await t.createKey('herd', ['jobs:read']);
      const other = await t.createKey('herd-neighbour');
      for (let i = 0; i < 3; i++) await graphqlOk(t.url, CreateJobDocument, { input: input(i) }, key);
      await graphqlOk(t.url, CreateJobDocument, { input: input(9) }, other);
      await settleFeed(t.app.feed);
      const cache = t.app.responses!;

      // Every key known already (its lookup is not counted below); then what one read costs from a
      // cold cache.
      for (const k of [key, reader, other]) await graphqlOk(t.url, JobsDocument, { limit: 1 }, k);
      const workspaces = await Promise.all([key, other].map(async (k) => (await t.app.apiKeys.authenticate(k))!.workspaceId));
      const invalidate = () => workspaces.forEach((workspaceId) => cache.invalidateWorkspace(workspaceId));
      invalidate();
      let before = queriesOf(t);
      const alone = await graphqlOk(t.url, JobsDocument, { limit: 50 }, key);
      const oneRead = queriesOf(t) - before;
      expect(oneRead).toBeGreaterThan(0);
      invalidate();

      // Reads wait for a lock on the jobs table (a second connection), so all of them are in
      // flight at once, as a herd of dashboards is when a change invalidates their list.
      const locker = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${t.app.database.schema}"` });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE "Job" IN ACCESS EXCLUSIVE MODE');
      const coalescedBefore = cache.coalesced;
      before = queriesOf(t);
      const herd = Array.from({ length: 8 }, () => graphqlOk(t.url, JobsDocument, { limit: 50 }, key));
      const others = [
        graphqlOk(t.url, JobsDocument, { limit: 49 }, key),
        graphqlOk(t.url, JobsDocument, { limit: 50 }, reader),
        graphqlOk(t.url, JobsDocument, { limit: 50 }, other),
      ];
      await expect.poll(() => cache.coalesced - coalescedBefore).toBe(7);
      await locker.query('ROLLBACK');
      await locker.end();
      const answers = await Promise.all(herd);
      const [fewer, readers, neighbours] = await Promise.all(others);

      expect(cache.coalesced - coalescedBefore).toBe(7);
      expect((await scrape(t.url)).value('jobs_gateway_response_cache_requests_total{result="coalesced"}')).toBe(cache.coalesced);
      // The herd and the three others: four executions in all.
      expect(queriesOf(t) - before).toBe(4 * oneRead);
      for (const answer of answers) expect(answer).toEqual(alone);
      expect(readers).toEqual(alone);
      expect(fewer!.jobs).toEqual(alone.jobs);
      expect(neighbours!.jobs).toHaveLength(1);
      expect(alone.jobs.map((job) => job.id)).not.toContain(neighbours!.jobs[0]!.id);
    } finally {
      await t.close();
    }
  });
});
