import type { FeedBus } from '../live/bus/feed-bus.js';
import { decodeObject, encodeText } from '../live/bus/feed-messages.js';
import { SHARED_CAPS_SNAPSHOT_MS, SHARED_CAPS_YOUNG_MS, SHARED_LIMITS_KEYS_PER_MESSAGE } from './fixed.js';
import type { KeyConnections } from './key-connections.js';

interface Peer {
  readonly counts: Map<string, number>;
  /** performance.now() when it was last heard. */
  at: number;
}

/**
 * Makes MAX_CONNECTIONS_PER_KEY hold across the instances that share a feed bus: each instance
 * tells the others what each key holds open on it (the keys that changed, every `syncMs`, and all
 * of them every SHARED_CAPS_SNAPSHOT_MS, which also says it is alive), and counts theirs when a key
 * connects. Connections opened on several instances within one sync can pass the limit; once the
 * counts are known, the instances close the excess among their connections opened in the last
 * second (see `trim`), so the key is back at its limit a sync later; an established connection is
 * never closed for it. An instance that stops says so (its counts go at once); one not heard for
 * three snapshots counts for nothing (it died). An instance that joins, or whose bus comes back,
 * says hello (everyone sends all their counts) and closes nothing for one snapshot interval. While
 * the bus is unreachable each instance limits on its own, as without a bus.
 *
 * Written by hand for the same reason as SharedRateLimits: a store asked at every connect would
 * work too, but the bus is there and this needs no store.
 */
export class SharedConnectionCaps {
  private readonly peers = new Map<string, Peer>();
  private dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private sinceSnapshot = 0;
  private unsubscribe: (() => void) | undefined;
  /** The bus was up at the last sync: when it comes up, this instance says hello and listens a while before it closes anything. */
  private wasUp = false;
  /** performance.now() before which this instance closes nothing: it has not heard every peer's counts yet. */
  private blindUntil = 0;

  constructor(
    private readonly connections: KeyConnections,
    private readonly bus: Pick<FeedBus, 'publish' | 'subscribe' | 'up'>,
    private readonly subject: string,
    private readonly instanceId: string,
    private readonly syncMs: number,
  ) {}

  start(): void {
    this.connections.elsewhere = (keyId) => this.elsewhere(keyId);
    this.connections.onChange = (keyId) => this.dirty.add(keyId);
    this.unsubscribe = this.bus.subscribe(this.subject, (data) => this.heard(data));
    this.timer = setInterval(() => this.sync(), this.syncMs);
    this.timer.unref();
  }

  /** Once this instance's connections are closed: tells the others it holds nothing now, so they stop counting it at once. */
  stop(): void {
    clearInterval(this.timer);
    if (this.bus.up) this.publish(true, []);
    this.unsubscribe?.();
    this.connections.elsewhere = () => 0;
    this.connections.onChange = undefined;
  }

  private elsewhere(keyId: string): number {
    if (!this.bus.up) return 0;
    const now = performance.now();
    let count = 0;
    for (const [id, peer] of this.peers) {
      if (now - peer.at > 3 * SHARED_CAPS_SNAPSHOT_MS) this.peers.delete(id);
      else count += peer.counts.get(keyId) ?? 0;
    }
    return count;
  }

  private sync(): void {
    const up = this.bus.up;
    const cameUp = up && !this.wasUp;
    this.wasUp = up;
    // Changes while the bus is down wait for it.
    if (!up) return;
    if (cameUp) {
      // What the others knew may be old, and what this one knew of them too: everyone's counts again, and none closed until heard.
      this.peers.clear();
      this.blindUntil = performance.now() + SHARED_CAPS_SNAPSHOT_MS;
      this.sinceSnapshot = SHARED_CAPS_SNAPSHOT_MS;
    }
    this.sinceSnapshot += this.syncMs;
    const full = this.sinceSnapshot >= SHARED_CAPS_SNAPSHOT_MS;
    if (!full && this.dirty.size === 0) return;
    const counts = full ? this.connections.counts() : [...this.dirty].map((keyId) => [keyId, this.connections.count(keyId)] as [string, number]);
    this.dirty = new Set();
    if (full) this.sinceSnapshot = 0;
    this.publish(full, counts, cameUp);
  }

  /** A full snapshot goes in several messages when large: the first replaces what the others knew of this instance. */
  private publish(full: boolean, counts: Array<[string, number]>, hello = false): void {
    for (let i = 0; i === 0 || i < counts.length; i += SHARED_LIMITS_KEYS_PER_MESSAGE) {
      const part = counts.slice(i, i + SHARED_LIMITS_KEYS_PER_MESSAGE);
      this.bus.publish(this.subject, encodeText(JSON.stringify({ from: this.instanceId, full: full && i === 0, hello: hello && i === 0, counts: part })));
    }
  }

  private heard(data: Uint8Array): void {
    const message = decodeObject(data);
    if (!message || typeof message.from !== 'string' || message.from === this.instanceId || !Array.isArray(message.counts)) return;
    // A newcomer (or one back on the bus) knows nobody's counts: everyone sends theirs at the next sync.
    if (message.hello === true) this.sinceSnapshot = SHARED_CAPS_SNAPSHOT_MS;
    let peer = this.peers.get(message.from);
    if (!peer || message.full === true) this.peers.set(message.from, (peer = { counts: new Map(), at: 0 }));
    peer.at = performance.now();
    for (const entry of message.counts as unknown[]) {
      if (!Array.isArray(entry)) continue;
      const [keyId, count] = entry as [unknown, unknown];
      // An instance holds at most the limit and what opened before the others' counts came: twice the limit is not a count of ours.
      if (typeof keyId !== 'string' || !Number.isInteger(count) || (count as number) < 0 || (count as number) > 2 * this.connections.max) continue;
      if (count === 0) peer.counts.delete(keyId);
      else peer.counts.set(keyId, count as number);
      this.trim(keyId);
    }
  }

  /**
   * Over its limit across instances: the excess is shared out in one order every instance agrees on
   * (by instance id, highest first, each up to what it holds), and this one closes its part, newest
   * first. Each instance works the same sum out from the same counts, so none closes another's part
   * as well: the key ends at its limit, not below.
   */
  private trim(keyId: string): void {
    const here = this.connections.count(keyId);
    if (here === 0 || performance.now() < this.blindUntil) return;
    const now = performance.now();
    const holders: Array<[id: string, count: number]> = [[this.instanceId, here]];
    for (const [id, peer] of this.peers) {
      const count = peer.counts.get(keyId) ?? 0;
      if (count > 0 && now - peer.at <= 3 * SHARED_CAPS_SNAPSHOT_MS) holders.push([id, count]);
    }
    let over = holders.reduce((sum, [, count]) => sum + count, 0) - this.connections.max;
    if (over <= 0) return;
    holders.sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0));
    for (const [id, count] of holders) {
      const part = Math.min(count, over);
      // Only connections young enough to be the excess: established ones stay, whatever stale counts say.
      if (id === this.instanceId) return void this.connections.evictNewest(keyId, part, SHARED_CAPS_YOUNG_MS);
      over -= part;
      if (over <= 0) return;
    }
  }
}
