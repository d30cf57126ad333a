import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { boundedCache } from '../limits/bounded-cache.js';
import { SignJWT, decodeProtectedHeader, jwtVerify } from 'jose';
import type { SqlClient } from '../db/sql.js';
import { appError, errors } from '../errors.js';
import { ACCESS_TOKEN, AUTH_CACHE_MAX_ENTRIES } from '../limits/fixed.js';
import { RateLimiter } from '../limits/rate-limiter.js';
import type { JobRestriction } from '../jobs/job-filter.js';
import { type Principal, type Scope, isScope } from './scopes.js';

export interface MintRequest {
  scopes: readonly string[];
  restriction?: JobRestriction | undefined;
  /** Default ACCESS_TOKEN.defaultTtlMs, at most ACCESS_TOKEN_MAX_TTL_MS. */
  ttlMs?: number | null | undefined;
}

export interface AccessTokenOptions {
  /** ACCESS_TOKEN_MAX_TTL_MS: the longest lifetime a token may be minted with. */
  maxTtlMs: number;
  /** ACCESS_TOKEN_KEY_ROTATION_MS: how long one signing key signs before the next is made. */
  keyRotationMs: number;
}

/** Scopes a token may carry: reading and cancelling. A worker's write scope is never handed to a browser. */
export const DELEGABLE_SCOPES: readonly Scope[] = ['jobs:read', 'jobs:cancel'];

const ISSUER = 'jobs-gateway';
const ALGORITHM = 'HS256';

interface SigningKey {
  id: string;
  secret: Uint8Array;
  createdAt: number;
}

/** The claims a token carries beyond the registered ones (sub: the minting key's id). */
interface TokenClaims {
  ws: string;
  scp: string[];
  rst?: { job?: string; cmp?: string; typ?: string };
}

/**
 * Short-lived, scoped tokens that a backend mints with its API key for browsers: JWTs (jose),
 * HMAC-SHA-256 with keys kept in the database, so that every instance accepts what any minted.
 * A token stands for the key that minted it (revoking the key ends its tokens, through the same
 * checks as the key), narrowed to some of its scopes and, optionally, some of its jobs.
 */
export class AccessTokens {
  private readonly keys = new Map<string, SigningKey>();
  private reloading: Promise<void> | undefined;
  private reloadedAt = Number.NEGATIVE_INFINITY;
  private creating: Promise<SigningKey> | undefined;
  /**
   * Tokens verified lately, by their hash, until they expire: a page presents the same token on every
   * request, and verifying it (WebCrypto's HMAC, an asynchronous job) was a fifth of the CPU of a
   * token's read (test/bench/RESULTS.md). The same string verifies the same way until it expires,
   * which is checked at every use; whether its minting key is still active is checked by the caller.
   */
  private readonly verified = boundedCache<string, Principal>(AUTH_CACHE_MAX_ENTRIES);
  /** Mints per minting key: a key cannot turn one request into thousands of tokens (aliases) that each get their own request rate. */
  private readonly mints = new RateLimiter(ACCESS_TOKEN.mintsPerKey.perSecond, ACCESS_TOKEN.mintsPerKey.burst);

  constructor(
    private readonly sql: Pick<SqlClient, 'query'>,
    private readonly options: AccessTokenOptions,
  ) {}

  /** Whether a presented credential is shaped like a token (three base64url parts), not an API key. */
  static looksLikeToken(credential: string): boolean {
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(credential);
  }

