import type { WebSocket } from 'ws';
import { LatestPerKey } from '../live/latest-per-key.js';
import { FLUSH_INTERVAL_MS, PENDING_BYTES_TOTAL_FACTOR, STALLED_MS } from '../limits/fixed.js';
import { CloseCode } from './close-codes.js';

/** The TCP connection under a WebSocket: corked so that one dispatch's frames share a write. */
export interface Connection {
  cork(): void;
  uncork(): void;
  on(event: 'drain', listener: () => void): unknown;
}

export interface BacklogLimits {
  /** Bytes a socket may have queued in Node (not yet taken by the kernel) before frames wait and merge. */
  maxBufferedBytes: number;
  /** How long a socket may take none of its waiting frames before it is closed with SlowConsumer. */
  maxCongestedMs: number;
}

/**
 * The frames of every socket whose reader has not taken what it was sent: flushed as buffers
 * drain, and bounded for the whole process (the stalled socket holding the most is closed when the
 * whole is over).
 */
export class SendBacklog {
  readonly maxPendingBytes: number;
  private readonly waiting = new Set<SocketSender>();
  private bytes = 0;
  /** Sockets closed with SlowConsumer so far. */
  slowConsumerCloses = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly limits: BacklogLimits) {
    this.maxPendingBytes = limits.maxBufferedBytes * PENDING_BYTES_TOTAL_FACTOR;
  }

  /** Bytes of frames waiting across all sockets. */
  get pendingBytes(): number {
    return this.bytes;
  }

  sender(socket: WebSocket, connection: Connection): SocketSender {
    return new SocketSender(socket, connection, this);
  }

  /** Sockets with frames (or a replay) waiting for their reader. */
  get waitingSockets(): number {
    return this.waiting.size;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** @internal Called by a sender when frames start to wait. */
  wait(sender: SocketSender): void {
    this.waiting.add(sender);
    this.timer ??= setInterval(() => this.flushAll(), FLUSH_INTERVAL_MS).unref();
  }

  /** @internal Called by a sender whose waiting frames grew or shrank by `delta` bytes. */
  charge(delta: number): void {
    this.bytes += delta;
  }

  /**
   * Sends what the readers have room for; then, while all that waits is over the bound, closes the
   * stalled socket (no room for `STALLED_MS`) holding the most. Checked here and not at each
   * send: a dispatch hands every subscriber its whole burst at once, and a reader that keeps up
   * keeps taking it (it is never the one closed), while one that has stopped holds it all.
   */
  private flushAll(): void {
    for (const sender of this.waiting) if (!sender.flush()) this.waiting.delete(sender);
    const now = Date.now();
    while (this.bytes > this.maxPendingBytes) {
      let largest: SocketSender | undefined;
      for (const sender of this.waiting) {
        if (now - sender.hadRoomAt < STALLED_MS) continue;
        if (!largest || sender.pendingBytes > largest.pendingBytes) largest = sender;
      }
      if (!largest || largest.pendingBytes === 0) break;
      largest.closeSlow();
      this.waiting.delete(largest);
    }
    if (this.waiting.size === 0) this.stop();
  }
}

/**
 * Writes pre-serialized frames to one socket without letting a slow reader grow memory. While the
 * socket has more than `maxBufferedBytes` queued, frames wait in a LatestPerKey that keeps only the
 * newest frame per key (one subscription's one job), so intermediate states merge; they go out as the
 * reader takes what it was sent. A reader that takes nothing for `maxCongestedMs`, or that has
 * stalled and holds the most when all that waits passes the backlog's bound, is closed with SlowConsumer: it resumes with `after`.
 *
 * Why by hand: the frames bypass graphql-ws (one serialization per group, see the multiplexer),
 * so its own buffering does not apply, and `ws` has no policy for a reader that falls behind.
 */
