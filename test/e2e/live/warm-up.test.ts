import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDb, freshDatabase } from '../../helpers/databases.js';
import { graphqlOk, rest } from '../../helpers/http.js';
import { CreateJobDocument } from '../../../src/graphql/operations.generated.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { oneStepJob } from '../../helpers/jobs.js';

// A fresh process answered its first 2 s of load 2-3 times slower than a warmed one: after start
// the gateway runs its busiest paths as a workspace that does not exist, and /readyz holds load
// balancers off until that is done. It must write nothing, touch no tenant and log nothing.

describeDb('warm-up after start', () => {
  let t: TestApp;
  let queriesAtStart = 0;

  let tenantJob: { id: string; changeSeq: bigint; updatedAt: Date };

  beforeAll(async () => {
    // A tenant with a job, written before the instance under test starts (the warm-up begins with it).
    const database = await freshDatabase();
    const first = await startTestApp({ database });
    const key = await first.createKey('tenant');
    const created = await graphqlOk(first.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'Kept', competitorId: 'c-1' }) }, key);
    tenantJob = await (
      await first.app.database.prisma()
    ).job.findUniqueOrThrow({
      where: { id: created.createJob.id },
      select: { id: true, changeSeq: true, updatedAt: true },
    });
    await first.close();
    t = await startTestApp({ database, env: { WARM_UP_ROUNDS: '100' }, captureLogs: true });
    queriesAtStart = t.app.database.queries.count;
  });
  afterAll(async () => {
    await t.close();
    await t.database.drop();
  });

  it('says "warming" on /readyz until the warm-up ran, then "ready"; it reads the database and writes nothing', async () => {
    expect(await rest(t.url, 'GET', '/readyz')).toMatchObject({ status: 503, body: { status: 'warming' } });
    // Liveness is not readiness: the process answers meanwhile.
    expect((await rest(t.url, 'GET', '/healthz')).status).toBe(200);
    await t.app.warmedUp;
    expect(await rest(t.url, 'GET', '/readyz')).toMatchObject({ status: 200, body: { status: 'ready' } });

    // Every round asked the database (a job, a page, the report's lookup), and nothing was written.
    expect(t.app.database.queries.count - queriesAtStart).toBeGreaterThanOrEqual(100);
    const prisma = await t.app.database.prisma();
    expect(await prisma.job.count()).toBe(1);
    expect(await prisma.workspace.count()).toBe(1);
    expect(await prisma.apiKey.count()).toBe(1);
    expect(await prisma.job.findUniqueOrThrow({ where: { id: tenantJob.id }, select: { id: true, changeSeq: true, updatedAt: true } })).toEqual(tenantJob);
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
