/**
 * What a subscriber that falls behind is owed: the newest item per key (a job, or a subscription's
 * job), in the order of each key's latest arrival.
 *
 * That order matters. States arrive in change-position order, and a client resumes with the
 * largest position it received. Were a replaced item to keep its key's first place, job A's newer
 * state (position 9) would go out before job B's (position 7), and a client cut off between the
 * two would resume after 9 and never get B. In order of latest arrival, whatever prefix the client
 * got, every state it missed lies past the largest position it holds.
 *
 * Why by hand: a Map already keeps insertion order; what no queue library offers is replace-by-key
 * that moves the key to the end, which this is in a few lines.
 */
export class LatestPerKey<K, V> {
  private readonly items = new Map<K, V>();
  /**
   * One live iterator for every `shift` until the map runs dry: a fresh one per call would skip the
   * holes deleted entries leave at the front, which makes draining n items cost about n^2 / 2.
   * A Map's iterator sees entries added after it was made, and skips deleted ones.
   */
  private reader: Iterator<[K, V]> | undefined;

  get size(): number {
    return this.items.size;
  }

  /** Queues `value` as `key`'s newest, behind everything queued; returns what it replaced. */
  put(key: K, value: V): V | undefined {
    const previous = this.items.get(key);
    if (previous !== undefined) this.items.delete(key);
    this.items.set(key, value);
    return previous;
  }

  /** Takes the oldest entry. */
  shift(): [K, V] | undefined {
    this.reader ??= this.items.entries();
    const first = this.reader.next();
    if (first.done) {
      this.reader = undefined; // an iterator that has finished stays finished
      return undefined;
    }
    this.items.delete(first.value[0]);
    return first.value;
  }

  /** Removes the entries whose key `drop` picks; returns them. */
  removeWhere(drop: (key: K) => boolean): V[] {
    const removed: V[] = [];
    for (const [key, value] of this.items) {
      if (drop(key)) {
        this.items.delete(key);
        removed.push(value);
      }
    }
    return removed;
  }

  clear(): void {
    this.items.clear();
    this.reader = undefined;
  }
}
