import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { positionOf } from '../../../src/jobs/change-position.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { describeDb, describePostgres } from '../../helpers/databases.js';
import { postgresUrl } from '../../helpers/postgres.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { scrape } from '../../helpers/metrics.js';
import { TestSocket } from '../../helpers/ws-client.js';
import { oneStepJob } from '../../helpers/jobs.js';

/**
 * One JobUpdatedSession for every transport: each rule of a subscription holds the same whether it
 * runs as a member of a multiplexed WebSocket group, as a WebSocket operation yoga runs (a fragment
 * keeps it out of the multiplexer), or as a Server-Sent Events stream.
 */

const SELECTION = 'id type progress changeCursor';
/** The subscription as dashboards send it: multiplexed over WebSockets. */
const direct = (selection: string) => `subscription Watch($type: String, $after: String) { jobUpdated(type: $type, after: $after) { ${selection} } }`;
/** The same through a fragment at the root: run by yoga over WebSockets. */
const viaFragment = (selection: string) => `subscription Watch($type: String, $after: String) { ...Watched }
fragment Watched on Subscription { jobUpdated(type: $type, after: $after) { ${selection} } }`;
const DIRECT = direct(SELECTION);

interface State {
  id: string;
  type: string;
  progress: number;
  changeCursor: string;
}

/** What a client of any transport sees of one subscription. */
interface Subscription {
  /** The job states received so far, in order. */
  states(): State[];
  /** The first error's extensions, once it arrives (an `error` message, or a result with errors). */
  errorExtensions(): Promise<Record<string, unknown>>;
  close(): void;
  /** For WebSockets: the socket, to check how it closed. */
  socket?: TestSocket;
}

type Variables = { type?: string; after?: string };
type CodedError = { extensions: Record<string, unknown> };

interface Transport {
  name: string;
  /** The document this transport sends for a selection of the job. */
  shape(selection: string): string;
  /** Subscribes with the transport's own document, or `query` instead. */
  open(t: TestApp, key: string, variables: Variables, query?: string): Promise<Subscription>;
}

function overWebSocket(name: string, shape: (selection: string) => string): Transport {
  return {
    name,
    shape,
    async open(t, key, variables, document = shape(SELECTION)) {
      const socket = await TestSocket.open(t.url, { apiKey: key });
      socket.subscribe('1', document, variables);
      return {
        socket,
        states: () => socket.nexts<{ data?: { jobUpdated: State } }>('1').flatMap((n) => (n.data ? [n.data.jobUpdated] : [])),
        errorExtensions: async () => {
          const message = await socket.waitFor(
            (m) => m.id === '1' && (m.type === 'error' || (m.type === 'next' && Array.isArray((m.payload as { errors?: unknown }).errors))),
          );
          // An `error` message carries the errors themselves; a `next` carries a result.
          const errors = (Array.isArray(message.payload) ? message.payload : (message.payload as { errors: unknown[] }).errors) as CodedError[];
          return errors[0]!.extensions;
        },
        close: () => socket.close(),
      };
    },
  };
}

const serverSentEvents: Transport = {
  name: 'Server-Sent Events',
  shape: direct,
  async open(t, key, variables, query = DIRECT) {
    const controller = new AbortController();
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-api-key': key },
      body: JSON.stringify({ query, variables }),
      signal: controller.signal,
    });
    const results: Array<{ data?: { jobUpdated: State }; errors?: CodedError[] }> = [];
    // Refusals before the stream starts answer with a plain JSON result.
    void (async () => {
      if (!response.headers.get('content-type')?.includes('text/event-stream')) {
        results.push(await response.json());
        return;
      }
      const decoder = new TextDecoder();
      let text = '';
      const reader = response.body!.getReader();
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        text += decoder.decode(chunk.value, { stream: true });
        const blocks = text.split('\n\n');
        text = blocks.pop()!;
        for (const block of blocks) {
          const data = block.split('\n').find((line) => line.startsWith('data: '));
          if (block.includes('event: next') && data) results.push(JSON.parse(data.slice(6)));
        }
      }
    })().catch(() => {}); // aborted by close()
    return {
      states: () => results.flatMap((r) => (r.data ? [r.data.jobUpdated] : [])),
      errorExtensions: async () => {
        await expect.poll(() => results.find((r) => r.errors), { timeout: 20_000 }).toBeDefined();
        return results.find((r) => r.errors)!.errors![0]!.extensions;
      },
      close: () => controller.abort(),
    };
  },
};

