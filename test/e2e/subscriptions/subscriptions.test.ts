import { afterEach, beforeAll, expect, it } from 'vitest';
import {
  CancelJobDocument,
  CompleteJobDocument,
  CreateJobDocument,
  type CreateJobInput,
  FailJobDocument,
  JobsDocument,
  UpdateJobProgressDocument,
} from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { graphql, graphqlOk } from '../../helpers/http.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { TestSocket } from '../../helpers/ws-client.js';
import { settleFeed } from '../../helpers/feed.js';
import { positionOfJob } from '../../helpers/cursor.js';

const SELECTION = 'id status progress currentStep steps { key name status } changeCursor';
const SUBSCRIPTION = `subscription Watch($id: ID, $competitorId: ID, $type: String, $status: JobStatus, $after: String) {
  jobUpdated(id: $id, competitorId: $competitorId, type: $type, status: $status, after: $after) { ${SELECTION} }
}`;

interface Update {
  data: { jobUpdated: { id: string; status: string; progress: number; currentStep: string | null; changeCursor: string } };
}

const input = (overrides: Partial<CreateJobInput> = {}): CreateJobInput => ({
  type: 'collect',
  displayTitle: 'Watched',
  competitorId: 'c-1',
  steps: [
    { id: 'a', name: 'A' },
    { id: 'b', name: 'B' },
  ],
  ...overrides,
});

