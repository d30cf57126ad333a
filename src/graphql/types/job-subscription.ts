import type { JobStream } from '../../live/job-stream.js';
import { errors } from '../../errors.js';
import type { JobRow } from '../../jobs/model.js';
import { jobUpdatedRequest } from '../../live/job-updated-session.js';
import { builder } from '../builder.js';
import { principalOf } from '../context.js';
import { JobRef, jobFilterArgs } from './job.js';

builder.subscriptionFields((t) => ({
  jobUpdated: t.field({
    type: JobRef,
    description:
      'The new state of a job of the workspace after every committed change, for jobs that match the filters before or after the change. ' +
      'With `after` (a changeCursor), first the current state of every matching job changed after it, then live, with no gap and no duplicate.',
    authScopes: { 'jobs:read': true },
    args: {
      id: t.arg.id(),
      ...jobFilterArgs(t.arg),
      after: t.arg.string({ description: 'Resume after this changeCursor (the largest one received).' }),
    },
    subscribe: (_root, args, ctx) => {
      const principal = principalOf(ctx);
      const request = jobUpdatedRequest(principal, args);
      // Over HTTP (Server-Sent Events) the stream holds a connection of the key's, as a WebSocket
      // does; over a WebSocket the socket itself is what counts.
      const made: { stream?: JobStream } = {};
      // Ended with the same error if, counted with the key's connections on other instances, it is over the limit.
      const release = ctx.connectionClosed
        ? undefined
        : ctx.keyConnections.acquire(principal.keyId, () => made.stream?.end(errors.tooManyConnections(ctx.keyConnections.max)));
      if (!ctx.connectionClosed && !release) {
        throw errors.tooManyConnections(ctx.keyConnections.max);
      }
      // A stream over HTTP ends when its token does; a WebSocket's socket closes then (ws/connections.ts).
      const ending = ctx.connectionClosed ? request : { ...request, expiresAt: principal.token?.expiresAt };
      made.stream = ctx.live.stream(ending, { signal: ctx.connectionClosed, onEnd: release });
      return made.stream;
    },
    // Each event is the job row itself.
    resolve: (job: JobRow) => job,
  }),
}));
