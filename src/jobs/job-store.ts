import { LRUCache } from 'lru-cache';
import type { PrismaClient } from '../db/database.js';
import type { SqlClient } from '../db/sql.js';
import { errors, appError } from '../errors.js';
import { Prisma } from '../generated/prisma/client.js';
import { isUuid } from '../ids.js';
import { cursorOf, splitPosition } from './change-position.js';
import type { JobFilter } from './job-filter.js';
import { type JobRow, JobStatus } from './model.js';
import { KeyedMutex } from './keyed-mutex.js';
import * as transitions from './transitions.js';
import { LIST_LIMIT, MAX_TRANSITION_ATTEMPTS, REMEMBERED_JOBS } from '../limits/fixed.js';

/** What the `jobs` list filters on: a subscription's filter without the id, plus a page size. */
export type ListFilter = Omit<JobFilter, 'id'> & { limit?: number | null | undefined };

/** What a read of changes found. */
export interface ChangesRead {
  /** Final changes after the position asked for, in position order. */
  rows: JobRow[];
  /** Every transaction with a smaller id had ended when the rows were read. */
  horizon: bigint;
  /** Committed changes were found past the horizon: a transaction still running holds them back. */
  heldBack: boolean;
  /** The id the next transaction will get: no position of this database has a larger one. */
  nextXid: bigint;
}

type WriteListener = (row: JobRow) => void;

