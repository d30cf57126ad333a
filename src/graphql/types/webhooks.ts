import type { DeliveryLogEntry } from '../../webhooks/delivery-queue.js';
import type { WebhookEndpointInfo } from '../../webhooks/endpoints.js';
import { WEBHOOK_EVENTS } from '../../webhooks/events.js';
import type { EndpointWithSecret } from '../../webhooks/webhooks.js';
import { WEBHOOK } from '../../limits/fixed.js';
import { builder } from '../builder.js';
import { workspaceOf } from '../context.js';

const EVENTS = WEBHOOK_EVENTS.join(', ');

export const WebhookEndpointRef = builder.objectRef<WebhookEndpointInfo>('WebhookEndpoint').implement({
  description: "Where the workspace's job events are sent, signed per the Standard Webhooks specification.",
  fields: (t) => ({
    id: t.exposeID('id'),
    url: t.exposeString('url'),
    description: t.exposeString('description', { nullable: true }),
    events: t.exposeStringList('events', { description: `Among ${EVENTS}.` }),
    competitorId: t.exposeID('competitorId', { nullable: true, description: "Only this competitor's jobs, when set." }),
    jobType: t.exposeString('jobType', { nullable: true, description: 'Only jobs of this type, when set.' }),
    progressIntervalMs: t.exposeInt('progressIntervalMs', { description: 'job.progress is sent at most once per this many milliseconds per job.' }),
    enabled: t.exposeBoolean('enabled'),
    disabledAt: t.expose('disabledAt', { type: 'DateTime', nullable: true }),
    disabledReason: t.exposeString('disabledReason', {
      nullable: true,
      description: 'Why it was disabled: by the workspace, or because every delivery failed for the whole retry window (with the last error).',
    }),
    failingSince: t.expose('failingSince', {
      type: 'DateTime',
      nullable: true,
      description: 'Since when every attempt has failed; null while deliveries succeed.',
    }),
    previousSecretUntil: t.expose('previousSecretUntil', {
      type: 'DateTime',
      nullable: true,
      description: 'After rotateWebhookSecret: until when messages are signed with the previous secret too.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const WebhookEndpointWithSecretRef = builder.objectRef<EndpointWithSecret>('WebhookEndpointWithSecret').implement({
  description: 'An endpoint and its signing secret, shown only this once.',
  fields: (t) => ({
    endpoint: t.field({ type: WebhookEndpointRef, resolve: (created) => created.endpoint }),
    secret: t.exposeString('secret', { description: 'whsec_...: what the receiver verifies signatures with (Standard Webhooks). Store it now.' }),
  }),
});

const WebhookDeliveryStateEnum = builder.enumType('WebhookDeliveryState', {
  values: { PENDING: { value: 'pending' }, DELIVERED: { value: 'delivered' }, FAILED: { value: 'failed' } } as const,
});

const WebhookDeliveryRef = builder.objectRef<DeliveryLogEntry>('WebhookDelivery').implement({
  description: 'One event sent (or to be sent) to one endpoint, and how its attempts went.',
  fields: (t) => ({
    id: t.exposeID('id'),
    endpointId: t.exposeID('endpointId'),
    eventId: t.exposeID('eventId', { description: 'The webhook-id header: the same on every attempt.' }),
    eventType: t.exposeString('eventType'),
    jobId: t.exposeID('jobId'),
    state: t.field({ type: WebhookDeliveryStateEnum, resolve: (delivery) => delivery.state }),
    attempts: t.exposeInt('attempts'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastAttemptAt: t.expose('lastAttemptAt', { type: 'DateTime', nullable: true }),
    lastStatus: t.exposeInt('lastStatus', { nullable: true, description: "The last attempt's HTTP status (null: no answer)." }),
    lastError: t.exposeString('lastError', {
      nullable: true,
      description: 'Why the last attempt failed: a status and the first bytes of the answer, a timeout, a refused address.',
    }),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true, description: 'While PENDING: when it is (or was last) due.' }),
    endedAt: t.expose('endedAt', { type: 'DateTime', nullable: true }),
  }),
});

const endpointFieldsOf = (t: PothosSchemaTypes.InputFieldBuilder<typeof builder.$inferSchemaTypes, 'InputObject'>, required: boolean) => ({
  url: t.string({ required, description: 'https:// only, no credentials, not a private, loopback or link-local address (checked at every attempt).' }),
  events: t.stringList({ required, description: `Among ${EVENTS}.` }),
  competitorId: t.id({ description: "Only this competitor's jobs." }),
  jobType: t.string({ description: 'Only jobs of this type.' }),
  description: t.string(),
  progressIntervalMs: t.int({
    description: `job.progress at most once per this many milliseconds per job (at least ${WEBHOOK.minProgressIntervalMs}; WEBHOOK_PROGRESS_INTERVAL_MS by default).`,
  }),
});

const CreateWebhookEndpointInput = builder.inputType('CreateWebhookEndpointInput', { fields: (t) => endpointFieldsOf(t, true) });
const UpdateWebhookEndpointInput = builder.inputType('UpdateWebhookEndpointInput', {
  description: 'Absent fields stay as they are; null clears competitorId, jobType or description.',
  fields: (t) => ({
    ...endpointFieldsOf(t, false),
    enabled: t.boolean({ description: 'false disables the endpoint (its pending deliveries fail); true enables it again.' }),
  }),
});

const MANAGE = { 'webhooks:manage': true } as const;

builder.queryFields((t) => ({
  webhookEndpoints: t.field({
    type: [WebhookEndpointRef],
    authScopes: MANAGE,
    description: "The workspace's webhook endpoints.",
    resolve: (_root, _args, ctx) => ctx.webhooks.list(workspaceOf(ctx)),
  }),
  webhookDeliveries: t.field({
    type: [WebhookDeliveryRef],
    authScopes: MANAGE,
    description: `An endpoint's deliveries, newest first, kept ${WEBHOOK.logRetentionMs / 86_400_000} days after they end.`,
    args: {
      endpointId: t.arg.id({ required: true }),
      first: t.arg.int({ defaultValue: 20, description: `At most ${WEBHOOK.logPageMax}.` }),
      before: t.arg.id({ description: 'Only deliveries older than this one (the last id of the previous page).' }),
    },
    complexity: (args) => ({ field: 1, multiplier: args.first ?? 20 }),
    resolve: (_root, args, ctx) =>
      ctx.webhooks.log(workspaceOf(ctx), String(args.endpointId), args.first ?? 20, args.before == null ? undefined : String(args.before)),
  }),
}));

builder.mutationFields((t) => ({
  createWebhookEndpoint: t.field({
    type: WebhookEndpointWithSecretRef,
    authScopes: MANAGE,
    description: `Creates an endpoint (at most WEBHOOK_MAX_ENDPOINTS per workspace). Its secret is answered this once.`,
    args: { input: t.arg({ type: CreateWebhookEndpointInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      ctx.webhooks.create(workspaceOf(ctx), { ...input, competitorId: input.competitorId == null ? input.competitorId : String(input.competitorId) }),
  }),
  updateWebhookEndpoint: t.field({
    type: WebhookEndpointRef,
    authScopes: MANAGE,
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateWebhookEndpointInput, required: true }) },
    resolve: (_root, { id, input }, ctx) =>
      ctx.webhooks.update(workspaceOf(ctx), String(id), {
        ...input,
        competitorId: input.competitorId == null ? input.competitorId : String(input.competitorId),
      }),
  }),
  deleteWebhookEndpoint: t.field({
    type: 'Boolean',
    authScopes: MANAGE,
    description: 'Deletes an endpoint and its delivery log; nothing more is sent to it.',
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => {
      await ctx.webhooks.delete(workspaceOf(ctx), String(id));
      return true;
    },
  }),
  rotateWebhookSecret: t.field({
    type: WebhookEndpointWithSecretRef,
    authScopes: MANAGE,
    description: `A new signing secret, answered this once; for ${WEBHOOK.secretOverlapMs / 3_600_000} hours messages carry signatures by both, so receivers can switch without losing any.`,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => ctx.webhooks.rotateSecret(workspaceOf(ctx), String(id)),
  }),
  redeliverWebhook: t.field({
    type: WebhookDeliveryRef,
    authScopes: MANAGE,
    description: 'Sends a delivery again now, with the same webhook-id, and retries it as a new one.',
    args: { deliveryId: t.arg.id({ required: true }) },
    resolve: (_root, { deliveryId }, ctx) => ctx.webhooks.redeliver(workspaceOf(ctx), String(deliveryId)),
  }),
}));
