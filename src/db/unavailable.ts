/**
 * Whether an error means "the database cannot be reached right now" rather than a fault of ours:
 * clients then get 503 SERVICE_UNAVAILABLE and retry, instead of a 500. The errors come wrapped
 * differently by each layer (pg, pg-pool, PGlite, Prisma and its driver adapters), so the whole
 * cause chain is looked at. Written by hand: no library classifies these across both drivers.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const current = queue.shift();
    if (current === null || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    const { code, kind, message, cause, originalError, meta } = current as Record<string, unknown>;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || PRISMA_CODES.has(code) || /^08|^57P0[123]$|^57014$|^53300$/.test(code))) return true;
    if (typeof kind === 'string' && ADAPTER_KINDS.has(kind)) return true;
    if (typeof message === 'string' && MESSAGES.test(message)) return true;
    queue.push(cause, originalError, (meta as { driverAdapterError?: unknown } | undefined)?.driverAdapterError);
  }
  return false;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
/** Prisma: can't reach the server, timed out reaching it, server closed the connection, pool timeout. */
const PRISMA_CODES = new Set(['P1001', 'P1002', 'P1017', 'P2024']);
/** Driver adapter error kinds for the same. */
const ADAPTER_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
/** pg and PGlite say it in words only. */
const MESSAGES =
  /Cannot use a pool after calling end|Connection terminated|timeout exceeded when trying to connect|Query read timeout|PGlite is closed|Client has encountered a connection error/i;
