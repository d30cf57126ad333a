import { spawn } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type Child, spawnChild } from './ipc.js';
import {
  type CannonResult,
  DASHBOARD_SELECTION,
  type Sent,
  cannon,
  createJobs,
  driveUpdates,
  gql,
  now,
  percentile,
  pollEvery2s,
  replayFlood,
  sendUpdate,
} from './load.js';
import { busAnswers, jobTableCounters, startSimulatedInstances } from './scale.js';
import { type MixedRow, type MixedScenario, mixed } from './mixed.js';
import { EXPORT_DELAY_MS, type TracingMode, type TracingRow, startCollector, tracingEnv, tracingRound } from './tracing.js';
import { type WebhookDeliveryRow, type WebhookWriteRow, webhookDelivery, webhookWriteCost } from './webhooks.js';
import { type PgbenchRow, type WriteKind, type WriteRow, WRITE_KINDS, bareCeiling, drive, driveKind, gatewayBody, pgbenchRows } from './writes.js';

// `npm run bench [-- --quick | --smoke]`: the gateway in one process, the dashboards in another, on
// loopback, against the machine's ceiling (bare ws) and the usual yoga + graphql-ws + pubsub setup.
// A readable table, then one JSON object as the last line of stdout.

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    smoke: { type: 'boolean' },
    /** Write a CPU profile of each gateway process into this directory (node --cpu-prof). */
    profile: { type: 'string' },
    /** Node options for the gateway processes only (e.g. "--max-semi-space-size=8"), to compare runtime settings. */
    'gateway-node-options': { type: 'string' },
    /** Only the fan-out part, for profiling it. */
    'fanout-only': { type: 'boolean' },
    /** Only the fairness phase (a flooding key against another workspace's reads), with the limit and without. */
    'fairness-only': { type: 'boolean' },
    /** Only the writes phase (workers reporting progress, against a bare server and pgbench). */
    'writes-only': { type: 'boolean' },
    /** Only the webhooks phase: what recording events costs a write, and events per second to a receiver against a bare sender. */
    'webhooks-only': { type: 'boolean' },
    /** Only the cost of tracing: writes and reads with OpenTelemetry off, sampling every trace, and one in a hundred. */
    'tracing-only': { type: 'boolean' },
    /** Only the idle memory of `npm start` on each database. */
    'memory-only': { type: 'boolean' },
    /** Only the polling phase (dashboards polling one job against the same dashboards subscribed). */
    'polling-only': { type: 'boolean' },
    /** Only the reads phase (every read route, cache on and off, against a bare node:http + database server). */
    'reads-only': { type: 'boolean' },
    /** Only the soak: subscribers, steady updates and REST polling for a minute; memory and final states. */
    'soak-only': { type: 'boolean' },
    /**
     * Only the mixed load: subscribers over 20 workspaces, 50 reports/s from concurrent workers and
     * pollers, all at once on a freshly started gateway (first 2 s and steady state apart).
     */
    'mixed-only': { type: 'boolean' },
    /**
     * Only the cost of several instances on PostgreSQL: 3 gateways and 0, 8 and 32 simulated
     * instances, 200 writes/s over 50 workspaces (issue 25's proof, today without a bus).
     */
    'scale-only': { type: 'boolean' },
    /** Subscriber counts to run instead of the profile's (repeatable). */
    n: { type: 'string', multiple: true },
    /** Databases to run instead of the profile's (repeatable: embedded, postgres). */
    db: { type: 'string', multiple: true },
    /** With --fairness-only: only these attackers' rows (repeatable: "heavy misses", ...). */
    attacker: { type: 'string', multiple: true },
  },
});
type Db = 'embedded' | 'postgres';
const profile = flags.smoke
  ? {
      name: 'smoke',
      ns: [20],
      fanoutMs: 600,
      latencyMs: 1000,
      restS: 1,
      readJobs: 200,
      pollMs: 2500,
      dashboards: 20,
      soak: { subscribers: 20, seconds: 3, pollers: 5 },
      dbs: ['embedded'] as Db[],
      restDbs: ['embedded'] as Db[],
    }
  : flags.quick
    ? {
        name: 'quick',
        ns: [1000],
        fanoutMs: 2000,
        latencyMs: 1500,
        restS: 1,
        readJobs: 2000,
        pollMs: 3000,
        dashboards: 1000,
        soak: { subscribers: 1000, seconds: 20, pollers: 100 },
        dbs: ['embedded', 'postgres'] as Db[],
        restDbs: ['embedded', 'postgres'] as Db[],
      }
    : {
        name: 'full',
        ns: [1000, 10_000],
        fanoutMs: 8000,
        latencyMs: 12_000,
        restS: 8,
        readJobs: 2000,
        pollMs: 20_000,
        dashboards: 1000,
        soak: { subscribers: 1000, seconds: 60, pollers: 100 },
        dbs: ['embedded', 'postgres'] as Db[],
        restDbs: ['embedded', 'postgres'] as Db[],
      };

if (flags.n) profile.ns = flags.n.map(Number);
if (flags.db) profile.dbs = profile.restDbs = flags.db as Db[];

const POSTGRES_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const SUBSCRIPTION = `subscription { jobUpdated { ${DASHBOARD_SELECTION} } }`;
/** Steady rates for latency, below saturation: 5 updates/s at 1,000 subscribers, 1 per 2 s at 10,000. */
const steadyRate = (n: number) => (n >= 10_000 ? 0.5 : 5);

interface FanoutRow {
  db: Db;
  subscribers: number;
  deliveriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ceilingDeliveriesPerSec: number;
  naiveDeliveriesPerSec: number;
  rssPerSubscriberKiB: number;
  heapPerSubscriberKiB: number;
  payloadBytes: number;
  ceilingPayloadBytes: number;
}
interface ReadRow {
  db: Db;
  route: string;
  /** The response cache (RESPONSE_CACHE). */
  cache: 'on' | 'off';
  reqPerSec: number;
  p99Ms: number;
  /** The bare server's rate for the same read (the list for `jobs`, one job for `job`). */
  ceilingReqPerSec: number;
  ceilingP99Ms: number;
  dbQueriesPerRequest: number;
}

const began = performance.now();
/** Progress on stderr, each line with the seconds since the run began. */
const log = (line: string) => process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);

async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, what: string, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

interface SubStats {
  messages: number;
  bytes: number;
  sockets: number;
}

/** Deliveries per second the dashboards received while `drive` ran. */
async function measureDeliveries(subs: Child, drive: () => Promise<unknown>): Promise<{ perSec: number; bytesPerMessage: number }> {
  await subs.request({ cmd: 'reset' });
  const start = now();
  await drive();
  const stats = await subs.request<SubStats>({ cmd: 'stats' });
  const seconds = (now() - start) / 1000;
  return { perSec: stats.messages / seconds, bytesPerMessage: stats.messages ? stats.bytes / stats.messages : 0 };
}

async function freshDatabaseEnv(db: Db, tag: string): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (db === 'embedded') {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `jobs-gateway-bench-${tag}-`));
    return { env: { DATA_DIR: dir }, drop: () => fs.rm(dir, { recursive: true, force: true }) };
  }
  const schema = `bench_${tag}_${Date.now()}`;
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('schema', schema);
  return {
    env: { DATABASE_URL: url.toString() },
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    },
  };
}

// One key stands for thousands of dashboards here: its rate and connection limits are lifted
// (the fairness phase measures the rate limit with its default on).
const GATEWAY_ENV = {
  LOG_LEVEL: 'warn',
  MAX_CONNECTIONS_PER_KEY: '1000000',
  MAX_CONNECTIONS: '1000000',
  REPLAY_QUEUE_MAX: '1000000',
  RATE_LIMIT_PER_KEY: '0',
  // The throughput phases measure what one tenant can get from an instance; the fairness phase
  // sets the per-workspace limits itself.
  RESPONSE_BYTES_PER_WORKSPACE: '0',
};

