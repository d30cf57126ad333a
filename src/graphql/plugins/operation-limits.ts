import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { createComplexityRule } from '@pothos/plugin-complexity';
import { type ExecutionArgs, type ExecutionResult, GraphQLError, MaxIntrospectionDepthRule, validate } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { appError } from '../../errors.js';

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
 * estimates the cost with the variables (so at execution start, not cached), where `jobs`
 * counts as many times as its `limit` asks for. Every refusal carries `QUERY_TOO_COMPLEX`.
 */
export function useOperationLimits(limits: OperationLimits): Plugin[] {
  const armor = { exposeLimits: true, onReject: [tagTooComplex], propagateOnRejection: true };
  const checkCost = (args: ExecutionArgs): ExecutionResult | undefined => {
    const rule = createComplexityRule({
      variableValues: (args.variableValues ?? {}) as Record<string, unknown>,
      operationName: args.operationName ?? undefined,
      context: args.contextValue as object,
      maxComplexity: limits.maxCost,
    });
    const errors = validate(args.schema, args.document, [rule]);
    if (errors.length === 0) return undefined;
    // Variables that do not coerce are execution's to report, with its own message.
    const costError = errors.find((error) => error.extensions?.code === 'QUERY_COMPLEXITY');
    if (!costError) return undefined;
    return { errors: [appError('QUERY_TOO_COMPLEX', `${costError.message}.`)] };
  };

  return [
    maxTokensPlugin({ ...armor, n: limits.maxTokens }),
    {
      // The parser recurses per nesting level: a document within the token limit can still be
      // nested deeply enough to exhaust the stack. That is the document's fault, not the server's.
      onParse: ({ parseFn, setParseFn }) =>
        setParseFn((source, options) => {
          try {
            return parseFn(source, options);
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
          if (result.some((error) => error.message === INTROSPECTION_TOO_DEEP)) {
            setResult(result.map((error) => (error.message === INTROSPECTION_TOO_DEEP ? appError('QUERY_TOO_COMPLEX', `${error.message}.`) : error)));
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
            capResponseSize(result as ExecutionResult & { stringify?: (value: unknown) => string }, limits.maxResponseBytes);
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
 * The same cap for results that yoga does not serialize (queries over WebSockets: graphql-ws
 * serializes them itself). Measuring costs one more serialization on that rare path.
 */
export function withinResponseLimit(result: ExecutionResult, maxBytes: number): ExecutionResult {
  let text: string;
  try {
    text = JSON.stringify(result);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return responseTooLarge(maxBytes);
  }
  return text.length > maxBytes || Buffer.byteLength(text) > maxBytes ? responseTooLarge(maxBytes) : result;
}

function responseTooLarge(maxBytes: number): ExecutionResult {
  return {
    data: null,
    errors: [new GraphQLError(`The response would exceed ${maxBytes} bytes; ask for fewer jobs or fields.`, { extensions: { code: 'RESPONSE_TOO_LARGE' } })],
  };
}

/**
 * yoga serializes a result with its `stringify` when it has one: serializing once, measuring, and
 * answering an error instead of an oversized body costs no second serialization. (A string over
 * V8's limit would throw "Invalid string length": the same error, never a 500.)
 */
function capResponseSize(result: ExecutionResult & { stringify?: (value: unknown) => string }, maxBytes: number): void {
  const tooLarge = () =>
    JSON.stringify({
      data: null,
      errors: [{ message: `The response would exceed ${maxBytes} bytes; ask for fewer jobs or fields.`, extensions: { code: 'RESPONSE_TOO_LARGE' } }],
    });
  result.stringify = (value) => {
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch (error) {
      if (error instanceof RangeError) return tooLarge();
      throw error;
    }
    // Characters bound bytes from below; the exact byte count is only needed near the limit.
    if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text) > maxBytes)) return tooLarge();
    return text;
  };
}
