import type { SqlClient } from '../db/sql.js';
import { Prisma } from '../generated/prisma/client.js';
import { splitPosition } from './change-position.js';
import type { FeedFrontier, FeedRead, Horizon, Registration } from './feed-frontier.js';
import { jobRowOf, runSql } from './job-rows.js';
import type { JobRow } from './model.js';
import type { RememberedJobs } from './remembered-jobs.js';

/** What the change feed's read found. */
export interface FeedChanges {
  /** The changes the read asked for, in position order: final, not dispatched yet. */
  rows: JobRow[];
  /** Workspaces of blocked keys with committed changes waiting behind a registered transaction. */
  heldBack: Array<{ workspaceId: string; key: number }>;
}

/** What a replay's read found. */
export interface ChangesRead {
  /** Final changes of one workspace after the position asked for, in position order. */
  rows: JobRow[];
  /** The largest position this database has handed out: no cursor of its can be larger. */
  newest: bigint;
  /** The end of the range read: every final change of the workspace up to here is in `rows`, unless they fill the limit. */
  upTo: bigint;
}

/**
 * The jobs' change log, across every workspace: where the changes stand (the horizon), the change
 * feed's reads and a resumed subscription's replay. The rows it reads are final; each goes out only
 * to its own workspace's subscribers (LiveJobs). Every statement runs on the driver (job-rows.ts).
 */
export class ChangeLog {
  constructor(
    private readonly sql: SqlClient,
    /** Where the change feed stands: what is final, per workspace. */
    private readonly frontier: FeedFrontier,
    /** Kept current with what the reads find. */
    private readonly remembered: RememberedJobs,
  ) {}

  /**
   * What job_feed_horizon() sees now: the sequence's last number, then the transactions registered
   * as writing jobs (see FeedFrontier). Its own statement, before the feed's read: the read's
   * snapshot must be taken after the registrations were looked at.
   */
  async horizon(): Promise<Horizon> {
    const [found] = await this.sql.query<{ epoch: string; upTo: string; keys: number[]; tickets: unknown[]; pids: Array<number | null> }>(
      'SELECT epoch::text, "upTo"::text, keys, tickets::text[] AS tickets, pids FROM job_feed_horizon()',
    );
    const registrations: Registration[] = found!.keys.map((key, i) => ({ key, ticket: BigInt(String(found!.tickets[i])), pid: found!.pids[i] ?? null }));
    return { epoch: BigInt(found!.epoch), upTo: BigInt(found!.upTo), registrations };
  }

  /**
   * The change feed's read: the current state of every job whose latest change lies in the ranges
   * `read` asks for (its own per key, `all` for the other keys), in position order, at most `limit`;
   * and which blocked workspaces have committed changes waiting.
   */
  async feedChanges(read: FeedRead, limit: number): Promise<FeedChanges> {
    const all = splitPosition(read.all.after);
    const allUpTo = splitPosition(read.all.upTo);
    const apartKeys = [...read.apart.keys()];
    const open = [...read.apart].filter(([, range]) => range.upTo > range.after);
    const main = Prisma.sql`SELECT * FROM "Job" WHERE ("changeXid", "changeSeq") > (${all.xid}, ${all.seq}) AND ("changeXid", "changeSeq") <= (${allUpTo.xid}, ${allUpTo.seq})
      ${apartKeys.length > 0 ? Prisma.sql`AND job_workspace_key("workspaceId") <> ALL(${apartKeys}::int[])` : Prisma.empty}
      ORDER BY "changeXid", "changeSeq" LIMIT ${limit}`;
    // A key read apart: its workspaces found by the key's index, then each one's changes by its own.
    const changes =
      open.length === 0
        ? main
        : Prisma.sql`(${main}) UNION ALL (SELECT j.* FROM ${positionRanges(open)}
        JOIN "Workspace" w ON job_workspace_key(w.id) = r.key
        CROSS JOIN LATERAL (SELECT * FROM "Job" j WHERE j."workspaceId" = w.id
          AND (j."changeXid", j."changeSeq") > (r."afterXid", r."afterSeq") AND (j."changeXid", j."changeSeq") <= (r."upToXid", r."upToSeq")
          ORDER BY j."changeXid", j."changeSeq" LIMIT ${limit}) j)
        ORDER BY "changeXid", "changeSeq" LIMIT ${limit}`;
    const blocked = [...read.blocked].map(([key, final]) => ({ key, ...splitPosition(final) }));
    const heldBack =
      blocked.length === 0
        ? Prisma.sql`'[]'::json`
        : Prisma.sql`(SELECT coalesce(json_agg(json_build_object('workspaceId', w.id, 'key', b.key)), '[]'::json)
            FROM unnest(${blocked.map((b) => b.key)}::int[], ${blocked.map((b) => b.xid.toString())}::int8[], ${blocked.map((b) => b.seq.toString())}::int8[]) AS b(key, xid, seq)
            JOIN "Workspace" w ON job_workspace_key(w.id) = b.key
            WHERE EXISTS (SELECT FROM "Job" j WHERE j."workspaceId" = w.id AND (j."changeXid", j."changeSeq") > (b.xid, b.seq)))`;
    const found = await this.run(Prisma.sql`
      SELECT ${heldBack} AS "heldBack", j.* FROM (VALUES (1)) AS one LEFT JOIN LATERAL (
        ${changes}
      ) j ON true`);
    const rows: JobRow[] = [];
    for (const { heldBack: _, ...raw } of found) if (raw.id !== null && raw.id !== undefined) rows.push(jobRowOf(raw));
    this.remembered.observe(rows);
    return { rows, heldBack: found[0]!.heldBack as FeedChanges['heldBack'] };
  }

