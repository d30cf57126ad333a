import { createHash, randomUUID } from 'node:crypto';
import stableStringify from 'fast-json-stable-stringify';
import type { Tracer } from '../telemetry/tracer.js';
import type { SqlClient } from '../db/sql.js';
import { errors, appError } from '../errors.js';
import { Prisma } from '../generated/prisma/client.js';
import { isUuid } from '../ids.js';
import { positionOf } from './change-position.js';
import type { FeedFrontier } from './feed-frontier.js';
import { type JobFilter, setFilters } from './job-filter.js';
import { jobRowOf, runSql } from './job-rows.js';
import type { ListPosition } from './list-cursor.js';
import { type JobRow, JobStatus } from './model.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { RememberedJobs } from './remembered-jobs.js';
import * as transitions from './transitions.js';
import { LIST_LIMIT, MAX_TRANSITION_ATTEMPTS } from '../limits/fixed.js';

/** What the `jobs` list filters on (jobs/job-filter.ts; `id` for a token restricted to one job), plus a page size. */
export type ListFilter = JobFilter & { limit?: number | null | undefined };

type WriteListener = (row: JobRow) => void;

export interface JobStoreOptions {
  /** A job's heartbeat timeout when its creator names none (JOB_HEARTBEAT_TIMEOUT_MS). */
  heartbeatTimeoutMs: number;
  /** How long a createJob's idempotency key answers the job it created (IDEMPOTENCY_TTL_MS). */
  idempotencyTtlMs: number;
  /** With tracing on: every write records its span's traceparent ("writeTraceparent"; a new job's also as "traceparent"). */
  tracer?: Tracer | undefined;
}

/**
 * A workspace's jobs: the only code that writes them, and their reads. Every method takes the
 * workspace: a job of another workspace is indistinguishable from one that does not exist. (The
 * change log across workspaces is ChangeLog's; the remembered states, RememberedJobs'.)
 */
export class JobStore {
  /** Transitions of one job within this instance wait for each other instead of racing. */
  private readonly perJob = new KeyedMutex();
  private readonly writeListeners = new Set<WriteListener>();
  /**
   * For rows read or written by this store, the position final for their workspace before the
   * statement ran: what a client's cursor for that row may rely on. One known later would not do:
   * a transaction that committed after the read may have changed other jobs at smaller positions.
   * Rows the feed or a replay read are final themselves, and have no entry.
   */
  private readonly finalAtRead = new WeakMap<JobRow, bigint>();

  /** Every statement runs on the driver itself (`sql`): through Prisma's client the hot ones cost a fifth of the CPU (test/bench/RESULTS.md). */
  constructor(
    private readonly sql: SqlClient,
    /** Where the change feed stands: what is final, per workspace. */
    private readonly frontier: FeedFrontier,
    private readonly remembered: RememberedJobs,
    private readonly options: JobStoreOptions,
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

  /**
   * The cursor for a state read outside the feed (a webhook's snapshot): its position, or what is
   * final for its workspace now if that is smaller, so that resuming from it skips nothing.
   */
  cursorOfSnapshot(row: JobRow): bigint {
    const position = positionOf(row);
    const final = this.frontier.finalFor(row.workspaceId);
    return position <= final ? position : final;
  }

  /** Rows read or written by a statement that began when `final` was final for their workspace. */
  private readUnder(final: bigint, rows: JobRow[]): JobRow[] {
    for (const row of rows) this.finalAtRead.set(row, final);
    return rows;
  }

  private written(final: bigint, row: JobRow): JobRow {
    this.readUnder(final, [row]);
    this.remembered.remember(row);
    // The listeners wake background work (the feed, webhooks, other instances): none of it is the writing request's.
    const notify = () => {
      for (const listener of this.writeListeners) listener(row);
    };
    if (this.options.tracer) this.options.tracer.detached(notify);
    else notify();
    return row;
  }

  async list(workspaceId: string, filter: ListFilter = {}): Promise<JobRow[]> {
    const limit = filter.limit ?? LIST_LIMIT.default;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT.max) {
      throw errors.badInput(`limit must be an integer from 1 to ${LIST_LIMIT.max}.`);
    }
    const final = this.frontier.finalFor(workspaceId);
    // One statement on the driver, walking the (workspaceId[, competitorId], startedAt, id) index:
    // through Prisma's client a list read cost a fifth of the gateway's CPU (test/bench/RESULTS.md, reads).
    const rows = await this.run(Prisma.sql`
      SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid ${filterConditions(filter)}
      ORDER BY "startedAt" DESC, id DESC LIMIT ${limit}`);
    return this.readUnder(final, rows.map(jobRowOf));
  }

