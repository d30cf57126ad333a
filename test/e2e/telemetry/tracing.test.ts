import { randomBytes } from 'node:crypto';
import { beforeAll, expect, it } from 'vitest';
import { describeDb } from '../../helpers/databases.js';
import { type OtlpReceiver as Receiver, OtlpReceiver, type ReceivedSpan } from '../../helpers/otlp-receiver.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { WebhookReceiver } from '../../helpers/webhook-receiver.js';
import { JobsWorker } from '../../../src/sdk/worker.js';

/**
 * OpenTelemetry traces, received by a collector of the test's own over OTLP/HTTP: names, parents
 * and attributes of the spans one request makes, continuing the caller's trace.
 */

const SERVER = 2;
const CLIENT = 3;

/** A W3C traceparent of a sampled span the "caller" made. */
function callerTraceparent(): { traceparent: string; traceId: string; spanId: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceparent: `00-${traceId}-${spanId}-01`, traceId, spanId };
}

/** The span of `spans` named `name` (exactly one). */
function only(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((span) => span.name === name);
  expect(
    found.map((span) => span.name),
    `spans named ${name} among ${spans.map((s) => s.name).join(', ')}`,
  ).toEqual([name]);
  return found[0]!;
}

/** Whether `span` descends from `ancestor` within `spans`. */
function descendsFrom(spans: ReceivedSpan[], span: ReceivedSpan, ancestor: ReceivedSpan): boolean {
  for (let parent = span.parentSpanId; parent; parent = spans.find((s) => s.spanId === parent)?.parentSpanId ?? '') {
    if (parent === ancestor.spanId) return true;
  }
  return false;
}

describeDb('OpenTelemetry tracing', () => {
  let receiver: Receiver;
  let t: TestApp;
  let key: string;
  let jobId: string;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    t = await startTestApp({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_SERVICE_NAME: 'gateway-under-test',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-token=s%20ecret',
      },
    });
    key = await t.createKey('traced', ['jobs:read', 'jobs:write']);
    jobId = (await t.app.jobs.create(await workspaceIdOf(t.app.apiKeys, key), { type: 'collect', displayTitle: 'Traced', steps: [] })).id;
  });

  it('continues the caller’s trace: the HTTP request, its GraphQL operation, and the SQL it runs, each the child of the one before', async () => {
    const caller = callerTraceparent();
    const response = await fetch(`${t.url}/graphql?ignored=secret`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key, traceparent: caller.traceparent },
      // A list: read from the database (a job just written may be served from memory).
      body: JSON.stringify({ query: 'query TracedJob($id: ID) { jobs(competitorId: $id, limit: 7) { id status } }', variables: { id: jobId } }),
    });
    expect(response.status).toBe(200);
    await expect.poll(() => receiver.trace(caller.traceId).some((span) => span.name.startsWith('SELECT')), { timeout: 10_000 }).toBe(true);
    const spans = receiver.trace(caller.traceId);

    const server = only(spans, 'POST /graphql');
    expect(server).toEqual(
      expect.objectContaining({
        parentSpanId: caller.spanId,
        kind: SERVER,
        service: 'gateway-under-test',
        attributes: { 'http.request.method': 'POST', 'http.route': '/graphql', 'http.response.status_code': 200 },
      }),
    );
    const operation = only(spans, 'query TracedJob');
    expect(operation.parentSpanId).toBe(server.spanId);
    expect(operation.attributes).toEqual({ 'graphql.operation.type': 'query', 'graphql.operation.name': 'TracedJob' });
    const statements = spans.filter((span) => span.kind === CLIENT && span.attributes['db.system.name'] === 'postgresql');
    expect(statements.length).toBeGreaterThan(0);
    for (const statement of statements) {
      expect(descendsFrom(spans, statement, operation), statement.name).toBe(true);
      expect(statement.name).toMatch(/^(SELECT|WITH|INSERT|UPDATE|DELETE|transaction|BEGIN)\b/);
      expect(String(statement.attributes['db.query.text'] ?? '')).not.toContain(jobId);
    }
    // Neither the query string, the key, nor the variables are in any span.
    expect(JSON.stringify(spans)).not.toMatch(new RegExp(`secret|${key}|${jobId}`));
    expect(receiver.requests.at(-1)?.['x-collector-token']).toBe('s ecret');
  });

  it('traces a REST route through the GraphQL operation it translates to', async () => {
    const caller = callerTraceparent();
    const response = await fetch(`${t.url}/api/jobs/${jobId}`, { headers: { 'x-api-key': key, traceparent: caller.traceparent } });
    expect(response.status).toBe(200);
    await expect.poll(() => receiver.trace(caller.traceId).some((span) => span.name === 'query RestGetJob'), { timeout: 10_000 }).toBe(true);
    const spans = receiver.trace(caller.traceId);
    const server = only(spans, 'GET /api/*');
    expect(only(spans, 'query RestGetJob').parentSpanId).toBe(server.spanId);
    // The route, not the path: no job's id in any span.
    expect(JSON.stringify(spans)).not.toContain(jobId);
  });

  it('names no span after an operation name longer than 100 characters, and takes a malformed traceparent for none', async () => {
    const long = `Q${'x'.repeat(5_000)}`;
    const caller = callerTraceparent();
    for (const [name, traceparent] of [
      [long, caller.traceparent],
      ['Malformed', `00-${'z'.repeat(32)}-${'1'.repeat(16)}-01`],
      ['Huge', `00-${caller.traceId}-${caller.spanId}-01${'-x'.repeat(4_000)}`],
    ] as const) {
      const response = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key, traceparent },
        body: JSON.stringify({ query: `query ${name} { viewer { scopes } }` }),
      });
      expect(response.status, name.slice(0, 20)).toBe(200);
    }
    await expect.poll(() => receiver.spans.filter((span) => span.name === 'query Malformed' || span.name === 'query Huge').length, { timeout: 10_000 }).toBe(2);
    await expect.poll(() => receiver.trace(caller.traceId).some((span) => span.name === 'query'), { timeout: 10_000 }).toBe(true);
    expect(JSON.stringify(receiver.spans)).not.toContain('x'.repeat(101));
    // A malformed traceparent starts a trace of the gateway's own.
    const malformed = receiver.spans.find((span) => span.name === 'query Malformed')!;
    expect(receiver.spans.find((span) => span.spanId === malformed.parentSpanId)?.parentSpanId).toBe('');
  });

  it('starts a trace of its own for a request without traceparent, and traces no probe', async () => {
    const before = receiver.spans.length;
    await fetch(`${t.url}/healthz`);
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ query: 'query Untraced { viewer { scopes } }' }),
    });
    expect(response.status).toBe(200);
    await expect.poll(() => receiver.spans.slice(before).some((span) => span.name === 'query Untraced'), { timeout: 10_000 }).toBe(true);
    const root = receiver.spans.slice(before).find((span) => span.name === 'POST /graphql')!;
    expect(root.parentSpanId).toBe('');
    expect(receiver.spans.some((span) => span.name.includes('healthz') || String(span.attributes['http.route']).includes('healthz'))).toBe(false);
  });
});

