import { setTimeout as sleep } from 'node:timers/promises';
import { type Child, spawnChild } from './ipc.js';
import { DASHBOARD_SELECTION, gql, now, percentile } from './load.js';
import type { Poll, Report } from './mixed-client.js';

// The mixed load (`npm run bench -- --mixed-only`): dashboards subscribed over many workspaces,
// workers reporting progress concurrently, and old dashboards polling one job each every 2 s, all
// at once on a freshly started gateway. Each role runs in processes of its own. Figures are split
// into the first 2 s after the load begins (what a deploy or restart looks like to users) and the
// steady state after it.

export interface MixedScenario {
  subscribers: number;
  pollers: number;
  seconds: number;
  workspaces: number;
  jobsPerWorkspace: number;
  reportsPerSec: number;
}

interface Latencies {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

export interface MixedRow extends MixedScenario {
  db: string;
  /** From the moment a report's request was sent to each subscriber's receipt of its state. */
  delivery: { first2s: Latencies; steady: Latencies };
  report: { first2s: Latencies; steady: Latencies };
  poll: { first2s: Latencies; steady: Latencies };
  /** Receipts found, of reports × the subscribers of their workspace (states of one job may merge). */
  deliveredShare: number;
  reportFailures: number;
  pollFailures: number;
  finalStatesMissing: number;
  finalStatePairs: number;
  socketsClosed: number;
}

export interface StartedGateway {
  gateway: Child;
  url: string;
  stop: () => Promise<void>;
}

const FIRST_MS = 2_000;

function latencies(samples: number[]): Latencies {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1) ?? Number.NaN), count: sorted.length };
}

/** Samples (at, ms) split by whether `at` falls in the first 2 s after `startAt`. */
function split(samples: Array<[at: number, ms: number]>, startAt: number) {
  return {
    first2s: latencies(samples.filter(([at]) => at - startAt < FIRST_MS).map(([, ms]) => ms)),
    steady: latencies(samples.filter(([at]) => at - startAt >= FIRST_MS).map(([, ms]) => ms)),
  };
}

