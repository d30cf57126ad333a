import type { WebhookConfig } from '../config.js';
import { WEBHOOK } from '../limits/fixed.js';
import type { Logger } from '../logger.js';
import type { Claim, ClaimRoom, ClaimedDelivery, DeliveryQueue } from './delivery-queue.js';
import type { WebhookSender } from './sender.js';

/** The event body of a claimed delivery (event-body.ts, given the REST renderer). */
export type RenderDelivery = (delivery: ClaimedDelivery) => Promise<string>;

/** Counters for /metrics. */
export interface WebhookStats {
  /** Attempts answered 2xx. */
  sent: number;
  /** Attempts that failed and will be retried. */
  retrying: number;
  /** Deliveries given up on (retry window over, or their endpoint disabled). */
  failed: number;
  /** Endpoints disabled for failing the whole retry window. */
  endpointsDisabled: number;
  /** Attempts under way on this instance. */
  inFlight: number;
  /** Age of the oldest undelivered event, in seconds, as last read (every WEBHOOK.watchRefreshMs while endpoints exist). */
  oldestPendingSeconds: number;
}

/**
 * Sends the deliveries that job_webhook_events() records, on every instance that has
 * WEBHOOK_SENDING on: claims due ones (delivery-queue.ts) up to its room, sends each (sender.ts),
 * records the outcome, and claims again. It looks when a change of a workspace with endpoints
 * reaches this instance (its own writes, or the change feed's) and every WEBHOOK.pollIntervalMs
 * otherwise (retries fall due, progress waits out its interval, another instance died mid-attempt).
 *
 * Room is bounded in all (WEBHOOK_CONCURRENCY) and per endpoint (WEBHOOK_CONCURRENCY_PER_ENDPOINT),
 * and each attempt by WEBHOOK_TIMEOUT_MS: an endpoint that hangs holds at most its own share, and
 * the others' deliveries keep going.
 */
export class WebhookDispatcher {
  private readonly perEndpoint = new Map<string, number>();
  private readonly perWorkspace = new Map<string, number>();
  private readonly attempts = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private inFlight = 0;
  private claiming: Promise<void> | undefined;
  private claimAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  private watched = new Set<string>();
  private watchedAt = Number.NEGATIVE_INFINITY;
  private oldestPendingSeconds = 0;
  private sweptAt = 0;
  private readonly counts = { sent: 0, retrying: 0, failed: 0, endpointsDisabled: 0 };

  constructor(
    private readonly queue: DeliveryQueue,
    private readonly sender: WebhookSender,
    private readonly render: RenderDelivery,
    private readonly logger: Logger,
    private readonly options: Pick<
      WebhookConfig,
      'timeoutMs' | 'retryBaseMs' | 'retryForMs' | 'concurrency' | 'concurrencyPerWorkspace' | 'concurrencyPerEndpoint'
    >,
  ) {}

