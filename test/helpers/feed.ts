import type { ChangeFeed } from '../../src/live/change-feed.js';

/**
 * Reads until the feed has dispatched every committed change. A poke alone is not enough: on
 * PostgreSQL a transaction open anywhere in the cluster (another test file's, say) holds changes
 * back until it ends, and they then go out later.
 */
export async function settleFeed(feed: ChangeFeed, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await feed.poke();
    if (!feed.heldBack) return;
    if (Date.now() > deadline) throw new Error('the change feed stayed held back by an open transaction');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
