/** One open connection of a key, and how to close it if the key turns out to be over its limit. */
interface Held {
  readonly evict: (() => void) | undefined;
  /** performance.now() when it opened. */
  readonly openedAt: number;
}

/**
 * What each API key holds open on this instance (WebSockets and Server-Sent Events streams alike),
 * so that one key cannot take all of an instance's connections: `MAX_CONNECTIONS_PER_KEY`. With a
 * feed bus, what the key holds on the other instances counts too (`elsewhere`, kept by
 * SharedConnectionCaps), and a key found over its limit once they agree closes its newest here.
 */
export class KeyConnections {
  private readonly open = new Map<string, Set<Held>>();
  /** What `keyId` holds open on the other instances, as last heard. */
  elsewhere: (keyId: string) => number = () => 0;
  /** Hears each change of a key's count here. */
  onChange: ((keyId: string) => void) | undefined;

  constructor(private readonly maxPerKey: number) {}

  /**
   * Counts one more connection of `keyId`; undefined when the key is at its limit. The result
   * releases it (once). `evict` closes it, should the key be over its limit across instances.
   */
  acquire(keyId: string, evict?: () => void): (() => void) | undefined {
    let held = this.open.get(keyId);
    if ((held?.size ?? 0) + this.elsewhere(keyId) >= this.maxPerKey) return undefined;
    if (!held) this.open.set(keyId, (held = new Set()));
    const entry: Held = { evict, openedAt: performance.now() };
    held.add(entry);
    this.onChange?.(keyId);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      held.delete(entry);
      if (held.size === 0 && this.open.get(keyId) === held) this.open.delete(keyId);
      this.onChange?.(keyId);
    };
  }

  /** What `keyId` holds open here. */
  count(keyId: string): number {
    return this.open.get(keyId)?.size ?? 0;
  }

  /** Every key with connections here, and how many. */
  counts(): Array<[keyId: string, count: number]> {
    return [...this.open].map(([keyId, held]) => [keyId, held.size]);
  }

  /**
   * Closes up to `count` of the key's newest connections here among those opened less than
   * `youngerThanMs` ago (and that can be closed). They stop counting at once: their close, and so
   * their release, comes later. Returns how many it closed.
   */
  evictNewest(keyId: string, count: number, youngerThanMs: number): number {
    const held = this.open.get(keyId);
    if (!held || count <= 0) return 0;
    const since = performance.now() - youngerThanMs;
    const evicted = [...held].filter((each) => each.evict && each.openedAt >= since).slice(-count);
    for (const entry of evicted) {
      held.delete(entry);
      entry.evict!();
    }
    if (held.size === 0 && this.open.get(keyId) === held) this.open.delete(keyId);
    if (evicted.length > 0) this.onChange?.(keyId);
    return evicted.length;
  }

  get max(): number {
    return this.maxPerKey;
  }
}
