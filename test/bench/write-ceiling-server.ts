import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { openBareDatabase } from './bare-database.js';
import { serveParent } from './ipc.js';

// The machine's limit for a worker's progress report: a bare node:http server that parses the
// report, runs the same UPDATE as the gateway on the same Job table (every migration applied, same
// indexes) with its triggers disabled, and answers the row as JSON. No GraphQL, no auth, no change
// feed. PostgreSQL (BARE_DATABASE_URL, BARE_SCHEMA) through pg's pool, or an in-memory PGlite (one
// process owns it, as the gateway's).

// What a progress report through the gateway amounts to: the merged metadata, written only if the
// job is still running.
const UPDATE = `UPDATE "Job" SET metadata = metadata || $2::jsonb, "updatedAt" = now() WHERE id = $1 AND status = 'RUNNING' RETURNING *`;

// Triggers off: the ceiling is the UPDATE alone.
const { query, close } = await openBareDatabase({ setup: 'ALTER TABLE "Job" DISABLE TRIGGER USER', poolSize: Number(process.env.BARE_POOL_SIZE ?? 10) });

const server = http.createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const { id, metadata } = JSON.parse(Buffer.concat(chunks).toString()) as { id: string; metadata: unknown };
    query(UPDATE, [id, JSON.stringify(metadata)]).then(
      ({ rows }) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ data: { updateJobProgress: rows[0] } }));
      },
      (error: Error) => {
        response.writeHead(500);
        response.end(error.message);
      },
    );
  });
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

serveParent(
  {
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    createJobs: async (m) => {
      const ids: string[] = [];
      for (let i = 0; i < (m.count as number); i++) {
        const { rows } = await query(
          `INSERT INTO "Job"(id, "workspaceId", type, "displayTitle", steps) VALUES (gen_random_uuid(), (SELECT id FROM "Workspace"), 'collect', $1, '[{"id":"collect","name":"Collecting Intel","status":"PENDING"}]') RETURNING id`,
          [`Analyzing Competitor ${i}`],
        );
        ids.push((rows[0] as { id: string }).id);
      }
      return ids;
    },
  },
  async () => {
    server.close();
    await close();
  },
);
