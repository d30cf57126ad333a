import { randomBytes } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { IncomingMessage } from 'node:http';
import { MessageType, type ServerOptions, handleProtocols, makeServer } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';
import { KEEPALIVE_PINGS_PER_TURN, MESSAGES_BEFORE_ACK } from '../limits/fixed.js';
import { TokenBucket } from '../limits/rate-limiter.js';
import type { Logger } from '../logger.js';
import { CloseCode } from './close-codes.js';

export interface SocketExtra {
  socket: WebSocket;
  /**
   * The upgrade request, until `connection_init` has been judged (connections.ts drops it then):
   * graphql-ws keeps `extra` for as long as the socket is open, and the request, its headers with
   * it, was about a KiB of every idle subscriber that nothing read again.
   */
  request: IncomingMessage | undefined;
}

/**
 * Operation ids as graphql-ws sees them: the client's id, a NUL, this process's random mark and a
 * sequence number. See `attachGraphqlWs` for why; the mark makes the suffix impossible for a client
 * or a job's data to forge, so it can be stripped from outgoing frames by a plain string search.
 */
const MARK = randomBytes(6).toString('hex');
const INTERNAL_SUFFIX = new RegExp(`\\\\u0000${MARK}\\d+"`);
const SUFFIX = `\u0000${MARK}`;

/** The client's own id of an operation id that graphql-ws hands to hooks. */
export function clientIdOf(operationId: string): string {
  const at = operationId.lastIndexOf(SUFFIX);
  return at === -1 ? operationId : operationId.slice(0, at);
}

/** A close reason as the client may read it: its own ids, and within the protocol's 123 bytes. */
function clientReason(reason: string): string {
  const text = reason.replaceAll(new RegExp(`\u0000${MARK}\\d+`, 'g'), '');
  return Buffer.byteLength(text) <= 123 ? text : text.slice(0, 30); // 30 characters are at most 120 bytes
}

/**
 * graphql-ws's protocol core on `ws` sockets: what `graphql-ws/use/ws` does (keepalive pings,
 * close-code mapping, dispose), written here for two things it gets wrong for a server that
 * must not leak:
 *
 * - **Reused operation ids.** graphql-ws registers an operation under the client's id only once
 *   its (asynchronous) start finishes, and a `complete` that arrives before that only removes the
 *   placeholder. A client that then subscribes again with the same id makes the first operation
 *   register itself under the second's placeholder: it is never returned, keeps receiving, and
 *   outlives the socket. Every `subscribe` therefore reaches graphql-ws under an id of its own (the
 *   client's id plus a sequence number); `complete` is routed to the live one; outgoing frames carry
 *   the client's id again. A duplicate of an id still active keeps graphql-ws's 4409 close.
 *   (graphql-ws 6.4; no upstream issue covers this race as of 2026-12. enisdenjo/graphql-ws#95 and
 *   #96 made ids unique while active; #539 is the same race for an error after a cancel.)
 * - **Logging.** Client mistakes (oversized frames, bad JSON) are logged at debug, not printed
 *   with console.error.
 */
