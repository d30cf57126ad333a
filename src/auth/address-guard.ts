import type { IncomingMessage } from 'node:http';
import proxyAddr from 'proxy-addr';
import { RateLimiter } from '../limits/rate-limiter.js';
import type { ApiKeyStore } from './api-keys.js';
import type { Principal } from './scopes.js';

/** A caller's key checked: its principal (null: missing, unknown or revoked), or refused before any lookup. */
export type KeyCheck = { refused: false; principal: Principal | null } | { refused: true; retryAfterSeconds: number };

/**
 * Authenticates keys with the lookups that bad keys cause limited per client address. Each check
 * that needs the database (a key not remembered, see ApiKeyStore.remembered) or that has no key at
 * all takes a token of its address's bucket first, and a valid key gives it back: a client with
 * valid keys never runs out, however many keys it uses, while an address that keeps presenting bad
 * ones is refused after a burst, without a lookup, until its bucket refills. Clients behind a
 * proxy share its address unless `trustedProxyHops` lets X-Forwarded-For name them.
 */
export class AddressGuard {
  private readonly buckets: RateLimiter;
  private readonly trust: (address: string, hop: number) => boolean;

  constructor(
    private readonly apiKeys: ApiKeyStore,
    perSecond: number,
    trustedProxyHops: number,
  ) {
    this.buckets = new RateLimiter(perSecond, 2 * perSecond);
    this.trust = (_address, hop) => hop < trustedProxyHops;
  }

  /** The client's address: the peer's, or the one the trusted proxies name in X-Forwarded-For. */
  addressOf(req: IncomingMessage): string {
    // A socket already gone has no address: such requests share one budget.
    return (proxyAddr(req, this.trust) as string | undefined) ?? 'unknown';
  }

  async check(key: string | undefined, req: IncomingMessage): Promise<KeyCheck> {
    const remembered = key ? this.apiKeys.remembered(key) : undefined;
    if (remembered) return { refused: false, principal: remembered };
    const address = this.addressOf(req);
    const verdict = this.buckets.take(address);
    if (!verdict.allowed) return { refused: true, retryAfterSeconds: verdict.retryAfterSeconds };
    const principal = key ? await this.apiKeys.authenticate(key) : null;
    if (principal) this.buckets.refund(address);
    return { refused: false, principal };
  }
}
