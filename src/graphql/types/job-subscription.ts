import { appError, errors } from '../../errors.js';
import { parseAfter } from '../../jobs/change-position.js';
import { jobFilterOf } from '../../jobs/job-filter.js';
import type { JobRow } from '../../jobs/model.js';
import { builder } from '../builder.js';
import { principalOf } from '../context.js';
import { JobRef, JobStatusEnum } from './job.js';

builder.subscriptionFields((t) => ({
  jobUpdated: t.field({
    type: JobRef,
    description:
      'The new state of a job of the workspace after every committed change, for jobs that match the filters before or after the change. ' +
      'With `after` (a changeCursor), first the current state of every matching job changed after it, then live, with no gap and no duplicate.',
    authScopes: { 'jobs:read': true },
    args: {
      id: t.arg.id(),
      competitorId: t.arg.id(),
      type: t.arg.string(),
      status: t.arg({ type: JobStatusEnum }),
      after: t.arg.string({ description: 'Resume after this changeCursor (the largest one received).' }),
    },
    subscribe: (_root, args, ctx) => {
      const { keyId, workspaceId } = principalOf(ctx);
      const after = parseAfter(args.after);
      // Over HTTP (Server-Sent Events) the stream holds a connection of the key's, as a WebSocket
      // does; over a WebSocket the socket itself is what counts.
      const release = ctx.connectionClosed ? undefined : ctx.keyConnections.acquire(keyId);
      if (!ctx.connectionClosed && !release) {
        throw appError('TOO_MANY_CONNECTIONS', `Too many connections for this API key (max ${ctx.keyConnections.max}).`);
      }
      // A stream outlives the request that authenticated it: end it when its key is revoked.
      const revoked = new AbortController();
      const unwatch = ctx.revocations.watch(keyId, () => revoked.abort(errors.keyRevoked()));
      const signal = ctx.connectionClosed ? AbortSignal.any([revoked.signal, ctx.connectionClosed]) : revoked.signal;
      return ctx.live.iterate(workspaceId, jobFilterOf(args), after, {
        signal,
        onEnd: () => {
          unwatch();
          release?.();
        },
      });
    },
    // Each event is the job row itself.
    resolve: (job: JobRow) => job,
  }),
}));
