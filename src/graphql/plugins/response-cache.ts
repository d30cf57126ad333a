import { createHash } from 'node:crypto';
import { type Cache, useResponseCache } from '@envelop/response-cache';
import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import stableStringify from 'fast-json-stable-stringify';
import { LRUCache } from 'lru-cache';
import { boundedCache } from '../../limits/bounded-cache.js';
import type { Principal } from '../../auth/scopes.js';
import type { GatewayContext } from '../context.js';
import { TRACKED_WORKSPACES } from '../../limits/fixed.js';
import { serializedBody } from '../serialized.js';
import type { JobStore } from '../../jobs/job-store.js';
import type { ChangeFeed } from '../../live/change-feed.js';
import type { ResponseCacheStats } from '../../metrics.js';

export interface ResponseCacheOptions {
  /**
   * Whether invalidation of a workspace can be trusted right now (the change feed is in step for
   * it). While it is not, nothing of that workspace is served from or stored in the cache: every
   * query executes, and answers as the database does (503 during an outage).
   */
  usable?: (workspaceId: string) => boolean;
  /** Workspaces whose generation is remembered (default 100,000); see `generations`. */
  trackedWorkspaces?: number;
  /** Serialized size of all cached results together, at most. */
  maxBytes: number;
  /** MAX_RESPONSE_BYTES: what a result's body is made within (serialized.ts), here as for the response. */
  maxResponseBytes: number;
  /** How long a result may be served at most, changes or not (a safety net: changes invalidate). */
  ttlMs: number;
}

/**
 * Query results, served again while nothing in their workspace has changed: what makes a dashboard
 * that polls its job list every 2 s cost no database read while its jobs stand still.
 *
 * envelop's response cache plugin does the GraphQL side (keys from document, operation name,
 * variables and session; only queries; no result with errors). It invalidates by entity, which
 * cannot see a list gain a job that it does not contain yet; so this store invalidates a whole
 * workspace instead, on every change this instance writes or its change feed dispatches (whoever
 * wrote it). Written here because no cache store of the plugin's offers that.
 *
 * A key carries its workspace's generation as it was when the request began, before the database
 * was read. A change invalidates by moving the generation on: a result whose read may predate the
 * change is then stored under a key nobody asks for again (and refused at `set`), so no response is
 * older than the last change this instance has written or dispatched.
 */
export class WorkspaceResponseCache implements Cache {
  private readonly results: LRUCache<string, ExecutionResult>;
  /** The keys cached per workspace, so that a change drops them at once instead of leaving them to the TTL. */
  private readonly keysOf = new Map<string, Set<string>>();
  /**
   * The generation of each workspace that has been invalidated since it was last evicted from here.
   * Generations come from one counter, so they only grow; a workspace not listed is at `floor`, the
   * largest generation ever evicted, which is at least its own was (keys at the floor may then be
   * missed, never served stale).
   */
  private readonly generations: LRUCache<string, number>;
  private counter = 0;
  private floor = 0;

  readonly usable: (workspaceId: string) => boolean;
  hits = 0;
  misses = 0;
  /** Queries that joined an identical query already executing (coalesced-queries.ts): neither a hit nor a miss. */
  coalesced = 0;
  /** Invalidations of a workspace (one per change written or dispatched). */
  invalidations = 0;

  constructor(private readonly options: ResponseCacheOptions) {
    this.usable = options.usable ?? (() => true);
    this.generations = boundedCache<string, number>(options.trackedWorkspaces ?? TRACKED_WORKSPACES, {
      // Only a workspace forgotten for room raises the floor: a workspace's own next invalidation
      // replaces its generation (reason 'set'), and raising the floor then would strand every
      // untracked workspace's results.
      dispose: (generation, _workspaceId, reason) => {
        if (reason === 'evict' && generation > this.floor) this.floor = generation;
      },
    });
    this.results = new LRUCache<string, ExecutionResult>({
      maxSize: options.maxBytes,
      ttl: options.ttlMs,
      ttlAutopurge: false,
      dispose: (_result, key) => {
        const workspaceId = workspaceOfKey(key);
        const keys = this.keysOf.get(workspaceId);
        keys?.delete(key);
        if (keys?.size === 0) this.keysOf.delete(workspaceId);
      },
    });
  }

  /** The longest any result is served (RESPONSE_CACHE_TTL_MS). */
  get ttlMs(): number {
    return this.options.ttlMs;
  }

  get entries(): number {
    return this.results.size;
  }

  get bytes(): number {
    return this.results.calculatedSize;
  }

  /** Its counts, for the metrics. */
  stats(): ResponseCacheStats {
    return { hits: this.hits, misses: this.misses, coalesced: this.coalesced, invalidations: this.invalidations, bytes: this.bytes };
  }

  /**
   * Keeps the cache true to the database: a workspace's results are dropped before a write of this
   * instance answers and before the feed's subscribers hear of any change (the feed's listeners run
   * in order of subscription: this one is first). One job's read may then answer from the job
   * store's memory, under the cache's own promise.
   */
  follow(jobs: Pick<JobStore, 'onWrite' | 'answerFromMemoryWhile'>, feed: Pick<ChangeFeed, 'subscribe'>): void {
    jobs.onWrite((row) => this.invalidateWorkspace(row.workspaceId));
    feed.subscribe((rows) => {
      for (const row of rows) this.invalidateWorkspace(row.workspaceId);
    });
    jobs.answerFromMemoryWhile(this.usable, this.ttlMs);
  }