export class SocketSender {
  /** Newest frame per subscription and job, in order of latest arrival (see LatestPerKey). */
  private pending: LatestPerKey<string, Buffer> | undefined;
  private pendingSize = 0;
  /** The last time the socket had room (below the limit), while frames wait. */
  hadRoomAt = 0;
  private corked = false;
  private waiters: (() => void)[] = [];

  constructor(
    readonly socket: WebSocket,
    private readonly connection: Connection,
    private readonly backlog: SendBacklog,
  ) {
    connection.on('drain', () => {
      if (this.pending) this.flush();
    });
    // A socket closes once: `on`, not `once`, whose wrapper each open socket would hold.
    socket.on('close', () => this.reset());
  }

  get pendingBytes(): number {
    return this.pendingSize;
  }

  /** True while frames wait for the reader (a replay then waits with `writable`). */
  get congested(): boolean {
    return this.pending !== undefined || !this.hasRoom();
  }

  /** Sends `frame` of subscription `id` about job `jobId` (the pair a slow socket merges on). */
  send(id: string, jobId: string, frame: Buffer): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (!this.pending && this.hasRoom()) {
      this.write(frame);
      return;
    }
    const previous = this.startWaiting().put(`${id}\u0000${jobId}`, frame);
    const delta = frame.length - (previous?.length ?? 0);
    this.pendingSize += delta;
    this.backlog.charge(delta);
  }

  /**
   * Resolves once the socket has room and nothing waits (or it closed): a replay sends one job at a
   * time behind it, so a resume over thousands of jobs streams at the reader's pace instead of
   * queueing all of them.
   */
  writable(): Promise<void> {
    if (!this.congested || this.socket.readyState !== this.socket.OPEN) return Promise.resolve();
    this.startWaiting();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Forgets frames of a subscription that ended. */
  drop(id: string): void {
    if (!this.pending) return;
    const keyPrefix = `${id}\u0000`;
    for (const frame of this.pending.removeWhere((key) => key.startsWith(keyPrefix))) {
      this.pendingSize -= frame.length;
      this.backlog.charge(-frame.length);
    }
  }

  /** Sends what waited while the socket has room; returns true while frames still wait. */
  flush(): boolean {
    if (!this.pending) return false;
    if (this.socket.readyState !== this.socket.OPEN) {
      this.reset();
      return false;
    }
    while (this.pending.size > 0) {
      if (!this.hasRoom()) return this.stillWaiting();
      const [, frame] = this.pending.shift()!;
      this.hadRoomAt = Date.now();
      this.write(frame);
      this.pendingSize -= frame.length;
      this.backlog.charge(-frame.length);
    }
    if (!this.hasRoom()) return this.stillWaiting();
    this.reset();
    return false;
  }

  /** @internal The reader fell behind, or the backlog needs this socket's memory back. */
  closeSlow(): void {
    this.reset();
    this.backlog.slowConsumerCloses++;
    this.socket.close(CloseCode.SlowConsumer, 'Slow consumer: read your socket faster, then resume with after');
  }

  private hasRoom(): boolean {
    return this.socket.bufferedAmount <= this.backlog.limits.maxBufferedBytes;
  }

  private startWaiting(): LatestPerKey<string, Buffer> {
    if (!this.pending) {
      this.pending = new LatestPerKey();
      this.hadRoomAt = Date.now();
      this.backlog.wait(this);
    }
    return this.pending;
  }

  private stillWaiting(): boolean {
    if (Date.now() - this.hadRoomAt <= this.backlog.limits.maxCongestedMs) return true;
    this.closeSlow();
    return false;
  }

  /** Nothing waits any more: the socket caught up, or closed. */
  private reset(): void {
    if (this.pendingSize !== 0) this.backlog.charge(-this.pendingSize);
    this.pending = undefined;
    this.pendingSize = 0;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Every frame written in one turn of the event loop (a slice of a dispatch of the change feed,
   * whatever the subscriptions and groups on this socket; a flush of merged frames) leaves in one write,
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
}
