import { createClient } from 'graphql-ws';
import pg from 'pg';
import { WebSocket } from 'ws';
import { afterAll, expect, it } from 'vitest';
import { UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { describePostgres } from '../../helpers/databases.js';
import { codesOf, graphql, rest } from '../../helpers/http.js';
import { type OwnCluster, createOwnCluster } from '../../helpers/own-cluster.js';
import { startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { TestSocket } from '../../helpers/ws-client.js';

/**
 * PostgreSQL itself stopped and started again under load, as an operator's restart or a failover
 * does: on a cluster of the test's own, since the shared one must stay up.
 */

const WATCH = 'subscription { jobUpdated(after: "0") { id metadata changeCursor } }';

interface State {
  id: string;
  metadata: { n?: number };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describePostgres('PostgreSQL stopped and started under load', () => {
  it('answers 503 SERVICE_UNAVAILABLE while it is down, keeps subscribers connected, and every subscriber ends at the database state', async () => {
    let cluster: OwnCluster;
    try {
      cluster = await createOwnCluster();
    } catch (error) {
      throw new Error(`could not create a PostgreSQL cluster of the test's own (pg_config, initdb, pg_ctl): ${String(error)}`, { cause: error });
    }
    cleanups.push(() => cluster.remove());
    const t = await startTestApp({
      database: { env: { DATABASE_URL: cluster.url }, drop: async () => {} },
      env: { FEED_CATCH_UP_INTERVAL_MS: '200' },
    });
    cleanups.push(() => t.close());
    const key = await t.createKey('restart');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const jobs: JobRow[] = [];
    for (let i = 0; i < 10; i++) jobs.push(await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: `job ${i}`, steps: [] }));

    // Subscribers: raw graphql-ws sockets, and graphql-ws's own client as dashboards use it.
    const sockets: TestSocket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = await TestSocket.open(t.url, { apiKey: key });
      cleanups.push(() => socket.close());
      socket.subscribe('1', WATCH);
      sockets.push(socket);
    }
    const client = createClient({
      url: `${t.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { apiKey: key },
      retryAttempts: 0,
    });
    cleanups.push(() => client.dispose());
    const clientStates: State[] = [];
    let clientClosed = false;
    client.on('closed', () => (clientClosed = true));
    const unsubscribe = client.subscribe<{ jobUpdated: State }>(
      { query: WATCH },
      { next: ({ data }) => data && clientStates.push(data.jobUpdated), error: () => {}, complete: () => {} },
    );
    cleanups.push(unsubscribe);
    for (const socket of sockets) await socket.waitForNexts('1', jobs.length);
    // And a Server-Sent Events stream, following one job.
    const watched = jobs[0]!.id;
    const events = await openEventStream(t.url, key, `subscription { jobUpdated(id: "${watched}", after: "0") { id metadata changeCursor } }`);
    cleanups.push(() => events.close());
    await events.next(1);

    // Load: a worker reporting, a dashboard polling REST. Every answer is a success or the outage's.
    const seen = { graphql: new Map<string, number>(), rest: new Map<string, number>() };
    const count = (map: Map<string, number>, outcome: string) => map.set(outcome, (map.get(outcome) ?? 0) + 1);
    const acknowledged = new Map<string, number>();
    let running = true;
    let n = 0;
    const worker = (async () => {
      while (running) {
        const id = jobs[n % jobs.length]!.id;
        const value = ++n;
        const response = await graphql(t.url, UpdateJobProgressDocument, { input: { id, metadata: { n: value } } }, key);
        if (response.status === 200 && !response.errors) {
          acknowledged.set(id, value);
          count(seen.graphql, 'ok');
        } else count(seen.graphql, `${response.status} ${codesOf(response).join(',')}`);
        await sleep(5);
      }
    })();
    const poller = (async () => {
      while (running) {
        const response = await rest(t.url, 'GET', '/api/jobs?limit=50', key);
        const code = (response.body as { error?: { code?: string } } | undefined)?.error?.code;
        count(seen.rest, response.status === 200 ? 'ok' : `${response.status} ${code}`);
        await sleep(20);
      }
    })();

    try {
      // The load is flowing (a loaded CI machine may take a few seconds for twenty writes).
      await expect.poll(() => seen.graphql.get('ok') ?? 0, { timeout: 15_000 }).toBeGreaterThan(20);
      await cluster.stop();
      // Down: the outage's answers on both routes (the response cache stops answering once the
      // feed finds the database gone, within its catch-up interval).
      await expect.poll(() => seen.graphql.get('503 SERVICE_UNAVAILABLE') ?? 0, { timeout: 10_000 }).toBeGreaterThan(3);
      await expect.poll(() => seen.rest.get('503 SERVICE_UNAVAILABLE') ?? 0, { timeout: 10_000 }).toBeGreaterThan(3);
      // The change feed saw it too (its listening connection and reads failed): subscribers must
      // catch up from the database after, not from this instance's memory.
      await expect.poll(() => t.app.feed.inStep(workspaceId), { timeout: 10_000 }).toBe(false);
      expect((await rest(t.url, 'GET', '/readyz')).status).toBe(503);
      for (const socket of sockets) expect(socket.closed).toBeUndefined();
      const okBeforeRestart = seen.graphql.get('ok') ?? 0;
      await cluster.start();
      // Up again: the worker's reports succeed again, without a restart of the gateway.
      await expect.poll(() => seen.graphql.get('ok') ?? 0, { timeout: 30_000 }).toBeGreaterThan(okBeforeRestart + 20);
      await expect.poll(async () => (await rest(t.url, 'GET', '/readyz')).status, { timeout: 10_000 }).toBe(200);
    } finally {
      running = false;
      await Promise.all([worker, poller]);
    }
    // Nothing but successes and the outage's answers, on either route.
    expect([...seen.graphql.keys()].sort()).toEqual(['503 SERVICE_UNAVAILABLE', 'ok']);
    expect([...seen.rest.keys()].sort()).toEqual(['503 SERVICE_UNAVAILABLE', 'ok']);

    // What the database holds: every acknowledged report is there.
    const db = new pg.Client({ connectionString: cluster.url });
    await db.connect();
    cleanups.push(() => db.end());
    const rows = (await db.query<{ id: string; metadata: { n?: number } }>('SELECT id, metadata FROM "Job" WHERE "workspaceId" = $1', [workspaceId])).rows;
    const truth = new Map(rows.map((row) => [row.id, row.metadata.n]));
    for (const [id, value] of acknowledged) expect(truth.get(id)).toBeGreaterThanOrEqual(value);

    // Every subscriber stayed connected through the outage and ends at the database's state.
    const newest = (states: State[]) => new Map(states.map((state) => [state.id, state.metadata.n]));
    for (const socket of sockets) {
      await expect
        .poll(() => Object.fromEntries(newest(socket.nexts<{ data: { jobUpdated: State } }>('1').map((m) => m.data.jobUpdated))), { timeout: 15_000 })
        .toEqual(Object.fromEntries(truth));
      expect(socket.closed).toBeUndefined();
    }
    await expect.poll(() => Object.fromEntries(newest(clientStates)), { timeout: 15_000 }).toEqual(Object.fromEntries(truth));
    expect(clientClosed).toBe(false);
    // The SSE stream stayed open through the outage too (a stream that ended makes `next` throw),
    // and brings the watched job's state in the database.
    const lastSseState = () => (events.events.filter((e) => e.event === 'next').at(-1)?.data as { data: { jobUpdated: State } } | undefined)?.data.jobUpdated;
    while (lastSseState()?.metadata.n !== truth.get(watched)) await events.next(events.events.filter((e) => e.event === 'next').length + 1);
    expect(lastSseState()).toMatchObject({ id: watched, metadata: { n: truth.get(watched) } });
  });
});
