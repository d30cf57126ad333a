import { DELEGABLE_SCOPES } from '../../auth/access-tokens.js';
import { appError, errors } from '../../errors.js';
import { isUuid } from '../../ids.js';
import { JOB_LIMITS } from '../../limits/fixed.js';
import { rejectNul } from '../../jobs/transitions.js';
import { builder } from '../builder.js';
import { principalOf, workspaceOf } from '../context.js';

const AccessTokenRef = builder.objectRef<{ token: string; expiresAt: Date }>('AccessToken').implement({
  description: 'A short-lived token for a browser: pass it as `Authorization: Bearer <token>`, or as `token` in a WebSocket’s connectionParams.',
  fields: (t) => ({
    token: t.exposeString('token'),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', description: 'When it stops being accepted (and what it holds open is closed).' }),
  }),
});

const CreateAccessTokenInput = builder.inputType('CreateAccessTokenInput', {
  fields: (t) => ({
    scopes: t.stringList({ required: true, description: `Some of the caller's scopes, among ${DELEGABLE_SCOPES.join(', ')} (jobs:write is never delegated).` }),
    jobId: t.id({ description: 'Only this job (of the workspace).' }),
    competitorId: t.id({ description: "Only this competitor's jobs." }),
    type: t.string({ description: 'Only jobs of this type.' }),
    ttlMs: t.int({ description: 'Lifetime in milliseconds: 10000 to ACCESS_TOKEN_MAX_TTL_MS (1 hour by default); default 15 minutes.' }),
  }),
});

builder.mutationField('createAccessToken', (t) =>
  t.field({
    type: AccessTokenRef,
    description:
      'Mints a short-lived token with some of the calling key’s scopes, optionally restricted to one job, a competitor and/or a type: what a backend hands a browser instead of its API key. Any API key may mint, with the scopes it has; a token may not.',
    args: { input: t.arg({ type: CreateAccessTokenInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      // Before anything is read: a token must not learn even whether a job exists.
      if (principalOf(ctx).token) throw appError('FORBIDDEN', 'An access token cannot mint tokens; mint them with an API key.');
      const restriction: { jobId?: string; competitorId?: string; type?: string } = {};
      if (input.jobId != null) {
        const jobId = String(input.jobId);
        // A token for a job its workspace does not have is refused as the job would be.
        if (!isUuid(jobId) || !(await ctx.jobs.get(workspaceOf(ctx), jobId))) throw errors.jobNotFound(jobId);
        restriction.jobId = jobId.toLowerCase();
      }
      for (const field of ['competitorId', 'type'] as const) {
        const value = input[field];
        if (value == null) continue;
        // Trimmed as createJob stores them, so that " acme" restricts to acme's jobs.
        const text = rejectNul(field, String(value)).trim();
        if (text.length === 0 || text.length > JOB_LIMITS.text) throw errors.badInput(`${field} must be 1 to ${JOB_LIMITS.text} characters.`);
        restriction[field] = text;
      }
      return ctx.accessTokens.mint(principalOf(ctx), { scopes: input.scopes, restriction, ttlMs: input.ttlMs });
    },
  }),
);
