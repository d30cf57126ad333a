import { endingOf } from '../jobs/transitions.js';
import { jobRowOfSnapshot } from '../jobs/job-rows.js';
import type { JobRow } from '../jobs/model.js';
import type { RestJobRenderer } from '../rest/rest-job.js';
import type { RenderDelivery } from './dispatcher.js';

/**
 * The body of an event, in the envelope the Standard Webhooks specification recommends:
 * `{ id, type, timestamp, changeCursor, reason?, data }`. `data` is the job exactly as
 * GET /api/jobs/{id} answers it (as the change left it); `id` is the webhook-id header again;
 * `timestamp` is when the change was recorded; `reason` (job.failed only) is failed, cancelled or
 * stalled; `changeCursor` is where a `jobUpdated` subscription may resume (`after`) to follow the
 * workspace on from this event.
 */
export function eventBodies(restJob: RestJobRenderer, cursorOf: (job: JobRow) => bigint): RenderDelivery {
  return async (delivery) => {
    const job = jobRowOfSnapshot(delivery.job);
    const body = {
      id: delivery.eventId,
      type: delivery.eventType,
      timestamp: delivery.createdAt.toISOString(),
      changeCursor: cursorOf(job).toString(),
      ...(delivery.eventType === 'job.failed' && { reason: endingOf(job).toLowerCase() }),
      data: await restJob(job),
    };
    return JSON.stringify(body);
  };
}
