/**
 * The few raw-SQL needs that Prisma does not serve (migrations, health, the change feed), over
 * whichever driver is underneath: `pg` for PostgreSQL, PGlite in-process for the embedded database.
 */
export interface SqlClient {
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<Row[]>;
  /** Runs a script of several statements (no parameters). */
  exec(script: string): Promise<void>;
  /**
   * Runs `fn` in one transaction on one connection. `unbounded`: its statements may take as long
   * as they need (migrations), beyond the database's query timeout.
   */
  transaction<T>(fn: (tx: Pick<SqlClient, 'query' | 'exec'>) => Promise<T>, options?: { unbounded?: boolean }): Promise<T>;
}

export interface ListenHandlers {
  onNotify: (payload: string) => void;
  /** After every successful LISTEN (the first and each reconnect): time to catch up. */
  onConnected: () => void;
  /** The listening connection was lost; a reconnect follows. */
  onDisconnected: (error: unknown) => void;
}
