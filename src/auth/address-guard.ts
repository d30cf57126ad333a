import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import proxyAddr from 'proxy-addr';
import { RateLimiter } from '../limits/rate-limiter.js';
import type { Authenticator } from './authenticator.js';
import type { Principal } from './scopes.js';

/** A caller's key checked: its principal (null: missing, unknown or revoked), or refused before any lookup. */
export type KeyCheck = { refused: false; principal: Principal | null } | { refused: true; retryAfterSeconds: number };

/**
 * Authenticates keys with the lookups that bad keys cause limited per client address. Each check
 * that needs the database (see ApiKeyStore.answerWithoutLookup; every access token) or that has no key at
 * all takes a token of its address's bucket first, and gives it back unless the key turned out
 * unknown: a client with valid keys never runs out, however many keys it uses, while an address
 * that keeps presenting bad ones is refused after a burst, without a lookup, until its bucket
 * refills. (The burst is also the most lookups one address can have waiting at once; requests for
 * a key already being looked up wait for that lookup without a token.) Clients behind a proxy
 * share its address unless `trustedProxyHops` lets X-Forwarded-For name them; IPv6 clients are
 * counted by their /64, the block one host or home is given, so that rotating addresses within it
 * buys no fresh budget.
 */
export class AddressGuard {
  private readonly buckets: RateLimiter;
  private readonly trust: (address: string, hop: number) => boolean;

  constructor(
    private readonly credentials: Pick<Authenticator, 'answerWithoutLookup' | 'authenticate'>,
    perSecond: number,
    trustedProxyHops: number,
  ) {
    this.buckets = new RateLimiter(perSecond, 2 * perSecond);
    this.trust = (_address, hop) => hop < trustedProxyHops;
  }

  /** Whose budget a request spends: the client's IPv4 address or IPv6 /64. */
  budgetOf(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? 'unknown';
    // What a trusted proxy names is checked to be an address: anything else (a client writing its
    // own X-Forwarded-For past a proxy that appends) counts as the peer, and never as a key of its
    // own in the buckets.
    const named = proxyAddr(req, this.trust) as string | undefined;
    const address = named && ipaddr.isValid(named) ? named : peer;
    if (!ipaddr.isValid(address)) return address;
    const parsed = ipaddr.process(address);
    return parsed.kind() === 'ipv6'
      ? `${(parsed as ipaddr.IPv6).parts
          .slice(0, 4)
          .map((part) => part.toString(16))
          .join(':')}::/64`
      : parsed.toString();
  }

  async check(key: string | undefined, req: IncomingMessage): Promise<KeyCheck> {
    if (key) {
      const known = this.credentials.answerWithoutLookup(key);
      if (known) return { refused: false, principal: await known };
    }
    const budget = this.budgetOf(req);
    const verdict = this.buckets.take(budget);
    if (!verdict.allowed) return { refused: true, retryAfterSeconds: verdict.retryAfterSeconds };
    if (!key) return { refused: false, principal: null };
    let principal: Principal | null;
    try {
      principal = await this.credentials.authenticate(key);
    } catch (error) {
      // The database did not answer: nothing says the key was bad.
      this.buckets.refund(budget);
      throw error;
    }
    if (principal) this.buckets.refund(budget);
    return { refused: false, principal };
  }
}
