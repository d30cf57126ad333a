import { setTimeout as delay } from 'node:timers/promises';
import type { JobsWorker } from '../sdk/worker.js';
import { JobNotRunningError } from '../sdk/worker.js';

/** The kinds of jobs the Jobs API's clients run, with their steps, as a worker of theirs creates them. */
const DEMO_KINDS = [
  {
    type: 'collect',
    title: (competitor: string) => `Analyzing ${competitor}`,
    steps: [
      { id: 'collect', name: 'Collecting Intel' },
      { id: 'ingest', name: 'Processing Intel' },
      { id: 'build-matrix', name: 'Building Competitor Matrix' },
      { id: 'build-battlecard', name: 'Generating Battle Card' },
    ],
  },
  {
    type: 'discover-products',
    title: (competitor: string) => `Discovering ${competitor}'s products`,
    steps: [{ id: 'discover', name: 'Discovering Products' }],
  },
  { type: 'discover-profile', title: (competitor: string) => `Profiling ${competitor}`, steps: [] },
  {
    type: 'analyze-product-capabilities',
    title: (competitor: string) => `Analyzing ${competitor}'s product capabilities`,
    steps: [
      { id: 'fetch', name: 'Fetching Product Pages' },
      { id: 'analyze', name: 'Analyzing Capabilities' },
    ],
  },
] as const;

const COMPETITORS = ['Acme Corp', 'Globex', 'Initech', 'Umbrella', 'Hooli'];

export interface DemoWorkerOptions {
  /** Time between two reports of a job. */
  stepMs: number;
  /** Chance that a job fails (as a scraper times out). */
  failureRate: number;
  /** Chance that a job's worker dies midway (it stops reporting), so that the gateway fails the job as stalled. */
  deathRate: number;
  /** The jobs' heartbeat timeout: how soon a dead worker's job stalls. */
  heartbeatTimeoutMs: number;
  /** Jobs run at once. */
  concurrency: number;
  random?: () => number;
  /** Called with each job's id as soon as it is created (running). */
  onJobCreated?: (id: string) => void;
}

/**
 * A simulated worker pool: runs jobs of every kind through their steps with the SDK, reports
 * progress, sometimes fails one, sometimes dies on one (the job then stalls), and stops a job as soon
 * as a dashboard cancels it, until `signal`.
 */
export async function runDemoWorker(worker: JobsWorker, signal: AbortSignal, options: DemoWorkerOptions): Promise<void> {
  const random = options.random ?? Math.random;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const sleep = (ms: number, job?: AbortSignal) => delay(ms * (0.5 + random()), undefined, { signal: job ? AbortSignal.any([signal, job]) : signal });

  const runOne = async () => {
    const kind = pick(DEMO_KINDS);
    const competitor = pick(COMPETITORS);
    const job = await worker.createJob({
      type: kind.type,
      displayTitle: kind.title(competitor),
      competitorId: competitor.toLowerCase().replace(/\W+/g, '-'),
      steps: kind.steps.map((step) => ({ ...step })),
      metadata: { competitorName: competitor, demo: true },
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    });
    options.onJobCreated?.(job.id);
    const fails = random() < options.failureRate;
    const dies = !fails && random() < options.deathRate;
    const reports = Math.max(kind.steps.length, 1) * 3;
    try {
      for (let i = 1; i <= reports; i++) {
        await sleep(options.stepMs, job.cancelled);
        if (fails && i === Math.ceil(reports / 2)) {
          await job.fail('Scraper timed out');
          return;
        }
        if (dies && i === Math.ceil(reports / 2)) {
          // As a crashed process would: no more reports, no heartbeats. The gateway fails it as stalled.
          job.release();
          return;
        }
        const step = kind.steps[Math.floor(((i - 1) / reports) * kind.steps.length)];
        const progress = Math.round((i / reports) * 95);
        const runningStep = job.state?.steps.find((s) => s.status === 'RUNNING')?.key;
        await job.report({
          progress,
          metadata: { pagesSeen: i * 7 },
          ...(step && step.id !== runningStep && { stepId: step.id, stepStatus: 'RUNNING' as const }),
        });
      }
      await job.complete();
    } catch (error) {
      // Cancelled from a dashboard (or stalled): stop this job's work, report nothing more.
      if (error instanceof JobNotRunningError || job.cancelled.aborted || signal.aborted) return;
      throw error;
    }
  };

  const lanes = Array.from({ length: options.concurrency }, async () => {
    while (!signal.aborted) {
      try {
        await runOne();
      } catch (error) {
        if (signal.aborted) return;
        console.error(`demo worker: ${(error as Error).message}`);
        await sleep(1_000).catch(() => undefined);
      }
    }
  });
  await Promise.all(lanes);
}
