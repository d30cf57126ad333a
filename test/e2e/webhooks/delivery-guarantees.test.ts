import { expect, it } from 'vitest';
import { CompleteJobDocument, CreateJobDocument, CreateWebhookEndpointDocument } from '../../../src/graphql/operations.generated.js';
import { describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { spawnGateway } from '../../helpers/gateway-process.js';
import { graphqlOk } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { type Received, WebhookReceiver } from '../../helpers/webhook-receiver.js';

const ENV = { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '200', WEBHOOK_TIMEOUT_MS: '1000' };

/** Each job's events as the receiver got them: first receipts in order, and how often each event came. */
function perJob(received: Received[]) {
  const jobs = new Map<string, Received[]>();
  for (const r of received) {
    const id = String(r.event.data.id);
    jobs.set(id, [...(jobs.get(id) ?? []), r]);
  }
  return jobs;
}

describeDb('webhook delivery across a crash', () => {
  it(
    'a gateway SIGKILLed during deliveries delivers everything after a restart: each event at least once, with its webhook-id, in order per job',
    { timeout: 120_000 },
    async () => {
      const database = await freshDatabase();
      const setup = await startTestApp({ database });
      const key = await setup.createKey('crash', ['webhooks:manage', 'jobs:write']);
      await setup.close();

      const receiver = await WebhookReceiver.start();
      // Slow answers keep attempts in flight when the process dies.
      receiver.answer = () => 'hang';
      let gateway = await spawnGateway({ ...database.env, ...ENV });
      try {
        await graphqlOk(gateway.url, CreateWebhookEndpointDocument, { input: { url: receiver.url, events: ['job.created', 'job.completed'] } }, key);
        const jobs: string[] = [];
        for (let i = 0; i < 20; i++) {
          const { createJob } = await graphqlOk(gateway.url, CreateJobDocument, { input: oneStepJob() }, key);
          await graphqlOk(gateway.url, CompleteJobDocument, { id: createJob.id }, key);
          jobs.push(createJob.id);
        }
        // Attempts are under way (each hangs): kill the process in the middle of them.
        await receiver.until((received) => received.length >= 4);
        gateway.child.kill('SIGKILL');
        await gateway.exited;
        const inFlightAtKill = new Set(receiver.received.map((r) => r.event.id));
        receiver.answer = () => 204;

        // The receiver answers at once now: a timed-out attempt (retried, and so a duplicate
        // at-least-once allows) could only come from a machine stalled past the timeout, as CI
        // once was for 1 s; the duplicates this test is about are those of the crash.
        gateway = await spawnGateway({ ...database.env, ...ENV, WEBHOOK_TIMEOUT_MS: '20000' });
        await receiver.until((received) => jobs.every((id) => received.some((r) => r.event.data.id === id && r.event.type === 'job.completed')), 60_000);

        for (const [jobId, events] of perJob(receiver.received)) {
          const types = events.map((r) => r.event.type);
          // Every created came before the first completed: an event is never overtaken by a later one of its job.
          expect(types.lastIndexOf('job.created'), jobId).toBeLessThan(types.indexOf('job.completed'));
          expect(types.indexOf('job.created'), jobId).toBe(0);
          for (const r of events) expect(r.headers['webhook-id']).toBe(r.event.id);
        }
        expect(new Set(receiver.received.map((r) => String(r.event.data.id)))).toEqual(new Set(jobs));
        // Only what was in flight when the process died came twice.
        const counts = new Map<string, number>();
        for (const r of receiver.received) counts.set(r.event.id, (counts.get(r.event.id) ?? 0) + 1);
        for (const [eventId, count] of counts) if (count > 1) expect(inFlightAtKill.has(eventId), eventId).toBe(true);
        expect(counts.size).toBe(40);
      } finally {
        gateway.child.kill('SIGTERM');
        await gateway.exited;
        await database.drop();
      }
    },
  );
});

describePostgres('webhooks with two gateways on one PostgreSQL', () => {
  it('send each event once between them, in order per job', { timeout: 60_000 }, async () => {
    const database = await freshDatabase();
    // A timed-out attempt is retried, and its receiver may have got it: a duplicate that
    // at-least-once allows. This test is about claims, so no attempt may time out here, not even
    // on a machine that stalls both in-process gateways and the receiver for a second (CI once did).
    const env = { ...ENV, WEBHOOK_TIMEOUT_MS: '20000' };
    const first = await startTestApp({ database, env });
    let second: TestApp | undefined;
    try {
      const key = await first.createKey('two-senders', ['webhooks:manage', 'jobs:write']);
      const receiver = await WebhookReceiver.start();
      await graphqlOk(first.url, CreateWebhookEndpointDocument, { input: { url: receiver.url, events: ['job.created', 'job.completed'] } }, key);
      // Started after the endpoint exists, it knows at once that the workspace has one (another
      // instance learns of an endpoint made elsewhere within WEBHOOK.watchRefreshMs).
      second = await startTestApp({ database, env });
      const jobs = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const via = i % 2 === 0 ? first : second!;
          const { createJob } = await graphqlOk(via.url, CreateJobDocument, { input: oneStepJob() }, key);
          await graphqlOk((i % 3 === 0 ? first : second!).url, CompleteJobDocument, { id: createJob.id }, key);
          return createJob.id;
        }),
      );
      await receiver.until((received) => received.length >= 80);
      // Settle: a duplicate would arrive now.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      // No attempt failed (a failure would be retried, and a duplicate allowed).
      expect(first.app.webhooks.stats().retrying + second.app.webhooks.stats().retrying).toBe(0);
      expect(receiver.received).toHaveLength(80);
      expect(new Set(receiver.received.map((r) => r.event.id)).size).toBe(80);
      for (const id of jobs) expect(receiver.eventsOf(id).map((r) => r.event.type)).toEqual(['job.created', 'job.completed']);
      // Both instances sent.
      expect(first.app.webhooks.stats().sent).toBeGreaterThan(0);
      expect(second.app.webhooks.stats().sent).toBeGreaterThan(0);
      expect(first.app.webhooks.stats().sent + second.app.webhooks.stats().sent).toBe(80);
    } finally {
      await first.close();
      await second?.close();
      await database.drop();
    }
  });
});