  /** Every cached result of every workspace stops being served, including those being computed now. */
  invalidateAll(): void {
    // Every workspace, listed or not, now stands above every generation a result was stored under.
    this.floor = ++this.counter;
    this.generations.clear();
    this.results.clear();
    this.invalidations++;
  }

  /** Every cached result of `workspaceId` stops being served, including those being computed now. */
  invalidateWorkspace(workspaceId: string): void {
    this.generations.set(workspaceId, ++this.counter);
    this.invalidations++;
    // Nobody asks for these keys again (they carry the old generation): free them now. A workspace
    // that changes 20 times a second while dashboards poll it would otherwise hold a minute's worth
    // of stale lists until their TTL.
    const keys = this.keysOf.get(workspaceId);
    if (keys) for (const key of [...keys]) this.results.delete(key);
  }

  /** The key of `operation` (a hash of document, operation name and variables) for a key of `workspaceId` with `scopes`, at the workspace's generation now. */
  keyFor(workspaceId: string, scopes: string, operation: string): string {
    return `${workspaceId}/${this.generationOf(workspaceId)}/${scopes}/${operation}`;
  }

  get(key: string): ExecutionResult | undefined {
    const result = this.results.get(key);
    if (result) this.hits++;
    else this.misses++;
    return result;
  }

  /** Stores `result` once its body is made (resolves then, or when it is not stored); never rejects. */
  set(key: string, result: ExecutionResult, _entities: unknown, ttl: number): Promise<void> {
    // A change since the request began: this result may predate it. Its key carries the old
    // generation, so nobody would ask for it again; refusing it spares the memory.
    const [workspaceId, generation] = key.split('/', 2) as [string, string];
    if (Number(generation) !== this.generationOf(workspaceId)) return Promise.resolve();
    // Its size is its body's, made in slices of the event loop and shared with the response
    // (serialized.ts): it is stored once that is there, if no change came in between.
    return serializedBody(result, this.options.maxResponseBytes).then(
      (made) => {
        if ('tooLarge' in made || Number(generation) !== this.generationOf(workspaceId)) return;
        this.store(workspaceId, key, result, made.bytes, Number.isFinite(ttl) ? Math.min(ttl, this.options.ttlMs) : this.options.ttlMs);
      },
      // The response fails the same way and says so; the cache only goes without.
      () => undefined,
    );
  }

  private store(workspaceId: string, key: string, result: ExecutionResult, bytes: number, ttl: number): void {
    this.results.set(key, result, { ttl, size: Math.max(1, key.length + bytes) });
    // (Too large for the cache: not stored, nothing to remember.)
    if (!this.results.has(key)) return;
    let keys = this.keysOf.get(workspaceId);
    if (!keys) this.keysOf.set(workspaceId, (keys = new Set()));
    keys.add(key);
  }

  /** Entity invalidation (after a mutation) is covered by the workspace's: every write invalidates it. */
  invalidate(): void {}

  private generationOf(workspaceId: string): number {
    return this.generations.get(workspaceId) ?? this.floor;
  }
}

/**
 * What the cache keys a caller by: its scopes, and an access token's restriction (which narrows
 * what the same query answers). Keys of one workspace with the same scopes share results; tokens
 * share them with those of the same scopes and restriction. The session key never holds a
 * credential, so one never reaches the cache's keys (or a metric).
 */
export function scopesKeyOf(principal: Principal): string {
  const scopes = [...principal.scopes].sort().join(',');
  return principal.token ? `${scopes};${stableStringify(principal.token.restriction)}` : scopes;
}

function workspaceOfKey(key: string): string {
  return key.slice(0, key.indexOf('/'));
}

/**
 * The plugin over `cache`: queries of an authenticated key, keyed by workspace (with its generation)
 * and the key's scopes, so that a result is only ever served to a key of the workspace it was read
 * for and that may run the same operation. Mutations and subscriptions are never cached.
 */
export function useWorkspaceResponseCache(cache: WorkspaceResponseCache): Plugin<GatewayContext> {
  return useResponseCache<GatewayContext>({
    cache,
    ttl: Number.POSITIVE_INFINITY,
    // Webhook endpoints and deliveries change with no job write (a delivery's attempt, an endpoint
    // edited), which is what invalidates: they are read afresh every time.
    ttlPerSchemaCoordinate: { 'Query.webhookEndpoints': 0, 'Query.webhookDeliveries': 0 },
    enabled: (ctx) => ctx.principal !== null && cache.usable(ctx.principal.workspaceId),
    // The plugin hands the session to the key builder below: the scopes are joined once a request.
    session: (ctx) => (ctx.principal ? scopesKeyOf(ctx.principal) : null),
    buildResponseCacheKey: ({ documentString, operationName, variableValues, sessionId, context }) => {
      const { principal } = context as GatewayContext;
      const operation = createHash('sha256')
        .update(documentString)
        .update('\0')
        .update(operationName ?? '')
        .update('\0')
        .update(stableStringify(variableValues ?? {}))
        .digest('base64url');
      return cache.keyFor(principal!.workspaceId, sessionId ?? '', operation);
    },
    // Results with errors (not found is null data, not an error) are answered afresh every time.
    shouldCacheResult: ({ result }) => result.errors === undefined || result.errors.length === 0,
    includeExtensionMetadata: false,
  }) as Plugin<GatewayContext>;
}
