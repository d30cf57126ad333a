import fc from 'fast-check';
import { expect, it } from 'vitest';
import { QUERIES_WAITING_PER_WORKSPACE } from '../../../src/limits/fixed.js';
import { type Admission, ResponseBudget } from '../../../src/limits/response-budget.js';

// Admission by the size of the peers in flight (limits/response-budget.ts), on a clock that stands
// still: what runs at once, what waits, what is refused, and that nothing waits for good.

const RATE = 1_000_000;
const BURST = 4_000_000;
const MAX_RESPONSE = 4_000_000;

it('runs as many at once as the balance covers at the recent size, parks at most QUERIES_WAITING_PER_WORKSPACE, refuses the rest, and lets every waiter through once its peers settle (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 3_000_000 }), fc.integer({ min: 1, max: 150 }), async (recentSize, arriving) => {
      const budget = new ResponseBudget(RATE, BURST, MAX_RESPONSE, () => 0);
      // One answer teaches the size (and spends it): the balance is BURST - recentSize.
      const first = await budget.admit('w');
      if (!first.allowed) throw new Error('the first query is always admitted');
      first.settle();
      budget.answered('w', recentSize);
      const balance = BURST - recentSize;
      const room = Math.max(1, Math.floor(balance / recentSize));

      const outcomes: Array<Admission | 'waiting'> = Array.from({ length: arriving }, () => 'waiting');
      const pending = Array.from({ length: arriving }, (_, i) => budget.admit('w').then((admission) => (outcomes[i] = admission)));
      await new Promise((resolve) => setImmediate(resolve));
      const running = outcomes.filter((o): o is Admission & { allowed: true } => o !== 'waiting' && o.allowed);
      const refused = outcomes.filter((o) => o !== 'waiting' && !o.allowed);
      const waiting = outcomes.filter((o) => o === 'waiting');
      expect(running.length).toBe(Math.min(room, arriving));
      expect(waiting.length).toBe(Math.min(QUERIES_WAITING_PER_WORKSPACE, arriving - running.length));
      expect(refused.length).toBe(arriving - running.length - waiting.length);
      for (const r of refused) expect(r.allowed === false && r.retryAfterSeconds >= 1).toBe(true);

      // Every admitted query settles (no answer spent: the clock stands still, the balance stays):
      // the waiters all get through, a room's worth at a time, none left behind.
      const settled = new Set<Admission>();
      for (let rounds = 0; rounds < arriving + 2; rounds++) {
        for (const o of outcomes)
          if (o !== 'waiting' && o.allowed && !settled.has(o)) {
            settled.add(o);
            o.settle();
          }
        await new Promise((resolve) => setImmediate(resolve));
      }
      await Promise.all(pending);
      expect(outcomes.filter((o) => o !== 'waiting' && o.allowed)).toHaveLength(running.length + waiting.length);
    }),
    { numRuns: 60 },
  );
});

it('takes a workspace never answered as large: its queries run one at a time until one is answered', async () => {
  const budget = new ResponseBudget(RATE, BURST, MAX_RESPONSE, () => 0);
  const a = await budget.admit('new');
  let second: Admission | undefined;
  void budget.admit('new').then((admission) => (second = admission));
  await new Promise((resolve) => setImmediate(resolve));
  expect(second).toBeUndefined();
  if (a.allowed) a.settle();
  await new Promise((resolve) => setImmediate(resolve));
  expect(second?.allowed).toBe(true);
});