const transports: Transport[] = [overWebSocket('WebSocket, multiplexed', direct), overWebSocket('WebSocket, run by yoga', viaFragment), serverSentEvents];

const cleanups: Array<() => void | Promise<void>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function opened(transport: Transport, t: TestApp, key: string, variables: Variables, query?: string): Promise<Subscription> {
  const subscription = await transport.open(t, key, variables, query);
  cleanups.push(() => subscription.close());
  return subscription;
}

describeDb('one subscription session for every transport', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });

  let cheap: TestApp;
  beforeAll(async () => {
    // The selection costs 5 (the field and its four scalars); a replay sends at most 2 jobs.
    cheap = await startTestApp({ env: { GRAPHQL_MAX_COST: '3', REPLAY_MAX_JOBS: '2' } });
  });

  describe.each(transports)('$name', (transport) => {
    it('resumes with after: the replay, then live, only the filter’s jobs, each state once and in position order', async () => {
      const key = await t.createKey(`resume-${transport.name}`);
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const create = (type: string) => t.app.jobs.create(workspaceId, oneStepJob({ type, displayTitle: type }));
      const before = await create('watched');
      const [watched, other] = [await create('watched'), await create('other')];
      const sub = await opened(transport, t, key, { type: 'watched', after: positionOf(before).toString() });
      // The replay: the one watched job created after `after`, and nothing at or below it.
      await expect.poll(() => sub.states().map((s) => s.id)).toEqual([watched.id]);
      const updates: JobRow[] = [];
      for (const progress of [10, 20, 30]) {
        updates.push(await t.app.jobs.updateProgress(workspaceId, watched.id, { progress }));
        await t.app.jobs.updateProgress(workspaceId, other.id, { progress });
      }
      await expect.poll(() => sub.states().at(-1)?.progress, { timeout: 20_000 }).toBe(30);
      const states = sub.states();
      expect(new Set(states.map((s) => s.id))).toEqual(new Set([watched.id]));
      const cursors = states.map((s) => BigInt(s.changeCursor));
      expect(cursors.every((cursor, i) => i === 0 || cursor > cursors[i - 1]!)).toBe(true);
      expect(cursors[0]).toBeGreaterThan(positionOf(before));
      expect(cursors.at(-1)).toBeGreaterThanOrEqual(positionOf(updates.at(-1)!));
    });

    // The same extensions everywhere: the code alone (the HTTP status yoga keeps for itself is no
    // part of an error a client reads).
    it('refuses a key without jobs:read with FORBIDDEN, and an after that is no changeCursor with BAD_USER_INPUT', async () => {
      const writer = await t.createKey(`refusals-${transport.name}`, ['jobs:write']);
      expect(await (await opened(transport, t, writer, {})).errorExtensions()).toEqual({ code: 'FORBIDDEN' });
      const reader = await t.createKey(`refusals-${transport.name}`, ['jobs:read']);
      expect(await (await opened(transport, t, reader, { after: 'yesterday' })).errorExtensions()).toEqual({ code: 'BAD_USER_INPUT' });
    });

    it('refuses a selection over GRAPHQL_MAX_COST with QUERY_TOO_COMPLEX', async () => {
      const key = await cheap.createKey(`cost-${transport.name}`);
      expect(await (await opened(transport, cheap, key, {})).errorExtensions()).toEqual({ code: 'QUERY_TOO_COMPLEX' });
    });

    it('refuses a resume further behind than REPLAY_MAX_JOBS with BAD_USER_INPUT, and says what to do', async () => {
      const key = await cheap.createKey(`behind-${transport.name}`);
      const workspaceId = await workspaceIdOf(cheap.app.apiKeys, key);
      for (let i = 0; i < 3; i++) await cheap.app.jobs.create(workspaceId, oneStepJob({ displayTitle: `${i}` }));
      // A cheaper selection than the transport's own: this app's cost limit is 3.
      const sub = await opened(transport, cheap, key, { after: '0' }, transport.shape('id'));
      expect(await sub.errorExtensions()).toEqual({ code: 'BAD_USER_INPUT' });
    });

    // graphql-js 16 lets these through validation and then fails (a TypeError, or a throw from
    // inside validation that closed the whole socket): each is a coded refusal, and a WebSocket stays.
    it.each([
      ['a conditional root field', 'subscription { jobUpdated @skip(if: true) { id } }', {}, 'GRAPHQL_VALIDATION_FAILED'],
      [
        'a root field conditional on a variable without a value',
        'subscription($s: Boolean!) { jobUpdated @skip(if: $s) { id } }',
        {},
        'GRAPHQL_VALIDATION_FAILED',
      ],
      ['one inside a fragment', 'subscription { ...F } fragment F on Subscription { jobUpdated @include(if: false) { id } }', {}, 'GRAPHQL_VALIDATION_FAILED'],
      ['two operations and no operationName', 'subscription A { jobUpdated { id } } subscription B { jobUpdated { id } }', {}, 'OPERATION_RESOLUTION_FAILURE'],
      // graphql-armor's limits throw from inside validation when they refuse.
      [
        'more aliases than GRAPHQL_MAX_ALIASES',
        `subscription { jobUpdated { ${Array.from({ length: 16 }, (_, i) => `a${i}: id`).join(' ')} } }`,
        {},
        'QUERY_TOO_COMPLEX',
      ],
    ])('refuses %s with a coded error', async (_, query, variables, code) => {
      const key = await t.createKey(`documents-${transport.name}`);
      const sub = await opened(transport, t, key, variables, query);
      expect(await sub.errorExtensions()).toEqual({ code });
      if (sub.socket) {
        // The connection still answers.
        sub.socket.send({ type: 'ping' });
        await sub.socket.waitFor((m) => m.type === 'pong');
        expect(sub.socket.closed).toBeUndefined();
      }
    });
  });
});

