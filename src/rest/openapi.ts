import { STATUS_CODES } from 'node:http';
import { Kind, type GraphQLSchema } from 'graphql';
import { restStatusOf } from '../errors.js';
import { RestJobFragmentDoc } from '../graphql/operations.generated.js';
import { type JsonSchema, fragmentJsonSchema } from './graphql-json.js';
import type { ErrorDoc, RestRoute } from './routes.js';

/** Errors any route may answer, whatever it does (the HTTP entry's and the shim's own). */
const EVERY_ROUTE_ERRORS: ErrorDoc[] = [
  { code: 'UNAUTHENTICATED', when: 'a missing, unknown or revoked key' },
  { code: 'FORBIDDEN', when: "the key lacks the route's scope" },
  { code: 'METHOD_NOT_ALLOWED', when: "another method than the route's (the Allow header names it)" },
  { code: 'LENGTH_REQUIRED', when: 'a body sent without Content-Length' },
  { code: 'PAYLOAD_TOO_LARGE', when: 'a body over MAX_BODY_BYTES' },
  { code: 'RATE_LIMITED', when: 'more requests than RATE_LIMIT_PER_KEY a second (beyond the burst); Retry-After says when to retry' },
  { code: 'SERVICE_UNAVAILABLE', when: 'the database does not answer; retry' },
];

/** The REST contract's version (not the package's): it changes when a route, a field or an error does. */
const API_VERSION = '1.0.0';

/** Where the document is served. */
export const OPENAPI_PATH = '/api/openapi.json';

/**
 * The OpenAPI 3.1 document of the REST shim, written from its route table (paths, parameters,
 * bodies and errors as the shim serves them) and the job as the GraphQL schema types it (the
 * RestJob fragment's fields), so that they cannot drift apart; served at `GET /api/openapi.json`.
 */
export function openApiDocument(routes: RestRoute[], schema: GraphQLSchema): Record<string, unknown> {
  const restJob = RestJobFragmentDoc.definitions.find((definition) => definition.kind === Kind.FRAGMENT_DEFINITION);
  if (!restJob) throw new Error('RestJobFragmentDoc has no fragment.');
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:([A-Za-z]+)/g, '{$1}');
    const { doc } = route;
    const responses: Record<string, unknown> = {
      '200': { description: doc.ok.description, content: json(doc.ok.schema) },
    };
    const byStatus = new Map<number, ErrorDoc[]>();
    for (const error of [...doc.errors, ...EVERY_ROUTE_ERRORS]) {
      const status = restStatusOf(error.code);
      byStatus.set(status, [...(byStatus.get(status) ?? []), error]);
    }
    for (const [status, errors] of [...byStatus].sort(([a], [b]) => a - b)) {
      responses[String(status)] = {
        description: `${STATUS_CODES[status] ?? 'Error'}: ${errors.map((error) => `${error.code} when ${error.when}`).join('; ')}.`,
        ...(status === 429 && { headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', minimum: 1 } } } }),
        ...(status === 405 && { headers: { Allow: { description: 'The methods the path takes.', schema: { type: 'string' } } } }),
        content: json(errorSchema(errors.map((error) => error.code))),
      };
    }
    paths[path] = {
      ...paths[path],
      [route.method.toLowerCase()]: {
        operationId: doc.operationId,
        summary: doc.summary,
        description: doc.scope ? `Needs a key with the \`${doc.scope}\` scope.` : 'Any API key.',
        parameters: doc.parameters.map((parameter) => ({ ...parameter, required: parameter.in === 'path' })),
        ...(doc.requestBody && { requestBody: { required: true, description: doc.requestBody.description, content: json(doc.requestBody.schema) } }),
        responses,
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'jobs-gateway REST API',
      version: API_VERSION,
      description:
        'The Jobs API that dashboards polled before subscriptions: each route runs one GraphQL operation of the gateway (`/graphql`), with the reference\'s field names and lowercase values. Bodies are JSON; errors are `{"error": {"code", "message"}}`.',
    },
    security: [{ apiKey: [] }, { bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'A key made with `npx jobs-gateway keys create`.' },
        bearer: { type: 'http', scheme: 'bearer', description: 'The same key as a bearer token.' },
      },
      schemas: fragmentJsonSchema(schema, restJob, 'Job'),
    },
  };
}

function json(schema: JsonSchema) {
  return { 'application/json': { schema } };
}

function errorSchema(codes: string[]): JsonSchema {
  return {
    type: 'object',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        additionalProperties: false,
        properties: { code: { type: 'string', enum: codes }, message: { type: 'string' } },
      },
    },
  };
}
