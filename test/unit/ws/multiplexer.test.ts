import { type DocumentNode, parse } from 'graphql';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import type { RevocationWatch } from '../../../src/auth/revocation-watch.js';
import type { GatewayContext } from '../../../src/graphql/context.js';
import { schema } from '../../../src/graphql/schema.js';
import { type JobRow, JobStatus } from '../../../src/jobs/model.js';
import { FLUSH_INTERVAL_MS } from '../../../src/limits/fixed.js';
import { KeyConnections } from '../../../src/limits/key-connections.js';
import { ResponseBudget } from '../../../src/limits/response-budget.js';
import type { ChangeFeed, ChangeListener } from '../../../src/live/change-feed.js';
import type { JobUpdatedRequest } from '../../../src/live/job-updated-session.js';
import { LiveJobs } from '../../../src/live/live-jobs.js';
import type { ReplayQueue } from '../../../src/live/replay-queue.js';
import { createLogger } from '../../../src/logger.js';
import { Multiplexer, SocketClosedError } from '../../../src/ws/multiplexer.js';
import { SendBacklog, type SocketSender } from '../../../src/ws/socket-sender.js';
import { turns } from '../../helpers/turns.js';
import { type WsPair, type WsPairs, startWsPairs } from '../../helpers/ws-pair.js';

// The Multiplexer with what it needs around it: LiveJobs routing dispatches to its groups, real
// senders on real sockets (a `ws` server and clients on loopback), and the gateway's schema. What
// the change feed would have read, the test dispatches itself; no subscription here resumes, so
// nothing is replayed and nothing reads a database.

const W1 = '00000000-0000-4000-8000-0000000000a1';
const W2 = '00000000-0000-4000-8000-0000000000a2';
const PROGRESS = 'subscription { jobUpdated { id progress } }';
const STATUS = 'subscription { jobUpdated { id status } }';

/** The change feed's side of LiveJobs: the test dispatches what a read would have found. */
class Dispatches {
  private listener: ChangeListener | undefined;
  subscribe(listener: ChangeListener): () => void {
    this.listener = listener;
    return () => (this.listener = undefined);
  }
  /** Resolves once every subscriber has written the dispatch. */
  async dispatch(...jobs: JobRow[]): Promise<void> {
    await this.listener?.(jobs);
  }
}

/** The revocation watch's side of the sessions: the test revokes keys itself. */
class Revocations {
  private readonly watchers = new Map<string, Set<() => void>>();
  watch(keyId: string, onRevoked: () => void): () => void {
    const set = this.watchers.get(keyId) ?? new Set();
    this.watchers.set(keyId, set.add(onRevoked));
    return () => set.delete(onRevoked);
  }
  revoke(keyId: string): void {
    for (const onRevoked of this.watchers.get(keyId) ?? []) onRevoked();
  }
  /** Sessions still watching a key. */
  get watching(): number {
    let count = 0;
    for (const set of this.watchers.values()) count += set.size;
    return count;
  }
}

let position = 0n;
function job(workspaceId: string, id: string, fields: Partial<JobRow> = {}): JobRow {
  position++;
  return {
    id,
    workspaceId,
    competitorId: null,
    type: 'collect',
    displayTitle: id,
    status: JobStatus.RUNNING,
    previousStatus: null,
    progress: 0,
    currentStep: null,
    steps: [],
    startedAt: new Date(0),
    completedAt: null,
    metadata: {},
    error: null,
    updatedAt: new Date(0),
    changeXid: 1n,
    changeXmin: 0n,
    changeSeq: position,
    heartbeatTimeoutMs: 300_000,
    leaseExpiresAt: null,
    traceparent: null,
    writeTraceparent: null,
    ...fields,
  };
}

/** The frame a member receives: graphql-ws's `next` around the group's serialized result. */
const nextFrame = (id: string, jobUpdated: Record<string, unknown>) => JSON.stringify({ id, type: 'next', payload: { data: { jobUpdated } } });

let pairs: WsPairs;
let backlog: SendBacklog;
let feed: Dispatches;
let revocations: Revocations;
let live: LiveJobs;
let multiplexer: Multiplexer;
const documents = new Map<string, DocumentNode>();

