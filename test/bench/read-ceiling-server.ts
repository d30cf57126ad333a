import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type JobRow, stepsOf } from '../../src/jobs/model.js';
import { openBareDatabase } from './bare-database.js';
import { serveParent } from './ipc.js';
import { seedJobInput } from './load.js';

// The machine's limit for a read: a bare node:http server running the gateway's own SELECT on the
// same Job table (every migration applied, same indexes, the same jobs) and writing the same JSON
// body as the REST shim. No framework, no GraphQL, no auth. PostgreSQL, or PGlite in a data
// directory of its own as the gateway's (see bare-database.ts).

const LIST = `SELECT * FROM "Job" WHERE "workspaceId" = $1 ORDER BY "startedAt" DESC, id DESC LIMIT $2`;
const ONE = `SELECT * FROM "Job" WHERE id = $1 AND "workspaceId" = $2`;

const { query, workspaceId, close } = await openBareDatabase({ pgliteInDataDir: true });

/** The REST shim's job body, field for field. */
const restJob = (job: JobRow) => ({
  id: job.id,
  workspaceId: job.workspaceId,
  competitorId: job.competitorId,
  type: job.type,
  displayTitle: job.displayTitle,
  status: job.status.toLowerCase(),
  progress: job.progress,
  currentStep: job.currentStep,
  steps: stepsOf(job).map((step) => ({ id: step.id, name: step.name, status: step.status.toLowerCase() })),
  startedAt: job.startedAt,
  completedAt: job.completedAt,
  metadata: job.metadata,
});

const send = (response: http.ServerResponse, status: number, body: unknown) => {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  response.end(JSON.stringify(body));
};

const server = http.createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const answer =
    url.pathname === '/api/jobs'
      ? query(LIST, [workspaceId, Number(url.searchParams.get('limit') ?? 50)]).then(({ rows }) =>
          send(response, 200, { jobs: (rows as JobRow[]).map(restJob) }),
        )
      : query(ONE, [url.pathname.slice('/api/jobs/'.length), workspaceId]).then(({ rows }) =>
          rows[0] ? send(response, 200, { job: restJob(rows[0] as JobRow) }) : send(response, 404, { error: { code: 'NOT_FOUND', message: 'Job not found.' } }),
        );
  answer.catch((error: Error) => send(response, 500, { error: { code: 'INTERNAL_SERVER_ERROR', message: error.message } }));
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

serveParent(
  {
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** The same jobs as the gateway's seed (load.ts), inserted directly. */
    seedJobs: async (m) => {
      const ids: string[] = [];
      for (let i = 0; i < (m.count as number); i++) {
        const input = seedJobInput(i);
        const steps = input.steps.map((step, index) => ({ ...step, status: index === 0 ? 'RUNNING' : 'PENDING' }));
        const { rows } = await query(
          `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle", "competitorId", "currentStep", steps, metadata)
           VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7) RETURNING id`,
          [workspaceId, input.type, input.displayTitle, input.competitorId, steps[0]!.name, JSON.stringify(steps), JSON.stringify(input.metadata)],
        );
        ids.push((rows[0] as { id: string }).id);
      }
      // Statistics, as autovacuum would gather them soon after: without them the planner sorts the
      // workspace's every job instead of walking the (workspaceId, startedAt, id) index.
      await query('ANALYZE "Job"');
      return ids;
    },
  },
  async () => {
    server.close();
    await close();
  },
);
