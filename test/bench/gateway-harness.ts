import type { Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createApp } from '../../src/app.js';
import type { Scope } from '../../src/auth/scopes.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { serveParent } from './ipc.js';
import { seedJobInput } from './load.js';

// The gateway under test, in a process of its own: exactly what `npm start` builds (createApp),
// plus an IPC channel that reports its memory and counters.

const config = loadConfig({ LOG_LEVEL: 'warn', ...process.env, PORT: '0' });
const app = await createApp(config, createLogger(config.logLevel));
const url = await app.start();
// As a load balancer waits for /readyz: the load begins on a warmed process.
await app.warmedUp;

// How long the event loop was held at most: a request that serializes a large result holds it.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

// Bytes written to every connection, open or closed (HTTP responses and WebSocket frames alike).
let closedBytes = 0;
const open = new Set<Socket>();
app.httpServer.on('connection', (socket: Socket) => {
  open.add(socket);
  socket.once('close', () => {
    open.delete(socket);
    closedBytes += socket.bytesWritten;
  });
});

serveParent(
  {
    url: () => url,
    pid: () => process.pid,
    createKey: async (m) =>
      (await app.apiKeys.create({ workspace: m.workspace as string, scopes: (m.scopes as Scope[] | undefined) ?? ['jobs:read', 'jobs:write', 'jobs:cancel'] }))
        .key,
    /** `count` of the bench's jobs in the key's workspace, written by the job store itself (faster than the API). */
    seedJobs: async (m) => {
      const principal = await app.apiKeys.authenticate(m.key as string);
      const ids: string[] = [];
      for (let i = 0; i < (m.count as number); i++) ids.push((await app.jobs.create(principal!.workspaceId, seedJobInput(i))).id);
      // As read-ceiling-server.ts does: the statistics autovacuum would gather soon after.
      await app.database.sql.query('ANALYZE "Job"');
      return ids;
    },
    memory: async () => {
      // V8 gives freed pages back to the OS on helper threads after a collection: let it finish,
      // or RSS readings differ by tens of MB depending on when they were taken. A last-resort
      // collection, as an idle gateway makes (idle-memory.ts), also shrinks the young generation
      // that the last load grew: what remains is what the gateway holds, not where its load left V8.
      // (The RSS after ordinary collections, as earlier runs read it, comes along for comparison.)
      globalThis.gc?.();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const rssBeforeRelease = process.memoryUsage().rss;
      const release = () => globalThis.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      release();
      await new Promise((resolve) => setTimeout(resolve, 500));
      release();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { rss, heapUsed } = process.memoryUsage();
      return { rss, heapUsed, rssBeforeRelease };
    },
    /** `count` jobs whose metadata is as large as the gateway takes (64 KiB serialized): what a heavy tenant holds. */
    seedHeavyJobs: async (m) => {
      const principal = await app.apiKeys.authenticate(m.key as string);
      const metadata = { report: 'x'.repeat(64 * 1024 - 32) };
      for (let i = 0; i < (m.count as number); i++) await app.jobs.create(principal!.workspaceId, { ...seedJobInput(i), metadata });
      return m.count;
    },
    /** Starts measuring the event loop's delay afresh (10 ms resolution). */
    loopDelayReset: () => {
      loopDelay.reset();
      return true;
    },
    /** The longest event-loop delay since `loopDelayReset`, in ms. */
    loopDelayMaxMs: () => loopDelay.max / 1e6,
    /** The 99th percentile of the event-loop delays sampled since `loopDelayReset`, in ms. */
    loopDelayP99Ms: () => loopDelay.percentile(99) / 1e6,
    stats: () => {
      let bytes = closedBytes;
      for (const socket of open) bytes += socket.bytesWritten;
      return {
        queries: app.database.queries.count,
        executions: app.webSockets.multiplexer.executions,
        feedReads: app.feed.reads,
        feedDispatches: app.feed.dispatches,
        feedDispatched: app.feed.dispatched,
        feedAnnouncements: app.feed.stats().announcements,
        // With FEED_BUS: its mode, messages and gap repairs.
        feedMode: app.busFeed?.mode,
        busPublished: app.busFeed?.stats().published ?? 0,
        busReceived: app.busFeed?.stats().received ?? 0,
        busRepairs: app.busFeed?.stats().repairs ?? 0,
        groups: app.webSockets.multiplexer.groupCount,
        subscribers: app.webSockets.multiplexer.memberCount,
        connections: app.webSockets.connectionCount,
        bytesWritten: bytes,
      };
    },
  },
  () => app.close(),
);
