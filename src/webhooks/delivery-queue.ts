import type { SqlClient } from '../db/sql.js';
import { WEBHOOK } from '../limits/fixed.js';
import type { WebhookEvent } from './events.js';

/** A delivery claimed for one attempt: the event, where it goes and the secrets that sign it. */
export interface ClaimedDelivery {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: WebhookEvent;
  /** The job as the change left it (job_webhook_snapshot()). */
  job: Record<string, unknown>;
  /** This attempt's number (1 for the first): the claim is ours while the row still has it. */
  attempts: number;
  createdAt: Date;
  url: string;
  secret: string;
  /** A rotated-out secret still inside its overlap: the attempt is signed with both. */
  previousSecret: string | null;
}

/** Room for attempts on this instance: in all, and per endpoint (endpoints not listed have `perEndpoint`). */
export interface ClaimRoom {
  total: number;
  perEndpoint: number;
  /** Endpoints with attempts under way here, and how many more each may take. */
  endpoints: ReadonlyMap<string, number>;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

/** One line of an endpoint's delivery log. */
export interface DeliveryLogEntry {
  id: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  jobId: string;
  state: DeliveryState;
  attempts: number;
  createdAt: Date;
  lastAttemptAt: Date | null;
  lastStatus: number | null;
  lastError: string | null;
  /** While pending. */
  nextAttemptAt: Date | null;
  endedAt: Date | null;
}

/** What became of a failed attempt: retried later, or failed for good (and whether that disabled its endpoint). */
export interface FailureRecorded {
  gaveUp: boolean;
  /** Set when the endpoint has failed for longer than the retry window and was disabled now. */
  disabledEndpoint: boolean;
}

/**
 * The deliveries of every workspace in PostgreSQL (the outbox that job_webhook_events() writes), as
 * the statements the dispatcher runs: claim, record an outcome, redeliver, read the log, sweep.
 * Every statement is short and commits on its own; no transaction is held while a receiver answers.
 *
 * Order per job: a delivery is claimed only when no older delivery of its (endpoint, job) is
 * pending, so a job's events reach an endpoint one after the other; other jobs are not held up.
 * Exclusive claims across instances: `FOR UPDATE SKIP LOCKED`, then the claim itself moves
 * `nextAttemptAt` past the attempt's deadline, so no other instance sees the delivery due while it
 * is being sent, and every instance sees it due again if the one sending it dies.
 */
export class DeliveryQueue {
  constructor(private readonly sql: Pick<SqlClient, 'query'>) {}

  async claim(room: ClaimRoom, leaseMs: number): Promise<ClaimedDelivery[]> {
    if (room.total <= 0) return [];
    const full = [...room.endpoints].filter(([, free]) => free <= 0).map(([id]) => id);
    const partly = [...room.endpoints].filter(([, free]) => free > 0);
    const rows = await this.sql.query<ClaimedDelivery & { id: string }>(
      `WITH heads AS (
         SELECT d."id", d."endpointId", d."nextAttemptAt"
           FROM "WebhookDelivery" d
           JOIN "WebhookEndpoint" e ON e."id" = d."endpointId" AND e."disabledAt" IS NULL
          WHERE d."state" = 'pending' AND d."nextAttemptAt" <= now()
            AND d."endpointId" <> ALL($1::uuid[])
            AND NOT EXISTS (SELECT FROM "WebhookDelivery" p
                             WHERE p."state" = 'pending' AND p."endpointId" = d."endpointId" AND p."jobId" = d."jobId" AND p."id" < d."id")
          ORDER BY d."nextAttemptAt", d."id"
          LIMIT $2
          FOR UPDATE OF d SKIP LOCKED
       ), ranked AS (
         SELECT "id", "endpointId", row_number() OVER (PARTITION BY "endpointId" ORDER BY "nextAttemptAt", "id") AS "rank" FROM heads
       )
       UPDATE "WebhookDelivery" d
          SET "attempts" = d."attempts" + 1, "lastAttemptAt" = now(), "nextAttemptAt" = now() + $3 * interval '1 millisecond'
         FROM ranked r
         JOIN "WebhookEndpoint" e ON e."id" = r."endpointId"
         LEFT JOIN unnest($4::uuid[], $5::int[]) AS room("endpointId", "free") ON room."endpointId" = r."endpointId"
        WHERE d."id" = r."id" AND r."rank" <= coalesce(room."free", $6)
       RETURNING d."id"::text AS "id", d."endpointId", d."eventId", d."eventType", d."job", d."attempts", d."createdAt", e."url", e."secret",
                 CASE WHEN e."previousSecretUntil" > now() THEN e."previousSecret" END AS "previousSecret"`,
      [full, Math.min(room.total, WEBHOOK.claimBatch), leaseMs, partly.map(([id]) => id), partly.map(([, free]) => free), room.perEndpoint],
    );
    // The window's order is lost by UPDATE ... RETURNING: oldest first again, as they were due.
    return rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  }