describeDb('OpenTelemetry spans of the change feed and webhooks', () => {
  it('makes a span per feed dispatch, and a client span per webhook attempt whose traceparent the receiver gets', async () => {
    const receiver = await OtlpReceiver.start();
    const hooks = await WebhookReceiver.start();
    const t = await startTestApp({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '50', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '200' },
    });
    const manager = await t.createKey('hooks', ['webhooks:manage', 'jobs:write']);
    const created = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': manager },
      body: JSON.stringify({
        query: 'mutation Hook($url: String!) { createWebhookEndpoint(input: { url: $url, events: ["job.created"] }) { secret } }',
        variables: { url: hooks.url },
      }),
    });
    expect(created.status).toBe(200);
    const job = await t.app.jobs.create(await workspaceIdOf(t.app.apiKeys, manager), { type: 'hooked', displayTitle: 'Hooked', steps: [] });

    await expect.poll(() => hooks.received.length, { timeout: 10_000 }).toBeGreaterThan(0);
    const sent = hooks.received[0]!;
    expect(sent.event.data.id).toBe(job.id);
    const [, traceId, spanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(sent.headers.traceparent ?? '') ?? [];
    expect(traceId, 'the receiver got a traceparent').toBeDefined();
    await expect.poll(() => receiver.spans.some((span) => span.spanId === spanId), { timeout: 10_000 }).toBe(true);
    const attempt = receiver.spans.find((span) => span.spanId === spanId)!;
    expect(attempt).toEqual(
      expect.objectContaining({
        traceId,
        name: 'POST',
        kind: CLIENT,
        attributes: expect.objectContaining({
          'http.request.method': 'POST',
          'server.address': '127.0.0.1',
          'http.response.status_code': 204,
          'webhook.id': sent.event.id,
        }),
      }),
    );
    expect(JSON.stringify(attempt)).not.toContain(hooks.url);

    await expect.poll(() => receiver.spans.some((span) => span.name === 'jobUpdated dispatch'), { timeout: 10_000 }).toBe(true);
    const dispatch = receiver.spans.find((span) => span.name === 'jobUpdated dispatch')!;
    expect(dispatch.attributes).toEqual({ 'jobs_gateway.feed.changes': expect.any(Number), 'jobs_gateway.feed.workspaces': 1 });
  });
});

