import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { parse, print } from 'graphql';
import {
  type CreateAccessTokenInput,
  RestCancelJobDocument,
  RestCreateAccessTokenDocument,
  RestGetJobDocument,
  RestJobFragmentDoc,
  type JobStatus,
  type RestJobFragment,
} from '../graphql/operations.generated.js';
import { FILTER_ARGUMENTS, FILTER_VARIABLES, JOB_FILTERS, JOB_FILTER_NAMES, type JobFilterName, type JobFilterValues } from '../jobs/job-filter.js';
import type { Scope } from '../auth/scopes.js';
import { ACCESS_TOKEN, LIST_LIMIT, MAX_TRANSITION_ATTEMPTS } from '../limits/fixed.js';
import { DELEGABLE_SCOPES } from '../auth/access-tokens.js';
import { CANCELLED } from '../jobs/transitions.js';
import { JobStatus as JOB_STATUSES } from '../jobs/model.js';
import type { ErrorCode } from '../errors.js';
import { type JsonSchema, restEnumValue } from './graphql-json.js';
import { RestError } from './rest-error.js';

/** One error a route answers: its `error.code` (whose status src/errors.ts sets), and when. */
export interface ErrorDoc {
  code: ErrorCode;
  when: string;
}

/** What the OpenAPI document says of a route (src/rest/openapi.ts writes it from these). */
export interface RouteDoc {
  operationId: string;
  summary: string;
  /** The scope the key needs; null: any key. */
  scope: Scope | null;
  /** The JSON body the route takes, if any (the shim reads a body only for these). */
  requestBody?: { description: string; schema: JsonSchema };
  parameters: Array<{ name: string; in: 'path' | 'query'; description: string; schema: JsonSchema }>;
  ok: { description: string; schema: JsonSchema };
  /** The errors of this route, beyond those of every route (see openapi.ts). */
  errors: ErrorDoc[];
}

/**
 * The Jobs API (described in the README under REST) as a table: each route is one GraphQL operation plus
 * the mapping of its parameters to variables and of its result to the documented body.
 */
export interface RestRoute<Result = unknown, Variables = Record<string, unknown>> {
  method: 'GET' | 'POST';
  /** Path segments; a segment starting with ':' captures a parameter. */
  path: string;
  document: TypedDocumentNode<Result, Variables>;
  /** `body`: the request's parsed JSON body, for a route with `doc.requestBody` (else undefined). */
  variables(request: { params: Record<string, string>; query: URLSearchParams; body: unknown }): Variables;
  /**
   * The response body from the operation's result, whose enum values are already as the REST
   * routes write them (lowercase, see graphql-json.ts). Throw RestError for a result that is an
   * error in REST terms.
   */
  body(data: RestValues<Result>): unknown;
  doc: RouteDoc;
}

/** An operation's result with every string as the REST routes write enum values (lowercase). */
type RestValues<T> = T extends string
  ? Lowercase<T>
  : T extends Array<infer Item>
    ? Array<RestValues<Item>>
    : T extends object
      ? { [K in keyof T]: RestValues<T[K]> }
      : T;

const route = <Result, Variables>(r: RestRoute<Result, Variables>) => r as unknown as RestRoute;

/** `?status=` by the REST name of each status (running, completed, failed). */
const REST_STATUSES: Record<string, JobStatus> = Object.fromEntries(Object.values(JOB_STATUSES).map((status) => [restEnumValue(status), status]));

/**
 * The list's operation, written from the filters' declaration (jobs/job-filter.ts) rather than in
 * operations.graphql: every filter of `jobs` is a query parameter of GET /api/jobs by the same name.
 */
const listJobsDocument = parse(`
  query RestListJobs(${FILTER_VARIABLES}, $limit: Int, $cursor: String) {
    jobsConnection(${FILTER_ARGUMENTS}, first: $limit, after: $cursor) {
      edges { node { ...RestJob } }
      pageInfo { hasNextPage endCursor }
    }
  }
  ${print(RestJobFragmentDoc)}`) as TypedDocumentNode<
  { jobsConnection: { edges: Array<{ node: RestJobFragment }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } } },
  JobFilterValues & { limit: number | undefined; cursor: string | undefined }
>;

const JOB_ID_PARAMETER = { name: 'id', in: 'path', description: "The job's id.", schema: { type: 'string' } } as const;