  /** A 2xx: delivered, and its endpoint is no longer failing. False if the claim was lost meanwhile. */
  async recordSuccess(delivery: ClaimedDelivery, status: number): Promise<boolean> {
    const [row] = await this.sql.query<{ done: boolean }>(
      `WITH done AS (
         UPDATE "WebhookDelivery" SET "state" = 'delivered', "endedAt" = now(), "lastStatus" = $2, "lastError" = NULL
          WHERE "id" = $1 AND "attempts" = $3 AND "state" = 'pending' RETURNING "endpointId"
       ), recovered AS (
         UPDATE "WebhookEndpoint" SET "failingSince" = NULL WHERE "id" IN (SELECT "endpointId" FROM done) AND "failingSince" IS NOT NULL
       )
       SELECT EXISTS (SELECT FROM done) AS "done"`,
      [delivery.id, status, delivery.attempts],
    );
    return row?.done ?? false;
  }

  /**
   * Any other outcome: retried after `retryDelayMs` unless that falls past the retry window, then
   * failed for good. An endpoint that has had no success for the whole window is disabled, and its
   * pending deliveries fail with it.
   */
  async recordFailure(
    delivery: ClaimedDelivery,
    outcome: { status: number | null; error: string },
    retryDelayMs: number,
    retryForMs: number,
  ): Promise<FailureRecorded> {
    const [row] = await this.sql.query<{ state: DeliveryState | null; failingSince: Date | null }>(
      `WITH failed AS (
         UPDATE "WebhookDelivery"
            SET "lastStatus" = $2, "lastError" = $3,
                "state" = CASE WHEN "queuedAt" + $5 * interval '1 millisecond' < now() + $4 * interval '1 millisecond' THEN 'failed' ELSE 'pending' END,
                "endedAt" = CASE WHEN "queuedAt" + $5 * interval '1 millisecond' < now() + $4 * interval '1 millisecond' THEN now() END,
                "nextAttemptAt" = now() + $4 * interval '1 millisecond'
          WHERE "id" = $1 AND "attempts" = $6 AND "state" = 'pending'
          RETURNING "endpointId", "state"
       ), failing AS (
         UPDATE "WebhookEndpoint" SET "failingSince" = coalesce("failingSince", now())
          WHERE "id" IN (SELECT "endpointId" FROM failed) RETURNING "failingSince"
       )
       SELECT (SELECT "state" FROM failed) AS "state", (SELECT "failingSince" FROM failing) AS "failingSince"`,
      [delivery.id, outcome.status, outcome.error, retryDelayMs, retryForMs, delivery.attempts],
    );
    const gaveUp = row?.state === 'failed';
    if (!row?.failingSince || row.failingSince.getTime() > Date.now() - retryForMs) return { gaveUp, disabledEndpoint: false };
    const disabled = await this.disableEndpoint(
      delivery.endpointId,
      `Every delivery failed for ${Math.round(retryForMs / 60_000)} minutes; the last: ${outcome.error}`,
    );
    return { gaveUp, disabledEndpoint: disabled };
  }

  /** Disables an endpoint (if enabled) and fails its pending deliveries; true if it was enabled. */
  async disableEndpoint(endpointId: string, reason: string): Promise<boolean> {
    const [row] = await this.sql.query<{ disabled: boolean }>(
      `WITH disabled AS (
         UPDATE "WebhookEndpoint" SET "disabledAt" = now(), "disabledReason" = $2, "updatedAt" = now()
          WHERE "id" = $1 AND "disabledAt" IS NULL RETURNING "id"
       ), dropped AS (
         UPDATE "WebhookDelivery" SET "state" = 'failed', "endedAt" = now(), "lastError" = coalesce("lastError" || ' (then ', '(') || 'the endpoint was disabled)'
          WHERE "endpointId" IN (SELECT "id" FROM disabled) AND "state" = 'pending'
       )
       SELECT EXISTS (SELECT FROM disabled) AS "disabled"`,
      [endpointId, reason.slice(0, WEBHOOK.errorChars * 2)],
    );
    return row?.disabled ?? false;
  }

