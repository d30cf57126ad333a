import type { WebhookConfig } from '../config.js';
import type { SqlClient } from '../db/sql.js';
import { errors } from '../errors.js';
import { WEBHOOK } from '../limits/fixed.js';
import type { Tracer } from '../telemetry/tracer.js';
import type { Logger } from '../logger.js';
import { type DeliveryLogEntry, DeliveryQueue } from './delivery-queue.js';
import { type Resolver, systemResolver } from './destination.js';
import { type RenderDelivery, WebhookDispatcher, type WebhookStats } from './dispatcher.js';
import { type EndpointInput, EndpointStore, type WebhookEndpointInfo, endpointFields } from './endpoints.js';
import { WebhookSender } from './sender.js';

/** An endpoint with its secret: what creating one or rotating its secret answers, once. */
export interface EndpointWithSecret {
  endpoint: WebhookEndpointInfo;
  secret: string;
}

export interface WebhooksOptions extends WebhookConfig {
  /** How names resolve (tests pass a stub); the system's resolver by default. */
  resolve?: Resolver;
  /** With tracing on: a span per attempt. */
  tracer?: Tracer | undefined;
}

/**
 * Webhooks as the rest of the gateway sees them: a workspace's endpoints and their delivery log
 * (the GraphQL schema calls these; the CLI uses the same stores and checks, as an operator of any
 * workspace), and the dispatcher that sends what the database recorded (app.ts starts and stops it).
 */
export class Webhooks {
  readonly endpoints: EndpointStore;
  readonly deliveries: DeliveryQueue;
  private readonly dispatcher: WebhookDispatcher;

  constructor(
    sql: SqlClient,
    render: RenderDelivery,
    logger: Logger,
    private readonly options: WebhooksOptions,
  ) {
    this.endpoints = new EndpointStore(sql);
    this.deliveries = new DeliveryQueue(sql);
    const sender = new WebhookSender({
      timeoutMs: options.timeoutMs,
      allowPrivate: options.allowPrivate,
      maxSockets: options.concurrency,
      maxSocketsPerHost: options.concurrencyPerEndpoint,
      resolve: options.resolve ?? systemResolver(options),
      tracer: options.tracer,
    });
    this.dispatcher = new WebhookDispatcher(this.deliveries, sender, render, logger, options);
  }

  /** Starts sending (unless WEBHOOK_SENDING=false); `changed` is then called for every change this instance sees. */
  start(): void {
    if (this.options.sending) this.dispatcher.start();
  }

  /** A job of `workspaceId` changed (written here or read by the feed). */
  changed(workspaceId: string): void {
    // What the dispatcher claims and sends next belongs to no trace of the caller's (a write, a feed dispatch).
    if (this.options.tracer) this.options.tracer.detached(() => this.dispatcher.changed(workspaceId));
    else this.dispatcher.changed(workspaceId);
  }

  stop(graceMs: number): Promise<void> {
    return this.dispatcher.stop(graceMs);
  }

  stats(): WebhookStats {
    return this.dispatcher.stats();
  }

  list(workspaceId: string): Promise<WebhookEndpointInfo[]> {
    return this.endpoints.list(workspaceId);
  }

  async create(workspaceId: string, input: EndpointInput): Promise<EndpointWithSecret> {
    const fields = endpointFields(input, this.options);
    if (fields.url === undefined) throw errors.badInput('url is required.');
    if (fields.events === undefined) throw errors.badInput('events is required.');
    const created = await this.endpoints.create(
      workspaceId,
      { ...fields, url: fields.url, events: fields.events, progressIntervalMs: fields.progressIntervalMs ?? this.options.progressIntervalMs },
      this.options.maxEndpoints,
    );
    this.dispatcher.endpointsChanged(workspaceId);
    return created;
  }

  /** Changes an endpoint; `enabled: false` disables it (its pending deliveries fail), `true` enables it again. */
  async update(workspaceId: string, id: string, input: EndpointInput & { enabled?: boolean | null | undefined }): Promise<WebhookEndpointInfo> {
    const fields = endpointFields(input, this.options);
    if (input.enabled === false && (await this.endpoints.get(workspaceId, id))) {
      await this.deliveries.disableEndpoint(id, 'Disabled by the workspace.');
    }
    const updated = await this.endpoints.update(workspaceId, id, { ...fields, ...(input.enabled === true && { enabled: true }) });
    if (!updated) throw endpointNotFound(id);
    if (updated.enabled) this.dispatcher.endpointsChanged(workspaceId);
    return updated;
  }

  async delete(workspaceId: string, id: string): Promise<void> {
    if (!(await this.endpoints.delete(workspaceId, id))) throw endpointNotFound(id);
  }

  async rotateSecret(workspaceId: string, id: string): Promise<EndpointWithSecret> {
    const rotated = await this.endpoints.rotateSecret(workspaceId, id, WEBHOOK.secretOverlapMs);
    if (!rotated) throw endpointNotFound(id);
    return rotated;
  }

  /** An endpoint's deliveries, newest first (at most WEBHOOK.logPageMax), before delivery `before`. */
  async log(workspaceId: string, endpointId: string, first: number, before?: string): Promise<DeliveryLogEntry[]> {
    if (!(await this.endpoints.get(workspaceId, endpointId))) throw endpointNotFound(endpointId);
    if (!Number.isInteger(first) || first < 1 || first > WEBHOOK.logPageMax) throw errors.badInput(`first must be 1 to ${WEBHOOK.logPageMax}.`);
    if (before !== undefined && !/^\d{1,18}$/.test(before)) throw errors.badInput('before must be a delivery id.');
    return this.deliveries.log(workspaceId, endpointId, first, before);
  }

  async redeliver(workspaceId: string, deliveryId: string): Promise<DeliveryLogEntry> {
    const found = /^\d{1,18}$/.test(deliveryId) ? await this.deliveries.redeliver(workspaceId, deliveryId, this.dispatcher.leaseMs) : undefined;
    if (!found) throw errors.webhookNotFound('delivery', deliveryId);
    const { endpointDisabled, laterPending, ...delivery } = found;
    if (endpointDisabled) throw errors.badInput('Its endpoint is disabled: enable it first (updateWebhookEndpoint with enabled: true).');
    if (laterPending)
      throw errors.badInput(
        'Later events of its job are still to be sent to this endpoint; redeliver it once they are, so that the job’s events arrive in order.',
      );
    this.dispatcher.endpointsChanged(workspaceId);
    return delivery;
  }
}

function endpointNotFound(id: string) {
  return errors.webhookNotFound('endpoint', id);
}
