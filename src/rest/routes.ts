import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import {
  RestCancelJobDocument,
  RestGetJobDocument,
  RestListJobsDocument,
  type JobStatus,
  type RestJobFragment,
} from '../graphql/operations.generated.js';
import { RestError } from './rest-error.js';

/**
 * The Jobs API (described in the README under REST) as a table: each route is one GraphQL operation plus
 * the mapping of its parameters to variables and of its result to the documented body.
 */
export interface RestRoute<Result = unknown, Variables = Record<string, unknown>> {
  method: 'GET' | 'POST';
  /** Path segments; a segment starting with ':' captures a parameter. */
  path: string;
  document: TypedDocumentNode<Result, Variables>;
  variables(request: { params: Record<string, string>; query: URLSearchParams }): Variables;
  /** The response body; throw RestError for a result that is an error in REST terms. */
  body(data: Result): unknown;
}

const route = <Result, Variables>(r: RestRoute<Result, Variables>) => r as unknown as RestRoute;

export const routes: RestRoute[] = [
  route({
    method: 'GET',
    path: '/api/jobs',
    document: RestListJobsDocument,
    variables: ({ query }) => ({
      competitorId: optional(query, 'competitorId'),
      type: optional(query, 'type'),
      status: jobStatusParam(optional(query, 'status')),
      limit: integerParam('limit', optional(query, 'limit')),
    }),
    body: (data) => ({ jobs: data.jobs.map(restJob) }),
  }),
  route({
    method: 'GET',
    path: '/api/jobs/:id',
    document: RestGetJobDocument,
    variables: ({ params }) => ({ id: params.id ?? '' }),
    body: (data) => {
      if (!data.job) throw new RestError(404, 'NOT_FOUND', 'Job not found.');
      return { job: restJob(data.job) };
    },
  }),
  route({
    method: 'POST',
    path: '/api/jobs/:id/cancel',
    document: RestCancelJobDocument,
    variables: ({ params }) => ({ id: params.id ?? '' }),
    body: ({ cancelJob }) => ({
      success: cancelJob.success,
      job: { id: cancelJob.job.id, status: lower(cancelJob.job.status), currentStep: cancelJob.job.currentStep ?? null },
    }),
  }),
];

/** The reference's job: its field order, lowercase statuses, null where absent. */
function restJob(job: RestJobFragment) {
  return {
    id: job.id,
    workspaceId: job.workspaceId,
    competitorId: job.competitorId ?? null,
    type: job.type,
    displayTitle: job.displayTitle,
    status: lower(job.status),
    progress: job.progress,
    currentStep: job.currentStep ?? null,
    steps: job.steps.map((step) => ({ id: step.id, name: step.name, status: lower(step.status) })),
    startedAt: job.startedAt,
    completedAt: job.completedAt ?? null,
    metadata: job.metadata,
  };
}

const lower = <T extends string>(value: T) => value.toLowerCase() as Lowercase<T>;

/** An absent or empty parameter means "no filter". */
function optional(query: URLSearchParams, name: string): string | undefined {
  const value = query.get(name);
  return value === null || value === '' ? undefined : value;
}

const REST_STATUSES: Record<string, JobStatus> = { running: 'RUNNING', completed: 'COMPLETED', failed: 'FAILED' };

function jobStatusParam(value: string | undefined): JobStatus | undefined {
  if (value === undefined) return undefined;
  const lowered = value.toLowerCase();
  // hasOwn: "constructor" or "__proto__" must not pass for a status.
  const status = Object.hasOwn(REST_STATUSES, lowered) ? REST_STATUSES[lowered] : undefined;
  if (!status) {
    throw new RestError(400, 'BAD_USER_INPUT', `status must be one of ${Object.keys(REST_STATUSES).join(', ')}.`);
  }
  return status;
}

/** Range checks belong to the GraphQL operation; here only "is it an integer at all". */
function integerParam(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d{1,9}$/.test(value)) throw new RestError(400, 'BAD_USER_INPUT', `${name} must be an integer.`);
  return Number(value);
}
