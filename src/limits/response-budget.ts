import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { BUDGETED_WORKSPACES } from './fixed.js';
import { type RateVerdict, TokenBucket } from './rate-limiter.js';

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
  private readonly buckets = new LRUCache<string, TokenBucket>({ max: BUDGETED_WORKSPACES });

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burstBytes: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  get enabled(): boolean {
    return this.bytesPerSecond > 0;
  }

  /** Whether `workspaceId` may start another query now, or when it may. */
  admit(workspaceId: string): RateVerdict {
    const debtMs = this.enabled ? (this.buckets.get(workspaceId)?.debtMs() ?? 0) : 0;
    return debtMs === 0 ? { allowed: true } : { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(debtMs / 1000)) };
  }

  /** `bytes` written for `workspaceId`. */
  spend(workspaceId: string, bytes: number): void {
    if (!this.enabled) return;
    let bucket = this.buckets.get(workspaceId);
    if (!bucket) this.buckets.set(workspaceId, (bucket = new TokenBucket(this.bytesPerSecond, this.burstBytes, this.now)));
    bucket.spend(bytes);
  }

  /** Waits until `workspaceId` is out of debt (or `signal` aborts), then spends `bytes`: a replay's pace. */
  async paced(workspaceId: string, bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const debtMs = this.enabled ? (this.buckets.get(workspaceId)?.debtMs() ?? 0) : 0;
      if (debtMs === 0 || signal?.aborted) break;
      await sleep(Math.ceil(debtMs), undefined, { signal }).catch(() => undefined);
    }
    this.spend(workspaceId, bytes);
  }
}
