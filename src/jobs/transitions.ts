import { type JobEnding, errors } from '../errors.js';
import { HEARTBEAT_TIMEOUT_MS, JOB_LIMITS } from '../limits/fixed.js';
import { type JobMetadata, type JobRow, type JobStep, type JobStepStatus, JobStatus, metadataOf, stepsOf } from './model.js';

/**
 * The state machine of a job, as pure functions from the current state and an input to the fields
 * that change. The store applies each result as one conditional write (see job-store.ts).
 */
export interface JobPatch {
  status?: JobStatus;
  progress?: number;
  currentStep?: string | null;
  steps?: JobStep[];
  metadata?: JobMetadata;
  completedAt?: Date;
  error?: string;
}

export interface NewJobInput {
  type: string;
  displayTitle: string;
  competitorId?: string | null | undefined;
  steps: ReadonlyArray<{ id: string; name: string }>;
  metadata?: unknown;
  /** How long the job may go without a report or heartbeat while running; `defaultHeartbeatTimeoutMs` when absent. */
  heartbeatTimeoutMs?: number | null | undefined;
  /** The same key again (in the workspace, within IDEMPOTENCY_TTL_MS) answers the job it created. */
  idempotencyKey?: string | null | undefined;
}

export interface ProgressInput {
  progress?: number | null | undefined;
  stepId?: string | null | undefined;
  stepStatus?: JobStepStatus | null | undefined;
  metadata?: unknown;
}

export interface NewJobFields {
  type: string;
  displayTitle: string;
  competitorId: string | null;
  status: JobStatus;
  progress: number;
  currentStep: string | null;
  steps: JobStep[];
  metadata: JobMetadata;
  heartbeatTimeoutMs: number;
}

/** A new job runs its first step; the others wait. */
export function newJob(input: NewJobInput, defaultHeartbeatTimeoutMs: number): NewJobFields {
  const type = requireText('type', input.type);
  const displayTitle = requireText('displayTitle', input.displayTitle);
  const competitorId = input.competitorId == null ? null : requireText('competitorId', input.competitorId);
  if (input.steps.length > JOB_LIMITS.steps) throw errors.badInput(`A job has at most ${JOB_LIMITS.steps} steps.`);
  const seen = new Set<string>();
  const steps = input.steps.map((step, index): JobStep => {
    const id = requireText(`steps[${index}].id`, step.id);
    if (seen.has(id)) throw errors.badInput(`Step id "${id}" appears twice.`);
    seen.add(id);
    return { id, name: requireText(`steps[${index}].name`, step.name), status: index === 0 ? 'RUNNING' : 'PENDING' };
  });
  const heartbeatTimeoutMs = input.heartbeatTimeoutMs ?? defaultHeartbeatTimeoutMs;
  if (!Number.isInteger(heartbeatTimeoutMs) || heartbeatTimeoutMs < HEARTBEAT_TIMEOUT_MS.min || heartbeatTimeoutMs > HEARTBEAT_TIMEOUT_MS.max) {
    throw errors.badInput(`heartbeatTimeoutMs must be an integer from ${HEARTBEAT_TIMEOUT_MS.min} to ${HEARTBEAT_TIMEOUT_MS.max}.`);
  }
  return {
    type,
    displayTitle,
    competitorId,
    heartbeatTimeoutMs,
    status: JobStatus.RUNNING,
    progress: 0,
    currentStep: steps[0]?.name ?? null,
    steps,
    metadata: input.metadata == null ? {} : boundedMetadata(requireObject(input.metadata)),
  };
}

/** An idempotency key as given (keys are opaque: not trimmed), or a BAD_USER_INPUT. */
export function idempotencyKeyOf(key: string): string {
  rejectNul('idempotencyKey', key);
  if (key.length === 0) throw errors.badInput('idempotencyKey must not be empty.');
  if (key.length > JOB_LIMITS.idempotencyKey) throw errors.badInput(`idempotencyKey is longer than ${JOB_LIMITS.idempotencyKey} characters.`);
  return key;
}

/**
 * Progress never goes backwards; a step set RUNNING becomes the current step, and the step that was
 * running before it is completed (steps run one at a time, in order); metadata merges shallowly.
 */