  /**
   * A token for `principal`'s workspace with some of its scopes. Refused with a coded error: a
   * token minting another, a scope the key lacks or that cannot be delegated, a lifetime out of
   * range. (Whether a restricting job exists is the caller's to check: it reads jobs.)
   */
  async mint(principal: Principal, request: MintRequest): Promise<{ token: string; expiresAt: Date }> {
    if (principal.token) throw appError('FORBIDDEN', 'An access token cannot mint tokens; mint them with an API key.');
    const scopes = [...new Set(request.scopes)];
    if (scopes.length === 0) throw errors.badInput('scopes must name at least one scope.');
    for (const scope of scopes) {
      if (!isScope(scope)) throw errors.badInput(`Unknown scope ${JSON.stringify(scope).slice(0, 80)}.`);
      if (!DELEGABLE_SCOPES.includes(scope)) throw errors.badInput(`${scope} cannot be given to a token (only ${DELEGABLE_SCOPES.join(', ')}).`);
      if (!principal.scopes.has(scope)) throw errors.forbidden(scope);
    }
    const ttlMs = request.ttlMs ?? ACCESS_TOKEN.defaultTtlMs;
    if (!Number.isInteger(ttlMs) || ttlMs < ACCESS_TOKEN.minTtlMs || ttlMs > this.options.maxTtlMs) {
      throw errors.badInput(`ttlMs must be an integer from ${ACCESS_TOKEN.minTtlMs} to ${this.options.maxTtlMs}.`);
    }
    const restriction = request.restriction ?? {};
    const verdict = this.mints.take(principal.keyId);
    if (!verdict.allowed) {
      throw appError('RATE_LIMITED', `Too many tokens minted with this API key; retry after ${verdict.retryAfterSeconds} s.`, {});
    }
    const key = await this.signingKey();
    const now = Date.now();
    const expiresAt = new Date(now + ttlMs);
    const claims: TokenClaims = { ws: principal.workspaceId, scp: scopes };
    const rst = { job: restriction.jobId, cmp: restriction.competitorId, typ: restriction.type };
    if (Object.values(rst).some((value) => value !== undefined)) claims.rst = JSON.parse(JSON.stringify(rst)) as TokenClaims['rst'];
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: ALGORITHM, kid: key.id, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(ISSUER)
      .setSubject(principal.keyId)
      .setJti(randomUUID())
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(key.secret);
    // A restriction of long, escaped text could make a token longer than any accepted: refuse it here, not at every use.
    if (token.length > ACCESS_TOKEN.maxLength) throw errors.badInput(`The restriction makes the token longer than ${ACCESS_TOKEN.maxLength} characters.`);
    return { token, expiresAt: new Date(Math.floor(expiresAt.getTime() / 1000) * 1000) };
  }

  /**
   * The principal a token stands for, or null for anything that is not a valid, current token of
   * ours: malformed, another algorithm (`none` included), a signature of another key, expired, not
   * yet valid, an unknown or retired key. Never throws for what the token holds; only an outage
   * of the database (reading keys) throws.
   */
  async verify(token: string): Promise<Principal | null> {
    if (token.length > ACCESS_TOKEN.maxLength || !AccessTokens.looksLikeToken(token)) return null;
    const hash = createHash('sha256').update(token).digest('base64url');
    const known = this.verified.get(hash);
    if (known?.token) return known.token.expiresAt > Date.now() ? known : null;
    const principal = await this.verifyNow(token);
    if (principal?.token) this.verified.set(hash, principal, { ttl: Math.max(1, principal.token.expiresAt - Date.now()) });
    return principal;
  }