describeDb('jobUpdated over WebSockets', () => {
  let t: TestApp;
  const sockets: TestSocket[] = [];
  const open = async (options: Parameters<typeof TestSocket.open>[1]) => {
    const socket = await TestSocket.open(t.url, options);
    sockets.push(socket);
    return socket;
  };

  beforeAll(async () => {
    t = await startTestApp({ env: { KEY_RECHECK_INTERVAL_MS: '200', MAX_SUBSCRIPTIONS_PER_CONNECTION: '3', MAX_CONNECTIONS_PER_KEY: '2' } });
  });
  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.close();
  });

  /** A fresh workspace with a worker key and a dashboard key. */
  async function workspace(name: string) {
    const slug = `${name}-${Math.random().toString(36).slice(2, 8)}`;
    return { worker: await t.createKey(slug, ['jobs:write', 'jobs:read', 'jobs:cancel']), dashboard: await t.createKey(slug, ['jobs:read']) };
  }
  const create = async (key: string, overrides?: Partial<CreateJobInput>) =>
    (await graphqlOk(t.url, CreateJobDocument, { input: input(overrides) }, key)).createJob;

  it('emits every change of a job: create, progress, step, complete', async () => {
    const { worker, dashboard } = await workspace('lifecycle');
    const job = await create(worker);
    const socket = await open({ apiKey: dashboard });
    // Resuming from just before the creation replays it as the first message: from then on the
    // subscription is live, so no later state can be merged away by a late replay.
    socket.subscribe('1', SUBSCRIPTION, { after: ((await positionOfJob(t, job.id)) - 1n).toString() });
    await socket.waitForNexts('1', 1);
    // Each change waits for the one before to arrive: states of one job written within one read of
    // the feed would merge into the newest (the README says so).
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 30 } }, worker);
    await socket.waitForNexts('1', 2);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 60, stepId: 'b', stepStatus: 'RUNNING' } }, worker);
    await socket.waitForNexts('1', 3);
    await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, worker);
    const updates = await socket.waitForNexts<Update>('1', 4);
    expect(updates.map((u) => [u.data.jobUpdated.status, u.data.jobUpdated.progress, u.data.jobUpdated.currentStep])).toEqual([
      ['RUNNING', 0, 'A'],
      ['RUNNING', 30, 'A'],
      ['RUNNING', 60, 'B'],
      ['COMPLETED', 100, 'B'],
    ]);
    expect(updates.at(-1)!.data.jobUpdated).toEqual({
      id: job.id,
      status: 'COMPLETED',
      progress: 100,
      currentStep: 'B',
      steps: [
        { key: 'a', name: 'A', status: 'COMPLETED' },
        { key: 'b', name: 'B', status: 'COMPLETED' },
      ],
      changeCursor: expect.any(String),
    });
  });

  it('never shows a job of another workspace', async () => {
    const a = await workspace('iso-a');
    const b = await workspace('iso-b');
    const socket = await open({ apiKey: b.dashboard });
    socket.subscribe('b', SUBSCRIPTION, { after: '0' });
    const aJob = await create(a.worker);
    await graphqlOk(t.url, CompleteJobDocument, { id: aJob.id }, a.worker);
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: (await create(a.worker)).id, progress: 5 } }, a.worker);
    // B's own later change arrives; A's earlier ones were dispatched before it and must be absent.
    const own = await create(b.worker);
    const updates = await socket.waitForNexts<Update>('b', 1);
    expect(updates.map((u) => u.data.jobUpdated.id)).toEqual([own.id]);
  });

  it('filters by id, competitorId, type and status; a RUNNING watcher sees jobs finish', async () => {
    const { worker, dashboard } = await workspace('filters');
    const socket = await open({ apiKey: dashboard });
    socket.subscribe('competitor', SUBSCRIPTION, { competitorId: 'c-9', after: '0' });
    socket.subscribe('type', SUBSCRIPTION, { type: 'discover-products', after: '0' });
    socket.subscribe('running', SUBSCRIPTION, { status: 'RUNNING', after: '0' });
    const first = await create(worker, { competitorId: 'c-9' });
    const second = await create(worker, { type: 'discover-products', competitorId: null });
    // (A second connection: this app allows three subscriptions per connection.)
    const byId = await open({ apiKey: dashboard });
    byId.subscribe('id', SUBSCRIPTION, { id: first.id, after: (await positionOfJob(t, first.id)).toString() });
    await graphqlOk(t.url, CompleteJobDocument, { id: first.id }, worker); // leaves RUNNING
    await graphqlOk(t.url, FailJobDocument, { id: second.id, error: 'boom' }, worker);
    const third = await create(worker, { competitorId: 'c-9' });
    await graphqlOk(t.url, CancelJobDocument, { id: third.id }, worker);
    const last = await create(worker, { type: 'other' }); // a RUNNING job no other filter matches

    const label = (id: string) => (id === first.id ? 'first' : id === second.id ? 'second' : id === third.id ? 'third' : id === last.id ? 'last' : 'other');
    /** Each job's states as seen by one subscription; a replay may merge early states, never later ones. */
    const seen = (socket: TestSocket, id: string) => {
      const byJob = new Map<string, string[]>();
      for (const u of socket.nexts<Update>(id))
        byJob.set(label(u.data.jobUpdated.id), [...(byJob.get(label(u.data.jobUpdated.id)) ?? []), u.data.jobUpdated.status]);
      return Object.fromEntries(byJob);
    };
    // `last` is the newest change: once it has arrived, every earlier one has been dispatched.
    await socket.waitFor((m) => m.id === 'running' && (m.payload as Update | undefined)?.data.jobUpdated.id === last.id);
    const running = seen(socket, 'running');
    expect(Object.keys(running).sort()).toEqual(['first', 'last', 'second', 'third']);
    expect(running.first!.at(-1)).toBe('COMPLETED'); // a RUNNING watcher sees the job finish
    expect(running.second!.at(-1)).toBe('FAILED');
    expect(running.third!.at(-1)).toBe('FAILED');
    expect(running.last).toEqual(['RUNNING']);
    const competitor = seen(socket, 'competitor');
    expect(Object.keys(competitor).sort()).toEqual(['first', 'third']);
    expect([competitor.first!.at(-1), competitor.third!.at(-1)]).toEqual(['COMPLETED', 'FAILED']);
    expect(seen(socket, 'type')).toEqual({ second: expect.arrayContaining(['FAILED']) });
    expect(seen(socket, 'type').second!.at(-1)).toBe('FAILED');
    await byId.waitFor((m) => m.id === 'id' && m.type === 'next');
    expect(seen(byId, 'id')).toEqual({ first: ['COMPLETED'] });
  });

  it('keeps each job in order under concurrent writers; the newest state always arrives', async () => {
    const { worker, dashboard } = await workspace('order');
    const socket = await open({ apiKey: dashboard });
    socket.subscribe('all', SUBSCRIPTION, { after: '0' });
    const jobs = await Promise.all([1, 2, 3].map(() => create(worker)));
    await Promise.all(
      jobs.map(async (job) => {
        for (let progress = 10; progress <= 90; progress += 10) {
          await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress } }, worker);
        }
        await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, worker);
      }),
    );
    await socket.waitFor(() =>
      jobs.every((job) => socket.nexts<Update>('all').some((u) => u.data.jobUpdated.id === job.id && u.data.jobUpdated.status === 'COMPLETED')),
    );
    for (const job of jobs) {
      const states = socket
        .nexts<Update>('all')
        .filter((u) => u.data.jobUpdated.id === job.id)
        .map((u) => u.data.jobUpdated);
      const cursors = states.map((s) => BigInt(s.changeCursor));
      expect(cursors).toEqual([...cursors].sort((x, y) => (x < y ? -1 : 1)));
      expect(new Set(cursors).size).toBe(cursors.length);
      expect(states.map((s) => s.progress)).toEqual([...states.map((s) => s.progress)].sort((x, y) => x - y));
      expect(states.at(-1)).toMatchObject({ status: 'COMPLETED', progress: 100 });
    }
  });

  it('resumes with after: replays what changed, then goes live, with no gap and no duplicate', async () => {
    const { worker, dashboard } = await workspace('resume');
    const job = await create(worker);
    const first = await open({ apiKey: dashboard });
    first.subscribe('1', SUBSCRIPTION, { after: '0' });
    await first.waitForNexts('1', 1);

    // Writes keep flowing while the dashboard is away and while it comes back.
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop && written < 99) {
        written++;
        await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: written } }, worker);
      }
    })();
    await first.waitForNexts('1', 5);
    first.close();
    const seen = first.nexts<Update>('1').map((u) => u.data.jobUpdated);
    const largest = seen.map((s) => BigInt(s.changeCursor)).reduce((a, b) => (a > b ? a : b));

    const second = await open({ apiKey: dashboard });
    second.subscribe('1', SUBSCRIPTION, { after: largest.toString() });
    await second.waitForNexts('1', 1);
    stop = true;
    await writer;
    await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, worker);
    await second.waitFor((m) => m.type === 'next' && (m.payload as Update).data.jobUpdated.status === 'COMPLETED');

    const resumed = second.nexts<Update>('1').map((u) => u.data.jobUpdated);
    const cursors = resumed.map((s) => BigInt(s.changeCursor));
    expect(cursors[0]! > largest).toBe(true); // nothing already seen comes again
    expect(new Set(cursors).size).toBe(cursors.length); // no duplicate
    expect(cursors).toEqual([...cursors].sort((x, y) => (x < y ? -1 : 1)));
    // No gap: the resumed stream picks up after what was seen, moves only forward, and ends at the
    // final state (states written faster than the feed reads may merge into the newest).
    expect(resumed.at(-1)).toMatchObject({ status: 'COMPLETED', progress: 100 });
    expect(resumed[0]!.progress).toBeGreaterThan(Math.max(...seen.map((s) => s.progress)));
    const progress = resumed.map((s) => s.progress);
    expect(progress).toEqual([...new Set(progress)].sort((x, y) => x - y));
  });

  it('refuses a bad key with 4403 before any subscription, and a key without jobs:read with FORBIDDEN', async () => {
    const noKey = await open({ init: true, ack: false });
    expect((await noKey.waitForClose()).code).toBe(4403);
    const wrongKey = await open({ apiKey: 'jg_not-a-real-key', ack: false });
    expect((await wrongKey.waitForClose()).code).toBe(4403);

    const slug = `scopes-${Math.random().toString(36).slice(2, 8)}`;
    const writeOnly = await t.createKey(slug, ['jobs:write']);
    const socket = await open({ apiKey: writeOnly });
    socket.subscribe('1', SUBSCRIPTION, {});
    const error = await socket.waitFor((m) => m.type === 'error');
    expect(error.payload).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'FORBIDDEN' }) })]);

    // The key may also come in the upgrade request's headers.
    const { dashboard } = await workspace('headers');
    const viaHeader = await open({ headers: { authorization: `Bearer ${dashboard}` } });
    viaHeader.subscribe('1', SUBSCRIPTION, { after: '0' });
    expect(viaHeader.closed).toBeUndefined();
  });

  it('rejects bad arguments with BAD_USER_INPUT and keeps the connection', async () => {
    const { dashboard } = await workspace('args');
    const socket = await open({ apiKey: dashboard });
    socket.subscribe('after', SUBSCRIPTION, { after: 'yesterday' });
    socket.subscribe('status', SUBSCRIPTION, { status: 'SLEEPING' });
    for (const id of ['after', 'status']) {
      const error = await socket.waitFor((m) => m.type === 'error' && m.id === id);
      expect(error.payload).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }) })]);
    }
    expect(socket.closed).toBeUndefined();
  });

  it('bounds subscriptions per connection and connections per key', async () => {
    const { dashboard } = await workspace('bounds');
    const socket = await open({ apiKey: dashboard });
    for (const id of ['1', '2', '3', '4']) socket.subscribe(id, SUBSCRIPTION, { after: '0' });
    const error = await socket.waitFor((m) => m.type === 'error' && m.id === '4');
    expect(error.payload).toEqual([expect.objectContaining({ extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' } })]);

    await open({ apiKey: dashboard }); // the second connection of this key
    const third = await open({ apiKey: dashboard, ack: false });
    expect(await third.waitForClose()).toEqual({ code: 1013, reason: expect.stringContaining('Too many connections') });
  });

  it('closes the sockets of a revoked key with 4401', async () => {
    const slug = `revoke-${Math.random().toString(36).slice(2, 8)}`;
    const { key, info } = await t.app.apiKeys.create({ workspace: slug, scopes: ['jobs:read'] });
    const socket = await open({ apiKey: key });
    socket.subscribe('1', SUBSCRIPTION, { after: '0' });
    await t.app.apiKeys.revoke(info.id);
    expect(await socket.waitForClose(5_000)).toEqual({ code: 4401, reason: 'API key revoked' });
  });

  it('costs one read per batch of changes, whatever the number of subscribers', async () => {
    const { worker, dashboard } = await workspace('one-read');
    const job = await create(worker, { type: 'one-read' });
    await t.app.sweeper.stop(); // its sweep is a statement of its own, not the change's
    const from = ((await positionOfJob(t, job.id)) - 1n).toString();
    const sockets = await Promise.all([open({ apiKey: dashboard }), open({ apiKey: dashboard })]);
    // Six subscriptions in three groups (three distinct filters), each live once its replay arrived.
    const filters = { all: {}, byType: { type: 'one-read' }, byId: { id: job.id } };
    for (const socket of sockets) for (const [id, filter] of Object.entries(filters)) socket.subscribe(id, SUBSCRIPTION, { ...filter, after: from });
    for (const socket of sockets) for (const id of Object.keys(filters)) await socket.waitForNexts(id, 1);
    await settleFeed(t.app.feed); // nothing left unread from before

    const reads = t.app.feed.reads;
    const statements = t.app.database.queries.count;
    const executions = t.app.webSockets.multiplexer.executions;
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 33 } }, worker);
    for (const socket of sockets) for (const id of Object.keys(filters)) await socket.waitForNexts(id, 2);
    // The feed read once for the change, perhaps once more on its own announcement (PostgreSQL) or
    // its catch-up timer; never once per subscriber.
    const feedReads = t.app.feed.reads - reads;
    expect(feedReads).toBeGreaterThanOrEqual(1);
    expect(feedReads).toBeLessThanOrEqual(3);
    // All the database saw besides: the mutation's one conditional write (this instance remembered
    // the job it created), perhaps the key's lookup (its cache may have expired), the announcement
    // to other instances and a revocation check of the open sockets' key (every 200 ms in this
    // file); nothing per subscriber (there are six).
    expect(t.app.database.queries.count - statements - feedReads).toBeLessThanOrEqual(4);
    expect(t.app.webSockets.multiplexer.executions - executions).toBe(Object.keys(filters).length);
  });

  it('shares one execution among subscribers with the same document and variables', async () => {
    const { worker, dashboard } = await workspace('multiplex');
    const watchers = await Promise.all(Array.from({ length: 2 }, () => open({ apiKey: dashboard })));
    // Two connections (the per-key limit) with three identical subscriptions each.
    for (const socket of watchers) for (const id of ['x', 'y', 'z']) socket.subscribe(id, SUBSCRIPTION, { type: 'multiplexed', after: '0' });
    const job = await create(worker, { type: 'multiplexed' });
    for (const socket of watchers) for (const id of ['x', 'y', 'z']) await socket.waitForNexts(id, 1);
    const before = t.app.webSockets.multiplexer.executions;
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 50 } }, worker);
    for (const socket of watchers) for (const id of ['x', 'y', 'z']) await socket.waitForNexts(id, 2);
    // Six subscribers, one execution for the change.
    expect(t.app.webSockets.multiplexer.executions - before).toBe(1);
    const payloads = watchers.flatMap((socket) => ['x', 'y', 'z'].map((id) => JSON.stringify(socket.nexts(id)[1])));
    expect(new Set(payloads).size).toBe(1);
  });
});

