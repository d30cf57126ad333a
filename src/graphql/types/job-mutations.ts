import type { JobRow } from '../../jobs/model.js';
import { builder } from '../builder.js';
import { errors } from '../../errors.js';
import { restrictionAllows } from '../../jobs/job-filter.js';
import { restrictionOf, workspaceOf } from '../context.js';
import { JobRef, JobStepStatusEnum } from './job.js';

const CancelJobPayload = builder.objectRef<{ success: boolean; job: JobRow }>('CancelJobPayload').implement({
  fields: (t) => ({
    success: t.exposeBoolean('success'),
    job: t.field({ type: JobRef, resolve: (payload) => payload.job }),
  }),
});

const JobStepInput = builder.inputType('JobStepInput', {
  fields: (t) => ({
    id: t.string({ required: true }),
    name: t.string({ required: true }),
  }),
});

const CreateJobInput = builder.inputType('CreateJobInput', {
  fields: (t) => ({
    type: t.string({ required: true }),
    displayTitle: t.string({ required: true }),
    competitorId: t.id(),
    steps: t.field({ type: [JobStepInput], required: true }),
    metadata: t.field({ type: 'JSON' }),
    idempotencyKey: t.string({
      description:
        'Up to 255 characters. The same key again in this workspace within IDEMPOTENCY_TTL_MS (24 hours) answers the job it first created instead of creating another; with a different input it is refused (BAD_USER_INPUT).',
    }),
    heartbeatTimeoutMs: t.int({
      description:
        'How long the job may run without a report or `heartbeat` before it fails as stalled: 1000 to 86400000 ms, default JOB_HEARTBEAT_TIMEOUT_MS (5 minutes).',
    }),
  }),
});

const UpdateJobProgressInput = builder.inputType('UpdateJobProgressInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    progress: t.int(),
    stepId: t.string(),
    stepStatus: t.field({ type: JobStepStatusEnum }),
    metadata: t.field({ type: 'JSON', description: "Merged shallowly into the job's metadata." }),
  }),
});

builder.mutationFields((t) => ({
  cancelJob: t.field({
    type: CancelJobPayload,
    description: 'Cancels a RUNNING job: it becomes FAILED with currentStep and error "Cancelled".',
    authScopes: { 'jobs:cancel': true },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      const id = String(args.id);
      // A token cancels only what it sees (its restriction's fields never change, so the check holds).
      const restriction = restrictionOf(ctx);
      if (restriction) {
        const job = await ctx.jobs.get(workspaceOf(ctx), id);
        if (!job || !restrictionAllows(restriction, job)) throw errors.jobNotFound(id);
      }
      return { success: true, job: await ctx.jobs.cancel(workspaceOf(ctx), id) };
    },
  }),

  // Worker mutations. A job that is no longer RUNNING answers JOB_NOT_RUNNING: that is how a worker
  // learns that its job was cancelled.
  createJob: t.field({
    type: JobRef,
    authScopes: { 'jobs:write': true },
    args: { input: t.arg({ type: CreateJobInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      ctx.jobs.create(workspaceOf(ctx), {
        ...input,
        competitorId: input.competitorId == null ? null : String(input.competitorId),
      }),
  }),
  updateJobProgress: t.field({
    type: JobRef,
    authScopes: { 'jobs:write': true },
    args: { input: t.arg({ type: UpdateJobProgressInput, required: true }) },
    resolve: (_root, { input }, ctx) => ctx.jobs.updateProgress(workspaceOf(ctx), String(input.id), input),
  }),
  completeJob: t.field({
    type: JobRef,
    authScopes: { 'jobs:write': true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.jobs.complete(workspaceOf(ctx), String(args.id)),
  }),
  heartbeat: t.field({
    type: JobRef,
    description:
      "Renews a RUNNING job's lease (see `heartbeatTimeoutMs`) and changes nothing else: subscribers hear nothing, and `updatedAt` stays. Every other worker mutation renews it too.",
    authScopes: { 'jobs:write': true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.jobs.heartbeat(workspaceOf(ctx), String(args.id)),
  }),
  failJob: t.field({
    type: JobRef,
    authScopes: { 'jobs:write': true },
    args: { id: t.arg.id({ required: true }), error: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => ctx.jobs.fail(workspaceOf(ctx), String(args.id), args.error),
  }),
}));