  /**
   * A page of the list (newest first) between two positions, by keyset: the same index walk as
   * `list`, starting at the position rather than skipping rows, so every page costs the same however
   * deep it is. `inverted` walks from `before` towards newer jobs (a page before a cursor) and
   * answers them oldest first; `limit` is the caller's, unchecked (graphql/types/job.ts bounds it).
   */
  async page(
    workspaceId: string,
    filter: JobFilter,
    { after, before, limit, inverted }: { after?: ListPosition | undefined; before?: ListPosition | undefined; limit: number; inverted: boolean },
  ): Promise<JobRow[]> {
    const final = this.frontier.finalFor(workspaceId);
    const order = inverted ? Prisma.sql`ORDER BY "startedAt" ASC, id ASC` : Prisma.sql`ORDER BY "startedAt" DESC, id DESC`;
    const rows = await this.run(Prisma.sql`
      SELECT * FROM "Job" WHERE "workspaceId" = ${workspaceId}::uuid ${filterConditions(filter)}
        ${after ? Prisma.sql`AND ("startedAt", id) < (${after.startedAt.toISOString()}::timestamptz, ${after.id}::uuid)` : Prisma.empty}
        ${before ? Prisma.sql`AND ("startedAt", id) > (${before.startedAt.toISOString()}::timestamptz, ${before.id}::uuid)` : Prisma.empty}
      ${order} LIMIT ${limit}`);
    return this.readUnder(final, rows.map(jobRowOf));
  }

  /** Lets `get` answer from the remembered states while `when` holds (see RememberedJobs.answerWhile). */
  answerFromMemoryWhile(when: (workspaceId: string) => boolean, maxAgeMs: number): void {
    this.remembered.answerWhile(when, maxAgeMs);
  }

  async get(workspaceId: string, id: string): Promise<JobRow | null> {
    if (!isUuid(id)) return null;
    const known = this.remembered.answer(workspaceId, id);
    if (known) return known;
    const final = this.frontier.finalFor(workspaceId);
    const [row] = await this.run(Prisma.sql`SELECT * FROM "Job" WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid`);
    return row ? this.readUnder(final, [jobRowOf(row)])[0]! : null;
  }

  /**
   * A new job. With an idempotency key, the key is claimed in the job's own statement: a
   * concurrent create with the same key waits on the key's primary key for that statement's
   * transaction, claims nothing, and reads the job it created. So does any later one within the
   * key's lifetime (IDEMPOTENCY_TTL_MS), whatever happened to the first answer; the same key with
   * another input is refused. One statement, not a transaction of four round trips: with them a
   * keyed create ran at two thirds of a plain one (test/bench/RESULTS.md).
   */
  async create(workspaceId: string, input: transitions.NewJobInput): Promise<JobRow> {
    const fields = transitions.newJob(input, this.options.heartbeatTimeoutMs);
    const key = input.idempotencyKey == null ? undefined : transitions.idempotencyKeyOf(input.idempotencyKey);
    const final = this.frontier.finalFor(workspaceId);
    const traced = this.options.tracer?.traceparent();
    const job = newJobColumns(workspaceId, randomUUID(), traced ? { ...fields, traceparent: traced, writeTraceparent: traced } : fields);
    if (key === undefined) {
      const [row] = await this.run(Prisma.sql`INSERT INTO "Job" (${job.names}) VALUES (${job.values}) RETURNING *`);
      return this.written(final, jobRowOf(row!));
    }
    const inputHash = createHash('sha256').update(stableStringify(fields)).digest('base64url');
    const [created] = await this.run(Prisma.sql`
      WITH claimed AS (
        INSERT INTO "JobIdempotencyKey" ("workspaceId", key, "inputHash", "jobId") VALUES (${workspaceId}::uuid, ${key}, ${inputHash}, ${job.id}::uuid)
        ON CONFLICT ("workspaceId", key) DO UPDATE SET "inputHash" = EXCLUDED."inputHash", "jobId" = EXCLUDED."jobId", "createdAt" = now()
          WHERE "JobIdempotencyKey"."createdAt" < now() - ${this.options.idempotencyTtlMs} * interval '1 millisecond'
        RETURNING "jobId")
      INSERT INTO "Job" (${job.names}) SELECT ${job.values} WHERE EXISTS (SELECT 1 FROM claimed)
      RETURNING *`);
    if (created) return this.written(final, jobRowOf(created));
    // The key is taken: its job, committed with it (one statement, a cascading foreign key), read
    // by a statement of its own, which sees what committed while the claim waited.
    const [first] = await this.run(
      Prisma.sql`SELECT k."inputHash" AS "idempotencyInputHash", j.* FROM "JobIdempotencyKey" k JOIN "Job" j ON j.id = k."jobId"
        WHERE k."workspaceId" = ${workspaceId}::uuid AND k.key = ${key}`,
    );
    if (!first) return this.create(workspaceId, input); // deleted in between (its job, or expired and swept): claim it anew
    const { idempotencyInputHash, ...row } = first;
    if (idempotencyInputHash !== inputHash) throw errors.badInput('idempotencyKey was already used for a job with a different input.');
    return this.readUnder(final, [jobRowOf(row)])[0]!;
  }

