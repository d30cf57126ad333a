import { LRUCache } from 'lru-cache';
import type { PrismaClient } from '../db/database.js';
import type { SqlClient } from '../db/sql.js';
import { errors, appError } from '../errors.js';
import { Prisma } from '../generated/prisma/client.js';
import { isUuid } from '../ids.js';
import { positionOf, splitPosition } from './change-position.js';
import type { FeedFrontier, FeedRead, Horizon, Registration } from './feed-frontier.js';
import { type JobFilterValues, setFilters } from './job-filter.js';
import { type JobRow, JobStatus } from './model.js';
import { KeyedMutex } from './keyed-mutex.js';
import * as transitions from './transitions.js';
import { LIST_LIMIT, MAX_TRANSITION_ATTEMPTS, REMEMBERED_JOBS } from '../limits/fixed.js';

/** What the `jobs` list filters on (jobs/job-filter.ts), plus a page size. */
export type ListFilter = JobFilterValues & { limit?: number | null | undefined };

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
}

type WriteListener = (row: JobRow) => void;

/**
 * The only code that writes jobs. Every method on a workspace's jobs takes the workspace: a job of
 * another workspace is indistinguishable from one that does not exist. The change feed's reads
 * (`horizon`, `feedChanges`) span every workspace; their rows go out only to each one's own.
 */
export class JobStore {
  /** Transitions of one job within this instance wait for each other instead of racing. */
  private readonly perJob = new KeyedMutex();
  /**
   * The latest state this instance has seen of recently written jobs: what it wrote or created, and
   * what the change feed brought since. A worker's next transition starts from it instead of reading
   * the job again, so a progress report is one statement. It can only be stale, never wrong: the
   * write is conditional on the change cursor, and a stale start fails it, reads, and retries.
   */
  private readonly latest = new LRUCache<string, JobRow>({ max: REMEMBERED_JOBS });
  private readonly writeListeners = new Set<WriteListener>();
  private fromMemory: (workspaceId: string) => boolean = () => false;
  private memoryMaxAgeMs = 0;
  /** When each remembered state was written or last seen in the feed. */
  private readonly rememberedAt = new WeakMap<JobRow, number>();
  /**
   * For rows read or written by this store, the position final for their workspace before the
   * statement ran: what a client's cursor for that row may rely on. One known later would not do:
   * a transaction that committed after the read may have changed other jobs at smaller positions.
   * Rows the feed or a replay read are final themselves, and have no entry.
   */
  private readonly finalAtRead = new WeakMap<JobRow, bigint>();

  /**
   * `sql` runs the three statements on the hot paths (a transition, the feed's read, the horizon)
   * on the driver itself: through Prisma's raw queries they cost about a fifth of the gateway's CPU
   * per progress report (see test/bench/RESULTS.md, writes). Prisma's typed client creates jobs.
   */
  constructor(
    readonly prisma: PrismaClient,
    private readonly sql: SqlClient,
    /** Where the change feed stands: what is final, per workspace. */
    private readonly frontier: FeedFrontier,
  ) {}

  /** Calls `listener` with the row after each job write of this instance has committed, before the write answers. Returns the removal. */
  onWrite(listener: WriteListener): () => void {
    this.writeListeners.add(listener);
    return () => this.writeListeners.delete(listener);
  }

  /**
   * The cursor a client may resume from after receiving `row`: its position when it is final, else
   * the position final for its workspace when it was read, so that resuming from it cannot skip a
   * change still to commit (it may send this state once more).
   */
  cursorOf(row: JobRow): bigint {
    const position = positionOf(row);
    const final = this.finalAtRead.get(row);
    return final === undefined || position <= final ? position : final;
  }

  /** Rows read or written by a statement that began when `final` was final for their workspace. */
  private readUnder(final: bigint, rows: JobRow[]): JobRow[] {
    for (const row of rows) this.finalAtRead.set(row, final);
    return rows;
  }

