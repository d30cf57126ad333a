import type { FrontierSnapshot } from '../../jobs/feed-frontier.js';
import { jobRowOfSnapshot } from '../../jobs/job-rows.js';
import type { JobRow } from '../../jobs/model.js';

/**
 * One workspace's changes from one read of the feed reader: every final change of the workspace in
 * the positions (prev, to] is in `rows` (each job's current state, in position order). `prev` is
 * the `to` of the reader's previous batch of the workspace, so a follower whose position is not
 * `prev` has missed one; null when this reader sent none before (it is new). `rows` is null when
 * they did not fit in one message: the follower reads them itself, as for a gap.
 */
export interface WorkspaceBatch {
  readonly reader: string;
  readonly prev: bigint | null;
  readonly to: bigint;
  readonly rows: JobRow[] | null;
}

/** The reader's frontier after a read (FeedFrontier.snapshot), and that the reader is alive. */
export interface FrontierMessage extends FrontierSnapshot {
  readonly reader: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bigintsAsText = (_key: string, value: unknown) => (typeof value === 'bigint' ? value.toString() : value);

export function encodeBatch(batch: WorkspaceBatch): Uint8Array {
  return encoder.encode(JSON.stringify({ reader: batch.reader, prev: batch.prev, to: batch.to, rows: batch.rows }, bigintsAsText));
}

/** Undefined for a message that is not a batch (another program's on the subject). */
export function decodeBatch(data: Uint8Array): WorkspaceBatch | undefined {
  try {
    const raw = JSON.parse(decoder.decode(data)) as { reader?: unknown; prev?: unknown; to?: unknown; rows?: unknown } | null;
    if (raw === null || typeof raw !== 'object') return undefined;
    if (typeof raw.reader !== 'string' || typeof raw.to !== 'string' || !(raw.prev === null || typeof raw.prev === 'string')) return undefined;
    if (!(raw.rows === null || Array.isArray(raw.rows))) return undefined;
    return {
      reader: raw.reader,
      prev: raw.prev === null ? null : BigInt(raw.prev),
      to: BigInt(raw.to),
      // Timestamps and bigints as text, like job_webhook_snapshot()'s.
      rows: raw.rows === null ? null : (raw.rows as Array<Record<string, unknown>>).map(jobRowOfSnapshot),
    };
  } catch {
    return undefined;
  }
}

export function encodeFrontier(message: FrontierMessage): Uint8Array {
  return encoder.encode(JSON.stringify(message, bigintsAsText));
}

export function decodeFrontier(data: Uint8Array): FrontierMessage | undefined {
  try {
    const raw = JSON.parse(decoder.decode(data)) as { reader?: unknown; position?: unknown; behind?: unknown } | null;
    if (raw === null || typeof raw !== 'object') return undefined;
    if (typeof raw.reader !== 'string' || typeof raw.position !== 'string' || !Array.isArray(raw.behind)) return undefined;
    const behind = (raw.behind as Array<[number, string]>).map(([key, stands]) => [Number(key), BigInt(stands)] as const);
    return { reader: raw.reader, position: BigInt(raw.position), behind };
  } catch {
    return undefined;
  }
}

export function encodeText(text: string): Uint8Array {
  return encoder.encode(text);
}

export function decodeText(data: Uint8Array): string {
  return decoder.decode(data);
}

/** A message's JSON object, or undefined for anything else (not JSON, null, an array, a number). */
export function decodeObject(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(decoder.decode(data));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
