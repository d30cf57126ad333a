import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import type { PrismaClient } from '../generated/prisma/client.js';
import { lockDataDir } from './data-dir-lock.js';
import { createEmbeddedClusterApart } from './embedded-cluster.js';
import { listenWithReconnect } from './pg-listener.js';
import { type LockHandlers, holdSessionLock } from './session-lock.js';
import { type QueryCounter, countQueries } from './query-counter.js';
import { tracedSql } from './traced-sql.js';
import type { Tracer } from '../telemetry/tracer.js';
import type { ListenHandlers, SqlClient } from './sql.js';
import { EMBEDDED_SHARED_BUFFERS } from '../limits/fixed.js';

export type { PrismaClient };

/** The longest timer Node keeps (about 24.8 days): a statement with no limit of ours. */
const UNBOUNDED_MS = 2 ** 31 - 1;

export interface DatabaseOptions {
  /** `postgres://...`: real PostgreSQL. Unset: embedded PGlite under `dataDir`. */
  databaseUrl?: string | undefined;
  /** PostgreSQL schema (default `public`); ignored for the embedded database. */
  schema?: string | undefined;
  dataDir: string;
  /** Largest number of pooled PostgreSQL connections. */
  poolSize?: number;
  /**
   * PostgreSQL only: how long a statement may take (the client gives up and the server cancels it)
   * and how long connecting, or waiting for a pooled connection, may take. A database that stops
   * answering without closing its connections (a network partition) then costs bounded time.
   */
  timeouts?: { queryMs: number; connectMs: number };
  /** With tracing on: a span per raw SQL statement. */
  tracer?: Tracer | undefined;
}

