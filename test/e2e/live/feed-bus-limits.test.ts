import { connect } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, expect, it, vi } from 'vitest';
import { SHARED_CAPS_SNAPSHOT_MS } from '../../../src/limits/fixed.js';
import { describePostgres, freshDatabase } from '../../helpers/databases.js';
import { type NatsServer, startNatsServer } from '../../helpers/nats-server.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const RATE = 20;
const BURST = 40;

/** Three gateways on a NATS server and a database of the test's own, connected to the bus. */
async function threeInstances(env: Record<string, string>): Promise<{ nats: NatsServer; instances: TestApp[] }> {
  const nats = await startNatsServer();
  cleanups.push(() => nats.kill());
  const database = await freshDatabase();
  cleanups.push(() => database.drop());
  const instances: TestApp[] = [];
  for (let i = 0; i < 3; i++) {
    const t = await startTestApp({ database, env: { FEED_BUS: nats.url, ...env } });
    cleanups.push(() => t.close());
    instances.push(t);
  }
  await vi.waitFor(() => expect(instances.every((t) => t.app.busFeed!.stats().busUp)).toBe(true));
  return { nats, instances };
}

/** The instance the n-th request or socket goes to, as a load balancer with these weights would send it. */
function spread(weights: readonly number[], instances: readonly TestApp[]): (n: number) => TestApp {
  const total = weights.reduce((a, b) => a + b, 0);
  return (n) => {
    let r = n % total;
    for (let i = 0; i < weights.length; i++) if ((r -= weights[i]!) < 0) return instances[i]!;
    return instances[0]!;
  };
}

describePostgres('FEED_BUS: a key’s rate limit and connection cap hold across instances', () => {
  it('admits a key’s limit within 10% over a few seconds, however its requests spread over three instances (property)', { timeout: 120_000 }, async () => {
    const { nats, instances } = await threeInstances({ RATE_LIMIT_PER_KEY: String(RATE), RATE_LIMIT_BURST: String(BURST) });

    // What is not an instance's count, on every subject the gateways hear, changes nothing.
    const subjects = instances[0]!.app.busFeed!.subjects;
    const junk = await connect({ servers: nats.url.replace('nats://', '') });
    cleanups.push(() => junk.close());
    const victim = await instances[0]!.createKey('victim');
    for (const subject of [subjects.limits, subjects.connections, subjects.frontier, subjects.wake]) {
      for (const body of [
        '',
        'not json',
        '[]',
        'null',
        '{"from":"x","taken":[["' + victim + '",1000000000]],"counts":[["' + victim + '",1000000000]]}',
        '{"from":"x","taken":[[1,2],["k",-1]]}',
        '{"from":"x","counts":{"k":1}}',
        '{"reader":"x","position":"zz","behind":[]}',
      ]) {
        junk.publish(subject, body);
      }
    }
    await junk.flush();
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const t of instances) expect((await fetch(`${t.url}/api/jobs?limit=1`, { headers: { authorization: `Bearer ${victim}` } })).status).toBe(200);
    for (const t of instances) expect(t.app.webSockets.stats().connections).toBe(0);

    await fc.assert(
      fc.asyncProperty(
        // How the load balancer spreads one key's requests: a weight per instance, one at least.
        fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3)).filter((weights) => weights.some((w) => w > 0)),
        fc.integer({ min: 4, max: 12 }),
        async (weights, concurrency) => {
          // A fresh key each run: its bucket is full on every instance.
          const key = await instances[0]!.createKey(`limits-${Math.random()}`);
          const pick = spread(weights, instances);
          let allowed = 0;
          let refused = 0;
          let sent = 0;
          const started = performance.now();
          const windowMs = 3_000;
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (performance.now() - started < windowMs) {
                const response = await fetch(`${pick(sent++).url}/api/jobs?limit=1`, { headers: { authorization: `Bearer ${key}` } });
                await response.arrayBuffer();
                if (response.status === 200) allowed++;
                else if (response.status === 429) refused++;
                else throw new Error(`unexpected ${response.status}`);
              }
            }),
          );
          const seconds = (performance.now() - started) / 1000;
          const limit = BURST + RATE * seconds;
          expect(refused).toBeGreaterThan(0);
          expect(allowed, `weights ${weights.join('/')}, ${allowed} allowed in ${seconds.toFixed(2)} s`).toBeLessThanOrEqual(limit * 1.1);
          expect(allowed, `weights ${weights.join('/')}, ${allowed} allowed in ${seconds.toFixed(2)} s`).toBeGreaterThanOrEqual(limit * 0.9);
        },
      ),
      { numRuns: 5 },
    );
  });

  it(
    'keeps a key within 10% of MAX_CONNECTIONS_PER_KEY across three instances, however fast and where its sockets open (property)',
    { timeout: 120_000 },
    async () => {
      const CAP = 30;
      const { instances } = await threeInstances({ MAX_CONNECTIONS_PER_KEY: String(CAP), RATE_LIMIT_PER_KEY: '0' });
      // An instance that joins closes nothing until it has heard everyone's counts (one snapshot interval).
      await new Promise((resolve) => setTimeout(resolve, SHARED_CAPS_SNAPSHOT_MS + 300));

      await fc.assert(
        fc.asyncProperty(
          fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3)).filter((weights) => weights.filter((w) => w > 0).length >= 2),
          fc.integer({ min: 1, max: 20 }),
          async (weights, concurrency) => {
            const key = await instances[0]!.createKey(`caps-${Math.random()}`);
            const pick = spread(weights, instances);
            const sockets: TestSocket[] = [];
            let attempts = 0;
            // Twice the cap, `concurrency` at a time, spread as the weights say.
            await Promise.all(
              Array.from({ length: concurrency }, async () => {
                while (attempts < 2 * CAP) {
                  const at = pick(attempts++);
                  const socket = await TestSocket.open(at.url, { apiKey: key, ack: false });
                  sockets.push(socket);
                  // Acknowledged, or refused (closed during the handshake: counted below as not open).
                  await vi.waitFor(() => expect(socket.closed !== undefined || socket.messages.some((m) => m.type === 'connection_ack')).toBe(true), {
                    timeout: 10_000,
                    interval: 5,
                  });
                }
              }),
            );
            try {
              // The instances agree within a few syncs, closing what is over.
              await new Promise((resolve) => setTimeout(resolve, 500));
              const open = () => sockets.filter((socket) => socket.closed === undefined).length;
              expect(open(), `weights ${weights.join('/')}, ${concurrency} at a time`).toBeLessThanOrEqual(Math.floor(CAP * 1.1));
              expect(open(), `weights ${weights.join('/')}, ${concurrency} at a time`).toBeGreaterThanOrEqual(Math.ceil(CAP * 0.9));
              // Those closed for it were told why, with the code a refused one gets.
              for (const socket of sockets.filter((s) => s.closed)) expect(socket.closed!.code).toBe(1013);
            } finally {
              for (const socket of sockets) socket.close();
              await vi.waitFor(() => expect(instances.reduce((sum, t) => sum + t.app.webSockets.stats().connections, 0)).toBe(0));
            }
          },
        ),
        { numRuns: 6 },
      );
    },
  );
});
