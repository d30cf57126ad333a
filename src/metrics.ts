import type { BusFeedStats } from './live/bus/bus-feed.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WebhookStats } from './webhooks/dispatcher.js';

/** What the WebSocket gateway counts (ws/ws-server.ts). */
export interface WebSocketStats {
  connections: number;
  /** jobUpdated subscriptions served by the multiplexer, and its groups. */
  multiplexedSubscriptions: number;
  groups: number;
  groupExecutions: number;
  /** Bytes of frames waiting for readers, and sockets closed for not reading. */
  pendingBytes: number;
  slowConsumerCloses: number;
}

/** What the jobs' upkeep counts (jobs/job-sweeper.ts). */
export interface JobSweepStats {
  /** Jobs this instance failed as stalled. */
  stalled: number;
  /** Idempotency keys this instance deleted past IDEMPOTENCY_TTL_MS. */
  expiredKeys: number;
  /** Sweeps that could not reach the database (an outage); the next one tries again. */
  failedSweeps: number;
}

/** What the change feed counts (live/change-feed.ts). */
export interface FeedStats {
  reads: number;
  dispatches: number;
  dispatched: number;
  announcements: number;
  /** Workspaces whose committed changes wait for a transaction, since when (performance.now()). */
  heldBack: ReadonlyArray<{ workspaceId: string; pids: ReadonlyArray<number | null>; since: number }>;
}

/** What the response cache counts (graphql/plugins/response-cache.ts). */
export interface ResponseCacheStats {
  hits: number;
  misses: number;
  coalesced: number;
  invalidations: number;
  bytes: number;
}

/**
 * The parts whose counts the metrics read at scrape time, each through its own `stats()`: the
 * metrics know what they publish, not how a part keeps its counts.
 */
export interface MetricSources {
  feed: { stats(): FeedStats };
  /** Subscriptions running as streams (Server-Sent Events, WebSocket operations not multiplexed). */
  live: { stats(): { streams: number } };
  replays: { stats(): { waiting: number } };
  sweeper: { stats(): JobSweepStats };
  webSockets: { stats(): WebSocketStats };
  queries: { stats(): { statements: number } };
  responses: { stats(): ResponseCacheStats } | undefined;
  webhooks: { stats(): WebhookStats };
  /** Absent with RELEASE_IDLE_MEMORY=false. */
  idleMemory: { stats(): { releases: number } } | undefined;
  /** Absent without FEED_BUS. */
  feedBus?: { stats(): BusFeedStats } | undefined;
}

export interface GatewayMetrics {
  /** The Prometheus text exposition of every metric. */
  render(): Promise<{ contentType: string; body: string }>;
  /** `route` is one of a bounded set (http/routes.ts' labels): paths carry job ids. */
  observeRequest: (route: string, method: string, status: number, seconds: number) => void;
}

/** Process metrics (CPU, memory, event loop lag, GC) are the process's, once, whatever the instances in it. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

const KNOWN_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']);

/**
 * Prometheus metrics of one gateway instance (prom-client, a registry per instance so that several
 * can share a process, as tests do). No label carries a key, a workspace or a job: what a scrape
 * shows is the same whoever the tenants are, and the number of series stays fixed.
 *
 * The hot paths (feed, multiplexer, query counter) keep plain counters of their own; the metrics
 * here read them at scrape time (`collect`, through each part's `stats()`) instead of adding work
 * per change.
 */