  private written(final: bigint, row: JobRow): JobRow {
    this.readUnder(final, [row]);
    this.remember(row);
    for (const listener of this.writeListeners) listener(row);
    return row;
  }

  /** Keeps the remembered state of these jobs current with rows the feed or a replay just read (whoever wrote them). */
  observe(rows: readonly JobRow[]): void {
    for (const row of rows) if (this.latest.has(row.id)) this.remember(row);
  }

  /** Remembers `row` unless a newer state of its job is remembered already. */
  private remember(row: JobRow): void {
    const known = this.latest.peek(row.id);
    // changeSeq is drawn while the row is locked, so per job it orders states as they were written.
    if (!known || known.changeSeq < row.changeSeq) {
      this.latest.set(row.id, row);
      this.rememberedAt.set(row, performance.now());
    } else if (known.changeSeq === row.changeSeq) {
      // The same state seen again (the feed reading this instance's own write): still current.
      this.rememberedAt.set(known, performance.now());
    }
  }

  async list(workspaceId: string, filter: ListFilter = {}): Promise<JobRow[]> {
    const limit = filter.limit ?? LIST_LIMIT.default;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT.max) {
      throw errors.badInput(`limit must be an integer from 1 to ${LIST_LIMIT.max}.`);
    }
    // Columns come from the filters' declaration, never from a request; values are bound.
    const conditions = setFilters(filter).map(({ name, spec, value }) =>
      spec.kind === 'JobStatus'
        ? Prisma.sql`AND ${Prisma.raw(`"${spec.column}"`)} = ${value}::"JobStatus"`
        : Prisma.sql`AND ${Prisma.raw(`"${spec.column}"`)} = ${transitions.rejectNul(name, value)}`,
    );
    const final = this.frontier.finalFor(workspaceId);
    // One statement on the driver, walking the (workspaceId[, competitorId], startedAt, id) index:
    // through Prisma's client a list read cost a fifth of the gateway's CPU (test/bench/RESULTS.md, reads).
    const rows = await this.run(Prisma.sql`
      SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid ${conditions.length > 0 ? Prisma.join(conditions, ' ') : Prisma.empty}
      ORDER BY "startedAt" DESC, id DESC LIMIT ${limit}`);
    return this.readUnder(final, rows.map(jobRowOf));
  }

  /**
   * Lets `get` answer from the remembered state of a job (see `latest`) while `when` holds: that
   * state is never older than the last change the feed dispatched (the feed's reads update it, and
   * this instance's writes set it), the promise the response cache makes too. app.ts enables it with
   * the cache, while the feed is in step: a dashboard polling a job that a worker moves then costs
   * no read per change.
   */
  answerFromMemoryWhile(when: (workspaceId: string) => boolean, maxAgeMs: number): void {
    this.fromMemory = when;
    this.memoryMaxAgeMs = maxAgeMs;
  }

  async get(workspaceId: string, id: string): Promise<JobRow | null> {
    if (!isUuid(id)) return null;
    if (this.fromMemory(workspaceId)) {
      const known = this.latest.peek(id);
      // Not older than maxAgeMs: the feed sees no deletions, so a deleted job is forgotten in time.
      if (known?.workspaceId === workspaceId && performance.now() - (this.rememberedAt.get(known) ?? -Infinity) <= this.memoryMaxAgeMs) return known;
    }
    const final = this.frontier.finalFor(workspaceId);
    const [row] = await this.run(Prisma.sql`SELECT * FROM "Job" WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid`);
    return row ? this.readUnder(final, [jobRowOf(row)])[0]! : null;
  }

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
    const changes = open.length === 0 ? main : Prisma.sql`(${main}) UNION ALL (SELECT j.* FROM ${positionRanges(open)}
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
    this.observe(rows);
    return { rows, heldBack: found[0]!.heldBack as FeedChanges['heldBack'] };
  }

  /**
   * A resumed subscription's replay: the current state of every job of the workspace whose latest
   * change lies after `after` and is final now, in position order, at most `limit`. (Its own
   * horizon, not only what the feed has dispatched: a client that is too far behind learns it now.)
   */
  async changedSince(after: bigint, limit: number, workspaceId: string): Promise<ChangesRead> {
    const from = splitPosition(after);
    const upTo = splitPosition(this.frontier.finalUnder(await this.horizon(), workspaceId));
    const found = await this.run(Prisma.sql`
      SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM job_change_cursor_seq)::text AS "sequenceAt", j.*
      FROM (VALUES (1)) AS one LEFT JOIN LATERAL (
        SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid
          AND ("changeXid", "changeSeq") > (${from.xid}, ${from.seq}) AND ("changeXid", "changeSeq") <= (${upTo.xid}, ${upTo.seq})
        ORDER BY "changeXid", "changeSeq" LIMIT ${limit}
      ) j ON true`);
    const rows: JobRow[] = [];
    for (const { sequenceAt: _, ...raw } of found) if (raw.id !== null && raw.id !== undefined) rows.push(jobRowOf(raw));
    this.observe(rows);
    return { rows, newest: this.frontier.positionAt(BigInt(found[0]!.sequenceAt as string)) };
  }

  /**
   * Positions need job_change_cursor_seq to hand out numbers in the order it is called (CACHE 1,
   * as created): with a cache per session, a number drawn later could be smaller.
   */
  async sequenceInOrder(): Promise<boolean> {
    const [found] = await this.sql.query<{ cache: string }>(`SELECT seqcache::text AS cache FROM pg_sequence WHERE seqrelid = 'job_change_cursor_seq'::regclass`);
    return found?.cache === '1';
  }

  async create(workspaceId: string, input: transitions.NewJobInput): Promise<JobRow> {
    const fields = transitions.newJob(input);
    const final = this.frontier.finalFor(workspaceId);
    const job = await this.prisma.job.create({
      data: { ...fields, workspaceId, steps: toJson(fields.steps), metadata: toJson(fields.metadata) },
    });
    return this.written(final, job);
  }

  updateProgress(workspaceId: string, id: string, input: transitions.ProgressInput): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.progress(job, input));
  }

  complete(workspaceId: string, id: string): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.complete(job, new Date()));
  }

  fail(workspaceId: string, id: string, error: string): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.fail(job, error, new Date()));
  }

  cancel(workspaceId: string, id: string): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.cancel(job, new Date()));
  }

  /**
   * Optimistic concurrency: read the job, compute the change, and write it only if the job is still
   * RUNNING at the changeSeq that was read. The trigger gives every write a new one, so any
   * write in between makes ours match no row; we then read again and retry. A cancel racing a
   * worker's completeJob therefore ends in exactly one of the two outcomes, and the loser learns
   * JOB_NOT_RUNNING. One statement per attempt works the same on PostgreSQL and PGlite.
   *
   * Within one instance, transitions of the same job are queued (a worker reporting progress
   * concurrently would otherwise mostly lose races); only writers elsewhere (other instances,
   * SQL) can make an attempt fail, and retries back off with jitter.
   */
  private transition(workspaceId: string, id: string, change: (job: JobRow) => transitions.JobPatch): Promise<JobRow> {
    return this.perJob.run(id, () => this.transitionNow(workspaceId, id, change));
  }

  private async transitionNow(
    workspaceId: string,
    id: string,
    change: (job: JobRow) => transitions.JobPatch,
  ): Promise<JobRow> {
    // Only a RUNNING job of this workspace is worth starting from memory; anything else is read,
    // so that its error (not found, not running) comes from the database.
    const remembered = this.latest.get(id);
    let start = remembered?.workspaceId === workspaceId && remembered.status === JobStatus.RUNNING ? remembered : undefined;
    for (let attempt = 0; attempt < MAX_TRANSITION_ATTEMPTS; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
      const job = start ?? (await this.get(workspaceId, id));
      const fromMemory = start !== undefined;
      start = undefined;
      if (!job) throw errors.jobNotFound(id);
      if (job.status !== JobStatus.RUNNING) throw errors.jobNotRunning(id, job.status);
      const final = this.frontier.finalFor(workspaceId);
      const [updated] = await this.run(Prisma.sql`
        UPDATE "Job" SET ${setClause(change(job))}
        WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid AND status = 'RUNNING' AND "changeSeq" = ${job.changeSeq}
        RETURNING *`);
      // The feed may already have brought a newer state (another writer's) than this write's.
      if (updated) return this.written(final, jobRowOf(updated));
      this.latest.delete(id);
      // A stale memory is not a lost race: read and try again at once, without using up an attempt.
      if (fromMemory) attempt--;
    }
    throw appError('CONFLICT', `Job ${id} is being changed by other writers; try again.`);
  }

  /** A statement built with Prisma's sql template tag (values always bound), on the driver. */
  private run(statement: Prisma.Sql): Promise<Array<Record<string, unknown>>> {
    const values = statement.values.map((value) => (typeof value === 'bigint' ? value.toString() : value));
    return this.sql.query(statement.text, values);
  }
}

/**
 * A row of "Job" as the drivers return it, typed as Prisma's client types it. Both drivers parse
 * timestamps, JSON and enums alike; bigints come as strings from pg and as numbers or bigints from
 * PGlite, hence the conversion. Rows reach here only from `SELECT *` / `RETURNING *` on "Job".
 */
function jobRowOf(raw: Record<string, unknown>): JobRow {
  return {
    ...(raw as unknown as JobRow),
    changeXid: BigInt(raw.changeXid as string),
    changeXmin: BigInt(raw.changeXmin as string),
    changeSeq: BigInt(raw.changeSeq as string),
  };
}

/**
 * The SET list of a transition. Written as SQL rather than prisma.job.update: a progress report is
 * the hot write, and Prisma's query planning and interpretation was a fifth of the gateway's CPU
 * per report (see test/bench/RESULTS.md, writes). The trigger sets updatedAt, the change position
 * and previousStatus, so an empty patch still records a change.
 */
function setClause(patch: transitions.JobPatch): Prisma.Sql {
  const sets: Prisma.Sql[] = [Prisma.sql`"updatedAt" = "updatedAt"`];
  if (patch.status !== undefined) sets.push(Prisma.sql`status = ${patch.status}::"JobStatus"`);
  if (patch.progress !== undefined) sets.push(Prisma.sql`progress = ${patch.progress}`);
  if (patch.currentStep !== undefined) sets.push(Prisma.sql`"currentStep" = ${patch.currentStep}`);
  if (patch.steps !== undefined) sets.push(Prisma.sql`steps = ${JSON.stringify(patch.steps)}::jsonb`);
  if (patch.metadata !== undefined) sets.push(Prisma.sql`metadata = ${JSON.stringify(patch.metadata)}::jsonb`);
  if (patch.completedAt !== undefined) sets.push(Prisma.sql`"completedAt" = ${patch.completedAt}`);
  if (patch.error !== undefined) sets.push(Prisma.sql`error = ${patch.error}`);
  return Prisma.join(sets, ', ');
}

function toJson(value: unknown): Prisma.InputJsonValue {
  return value as Prisma.InputJsonValue;
}

/** Per-key position ranges as a table `r(key, afterXid, afterSeq, upToXid, upToSeq)` of bound arrays. */
function positionRanges(ranges: Array<[number, { after: bigint; upTo: bigint }]>): Prisma.Sql {
  const after = ranges.map(([, range]) => splitPosition(range.after));
  const upTo = ranges.map(([, range]) => splitPosition(range.upTo));
  const text = (values: bigint[]) => values.map((value) => value.toString());
  return Prisma.sql`unnest(${ranges.map(([key]) => key)}::int[], ${text(after.map((p) => p.xid))}::int8[], ${text(after.map((p) => p.seq))}::int8[],
    ${text(upTo.map((p) => p.xid))}::int8[], ${text(upTo.map((p) => p.seq))}::int8[]) AS r(key, "afterXid", "afterSeq", "upToXid", "upToSeq")`;
}
