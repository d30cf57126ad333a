import type { DocumentNode, ExecutionArgs, ExecutionResult, GraphQLError, GraphQLSchema } from 'graphql';
import type { GatewayContext } from './context.js';
import type { GatewayYoga } from './yoga.js';

/**
 * yoga's plugins, validation and error masking for a document that does not arrive over yoga's own
 * HTTP endpoint (the REST routes, WebSocket subscriptions), so one set of rules applies to every
 * transport. Typed here for graphql-js: envelop types its orchestrator for any GraphQL engine (`any`).
 */
export interface Enveloped {
  readonly schema: GraphQLSchema;
  readonly parse: (source: string) => DocumentNode;
  readonly validate: (schema: GraphQLSchema, document: DocumentNode) => readonly GraphQLError[];
  readonly contextFactory: () => Promise<GatewayContext>;
  readonly execute: (args: ExecutionArgs) => Promise<OperationResult>;
  readonly subscribe: (args: ExecutionArgs) => Promise<OperationResult>;
}

export type OperationResult = ExecutionResult | AsyncIterable<ExecutionResult>;

/** `initial` is the context a request starts from (its principal, and for a subscription its params). */
export function envelopedFor(yoga: GatewayYoga, initial: Partial<GatewayContext> & Record<string, unknown>): Enveloped {
  return yoga.getEnveloped(initial as never) as unknown as Enveloped;
}