describeDb('a subscription over plain HTTP, and multiplexed groups', () => {
  it('asked for without a streaming media type: 406 NOT_ACCEPTABLE, and the stream it opened holds nothing', async () => {
    const t = await startTestApp({ env: { MAX_CONNECTIONS_PER_KEY: '2' } });
    const key = await t.createKey('not-acceptable');
    const reads = t.app.replays.reads;
    // JSON only: refused before the stream opens. The others: no answer yoga can stream either.
    for (const accept of [
      'application/json',
      'application/graphql-response+json',
      'application/json, application/graphql-response+json;q=0.9',
      'multipart/mixed',
      'text/html',
    ]) {
      const response = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept, 'x-api-key': key },
        body: JSON.stringify({ query: DIRECT, variables: { after: '0' } }),
      });
      expect(response.status, accept).toBe(406);
      expect(response.headers.get('accept'), accept).toBe('text/event-stream');
      expect(await response.json(), accept).toMatchObject({ errors: [{ extensions: { code: 'NOT_ACCEPTABLE' } }] });
    }
    await expect.poll(() => t.app.live.streamCount).toBe(0);
    // The three refused early cost no replay read (the two others may have started theirs).
    expect(t.app.replays.reads - reads).toBeLessThanOrEqual(2);
    // Both of the key's connections are free.
    const streams = await Promise.all([opened(serverSentEvents, t, key, {}), opened(serverSentEvents, t, key, {})]);
    await expect.poll(() => t.app.live.streamCount).toBe(2);
    for (const stream of streams) stream.close();
  });

  it('a variable that sets both `after` and a filter keeps subscribers with different values apart', async () => {
    const t = await startTestApp();
    const key = await t.createKey('shared-variable');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const both = `subscription S($x: String) { jobUpdated(type: $x, after: $x) { ${SELECTION} } }`;
    const sockets = await Promise.all(['1', '2'].map(() => TestSocket.open(t.url, { apiKey: key })));
    for (const socket of sockets) cleanups.push(() => socket.close());
    sockets.forEach((socket, i) => socket.subscribe('x', both, { x: String(i + 1) }));
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(2);
    for (const type of ['1', '2']) await t.app.jobs.create(workspaceId, oneStepJob({ type, displayTitle: type }));
    for (const [i, socket] of sockets.entries()) {
      await expect.poll(() => socket.nexts('x').length).toBeGreaterThan(0);
      expect(socket.nexts<{ data: { jobUpdated: State } }>('x').map((n) => n.data.jobUpdated.type)).toEqual([String(i + 1)]);
    }
  });
});

