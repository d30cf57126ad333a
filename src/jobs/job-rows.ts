import type { SqlClient } from '../db/sql.js';
import type { Prisma } from '../generated/prisma/client.js';
import type { JobRow } from './model.js';

/**
 * A row of "Job" as the drivers return it, typed as Prisma's client types it. Both drivers parse
 * timestamps, JSON and enums alike; bigints come as strings from pg and as numbers or bigints from
 * PGlite, hence the conversion. Rows reach here only from `SELECT *` / `RETURNING *` on "Job".
 */
export function jobRowOf(raw: Record<string, unknown>): JobRow {
  return {
    ...(raw as unknown as JobRow),
    changeXid: BigInt(raw.changeXid as string),
    changeXmin: BigInt(raw.changeXmin as string),
    changeSeq: BigInt(raw.changeSeq as string),
  };
}

/**
 * Runs a statement built with Prisma's sql template tag (values always bound) on the driver
 * itself: on the hot paths (a transition, a list, the feed's read) Prisma's raw queries cost about
 * a fifth of the gateway's CPU (see test/bench/RESULTS.md, writes and reads).
 */
export function runSql(sql: Pick<SqlClient, 'query'>, statement: Prisma.Sql): Promise<Array<Record<string, unknown>>> {
  const values = statement.values.map((value) => (typeof value === 'bigint' ? value.toString() : value));
  return sql.query(statement.text, values);
}

/** `rows` by workspace, each list in the order given (position order, for the feed's rows). */
export function groupByWorkspace(rows: readonly JobRow[]): Map<string, JobRow[]> {
  const grouped = new Map<string, JobRow[]>();
  for (const row of rows) {
    const list = grouped.get(row.workspaceId);
    if (list) list.push(row);
    else grouped.set(row.workspaceId, [row]);
  }
  return grouped;
}

/**
 * A job as job_webhook_snapshot() wrote it (to_jsonb of the row, bigints as text): the row again,
 * with its timestamps as dates and its bigints as bigints.
 */
export function jobRowOfSnapshot(snapshot: Record<string, unknown>): JobRow {
  const date = (value: unknown) => (value === null || value === undefined ? null : new Date(value as string));
  return {
    ...jobRowOf(snapshot),
    startedAt: new Date(snapshot.startedAt as string),
    updatedAt: new Date(snapshot.updatedAt as string),
    completedAt: date(snapshot.completedAt),
    leaseExpiresAt: date(snapshot.leaseExpiresAt),
  };
}
