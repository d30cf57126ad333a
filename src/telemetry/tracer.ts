import type { IncomingHttpHeaders } from 'node:http';

/** Attribute values a span may carry (OpenTelemetry's, without arrays). */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** The span a `Tracer.span` callback runs in. */
export interface ActiveSpan {
  setAttributes(attributes: SpanAttributes): void;
  updateName(name: string): void;
  /** Marks the span failed (an error status), with the error's type; never its message, which may carry input. */
  fail(error: unknown): void;
}

export interface SpanOptions {
  kind?: 'server' | 'client' | 'internal' | 'consumer';
  attributes?: SpanAttributes;
  /** A server span's incoming headers: a W3C `traceparent` there makes the span its child. */
  headers?: IncomingHttpHeaders;
  /** W3C traceparents of spans this one is caused by but not a child of (a batch's writes). */
  links?: readonly string[];
  /** A W3C traceparent to be the parent instead of the active span. */
  parent?: string;
}

/**
 * What the gateway's code traces with: OpenTelemetry's API behind an interface of our own, so that
 * with tracing off (the default) neither the API nor the SDK is loaded, and no span is made
 * (telemetry/tracing.ts builds the one implementation, only when OTEL_* asks for it).
 */
export interface Tracer {
  /** Runs `fn` in a new span, the child of the active one unless told otherwise; ends it when `fn` (or its promise) settles. */
  span<T>(name: string, options: SpanOptions, fn: (span: ActiveSpan) => T): T;
  /** The active span's W3C traceparent (to store with a write, or send onwards); undefined outside a sampled span. */
  traceparent(): string | undefined;
  /**
   * Runs `fn` outside any trace: for work a request sets off but that is not its own (the change
   * feed's read, the webhook dispatcher's claims, timers), which would otherwise run, and set off
   * more, in that request's trace, whoever's it is.
   */
  detached<T>(fn: () => T): T;
  /** Flushes the spans not yet exported, then stops. */
  shutdown(): Promise<void>;
}
