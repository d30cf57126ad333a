import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { boundedCache } from '../limits/bounded-cache.js';
import type { SqlClient } from '../db/sql.js';
import { isUuid } from '../ids.js';
import { type Principal, type Scope, isScope } from './scopes.js';
import { AUTH_CACHE_MAX_ENTRIES, MAX_API_KEY_LENGTH, UNKNOWN_KEYS_REMEMBERED } from '../limits/fixed.js';

const KEY_PREFIX = 'jg_';
const SHOWN_PREFIX_LENGTH = 10;

/** 256 random bits: a fast hash is enough to store it (no dictionary to guess from). */
export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export interface ApiKeyInfo {
  id: string;
  workspace: string;
  name: string | null;
  prefix: string;
  scopes: Scope[];
  createdAt: Date;
  revokedAt: Date | null;
}

export class UnknownWorkspaceError extends Error {}
export class UnknownKeyError extends Error {}

/** An "ApiKey" row as the drivers return it (scopes as an array, times as Dates). */
interface ApiKeyRow {
  id: string;
  workspaceId: string;
  name: string | null;
  prefix: string;
  scopes: string[];
  createdAt: Date;
  revokedAt: Date | null;
}

// The column may hold NULL (nothing the gateway writes): read as no scopes, not as a failure.
const KEY_COLUMNS = `k."id", k."workspaceId", k."name", k."prefix", coalesce(k."scopes", '{}') AS "scopes", k."createdAt", k."revokedAt"`;

/**
 * Issues, lists, revokes and checks API keys. Only hashes are stored; a key is shown once.
 *
 * Its statements run on the driver, like the job store's: Prisma's client, for these few, loaded
 * its query compiler into every server (about 30 MiB of an idle server's RSS; RESULTS.md).
 *
 * `authenticate` remembers a valid key for `cacheTtlMs`, sparing a database read on every request
 * of a busy client. A revocation through this store takes effect here at once; one made elsewhere
 * (the CLI, another instance) within the TTL.
 */
export class ApiKeyStore {
  /** Principals by key hash; absent when caching is off (a TTL of 0). */
  private readonly cache: LRUCache<string, Principal> | undefined;
  /** Ids of keys found active lately (for the access tokens they minted); absent when caching is off. */
  private readonly activeIds: LRUCache<string, true> | undefined;
  /**
   * Hashes of keys the database did not know, for a short while: a client repeating a bad key
   * costs one lookup, not one per request. A key only exists once issued (256 random bits), so one
   * found unknown cannot become valid while remembered.
   */
  private readonly unknown = boundedCache<string, true>(UNKNOWN_KEYS_REMEMBERED.max, { ttl: UNKNOWN_KEYS_REMEMBERED.ttlMs });
  /** Keys looked up in the database so far (what the caches and the address budget spare). */
  lookups = 0;
  /** Lookups under way by key hash: concurrent requests with one key share one. */
  private readonly pending = new Map<string, Promise<Principal | null>>();

  constructor(
    private readonly sql: Pick<SqlClient, 'query'>,
    cacheTtlMs = 0,
  ) {
    if (cacheTtlMs > 0) {
      this.cache = boundedCache(AUTH_CACHE_MAX_ENTRIES, { ttl: cacheTtlMs });
      this.activeIds = boundedCache(AUTH_CACHE_MAX_ENTRIES, { ttl: cacheTtlMs });
    }
  }

  /** Creates the workspace if it is new. Returns the key itself: the only time it exists in clear. */
  async create(input: { workspace: string; name?: string | undefined; scopes: readonly Scope[] }): Promise<{ key: string; info: ApiKeyInfo }> {
    const key = generateApiKey();
    // One statement: the workspace (new or not) and the key. A workspace another statement creates
    // meanwhile is invisible to this one's snapshot, and no key is made: the second try sees it.
    for (let attempt = 1; ; attempt++) {
      const [row] = await this.insertKey(key, input);
      if (row) return { key, info: toInfo(row, input.workspace) };
      if (attempt >= 3) throw new Error(`The workspace "${input.workspace}" could be neither created nor found.`);
    }
  }

  private insertKey(key: string, input: { workspace: string; name?: string | undefined; scopes: readonly Scope[] }): Promise<ApiKeyRow[]> {
    return this.sql.query<ApiKeyRow>(
      `WITH inserted AS (
         INSERT INTO "Workspace" ("id", "slug") VALUES ($1::uuid, $2) ON CONFLICT ("slug") DO NOTHING RETURNING "id"
       ), workspace AS (
         SELECT "id" FROM inserted UNION ALL SELECT "id" FROM "Workspace" WHERE "slug" = $2
       )
       INSERT INTO "ApiKey" AS k ("id", "workspaceId", "name", "keyHash", "prefix", "scopes")
       SELECT $3::uuid, "id", $4, $5, $6, $7::text[] FROM workspace LIMIT 1
       RETURNING ${KEY_COLUMNS}`,
      [randomUUID(), input.workspace, randomUUID(), input.name ?? null, hashApiKey(key), key.slice(0, SHOWN_PREFIX_LENGTH), [...new Set(input.scopes)]],
    );
  }