/** One open database: the driver itself (`sql`) for every statement the gateway runs, and Prisma's client on demand. */
export interface Database {
  readonly kind: 'postgres' | 'embedded';
  /**
   * Prisma's client over the same connections, loaded on the first call: for tools and tests that
   * want typed access to the models. The gateway itself runs no statement through it: its query
   * compiler alone held about 30 MiB of an idle server's RSS (RESULTS.md).
   */
  prisma(): Promise<PrismaClient>;
  readonly sql: SqlClient;
  /** The schema tables live in (`public` unless configured). */
  readonly schema: string;
  /** Statements sent so far (Prisma's and raw), for measuring. */
  readonly queries: QueryCounter;
  /**
   * LISTENs on `channel` for as long as the database is open, reconnecting if the connection
   * drops. Resolves once listening; the returned function stops.
   */
  listen(channel: string, handlers: ListenHandlers): Promise<() => Promise<void>>;
  /**
   * Holds the session advisory lock `name` (within the schema) whenever it can, on a connection of
   * its own (db/session-lock.ts); returns the function that stops and releases it. The embedded
   * database has one process (its data directory is locked): it holds the lock at once.
   */
  holdLock(name: string, retryMs: number, handlers: LockHandlers): () => Promise<void>;
  /** Resolves when the database answers a trivial query within `timeoutMs`. */
  ping(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const database = options.databaseUrl ? openPostgres(options.databaseUrl, options) : await openEmbedded(options.dataDir);
  return options.tracer ? { ...database, sql: tracedSql(database.sql, options.tracer, database.schema) } : database;
}

function openPostgres(databaseUrl: string, options: DatabaseOptions): Database {
  const schema = options.schema ?? 'public';
  const timeouts = options.timeouts;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.poolSize ?? 10,
    // Raw SQL (migrations, the change feed) resolves unqualified names in the configured schema,
    // exactly as Prisma's queries do through the adapter's `schema` option. The server cancels a
    // statement that outlives the query timeout, as the client stops waiting for it.
    options: `-c search_path="${schema}"${timeouts ? ` -c statement_timeout=${timeouts.queryMs}` : ''}`,
    ...(timeouts ? { query_timeout: timeouts.queryMs, connectionTimeoutMillis: timeouts.connectMs } : {}),
  });
  // An idle pooled connection that the server drops emits 'error' on the pool; without a
  // listener Node would crash. The next query simply gets a new connection.
  pool.on('error', () => {});
  const queries = countQueries(pool);
  const prisma = lazily(async () => {
    const [{ PrismaClient }, { PrismaPg }] = await Promise.all([import('../generated/prisma/client.js'), import('@prisma/adapter-pg')]);
    return new PrismaClient({ adapter: new PrismaPg(pool, { schema }) });
  });
  const sql: SqlClient = {
    query: async (text, params) => (await pool.query(text, params)).rows as never[],
    exec: async (script) => void (await pool.query(script)),
    transaction: async (fn, { unbounded = false } = {}) => {
      const client = await pool.connect();
      // pg falls back to the pool's query_timeout for a falsy one: the longest timer Node keeps.
      const limit = unbounded ? { query_timeout: UNBOUNDED_MS } : {};
      try {
        await client.query({ text: 'BEGIN', ...limit });
        if (unbounded) await client.query({ text: 'SET LOCAL statement_timeout = 0', ...limit });
        const result = await fn({
          query: async (text, params) => (await client.query({ text, values: params, ...limit })).rows as never[],
          exec: async (script) => void (await client.query({ text: script, ...limit })),
        });
        await client.query({ text: 'COMMIT', ...limit });
        client.release();
        return result;
      } catch (error) {
        const rolledBack = await client.query({ text: 'ROLLBACK', ...limit }).then(
          () => true,
          () => false,
        );
        // A connection that could not even roll back (timed out, say) is not given back to the pool.
        client.release(rolledBack ? undefined : error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
    },
  };
  let closing: Promise<void> | undefined;
  return {
    kind: 'postgres',
    prisma: prisma.get,
    sql,
    schema,
    queries,
    ping: (timeoutMs) => (closing ? Promise.resolve(false) : pingWith(sql, timeoutMs)),
    listen: async (channel, handlers) => {
      const listener = listenWithReconnect(databaseUrl, schema, channel, handlers, timeouts);
      await listener.ready;
      return listener.stop;
    },
    holdLock: (name, retryMs, handlers) => holdSessionLock(databaseUrl, schema, name, retryMs, handlers, timeouts).stop,
    close: () => {
      closing ??= (async () => {
        await prisma.loaded?.$disconnect();
        // Waits for connections in use, each released within the query timeout; a closing
        // connection whose server has gone silent is not waited for (pg does not wait either).
        await pool.end();
      })();
      return closing;
    },
  };
}

async function openEmbedded(dataDir: string): Promise<Database> {
  const unlock = await lockDataDir(dataDir);
  let pglite: PGlite;
  try {
    // PostgreSQL's default shared_buffers (128 MB) lives in PGlite's WebAssembly memory and was a
    // quarter of an idle server's RSS; the embedded database is for one process and small data.
    const startParams = [...PGlite.defaultStartParams, '-c', `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`];
    const apart = await createEmbeddedClusterApart(dataDir, startParams);
    try {
      pglite = await PGlite.create(dataDir, { startParams });
    } catch (error) {
      if (!apart.failure) throw error;
      throw new Error(`The embedded database could not be created (in a child process: ${apart.failure})`, { cause: error });
    }
  } catch (error) {
    await unlock();
    throw error;
  }
  const queries = countQueries(pglite);
  const prisma = lazily(async () => {
    const [{ PrismaClient }, { PrismaPGlite }] = await Promise.all([import('../generated/prisma/client.js'), import('pglite-prisma-adapter')]);
    return new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  });
  const sql: SqlClient = {
    query: async (text, params) => (await pglite.query(text, params)).rows as never[],
    exec: async (script) => void (await pglite.exec(script)),
    transaction: (fn) =>
      pglite.transaction((tx) =>
        fn({
          query: async (text, params) => (await tx.query(text, params)).rows as never[],
          exec: async (script) => void (await tx.exec(script)),
        }),
      ),
  };
  let closing: Promise<void> | undefined;
  return {
    kind: 'embedded',
    prisma: prisma.get,
    sql,
    schema: 'public',
    queries,
    ping: (timeoutMs) => (closing ? Promise.resolve(false) : pingWith(sql, timeoutMs)),
    // In-process: PGlite delivers NOTIFYs from its own connection (through pglite-socket, a LISTEN
    // on one socket connection was seen to receive none of another's NOTIFYs), and there is no
    // connection to lose.
    listen: async (channel, handlers) => {
      const unlisten = await pglite.listen(channel, handlers.onNotify);
      handlers.onConnected();
      return async () => {
        if (!closing) await unlisten();
      };
    },
    holdLock: (_name, _retryMs, handlers) => {
      handlers.onAcquired();
      return () => Promise.resolve();
    },
    close: () => {
      closing ??= (async () => {
        await prisma.loaded?.$disconnect();
        await pglite.close();
        await unlock();
      })();
      return closing;
    },
  };
}

/** Prisma's client, made on the first `get` (once, however many ask at the same time). */
function lazily(load: () => Promise<PrismaClient>): { get: () => Promise<PrismaClient>; readonly loaded: PrismaClient | undefined } {
  let loading: Promise<PrismaClient> | undefined;
  let loaded: PrismaClient | undefined;
  return {
    get: () =>
      (loading ??= load().then(
        (client) => (loaded = client),
        (error: unknown) => {
          // The next call tries again.
          loading = undefined;
          throw error;
        },
      )),
    get loaded() {
      return loaded;
    },
  };
}

async function pingWith(sql: SqlClient, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([sql.query('SELECT 1').then(() => true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