async function startGateway(db: Db, tag: string, env: Record<string, string> = {}) {
  const database = await freshDatabaseEnv(db, tag);
  const profiling = flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(flags.profile)}`] : [];
  const nodeOptions = flags['gateway-node-options']?.split(' ').filter(Boolean) ?? [];
  const gateway = await spawnChild('./gateway-harness.ts', { ...GATEWAY_ENV, ...env, ...database.env }, ['--expose-gc', ...profiling, ...nodeOptions]);
  const url = await gateway.request<string>({ cmd: 'url' });
  const key = await gateway.request<string>({ cmd: 'createKey', workspace: 'bench' });
  return {
    gateway,
    url,
    key,
    stop: async () => {
      await gateway.stop();
      await database.drop();
    },
  };
}

/** The frame a dashboard receives for one job state, as the ceiling server sends it. */
function sampleFrame(): string {
  const steps = [
    ['collect', 'Collecting Intel', 'COMPLETED'],
    ['ingest', 'Processing Intel', 'RUNNING'],
    ['build-matrix', 'Building Competitor Matrix', 'PENDING'],
    ['build-battlecard', 'Generating Battle Card', 'PENDING'],
  ].map(([id, name, status]) => ({ id, name, status }));
  return JSON.stringify({
    id: '1',
    type: 'next',
    payload: {
      data: {
        jobUpdated: {
          id: '550e8400-e29b-41d4-a716-446655440000',
          status: 'RUNNING',
          progress: 0,
          currentStep: 'Collecting Intel',
          steps,
          updatedAt: '2026-12-05T09:00:00.000Z',
          changeCursor: '1234567',
        },
      },
    },
  });
}

async function ceilingFor(subs: Child, n: number): Promise<number> {
  const ceiling = await spawnChild('./ceiling-server.ts');
  try {
    const url = await ceiling.request<string>({ cmd: 'url' });
    await subs.request({ cmd: 'open', url, count: n, protocol: 'raw' });
    const { perSec } = await measureDeliveries(subs, () => ceiling.request({ cmd: 'blast', message: sampleFrame(), durationMs: profile.fanoutMs }));
    return perSec;
  } finally {
    await subs.request({ cmd: 'closeAll' });
    await ceiling.stop();
  }
}

/** Opens n dashboards on `url` and waits until one update reaches all of them. */
async function subscribeAll(
  subs: Child,
  url: string,
  key: string | undefined,
  n: number,
  jobIds: string[],
  subscription = SUBSCRIPTION,
  until?: () => Promise<boolean>,
) {
  await subs.request({
    cmd: 'open',
    url: url.replace(/^http/, 'ws') + '/graphql',
    count: n,
    protocol: 'graphql-ws',
    apiKey: key,
    subscribe: { query: subscription },
  });
  if (until) await waitUntil(until, 60_000, 'all subscribed');
  // Warm-up: updates until every dashboard has received one (the naive server cannot be asked).
  await subs.request({ cmd: 'reset' });
  await waitUntil(
    async () => {
      await driveUpdates(url, key, jobIds.slice(0, 1), 20, 50);
      return (await subs.request<SubStats>({ cmd: 'stats' })).messages >= n;
    },
    60_000,
    'warm-up update reached every dashboard',
  );
}

async function naiveFor(subs: Child, n: number, rate: number): Promise<number> {
  const naive = await spawnChild('./naive-server.ts');
  try {
    const url = await naive.request<string>({ cmd: 'url' });
    const jobIds = await createJobs(url, undefined, 4);
    await subscribeAll(subs, url, undefined, n, jobIds);
    const { perSec } = await measureDeliveries(subs, () => driveUpdates(url, undefined, jobIds, rate, profile.fanoutMs));
    return perSec;
  } finally {
    await subs.request({ cmd: 'closeAll' });
    await naive.stop();
  }
}

async function latencies(subs: Child, n: number, drive: () => Promise<Sent[]>): Promise<{ p50: number; p99: number }> {
  await subs.request({ cmd: 'reset' });
  await subs.request({ cmd: 'track', on: true });
  const sent = await drive();
  await waitUntil(async () => (await subs.request<SubStats>({ cmd: 'stats' })).messages >= sent.length * n, 10_000, 'steady updates delivered').catch(
    () => undefined,
  );
  await subs.request({ cmd: 'track', on: false });
  const receipts = await subs.request<Record<string, number[]>>({ cmd: 'receipts' });
  const samples: number[] = [];
  for (const { state, respondedAt } of sent) {
    // A push can beat the worker's own HTTP response back to it: that counts as zero.
    for (const at of receipts[state] ?? []) samples.push(Math.max(0, at - respondedAt));
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

interface GatewayStats {
  queries: number;
  executions: number;
  feedReads: number;
  feedAnnouncements: number;
  feedMode?: 'reader' | 'follower' | 'fallback';
  busPublished: number;
  busReceived: number;
  busRepairs: number;
  feedDispatches: number;
  feedDispatched: number;
  subscribers: number;
  bytesWritten: number;
}

/**
 * Every read route, REST and GraphQL, side by side with a bare node:http server running the same
 * SELECT on the same jobs (read-ceiling-server.ts): the gateway with its response cache on (a poll
 * of the same page), and off (every request reads the database).
 */
async function reads(db: Db): Promise<ReadRow[]> {
  const runs = (url: string, key: string, jobId: string, token: string): Array<[string, Parameters<typeof cannon>[0]]> => {
    const headers = { 'x-api-key': key };
    const json = { ...headers, 'content-type': 'application/json' };
    const fields = 'id workspaceId competitorId type displayTitle status progress currentStep steps { id name status } startedAt completedAt metadata';
    return [
      ['GET /api/jobs?limit=50', { url: `${url}/api/jobs?limit=50`, headers, durationS: profile.restS, connections: 10 }],
      [
        'POST /graphql jobs(limit: 50)',
        {
          url: `${url}/graphql`,
          method: 'POST',
          headers: json,
          body: JSON.stringify({ query: `{ jobs(limit: 50) { ${fields} } }` }),
          durationS: profile.restS,
          connections: 10,
        },
      ],
      ['GET /api/jobs/{id}', { url: `${url}/api/jobs/${jobId}`, headers, durationS: profile.restS, connections: 10 }],
      // The same read by a page holding an access token for that job: verifying it, and its restriction, per request.
      [
        'GET /api/jobs/{id} (access token)',
        { url: `${url}/api/jobs/${jobId}`, headers: { authorization: `Bearer ${token}` }, durationS: profile.restS, connections: 10 },
      ],
      [
        'POST /graphql job(id)',
        {
          url: `${url}/graphql`,
          method: 'POST',
          headers: json,
          body: JSON.stringify({ query: `{ job(id: "${jobId}") { ${fields} } }` }),
          durationS: profile.restS,
          connections: 10,
        },
      ],
    ];
  };
  const measure = async (options: Parameters<typeof cannon>[0], what: string) => {
    // Warm up first (JIT, pools, caches), so that nothing is measured cold.
    // (The smoke run only checks that every figure comes out: no warm-up.)
    const warmUp = flags.smoke ? { requests: 0, non2xx: 0 } : await cannon({ ...options, durationS: 1 });
    const result = await cannon(options);
    if (result.non2xx + warmUp.non2xx > 0) throw new Error(`${what}: ${result.non2xx + warmUp.non2xx} failed requests`);
    return { ...result, warmUpRequests: warmUp.requests };
  };

  const env: Record<string, string> = db === 'postgres' ? { BARE_DATABASE_URL: POSTGRES_URL, BARE_SCHEMA: `bench_bare_reads_${Date.now()}` } : {};
  const bare = await spawnChild('./read-ceiling-server.ts', env);
  const ceiling = new Map<string, CannonResult>();
  try {
    const bareUrl = await bare.request<string>({ cmd: 'url' });
    const [bareJob] = await bare.request<string[]>({ cmd: 'seedJobs', count: profile.readJobs });
    ceiling.set('list', await measure({ url: `${bareUrl}/api/jobs?limit=50`, headers: {}, durationS: profile.restS, connections: 10 }, 'bare list'));
    ceiling.set('one', await measure({ url: `${bareUrl}/api/jobs/${bareJob}`, headers: {}, durationS: profile.restS, connections: 10 }, 'bare job'));
  } finally {
    await bare.stop();
  }
  log(`reads (${db}): bare list ${Math.round(ceiling.get('list')!.reqPerSec)}/s, one job ${Math.round(ceiling.get('one')!.reqPerSec)}/s`);

  const rows: ReadRow[] = [];
  for (const cache of [true, false]) {
    const { gateway, url, key, stop } = await startGateway(db, 'reads', { RESPONSE_CACHE: String(cache) });
    try {
      const [jobId] = await gateway.request<string[]>({ cmd: 'seedJobs', key, count: profile.readJobs });
      const minted = await fetch(`${url}/api/tokens`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ scopes: ['jobs:read'], jobId, ttlMs: 3_600_000 }),
      });
      const { token } = (await minted.json()) as { token: string };
      for (const [route, options] of runs(url, key, jobId!, token)) {
        const before = await gateway.request<GatewayStats>({ cmd: 'stats' });
        const result = await measure(options, `${route} (${db}, cache ${cache})`);
        const after = await gateway.request<GatewayStats>({ cmd: 'stats' });
        const bareRow = ceiling.get(route.includes('limit') ? 'list' : 'one')!;
        rows.push({
          db,
          route,
          cache: cache ? 'on' : 'off',
          reqPerSec: Math.round(result.reqPerSec),
          p99Ms: result.p99Ms,
          ceilingReqPerSec: Math.round(bareRow.reqPerSec),
          ceilingP99Ms: bareRow.p99Ms,
          // Counted over the measurement and its warm-up alike (the counters cannot tell them apart).
          dbQueriesPerRequest: round((after.queries - before.queries) / Math.max(1, result.requests + result.warmUpRequests), 3),
        });
        log(`reads (${db}, cache ${cache ? 'on' : 'off'}): ${JSON.stringify(rows.at(-1))}`);
      }
    } finally {
      await stop();
    }
  }
  return rows;
}

/**
 * Dashboards polling one job every 2 s (spread evenly), as the old clients do, while a worker moves
 * it: the gateway's database queries and bytes written per second. Aborting ends the loops and the
 * pollers' waits at once when the measurement is over.
 */
async function pollLoad({ gateway, url, key }: { gateway: Child; url: string; key: string }, jobId: string, dashboards: number, updatesPerSec: number) {
  const stats = () => gateway.request<GatewayStats>({ cmd: 'stats' });
  const polling = pollEvery2s(`${url}/api/jobs/${jobId}`, key, dashboards);
  await new Promise((resolve) => setTimeout(resolve, 2000)); // every poller has started
  const before = await stats();
  const start = now();
  await driveUpdates(url, key, [jobId], updatesPerSec, profile.pollMs);
  const after = await stats();
  const seconds = (now() - start) / 1000;
  await polling.stop();
  return { queries: (after.queries - before.queries) / seconds, bytes: (after.bytesWritten - before.bytesWritten) / seconds };
}

/**
 * On a running embedded gateway whose dashboards have all disconnected: polling (response cache on,
 * as shipped), then the same dashboards subscribed instead; and polling on a second gateway with
 * RESPONSE_CACHE=false, for what the cache saves.
 */
async function pollingAgainstPush(subs: Child, started: { gateway: Child; url: string; key: string }) {
  const { gateway, url, key } = started;
  const [jobId] = await createJobs(url, key, 1);
  const dashboards = profile.dashboards;
  // A job that moves every 2 s: as often as the old dashboards poll it.
  const updatesPerSec = 0.5;
  const stats = () => gateway.request<GatewayStats>({ cmd: 'stats' });

  const poll = await pollLoad(started, jobId!, dashboards, updatesPerSec);
  log(`polling: ${round(poll.queries)} queries/s`);

  // Push: the same dashboards hold a subscription to that job instead.
  await subscribeAll(subs, url, key, dashboards, [jobId!], `subscription { jobUpdated(id: "${jobId}") { ${DASHBOARD_SELECTION} } }`);
  const pushBefore = await stats();
  const start = now();
  await driveUpdates(url, key, [jobId!], updatesPerSec, profile.pollMs);
  await new Promise((resolve) => setTimeout(resolve, 200)); // the last update's fan-out
  const pushAfter = await stats();
  const seconds = (now() - start) / 1000;
  await subs.request({ cmd: 'closeAll' });
  const push = { queries: (pushAfter.queries - pushBefore.queries) / seconds, bytes: (pushAfter.bytesWritten - pushBefore.bytesWritten) / seconds };
  log(`push: ${round(push.queries)} queries/s`);

  const uncachedGateway = await startGateway('embedded', 'poll-uncached', { RESPONSE_CACHE: 'false' });
  let uncached: { queries: number; bytes: number };
  try {
    const [uncachedJob] = await createJobs(uncachedGateway.url, uncachedGateway.key, 1);
    uncached = await pollLoad(uncachedGateway, uncachedJob!, dashboards, updatesPerSec);
  } finally {
    await uncachedGateway.stop();
  }
  log(`polling with RESPONSE_CACHE=false: ${round(uncached.queries)} queries/s`);
  return {
    dashboards,
    updatesPerSec,
    pollDbQueriesPerSec: round(poll.queries),
    pushDbQueriesPerSec: round(push.queries),
    pollUncachedDbQueriesPerSec: round(uncached.queries),
    pollBytesPerSec: Math.round(poll.bytes),
    pushBytesPerSec: Math.round(push.bytes),
  };
}

interface MemoryRow {
  db: Db;
  /**
   * Every process `npm start` runs (npm and the server), idle, on a database it has started on
   * before: once the idle server has released memory (RELEASE_IDLE_MEMORY; at most a minute).
   */
  idleRssMiB: number;
  /** The server process alone, in the same start. */
  serverIdleRssMiB: number;
  /** The server process 5 s after it listens, in the same start: before an idle check has run. */
  serverJustStartedRssMiB: number;
  /** The same at the very first start: for the embedded database that includes initdb, whose memory PGlite keeps. */
  firstStartRssMiB: number;
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The RSS of `pid` and every process under it, and of the one among them running the server (dist/main.js). */
async function treeRssMiB(pid: number): Promise<{ tree: number; server: number }> {
  const parents = new Map<number, number>();
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // The fields after the command name (which may hold spaces and parentheses): state, ppid, ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[1]) parents.set(Number(entry), Number(fields[1]));
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  let kib = 0;
  let serverKib = 0;
  for (const member of tree) {
    const status = await fs.readFile(`/proc/${member}/status`, 'utf8').catch(() => '');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    kib += rss;
    const command = await fs.readFile(`/proc/${member}/cmdline`, 'utf8').catch(() => '');
    if (command.includes('dist/main.js')) serverKib = rss;
  }
  return { tree: kib / 1024, server: serverKib / 1024 };
}

/**
 * `npm start` as the README documents it, idle: all its processes' RSS 5 s after it listens, and
 * 35 s after (the idle checks run every 10 s; the first covers the warm-up, so the second may hand
 * memory back, see idle-memory.ts). Nothing asks it anything meanwhile: a scrape every 500 ms alone
 * kept its event loop busy 2% of the time, and whether it is idle is what decides.
 */
async function idleMemory(db: Db): Promise<MemoryRow> {
  const database = await freshDatabaseEnv(db, 'idle');
  const measure = async () => {
    const child = spawn('npm', ['start', '--silent'], {
      cwd: ROOT,
      env: { ...process.env, ...database.env, PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('listening on')) resolve();
      });
      void exited.then(() => reject(new Error(`npm start exited before listening: ${out}`)));
    });
    await sleep(flags.smoke ? 500 : 5_000);
    const justStarted = await treeRssMiB(child.pid!);
    // The smoke run only checks that the figures come out.
    if (!flags.smoke) await sleep(30_000);
    const idle = flags.smoke ? justStarted : await treeRssMiB(child.pid!);
    child.kill('SIGTERM');
    await exited;
    return { tree: round(idle.tree), server: round(idle.server), serverJustStarted: round(justStarted.server) };
  };
  try {
    const first = await measure();
    // The smoke run only checks that the figures come out: one start.
    const idle = flags.smoke ? first : await measure();
    return { db, idleRssMiB: idle.tree, serverIdleRssMiB: idle.server, serverJustStartedRssMiB: idle.serverJustStarted, firstStartRssMiB: first.tree };
  } finally {
    await database.drop();
  }
}

interface SoakRow {
  db: Db;
  subscribers: number;
  seconds: number;
  updatesPerSec: number;
  pollsPerSec: number;
  pollFailures: number;
  /** The gateway's heap and RSS after a full GC, from the start of the steady state to its end. */
  heapMiB: number[];
  rssMiB: number[];
  heapGrowthMiB: number;
  /** (Subscriber, job) pairs whose newest state is not the database's at the end, of all pairs. */
  finalStatesMissing: number;
  finalStatePairs: number;
  socketsClosed: number;
}

/** Updates per second in the soak: 20 across 50 jobs, 20,000 deliveries/s at 1,000 subscribers. */
const SOAK_UPDATES_PER_SEC = 20;

/**
 * The soak: subscribers following the workspace while a worker reports steadily and old dashboards
 * poll the list over REST beside them, for a minute. Memory (after a GC) sampled through it, and at
 * the end, every subscriber's newest state of every job against what the database holds.
 */
async function soak(subs: Child, db: Db): Promise<SoakRow> {
  const { subscribers, seconds, pollers } = profile.soak;
  const { gateway, url, key, stop } = await startGateway(db, 'soak');
  const memory = async () => {
    const { rss, heapUsed } = await gateway.request<{ rss: number; heapUsed: number }>({ cmd: 'memory' });
    return { rss: round(rss / 2 ** 20), heap: round(heapUsed / 2 ** 20) };
  };
  try {
    const jobIds = await createJobs(url, key, 50);
    await subscribeAll(
      subs,
      url,
      key,
      subscribers,
      jobIds,
      SUBSCRIPTION,
      async () => (await gateway.request<GatewayStats>({ cmd: 'stats' })).subscribers >= subscribers,
    );
    await subs.request({ cmd: 'newest', on: true });
    let polls = 0;
    let pollFailures = 0;
    const polling = pollEvery2s(`${url}/api/jobs?limit=50`, key, pollers, (status) => (status === 200 ? polls++ : pollFailures++));
    const samples = [await memory()];
    let driving = true;
    const sampling = (async () => {
      while (driving) {
        await sleep((seconds * 1000) / 6);
        if (driving) samples.push(await memory());
      }
    })();
    const start = now();
    const sent = await driveUpdates(url, key, jobIds, SOAK_UPDATES_PER_SEC, seconds * 1000);
    const elapsed = (now() - start) / 1000;
    driving = false;
    await Promise.all([sampling, polling.stop()]);
    const pollsPerSec = round(polls / elapsed);

    // Final states: what the database holds, against each subscriber's newest.
    const { jobs } = await gql<{ jobs: Array<{ id: string; changeCursor: string }> }>(url, key, '{ jobs(limit: 50) { id changeCursor } }');
    const expected = Object.fromEntries(jobs.map((job) => [job.id, job.changeCursor]));
    const check = () => subs.request<{ missing: number; pairs: number; closed: number }>({ cmd: 'checkFinal', expected });
    await waitUntil(async () => (await check()).missing === 0, 15_000, 'final states delivered').catch(() => undefined);
    const final = await check();
    samples.push(await memory());
    return {
      db,
      subscribers,
      seconds: round(elapsed),
      updatesPerSec: round(sent.length / elapsed),
      pollsPerSec,
      pollFailures,
      heapMiB: samples.map((sample) => sample.heap),
      rssMiB: samples.map((sample) => sample.rss),
      heapGrowthMiB: round(samples.at(-1)!.heap - samples[0]!.heap),
      finalStatesMissing: final.missing,
      finalStatePairs: final.pairs,
      socketsClosed: final.closed,
    };
  } finally {
    await subs.request({ cmd: 'newest', on: false });
    await subs.request({ cmd: 'closeAll' });
    await stop();
  }
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

interface FairnessRow {
  db: Db;
  /**
   * One key flooding the list route; one address sending a never-issued key on every request; one
   * key asking for 200 jobs with their 64 KiB metadata over 8 connections (inside every limit),
   * the same document every time ("heavy results", served from the cache after the first) or a
   * new one each time ("heavy misses", which no cache serves); or one socket resuming 100
   * subscriptions of those jobs' metadata ("metadata replays").
   */
  /** "busy neighbour" is the reference for the others: a process on the same machine that keeps a core busy and sends nothing. */
  attacker: 'key flood' | 'bad keys' | 'heavy results' | 'heavy misses' | 'metadata replays' | 'busy neighbour';
  rateLimitPerKey: number;
  badKeyLimitPerAddress: number;
  /** RESPONSE_BYTES_PER_WORKSPACE, MiB/s (0: no budget). */
  responseMiBPerSec: number;
  quietP50Ms: number;
  floodP50Ms: number;
  /** floodP50Ms / quietP50Ms: the goal is at most 2. */
  ratio: number;
  /** The bystander's progress reports (a mutation), quiet and attacked. */
  quietWriteP50Ms: number;
  floodWriteP50Ms: number;
  writeRatio: number;
  floodReqPerSec: number;
  floodRefusedPerSec: number;
  /** What the attacker was sent, MB/s. */
  floodMBPerSec: number;
  /** The gateway's longest event-loop delay while attacked (the goal for heavy results: under 100 ms). */
  longestPauseMs: number;
  /** Its 99th percentile while attacked. */
  pauseP99Ms: number;
  /** The longest delay in the quiet phase, with only the bystander: what the machine itself gives. */
  quietPauseMs: number;
}

interface FairnessOptions {
  attacker?: FairnessRow['attacker'];
  rateLimitPerKey?: number;
  badKeyLimitPerAddress?: number;
  /** RESPONSE_BYTES_PER_WORKSPACE in MiB/s; the gateway's default when absent. */
  responseMiBPerSec?: number;
}

const HEAVY_QUERY = '{ jobs(limit: 200) { id metadata } }';
const HEAVY_REPLAY = 'subscription { jobUpdated(after: "0") { id metadata } }';
const DEFAULT_RESPONSE_MIB_PER_SEC = 8;

/**
 * An attacker in one workspace while a dashboard of another reads its one job in a loop and a
 * worker of it reports progress in another: their p50s, quiet and during the attack.
 */
async function fairness(db: Db, options: FairnessOptions = {}): Promise<FairnessRow> {
  const { attacker = 'key flood', rateLimitPerKey = 200, badKeyLimitPerAddress = 20, responseMiBPerSec = DEFAULT_RESPONSE_MIB_PER_SEC } = options;
  const heavy = attacker === 'heavy results' || attacker === 'heavy misses' || attacker === 'metadata replays';
  const { gateway, url, stop } = await startGateway(db, 'fair', {
    RATE_LIMIT_PER_KEY: String(rateLimitPerKey),
    BAD_KEY_LIMIT_PER_ADDRESS: String(badKeyLimitPerAddress),
    RESPONSE_BYTES_PER_WORKSPACE: String(responseMiBPerSec * 1024 * 1024),
  });
  try {
    const flooder = await gateway.request<string>({ cmd: 'createKey', workspace: 'flooder' });
    const bystander = await gateway.request<string>({ cmd: 'createKey', workspace: 'bystander' });
    if (heavy) await gateway.request({ cmd: 'seedHeavyJobs', key: flooder, count: 200 }, 300_000);
    else await createJobs(url, flooder, 50);
    const [jobId] = await createJobs(url, bystander, 1);
    const durationS = Math.max(2, profile.restS * 2);
    // At a dashboard's and a worker's pace, well inside the key's rate limit: what is measured is
    // what the attacker does to them, not their own limit.
    const loop = async (until: number, request: () => Promise<Response>, everyMs: number) => {
      const latencies: number[] = [];
      while (performance.now() < until) {
        const started = performance.now();
        const next = started + everyMs;
        const response = await request();
        const text = await response.text();
        // A GraphQL error answers 200 too: only what succeeded is counted.
        if (response.status === 200 && !text.startsWith('{"errors"') && !text.includes('"errors":[')) latencies.push(performance.now() - started);
        else failures.add(`${response.status} ${text.slice(0, 200)}`);
        if (next > performance.now()) await sleep(next - performance.now());
      }
      return percentile(
        latencies.sort((a, b) => a - b),
        50,
      );
    };
    const failures = new Set<string>();
    const read = () => fetch(`${url}/api/jobs/${jobId}`, { headers: { 'x-api-key': bystander } });
    const write = () =>
      fetch(`${url}/graphql`, { method: 'POST', headers: { 'x-api-key': bystander, 'content-type': 'application/json' }, body: gatewayBody([jobId!])(0) });
    const victim = (until: number) => Promise.all([loop(until, read, 10), loop(until, write, 20)]);
    await victim(performance.now() + 500); // warm-up
    await gateway.request({ cmd: 'loopDelayReset' });
    const [quietP50Ms, quietWriteP50Ms] = await victim(performance.now() + durationS * 1000);
    const quietPauseMs = await gateway.request<number>({ cmd: 'loopDelayMaxMs' });
    await gateway.request({ cmd: 'loopDelayReset' });
    const bytesBefore = (await gateway.request<GatewayStats>({ cmd: 'stats' })).bytesWritten;
    let misses = 0;
    const graphqlFlood = (bodies?: () => string) =>
      cannon({
        url: `${url}/graphql`,
        method: 'POST',
        headers: { 'x-api-key': flooder, 'content-type': 'application/json' },
        body: JSON.stringify({ query: HEAVY_QUERY }),
        durationS,
        connections: 8,
        ...(bodies ? { bodies } : {}),
      });
    const attack = async (): Promise<CannonResult> => {
      if (attacker === 'key flood') return cannon({ url: `${url}/api/jobs?limit=50`, headers: { 'x-api-key': flooder }, durationS, connections: 50 });
      if (attacker === 'bad keys') return cannon({ url: `${url}/api/jobs/${jobId}`, headers: {}, durationS, connections: 50, randomKeys: true });
      if (attacker === 'heavy results') return graphqlFlood();
      if (attacker === 'busy neighbour') {
        // On two cores the attackers' clients and PostgreSQL take CPU from the gateway too: this
        // row is how long its loop waits when that is all that happens.
        const spinner = spawn(process.execPath, ['-e', `const end = Date.now() + ${durationS * 1000}; while (Date.now() < end);`], { stdio: 'ignore' });
        await new Promise((resolve) => spinner.once('exit', resolve));
        return { reqPerSec: 0, p99Ms: 0, non2xx: 0, requests: 0 };
      }
      if (attacker === 'heavy misses') return graphqlFlood(() => JSON.stringify({ query: `{ jobs(limit: 200) { id metadata } miss${++misses}: __typename }` }));
      const { messages } = await replayFlood(`${url.replace(/^http/, 'ws')}/graphql`, flooder, HEAVY_REPLAY, 100, durationS);
      return { reqPerSec: messages / durationS, p99Ms: 0, non2xx: 0, requests: messages };
    };
    const [flood, [floodP50Ms, floodWriteP50Ms]] = await Promise.all([attack(), victim(performance.now() + durationS * 1000)]);
    const bytesAfter = (await gateway.request<GatewayStats>({ cmd: 'stats' })).bytesWritten;
    if (failures.size > 0) log(`fairness (${attacker}): the bystander's requests failed: ${[...failures].slice(0, 3).join(' | ')}`);
    return {
      db,
      attacker,
      rateLimitPerKey,
      badKeyLimitPerAddress,
      responseMiBPerSec,
      quietP50Ms: round(quietP50Ms, 2),
      floodP50Ms: round(floodP50Ms, 2),
      ratio: round(floodP50Ms / quietP50Ms, 2),
      quietWriteP50Ms: round(quietWriteP50Ms, 2),
      floodWriteP50Ms: round(floodWriteP50Ms, 2),
      writeRatio: round(floodWriteP50Ms / quietWriteP50Ms, 2),
      floodReqPerSec: Math.round(flood.reqPerSec),
      floodRefusedPerSec: Math.round(flood.non2xx / durationS),
      floodMBPerSec: round((bytesAfter - bytesBefore) / 1e6 / durationS),
      longestPauseMs: round(await gateway.request<number>({ cmd: 'loopDelayMaxMs' }), 1),
      pauseP99Ms: round(await gateway.request<number>({ cmd: 'loopDelayP99Ms' }), 1),
      quietPauseMs: round(quietPauseMs, 1),
    };
  } finally {
    await stop();
  }
}

