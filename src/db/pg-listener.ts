import pg from 'pg';
import type { ListenHandlers } from './sql.js';
import { CONNECTION_CLOSE_WAIT_MS, LISTEN_BACKOFF_MS, LISTEN_HEARTBEAT_MS } from '../limits/fixed.js';

/**
 * LISTEN on a dedicated PostgreSQL connection (pooled connections cannot hold a LISTEN), and
 * reconnect with backoff whenever that connection is lost. `onConnected` fires after every
 * successful LISTEN, the first included, so the caller can catch up on what it may have missed.
 * pg has no reconnecting listener of its own, hence this small loop.
 */
export function listenWithReconnect(
  connectionString: string,
  schema: string,
  channel: string,
  handlers: ListenHandlers,
  timeouts?: { queryMs: number; connectMs: number },
): { ready: Promise<void>; stop: () => Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let backoff: number = LISTEN_BACKOFF_MS.first;
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));

  const connect = async (): Promise<void> => {
    if (stopped) return;
    const current = new pg.Client({
      connectionString,
      application_name: 'jobs-gateway-listener',
      options: `-c search_path="${schema}"`,
      keepAlive: true,
      ...(timeouts ? { query_timeout: timeouts.queryMs, connectionTimeoutMillis: timeouts.connectMs } : {}),
    });
    client = current;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      clearInterval(heartbeat);
      current.removeAllListeners('notification');
      void endWithin(current);
      if (stopped) return;
      handlers.onDisconnected(error);
      retryTimer = setTimeout(() => void connect(), backoff);
      backoff = Math.min(backoff * 2, LISTEN_BACKOFF_MS.max);
    };
    current.on('error', fail);
    current.on('end', () => fail(new Error('listener connection ended')));
    current.on('notification', (message) => {
      if (message.channel === channel && message.payload !== undefined) handlers.onNotify(message.payload);
    });
    try {
      await current.connect();
      await current.query(`LISTEN "${channel.replaceAll('"', '""')}"`);
    } catch (error) {
      fail(error);
      return;
    }
    if (stopped) return void endWithin(current);
    backoff = LISTEN_BACKOFF_MS.first;
    // Within the query timeout, or the connection is given up and replaced.
    heartbeat = setInterval(() => void current.query('SELECT 1').catch(fail), LISTEN_HEARTBEAT_MS).unref();
    resolveReady();
    handlers.onConnected();
  };

  void connect();
  return {
    ready,
    stop: async () => {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(heartbeat);
      resolveReady();
      if (client) await endWithin(client);
    },
  };
}

/**
 * Ends `client` in order, or drops its socket when the server does not answer the close within
 * CONNECTION_CLOSE_WAIT_MS: pg's `end` waits for the server's side of the close, which a silent
 * server never sends, and would hold shutdown for as long as TCP keeps trying.
 */
export async function endWithin(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), CONNECTION_CLOSE_WAIT_MS)));
  const outcome = await Promise.race([client.end().catch(() => undefined), waited]);
  clearTimeout(timer);
  if (outcome === 'late') (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}
