import { expect, it } from 'vitest';
import { CreateJobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { describePostgres, freshDatabase } from '../../helpers/databases.js';
import { codesOf, graphql, graphqlOk, rest } from '../../helpers/http.js';
import { TcpProxy } from '../../helpers/tcp-proxy.js';
import { startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

// A PostgreSQL server that stops answering without closing its connections (a network partition),
// through a proxy of the test's own. Without timeouts, requests hung with no end and SIGTERM did
// not exit at all.

const QUERY_MS = 1_000;
const CONNECT_MS = 1_000;
const SHUTDOWN_MS = 2_000;
/** The README's bound: a request needs at most two statements (its key, its work), each waiting for a connection and then for its answer. */
const REQUEST_BOUND_MS = 2 * (CONNECT_MS + QUERY_MS);

describePostgres('a database that goes silent without closing its connections', () => {
  it('answers 503 within the bound, comes back with the live feed when the database does, and shuts down in time', async () => {
    const database = await freshDatabase();
    const direct = new URL(database.env.DATABASE_URL!);
    const proxy = await TcpProxy.start({ host: direct.hostname, port: Number(direct.port || 5432) });
    const viaProxy = new URL(direct);
    viaProxy.port = String(proxy.port);
    const t = await startTestApp({
      database,
      env: {
        DATABASE_URL: viaProxy.toString(),
        DATABASE_QUERY_TIMEOUT_MS: String(QUERY_MS),
        DATABASE_CONNECT_TIMEOUT_MS: String(CONNECT_MS),
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS),
      },
    });
    try {
      const key = await t.createKey('silent');
      const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps: [] } }, key)).createJob;
      const socket = await TestSocket.open(t.url, { apiKey: key });
      socket.subscribe('live', 'subscription { jobUpdated { id progress } }');
      await new Promise((resolve) => setTimeout(resolve, 300));

      proxy.silence();
      const timed = async <T>(work: () => Promise<T>) => {
        const began = performance.now();
        const result = await work();
        return { result, ms: performance.now() - began };
      };
      const write = await timed(() => graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 10 } }, key));
      expect(write.result.status).toBe(503);
      expect(codesOf(write.result)).toEqual(['SERVICE_UNAVAILABLE']);
      expect(write.ms).toBeLessThan(REQUEST_BOUND_MS + 1_000);
      const cancel = await timed(() => rest(t.url, 'POST', `/api/jobs/${job.id}/cancel`, key));
      expect(cancel.result).toMatchObject({ status: 503, body: { error: { code: 'SERVICE_UNAVAILABLE' } } });
      expect(cancel.ms).toBeLessThan(REQUEST_BOUND_MS + 1_000);
      // A key never seen needs a lookup: bounded the same way.
      const unknown = await timed(() => rest(t.url, 'GET', '/api/jobs', `jg_${'u'.repeat(43)}`));
      expect(unknown.result.status).toBe(503);
      expect(unknown.ms).toBeLessThan(REQUEST_BOUND_MS + 1_000);
      expect((await rest(t.url, 'GET', '/readyz')).status).toBe(503);

      // The database answers again: so do writes, and the live feed delivers them.
      proxy.speak();
      let progress: number | undefined;
      for (let attempt = 0; attempt < 40 && progress === undefined; attempt++) {
        const retry = await graphql(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 42 } }, key);
        progress = retry.data?.updateJobProgress.progress;
        if (progress === undefined) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(progress).toBe(42);
      await socket.waitFor((m) => m.id === 'live' && (m.payload as { data?: { jobUpdated?: { progress?: number } } }).data?.jobUpdated?.progress === 42);
      expect((await rest(t.url, 'GET', '/readyz')).status).toBe(200);

      // Silent again, and told to stop: it stops within SHUTDOWN_TIMEOUT_MS and a little.
      proxy.silence();
      const shutdown = await timed(() => t.close());
      expect(shutdown.ms).toBeLessThan(SHUTDOWN_MS + REQUEST_BOUND_MS + 1_000);
      socket.close();
    } finally {
      await t.close();
      await proxy.close();
      await database.drop();
    }
  });
});