/** Workers reporting progress on jobs of their own through the gateway, beside the bare write ceiling. */
type WriteKindRow = { db: Db; kind: WriteKind; workers: number; writesPerSec: number; p99Ms: number };
type WritesResult = { rows: WriteRow[]; kinds: WriteKindRow[]; database: PgbenchRow[] | undefined };

async function writes(): Promise<WritesResult> {
  const rows: WriteRow[] = [];
  const kinds: WriteKindRow[] = [];
  const workerCounts = flags.smoke ? [1, 8] : [1, 8, 32];
  for (const db of profile.restDbs) {
    const { gateway, url, key, stop } = await startGateway(db, 'writes');
    try {
      const jobIds = await createJobs(url, key, Math.max(...workerCounts));
      for (const workers of workerCounts) {
        const measured = await drive(`${url}/graphql`, { 'x-api-key': key }, gatewayBody(jobIds), workers, profile.restS);
        const ceiling = await bareCeiling(db, POSTGRES_URL, workers, profile.restS);
        if (measured.failed > 0 || ceiling.failed > 0)
          throw new Error(`writes (${db}, ${workers} workers): ${measured.failed} gateway and ${ceiling.failed} bare requests failed`);
        rows.push({
          db,
          workers,
          writesPerSec: Math.round(measured.perSec),
          p50Ms: round(measured.p50),
          p99Ms: round(measured.p99),
          ceilingWritesPerSec: Math.round(ceiling.perSec),
          ceilingP99Ms: round(ceiling.p99),
        });
        log(`writes (${db}, ${workers} workers): ${JSON.stringify(rows.at(-1))}`);
      }
      // The kinds of worker writes side by side, 8 workers each, rounds alternating so that drift hits all alike.
      const kindSeconds = flags.smoke ? 1 : Math.max(profile.restS, 3);
      for (let pass = 0; pass < (flags.smoke ? 1 : 2); pass++) {
        for (const kind of Object.keys(WRITE_KINDS) as WriteKind[]) {
          const measured = await driveKind(`${url}/graphql`, { 'x-api-key': key }, kind, jobIds.slice(0, 8), 8, kindSeconds);
          if (measured.failed > 0) throw new Error(`writes (${db}, ${kind}): ${measured.failed} requests failed`);
          kinds.push({ db, kind, workers: 8, writesPerSec: Math.round(measured.perSec), p99Ms: round(measured.p99) });
          log(`writes (${db}, ${kind}): ${JSON.stringify(kinds.at(-1))}`);
        }
      }
      const stats = await gateway.request<{ feedReads: number }>({ cmd: 'stats' });
      log(`writes (${db}): ${stats.feedReads} feed reads in all`);
    } finally {
      await stop();
    }
  }
  const database = profile.restDbs.includes('postgres') ? await pgbenchRows(POSTGRES_URL, [1, 8, 32], flags.quick ? 3 : 8) : undefined;
  if (database) log(`pgbench: ${JSON.stringify(database)}`);
  return { rows, kinds, database };
}

