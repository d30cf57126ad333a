import fc from 'fast-check';
import { expect, it } from 'vitest';
import { KeyedMutex } from '../../../src/jobs/keyed-mutex.js';

it('runs tasks of one key one at a time, in order, and tasks of different keys concurrently; failures do not block', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.boolean()), { minLength: 1, maxLength: 30 }), async (tasks) => {
      const mutex = new KeyedMutex();
      const running = new Map<string, number>();
      const order = new Map<string, number[]>();
      let maxConcurrentKeys = 0;
      const results = await Promise.allSettled(
        tasks.map(([key, fails], index) =>
          mutex.run(key, async () => {
            running.set(key, (running.get(key) ?? 0) + 1);
            expect(running.get(key)).toBe(1);
            maxConcurrentKeys = Math.max(maxConcurrentKeys, [...running.values()].filter((n) => n > 0).length);
            order.set(key, [...(order.get(key) ?? []), index]);
            await new Promise((resolve) => setImmediate(resolve));
            running.set(key, running.get(key)! - 1);
            if (fails) throw new Error(`task ${index}`);
            return index;
          }),
        ),
      );
      for (const [key, indexes] of order) expect(indexes).toEqual(tasks.flatMap(([k], i) => (k === key ? [i] : [])));
      results.forEach((result, i) => expect(result.status).toBe(tasks[i]![1] ? 'rejected' : 'fulfilled'));
      if (new Set(tasks.map(([k]) => k)).size > 1) expect(maxConcurrentKeys).toBeGreaterThan(1);
    }),
    { numRuns: 50 },
  );
});
