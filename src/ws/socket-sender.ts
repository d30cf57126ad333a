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

  constructor(
    readonly socket: WebSocket,
    /** The TCP connection under `socket`: corked around a batch so that its frames share one write. */
    private readonly connection: Corkable,
    private readonly maxBufferedBytes: number,
    private readonly maxCongestedMs: number,
    private readonly onCongested: (sender: SocketSender) => void,
  ) {}

  /**
   * Runs `sendFrames` with the connection corked: the frames it sends leave in one write (one
   * syscall, usually one TCP segment) instead of one each. Under load a dispatch of the change
   * feed carries several changes, and per-frame writes are what a fan-out spends most of its
   * time on.
   */
  batch(sendFrames: () => void): void {
    this.connection.cork();
    try {
      sendFrames();
    } finally {
      this.connection.uncork();
    }
  }

  send(mergeKey: string, frame: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (!this.pending && this.socket.bufferedAmount <= this.maxBufferedBytes) {
      this.socket.send(frame, { binary: false });
      return;
    }
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
  drop(keyPrefix: string): void {
    if (!this.pending) return;
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
      this.socket.send(frame, { binary: false });
      this.pending.delete(key);
      this.pendingBytes -= frame.length;
    }
    this.pending = undefined;
    this.pendingBytes = 0;
    return false;
  }

  private closeSlow(): void {
    this.pending = undefined;
    this.pendingBytes = 0;
    this.socket.close(CloseCode.SlowConsumer, 'Slow consumer: read your socket faster, then resume with after');
  }
}
