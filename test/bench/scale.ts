import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { openDatabase } from '../../src/db/database.js';
import { ChangeLog } from '../../src/jobs/change-log.js';
import { FeedFrontier } from '../../src/jobs/feed-frontier.js';
import { RememberedJobs } from '../../src/jobs/remembered-jobs.js';
import { FEED_PAGE_SIZE } from '../../src/limits/fixed.js';
import { ChangeFeed } from '../../src/live/change-feed.js';
import { createLogger } from '../../src/logger.js';

// What several instances cost PostgreSQL (issue 25): besides real gateways, "simulated" instances
// that do to the database exactly what an instance's change feed does (LISTEN on the
// announcement channel, the horizon and the changes on every announcement and every catch-up),
// without serving anyone: many of them fit in one process, as many real gateways would not on two
// cores.

export interface SimulatedInstances {
  /** Feed reads of all of them so far. */
  reads(): number;
  stop(): Promise<void>;
}

/** `count` change feeds on the schema of `databaseUrl` (`?schema=`), each with its own connections: one pooled, one listening. */
export async function startSimulatedInstances(databaseUrl: string, count: number): Promise<SimulatedInstances> {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? 'public';
  url.searchParams.delete('schema');
  const logger = createLogger('error');
  const instances = await Promise.all(
    Array.from({ length: count }, async () => {
      const database = await openDatabase({ databaseUrl: url.toString(), schema, dataDir: '', poolSize: 1 });
      const frontier = new FeedFrontier();
      const changes = new ChangeLog(database.sql, frontier, new RememberedJobs());
      // As the gateway's defaults (FEED_CATCH_UP_INTERVAL_MS, FEED_COALESCE_MS); it writes nothing.
      const feed = new ChangeFeed(database, changes, { onWrite: () => () => undefined }, { instanceId: randomUUID(), announcements: 0 }, frontier, logger, {
        catchUpIntervalMs: 1_000,
        pageSize: FEED_PAGE_SIZE,
        coalesceMs: 10,
      });
      await feed.start();
      return { database, feed };
    }),
  );
  return {
    reads: () => instances.reduce((sum, { feed }) => sum + feed.reads, 0),
    stop: async () => {
      for (const { database, feed } of instances) {
        await feed.stop();
        await database.close();
      }
    },
  };
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
