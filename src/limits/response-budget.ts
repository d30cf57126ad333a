import { setTimeout as sleep } from 'node:timers/promises';
import { RateLimiter, type RateVerdict } from './rate-limiter.js';

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
 */
export class ResponseBudget {
  /** A bucket of bytes per workspace, in the rate limiter's bounded store. */
  private readonly buckets: RateLimiter;

  constructor(bytesPerSecond: number, burstBytes: number, now?: () => number) {
    this.buckets = new RateLimiter(bytesPerSecond, burstBytes, now);
  }

  get enabled(): boolean {
    return this.buckets.enabled;
  }

  /** Whether `workspaceId` may start another query now, or when it may. */
  admit(workspaceId: string): RateVerdict {
    const debtMs = this.buckets.debtMs(workspaceId);
    return debtMs === 0 ? { allowed: true } : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(debtMs / 1000)) };
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
}