export const routes: RestRoute[] = [
  route({
    method: 'GET',
    path: '/api/jobs',
    document: listJobsDocument,
    variables: ({ query }) => ({
      ...Object.fromEntries(JOB_FILTER_NAMES.map((name) => [name, filterParam(name, optional(query, name))])),
      limit: limitParam(optional(query, 'limit')),
      cursor: optional(query, 'cursor'),
    }),
    // The reference's body, plus where the next page starts (null on the last page).
    body: ({ jobsConnection: { edges, pageInfo } }) => ({
      jobs: edges.map((edge) => edge.node),
      nextCursor: pageInfo.hasNextPage ? pageInfo.endCursor : null,
    }),
    doc: {
      operationId: 'listJobs',
      summary: "The workspace's jobs, newest first (by startedAt), optionally filtered.",
      scope: 'jobs:read',
      parameters: [
        ...JOB_FILTER_NAMES.map(filterParameter),
        {
          name: 'limit',
          in: 'query',
          description: `How many jobs at most, from 1 to ${LIST_LIMIT.max}.`,
          schema: { type: 'integer', minimum: 1, maximum: LIST_LIMIT.max, default: LIST_LIMIT.default },
        },
        {
          name: 'cursor',
          in: 'query',
          description:
            "Where the page starts: a previous page's nextCursor (absent: the newest jobs). Pages hold their place while jobs are added and changed.",
          schema: { type: 'string' },
        },
      ],
      ok: {
        description: 'A page of jobs, and the cursor of the next one.',
        schema: {
          type: 'object',
          required: ['jobs', 'nextCursor'],
          additionalProperties: false,
          properties: {
            jobs: { type: 'array', items: { $ref: '#/components/schemas/Job' } },
            nextCursor: { type: ['string', 'null'], description: 'Pass as `cursor` for the next page; null when this page is the last.' },
          },
        },
      },
      errors: [
        { code: 'BAD_USER_INPUT', when: `an unknown status, a limit that is not an integer from 1 to ${LIST_LIMIT.max}, or a cursor this API did not give` },
      ],
    },
  }),
  route({
    method: 'GET',
    path: '/api/jobs/:id',
    document: RestGetJobDocument,
    variables: ({ params }) => ({ id: params.id ?? '' }),
    body: (data) => {
      if (!data.job) throw new RestError('NOT_FOUND', 'Job not found.');
      return data;
    },
    doc: {
      operationId: 'getJob',
      summary: 'One job of the workspace.',
      scope: 'jobs:read',
      parameters: [JOB_ID_PARAMETER],
      ok: {
        description: 'The job.',
        schema: { type: 'object', required: ['job'], additionalProperties: false, properties: { job: { $ref: '#/components/schemas/Job' } } },
      },
      errors: [{ code: 'NOT_FOUND', when: "no such job in the key's workspace (a malformed id included)" }],
    },
  }),
  route({
    method: 'POST',
    path: '/api/jobs/:id/cancel',
    document: RestCancelJobDocument,
    variables: ({ params }) => ({ id: params.id ?? '' }),
    body: (data) => data.cancelJob,
    doc: {
      operationId: 'cancelJob',
      summary: 'Cancels a running job: it becomes failed, with currentStep and error "Cancelled". No body.',
      scope: 'jobs:cancel',
      parameters: [JOB_ID_PARAMETER],
      ok: {
        description: 'The job was cancelled.',
        schema: {
          type: 'object',
          required: ['success', 'job'],
          additionalProperties: false,
          properties: {
            success: { const: true },
            job: {
              type: 'object',
              required: ['id', 'status', 'currentStep'],
              additionalProperties: false,
              properties: { id: { type: 'string', format: 'uuid' }, status: { const: 'failed' }, currentStep: { const: CANCELLED } },
            },
          },
        },
      },
      errors: [
        { code: 'JOB_NOT_RUNNING', when: 'the job is no longer running' },
        { code: 'NOT_FOUND', when: "no such job in the key's workspace (a malformed id included)" },
        { code: 'CONFLICT', when: `the job kept changing under other writers for ${MAX_TRANSITION_ATTEMPTS} attempts; retry` },
      ],
    },
  }),
  route({
    method: 'POST',
    path: '/api/tokens',
    document: RestCreateAccessTokenDocument,
    // The body is createAccessToken's input, field for field.
    variables: ({ body }) => {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new RestError('BAD_USER_INPUT', 'The body must be a JSON object.');
      return { input: body as CreateAccessTokenInput };
    },
    body: (data) => data.createAccessToken,
    doc: {
      operationId: 'createAccessToken',
      summary: "Mints a short-lived access token for a browser, with some of the key's scopes, optionally restricted to one job, a competitor and/or a type.",
      scope: null,
      parameters: [],
      requestBody: {
        description: 'What the token may do and see, and for how long.',
        schema: {
          type: 'object',
          required: ['scopes'],
          additionalProperties: false,
          properties: {
            scopes: {
              type: 'array',
              items: { type: 'string', enum: [...DELEGABLE_SCOPES] },
              minItems: 1,
              description: "Some of the key's scopes (jobs:write is never delegated).",
            },
            jobId: { type: 'string', format: 'uuid', description: 'Only this job.' },
            competitorId: { type: 'string', description: "Only this competitor's jobs." },
            type: { type: 'string', description: 'Only jobs of this type.' },
            ttlMs: {
              type: 'integer',
              minimum: ACCESS_TOKEN.minTtlMs,
              description: 'Lifetime in milliseconds, at most ACCESS_TOKEN_MAX_TTL_MS (1 hour by default); default 15 minutes.',
            },
          },
        },
      },
      ok: {
        description: 'The token, and when it stops being accepted.',
        schema: {
          type: 'object',
          required: ['token', 'expiresAt'],
          additionalProperties: false,
          properties: {
            token: { type: 'string', description: 'Send as `Authorization: Bearer <token>`, or as `token` in a WebSocket’s connectionParams.' },
            expiresAt: { type: 'string', format: 'date-time' },
          },
        },
      },
      errors: [
        {
          code: 'BAD_USER_INPUT',
          when: 'the body is not a JSON object of these fields, a scope is unknown or cannot be delegated, or the lifetime is out of range',
        },
        { code: 'NOT_FOUND', when: "jobId names no job of the key's workspace" },
      ],
    },
  }),
];