function printWrites(result: WritesResult) {
  console.log(
    '\nWrites: workers each reporting progress on a job of their own (updateJobProgress), against a bare node:http server running the same UPDATE with no trigger',
  );
  console.table(result.rows.map((r) => ({ ...r, '% of ceiling': round((100 * r.writesPerSec) / r.ceilingWritesPerSec) })));
  console.log('Kinds of worker writes, 8 workers, two rounds each: % of updateJobProgress in the same round');
  console.table(
    result.kinds.map((r, i) => {
      const progress = result.kinds.slice(0, i + 1).findLast((p) => p.db === r.db && p.kind === 'updateJobProgress')!;
      return { ...r, '% of updateJobProgress': round((100 * r.writesPerSec) / progress.writesPerSec) };
    }),
  );
  if (result.database) printPgbench(result.database);
}

/** pgbench's transactions/s per schema, each as a share of the schema without triggers at the same clients. */
function printPgbench(rows: PgbenchRow[]) {
  console.log('Database alone (pgbench, 2,000 jobs, one UPDATE of a random job per transaction), transactions/s');
  const plain = (clients: number) => rows.find((r) => r.clients === clients && r.schema.startsWith('no triggers'))!.tps;
  console.table(rows.map((r) => ({ ...r, '% of no triggers': round((100 * r.tps) / plain(r.clients)) })));
}

