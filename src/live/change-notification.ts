import { z } from 'zod';
import { type JobRow, JobStatus } from '../jobs/model.js';

/** What the job_notify trigger sends: the change's cursor and, when it fits, the row itself. */
export interface ChangeNotification {
  cursor: bigint;
  /** Absent when the row did not fit a NOTIFY payload: read it. */
  row?: JobRow;
}

const status = z.enum(JobStatus);
const timestamp = z.iso.datetime({ offset: true }).transform((value) => new Date(value));
const json = z.json();

// The columns of "Job" as to_jsonb() writes them; `satisfies` below makes a column that Prisma
// knows and this does not a compile error.
const row = z.object({
  id: z.string(),
  workspaceId: z.string(),
  competitorId: z.string().nullable(),
  type: z.string(),
  displayTitle: z.string(),
  status,
  previousStatus: status.nullable(),
  progress: z.number().int(),
  currentStep: z.string().nullable(),
  steps: json,
  startedAt: timestamp,
  completedAt: timestamp.nullable(),
  metadata: json,
  error: z.string().nullable(),
  updatedAt: timestamp,
});

const notification = z.object({
  cursor: z.string().regex(/^\d+$/).transform(BigInt),
  row: row.optional(),
});

/**
 * Parses a job_changes notification. Returns undefined for anything unexpected (someone else's
 * NOTIFY on the channel, a trigger from a different version): the feed then reads instead, so a
 * payload it cannot trust costs a query, never a wrong state.
 */
export function parseChangeNotification(payload: string): ChangeNotification | undefined {
  let parsed;
  try {
    parsed = notification.safeParse(JSON.parse(payload));
  } catch {
    return undefined;
  }
  if (!parsed.success) return undefined;
  const { cursor, row: fields } = parsed.data;
  if (!fields) return { cursor };
  const job = { ...fields, changeCursor: cursor } satisfies JobRow;
  return { cursor, row: job };
}
