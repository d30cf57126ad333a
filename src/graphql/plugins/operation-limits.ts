import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { createComplexityRule } from '@pothos/plugin-complexity';
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  GraphQLError,
  type GraphQLSchema,
  MaxIntrospectionDepthRule,
  TypeInfo,
  validate,
  visit,
  visitWithTypeInfo,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { appError } from '../../errors.js';
import { MAX_VERDICTS_PER_DOCUMENT } from '../../limits/fixed.js';
import { serializedBody } from '../serialized.js';
import { responseTooLarge } from './response-bodies.js';

/** The bounds every GraphQL document and result must keep (config.ts reads them from the environment). */
export interface OperationLimits {
  /** Estimated cost: every field 1, lists multiplied by their size (`jobs` by its `limit`). */
  maxCost: number;
  maxDepth: number;
  maxAliases: number;
  /** Lexical tokens in a document: bounds the parser's work (and its recursion) before anything else. */
  maxTokens: number;
  maxDirectives: number;
  /** A serialized result larger than this is replaced by a RESPONSE_TOO_LARGE error. */
  maxResponseBytes: number;
}

/** What graphql-js's MaxIntrospectionDepthRule reports, with no code of its own. */
const INTROSPECTION_TOO_DEEP = 'Maximum introspection depth exceeded';

/** graphql-armor reports a refused document with a plain GraphQLError: give it our code. */
const tagTooComplex = (_context: unknown, error: GraphQLError) => {
  Object.assign(error.extensions, { code: 'QUERY_TOO_COMPLEX' });
};

/**
 * Refuses documents that would cost too much before anything executes: graphql-armor bounds
 * tokens (at parse), aliases, depth and directives (at validation, cached per document with the
 * validation itself); graphql-js bounds introspection's cycles; Pothos's complexity rule
 * estimates the cost with the variables at execution start (remembered per document and value of
 * the variables it depends on), where `jobs` counts as many times as its `limit` asks for. Every refusal carries `QUERY_TOO_COMPLEX`.
 */
export function useOperationLimits(limits: OperationLimits): Plugin[] {
  const armor = { exposeLimits: true, onReject: [tagTooComplex], propagateOnRejection: true };
  const costRefusal = costCheck(limits.maxCost);
  const checkCost = (args: ExecutionArgs): ExecutionResult | undefined => {
    const refusal = costRefusal(args);
    return refusal ? { errors: [refusal] } : undefined;
  };

  return [
    maxTokensPlugin({ ...armor, n: limits.maxTokens }),
    {
      // The parser recurses per nesting level: a document within the token limit can still be
      // nested deeply enough to exhaust the stack. That is the document's fault, not the server's.
      onParse: ({ parseFn, setParseFn }) =>
        setParseFn((source, options) => {
          try {
            return parseFn(source, options) as DocumentNode;
          } catch (error) {
            if (error instanceof RangeError) throw appError('QUERY_TOO_COMPLEX', 'The document is nested too deeply.');
            throw error;
          }
        }),
    },
    maxAliasesPlugin({ ...armor, n: limits.maxAliases }),
    maxDepthPlugin({ ...armor, n: limits.maxDepth }),
    maxDirectivesPlugin({ ...armor, n: limits.maxDirectives }),
    {
      onValidate: ({ addValidationRule }) => {
        addValidationRule(MaxIntrospectionDepthRule);
        return ({ result, setResult }) => {
          // envelop types its arguments for any GraphQL engine (`any`); these are graphql-js's.
          const errors = result as readonly GraphQLError[];
          if (errors.some((error) => error.message === INTROSPECTION_TOO_DEEP)) {
            setResult(errors.map((error) => (error.message === INTROSPECTION_TOO_DEEP ? appError('QUERY_TOO_COMPLEX', `${error.message}.`) : error)));
          }
        };
      },
      onExecute: ({ args, setResultAndStopExecution }) => {
        const refused = checkCost(args);
        if (refused) {
          setResultAndStopExecution(refused);
          return undefined;
        }
        return {
          onExecuteDone: ({ result }) => {
            if (!('data' in result) || Symbol.asyncIterator in result) return;
            capResponseSize(result, limits.maxResponseBytes);
          },
        };
      },
      onSubscribe: ({ args, setResultAndStopExecution }) => {
        const refused = checkCost(args);
        if (refused) setResultAndStopExecution(refused);
      },
    },
  ];
}