  /**
   * Sends a delivery of the workspace again, now, with the same event id and a fresh retry window;
   * a pending one waiting out a retry goes now. One whose attempt may be under way (claimed less
   * than `leaseMs` ago) is left alone. Undefined if the workspace has no such delivery.
   */
  async redeliver(workspaceId: string, deliveryId: string, leaseMs: number): Promise<DeliveryLogEntry | undefined> {
    const [row] = await this.sql.query<DeliveryLogEntry>(
      `WITH target AS (
         SELECT d."id" FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId"
          WHERE d."id" = $2::bigint AND e."workspaceId" = $1::uuid
       ), resent AS (
         UPDATE "WebhookDelivery" d SET "state" = 'pending', "nextAttemptAt" = now(), "queuedAt" = now(), "endedAt" = NULL
          WHERE d."id" IN (SELECT "id" FROM target)
            AND (d."state" <> 'pending' OR d."lastAttemptAt" IS NULL OR d."lastAttemptAt" < now() - $3 * interval '1 millisecond')
         RETURNING d.*
       )
       SELECT ${LOG_COLUMNS} FROM resent d
       UNION ALL
       SELECT ${LOG_COLUMNS} FROM "WebhookDelivery" d WHERE d."id" IN (SELECT "id" FROM target) AND NOT EXISTS (SELECT FROM resent)`,
      [workspaceId, deliveryId, leaseMs],
    );
    return row;
  }

  /** An endpoint's deliveries, newest first, before the delivery `before` if given. */
  log(workspaceId: string, endpointId: string, limit: number, before?: string): Promise<DeliveryLogEntry[]> {
    return this.sql.query<DeliveryLogEntry>(
      `SELECT ${LOG_COLUMNS} FROM "WebhookDelivery" d JOIN "WebhookEndpoint" e ON e."id" = d."endpointId"
        WHERE d."endpointId" = $2::uuid AND e."workspaceId" = $1::uuid AND ($3::bigint IS NULL OR d."id" < $3::bigint)
        ORDER BY d."id" DESC LIMIT $4`,
      [workspaceId, endpointId, before ?? null, limit],
    );
  }

  /** Ended deliveries older than the log keeps, a batch at a time; returns how many went. */
  async forgetEnded(olderThanMs: number, batch: number): Promise<number> {
    const rows = await this.sql.query(
      `DELETE FROM "WebhookDelivery" WHERE "id" IN (
         SELECT "id" FROM "WebhookDelivery" WHERE "state" <> 'pending' AND "endedAt" < now() - $1 * interval '1 millisecond' LIMIT $2
       ) RETURNING 1`,
      [olderThanMs, batch],
    );
    return rows.length;
  }

  /** Seconds since the oldest pending delivery's event (0 with none pending). */
  async oldestPendingAgeSeconds(): Promise<number> {
    const [row] = await this.sql.query<{ age: number | string | null }>(
      `SELECT extract(epoch FROM now() - min("createdAt"))::float8 AS "age" FROM "WebhookDelivery" WHERE "state" = 'pending'`,
    );
    return Number(row?.age ?? 0);
  }

  /** The workspaces with an enabled endpoint: only their changes wake the dispatcher. */
  async workspacesWithEndpoints(): Promise<Set<string>> {
    const rows = await this.sql.query<{ workspaceId: string }>(`SELECT DISTINCT "workspaceId" FROM "WebhookEndpoint" WHERE "disabledAt" IS NULL`);
    return new Set(rows.map((row) => row.workspaceId));
  }
}

const LOG_COLUMNS = `d."id"::text AS "id", d."endpointId", d."eventId", d."eventType", d."jobId", d."state", d."attempts", d."createdAt",
  d."lastAttemptAt", d."lastStatus", d."lastError", CASE WHEN d."state" = 'pending' THEN d."nextAttemptAt" END AS "nextAttemptAt", d."endedAt"`;
