import fc from 'fast-check';
import { beforeAll, expect, it } from 'vitest';
import { CreateJobDocument } from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { liveSubscriptions } from '../../helpers/metrics.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const steps = [{ id: 'a', name: 'A' }];
/** Multiplexed: a subscription whose only root field is jobUpdated. */
const MULTIPLEXED = 'subscription { jobUpdated { id progress } }';
/** Not multiplexed (a fragment spread at the root): runs as a stream through yoga. */
const STREAM = 'subscription { ...W } fragment W on Subscription { jobUpdated { id progress } }';
const RESUMED = 'subscription { jobUpdated(after: "0") { id progress } }';

const zero = { multiplexed: 0, streams: 0, groups: 0 };

describeDb('WebSocket protocol abuse: nothing outlives its socket', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    // Hundreds of messages in a row: the per-socket budget is test/e2e/auth/bad-keys.test.ts's subject.
    t = await startTestApp({ env: { WS_MAX_MESSAGES_PER_SECOND: '0' } });
    key = await t.createKey('tenant-ws-abuse');
  });

  for (const [form, query] of [
    ['multiplexed', MULTIPLEXED],
    ['stream', STREAM],
  ] as const) {
    it(`a reused operation id (complete then subscribe, 200 times) leaves one live ${form} subscription, and none after close`, async () => {
      const socket = await TestSocket.open(t.url, { apiKey: key });
      for (let i = 0; i < 200; i++) {
        socket.complete('s0');
        socket.subscribe('s0', query);
      }
      // A second, ordinary subscription tells when the job's creation has been delivered.
      socket.subscribe('probe', MULTIPLEXED);
      await expect
        .poll(
          async () => {
            const { multiplexed, streams } = await liveSubscriptions(t.url);
            return multiplexed + streams;
          },
          { timeout: 15_000 },
        )
        .toBe(2);
      await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, key);
      await socket.waitForNexts('probe', 1);
      await socket.waitForNexts('s0', 1);
      // Anything further for s0 would have been written with (or right after) the probe's.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(socket.nexts('s0')).toHaveLength(1);
      socket.close();
      await socket.waitForClose();
      await expect.poll(() => liveSubscriptions(t.url), { timeout: 15_000 }).toEqual(zero);
    });
  }

  it('any sequence of graphql-ws messages, ended by a close at any point, leaves no subscription and no group (property)', async () => {
    const ids = fc.constantFrom('a', 'b', 'c');
    const message = fc.oneof(
      fc.record({
        kind: fc.constant('subscribe' as const),
        id: ids,
        query: fc.constantFrom(MULTIPLEXED, STREAM, RESUMED, 'query { jobs { id } }', 'subscription {', '{ nope }'),
      }),
      fc.record({ kind: fc.constant('complete' as const), id: ids }),
      fc.record({
        kind: fc.constant('raw' as const),
        text: fc.constantFrom(
          'not json',
          '{}',
          '{"type":"subscribe"}',
          '{"type":"ping"}',
          '{"type":"pong"}',
          '{"id":"a","type":"next"}',
          '{"type":"connection_init"}',
          '[]',
          'null',
        ),
      }),
      fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 20 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(message, { maxLength: 40 }), fc.boolean(), async (messages, serverSideFirst) => {
        const socket = await TestSocket.open(t.url, { apiKey: key });
        for (const m of messages) {
          if (socket.closed) break;
          if (m.kind === 'subscribe') socket.subscribe(m.id, m.query);
          else if (m.kind === 'complete') socket.complete(m.id);
          else if (m.kind === 'raw') socket.socket.send(m.text);
          else await new Promise((resolve) => setTimeout(resolve, m.ms));
        }
        if (serverSideFirst && !socket.closed) socket.socket.send('{"type":"connection_init"}'); // 4429: the server closes
        socket.close();
        await socket.waitForClose();
        await expect.poll(() => liveSubscriptions(t.url), { timeout: 15_000 }).toEqual(zero);
      }),
      { numRuns: 40 },
    );
  });
});

describeDb('WebSocket admission: a socket gone before its key is known holds nothing', () => {
  it('sockets that close right after connection_init, while their key is looked up, leave every connection slot of the key free', async () => {
    // Every lookup goes to the database, and two connections per key: one leaked slot shows. On
    // PostgreSQL the close arrives before the lookup answers; without the check, 2 of 30 leaked.
    const t = await startTestApp({ env: { AUTH_CACHE_TTL_MS: '0', MAX_CONNECTIONS_PER_KEY: '2' } });
    const key = await t.createKey('tenant-ws-admission');
    for (let i = 0; i < 30; i++) {
      // connection_init sent, and the socket gone before the answer.
      (await TestSocket.open(t.url, { apiKey: key, ack: false })).socket.terminate();
    }
    await expect.poll(() => t.app.webSockets.connectionCount).toBe(0);
    // Both of the key's slots are free: two sockets are admitted.
    const sockets = await Promise.all([TestSocket.open(t.url, { apiKey: key }), TestSocket.open(t.url, { apiKey: key })]);
    for (const socket of sockets) expect(socket.closed).toBeUndefined();
    for (const socket of sockets) socket.close();
  });
});
