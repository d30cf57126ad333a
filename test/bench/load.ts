import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { WebSocket } from 'ws';

export const now = () => performance.timeOrigin + performance.now();

/** What a dashboard selects (the same in every scenario and server). */
export const DASHBOARD_SELECTION = 'id status progress currentStep steps { id name status } updatedAt changeCursor';

export async function gql<T>(url: string, key: string | undefined, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key && { 'x-api-key': key }) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: unknown };
  if (body.errors || !body.data) throw new Error(`GraphQL error: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** The bench's job number `i`: the reference's "collect" job with its four steps. */
export function seedJobInput(i: number) {
  return {
    type: 'collect',
    displayTitle: `Analyzing Competitor ${i}`,
    competitorId: `competitor-${i}`,
    steps: [
      { id: 'collect', name: 'Collecting Intel' },
      { id: 'ingest', name: 'Processing Intel' },
      { id: 'build-matrix', name: 'Building Competitor Matrix' },
      { id: 'build-battlecard', name: 'Generating Battle Card' },
    ],
    metadata: { competitorName: `Competitor ${i} Inc`, isFirstRun: true },
  };
}

/** Creates `count` jobs, ten at a time; returns their ids in creation order. */
export async function createJobs(url: string, key: string | undefined, count: number): Promise<string[]> {
  const create = async (i: number) => {
    const { createJob } = await gql<{ createJob: { id: string } }>(url, key, `mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`, {
      input: seedJobInput(i),
    });
    return createJob.id;
  };
  const ids: string[] = [];
  for (let first = 0; first < count; first += 10) {
    ids.push(...(await Promise.all(Array.from({ length: Math.min(10, count - first) }, (_, i) => create(first + i)))));
  }
  return ids;
}

const UPDATE = `mutation($input: UpdateJobProgressInput!) { updateJobProgress(input: $input) { id updatedAt } }`;

export interface Sent {
  /** The state it wrote, as subscribers see it: its job and its updatedAt (stateKey). */
  state: string;
  sentAt: number;
  respondedAt: number;
}

/**
 * What tells one state of a job from another in what subscribers receive. Not the changeCursor: a
 * mutation answers a floor of it while older writes of the workspace may still commit.
 */
export const stateKey = (jobId: string, updatedAt: string) => `${jobId}@${updatedAt}`;

let tick = 0;
/** One worker update: a metadata change (always valid, any number of times). */
export async function sendUpdate(url: string, key: string | undefined, id: string): Promise<Sent> {
  const sentAt = now();
  const { updateJobProgress } = await gql<{ updateJobProgress: { id: string; updatedAt: string } }>(url, key, UPDATE, {
    input: { id, metadata: { tick: ++tick } },
  });
  return { state: stateKey(updateJobProgress.id, updateJobProgress.updatedAt), sentAt, respondedAt: now() };
}

/**
 * Worker updates at `perSecond`, spread over `jobIds`, for `durationMs`; returns each response.
 * At most `maxInFlight` wait for their response at once: a worker is not a flood.
 */
export async function driveUpdates(
  url: string,
  key: string | undefined,
  jobIds: string[],
  perSecond: number,
  durationMs: number,
  maxInFlight = 32,
): Promise<Sent[]> {
  const sent: Sent[] = [];
  const inFlight = new Set<Promise<void>>();
  const interval = 1000 / perSecond;
  const start = now();
  for (let i = 0; now() - start < durationMs; i++) {
    const due = start + i * interval;
    const wait = due - now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (inFlight.size >= maxInFlight) await Promise.race(inFlight);
    const request: Promise<void> = sendUpdate(url, key, jobIds[i % jobIds.length]!).then((s) => {
      sent.push(s);
      inFlight.delete(request);
    });
    inFlight.add(request);
  }
  await Promise.all(inFlight);
  return sent;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface CannonResult {
  reqPerSec: number;
  p99Ms: number;
  non2xx: number;
  requests: number;
}

export async function cannon(options: {
  url: string;
  method?: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  durationS: number;
  connections: number;
  /** A key of its own, never issued, on every request: what a bad-key flood sends. */
  randomKeys?: boolean;
  /** A body of its own on every request (a document no cache has seen). */
  bodies?: () => string;
}): Promise<CannonResult> {
  const result = await autocannon({
    url: options.url,
    method: options.method ?? 'GET',
    headers: options.headers,
    body: options.body,
    duration: options.durationS,
    connections: options.connections,
    ...(options.randomKeys
      ? {
          requests: [
            {
              setupRequest: (request: autocannon.Request) => ({
                ...request,
                headers: { ...request.headers, 'x-api-key': `jg_${randomBytes(32).toString('base64url')}` },
              }),
            },
          ],
        }
      : {}),
    ...(options.bodies ? { requests: [{ setupRequest: (request: autocannon.Request) => ({ ...request, body: options.bodies!() }) }] } : {}),
  });
  return { reqPerSec: result.requests.average, p99Ms: result.latency.p99, non2xx: result.non2xx + result.errors, requests: result.requests.total };
}

/**
 * `count` old dashboards polling `url` every 2 s with `key`, spread evenly over the interval;
 * `onStatus` hears each answer's status. `stop` ends the loops (and their waits) once they are done.
 */
export function pollEvery2s(url: string, key: string, count: number, onStatus: (status: number) => void = () => {}): { stop(): Promise<void> } {
  const stopping = new AbortController();
  // Every poller waits on this one signal: that is no leak.
  setMaxListeners(count + 1, stopping.signal);
  const wait = (ms: number) => sleep(ms, undefined, { signal: stopping.signal }).catch(() => undefined);
  const pollers = Array.from({ length: count }, async (_, i) => {
    await wait((i * 2000) / count);
    while (!stopping.signal.aborted) {
      const started = Date.now();
      const response = await fetch(url, { headers: { 'x-api-key': key } });
      await response.arrayBuffer();
      onStatus(response.status);
      await wait(2000 - (Date.now() - started));
    }
  });
  return {
    stop: async () => {
      stopping.abort();
      await Promise.all(pollers);
    },
  };
}

/**
 * One WebSocket that resumes `subscriptions` subscriptions of `query` at once (graphql-transport-ws,
 * raw, so that nothing of a client library is measured) and reads for `durationS`: what a client
 * replaying a workspace's large jobs many times over does. Returns the bytes it received.
 */
export async function replayFlood(
  wsUrl: string,
  key: string,
  query: string,
  subscriptions: number,
  durationS: number,
): Promise<{ bytes: number; messages: number }> {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  let bytes = 0;
  let messages = 0;
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { apiKey: key } })));
    socket.on('message', (data: Buffer) => {
      bytes += data.length;
      messages++;
      if (messages === 1) {
        for (let i = 0; i < subscriptions; i++) socket.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query } }));
        resolve();
      }
    });
  });
  await sleep(durationS * 1000);
  socket.terminate();
  return { bytes, messages };
}
