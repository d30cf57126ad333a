/**
 * The limits that are not environment variables: sizes, counts and intervals fixed in the code,
 * each with why it is what it is. (The configurable ones are parsed in src/config.ts and listed in
 * docs/operations.md's configuration table.)
 */

// --- HTTP and requests -------------------------------------------------------------------------

/** Longer than any API key the gateway issues; anything longer is refused before it is hashed. */
export const MAX_API_KEY_LENGTH = 128;

/** How long /healthz and /readyz wait for the database to answer before calling it away. */
export const HEALTH_TIMEOUT_MS = 2_000;

/**
 * How long a refusal (429) is held before it is sent. A flooding client with many connections
 * would otherwise get its refusals as fast as it can send, and refusing thousands of requests a
 * second takes the event loop from every other key; held, each of its connections sends at most
 * a few requests a second. It waits for Retry-After anyway.
 */
export const REFUSAL_DELAY_MS = 250;

/** Keys (and workspaces, for the response budget) the rate limiter remembers at once; a forgotten one starts again with a full bucket, which only errs towards allowing. */
export const RATE_LIMITED_KEYS_TRACKED = 100_000;

/** How long, and how many bytes, a refused body (411, 413) is still read before its connection is cut. */
export const REFUSED_BODY_LINGER = { ms: 5_000, maxBytes: 64 * 1024 * 1024 } as const;

/**
 * Connections the kernel may hold completed for the server before it accepts them. libuv accepts
 * one connection per turn of the event loop, so while the loop is busy (a fan-out, the first seconds
 * of a fresh process) a burst of new connections waits here; past the queue the kernel drops them and
 * each client retries only after a second or more. Node's default is 511; Linux caps this at
 * net.core.somaxconn (4096 by default since 5.4).
 */
export const LISTEN_BACKLOG = 4_096;

/** Valid API keys remembered between database checks; beyond, the least recently used are forgotten first. */
export const AUTH_CACHE_MAX_ENTRIES = 10_000;

/**
 * Keys the database did not know, remembered so that repeating one costs no lookup: long enough
 * to absorb a client retrying a bad key in a loop, bounded so that random keys cannot grow memory
 * (random keys are what the per-address budget, BAD_KEY_LIMIT_PER_ADDRESS, is for).
 */
export const UNKNOWN_KEYS_REMEMBERED = { max: 10_000, ttlMs: 60_000 } as const;

/**
 * Access tokens (auth/access-tokens.ts): minted for `defaultTtlMs` unless asked otherwise, at least
 * `minTtlMs`; a credential longer than `maxLength` is no token of ours (one is about 400 characters,
 * more with a long restriction; minting refuses one over it) and is refused unread. A signing key
 * not yet known is looked up at most once per `keyReloadIntervalMs`, so that tokens naming random
 * keys cannot turn into database reads.
 */
export const ACCESS_TOKEN = {
  defaultTtlMs: 15 * 60_000,
  minTtlMs: 10_000,
  maxLength: 4_096,
  keyReloadIntervalMs: 1_000,
  /** Tokens one API key may mint per second on an instance (a backend minting one per page view), with a burst. */
  mintsPerKey: { perSecond: 50, burst: 200 },
} as const;

// --- Webhooks -----------------------------------------------------------------------------------

/**
 * Webhooks (src/webhooks/). `maxRetryDelayMs` caps the doubling of retry delays (an endpoint back
 * after an outage waits at most this for its next attempt). `leaseMarginMs` is added to an
 * attempt's timeout for the claim it holds: an instance that dies mid-attempt leaves the delivery
 * due again that much later. A response is read up to `responseBytesRead` (a receiver's body is
 * not ours to store) and `errorChars` of it kept as the delivery's last error. `pollIntervalMs`: how
 * often an instance looks for due deliveries when no change of its feed woke it. A rotated secret
 * keeps signing for `secretOverlapMs`. Ended deliveries stay in the log for `logRetentionMs`.
 */
