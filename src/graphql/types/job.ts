import type { ArgBuilder } from '@pothos/core';
import { resolveCursorConnection } from '@pothos/plugin-relay';
import {
  JOB_FILTERS,
  JOB_FILTER_NAMES,
  restrictedFilter,
  restrictionAllows,
  type JobFilterKind,
  type JobFilterName,
  jobFilterValues,
} from '../../jobs/job-filter.js';
import { JOB_STEP_STATUSES, JobStatus, metadataOf, stepsOf, type JobRow, type JobStep } from '../../jobs/model.js';
import { JOB_ENDINGS, errors } from '../../errors.js';
import { listCursorOf, listPositionOf } from '../../jobs/list-cursor.js';
import { endingOf } from '../../jobs/transitions.js';
import { LIST_LIMIT } from '../../limits/fixed.js';
import { builder } from '../builder.js';
import { restrictionOf, workspaceOf } from '../context.js';

export const JobStatusEnum = builder.enumType(JobStatus, { name: 'JobStatus' });
export const JobStepStatusEnum = builder.enumType('JobStepStatus', { values: JOB_STEP_STATUSES });
export const JobEndingEnum = builder.enumType('JobEnding', {
  values: JOB_ENDINGS,
  description: 'How a job that is no longer running ended. CANCELLED and STALLED jobs have the status FAILED.',
});

/** A step as GraphQL serves it: with its job's id, which makes its identity unique across jobs. */
interface JobStepOfJob extends JobStep {
  jobId: string;
}

type Types = typeof builder.$inferSchemaTypes;

const statusArg = (arg: ArgBuilder<Types>, description: string) => arg({ type: JobStatusEnum, description });

/** The GraphQL argument of each kind of filter value (jobs/job-filter.ts). */
type FilterArg<Kind extends JobFilterKind> = Kind extends 'ID'
  ? ReturnType<ArgBuilder<Types>['id']>
  : Kind extends 'String'
    ? ReturnType<ArgBuilder<Types>['string']>
    : ReturnType<typeof statusArg>;

type FilterArgs = { [Name in JobFilterName]: FilterArg<(typeof JOB_FILTERS)[Name]['kind']> };

function filterArg(arg: ArgBuilder<Types>, name: JobFilterName): FilterArgs[JobFilterName] {
  const { kind, description } = JOB_FILTERS[name];
  if (kind === 'ID') return arg.id({ description });
  if (kind === 'String') return arg.string({ description });
  return statusArg(arg, description);
}

/**
 * The filter arguments of every field that lists or follows jobs (`jobs`, `jobUpdated`), in the
 * order jobs/job-filter.ts declares them.
 */
export function jobFilterArgs(arg: ArgBuilder<Types>): FilterArgs {
  return Object.fromEntries(JOB_FILTER_NAMES.map((name) => [name, filterArg(arg, name)])) as FilterArgs;
}

export const JobStepRef = builder.objectRef<JobStepOfJob>('JobStep').implement({
  description: 'One step of a job.',
  fields: (t) => ({
    // Normalized client caches (Apollo Client, urql Graphcache, Relay) identify an object by its
    // type and `id`: with the step's own key there, every job's `collect` step would be one object.
    id: t.id({
      description: "Unique across all jobs (the job's id and the step's key): what client caches identify the step by.",
      resolve: (step) => `${step.jobId}:${step.id}`,
    }),
    key: t.exposeString('id', {
      description: "The step's key within its job, as given in createJob's steps[].id and named by updateJobProgress's stepId (the REST routes' steps[].id).",
    }),
    name: t.exposeString('name'),
    status: t.field({ type: JobStepStatusEnum, resolve: (step) => step.status }),
  }),
});

