/**
 * Why the gateway closes a WebSocket. Chosen for what graphql-ws clients do with each: they retry
 * every code except 1000 and 4400, 4401, 4406, 4409, 4429, 4500 (and most other 1xxx codes).
 */
export const CloseCode = {
  /** The gateway is shutting down: reconnect (to another instance) and resume with `after`. */
  GoingAway: 1001,
  /** A message larger than WS_MAX_PAYLOAD_BYTES (sent by `ws` itself). Not retried. */
  MessageTooBig: 1009,
  /** Too many connections for this key, or too many replays at once: retry with backoff. */
  TryAgainLater: 1013,
  /** The key was revoked while connected. Not retried: the key will never work again. */
  Unauthorized: 4401,
  /** A missing or unknown key at connection_init (graphql-ws's own code). Retried, as the protocol intends. */
  Forbidden: 4403,
  /** No connection_init in time (graphql-ws's own code). */
  ConnectionInitTimeout: 4408,
  /** More than WS_MAX_MESSAGES_PER_SECOND messages (pings included) beyond their burst. Not retried. */
  TooManyMessages: 4429,
  /** The client read too slowly: its socket buffer stayed over WS_MAX_BUFFERED_BYTES even after merging. Retried; resume with `after`. */
  SlowConsumer: 4008,
} as const;