beforeEach(async () => {
  pairs = await startWsPairs();
  backlog = new SendBacklog({ maxBufferedBytes: 1024, maxCongestedMs: 60_000 });
  feed = new Dispatches();
  revocations = new Revocations();
  const noReplays = { replay: () => Promise.reject(new Error('nothing resumes in these tests')) } as Pick<ReplayQueue, 'replay'> as ReplayQueue;
  const watch = revocations as Pick<RevocationWatch, 'watch'> as RevocationWatch;
  live = new LiveJobs(feed as Pick<ChangeFeed, 'subscribe'> as ChangeFeed, noReplays, watch, new ResponseBudget(1e9, 1e9, 1e6));
  multiplexer = new Multiplexer(live, watch, createLogger('silent'));
});
afterEach(async () => {
  vi.useRealTimers();
  backlog.stop();
  await pairs.close();
});

interface Subscriber {
  pair: WsPair;
  sender: SocketSender;
}
async function subscriber(): Promise<Subscriber> {
  const pair = await pairs.connect();
  return { pair, sender: backlog.sender(pair.server, pair.connection) };
}

/** What the gateway's joinGroup does for a jobUpdated subscription without arguments. */
function join(on: Subscriber, workspaceId: string, id: string, query = PROGRESS, closed = new AbortController().signal) {
  let document = documents.get(query);
  if (!document) documents.set(query, (document = parse(query)));
  const request: JobUpdatedRequest = { keyId: `key-of-${workspaceId}`, workspaceId, filter: {}, after: undefined };
  // The group's context: its workspace and scopes. Nothing in these selections reads the job store or mints tokens.
  const contextValue = { principal: { keyId: '', workspaceId, scopes: new Set(['jobs:read'] as const) }, live, keyConnections: new KeyConnections(1) } as Omit<
    GatewayContext,
    'jobs' | 'accessTokens' | 'webhooks'
  > as GatewayContext;
  return multiplexer.join(
    { key: JSON.stringify([workspaceId, query]), document, operationName: undefined, variableValues: undefined, contextValue, schema },
    request,
    on.sender,
    { id, operationId: `${id}#1` },
    [closed],
  );
}

/**
 * Writes a marker straight to the socket and waits for it: everything written to the socket before
 * has arrived then. Returns what arrived before the marker.
 */
async function receivedBefore(on: Subscriber): Promise<string[]> {
  const marker = `marker-${on.pair.received.length}`;
  on.sender.send('marker', marker, Buffer.from(marker));
  const received = await on.pair.receivedCount(on.pair.received.length + 1);
  while (received.at(-1) !== marker) await on.pair.receivedCount(received.length + 1);
  return received.slice(0, -1).filter((message) => !message.startsWith('marker-'));
}

it('counts members across groups: subscriptions of one workspace, document and variables share a group, whatever their socket', async () => {
  const [s1, s2, s3] = [await subscriber(), await subscriber(), await subscriber()];
  await join(s1, W1, 'a');
  await join(s2, W1, 'a');
  await join(s1, W1, 'a2');
  expect([multiplexer.memberCount, multiplexer.groupCount]).toEqual([3, 1]);
  await join(s3, W1, 'b', STATUS);
  await join(s2, W2, 'c');
  expect([multiplexer.memberCount, multiplexer.groupCount]).toEqual([5, 3]);
});

it('executes each change once per group, and writes the same result to every member behind its own id', async () => {
  const [s1, s2, s3] = [await subscriber(), await subscriber(), await subscriber()];
  await join(s1, W1, 'a');
  await join(s2, W1, 'a');
  await join(s1, W1, 'a2');
  await join(s3, W1, 'b', STATUS);

  await feed.dispatch(job(W1, 'job-1', { progress: 10 }), job(W1, 'job-2', { progress: 20 }));
  // Two jobs, two groups: four executions for four members, not one per member.
  expect(multiplexer.executions).toBe(4);
  // Member after member, each with the whole dispatch.
  expect(await s1.pair.receivedCount(4)).toEqual([
    nextFrame('a', { id: 'job-1', progress: 10 }),
    nextFrame('a', { id: 'job-2', progress: 20 }),
    nextFrame('a2', { id: 'job-1', progress: 10 }),
    nextFrame('a2', { id: 'job-2', progress: 20 }),
  ]);
  expect(await s2.pair.receivedCount(2)).toEqual([nextFrame('a', { id: 'job-1', progress: 10 }), nextFrame('a', { id: 'job-2', progress: 20 })]);
  expect(await s3.pair.receivedCount(2)).toEqual([nextFrame('b', { id: 'job-1', status: 'RUNNING' }), nextFrame('b', { id: 'job-2', status: 'RUNNING' })]);
});

