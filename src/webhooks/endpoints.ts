import { randomBytes } from 'node:crypto';
import type { SqlClient } from '../db/sql.js';
import { errors } from '../errors.js';
import { isUuid } from '../ids.js';
import { JOB_LIMITS, WEBHOOK } from '../limits/fixed.js';
import { rejectNul } from '../jobs/transitions.js';
import { type DestinationPolicy, endpointUrl } from './destination.js';
import { WEBHOOK_EVENTS, type WebhookEvent, isWebhookEvent } from './events.js';

/** An endpoint as its workspace sees it: never its secret. */
export interface WebhookEndpointInfo {
  id: string;
  workspaceId: string;
  url: string;
  description: string | null;
  events: WebhookEvent[];
  competitorId: string | null;
  jobType: string | null;
  progressIntervalMs: number;
  enabled: boolean;
  disabledAt: Date | null;
  disabledReason: string | null;
  /** Since when every attempt has failed (null while deliveries succeed). */
  failingSince: Date | null;
  /** After a rotation: until when the previous secret also signs. */
  previousSecretUntil: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** What a workspace may set on an endpoint; absent fields are left as they are on update. */
export interface EndpointInput {
  url?: string | null | undefined;
  events?: readonly string[] | null | undefined;
  competitorId?: string | null | undefined;
  jobType?: string | null | undefined;
  description?: string | null | undefined;
  progressIntervalMs?: number | null | undefined;
}

/** An endpoint's fields, checked: BAD_USER_INPUT names the first that is wrong. */
interface EndpointFields {
  url?: string;
  events?: WebhookEvent[];
  competitorId?: string | null;
  jobType?: string | null;
  description?: string | null;
  progressIntervalMs?: number;
}

/** A new signing secret in the Standard Webhooks form: whsec_ and 32 random bytes in base64. */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Checks what a workspace sends for an endpoint. On update, `null` clears an optional filter or
 * the description; a required field (url, events, progressIntervalMs) cannot be cleared.
 */
export function endpointFields(input: EndpointInput, policy: DestinationPolicy): EndpointFields {
  const fields: EndpointFields = {};
  if (input.url != null) fields.url = endpointUrl(rejectNul('url', input.url), policy).toString();
  if (input.events != null) {
    if (input.events.length === 0) throw errors.badInput(`events must name at least one of ${WEBHOOK_EVENTS.join(', ')}.`);
    const unknown = input.events.find((event) => !isWebhookEvent(event));
    if (unknown !== undefined) throw errors.badInput(`Unknown event ${JSON.stringify(unknown).slice(0, 80)}; events are ${WEBHOOK_EVENTS.join(', ')}.`);
    fields.events = WEBHOOK_EVENTS.filter((event) => input.events!.includes(event));
  }
  for (const field of ['competitorId', 'jobType'] as const) {
    const value = input[field];
    if (value === undefined) continue;
    if (value === null) {
      fields[field] = null;
      continue;
    }
    // Trimmed as createJob stores them, so that " acme" matches acme's jobs.
    const text = rejectNul(field, value).trim();
    if (text.length === 0 || text.length > JOB_LIMITS.text) throw errors.badInput(`${field} must be 1 to ${JOB_LIMITS.text} characters.`);
    fields[field] = text;
  }
  if (input.description !== undefined) {
    const text = input.description === null ? '' : rejectNul('description', input.description).trim();
    if (text.length > WEBHOOK.descriptionMaxLength) throw errors.badInput(`description must be at most ${WEBHOOK.descriptionMaxLength} characters.`);
    fields.description = text || null;
  }
  if (input.progressIntervalMs != null) {
    const ms = input.progressIntervalMs;
    if (!Number.isInteger(ms) || ms < WEBHOOK.minProgressIntervalMs || ms > 3_600_000) {
      throw errors.badInput(`progressIntervalMs must be an integer from ${WEBHOOK.minProgressIntervalMs} to 3600000.`);
    }
    fields.progressIntervalMs = ms;
  }
  return fields;
}

const COLUMNS = `"id", "workspaceId", "url", "description", "events", "competitorId", "jobType", "progressIntervalMs", "disabledAt" IS NULL AS "enabled",
  "disabledAt", "disabledReason", "failingSince", CASE WHEN "previousSecretUntil" > now() THEN "previousSecretUntil" END AS "previousSecretUntil", "createdAt", "updatedAt"`;

/**
 * A workspace's webhook endpoints in PostgreSQL. Every statement names the workspace: an id of
 * another workspace's endpoint finds nothing, as an unknown one does.
 */
export class EndpointStore {
  constructor(private readonly sql: SqlClient) {}

  list(workspaceId: string): Promise<WebhookEndpointInfo[]> {
    return this.sql.query<WebhookEndpointInfo>(`SELECT ${COLUMNS} FROM "WebhookEndpoint" WHERE "workspaceId" = $1::uuid ORDER BY "createdAt", "id"`, [
      workspaceId,
    ]);
  }