  /** How long a claim holds a delivery: the attempt's timeout and a margin. */
  get leaseMs(): number {
    return this.options.timeoutMs + WEBHOOK.leaseMarginMs;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.poll(), WEBHOOK.pollIntervalMs).unref();
    this.poll();
  }

  /** A change of `workspaceId` was written or reached the feed: deliveries may be due now. */
  changed(workspaceId: string): void {
    if (this.watched.has(workspaceId)) this.wake();
  }

  /** Endpoints changed (created, enabled): look again which workspaces have some. */
  endpointsChanged(workspaceId: string): void {
    this.watched.add(workspaceId);
    this.wake();
  }

  /** Stops claiming; waits for attempts under way up to `graceMs`, then aborts them (they are claimed: another instance sends them after the claim lapses). */
  async stop(graceMs: number): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.claiming;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.allSettled([...this.attempts]), grace]);
    clearTimeout(timer);
    this.stopping.abort();
    await Promise.allSettled([...this.attempts]);
    this.sender.close();
  }

  stats(): WebhookStats {
    return { ...this.counts, inFlight: this.inFlight, oldestPendingSeconds: this.oldestPendingSeconds };
  }

  /**
   * Every WEBHOOK.pollIntervalMs while any workspace has an endpoint; with none anywhere, an idle
   * instance asks only which workspaces have one, every WEBHOOK.watchRefreshMs (an endpoint made
   * here is known at once; one made on another instance within that).
   */
  private poll(): void {
    const now = performance.now();
    if (now - this.watchedAt >= WEBHOOK.watchRefreshMs) {
      this.watchedAt = now;
      void this.refreshWatched().then(() => this.watched.size > 0 && this.wake());
    } else if (this.watched.size > 0) this.wake();
    if (now - this.sweptAt >= WEBHOOK.sweepEveryMs) {
      this.sweptAt = performance.now();
      void this.forgetEnded();
    }
  }

  /** The workspaces with endpoints, and with them the backlog's age for the metric (read here, not at each scrape). */
  private async refreshWatched(): Promise<void> {
    try {
      this.watched = await this.queue.workspacesWithEndpoints();
      this.oldestPendingSeconds = this.watched.size > 0 ? await this.queue.oldestPendingAgeSeconds() : 0;
    } catch {
      // The claim's own error says it; the set stays as it was.
    }
  }

  private wake(): void {
    if (this.stopping.signal.aborted || this.timer === undefined) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimWhileDue().finally(() => (this.claiming = undefined));
  }

  /** Claims and starts attempts until nothing more is due or there is no room. */
  private async claimWhileDue(): Promise<void> {
    do {
      this.claimAgain = false;
      const room = this.room();
      if (room.total <= 0) return;
      let claim: Claim;
      try {
        claim = await this.queue.claim(room, this.leaseMs);
        this.failing = false;
      } catch (error) {
        if (!this.failing) this.logger.error({ err: error }, 'webhook claim failed; the next poll tries again');
        this.failing = true;
        return;
      }
      const claimed = claim.deliveries;
      for (const delivery of claimed) this.begin(delivery);
      // A full claim, or one whose caps left due deliveries of other endpoints unseen, may have more at once.
      if (claimed.length > 0 && (claimed.length >= Math.min(room.total, WEBHOOK.claimBatch) || claim.scanned > claimed.length)) this.claimAgain = true;
    } while (this.claimAgain && this.timer !== undefined);
  }

  private room(): ClaimRoom {
    const free = (busy: Map<string, number>, cap: number) => new Map([...busy].map(([id, n]) => [id, cap - n]));
    return {
      total: this.options.concurrency - this.inFlight,
      perWorkspace: this.options.concurrencyPerWorkspace,
      perEndpoint: this.options.concurrencyPerEndpoint,
      workspaces: free(this.perWorkspace, this.options.concurrencyPerWorkspace),
      endpoints: free(this.perEndpoint, this.options.concurrencyPerEndpoint),
    };
  }

  private begin(delivery: ClaimedDelivery): void {
    this.inFlight++;
    count(this.perEndpoint, delivery.endpointId, +1);
    count(this.perWorkspace, delivery.workspaceId, +1);
    let released = false;
    // The room is the receiver's: it is free again once the receiver has answered, while the
    // outcome is still being recorded (a profile under load showed attempts waiting on that write
    // as long as on the request; the job's next event waits for the record all the same).
    const release = () => {
      if (released) return;
      released = true;
      this.inFlight--;
      count(this.perEndpoint, delivery.endpointId, -1);
      count(this.perWorkspace, delivery.workspaceId, -1);
      this.wake();
    };
    const attempt = this.attempt(delivery, release).finally(() => {
      this.attempts.delete(attempt);
      release();
      // The job's next event is claimable now.
      this.wake();
    });
    this.attempts.add(attempt);
  }

  private async attempt(delivery: ClaimedDelivery, release: () => void): Promise<void> {
    try {
      let body: string;
      try {
        body = await this.render(delivery);
      } catch (error) {
        // A state this version cannot render (written by SQL, say): a failed attempt like any, retried with backoff.
        this.logger.error({ err: error, deliveryId: delivery.id }, 'webhook event could not be rendered');
        await this.recordFailure(delivery, { status: null, error: 'The gateway could not render this event (logged); it will be retried.' });
        return;
      }
      const secrets = delivery.previousSecret ? [delivery.secret, delivery.previousSecret] : [delivery.secret];
      // In the trace of the write that caused the event (with tracing on).
      const writeTrace = typeof delivery.job.writeTraceparent === 'string' ? delivery.job.writeTraceparent : undefined;
      const outcome = await this.sender.send(delivery.url, { id: delivery.eventId, body, secrets }, this.stopping.signal, writeTrace);
      release();
      // Shutting down: the claim lapses and any instance sends it again; this attempt counts for nothing.
      if (this.stopping.signal.aborted && !outcome.ok) return;
      if (outcome.ok) {
        if (await this.queue.recordSuccess(delivery, outcome.status)) this.counts.sent++;
        return;
      }
      await this.recordFailure(delivery, outcome);
    } catch (error) {
      // The database went away mid-attempt: the claim lapses and the delivery is sent again.
      this.logger.error({ err: error, deliveryId: delivery.id }, 'webhook attempt could not be recorded; it will be sent again');
    }
  }

  private async recordFailure(delivery: ClaimedDelivery, outcome: { status: number | null; error: string }): Promise<void> {
    const recorded = await this.queue.recordFailure(delivery, outcome, this.retryDelayMs(delivery.attempts), this.options.retryForMs);
    if (recorded.gaveUp) this.counts.failed++;
    else this.counts.retrying++;
    if (recorded.disabledEndpoint) {
      this.counts.endpointsDisabled++;
      this.logger.warn(
        { endpointId: delivery.endpointId, error: outcome.error },
        'webhook endpoint disabled: every delivery failed for the whole retry window',
      );
    }
  }

  /** Exponential from WEBHOOK_RETRY_BASE_MS, capped, with jitter: between half and all of it, so that retries of a burst spread out. */
  private retryDelayMs(attempts: number): number {
    const full = Math.min(WEBHOOK.maxRetryDelayMs, this.options.retryBaseMs * 2 ** Math.min(attempts - 1, 30));
    return Math.round(full / 2 + Math.random() * (full / 2));
  }

  private async forgetEnded(): Promise<void> {
    try {
      for (let batch = 0; batch < 100; batch++) {
        if ((await this.queue.forgetEnded(WEBHOOK.logRetentionMs, WEBHOOK.sweepBatch)) < WEBHOOK.sweepBatch) return;
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'webhook log sweep failed; the next one tries again');
    }
  }
}

/** Adds `by` to `id`'s count, forgetting ids that reach 0. */
function count(counts: Map<string, number>, id: string, by: number): void {
  const next = (counts.get(id) ?? 0) + by;
  if (next > 0) counts.set(id, next);
  else counts.delete(id);
}
