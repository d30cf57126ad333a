import fc from 'fast-check';
import { expect, it } from 'vitest';
import { TurnSlicer } from '../../../src/live/turn-slicer.js';
import { countTurns } from '../../helpers/turns.js';

// Loops sharing a TurnSlicer: every turn of the event loop runs about `stepsPerTurn` steps in all,
// and a short loop is not kept waiting behind a long one.

async function run(lengths: number[], stepsPerTurn: number) {
  const slicer = new TurnSlicer(stepsPerTurn);
  const turns = countTurns();
  const stepsInTurn = new Map<number, number>();
  const finishedAt = await Promise.all(
    lengths.map(async (length) => {
      const step = slicer.loop();
      for (let i = 0; i < length; i++) {
        stepsInTurn.set(turns.turn, (stepsInTurn.get(turns.turn) ?? 0) + 1);
        const wait = step();
        if (wait) await wait;
      }
      return turns.turn;
    }),
  );
  turns.stop();
  return { finishedAt, stepsInTurn };
}

it('shares each turn among the loops that wait: a short loop ends in its first turns, whatever runs beside it', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 3_000 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 4, max: 256 }),
      async (lengths, stepsPerTurn) => {
        const { finishedAt, stepsInTurn } = await run(lengths, stepsPerTurn);
        // No turn runs much more than its budget (each loop may take one step past its share).
        for (const steps of stepsInTurn.values()) expect(steps).toBeLessThanOrEqual(stepsPerTurn + lengths.length);
        // Each loop gets at least stepsPerTurn / loops steps a turn: it ends within that many turns (and one to start).
        const share = Math.max(1, Math.floor(stepsPerTurn / lengths.length));
        lengths.forEach((length, i) => expect(finishedAt[i]).toBeLessThanOrEqual(Math.ceil(length / share) + 2));
      },
    ),
    { numRuns: 40 },
  );
});

it('a loop of 50 that starts while loops of 10,000 and 2,000 wait ends within its first turns, and no turn is lost', async () => {
  const slicer = new TurnSlicer(256);
  const turns = countTurns();
  const loop = async (length: number) => {
    const step = slicer.loop();
    for (let i = 0; i < length; i++) {
      const wait = step();
      if (wait) await wait;
    }
    return turns.turn;
  };
  const long = [loop(10_000), loop(2_000)];
  await new Promise((resolve) => setImmediate(resolve));
  const startedAt = turns.turn;
  const short = await loop(50);
  expect(short - startedAt).toBeLessThanOrEqual(3);
  const [tenThousand] = await Promise.all(long);
  turns.stop();
  // 12,050 steps at 256 a turn, give or take the turns where loops resume.
  expect(tenThousand).toBeLessThanOrEqual(Math.ceil(12_050 / 256) + 6);
});

it('bounds each turn by weight when steps weigh more than one: loops together stay within the budget plus one step each (property)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 500, max: 4_000 }),
      async (loops, budget) => {
        const slicer = new TurnSlicer(budget);
        const turns = countTurns();
        const weightInTurn = new Map<number, number>();
        const heaviest = Math.max(...loops.flat());
        await Promise.all(
          loops.map(async (weights) => {
            const step = slicer.loop();
            for (const weight of weights) {
              weightInTurn.set(turns.turn, (weightInTurn.get(turns.turn) ?? 0) + weight);
              const wait = step(weight);
              if (wait) await wait;
            }
          }),
        );
        turns.stop();
        // Eight bodies made at once hold a turn about as long as one (graphql/serialized.ts).
        for (const weight of weightInTurn.values()) expect(weight).toBeLessThanOrEqual(budget + heaviest * loops.length);
      },
    ),
    { numRuns: 40 },
  );
});
