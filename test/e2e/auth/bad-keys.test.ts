import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { describeDb } from '../../helpers/databases.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

// Requests and WebSocket connections without a valid key, limited per client address before
// they cost a database lookup (BAD_KEY_LIMIT_PER_ADDRESS), and WebSocket messages per socket
// (WS_MAX_MESSAGES_PER_SECOND). Addresses are told apart by X-Forwarded-For (TRUSTED_PROXY_HOPS=1),
// as behind a load balancer.

const PER_SECOND = 2;
const BURST = 2 * PER_SECOND;
const MESSAGES_PER_SECOND = 20;

type ErrorBody = { error?: { code: string }; errors?: Array<{ extensions: { code: string } }> };

let lastAddress = 0;
/** An address of its own for each case, so that no case spends another's budget. */
const freshAddress = () => `198.51.${Math.floor(++lastAddress / 250)}.${(lastAddress % 250) + 1}`;

describeDb('requests without a valid key, and WebSocket messages, limited before they cost the others', () => {
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    t = await startTestApp({
      captureLogs: true,
      env: {
        BAD_KEY_LIMIT_PER_ADDRESS: String(PER_SECOND),
        TRUSTED_PROXY_HOPS: '1',
        WS_MAX_MESSAGES_PER_SECOND: String(MESSAGES_PER_SECOND),
        MAX_SUBSCRIPTIONS_PER_CONNECTION: '30',
        RATE_LIMIT_PER_KEY: '0',
      },
    });
    key = await t.createKey('bad-keys');
  });

  afterAll(() => {
    expect(t.logs.filter((entry) => entry.level >= 50)).toEqual([]);
  });

  const request = (route: 'rest' | 'graphql', address: string, apiKey: string | undefined, url = t.url) =>
    fetch(route === 'rest' ? `${url}/api/jobs` : `${url}/graphql`, {
      method: route === 'rest' ? 'GET' : 'POST',
      headers: { 'x-forwarded-for': address, 'content-type': 'application/json', ...(apiKey === undefined ? {} : { 'x-api-key': apiKey }) },
      body: route === 'rest' ? undefined : JSON.stringify({ query: '{ jobs { id } }' }),
    });

  it('refuses an address that keeps presenting bad keys with 429 after its burst, before any lookup, while other addresses and remembered keys go on (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.constantFrom('rest' as const, 'graphql' as const),
            fc.option(fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme-ascii' }), { nil: undefined }),
          ),
          { minLength: BURST + 3, maxLength: 25 },
        ),
        async (attempts) => {
          const attacker = freshAddress();
          const lookupsBefore = t.app.apiKeys.lookups;
          const began = performance.now();
          // All at once: a budget taken before the lookup holds under concurrency too.
          const responses = await Promise.all(
            attempts.map(async ([route, bad]) => {
              const response = await request(route, attacker, bad === undefined ? undefined : `jg_${bad}`);
              return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as ErrorBody };
            }),
          );
          const seconds = (performance.now() - began) / 1000;
          const statuses = responses.map((response) => response.status);
          const allowed = BURST + Math.ceil(seconds * PER_SECOND);
          expect(
            statuses.every((status) => status === 401 || status === 429),
            String(statuses),
          ).toBe(true);
          expect(statuses.filter((status) => status === 401).length).toBeLessThanOrEqual(allowed);
          expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(attempts.length - allowed);
          for (const { retryAfter, body } of responses.filter((r) => r.status === 429)) {
            expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
            expect(body.error?.code ?? body.errors?.[0]?.extensions.code).toBe('RATE_LIMITED');
          }
          // At most one lookup per attempt that got through (the others cost none).
          expect(t.app.apiKeys.lookups - lookupsBefore).toBeLessThanOrEqual(allowed);
          // Another client, with a key never seen before, is not held back by that address.
          const other = await request('rest', freshAddress(), key);
          expect(other.status).toBe(200);
          await other.arrayBuffer();
        },
      ),
      { numRuns: 15 },
    );
  });

  it('never spends the budget of an address whose keys are valid, even when each request needs a lookup', async () => {
    const uncached = await startTestApp({ env: { BAD_KEY_LIMIT_PER_ADDRESS: '1', TRUSTED_PROXY_HOPS: '1', AUTH_CACHE_TTL_MS: '0', RATE_LIMIT_PER_KEY: '0' } });
    try {
      const keys = await Promise.all(['a', 'b', 'c'].map((w) => uncached.createKey(`valid-${w}`)));
      const address = freshAddress();
      const statuses = [];
      for (let i = 0; i < 12; i++) {
        const response = await request('rest', address, keys[i % 3], uncached.url);
        await response.arrayBuffer();
        statuses.push(response.status);
      }
      expect(statuses).toEqual(Array(12).fill(200));
    } finally {
      await uncached.close();
    }
  });

  it('counts an IPv6 client by its /64, and an X-Forwarded-For that names no address as the peer', async () => {
    const block = `2001:db8:${(++lastAddress).toString(16)}:7`;
    const statuses = [];
    for (let i = 0; i < BURST + 2; i++) {
      // A new address of the same /64 for every attempt: no fresh budget.
      const response = await request('rest', `${block}::${(i + 1).toString(16)}`, `jg_rotating${i}`);
      await response.arrayBuffer();
      statuses.push(response.status);
    }
    expect(statuses.slice(0, BURST)).toEqual(Array(BURST).fill(401));
    expect(statuses.slice(BURST)).toEqual([429, 429]);
    // Not an address: the peer's budget (127.0.0.1, which no other case spends), never a bucket of its own.
    const named = [];
    for (let i = 0; i < BURST + 2; i++) {
      const response = await request('rest', `not-an-address-${i}-${'x'.repeat(i * 500)}`, `jg_named${i}`);
      await response.arrayBuffer();
      named.push(response.status);
    }
    expect(named.slice(0, BURST)).toEqual(Array(BURST).fill(401));
    expect(named.slice(BURST)).toEqual([429, 429]);
  });

  it('lets concurrent requests with one valid key share its lookup, so none is refused', async () => {
    const uncached = await startTestApp({ env: { BAD_KEY_LIMIT_PER_ADDRESS: '1', TRUSTED_PROXY_HOPS: '1', AUTH_CACHE_TTL_MS: '0', RATE_LIMIT_PER_KEY: '0' } });
    try {
      const valid = await uncached.createKey('shared-lookup');
      const address = freshAddress();
      const statuses = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const response = await request('rest', address, valid, uncached.url);
          await response.arrayBuffer();
          return response.status;
        }),
      );
      expect(statuses).toEqual(Array(20).fill(200));
    } finally {
      await uncached.close();
    }
  });

  it('remembers a key the database did not know: repeating it costs no lookup', async () => {
    const bad = `jg_${'x'.repeat(43)}`;
    const status = async () => {
      const response = await request('rest', freshAddress(), bad);
      await response.arrayBuffer();
      return response.status;
    };
    expect(await status()).toBe(401);
    const before = t.app.apiKeys.lookups;
    // From other addresses, so that no budget runs out: the lookups are what is counted.
    for (let i = 0; i < 5; i++) expect(await status()).toBe(401);
    expect(t.app.apiKeys.lookups - before).toBe(0);
  });

  it('closes WebSocket connections with bad keys from one address with 1013 after its burst, and admits other addresses', async () => {
    const attacker = freshAddress();
    const closes: number[] = [];
    for (let i = 0; i < BURST + 3; i++) {
      const socket = await TestSocket.open(t.url, { apiKey: `jg_bogus${i}`, ack: false, headers: { 'x-forwarded-for': attacker } });
      closes.push((await socket.waitForClose()).code);
    }
    expect(closes.slice(0, BURST)).toEqual(Array(BURST).fill(4403));
    expect(closes.slice(BURST + 1)).toEqual([1013, 1013]);
    const welcome = await TestSocket.open(t.url, { apiKey: key, headers: { 'x-forwarded-for': freshAddress() } });
    expect(welcome.closed).toBeUndefined();
    welcome.close();
  });

  it('closes a socket that sends more than WS_MAX_MESSAGES_PER_SECOND messages with 4429, pings included, and keeps one that stays within (property)', async () => {
    const message = fc.constantFrom<Record<string, unknown>>({ type: 'ping' }, { type: 'pong' }, { type: 'complete', id: 'none' });
    await fc.assert(
      fc.asyncProperty(
        fc.array(message, { minLength: 2 * MESSAGES_PER_SECOND + 5, maxLength: 6 * MESSAGES_PER_SECOND }),
        fc.boolean(),
        async (flood, wsPings) => {
          const socket = await TestSocket.open(t.url, { apiKey: key });
          for (const m of flood) {
            if (socket.closed) break;
            if (wsPings && m.type === 'ping') socket.socket.ping();
            else socket.send(m);
          }
          expect((await socket.waitForClose()).code).toBe(4429);
        },
      ),
      { numRuns: 10 },
    );
    // Before its connection_ack a socket holds no key: a few messages, not a budget's worth.
    const unacknowledged = await TestSocket.open(t.url, { init: false });
    for (let i = 0; i < 30 && !unacknowledged.closed; i++) unacknowledged.send({ type: 'ping' });
    expect((await unacknowledged.waitForClose()).code).toBe(4429);
    // Within the budget: a burst of pings, then one a little under the rate, all answered.
    const calm = await TestSocket.open(t.url, { apiKey: key });
    for (let i = 0; i < MESSAGES_PER_SECOND; i++) calm.send({ type: 'ping' });
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000 / MESSAGES_PER_SECOND + 10));
      calm.send({ type: 'ping' });
    }
    await calm.waitFor(() => calm.messages.filter((m) => m.type === 'pong').length === MESSAGES_PER_SECOND + 10);
    expect(calm.closed).toBeUndefined();
    calm.close();
  });
});

it('refuses a message budget whose burst cannot hold a resubscription of every subscription (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100_000 }), fc.integer({ min: 1, max: 100_000 }), (perSecond, subscriptions) => {
      const env = { WS_MAX_MESSAGES_PER_SECOND: String(perSecond), MAX_SUBSCRIPTIONS_PER_CONNECTION: String(subscriptions) };
      if (2 * perSecond >= subscriptions + 2) expect(loadConfig(env).ws.maxMessagesPerSecond).toBe(perSecond);
      else expect(() => loadConfig(env)).toThrow(ConfigError);
    }),
  );
});
