import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../app.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { PortInUseError, explainListenError } from '../port-in-use.js';
import { JobsWorker } from '../sdk/worker.js';
import { runDemoWorker } from './jobs.js';

// `npm run demo`: the gateway on a fresh embedded database of its own (removed at exit), a demo
// workspace with a key for the dashboard and one for the worker, and a simulated worker that runs
// the Jobs API's kinds of jobs through their steps, sometimes failing, until Ctrl+C.
async function main(): Promise<void> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-demo-'));
  const config = loadConfig({ LOG_LEVEL: 'warn', ...process.env, DATABASE_URL: '', DATA_DIR: dataDir });
  const logger = createLogger(config.logLevel);
  const app = await createApp(config, logger);
  let url: string;
  try {
    url = await app.start();
  } catch (error) {
    await app.close().catch(() => undefined);
    throw explainListenError(error, config.port, 'npm run demo');
  }
  const dashboardKey = (await app.apiKeys.create({ workspace: 'demo', name: 'dashboard', scopes: ['jobs:read', 'jobs:cancel'] })).key;
  const workerKey = (await app.apiKeys.create({ workspace: 'demo', name: 'demo worker', scopes: ['jobs:read', 'jobs:write'] })).key;

  const stop = new AbortController();
  const worker = new JobsWorker({ url, apiKey: workerKey });
  const working = runDemoWorker(worker, stop.signal, {
    stepMs: Number(process.env.DEMO_STEP_MS ?? 1_500),
    failureRate: Number(process.env.DEMO_FAILURE_RATE ?? 0.15),
    concurrency: Number(process.env.DEMO_CONCURRENCY ?? 3),
  });

  console.log(
    [
      '',
      `jobs-gateway demo: ${url}`,
      `  dashboard:  ${url}/   (paste the key below)`,
      `  GraphiQL:   ${url}/graphql`,
      `  REST:       curl -H "X-API-Key: <key>" ${url}/api/jobs`,
      '',
      '  key (jobs:read, jobs:cancel):',
      `  ${dashboardKey}`,
      '',
      'A simulated worker is running jobs. Ctrl+C stops everything and removes the demo database.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    stop.abort();
    await working.catch(() => undefined);
    await worker.close();
    await app.close();
    await fs.rm(dataDir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
}

main().catch((error: unknown) => {
  if (error instanceof PortInUseError) console.error(error.message);
  else console.error('the demo failed to start:', error);
  process.exit(1);
});
