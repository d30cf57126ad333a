import net from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  CreateWebhookEndpointDocument,
  type CreateWebhookEndpointInput,
  RedeliverWebhookDocument,
  RotateWebhookSecretDocument,
  UpdateJobProgressDocument,
  UpdateWebhookEndpointDocument,
  WebhookDeliveriesDocument,
  WebhookEndpointsDocument,
} from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { competitorAnalysis, oneStepJob } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { type Received, WebhookReceiver } from '../../helpers/webhook-receiver.js';

const ENV = { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_TIMEOUT_MS: '2000', WEBHOOK_PROGRESS_INTERVAL_MS: '1000' };
const ENDINGS = ['job.completed', 'job.failed'];

describeDb('webhooks', () => {
  let t: TestApp;
  let manager: string;
  let worker: string;

  beforeAll(async () => {
    t = await startTestApp({ env: ENV });
    manager = await t.createKey('hooks', ['webhooks:manage', 'jobs:read', 'jobs:cancel']);
    worker = await t.createKey('hooks', ['jobs:read', 'jobs:write']);
  });
  afterAll(() => t.close());

  async function endpoint(receiver: WebhookReceiver, input: Partial<CreateWebhookEndpointInput> = {}, key = manager) {
    const { createWebhookEndpoint } = await graphqlOk(
      t.url,
      CreateWebhookEndpointDocument,
      { input: { url: receiver.url, events: ['job.created', ...ENDINGS], ...input } },
      key,
    );
    return createWebhookEndpoint;
  }
  const createJob = async (input = oneStepJob(), key = worker) => (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;
  const complete = (id: string, key = worker) => graphqlOk(t.url, CompleteJobDocument, { id }, key);
  const deliveries = async (endpointId: string) => (await graphqlOk(t.url, WebhookDeliveriesDocument, { endpointId, first: 100 }, manager)).webhookDeliveries;
  const finished = (received: Received[], jobIds: string[]) =>
    jobIds.every((id) => received.some((r) => r.event.data.id === id && ENDINGS.includes(r.event.type)));

  it('signs every event per Standard Webhooks (verified with the spec’s library); the body is the REST job with the event’s id, type and cursor', async () => {
    const receiver = await WebhookReceiver.start();
    const { secret, endpoint: created } = await endpoint(receiver);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(created).toMatchObject({ url: receiver.url, events: ['job.created', 'job.completed', 'job.failed'], enabled: true, failingSince: null });

    const job = await createJob(competitorAnalysis());
    await complete(job.id);
    const cancelled = await createJob();
    await graphqlOk(t.url, CancelJobDocument, { id: cancelled.id }, manager);
    await receiver.until((received) => finished(received, [job.id, cancelled.id]));

    const verifier = new Webhook(secret);
    for (const { headers, body, event } of receiver.received) {
      expect(verifier.verify(body, headers)).toEqual(event);
      expect(headers['webhook-id']).toBe(event.id);
      expect(headers['content-type']).toBe('application/json');
      expect(event.changeCursor).toMatch(/^\d+$/);
    }
    // A signature by another secret, or over another body, does not verify.
    const [first] = receiver.received;
    expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(first!.body, first!.headers)).toThrow();
    expect(() => verifier.verify(first!.body.replace('"job.', '"jab.'), first!.headers)).toThrow();

    expect(receiver.eventsOf(job.id).map((r) => r.event.type)).toEqual(['job.created', 'job.completed']);
    const [createdEvent, completedEvent] = receiver.eventsOf(job.id).map((r) => r.event);
    expect(createdEvent!.data).toMatchObject({ id: job.id, status: 'running', progress: 0, completedAt: null });
    // The completed event's job is exactly what the REST route answers for it now.
    expect(completedEvent!.data).toEqual(((await rest(t.url, 'GET', `/api/jobs/${job.id}`, manager)).body as { job: unknown }).job);
    expect(completedEvent!.reason).toBeUndefined();
    const cancelEvent = receiver.eventsOf(cancelled.id).at(-1)!.event;
    expect(cancelEvent).toMatchObject({ type: 'job.failed', reason: 'cancelled', data: { status: 'failed', currentStep: 'Cancelled' } });

    // Each event once, and the log says so.
    expect(new Set(receiver.received.map((r) => r.event.id)).size).toBe(receiver.received.length);
    const log = await deliveries(created.id);
    expect(log).toHaveLength(4);
    expect(log.every((d) => d.state === 'DELIVERED' && d.attempts === 1 && d.lastStatus === 204 && d.lastError === null)).toBe(true);
  });

  it('sends only what an endpoint asked for: its events, its competitor and type, and never another workspace’s jobs', async () => {
    const receiver = await WebhookReceiver.start();
    await endpoint(receiver, { events: ['job.completed'], competitorId: 'acme', jobType: 'collect' });
    const elsewhere = await WebhookReceiver.start();
    const otherManager = await t.createKey('hooks-other', ['webhooks:manage']);
    await endpoint(elsewhere, { events: ['job.created', 'job.completed'] }, otherManager);

    const wanted = await createJob(oneStepJob({ competitorId: 'acme', type: 'collect' }));
    const otherCompetitor = await createJob(oneStepJob({ competitorId: 'globex', type: 'collect' }));
    const otherType = await createJob(oneStepJob({ competitorId: 'acme', type: 'discover-products' }));
    for (const job of [otherCompetitor, otherType, wanted]) await complete(job.id);
    await receiver.until((received) => finished(received, [wanted.id]));
    // The last change was written after the others: had they been sent, they would have come first.
    expect(receiver.received.map((r) => [r.event.type, r.event.data.id])).toEqual([['job.completed', wanted.id]]);
    expect(elsewhere.received).toEqual([]);
  });

  it('keeps trying a receiver that is down for 5 s, then delivers everything, each job’s events in order', async () => {
    const receiver = await WebhookReceiver.start();
    const { endpoint: created } = await endpoint(receiver, { events: ['job.created', 'job.progress', ...ENDINGS], progressIntervalMs: 1000 });
    await receiver.down();
    const jobs = await Promise.all(Array.from({ length: 6 }, () => createJob(competitorAnalysis())));
    for (const job of jobs) {
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 40 } }, worker);
      await complete(job.id);
    }
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const failing = await graphqlOk(t.url, WebhookEndpointsDocument, {}, manager);
    expect(failing.webhookEndpoints.find((e) => e.id === created.id)?.failingSince).not.toBeNull();
    const log = await deliveries(created.id);
    expect(log.some((d) => d.state === 'PENDING' && d.attempts > 1 && /Connection refused/.test(d.lastError ?? ''))).toBe(true);

    await receiver.up();
    await receiver.until((received) =>
      finished(
        received,
        jobs.map((job) => job.id),
      ),
    );
    for (const job of jobs) {
      const types = receiver.eventsOf(job.id).map((r) => r.event.type);
      // Progress coalesced into the ending (it was never sent), or sent before it: never after.
      expect(types.filter((type) => type !== 'job.progress')).toEqual(['job.created', 'job.completed']);
      expect(types.lastIndexOf('job.progress')).toBeLessThan(types.indexOf('job.completed'));
    }
    const after = await graphqlOk(t.url, WebhookEndpointsDocument, {}, manager);
    expect(after.webhookEndpoints.find((e) => e.id === created.id)?.failingSince).toBeNull();
  });

  it('lets a receiver that hangs cost another endpoint nothing', async () => {
    const hanging = await WebhookReceiver.start();
    hanging.answer = () => 'hang';
    const healthy = await WebhookReceiver.start();
    const workspaceManager = await t.createKey('hooks-hang', ['webhooks:manage']);
    const workspaceWorker = await t.createKey('hooks-hang', ['jobs:write']);
    await endpoint(hanging, { events: ['job.completed'] }, workspaceManager);
    await endpoint(healthy, { events: ['job.completed'] }, workspaceManager);
    const jobs: Array<{ id: string }> = [];
    for (let i = 0; i < 20; i++) jobs.push(await createJob(oneStepJob(), workspaceWorker));
    for (const job of jobs) await complete(job.id, workspaceWorker);
    await healthy.until((received) =>
      finished(
        received,
        jobs.map((job) => job.id),
      ),
    );
    // Meanwhile the hanging receiver holds at most its own share of attempts, none answered.
    expect(hanging.received.length).toBeGreaterThan(0);
    expect(hanging.received.length).toBeLessThanOrEqual(8 * 2);
    expect(healthy.received).toHaveLength(20);
  });

  it('gives one workspace at most its share of attempts: a workspace whose endpoints all hang leaves the rest to others', async () => {
    const shared = await startTestApp({
      env: { ...ENV, WEBHOOK_TIMEOUT_MS: '60000', WEBHOOK_CONCURRENCY: '4', WEBHOOK_CONCURRENCY_PER_WORKSPACE: '2', SHUTDOWN_TIMEOUT_MS: '500' },
    });
    try {
      const noisy = await shared.createKey('hooks-noisy', ['webhooks:manage', 'jobs:write']);
      const quiet = await shared.createKey('hooks-quiet', ['webhooks:manage', 'jobs:write']);
      const hanging = await Promise.all([1, 2, 3].map(() => WebhookReceiver.start()));
      const create = (key: string, receiver: WebhookReceiver) =>
        graphqlOk(shared.url, CreateWebhookEndpointDocument, { input: { url: receiver.url, events: ['job.completed'] } }, key);
      for (const receiver of hanging) {
        receiver.answer = () => 'hang';
        await create(noisy, receiver);
      }
      const healthy = await WebhookReceiver.start();
      await create(quiet, healthy);
      const write = async (key: string) => {
        const { createJob: job } = await graphqlOk(shared.url, CreateJobDocument, { input: oneStepJob() }, key);
        await graphqlOk(shared.url, CompleteJobDocument, { id: job.id }, key);
        return job.id;
      };
      for (let i = 0; i < 5; i++) await write(noisy);
      const hung = () => hanging.reduce((sum, receiver) => sum + receiver.received.length, 0);
      await expect.poll(hung).toBe(2);
      const quietJobs: string[] = [];
      for (let i = 0; i < 10; i++) quietJobs.push(await write(quiet));
      await healthy.until((received) => finished(received, quietJobs));
      // The noisy workspace holds 2 attempts (its share), hanging, whatever its backlog.
      expect(hung()).toBe(2);
    } finally {
      await shared.close();
    }
  });

  it('counts a receiver answering 101, or an error body full of control characters, as a failed attempt: logged cleanly and retried', async () => {
    const upgrade = net.createServer((socket) => {
      socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n'));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => upgrade.listen(0, '127.0.0.1', resolve));
    try {
      const { endpoint: switching } = await graphqlOk(
        t.url,
        CreateWebhookEndpointDocument,
        { input: { url: `http://127.0.0.1:${(upgrade.address() as net.AddressInfo).port}/`, events: ['job.completed'] } },
        manager,
      ).then((data) => data.createWebhookEndpoint);
      const garbled = await WebhookReceiver.start();
      garbled.answer = () => 500;
      garbled.body = 'bad\u0000 \u001b[31mred\u001b[0m\u0007';
      const { endpoint: failing } = await endpoint(garbled, { events: ['job.completed'] });
      const job = await createJob();
      await complete(job.id);
      await expect
        .poll(async () => (await deliveries(switching.id))[0], { timeout: 15_000 })
        .toMatchObject({
          state: 'PENDING',
          attempts: expect.toSatisfy((n: number) => n >= 2),
          lastStatus: 101,
          lastError: 'HTTP 101: a protocol switch is no answer.',
        });
      await expect
        .poll(async () => (await deliveries(failing.id))[0], { timeout: 15_000 })
        .toMatchObject({ state: 'PENDING', attempts: expect.toSatisfy((n: number) => n >= 2), lastStatus: 500, lastError: 'HTTP 500: bad [31mred [0m' });
      const listed = (await graphqlOk(t.url, WebhookEndpointsDocument, {}, manager)).webhookEndpoints;
      for (const id of [switching.id, failing.id]) expect(listed.find((e) => e.id === id)?.failingSince).not.toBeNull();
      for (const id of [switching.id, failing.id]) await graphqlOk(t.url, UpdateWebhookEndpointDocument, { id, input: { enabled: false } }, manager);
    } finally {
      upgrade.close();
    }
  });

  it('redelivers only to an enabled endpoint, and a progress event as well as any', async () => {
    const receiver = await WebhookReceiver.start();
    const { endpoint: created } = await endpoint(receiver, { events: ['job.progress'], progressIntervalMs: 1000 });
    const job = await createJob();
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 10 } }, worker);
    // Disabled before it was sent: the unsent progress event fails with it.
    await graphqlOk(t.url, UpdateWebhookEndpointDocument, { id: created.id, input: { enabled: false } }, manager);
    const [dropped] = await deliveries(created.id);
    expect(dropped).toMatchObject({ eventType: 'job.progress', state: 'FAILED', attempts: 0 });
    const refused = await graphql(t.url, RedeliverWebhookDocument, { deliveryId: dropped!.id }, manager);
    expect(codesOf(refused)).toEqual(['BAD_USER_INPUT']);
    // Enabled again, with a newer progress event still to be sent: the old one would arrive after it, so not yet.
    await graphqlOk(t.url, UpdateWebhookEndpointDocument, { id: created.id, input: { enabled: true } }, manager);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 20 } }, worker);
    const early = await graphql(t.url, RedeliverWebhookDocument, { deliveryId: dropped!.id }, manager);
    expect(codesOf(early)).toEqual(['BAD_USER_INPUT']);
    await receiver.until((all) => all.length === 1);
    // Once it is sent, the old event goes again (no conflict with the unsent progress of the job that a newer state replaces).
    await expect.poll(async () => (await deliveries(created.id))[0]?.state).toBe('DELIVERED');
    const { redeliverWebhook } = await graphqlOk(t.url, RedeliverWebhookDocument, { deliveryId: dropped!.id }, manager);
    expect(redeliverWebhook).toMatchObject({ id: dropped!.id, state: 'PENDING' });
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 30 } }, worker);
    const received = await receiver.until((all) => all.length === 3);
    expect(received.map((r) => r.event.data.progress)).toEqual([20, 10, 30]);
  });

  it('coalesces progress to at most one event per job per progressIntervalMs, in order, ending with the ending', async () => {
    const receiver = await WebhookReceiver.start();
    await endpoint(receiver, { events: ['job.progress', 'job.completed'], progressIntervalMs: 1000 });
    const job = await createJob();
    const started = Date.now();
    for (let progress = 5; progress <= 95; progress += 5) {
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress } }, worker);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const elapsed = Date.now() - started;
    await complete(job.id);
    await receiver.until((received) => finished(received, [job.id]));
    const events = receiver.eventsOf(job.id).map((r) => r.event);
    const progress = events.filter((e) => e.type === 'job.progress').map((e) => e.data.progress as number);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(events.at(-1)).toMatchObject({ type: 'job.completed', data: { progress: 100 } });
  });

  it('logs each attempt’s status and error, and redelivers with the same webhook-id', async () => {
    const receiver = await WebhookReceiver.start();
    let failures = 2;
    receiver.answer = () => (failures-- > 0 ? 500 : 200);
    const { endpoint: created } = await endpoint(receiver, { events: ['job.completed'] });
    const job = await createJob();
    await complete(job.id);
    await receiver.until((received) => received.length === 3);
    // The success is recorded once the receiver's answer is back: a moment after it has the request.
    await expect.poll(async () => (await deliveries(created.id))[0]?.state).toBe('DELIVERED');
    const [delivery] = await deliveries(created.id);
    expect(delivery).toMatchObject({ eventType: 'job.completed', jobId: job.id, state: 'DELIVERED', attempts: 3, lastStatus: 200, lastError: null });
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id']))).toEqual(new Set([delivery!.eventId]));

    const { redeliverWebhook } = await graphqlOk(t.url, RedeliverWebhookDocument, { deliveryId: delivery!.id }, manager);
    expect(redeliverWebhook).toMatchObject({ id: delivery!.id, eventId: delivery!.eventId, state: 'PENDING' });
    await receiver.until((received) => received.length === 4);
    expect(receiver.received[3]!.headers['webhook-id']).toBe(delivery!.eventId);
    expect(receiver.received[3]!.body).toBe(receiver.received[2]!.body);

    // A failure is logged with the status and the first bytes of the answer.
    receiver.answer = () => 503;
    const failing = await createJob();
    await complete(failing.id);
    await receiver.until((received) => received.some((r) => r.event.data.id === failing.id));
    await expect
      .poll(async () => (await deliveries(created.id))[0])
      .toMatchObject({ state: 'PENDING', lastStatus: 503, lastError: 'HTTP 503: receiver says 503' });
  });

  it('signs with the old and the new secret for the overlap after a rotation', async () => {
    const receiver = await WebhookReceiver.start();
    const { endpoint: created, secret: old } = await endpoint(receiver, { events: ['job.completed'] });
    const { rotateWebhookSecret } = await graphqlOk(t.url, RotateWebhookSecretDocument, { id: created.id }, manager);
    expect(rotateWebhookSecret.secret).not.toBe(old);
    expect(new Date(rotateWebhookSecret.endpoint.previousSecretUntil!).getTime()).toBeGreaterThan(Date.now() + 23 * 3_600_000);
    const job = await createJob();
    await complete(job.id);
    const [received] = await receiver.until((all) => all.length === 1);
    expect(received!.headers['webhook-signature']!.split(' ')).toHaveLength(2);
    for (const secret of [old, rotateWebhookSecret.secret]) expect(new Webhook(secret).verify(received!.body, received!.headers)).toEqual(received!.event);
  });

  it('refuses bad endpoints with a coded error and stores nothing; a key without webhooks:manage gets FORBIDDEN; another workspace’s endpoint is NOT_FOUND', async () => {
    const strict = await startTestApp({ env: { WEBHOOK_MAX_ENDPOINTS: '2' } });
    const key = await strict.createKey('strict', ['webhooks:manage']);
    const create = (input: Partial<CreateWebhookEndpointInput>) =>
      graphql(strict.url, CreateWebhookEndpointDocument, { input: { url: 'https://hooks.example.com/in', events: ['job.completed'], ...input } }, key);
    const bad: Array<Partial<CreateWebhookEndpointInput>> = [
      { url: 'not a url' },
      { url: 'http://hooks.example.com/in' },
      { url: 'ftp://hooks.example.com/in' },
      { url: 'https://user:secret@hooks.example.com/in' },
      { url: 'https://127.0.0.1/in' },
      { url: 'https://10.1.2.3/in' },
      { url: 'https://169.254.169.254/latest/meta-data' },
      { url: 'https://[::1]/in' },
      { url: 'https://[::ffff:127.0.0.1]/in' },
      { url: `https://hooks.example.com/${'a'.repeat(2100)}` },
      { events: ['job.finished'] },
      { events: [] },
      { progressIntervalMs: 10 },
      { competitorId: ' ' },
    ];
    for (const input of bad) {
      const result = await create(input);
      expect(codesOf(result), JSON.stringify(input).slice(0, 100)).toEqual(['BAD_USER_INPUT']);
      expect(JSON.stringify(result.errors)).not.toContain('secret@');
    }
    expect((await graphqlOk(strict.url, WebhookEndpointsDocument, {}, key)).webhookEndpoints).toEqual([]);
    // WEBHOOK_MAX_ENDPOINTS, even when asked for at once.
    const results = await Promise.all(Array.from({ length: 5 }, () => create({})));
    expect(results.filter((r) => r.data?.createWebhookEndpoint).length).toBe(2);
    expect(results.filter((r) => codesOf(r)[0] === 'BAD_USER_INPUT').length).toBe(3);
    expect((await graphqlOk(strict.url, WebhookEndpointsDocument, {}, key)).webhookEndpoints).toHaveLength(2);

    const reader = await strict.createKey('strict', ['jobs:read', 'jobs:write', 'jobs:cancel']);
    for (const result of [
      await create({}).then(() => graphql(strict.url, WebhookEndpointsDocument, {}, reader)),
      await graphql(strict.url, CreateWebhookEndpointDocument, { input: { url: 'https://a.example.com', events: ['job.completed'] } }, reader),
    ]) {
      expect(codesOf(result)).toEqual(['FORBIDDEN']);
    }
    const [mine] = (await graphqlOk(strict.url, WebhookEndpointsDocument, {}, key)).webhookEndpoints;
    const stranger = await strict.createKey('strict-other', ['webhooks:manage']);
    const update = await graphql(strict.url, UpdateWebhookEndpointDocument, { id: mine!.id, input: { enabled: false } }, stranger);
    expect(codesOf(update)).toEqual(['NOT_FOUND']);
    expect(codesOf(await graphql(strict.url, WebhookDeliveriesDocument, { endpointId: mine!.id }, stranger))).toEqual(['NOT_FOUND']);
    expect((await graphqlOk(strict.url, WebhookEndpointsDocument, {}, key)).webhookEndpoints.find((e) => e.id === mine!.id)?.enabled).toBe(true);
  });
});
