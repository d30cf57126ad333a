import type { ChangeListener } from './change-feed.js';

/** A workspace this instance needs the changes of, from the moment its `ready` settles. */
export interface Watch {
  readonly ready: Promise<void>;
  release(): void;
}

/**
 * Where live subscriptions and the response cache get job changes from: the change feed itself
 * (one instance, or every instance reading PostgreSQL), or the feed bus (FEED_BUS), which carries
 * one reader's reads to instances that watch the workspace.
 */
export interface LiveSource {
  /** Each workspace's changes in position order, nothing twice. */
  subscribe(listener: ChangeListener): () => void;
  /** What this source has delivered of the workspace is current (see ChangeFeed.inStep). */
  inStep(workspaceId: string): boolean;
  /** Only a source that carries a workspace's changes on demand needs to know which are watched. */
  watch?(workspaceId: string): Watch;
}
