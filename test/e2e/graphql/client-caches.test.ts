import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import { cacheExchange } from '@urql/exchange-graphcache';
import { Client as UrqlClient, fetchExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import { Kind, OperationTypeNode } from 'graphql';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { settleFeed } from '../../helpers/feed.js';
import { describeDb } from '../../helpers/databases.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';

/**
 * The normalized caches dashboards are built on, with their default configuration, against the
 * gateway: what they return must be what the server holds, across jobs whose steps share keys
 * (every `collect` job has a `collect` step). Apollo Client (InMemoryCache, GraphQLWsLink) and urql
 * (Graphcache, graphql-ws), each querying jobs with steps and following jobUpdated.
 */

// The README's selections, with and without the step's key.
const JOBS = 'query Jobs { jobs(limit: 50) { id status currentStep steps { id key name status } } }';
const JOBS_WITHOUT_KEY = 'query JobsWithoutKey { jobs(limit: 50) { id status steps { id name status } } }';
const WATCH = 'subscription Watch { jobUpdated { id status currentStep steps { id key name status } } }';

const STEPS = [
  { id: 'collect', name: 'Collecting Intel' },
  { id: 'ingest', name: 'Processing Intel' },
  { id: 'build-matrix', name: 'Building Competitor Matrix' },
];

let t: TestApp;
let key: string;
let workspaceId: string;
const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the server answers for `query`, as plain JSON (no client in between). */
async function fromServer(query: string): Promise<unknown> {
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as { data: unknown; errors?: unknown };
  expect(body.errors).toBeUndefined();
  return body.data;
}

/** A client's result without the `__typename`s it adds. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (name, field: unknown) => (name === '__typename' ? undefined : field)));
}

/** Jobs of one kind in different places: their `collect` steps differ. */
async function seedJobs(): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: `Competitor ${i}`, steps: STEPS })).id);
  await t.app.jobs.fail(workspaceId, ids[0]!, 'Scraper timed out'); // collect FAILED
  await t.app.jobs.updateProgress(workspaceId, ids[1]!, { progress: 40, stepId: 'ingest', stepStatus: 'RUNNING' }); // collect COMPLETED
  await t.app.jobs.complete(workspaceId, ids[2]!); // all COMPLETED
  return ids; // ids[3]: collect RUNNING
}

/** Moves every job on, so that each pushed state differs from what the clients cached. */
async function moveJobs(ids: string[]): Promise<void> {
  await t.app.jobs.updateProgress(workspaceId, ids[1]!, { progress: 80, stepId: 'build-matrix', stepStatus: 'RUNNING' });
  await t.app.jobs.fail(workspaceId, ids[3]!, 'Cancelled by a test');
  await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Competitor 4', steps: STEPS });
}

