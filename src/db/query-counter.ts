export interface QueryCounter {
  /** Statements sent to the database so far. */
  readonly count: number;
  /** The same, for the metrics. */
  stats(): { statements: number };
}

/**
 * Counts the statements a driver sends by wrapping its `query` method: both Prisma's adapters and
 * our raw SQL go through it, and neither pg, PGlite nor Prisma's driver adapters offer a hook that
 * counts. Operators read it at /metrics (jobs_gateway_database_queries_total), the benchmarks
 * as "database queries per second" (polling against push).
 */
export function countQueries(driver: { query: (...args: never[]) => unknown }): QueryCounter {
  const counter = {
    count: 0,
    stats: () => ({ statements: counter.count }),
  };
  const query = driver.query.bind<(...args: never[]) => unknown>(driver);
  driver.query = (...args: never[]) => {
    counter.count++;
    return query(...args);
  };
  return counter;
}
