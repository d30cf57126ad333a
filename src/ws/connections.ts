import type { AddressGuard } from '../auth/address-guard.js';
import { AccessTokens } from '../auth/access-tokens.js';
import { apiKeyFromHeaders } from '../auth/credentials.js';
import type { RevocationWatch } from '../auth/revocation-watch.js';
import type { Principal } from '../auth/scopes.js';
import { errors } from '../errors.js';
import type { KeyConnections } from '../limits/key-connections.js';
import { CloseCode } from './close-codes.js';
import type { SocketExtra } from './graphql-ws-adapter.js';
import type { SendBacklog, SocketSender } from './socket-sender.js';

/** A socket that passed `connection_init`. */
export interface Connection {
  principal: Principal;
  sender: SocketSender;
  /** Aborted when the socket closes: every subscription of the connection ends with it. */
  closed: AbortController;
  /**
   * Per multiplexed operation (graphql-ws's id), aborted when the client completes it. graphql-ws
   * registers an operation only once its start resolves, and a complete before that (during a
   * replay) would otherwise leave the member sending.
   */
  operations: Map<string, AbortController>;
}

/**
 * Who may hold a socket, and for how long: the key of `connection_init` (payload `{"apiKey"}`, or
 * the upgrade request's headers) must be valid (checked within its address's budget, see
 * AddressGuard), its key may hold at most MAX_CONNECTIONS_PER_KEY connections (WebSockets and
 * Server-Sent Events streams alike), and the socket closes with 4401 once the key is revoked:
 * every later operation on it would run as a key that no longer exists.
 */
export class WebSocketConnections {
  private readonly bySocket = new Map<SocketExtra['socket'], Connection>();

  constructor(private readonly deps: { addressGuard: AddressGuard; keyConnections: KeyConnections; revocations: RevocationWatch; backlog: SendBacklog }) {}

  get size(): number {
    return this.bySocket.size;
  }

  get(socket: SocketExtra['socket']): Connection | undefined {
    return this.bySocket.get(socket);
  }

  /** graphql-ws's `onConnect`: false refuses (graphql-ws closes with 4403, or the socket is already closed with 1013). */
  async admit(extra: SocketExtra, connectionParams: Record<string, unknown> | undefined): Promise<boolean> {
    const { addressGuard, keyConnections, revocations, backlog } = this.deps;
    // Read here once (graphql-ws allows one connection_init), then let go: see SocketExtra.
    const { socket, request } = extra;
    extra.request = undefined;
    if (!request) return false;
    // An API key or an access token, in `connection_init`'s payload or the upgrade's headers.
    const fromParams = [connectionParams?.apiKey, connectionParams?.token].find((value) => typeof value === 'string' && value !== '') as string | undefined;
    const key = fromParams ?? apiKeyFromHeaders(request.headers);
    const checked = await addressGuard.check(key, request);
    if (checked.refused) {
      socket.close(CloseCode.TryAgainLater, `Too many connections without a valid API key from this address; retry after ${checked.retryAfterSeconds} s.`);
      return false;
    }
    const principal = checked.principal;
    // A token that is not (or no longer) valid closes with 4401, which graphql-ws clients do not retry:
    // retrying the same token cannot succeed. (A bad key keeps graphql-ws's 4403, as it always had.)
    if (!principal && key && AccessTokens.looksLikeToken(key)) {
      socket.close(CloseCode.Unauthorized, 'Invalid or expired access token');
      return false;
    }
    if (!principal) return false;
    // Closed while its key was looked up: it would hold a slot that its 'close' (already past) never frees.
    if (socket.readyState !== socket.OPEN) return false;
    // Closed like one refused here if, counted with the key's sockets on other instances, it is over the limit.
    const release = keyConnections.acquire(principal.keyId, () => socket.close(CloseCode.TryAgainLater, errors.tooManyConnections(keyConnections.max).message));
    if (!release) {
      socket.close(CloseCode.TryAgainLater, errors.tooManyConnections(keyConnections.max).message);
      return false;
    }
    const closed = new AbortController();
    this.bySocket.set(socket, { principal, sender: backlog.sender(socket, request.socket), closed, operations: new Map() });
    // The sockets of a revoked key close within KEY_RECHECK_INTERVAL_MS.
    const unwatch = revocations.watch(principal.keyId, () => socket.close(CloseCode.Unauthorized, 'API key revoked'));
    // An access token's socket closes when the token expires, with 4403, which graphql-ws clients
    // retry: given `connectionParams` as a function, they fetch a fresh token and resume with `after`.
    const expiry = principal.token
      ? setTimeout(() => socket.close(CloseCode.Forbidden, 'Access token expired'), Math.max(0, principal.token.expiresAt - Date.now())).unref()
      : undefined;
    // A socket closes once: `on`, not `once`, whose wrapper each open socket would hold.
    socket.on('close', () => {
      closed.abort();
      unwatch();
      clearTimeout(expiry);
      this.bySocket.delete(socket);
      release();
    });
    return true;
  }
}