export const WEBHOOK = {
  maxRetryDelayMs: 3_600_000,
  leaseMarginMs: 5_000,
  responseBytesRead: 4_096,
  /** A kept-alive connection to a receiver closes after this long idle (or the attempt timeout, if longer). */
  idleSocketMs: 15_000,
  /** How long one DNS query of a receiver's name may take (twice: two tries). */
  dnsTimeoutMs: 2_000,
  errorChars: 300,
  pollIntervalMs: 1_000,
  /** How often an instance asks which workspaces have an enabled endpoint (only their changes wake it; with none, it polls nothing else). */
  watchRefreshMs: 10_000,
  secretOverlapMs: 86_400_000,
  logRetentionMs: 7 * 86_400_000,
  /** Deliveries claimed per statement at most (each is a request under way). */
  claimBatch: 256,
  /** Ended deliveries deleted per statement by the retention sweep, and how often it runs. */
  sweepBatch: 1_000,
  sweepEveryMs: 60_000,
  urlMaxLength: 2_048,
  descriptionMaxLength: 500,
  minProgressIntervalMs: 1_000,
  /** Deliveries a log query returns at most. */
  logPageMax: 100,
} as const;

// --- Jobs --------------------------------------------------------------------------------------

/**
 * What one job may hold. `metadataBytes` bounds a job's serialized metadata after every merge (and
 * with it responses, notifications and memory); `metadataDepth` bounds nesting, which PostgreSQL's
 * jsonb and every recursive reader would otherwise pay for.
 */
export const JOB_LIMITS = { text: 500, steps: 100, error: 10_000, metadataBytes: 64 * 1024, metadataDepth: 32, idempotencyKey: 255 } as const;

/**
 * A job's heartbeat timeout (CreateJobInput.heartbeatTimeoutMs, JOB_HEARTBEAT_TIMEOUT_MS): at least
 * a second, so that a worker can keep up with it over a real network; at most a day, past which a
 * dead worker is no longer noticed in any useful time.
 */
export const HEARTBEAT_TIMEOUT_MS = { min: 1_000, max: 86_400_000 } as const;

/**
 * Jobs an instance fails as stalled per sweep (JOB_STALL_SWEEP_INTERVAL_MS): a backlog of lapsed
 * jobs (after an outage) drains a batch per sweep without one query holding many rows.
 */
export const STALL_SWEEP_BATCH = 100;

/**
 * Expired idempotency keys (IDEMPOTENCY_TTL_MS) are deleted every `everyMs` (or the TTL if shorter),
 * `batch` keys per statement so that no statement holds many rows, at most `maxBatches` per run so
 * that a backlog (after an outage) drains over a few runs: 100,000 keys a minute is far beyond the
 * jobs any workspace creates.
 */
export const EXPIRED_KEY_SWEEP = { everyMs: 60_000, batch: 1_000, maxBatches: 100 } as const;

/** Jobs per page of the `jobs` query and `GET /api/jobs`: the reference's default, and a page a dashboard renders at once. */
export const LIST_LIMIT = { default: 50, max: 200 } as const;

/**
 * A transition that keeps losing the race for its job (another writer committed in between every
 * attempt) gives up after this many tries with CONFLICT, rather than spinning.
 */
export const MAX_TRANSITION_ATTEMPTS = 25;

/** Jobs whose latest state an instance remembers (see RememberedJobs): the busy ones of many dashboards, a few MB. */
export const REMEMBERED_JOBS = 10_000;

// --- The change feed ---------------------------------------------------------------------------

/** Changes read per statement: a burst of thousands goes out in pages, each one indexed read. */
export const FEED_PAGE_SIZE = 500;

/**
 * A read that found changes held back by a running transaction tries again after this long,
 * doubling while the same transaction holds them, up to the catch-up interval.
 */
export const HELD_BACK_RETRY_MS = { first: 5, max: 1_000 } as const;

/** A transaction that holds changes back this long is worth a warning to the operator. */
export const HELD_BACK_WARNING_MS = 10_000;

/** The LISTEN connection's reconnect backoff: quick after a blip, at most one attempt per 5 s during an outage. */
export const LISTEN_BACKOFF_MS = { first: 100, max: 5_000 } as const;

/**
 * The feed bus (FEED_BUS): how often an instance that is not the feed reader tries to become it. A
 * reader that dies releases its session lock at once (its connection closes), so another one reads
 * within this, plus its start (a horizon and a LISTEN), well inside the 2 s the operators' guide
 * promises.
 */
export const FEED_READER_ELECTION_MS = 500;

