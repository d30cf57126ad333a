import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { IdleMemoryRelease, youngGenerationBytes } from '../../src/idle-memory.js';
import { IDLE_MEMORY } from '../../src/limits/fixed.js';

/** Allocates young objects of which many survive a scavenge: V8 grows its young generation for that. */
function growYoungGeneration(): void {
  const kept: unknown[][] = [];
  for (let round = 0; round < 200 && youngGenerationBytes() <= IDLE_MEMORY.minYoungBytes * 2; round++) {
    kept.push(Array.from({ length: 20_000 }, (_, i) => ({ i, text: `value ${i}` })));
    if (kept.length > 20) kept.shift();
  }
}

describe('IdleMemoryRelease', () => {
  it('shrinks a grown young generation back to at most IDLE_MEMORY.minYoungBytes', () => {
    growYoungGeneration();
    expect(youngGenerationBytes()).toBeGreaterThan(IDLE_MEMORY.minYoungBytes);
    const release = new IdleMemoryRelease();
    release.release();
    expect(youngGenerationBytes()).toBeLessThanOrEqual(IDLE_MEMORY.minYoungBytes);
    expect(release.stats().releases).toBe(1);
  });

  it('releases on its own once the event loop has been idle for a check interval', async () => {
    const release = new IdleMemoryRelease({ checkMs: 200 });
    growYoungGeneration();
    release.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(release.stats().releases).toBeGreaterThanOrEqual(1);
      expect(youngGenerationBytes()).toBeLessThanOrEqual(IDLE_MEMORY.minYoungBytes);
    } finally {
      release.stop();
    }
  });

  it('releases once per idle spell: a young generation still over the threshold after a release is not collected again until load comes', async () => {
    // The event loop's load as the test sets it (a vitest worker is never quite idle); any young
    // generation counts as large, the one a release leaves too.
    let load = 0;
    const release = new IdleMemoryRelease({ checkMs: 50, minYoungBytes: 0, utilization: () => load });
    release.start();
    try {
      await expect.poll(() => release.stats().releases).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(release.stats().releases).toBe(1);
      // Load for a while, then idle again: one more.
      load = 0.5;
      await new Promise((resolve) => setTimeout(resolve, 150));
      load = 0;
      await expect.poll(() => release.stats().releases).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(release.stats().releases).toBe(2);
    } finally {
      release.stop();
    }
  });

  it('never pauses a busy event loop: no release while it works, however large the young generation', async () => {
    const release = new IdleMemoryRelease({ checkMs: 100 });
    release.start();
    try {
      const until = performance.now() + 1_000;
      while (performance.now() < until) {
        // Busy for ~20 ms of every turn, allocating, with a turn in between for the timer to run.
        const turn = performance.now() + 20;
        while (performance.now() < turn) growYoungGeneration();
        await nextTurn();
      }
      expect(youngGenerationBytes()).toBeGreaterThan(IDLE_MEMORY.minYoungBytes);
      expect(release.stats().releases).toBe(0);
    } finally {
      release.stop();
    }
  });
});