/** An absent or empty parameter means "no filter". */
function optional(query: URLSearchParams, name: string): string | undefined {
  const value = query.get(name);
  return value === null || value === '' ? undefined : value;
}

/** A filter's query parameter, as the OpenAPI document describes it. */
function filterParameter(name: JobFilterName): RouteDoc['parameters'][number] {
  const { kind, description } = JOB_FILTERS[name];
  const said = description.replace(/\.$/, '');
  if (kind === 'JobStatus') return { name, in: 'query', description: `${said} (any case).`, schema: { type: 'string', enum: Object.keys(REST_STATUSES) } };
  return { name, in: 'query', description: `${said} (absent or empty: all).`, schema: { type: 'string' } };
}

/** A filter's value from its query parameter (absent: no filter). */
function filterParam(name: JobFilterName, value: string | undefined): string | undefined {
  return JOB_FILTERS[name].kind === 'JobStatus' ? jobStatusParam(value) : value;
}

function jobStatusParam(value: string | undefined): JobStatus | undefined {
  if (value === undefined) return undefined;
  const lowered = value.toLowerCase();
  // hasOwn: "constructor" or "__proto__" must not pass for a status.
  const status = Object.hasOwn(REST_STATUSES, lowered) ? REST_STATUSES[lowered] : undefined;
  if (!status) {
    throw new RestError('BAD_USER_INPUT', `status must be one of ${Object.keys(REST_STATUSES).join(', ')}.`);
  }
  return status;
}

/** Range checks belong to the GraphQL operation; here only "is it an integer at all". */
/** `?limit=`, refused in REST's words (GraphQL's `first` says it in its own). */
function limitParam(value: string | undefined): number | undefined {
  const limit = integerParam('limit', value);
  if (limit !== undefined && (limit < 1 || limit > LIST_LIMIT.max))
    throw new RestError('BAD_USER_INPUT', `limit must be an integer from 1 to ${LIST_LIMIT.max}.`);
  return limit;
}

function integerParam(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d{1,9}$/.test(value)) throw new RestError('BAD_USER_INPUT', `${name} must be an integer.`);
  return Number(value);
}