/**
 * A follower counts the feed reader as gone (and its workspaces as not current: the response cache
 * stops serving them) when no frontier came over the bus for this many catch-up intervals: the
 * reader sends one at least every interval.
 */
export const FEED_READER_SILENT_INTERVALS = 3;

/**
 * With a feed bus, how often each instance tells the others what its per-key rate limits took: how
 * far apart the instances' buckets may be. Three instances at a key's full rate admit at most
 * about 3 × rate × this beyond the limit (10% of a second's worth at 3 instances and 33 ms).
 */
export const SHARED_LIMITS_SYNC_MS = 33;

/**
 * With a feed bus, how often each instance sends what every key holds open on it, even when nothing
 * changed: how it says it is alive. One not heard for three of these counts for nothing.
 */
export const SHARED_CAPS_SNAPSHOT_MS = 1_000;

/**
 * Only connections this young are closed to bring a key back within its cap across instances: an
 * excess comes from connections admitted on several instances within one sync, which are seen
 * within well under this. Older ones are not closed, whatever stale counts may say.
 */
export const SHARED_CAPS_YOUNG_MS = 1_000;

/** Keys per message of a rate-limit or connection-count sync; more go in several. */
export const SHARED_LIMITS_KEYS_PER_MESSAGE = 1_000;

/** The longest wait before the feed bus tries again a mode change that failed (it doubles from the catch-up interval). */
export const FEED_RETRY_MAX_MS = 30_000;

/** Gap repairs (reads of one workspace's changes from PostgreSQL) a follower runs at once. */
export const FEED_REPAIR_CONCURRENCY = 4;

/** Batches a workspace keeps while its repair runs; beyond, it drops them and reads once more after. */
export const FEED_PENDING_BATCHES = 1_000;

/**
 * How long an instance elected as the feed reader may take to start reading (a horizon and its
 * LISTEN connection) before it gives the lock up for another to take: one that cannot reach
 * PostgreSQL must not hold every follower without updates.
 */
export const FEED_READER_START_TIMEOUT_MS = 10_000;

/** The bus connection's reconnect backoff after a failed first connect (the client itself retries once connected). */
export const BUS_CONNECT_BACKOFF_MS = { first: 250, max: 5_000 } as const;

/**
 * How often the LISTEN connection, otherwise silent, proves that the server still answers. A
 * connection whose server went silent without closing it (a network partition) is replaced after
 * at most this plus the query timeout; until then notifications cannot arrive, and subscribers hear
 * of changes at the feed's catch-up interval instead.
 */
export const LISTEN_HEARTBEAT_MS = 5_000;

/**
 * Messages a WebSocket may send before it is acknowledged (its connection_init, a ping or two):
 * beyond, it closes with 4429. A socket holds no key until then, so the per-socket budget
 * (WS_MAX_MESSAGES_PER_SECOND) would otherwise be had afresh by opening another.
 */
export const MESSAGES_BEFORE_ACK = 10;

/** How long stopping waits for a connection's orderly close before dropping its socket. */
export const CONNECTION_CLOSE_WAIT_MS = 1_000;

// --- GraphQL -----------------------------------------------------------------------------------

/** Cost verdicts remembered per document (one per operation name and value of its cost variables). */
export const MAX_VERDICTS_PER_DOCUMENT = 256;

/** Workspaces whose response-cache generation is remembered: a few MB at most. */
export const TRACKED_WORKSPACES = 100_000;

/**
 * Automatic persisted queries (graphql/persisted-documents.ts) remembered per instance: each
 * workspace (and the access tokens of each restriction apart) its own `documentsPerWorkspace`
 * documents within `bytesPerWorkspace` (an entry counts its text at two bytes a character, plus
 * `bytesPerEntry` for its hash and the cache's bookkeeping); a dashboard's few dozen documents are
 * tens of KB. For the `workspaces` used most recently: at most about 128 MiB in all, and one
 * workspace registering documents in a loop evicts only its own. A forgotten document costs its
 * client one round trip (PERSISTED_QUERY_NOT_FOUND, then the full text), which is also what a
 * client meets on another instance.
 */
export const PERSISTED_QUERIES = { bytesPerWorkspace: 128 * 1024, documentsPerWorkspace: 256, bytesPerEntry: 256, workspaces: 1_000 } as const;

/** The longest document id (a sha256 hex is 64 characters; a manifest's ids may be prefixed, `sha256:`). */
export const MAX_DOCUMENT_ID_LENGTH = 256;

