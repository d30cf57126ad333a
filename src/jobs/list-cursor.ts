import { errors } from '../errors.js';
import { isUuid } from '../ids.js';
import type { JobRow } from './model.js';

/** Where a page of the job list starts or ends: a job's place in the list's order (startedAt, then id, both descending). */
export interface ListPosition {
  startedAt: Date;
  id: string;
}

const PREFIX = 'j1:';
/** Longer than any cursor this module writes: anything longer is refused unread. */
const MAX_CURSOR_LENGTH = 120;

/**
 * The cursor of a job in the list: its place in the list's order, not an offset, so that pages
 * stay put while jobs are added (they sort before every page already read) and changed (neither
 * key changes after creation). Opaque to clients, versioned by its prefix.
 */
export function listCursorOf(job: Pick<JobRow, 'startedAt' | 'id'>): string {
  return Buffer.from(`${PREFIX}${job.startedAt.toISOString()},${job.id}`).toString('base64url');
}

/** The position a cursor names, or BAD_USER_INPUT for anything this API did not write. */
export function listPositionOf(cursor: string, argument: string): ListPosition {
  const refused = () => errors.badInput(`${argument} is not a cursor of this list.`);
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]*$/.test(cursor)) throw refused();
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(PREFIX)) throw refused();
  const [iso, id, ...rest] = text.slice(PREFIX.length).split(',');
  const startedAt = new Date(iso ?? '');
  if (rest.length > 0 || id === undefined || !isUuid(id) || Number.isNaN(startedAt.getTime()) || startedAt.toISOString() !== iso) throw refused();
  return { startedAt, id: id.toLowerCase() };
}
