import type { JobRestriction } from '../jobs/job-filter.js';

/**
 * `operations:arbitrary`: with TRUSTED_DOCUMENTS, the key may run documents no manifest lists
 * (graphql/persisted-documents.ts); without it, every key may.
 */
export const SCOPES = ['jobs:read', 'jobs:cancel', 'jobs:write', 'webhooks:manage', 'operations:arbitrary'] as const;
export type Scope = (typeof SCOPES)[number];

/** What `keys create` grants when no --scope is given: enough for a dashboard, not for a worker. */
export const DEFAULT_SCOPES: readonly Scope[] = ['jobs:read', 'jobs:cancel'];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Who is calling: resolved from the API key (or access token) before any GraphQL runs, and read-only after. */
export interface Principal {
  /** The API key, or the key that minted the token: revoking it ends both. */
  readonly keyId: string;
  readonly workspaceId: string;
  readonly scopes: ReadonlySet<Scope>;
  /** Set when the caller holds an access token rather than the key itself (auth/access-tokens.ts). */
  readonly token?: {
    readonly id: string;
    /** Epoch milliseconds: the token is refused from then on, and what it holds open is closed. */
    readonly expiresAt: number;
    /** What of the workspace's jobs it sees: every field given must match; none given, all jobs. */
    readonly restriction: JobRestriction;
  };
}

/**
 * Whose rate limit a caller spends: its API key's, or its access token's own, so that the users of
 * a backend that mints a token each do not share one key's requests a second. (Connections are
 * counted by the minting key, tokens and key together: sockets are what a key minting tokens by the
 * thousand could otherwise multiply; every mint also spends a request of the key's, see
 * graphql/types/access-token.ts.)
 */
export function limitKeyOf(principal: Principal): string {
  return principal.token ? `token:${principal.token.id}` : principal.keyId;
}
