export const SCOPES = ['jobs:read', 'jobs:cancel', 'jobs:write'] as const;
export type Scope = (typeof SCOPES)[number];

/** What `keys create` grants when no --scope is given: enough for a dashboard, not for a worker. */
export const DEFAULT_SCOPES: readonly Scope[] = ['jobs:read', 'jobs:cancel'];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Who is calling: resolved from the API key before any GraphQL runs, and read-only after. */
export interface Principal {
  readonly keyId: string;
  readonly workspaceId: string;
  readonly scopes: ReadonlySet<Scope>;
}