describeDb('jobUpdated over Server-Sent Events', () => {
  it('streams the same updates to clients without WebSockets', async () => {
    const t = await startTestApp();
    const worker = await t.createKey('sse', ['jobs:read', 'jobs:write']);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: input() }, worker)).createJob;
    const stream = await openEventStream(
      t.url,
      worker,
      `subscription { jobUpdated(after: "${(await positionOfJob(t, job.id)) - 1n}") { id status progress } }`,
    );
    try {
      // The replayed creation is the first event: the stream is live, so complete the job now.
      await stream.next(1);
      await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, worker);
      const events = await stream.next<Update>(2);
      expect(events.map((e) => [e.data.jobUpdated.id, e.data.jobUpdated.status])).toEqual([
        [job.id, 'RUNNING'],
        [job.id, 'COMPLETED'],
      ]);
    } finally {
      stream.close();
    }
  });

  it('ends the stream of a revoked key with UNAUTHENTICATED, whoever revoked it', async () => {
    const t = await startTestApp({ env: { KEY_RECHECK_INTERVAL_MS: '200' } });
    const worker = await t.createKey('sse-revoked', ['jobs:read', 'jobs:write']);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: input() }, worker)).createJob;
    const stream = await openEventStream(t.url, worker, `subscription { jobUpdated(after: "${(await positionOfJob(t, job.id)) - 1n}") { id status } }`);
    try {
      await stream.next(1);
      // Behind the gateway's back, as the CLI or another instance revokes: no cache to invalidate here.
      const { keyId } = (await t.app.apiKeys.authenticate(worker))!;
      await t.app.database.sql.query('UPDATE "ApiKey" SET "revokedAt" = now() WHERE id = $1', [keyId]);
      const events = await stream.rest(); // resolves only when the server ends the stream
      expect(events.at(-1)).toEqual({ event: 'complete', data: undefined });
      expect(events.filter((e) => e.event === 'next').at(-1)!.data).toMatchObject({
        errors: [{ message: 'The API key was revoked.', extensions: { code: 'UNAUTHENTICATED' } }],
      });
      // And the key is refused from then on, cache or not.
      expect((await graphql(t.url, JobsDocument, {}, worker)).status).toBe(401);
    } finally {
      stream.close();
    }
  });
});
