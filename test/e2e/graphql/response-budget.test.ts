import fc from 'fast-check';
import pg from 'pg';
import { expect, it } from 'vitest';
import { describeDb, describePostgres } from '../../helpers/databases.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { type TestApp, NO_BACKGROUND_READS, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const RATE = 100_000;
const BURST = 200_000;
const steps = [{ id: 'a', name: 'A' }];

async function seed(t: TestApp, key: string, jobs: number, metadataChars: number): Promise<string[]> {
  const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
  const ids: string[] = [];
  for (let i = 0; i < jobs; i++) {
    const job = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: `job ${i}`, steps, metadata: { report: 'x'.repeat(metadataChars) } });
    ids.push(job.id);
  }
  return ids;
}

function postGraphql(url: string, key: string, query: string, variables?: Record<string, unknown>) {
  return fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ query, variables }),
  });
}

describeDb('response bytes budget per workspace (RESPONSE_BYTES_PER_WORKSPACE)', () => {
  it('bounds what a workspace is sent through every door to its budget; past it queries get RATE_LIMITED with Retry-After, its writes and other workspaces pass (property)', async () => {
    const t = await startTestApp({ env: { RESPONSE_BYTES_PER_WORKSPACE: String(RATE), RESPONSE_BYTES_BURST: String(BURST), RATE_LIMIT_PER_KEY: '0' } });
    const heavy = await t.createKey('heavy-reader');
    const bystander = await t.createKey('bystander');
    const [ownJob] = await seed(t, heavy, 10, 20_000);
    const [otherJob] = await seed(t, bystander, 1, 10);
    const socket = await TestSocket.open(t.url, { apiKey: heavy });
    let sent = 0;
    let largest = 0;
    let refused = 0;
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ door: fc.constantFrom('graphql', 'rest', 'ws'), limit: fc.integer({ min: 1, max: 10 }) }), { minLength: 3, maxLength: 12 }),
        async (requests) => {
          for (const [i, { door, limit }] of requests.entries()) {
            // A new document each time (an alias of its own): no cache stands between the attacker and the database.
            const query = `{ jobs(limit: ${limit}) { id metadata } n${sent}x${i}: __typename }`;
            if (door === 'ws') {
              const id = `q${performance.now()}`;
              socket.subscribe(id, query);
              const message = await socket.waitFor((m) => m.id === id && (m.type === 'next' || m.type === 'error'));
              const payload = message.payload as { data?: unknown; errors?: Array<{ extensions?: { code?: string } }> };
              if (payload.errors) {
                expect(payload.errors[0]?.extensions?.code).toBe('RATE_LIMITED');
                refused++;
              } else {
                const bytes = Buffer.byteLength(JSON.stringify(payload));
                sent += bytes;
                largest = Math.max(largest, bytes);
              }
              continue;
            }
            const response =
              door === 'graphql'
                ? await postGraphql(t.url, heavy, query)
                : await fetch(`${t.url}/api/jobs?limit=${limit}`, { headers: { 'x-api-key': heavy } });
            const body = Buffer.from(await response.arrayBuffer());
            if (response.status === 429) {
              const parsed = JSON.parse(body.toString()) as { errors?: Array<{ extensions: { code: string } }>; error?: { code: string } };
              expect(parsed.errors?.[0]?.extensions.code ?? parsed.error?.code).toBe('RATE_LIMITED');
              expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
              refused++;
            } else {
              expect(response.status).toBe(200);
              sent += body.length;
              largest = Math.max(largest, body.length);
            }
          }
          // What was sent is what the budget allows: the burst, the rate since the start, and the one
          // response that the last admission let through before its size was known.
          const elapsedS = (performance.now() - started) / 1000;
          expect(sent).toBeLessThanOrEqual(BURST + RATE * elapsedS + largest);
          // In debt or not, the workspace's own worker reports, and another workspace reads.
          const report = await postGraphql(t.url, heavy, 'mutation($id: ID!) { updateJobProgress(input: { id: $id, progress: 10 }) { id } }', { id: ownJob });
          expect(report.status).toBe(200);
          expect(((await report.json()) as { errors?: unknown }).errors).toBeUndefined();
          const other = await fetch(`${t.url}/api/jobs/${otherJob}`, { headers: { 'x-api-key': bystander } });
          expect(other.status).toBe(200);
          await other.arrayBuffer();
        },
      ),
      { numRuns: 8 },
    );
    // The property asked for far more than the budget: the limit was reached, not merely respected.
    expect(refused).toBeGreaterThan(0);
    socket.close();
  });

  it('paces a resumed subscription by its bytes over WebSocket and SSE: every job arrives, no faster than the budget', async () => {
    const rate = 100_000;
    const t = await startTestApp({ env: { RESPONSE_BYTES_PER_WORKSPACE: String(rate), RESPONSE_BYTES_BURST: String(rate) } });
    const key = await t.createKey('replayer');
    const ids = await seed(t, key, 8, 30_000);
    const resume = 'subscription { jobUpdated(after: "0") { id metadata } }';

    let started = performance.now();
    const socket = await TestSocket.open(t.url, { apiKey: key });
    socket.subscribe('r', resume);
    const overWs = await socket.waitForNexts<{ data: { jobUpdated: { id: string } } }>('r', ids.length);
    const wsSeconds = (performance.now() - started) / 1000;
    socket.close();
    expect(overWs.map((m) => m.data.jobUpdated.id)).toEqual(ids);
    // 8 states of 30 KB are 240 KB: the burst (100 KB) at once, the rest at 100 KB/s but for the
    // last state, which may overdraw (a state's size is spent once it is allowed to go).
    const paced = (8 * 30_000 - rate - 30_000) / rate;
    expect(wsSeconds).toBeGreaterThanOrEqual(paced - 0.1);

    started = performance.now();
    const stream = await openEventStream(t.url, key, resume);
    const overSse = await stream.next<{ data: { jobUpdated: { id: string } } }>(ids.length);
    const sseSeconds = (performance.now() - started) / 1000;
    stream.close();
    expect(overSse.map((m) => m.data.jobUpdated.id)).toEqual(ids);
    // The WebSocket replay left the budget spent: this one pays for its own the same way.
    expect(sseSeconds).toBeGreaterThanOrEqual(paced - 0.1);
  });
});

