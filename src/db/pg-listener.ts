import pg from 'pg';
import type { ListenHandlers } from './sql.js';
import { LISTEN_BACKOFF_MS } from '../limits/fixed.js';

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
): { ready: Promise<void>; stop: () => Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
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
    });
    client = current;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      current.removeAllListeners('notification');
      current.end().catch(() => {});
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
    if (stopped) return void current.end().catch(() => {});
    backoff = LISTEN_BACKOFF_MS.first;
    resolveReady();
    handlers.onConnected();
  };

  void connect();
  return {
    ready,
    stop: async () => {
      stopped = true;
      clearTimeout(retryTimer);
      resolveReady();
      await client?.end().catch(() => {});
    },
  };
}