type WebhooksResult = { writes: WebhookWriteRow[]; delivery: WebhookDeliveryRow[]; database: PgbenchRow[] | undefined };

/** Webhooks on each database: the cost on a progress report, delivery to a local receiver; then pgbench with the webhook schemas. */
async function webhooks(withPgbench: boolean): Promise<WebhooksResult> {
  const writes: WebhookWriteRow[] = [];
  const delivery: WebhookDeliveryRow[] = [];
  for (const db of profile.restDbs) {
    const { gateway, url, stop } = await startGateway(db, 'webhooks', { WEBHOOK_ALLOW_PRIVATE: 'true' });
    try {
      const key = await gateway.request<string>({ cmd: 'createKey', workspace: 'bench', scopes: ['jobs:read', 'jobs:write', 'webhooks:manage'] });
      const jobIds = await createJobs(url, key, 8);
      const seconds = flags.smoke ? 1 : Math.max(profile.restS, 3);
      writes.push(...(await webhookWriteCost(db, { url, key }, jobIds, seconds, flags.smoke ? 1 : 2)));
      log(`webhooks (${db}) writes: ${JSON.stringify(writes.slice(-4))}`);
      delivery.push(await webhookDelivery(db, { url, key }, flags.smoke ? 50 : 1000));
      log(`webhooks (${db}) delivery: ${JSON.stringify(delivery.at(-1))}`);
    } finally {
      await stop();
    }
  }
  // The full run has pgbench in its writes phase already (the webhook schemas included).
  const database = withPgbench && profile.restDbs.includes('postgres') ? await pgbenchRows(POSTGRES_URL, [1, 8, 32], flags.quick ? 3 : 8) : undefined;
  if (database) log(`pgbench: ${JSON.stringify(database)}`);
  return { writes, delivery, database };
}

function printWebhooks(result: WebhooksResult) {
  console.log('\nWebhooks: progress reports by 8 workers, without and with an endpoint taking job.progress (rounds alternating)');
  console.table(
    result.writes.map((r) => {
      const off = result.writes.find((o) => o.db === r.db && o.round === r.round && o.endpoint === 'none')!;
      return { ...r, '% of none': round((100 * r.writesPerSec) / off.writesPerSec) };
    }),
  );
  console.log(
    'Webhook delivery: jobs created and completed by 8 workers, job.created + job.completed to a receiver here; the bare sender POSTs as many signed bodies, 8 at once',
  );
  console.table(result.delivery.map((r) => ({ ...r, '% of bare': round((100 * r.eventsPerSec) / r.bareRequestsPerSec) })));
  if (result.database) printPgbench(result.database);
}

/** Each mode on a gateway of its own, in alternating rounds so that drift hits all alike. */
async function tracingCost(): Promise<TracingRow[]> {
  const rows: TracingRow[] = [];
  const collector = await startCollector();
  const seconds = flags.smoke ? 1 : Math.max(profile.restS, 3);
  try {
    for (const db of profile.restDbs) {
      for (let round = 1; round <= (flags.smoke ? 1 : 2); round++) {
        for (const tracing of ['off', '100%', '1%'] as TracingMode[]) {
          const { url, key, stop } = await startGateway(db, 'tracing', tracingEnv(tracing, collector.url));
          try {
            const jobIds = await createJobs(url, key, 8);
            const before = collector.spans();
            const measured = await tracingRound({ url, key }, jobIds, seconds);
            rows.push({ db, round, tracing, ...measured, spans: 0 });
            // What the round's spans were, once the last batch is out.
            await sleep(tracing === 'off' ? 0 : EXPORT_DELAY_MS + 500);
            rows.at(-1)!.spans = collector.spans() - before;
            log(`tracing (${db}): ${JSON.stringify(rows.at(-1))}`);
          } finally {
            await stop();
          }
        }
      }
    }
  } finally {
    await collector.close();
  }
  return rows;
}

function printTracing(rows: TracingRow[]) {
  console.log(
    '\nTracing: 8 workers reporting progress, then 8 readers listing jobs, with OpenTelemetry off, sampling all traces and 1 in 100 (rounds alternating)',
  );
  console.table(
    rows.map((r) => {
      const off = rows.find((o) => o.db === r.db && o.round === r.round && o.tracing === 'off')!;
      return { ...r, 'writes % of off': round((100 * r.writesPerSec) / off.writesPerSec), 'reads % of off': round((100 * r.readsPerSec) / off.readsPerSec) };
    }),
  );
}

/**
 * The mixed load's scenarios: latency with 100 subscribers, without and with 1,000 pollers, on each
 * database; then 10,000 subscribers with the pollers on PostgreSQL.
 */
