import stableStringify from 'fast-json-stable-stringify';
import { type DocumentNode, type ExecutionArgs, type ExecutionResult, OperationTypeNode, getOperationAST } from 'graphql';
import { type Plugin, isAsyncIterable } from 'graphql-yoga';
import type { GatewayContext } from '../context.js';
import { type WorkspaceResponseCache, scopesKeyOf } from './response-cache.js';

type Execution = Promise<ExecutionResult | AsyncIterable<ExecutionResult>>;

/**
 * Identical queries in flight at once execute once: the others wait for the first and share its
 * result object, and with it its body (serialized.ts makes one per object). Identical means what
 * the response cache would answer alike: the same document, operation and variables, for a key of
 * the same workspace (at the same generation) with the same scopes.
 *
 * This is the cache's other half. A cache serves a query once its first answer is stored, but the
 * requests that arrive before that all miss it together: eight connections asking for 13 MB each
 * read it eight times from the database at once, the first second of the heavy-results attacker
 * (test/bench/RESULTS.md), and so do the dashboards polling one list when a change invalidates it.
 * Written here because envelop's response cache looks up and stores, but does not join executions
 * in flight.
 *
 * Only while the cache may be used for the workspace (its change feed is in step): a change then
 * moves the generation on, so a request that began after a change never joins an execution that
 * began before it.
 */
export function useCoalescedQueries(cache: WorkspaceResponseCache): Plugin<GatewayContext> {
  // By document object (yoga's parser cache hands the same one for the same text), then by key.
  const inFlight = new WeakMap<DocumentNode, Map<string, Execution>>();
  return {
    async onExecute({ args, executeFn, setExecuteFn, setResultAndStopExecution }) {
      // envelop types its arguments for any GraphQL engine (`any`); these are graphql-js's.
      const { document, operationName, variableValues, contextValue } = args as ExecutionArgs;
      const { principal } = contextValue as GatewayContext;
      if (!principal || !cache.usable(principal.workspaceId)) return;
      if (getOperationAST(document, operationName)?.operation !== OperationTypeNode.QUERY) return;
      let executions = inFlight.get(document);
      if (!executions) inFlight.set(document, (executions = new Map<string, Execution>()));
      const operation = `${operationName ?? ''}\0${stableStringify(variableValues ?? {})}`;
      const key = cache.keyFor(principal.workspaceId, scopesKeyOf(principal), operation);
      const running = executions.get(key);
      if (running) {
        // The answer is the first one's, stopped here: the response cache after this plugin sees
        // nothing of a joined request (its hooks would store the result again and copy it).
        cache.coalesced++;
        const shared = await running.catch(() => undefined);
        // (A stream, which no query here returns, cannot be shared: read by one consumer only.)
        if (shared !== undefined && !isAsyncIterable(shared)) return setResultAndStopExecution(shared);
        // The first one failed: this one executes on its own.
      }
      const flights = executions;
      setExecuteFn((executeArgs) => {
        const execution = Promise.resolve(executeFn(executeArgs) as ExecutionResult | AsyncIterable<ExecutionResult>);
        flights.set(key, execution);
        const landed = () => {
          if (flights.get(key) === execution) flights.delete(key);
        };
        execution.then(landed, landed);
        return execution;
      });
    },
  };
}
