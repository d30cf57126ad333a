import { errors } from '../errors.js';
import type { JobRow } from './model.js';

/**
 * Where a change of a job stands in the order of all changes: (changeXid, changeSeq). changeSeq is
 * drawn from job_change_cursor_seq after the writing transaction registered with the feed (see
 * feed-frontier.ts); changeXid is the epoch, one number for every change written since
 * registrations exist, larger than the transaction ids that rows written before carry (they were
 * ordered by writing transaction first). Clients hold a position as one decimal string that grows,
 * changeXid * 10^19 + changeSeq: a sequence value has at most 19 digits, so the string reads as
 * the two numbers side by side, and rows written before positions existed (changeXid 0) keep the
 * cursor they had.
 *
 * A position is only safe to hand out once no smaller one can still appear (FeedFrontier.finalFor).
 */
export const SEQ_SPAN = 10n ** 19n;

/** The largest changeXid (and changeSeq) PostgreSQL can store: a bigint. */
const MAX_INT8 = 2n ** 63n - 1n;

/** The largest position a client can hold. */
export const MAX_POSITION = MAX_INT8 * SEQ_SPAN + MAX_INT8;

export function positionOf(row: Pick<JobRow, 'changeXid' | 'changeSeq'>): bigint {
  return row.changeXid * SEQ_SPAN + row.changeSeq;
}

/**
 * The two columns of a position, for reading rows after it. The numbers between a transaction's
 * largest possible changeSeq and the next transaction's first position mean "after all of it".
 */
export function splitPosition(position: bigint): { xid: bigint; seq: bigint } {
  const seq = position % SEQ_SPAN;
  return { xid: position / SEQ_SPAN, seq: seq > MAX_INT8 ? MAX_INT8 : seq };
}

/** `after` is a changeCursor: a decimal integer in a string. */
export function parseAfter(after: string | null | undefined): bigint | undefined {
  if (after == null) return undefined;
  if (!/^\d{1,38}$/.test(after) || BigInt(after) > MAX_POSITION) throw errors.badInput('after must be a changeCursor (a string of digits).');
  return BigInt(after);
}