describeDb('normalized client caches with their defaults', () => {
  beforeAll(async () => {
    t = await startTestApp();
  });

  /** Each client gets a workspace of its own. */
  async function useWorkspace(name: string): Promise<void> {
    key = await t.createKey(name);
    workspaceId = await workspaceIdOf(t.app.apiKeys, key);
  }

  it('Apollo Client (InMemoryCache, GraphQLWsLink) returns what the server holds, from queries and after jobUpdated', async () => {
    await useWorkspace('apollo');
    const ids = await seedJobs();
    const ws = createWsClient({ url: `${t.url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { apiKey: key } });
    cleanups.push(() => ws.dispose());
    const link = ApolloLink.split(
      ({ query }) => {
        const definition = getMainDefinition(query);
        return definition.kind === Kind.OPERATION_DEFINITION && definition.operation === OperationTypeNode.SUBSCRIPTION;
      },
      new GraphQLWsLink(ws),
      new HttpLink({ uri: `${t.url}/graphql`, headers: { 'x-api-key': key } }),
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    cleanups.push(() => client.stop());

    for (const query of [JOBS, JOBS_WITHOUT_KEY]) {
      const { data } = await client.query({ query: gql(query), fetchPolicy: 'network-only' });
      expect(plain(data)).toEqual(await fromServer(query));
      // And read back from the cache alone, where steps of different jobs were merged before.
      expect(plain(client.readQuery({ query: gql(query) }))).toEqual(await fromServer(query));
    }

    // Following jobUpdated: every pushed state lands in the cache, normalized. The seed's own changes
    // are dispatched first, so that what is pushed is the three moves alone.
    await settleFeed(t.app.feed);
    const pushed: string[] = [];
    const members = t.app.webSockets.multiplexer.memberCount;
    const subscription = client.subscribe({ query: gql(WATCH) }).subscribe({
      next: ({ data }) => {
        const job = (data as { jobUpdated?: { id: string } } | undefined)?.jobUpdated;
        if (job) pushed.push(job.id);
      },
    });
    cleanups.push(() => subscription.unsubscribe());
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(members + 1);
    await moveJobs(ids);
    await expect.poll(() => pushed.length, { timeout: 10_000 }).toBe(3);
    // The cached list (which does not know the new job) agrees with the server on every job it holds.
    const cached = plain(client.readQuery({ query: gql(JOBS) })) as { jobs: Array<{ id: string }> };
    const server = (await fromServer(JOBS)) as { jobs: Array<{ id: string }> };
    expect(cached.jobs).toEqual(server.jobs.filter((job) => cached.jobs.some((c) => c.id === job.id)));
    expect(cached.jobs).toHaveLength(4);
  });

  it('urql with Graphcache (and graphql-ws) returns what the server holds, from queries and after jobUpdated', async () => {
    await useWorkspace('urql');
    const ids = await seedJobs();
    const ws = createWsClient({ url: `${t.url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { apiKey: key } });
    cleanups.push(() => ws.dispose());
    const warnings: unknown[] = [];
    const client = new UrqlClient({
      url: `${t.url}/graphql`,
      fetchOptions: { headers: { 'x-api-key': key } },
      exchanges: [
        // Graphcache warns (and does not normalize) when an entity has no key.
        cacheExchange({ logger: (severity, message) => severity !== 'debug' && warnings.push(message) }),
        fetchExchange,
        subscriptionExchange({
          forwardSubscription: (request) => ({
            subscribe: (sink) => ({ unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, sink) }),
          }),
        }),
      ],
    });

    for (const query of [JOBS, JOBS_WITHOUT_KEY]) {
      const fetched = await client.query(query, {}, { requestPolicy: 'network-only' }).toPromise();
      expect(fetched.error).toBeUndefined();
      expect(plain(fetched.data)).toEqual(await fromServer(query));
      const cached = await client.query(query, {}, { requestPolicy: 'cache-only' }).toPromise();
      expect(plain(cached.data)).toEqual(await fromServer(query));
    }

    await settleFeed(t.app.feed);
    const pushed: string[] = [];
    const members = t.app.webSockets.multiplexer.memberCount;
    const subscription = client.subscription(WATCH, {}).subscribe((result) => {
      const job = (result.data as { jobUpdated?: { id: string } } | undefined)?.jobUpdated;
      if (job) pushed.push(job.id);
    });
    cleanups.push(() => subscription.unsubscribe());
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(members + 1);
    await moveJobs(ids);
    await expect.poll(() => pushed.length, { timeout: 10_000 }).toBe(3);
    const cached = plain((await client.query(JOBS, {}, { requestPolicy: 'cache-only' }).toPromise()).data) as { jobs: Array<{ id: string }> };
    const server = (await fromServer(JOBS)) as { jobs: Array<{ id: string }> };
    expect(cached.jobs).toEqual(server.jobs.filter((job) => cached.jobs.some((c) => c.id === job.id)));
    expect(cached.jobs).toHaveLength(4);
    expect(warnings).toEqual([]);
  });
});
