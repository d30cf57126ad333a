import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Splits long loops that share one event loop into slices of `stepsPerTurn` steps, all of them
 * together: once that many steps ran, every loop that asks waits for the next turn, so the loop
 * polls for I/O (requests, new connections, the database's answers) between slices.
 *
 * Why by hand: the slicing libraries (p-queue and the like) schedule tasks, one promise each; a
 * fan-out's step is one socket write of a few microseconds, and a promise per write would cost more
 * than the write.
 */
export class TurnSlicer {
  private steps = 0;
  private turn: Promise<void> | undefined;

  constructor(private readonly stepsPerTurn: number) {}

  /** Counts one step: undefined to go on, or the next turn of the event loop to wait for first. */
  step(): Promise<void> | undefined {
    if (this.turn) return this.turn;
    if (++this.steps < this.stepsPerTurn) return undefined;
    this.turn = nextTurn().then(() => {
      this.turn = undefined;
      this.steps = 0;
    });
    return this.turn;
  }
}
