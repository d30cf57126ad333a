import type { FeedBus } from '../live/bus/feed-bus.js';
import { decodeObject, encodeText } from '../live/bus/feed-messages.js';
import { SHARED_LIMITS_KEYS_PER_MESSAGE } from './fixed.js';
import type { RateLimiter } from './rate-limiter.js';

/**
 * Makes a per-key rate limit hold across the instances that share a feed bus: every `syncMs` each
 * instance tells the others how many tokens each key took from it, and each takes as many from its
 * own bucket of the key (into debt if need be). Every bucket so sees every instance's traffic, a
 * sync interval late: over any span of seconds a key gets its limit, whichever instances its
 * requests reach. While the bus is unreachable each instance limits on its own, as without a bus.
 *
 * Written by hand: rate-limit libraries with shared state (rate-limiter-flexible over Redis, say)
 * ask the store on every request, a round trip that costs more than most requests here; this keeps
 * the check local and exchanges counts a few dozen times a second, whatever the traffic.
 */
export class SharedRateLimits {
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly limiter: RateLimiter,
    private readonly bus: Pick<FeedBus, 'publish' | 'subscribe' | 'up'>,
    private readonly subject: string,
    private readonly instanceId: string,
    private readonly syncMs: number,
  ) {}

  start(): void {
    if (!this.limiter.enabled) return;
    this.limiter.onTaken = (key) => this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
    this.unsubscribe = this.bus.subscribe(this.subject, (data) => this.heard(data));
    this.timer = setInterval(() => this.sync(), this.syncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.unsubscribe?.();
    this.limiter.onTaken = undefined;
  }

  private sync(): void {
    if (this.pending.size === 0) return;
    const taken = [...this.pending];
    this.pending = new Map();
    // Counts taken while the bus is down are not sent later: the others limited on their own meanwhile.
    if (!this.bus.up) return;
    for (let i = 0; i < taken.length; i += SHARED_LIMITS_KEYS_PER_MESSAGE) {
      this.bus.publish(this.subject, encodeText(JSON.stringify({ from: this.instanceId, taken: taken.slice(i, i + SHARED_LIMITS_KEYS_PER_MESSAGE) })));
    }
  }

  private heard(data: Uint8Array): void {
    const message = decodeObject(data);
    if (!message || message.from === this.instanceId || !Array.isArray(message.taken)) return;
    for (const entry of message.taken as unknown[]) {
      if (!Array.isArray(entry)) continue;
      const [key, count] = entry as [unknown, unknown];
      // No instance can take more than a second's worth between two syncs: more is not a count of ours.
      if (typeof key === 'string' && Number.isInteger(count) && (count as number) > 0 && (count as number) <= this.limiter.maxPerSecond) {
        this.limiter.spend(key, count as number);
      }
    }
  }
}