  /**
   * A resumed subscription's replay: the current state of every job of the workspace whose latest
   * change lies after `after` and is final now, in position order, at most `limit`. (Its own
   * horizon, not only what the feed has dispatched: a client that is too far behind learns it now.)
   */
  async changedSince(after: bigint, limit: number, workspaceId: string): Promise<ChangesRead> {
    const from = splitPosition(after);
    const final = this.frontier.finalUnder(await this.horizon(), workspaceId);
    const upTo = splitPosition(final);
    const found = await this.run(Prisma.sql`
      SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM job_change_cursor_seq)::text AS "sequenceAt", j.*
      FROM (VALUES (1)) AS one LEFT JOIN LATERAL (
        SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid
          AND ("changeXid", "changeSeq") > (${from.xid}, ${from.seq}) AND ("changeXid", "changeSeq") <= (${upTo.xid}, ${upTo.seq})
        ORDER BY "changeXid", "changeSeq" LIMIT ${limit}
      ) j ON true`);
    const rows: JobRow[] = [];
    for (const { sequenceAt: _, ...raw } of found) if (raw.id !== null && raw.id !== undefined) rows.push(jobRowOf(raw));
    this.remembered.observe(rows);
    return { rows, newest: this.frontier.positionAt(BigInt(found[0]!.sequenceAt as string)), upTo: final };
  }

  /**
   * Positions need job_change_cursor_seq to hand out numbers in the order it is called (CACHE 1,
   * as created): with a cache per session, a number drawn later could be smaller.
   */
  async sequenceInOrder(): Promise<boolean> {
    const [found] = await this.sql.query<{ cache: string }>(
      `SELECT seqcache::text AS cache FROM pg_sequence WHERE seqrelid = 'job_change_cursor_seq'::regclass`,
    );
    return found?.cache === '1';
  }

  private run(statement: Prisma.Sql): Promise<Array<Record<string, unknown>>> {
    return runSql(this.sql, statement);
  }
}

/** Per-key position ranges as a table `r(key, afterXid, afterSeq, upToXid, upToSeq)` of bound arrays. */
function positionRanges(ranges: Array<[number, { after: bigint; upTo: bigint }]>): Prisma.Sql {
  const after = ranges.map(([, range]) => splitPosition(range.after));
  const upTo = ranges.map(([, range]) => splitPosition(range.upTo));
  const text = (values: bigint[]) => values.map((value) => value.toString());
  return Prisma.sql`unnest(${ranges.map(([key]) => key)}::int[], ${text(after.map((p) => p.xid))}::int8[], ${text(after.map((p) => p.seq))}::int8[],
    ${text(upTo.map((p) => p.xid))}::int8[], ${text(upTo.map((p) => p.seq))}::int8[]) AS r(key, "afterXid", "afterSeq", "upToXid", "upToSeq")`;
}
