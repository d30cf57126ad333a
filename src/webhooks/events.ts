/**
 * The events an endpoint can ask for. job.created when a job is created; job.progress when a
 * running job's progress, step or metadata changes (coalesced per endpoint's progressIntervalMs);
 * job.completed and job.failed when it ends (job.failed with its reason: failed, cancelled or
 * stalled). The trigger job_webhook_events() (migration 20261208000000) names them the same.
 */
export const WEBHOOK_EVENTS = ['job.created', 'job.progress', 'job.completed', 'job.failed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export function isWebhookEvent(value: string): value is WebhookEvent {
  return (WEBHOOK_EVENTS as readonly string[]).includes(value);
}
