import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Splits long loops that share one event loop into slices, so the loop polls for I/O (requests,
 * new connections, the database's answers) between them: all loops together take about
 * `stepsPerTurn` steps per turn. Each loop counts its steps with its own `step` function; once it
 * has taken its share, or the turn's steps are spent, it waits for the next turn, and the loops
 * that waited share that turn equally, in the order they came: one large fan-out cannot take every
 * turn while a small one waits behind it, and ten loops at once hold a turn no longer than one.
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

  constructor(private readonly stepsPerTurn: number) {
    this.share = stepsPerTurn;
  }

  /** A new loop's counter: call it after each step (of `weight`); when it returns a promise, await it before the next. */
  loop(): (weight?: number) => Promise<void> | undefined {
    let steps = 0;
    return (weight = 1) => {
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
