import type { ExecutionResult } from 'graphql';
import { Readable } from 'node:stream';
import { type Plugin, isAsyncIterable, processRegularResult } from 'graphql-yoga';
import { errors } from '../../errors.js';
import type { ServerContext } from '../yoga.js';
import { type JsonBody, serializedBody } from '../serialized.js';

export interface ResponseBodiesOptions {
  /** MAX_RESPONSE_BYTES: a larger result is answered RESPONSE_TOO_LARGE instead. */
  maxBytes: number;
  /** A body of `bytes` is about to be written for the caller of `serverContext` (the response budget's). */
  written: (serverContext: ServerContext, bytes: number) => void;
}

/**
 * Answers JSON results over HTTP with bodies made in slices of the event loop, once per result
 * object (serialized.ts): a cached result's body is made once for all its hits. Results with
 * errors keep yoga's own serialization, which strips what yoga keeps in errors for itself
 * (`extensions.http`); they are small, and operation-limits.ts caps their size.
 *
 * yoga's processor still decides status and headers (it is given an empty body to write); the
 * finished body replaces it when the response leaves, keyed by its request. Everything else (SSE,
 * multipart, batches) is left to yoga.
 */
export function useSlicedResponseBodies({ maxBytes, written }: ResponseBodiesOptions): Plugin<Record<string, unknown>, ServerContext> {
  const bodies = new WeakMap<Request, JsonBody>();
  return {
    async onResultProcess(processing) {
      const { request, result, resultProcessor, serverContext } = processing;
      if (resultProcessor !== processRegularResult || isAsyncIterable(result) || Array.isArray(result)) return;
      const single = result as ExecutionResult;
      if (single.errors?.length || single.extensions?.['http']) return;
      const made = await serializedBody(single, maxBytes);
      if ('tooLarge' in made) return processing.setResult(responseTooLarge(maxBytes));
      bodies.set(request, made);
      written(serverContext, made.bytes);
      processing.setResult({ ...single, stringify: () => '' } as ExecutionResult);
    },
    onResponse(responding) {
      const { request, response, fetchAPI } = responding;
      const body = bodies.get(request);
      if (!body) return;
      bodies.delete(request);
      const headers = new fetchAPI.Headers(response.headers);
      headers.set('content-length', String(body.bytes));
      // A Node stream of the pieces: the server adapter pipes it, a piece per drain of the socket.
      responding.setResponse(
        new fetchAPI.Response(Readable.from(body.chunks) as unknown as BodyInit, { status: response.status, statusText: response.statusText, headers }),
      );
    },
  };
}

export function responseTooLarge(maxBytes: number): ExecutionResult {
  return {
    data: null,
    errors: [errors.responseTooLarge(maxBytes)],
  };
}
