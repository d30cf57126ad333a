import SchemaBuilder from '@pothos/core';
import ComplexityPlugin from '@pothos/plugin-complexity';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { AuthScopeFailureType, type AuthFailure } from '@pothos/plugin-scope-auth';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { type Scope, SCOPES } from '../auth/scopes.js';
import { errors } from '../errors.js';
import type { GatewayContext } from './context.js';

export const builder = new SchemaBuilder<{
  Context: GatewayContext;
  AuthScopes: Record<Scope, boolean>;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, ComplexityPlugin, RelayPlugin],
  // Relay's connections for paging (jobsConnection); no global ids or node queries: a job's id is its id.
  relay: {
    cursorType: 'String',
    clientMutationId: 'omit',
    nodeQueryOptions: false,
    nodesQueryOptions: false,
    // A connection field's multiplier is its page size already: its edges must not count it again.
    edgesFieldOptions: { complexity: { field: 1, multiplier: 1 } },
  },
  // Fields carry their cost for the limit that plugins/operation-limits.ts checks before execution
  // starts; the plugin's own check (at the first resolver) stays off.
  complexity: { disabled: true, defaultComplexity: 1, defaultListMultiplier: 10 },
  scopeAuth: {
    // Subscriptions are authorized once, when they start, not on every event.
    authorizeOnSubscribe: true,
    authScopes: (ctx) => {
      const granted = ctx.principal?.scopes;
      return Object.fromEntries(SCOPES.map((scope) => [scope, granted?.has(scope) ?? false])) as Record<Scope, boolean>;
    },
    // No key: UNAUTHENTICATED (401). A key without the scope: FORBIDDEN (403), naming the scope.
    unauthorizedError: (_parent, ctx, _info, result) =>
      ctx.principal ? errors.forbidden(missingScope(result.failure) ?? 'required') : errors.unauthenticated(),
  },
});

function missingScope(failure: AuthFailure): string | undefined {
  if (failure.kind === AuthScopeFailureType.AuthScope) return failure.scope;
  if (failure.kind === AuthScopeFailureType.AnyAuthScopes || failure.kind === AuthScopeFailureType.AllAuthScopes) {
    for (const child of failure.failures) {
      const scope = missingScope(child);
      if (scope) return scope;
    }
  }
  return undefined;
}

builder.addScalarType('DateTime', DateTimeResolver);
builder.addScalarType('JSON', JSONResolver);
builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
