import fc from 'fast-check';
import { expect, it } from 'vitest';
import { LatestPerKey } from '../../../src/live/latest-per-key.js';

/**
 * A subscriber that falls behind gets each job's newest state, and resumes after a disconnect with
 * the largest position it received. Both hold only if, at every moment, whatever still waits is
 * newer than everything already taken: then a client cut off anywhere has missed nothing at or
 * below its largest position, and its resume brings the rest.
 */
const operations = fc.array(fc.oneof(fc.record({ put: fc.integer({ min: 0, max: 5 }) }), fc.constant({ take: true as const })), { maxLength: 200 });

it('keeps the newest item per key, and everything waiting is newer than everything taken (property)', () => {
  fc.assert(
    fc.property(operations, (ops) => {
      const queue = new LatestPerKey<number, number>();
      const newest = new Map<number, number>();
      const taken: Array<[number, number]> = [];
      let position = 0;
      const take = () => {
        const entry = queue.shift();
        if (entry) taken.push(entry);
      };
      for (const op of ops) {
        if ('put' in op) {
          position++;
          const replaced = queue.put(op.put, position);
          if (replaced !== undefined) expect(replaced).toBeLessThan(position);
          newest.set(op.put, position);
        } else {
          take();
        }
        // The invariant, at every step.
        const largestTaken = Math.max(0, ...taken.map(([, p]) => p));
        const waiting = iterate(queue);
        for (const [, p] of waiting) expect(p).toBeGreaterThan(largestTaken);
        expect(new Set(waiting.map(([key]) => key)).size).toBe(waiting.length);
      }
      while (queue.size > 0) take();
      // Each key's newest item went out, and items of one key went out in position order.
      for (const [key, p] of newest) expect(taken.filter(([k]) => k === key).at(-1)).toEqual([key, p]);
      expect(taken.map(([, p]) => p)).toEqual([...taken.map(([, p]) => p)].sort((a, b) => a - b));
    }),
  );
});

it('removes the entries a predicate picks, and returns them', () => {
  const queue = new LatestPerKey<string, number>();
  queue.put('a:1', 1);
  queue.put('b:1', 2);
  queue.put('a:2', 3);
  expect(queue.removeWhere((key) => key.startsWith('a:'))).toEqual([1, 3]);
  expect(queue.shift()).toEqual(['b:1', 2]);
  expect(queue.shift()).toBeUndefined();
});

/** What waits, oldest first: drained, and put back in the same order. */
function iterate<K, V>(queue: LatestPerKey<K, V>): Array<[K, V]> {
  const drained: Array<[K, V]> = [];
  for (let entry = queue.shift(); entry; entry = queue.shift()) drained.push(entry);
  for (const [key, value] of drained) queue.put(key, value);
  return drained;
}
