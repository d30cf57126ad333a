import {
  type DocumentNode,
  GraphQLError,
  type GraphQLSchema,
  Kind,
  OperationTypeNode,
  getArgumentValues,
  getOperationAST,
  getVariableValues,
  visit,
} from 'graphql';
import { errors } from '../errors.js';
import type { JobUpdatedArgs } from '../jobs/job-filter.js';

export interface JobUpdatedPlan {
  /** The field's arguments, coerced by the schema as graphql-js would (the session reads them). */
  args: JobUpdatedArgs;
  /** The variables that decide what is sent: all but the one (if any) that carries `after`. */
  sharedVariables: Record<string, unknown>;
}

/**
 * Recognizes a subscription whose only root field is `jobUpdated` (what dashboards send), and
 * coerces its arguments: those can be multiplexed. Anything else returns undefined and runs the
 * usual way. Throws GraphQLError (BAD_USER_INPUT) for variables or arguments that do not coerce.
 */
export function planJobUpdated(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
): JobUpdatedPlan | undefined {
  const operation = getOperationAST(document, operationName);
  if (operation?.operation !== OperationTypeNode.SUBSCRIPTION) return undefined;
  const [field, ...rest] = operation.selectionSet.selections;
  if (!field || rest.length > 0 || field.kind !== Kind.FIELD || field.name.value !== 'jobUpdated' || field.directives?.length) {
    return undefined;
  }
  const fieldDef = schema.getSubscriptionType()?.getFields().jobUpdated;
  if (!fieldDef) return undefined;

  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables ?? {});
  if (coerced.errors) throw badInput(coerced.errors[0]!);
  let args: JobUpdatedArgs;
  try {
    args = getArgumentValues(fieldDef, field, coerced.coerced);
  } catch (error) {
    throw error instanceof GraphQLError ? badInput(error) : error;
  }
  const afterNode = field.arguments?.find((arg) => arg.name.value === 'after')?.value;
  // A variable that also sets a filter (or anything else) decides what is sent: it stays shared.
  const afterVariable = afterNode?.kind === Kind.VARIABLE && usesOf(document, afterNode.name.value) === 1 ? afterNode.name.value : undefined;
  const sharedVariables = Object.fromEntries(Object.entries(coerced.coerced).filter(([name]) => name !== afterVariable));
  return { args, sharedVariables };
}

/** How many times the document uses variable `name` (its definitions aside). */
function usesOf(document: DocumentNode, name: string): number {
  let uses = 0;
  visit(document, {
    VariableDefinition: () => false,
    Variable: (node) => {
      if (node.name.value === name) uses++;
    },
  });
  return uses;
}

function badInput(error: GraphQLError): GraphQLError {
  return errors.badInput(error.message);
}
