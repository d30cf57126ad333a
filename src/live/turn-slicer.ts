import { setImmediate as nextTurn } from 'node:timers/promises';
import { CPU_SLICE_MS } from '../limits/fixed.js';

/**
 * Splits long loops that share one event loop into slices, so the loop polls for I/O (requests,
 * new connections, the database's answers) between them: all loops together take about
 * `stepsPerTurn` steps per turn. Each loop counts its steps with its own `step` function; once it
 * has taken its share, or the turn's steps are spent, it waits for the next turn, and the loops
 * that waited share that turn equally, in the order they came: one large fan-out cannot take every
 * turn while a small one waits behind it, and ten loops at once hold a turn about as long as one
 * (plus one step each: every loop that resumes takes a step before it can be told to wait).
 *
 * A step weighs 1 unless told otherwise: a fan-out counts socket writes, the serializer
 * (graphql/serialized.ts) weighs each piece by the microseconds it took, so its turns are bounded
 * in time.
 *
 * Why by hand: the slicing libraries (p-queue and the like) schedule tasks, one promise each; a
 * fan-out's step is one socket write of a few microseconds, and a promise per write would cost more
 * than the write.
 */
export class TurnSlicer {
  private waiting: Array<() => void> = [];
  /** Steps taken by all loops since the last turn this slicer waited for. */
  private used = 0;
  private turn: Promise<void> | undefined;
  /** Steps each loop may take before it waits, this turn. */
  private share: number;
  /** Whether the count of this turn's steps is to be reset at the next turn. */
  private resetScheduled = false;

  constructor(private readonly stepsPerTurn: number) {
    this.share = stepsPerTurn;
  }

  /** A new loop's counter: call it after each step (of `weight`); when it returns a promise, await it before the next. */
  loop(): (weight?: number) => Promise<void> | undefined {
    let steps = 0;
    return (weight = 1) => {
      // Steps are counted per turn: a turn whose loops all finished within their shares leaves
      // nothing owing to the next (else a loop would wait once for work long done).
      if (!this.resetScheduled) {
        this.resetScheduled = true;
        setImmediate(() => {
          this.resetScheduled = false;
          this.used = 0;
        });
      }
      this.used += weight;
      steps += weight;
      if (steps < this.share && this.used < this.stepsPerTurn) return undefined;
      steps = 0;
      return this.waitForTurn();
    };
  }

  private waitForTurn(): Promise<void> {
    const resumed = new Promise<void>((resolve) => this.waiting.push(resolve));
    this.turn ??= nextTurn().then(() => {
      this.turn = undefined;
      this.used = 0;
      const waiting = this.waiting;
      this.waiting = [];
      this.share = Math.max(1, Math.floor(this.stepsPerTurn / waiting.length));
      for (const resume of waiting) resume();
    });
    return resumed;
  }
}

/**
 * The slicer of the process's long CPU work, weighed in microseconds (`microsSince`): response
 * bodies being made (graphql/serialized.ts) and replays being rendered (job-updated-session.ts).
 * One for the process, as there is one event loop: a slicer each let eight bodies made at once
 * hold a turn eight slices long, and a hundred replays starting at once rendered 250 jobs of 64 KiB
 * in one turn (158 ms; test/bench/RESULTS.md, heavy misses and metadata replays).
 */
export const cpuTurns = new TurnSlicer(CPU_SLICE_MS * 1000);

/** The weight of a piece of work that started at `started` (a `performance.now()`), for `cpuTurns`. */
export function microsSince(started: number): number {
  return Math.ceil((performance.now() - started) * 1000);
}