async function mixedRows(): Promise<MixedRow[]> {
  const seconds = flags.smoke ? 4 : flags.quick ? 20 : 60;
  const base = { workspaces: 20, jobsPerWorkspace: 10, reportsPerSec: 50, seconds };
  const scenarios: Array<[Db, MixedScenario]> = [];
  const pollers = flags.smoke ? 20 : 1000;
  // Latency at a few subscribers without and with the pollers, on each database; the crowd (10,000)
  // with the pollers, on PostgreSQL. `--n` picks the subscriber counts.
  const counts = flags.n ? profile.ns : flags.smoke ? [20] : [100, 10_000];
  for (const subscribers of counts) {
    const crowd = subscribers > 1_000;
    for (const db of profile.restDbs.filter((d) => !crowd || d === 'postgres')) {
      if (!crowd) scenarios.push([db, { ...base, subscribers, pollers: 0 }]);
      scenarios.push([db, { ...base, subscribers, pollers }]);
    }
  }
  const rows: MixedRow[] = [];
  for (const [db, scenario] of scenarios) {
    rows.push(await mixed(db, scenario, () => startGateway(db, 'mixed'), log));
    log(`mixed: ${JSON.stringify(rows.at(-1))}`);
  }
  return rows;
}

function printMixed(rows: MixedRow[]) {
  console.log(
    "\nMixed load on a freshly started gateway: 20 workspaces, 50 reports/s from concurrent workers, pollers asking for one job every 2 s (ms; delivery from the report's request to the subscriber)",
  );
  console.table(
    rows.flatMap((r) =>
      (['first2s', 'steady'] as const).map((phase) => ({
        db: r.db,
        subscribers: r.subscribers,
        pollers: r.pollers,
        phase,
        'delivery p50': r.delivery[phase].p50,
        'delivery p99': r.delivery[phase].p99,
        'delivery max': r.delivery[phase].max,
        'report p99': r.report[phase].p99,
        'poll p99': r.poll[phase].p99,
      })),
    ),
  );
  console.table(
    rows.map((r) => ({
      db: r.db,
      subscribers: r.subscribers,
      pollers: r.pollers,
      delivered: r.deliveredShare,
      reportFailures: r.reportFailures,
      pollFailures: r.pollFailures,
      finalStatesMissing: r.finalStatesMissing,
      socketsClosed: r.socketsClosed,
    })),
  );
}

interface ScaleRow {
  /** The feed bus the gateways (and simulated instances) use: none, or NATS. */
  bus: 'none' | 'nats';
  gateways: number;
  simulated: number;
  /** The reader gateway was killed (SIGKILL) halfway through the run. */
  readerKilled: boolean;
  subscribers: number;
  changesPerSec: number;
  /** Feed reads (horizon and changes: two statements each) of every instance, per change written. */
  feedReadsPerChange: number;
  /** Scans of the jobs table and rows they read (PostgreSQL's counters), per change: the writes' own included. */
  jobScansPerChange: number;
  jobRowsReadPerChange: number;
  /** Catch-up reads while the statistics settled after the run (included in the two above). */
  idleFeedReads: number;
  /** NOTIFYs the gateways sent (one per batch of their writes), per change. */
  notifiesPerChange: number;
  /** Messages published on the bus by every instance, and received by them, per change. */
  busPublishedPerChange: number;
  busReceivedPerChange: number;
  /** Gap repairs (one workspace's changes read from PostgreSQL) of every instance during the run. */
  busRepairs: number;
  /** From the reader's kill to another gateway reading, as their stats show it (polled every 20 ms). */
  takeoverMs: number | null;
  /** Writes that failed (those sent to the killed gateway). */
  writesFailed: number;
  p50Ms: number;
  p99Ms: number;
  /** (Subscriber, job) pairs whose newest state is not the database's at the end, of all pairs (open sockets). */
  finalStatesMissing: number;
  finalStatePairs: number;
}

const STATS_FLUSH_MS = 11_000;
const SCALE = { gateways: 3, workspaces: 50, jobsPerWorkspace: 2, writesPerSec: 200, seconds: 20, simulated: [0, 8, 32] } as const;
/** The machine's NATS server (these machines run one; .ci/run starts it when it is not running). */
const SCALE_BUS = process.env.BENCH_FEED_BUS ?? 'nats://127.0.0.1:4222';

/**
 * Several instances on one PostgreSQL (issue 25): three real gateways sharing a schema, a
 * subscriber of every workspace on each, and workers writing 200 changes a second over 50
 * workspaces through all three; then the same with 8 and 32 simulated instances beside them
 * (scale.ts). What PostgreSQL does per change, and write-to-subscriber latency. Without a bus, then
 * with one (FEED_BUS over the machine's NATS server, skipped with a message when none answers),
 * where a last run kills the reader halfway.
 */
async function scaleRows(subs: Child): Promise<ScaleRow[]> {
  const rows = await scaleRun(subs, undefined);
  if (await busAnswers(SCALE_BUS)) rows.push(...(await scaleRun(subs, SCALE_BUS)));
  else log(`scale: no NATS server answers at ${SCALE_BUS}: the rows with the feed bus are skipped`);
  return rows;
}

