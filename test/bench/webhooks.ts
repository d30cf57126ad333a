import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { gql } from './load.js';
import { driveKind } from './writes.js';

// Webhooks: what recording events costs a job write (the same progress reports with an endpoint
// that takes them, and without), and how fast recorded events reach a receiver in this process,
// against a bare sender (a loop POSTing the same signed body with the gateway's per-endpoint
// concurrency over keep-alive connections): the ceiling of the HTTP path on this machine.

export interface WebhookWriteRow {
  db: string;
  round: number;
  endpoint: 'none' | 'job.progress + job.completed';
  writesPerSec: number;
  p99Ms: number;
}

export interface WebhookDeliveryRow {
  db: string;
  events: number;
  /** The job writes that made them (a createJob and a completeJob per job), per second while they ran. */
  jobWritesPerSec: number;
  eventsPerSec: number;
  /** From the completeJob's answer to the receiver's receipt of job.completed. */
  p50Ms: number;
  p99Ms: number;
  bareRequestsPerSec: number;
}

export interface Gateway {
  url: string;
  /** A key with jobs:write and webhooks:manage. */
  key: string;
}

/** A receiver answering 204 at once, noting when each event arrived. */
async function startReceiver() {
  const arrivals = new Map<string, { type: string; jobId: string; at: number }>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const event = JSON.parse(body) as { id: string; type: string; data: { id: string } };
      arrivals.set(event.id, { type: event.type, jobId: event.data.id, at: performance.now() });
      res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    arrivals,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const CREATE_ENDPOINT = 'mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id } } }';
const DELETE_ENDPOINT = 'mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }';

async function endpoint(gateway: Gateway, url: string, events: string[]) {
  const { createWebhookEndpoint } = await gql<{ createWebhookEndpoint: { secret: string; endpoint: { id: string } } }>(
    gateway.url,
    gateway.key,
    CREATE_ENDPOINT,
    {
      input: { url, events, progressIntervalMs: 1000 },
    },
  );
  return { id: createWebhookEndpoint.endpoint.id, secret: createWebhookEndpoint.secret };
}

/** Progress reports by 8 workers, rounds alternating without and with an endpoint taking job.progress. */
export async function webhookWriteCost(db: string, gateway: Gateway, jobIds: string[], seconds: number, rounds: number): Promise<WebhookWriteRow[]> {
  const receiver = await startReceiver();
  const rows: WebhookWriteRow[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const on of [false, true]) {
        const created = on ? await endpoint(gateway, receiver.url, ['job.progress', 'job.completed']) : undefined;
        const measured = await driveKind(`${gateway.url}/graphql`, { 'x-api-key': gateway.key }, 'updateJobProgress', jobIds.slice(0, 8), 8, seconds);
        if (created) await gql(gateway.url, gateway.key, DELETE_ENDPOINT, { id: created.id });
        if (measured.failed > 0) throw new Error(`webhook write cost (${db}): ${measured.failed} requests failed`);
        rows.push({ db, round, endpoint: on ? 'job.progress + job.completed' : 'none', writesPerSec: Math.round(measured.perSec), p99Ms: measured.p99 });
      }
    }
  } finally {
    await receiver.close();
  }
  return rows;
}

/**
 * `jobs` jobs created and completed by 8 workers, an endpoint taking job.created and job.completed:
 * events per second from the first write to the last receipt, and each completion's time to its
 * receiver; then the bare sender, the same number of signed POSTs to the same receiver.
 */
export async function webhookDelivery(db: string, gateway: Gateway, jobs: number): Promise<WebhookDeliveryRow> {
  const receiver = await startReceiver();
  try {
    const { id, secret } = await endpoint(gateway, receiver.url, ['job.created', 'job.completed']);
    const completedAt = new Map<string, number>();
    const began = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < jobs) {
          next++;
          const { createJob } = await gql<{ createJob: { id: string } }>(
            gateway.url,
            gateway.key,
            'mutation { createJob(input: { type: "collect", displayTitle: "Bench", steps: [{ id: "a", name: "A" }] }) { id } }',
          );
          await gql(gateway.url, gateway.key, 'mutation($id: ID!) { completeJob(id: $id) { id } }', { id: createJob.id });
          completedAt.set(createJob.id, performance.now());
        }
      }),
    );
    const writesSeconds = (performance.now() - began) / 1000;
    const events = 2 * jobs;
    while (receiver.arrivals.size < events) {
      if (performance.now() - began > 120_000) throw new Error(`webhook delivery (${db}): ${receiver.arrivals.size} of ${events} events in 120 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const last = Math.max(...[...receiver.arrivals.values()].map((a) => a.at));
    const latencies = [...receiver.arrivals.values()]
      .filter((a) => a.type === 'job.completed')
      .map((a) => a.at - completedAt.get(a.jobId)!)
      .sort((a, b) => a - b);
    await gql(gateway.url, gateway.key, DELETE_ENDPOINT, { id });

    // The bare sender: the gateway's body size and signature, 8 at once (WEBHOOK_CONCURRENCY_PER_ENDPOINT).
    const body = JSON.stringify({ id: 'x', type: 'job.completed', timestamp: new Date().toISOString(), changeCursor: '1', data: SAMPLE_JOB });
    const signer = new Webhook(secret);
    const agent = new http.Agent({ keepAlive: true });
    receiver.arrivals.clear();
    const bareBegan = performance.now();
    let sent = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (sent < events) {
          const n = sent++;
          const eventId = `bare-${n}`;
          const payload = body.replace('"id":"x"', `"id":"${eventId}"`);
          await post(receiver.url, agent, payload, {
            'webhook-id': eventId,
            'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
            'webhook-signature': signer.sign(eventId, new Date(), payload),
          });
        }
      }),
    );
    const bareSeconds = (performance.now() - bareBegan) / 1000;
    agent.destroy();
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
    return {
      db,
      events,
      jobWritesPerSec: Math.round((2 * jobs) / writesSeconds),
      eventsPerSec: Math.round(events / ((last - began) / 1000)),
      p50Ms: Math.round(at(0.5) * 10) / 10,
      p99Ms: Math.round(at(0.99) * 10) / 10,
      bareRequestsPerSec: Math.round(events / bareSeconds),
    };
  } finally {
    await receiver.close();
  }
}

function post(url: string, agent: http.Agent, body: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...headers } }, (response) => {
      response.resume();
      response.on('end', () => resolve());
    });
    request.on('error', reject);
    request.end(body);
  });
}

const SAMPLE_JOB = {
  id: '550e8400-e29b-41d4-a716-446655440000',
  workspaceId: '6f1c0c43-8f7e-4a5b-9d7e-2b0b8e3c9a11',
  competitorId: null,
  type: 'collect',
  displayTitle: 'Bench',
  status: 'completed',
  progress: 100,
  currentStep: null,
  steps: [{ id: 'a', name: 'A', status: 'completed' }],
  startedAt: '2026-12-07T00:00:00.000Z',
  completedAt: '2026-12-07T00:00:01.000Z',
  metadata: {},
};
