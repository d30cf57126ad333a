import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { IDLE_MEMORY } from './limits/fixed.js';

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
 * that time and the young generation is large, release. A busy instance is never paused for it.
 */
export class IdleMemoryRelease {
  constructor(private readonly checkMs: number = IDLE_MEMORY.checkMs) {}

  private timer: NodeJS.Timeout | undefined;
  private last = performance.eventLoopUtilization();
  private gc: NodeJS.GCFunction | undefined;
  private readonly counts = { releases: 0 };

  start(): void {
    if (this.timer) return;
    this.last = performance.eventLoopUtilization();
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
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, this.last).utilization;
    this.last = now;
    if (utilization >= IDLE_MEMORY.maxUtilization || youngGenerationBytes() <= IDLE_MEMORY.minYoungBytes) return;
    this.release();
    // The release's own pause is not load: the next interval starts after it.
    this.last = performance.eventLoopUtilization();
  }

  release(): void {
    this.gc ??= exposedGc();
    this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    this.counts.releases++;
  }
}

/** Committed bytes of V8's young generation. */
export function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
}

function exposedGc(): NodeJS.GCFunction {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as NodeJS.GCFunction;
}
