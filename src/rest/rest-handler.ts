import { type DocumentNode, type ExecutionResult, GraphQLError } from 'graphql';
import type { Principal } from '../auth/scopes.js';
import { schema } from '../graphql/schema.js';
import { envelopedFor } from '../graphql/enveloped.js';
import type { GatewayYoga } from '../graphql/yoga.js';
import type { Logger } from '../logger.js';
import { errors, isErrorCode } from '../errors.js';
import { restValues } from './graphql-json.js';
import { RestError } from './rest-error.js';
import type { RestRoute } from './routes.js';

export interface RestResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface CompiledRoute {
  route: RestRoute;
  segments: string[];
  /** The result's values as the REST routes write them (see graphql-json.ts). */
  restValues: (data: unknown) => unknown;
}

/**
 * Serves the REST routes by running each one's GraphQL operation through yoga's own pipeline
 * (`yoga.getEnveloped`: its plugins, validation and error masking), so the job logic exists once.
 * Going through the pipeline rather than `yoga.fetch` spares an HTTP request object and a JSON
 * round trip of the result per call.
 */
export function createRestHandler(yoga: GatewayYoga, routes: RestRoute[], logger: Logger) {
  const compiled: CompiledRoute[] = routes.map((route) => ({ route, segments: route.path.split('/'), restValues: restValues(schema, route.document) }));

  return async function handleRest(
    method: string,
    url: URL,
    principal: Principal | null,
    readBody: () => Promise<string> = () => Promise.resolve(''),
  ): Promise<RestResponse> {
    try {
      // HEAD is GET without the body (Node leaves the body out of HEAD responses).
      const { match, allowed } = matchRoute(compiled, method === 'HEAD' ? 'GET' : method, url.pathname);
      if (!match) {
        if (allowed.length > 0) {
          return { ...errorResponse(new RestError('METHOD_NOT_ALLOWED', `Use ${allowed.join(' or ')}.`)), headers: { allow: allowed.join(', ') } };
        }
        return errorResponse(new RestError('NOT_FOUND', `No route ${method} ${url.pathname}.`));
      }
      if (!principal) throw new RestError('UNAUTHENTICATED', errors.unauthenticated().message);
      const variables = match.compiled.route.variables({
        params: match.params,
        query: url.searchParams,
        body: match.compiled.route.doc.requestBody ? jsonBody(await readBody()) : undefined,
      });
      const result = await execute(match.compiled.route.document, variables, principal);
      const error = result.errors?.[0];
      if (error) {
        const code = error.extensions?.code;
        if (isErrorCode(code)) {
          // A refusal's Retry-After (the response budget's) is the REST client's too.
          const headers = error.extensions?.['http']?.headers;
          return { ...errorResponse(new RestError(code, error.message)), ...(headers ? { headers } : {}) };
        }
        logger.error({ graphqlError: error.message, code }, 'REST operation failed unexpectedly');
        throw new RestError('INTERNAL_SERVER_ERROR', 'Unexpected error.');
      }
      return { status: 200, body: match.compiled.route.body(match.compiled.restValues(result.data)) };
    } catch (error) {
      if (error instanceof RestError) return errorResponse(error);
      logger.error({ err: error }, 'REST route failed');
      return errorResponse(new RestError('INTERNAL_SERVER_ERROR', 'Unexpected error.'));
    }
  };

  async function execute(document: DocumentNode, variables: unknown, principal: Principal): Promise<ExecutionResult> {
    const enveloped = envelopedFor(yoga, { principal });
    const errors = enveloped.validate(enveloped.schema, document);
    if (errors.length > 0) return { errors };
    const contextValue = await enveloped.contextFactory();
    try {
      return (await enveloped.execute({
        schema: enveloped.schema,
        document,
        variableValues: variables as Record<string, unknown>,
        contextValue,
      })) as ExecutionResult;
    } catch (error) {
      // Variables that do not coerce surface as a thrown GraphQLError here.
      if (error instanceof GraphQLError) return { errors: [error] };
      throw error;
    }
  }
}

function matchRoute(routes: CompiledRoute[], method: string, pathname: string) {
  const parts = pathname.replace(/\/+$/, '').split('/');
  const allowed: string[] = [];
  for (const compiled of routes) {
    const params = matchPath(compiled.segments, parts);
    if (!params) continue;
    if (compiled.route.method === method) return { match: { compiled, params }, allowed };
    allowed.push(compiled.route.method);
  }
  return { match: undefined, allowed };
}

function matchPath(segments: string[], parts: string[]): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as string;
    const part = parts[i] as string;
    if (segment.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(part);
      } catch {
        return undefined;
      }
      if (value === '') return undefined;
      params[segment.slice(1)] = value;
    } else if (segment !== part) {
      return undefined;
    }
  }
  return params;
}

export function errorResponse(error: RestError): RestResponse {
  return { status: error.status, body: { error: { code: error.code, message: error.message } } };
}

/** A route's JSON body; absent or empty is `{}`, anything else not JSON is BAD_USER_INPUT. */
function jsonBody(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RestError('BAD_USER_INPUT', 'The request body is not JSON.');
  }
}
