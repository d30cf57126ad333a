import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompleteJobDocument, CreateJobDocument, CreateWebhookEndpointDocument, WebhookDeliveriesDocument } from '../../../src/graphql/operations.generated.js';
import { isPublicAddress, type Resolver } from '../../../src/webhooks/destination.js';
import { describeDb } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { oneStepJob } from '../../helpers/jobs.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { WebhookReceiver } from '../../helpers/webhook-receiver.js';

const octet = fc.integer({ min: 0, max: 255 });
const hextet = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
const ipv4 = (first: fc.Arbitrary<number>, second: fc.Arbitrary<number> = octet) => fc.tuple(first, second, octet, octet).map((parts) => parts.join('.'));
const ipv6 = (prefix: string) =>
  fc
    .array(hextet, { minLength: 8 - prefix.split(':').filter(Boolean).length, maxLength: 8 - prefix.split(':').filter(Boolean).length })
    .map((rest) => `${prefix}${rest.join(':')}`);

describe('which addresses a webhook may go to', () => {
  it('refuses every private, loopback, link-local, shared and special IPv4 and IPv6 address, and their IPv4-mapped forms', () => {
    const refused = fc.oneof(
      ipv4(fc.constant(10)),
      ipv4(fc.constant(127)),
      ipv4(fc.constant(169), fc.constant(254)),
      ipv4(fc.constant(172), fc.integer({ min: 16, max: 31 })),
      ipv4(fc.constant(192), fc.constant(168)),
      ipv4(fc.constant(100), fc.integer({ min: 64, max: 127 })),
      ipv4(fc.constant(0)),
      ipv4(fc.integer({ min: 224, max: 255 })),
      fc.constant('::1'),
      fc.constant('::'),
      fc.constant('::7f00:1'),
      fc.constant('::a9fe:a9fe'),
      ipv6('fe80:'),
      ipv6('fd00:'),
      ipv6('fc00:'),
      ipv6('ff02:'),
    );
    fc.assert(
      fc.property(refused, (address) => {
        expect(isPublicAddress(address), address).toBe(false);
        if (address.includes('.')) expect(isPublicAddress(`::ffff:${address}`), `::ffff:${address}`).toBe(false);
      }),
      { numRuns: 2_000 },
    );
  });

  it('allows public unicast addresses', () => {
    const allowed = fc.oneof(
      ipv4(fc.integer({ min: 1, max: 9 })),
      ipv4(fc.integer({ min: 11, max: 99 })),
      ipv4(fc.integer({ min: 128, max: 168 })),
      ipv6('2a00:'),
    );
    fc.assert(
      fc.property(allowed, (address) => {
        expect(isPublicAddress(address), address).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });
});

/** A resolver of the test's own: names to the addresses it is told, with no network. */
const names: Record<string, string[]> = {
  'loopback.test': ['127.0.0.1'],
  'ten.test': ['10.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'six.test': ['::1'],
  // One public address is not enough: every address the name has must be public.
  'mixed.test': ['8.8.8.8', '10.0.0.1'],
};
const stubResolver: Resolver = (hostname) => Promise.resolve((names[hostname] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));

describeDb('webhook destinations, checked at every attempt', () => {
  let strict: TestApp;
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    strict = await startTestApp({ env: { WEBHOOK_RETRY_BASE_MS: '100' }, webhookResolver: stubResolver });
    receiver = await WebhookReceiver.start();
  });
  afterAll(() => strict.close());

  it('refuses a name that resolves to 127.0.0.1, 10.x, 169.254.x, [::1] or any private address, saved or not, at each retry', async () => {
    const manager = await strict.createKey('destinations', ['webhooks:manage', 'jobs:write']);
    const port = new URL(receiver.url).port;
    const endpoints: Array<{ id: string; host: string }> = [];
    for (const host of Object.keys(names)) {
      // Saved: a name is not resolved until an attempt connects (it could change afterwards anyway).
      const { createWebhookEndpoint } = await graphqlOk(
        strict.url,
        CreateWebhookEndpointDocument,
        { input: { url: `https://${host}:${port}/hooks`, events: ['job.completed'] } },
        manager,
      );
      endpoints.push({ id: createWebhookEndpoint.endpoint.id, host });
    }
    const { createJob } = await graphqlOk(strict.url, CreateJobDocument, { input: oneStepJob() }, manager);
    await graphqlOk(strict.url, CompleteJobDocument, { id: createJob.id }, manager);
    for (const { id } of endpoints) {
      await expect
        .poll(async () => (await graphqlOk(strict.url, WebhookDeliveriesDocument, { endpointId: id }, manager)).webhookDeliveries[0], { timeout: 15_000 })
        .toMatchObject({
          state: 'PENDING',
          attempts: expect.toSatisfy((n: number) => n >= 2),
          lastStatus: null,
          // The log names no address: a workspace must not map the gateway's network through it.
          lastError: 'Refused: the host resolves to an address that is not public.',
        });
    }
    expect(receiver.received).toEqual([]);
  });

  it('with WEBHOOK_ALLOW_PRIVATE=true connects to the address the name resolved to', async () => {
    const open = await startTestApp({ env: { WEBHOOK_ALLOW_PRIVATE: 'true' }, webhookResolver: stubResolver });
    try {
      const manager = await open.createKey('destinations-open', ['webhooks:manage', 'jobs:write']);
      await graphqlOk(
        open.url,
        CreateWebhookEndpointDocument,
        { input: { url: `http://loopback.test:${new URL(receiver.url).port}/hooks`, events: ['job.completed'] } },
        manager,
      );
      const { createJob } = await graphqlOk(open.url, CreateJobDocument, { input: oneStepJob() }, manager);
      await graphqlOk(open.url, CompleteJobDocument, { id: createJob.id }, manager);
      const [received] = await receiver.until((all) => all.length === 1);
      expect(received!.event).toMatchObject({ type: 'job.completed', data: { id: createJob.id } });
      expect(received!.headers.host).toBe(`loopback.test:${new URL(receiver.url).port}`);
    } finally {
      await open.close();
    }
  });
});
