import type { AccessTokens } from '../auth/access-tokens.js';
import type { Principal } from '../auth/scopes.js';
import { errors } from '../errors.js';
import type { JobRestriction } from '../jobs/job-filter.js';
import type { JobStore } from '../jobs/job-store.js';
import type { KeyConnections } from '../limits/key-connections.js';
import type { LiveJobs } from '../live/live-jobs.js';
import type { Webhooks } from '../webhooks/webhooks.js';

/** What every resolver gets: who is calling (resolved before yoga runs) and the services. */
export interface GatewayContext {
  readonly principal: Principal | null;
  readonly jobs: JobStore;
  readonly live: LiveJobs;
  /** What each key holds open: a Server-Sent Events stream counts like a WebSocket. */
  readonly keyConnections: KeyConnections;
  /** Mints access tokens (createAccessToken). */
  readonly accessTokens: AccessTokens;
  /** The workspace's webhook endpoints and their deliveries. */
  readonly webhooks: Webhooks;
  /** Over WebSockets: aborted when the socket closes, so that its streams end with it. */
  readonly connectionClosed?: AbortSignal;
}

/** The caller's workspace. Fields that use it are guarded by scopes, so the throw is a backstop. */
export function workspaceOf(ctx: GatewayContext): string {
  return principalOf(ctx).workspaceId;
}

/** The caller. Fields that use it are guarded by scopes, so the throw is a backstop. */
export function principalOf(ctx: GatewayContext): Principal {
  if (!ctx.principal) throw errors.unauthenticated();
  return ctx.principal;
}

/** What of the workspace's jobs the caller sees: all for an API key, a token's restriction for an access token. */
export function restrictionOf(ctx: GatewayContext): JobRestriction | undefined {
  return principalOf(ctx).token?.restriction;
}
