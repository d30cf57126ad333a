import type { GraphQLError } from 'graphql';
import { type Plugin, isAsyncIterable, processRegularResult } from 'graphql-yoga';
import { appError } from '../../errors.js';
import type { Logger } from '../../logger.js';

/** What a client that accepts only these gets for a subscription: nothing it can read as a stream. */
const JSON_ONLY = new Set(['application/json', 'application/graphql-response+json', 'application/graphql+json']);

function notAcceptable(): GraphQLError {
  const error = appError('NOT_ACCEPTABLE', 'A subscription answers with a stream: accept text/event-stream (or subscribe over WebSockets).');
  Object.assign(error.extensions.http as object, { headers: { accept: 'text/event-stream' } });
  return error;
}

/** Whether an `accept` header names JSON types only (absent, `*` or any other type: a stream may do). */
function acceptsJsonOnly(accept: string | null): boolean {
  if (!accept) return false;
  const types = accept.split(',').map((part) => part.split(';')[0]!.trim().toLowerCase());
  return types.every((type) => JSON_ONLY.has(type));
}

/**
 * A subscription over HTTP that the client cannot read as a stream. Its `subscribe` would open the
 * stream (a connection slot of the key, live routing, a revocation watch, a replay read with
 * `after`) before yoga chooses how to answer; yoga then answers 406 and never returns it, so each
 * such request held those for good and enough of them locked the key out of every live update.
 *
 * - A request whose `accept` names JSON types only is refused before `subscribe` runs.
 * - Any other that yoga finds no streaming answer for (its result processors run before ours) has
 *   its stream returned here.
 *
 * Both answer 406 with a coded error (yoga's own 406 has an empty body).
 */
export function useUnacceptedStreamsRefused(logger: Logger): Plugin<{ request?: Request }> {
  return {
    onSubscribe: ({ args, setResultAndStopExecution }) => {
      if (acceptsJsonOnly(args.contextValue.request?.headers.get('accept') ?? null)) setResultAndStopExecution({ errors: [notAcceptable()] });
    },
    onResultProcess(processing) {
      const { result, resultProcessor } = processing;
      if (resultProcessor || !isAsyncIterable(result)) return;
      Promise.resolve(result[Symbol.asyncIterator]().return?.()).catch((error: unknown) => logger.error({ err: error }, 'ending an unaccepted stream failed'));
      processing.setResult({ errors: [notAcceptable()] });
      processing.setResultProcessor(processRegularResult, 'application/json');
    },
  };
}