describePostgres('queries admitted by the size of their peers in flight', () => {
  /** Reads of the jobs table waiting for the lock below: the queries executing at this moment. */
  async function readsWaiting(locker: pg.Client): Promise<number> {
    // Inside a transaction the activity view is a snapshot taken once, unless cleared.
    await locker.query('SELECT pg_stat_clear_snapshot()');
    // Only reads waiting for this test's lock, on its own schema's table: the server is shared with
    // the test files running beside this one, whose reads may wait on locks of their own.
    const { rows } = await locker.query<{ n: number }>(
      `SELECT count(DISTINCT a.pid)::int AS n FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
        WHERE a.pid <> pg_backend_pid() AND NOT l.granted AND l.relation = '"Job"'::regclass AND a.query ILIKE '%FROM "Job" WHERE "workspaceId"%'`,
    );
    return rows[0]!.n;
  }

  /** Holds every read of the jobs table (a lock from a second connection) while `during` runs. */
  async function withReadsHeld<T>(t: TestApp, during: (locker: pg.Client) => Promise<T>): Promise<T> {
    const locker = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${t.app.database.schema}"` });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE "Job" IN ACCESS EXCLUSIVE MODE');
    try {
      return await during(locker);
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
  }

  /** The most reads seen waiting at once over `ms`. */
  async function mostWaiting(locker: pg.Client, ms: number): Promise<number> {
    let most = 0;
    for (const until = performance.now() + ms; performance.now() < until;) most = Math.max(most, await readsWaiting(locker));
    return most;
  }

  it(
    'runs a workspace’s queries one at a time while its answers are unknown or large, many at once once they are small; every answer whole or RATE_LIMITED',
    { timeout: 60_000 },
    async () => {
      const t = await startTestApp({
        // No background reads: the test holds the jobs table locked, and counts who waits on it.
        env: {
          ...NO_BACKGROUND_READS,
          RESPONSE_BYTES_PER_WORKSPACE: String(4 * 1024 * 1024),
          RESPONSE_BYTES_BURST: String(4 * 1024 * 1024),
          RATE_LIMIT_PER_KEY: '0',
        },
      });
      try {
        const light = await t.createKey('light');
        const heavy = await t.createKey('heavy');
        await seed(t, light, 3, 10);
        await seed(t, heavy, 40, 64 * 1024 - 64); // about 2.6 MB a list: two of them are more than the burst
        // A new document each time: neither the cache nor the coalescing stands in between.
        let n = 0;
        const distinct = (key: string) => postGraphql(t.url, key, `{ jobs(limit: 50) { id metadata } q${++n}: __typename }`);

        // Nothing answered yet in the light workspace: its first queries go one at a time.
        const first = await withReadsHeld(t, async (locker) => {
          const sent = Array.from({ length: 4 }, () => distinct(light));
          await expect.poll(() => readsWaiting(locker)).toBe(1);
          expect(await mostWaiting(locker, 300)).toBe(1);
          return sent;
        });
        for (const response of await Promise.all(first)) expect(response.status).toBe(200);

        // Its answers are small now: many at once.
        const many = await withReadsHeld(t, async (locker) => {
          const sent = Array.from({ length: 6 }, () => distinct(light));
          await expect.poll(() => readsWaiting(locker)).toBe(6);
          return sent;
        });
        for (const response of await Promise.all(many)) expect(response.status).toBe(200);

        // The heavy workspace learns its size, gets its burst back, then asks four at once.
        expect((await distinct(heavy)).status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 1_200));
        const heavyOnes = await withReadsHeld(t, async (locker) => {
          const sent = Array.from({ length: 4 }, () => distinct(heavy));
          await expect.poll(() => readsWaiting(locker)).toBe(1);
          expect(await mostWaiting(locker, 300)).toBe(1);
          return sent;
        });
        for (const response of await Promise.all(heavyOnes)) {
          const body = (await response.json()) as { data?: { jobs: unknown[] }; errors?: Array<{ extensions?: { code?: string } }> };
          if (response.status === 200 && body.data) expect(body.data.jobs).toHaveLength(40);
          else expect(body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
        }
      } finally {
        await t.close();
      }
    },
  );
});
