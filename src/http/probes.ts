import type { ServerResponse } from 'node:http';
import type { Database } from '../db/database.js';
import { HEALTH_TIMEOUT_MS } from '../limits/fixed.js';
import type { GatewayMetrics } from '../metrics.js';
import { sendJson, sendText } from './respond.js';

/** Why an instance should not be sent new work now, in the order they are checked. */
export interface Readiness {
  /** Shutting down (from its first moment). */
  draining(): boolean;
  /** Changes from other instances reach this one: the change feed's listener, or the feed bus, is connected. */
  listening(): boolean;
  /** With a feed bus: whether this instance reads the feed for everyone, takes it from the bus, or reads it itself while the bus is unreachable. */
  feedMode?(): 'reader' | 'follower' | 'fallback';
  /** The warm-up after start has run (see warm-up.ts). */
  warm(): boolean;
}

/**
 * /healthz (is the database reachable), /readyz (should a load balancer send new work here) and
 * /metrics (Prometheus), each answering without a key.
 */
export function probes(database: Pick<Database, 'ping' | 'kind'>, readiness: Readiness, metrics: GatewayMetrics | undefined) {
  return {
    healthz: async (res: ServerResponse) => {
      const up = await database.ping(HEALTH_TIMEOUT_MS);
      sendJson(res, up ? 200 : 503, { status: up ? 'ok' : 'unavailable', database: database.kind });
    },
    readyz: async (res: ServerResponse) => {
      const status = readiness.draining()
        ? 'draining'
        : !(await database.ping(HEALTH_TIMEOUT_MS))
          ? 'unavailable'
          : !readiness.listening()
            ? 'reconnecting'
            : !readiness.warm()
              ? 'warming'
              : 'ready';
      const feed = readiness.feedMode?.();
      sendJson(res, status === 'ready' ? 200 : 503, { status, database: database.kind, ...(feed && { feed }) });
    },
    ...(metrics && {
      metrics: async (res: ServerResponse) => {
        const { contentType, body } = await metrics.render();
        sendText(res, 200, contentType, body);
      },
    }),
  };
}