export function attachGraphqlWs(
  wss: WebSocketServer,
  options: ServerOptions<Record<string, unknown> | undefined, SocketExtra>,
  {
    keepAliveMs,
    maxMessagesPerSecond,
    logger,
    onClientComplete,
  }: {
    keepAliveMs: number;
    /** Messages (and WebSocket pings) a client may send a second, twice that at once; 0: no limit. */
    maxMessagesPerSecond: number;
    logger: Logger;
    /** A `complete` from the client for an active operation (which graphql-ws may not have registered yet). */
    onClientComplete?: (socket: WebSocket, operationId: string) => void;
  },
) {
  /** Per socket, the internal id of each client id that is active (subscribed, not completed). */
  const activeIds = new WeakMap<WebSocket, Map<string, string>>();
  // An operation the server ended (complete or error sent) frees its client id for a fresh one.
  const release = (socket: WebSocket, operationId: string) => {
    const active = activeIds.get(socket);
    const clientId = clientIdOf(operationId);
    if (active?.get(clientId) === operationId) active.delete(clientId);
  };
  const server = makeServer<Record<string, unknown> | undefined, SocketExtra>({
    ...options,
    onComplete: async (ctx, id, payload) => {
      release(ctx.extra.socket, id);
      await options.onComplete?.(ctx, id, payload);
    },
    onError: async (ctx, id, payload, errors) => {
      release(ctx.extra.socket, id);
      return options.onError?.(ctx, id, payload, errors);
    },
  });
  wss.options.handleProtocols = handleProtocols;

  // Keepalive: one timer for every socket (ws's own recipe), not one per socket, whose timer and
  // closures every idle subscriber would hold. Each tick drops the sockets that have not answered
  // the previous tick's ping, then pings the rest, KEEPALIVE_PINGS_PER_TURN a turn: a dead peer
  // goes within two intervals.
  const awaitingPong = new Set<WebSocket>();
  const onPong = function (this: WebSocket) {
    awaitingPong.delete(this);
  };
  const pingRound = async () => {
    for (const socket of awaitingPong) socket.terminate();
    awaitingPong.clear();
    let sent = 0;
    for (const socket of [...wss.clients]) {
      if (socket.readyState !== socket.OPEN) continue;
      awaitingPong.add(socket);
      socket.ping();
      if (++sent % KEEPALIVE_PINGS_PER_TURN === 0) await nextTurn();
    }
  };
  const pinger = keepAliveMs > 0 ? setInterval(() => void pingRound(), keepAliveMs).unref() : undefined;

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const active = new Map<string, string>();
    activeIds.set(socket, active);
    let sequence = 0;

    socket.once('error', (error) => {
      // ws has already failed the frame (1009 for an oversized one, 1002 for a protocol error).
      logger.debug({ err: error }, 'websocket error');
      if (socket.readyState === socket.OPEN) socket.close(1011, 'Internal error');
    });

    // Every message costs a parse and an answer (a ping its pong), whatever the key's rate allows
    // for subscribes: a client past its budget has its socket closed, 4429 as graphql-ws closes
    // for too many connection_init, a code its clients do not retry.
    const budget = maxMessagesPerSecond > 0 ? new TokenBucket(maxMessagesPerSecond, 2 * maxMessagesPerSecond) : undefined;
    // Before its connection_ack a socket holds no key: it may send its connection_init and a few
    // pings, not a budget's worth of them on every socket it opens.
    let acknowledged = false;
    let beforeAck = 0;
    let overBudget = false;
    const tooMany = (): boolean => {
      if (overBudget) return true;
      const allowed = acknowledged ? !budget || budget.take().allowed : ++beforeAck <= MESSAGES_BEFORE_ACK;
      if (allowed) return false;
      overBudget = true;
      if (socket.readyState === socket.OPEN) socket.close(CloseCode.TooManyMessages, 'Too many messages');
      return true;
    };
    socket.on('ping', tooMany);

    socket.on('pong', onPong);

    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve, reject) => {
            if (!acknowledged && data.includes('"connection_ack"')) acknowledged = true;
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data.includes(MARK) ? data.replace(INTERNAL_SUFFIX, '"') : data, (error) => (error ? reject(error) : resolve()));
          }),
        close: (code, reason) => socket.close(code, reason === undefined ? undefined : clientReason(reason)),
        onMessage: (deliver) =>
          socket.on('message', (raw) => {
            if (tooMany()) return;
            // ws's default binaryType ('nodebuffer') delivers every message, fragmented or not, as one Buffer.
            const text = (raw as Buffer).toString();
            deliver(routeIds(text)).catch((error: unknown) => {
              logger.error({ err: error }, 'websocket message handling failed');
              socket.close(4500, 'Internal server error');
            });
          }),
      },
      { socket, request },
    );

    /** Rewrites the id of subscribe and complete messages; anything else graphql-ws judges as sent. */
    function routeIds(text: string): string {
      let message: unknown;
      try {
        message = JSON.parse(text);
      } catch {
        return text;
      }
      if (typeof message !== 'object' || message === null) return text;
      const { id, type } = message as { id?: unknown; type?: unknown };
      if (typeof id !== 'string' || (type !== MessageType.Subscribe && type !== MessageType.Complete)) return text;
      let internal = active.get(id);
      if (type === MessageType.Subscribe) {
        if (internal === undefined) active.set(id, (internal = `${id}${SUFFIX}${++sequence}`));
      } else {
        active.delete(id);
        if (internal !== undefined) onClientComplete?.(socket, internal);
        internal ??= `${id}${SUFFIX}0`; // completes nothing, as graphql-ws does for unknown ids
      }
      return JSON.stringify({ ...message, id: internal });
    }

    // A socket closes once: `on`, not `once`, whose wrapper each open socket would hold.
    socket.on('close', (code, reason) => {
      awaitingPong.delete(socket);
      void closed(code, String(reason));
    });
  });

  return {
    /**
     * Closes every socket with 1001 and stops accepting; sockets whose peers do not answer the close
     * within `timeoutMs` are terminated.
     */
    dispose: async (timeoutMs: number) => {
      clearInterval(pinger);
      for (const client of wss.clients) client.close(CloseCode.GoingAway, 'Going away');
      const deadline = setTimeout(() => {
        for (const client of wss.clients) client.terminate();
      }, timeoutMs);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      clearTimeout(deadline);
    },
  };
}