export const JobRef = builder.objectRef<JobRow>('Job').implement({
  description: 'A background job of a workspace, with its ordered steps.',
  fields: (t) => ({
    // `extensions.jsonSchema` refines the REST routes' JSON Schema of a job, which is read from
    // these fields (rest/graphql-json.ts).
    id: t.exposeID('id', { extensions: { jsonSchema: { format: 'uuid' } } }),
    workspaceId: t.exposeID('workspaceId', { extensions: { jsonSchema: { format: 'uuid' } } }),
    competitorId: t.exposeID('competitorId', { nullable: true }),
    type: t.exposeString('type', { description: 'What the job does, e.g. collect, discover-products, discover-profile, analyze-product-capabilities.' }),
    displayTitle: t.exposeString('displayTitle'),
    status: t.expose('status', { type: JobStatusEnum }),
    progress: t.exposeInt('progress', { description: 'Percent done, 0 to 100.', extensions: { jsonSchema: { minimum: 0, maximum: 100 } } }),
    currentStep: t.exposeString('currentStep', {
      nullable: true,
      description: 'The running step\'s name; the failed step\'s name or "Cancelled" once failed.',
    }),
    // Counted as 10 steps (the default list multiplier): typical jobs have a few, and the response
    // size limit catches what an estimate misses.
    steps: t.field({ type: [JobStepRef], resolve: (job) => stepsOf(job).map((step) => ({ ...step, jobId: job.id })) }),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
    // Up to 64 KiB each (JOB_LIMITS.metadataBytes): worth several scalars.
    metadata: t.field({
      type: 'JSON',
      complexity: 10,
      description: 'What the worker reported, merged shallowly across reports: always an object.',
      extensions: { jsonSchema: { type: 'object' } },
      resolve: (job) => metadataOf(job),
    }),
    error: t.exposeString('error', { nullable: true, description: 'Why the job failed, was cancelled or stalled ("Stalled: no report for 300 s").' }),
    endedAs: t.field({
      type: JobEndingEnum,
      nullable: true,
      description: 'How the job ended (null while RUNNING): tells a cancelled or stalled job from one its worker failed, without reading `error`.',
      resolve: (job) => (job.status === JobStatus.RUNNING ? null : endingOf(job)),
    }),
    heartbeatTimeoutMs: t.exposeInt('heartbeatTimeoutMs', {
      description: 'While RUNNING, the job fails as stalled when this long passes without a worker mutation or `heartbeat` on it.',
    }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    traceparent: t.exposeString('traceparent', {
      nullable: true,
      description:
        'With tracing on: the W3C traceparent of the gateway span that created the job. A worker sends it as the `traceparent` header with every call for the job (jobs-gateway/worker does), so that the job’s whole life is one trace. Null with tracing off.',
    }),
    changeCursor: t.string({
      description:
        'Grows with every change of any job; pass the largest one seen as `after` to resume. A change that a transaction still running could precede reads as a smaller cursor, so that resuming from it misses nothing.',
      resolve: (job, _args, ctx) => ctx.jobs.cursorOf(job).toString(),
    }),
  }),
});

builder.queryFields((t) => ({
  jobs: t.field({
    type: [JobRef],
    description: `The workspace's jobs, newest first. limit: 1 to ${LIST_LIMIT.max}, default ${LIST_LIMIT.default}.`,
    authScopes: { 'jobs:read': true },
    // As many jobs as the limit asks for (out-of-range limits are refused when the field runs).
    complexity: (args) => ({ field: 1, multiplier: Math.min(Math.max(args.limit ?? LIST_LIMIT.default, 1), LIST_LIMIT.max) }),
    args: { ...jobFilterArgs(t.arg), limit: t.arg.int() },
    resolve: (_root, args, ctx) => {
      // A token's restriction narrows the filters; filters it excludes see nothing.
      const filter = restrictedFilter(jobFilterValues(args), restrictionOf(ctx));
      return filter ? ctx.jobs.list(workspaceOf(ctx), { ...filter, limit: args.limit }) : [];
    },
  }),
  jobsConnection: t.connection(
    {
      type: JobRef,
      description: `The workspace's jobs, newest first, a page at a time (Relay's cursor connection). first or last: 1 to ${LIST_LIMIT.max}, default ${LIST_LIMIT.default}. Pages hold their place while jobs are added and changed: a job created after the first page comes before it, never inside a later one.`,
      authScopes: { 'jobs:read': true },
      complexity: (args) => ({ field: 1, multiplier: Math.min(Math.max(args.first ?? args.last ?? LIST_LIMIT.default, 1), LIST_LIMIT.max) }),
      args: jobFilterArgs(t.arg),
      resolve: (_root, args, ctx) => {
        for (const name of ['first', 'last'] as const) {
          const size = args[name];
          if (size != null && (size < 1 || size > LIST_LIMIT.max)) throw errors.badInput(`${name} must be an integer from 1 to ${LIST_LIMIT.max}.`);
        }
        const after = args.after == null ? undefined : listPositionOf(args.after, 'after');
        const before = args.before == null ? undefined : listPositionOf(args.before, 'before');
        const filter = restrictedFilter(jobFilterValues(args), restrictionOf(ctx));
        return resolveCursorConnection<Promise<JobRow[]>>(
          { args, toCursor: listCursorOf, defaultSize: LIST_LIMIT.default, maxSize: LIST_LIMIT.max },
          async ({ limit, inverted }) => (filter ? ctx.jobs.page(workspaceOf(ctx), filter, { after, before, limit, inverted }) : []),
        );
      },
    },
    { name: 'JobConnection' },
    { name: 'JobEdge' },
  ),
  job: t.field({
    type: JobRef,
    nullable: true,
    description: 'One job of the workspace, or null when there is no such job.',
    authScopes: { 'jobs:read': true },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      const job = await ctx.jobs.get(workspaceOf(ctx), String(args.id));
      // A job a token may not see is one that does not exist, for it.
      return job && restrictionAllows(restrictionOf(ctx), job) ? job : null;
    },
  }),
}));