describeDb('a job’s life as one trace', () => {
  it('the worker SDK continues the trace its job was created in; the feed’s dispatch links to each write, and webhook attempts are the writes’ children', async () => {
    const receiver = await OtlpReceiver.start();
    const hooks = await WebhookReceiver.start();
    const t = await startTestApp({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '50', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_PROGRESS_INTERVAL_MS: '1000' },
    });
    const key = await t.createKey('life', ['webhooks:manage', 'jobs:read', 'jobs:write']);
    const hook = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({
        query: 'mutation Hook($url: String!) { createWebhookEndpoint(input: { url: $url, events: ["job.completed"] }) { secret } }',
        variables: { url: hooks.url },
      }),
    });
    expect(hook.status).toBe(200);

    const worker = new JobsWorker({ url: t.url, apiKey: key, retries: 0 });
    const job = await worker.createJob({ type: 'traced-life', displayTitle: 'A traced life', steps: [{ id: 'one', name: 'One' }] });
    const [, traceId, createSpanId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(job.state?.traceparent ?? '') ?? [];
    expect(traceId, 'createJob answers the job’s traceparent').toBeDefined();
    // A dispatch carries a job's latest state: each write is let out before the next, so that each is carried.
    const linkedWrite = (operation: string) => () => {
      const write = receiver.trace(traceId!).find((span) => span.name === operation);
      return receiver.spans.some((span) => span.name === 'jobUpdated dispatch' && span.links.some((link) => link.spanId === write?.spanId));
    };
    await expect.poll(linkedWrite('mutation WorkerCreateJob'), { timeout: 10_000 }).toBe(true);
    await job.report({ progress: 50, stepId: 'one', stepStatus: 'RUNNING' });
    await expect.poll(linkedWrite('mutation WorkerReportProgress'), { timeout: 10_000 }).toBe(true);
    await job.complete();
    await expect.poll(linkedWrite('mutation WorkerCompleteJob'), { timeout: 10_000 }).toBe(true);
    await worker.close();

    await expect.poll(() => hooks.received.length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => receiver.trace(traceId!).filter((span) => span.name === 'POST' && span.kind === CLIENT).length, { timeout: 10_000 }).toBe(1);
    const spans = receiver.trace(traceId!);
    const create = only(spans, 'mutation WorkerCreateJob');
    expect(create.spanId).toBe(createSpanId);
    // Every later call of the worker is a request in the job's trace, under the span that created it.
    for (const name of ['mutation WorkerReportProgress', 'mutation WorkerCompleteJob']) {
      const operation = only(spans, name);
      const request = spans.find((span) => span.spanId === operation.parentSpanId)!;
      expect(request, name).toEqual(expect.objectContaining({ name: 'POST /graphql', kind: SERVER, parentSpanId: createSpanId }));
    }
    // Background work is in no request's trace: the dispatches are roots of their own.
    expect(receiver.spans.filter((span) => span.name === 'jobUpdated dispatch' && span.traceId === traceId)).toEqual([]);
    // The feed's dispatches link to the writes they carried (each was awaited above), and to nothing else of this trace.
    const writes = new Set(['mutation WorkerCreateJob', 'mutation WorkerReportProgress', 'mutation WorkerCompleteJob'].map((name) => only(spans, name).spanId));
    const links = receiver.spans.filter((span) => span.name === 'jobUpdated dispatch').flatMap((span) => span.links.filter((link) => link.traceId === traceId));
    expect(links.length).toBeGreaterThanOrEqual(3);
    for (const link of links) expect(writes.has(link.spanId)).toBe(true);
    // The completion's webhook attempt is the completing write's child, and its receiver continues it.
    const attempt = spans.find((span) => span.name === 'POST' && span.kind === CLIENT)!;
    expect(attempt.parentSpanId).toBe(only(spans, 'mutation WorkerCompleteJob').spanId);
    expect(hooks.received[0]!.headers.traceparent).toBe(`00-${traceId}-${attempt.spanId}-01`);
  });
});

describeDb('OpenTelemetry sampling', () => {
  it('exports nothing of a trace its sampler drops (traceidratio 0), and honours a caller’s unsampled flag', async () => {
    const receiver = await OtlpReceiver.start();
    const t = await startTestApp({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0',
      },
    });
    const key = await t.createKey('unsampled', ['jobs:read']);
    let limit = 0;
    // Each a different query: a cached result would run no SQL.
    const send = (headers: Record<string, string>) =>
      fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
        body: JSON.stringify({ query: `{ jobs(limit: ${++limit}) { id } }` }),
      });
    const unsampled = callerTraceparent();
    await send({ traceparent: unsampled.traceparent.replace(/-01$/, '-00') });
    await send({});
    // A sampled caller is followed whatever the ratio (parent-based), which also shows the exporter works here.
    const sampled = callerTraceparent();
    await send({ traceparent: sampled.traceparent });
    await expect.poll(() => receiver.trace(sampled.traceId).length, { timeout: 10_000 }).toBeGreaterThan(2);
    expect(receiver.spans.filter((span) => span.traceId !== sampled.traceId)).toEqual([]);
  });
});