  updateProgress(workspaceId: string, id: string, input: transitions.ProgressInput): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.progress(job, input));
  }

  /** Completing a completed job answers it as it is: a retried completeJob whose first answer was lost is not an error. */
  complete(workspaceId: string, id: string): Promise<JobRow> {
    return this.transition(
      workspaceId,
      id,
      (job) => transitions.complete(job, new Date()),
      (job) => job.status === JobStatus.COMPLETED,
    );
  }

  /** Failing a job already failed with the same error answers it as it is (a retried failJob). */
  fail(workspaceId: string, id: string, error: string): Promise<JobRow> {
    return this.transition(
      workspaceId,
      id,
      (job) => transitions.fail(job, error, new Date()),
      // A stored error is valid and trimmed: input that is not (empty, NUL) matches none, and is JOB_NOT_RUNNING as before.
      (job) => transitions.endingOf(job) === 'FAILED' && job.error === error.trim(),
    );
  }

  cancel(workspaceId: string, id: string): Promise<JobRow> {
    return this.transition(workspaceId, id, (job) => transitions.cancel(job, new Date()));
  }

  /**
   * Renews a running job's lease and changes nothing else: the UPDATE moves only "leaseExpiresAt",
   * which the database does not record as a change (migration 20261206000000), so no subscriber, no
   * cache and no other instance hears of it. The row is answered as it stands.
   */
  async heartbeat(workspaceId: string, id: string): Promise<JobRow> {
    if (isUuid(id)) {
      const [renewed] = await this.run(Prisma.sql`
        UPDATE "Job" SET "leaseExpiresAt" = clock_timestamp() + "heartbeatTimeoutMs" * interval '1 millisecond'
        WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid AND status = 'RUNNING'
        RETURNING *`);
      if (renewed) return jobRowOf(renewed);
    }
    // The database said no: its answer, not a remembered state, says why.
    this.remembered.forget(id);
    return refuse(id, await this.get(workspaceId, id));
  }

  /** Running jobs whose lease lapsed, the longest-lapsed first: a bounded walk of the partial index on running jobs' leases. */
  async lapsed(limit: number): Promise<JobRow[]> {
    const rows = await this.run(Prisma.sql`
      SELECT * FROM "Job" WHERE status = 'RUNNING' AND "leaseExpiresAt" < clock_timestamp() ORDER BY "leaseExpiresAt" LIMIT ${limit}`);
    return rows.map(jobRowOf);
  }

  /**
   * Deletes up to `limit` idempotency keys older than IDEMPOTENCY_TTL_MS, oldest first (the index
   * on "createdAt"); answers how many. A key being claimed again by a createJob, or deleted by
   * another instance, is locked and skipped rather than waited for. An expired key left in place
   * changes no answer (create claims it anew); deleting it only keeps the table the size of a TTL.
   */
  async forgetExpiredKeys(limit: number): Promise<number> {
    const deleted = await this.run(Prisma.sql`
      DELETE FROM "JobIdempotencyKey" WHERE ("workspaceId", key) IN (
        SELECT "workspaceId", key FROM "JobIdempotencyKey"
        WHERE "createdAt" < now() - ${this.options.idempotencyTtlMs} * interval '1 millisecond'
        ORDER BY "createdAt" LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      RETURNING 1`);
    return deleted.length;
  }

  /**
   * Fails the job as stalled if it is still running with its lease lapsed, in one conditional write:
   * of several instances sweeping at once, one fails it and the others find nothing to do. Anything
   * that happened to the job since `job` was read (a report, a heartbeat, an end) leaves it alone.
   */
  stallIfLapsed(job: JobRow): Promise<JobRow | undefined> {
    return this.perJob.run(job.id, async () => {
      const final = this.frontier.finalFor(job.workspaceId);
      const [stalled] = await this.run(Prisma.sql`
        UPDATE "Job" SET ${this.setClause(transitions.stall(job, new Date()))}
        WHERE id = ${job.id}::uuid AND status = 'RUNNING' AND "changeSeq" = ${job.changeSeq} AND "leaseExpiresAt" < clock_timestamp()
        RETURNING *`);
      if (!stalled) return undefined;
      return this.written(final, jobRowOf(stalled));
    });
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
  private transition(workspaceId: string, id: string, change: (job: JobRow) => transitions.JobPatch, done?: (job: JobRow) => boolean): Promise<JobRow> {
    return this.perJob.run(id, () => this.transitionNow(workspaceId, id, change, done));
  }

  /** `done`: the job already ended as this transition would end it; it is answered as it is, unchanged. */
  private async transitionNow(
    workspaceId: string,
    id: string,
    change: (job: JobRow) => transitions.JobPatch,
    done?: (job: JobRow) => boolean,
  ): Promise<JobRow> {
    // Only a RUNNING job of this workspace is worth starting from memory; anything else is read,
    // so that its error (not found, not running) comes from the database.
    let start = this.remembered.running(workspaceId, id);
    for (let attempt = 0; attempt < MAX_TRANSITION_ATTEMPTS; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
      const job = start ?? (await this.get(workspaceId, id));
      const fromMemory = start !== undefined;
      start = undefined;
      if (job?.status !== JobStatus.RUNNING) {
        if (job && done?.(job)) return job;
        return refuse(id, job);
      }
      const final = this.frontier.finalFor(workspaceId);
      const [updated] = await this.run(Prisma.sql`
        UPDATE "Job" SET ${this.setClause(change(job))}
        WHERE id = ${id}::uuid AND "workspaceId" = ${workspaceId}::uuid AND status = 'RUNNING' AND "changeSeq" = ${job.changeSeq}
        RETURNING *`);
      // The feed may already have brought a newer state (another writer's) than this write's.
      if (updated) return this.written(final, jobRowOf(updated));
      this.remembered.forget(id);
      // A stale memory is not a lost race: read and try again at once, without using up an attempt.
      if (fromMemory) attempt--;
    }
    throw appError('CONFLICT', `Job ${id} is being changed by other writers; try again.`);
  }

  /** The write's SET clause: the patch, and with tracing on the span that writes it. */
  private setClause(patch: transitions.JobPatch): Prisma.Sql {
    const tracer = this.options.tracer;
    if (!tracer) return setClause(patch);
    // Set even when untraced (unsampled): a previous write's span must not be taken for this one's.
    return Prisma.join([setClause(patch), Prisma.sql`"writeTraceparent" = ${tracer.traceparent() ?? null}`], ', ');
  }

  private run(statement: Prisma.Sql): Promise<Array<Record<string, unknown>>> {
    return runSql(this.sql, statement);
  }
}

