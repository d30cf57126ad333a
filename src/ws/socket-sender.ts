import type { WebSocket } from 'ws';
import { CloseCode } from './close-codes.js';

export interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * Writes pre-serialized frames to one socket without letting a slow reader grow memory: while the
 * socket's buffer is over `maxBufferedBytes`, frames wait in a map that keeps only the newest frame
 * per key (one subscription's one job), so intermediate states merge. If even the merged frames pass
 * the limit, or the socket stays congested for `maxCongestedMs`, it is closed with SlowConsumer.
 */
export class SocketSender {
  private pending: Map<string, Buffer> | undefined;
  private pendingBytes = 0;
  private congestedSince = 0;
  private corked = false;

  constructor(
    readonly socket: WebSocket,
    /** The TCP connection under `socket`, corked so that the frames of one dispatch share one write. */
    private readonly connection: Corkable,
    private readonly maxBufferedBytes: number,
    private readonly maxCongestedMs: number,
    private readonly onCongested: (sender: SocketSender) => void,
  ) {}

  /** Sends `frame` of subscription `id` about job `jobId` (the pair a slow socket merges on). */
  send(id: string, jobId: string, frame: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (!this.pending && this.socket.bufferedAmount <= this.maxBufferedBytes) {
      this.write(frame);
      return;
    }
    const mergeKey = `${id}\u0000${jobId}`;
    if (!this.pending) {
      this.pending = new Map();
      this.congestedSince = Date.now();
      this.onCongested(this);
    }
    const previous = this.pending.get(mergeKey);
    this.pendingBytes += frame.length - (previous?.length ?? 0);
    this.pending.set(mergeKey, frame);
    if (this.pendingBytes > this.maxBufferedBytes) this.closeSlow();
  }

  /** Forgets frames of a subscription that ended. */
  drop(id: string): void {
    if (!this.pending) return;
    const keyPrefix = `${id}\u0000`;
    for (const [key, frame] of this.pending) {
      if (key.startsWith(keyPrefix)) {
        this.pending.delete(key);
        this.pendingBytes -= frame.length;
      }
    }
  }

  /** Sends what waited once the buffer has room again; returns true while still congested. */
  flush(): boolean {
    if (!this.pending) return false;
    if (this.socket.readyState !== this.socket.OPEN) {
      this.pending = undefined;
      return false;
    }
    for (const [key, frame] of this.pending) {
      if (this.socket.bufferedAmount > this.maxBufferedBytes) {
        if (Date.now() - this.congestedSince <= this.maxCongestedMs) return true;
        this.closeSlow();
        return false;
      }
      this.write(frame);
      this.pending.delete(key);
      this.pendingBytes -= frame.length;
    }
    this.pending = undefined;
    this.pendingBytes = 0;
    return false;
  }

  /**
   * Every frame written in one turn of the event loop (one dispatch of the change feed, whatever
   * the subscriptions and groups on this socket; a flush of merged frames) leaves in one write,
   * one syscall and usually one TCP segment, instead of one each: per-frame writes are what a
   * fan-out spends most of its time on. Node's documented idiom: cork, uncork on the next tick.
   */
  private write(frame: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.connection.cork();
      process.nextTick(() => {
        this.corked = false;
        this.connection.uncork();
      });
    }
    this.socket.send(frame, { binary: false });
  }

  private closeSlow(): void {
    this.pending = undefined;
    this.pendingBytes = 0;
    this.socket.close(CloseCode.SlowConsumer, 'Slow consumer: read your socket faster, then resume with after');
  }
}
