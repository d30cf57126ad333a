import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { errors } from '../errors.js';
import { WEBHOOK } from '../limits/fixed.js';

/**
 * Where a webhook may be sent. By default only to https:// URLs whose addresses are public: a
 * gateway that called any URL a workspace names would let it reach the gateway's own network (its
 * database, a cloud metadata service at 169.254.169.254). Names are checked after they resolve, at
 * every connection (see `guardedLookup`), so a name that resolves to a public address when the
 * endpoint is saved and to a private one later is refused then. `allowPrivate` (WEBHOOK_ALLOW_PRIVATE)
 * lifts both rules, for development and tests.
 */
export interface DestinationPolicy {
  allowPrivate: boolean;
}

/** A URL as an endpoint may name it, or BAD_USER_INPUT saying why not. */
export function endpointUrl(text: string, policy: DestinationPolicy): URL {
  if (text.length > WEBHOOK.urlMaxLength) throw errors.badInput(`url must be at most ${WEBHOOK.urlMaxLength} characters.`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw errors.badInput('url is not a valid URL.');
  }
  if (url.protocol !== 'https:' && !(policy.allowPrivate && url.protocol === 'http:')) {
    throw errors.badInput('url must be an https:// URL.');
  }
  // Credentials in a URL end up in logs and in the endpoint list; a receiver checks the signature instead.
  if (url.username || url.password) throw errors.badInput('url must not carry a user name or password; receivers verify the signature.');
  if (url.hash) throw errors.badInput('url must not have a #fragment.');
  const literal = addressOf(url.hostname);
  if (literal && !policy.allowPrivate && !isPublicAddress(literal)) {
    throw errors.badInput('url must not point to a private, loopback or link-local address.');
  }
  // Parsing can lengthen it (percent-encoding): the limit holds for what is stored.
  if (url.toString().length > WEBHOOK.urlMaxLength) throw errors.badInput(`url must be at most ${WEBHOOK.urlMaxLength} characters.`);
  return url;
}

/** The IP address a URL's hostname spells, if it is one (IPv6 without its brackets). */
export function addressOf(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return net.isIP(bare) ? bare : undefined;
}

/**
 * Whether an address is public unicast: not private (10/8, 172.16/12, 192.168/16, fc00::/7),
 * loopback, link-local (169.254/16, fe80::/10), carrier-grade NAT, multicast, reserved,
 * unspecified, or an IPv6 form that embeds an IPv4 address (mapped, NAT64, 6to4, Teredo). The
 * ranges are ipaddr.js's (IANA's special-purpose registries).
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  // ::ffff:10.0.0.1 is 10.0.0.1.
  const parsed = ipaddr.process(address);
  if (parsed.range() !== 'unicast') return false;
  // IPv6: only global unicast (2000::/3); ipaddr.js calls the deprecated IPv4-compatible ::a.b.c.d unicast.
  return parsed.kind() === 'ipv4' || (parsed as ipaddr.IPv6).match(GLOBAL_UNICAST_V6);
}

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3') as [ipaddr.IPv6, number];

/** How names are resolved: dns.lookup's shape with `all: true` (tests pass a stub). */
export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

/**
 * The system's DNS, off Node's thread pool. dns.lookup (getaddrinfo) holds one of libuv's four
 * threads for as long as a name's DNS server takes, so a workspace naming hosts whose server never
 * answers could hold them all, stalling the database driver's connects and everything else on the
 * pool. The c-ares resolver asks DNS itself, with a deadline. It does not read /etc/hosts: with
 * WEBHOOK_ALLOW_PRIVATE (development), a name DNS does not know is looked up the system's way too
 * (localhost, names in /etc/hosts).
 */
export function systemResolver(policy: DestinationPolicy): Resolver {
  const resolver = new dns.promises.Resolver({ timeout: WEBHOOK.dnsTimeoutMs, tries: 2 });
  return async (hostname) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(hostname), resolver.resolve6(hostname)]);
    const found = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (found.length > 0) return found;
    if (policy.allowPrivate) return dns.promises.lookup(hostname, { all: true, verbatim: true });
    const timedOut = [v4, v6].some((answer) => answer.status === 'rejected' && (answer.reason as { code?: string }).code === dns.TIMEOUT);
    if (timedOut) throw Object.assign(new Error(`${hostname} could not be resolved in time`), { code: 'EAI_AGAIN' });
    return [];
  };
}

/** A name that resolved to an address the policy refuses. */
export class RefusedAddressError extends Error {
  readonly code = 'WEBHOOK_ADDRESS_REFUSED';
}

/**
 * A `lookup` for http.request that resolves through `resolve` and refuses the connection when any
 * address the name has is not public: the socket connects to an address checked just now, so DNS
 * cannot change between the check and the connection. An IP literal never reaches a lookup: it
 * is checked by `refusedLiteral` before the request.
 */
export function guardedLookup(resolve: Resolver, policy: DestinationPolicy): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (found) => {
        if (found.length === 0) return callback(Object.assign(new Error(`${hostname} did not resolve`), { code: 'ENOTFOUND' }), '', 4);
        const refused = policy.allowPrivate ? undefined : found.find((entry) => !isPublicAddress(entry.address));
        if (refused) return callback(new RefusedAddressError(`${hostname} resolves to ${refused.address}, which is not a public address`), '', 4);
        const wanted = options.family === 4 || options.family === 6 ? found.filter((entry) => entry.family === options.family) : found;
        if (options.all) return (callback as (error: null, addresses: dns.LookupAddress[]) => void)(null, wanted);
        const first = wanted[0];
        if (!first) return callback(Object.assign(new Error(`${hostname} has no IPv${options.family} address`), { code: 'ENOTFOUND' }), '', 4);
        callback(null, first.address, first.family);
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, '', 4),
    );
  };
}

/** Why a URL's literal address is refused at an attempt, or undefined (a name is checked at its lookup). */
export function refusedLiteral(url: URL, policy: DestinationPolicy): string | undefined {
  const literal = addressOf(url.hostname);
  if (!literal || policy.allowPrivate || isPublicAddress(literal)) return undefined;
  return `${literal} is not a public address`;
}
