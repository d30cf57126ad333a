import { errors } from '../errors.js';
import type { JobRow } from './model.js';

/**
 * Where a change of a job stands in the order of all changes: the writing transaction's id
 * (changeXid), then the number drawn while the row was locked (changeSeq). Clients hold it as one
 * decimal string that grows, changeXid * 10^19 + changeSeq: a sequence value has at most 19 digits,
 * so the string reads as the two numbers side by side, and rows written before positions existed
 * (changeXid 0) keep the cursor they had.
 *
 * A position is only safe to hand out once no smaller one can still appear: a transaction with a
 * smaller id may commit after a larger one has been read. Every transaction with an id below a
 * snapshot's xmin (the horizon) has ended, so positions below the horizon are final.
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

/** The largest position below `horizon` (a transaction id): past every final change and no other. */
export function floorOf(horizon: bigint): bigint {
  return horizon > 0n ? (horizon - 1n) * SEQ_SPAN + MAX_INT8 : 0n;
}

/**
 * The cursor to give a client for a committed `row`, given a horizon seen earlier: its position
 * when final (below the horizon, or written while no older transaction was running), else the
 * floor of the horizon, so that resuming from it cannot skip a transaction still running (it may
 * send this state once more).
 */
export function cursorOf(row: Pick<JobRow, 'changeXid' | 'changeXmin' | 'changeSeq'>, horizon: bigint): bigint {
  return row.changeXid < horizon || row.changeXmin >= row.changeXid ? positionOf(row) : floorOf(horizon);
}

/** `after` is a changeCursor: a decimal integer in a string. */
export function parseAfter(after: string | null | undefined): bigint | undefined {
  if (after == null) return undefined;
  if (!/^\d{1,38}$/.test(after) || BigInt(after) > MAX_POSITION) throw errors.badInput('after must be a changeCursor (a string of digits).');
  return BigInt(after);
}
