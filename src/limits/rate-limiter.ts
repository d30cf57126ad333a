import { LRUCache } from 'lru-cache';
import { RATE_LIMITED_KEYS_TRACKED } from './fixed.js';

export type RateVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  refilledAt: number;
}

/**
 * A token bucket per API key, on this instance: `perSecond` requests a second, refilled
 * continuously, with up to `burst` at once. Written here rather than taken from a rate-limit
 * package because those offer fixed windows or need a store per check (a round trip to Redis per
 * request would cost more than most requests); a bucket is two numbers and one formula, kept in
 * an LRU so that memory stays bounded whatever the keys.
 */
export class RateLimiter {
  private readonly buckets = new LRUCache<string, Bucket>({ max: RATE_LIMITED_KEYS_TRACKED });

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  get enabled(): boolean {
    return this.perSecond > 0;
  }

  /** Takes one token of `key`'s bucket, or says when the next one will be there. */
  take(key: string): RateVerdict {
    if (!this.enabled) return { allowed: true };
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = { tokens: this.burst, refilledAt: now }));
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.refilledAt) / 1000) * this.perSecond);
    bucket.refilledAt = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond)) };
  }
}