async function scaleRun(subs: Child, bus: string | undefined): Promise<ScaleRow[]> {
  const database = await freshDatabaseEnv('postgres', 'scale');
  const gateways: Child[] = [];
  const rows: ScaleRow[] = [];
  try {
    // The first migrates (and, with a bus, becomes the reader); the others find it done.
    for (let i = 0; i < SCALE.gateways; i++) {
      gateways.push(await spawnChild('./gateway-harness.ts', { ...GATEWAY_ENV, ...database.env, ...(bus && { FEED_BUS: bus }) }, ['--expose-gc']));
    }
    const urls = await Promise.all(gateways.map((gateway) => gateway.request<string>({ cmd: 'url' })));
    const gatewayStats = () => Promise.all(gateways.map((g) => g.request<GatewayStats>({ cmd: 'stats' })));
    if (bus) {
      await waitUntil(
        async () =>
          (await gatewayStats()).filter((s) => s.feedMode === 'reader').length === 1 && (await gatewayStats()).every((s) => s.feedMode !== 'fallback'),
        30_000,
        'one reader, the others followers',
      );
    }
    const workspaces: Array<{ key: string; jobIds: string[] }> = [];
    for (let w = 0; w < SCALE.workspaces; w++) {
      const key = await gateways[0]!.request<string>({ cmd: 'createKey', workspace: `scale-${w}` });
      workspaces.push({ key, jobIds: await createJobs(urls[w % urls.length]!, key, SCALE.jobsPerWorkspace) });
    }
    // A subscriber of every workspace on every gateway: each change reaches one on each instance.
    for (const { key } of workspaces) {
      for (const url of urls) {
        await subs.request({
          cmd: 'open',
          url: url.replace(/^http/, 'ws') + '/graphql',
          count: 1,
          protocol: 'graphql-ws',
          apiKey: key,
          subscribe: { query: SUBSCRIPTION },
        });
      }
    }
    const subscribers = SCALE.workspaces * urls.length;
    await waitUntil(async () => (await gatewayStats()).reduce((sum, s) => sum + s.subscribers, 0) >= subscribers, 60_000, 'all subscribed');
    await subs.request({ cmd: 'newest', on: true });
    await jobTableCounters(database.env.DATABASE_URL!, { analyzeFirst: true });

    /** Writes at SCALE.writesPerSec for SCALE.seconds, round-robin over workspaces, their jobs and the live gateways; `halfway` runs once, halfway. */
    const drive = async (live: string[], halfway?: () => Promise<void>): Promise<{ sent: Sent[]; failed: number }> => {
      const sent: Sent[] = [];
      let failed = 0;
      const inFlight = new Set<Promise<void>>();
      const interval = 1000 / SCALE.writesPerSec;
      const start = now();
      let half: Promise<void> | undefined;
      for (let i = 0; now() - start < SCALE.seconds * 1000; i++) {
        const wait = start + i * interval - now();
        if (wait > 0) await sleep(wait);
        if (halfway && !half && now() - start >= (SCALE.seconds * 1000) / 2) half = halfway();
        if (inFlight.size >= 64) await Promise.race(inFlight);
        const workspace = workspaces[i % workspaces.length]!;
        const jobId = workspace.jobIds[Math.floor(i / workspaces.length) % workspace.jobIds.length]!;
        const request: Promise<void> = sendUpdate(live[i % live.length]!, workspace.key, jobId)
          .then((s) => void sent.push(s))
          .catch(() => void failed++)
          .finally(() => inFlight.delete(request));
        inFlight.add(request);
      }
      await Promise.all(inFlight);
      await half;
      return { sent, failed };
    };
    const totals = async () => {
      const stats = await gatewayStats();
      const sum = (pick: (s: GatewayStats) => number) => stats.reduce((total, s) => total + pick(s), 0);
      return {
        reads: sum((s) => s.feedReads),
        announcements: sum((s) => s.feedAnnouncements),
        published: sum((s) => s.busPublished),
        received: sum((s) => s.busReceived),
        repairs: sum((s) => s.busRepairs),
      };
    };

    const runs: Array<{ simulated: number; killReader: boolean }> = SCALE.simulated.map((simulated) => ({ simulated, killReader: false }));
    if (bus) runs.push({ simulated: 0, killReader: true });
    for (const { simulated, killReader } of runs) {
      const others = await startSimulatedInstances(database.env.DATABASE_URL!, simulated, bus);
      try {
        // An idle backend reports its table statistics within 10 s (PostgreSQL 15's
        // PGSTAT_IDLE_INTERVAL): the setup's must be in before the first reading.
        await sleep(STATS_FLUSH_MS);
        const [before, tableBefore, othersBefore, othersBusBefore] = [
          await totals(),
          await jobTableCounters(database.env.DATABASE_URL!),
          others.reads(),
          others.busMessages(),
        ];
        await subs.request({ cmd: 'reset' });
        await subs.request({ cmd: 'track', on: true });
        let takeoverMs: number | null = null;
        let killedTotals: Awaited<ReturnType<typeof totals>> | undefined;
        const live = [...urls];
        const killTheReader = async () => {
          const stats = await gatewayStats();
          const index = stats.findIndex((s) => s.feedMode === 'reader');
          const [reader] = gateways.splice(index, 1);
          const [readerUrl] = urls.splice(index, 1);
          live.splice(live.indexOf(readerUrl!), 1);
          // Its counts so far stay in the totals.
          killedTotals = {
            reads: stats[index]!.feedReads,
            announcements: stats[index]!.feedAnnouncements,
            published: stats[index]!.busPublished,
            received: stats[index]!.busReceived,
            repairs: stats[index]!.busRepairs,
          };
          const killedAt = now();
          reader!.process.kill('SIGKILL');
          await waitUntil(async () => (await gatewayStats()).some((s) => s.feedMode === 'reader'), 30_000, 'a new reader', 20);
          takeoverMs = round(now() - killedAt);
        };
        const start = now();
        const { sent, failed } = await drive(live, killReader ? killTheReader : undefined);
        const seconds = (now() - start) / 1000;
        // The last changes' deliveries.
        await sleep(1_000);
        await subs.request({ cmd: 'track', on: false });
        const withKilled = async () => {
          const t = await totals();
          if (!killedTotals) return t;
          return {
            reads: t.reads + killedTotals.reads,
            announcements: t.announcements + killedTotals.announcements,
            published: t.published + killedTotals.published,
            received: t.received + killedTotals.received,
            repairs: t.repairs + killedTotals.repairs,
          };
        };
        const [after, othersAfter, othersBusAfter] = [await withKilled(), others.reads(), others.busMessages()];
        // Catch-up reads go on meanwhile (one a second per instance): counted apart, they are no write's.
        await sleep(STATS_FLUSH_MS);
        const idleReads = (await withKilled()).reads - after.reads + others.reads() - othersAfter;
        const tableAfter = await jobTableCounters(database.env.DATABASE_URL!);
        const receipts = await subs.request<Record<string, number[]>>({ cmd: 'receipts' });
        const samples: number[] = [];
        for (const { state, respondedAt } of sent) for (const at of receipts[state] ?? []) samples.push(Math.max(0, at - respondedAt));
        samples.sort((a, b) => a - b);
        // Final states: each subscriber's newest of every job of its workspace, against the database.
        const byKey: Record<string, Record<string, string>> = {};
        for (const { key } of workspaces) {
          const { jobs } = await gql<{ jobs: Array<{ id: string; changeCursor: string }> }>(urls[0]!, key, '{ jobs(limit: 50) { id changeCursor } }');
          byKey[key] = Object.fromEntries(jobs.map((job) => [job.id, job.changeCursor]));
        }
        const check = () => subs.request<{ missing: number; pairs: number }>({ cmd: 'checkFinal', byKey, openOnly: true });
        await waitUntil(async () => (await check()).missing === 0, 15_000, 'final states delivered').catch(() => undefined);
        const final = await check();
        const changes = sent.length;
        const row: ScaleRow = {
          bus: bus ? 'nats' : 'none',
          gateways: SCALE.gateways,
          simulated,
          readerKilled: killReader,
          subscribers,
          changesPerSec: round(changes / seconds),
          feedReadsPerChange: round((after.reads - before.reads + othersAfter - othersBefore) / changes, 3),
          jobScansPerChange: round((tableAfter.scans - tableBefore.scans) / changes, 3),
          jobRowsReadPerChange: round((tableAfter.rowsRead - tableBefore.rowsRead) / changes, 3),
          idleFeedReads: idleReads,
          notifiesPerChange: round((after.announcements - before.announcements) / changes, 3),
          busPublishedPerChange: round((after.published - before.published + othersBusAfter.published - othersBusBefore.published) / changes, 3),
          busReceivedPerChange: round((after.received - before.received + othersBusAfter.received - othersBusBefore.received) / changes, 3),
          busRepairs: after.repairs - before.repairs,
          takeoverMs,
          writesFailed: failed,
          p50Ms: round(percentile(samples, 50)),
          p99Ms: round(percentile(samples, 99)),
          finalStatesMissing: final.missing,
          finalStatePairs: final.pairs,
        };
        log(`scale: ${JSON.stringify(row)}`);
        rows.push(row);
      } finally {
        await others.stop();
      }
    }
    return rows;
  } finally {
    await subs.request({ cmd: 'newest', on: false });
    await subs.request({ cmd: 'closeAll' });
    for (const gateway of gateways) await gateway.stop();
    await database.drop();
  }
}

