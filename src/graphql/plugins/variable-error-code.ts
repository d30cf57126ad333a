import { type ExecutionResult, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * graphql-js reports variables that fail coercion ("Variable "$status" got invalid value ...") with
 * no `extensions.code`, so a client cannot tell them from server faults. They are bad input:
 * execution never started (no `data`), so every such error gets BAD_USER_INPUT.
 */
export function useVariableErrorCode(): Plugin {
  return {
    onExecute: () => ({
      onExecuteDone: ({ result, setResult }) => {
        // envelop types its results for any GraphQL engine; a non-streamed one is graphql-js's.
        if (!('errors' in result) || 'data' in result) return;
        const failed = result as ExecutionResult;
        if (!failed.errors?.length) return;
        setResult({
          ...failed,
          errors: failed.errors.map((error) =>
            error.extensions?.code
              ? error
              : new GraphQLError(error.message, {
                  nodes: error.nodes,
                  source: error.source,
                  positions: error.positions,
                  extensions: { ...error.extensions, code: 'BAD_USER_INPUT' },
                }),
          ),
        });
      },
    }),
  };
}