  private async verifyNow(token: string): Promise<Principal | null> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      return null;
    }
    if (typeof kid !== 'string' || kid.length > 64) return null;
    const key = await this.acceptedKey(kid);
    if (!key) return null;
    try {
      const { payload } = await jwtVerify<TokenClaims>(token, key.secret, {
        algorithms: [ALGORITHM],
        issuer: ISSUER,
        audience: ISSUER,
        // No tolerance: a token is refused the second it expires (it has no nbf for a skewed clock to trip on).
        requiredClaims: ['exp', 'sub', 'jti'],
      });
      return principalOf(payload);
    } catch {
      return null;
    }
  }

  /** A key whose tokens may still be valid, reading the table again (at most once a second) for a kid not known yet. */
  private async acceptedKey(kid: string): Promise<SigningKey | undefined> {
    let key = this.keys.get(kid);
    if (!key && performance.now() - this.reloadedAt >= ACCESS_TOKEN.keyReloadIntervalMs) {
      // A token naming a key that cannot be read now is refused, not a 503: random kids during an
      // outage must not turn into one failing read each (the interval counts from the attempt).
      await this.reload().catch(() => undefined);
      key = this.keys.get(kid);
    }
    return key && key.createdAt > Date.now() - this.options.keyRotationMs - this.options.maxTtlMs ? key : undefined;
  }

  /** The newest key while it is younger than the rotation; else a new one (another instance's, if it made one first). */
  private async signingKey(): Promise<SigningKey> {
    const current = () =>
      [...this.keys.values()].filter((key) => key.createdAt > Date.now() - this.options.keyRotationMs).sort((a, b) => b.createdAt - a.createdAt)[0];
    const known = current();
    if (known) return known;
    this.creating ??= (async () => {
      await this.reload();
      const reloaded = current();
      if (reloaded) return reloaded;
      // Keys no token can use any more go as a new one comes: once per rotation.
      await this.sql.query(`DELETE FROM "AccessTokenKey" WHERE "createdAt" < now() - $1 * interval '1 millisecond'`, [
        this.options.keyRotationMs + this.options.maxTtlMs,
      ]);
      const [row] = await this.sql.query<{ id: string; secret: string; createdAt: Date }>(
        `INSERT INTO "AccessTokenKey" (id, secret) VALUES ($1, $2) RETURNING id, secret, "createdAt"`,
        [randomBytes(12).toString('base64url'), randomBytes(32).toString('base64url')],
      );
      return this.remember(row!);
    })().finally(() => (this.creating = undefined));
    return this.creating;
  }

  private reload(): Promise<void> {
    this.reloading ??= (async () => {
      this.reloadedAt = performance.now();
      try {
        const rows = await this.sql.query<{ id: string; secret: string; createdAt: Date }>(
          `SELECT id, secret, "createdAt" FROM "AccessTokenKey" WHERE "createdAt" > now() - $1 * interval '1 millisecond'`,
          [this.options.keyRotationMs + this.options.maxTtlMs],
        );
        // Added to what is known, not replacing it: a key this instance just made stays, whatever a
        // read that began before it saw. Keys past use are left out by acceptedKey and signingKey.
        for (const row of rows) this.remember(row);
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  private remember(row: { id: string; secret: string; createdAt: Date }): SigningKey {
    const key = { id: row.id, secret: Buffer.from(row.secret, 'base64url'), createdAt: new Date(row.createdAt).getTime() };
    this.keys.set(key.id, key);
    return key;
  }
}

/** A verified token's principal; null for claims we would not have written. */
function principalOf(payload: TokenClaims & { sub?: string; exp?: number; jti?: string }): Principal | null {
  const { ws, scp, rst, sub, exp, jti } = payload;
  if (typeof ws !== 'string' || typeof sub !== 'string' || typeof exp !== 'number' || typeof jti !== 'string' || !Array.isArray(scp)) return null;
  const scopes = scp.filter((scope): scope is Scope => typeof scope === 'string' && isScope(scope) && DELEGABLE_SCOPES.includes(scope));
  const restriction: { jobId?: string; competitorId?: string; type?: string } = {};
  if (rst !== undefined) {
    if (typeof rst !== 'object' || rst === null) return null;
    for (const [claim, field] of [
      ['job', 'jobId'],
      ['cmp', 'competitorId'],
      ['typ', 'type'],
    ] as const) {
      const value = rst[claim];
      if (value === undefined) continue;
      if (typeof value !== 'string') return null;
      restriction[field] = value;
    }
  }
  return { keyId: sub, workspaceId: ws, scopes: new Set(scopes), token: { id: jti, expiresAt: exp * 1000, restriction } };
}