/**
 * Replays held as long as a test needs: a lock on the jobs table makes their reads wait (a SELECT
 * waits for ACCESS EXCLUSIVE). That takes a second connection, which only real PostgreSQL has.
 */
async function holdReplays(t: TestApp): Promise<() => Promise<void>> {
  const { database } = t.app;
  if (database.kind !== 'postgres') throw new Error('a second connection needs PostgreSQL');
  const locker = new pg.Client({ connectionString: postgresUrl(), options: `-c search_path="${database.schema}"` });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE "Job" IN ACCESS EXCLUSIVE MODE');
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await locker.query('ROLLBACK');
    await locker.end();
  };
  cleanups.push(release);
  return release;
}

describePostgres('while replays are held', () => {
  it(
    'a resume refused because REPLAY_QUEUE_MAX replays wait gets OVERLOADED on every transport; WebSockets also close with 1013 so that clients back off',
    { timeout: 60_000 },
    async () => {
      const t = await startTestApp({ env: { REPLAY_CONCURRENCY: '1', REPLAY_QUEUE_MAX: '1' } });
      const key = await t.createKey('overloaded');
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const job = await t.app.jobs.create(workspaceId, oneStepJob({ displayTitle: 'held' }));
      const after = (positionOf(job) - 1n).toString();
      const release = await holdReplays(t);

      // One replay reading (held by the lock), one waiting: the queue is full.
      const reading = await opened(transports[0]!, t, key, { after });
      await expect.poll(() => t.app.replays.reads).toBe(1);
      const waiting = await opened(transports[0]!, t, key, { after });
      await expect.poll(async () => (await scrape(t.url)).value('jobs_gateway_replays_waiting')).toBe(1);

      for (const transport of transports) {
        const refused = await opened(transport, t, key, { after });
        expect(await refused.errorExtensions(), transport.name).toEqual({ code: 'OVERLOADED' });
        if (refused.socket) expect((await refused.socket.waitForClose()).code, transport.name).toBe(1013);
      }

      // Once the lock goes, the two that were admitted get their replay.
      await release();
      for (const sub of [reading, waiting]) await expect.poll(() => sub.states().map((s) => s.id), { timeout: 20_000 }).toEqual([job.id]);
    },
  );

  it('a multiplexed subscription completed during its replay sends nothing more, even once the client reuses its id', { timeout: 60_000 }, async () => {
    const t = await startTestApp();
    const key = await t.createKey('completed-while-replaying');
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const replayed = await t.app.jobs.create(workspaceId, oneStepJob({ type: 'replayed', displayTitle: 'held' }));
    const release = await holdReplays(t);

    const socket = await TestSocket.open(t.url, { apiKey: key });
    cleanups.push(() => socket.close());
    socket.subscribe('1', DIRECT, { after: (positionOf(replayed) - 1n).toString() });
    await expect.poll(() => t.app.replays.reads).toBe(1);
    // Completed before graphql-ws has registered it, then the id is reused for other jobs, live.
    socket.complete('1');
    socket.subscribe('1', DIRECT, { type: 'live' });
    await expect.poll(() => t.app.webSockets.multiplexer.memberCount).toBe(1);

    await release();
    const live = await t.app.jobs.create(workspaceId, oneStepJob({ type: 'live', displayTitle: 'after' }));
    await expect.poll(() => socket.nexts<{ data: { jobUpdated: State } }>('1').map((n) => n.data.jobUpdated.id), { timeout: 20_000 }).toContain(live.id);
    // The first subscription's replay never reached the client under the reused id.
    expect(socket.nexts<{ data: { jobUpdated: State } }>('1').map((n) => n.data.jobUpdated.id)).toEqual([live.id]);
    expect(t.app.webSockets.multiplexer.memberCount).toBe(1);
  });
});