it('writes a group’s frames to its own members only: not to another group’s, not to another workspace’s', async () => {
  const [s1, s2, s3] = [await subscriber(), await subscriber(), await subscriber()];
  await join(s1, W1, 'a');
  await join(s2, W1, 'b', STATUS);
  await join(s3, W2, 'c');

  await feed.dispatch(job(W2, 'job-of-w2', { progress: 5 }));
  expect(multiplexer.executions).toBe(1);
  expect(await receivedBefore(s3)).toEqual([nextFrame('c', { id: 'job-of-w2', progress: 5 })]);
  expect(await receivedBefore(s1)).toEqual([]);
  expect(await receivedBefore(s2)).toEqual([]);

  await feed.dispatch(job(W1, 'job-of-w1', { progress: 6 }));
  expect(multiplexer.executions).toBe(3);
  expect(await receivedBefore(s1)).toEqual([nextFrame('a', { id: 'job-of-w1', progress: 6 })]);
  expect(await receivedBefore(s2)).toEqual([nextFrame('b', { id: 'job-of-w1', status: 'RUNNING' })]);
  expect(await receivedBefore(s3)).toEqual([nextFrame('c', { id: 'job-of-w2', progress: 5 })]);
});

it('lets a member go when it leaves, when its socket closes, when graphql-ws returns its handle, or when its key is revoked; a group goes with its last member', async () => {
  const [s1, s2, s3] = [await subscriber(), await subscriber(), await subscriber()];
  const socketClosed = new AbortController();
  const left = await join(s1, W1, 'a');
  await join(s2, W1, 'a', PROGRESS, socketClosed.signal);
  const returned = await join(s3, W1, 'a');
  await join(s1, W2, 'other');
  expect([multiplexer.memberCount, multiplexer.groupCount, revocations.watching]).toEqual([4, 2, 4]);
  // graphql-ws iterates the handle until the subscription ends.
  const handle = returned.handle();
  const iterated = handle.next();

  left.leave();
  expect([multiplexer.memberCount, multiplexer.groupCount]).toEqual([3, 2]);
  socketClosed.abort();
  expect([multiplexer.memberCount, multiplexer.groupCount]).toEqual([2, 2]);
  await handle.return(undefined);
  expect(await iterated).toEqual({ done: true, value: undefined });
  expect([multiplexer.memberCount, multiplexer.groupCount]).toEqual([1, 1]);

  // The group has gone: nothing is executed for it, nothing written to its former members.
  await feed.dispatch(job(W1, 'job-1', { progress: 1 }));
  expect(multiplexer.executions).toBe(0);
  for (const s of [s1, s2, s3]) expect(await receivedBefore(s)).toEqual([]);

  revocations.revoke(`key-of-${W2}`);
  expect([multiplexer.memberCount, multiplexer.groupCount, revocations.watching]).toEqual([0, 0, 0]);
  await feed.dispatch(job(W2, 'job-2', { progress: 2 }));
  expect(multiplexer.executions).toBe(0);
  expect(await receivedBefore(s1)).toEqual([]);
});

it('forgets the frames still waiting on the socket of a member that leaves', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); // the backlog flushes only when the test says
  const s1 = await subscriber();
  const member = await join(s1, W1, 'a');
  // One dispatch is one corked write: past maxBufferedBytes (1 KiB), the rest of its frames wait.
  await feed.dispatch(...Array.from({ length: 40 }, (_, i) => job(W1, `job-${i}`, { progress: i })));
  await turns(); // the cork is lifted: what was written leaves; no `drain` comes for so few bytes
  expect(s1.sender.pendingBytes).toBeGreaterThan(0);
  expect(backlog.pendingBytes).toBe(s1.sender.pendingBytes);

  member.leave();
  expect(s1.sender.pendingBytes).toBe(0);
  expect(backlog.pendingBytes).toBe(0);
  vi.advanceTimersByTime(FLUSH_INTERVAL_MS);
  const written = await receivedBefore(s1);
  expect(written.length).toBeGreaterThan(0);
  expect(written.length).toBeLessThan(40);
  expect(written).toEqual(Array.from({ length: written.length }, (_, i) => nextFrame('a', { id: `job-${i}`, progress: i })));
});

it('refuses to join for a socket that has closed, and keeps nothing of it', async () => {
  const s1 = await subscriber();
  const closed = new AbortController();
  closed.abort();
  await expect(join(s1, W1, 'a', PROGRESS, closed.signal)).rejects.toBeInstanceOf(SocketClosedError);
  expect([multiplexer.memberCount, multiplexer.groupCount, revocations.watching]).toEqual([0, 0, 0]);
  await feed.dispatch(job(W1, 'job-1'));
  expect(multiplexer.executions).toBe(0);
});