  async list(workspace: string): Promise<ApiKeyInfo[]> {
    const [ws] = await this.sql.query<{ id: string }>(`SELECT "id" FROM "Workspace" WHERE "slug" = $1`, [workspace]);
    if (!ws) throw new UnknownWorkspaceError(`No workspace "${workspace}".`);
    const rows = await this.sql.query<ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM "ApiKey" k WHERE k."workspaceId" = $1::uuid ORDER BY k."createdAt", k."id"`, [
      ws.id,
    ]);
    return rows.map((row) => toInfo(row, workspace));
  }

  /** Revoking twice is harmless; the first revocation time is kept. */
  async revoke(keyId: string): Promise<ApiKeyInfo> {
    const [row] = isUuid(keyId)
      ? await this.sql.query<ApiKeyRow & { slug: string }>(
          `WITH revoked AS (
             UPDATE "ApiKey" SET "revokedAt" = coalesce("revokedAt", now()) WHERE "id" = $1::uuid RETURNING *
           )
           SELECT ${KEY_COLUMNS}, w."slug" FROM revoked k JOIN "Workspace" w ON w."id" = k."workspaceId"`,
          [keyId],
        )
      : [];
    if (!row) throw new UnknownKeyError(`No API key with id "${keyId}".`);
    this.forget([keyId]);
    return toInfo(row, row.slug);
  }

  async countActive(): Promise<number> {
    const [row] = await this.sql.query<{ count: number }>(`SELECT count(*)::int AS "count" FROM "ApiKey" WHERE "revokedAt" IS NULL`);
    return row?.count ?? 0;
  }

  /** Which of these key ids are still usable (exist and are not revoked). */
  async stillActive(keyIds: readonly string[]): Promise<Set<string>> {
    const ids = keyIds.filter(isUuid);
    if (ids.length === 0) return new Set();
    const rows = await this.sql.query<{ id: string }>(`SELECT "id" FROM "ApiKey" WHERE "id" = ANY($1::uuid[]) AND "revokedAt" IS NULL`, [ids]);
    return new Set(rows.map((row) => row.id));
  }

  /**
   * Whether a key id is usable (exists, not revoked): what an access token asks of the key that
   * minted it on every request. Remembered like a key, for the cache's TTL; forgotten on revocation.
   */
  async isActive(keyId: string): Promise<boolean> {
    if (this.activeIds?.get(keyId)) return true;
    if (!isUuid(keyId)) return false;
    this.lookups++;
    const active = (await this.stillActive([keyId])).has(keyId);
    if (active) this.activeIds?.set(keyId, true);
    return active;
  }

  /** Drops remembered keys (revoked elsewhere, as a socket recheck found out). */
  forget(keyIds: readonly string[]): void {
    for (const keyId of keyIds) this.activeIds?.delete(keyId);
    if (!this.cache || keyIds.length === 0) return;
    const ids = new Set(keyIds);
    const hashes = [...this.cache.entries()].filter(([, principal]) => ids.has(principal.keyId)).map(([hash]) => hash);
    for (const hash of hashes) this.cache.delete(hash);
  }

  /**
   * What `key` stands for without a new database read: its principal when it was checked lately,
   * or the lookup of it under way; undefined when only `authenticate` can tell.
   */
  answerWithoutLookup(key: string): Principal | Promise<Principal | null> | undefined {
    if (key.length > MAX_API_KEY_LENGTH) return undefined;
    const keyHash = hashApiKey(key);
    return this.cache?.get(keyHash) ?? this.pending.get(keyHash);
  }

  /** The principal a presented key stands for, or null when it is unknown or revoked. */
  async authenticate(key: string): Promise<Principal | null> {
    if (key.length > MAX_API_KEY_LENGTH) return null;
    const keyHash = hashApiKey(key);
    const cached = this.cache?.get(keyHash);
    if (cached) return cached;
    if (this.unknown.has(keyHash)) return null;
    let lookup = this.pending.get(keyHash);
    if (!lookup) {
      lookup = this.lookUp(keyHash).finally(() => this.pending.delete(keyHash));
      this.pending.set(keyHash, lookup);
    }
    return lookup;
  }

  private async lookUp(keyHash: string): Promise<Principal | null> {
    this.lookups++;
    const [row] = await this.sql.query<Pick<ApiKeyRow, 'id' | 'workspaceId' | 'scopes' | 'revokedAt'>>(
      `SELECT "id", "workspaceId", coalesce("scopes", '{}') AS "scopes", "revokedAt" FROM "ApiKey" WHERE "keyHash" = $1`,
      [keyHash],
    );
    if (!row) this.unknown.set(keyHash, true);
    if (!row || row.revokedAt) return null;
    const principal: Principal = { keyId: row.id, workspaceId: row.workspaceId, scopes: new Set(row.scopes.filter(isScope)) };
    this.cache?.set(keyHash, principal);
    return principal;
  }
}

function toInfo(row: ApiKeyRow, workspace: string): ApiKeyInfo {
  return {
    id: row.id,
    workspace,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes.filter(isScope),
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
  };
}
