// What FEED_BUS says, apart from the NATS client: the configuration reads it too, and must not load the client.

/** `nats://[user:password@ | token@]host[:port]`, as the operator gives FEED_BUS. */
export function natsOptionsOf(url: string): { servers: string; user?: string; pass?: string; token?: string } {
  const parsed = new URL(url);
  if (parsed.protocol !== 'nats:') throw new Error('FEED_BUS must be a nats:// URL');
  const servers = `${parsed.hostname}:${parsed.port || '4222'}`;
  const user = decodeURIComponent(parsed.username);
  const pass = decodeURIComponent(parsed.password);
  if (user && pass) return { servers, user, pass };
  if (user) return { servers, token: user };
  return { servers };
}

/** Where a bus URL points, without its credentials: what logs may show. */
export function busAddress(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.hostname}:${parsed.port || '4222'}`;
  } catch {
    return 'nats://(an address that does not parse)';
  }
}
