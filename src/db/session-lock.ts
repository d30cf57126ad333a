import pg from 'pg';
import { LISTEN_HEARTBEAT_MS } from '../limits/fixed.js';
import { endWithin } from './pg-listener.js';

export interface LockHandlers {
  /** This session holds the lock now. */
  onAcquired(): void;
  /** It held the lock and lost it (its connection closed or stopped answering): another may hold it now. */
  onLost(error: unknown): void;
  /** Its connection could not be opened or used (once per spell of failures), and works again. */
  onUnreachable?(error: unknown): void;
  onRecovered?(): void;
}

/**
 * Tries for a PostgreSQL session advisory lock, named `name` within `schema`, on a connection of its
 * own, every `retryMs` until it holds it; holds it for as long as that connection lives, proving
 * it answers every LISTEN_HEARTBEAT_MS. The lock goes with the session: a process that dies, or whose
 * connection the server ends, releases it at once, and the next try of another instance takes it.
 * (Why a session lock: no table, no lease to renew, no clock; PostgreSQL ends it with the holder.)
 */
export function holdSessionLock(
  connectionString: string,
  schema: string,
  name: string,
  retryMs: number,
  handlers: LockHandlers,
  timeouts?: { queryMs: number; connectMs: number },
): { stop: () => Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  let holding = false;
  let timer: NodeJS.Timeout | undefined;
  let lastProof = 0;
  let failing = false;

  const drop = (current: pg.Client, error: unknown) => {
    if (client !== current) return;
    client = undefined;
    current.removeAllListeners('error');
    current.on('error', () => undefined);
    void endWithin(current);
    if (holding) {
      holding = false;
      if (!stopped) handlers.onLost(error);
    }
  };

  const attempt = async (): Promise<void> => {
    if (stopped) return;
    let current = client;
    try {
      if (!current) {
        current = new pg.Client({
          connectionString,
          application_name: 'jobs-gateway-feed-reader',
          keepAlive: true,
          ...(timeouts ? { query_timeout: timeouts.queryMs, connectionTimeoutMillis: timeouts.connectMs } : {}),
        });
        const opened = current;
        opened.on('error', (error) => drop(opened, error));
        opened.on('end', () => drop(opened, new Error('lock connection ended')));
        client = opened;
        await opened.connect();
        // A holder whose host died or left the network sends no close: the server ends its session
        // (and the lock) once its TCP keepalives go unanswered, 5 s idle then 3 probes 2 s apart,
        // instead of the system's default two hours. (SET, not startup options: a connection string's
        // own options would replace those.)
        await opened.query('SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3');
        if (failing) handlers.onRecovered?.();
        failing = false;
      }
      if (!holding) {
        // Two keys: the lock's name and the schema, so gateways of other schemas in the database elect apart.
        const [row] = (await current.query<{ held: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS held', [name, schema])).rows;
        if (row?.held && !stopped && client === current) {
          holding = true;
          lastProof = Date.now();
          handlers.onAcquired();
        }
      } else if (Date.now() - lastProof >= LISTEN_HEARTBEAT_MS) {
        await current.query('SELECT 1');
        lastProof = Date.now();
      }
    } catch (error) {
      // Said once per spell of failures: an instance that cannot open its election connection never reads the feed for the others.
      if (!failing && !stopped) handlers.onUnreachable?.(error);
      failing = true;
      if (current) drop(current, error);
    }
  };

  const loop = async () => {
    await attempt();
    if (!stopped) timer = setTimeout(() => void loop(), retryMs).unref();
  };
  void loop();

  return {
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      const current = client;
      client = undefined;
      holding = false;
      // Ending the session releases the lock.
      if (current) await endWithin(current);
    },
  };
}
