import { readFileSync } from 'node:fs';
import {
  type Attributes,
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { TracingConfig } from '../config.js';
import { packagePath } from '../package-path.js';
import type { ActiveSpan, SpanAttributes, SpanOptions, Tracer } from './tracer.js';

/**
 * OpenTelemetry's SDK, built only when OTEL_* turns tracing on (app.ts imports this module then, and
 * only then): spans are batched and sent over OTLP/HTTP (JSON) to the endpoint and with the headers
 * config.ts reads from OTEL_EXPORTER_OTLP_*; the resource from OTEL_SERVICE_NAME and
 * OTEL_RESOURCE_ATTRIBUTES; W3C Trace Context in and out. (Read by config.ts, not by the SDK from
 * process.env, so that the configuration stays one place and tests can give theirs.)
 *
 * No instrumentation packages: they patch modules as they are required, which neither reaches our
 * bundled ESM nor PGlite; the gateway makes its spans where it knows what they mean (http/server.ts,
 * graphql/plugins/operation-spans.ts, db/traced-sql.ts, the change feed and the webhook sender).
 */
export function startTracing(config: TracingConfig): Tracer {
  const { version } = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string };
  // One context manager for the process (several apps may run in one test process); spans stay per app.
  contextManager ??= (() => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    return manager;
  })();
  const provider = new TracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ ...config.resourceAttributes, 'service.name': config.serviceName, 'service.version': version })),
    sampler: samplerOf(config),
    spanProcessors: [
      new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: config.url, headers: config.headers }), scheduledDelayMillis: config.exportDelayMs }),
    ],
  });
  const tracer = provider.getTracer('jobs-gateway', version);
  const propagator = new W3CTraceContextPropagator();

  const contextOf = (traceparent: string): Context => propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
  const traceparentOf = (span: Span): string | undefined => {
    const carrier: Record<string, string> = {};
    propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
    return carrier.traceparent;
  };

  return {
    span<T>(name: string, options: SpanOptions, fn: (span: ActiveSpan) => T): T {
      let parent = context.active();
      if (options.parent) parent = contextOf(options.parent);
      else if (options.headers) parent = propagator.extract(ROOT_CONTEXT, options.headers, defaultTextMapGetter);
      // Within a trace the sampler dropped, no span is made at all: every sampler the variables
      // name decides a child as it decided its root (parent-based ones by the parent, ratio ones by
      // the same trace id), and making, activating and ending a span that records nothing was
      // most of what tracing cost at a 1% ratio (test/bench/RESULTS.md).
      if (trace.getSpanContext(parent) && !(trace.getSpanContext(parent)!.traceFlags & TraceFlags.SAMPLED) && !options.headers) return fn(UNRECORDED);
      const links: Link[] = (options.links ?? []).flatMap((traceparent) => {
        const linked = trace.getSpanContext(contextOf(traceparent));
        return linked ? [{ context: linked }] : [];
      });
      const span = tracer.startSpan(name, { kind: KINDS[options.kind ?? 'internal'], attributes: defined(options.attributes), links }, parent);
      const active: ActiveSpan = {
        setAttributes: (attributes) => span.setAttributes(defined(attributes)),
        updateName: (newName) => span.updateName(newName),
        fail: (error) => {
          span.setStatus({ code: SpanStatusCode.ERROR });
          span.setAttribute('error.type', error instanceof Error ? error.name : typeof error);
        },
      };
      let result: T;
      try {
        result = context.with(trace.setSpan(parent, span), () => fn(active));
      } catch (error) {
        active.fail(error);
        span.end();
        throw error;
      }
      if (result instanceof Promise) {
        return result.then(
          (value: unknown) => {
            span.end();
            return value;
          },
          (error: unknown) => {
            active.fail(error);
            span.end();
            throw error;
          },
        ) as T;
      }
      span.end();
      return result;
    },
    traceparent() {
      const span = trace.getActiveSpan();
      return span?.spanContext().traceFlags ? traceparentOf(span) : undefined;
    },
    detached: (fn) => context.with(ROOT_CONTEXT, fn),
    shutdown: () => provider.shutdown(),
  };
}

let contextManager: AsyncLocalStorageContextManager | undefined;

/** The span a callback gets in a trace that is not recorded. */
const UNRECORDED: ActiveSpan = { setAttributes: () => undefined, updateName: () => undefined, fail: () => undefined };

const KINDS = { server: SpanKind.SERVER, client: SpanKind.CLIENT, internal: SpanKind.INTERNAL, consumer: SpanKind.CONSUMER } as const;

function defined(attributes: SpanAttributes | undefined): Attributes {
  const kept: Attributes = {};
  for (const [key, value] of Object.entries(attributes ?? {})) if (value !== undefined) kept[key] = value;
  return kept;
}

/** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, as the specification defines them. */
function samplerOf({ sampler, samplerArg }: TracingConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(samplerArg);
  switch (sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}
