import { EXPIRED_KEY_SWEEP, STALL_SWEEP_BATCH } from '../limits/fixed.js';
import type { Logger } from '../logger.js';
import type { JobSweepStats } from '../metrics.js';
import type { JobStore } from './job-store.js';

export interface JobSweeperOptions {
  /** A job stalls within its heartbeat timeout plus this (JOB_STALL_SWEEP_INTERVAL_MS). */
  intervalMs: number;
  /** How long idempotency keys live (IDEMPOTENCY_TTL_MS): expired ones go within this or a minute, whichever is less. */
  idempotencyTtlMs: number;
}

/**
 * The jobs' upkeep that no request does, on every instance, with no traffic needed:
 * - every JOB_STALL_SWEEP_INTERVAL_MS, fails the running jobs whose worker stopped reporting (a
 *   bounded read of the partial index on running jobs' leases, each failed by JobStore.stallIfLapsed's
 *   conditional write: where two instances find the same job, one write wins and the job changes
 *   once; its subscribers hear of it through the change feed like any change);
 * - every minute (or IDEMPOTENCY_TTL_MS if shorter), deletes expired idempotency keys in batches.
 */
export class JobSweeper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private failing = false;
  private keysSweptAt = performance.now();
  private readonly keySweepEveryMs: number;
  private counts: JobSweepStats = { stalled: 0, expiredKeys: 0, failedSweeps: 0 };

  constructor(
    private readonly jobs: JobStore,
    private readonly logger: Logger,
    private readonly options: JobSweeperOptions,
  ) {
    this.keySweepEveryMs = Math.min(EXPIRED_KEY_SWEEP.everyMs, options.idempotencyTtlMs);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.sweep(), this.options.intervalMs).unref();
  }

  /** Stops sweeping; resolves when a sweep under way has finished. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  stats(): JobSweepStats {
    return { ...this.counts };
  }

  /** One sweep now (one already under way is joined, not doubled). */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    try {
      await this.failStalledJobs();
      if (performance.now() - this.keysSweptAt >= this.keySweepEveryMs) {
        await this.forgetExpiredKeys();
        this.keysSweptAt = performance.now();
      }
      this.failing = false;
    } catch (error) {
      this.counts.failedSweeps++;
      // Once per outage, not once a second: the readiness probe and the feed say the rest.
      if (!this.failing) this.logger.error({ err: error }, 'job sweep failed; the next sweep tries again');
      this.failing = true;
    }
  }

  private async failStalledJobs(): Promise<void> {
    for (const job of await this.jobs.lapsed(STALL_SWEEP_BATCH)) {
      const stalled = await this.jobs.stallIfLapsed(job);
      if (!stalled) continue;
      this.counts.stalled++;
      this.logger.info({ jobId: stalled.id, heartbeatTimeoutMs: stalled.heartbeatTimeoutMs }, 'job stalled: no report within its heartbeat timeout');
    }
  }

  /** Batch after batch, each its own short statement, until one comes back short or the run's bound is reached. */
  private async forgetExpiredKeys(): Promise<void> {
    for (let batch = 0; batch < EXPIRED_KEY_SWEEP.maxBatches; batch++) {
      const deleted = await this.jobs.forgetExpiredKeys(EXPIRED_KEY_SWEEP.batch);
      this.counts.expiredKeys += deleted;
      if (deleted < EXPIRED_KEY_SWEEP.batch) return;
    }
  }
}
