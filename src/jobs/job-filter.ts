import type { JobRow, JobStatus } from './model.js';

/** What a subscription watches; every given field must match. */
export interface JobFilter {
  id?: string | null | undefined;
  competitorId?: string | null | undefined;
  type?: string | null | undefined;
  status?: JobStatus | null | undefined;
}

/**
 * Whether a change concerns a subscription: the job matched the filter before or after it. Only
 * status ever changes among the filtered fields, so "before" needs just the previous status,
 * which the database keeps in `previousStatus`. That is how a dashboard watching RUNNING jobs
 * sees them finish.
 */
export function changeMatches(job: JobRow, filter: JobFilter): boolean {
  if (filter.id != null && job.id !== filter.id) return false;
  if (filter.competitorId != null && job.competitorId !== filter.competitorId) return false;
  if (filter.type != null && job.type !== filter.type) return false;
  if (filter.status != null && job.status !== filter.status && job.previousStatus !== filter.status) return false;
  return true;
}

/** jobUpdated's arguments, as GraphQL coerces them (ids may arrive as numbers). */
export interface JobUpdatedArgs {
  id?: string | number | null;
  competitorId?: string | number | null;
  type?: string | null;
  status?: JobFilter['status'];
  after?: string | null;
}

/** The filter a jobUpdated subscription's arguments describe. */
export function jobFilterOf(args: JobUpdatedArgs): JobFilter {
  return {
    id: args.id == null ? null : String(args.id),
    competitorId: args.competitorId == null ? null : String(args.competitorId),
    type: args.type,
    status: args.status,
  };
}
