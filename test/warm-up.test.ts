import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDb } from './helpers/databases.js';
import { rest } from './helpers/http.js';
import { type TestApp, startTestApp } from './helpers/test-app.js';

// A fresh process answered its first 2 s of load 2-3 times slower than a warmed one: after start
// the gateway runs its busiest paths as a workspace that does not exist, and /readyz holds load
// balancers off until that is done. It must write nothing, touch no tenant and log nothing.

describeDb('warm-up after start', () => {
  let t: TestApp;
  let queriesAtStart = 0;

  beforeAll(async () => {
    t = await startTestApp({ env: { WARM_UP_ROUNDS: '400' }, captureLogs: true });
    queriesAtStart = t.app.database.queries.count;
  });
  afterAll(() => t.close());

  it('says "warming" on /readyz until the warm-up ran, then "ready"; it reads the database and writes nothing', async () => {
    expect(await rest(t.url, 'GET', '/readyz')).toMatchObject({ status: 503, body: { status: 'warming' } });
    // Liveness is not readiness: the process answers meanwhile.
    expect((await rest(t.url, 'GET', '/healthz')).status).toBe(200);
    await t.app.warmedUp;
    expect(await rest(t.url, 'GET', '/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });

    // Every round asked the database (a job, a page, the report's lookup), and nothing was written.
    expect(t.app.database.queries.count - queriesAtStart).toBeGreaterThanOrEqual(400);
    const { prisma } = t.app.database;
    expect(await prisma.job.count()).toBe(0);
    expect(await prisma.workspace.count()).toBe(0);
    expect(await prisma.apiKey.count()).toBe(0);
    expect(t.logs.filter((line) => (line as { level: number }).level >= 40)).toEqual([]);
  });

  it('stops when the instance shuts down during it, quietly', async () => {
    const other = await startTestApp({ env: { WARM_UP_ROUNDS: '100000' }, captureLogs: true });
    const queriesAtStart = other.app.database.queries.count;
    await other.close();
    await other.app.warmedUp;
    // A hundred thousand rounds would be minutes of queries; it stopped at the shutdown.
    expect(other.app.database.queries.count - queriesAtStart).toBeLessThan(10_000);
    expect(other.logs.filter((line) => (line as { level: number }).level >= 40)).toEqual([]);
  });
});
