/**
 * What each API key holds open on this instance (WebSockets and Server-Sent Events streams alike),
 * so that one key cannot take all of an instance's connections: `MAX_CONNECTIONS_PER_KEY`.
 */
export class KeyConnections {
  private readonly open = new Map<string, number>();

  constructor(private readonly maxPerKey: number) {}

  /** Counts one more connection of `keyId`; undefined when the key is at its limit. The result releases it (once). */
  acquire(keyId: string): (() => void) | undefined {
    const count = this.open.get(keyId) ?? 0;
    if (count >= this.maxPerKey) return undefined;
    this.open.set(keyId, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(keyId) ?? 1) - 1;
      if (left === 0) this.open.delete(keyId);
      else this.open.set(keyId, left);
    };
  }

  get max(): number {
    return this.maxPerKey;
  }
}
