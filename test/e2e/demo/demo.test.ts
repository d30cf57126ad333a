import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { dbKind } from '../../helpers/databases.js';
import { holdPort, runToExit } from '../../helpers/gateway-process.js';
import { rest } from '../../helpers/http.js';
import { repoRoot } from '../../helpers/paths.js';

/** `npm run demo` as the README tells a newcomer to run it (always on an embedded database of its own). */

const run = promisify(execFile);
const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

interface RestJob {
  id: string;
  type: string;
  status: string;
  progress: number;
  currentStep: string | null;
  steps: Array<{ id: string; status: string }>;
}

/** A TMPDIR of the test's own, so that what the demo leaves in it can be listed without other runs' noise. */
async function freshTmpDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'demo-test-tmp-'));
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}
/** The demo's databases under `tmpDir`. */
const demoDirs = async (tmpDir: string) => (await fs.readdir(tmpDir)).filter((name) => name.startsWith('jobs-gateway-demo-'));

describe.skipIf(dbKind !== 'embedded')('npm run demo', () => {
  it(
    "prints both keys, a line to paste for the README's curl examples and the URLs, runs every kind of job through its steps (some failing, some stalling), honours a cancel, and cleans up on Ctrl+C",
    { timeout: 150_000 },
    async () => {
      const tmpDir = await freshTmpDir();
      const child = spawn('npm', ['run', 'demo', '--silent'], {
        cwd: repoRoot,
        env: {
          ...process.env,
          TMPDIR: tmpDir,
          PORT: '0',
          DEMO_STEP_MS: '80',
          DEMO_CONCURRENCY: '4',
          DEMO_FAILURE_RATE: '0.3',
          DEMO_DEATH_RATE: '0.3',
          DEMO_HEARTBEAT_TIMEOUT_MS: '1000',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));

      // A fresh database (initdb) takes seconds, many more on a loaded machine; the whole block is printed at once.
      await expect.poll(() => /export KEY=.*\n/.test(stdout), { timeout: 60_000 }).toBe(true);
      const url = /jobs-gateway demo: (http:\/\/\S+)/.exec(stdout)![1]!;
      const key = /dashboard key \(jobs:read, jobs:cancel\):\n {2}(jg_[A-Za-z0-9_-]{43})\n/.exec(stdout)![1]!;
      const workerKey = /worker key \(jobs:read, jobs:write\):\n {2}(jg_[A-Za-z0-9_-]{43})\n/.exec(stdout)![1]!;
      expect(stdout).toContain(`dashboard:  ${url}/`);
      expect((await fetch(`${url}/`)).status).toBe(200);

      // The keys and a job the worker was running, as one line to paste into a shell for the README's examples.
      const exportLine = /^ {2}(export KEY=\S+ WORKER_KEY=\S+ JOB_ID=\S+)$/m.exec(stdout)![1]!;
      const jobId = /JOB_ID=(\S+)/.exec(exportLine)![1]!;
      expect(exportLine).toBe(`export KEY=${key} WORKER_KEY=${workerKey} JOB_ID=${jobId}`);
      // The worker key reads that job (and is the worker's: it may write, not cancel).
      const byWorker = await rest(url, 'GET', `/api/jobs/${jobId}`, workerKey);
      expect(byWorker.status).toBe(200);
      expect((byWorker.body as { job: RestJob }).job.id).toBe(jobId);
      const scopes = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': workerKey },
        body: '{"query":"{ viewer { scopes } }"}',
      });
      expect(await scopes.json()).toEqual({ data: { viewer: { scopes: ['jobs:read', 'jobs:write'] } } });
      // Pasted into a shell, the line makes the curl printed under it and the README's "One job" curl work as written.
      const printedCurl = /^ {2}(curl -s -H "X-API-Key: \$KEY" \S+)$/m.exec(stdout)![1]!;
      const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
      const readmeCurl = readme.split('\n').find((line) => line.startsWith('curl ') && line.endsWith('/api/jobs/$JOB_ID"'))!;
      for (const curl of [printedCurl, readmeCurl.replace('http://127.0.0.1:4000', url)]) {
        const { stdout: pasted } = await run('bash', ['-c', `${exportLine}\n${curl}`]);
        expect((JSON.parse(pasted) as { job: RestJob }).job, curl).toMatchObject({ id: jobId, type: expect.any(String) });
      }
      expect(await demoDirs(tmpDir)).toHaveLength(1);

      const list = async () => ((await rest(url, 'GET', '/api/jobs?limit=200', key)).body as { jobs: RestJob[] }).jobs;
      // Every kind, jobs completed and failed, and steps that moved on.
      await expect
        .poll(
          async () => {
            const jobs = await list();
            return {
              kinds: [...new Set(jobs.map((job) => job.type))].sort(),
              completed: jobs.some((job) => job.status === 'completed' && job.progress === 100),
              failed: jobs.some((job) => job.status === 'failed' && job.currentStep !== 'Cancelled' && job.currentStep !== 'Stalled'),
              // A worker that died on its job: the gateway failed it as stalled.
              stalled: jobs.some((job) => job.status === 'failed' && job.currentStep === 'Stalled'),
              stepped: jobs.some((job) => job.steps.length > 1 && job.steps[0]!.status === 'completed'),
            };
          },
          { timeout: 45_000, interval: 500 },
        )
        .toEqual({
          kinds: ['analyze-product-capabilities', 'collect', 'discover-products', 'discover-profile'],
          completed: true,
          failed: true,
          stalled: true,
          stepped: true,
        });

      // A dashboard cancels a running job: the worker stops on it (it stays cancelled, nothing overwrites it).
      // A job listed as running may end before the cancel arrives (its worker finished, failed or
      // died): that one answers JOB_NOT_RUNNING, and the next running one is tried.
      let running: RestJob | undefined;
      for (let attempt = 0; attempt < 20 && !running; attempt++) {
        const candidate = (await list()).find((job) => job.status === 'running');
        if (!candidate) continue;
        const cancel = await rest(url, 'POST', `/api/jobs/${candidate.id}/cancel`, key);
        if (cancel.status === 200) running = candidate;
        else expect((cancel.body as { error: { code: string } }).error.code).toBe('JOB_NOT_RUNNING');
      }
      expect(running, 'a running job was cancelled').toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const after = ((await rest(url, 'GET', `/api/jobs/${running!.id}`, key)).body as { job: RestJob }).job;
      expect(after).toMatchObject({ status: 'failed', currentStep: 'Cancelled' });

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(stderr).toBe('');
      // Its database went with it.
      expect(await demoDirs(tmpDir)).toEqual([]);
    },
  );

  it('SIGTERM during the start (while it creates its database) exits 0 and removes the database', { timeout: 120_000 }, async () => {
    const tmpDir = await freshTmpDir();
    const child = spawn('npm', ['run', 'demo', '--silent'], { cwd: repoRoot, env: { ...process.env, TMPDIR: tmpDir, PORT: '0' }, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
    await expect.poll(() => demoDirs(tmpDir), { timeout: 30_000, interval: 20 }).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await demoDirs(tmpDir)).toEqual([]);
  });

  it(
    'started on a port already in use (beside `npm start`): one line naming the port and PORT, no stack trace, exit code 1',
    { timeout: 120_000 },
    async () => {
      const held = await holdPort();
      cleanups.push(() => held.close());
      const tmpDir = await freshTmpDir();
      const { code, stderr } = await runToExit('npm', ['run', 'demo', '--silent'], { TMPDIR: tmpDir, PORT: String(held.port) });
      expect(stderr).toBe(`Port ${held.port} is in use (another jobs-gateway or \`npm run demo\`?); set PORT to another port, e.g. PORT=4001 npm run demo\n`);
      expect(stderr).not.toMatch(/^\s+at /m);
      expect(code).toBe(1);
      // Its database did not outlive the failed start.
      expect(await demoDirs(tmpDir)).toEqual([]);
    },
  );
});
