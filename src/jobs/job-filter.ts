import type { JobRow, JobStatus } from './model.js';

/**
 * How a filter's value is typed where clients give it: the GraphQL type of its argument (the REST
 * routes take a JobStatus by its lowercase name).
 */
export type JobFilterKind = 'ID' | 'String' | 'JobStatus';

interface JobFilterSpec {
  readonly kind: JobFilterKind;
  /** The column of "Job" that equals the value for a job that matches. */
  readonly column: 'competitorId' | 'type' | 'status';
  /**
   * The column that holds the value before a change, if it can change: a change also concerns a
   * filter its job matched before it (how a dashboard watching RUNNING jobs sees them finish).
   */
  readonly before?: 'previousStatus';
  /** One sentence for the API's documentation (GraphQL arguments, REST parameters). */
  readonly description: string;
  /** The dashboard's name for it, and what its empty form field shows. */
  readonly label: string;
  readonly placeholder: string;
}

/**
 * Every filter of a job list and of a jobUpdated subscription, declared once: GraphQL's arguments
 * (jobFilterArgs in graphql/types/job.ts), the list's SQL (JobStore.list), the match against a changed
 * row (`changeMatches`), the REST parameters (rest/routes.ts) and the dashboard's form derive from
 * this table. Adding a filter is a row here (and an index in a migration if it needs one).
 */
export const JOB_FILTERS = {
  competitorId: { kind: 'ID', column: 'competitorId', description: "Only this competitor's jobs.", label: 'Competitor', placeholder: 'competitor id' },
  type: { kind: 'String', column: 'type', description: 'Only jobs of this type, e.g. collect.', label: 'Type', placeholder: 'e.g. collect' },
  status: {
    kind: 'JobStatus',
    column: 'status',
    before: 'previousStatus',
    description: 'Only jobs in this status.',
    label: 'Status',
    placeholder: 'any',
  },
} as const satisfies Record<string, JobFilterSpec>;

export type JobFilterName = keyof typeof JOB_FILTERS;

/** The value type of a filter of `kind`, as the job store and the matcher take it. */
export type JobFilterValue<Kind extends JobFilterKind> = Kind extends 'JobStatus' ? JobStatus : string;

/** The filters that are set; null or absent means "any". */
export type JobFilterValues = { [Name in JobFilterName]?: JobFilterValue<(typeof JOB_FILTERS)[Name]['kind']> | null | undefined };

/** What a subscription watches: the filters, and optionally one job. Every given field must match. */
export interface JobFilter extends JobFilterValues {
  id?: string | null | undefined;
}

export const JOB_FILTER_NAMES = Object.keys(JOB_FILTERS) as JobFilterName[];

/**
 * The filters as an operation's variable definitions (`$competitorId: ID, ...`) and as a field's
 * arguments taking them (`competitorId: $competitorId, ...`): for the operations written from
 * this table (the REST list, the dashboard's list and live view).
 */
export const FILTER_VARIABLES = JOB_FILTER_NAMES.map((name) => `$${name}: ${JOB_FILTERS[name].kind}`).join(', ');
export const FILTER_ARGUMENTS = JOB_FILTER_NAMES.map((name) => `${name}: $${name}`).join(', ');

/** The filters' arguments as GraphQL coerces them: ids may arrive as numbers. */
export type JobFilterArgs = { [Name in JobFilterName]?: JobFilterValue<(typeof JOB_FILTERS)[Name]['kind']> | number | null | undefined };

/** The filters that `args` set, ids as strings. */
export function jobFilterValues(args: JobFilterArgs): JobFilterValues {
  const values: Record<string, string | null> = {};
  for (const name of JOB_FILTER_NAMES) {
    const value = args[name];
    values[name] = value == null ? null : String(value);
  }
  return values;
}

/** The filters set in `filter`, each with its declaration. */
export function setFilters(filter: JobFilterValues): Array<{ name: JobFilterName; spec: JobFilterSpec; value: string }> {
  const set: Array<{ name: JobFilterName; spec: JobFilterSpec; value: string }> = [];
  for (const name of JOB_FILTER_NAMES) {
    const value = filter[name];
    if (value != null) set.push({ name, spec: JOB_FILTERS[name], value });
  }
  return set;
}

/** Whether a job, as it is now, matches the filters (the dashboard keeps its list by this). */
export function jobMatches(job: Pick<JobRow, JobFilterSpec['column']>, filter: JobFilterValues): boolean {
  for (const name of JOB_FILTER_NAMES) {
    const value = filter[name];
    if (value != null && job[JOB_FILTERS[name].column] !== value) return false;
  }
  return true;
}

/**
 * Whether a change concerns a subscription: the job matches the filter after the change, or
 * matched it before (for the filters whose column can change, from the column keeping its
 * previous value). Runs per change and subscriber in the fan-out, hence no allocation.
 */
export function changeMatches(job: JobRow, filter: JobFilter): boolean {
  if (filter.id != null && job.id !== filter.id) return false;
  for (const name of JOB_FILTER_NAMES) {
    const value = filter[name];
    if (value == null) continue;
    const spec: JobFilterSpec = JOB_FILTERS[name];
    if (job[spec.column] !== value && (spec.before === undefined || job[spec.before] !== value)) return false;
  }
  return true;
}

/** jobUpdated's arguments, as GraphQL coerces them. */
export interface JobUpdatedArgs extends JobFilterArgs {
  id?: string | number | null;
  after?: string | null;
}

/** The filter a jobUpdated subscription's arguments describe. */
export function jobFilterOf(args: JobUpdatedArgs): JobFilter {
  // Ids are stored lowercase: an uppercase UUID names the same job.
  return { id: args.id == null ? null : String(args.id).toLowerCase(), ...jobFilterValues(args) };
}

/** What an access token sees of its workspace's jobs (auth/access-tokens.ts): every field given must match; none, all jobs. */
export interface JobRestriction {
  readonly jobId?: string;
  readonly competitorId?: string;
  readonly type?: string;
}

/**
 * `filter` narrowed to what `restriction` lets its holder see; null when they conflict (a filter
 * for another competitor than the token's sees nothing). The restricted fields never change after a
 * job is created, so a job in the narrowed filter stays in it.
 */
export function restrictedFilter(filter: JobFilter, restriction: JobRestriction | undefined): JobFilter | null {
  if (!restriction) return filter;
  const narrowed: JobFilter = { ...filter };
  for (const [field, value] of [
    ['id', restriction.jobId],
    ['competitorId', restriction.competitorId],
    ['type', restriction.type],
  ] as const) {
    if (value === undefined) continue;
    if (narrowed[field] != null && narrowed[field] !== value) return null;
    narrowed[field] = value;
  }
  return narrowed;
}

/** Whether `restriction` lets its holder see `job`. */
export function restrictionAllows(restriction: JobRestriction | undefined, job: Pick<JobRow, 'id' | 'competitorId' | 'type'>): boolean {
  if (!restriction) return true;
  return (
    (restriction.jobId === undefined || restriction.jobId === job.id) &&
    (restriction.competitorId === undefined || restriction.competitorId === job.competitorId) &&
    (restriction.type === undefined || restriction.type === job.type)
  );
}
