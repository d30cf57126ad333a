import { expect, it } from 'vitest';
import { describePostgres, freshDatabase } from '../helpers/databases.js';
import { type GatewayProcess, spawnGateway } from '../helpers/gateway-process.js';
import { scrape } from '../helpers/metrics.js';
import { IDLE_MEMORY } from '../../src/limits/fixed.js';

const YOUNG = 'nodejs_heap_space_size_total_bytes{space="new"}';
const RELEASES = 'jobs_gateway_idle_memory_releases_total';

async function ready(gateway: GatewayProcess): Promise<void> {
  for (;;) {
    const response = await fetch(`${gateway.url}/readyz`);
    if (response.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// On PostgreSQL only: on the embedded database V8's own memory reducer shrinks the young generation
// a few seconds after the warm-up (set off by the collections PGlite's work causes), and the idle
// check often finds nothing left to release; on PostgreSQL nothing does it but the release.
describePostgres('an idle gateway', () => {
  it('hands its young generation back once idle (a compacting GC), and never with RELEASE_IDLE_MEMORY=false', { timeout: 180_000 }, async () => {
    // A database each: an embedded one belongs to one process.
    const databases = await Promise.all([freshDatabase(), freshDatabase()]);
    const on = await spawnGateway(databases[0].env);
    const off = await spawnGateway({ ...databases[1].env, RELEASE_IDLE_MEMORY: 'false' });
    try {
      // The warm-up is load: it grows the young generation.
      await Promise.all([ready(on), ready(off)]);
      // Idle means a 10-s window with the loop busy under 2%: on a machine loaded by other test
      // files that can take a while. V8 may also have shrunk the young generation itself meanwhile
      // (it did on a loaded CI machine): then there is nothing left to release, which is the goal.
      const deadline = Date.now() + 120_000;
      for (;;) {
        const { value } = await scrape(on.url);
        if (value(RELEASES) >= 1 || value(YOUNG) <= IDLE_MEMORY.minYoungBytes) break;
        expect(Date.now(), 'no release within 120 s').toBeLessThan(deadline);
        // Not more often: scrapes every 500 ms alone kept the event loop busy 2% of the time.
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      expect((await scrape(on.url)).value(YOUNG)).toBeLessThanOrEqual(IDLE_MEMORY.minYoungBytes);
      expect((await scrape(off.url)).value(RELEASES)).toBe(0);
    } finally {
      on.child.kill('SIGTERM');
      off.child.kill('SIGTERM');
      await Promise.all([on.exited, off.exited]);
      await Promise.all(databases.map((database) => database.drop()));
    }
  });
});
