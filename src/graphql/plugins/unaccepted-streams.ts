import { type Plugin, isAsyncIterable, processRegularResult } from 'graphql-yoga';
import { appError } from '../../errors.js';

/**
 * A subscription's stream is opened by its `subscribe` before yoga chooses how to answer. When the
 * request accepts no streaming media type (say `accept: application/json`), yoga answers 406 and
 * never returns the stream, which then keeps its key's connection slot, its live routing and its
 * revocation watch for good: enough such requests lock the key out of every live update. This
 * returns the stream, and answers the 406 with a coded error instead of an empty body.
 */
export function useUnacceptedStreamsReturned(): Plugin {
  return {
    onResultProcess({ result, resultProcessor, setResult, setResultProcessor }) {
      if (resultProcessor || !isAsyncIterable(result)) return;
      void result[Symbol.asyncIterator]().return?.();
      setResult({
        errors: [appError('NOT_ACCEPTABLE', 'A subscription answers with a stream: accept text/event-stream (or subscribe over WebSockets).')],
      });
      setResultProcessor(processRegularResult, 'application/json');
    },
  };
}