// --- Tracing -----------------------------------------------------------------------------------

/** Links a feed dispatch's span carries to the writes it dispatches: OpenTelemetry's default span limit (more are dropped anyway). */
export const MAX_SPAN_LINKS = 128;

/** The longest operation name a span is named by (and records); a longer one, which the client chose, is left out. */
export const MAX_SPAN_NAME_CHARS = 100;

// --- WebSocket delivery ------------------------------------------------------------------------

/**
 * States waiting for stopped readers, all sockets together, at most this many WS_MAX_BUFFERED_BYTES.
 * Waiting states are merged (newest per subscription and job), so they outgrow a buffer only when
 * a burst touches many jobs at once (a feed page of large states, a bulk update by SQL); a reader
 * that keeps up takes such a burst within milliseconds, one that has stopped keeps it.
 */
export const PENDING_BYTES_TOTAL_FACTOR = 256;

/**
 * Subscriptions the fan-outs write to, together, before they let the event loop turn (shared
 * equally among the fan-outs running at once). A change to a workspace with thousands of
 * subscribers is thousands of socket writes (about 20 µs each); written in one go, a burst of
 * changes held the loop for hundreds of milliseconds, and with it every request, every other
 * workspace's delivery and the accepting of new connections (libuv accepts one per turn). 256
 * writes are 5 to 10 ms.
 */
export const FANOUT_SENDS_PER_TURN = 256;

/** Keepalive pings sent per turn of the event loop: a round over 10,000 idle sockets must not hold it in one piece. */
export const KEEPALIVE_PINGS_PER_TURN = 256;

/** How often waiting frames are retried and stopped readers found (the kernel's `drain` aside). */
export const FLUSH_INTERVAL_MS = 50;

/**
 * How long a socket must have had no room before it may be closed for the bound above: long
 * enough that a reader busy with a large burst (a client parsing megabytes, a loaded machine) is
 * not taken for a stopped one; short enough that stopped readers' memory is back within a second.
 */
export const STALLED_MS = 1_000;

// --- The embedded database ---------------------------------------------------------------------

/**
 * The most the child that creates the embedded database's cluster may take (initdb: about 2 s
 * here); beyond, it is killed and the server's own open tries in-process.
 */
export const EMBEDDED_INITDB_TIMEOUT_MS = 120_000;

/** PGlite's buffer cache: a few times the jobs table of a busy dashboard (PostgreSQL's 128 MB default is idle memory here). */
export const EMBEDDED_SHARED_BUFFERS = '16MB';

// --- Response bodies ---------------------------------------------------------------------------

/**
 * The longest the event loop is held by the work that is cut in slices (live/turn-slicer.ts
 * `cpuTurns`: response bodies being made, replays being rendered) before other work gets a turn,
 * all of it together. A 13 MB result is about 50 ms of JSON.stringify; a piece of that work is one
 * job, so a turn overruns this by one job per loop at most.
 */
export const CPU_SLICE_MS = 4;

/**
 * Queries of one workspace waiting for room in its response budget (limits/response-budget.ts)
 * while its peers execute; past this, refused RATE_LIMITED at once. A dashboard's page load waits
 * a few; a flood cannot park unbounded requests.
 */
export const QUERIES_WAITING_PER_WORKSPACE = 64;

/**
 * How a response body is made (src/graphql/serialized.ts). `chunkChars`: text gathered before it
 * is encoded to UTF-8 (about 0.5 ms a MB), and the size of the pieces written to a socket.
 * `walkedLevels`: the result, `data`, a field and its list are walked; a list's items are
 * stringified whole.
 */
export const SERIALIZE = { chunkChars: 1024 * 1024, walkedLevels: 4 } as const;

/**
 * When an idle instance hands memory back (idle-memory.ts): checked every `checkMs`; idle means the
 * event loop was busy less than `maxUtilization` of that time; worth it when V8's young generation
 * holds more than `minYoungBytes` (it grows to 64 MiB under load and V8 never shrinks it back on its
 * own). The release is a full, compacting GC: about 100 ms on an idle server, so never under load.
 */
export const IDLE_MEMORY = { checkMs: 10_000, maxUtilization: 0.02, minYoungBytes: 8 * 1024 * 1024 } as const;
