import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_POSITION, positionOf, splitPosition } from '../../../src/jobs/change-position.js';

const int8 = fc.bigInt({ min: 0n, max: 2n ** 63n - 1n });
const row = fc.record({ changeXid: int8, changeSeq: int8 });
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
});
