import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { JobCancelledError, JobNotRunningError, JobStalledError, JobsWorker } from 'jobs-gateway/worker';
import { WebSocket } from 'ws';
import { afterAll, expect, it } from 'vitest';
import { describeDb, freshDatabase } from '../../helpers/databases.js';
import { rest } from '../../helpers/http.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { readDoc } from '../../helpers/docs.js';

/** The worker SDK as a worker imports it (`jobs-gateway/worker`, the package's build), against a real gateway. */

const STEPS = [
  { id: 'collect', name: 'Collecting Intel' },
  { id: 'ingest', name: 'Processing Intel' },
];

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Requests the SDK sends, counted on their way through the real fetch. */
function countingFetch(): { fetch: typeof fetch; sent: () => number } {
  let sent = 0;
  return {
    fetch: (input, init) => {
      sent++;
      return fetch(input, init);
    },
    sent: () => sent,
  };
}

function workerFor(t: TestApp, apiKey: string, options: Partial<ConstructorParameters<typeof JobsWorker>[0]> = {}): JobsWorker {
  const worker = new JobsWorker({ url: t.url, apiKey, minDelayMs: 20, maxDelayMs: 200, webSocketImpl: WebSocket, ...options });
  cleanups.push(() => worker.close());
  return worker;
}

it("the README's worker example uses only what the SDK exports", async () => {
  const readme = await readDoc('docs/api.md');
  const example = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((block) => block[1]!).find((block) => block.includes("from 'jobs-gateway/worker'"))!;
  const sdk = await import('jobs-gateway/worker');
  const imported = /import \{ ([^}]+) \} from 'jobs-gateway\/worker'/
    .exec(example)![1]!
    .split(',')
    .map((name) => name.trim());
  for (const name of imported) expect(sdk, name).toHaveProperty(name);
  const jobMethods = [...example.matchAll(/\bjob\.(\w+)/g)].map((m) => m[1]!);
  const worker = new sdk.JobsWorker({ url: 'http://127.0.0.1:1', apiKey: 'x' });
  const job = worker.job('00000000-0000-4000-8000-000000000000');
  for (const name of jobMethods) expect(name in job, `job.${name}`).toBe(true);
  for (const name of [...example.matchAll(/\bworker\.(\w+)/g)].map((m) => m[1]!)) expect(name in worker, `worker.${name}`).toBe(true);
  expect(jobMethods).toEqual(expect.arrayContaining(['cancelled', 'report', 'startStep', 'complete', 'fail']));
});

