import { vi } from 'vitest';
import type { ChangeFeed } from '../../src/live/change-feed.js';

/**
 * Reads until the feed has dispatched every committed change. A poke alone is not enough: on
 * PostgreSQL a transaction open anywhere in the cluster (another test file's, say) holds changes
 * back until it ends, and they then go out later.
 */
export async function settleFeed(feed: ChangeFeed, timeoutMs = 15_000): Promise<void> {
  await vi.waitFor(
    async () => {
      await feed.poke();
      if (feed.heldBack) throw new Error('the change feed stayed held back by an open transaction');
    },
    { timeout: timeoutMs, interval: 20 },
  );
}
