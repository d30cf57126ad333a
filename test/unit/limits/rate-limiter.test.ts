import fc from 'fast-check';
import { expect, it } from 'vitest';
import { RateLimiter, TokenBucket } from '../../../src/limits/rate-limiter.js';

/** A clock the test moves by hand. */
function clock() {
  let ms = 0;
  return { now: () => ms, advance: (by: number) => (ms += by) };
}

it('allows the burst at once, then perSecond a second, and says when the next token is there', () => {
  const time = clock();
  const bucket = new TokenBucket(2, 3, time.now);
  for (let i = 0; i < 3; i++) expect(bucket.take()).toEqual({ allowed: true });
  expect(bucket.take()).toEqual({ allowed: false, retryAfterSeconds: 1 });
  time.advance(499);
  expect(bucket.take().allowed).toBe(false);
  time.advance(1);
  expect(bucket.take()).toEqual({ allowed: true });
  time.advance(60_000); // a long quiet spell refills to the burst, no further
  for (let i = 0; i < 3; i++) expect(bucket.take().allowed).toBe(true);
  expect(bucket.take().allowed).toBe(false);
});

it('never allows more than burst + perSecond × elapsed, whatever the pattern of requests (property)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 1, max: 50 }),
      fc.array(fc.integer({ min: 0, max: 2_000 }), { minLength: 1, maxLength: 300 }),
      (perSecond, burst, gaps) => {
        const time = clock();
        const bucket = new TokenBucket(perSecond, burst, time.now);
        let allowed = 0;
        for (const gap of gaps) {
          time.advance(gap);
          const verdict = bucket.take();
          if (verdict.allowed) allowed++;
          else expect(verdict.retryAfterSeconds).toBeGreaterThanOrEqual(1);
          expect(allowed).toBeLessThanOrEqual(burst + (perSecond * time.now()) / 1000 + 1e-9);
        }
      },
    ),
  );
});

it('spends into debt and is out of it after debt / perSecond', () => {
  const time = clock();
  const bucket = new TokenBucket(100, 100, time.now);
  bucket.spend(300);
  expect(bucket.balance()).toBe(-200);
  expect(bucket.debtMs()).toBe(2_000);
  time.advance(1_500);
  expect(bucket.debtMs()).toBe(500);
  time.advance(500);
  expect(bucket.debtMs()).toBe(0);
});

it('keeps one bucket per key, and with perSecond 0 limits nothing', () => {
  const time = clock();
  const limiter = new RateLimiter(1, 1, time.now);
  expect(limiter.take('a').allowed).toBe(true);
  expect(limiter.take('a').allowed).toBe(false);
  expect(limiter.take('b').allowed).toBe(true);
  limiter.refund('a');
  expect(limiter.take('a').allowed).toBe(true);
  const off = new RateLimiter(0, 0, time.now);
  for (let i = 0; i < 1_000; i++) expect(off.take('a').allowed).toBe(true);
  expect(off.debtMs('a')).toBe(0);
});
