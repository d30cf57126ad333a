import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type App, createApp } from '../app.js';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { PortInUseError, explainListenError } from '../port-in-use.js';
import { JobsWorker } from '../sdk/worker.js';
import { runDemoWorker } from './jobs.js';

// `npm run demo`: the gateway on a fresh embedded database of its own (removed at exit), a demo
// workspace with a key for the dashboard and one for the worker, and a simulated worker that runs
// the Jobs API's kinds of jobs through their steps, sometimes failing, until Ctrl+C.
async function main(): Promise<void> {
  const made = fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-demo-'));
  const stop = new AbortController();
  let app: App | undefined;
  let worker: JobsWorker | undefined;
  let working: Promise<void> = Promise.resolve();
  let starting: Promise<void> = Promise.resolve();

  // The demo's database (some 40 MB) goes with it however it ends: a start that failed (a port in
  // use), Ctrl+C or SIGTERM, at any moment, during the start included.
  let ending: Promise<void> | undefined;
  const end = (code: number) =>
    (ending ??= (async () => {
      stop.abort();
      await starting.catch(() => undefined);
      await working.catch(() => undefined);
      await worker?.close();
      await app?.close().catch(() => undefined);
      await made.then(
        (dataDir) => fs.rm(dataDir, { recursive: true, force: true }),
        () => undefined,
      );
      process.exit(code);
    })());
  process.on('SIGINT', () => void end(0));
  process.on('SIGTERM', () => void end(0));

  starting = (async () => {
    const dataDir = await made;
    const config = loadConfig({ LOG_LEVEL: 'warn', ...process.env, DATABASE_URL: '', DATA_DIR: dataDir });
    const logger = createLogger(config.logLevel);
    app = await createApp(config, logger);
    if (stop.signal.aborted) return;
    let url: string;
    try {
      url = await app.start();
    } catch (error) {
      throw explainListenError(error, config.port, 'npm run demo');
    }
    const dashboardKey = (await app.apiKeys.create({ workspace: 'demo', name: 'dashboard', scopes: ['jobs:read', 'jobs:cancel'] })).key;
    const workerKey = (await app.apiKeys.create({ workspace: 'demo', name: 'demo worker', scopes: ['jobs:read', 'jobs:write'] })).key;
    if (stop.signal.aborted) return;

    worker = new JobsWorker({ url, apiKey: workerKey });
    // The first job the worker creates is running: its id makes the README's examples pasteable.
    let firstJob!: (id: string) => void;
    const firstJobId = new Promise<string>((resolve) => (firstJob = resolve));
    working = runDemoWorker(worker, stop.signal, {
      stepMs: Number(process.env.DEMO_STEP_MS ?? 1_500),
      failureRate: Number(process.env.DEMO_FAILURE_RATE ?? 0.15),
      deathRate: Number(process.env.DEMO_DEATH_RATE ?? 0.1),
      heartbeatTimeoutMs: Number(process.env.DEMO_HEARTBEAT_TIMEOUT_MS ?? 10_000),
      concurrency: Number(process.env.DEMO_CONCURRENCY ?? 3),
      onJobCreated: (id) => firstJob(id),
    });
    const stopped = new Promise<undefined>((resolve) => stop.signal.addEventListener('abort', () => resolve(undefined), { once: true }));
    const jobId = await Promise.race([firstJobId, stopped]);
    if (jobId === undefined) return;

    console.log(
      [
        '',
        `jobs-gateway demo: ${url}`,
        `  dashboard:  ${url}/   (paste the dashboard key)`,
        `  GraphiQL:   ${url}/graphql`,
        `  REST:       ${url}/api/jobs`,
        '',
        '  dashboard key (jobs:read, jobs:cancel):',
        `  ${dashboardKey}`,
        '  worker key (jobs:read, jobs:write):',
        `  ${workerKey}`,
        '',
        "  For the README's curl examples (KEY: the dashboard key; JOB_ID: a job the worker is running now):",
        `  export KEY=${dashboardKey} WORKER_KEY=${workerKey} JOB_ID=${jobId}`,
        `  curl -s -H "X-API-Key: $KEY" "${url}/api/jobs/$JOB_ID"`,
        '',
        'A simulated worker is running jobs. Ctrl+C stops everything and removes the demo database.',
        '',
      ].join('\n'),
    );
  })();

  try {
    await starting;
  } catch (error) {
    if (!stop.signal.aborted) {
      if (error instanceof PortInUseError || error instanceof ConfigError) console.error(error.message);
      else console.error('the demo failed to start:', error);
    }
    await end(1);
  }
}

main().catch((error: unknown) => {
  console.error('the demo failed:', error);
  process.exit(1);
});