export async function mixed(db: string, scenario: MixedScenario, start: () => Promise<StartedGateway>, log: (line: string) => void): Promise<MixedRow> {
  const { gateway, url, stop } = await start();
  // A few thousand sockets per dashboards' process: one process's event loop would set the figures.
  const processes = Math.max(1, Math.ceil(scenario.subscribers / 5_000));
  const children: Child[] = [];
  try {
    const workspaces: Array<{ key: string; jobIds: string[] }> = [];
    for (let w = 0; w < scenario.workspaces; w++) {
      const key = await gateway.request<string>({ cmd: 'createKey', workspace: `mixed-${w}` });
      const jobIds = await gateway.request<string[]>({ cmd: 'seedJobs', key, count: scenario.jobsPerWorkspace });
      workspaces.push({ key, jobIds });
    }
    const dashboards = await Promise.all(Array.from({ length: processes }, () => spawnChild('./subscribers.ts')));
    const [workers, pollers] = await Promise.all([spawnChild('./mixed-client.ts'), spawnChild('./mixed-client.ts')]);
    children.push(...dashboards, workers, pollers);
    // Each client process warms its own HTTP client, away from the gateway (see warmClient).
    await Promise.all([workers, pollers].map((child) => child.request({ cmd: 'warm', count: 2_000 })));

    // Subscribers spread evenly over the workspaces and the dashboards' processes.
    const wsUrl = `${url.replace(/^http/, 'ws')}/graphql`;
    const subscribe = { query: `subscription { jobUpdated { ${DASHBOARD_SELECTION} } }` };
    const perWorkspace = Math.floor(scenario.subscribers / scenario.workspaces);
    await Promise.all(
      dashboards.map(async (child, p) => {
        for (const [w, { key }] of workspaces.entries()) {
          const count = Math.floor(perWorkspace / processes) + (p < perWorkspace % processes ? 1 : 0);
          if (count > 0) await child.request({ cmd: 'open', url: wsUrl, protocol: 'graphql-ws', apiKey: key, subscribe, count, tag: String(w) });
        }
      }),
    );
    const expectedSubscribers = perWorkspace * scenario.workspaces;
    for (let waited = 0; (await gateway.request<{ subscribers: number }>({ cmd: 'stats' })).subscribers < expectedSubscribers; waited += 50) {
      if (waited > 60_000) throw new Error('subscribers did not all subscribe');
      await sleep(50);
    }
    for (const child of dashboards) {
      await child.request({ cmd: 'reset' });
      await child.request({ cmd: 'track', on: true });
      await child.request({ cmd: 'newest', on: true });
    }
    log(`mixed (${db}): ${expectedSubscribers} subscribers over ${scenario.workspaces} workspaces; load begins`);

    // The load begins at once for every role.
    const startAt = now() + 500;
    const durationMs = scenario.seconds * 1000;
    const [reports, polls] = await Promise.all([
      workers.request<Report[]>({ cmd: 'report', url, targets: workspaces, perSecond: scenario.reportsPerSec, durationMs, startAt }, durationMs + 120_000),
      scenario.pollers > 0
        ? pollers.request<Poll[]>({ cmd: 'poll', url, targets: workspaces, count: scenario.pollers, durationMs, startAt }, durationMs + 120_000)
        : Promise.resolve([]),
    ]);
    await sleep(2_000);

    // Final states: what the database holds (read once the feed has had time), against each subscriber's newest.
    const expected: Record<string, Record<string, string>> = {};
    for (const { key } of workspaces) {
      const { jobs } = await gql<{ jobs: Array<{ id: string; changeCursor: string }> }>(url, key, '{ jobs(limit: 200) { id changeCursor } }');
      expected[key] = Object.fromEntries(jobs.map((job) => [job.id, job.changeCursor]));
    }
    let final = { missing: 0, pairs: 0, closed: 0 };
    for (let attempt = 0; attempt < 30; attempt++) {
      final = { missing: 0, pairs: 0, closed: 0 };
      for (const child of dashboards) {
        const part = await child.request<typeof final>({ cmd: 'checkFinal', byKey: expected });
        final = { missing: final.missing + part.missing, pairs: final.pairs + part.pairs, closed: final.closed + part.closed };
      }
      if (final.missing === 0) break;
      await sleep(500);
    }

    const receipts = new Map<string, number[]>();
    for (const child of dashboards) {
      for (const [state, times] of Object.entries(await child.request<Record<string, number[]>>({ cmd: 'receipts' }))) {
        receipts.set(state, [...(receipts.get(state) ?? []), ...times]);
      }
    }
    const deliveries: Array<[number, number]> = [];
    let found = 0;
    for (const report of reports) {
      for (const at of receipts.get(report.state) ?? []) {
        deliveries.push([report.sentAt, at - report.sentAt]);
        found++;
      }
    }
    const okReports = reports.filter((r) => r.ok);
    return {
      db,
      ...scenario,
      delivery: split(deliveries, startAt),
      report: split(
        okReports.map((r) => [r.sentAt, r.respondedAt - r.sentAt]),
        startAt,
      ),
      poll: split(
        polls.filter((p) => p.ok).map((p) => [p.sentAt, p.ms]),
        startAt,
      ),
      deliveredShare: Math.round((1000 * found) / Math.max(1, okReports.length * perWorkspace)) / 1000,
      reportFailures: reports.length - okReports.length,
      pollFailures: polls.filter((p) => !p.ok).length,
      finalStatesMissing: final.missing,
      finalStatePairs: final.pairs,
      socketsClosed: final.closed,
    };
  } finally {
    for (const child of children) {
      await child.request({ cmd: 'closeAll' }).catch(() => undefined);
      await child.stop();
    }
    await stop();
  }
}