/**
 * Why an operation costs too much (QUERY_TOO_COMPLEX), or undefined; for the plugin above and for
 * the WebSocket server, which runs multiplexed subscriptions itself. The estimate depends on the
 * document and on the variables that feed a field's cost (`jobs`'s `limit`), nothing else: it is
 * computed once per such combination, not per request (a resume stampede subscribes thousands of
 * times with one document).
 */
export function costCheck(maxCost: number): (args: ExecutionArgs) => GraphQLError | undefined {
  const verdicts = new WeakMap<DocumentNode, Map<string, GraphQLError | undefined>>();
  return (args) => {
    let byInputs = verdicts.get(args.document);
    if (!byInputs) verdicts.set(args.document, (byInputs = new Map<string, GraphQLError | undefined>()));
    const variables = (args.variableValues ?? {}) as Record<string, unknown>;
    const inputs = JSON.stringify([args.operationName ?? null, costVariables(args.schema, args.document).map((name) => variables[name] ?? null)]);
    if (byInputs.has(inputs)) return byInputs.get(inputs);
    const verdict = estimateCost(args, maxCost);
    // A document whose cost-bearing variables take ever new values must not grow memory for good.
    if (byInputs.size >= MAX_VERDICTS_PER_DOCUMENT) byInputs.clear();
    byInputs.set(inputs, verdict);
    return verdict;
  };
}

/** Pothos's complexity rule with the request's variables. */
function estimateCost(args: ExecutionArgs, maxCost: number): GraphQLError | undefined {
  const rule = createComplexityRule({
    variableValues: args.variableValues ?? {},
    operationName: args.operationName ?? undefined,
    context: args.contextValue as object,
    maxComplexity: maxCost,
  });
  // Variables that do not coerce are execution's to report, with its own message.
  const costError = validate(args.schema, args.document, [rule]).find((error) => error.extensions?.code === 'QUERY_COMPLEXITY');
  return costError ? appError('QUERY_TOO_COMPLEX', `${costError.message}.`) : undefined;
}

const costVariablesOf = new WeakMap<DocumentNode, string[]>();

/** The variables used in the arguments of fields whose cost depends on their arguments (once per document). */
function costVariables(schema: GraphQLSchema, document: DocumentNode): string[] {
  let names = costVariablesOf.get(document);
  if (names) return names;
  const found = new Set<string>();
  const typeInfo = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field: (node) => {
        if (typeof typeInfo.getFieldDef()?.extensions?.complexity !== 'function') return;
        for (const argument of node.arguments ?? []) visit(argument, { Variable: (variable) => void found.add(variable.name.value) });
      },
    }),
  );
  costVariablesOf.set(document, (names = [...found].sort()));
  return names;
}

/**
 * The same cap for results that yoga does not serialize (queries over WebSockets: graphql-ws
 * serializes them itself), with the size measured for the response budget. Measuring costs one
 * more serialization on that rare path, made in slices like every body (serialized.ts).
 */
export async function withinResponseLimit(result: ExecutionResult, maxBytes: number): Promise<{ result: ExecutionResult; bytes: number }> {
  const made = await serializedBody(result, maxBytes);
  return 'tooLarge' in made ? { result: responseTooLarge(maxBytes), bytes: 0 } : { result, bytes: made.bytes };
}

/**
 * `value` as JSON, or undefined when that is over `maxBytes` (or over V8's string limit, which
 * would throw "Invalid string length": the same verdict, never a 500).
 */
function serializeWithin(value: unknown, maxBytes: number): string | undefined {
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    if (error instanceof RangeError) return undefined;
    throw error;
  }
  // Characters bound bytes from below; the exact byte count is only needed near the limit.
  return text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text) > maxBytes) ? undefined : text;
}

/**
 * yoga serializes a result with its `stringify` when it has one: serializing once, measuring, and
 * answering an error instead of an oversized body costs no second serialization. Results without
 * errors get their bodies from plugins/response-bodies.ts instead, made in slices; this serves
 * those with errors, which yoga must strip of what it keeps for itself.
 */
function capResponseSize(result: ExecutionResult & { stringify?: (value: unknown) => string }, maxBytes: number): void {
  result.stringify = (value) => serializeWithin(value, maxBytes) ?? JSON.stringify(responseTooLarge(maxBytes));
}