describeDb('the worker SDK (jobs-gateway/worker)', () => {
  it('creates a job, runs its steps, reports progress and completes it: the database agrees', async () => {
    const t = await startTestApp();
    const key = await t.createKey('sdk', ['jobs:read', 'jobs:write']);
    const worker = workerFor(t, key);
    const job = await worker.createJob({ type: 'collect', displayTitle: 'Analyzing', competitorId: 'c1', steps: STEPS, metadata: { run: 1 } });
    expect(job.state).toMatchObject({ status: 'RUNNING', currentStep: 'Collecting Intel', progress: 0 });
    await job.report({ progress: 30, metadata: { pages: 12 } });
    const started = await job.startStep('ingest', 60);
    expect(started.steps.map((step) => [step.key, step.status])).toEqual([
      ['collect', 'COMPLETED'],
      ['ingest', 'RUNNING'],
    ]);
    await job.complete();
    const stored = await t.app.jobs.get(await workspaceIdOf(t.app.apiKeys, key), job.id);
    expect(stored).toMatchObject({ status: 'COMPLETED', progress: 100, metadata: { run: 1, pages: 12 } });
  });

  it('learns of a cancellation: its signal aborts, and the next report throws JobCancelledError', async () => {
    const t = await startTestApp();
    const key = await t.createKey('sdk-cancel', ['jobs:read', 'jobs:write', 'jobs:cancel']);
    const worker = workerFor(t, key);
    const job = await worker.createJob({ type: 'collect', displayTitle: 'To be cancelled', steps: STEPS });
    const signal = job.cancelled;
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(1);
    expect(signal.aborted).toBe(false);
    // A dashboard cancels it, through the REST route old clients use.
    expect((await rest(t.url, 'POST', `/api/jobs/${job.id}/cancel`, key)).status).toBe(200);
    await expect.poll(() => signal.aborted, { timeout: 10_000 }).toBe(true);
    expect(signal.reason).toBeInstanceOf(JobCancelledError);
    const report = job.report({ progress: 50 });
    await expect(report).rejects.toBeInstanceOf(JobCancelledError);
    await expect(report).rejects.toMatchObject({ jobId: job.id, code: 'JOB_NOT_RUNNING' });
  });

  it('heartbeats on its own while a job is open, so silent work does not stall; released, the job stalls and the next report says so', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const key = await t.createKey('sdk-heartbeat', ['jobs:read', 'jobs:write']);
    const counting = countingFetch();
    const worker = workerFor(t, key, { fetch: counting.fetch });
    const job = await worker.createJob({ type: 'collect', displayTitle: 'Long and quiet', steps: STEPS, heartbeatTimeoutMs: 1_000 });
    // Three timeouts without a report: only the handle's heartbeats keep it running.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    expect((await t.app.jobs.get(workspaceId, job.id))?.status).toBe('RUNNING');
    expect(counting.sent()).toBeGreaterThanOrEqual(6); // the creation, then about three a second
    expect(t.app.sweeper.stats().stalled).toBe(0);

    job.release();
    await expect.poll(async () => (await t.app.jobs.get(workspaceId, job.id))?.status, { timeout: 5_000 }).toBe('FAILED');
    const report = job.report({ progress: 50 });
    await expect(report).rejects.toBeInstanceOf(JobStalledError);
    await expect(report).rejects.toMatchObject({ jobId: job.id, code: 'JOB_NOT_RUNNING', endedAs: 'STALLED' });
    await expect(report).rejects.not.toBeInstanceOf(JobCancelledError);
  });

  it('tells a worker cut off from the gateway that its job stalled: the signal aborts with JobStalledError, not a cancel', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const key = await t.createKey('sdk-cut-off', ['jobs:read', 'jobs:write']);
    let reachable = true;
    const worker = workerFor(t, key, {
      retries: 0,
      fetch: (input, init) => (reachable ? fetch(input, init) : Promise.reject(new Error('network down'))),
    });
    const job = await worker.createJob({ type: 'collect', displayTitle: 'Cut off', steps: STEPS, heartbeatTimeoutMs: 1_000 });
    const signal = job.cancelled;
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(1);
    // Its requests fail from here on (the WebSocket it follows the job on stays up).
    reachable = false;
    await expect.poll(() => signal.aborted, { timeout: 10_000 }).toBe(true);
    expect(signal.reason).toBeInstanceOf(JobStalledError);
    expect(signal.reason).toMatchObject({ endedAs: 'STALLED', message: 'Stalled: no report for 1 s' });
    reachable = true;
    await expect(job.complete()).rejects.toBeInstanceOf(JobStalledError);
  });

  it('reports a job another process ended as JobNotRunningError with how it ended, and a cancel only when it was cancelled', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const key = await t.createKey('sdk-ended', ['jobs:read', 'jobs:write']);
    const worker = workerFor(t, key);
    const job = await worker.createJob({ type: 'collect', displayTitle: 'Failed elsewhere', steps: STEPS });
    await worker.job(job.id).fail('Another process gave up');
    const completing = job.complete();
    await expect(completing).rejects.toBeInstanceOf(JobNotRunningError);
    await expect(completing).rejects.toMatchObject({ endedAs: 'FAILED' });
    await expect(completing).rejects.not.toBeInstanceOf(JobCancelledError);
    await expect(completing).rejects.not.toBeInstanceOf(JobStalledError);
  });

  it('creates a job once when the answer to its createJob is lost: the retry gets the job the first attempt created', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const key = await t.createKey('sdk-lost-answer', ['jobs:read', 'jobs:write']);
    // A proxy of the test's own: the first createJob goes through, and its answer is dropped with the connection.
    let dropped = 0;
    const proxy = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        void fetch(`${t.url}${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body }).then(async (upstream) => {
          const answer = Buffer.from(await upstream.arrayBuffer());
          if (body.includes('createJob') && dropped++ === 0) return req.socket.destroy();
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' }).end(answer);
        });
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => proxy.close(resolve)));
    const worker = new JobsWorker({ url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, apiKey: key, minDelayMs: 20, maxDelayMs: 200 });

    const job = await worker.createJob({ type: 'collect', displayTitle: 'Answer lost', steps: STEPS });
    expect(dropped).toBe(2); // the lost answer, then the retry's
    const all = await t.app.jobs.list(await workspaceIdOf(t.app.apiKeys, key));
    expect(all.filter((j) => j.displayTitle === 'Answer lost').map((j) => j.id)).toEqual([job.id]);
    job.release();
  });

  it('completes a job once even when the answer to completeJob is lost: the retry answers the completed job', async () => {
    const t = await startTestApp();
    cleanups.push(() => t.close());
    const key = await t.createKey('sdk-lost-complete', ['jobs:read', 'jobs:write']);
    let dropped = 0;
    const worker = workerFor(t, key, {
      // The first completeJob reaches the gateway, and the worker never hears back.
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (typeof init?.body === 'string' && init.body.includes('completeJob') && dropped++ === 0) throw new TypeError('fetch failed: socket hang up');
        return response;
      },
    });
    const job = await worker.createJob({ type: 'collect', displayTitle: 'Completion lost', steps: STEPS });
    expect(await job.complete()).toMatchObject({ id: job.id, status: 'COMPLETED' });
    expect(dropped).toBe(2);
  });

  it('never retries a refusal (4xx): a backwards progress fails at once, after one request', async () => {
    const t = await startTestApp();
    const key = await t.createKey('sdk-4xx', ['jobs:write']);
    const counting = countingFetch();
    const worker = workerFor(t, key, { fetch: counting.fetch });
    const job = await worker.createJob({ type: 'collect', displayTitle: 'x', steps: STEPS });
    await job.report({ progress: 50 });
    const before = counting.sent();
    await expect(job.report({ progress: 10 })).rejects.toMatchObject({ name: 'GatewayError', code: 'BAD_USER_INPUT' });
    expect(counting.sent() - before).toBe(1);
    // A key without the scope: FORBIDDEN, once.
    const reader = await t.createKey('sdk-4xx', ['jobs:read']);
    const refused = workerFor(t, reader, { fetch: counting.fetch });
    const sentBefore = counting.sent();
    await expect(refused.createJob({ type: 'collect', displayTitle: 'x', steps: STEPS })).rejects.toMatchObject({ name: 'GatewayError', code: 'FORBIDDEN' });
    expect(counting.sent() - sentBefore).toBe(1);
  });

  it('retries 429 after the Retry-After the gateway gives, until the report lands', async () => {
    const t = await startTestApp({ env: { RATE_LIMIT_PER_KEY: '1', RATE_LIMIT_BURST: '1' } });
    const key = await t.createKey('sdk-429', ['jobs:write']);
    const counting = countingFetch();
    const worker = workerFor(t, key, { fetch: counting.fetch });
    const job = await worker.createJob({ type: 'collect', displayTitle: 'x', steps: STEPS });
    // Three reports at once: one token a second, so two are refused (429) and retried.
    const states = await Promise.all([job.report({ metadata: { a: 1 } }), job.report({ metadata: { b: 2 } }), job.report({ metadata: { c: 3 } })]);
    expect(states).toHaveLength(3);
    expect(counting.sent()).toBeGreaterThan(4);
    const stored = await t.app.jobs.get(await workspaceIdOf(t.app.apiKeys, key), job.id);
    expect(stored?.metadata).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('retries while the gateway cannot be reached, and lands once it is up', async () => {
    // A port with nothing listening yet: the first attempts are refused by the kernel.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const seed = await startTestApp({ database });
    const key = await seed.createKey('sdk-down', ['jobs:write']);
    await seed.close();

    const counting = countingFetch();
    const worker = new JobsWorker({ url: `http://127.0.0.1:${port}`, apiKey: key, minDelayMs: 100, maxDelayMs: 400, retries: 20, fetch: counting.fetch });
    const creating = worker.createJob({ type: 'collect', displayTitle: 'After the outage', steps: STEPS });
    await expect.poll(() => counting.sent()).toBeGreaterThanOrEqual(2);
    const t = await startTestApp({ database, env: { PORT: String(port) } });
    cleanups.push(() => t.close());
    const job = await creating;
    expect((await t.app.jobs.get(await workspaceIdOf(t.app.apiKeys, key), job.id))?.displayTitle).toBe('After the outage');
  });
});
