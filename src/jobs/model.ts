import type { Job as JobRow } from '../generated/prisma/client.js';
import { JobStatus } from '../generated/prisma/enums.js';

export { JobStatus };
export type { JobRow };

export const JOB_STEP_STATUSES = ['PENDING', 'RUNNING', 'COMPLETED', 'FAILED'] as const;
export type JobStepStatus = (typeof JOB_STEP_STATUSES)[number];

export interface JobStep {
  id: string;
  name: string;
  status: JobStepStatus;
}

export type JobMetadata = Record<string, unknown>;

/** `steps` is a JSON column written only by the job store, so its shape is known. */
export function stepsOf(job: Pick<JobRow, 'steps'>): JobStep[] {
  return Array.isArray(job.steps) ? (job.steps as unknown as JobStep[]) : [];
}

export function metadataOf(job: Pick<JobRow, 'metadata'>): JobMetadata {
  const value = job.metadata;
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
}
