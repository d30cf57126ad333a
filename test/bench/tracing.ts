import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { drive, gatewayBody } from './writes.js';

// What tracing costs: progress reports and reads with OpenTelemetry off, on with every trace kept,
// and on keeping one in a hundred, the spans going over OTLP/HTTP to a collector of the bench's own
// (which answers at once: what is measured is the gateway's side).

export type TracingMode = 'off' | '100%' | '1%';

/** How often the gateway exports (OTEL_BSP_SCHEDULE_DELAY): a round's last spans are out this long after it. */
export const EXPORT_DELAY_MS = 1_000;

export interface TracingRow {
  db: 'embedded' | 'postgres';
  round: number;
  tracing: TracingMode;
  writesPerSec: number;
  writesP99Ms: number;
  readsPerSec: number;
  readsP99Ms: number;
  /** Spans the collector received during the round. */
  spans: number;
}

/** The gateway's environment for each mode; the collector at `collector`. */
export function tracingEnv(mode: TracingMode, collector: string): Record<string, string> {
  if (mode === 'off') return {};
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: collector,
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: mode === '100%' ? '1' : '0.01',
    OTEL_BSP_SCHEDULE_DELAY: String(EXPORT_DELAY_MS),
  };
}

/** A collector that takes OTLP/HTTP JSON exports and counts their spans. */
export async function startCollector(): Promise<{ url: string; spans(): number; close(): Promise<void> }> {
  let spans = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      // Counting "spanId" keys is enough for a count, and cheaper than parsing.
      spans += Buffer.concat(chunks).toString().split('"spanId"').length - 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans: () => spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** One round on a started gateway: 8 workers reporting progress, then 8 readers listing jobs, `seconds` each. */
export async function tracingRound(
  { url, key }: { url: string; key: string },
  jobIds: string[],
  seconds: number,
): Promise<Pick<TracingRow, 'writesPerSec' | 'writesP99Ms' | 'readsPerSec' | 'readsP99Ms'>> {
  const writes = await drive(`${url}/graphql`, { 'x-api-key': key }, gatewayBody(jobIds), 8, seconds);
  // Each reader its own limit: different documents' results, so that reads execute rather than all being one cached answer.
  const reads = await drive(
    `${url}/graphql`,
    { 'x-api-key': key },
    (i) => JSON.stringify({ query: `{ jobs(limit: ${20 + i}) { id status progress currentStep } }` }),
    8,
    seconds,
  );
  if (writes.failed > 0 || reads.failed > 0) throw new Error(`tracing: ${writes.failed} writes and ${reads.failed} reads failed`);
  return {
    writesPerSec: Math.round(writes.perSec),
    writesP99Ms: writes.p99,
    readsPerSec: Math.round(reads.perSec),
    readsP99Ms: reads.p99,
  };
}
