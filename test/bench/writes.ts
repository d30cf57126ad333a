import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { MIGRATIONS_DIR } from '../../src/db/migrate.js';
import { type Child, spawnChild } from './ipc.js';

// Job writes: workers each reporting progress on a job of their own, as fast as the gateway answers,
// against a bare node:http server running the same UPDATE with no trigger (write-ceiling-server.ts);
// and the database alone (pgbench), the migrated schema as shipped against no triggers at all.

export interface WriteRow {
  db: 'embedded' | 'postgres';
  workers: number;
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ceilingWritesPerSec: number;
  ceilingP99Ms: number;
}

export interface PgbenchRow {
  schema: string;
  clients: number;
  tps: number;
}

const PROGRESS = 'mutation($id: ID!) { updateJobProgress(input: { id: $id, metadata: { tick: 1 } }) { id progress updatedAt changeCursor } }';

/** `workers` connections, each sending one job's progress reports back to back. */
export async function drive(url: string, headers: Record<string, string>, bodyFor: (i: number) => string, workers: number, durationS: number) {
  let next = 0;
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    connections: workers,
    duration: durationS,
    setupClient: (client) => client.setBody(bodyFor(next++ % workers)),
  });
  return { perSec: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, failed: result.non2xx + result.errors };
}

/**
 * The kinds of worker writes, each a body for a connection's own job (`jobId`) or a new job: a
 * progress report (the hot write), a heartbeat (a lease renewal that records no change), and
 * createJob without and with an idempotency key (the SDK sends one with every createJob; each
 * request here has a key of its own, as each SDK call does).
 */
export const WRITE_KINDS = {
  updateJobProgress: (jobId: string) => JSON.stringify({ query: PROGRESS, variables: { id: jobId } }),
  heartbeat: (jobId: string) => JSON.stringify({ query: 'mutation($id: ID!) { heartbeat(id: $id) { id } }', variables: { id: jobId } }),
  createJob: () => JSON.stringify({ query: CREATE, variables: { input: NEW_JOB } }),
  'createJob with idempotencyKey': () => JSON.stringify({ query: CREATE, variables: { input: { ...NEW_JOB, idempotencyKey: randomUUID() } } }),
} as const satisfies Record<string, (jobId: string) => string>;
export type WriteKind = keyof typeof WRITE_KINDS;

const CREATE = 'mutation($input: CreateJobInput!) { createJob(input: $input) { id status changeCursor } }';
const NEW_JOB = { type: 'collect', displayTitle: 'Bench job', steps: [{ id: 'collect', name: 'Collect' }] };

/** `workers` connections, each sending one kind of write back to back, each request's body made afresh. */
export async function driveKind(url: string, headers: Record<string, string>, kind: WriteKind, jobIds: string[], workers: number, durationS: number) {
  let next = 0;
  const body = WRITE_KINDS[kind];
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    connections: workers,
    duration: durationS,
    requests: [
      {
        // The context lives as long as its connection: each connection keeps to one job.
        setupRequest: (request, context: { jobId?: string }) => {
          context.jobId ??= jobIds[next++ % jobIds.length]!;
          return { ...request, body: body(context.jobId) };
        },
      },
    ],
  });
  return { perSec: result.requests.average, p99: result.latency.p99, failed: result.non2xx + result.errors };
}

export function gatewayBody(jobIds: string[]) {
  return (i: number) => JSON.stringify({ query: PROGRESS, variables: { id: jobIds[i] } });
}

export async function bareCeiling(db: 'embedded' | 'postgres', postgresUrl: string, workers: number, durationS: number) {
  const env: Record<string, string> = db === 'postgres' ? { BARE_DATABASE_URL: postgresUrl, BARE_SCHEMA: `bench_bare_writes_${Date.now()}` } : {};
  const bare: Child = await spawnChild('./write-ceiling-server.ts', env);
  try {
    const url = await bare.request<string>({ cmd: 'url' });
    const ids = await bare.request<string[]>({ cmd: 'createJobs', count: workers });
    return await drive(url, {}, (i) => JSON.stringify({ id: ids[i], metadata: { tick: 1 } }), workers, durationS);
  } finally {
    await bare.stop();
  }
}