/** The list's filters as SQL: columns come from the filters' declaration, never from a request; values are bound. */
function filterConditions(filter: JobFilter): Prisma.Sql {
  // A malformed id matches no job (and must not reach a uuid comparison, which would raise).
  const byId = filter.id == null ? [] : [isUuid(filter.id) ? Prisma.sql`AND id = ${filter.id}::uuid` : Prisma.sql`AND false`];
  const conditions = setFilters(filter).map(({ name, spec, value }) =>
    spec.kind === 'JobStatus'
      ? Prisma.sql`AND ${Prisma.raw(`"${spec.column}"`)} = ${value}::"JobStatus"`
      : Prisma.sql`AND ${Prisma.raw(`"${spec.column}"`)} = ${transitions.rejectNul(name, value)}`,
  );
  conditions.push(...byId);
  return conditions.length > 0 ? Prisma.join(conditions, ' ') : Prisma.empty;
}

/** Why a worker mutation on `job` (as the database has it) changed nothing: it does not exist here, or it ended. */
function refuse(id: string, job: JobRow | null): never {
  if (!job) throw errors.jobNotFound(id);
  throw errors.jobNotRunning(id, transitions.endingOf(job));
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

/**
 * A new job row's columns and values: a column for each of the state machine's fields
 * (transitions.newJob), so that a field added there is written without a change here. Values are
 * bound untyped; PostgreSQL takes each as its column's type (uuid, the enum, jsonb from JSON text),
 * in `VALUES` as in an `INSERT ... SELECT`. The trigger sets the position.
 */
function newJobColumns(workspaceId: string, id: string, fields: transitions.NewJobFields & { traceparent?: string; writeTraceparent?: string }) {
  const columns = Object.entries({ id, workspaceId, ...fields });
  return {
    id,
    names: Prisma.join(columns.map(([column]) => Prisma.raw(`"${column}"`))),
    values: Prisma.join(columns.map(([, value]) => (value !== null && typeof value === 'object' ? JSON.stringify(value) : value))),
  };
}