export function createMetrics(sources: MetricSources): GatewayMetrics {
  const registry = new Registry();
  const registers = [registry];

  /** A counter that mirrors a count kept elsewhere: set to it at every scrape. */
  const mirrored = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });

  // Served without FEED_BUS too (modes all 0, counts 0): dashboards and alerts need not know.
  const bus = () => sources.feedBus?.stats();
  new Gauge({
    name: 'jobs_gateway_feed_mode',
    help: 'With FEED_BUS, 1 for the mode this instance is in: "reader" reads the change feed for every instance, "follower" takes it from the bus, "fallback" reads it itself while the bus or the reader is away.',
    labelNames: ['mode'] as const,
    registers,
    collect() {
      const mode = bus()?.mode;
      for (const each of ['reader', 'follower', 'fallback'] as const) this.set({ mode: each }, each === mode ? 1 : 0);
    },
  });
  new Gauge({
    name: 'jobs_gateway_feed_bus_watched_workspaces',
    help: 'Workspaces whose changes this instance takes from the feed bus (those its subscriptions watch).',
    registers,
    collect() {
      this.set(bus()?.watched ?? 0);
    },
  });
  mirrored(
    'jobs_gateway_feed_bus_published_total',
    'Messages this instance published on the feed bus (as the reader: batches and frontiers; as a writer: wake-ups).',
    () => bus()?.published ?? 0,
  );
  mirrored('jobs_gateway_feed_bus_received_total', 'Messages this instance received from the feed bus.', () => bus()?.received ?? 0);
  mirrored(
    'jobs_gateway_feed_bus_repairs_total',
    'Reads of one workspace’s changes from PostgreSQL to fill a gap the feed bus left (a first watch, a lost message, a new reader, an outage).',
    () => bus()?.repairs ?? 0,
  );
  mirrored(
    'jobs_gateway_idle_memory_releases_total',
    'Times this instance, idle, had V8 hand its unused young generation back to the system (RELEASE_IDLE_MEMORY).',
    () => sources.idleMemory?.stats().releases ?? 0,
  );
  new Gauge({
    name: 'jobs_gateway_websocket_connections',
    help: 'Open graphql-ws connections.',
    registers,
    collect() {
      this.set(sources.webSockets.stats().connections);
    },
  });
  new Gauge({
    name: 'jobs_gateway_subscriptions',
    help: 'Open subscriptions: "multiplexed" share one execution per group and change (jobUpdated over WebSockets); "stream" run their own (Server-Sent Events, other operations).',
    labelNames: ['delivery'] as const,
    registers,
    collect() {
      this.set({ delivery: 'multiplexed' }, sources.webSockets.stats().multiplexedSubscriptions);
      this.set({ delivery: 'stream' }, sources.live.stats().streams);
    },
  });
  new Gauge({
    name: 'jobs_gateway_subscription_groups',
    help: 'Groups of multiplexed subscriptions (same workspace, document and variables).',
    registers,
    collect() {
      this.set(sources.webSockets.stats().groups);
    },
  });
  new Gauge({
    name: 'jobs_gateway_websocket_pending_bytes',
    help: 'Bytes of states waiting for WebSocket readers that have not taken what they were sent (merged newest per job).',
    registers,
    collect() {
      this.set(sources.webSockets.stats().pendingBytes);
    },
  });
  new Gauge({
    name: 'jobs_gateway_replays_waiting',
    help: 'Resumed subscriptions waiting for their replay read (beyond REPLAY_QUEUE_MAX a resume is refused with OVERLOADED).',
    registers,
    collect() {
      this.set(sources.replays.stats().waiting);
    },
  });
  mirrored(
    'jobs_gateway_jobs_stalled_total',
    'Running jobs this instance failed as stalled: no report or heartbeat within their heartbeat timeout.',
    () => sources.sweeper.stats().stalled,
  );
  mirrored(
    'jobs_gateway_idempotency_keys_expired_total',
    'Idempotency keys this instance deleted once IDEMPOTENCY_TTL_MS had passed.',
    () => sources.sweeper.stats().expiredKeys,
  );
  mirrored(
    'jobs_gateway_job_sweeps_failed_total',
    'Sweeps for stalled jobs and expired idempotency keys that could not reach the database; the next one tries again.',
    () => sources.sweeper.stats().failedSweeps,
  );
  mirrored(
    'jobs_gateway_webhook_deliveries_sent_total',
    'Webhook attempts this instance made that the receiver answered 2xx.',
    () => sources.webhooks.stats().sent,
  );
  mirrored(
    'jobs_gateway_webhook_attempts_failed_total',
    'Webhook attempts this instance made that failed (not 2xx, a timeout, a connection error, a refused address) and will be retried.',
    () => sources.webhooks.stats().retrying,
  );
  mirrored(
    'jobs_gateway_webhook_deliveries_failed_total',
    'Webhook deliveries this instance gave up on: retried for WEBHOOK_RETRY_FOR_MS, or their endpoint was disabled.',
    () => sources.webhooks.stats().failed,
  );
  mirrored(
    'jobs_gateway_webhook_endpoints_disabled_total',
    'Webhook endpoints this instance disabled because every delivery failed for WEBHOOK_RETRY_FOR_MS.',
    () => sources.webhooks.stats().endpointsDisabled,
  );
  new Gauge({
    name: 'jobs_gateway_webhook_attempts_in_flight',
    help: 'Webhook attempts under way on this instance (at most WEBHOOK_CONCURRENCY).',
    registers,
    collect() {
      this.set(sources.webhooks.stats().inFlight);
    },
  });
  new Gauge({
    name: 'jobs_gateway_webhook_oldest_pending_seconds',
    help: 'Age of the oldest webhook event not yet delivered nor given up, on any instance (0: none); read from the database every 10 s by instances that send.',
    registers,
    collect() {
      this.set(sources.webhooks.stats().oldestPendingSeconds);
    },
  });
  mirrored(
    'jobs_gateway_websocket_slow_consumer_closes_total',
    'WebSockets closed with 4008 (their reader took nothing for WS_SLOW_CONSUMER_TIMEOUT_MS, or their waiting states passed the bounds).',
    () => sources.webSockets.stats().slowConsumerCloses,
  );
  mirrored(
    'jobs_gateway_group_executions_total',
    'Executions of multiplexed groups (one per group and change).',
    () => sources.webSockets.stats().groupExecutions,
  );
  mirrored('jobs_gateway_feed_dispatches_total', 'Dispatches of the change feed to subscribers.', () => sources.feed.stats().dispatches);
  mirrored('jobs_gateway_feed_states_total', 'Job states the change feed dispatched.', () => sources.feed.stats().dispatched);
  mirrored(
    'jobs_gateway_feed_reads_total',
    'Reads of the change feed (one per batch of changes, and one per catch-up interval).',
    () => sources.feed.stats().reads,
  );
  mirrored(
    'jobs_gateway_feed_announcements_total',
    "NOTIFYs sent to other instances after this instance's writes (one per batch).",
    () => sources.feed.stats().announcements,
  );
  new Gauge({
    name: 'jobs_gateway_feed_held_back',
    help: 'Seconds a workspace\'s committed changes have waited for a transaction that wrote its jobs and has not ended, per workspace and that transaction\'s backend pid (pg_stat_activity; "prepared": pg_prepared_xacts). No series while nothing waits.',
    labelNames: ['workspace', 'pid'] as const,
    registers,
    collect() {
      this.reset();
      const now = performance.now();
      for (const { workspaceId, pids, since } of sources.feed.stats().heldBack) {
        for (const pid of pids) this.set({ workspace: workspaceId, pid: pid === null ? 'prepared' : String(pid) }, (now - since) / 1000);
      }
    },
  });
  mirrored('jobs_gateway_database_queries_total', 'Statements sent to the database.', () => sources.queries.stats().statements);
  const { responses } = sources;
  if (responses) {
    new Counter({
      name: 'jobs_gateway_response_cache_requests_total',
      help: 'Query results looked up in the response cache: "hit" answered from memory, "miss" executed (and cached unless it failed), "coalesced" a query that shared an identical one in flight instead.',
      labelNames: ['result'] as const,
      registers,
      collect() {
        this.reset();
        const { hits, misses, coalesced } = responses.stats();
        this.inc({ result: 'hit' }, hits);
        this.inc({ result: 'miss' }, misses);
        this.inc({ result: 'coalesced' }, coalesced);
      },
    });
    mirrored(
      'jobs_gateway_response_cache_invalidations_total',
      'Workspaces whose cached results were dropped (one per change written or dispatched).',
      () => responses.stats().invalidations,
    );
    new Gauge({
      name: 'jobs_gateway_response_cache_bytes',
      help: 'Serialized size of the cached results (at most RESPONSE_CACHE_MAX_BYTES).',
      registers,
      collect() {
        this.set(responses.stats().bytes);
      },
    });
  }

  const requests = new Histogram({
    name: 'jobs_gateway_http_request_duration_seconds',
    help: 'HTTP requests by route, method and status, and how long they took to answer.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });

  return {
    async render() {
      const merged = Registry.merge([processMetrics(), registry]);
      return { contentType: merged.contentType, body: await merged.metrics() };
    },
    observeRequest(route, method, status, seconds) {
      requests.observe({ route, method: KNOWN_METHODS.has(method) ? method : 'other', status: String(status) }, seconds);
    },
  };
}
