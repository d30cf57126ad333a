import { createHash } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, JobsDocument, UpdateJobProgressDocument } from '../../src/graphql/operations.generated.js';
import { describeDb } from '../helpers/databases.js';
import { graphqlOk, rest } from '../helpers/http.js';
import { scrape } from '../helpers/metrics.js';
import { openEventStream } from '../helpers/sse-client.js';
import { type TestApp, startTestApp } from '../helpers/test-app.js';
import { TestSocket } from '../helpers/ws-client.js';
import { positionOfJob } from '../helpers/cursor.js';
import { readAllDocs } from '../helpers/docs.js';

const steps = [{ id: 'a', name: 'A' }];
const WATCH = 'subscription($after: String) { jobUpdated(after: $after) { id progress } }';

describeDb('GET /metrics (Prometheus)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });

  it('counts requests by route, method and status, and what subscribers and the feed are doing', async () => {
    const key = await t.createKey('tenant-zq');
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key)).createJob;
    const before = await scrape(t.url);
    const graphqlOks = 'jobs_gateway_http_request_duration_seconds_count{route="graphql",method="POST",status="200"}';
    const restNotFound = 'jobs_gateway_http_request_duration_seconds_count{route="rest",method="GET",status="404"}';
    const restBefore = before.text.includes(restNotFound) ? before.value(restNotFound) : 0;

    // Two subscriptions in one group over a WebSocket, and one Server-Sent Events stream.
    const socket = await TestSocket.open(t.url, { apiKey: key });
    const from = ((await positionOfJob(t, job.id)) - 1n).toString();
    socket.subscribe('1', WATCH, { after: from });
    socket.subscribe('2', WATCH, { after: from });
    const stream = await openEventStream(t.url, key, WATCH, { after: from });
    try {
      await socket.waitForNexts('1', 1);
      await socket.waitForNexts('2', 1);
      await stream.next(1);
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 5 } }, key);
      await graphqlOk(t.url, JobsDocument, {}, key);
      await socket.waitForNexts('1', 2);
      await stream.next(2);
      expect((await rest(t.url, 'GET', '/api/jobs/00000000-0000-4000-8000-000000000000', key)).status).toBe(404);

      const after = await scrape(t.url);
      expect(after.value(graphqlOks) - before.value(graphqlOks)).toBe(2);
      expect(after.value(restNotFound) - restBefore).toBe(1);
      expect(after.value('jobs_gateway_websocket_connections')).toBe(1);
      expect(after.value('jobs_gateway_subscriptions{delivery="multiplexed"}')).toBe(2);
      expect(after.value('jobs_gateway_subscriptions{delivery="stream"}')).toBe(1);
      expect(after.value('jobs_gateway_subscription_groups')).toBe(1);
      expect(after.value('jobs_gateway_feed_states_total')).toBe(t.app.feed.dispatched);
      expect(after.value('jobs_gateway_feed_states_total') - before.value('jobs_gateway_feed_states_total')).toBeGreaterThanOrEqual(1);
      expect(after.value('jobs_gateway_group_executions_total') - before.value('jobs_gateway_group_executions_total')).toBeGreaterThanOrEqual(1);
      expect(after.value('jobs_gateway_database_queries_total')).toBeGreaterThan(before.value('jobs_gateway_database_queries_total'));
      expect(after.value('process_resident_memory_bytes')).toBeGreaterThan(0);

      // Nothing that names a tenant or a secret.
      const workspaceId = (await t.app.apiKeys.authenticate(key))!.workspaceId;
      for (const secret of [key, createHash('sha256').update(key).digest('hex'), workspaceId, job.id, 'tenant-zq']) {
        expect(after.text).not.toContain(secret);
      }
    } finally {
      stream.close();
      socket.close();
    }
    // Closed subscriptions leave the gauges.
    await expect.poll(async () => (await scrape(t.url)).value('jobs_gateway_websocket_connections')).toBe(0);
    await expect.poll(async () => (await scrape(t.url)).value('jobs_gateway_subscriptions{delivery="stream"}')).toBe(0);
  });

  it('serves exactly the metrics the README lists', async () => {
    const readme = await readAllDocs();
    const documented = new Set(readme.match(/jobs_gateway_[a-z_]+/g));
    const served = new Set([...(await scrape(t.url)).text.matchAll(/^# HELP (jobs_gateway_[a-z_]+)/gm)].map((m) => m[1]!));
    expect([...served].sort()).toEqual([...documented].sort());
  });

  it('is not served with METRICS_ENABLED=false', async () => {
    const off = await startTestApp({ env: { METRICS_ENABLED: 'false' } });
    const response = await fetch(`${off.url}/metrics`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
  });
});
