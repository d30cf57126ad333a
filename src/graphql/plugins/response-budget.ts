import { getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { errors } from '../../errors.js';
import type { ResponseBudget } from '../../limits/response-budget.js';
import type { GatewayContext } from '../context.js';

/**
 * Refuses the queries of a workspace that is in debt with its response budget (RATE_LIMITED, with
 * Retry-After), before anything executes or is served from the cache: a cached 13 MB result is
 * still 13 MB written. Mutations and subscriptions pass (see limits/response-budget.ts). It runs
 * on every transport, since the REST routes and WebSocket queries execute through yoga's plugins.
 */
export function useResponseBudget(budget: ResponseBudget): Plugin<GatewayContext> {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const { principal } = args.contextValue as GatewayContext;
      if (!principal || !budget.enabled) return;
      if (getOperationAST(args.document, args.operationName)?.operation !== 'query') return;
      const verdict = budget.admit(principal.workspaceId);
      if (!verdict.allowed) setResultAndStopExecution({ errors: [errors.responseBudgetSpent(verdict.retryAfterSeconds)] });
    },
  };
}
