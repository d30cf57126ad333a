import { boundedCache } from './bounded-cache.js';
import { RATE_LIMITED_KEYS_TRACKED } from './fixed.js';

export type RateVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * `perSecond` events a second, refilled continuously, with up to `burst` at once. Written here
 * rather than taken from a rate-limit package because those offer fixed windows or need a store
 * per check (a round trip to Redis per request would cost more than most requests); a bucket is
 * two numbers and one formula.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** Takes one token, or says when the next one will be there. */
  take(): RateVerdict {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - this.tokens) / this.perSecond)) };
  }

  /** Gives back a token that `take` took (what it paid for turned out not to count). */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }

  /**
   * Takes `count` tokens whether or not they are there: for work whose size is known only once it
   * is done (the bytes of a response). The bucket may go below zero; it is in debt until refilled.
   */
  spend(count: number): void {
    this.refill();
    this.tokens -= count;
  }

  /** The tokens there now (below zero: the debt). */
  balance(): number {
    this.refill();
    return this.tokens;
  }

  /** How long until the bucket is out of debt (0: it is not in debt). */
  debtMs(): number {
    const balance = this.balance();
    return balance >= 0 ? 0 : (-balance / this.perSecond) * 1000;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
  }
}

/**
 * A token bucket per key (an API key, a client address) on this instance, kept in an LRU so that
 * memory stays bounded whatever the keys.
 */
export class RateLimiter {
  private readonly buckets = boundedCache<string, TokenBucket>(RATE_LIMITED_KEYS_TRACKED);
  /** Hears each token taken here (SharedRateLimits tells the other instances). */
  onTaken: ((key: string) => void) | undefined;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  get enabled(): boolean {
    return this.perSecond > 0;
  }

  /** The most a key can take in one second: a full bucket and a second's refill. */
  get maxPerSecond(): number {
    return this.burst + this.perSecond;
  }

  /** Takes one token of `key`'s bucket, or says when the next one will be there. */
  take(key: string): RateVerdict {
    if (!this.enabled) return { allowed: true };
    const verdict = this.bucketOf(key).take();
    if (verdict.allowed) this.onTaken?.(key);
    return verdict;
  }

  /** Gives back the token a `take` of `key` took. */
  refund(key: string): void {
    this.buckets.get(key)?.refund();
  }

  /** Takes `count` tokens of `key`'s bucket, into debt if need be (see TokenBucket.spend). */
  spend(key: string, count: number): void {
    if (this.enabled) this.bucketOf(key).spend(count);
  }

  /** How long until `key`'s bucket is out of debt (0: it is not; a key without a bucket never is). */
  debtMs(key: string): number {
    return this.enabled ? (this.buckets.get(key)?.debtMs() ?? 0) : 0;
  }

  /** The tokens of `key`'s bucket now (a key without a bucket has the whole burst). */
  balance(key: string): number {
    return this.buckets.get(key)?.balance() ?? this.burst;
  }

  private bucketOf(key: string): TokenBucket {
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new TokenBucket(this.perSecond, this.burst, this.now)));
    return bucket;
  }
}
