import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { IDLE_MEMORY } from './limits/fixed.js';
import type { Logger } from './logger.js';

/**
 * Hands memory back to the system once the instance is idle. Under load (the warm-up is load too)
 * V8 grows its young generation to 64 MiB, and neither V8's memory reducer nor an ordinary GC
 * shrinks it again: an idle server kept ~65 MiB of RSS it no longer used (RESULTS.md). V8 does
 * shrink it, and compact the old generation, on a low-memory notification, which Node offers no
 * API for; its `gc` function (`--expose-gc`) sends one with `flavor: 'last-resort'`. The function
 * is taken from a context of its own (as jest-leak-detector does), so no global `gc` appears in
 * the gateway's context.
 *
 * Every IDLE_MEMORY.checkMs: if the event loop was busy less than IDLE_MEMORY.maxUtilization of
 * that time and the young generation is large, release; once per idle spell: a young generation
 * that one release left large (V8 flags that set its minimum) would not shrink on the next, and a
 * pause every interval would buy nothing. A busy instance is never paused for it.
 */
export class IdleMemoryRelease {
  private readonly checkMs: number;
  private readonly minYoungBytes: number;
  private readonly logger: Pick<Logger, 'warn'> | undefined;
  /** The share of time the event loop was busy since the last call. */
  private readonly utilization: () => number;
  private timer: NodeJS.Timeout | undefined;
  /** Load since the last release (the warm-up counts): only then can another release free anything. */
  private loadedSinceRelease = true;
  private gc: NodeJS.GCFunction | undefined;
  private readonly counts = { releases: 0 };

  constructor(options: { checkMs?: number; minYoungBytes?: number; logger?: Pick<Logger, 'warn'>; utilization?: () => number } = {}) {
    this.checkMs = options.checkMs ?? IDLE_MEMORY.checkMs;
    this.utilization = options.utilization ?? eventLoopUtilization();
    this.minYoungBytes = options.minYoungBytes ?? IDLE_MEMORY.minYoungBytes;
    this.logger = options.logger;
  }

  start(): void {
    if (this.timer) return;
    this.utilization();
    this.timer = setInterval(() => this.check(), this.checkMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  stats(): { releases: number } {
    return { ...this.counts };
  }

  private check(): void {
    if (this.utilization() >= IDLE_MEMORY.maxUtilization) {
      this.loadedSinceRelease = true;
      return;
    }
    if (!this.loadedSinceRelease || youngGenerationBytes() <= this.minYoungBytes) return;
    try {
      this.release();
    } catch (error) {
      // A runtime without the collection asked for: serve on without it.
      this.stop();
      this.logger?.warn({ err: error }, 'releasing idle memory failed; not trying again');
      return;
    }
    this.loadedSinceRelease = false;
    // The release's own pause is not load: the next interval starts after it.
    this.utilization();
  }

  release(): void {
    this.gc ??= exposedGc();
    this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.counts.releases++;
  }
}

/** The share of time the event loop was busy since the previous call (the first: since start). */
function eventLoopUtilization(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, last);
    last = now;
    return utilization;
  };
}

/** Committed bytes of V8's young generation. */
export function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
}

function exposedGc(): NodeJS.GCFunction {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as NodeJS.GCFunction;
}
