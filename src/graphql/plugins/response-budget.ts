import { type ExecutionArgs, type ExecutionResult, OperationTypeNode, getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { errors } from '../../errors.js';
import type { ResponseBudget } from '../../limits/response-budget.js';
import type { GatewayContext } from '../context.js';

/**
 * Admits the queries of a workspace to its response budget before anything executes or is served
 * from the cache (a cached 13 MB result is still 13 MB written): refused while it is in debt
 * (RATE_LIMITED, with Retry-After), held while its peers executing leave no room (see
 * limits/response-budget.ts). Mutations and subscriptions pass. It runs on every transport, since
 * the REST routes and WebSocket queries execute through yoga's plugins.
 */
export function useResponseBudget(budget: ResponseBudget): Plugin<GatewayContext> {
  return {
    async onExecute({ args, executeFn, setExecuteFn, setResultAndStopExecution }) {
      // envelop types its arguments for any GraphQL engine (`any`); these are graphql-js's.
      const { document, operationName, contextValue } = args as ExecutionArgs;
      const { principal } = contextValue as GatewayContext;
      if (!principal || !budget.enabled) return;
      if (getOperationAST(document, operationName)?.operation !== OperationTypeNode.QUERY) return;
      const admission = await budget.admit(principal.workspaceId);
      if (!admission.allowed) return setResultAndStopExecution({ errors: [errors.responseBudgetSpent(admission.retryAfterSeconds)] });
      // Settled when execution ends: onExecuteDone runs after a later plugin's answer too (a cache
      // hit, a query joined in flight), the wrapper's `finally` when execution throws.
      setExecuteFn(async (executeArgs) => {
        try {
          return (await executeFn(executeArgs)) as ExecutionResult | AsyncIterable<ExecutionResult>;
        } finally {
          admission.settle();
        }
      });
      return { onExecuteDone: () => admission.settle() };
    },
  };
}
