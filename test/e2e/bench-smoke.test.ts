import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);

// `npm run bench` keeps working: a tiny run (20 subscribers, short phases, embedded database)
// must produce every figure. Its numbers are not judged here: speed is measured, never asserted.
it('npm run bench -- --smoke produces the full report', { timeout: 600_000 }, async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/bench/run.ts', '--smoke'], {
    cwd: repoRoot,
    timeout: 590_000,
    maxBuffer: 10 * 1024 * 1024,
  });
  const lines = stdout.trim().split('\n');
  expect(stdout).toContain('Fan-out');
  const report = JSON.parse(lines.at(-1)!) as {
    fanout: Array<Record<string, number | string>>;
    rest: Array<Record<string, number | string>>;
    polling: Record<string, number>;
    fairness: Array<Record<string, number | string>>;
    writes: Array<Record<string, number | string>>;
    writeKinds: Array<Record<string, number | string>>;
    webhookWrites: Array<Record<string, number | string>>;
    webhookDelivery: Array<Record<string, number | string>>;
    memory: Array<Record<string, number | string>>;
    soak: Array<Record<string, number | string> & { heapMiB: number[]; updatesPerSec: number; pollsPerSec: number }>;
    mixed: Array<Record<string, unknown> & Record<'delivery' | 'report' | 'poll', Record<'first2s' | 'steady', { p99: number; count: number }>>>;
  };
  expect(report.fanout).toHaveLength(1);
  const fanout = report.fanout[0]!;
  expect(Object.keys(fanout).sort()).toEqual(
    ['ceilingDeliveriesPerSec', 'db', 'deliveriesPerSec', 'naiveDeliveriesPerSec', 'p50Ms', 'p99Ms', 'rssPerSubscriberKiB', 'subscribers'].sort(),
  );
  expect(fanout).toMatchObject({ db: 'embedded', subscribers: 20 });
  for (const key of ['deliveriesPerSec', 'ceilingDeliveriesPerSec', 'naiveDeliveriesPerSec'] as const) expect(fanout[key]).toBeGreaterThan(0);
  expect(Number.isFinite(fanout.p99Ms)).toBe(true);
  const routes = [
    'GET /api/jobs?limit=50',
    'POST /graphql jobs(limit: 50)',
    'GET /api/jobs/{id}',
    'GET /api/jobs/{id} (access token)',
    'POST /graphql job(id)',
  ];
  expect(report.rest.map((r) => [r.route, r.cache])).toEqual([...routes.map((route) => [route, 'on']), ...routes.map((route) => [route, 'off'])]);
  for (const row of report.rest) for (const key of ['reqPerSec', 'ceilingReqPerSec']) expect(row[key]).toBeGreaterThan(0);
  // With the cache off, every read reads the database; with it on, a repeated read does not.
  for (const row of report.rest.filter((r) => r.cache === 'off')) expect(row.dbQueriesPerRequest).toBeGreaterThanOrEqual(1);
  for (const row of report.rest.filter((r) => r.cache === 'on')) expect(row.dbQueriesPerRequest).toBeLessThan(0.5);
  expect(report.memory.map((row) => row.db)).toEqual(['embedded']);
  for (const key of ['idleRssMiB', 'serverIdleRssMiB', 'serverJustStartedRssMiB', 'firstStartRssMiB']) expect(report.memory[0]![key]).toBeGreaterThan(0);
  expect(report.polling).toMatchObject({ dashboards: 20 });
  for (const key of ['pollDbQueriesPerSec', 'pushDbQueriesPerSec', 'pollUncachedDbQueriesPerSec', 'pollBytesPerSec', 'pushBytesPerSec'])
    expect(report.polling[key]).toBeGreaterThan(0);
  expect(report.fairness.map((row) => [row.db, row.attacker])).toEqual([
    ['embedded', 'key flood'],
    ['embedded', 'bad keys'],
  ]);
  for (const row of report.fairness) for (const key of ['quietP50Ms', 'floodP50Ms', 'floodReqPerSec']) expect(row[key]).toBeGreaterThan(0);
  // How much of the key flood was refused depends on how fast this machine serves it; refusals are
  // among the flood's answers, so never more of them than answers (both rounded per second).
  for (const row of report.fairness) expect(row.floodRefusedPerSec as number).toBeLessThanOrEqual((row.floodReqPerSec as number) + 1);
  // Every request of the bad-key flood is refused (401 within the budget, 429 past it).
  expect(report.fairness[1]!.floodRefusedPerSec).toBeGreaterThan(0);
  // The soak's figures come out, and what it checks holds: every subscriber ends at every job's
  // state in the database, none was closed, and no poll failed.
  expect(report.soak).toHaveLength(1);
  expect(report.soak[0]).toMatchObject({ db: 'embedded', subscribers: 20, finalStatesMissing: 0, finalStatePairs: 20 * 50, socketsClosed: 0, pollFailures: 0 });
  expect(report.soak[0]!.heapMiB.length).toBeGreaterThanOrEqual(2);
  for (const key of ['updatesPerSec', 'pollsPerSec'] as const) expect(report.soak[0]![key]).toBeGreaterThan(0);
  expect(report.writes.map((row) => [row.db, row.workers])).toEqual([
    ['embedded', 1],
    ['embedded', 8],
  ]);
  for (const row of report.writes) {
    for (const key of ['writesPerSec', 'ceilingWritesPerSec']) expect(row[key]).toBeGreaterThan(0);
    // Latencies in whole milliseconds (a fast write can round to 0): ordered, and measured at all.
    expect(row.p99Ms as number).toBeGreaterThanOrEqual(row.p50Ms as number);
    expect(Number.isFinite(row.p99Ms)).toBe(true);
  }
  // Every kind of worker write measured, none failing (a failed request throws in the bench).
  expect(report.writeKinds.map((row) => row.kind)).toEqual(['updateJobProgress', 'heartbeat', 'createJob', 'createJob with idempotencyKey']);
  for (const row of report.writeKinds) expect(row.writesPerSec).toBeGreaterThan(0);
  // Webhooks: a write's cost without and with an endpoint, and every event delivered (the bench waits for all).
  expect(report.webhookWrites.map((row) => row.endpoint)).toEqual(['none', 'job.progress + job.completed']);
  for (const row of report.webhookWrites) expect(row.writesPerSec).toBeGreaterThan(0);
  expect(report.webhookDelivery).toHaveLength(1);
  expect(report.webhookDelivery[0]).toMatchObject({ db: 'embedded', events: 100 });
  for (const key of ['eventsPerSec', 'bareRequestsPerSec']) expect(report.webhookDelivery[0]![key]).toBeGreaterThan(0);
  // The mixed load: both phases measured for every role, and what it checks holds (every report
  // reached every subscriber of its workspace, final states right, no socket closed, nothing failed).
  expect(report.mixed.map((row) => [row.db, row.subscribers, row.pollers])).toEqual([
    ['embedded', 20, 0],
    ['embedded', 20, 20],
  ]);
  for (const row of report.mixed) {
    expect(row).toMatchObject({ deliveredShare: 1, reportFailures: 0, pollFailures: 0, finalStatesMissing: 0, socketsClosed: 0 });
    for (const phase of ['first2s', 'steady'] as const) {
      for (const role of ['delivery', 'report'] as const) expect(row[role][phase].count).toBeGreaterThan(0);
      if (row.pollers !== 0) expect(row.poll[phase].count).toBeGreaterThan(0);
    }
  }
});

it('npm run bench -- --tracing-only --smoke measures writes and reads with tracing off, at 100% and at 1%', { timeout: 300_000 }, async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/bench/run.ts', '--tracing-only', '--smoke'], {
    cwd: repoRoot,
    timeout: 290_000,
    maxBuffer: 10 * 1024 * 1024,
  });
  const { tracing } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { tracing: Array<Record<string, number | string>> };
  expect(tracing.map((row) => [row.db, row.tracing])).toEqual([
    ['embedded', 'off'],
    ['embedded', '100%'],
    ['embedded', '1%'],
  ]);
  for (const row of tracing) for (const key of ['writesPerSec', 'readsPerSec']) expect(row[key]).toBeGreaterThan(0);
  const [off, all, sampled] = tracing.map((row) => row.spans as number);
  expect(off).toBe(0);
  // Every request of the round traced at 100%: several spans each; at 1%, a small part of that.
  expect(all).toBeGreaterThan(tracing[1]!.writesPerSec as number);
  expect(sampled).toBeLessThan(all! / 10);
});
