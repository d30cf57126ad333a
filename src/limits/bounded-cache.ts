import { LRUCache } from 'lru-cache';

/** lru-cache's options, but for the bound, which `boundedCache` sets. */
type Options<K extends NonNullable<unknown>, V extends NonNullable<unknown>> = Omit<LRUCache.OptionsBase<K, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation'>;

/**
 * An LRU cache of at most `entries` entries whose storage grows as it fills. lru-cache preallocates
 * its arrays for `max` entries up front: one of 100,000 held 2.7 MiB while empty, and the gateway
 * keeps a dozen such caches (rate limits, budgets, generations), a third of an idle server's live
 * heap (test/bench/RESULTS.md, memory). Bounded by `maxSize` with every entry of size 1 instead, it
 * holds as many entries and evicts them alike, allocating only what it holds.
 */
export function boundedCache<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(entries: number, options: Options<K, V> = {}): LRUCache<K, V> {
  return new LRUCache<K, V>({ ...options, maxSize: entries, sizeCalculation: () => 1 });
}