/**
 * The only code that writes jobs. Every method is scoped to one workspace: a job of another
 * workspace is indistinguishable from one that does not exist.
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
  private fromMemory: () => boolean = () => false;
  private memoryMaxAgeMs = 0;
  /** When each remembered state was written or last seen in the feed. */
  private readonly rememberedAt = new WeakMap<JobRow, number>();
  /** The newest horizon a read has seen: every transaction below it had ended (see change-position.ts). */
  private horizon = 0n;
  /**
   * For rows this store read, a horizon taken at or before the snapshot that read them: what a
   * client's cursor for that row may rely on. A horizon seen later would not do: a transaction that
   * committed after the read may have changed other jobs at smaller positions.
   */
  private readonly readHorizons = new WeakMap<JobRow, bigint>();

  /**
   * `sql` runs the three statements on the hot paths (a transition, the feed's read, the horizon)
   * on the driver itself: through Prisma's raw queries they cost about a fifth of the gateway's CPU
   * per progress report (see test/bench/RESULTS.md, writes). Prisma's typed client does the rest.
   */
  constructor(
    readonly prisma: PrismaClient,
    private readonly sql: SqlClient,
  ) {}

  /** Calls `listener` with the row after each job write of this instance has committed, before the write answers. Returns the removal. */
  onWrite(listener: WriteListener): () => void {
    this.writeListeners.add(listener);
    return () => this.writeListeners.delete(listener);
  }

  /**
   * The cursor a client may resume from after receiving `row`. For a row this store read, the
   * horizon of that read; otherwise (a row it wrote) the oldest transaction running when the row was
   * written, which no later snapshot's horizon is below.
   */
  cursorOf(row: JobRow): bigint {
    return cursorOf(row, this.readHorizons.get(row) ?? row.changeXmin);
  }

  /** Rows read under a horizon taken before the read: at most the read's own. */
  private readUnder(horizon: bigint, rows: JobRow[]): JobRow[] {
    for (const row of rows) this.readHorizons.set(row, horizon > row.changeXmin ? horizon : row.changeXmin);
    return rows;
  }

  private written(row: JobRow): JobRow {
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
    if (filter.competitorId != null) transitions.rejectNul('competitorId', filter.competitorId);
    if (filter.type != null) transitions.rejectNul('type', filter.type);
    const horizon = this.horizon;
    // One statement on the driver, walking the (workspaceId[, competitorId], startedAt, id) index:
    // through Prisma's client a list read cost a fifth of the gateway's CPU (test/bench/RESULTS.md, reads).
    const rows = await this.run(Prisma.sql`
      SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid
      ${filter.competitorId != null ? Prisma.sql`AND "competitorId" = ${filter.competitorId}` : Prisma.empty}
      ${filter.type != null ? Prisma.sql`AND type = ${filter.type}` : Prisma.empty}
      ${filter.status != null ? Prisma.sql`AND status = ${filter.status}::"JobStatus"` : Prisma.empty}
      ORDER BY "startedAt" DESC, id DESC LIMIT ${limit}`);
    return this.readUnder(horizon, rows.map(jobRowOf));
  }

  /**
   * Lets `get` answer from the remembered state of a job (see `latest`) while `when` holds: that
   * state is never older than the last change the feed dispatched (the feed's reads update it, and
   * this instance's writes set it), the promise the response cache makes too. app.ts enables it with
   * the cache, while the feed is in step: a dashboard polling a job that a worker moves then costs
   * no read per change.
   */
  answerFromMemoryWhile(when: () => boolean, maxAgeMs: number): void {
    this.fromMemory = when;
    this.memoryMaxAgeMs = maxAgeMs;
  }

  async get(workspaceId: string, id: string): Promise<JobRow | null> {
    if (!isUuid(id)) return null;
    if (this.fromMemory()) {
      const known = this.latest.peek(id);
      // Not older than maxAgeMs: the feed sees no deletions, so a deleted job is forgotten in time.
      if (known?.workspaceId === workspaceId && performance.now() - (this.rememberedAt.get(known) ?? -Infinity) <= this.memoryMaxAgeMs) return known;
    }
    const horizon = this.horizon;
    const [row] = await this.run(Prisma.sql`SELECT * FROM "Job" WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid`);
    return row ? this.readUnder(horizon, [jobRowOf(row)])[0]! : null;
  }

  /**
   * The current state of every job whose latest change has a position after `after` and is final,
   * in position order: the change feed's read (all workspaces) and a resumed subscription's replay
   * (one workspace). One statement, so that the horizon and the rows come from one snapshot.
   */
  async changedSince(after: bigint, limit: number, workspaceId?: string): Promise<ChangesRead> {
    const { xid, seq } = splitPosition(after);
    const inWorkspace = workspaceId === undefined ? Prisma.empty : Prisma.sql`AND "workspaceId" = ${workspaceId}::uuid`;
    const found = await this.run(Prisma.sql`
      WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon, pg_snapshot_xmax(pg_current_snapshot())::text AS "nextXid")
      SELECT h.horizon::text AS horizon, h."nextXid",
        EXISTS (SELECT FROM "Job" WHERE "changeXid" >= h.horizon AND ("changeXid", "changeSeq") > (${xid}, ${seq}) ${inWorkspace}) AS "heldBack",
        j.*
      FROM h LEFT JOIN LATERAL (
        SELECT * FROM "Job" WHERE ("changeXid", "changeSeq") > (${xid}, ${seq}) AND "changeXid" < h.horizon ${inWorkspace}
        ORDER BY "changeXid", "changeSeq" LIMIT ${limit}
      ) j ON true`);
    const horizon = BigInt(found[0]!.horizon as string);
    if (horizon > this.horizon) this.horizon = horizon;
    const heldBack = found[0]!.heldBack === true;
    const nextXid = BigInt(found[0]!.nextXid as string);
    const rows: JobRow[] = [];
    for (const { horizon: _, heldBack: __, nextXid: ___, ...raw } of found) if (raw.id !== null && raw.id !== undefined) rows.push(jobRowOf(raw));
    this.observe(rows);
    return { rows: this.readUnder(horizon, rows), horizon, heldBack, nextXid };
  }

  /**
   * Whether some job carries a transaction id this database has not handed out yet: rows restored
   * from another PostgreSQL cluster (a dump, a replica promoted elsewhere). Their positions would
   * sort after every new change and hold the feed back until the ids catch up.
   */
  async positionsFromElsewhere(): Promise<boolean> {
    const [found] = await this.sql.query<{ foreign: boolean }>(
      `SELECT coalesce(max("changeXid"), 0) >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS foreign FROM "Job"`,
    );
    return found!.foreign;
  }

  /** The current horizon: where a change feed starting now begins. */
  async currentHorizon(): Promise<bigint> {
    const [found] = await this.sql.query<{ horizon: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon');
    const horizon = BigInt(found!.horizon);
    if (horizon > this.horizon) this.horizon = horizon;
    return horizon;
  }

  async create(workspaceId: string, input: transitions.NewJobInput): Promise<JobRow> {
    const fields = transitions.newJob(input);
    const job = await this.prisma.job.create({
      data: { ...fields, workspaceId, steps: toJson(fields.steps), metadata: toJson(fields.metadata) },
    });
    return this.written(job);
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
      const [updated] = await this.run(Prisma.sql`
        UPDATE "Job" SET ${setClause(change(job))}
        WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid AND status = 'RUNNING' AND "changeSeq" = ${job.changeSeq}
        RETURNING *`);
      // The feed may already have brought a newer state (another writer's) than this write's.
      if (updated) return this.written(jobRowOf(updated));
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
