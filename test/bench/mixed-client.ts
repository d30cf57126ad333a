import { setMaxListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveParent } from './ipc.js';
import { now, stateKey } from './load.js';

// One role of the mixed load, in a process of its own so that no other client's event loop sets
// its figures: workers reporting progress, or old dashboards polling one job each every 2 s.

const UPDATE = 'mutation($input: UpdateJobProgressInput!) { updateJobProgress(input: $input) { id updatedAt } }';

interface Target {
  key: string;
  jobIds: string[];
}

/** A report: when its request was sent and answered, and the state it wrote (stateKey). */
export interface Report {
  state: string;
  sentAt: number;
  respondedAt: number;
  ok: boolean;
}

/** A poll: when it was sent, how long it took, and whether it answered 200. */
export interface Poll {
  sentAt: number;
  ms: number;
  ok: boolean;
}

let tick = 0;
async function report(url: string, key: string, id: string): Promise<Report> {
  const sentAt = now();
  try {
    // Node's fetch keeps connections alive, as a worker's HTTP client does.
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ query: UPDATE, variables: { input: { id, metadata: { tick: ++tick } } } }),
    });
    const body = (await response.json()) as { data?: { updateJobProgress: { id: string; updatedAt: string } } };
    const job = body.data?.updateJobProgress;
    return { state: job ? stateKey(job.id, job.updatedAt) : '', sentAt, respondedAt: now(), ok: response.status === 200 && job !== undefined };
  } catch {
    return { state: '', sentAt, respondedAt: now(), ok: false };
  }
}

/**
 * Runs this process's request path (fetch, its connection pool, JSON) `count` times against a
 * server of its own, so that the load measures a fresh gateway and not a fresh client: the first
 * fetch of a process loads and compiles its HTTP client, which a real worker or dashboard did long ago.
 */
async function warmClient(count: number): Promise<void> {
  const body = JSON.stringify({ data: { updateJobProgress: { id: 'warm-up', updatedAt: new Date(0).toISOString() } } });
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (let done = 0; done < count; done += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const response = await fetch(
            `${url}/api/jobs/${done + i}`,
            i % 2 ? { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': 'warm-up' }, body } : { headers: { 'x-api-key': 'warm-up' } },
          );
          if (i % 2) await response.json();
          else await response.arrayBuffer();
        }),
      );
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

serveParent(
  {
    /** Warms this process's client (warmClient) before the load begins. */
    warm: async (m) => warmClient(m.count as number),
    /**
     * Reports at `perSecond` in all, spread over the targets' jobs in turn, from `startAt` (a
     * timestamp, shared with the other roles) for `durationMs`. Every report is sent on time, each
     * on its own request: concurrent writers, as many workers are.
     */
    report: async (m) => {
      const { url, targets, perSecond, durationMs, startAt } = m as { url: string; targets: Target[]; perSecond: number; durationMs: number; startAt: number };
      // Grouped by workspace (flatMap keeps the targets' order), then interleaved: consecutive
      // reports go to different workspaces.
      const jobs = targets.flatMap((target) => target.jobIds.map((id) => ({ key: target.key, id })));
      const order = Array.from(
        { length: jobs.length },
        (_, i) => jobs[(i % targets.length) * (jobs.length / targets.length) + Math.floor(i / targets.length)]!,
      );
      const reports: Array<Promise<Report>> = [];
      const interval = 1000 / perSecond;
      for (let i = 0; ; i++) {
        const due = startAt + i * interval;
        if (due - startAt >= durationMs) break;
        const wait = due - now();
        if (wait > 0) await sleep(wait);
        const job = order[i % order.length]!;
        reports.push(report(url, job.key, job.id));
      }
      return Promise.all(reports);
    },
    /** `count` dashboards, each polling one job of the targets every 2 s, evenly spread, from `startAt` for `durationMs`. */
    poll: async (m) => {
      const { url, targets, count, durationMs, startAt } = m as { url: string; targets: Target[]; count: number; durationMs: number; startAt: number };
      const polls: Poll[] = [];
      const stopping = new AbortController();
      setMaxListeners(count + 1, stopping.signal);
      const until = (at: number) => sleep(Math.max(0, at - now()), undefined, { signal: stopping.signal }).catch(() => undefined);
      const end = startAt + durationMs;
      const pollers = Array.from({ length: count }, async (_, i) => {
        const target = targets[i % targets.length]!;
        const jobId = target.jobIds[Math.floor(i / targets.length) % target.jobIds.length]!;
        for (let at = startAt + (i * 2000) / count; at < end; at += 2000) {
          await until(at);
          if (stopping.signal.aborted) return;
          const sentAt = now();
          try {
            const response = await fetch(`${url}/api/jobs/${jobId}`, { headers: { 'x-api-key': target.key } });
            await response.arrayBuffer();
            polls.push({ sentAt, ms: now() - sentAt, ok: response.status === 200 });
          } catch {
            polls.push({ sentAt, ms: now() - sentAt, ok: false });
          }
        }
      });
      await Promise.all(pollers);
      return polls;
    },
  },
  () => {},
);
