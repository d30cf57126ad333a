import { type DocumentNode, getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { MAX_SPAN_NAME_CHARS } from '../../limits/fixed.js';
import type { ActiveSpan, Tracer } from '../../telemetry/tracer.js';

/**
 * A span per GraphQL execution and subscription (`query Jobs`, with OpenTelemetry's graphql.*
 * attributes; never the variables), the parent of what the operation does (its SQL). envelop's
 * `instrumentation` wraps the phase, so the span is active for everything in it, on every
 * transport that goes through yoga's envelop (HTTP, Server-Sent Events, the REST shim, WebSocket
 * operations other than multiplexed jobUpdated, which the change feed's spans cover).
 *
 * Written here rather than with @envelop/opentelemetry, which pulls a second, older copy of the
 * OpenTelemetry SDK (sdk-trace-base 1.x), or Hive's plugin, which pulls Hive Gateway's runtime.
 */
export function useOperationSpans(tracer: Tracer): Plugin {
  /** The span of the phase under way, by the context object envelop hands both the wrapper and the hook. */
  const spans = new WeakMap<object, ActiveSpan>();
  const named = (contextValue: object, document: DocumentNode, operationName: string | null | undefined) => {
    const span = spans.get(contextValue);
    const operation = getOperationAST(document, operationName);
    if (!span || !operation) return;
    // Names are the client's to choose, as long as the body allows: one too long names no span.
    const given = operation.name?.value;
    const name = given && given.length <= MAX_SPAN_NAME_CHARS ? given : undefined;
    span.updateName(name ? `${operation.operation} ${name}` : operation.operation);
    span.setAttributes({ 'graphql.operation.type': operation.operation, 'graphql.operation.name': name });
  };
  const phase =
    (phaseName: string) =>
    ({ context: contextValue }: { context: object }, wrapped: () => unknown) =>
      tracer.span(`graphql.${phaseName}`, {}, (span) => {
        spans.set(contextValue, span);
        return wrapped();
      });
  return {
    instrumentation: {
      execute: phase('execute') as never,
      subscribe: phase('subscribe') as never,
    },
    onExecute: ({ args }) => named(args.contextValue, args.document as DocumentNode, args.operationName as string | null | undefined),
    onSubscribe: ({ args }) => named(args.contextValue, args.document as DocumentNode, args.operationName as string | null | undefined),
  };
}
