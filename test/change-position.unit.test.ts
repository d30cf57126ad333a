import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_POSITION, cursorOf, floorOf, positionOf, splitPosition } from '../src/jobs/change-position.js';

const int8 = fc.bigInt({ min: 0n, max: 2n ** 63n - 1n });
const row = fc.record({ changeXid: int8, changeSeq: int8, changeXmin: int8 });
const compare = (a: { changeXid: bigint; changeSeq: bigint }, b: { changeXid: bigint; changeSeq: bigint }) =>
  a.changeXid !== b.changeXid ? (a.changeXid < b.changeXid ? -1 : 1) : a.changeSeq === b.changeSeq ? 0 : a.changeSeq < b.changeSeq ? -1 : 1;
const sign = (n: bigint) => (n < 0n ? -1 : n > 0n ? 1 : 0);

describe('change positions', () => {
  it('order as (changeXid, changeSeq) does, and split back into both', () => {
    fc.assert(
      fc.property(row, row, (a, b) => {
        expect(sign(positionOf(a) - positionOf(b))).toBe(compare(a, b));
        expect(splitPosition(positionOf(a))).toEqual({ xid: a.changeXid, seq: a.changeSeq });
        expect(positionOf(a)).toBeLessThanOrEqual(MAX_POSITION);
      }),
    );
  });

  it('keep the cursors handed out before positions existed (changeXid 0)', () => {
    fc.assert(
      fc.property(int8, (seq) => {
        expect(positionOf({ changeXid: 0n, changeSeq: seq })).toBe(seq);
      }),
    );
  });

  it('floor a horizon above every change of an ended transaction and below every other', () => {
    fc.assert(
      fc.property(row, fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }), (r, horizon) => {
        if (r.changeXid < horizon) expect(positionOf(r)).toBeLessThanOrEqual(floorOf(horizon));
        else expect(positionOf(r)).toBeGreaterThan(floorOf(horizon));
        // Reading after the floor reads exactly the transactions at or past the horizon.
        const { xid, seq } = splitPosition(floorOf(horizon));
        expect(compare(r, { changeXid: xid, changeSeq: seq }) > 0).toBe(r.changeXid >= horizon);
      }),
    );
  });

  it('give a client a cursor that no change still to commit can fall below, and the row its own position when nothing can', () => {
    // What is known of a transaction `pending` that may still commit, from facts alone: it was
    // running when the horizon was taken (so its id is at least the horizon), and when the row was
    // written (so at least that write's xmin), and it is not the row's own, committed, transaction.
    fc.assert(
      fc.property(row, fc.bigInt({ min: 1n, max: 2n ** 62n }), int8, int8, (r, horizon, pending, seq) => {
        const cursor = cursorOf(r, horizon);
        expect(cursor).toBeLessThanOrEqual(positionOf(r));
        const mayStillCommit = pending >= horizon && pending >= r.changeXmin && pending !== r.changeXid;
        if (mayStillCommit) expect(positionOf({ changeXid: pending, changeSeq: seq })).toBeGreaterThan(cursor);
        // Nothing older can still commit: the client gets the row's own position.
        if (r.changeXid < horizon || r.changeXmin >= r.changeXid) expect(cursor).toBe(positionOf(r));
      }),
      { numRuns: 2_000 },
    );
  });
});
