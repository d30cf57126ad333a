import { type DocumentNode, type GraphQLError, type GraphQLSchema, Kind, type OperationDefinitionNode, type SelectionSetNode, getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Principal, Scope } from '../../auth/scopes.js';
import { errors } from '../../errors.js';
import type { GatewayContext } from '../context.js';

/**
 * Checks every root field's scopes for the whole operation before any field runs. Pothos's
 * scope-auth checks each field as it resolves, so a mutation document with an allowed field first
 * and a forbidden one second would commit the first and then answer 403. The scopes are read from
 * the fields' own `authScopes` (the schema stays their one place); the field-level checks remain.
 */
export function useOperationScopes(): Plugin<GatewayContext> {
  const check = (args: { schema: GraphQLSchema; document: DocumentNode; operationName?: string | null | undefined; contextValue: GatewayContext }) => {
    const refusal = scopeRefusal(args.schema, args.document, args.operationName, args.contextValue.principal);
    return refusal ? { errors: [refusal] } : undefined;
  };
  return {
    onExecute: ({ args, setResultAndStopExecution }) => {
      const refused = check(args);
      if (refused) setResultAndStopExecution(refused);
    },
    onSubscribe: ({ args, setResultAndStopExecution }) => {
      const refused = check(args);
      if (refused) setResultAndStopExecution(refused);
    },
  };
}

/**
 * Why `principal` may not run the operation (UNAUTHENTICATED, or FORBIDDEN naming a missing scope),
 * or undefined when it may. Also used by the WebSocket server for the subscriptions it runs itself.
 */
export function scopeRefusal(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  principal: Principal | null,
): GraphQLError | undefined {
  const operation = getOperationAST(document, operationName);
  if (!operation) return undefined; // execution reports it
  const required = requiredScopes(schema, document, operation);
  if (required.size === 0) return undefined;
  if (!principal) return errors.unauthenticated();
  for (const scope of required) if (!principal.scopes.has(scope)) return errors.forbidden(scope);
  return undefined;
}

/** The scopes the root fields of `operation` require, fragments included. */
function requiredScopes(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode): Set<Scope> {
  const rootType = schema.getRootType(operation.operation);
  const fields = rootType?.getFields() ?? {};
  const fragments = new Map(document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])));
  const required = new Set<Scope>();
  const seen = new Set<string>();
  const visit = (selectionSet: SelectionSetNode) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === Kind.FIELD) {
        const scopes = (fields[selection.name.value]?.extensions?.pothosOptions as { authScopes?: Partial<Record<Scope, boolean>> } | undefined)?.authScopes;
        for (const [scope, needed] of Object.entries(scopes ?? {})) if (needed) required.add(scope as Scope);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        visit(selection.selectionSet);
      } else if (!seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment) visit(fragment.selectionSet);
      }
    }
  };
  visit(operation.selectionSet);
  return required;
}