async function main() {
  log(`jobs-gateway bench (${profile.name}) on ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB`);
  if (flags['mixed-only']) {
    const rows = await mixedRows();
    printMixed(rows);
    console.log(JSON.stringify({ mixed: rows }));
    return;
  }
  if (flags['writes-only']) {
    const result = await writes();
    printWrites(result);
    console.log(JSON.stringify({ writes: result.rows, writeKinds: result.kinds, writesDatabase: result.database }));
    return;
  }
  if (flags['webhooks-only']) {
    const result = await webhooks(true);
    printWebhooks(result);
    console.log(JSON.stringify({ webhookWrites: result.writes, webhookDelivery: result.delivery, writesDatabase: result.database }));
    return;
  }
  if (flags['tracing-only']) {
    const rows = await tracingCost();
    printTracing(rows);
    console.log(JSON.stringify({ tracing: rows }));
    return;
  }
  if (flags['scale-only']) {
    const subs = await spawnChild('./subscribers.ts');
    try {
      const rows = await scaleRows(subs);
      console.table(rows);
      console.log(JSON.stringify({ scale: rows }));
    } finally {
      await subs.stop();
    }
    return;
  }
  if (flags['memory-only']) {
    const rows: MemoryRow[] = [];
    for (const db of profile.restDbs) rows.push(await idleMemory(db));
    console.table(rows);
    console.log(JSON.stringify({ memory: rows }));
    return;
  }
  if (flags['polling-only']) {
    const subs = await spawnChild('./subscribers.ts');
    const started = await startGateway('embedded', 'poll');
    try {
      const polling = await pollingAgainstPush(subs, started);
      printTable([], [], polling);
      console.log(JSON.stringify({ polling }));
    } finally {
      await started.stop();
      await subs.stop();
    }
    return;
  }
  if (flags['soak-only']) {
    const subs = await spawnChild('./subscribers.ts');
    try {
      const rows: SoakRow[] = [];
      for (const db of profile.restDbs) rows.push(await soak(subs, db));
      console.table(rows);
      console.log(JSON.stringify({ soak: rows }));
    } finally {
      await subs.stop();
    }
    return;
  }
  if (flags['reads-only']) {
    const rows: ReadRow[] = [];
    for (const db of profile.restDbs) rows.push(...(await reads(db)));
    printReads(rows);
    console.log(JSON.stringify({ rest: rows }));
    return;
  }
  if (flags['fairness-only']) {
    const rows: FairnessRow[] = [];
    // Side by side: each attacker against the default limit, and against none (what the limit buys).
    for (const db of profile.restDbs) {
      const wanted = (attacker: FairnessRow['attacker']) => !flags.attacker || flags.attacker.includes(attacker);
      if (wanted('key flood')) rows.push(await fairness(db), await fairness(db, { rateLimitPerKey: 0 }));
      if (wanted('bad keys')) rows.push(await fairness(db, { attacker: 'bad keys' }), await fairness(db, { attacker: 'bad keys', badKeyLimitPerAddress: 0 }));
      for (const attacker of ['heavy results', 'heavy misses', 'metadata replays'] as const) {
        if (wanted(attacker)) rows.push(await fairness(db, { attacker }), await fairness(db, { attacker, responseMiBPerSec: 0 }));
      }
      if (wanted('busy neighbour')) rows.push(await fairness(db, { attacker: 'busy neighbour' }));
    }
    console.table(rows);
    console.log(JSON.stringify({ fairness: rows }));
    return;
  }
  const subs = await spawnChild('./subscribers.ts');
  const fanout: FanoutRow[] = [];
  let polling: Awaited<ReturnType<typeof pollingAgainstPush>> | undefined;
  try {
    for (const n of profile.ns) {
      log(`\n== ${n} subscribers`);
      const ceiling = await ceilingFor(subs, n);
      log(`ceiling: ${Math.round(ceiling)} deliveries/s`);
      // Drive every server past the ceiling's rate, so that each is measured at saturation.
      // (Capped: with few subscribers, the worker's own mutations would be all that is measured.)
      const saturatingRate = Math.min(400, Math.max(2, (1.5 * ceiling) / n));
      const naive = await naiveFor(subs, n, saturatingRate);
      log(`naive: ${Math.round(naive)} deliveries/s`);

      for (const db of profile.dbs) {
        const { gateway, url, key, stop } = await startGateway(db, `n${n}`);
        try {
          const jobIds = await createJobs(url, key, 50);
          type Memory = { rss: number; heapUsed: number; rssBeforeRelease: number };
          const before = await gateway.request<Memory>({ cmd: 'memory' });
          await subscribeAll(subs, url, key, n, jobIds, SUBSCRIPTION, async () => (await gateway.request<GatewayStats>({ cmd: 'stats' })).subscribers >= n);
          const after = await gateway.request<Memory>({ cmd: 'memory' });
          log(
            `  RSS per subscriber after ordinary collections (as runs before issue 26 read it): ${round((after.rssBeforeRelease - before.rssBeforeRelease) / n / 1024)} KiB`,
          );
          const statsBefore = await gateway.request<GatewayStats>({ cmd: 'stats' });
          let updates = 0;
          const saturated = await measureDeliveries(
            subs,
            async () => (updates = (await driveUpdates(url, key, jobIds.slice(0, 4), saturatingRate, profile.fanoutMs)).length),
          );
          const statsAfter = await gateway.request<GatewayStats>({ cmd: 'stats' });
          // What the gateway did at saturation: the updates it applied, and how its feed read them.
          const seconds = profile.fanoutMs / 1000;
          const dispatches = statsAfter.feedDispatches - statsBefore.feedDispatches;
          log(
            `  at saturation: ${round(updates / seconds)} updates/s applied (${round(saturatingRate)} offered), ` +
              `${round((statsAfter.feedReads - statsBefore.feedReads) / seconds)} feed reads/s, ${round(dispatches / seconds)} dispatches/s ` +
              `of ${round((statsAfter.feedDispatched - statsBefore.feedDispatched) / Math.max(1, dispatches))} job states each`,
          );
          const latency = await latencies(subs, n, () => driveUpdates(url, key, jobIds.slice(0, 4), steadyRate(n), profile.latencyMs));
          const row: FanoutRow = {
            db,
            subscribers: n,
            deliveriesPerSec: Math.round(saturated.perSec),
            p50Ms: round(latency.p50),
            p99Ms: round(latency.p99),
            ceilingDeliveriesPerSec: Math.round(ceiling),
            naiveDeliveriesPerSec: Math.round(naive),
            rssPerSubscriberKiB: round((after.rss - before.rss) / n / 1024),
            heapPerSubscriberKiB: round((after.heapUsed - before.heapUsed) / n / 1024),
            payloadBytes: Math.round(saturated.bytesPerMessage),
            ceilingPayloadBytes: sampleFrame().length,
          };
          fanout.push(row);
          log(
            `gateway (${db}): ${row.deliveriesPerSec} deliveries/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, ${row.rssPerSubscriberKiB} KiB RSS per subscriber`,
          );
          await subs.request({ cmd: 'closeAll' });
          // Polling against push on this gateway too (it has a job of its own): no second start.
          if (n === profile.ns[0] && db === 'embedded' && !flags['fanout-only']) polling = await pollingAgainstPush(subs, { gateway, url, key });
        } finally {
          await subs.request({ cmd: 'closeAll' });
          await stop();
        }
      }
    }
    if (flags['fanout-only']) {
      printTable(fanout, [], undefined);
      return;
    }
    if (!polling) {
      const started = await startGateway('embedded', 'poll');
      try {
        polling = await pollingAgainstPush(subs, started);
      } finally {
        await started.stop();
      }
    }
    const fairnessRows: FairnessRow[] = [];
    for (const db of profile.restDbs) {
      fairnessRows.push(await fairness(db), await fairness(db, { attacker: 'bad keys' }));
      log(`fairness (${db}): ${JSON.stringify(fairnessRows.slice(-2))}`);
    }
    const readRows: ReadRow[] = [];
    for (const db of profile.restDbs) readRows.push(...(await reads(db)));
    const memoryRows: MemoryRow[] = [];
    for (const db of profile.restDbs) memoryRows.push(await idleMemory(db));
    log(`memory: ${JSON.stringify(memoryRows)}`);
    const soakRows: SoakRow[] = [];
    for (const db of profile.restDbs) {
      soakRows.push(await soak(subs, db));
      log(`soak (${db}): ${JSON.stringify(soakRows.at(-1))}`);
    }
    const writeResult = await writes();
    const webhookResult = await webhooks(false);
    const mixedResult = await mixedRows();
    printTable(fanout, readRows, polling);
    printWrites(writeResult);
    printWebhooks(webhookResult);
    printMixed(mixedResult);
    console.log('\nFairness: a bystander reading one job while another key floods GET /api/jobs (RATE_LIMIT_PER_KEY=200, 50 connections)');
    console.table(fairnessRows);
    console.log(
      `\nSoak: subscribers following ${SOAK_UPDATES_PER_SEC} updates/s while dashboards poll GET /api/jobs every 2 s; gateway memory after a GC, start to end`,
    );
    console.table(soakRows.map(({ heapMiB, rssMiB, ...row }) => ({ ...row, heapMiB: heapMiB.join(' '), rssMiB: rssMiB.join(' ') })));
    console.log(
      JSON.stringify({
        fanout: fanout.map(({ heapPerSubscriberKiB, payloadBytes, ceilingPayloadBytes, ...row }) => row),
        rest: readRows,
        memory: memoryRows,
        polling,
        fairness: fairnessRows,
        soak: soakRows,
        writes: writeResult.rows,
        writeKinds: writeResult.kinds,
        writesDatabase: writeResult.database,
        webhookWrites: webhookResult.writes,
        webhookDelivery: webhookResult.delivery,
        mixed: mixedResult,
      }),
    );
  } finally {
    await subs.stop();
  }
}

function printTable(fanout: FanoutRow[], readRows: ReadRow[], polling: Awaited<ReturnType<typeof pollingAgainstPush>> | undefined) {
  const table = (rows: Array<Record<string, string | number>>) => {
    const headers = Object.keys(rows[0] ?? {});
    const widths = headers.map((h) => Math.max(h.length, ...rows.map((r) => String(r[h]).length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
    return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(headers.map((h) => String(r[h]))))].join('\n');
  };
  if (fanout.length > 0) console.log('\nFan-out (deliveries/s at saturation; latency from mutation response to receipt at a steady rate)');
  if (fanout.length > 0)
    console.log(
      table(
        fanout.map((r) => ({
          db: r.db,
          subscribers: r.subscribers,
          'deliveries/s': r.deliveriesPerSec,
          ceiling: r.ceilingDeliveriesPerSec,
          '% of ceiling': round((100 * r.deliveriesPerSec) / r.ceilingDeliveriesPerSec),
          naive: r.naiveDeliveriesPerSec,
          'x naive': round(r.deliveriesPerSec / r.naiveDeliveriesPerSec),
          'p50 ms': r.p50Ms,
          'p99 ms': r.p99Ms,
          'RSS KiB/sub': r.rssPerSubscriberKiB,
          'heap KiB/sub': r.heapPerSubscriberKiB,
          'msg bytes': `${r.payloadBytes} (ceiling ${r.ceilingPayloadBytes})`,
        })),
      ),
    );
  if (!polling) return;
  printReads(readRows);
  console.log(`\nPolling against push: ${polling.dashboards} dashboards, one job updated ${polling.updatesPerSec}/s`);
  console.log(
    table([
      { mode: 'poll every 2 s', 'db queries/s': polling.pollDbQueriesPerSec, 'bytes/s': polling.pollBytesPerSec },
      { mode: 'subscribe', 'db queries/s': polling.pushDbQueriesPerSec, 'bytes/s': polling.pushBytesPerSec },
      { mode: 'poll every 2 s, RESPONSE_CACHE=false', 'db queries/s': polling.pollUncachedDbQueriesPerSec, 'bytes/s': '' },
    ]),
  );
  console.log(
    `(polling costs ${round(polling.pollDbQueriesPerSec / polling.pushDbQueriesPerSec, 2)} times the database queries of push; ${round(polling.pollUncachedDbQueriesPerSec / polling.pollDbQueriesPerSec)} times fewer than without the cache)`,
  );
}

function printReads(rows: ReadRow[]) {
  if (rows.length === 0) return;
  console.log(
    `\nReads (autocannon, 10 connections, ${profile.readJobs} jobs in one workspace) against a bare node:http server running the same SELECT and writing the same body`,
  );
  console.table(rows.map((r) => ({ ...r, '% of ceiling': round((100 * r.reqPerSec) / r.ceilingReqPerSec) })));
}

await main();
process.exit(0);
