import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { WorkspaceBatch } from '../../../src/live/bus/feed-messages.js';
import { WorkspaceTracks } from '../../../src/live/bus/workspace-tracks.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { positionOf } from '../../../src/jobs/change-position.js';

const W = '00000000-0000-4000-8000-000000000001';
const logger = pino({ level: 'silent' });

/** A job state at position `seq` (epoch 1): only what the tracks look at. */
function row(jobId: string, seq: number): JobRow {
  return { id: jobId, workspaceId: W, changeXid: 1n, changeSeq: BigInt(seq), progress: seq } as unknown as JobRow;
}
const at = (seq: number) => 10n ** 19n + BigInt(seq);

/**
 * The workspace's history as the database holds it: change i (position i) is job `jobs[i]`'s new
 * state. A read of (after, upTo] returns each job's current state if its latest change lies there.
 */
class History {
  readonly changes: string[] = [];
  write(jobId: string): number {
    this.changes.push(jobId);
    return this.changes.length;
  }
  read(after: number, upTo: number): JobRow[] {
    const latest = new Map<string, number>();
    for (let i = 1; i <= upTo; i++) latest.set(this.changes[i - 1]!, i);
    return [...latest]
      .filter(([, seq]) => seq > after)
      .sort(([, a], [, b]) => a - b)
      .map(([jobId, seq]) => row(jobId, seq));
  }
}

/** Lets the repairs under way (promise callbacks of the queue) run to the end. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

describe('WorkspaceTracks', () => {
  it('delivers each job’s newest state, in position order, nothing twice, whatever the bus loses or repeats, a new reader or a reconnect (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            writes: fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { minLength: 0, maxLength: 4 }),
            // The bus came back (every track repairs) between these writes and those after: the repair reads part of the next batch.
            reconnect: fc.boolean(),
            later: fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { minLength: 0, maxLength: 3 }),
            fate: fc.constantFrom('sent', 'sent', 'sent', 'lost', 'twice', 'no rows'),
            newReader: fc.boolean(),
          }),
          { minLength: 1, maxLength: 25 },
        ),
        fc.integer({ min: 0, max: 3 }),
        async (reads, watchedAfter) => {
          const history = new History();
          const delivered: JobRow[] = [];
          const tracks = new WorkspaceTracks(
            {
              changesAfter: (_w, after) =>
                Promise.resolve({ rows: history.read(Number(after - 10n ** 19n), history.changes.length), upTo: at(history.changes.length) }),
            },
            (_w, rows) => delivered.push(...rows),
            logger,
            { concurrency: 1, retryMs: 1 },
          );
          let reader = 'r1';
          let prev: bigint | null = null;
          let readerTo = 0;
          let watchedAt = 0;
          for (let i = 0; i < reads.length; i++) {
            const { writes, reconnect, later, fate, newReader } = reads[i]!;
            if (i === watchedAfter) {
              watchedAt = readerTo;
              tracks.watch(W, at(readerTo), Promise.resolve());
            }
            for (const jobId of writes) history.write(jobId);
            if (reconnect) {
              tracks.repairAll();
              await settle();
            }
            for (const jobId of later) history.write(jobId);
            if (newReader) {
              reader = `r${i + 2}`;
              prev = null;
              tracks.repairAll();
            }
            const to = history.changes.length;
            const rows = history.read(readerTo, to);
            readerTo = to;
            if (rows.length === 0) continue;
            const batch: WorkspaceBatch = { reader, prev, to: at(to), rows: fate === 'no rows' ? null : rows };
            prev = at(to);
            if (fate !== 'lost') tracks.apply(W, batch);
            if (fate === 'twice') tracks.apply(W, batch);
            await settle();
          }
          // Whatever was lost shows at the next batch or repair: the last one goes through.
          tracks.repairAll();
          await settle();
          if (watchedAfter >= reads.length) return;

          const seen = delivered.map((r) => positionOf(r));
          expect(seen).toEqual([...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
          expect(new Set(seen).size).toBe(seen.length);
          expect(seen.every((position) => position > at(watchedAt))).toBe(true);
          // Every job changed since watching began ends at its newest state; one changed only before is history.
          const newest = Object.fromEntries(delivered.map((r) => [r.id, r.changeSeq]));
          const expected = Object.fromEntries(history.read(watchedAt, history.changes.length).map((r) => [r.id, r.changeSeq]));
          expect(newest).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('starts with a repair once subscribed, holds batches meanwhile, reads again when told of a loss during it, and stops when unwatched', async () => {
    const history = new History();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const delivered: JobRow[] = [];
    const tracks = new WorkspaceTracks(
      {
        changesAfter: async (_w, after) => {
          const upTo = history.changes.length;
          await gate;
          return { rows: history.read(Number(after - 10n ** 19n), upTo), upTo: at(upTo) };
        },
      },
      (_w, rows) => delivered.push(...rows),
      logger,
      { concurrency: 1, retryMs: 1 },
    );
    let subscribed!: () => void;
    // A change published before the bus had the subscription: lost, but the first repair reads it.
    history.write('a');
    tracks.watch(W, at(0), new Promise<void>((resolve) => (subscribed = resolve)));
    expect(tracks.current(W)).toBe(false);
    history.write('b');
    tracks.apply(W, { reader: 'r', prev: at(1), to: at(2), rows: [row('b', 2)] });
    subscribed();
    await settle();
    // While the repair reads, a change is lost (the bus dropped): the track must read once more.
    history.write('c');
    tracks.repairAll();
    release();
    await settle();
    expect(delivered.map((r) => [r.id, r.changeSeq])).toEqual([
      ['a', 1n],
      ['b', 2n],
      ['c', 3n],
    ]);
    expect(tracks.current(W)).toBe(true);
    tracks.unwatch(W);
    tracks.apply(W, { reader: 'r', prev: at(3), to: at(4), rows: [row('a', 4)] });
    expect(delivered).toHaveLength(3);
  });

  it('retries a repair the database failed, and delivers nothing until it succeeds', async () => {
    const history = new History();
    history.write('a');
    let failures = 2;
    const delivered: JobRow[] = [];
    const tracks = new WorkspaceTracks(
      {
        changesAfter: (_w, after) =>
          failures-- > 0
            ? Promise.reject(new Error('database unavailable'))
            : Promise.resolve({ rows: history.read(Number(after - 10n ** 19n), 1), upTo: at(1) }),
      },
      (_w, rows) => delivered.push(...rows),
      logger,
      { concurrency: 1, retryMs: 5 },
    );
    tracks.watch(W, at(0), Promise.resolve());
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(tracks.current(W)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(tracks.current(W)).toBe(true);
    expect(delivered.map((r) => r.id)).toEqual(['a']);
  });
});