export function progress(job: JobRow, input: ProgressInput): JobPatch {
  const patch: JobPatch = {};
  if (input.progress != null) {
    if (!Number.isInteger(input.progress) || input.progress < 0 || input.progress > 100) {
      throw errors.badInput('progress must be an integer from 0 to 100.');
    }
    if (input.progress < job.progress) {
      throw errors.badInput(`progress cannot go backwards (it is ${job.progress}, got ${input.progress}).`);
    }
    patch.progress = input.progress;
  }
  if ((input.stepId == null) !== (input.stepStatus == null)) {
    throw errors.badInput('stepId and stepStatus go together.');
  }
  if (input.stepId != null && input.stepStatus != null) {
    const steps = stepsOf(job);
    const target = steps.find((step) => step.id === input.stepId);
    if (!target) throw errors.badInput(`The job has no step "${input.stepId}".`);
    const status = input.stepStatus;
    patch.steps = steps.map((step) => {
      if (step.id === target.id) return { ...step, status };
      if (status === 'RUNNING' && step.status === 'RUNNING') return { ...step, status: 'COMPLETED' };
      return step;
    });
    if (status === 'RUNNING') patch.currentStep = target.name;
  }
  if (input.metadata != null) patch.metadata = boundedMetadata({ ...metadataOf(job), ...requireObject(input.metadata) });
  return patch;
}

export function complete(job: JobRow, now: Date): JobPatch {
  return {
    status: JobStatus.COMPLETED,
    progress: 100,
    steps: stepsOf(job).map((step) => ({ ...step, status: 'COMPLETED' })),
    completedAt: now,
  };
}

export function fail(job: JobRow, error: string, now: Date): JobPatch {
  const reason = requireText('error', error, JOB_LIMITS.error);
  return {
    status: JobStatus.FAILED,
    steps: stepsOf(job).map((step) => (step.status === 'RUNNING' ? { ...step, status: 'FAILED' } : step)),
    error: reason,
    completedAt: now,
  };
}

export const CANCELLED = 'Cancelled';

export function cancel(job: JobRow, now: Date): JobPatch {
  return { ...fail(job, CANCELLED, now), currentStep: CANCELLED };
}

/** How a job that is not running ended; a FAILED job whose step says Cancelled or Stalled ended that way. */
export function endingOf(job: JobRow): JobEnding {
  if (job.status === JobStatus.COMPLETED) return 'COMPLETED';
  if (job.currentStep === CANCELLED && job.error === CANCELLED) return 'CANCELLED';
  if (job.currentStep === STALLED && job.error === stalledError(job.heartbeatTimeoutMs)) return 'STALLED';
  return 'FAILED';
}

export const STALLED = 'Stalled';

/** Its worker sent no report or heartbeat within the job's timeout: it ends as failed, saying so. */
export function stall(job: JobRow, now: Date): JobPatch {
  return { ...fail(job, stalledError(job.heartbeatTimeoutMs), now), currentStep: STALLED };
}

/** The error a stalled job carries: its reason, for people and for the worker SDK (JobStalledError). */
export function stalledError(heartbeatTimeoutMs: number): string {
  return `${STALLED}: no report for ${heartbeatTimeoutMs / 1000} s`;
}

/**
 * PostgreSQL text and jsonb cannot hold NUL, and jsonb refuses an unpaired surrogate (`"\ud800"`):
 * either would fail in the database as a 500.
 */
export function rejectNul(field: string, value: string): string {
  if (value.includes('\u0000')) throw errors.badInput(`${field} must not contain NUL characters.`);
  if (!value.isWellFormed()) throw errors.badInput(`${field} must be well-formed Unicode (no unpaired surrogate).`);
  return value;
}

function requireText(field: string, value: string, max: number = JOB_LIMITS.text): string {
  const text = rejectNul(field, value).trim();
  if (text === '') throw errors.badInput(`${field} must not be empty.`);
  if (text.length > max) throw errors.badInput(`${field} is longer than ${max} characters.`);
  return text;
}

function requireObject(value: unknown): JobMetadata {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw errors.badInput('metadata must be a JSON object.');
  }
  checkJson(value);
  return value as JobMetadata;
}

/** Every string (keys included) storable, and nesting within JOB_LIMITS.metadataDepth; iterative, so any depth is safe to check. */
function checkJson(root: unknown): void {
  const stack: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 1 }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value, depth } = item;
    if (typeof value === 'string') {
      rejectNul('metadata', value);
    } else if (value !== null && typeof value === 'object') {
      if (depth > JOB_LIMITS.metadataDepth) throw errors.badInput(`metadata is nested deeper than ${JOB_LIMITS.metadataDepth} levels.`);
      for (const [key, child] of Object.entries(value)) {
        if (!Array.isArray(value)) rejectNul('metadata', key);
        stack.push({ value: child, depth: depth + 1 });
      }
    }
  }
}

function boundedMetadata(metadata: JobMetadata): JobMetadata {
  const text = JSON.stringify(metadata);
  if (text.length > JOB_LIMITS.metadataBytes || Buffer.byteLength(text) > JOB_LIMITS.metadataBytes) {
    throw errors.badInput(`metadata is larger than ${JOB_LIMITS.metadataBytes} bytes (after merging).`);
  }
  return metadata;
}
