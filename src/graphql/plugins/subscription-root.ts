import { type DocumentNode, GraphQLError, type GraphQLSchema, Kind, OperationTypeNode, type SelectionNode, type ValidationRule, validate } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * What graphql-js 16 does not check of a subscription's root field, and fails on later:
 * - `@skip` or `@include` on it: with the field skipped, its executor throws a TypeError (a 500 on
 *   HTTP, "Unexpected error." on WebSockets). A subscription's root must not be conditional (the
 *   specification's single-root-field rule since graphql/graphql-spec#860, which graphql-js checks
 *   from v17 on, graphql/graphql-js#3974); this is that rule for 16. It can go with graphql-js 17.
 * - A variable in such a directive without a value: the single-root-field rule throws from inside
 *   validation instead of reporting, which closed the whole WebSocket (4500). Thrown GraphQLErrors
 *   are reported as validation errors here (GRAPHQL_VALIDATION_FAILED like the others), with the
 *   conditional-root error when that is the cause: the thrown one speaks of a missing variable.
 *   graphql-armor's limits also throw when they refuse; they are reported the same way.
 */
export function useSubscriptionRootRules(): Plugin {
  return {
    onValidate: ({ addValidationRule, validateFn, setValidationFn }) => {
      addValidationRule(NoSkipOrIncludeOnSubscriptionRootRule);
      // envelop types its arguments for any GraphQL engine (`any`); these are graphql-js's.
      setValidationFn((schema: GraphQLSchema, document: DocumentNode, ...rest) => {
        try {
          return validateFn(schema, document, ...rest) as readonly GraphQLError[];
        } catch (error) {
          if (!(error instanceof GraphQLError)) throw error;
          const conditionalRoot = validate(schema, document, [NoSkipOrIncludeOnSubscriptionRootRule]);
          return conditionalRoot.length > 0 ? conditionalRoot : [error];
        }
      });
    },
  };
}

const CONDITIONAL = new Set(['skip', 'include']);

/** Root selections of a subscription, fragments (and fragments in them) included, carry no @skip or @include. */
const NoSkipOrIncludeOnSubscriptionRootRule: ValidationRule = (context) => {
  const check = (selections: readonly SelectionNode[], seen: Set<string>) => {
    for (const selection of selections) {
      for (const directive of selection.directives ?? []) {
        if (CONDITIONAL.has(directive.name.value)) {
          context.reportError(new GraphQLError(`A subscription's root field cannot be conditional (@${directive.name.value}).`, { nodes: [directive] }));
        }
      }
      if (selection.kind === Kind.INLINE_FRAGMENT) check(selection.selectionSet.selections, seen);
      if (selection.kind === Kind.FRAGMENT_SPREAD && !seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        check(context.getFragment(selection.name.value)?.selectionSet.selections ?? [], seen);
      }
    }
  };
  return {
    OperationDefinition(operation) {
      if (operation.operation === OperationTypeNode.SUBSCRIPTION) check(operation.selectionSet.selections, new Set());
    },
  };
};
