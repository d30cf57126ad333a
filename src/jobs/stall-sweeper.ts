import type { SqlClient } from '../db/sql.js';
import { Prisma } from '../generated/prisma/client.js';
import { STALL_SWEEP_BATCH } from '../limits/fixed.js';
import type { Logger } from '../logger.js';
import type { StallSweepStats } from '../metrics.js';
import type { JobStore } from './job-store.js';
import { jobRowOf, runSql } from './job-rows.js';

/**
 * Fails the running jobs whose worker stopped reporting: every JOB_STALL_SWEEP_INTERVAL_MS, the running
 * jobs whose lease lapsed (the partial index on "leaseExpiresAt" of running jobs: one bounded read,
 * however many jobs exist), each failed by JobStore.stallIfLapsed's conditional write. Every
 * instance sweeps, needing no traffic to do it; where two find the same job, one write wins and
 * the job changes once. Its subscribers hear of it through the change feed like any change.
 */
export class StallSweeper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private failing = false;
  private counts: StallSweepStats = { stalled: 0, failedSweeps: 0 };

  constructor(
    private readonly sql: SqlClient,
    private readonly jobs: JobStore,
    private readonly logger: Logger,
    /** A job stalls within its heartbeat timeout plus this (JOB_STALL_SWEEP_INTERVAL_MS). */
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.sweep(), this.intervalMs).unref();
  }

  /** Stops sweeping; resolves when a sweep under way has finished. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  stats(): StallSweepStats {
    return { ...this.counts };
  }

  /** One sweep now (one already under way is joined, not doubled). */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    try {
      const lapsed = await runSql(
        this.sql,
        Prisma.sql`SELECT * FROM "Job" WHERE status = 'RUNNING' AND "leaseExpiresAt" < clock_timestamp()
          ORDER BY "leaseExpiresAt" LIMIT ${STALL_SWEEP_BATCH}`,
      );
      for (const raw of lapsed) {
        const stalled = await this.jobs.stallIfLapsed(jobRowOf(raw));
        if (!stalled) continue;
        this.counts.stalled++;
        this.logger.info({ jobId: stalled.id, heartbeatTimeoutMs: stalled.heartbeatTimeoutMs }, 'job stalled: no report within its heartbeat timeout');
      }
      this.failing = false;
    } catch (error) {
      this.counts.failedSweeps++;
      // Once per outage, not once a second: the readiness probe and the feed say the rest.
      if (!this.failing) this.logger.error({ err: error }, 'stalled-job sweep failed; the next sweep tries again');
      this.failing = true;
    }
  }
}