  async get(workspaceId: string, id: string): Promise<WebhookEndpointInfo | undefined> {
    if (!isUuid(id)) return undefined;
    const [row] = await this.sql.query<WebhookEndpointInfo>(`SELECT ${COLUMNS} FROM "WebhookEndpoint" WHERE "workspaceId" = $1::uuid AND "id" = $2::uuid`, [
      workspaceId,
      id,
    ]);
    return row;
  }

  /**
   * Creates an endpoint, at most `maxEndpoints` per workspace: the count and the insert run under a
   * lock of the workspace, so that concurrent creations cannot pass the limit together.
   */
  async create(
    workspaceId: string,
    fields: EndpointFields & { url: string; events: WebhookEvent[]; progressIntervalMs: number },
    maxEndpoints: number,
  ): Promise<{ endpoint: WebhookEndpointInfo; secret: string }> {
    const secret = newSecret();
    const endpoint = await this.sql.transaction(async (tx) => {
      await tx.query(`SELECT 1 FROM "Workspace" WHERE "id" = $1::uuid FOR UPDATE`, [workspaceId]);
      const [{ count } = { count: 0 }] = await tx.query<{ count: number }>(
        `SELECT count(*)::int AS "count" FROM "WebhookEndpoint" WHERE "workspaceId" = $1::uuid`,
        [workspaceId],
      );
      if (count >= maxEndpoints) throw errors.badInput(`A workspace has at most ${maxEndpoints} webhook endpoints (WEBHOOK_MAX_ENDPOINTS); delete one first.`);
      const [row] = await tx.query<WebhookEndpointInfo>(
        `INSERT INTO "WebhookEndpoint" ("workspaceId", "url", "description", "events", "competitorId", "jobType", "progressIntervalMs", "secret")
         VALUES ($1::uuid, $2, $3, $4::text[], $5, $6, $7, $8) RETURNING ${COLUMNS}`,
        [
          workspaceId,
          fields.url,
          fields.description ?? null,
          fields.events,
          fields.competitorId ?? null,
          fields.jobType ?? null,
          fields.progressIntervalMs,
          secret,
        ],
      );
      return row!;
    });
    return { endpoint, secret };
  }

  /** Changes the given fields; `enabled: true` clears a disabling and the failure streak. Undefined: no such endpoint. */
  async update(workspaceId: string, id: string, fields: EndpointFields & { enabled?: true }): Promise<WebhookEndpointInfo | undefined> {
    if (!isUuid(id)) return undefined;
    const sets: string[] = [];
    const values: unknown[] = [workspaceId, id];
    const set = (column: string, value: unknown, cast = '') => {
      values.push(value);
      sets.push(`"${column}" = $${values.length}${cast}`);
    };
    if (fields.url !== undefined) set('url', fields.url);
    if (fields.events !== undefined) set('events', fields.events, '::text[]');
    if (fields.competitorId !== undefined) set('competitorId', fields.competitorId);
    if (fields.jobType !== undefined) set('jobType', fields.jobType);
    if (fields.description !== undefined) set('description', fields.description);
    if (fields.progressIntervalMs !== undefined) set('progressIntervalMs', fields.progressIntervalMs);
    if (fields.enabled) sets.push('"disabledAt" = NULL', '"disabledReason" = NULL', '"failingSince" = NULL');
    const [row] = await this.sql.query<WebhookEndpointInfo>(
      `UPDATE "WebhookEndpoint" SET ${[...sets, '"updatedAt" = now()'].join(', ')} WHERE "workspaceId" = $1::uuid AND "id" = $2::uuid RETURNING ${COLUMNS}`,
      values,
    );
    return row;
  }

  /** Deletes an endpoint and its deliveries (sent or not); false if there was none. */
  async delete(workspaceId: string, id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const rows = await this.sql.query(`DELETE FROM "WebhookEndpoint" WHERE "workspaceId" = $1::uuid AND "id" = $2::uuid RETURNING 1`, [workspaceId, id]);
    return rows.length > 0;
  }

  /** A new secret; the previous one keeps signing (alongside) for `overlapMs`. */
  async rotateSecret(workspaceId: string, id: string, overlapMs: number): Promise<{ endpoint: WebhookEndpointInfo; secret: string } | undefined> {
    if (!isUuid(id)) return undefined;
    const secret = newSecret();
    const [row] = await this.sql.query<WebhookEndpointInfo>(
      `UPDATE "WebhookEndpoint" SET "previousSecret" = "secret", "previousSecretUntil" = now() + $4 * interval '1 millisecond', "secret" = $3, "updatedAt" = now()
        WHERE "workspaceId" = $1::uuid AND "id" = $2::uuid RETURNING ${COLUMNS}`,
      [workspaceId, id, secret, overlapMs],
    );
    return row && { endpoint: row, secret };
  }
}
