import { randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import { openDatabase } from '../../src/db/database.js';
import { ChangeLog } from '../../src/jobs/change-log.js';
import { FeedFrontier } from '../../src/jobs/feed-frontier.js';
import { RememberedJobs } from '../../src/jobs/remembered-jobs.js';
import { FEED_PAGE_SIZE } from '../../src/limits/fixed.js';
import { ChangeFeed } from '../../src/live/change-feed.js';
import { BusFeed } from '../../src/live/bus/bus-feed.js';
import { FeedBus } from '../../src/live/bus/feed-bus.js';
import { createLogger } from '../../src/logger.js';

// What several instances cost PostgreSQL (issue 25): besides real gateways, "simulated" instances
// that do to the database exactly what an instance's change feed does (LISTEN on the
// announcement channel, the horizon and the changes on every announcement and every catch-up),
// without serving anyone: many of them fit in one process, as many real gateways would not on two
// cores.

export interface SimulatedInstances {
  /** Feed reads of all of them so far. */
  reads(): number;
  /** With a bus: the messages they published and received so far. */
  busMessages(): { published: number; received: number };
  stop(): Promise<void>;
}

/**
 * `count` change feeds on the schema of `databaseUrl` (`?schema=`), each with its own connections:
 * one pooled, one listening. With `bus` (FEED_BUS), each runs the feed over the bus as a gateway
 * does: in the election, and a follower once another instance reads (watching no workspace, as an
 * instance whose sockets watch none).
 */
export async function startSimulatedInstances(databaseUrl: string, count: number, bus?: string): Promise<SimulatedInstances> {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? 'public';
  url.searchParams.delete('schema');
  const logger = createLogger('error');
  const instances = await Promise.all(
    Array.from({ length: count }, async () => {
      const database = await openDatabase({ databaseUrl: url.toString(), schema, dataDir: '', poolSize: 1 });
      const frontier = new FeedFrontier();
      const remembered = new RememberedJobs();
      const changes = new ChangeLog(database.sql, frontier, remembered);
      // As the gateway's defaults (FEED_CATCH_UP_INTERVAL_MS, FEED_COALESCE_MS); it writes nothing.
      const feed = new ChangeFeed(database, changes, { onWrite: () => () => undefined }, { instanceId: randomUUID(), announcements: 0 }, frontier, logger, {
        catchUpIntervalMs: 1_000,
        pageSize: FEED_PAGE_SIZE,
        coalesceMs: 10,
      });
      const overBus = bus
        ? new BusFeed(feed, new FeedBus(bus, 'jobs-gateway simulated', logger), database, changes, frontier, remembered, logger, {
            catchUpIntervalMs: 1_000,
            pageSize: FEED_PAGE_SIZE,
          })
        : undefined;
      await (overBus ?? feed).start();
      return { database, feed, overBus };
    }),
  );
  return {
    reads: () => instances.reduce((sum, { feed }) => sum + feed.reads, 0),
    busMessages: () =>
      instances.reduce(
        (sum, { overBus }) => ({ published: sum.published + (overBus?.stats().published ?? 0), received: sum.received + (overBus?.stats().received ?? 0) }),
        { published: 0, received: 0 },
      ),
    stop: async () => {
      for (const { database, feed, overBus } of instances) {
        await (overBus ?? feed).stop();
        await database.close();
      }
    },
  };
}

/** Resolves whether a NATS server accepts connections at `url` (nats://host:port). */
export async function busAnswers(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port || 4222), hostname, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** What PostgreSQL counts for the jobs table of a schema: scans and rows read (sequential and by index). */
export interface TableCounters {
  scans: number;
  rowsRead: number;
}

export async function jobTableCounters(databaseUrl: string, options: { analyzeFirst?: boolean } = {}): Promise<TableCounters> {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? 'public';
  url.searchParams.delete('schema');
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    // A fresh table has no statistics until autovacuum's analyze: its plans (sequential scans) are
    // then not those of a table in service.
    if (options.analyzeFirst) await client.query(`ANALYZE "${schema}"."Job"`);
    // The statistics a backend reports reach the view at its transaction's end; a fresh snapshot.
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ scans: string; rows: string }>(
      `SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS rows
         FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'Job'`,
      [schema],
    );
    return { scans: Number(rows[0]?.scans ?? 0), rowsRead: Number(rows[0]?.rows ?? 0) };
  } finally {
    await client.end();
  }
}
