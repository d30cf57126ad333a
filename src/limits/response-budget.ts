import { boundedCache } from './bounded-cache.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { QUERIES_WAITING_PER_WORKSPACE, TRACKED_WORKSPACES } from './fixed.js';
import { RateLimiter } from './rate-limiter.js';

/** A query let through (`settle` once it has executed, whatever became of it), or refused. */
export type Admission = { allowed: true; settle(): void } | { allowed: false; retryAfterSeconds: number };

/** A workspace's queries between admission and the end of their execution. */
interface InFlight {
  executing: number;
  waiting: Array<() => void>;
}

/**
 * The response bytes each workspace may make this instance produce a second
 * (RESPONSE_BYTES_PER_WORKSPACE, with a burst of RESPONSE_BYTES_BURST): what a key costs follows
 * what it asks to be written, not only how often it asks. One `jobs(limit: 200) { metadata }`
 * can be 13 MB while costing one request of the rate limit.
 *
 * A response's size is known only once it is made, so the bytes are spent afterwards and the
 * workspace may go into debt; while it is, its queries are refused (RATE_LIMITED, with the time
 * until the debt is paid as Retry-After) and its replays wait. Mutations are never refused for
 * it: a workspace whose dashboards read too much must not lose its workers' reports. Live
 * deliveries are not paced either: they follow the workspace's writes, which the per-key rate
 * limit bounds, and a delivery held back would be a dashboard behind the truth.
 *
 * Queries that start together would all be admitted before the first is charged: eight
 * connections asking for 13 MB each read 104 MB from the database at once, which held the event
 * loop longest of anything in the heavy-misses bench. So a query also waits while the queries of
 * its workspace executing already would, at the workspace's recent response size each, use up
 * what the balance holds: a workspace whose answers are small runs many at once, one whose answers
 * are large (or not yet known: a workspace's first query, until it is answered) runs one at a
 * time. At most QUERIES_WAITING_PER_WORKSPACE wait; past that, refused like a debt.
 */
export class ResponseBudget {
  /** A bucket of bytes per workspace, in the rate limiter's bounded store. */
  private readonly buckets: RateLimiter;
  /** Each workspace's recent response size: the largest, halved at each smaller answer. */
  private readonly sizes = boundedCache<string, number>(TRACKED_WORKSPACES);
  /** Only workspaces with queries executing or waiting. */
  private readonly inFlight = new Map<string, InFlight>();

  /** `unknownSize`: what a workspace's answer is taken to be before it has had one (MAX_RESPONSE_BYTES). */
  constructor(
    private readonly bytesPerSecond: number,
    burstBytes: number,
    private readonly unknownSize: number,
    now?: () => number,
  ) {
    this.buckets = new RateLimiter(bytesPerSecond, burstBytes, now);
  }

  get enabled(): boolean {
    return this.buckets.enabled;
  }

  /**
   * Lets a query of `workspaceId` start (once its peers leave room), or refuses it while the
   * workspace is in debt. The caller must `settle` an admission once the query has executed.
   */
  async admit(workspaceId: string): Promise<Admission> {
    if (!this.enabled) return { allowed: true, settle: () => undefined };
    let flight = this.inFlight.get(workspaceId);
    if (!flight) this.inFlight.set(workspaceId, (flight = { executing: 0, waiting: [] }));
    for (;;) {
      // Below zero, the balance is a debt: refused until it is paid.
      const balance = this.buckets.balance(workspaceId);
      if (balance < 0) return this.refused(workspaceId, flight, (-balance / this.bytesPerSecond) * 1000);
      // One query may always run on credit: its size is learned only once it is answered.
      const size = this.sizes.get(workspaceId) ?? this.unknownSize;
      if (flight.executing === 0 || balance >= (flight.executing + 1) * size) break;
      if (flight.waiting.length >= QUERIES_WAITING_PER_WORKSPACE) return this.refused(workspaceId, flight, (size / this.bytesPerSecond) * 1000);
      await new Promise<void>((resume) => flight.waiting.push(resume));
    }
    flight.executing++;
    let settled = false;
    return {
      allowed: true,
      settle: () => {
        if (settled) return;
        settled = true;
        flight.executing--;
        // Each waiter checks again; those that still find no room wait for the next settle.
        const waiting = flight.waiting;
        flight.waiting = [];
        for (const resume of waiting) resume();
        // (With waiters resumed, the workspace is not idle: they run, wait again or are refused.)
        if (waiting.length === 0) this.forgetIdle(workspaceId, flight);
      },
    };
  }

  /** A query's answer of `bytes` written for `workspaceId`: spent, and learned as its recent size. */
  answered(workspaceId: string, bytes: number): void {
    if (!this.enabled) return;
    this.spend(workspaceId, bytes);
    const recent = this.sizes.get(workspaceId);
    this.sizes.set(workspaceId, recent === undefined ? bytes : Math.max(bytes, recent / 2));
  }

  /** `bytes` written for `workspaceId`. */
  spend(workspaceId: string, bytes: number): void {
    this.buckets.spend(workspaceId, bytes);
  }

  /**
   * Waits until `workspaceId` is out of debt (or `signal` aborts), then spends what `bytes` says:
   * a replay's pace. `bytes` is asked only when the budget is on (weighing a state can cost a
   * serialization).
   */
  async paced(workspaceId: string, bytes: () => number, signal?: AbortSignal): Promise<void> {
    if (!this.enabled) return;
    for (let debtMs = this.buckets.debtMs(workspaceId); debtMs > 0 && !signal?.aborted; debtMs = this.buckets.debtMs(workspaceId)) {
      await sleep(Math.ceil(debtMs), undefined, { signal }).catch(() => undefined);
    }
    this.spend(workspaceId, bytes());
  }

  private refused(workspaceId: string, flight: InFlight, waitMs: number): Admission {
    this.forgetIdle(workspaceId, flight);
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  private forgetIdle(workspaceId: string, flight: InFlight): void {
    if (flight.executing === 0 && flight.waiting.length === 0 && this.inFlight.get(workspaceId) === flight) this.inFlight.delete(workspaceId);
  }
}