async function findPgbench(): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  for (const version of (await fs.readdir(root).catch(() => [])).sort().reverse()) {
    const candidate = path.join(root, version, 'bin', 'pgbench');
    if (
      await fs.access(candidate).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

/**
 * pgbench on 2,000 jobs, each transaction one UPDATE of a random job's progress: the schema as this
 * commit ships it (no webhook endpoint; an endpoint for job.completed only, which progress reports
 * look up and do not match; an endpoint for job.progress, which they record, coalesced per job), as
 * it was before webhooks, and with no trigger at all. Undefined without pgbench (Debian's
 * postgresql package has it).
 */
export async function pgbenchRows(postgresUrl: string, clientCounts: number[], seconds: number): Promise<PgbenchRow[] | undefined> {
  const pgbench = await findPgbench();
  if (!pgbench) return undefined;
  const migrations = (await fs.readdir(MIGRATIONS_DIR)).filter((name) => /^\d/.test(name)).sort();
  const before = migrations.filter((name) => name < '20261208000000');
  const endpoint = (events: string) =>
    `INSERT INTO "WebhookEndpoint"("workspaceId", url, events, "progressIntervalMs", secret) VALUES ((SELECT id FROM "Workspace"), 'https://hooks.example.com/in', ARRAY[${events}], 5000, 'whsec_bench');`;
  const schemas = [
    { label: 'as shipped', schema: `bench_pgb_now_${Date.now()}`, apply: migrations, triggers: true, setup: '' },
    {
      label: 'as shipped, endpoint for job.completed',
      schema: `bench_pgb_done_${Date.now()}`,
      apply: migrations,
      triggers: true,
      setup: endpoint(`'job.completed'`),
    },
    {
      label: 'as shipped, endpoint for job.progress',
      schema: `bench_pgb_progress_${Date.now()}`,
      apply: migrations,
      triggers: true,
      setup: endpoint(`'job.progress'`),
    },
    { label: 'before webhooks', schema: `bench_pgb_before_${Date.now()}`, apply: before, triggers: true, setup: '' },
    { label: 'no triggers (ceiling)', schema: `bench_pgb_plain_${Date.now()}`, apply: migrations, triggers: false, setup: '' },
  ];
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  const script = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-pgbench-')), 'update.sql');
  await fs.writeFile(script, '\\set n random(1, 2000)\nUPDATE "Job" SET progress = :n % 100 WHERE id = (SELECT id FROM bench_ids WHERE n = :n);\n');
  const rows: PgbenchRow[] = [];
  try {
    for (const { schema, apply, triggers, setup } of schemas) {
      await admin.query(`CREATE SCHEMA "${schema}"; SET search_path = "${schema}"`);
      for (const name of apply) await admin.query(await fs.readFile(path.join(MIGRATIONS_DIR, name, 'migration.sql'), 'utf8'));
      await admin.query(`
        INSERT INTO "Workspace"(id, slug) VALUES (gen_random_uuid(), 'pgbench');
        INSERT INTO "Job"(id, "workspaceId", type, "displayTitle") SELECT gen_random_uuid(), (SELECT id FROM "Workspace"), 'collect', 'Job ' || g FROM generate_series(1, 2000) g;
        CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM "Job";
        CREATE UNIQUE INDEX ON bench_ids(n);
        ${setup}
        ${triggers ? '' : 'ALTER TABLE "Job" DISABLE TRIGGER USER;'}`);
      await admin.query(`VACUUM ANALYZE "Job"`);
    }
    const url = new URL(postgresUrl);
    // Alternating schemas round by round, so that the machine's drift hits all alike.
    for (const clients of clientCounts) {
      for (const { label, schema } of schemas) {
        const { stdout } = await promisify(execFile)(
          pgbench,
          [
            '-h',
            url.hostname,
            '-p',
            url.port || '5432',
            '-U',
            decodeURIComponent(url.username) || 'postgres',
            '-n',
            '-f',
            script,
            '-c',
            String(clients),
            '-j',
            '2',
            '-T',
            String(seconds),
            url.pathname.slice(1),
          ],
          { env: { ...process.env, PGOPTIONS: `-c search_path=${schema}` } },
        );
        rows.push({ schema: label, clients, tps: Math.round(Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0)) });
        await admin.query(`VACUUM "${schema}"."Job"`);
      }
    }
  } finally {
    for (const { schema } of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
  return rows;
}
